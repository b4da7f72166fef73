//! The stack's shortcuts against the general code they stand in for: the one-pass
//! receive path (`receive_tcp_fast`) and the direct IPv4 header writer; and the
//! borrowed-frame calls (`receive_slice`, `poll_transmit_into`, `tcp_send_slice`,
//! `tcp_recv_slice`) against the ones that move `Bytes`.

use super::*;
use crate::wire::ChecksumCaps;
use std::time::Duration;

const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn stack(mac: EthernetAddress, ip: Ipv4Addr, now: Instant, fast_rx: bool, timestamps: bool) -> Stack {
    let mut config = StackConfig::new(mac, ip);
    config.checksums = ChecksumCaps::all();
    config.tcp = TcpConfig { ack_delay: None, timestamps, ..TcpConfig::default() };
    config.seed = u64::from(mac.0[5]);
    let mut s = Stack::new(config, now);
    s.fast_rx = fast_rx;
    s.fast_tx = fast_rx;
    s
}

/// How frames and data cross between the stacks and their applications.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Io {
    /// `poll_transmit` and `receive` (frames as `Bytes`), `tcp_send` and `tcp_recv`.
    Owned,
    /// `poll_transmit_into` a 256-byte buffer and `receive_slice`, `tcp_send_slice`
    /// and `tcp_recv_slice`.
    Borrowed,
}

/// Two stacks joined back to back; `fast_rx` says whether both use the one-pass
/// receive path and the kept transmit headers.
struct World {
    a: Stack,
    b: Stack,
    ca: Option<ConnHandle>,
    cb: Option<ConnHandle>,
    now: Instant,
    io: Io,
    /// With `Io::Borrowed`: frames written into the caller's buffer, and frames
    /// that came back as `Bytes`.
    written: usize,
    owned: usize,
    /// Trace each connection's state and counters only, not its whole `Debug`
    /// (whose queues show how the bytes are held, which differs between `Io`s).
    brief: bool,
}

/// What a step showed: frames each side sent, events, stats, connection states.
type Trace = Vec<String>;

impl World {
    fn new(now: Instant, fast_rx: bool, timestamps: bool) -> World {
        let mut a = stack(MAC_A, IP_A, now, fast_rx, timestamps);
        let mut b = stack(MAC_B, IP_B, now, fast_rx, timestamps);
        a.add_static_neighbor(IP_B, MAC_B);
        b.add_static_neighbor(IP_A, MAC_A);
        World { a, b, ca: None, cb: None, now, io: Io::Owned, written: 0, owned: 0, brief: false }
    }

    /// The next frame `s` sends, as `io` takes it.
    fn take(s: &mut Stack, now: Instant, io: Io, counts: (&mut usize, &mut usize)) -> Option<Vec<u8>> {
        match io {
            Io::Owned => s.poll_transmit(now).map(|f| f.to_vec()),
            Io::Borrowed => {
                // Not zeroed between frames: whatever the last frame left in it
                // must not show through.
                let mut buf = [0x5au8; 256];
                match s.poll_transmit_into(now, &mut buf)? {
                    TxFrame::Written(n) => {
                        *counts.0 += 1;
                        Some(buf[..n].to_vec())
                    }
                    TxFrame::Owned(f) => {
                        *counts.1 += 1;
                        Some(f.to_vec())
                    }
                }
            }
        }
    }

    /// Hands `f` to `s` as `io` does.
    fn give(s: &mut Stack, now: Instant, io: Io, f: Vec<u8>) {
        match io {
            Io::Owned => s.receive(now, Bytes::from(f)),
            Io::Borrowed => s.receive_slice(now, &f),
        }
    }

    /// Queues `data` on a's connection as `io` does.
    fn send_a(&mut self, data: Bytes) {
        let ca = self.ca.expect("connected");
        let n = match self.io {
            Io::Owned => self.a.tcp_send(ca, data.clone()),
            Io::Borrowed => self.a.tcp_send_slice(ca, &data),
        };
        assert_eq!(n.expect("send"), data.len());
    }

    /// Runs both stacks until quiet; `mangle` may change or drop (empty) each
    /// frame from a to b. Returns what happened.
    fn run(&mut self, mangle: &mut dyn FnMut(usize, Vec<u8>) -> Vec<Vec<u8>>) -> Trace {
        let mut trace = Trace::new();
        let mut n = 0;
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(f) = World::take(&mut self.a, self.now, self.io, (&mut self.written, &mut self.owned)) {
                trace.push(format!("a> {:?}", &f[..]));
                for g in mangle(n, f) {
                    World::give(&mut self.b, self.now, self.io, g);
                }
                n += 1;
                moved = true;
            }
            while let Some(f) = World::take(&mut self.b, self.now, self.io, (&mut self.written, &mut self.owned)) {
                trace.push(format!("b> {:?}", &f[..]));
                World::give(&mut self.a, self.now, self.io, f);
                moved = true;
            }
            for (name, s) in [("a", &mut self.a), ("b", &mut self.b)] {
                while let Some(ev) = s.poll_event() {
                    trace.push(format!("{name} event {ev:?}"));
                    if let Event::AcceptReady(l) = ev {
                        let (c, _) = s.tcp_accept(l).expect("accept");
                        trace.push(format!("{name} accepted {c:?}"));
                        self.cb = Some(c);
                    }
                }
            }
            if !moved {
                break;
            }
        }
        for (name, s, c) in [("a", &self.a, self.ca), ("b", &self.b, self.cb)] {
            trace.push(format!("{name} stats {:?} poll_at {:?}", s.stats(), s.poll_at()));
            if let Some(conn) = c.and_then(|c| s.tcp(c).ok()) {
                if self.brief {
                    trace.push(format!("{name} conn {:?} {:?} {}", conn.state(), conn.stats(), conn.recv_available()));
                } else {
                    trace.push(format!("{name} conn {conn:?}"));
                }
            }
        }
        trace
    }

    fn read_b(&mut self) -> Vec<u8> {
        let cb = self.cb.expect("accepted");
        let mut out = Vec::new();
        match self.io {
            Io::Owned => {
                while let Ok(d) = self.b.tcp_recv(cb, usize::MAX) {
                    out.extend_from_slice(&d);
                }
            }
            Io::Borrowed => {
                let mut buf = [0u8; 700];
                while let Ok(n) = self.b.tcp_recv_slice(cb, &mut buf) {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
        out
    }
}

fn keep(_: usize, f: Vec<u8>) -> Vec<Vec<u8>> {
    vec![f]
}

/// A script of traffic over a connection from a to b, some frames mangled.
fn script(fast_rx: bool, timestamps: bool, t0: Instant) -> Vec<String> {
    script_with(fast_rx, timestamps, Io::Owned, false, t0).0
}

/// [`script`] with frames and data crossing as `io` says, connections traced in
/// `brief`; also the world at the end.
fn script_with(fast_rx: bool, timestamps: bool, io: Io, brief: bool, t0: Instant) -> (Vec<String>, World) {
    let mut w = World::new(t0, fast_rx, timestamps);
    (w.io, w.brief) = (io, brief);
    let l = w.b.tcp_listen(80, 4).unwrap();
    let _ = l;
    w.ca = Some(w.a.tcp_connect(t0, 0, SocketAddrV4::new(IP_B, 80)).unwrap());
    let mut trace = w.run(&mut keep);
    let ca = w.ca.unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    let data = Bytes::from(data);
    // In order.
    w.send_a(data.slice(0..3000));
    trace.extend(w.run(&mut keep));
    trace.push(format!("read {:?}", w.read_b().len()));
    // Reordered (the first of three held back), duplicated, corrupted, with IP
    // options, a broadcast MAC, fragments: each the general path's business.
    w.now += Duration::from_millis(3);
    w.send_a(data.slice(3000..9000));
    let mut held = None;
    trace.extend(w.run(&mut |n, f| match n {
        0 => {
            held = Some(f);
            vec![]
        }
        1 => vec![f.clone(), f],
        2 => {
            let mut bad = f.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            vec![bad, f, held.take().unwrap()]
        }
        3 => {
            let mut g = f.clone();
            g.splice(34..34, [1, 1, 1, 0]);
            g[14] = 0x46;
            let total = u16::from_be_bytes([g[16], g[17]]) + 4;
            g[16..18].copy_from_slice(&total.to_be_bytes());
            g[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&g[14..38]);
            g[24..26].copy_from_slice(&c.to_be_bytes());
            vec![g]
        }
        4 => {
            let mut g = f.clone();
            g[0..6].copy_from_slice(&[0xff; 6]);
            let mut h = f.clone();
            h[20] |= 0x20;
            vec![h, g]
        }
        _ => vec![f],
    }));
    trace.push(format!("read {:?}", w.read_b().len()));
    // The window fills: b does not read for a while.
    w.now += Duration::from_millis(3);
    // Small writes (one copied piece when lent), then a large one.
    for at in (9000..10_000).step_by(50) {
        w.send_a(data.slice(at..at + 50));
    }
    w.send_a(data.slice(10_000..20_000));
    trace.extend(w.run(&mut keep));
    trace.push(format!("read {:?}", w.read_b().len()));
    trace.extend(w.run(&mut keep));
    // A segment lost: b's ACKs carry SACK blocks (options other than timestamps,
    // on a connection whose headers are kept) until the retransmission fills the
    // hole.
    w.now += Duration::from_millis(3);
    let more: Vec<u8> = (0..6000u32).map(|i| (i * 13) as u8).collect();
    w.send_a(Bytes::from(more));
    trace.extend(w.run(&mut |n, f| if n == 1 { vec![] } else { vec![f] }));
    for _ in 0..3 {
        w.now += Duration::from_secs(1);
        w.a.handle_timeout(w.now);
        w.b.handle_timeout(w.now);
        trace.extend(w.run(&mut keep));
    }
    trace.push(format!("read {:?}", w.read_b().len()));
    trace.extend(w.run(&mut keep));
    // Close from a, then b.
    w.a.tcp_shutdown(ca).unwrap();
    trace.extend(w.run(&mut keep));
    w.b.tcp_shutdown(w.cb.unwrap()).unwrap();
    trace.extend(w.run(&mut keep));
    // Most frames took the one-pass path (when on), but not all of them.
    let (hits, frames) = (w.a.fast_rx_hits + w.b.fast_rx_hits, w.a.stats().rx_frames + w.b.stats().rx_frames);
    assert!(!fast_rx || (hits > frames / 2 && hits + 4 < frames), "{hits} of {frames}");
    // Most segments were built by the plain-segment writer (when on), but not the
    // SYNs (options, and no headers kept yet).
    let (plain, sent) = (w.a.plain_tx_hits + w.b.plain_tx_hits, w.a.stats().tx_frames + w.b.stats().tx_frames);
    assert!(!fast_rx || (plain > sent / 2 && plain + 2 <= sent), "{plain} of {sent}");
    (trace, w)
}

#[test]
fn the_one_pass_receive_path_and_kept_headers_match_the_general_code() {
    for timestamps in [false, true] {
        let t0 = Instant::now();
        let fast = script(true, timestamps, t0);
        let general = script(false, timestamps, t0);
        assert_eq!(fast.len(), general.len());
        for (i, (f, g)) in fast.iter().zip(&general).enumerate() {
            assert_eq!(f, g, "step {i} (timestamps {timestamps})");
        }
    }
}

/// The script again with borrowed frames and lent data: the same frames, events,
/// counters and data as with `Bytes` moved. Small frames were written into the
/// caller's buffer, and others (SYNs, full-sized segments) came back as `Bytes`.
#[test]
fn borrowed_frames_and_lent_data_fare_as_moved_bytes() {
    for timestamps in [false, true] {
        for fast_rx in [true, false] {
            let t0 = Instant::now();
            let (owned, _) = script_with(fast_rx, timestamps, Io::Owned, true, t0);
            let (borrowed, w) = script_with(fast_rx, timestamps, Io::Borrowed, true, t0);
            assert_eq!(owned.len(), borrowed.len());
            for (i, (o, b)) in owned.iter().zip(&borrowed).enumerate() {
                assert_eq!(o, b, "step {i} (timestamps {timestamps}, fast {fast_rx})");
            }
            let (written, total) = (w.written, w.written + w.owned);
            if fast_rx {
                assert!(written >= total / 4 && w.owned >= total / 4, "{written} of {total} frames written into the buffer");
            } else {
                assert_eq!(written, 0, "without kept headers every frame is built in the stack");
            }
        }
    }
}

/// A world with a connection from a to b open, and the frame of a's first data
/// segment (`xyz`), not delivered yet.
fn open_with_segment(fast_rx: bool, t0: Instant) -> (World, Vec<u8>) {
    let mut w = World::new(t0, fast_rx, true);
    w.b.tcp_listen(80, 4).unwrap();
    w.ca = Some(w.a.tcp_connect(t0, 0, SocketAddrV4::new(IP_B, 80)).unwrap());
    w.run(&mut keep);
    w.a.tcp_send(w.ca.unwrap(), Bytes::from_static(b"xyz")).unwrap();
    let f = w.a.poll_transmit(t0).expect("a data segment").to_vec();
    (w, f)
}

/// Delivers `f` to b: what b did next and read, and how many frames the one-pass
/// path took.
fn deliver(w: &mut World, t0: Instant, f: Vec<u8>) -> (Trace, u64) {
    let hits = w.b.fast_rx_hits;
    w.b.receive(t0, Bytes::from(f));
    let hits = w.b.fast_rx_hits - hits;
    let mut trace = w.run(&mut keep);
    trace.push(format!("read {:?}", w.read_b()));
    (trace, hits)
}

/// One data segment of an open connection from a to b, changed by `change` (with
/// both checksums made right again for what it changed), then received by b, with
/// the one-pass path on or off: what b did next, and how many frames the one-pass
/// path took.
fn receive_changed(fast_rx: bool, t0: Instant, change: &dyn Fn(&mut [u8])) -> (Trace, u64) {
    let (mut w, mut f) = open_with_segment(fast_rx, t0);
    change(&mut f);
    let ip = &mut f[ETH_LEN..ETH_LEN + IP_LEN];
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let (src, dst) = (Ipv4Addr::from([ip[12], ip[13], ip[14], ip[15]]), Ipv4Addr::from([ip[16], ip[17], ip[18], ip[19]]));
    let tcp = &mut f[ETH_LEN + IP_LEN..];
    tcp[16..18].copy_from_slice(&[0, 0]);
    let c = !checksum::fold(checksum::combine(checksum::pseudo_header(src, dst, IpProtocol::Tcp, tcp.len()), checksum::sum(tcp)));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    deliver(&mut w, t0, f)
}

/// Each header field the one-pass path checks, set to a value it must decline (or,
/// for the fields it ignores, one it must take): the frame fares exactly as on the
/// general path.
#[test]
fn frames_the_one_pass_path_declines_fare_as_on_the_general_path() {
    let t0 = Instant::now();
    let set = |at: usize, bytes: &'static [u8]| move |f: &mut [u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
    type Change = Box<dyn Fn(&mut [u8])>;
    let changes: Vec<(&str, Change, bool)> = vec![
        ("none", Box::new(|_: &mut [u8]| {}), true),
        ("ethertype ARP", Box::new(set(12, &[0x08, 0x06])), false),
        ("ethertype high byte", Box::new(set(12, &[0x18, 0x00])), false),
        ("version 6", Box::new(set(14, &[0x65])), false),
        ("header length 24", Box::new(set(14, &[0x46])), false),
        ("TOS", Box::new(set(15, &[0xb8])), true),
        ("more fragments", Box::new(|f: &mut [u8]| f[20] |= 0x20), false),
        ("offset high bits", Box::new(|f: &mut [u8]| f[20] |= 0x01), false),
        ("offset low byte", Box::new(set(21, &[0x08])), false),
        ("DF clear", Box::new(|f: &mut [u8]| f[20] &= !0x40), true),
        ("TTL 1", Box::new(set(22, &[1])), true),
        ("protocol UDP", Box::new(set(23, &[17])), false),
        ("protocol 0x106", Box::new(set(22, &[1, 6])), true),
        ("source broadcast", Box::new(set(26, &[255; 4])), false),
        ("source subnet broadcast", Box::new(set(26, &[198, 18, 0, 255])), false),
        ("source multicast", Box::new(set(26, &[224, 0, 0, 1])), false),
        ("source multicast top", Box::new(set(26, &[239, 255, 255, 255])), false),
        ("source 240/4", Box::new(set(26, &[240, 0, 0, 1])), false),
        ("source unspecified", Box::new(set(26, &[0; 4])), false),
        ("destination subnet broadcast", Box::new(set(30, &[198, 18, 0, 255])), false),
        ("destination broadcast", Box::new(set(30, &[255; 4])), false),
        ("destination elsewhere", Box::new(set(30, &[198, 18, 0, 3])), false),
    ];
    for (name, change, taken) in &changes {
        let (fast, hits) = receive_changed(true, t0, change);
        let (general, _) = receive_changed(false, t0, change);
        assert_eq!(fast, general, "{name}");
        assert_eq!(hits, u64::from(*taken), "{name}");
    }
}

/// A data segment in a frame with bytes after its datagram (Ethernet padding, or
/// anything a sender leaves there): the one-pass path takes it and hands on only
/// the datagram's payload, as the general path does.
#[test]
fn bytes_after_the_datagram_are_not_payload() {
    let t0 = Instant::now();
    let run = |fast_rx: bool| {
        let (mut w, mut f) = open_with_segment(fast_rx, t0);
        f.extend_from_slice(&[0xa5; 7]);
        deliver(&mut w, t0, f)
    };
    let (fast, hits) = run(true);
    assert_eq!(hits, 1);
    assert_eq!(fast, run(false).0);
    assert_eq!(fast.last().unwrap(), &format!("read {:?}", b"xyz".to_vec()));
}

/// A segment of a known connection whose data offset points past the end of the
/// datagram is dropped as malformed (found by `arbitrary_frames_never_panic`).
#[test]
fn a_data_offset_past_the_segment_is_malformed() {
    let now = Instant::now();
    let mut w = World::new(now, true, false);
    w.b.tcp_listen(80, 4).unwrap();
    w.ca = Some(w.a.tcp_connect(now, 0, SocketAddrV4::new(IP_B, 80)).unwrap());
    w.run(&mut keep);
    w.a.tcp_send(w.ca.unwrap(), Bytes::from_static(b"x")).unwrap();
    let mut sent = None;
    w.run(&mut |_, f| {
        sent.get_or_insert(f);
        vec![]
    });
    let mut f = sent.expect("a data segment");
    for offset in [8u8, 15] {
        // A 20-byte header and one data byte, the data offset saying 32 or 60.
        f[ETH_LEN + IP_LEN + 12] = offset << 4;
        let tcp = &mut f[ETH_LEN + IP_LEN..];
        tcp[16..18].copy_from_slice(&[0, 0]);
        let c = !checksum::fold(checksum::combine(
            checksum::pseudo_header(IP_A, IP_B, IpProtocol::Tcp, tcp.len()),
            checksum::sum(tcp),
        ));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let before = w.b.stats().rx_malformed;
        w.b.receive(now, Bytes::from(f.clone()));
        assert_eq!(w.b.stats().rx_malformed, before + 1);
    }
}

/// Segments arriving while a `Readable` waits in the stack's queue add none; once
/// it is polled, the next segment brings another.
#[test]
fn one_readable_event_waits_at_a_time() {
    let now = Instant::now();
    let mut w = World::new(now, true, true);
    w.b.tcp_listen(80, 4).unwrap();
    let ca = w.a.tcp_connect(now, 0, SocketAddrV4::new(IP_B, 80)).unwrap();
    w.ca = Some(ca);
    w.run(&mut keep);
    let cb = w.cb.expect("accepted");
    let readable = |s: &mut Stack| std::iter::from_fn(|| s.poll_event()).filter(|e| *e == Event::Tcp(cb, TcpEvent::Readable)).count();
    for piece in [&b"one"[..], b"two", b"three"] {
        w.a.tcp_send(ca, Bytes::copy_from_slice(piece)).unwrap();
        while let Some(f) = w.a.poll_transmit(now) {
            w.b.receive(now, f);
        }
    }
    assert_eq!(readable(&mut w.b), 1);
    assert_eq!(w.read_b(), b"onetwothree");
    w.a.tcp_send(ca, Bytes::from_static(b"four")).unwrap();
    while let Some(f) = w.a.poll_transmit(now) {
        w.b.receive(now, f);
    }
    assert_eq!(readable(&mut w.b), 1);
}

/// The stack counts time from the `now` it was made with: its deadlines come back
/// as exactly the `Instant`s that arithmetic on `Instant`s gives, and a `now`
/// before that epoch counts as the epoch itself.
#[test]
fn deadlines_are_exact_instants_and_a_now_before_the_epoch_is_the_epoch() {
    let t0 = Instant::now();
    let mut a = stack(MAC_A, IP_A, t0, true, true);
    a.add_static_neighbor(IP_B, MAC_B);
    let rto = a.config().tcp.rto_initial;
    let start = t0 + Duration::new(2, 123_456_789);
    a.tcp_connect(start, 0, SocketAddrV4::new(IP_B, 80)).unwrap();
    assert!(a.poll_transmit(start).is_some(), "the SYN");
    assert_eq!(a.poll_at(), Some(start + rto));
    // A nanosecond early nothing happens; at the deadline the SYN goes again and
    // the backed-off timer is counted from then.
    let early = start + rto - Duration::from_nanos(1);
    a.handle_timeout(early);
    assert!(a.poll_transmit(early).is_none());
    a.handle_timeout(start + rto);
    assert!(a.poll_transmit(start + rto).is_some(), "the SYN again");
    assert_eq!(a.poll_at(), Some(start + rto + 2 * rto));

    // Driven a second before its epoch, a stack acts as at the epoch.
    let epoch = t0 + Duration::from_secs(1);
    let mut b = stack(MAC_B, IP_B, epoch, true, true);
    b.add_static_neighbor(IP_A, MAC_A);
    b.tcp_connect(t0, 0, SocketAddrV4::new(IP_A, 80)).unwrap();
    assert!(b.poll_transmit(t0).is_some(), "the SYN");
    assert_eq!(b.poll_at(), Some(epoch + rto));
}

/// `timeout_due(now)` must say exactly what `poll_at() <= now` says, around every
/// deadline: TCP's (counted in the stack's nanoseconds), ARP's (kept as
/// `Instant`s) and none, and for a `now` before the stack's epoch.
#[test]
fn timeout_due_answers_as_poll_at_does() {
    let t0 = Instant::now();
    let epoch = t0 + Duration::from_secs(1);
    let ns = Duration::from_nanos;
    // ARP retries sooner than the SYN's first retransmission.
    let mut config = StackConfig::new(MAC_A, IP_A);
    config.neighbor.retry_interval = Duration::from_millis(300);
    let mut a = Stack::new(config, epoch);
    let agree = |a: &mut Stack, now: Instant| {
        let expected = a.poll_at().is_some_and(|t| t <= now);
        assert_eq!(a.timeout_due(now), expected, "now {now:?}, poll_at {:?}", a.poll_at());
        expected
    };
    let probes = |a: &mut Stack, around: Instant| -> Vec<bool> {
        [t0, epoch, epoch + ns(1), around - ns(1), around, around + ns(1)].into_iter().map(|now| agree(a, now)).collect()
    };
    // No deadline at all.
    assert_eq!(a.poll_at(), None);
    assert_eq!(probes(&mut a, epoch + Duration::from_secs(5)), [false; 6]);
    // A TCP deadline: the SYN's retransmission, its neighbour known.
    a.add_static_neighbor(IP_B, MAC_B);
    let start = epoch + Duration::new(2, 5);
    a.tcp_connect(start, 0, SocketAddrV4::new(IP_B, 80)).unwrap();
    assert!(a.poll_transmit(start).is_some(), "the SYN");
    let syn_rto = a.poll_at().expect("the SYN's timer");
    assert_eq!(probes(&mut a, syn_rto), [false, false, false, false, true, true]);
    // An ARP deadline, earlier than TCP's: a connection to an unknown neighbour.
    let ip_c = Ipv4Addr::new(198, 18, 0, 3);
    a.tcp_connect(start, 0, SocketAddrV4::new(ip_c, 80)).unwrap();
    while a.poll_transmit(start).is_some() {}
    let arp = a.poll_at().expect("the ARP retry");
    assert!(arp < syn_rto, "ARP retries sooner than the SYN's RTO");
    assert_eq!(probes(&mut a, arp), [false, false, false, false, true, true]);
    // A stack whose epoch is `now` itself: tick 0 everywhere.
    let mut b = stack(MAC_B, IP_B, t0, true, true);
    b.add_static_neighbor(IP_A, MAC_A);
    b.tcp_connect(t0, 0, SocketAddrV4::new(IP_A, 80)).unwrap();
    assert!(b.poll_transmit(t0).is_some(), "the SYN");
    let rto = b.poll_at().unwrap();
    for now in [t0, t0 + ns(1), rto - ns(1), rto, rto + ns(1), t0] {
        agree(&mut b, now);
    }
}

impl World {
    /// Moves frames both ways until both stacks are quiet; events are left alone.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(f) = self.a.poll_transmit(self.now) {
                self.b.receive(self.now, f);
                moved = true;
            }
            while let Some(f) = self.b.poll_transmit(self.now) {
                self.a.receive(self.now, f);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the stacks never went quiet");
    }

    /// `n` connections from a to b's port 80, accepted: (a's handle, b's handle).
    fn connect(&mut self, n: usize) -> Vec<(ConnHandle, ConnHandle)> {
        let l = self.b.tcp_listen(80, 8).unwrap();
        let ca: Vec<ConnHandle> =
            (0..n).map(|_| self.a.tcp_connect(self.now, 0, SocketAddrV4::new(IP_B, 80)).unwrap()).collect();
        self.pump();
        let mut pairs = Vec::new();
        while let Some(ev) = self.b.poll_event() {
            assert_eq!(ev, Event::AcceptReady(l));
            let (cb, remote) = self.b.tcp_accept(l).unwrap();
            let &ca = ca.iter().find(|&&c| self.a.tcp(c).unwrap().local() == remote).unwrap();
            pairs.push((ca, cb));
        }
        assert_eq!(pairs.len(), n);
        while self.a.poll_event().is_some() {}
        pairs
    }
}

fn drain_events(s: &mut Stack) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).take(1000).collect()
}

/// A connection's events come out together, in the order of its life, from the
/// place in the queue it took with its first; UDP events keep their place among
/// them.
#[test]
fn a_connection_is_queued_once_with_all_its_events() {
    let now = Instant::now();
    let mut w = World::new(now, true, true);
    let pairs = w.connect(2);
    let ((a1, b1), (a2, b2)) = (pairs[0], pairs[1]);
    let u = w.b.udp_bind(53).unwrap();
    let ua = w.a.udp_bind(0).unwrap();
    w.a.tcp_send(a1, Bytes::from_static(b"one")).unwrap();
    w.pump();
    w.a.udp_send_to(now, ua, SocketAddrV4::new(IP_B, 53), b"datagram").unwrap();
    w.pump();
    w.a.tcp_send(a2, Bytes::from_static(b"two")).unwrap();
    w.pump();
    // More for the first connection: merged into its waiting Readable, and its
    // FIN joins it there, ahead of the second connection.
    w.a.tcp_send(a1, Bytes::from_static(b"more")).unwrap();
    w.a.tcp_shutdown(a1).unwrap();
    w.pump();
    assert_eq!(
        drain_events(&mut w.b),
        [
            Event::Tcp(b1, TcpEvent::Readable),
            Event::Tcp(b1, TcpEvent::PeerClosed),
            Event::UdpReadable(u),
            Event::Tcp(b2, TcpEvent::Readable),
        ]
    );
    // Taken: the next segment queues the connection again, behind what came since.
    w.b.udp_recv_from(u).unwrap();
    w.a.udp_send_to(now, ua, SocketAddrV4::new(IP_B, 53), b"again").unwrap();
    w.pump();
    w.a.tcp_send(a2, Bytes::from_static(b"three")).unwrap();
    w.pump();
    assert_eq!(drain_events(&mut w.b), [Event::UdpReadable(u), Event::Tcp(b2, TcpEvent::Readable)]);
    w.a.tcp_send(a2, Bytes::from_static(b"four")).unwrap();
    w.pump();
    w.b.udp_recv_from(u).unwrap();
    w.a.udp_send_to(now, ua, SocketAddrV4::new(IP_B, 53), b"and again").unwrap();
    w.pump();
    assert_eq!(drain_events(&mut w.b), [Event::Tcp(b2, TcpEvent::Readable), Event::UdpReadable(u)]);
}

/// A connection that still has events after one was taken keeps its place at the
/// front of the queue, and calls into it meanwhile queue it no second time.
#[test]
fn a_connection_with_events_left_keeps_its_single_place() {
    let now = Instant::now();
    let mut w = World::new(now, true, true);
    let pairs = w.connect(2);
    let ((a1, b1), (a2, b2)) = (pairs[0], pairs[1]);
    w.a.tcp_send(a1, Bytes::from_static(b"x")).unwrap();
    w.a.tcp_shutdown(a1).unwrap();
    w.pump();
    assert_eq!(w.b.poll_event(), Some(Event::Tcp(b1, TcpEvent::Readable)));
    // b1 is read and answered (each call passes by the event queue), and b2 gets
    // data: b1's PeerClosed still comes first, once.
    let mut read = Vec::new();
    w.b.tcp_recv_all(b1, |d| read.extend_from_slice(&d)).unwrap();
    assert_eq!(read, b"x");
    w.b.tcp_send(b1, Bytes::from_static(b"y")).unwrap();
    w.a.tcp_send(a2, Bytes::from_static(b"z")).unwrap();
    w.pump();
    assert_eq!(
        drain_events(&mut w.b),
        [Event::Tcp(b1, TcpEvent::PeerClosed), Event::Tcp(b2, TcpEvent::Readable)]
    );
}

/// Events waiting for a connection the application then gives up are not handed
/// out, whether it is still there or already freed; the freed connection's slot
/// serves a new connection, whose events are.
#[test]
fn a_released_connection_says_nothing_more_and_its_slot_serves_the_next() {
    let now = Instant::now();
    let mut w = World::new(now, true, true);
    let pairs = w.connect(2);
    let ((a1, b1), (a2, b2)) = (pairs[0], pairs[1]);
    w.a.tcp_send(a1, Bytes::from_static(b"unread")).unwrap();
    w.a.tcp_send(a2, Bytes::from_static(b"read")).unwrap();
    w.pump();
    // b1's Readable waits at the front of the queue; b gives b1 up (its RST is not
    // out yet, so it is still there).
    w.b.tcp_abort(b1).unwrap();
    assert_eq!(drain_events(&mut w.b), [Event::Tcp(b2, TcpEvent::Readable)]);
    // Again with b2, which is freed once its RST is out: its queue entry stays
    // behind, stale.
    w.a.tcp_send(a2, Bytes::from_static(b"unread")).unwrap();
    w.pump();
    w.b.tcp_abort(b2).unwrap();
    w.pump();
    assert_eq!(w.b.tcp_connection_count(), 0);
    w.a.tcp_listen(81, 2).unwrap();
    let b3 = w.b.tcp_connect(now, 0, SocketAddrV4::new(IP_A, 81)).unwrap();
    let b4 = w.b.tcp_connect(now, 0, SocketAddrV4::new(IP_A, 81)).unwrap();
    let mut slots = [b3.slot(), b4.slot()];
    slots.sort_unstable();
    assert_eq!(slots, [b1.slot().min(b2.slot()), b1.slot().max(b2.slot())], "the test wants both slots reused");
    w.pump();
    let events = drain_events(&mut w.b);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.contains(&Event::Tcp(b3, TcpEvent::Connected)), "{events:?}");
    assert!(events.contains(&Event::Tcp(b4, TcpEvent::Connected)), "{events:?}");
    let a_events = drain_events(&mut w.a);
    assert!(a_events.contains(&Event::Tcp(a1, TcpEvent::Error(TcpError::Reset))), "{a_events:?}");
    assert!(a_events.contains(&Event::Tcp(a2, TcpEvent::Error(TcpError::Reset))), "{a_events:?}");
}

#[test]
fn ipv4_headers_match_the_wire_emitters() {
    let now = Instant::now();
    for caps in [ChecksumCaps::all(), ChecksumCaps::offload()] {
        let mut config = StackConfig::new(MAC_A, IP_A);
        config.checksums = caps;
        let mut s = Stack::new(config, now);
        for (dst, protocol, l4_len) in [(IP_B, IpProtocol::Tcp, 20), (IP_B, IpProtocol::Udp, 1472), (Ipv4Addr::BROADCAST, IpProtocol::Icmp, 0)] {
            let mut ours = vec![0xaa; ETH_LEN + IP_LEN];
            s.emit_ipv4_headers(&mut ours, dst, protocol, l4_len);
            let mut theirs = vec![0x55; ETH_LEN + IP_LEN + l4_len];
            let eth = EthernetRepr { src: MAC_A, dst: EthernetAddress::BROADCAST, ethertype: EtherType::Ipv4 };
            eth.emit(&mut EthernetFrame::new_unchecked(&mut theirs[..]));
            let ip = Ipv4Repr {
                src_addr: IP_A,
                dst_addr: dst,
                protocol,
                payload_len: l4_len,
                ttl: DEFAULT_TTL,
                ident: s.ip_ident,
                dont_fragment: true,
            };
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut theirs[ETH_LEN..]), &caps);
            assert_eq!(ours[..], theirs[..ETH_LEN + IP_LEN]);
        }
    }
}

/// The borrowed-data calls answer as the calls that move `Bytes` do: partial
/// sends and WouldBlock on a full send buffer, WouldBlock with nothing to read or
/// no room to read into, Finished after the peer's FIN, InvalidState after close,
/// BadHandle for a released connection.
#[test]
fn the_borrowed_data_calls_answer_as_the_bytes_calls() {
    let t0 = Instant::now();
    let mut w = World::new(t0, true, true);
    w.io = Io::Borrowed;
    w.b.tcp_listen(80, 4).unwrap();
    let ca = w.a.tcp_connect(t0, 0, SocketAddrV4::new(IP_B, 80)).unwrap();
    w.ca = Some(ca);
    w.run(&mut keep);
    let cb = w.cb.expect("accepted");
    let would_block = Err(StackError::Tcp(TcpError::WouldBlock));

    // Nothing to read yet; no room to read into.
    assert_eq!(w.b.tcp_recv_slice(cb, &mut [0u8; 8]), would_block);
    assert_eq!(w.b.tcp_recv_borrowed(cb, |_| panic!("nothing to lend")), would_block);
    w.a.tcp_send_slice(ca, b"hello").unwrap();
    w.run(&mut keep);
    assert_eq!(w.b.tcp_recv_slice(cb, &mut []), would_block);
    let mut two = [0u8; 2];
    assert_eq!(w.b.tcp_recv_slice(cb, &mut two), Ok(2));
    assert_eq!(&two, b"he");
    let mut lent = Vec::new();
    assert_eq!(w.b.tcp_recv_borrowed(cb, |d| lent.extend_from_slice(d)), Ok(3));
    assert_eq!(lent, b"llo");

    // A full send buffer (b does not read, so the window closes): the send that
    // fills it is partial, the next one blocks.
    let big = vec![7u8; 100_000];
    let mut queued = 0;
    let blocked = loop {
        match w.a.tcp_send_slice(ca, &big) {
            Ok(n) if n == big.len() => queued += n,
            Ok(n) => break (queued + n, w.a.tcp_send_slice(ca, b"x")),
            Err(e) => panic!("send: {e}"),
        }
        w.run(&mut keep);
    };
    assert_eq!(blocked.1, would_block);
    assert!(blocked.0 >= TcpConfig::default().send_buffer, "{} bytes queued", blocked.0);
    assert_eq!(w.a.tcp_send_slice(ca, b""), Ok(0), "an empty send on a full buffer takes nothing");

    // Everything arrives once b reads; then a's FIN: Finished.
    w.a.tcp_shutdown(ca).unwrap();
    assert_eq!(w.a.tcp_send_slice(ca, b"late"), Err(StackError::Tcp(TcpError::InvalidState)));
    let mut got = 0;
    for _ in 0..100 {
        w.run(&mut keep);
        got += w.read_b().len();
        if got == blocked.0 {
            break;
        }
    }
    w.run(&mut keep);
    assert_eq!(got, blocked.0);
    assert_eq!(w.b.tcp_recv_slice(cb, &mut two), Err(StackError::Tcp(TcpError::Finished)));
    assert_eq!(w.b.tcp_recv_borrowed(cb, |_| panic!("nothing to lend")), Err(StackError::Tcp(TcpError::Finished)));

    // b closes; once both sides are done the handles are released.
    w.b.tcp_close(cb).unwrap();
    w.run(&mut keep);
    assert_eq!(w.b.tcp_recv_slice(cb, &mut two), Err(StackError::BadHandle));
    assert_eq!(w.b.tcp_send_slice(cb, b"x"), Err(StackError::BadHandle));
}
