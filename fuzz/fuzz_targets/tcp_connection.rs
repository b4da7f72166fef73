//! `tcp_connection`: one `tcp::Connection` driven by an arbitrary sequence of events.
//!
//! The connection starts in SYN-SENT (`Connection::connect`) or SYN-RECEIVED
//! (`Connection::accept` of a generated SYN), with a generated configuration. Then
//! each event is one of: a segment from the peer (sequence and acknowledgment
//! numbers relative to what the connection has acknowledged and sent, or absolute;
//! any flags, window and options; a payload), time passing, the application sending,
//! receiving, closing or aborting. After every event the harness drains
//! `poll_transmit` and `poll_event` and checks:
//!
//! * every segment: `repr.payload` empty, payload within `send_mss()` (itself within
//!   the configured MSS), payload plus TCP options within the MSS in force (ours
//!   and the one on the peer's SYN), the header emits and parses back to itself, ACK numbers
//!   never go backwards, the window field within the receive buffer, SYNs at the
//!   ISS with our MSS and no data, data at the right place of what the application
//!   queued and byte for byte what it queued, FIN only after `close`, right after the
//!   queued data;
//! * `poll_transmit` ends (no endless stream of segments);
//! * events: nothing after `Closed`, `Connected` at most once, an `Error` followed by
//!   `Closed`, CLOSED has no timer left;
//! * `recv(max)`: never more than `max` bytes, never empty data, and the bytes are
//!   the peer's stream in order (the peer's payload bytes are a function of their
//!   sequence number, so reassembly errors show);
//! * `send`: takes at most what was offered and what `send_capacity` said;
//! * after `handle_timeout(now)` and draining, no deadline at or before `now`.

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use demi_fuzz::{base_instant, seq_diff, seq_pattern, seq_payload, stream_payload};
use demi_net_stack::tcp::{CongestionControl, Connection, State, TcpConfig, TcpError, TcpEvent};
use demi_net_stack::wire::{ChecksumCaps, SeqNumber, TcpFlags, TcpPacket, TcpRepr};
use libfuzzer_sys::fuzz_target;

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
const ISS: u32 = 0xffff_f000; // wraps around 2^32 soon after the start
const PEER_ISN: u32 = 0x7fff_ff00;
const APP_SALT: u8 = 0x42;
const MAX_SEGMENTS_PER_DRAIN: usize = 50_000;

#[derive(Arbitrary, Debug)]
struct Input {
    config: Cfg,
    open: Open,
    events: Vec<Ev>,
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    mss: u16,
    send_buffer: u32,
    recv_buffer: u32,
    window_scaling: bool,
    ack_delay_ms: Option<u8>,
    nagle: bool,
    max_retransmits: u8,
    max_syn_retransmits: u8,
    rto_min_ms: u16,
    rto_initial_extra_ms: u16,
    rto_max_extra_ms: u16,
    time_wait_ms: u16,
    congestion: u8,
    fast_retransmit: bool,
    sack: bool,
    timestamps: bool,
}

impl Cfg {
    fn to_config(&self) -> TcpConfig {
        let rto_min = Duration::from_millis(1 + u64::from(self.rto_min_ms % 1000));
        let rto_initial =
            rto_min + Duration::from_millis(u64::from(self.rto_initial_extra_ms % 3000));
        let rto_max = rto_initial + Duration::from_millis(u64::from(self.rto_max_extra_ms));
        // Field by field over the defaults, so that a new field does not break the
        // build (it is fuzzed at its default until it is added here).
        let mut c = TcpConfig::default();
        c.mss = 64 + self.mss % 9000;
        c.send_buffer = 1 + (self.send_buffer as usize % (300 * 1024));
        c.recv_buffer = 1 + (self.recv_buffer as usize % (300 * 1024));
        c.window_scaling = self.window_scaling;
        c.rto_initial = rto_initial;
        c.rto_min = rto_min;
        c.rto_max = rto_max;
        c.max_retransmits = u32::from(self.max_retransmits % 16);
        c.max_syn_retransmits = u32::from(self.max_syn_retransmits % 8);
        c.time_wait = Duration::from_millis(1 + u64::from(self.time_wait_ms));
        c.ack_delay = self
            .ack_delay_ms
            .map(|ms| Duration::from_millis(u64::from(ms % 200)));
        c.nagle = self.nagle;
        c.congestion = match self.congestion % 3 {
            0 => CongestionControl::NewReno,
            1 => CongestionControl::Cubic,
            _ => CongestionControl::None,
        };
        c.fast_retransmit = self.fast_retransmit;
        c.sack = self.sack;
        c.timestamps = self.timestamps;
        c
    }
}

#[derive(Arbitrary, Debug)]
enum Open {
    Connect,
    Accept(Seg),
}

/// A sequence number: relative to a base the harness tracks, or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SeqSel {
    Rel(i16),
    Far(i32),
    Abs(u32),
}

impl SeqSel {
    fn at(self, base: SeqNumber) -> SeqNumber {
        match self {
            SeqSel::Rel(d) => SeqNumber(base.0.wrapping_add(d as i32 as u32)),
            SeqSel::Far(d) => SeqNumber(base.0.wrapping_add(d as u32)),
            SeqSel::Abs(v) => SeqNumber(v),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Seg {
    /// Relative to the connection's RCV.NXT as it last told us (its last ACK).
    seq: SeqSel,
    /// Relative to the highest sequence number the connection sent.
    ack: Option<SeqSel>,
    flags: u8,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    sack_permitted: bool,
    sack: [Option<(SeqSel, u16)>; 3],
    timestamp: Option<(u32, u32)>,
    payload_len: u16,
}

#[derive(Arbitrary, Debug)]
enum Ev {
    Segment(Seg),
    /// The peer acknowledges everything sent so far with an open window: keeps the
    /// fuzzer's segments relevant by letting the connection make progress.
    AckAll(u16),
    /// The peer sends the next in-order data.
    InOrder {
        len: u16,
        fin: bool,
    },
    AdvanceTime(u16),
    AdvanceToTimer,
    AppSend(u16),
    AppRecv(u16),
    Close,
    Abort,
}

struct Harness {
    conn: Connection,
    config: TcpConfig,
    now: Instant,
    iss: SeqNumber,
    /// The last ACK number the connection sent (its RCV.NXT then), once synchronized.
    peer_base: SeqNumber,
    /// The stream position of the next byte `recv` returns (set by the first ACK).
    read_seq: Option<SeqNumber>,
    /// The highest sequence number the connection has sent (SND.MAX as seen).
    snd_max: SeqNumber,
    /// The MSS option of the peer's SYN, once the connection took one.
    peer_mss: Option<Option<u16>>,
    /// Bytes the application queued.
    queued: u64,
    close_called: bool,
    fin_sent_at: Option<SeqNumber>,
    connected: bool,
    error_seen: bool,
    closed_seen: bool,
}

impl Harness {
    fn repr_of(&self, s: &Seg) -> (TcpRepr<'static>, Vec<u8>) {
        let seq = s.seq.at(self.peer_base);
        let ack_base = self.snd_max;
        let mut flags = TcpFlags::from_bits(s.flags);
        flags.remove(TcpFlags::ACK);
        let ack_number = s.ack.map(|a| a.at(ack_base));
        if ack_number.is_some() {
            flags.insert(TcpFlags::ACK);
        }
        let mut sack_ranges = [None; 3];
        for (slot, block) in sack_ranges.iter_mut().zip(s.sack.iter()) {
            *slot = block.map(|(left, len)| {
                let l = left.at(ack_base);
                (l.0, l.0.wrapping_add(u32::from(len)))
            });
        }
        let payload = seq_payload(seq, usize::from(s.payload_len % 9000));
        let repr = TcpRepr {
            src_port: REMOTE.port(),
            dst_port: LOCAL.port(),
            seq_number: seq,
            ack_number,
            window_len: s.window,
            flags,
            max_seg_size: s.mss,
            window_scale: s.wscale,
            sack_permitted: s.sack_permitted,
            sack_ranges,
            timestamp: s.timestamp,
            payload: &[],
        };
        (repr, payload)
    }

    /// Feeds a segment the way the stack would: the header goes through the wire
    /// layer first (emit, then parse), so the connection sees only what a real
    /// segment can say.
    fn feed(&mut self, repr: TcpRepr<'_>, payload: Vec<u8>) {
        let caps = ChecksumCaps::all();
        let (src, dst) = (*REMOTE.ip(), *LOCAL.ip());
        let full = TcpRepr {
            payload: &payload,
            ..repr
        };
        let mut buf = vec![0u8; full.buffer_len()];
        full.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, &caps);
        let bytes = Bytes::from(buf);
        let packet =
            TcpPacket::new_checked(&bytes[..]).expect("harness: emitted segment is truncated");
        let parsed = TcpRepr::parse(&packet, src, dst, &caps)
            .expect("harness: emitted segment does not parse");
        let data = bytes.slice_ref(parsed.payload);
        let before = self.conn.state();
        self.conn.handle_segment(self.now, &parsed, data);
        // The SYN that took the connection out of SYN-SENT set the peer's MSS.
        if before == State::SynSent
            && parsed.flags.contains(TcpFlags::SYN)
            && matches!(
                self.conn.state(),
                State::SynReceived | State::Established | State::FinWait1
            )
        {
            self.peer_mss = Some(parsed.max_seg_size);
        }
    }

    /// The MSS in force (RFC 9293 §3.7.1): ours and the peer's, 536 without an option
    /// from the peer, the peer's raised to 64 as the connection documents. Payload and
    /// TCP options together stay within it.
    fn effective_mss(&self) -> Option<usize> {
        let peer = self.peer_mss?.map_or(536, usize::from).max(64);
        Some(peer.min(usize::from(self.config.mss)))
    }

    /// Drains segments and events and checks them; then the state invariants.
    fn drain(&mut self) {
        let mut count = 0;
        while let Some(seg) = self.conn.poll_transmit(self.now) {
            count += 1;
            assert!(
                count <= MAX_SEGMENTS_PER_DRAIN,
                "poll_transmit does not run dry"
            );
            self.check_segment(&seg);
        }
        while let Some(event) = self.conn.poll_event() {
            assert!(!self.closed_seen, "event {event:?} after Closed");
            match event {
                TcpEvent::Connected => {
                    assert!(!self.connected, "Connected twice");
                    self.connected = true;
                }
                TcpEvent::Error(e) => {
                    assert!(
                        matches!(e, TcpError::Reset | TcpError::Refused | TcpError::TimedOut),
                        "unexpected error event {e:?}"
                    );
                    self.error_seen = true;
                }
                TcpEvent::Closed => {
                    self.closed_seen = true;
                    assert_eq!(
                        self.conn.state(),
                        State::Closed,
                        "Closed event outside CLOSED"
                    );
                }
                TcpEvent::Readable | TcpEvent::Writable | TcpEvent::PeerClosed => {}
            }
        }
        if self.error_seen {
            assert!(self.closed_seen, "Error without Closed after it");
        }
        if self.conn.state() == State::Closed {
            assert_eq!(self.conn.poll_at(), None, "a timer armed in CLOSED");
        }
        let mss = self.conn.send_mss();
        assert!(
            mss >= 1 && mss <= usize::from(self.config.mss),
            "send_mss {mss} outside 1..={}",
            self.config.mss
        );
    }

    fn check_segment(&mut self, seg: &demi_net_stack::tcp::Segment) {
        let repr = seg.repr;
        assert!(repr.payload.is_empty(), "Segment::repr carries a payload");
        let len = seg.payload.len();
        assert!(
            len <= self.conn.send_mss(),
            "payload {len} over send_mss {}",
            self.conn.send_mss()
        );
        assert!(
            len <= usize::from(self.config.mss),
            "payload {len} over the configured MSS"
        );
        // RFC 9293 §3.7.1 / RFC 6691: options count against the MSS, so data plus
        // options never make a segment larger than the peer (or our MTU) allows.
        if len > 0 {
            let mss = self
                .effective_mss()
                .expect("data before the peer's SYN was taken");
            assert!(
                len + repr.options_len() <= mss,
                "payload {len} + {} option bytes over the MSS {mss} (send_mss {}, timestamps: {:?}, SACK blocks: {:?})",
                repr.options_len(),
                self.conn.send_mss(),
                repr.timestamp,
                repr.sack_ranges
            );
        }
        assert_eq!(
            repr.flags.contains(TcpFlags::ACK),
            repr.ack_number.is_some(),
            "ACK flag vs ack_number"
        );
        assert_eq!(
            (repr.src_port, repr.dst_port),
            (LOCAL.port(), REMOTE.port()),
            "ports"
        );

        // The segment survives the wire: emit and parse back.
        let caps = ChecksumCaps::all();
        let mut buf = vec![0u8; seg.buffer_len()];
        seg.emit(&mut buf, *LOCAL.ip(), *REMOTE.ip(), &caps);
        let pkt = TcpPacket::new_checked(&buf[..]).expect("emitted segment is truncated");
        let parsed = TcpRepr::parse(&pkt, *LOCAL.ip(), *REMOTE.ip(), &caps)
            .expect("emitted segment does not parse");
        // Emitting drops SACK blocks that do not fit in 40 bytes of options.
        let blocks = parsed.sack_ranges.iter().flatten().count();
        assert!(
            repr.sack_ranges
                .iter()
                .flatten()
                .take(blocks)
                .eq(parsed.sack_ranges.iter().flatten()),
            "segment SACK blocks round trip"
        );
        assert_eq!(
            TcpRepr {
                payload: &[],
                sack_ranges: [None; 3],
                ..parsed
            },
            TcpRepr {
                sack_ranges: [None; 3],
                ..repr
            },
            "segment header round trip"
        );
        assert_eq!(
            parsed.payload,
            &seg.payload.to_bytes()[..],
            "segment payload round trip"
        );

        if repr.flags.contains(TcpFlags::RST) {
            assert_eq!(len, 0, "RST with data");
            return;
        }
        assert!(
            !self.closed_seen,
            "a segment other than RST after Closed: {repr:?}"
        );
        if let Some(ack) = repr.ack_number {
            if self.read_seq.is_none() {
                self.read_seq = Some(ack);
            } else {
                assert!(
                    seq_diff(ack, self.peer_base) >= 0,
                    "ACK went backwards: {ack:?} after {:?}",
                    self.peer_base
                );
            }
            self.peer_base = ack;
        }
        let seq = repr.seq_number;
        if repr.flags.contains(TcpFlags::SYN) {
            assert_eq!(seq, self.iss, "SYN not at the ISS");
            assert_eq!(len, 0, "data on our SYN");
            assert!(!repr.flags.contains(TcpFlags::FIN), "SYN+FIN");
            assert_eq!(
                repr.max_seg_size,
                Some(self.config.mss),
                "SYN without our MSS"
            );
            assert!(
                usize::from(repr.window_len) <= self.config.recv_buffer,
                "SYN window over the buffer"
            );
        } else {
            assert!(
                usize::from(repr.window_len) <= self.config.recv_buffer,
                "window field over the buffer"
            );
            // Data and FIN: at the right place of what the application queued.
            let offset = seq_diff(seq, self.iss + 1);
            assert!(
                offset >= 0,
                "segment {seq:?} before ISS+1 {:?}",
                self.iss + 1
            );
            let offset = offset as u64;
            // A bare ACK may sit just past our FIN; data never goes past what was queued.
            let limit = if len == 0 && self.fin_sent_at.is_some() {
                self.queued + 1
            } else {
                self.queued
            };
            assert!(
                offset + len as u64 <= limit,
                "segment [{offset}, +{len}) beyond the {} bytes queued",
                self.queued
            );
            if len > 0 {
                let expected = stream_payload(offset, len, APP_SALT);
                assert!(
                    seg.payload.to_bytes()[..] == expected[..],
                    "sent bytes differ from what was queued at offset {offset}"
                );
            }
            if repr.flags.contains(TcpFlags::FIN) {
                assert!(self.close_called, "FIN without close");
                assert_eq!(
                    offset + len as u64,
                    self.queued,
                    "FIN not right after the queued data"
                );
                let fin_seq = seq + len;
                if let Some(prev) = self.fin_sent_at {
                    assert_eq!(prev, fin_seq, "FIN moved");
                }
                self.fin_sent_at = Some(fin_seq);
            }
        }
        let end = seq + seg.segment_len();
        if seq_diff(end, self.snd_max) > 0 {
            self.snd_max = end;
        }
    }

    fn advance(&mut self, to: Instant) {
        self.now = self.now.max(to);
        if self.conn.poll_at().is_some_and(|at| at <= self.now) {
            self.conn.handle_timeout(self.now);
            self.drain();
            if let Some(at) = self.conn.poll_at() {
                assert!(
                    at > self.now,
                    "deadline {:?} not after now after handle_timeout",
                    at - self.now
                );
            }
        }
    }

    fn app_send(&mut self, len: u16) {
        let len = usize::from(len) * 4;
        let capacity = self.conn.send_capacity();
        let data = Bytes::from(stream_payload(self.queued, len, APP_SALT));
        match self.conn.send(data) {
            Ok(n) => {
                assert!(n <= len, "send took {n} of {len}");
                assert!(
                    n <= capacity || len == 0,
                    "send took {n} with capacity {capacity}"
                );
                assert!(n > 0 || len == 0, "send took nothing without WouldBlock");
                self.queued += n as u64;
            }
            Err(TcpError::WouldBlock) => {
                assert_eq!(capacity, 0, "WouldBlock with capacity {capacity}")
            }
            Err(_) => {}
        }
    }

    fn app_recv(&mut self, max: u16) {
        let max = usize::from(max);
        let available = self.conn.recv_available();
        match self.conn.recv(max) {
            Ok(data) => {
                assert!(!data.is_empty(), "recv returned no data");
                assert!(
                    data.len() <= max,
                    "recv({max}) returned {} bytes",
                    data.len()
                );
                assert!(
                    data.len() <= available,
                    "recv returned {} with {available} available",
                    data.len()
                );
                let at = self.read_seq.expect("data before any ACK was sent");
                for (i, &b) in data.iter().enumerate() {
                    let s = at.0.wrapping_add(i as u32);
                    assert_eq!(
                        b,
                        seq_pattern(s),
                        "received byte at seq {s:#x} differs from what the peer sent"
                    );
                }
                self.read_seq = Some(at + data.len());
            }
            Err(TcpError::WouldBlock) => {}
            Err(_) => {}
        }
    }
}

fuzz_target!(|input: Input| {
    let config = input.config.to_config();
    let now = base_instant();
    let (conn, peer_base, read_seq, peer_mss) = match &input.open {
        Open::Connect => (
            Connection::connect(&config, LOCAL, REMOTE, SeqNumber(ISS), now),
            SeqNumber(PEER_ISN),
            None,
            None,
        ),
        Open::Accept(s) => {
            let seq = s.seq.at(SeqNumber(PEER_ISN));
            let mut flags = TcpFlags::from_bits(s.flags);
            flags.remove(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN);
            flags.insert(TcpFlags::SYN);
            let syn = TcpRepr {
                src_port: REMOTE.port(),
                dst_port: LOCAL.port(),
                seq_number: seq,
                ack_number: None,
                window_len: s.window,
                flags,
                max_seg_size: s.mss,
                window_scale: s.wscale,
                sack_permitted: s.sack_permitted,
                timestamp: s.timestamp,
                ..TcpRepr::default()
            };
            (
                Connection::accept(&config, LOCAL, REMOTE, &syn, SeqNumber(ISS), now),
                seq + 1,
                Some(seq + 1),
                Some(s.mss),
            )
        }
    };
    let mut h = Harness {
        conn,
        config,
        now,
        iss: SeqNumber(ISS),
        peer_base,
        read_seq,
        peer_mss,
        snd_max: SeqNumber(ISS),
        queued: 0,
        close_called: false,
        fin_sent_at: None,
        connected: false,
        error_seen: false,
        closed_seen: false,
    };
    h.drain();

    for event in input.events.iter().take(256) {
        match event {
            Ev::Segment(s) => {
                let (repr, payload) = h.repr_of(s);
                h.feed(repr, payload);
            }
            Ev::AckAll(window) => {
                let repr = TcpRepr {
                    src_port: REMOTE.port(),
                    dst_port: LOCAL.port(),
                    seq_number: h.peer_base,
                    ack_number: Some(h.snd_max),
                    window_len: window | 0x100,
                    flags: TcpFlags::ACK,
                    ..TcpRepr::default()
                };
                h.feed(repr, Vec::new());
            }
            Ev::InOrder { len, fin } => {
                let seq = h.peer_base;
                let mut flags = TcpFlags::ACK;
                if *fin {
                    flags.insert(TcpFlags::FIN);
                }
                let repr = TcpRepr {
                    src_port: REMOTE.port(),
                    dst_port: LOCAL.port(),
                    seq_number: seq,
                    ack_number: Some(h.snd_max),
                    window_len: 0xffff,
                    flags,
                    ..TcpRepr::default()
                };
                h.feed(repr, seq_payload(seq, usize::from(*len % 4096)));
            }
            Ev::AdvanceTime(ms) => {
                let to = h.now + Duration::from_millis(u64::from(*ms));
                h.advance(to);
            }
            Ev::AdvanceToTimer => {
                if let Some(at) = h.conn.poll_at() {
                    h.advance(at);
                }
            }
            Ev::AppSend(len) => h.app_send(*len),
            Ev::AppRecv(max) => h.app_recv(*max),
            Ev::Close => {
                h.close_called = true;
                h.conn.close();
            }
            Ev::Abort => h.conn.abort(),
        }
        h.drain();
    }
});
