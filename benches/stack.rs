//! User-level TCP/IP stack benchmark: two demi `Stack`s over an in-memory link against
//! smoltcp (two sockets on one interface over its loopback device) and tokio over the
//! kernel's loopback, measured in the same process.
//!
//! Run with `cargo bench --bench stack` (under a minute); `DEMI_BENCH_QUICK=1` shrinks
//! every count so the run takes two or three seconds (the CI smoke check; its figures
//! mean little). Case names given as arguments select cases
//! (`cargo bench --bench stack -- bulk`). `DEMI_BENCH_CHECKSUMS=offload` makes both
//! user-level stacks trust the link instead of computing checksums in software
//! (the default, `software`, has both compute and verify every checksum).
//! `DEMI_BENCH_PROFILE=demi` (or `smoltcp`, `tokio`) runs only that side, 20 times,
//! printing each run's figure: for `perf record` / `valgrind --tool=callgrind`.
//!
//! Output: a header line describing the set-up, then one line per case:
//! `<case>: demi <v> <unit>, smoltcp <v> <unit>, tokio <v> <unit>, ratio_vs_smoltcp <x>, ratio_vs_tokio <x>`,
//! where a ratio reads "how many times better demi is" (> 1: demi better):
//! `other / demi` for latencies (ns) and `demi / other` for throughputs (MB/s,
//! 10^6 bytes per second).
//!
//! Set-up:
//! - demi: two `Stack`s (198.18.0.1 and 198.18.0.2, MTU 1500) driven in one thread
//!   by a tight loop that does what a link with a ring of buffers and the libOS
//!   driver do. Each host has 1024 link buffers of 256 bytes (a device ring's
//!   slots): the sending stack writes a frame that fits straight into the
//!   receiver's next free buffer (`poll_transmit_into`), which the receiving stack
//!   reads in place (`receive_slice`, copying a small payload into the
//!   connection's receive buffer); a larger frame (bulk data) comes out of
//!   `poll_transmit_into` as a `Bytes` and is moved, not copied, into the other's
//!   `receive`, which keeps slices of it as the received data. Nothing is copied by
//!   the link. Each stack's timers run when due (`timeout_due`); events are
//!   drained and acted on. Clock: `std::time::Instant::now()` once per loop turn.
//!   TCP: 256 KiB send and receive buffers, no delayed ACKs, no Nagle.
//! - smoltcp: one `Interface` (198.18.0.1/24, Ethernet) over smoltcp's own `Loopback`
//!   device, wrapped only to report an MTU of 1500 (1514-byte Ethernet frames) and
//!   the checksum setting; a listening socket and a client socket on that interface;
//!   256 KiB socket buffers, `set_nagle_enabled(false)`, `set_ack_delay(None)`. It is
//!   measured under two drivers and credited with the better one (both are printed):
//!   `poll`, its documented driver (`Interface::poll`, then the applications' calls;
//!   `poll` runs ingress then egress, so an ACK leaves before the application has
//!   seen the data: 4 frames per echo round trip), and `split`, demi's turn
//!   (`poll_ingress_single` until none is left, the applications, then `poll_egress`:
//!   2 frames per round trip, as demi sends). Clock: `smoltcp::time::Instant::now()`
//!   once per loop turn.
//! - Applications use each stack's own API. demi's readers (the echo client, the
//!   bulk receiver) look at everything readable in place with one
//!   `tcp_recv_borrowed`; its echo server copies through a buffer (`tcp_recv_slice`
//!   / `tcp_send_slice`, small writes copied into the send queue); its clients
//!   queue slices of one `'static` buffer (zero-copy, `Bytes::from_static`).
//!   smoltcp's server copies through a buffer (`recv_slice` / `send_slice`), its
//!   bulk sender `send_slice`s and its receiver consumes in place with
//!   `recv(|buf| ..)`.
//! - tokio: a `current_thread` runtime, `TcpListener` / `TcpStream` on 127.0.0.1
//!   with `TCP_NODELAY` (the kernel's loopback: MTU 64 KiB, offloaded checksums; it is
//!   the reference a user would otherwise use, not a like-for-like stack).
//! - Checksums: the same setting on both user-level stacks (see above).
//! - Each run builds fresh stacks / sockets, connects, does an unmeasured warm-up on
//!   the connection, then the measured phase. Per case: one warm-up run of each,
//!   then 7 rounds, each running every side once, rotating which goes first. A
//!   side's figure is the median of its rounds; a ratio is the median over rounds
//!   of the ratio within a round (the sides of a round run back to back, so a slow
//!   phase of the shared host, which lasts seconds, tends to hit all of them).
//!   Warm-up runs also check every byte received; measured echo runs check every
//!   echoed message, measured bulk runs count bytes only.
//!
//! Cases:
//! - `tcp_echo_rtt_64B`: one connection, 64-byte messages, one in flight; the client
//!   sends, the server echoes what it reads, the client reads all 64 bytes back and,
//!   in the same application step, sends the next message (an application's
//!   `loop { write; read }`; its ACK of the echo rides on that message). Median round
//!   trip in ns: round trips are timed in batches of 32, from one message's send to
//!   the send 32 messages later, one clock read per batch (a read per round trip
//!   would add ~25 ns to every side's figure); a run's figure is its median batch
//!   over 32, the case's the median over runs.
//! - `tcp_bulk_mtu1500`: one connection, a multi-MB one-direction transfer; timed from
//!   the first send until the receiving application has read the last byte.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

struct Config {
    reps: usize,
    quick: bool,
    /// Both user-level stacks compute and verify checksums (`true`) or trust the link.
    sw_checksums: bool,
    /// `DEMI_BENCH_PROFILE=<side>`: run only that side (for a profiler), no ratios.
    profile: Option<String>,
    /// Case-name filters from the command line; empty runs every case. Flags such as
    /// cargo's `--bench` are ignored.
    filters: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let sw_checksums = match std::env::var("DEMI_BENCH_CHECKSUMS").as_deref() {
            Ok("offload") | Ok("none") | Ok("trust") => false,
            Ok("software") | Ok("sw") | Ok("") | Err(_) => true,
            Ok(other) => panic!("DEMI_BENCH_CHECKSUMS={other}: expected `software` or `offload`"),
        };
        let filters = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        let profile = std::env::var("DEMI_BENCH_PROFILE").ok().filter(|v| !v.is_empty());
        let reps = if profile.is_some() {
            20
        } else if quick {
            3
        } else {
            7
        };
        Config { reps, quick, sw_checksums, profile, filters }
    }

    fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// A full-run count, or the quick-mode one.
    fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick.max(1)
        } else {
            full.max(1)
        }
    }
}

/// What a case measures.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// Ping-pong of `size`-byte messages: `warmup` unmeasured, then `count` measured.
    Echo { size: usize, warmup: usize, count: usize },
    /// `warmup` bytes unmeasured, then `bytes` measured, one direction.
    Bulk { warmup: usize, bytes: usize },
}

#[derive(Clone, Copy)]
enum Metric {
    /// ns per round trip (lower is better).
    LatencyNs,
    /// MB/s (higher is better).
    MBps,
}

impl Metric {
    fn unit(self) -> &'static str {
        match self {
            Metric::LatencyNs => "ns",
            Metric::MBps => "MB/s",
        }
    }

    /// How many times better demi is.
    fn ratio(self, demi: f64, other: f64) -> f64 {
        match self {
            Metric::LatencyNs => other / demi,
            Metric::MBps => demi / other,
        }
    }
}

/// One run's settings.
#[derive(Clone, Copy)]
struct Run {
    work: Work,
    sw_checksums: bool,
    /// Check every received byte (warm-up runs).
    verify: bool,
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_u(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

/// Echo round trips timed together: one clock read per batch, not per round trip.
const BATCH: usize = 32;

/// The clock of an echo run: [`done`](Self::done) after each round trip; every
/// [`BATCH`]th call records the time the batch took. A clock read (~25 ns here)
/// per round trip would add its own cost to a figure of a few hundred ns, the
/// same on every side, and so shrink every ratio towards 1; per batch it adds
/// under 1 ns. The median over batches still ignores a batch the machine
/// interrupted.
struct RttClock {
    record: bool,
    t0: Instant,
    in_batch: usize,
    /// ns per batch of `BATCH` round trips.
    batches: Vec<u64>,
}

impl RttClock {
    /// Starts the first batch now; records only if `record`.
    fn start(record: bool, round_trips: usize) -> RttClock {
        let batches = Vec::with_capacity(if record { round_trips / BATCH + 1 } else { 0 });
        RttClock { record, t0: Instant::now(), in_batch: 0, batches }
    }

    /// One more round trip finished.
    #[inline]
    fn done(&mut self) {
        if !self.record {
            return;
        }
        self.in_batch += 1;
        if self.in_batch == BATCH {
            let t = Instant::now();
            self.batches.push(t.duration_since(self.t0).as_nanos() as u64);
            (self.t0, self.in_batch) = (t, 0);
        }
    }
}

/// The figure a run produced: a round trip (ns, the median batch over [`BATCH`]) or a
/// throughput (MB/s).
fn figure(work: Work, batches: Vec<u64>, bulk_ns: u64) -> f64 {
    match work {
        Work::Echo { .. } => median_u(batches) / BATCH as f64,
        Work::Bulk { bytes, .. } => bytes as f64 * 1e3 / bulk_ns.max(1) as f64,
    }
}

type Side<'a> = (&'static str, &'a dyn Fn(Run) -> f64);

fn run_case(cfg: &Config, name: &str, metric: Metric, work: Work, tokio_rt: &tokio::runtime::Runtime) {
    if !cfg.selected(name) {
        return;
    }
    use smoltcp_side::Driver;
    let demi = |r: Run| demi_side::run(r);
    let smol_poll = |r: Run| smoltcp_side::run(r, Driver::Poll);
    let smol_split = |r: Run| smoltcp_side::run(r, Driver::Split);
    let tok = |r: Run| tokio_side::run(tokio_rt, r);
    let sides: [Side; 4] = [("demi", &demi), ("smoltcp", &smol_poll), ("smoltcp-split", &smol_split), ("tokio", &tok)];

    if let Some(only) = &cfg.profile {
        // Profiling mode: one side only, `reps` measured runs, one line each.
        let (label, f) =
            sides.iter().find(|(l, _)| l == only).expect("DEMI_BENCH_PROFILE: demi, smoltcp, smoltcp-split or tokio");
        for _ in 0..cfg.reps {
            let v = f(Run { work, sw_checksums: cfg.sw_checksums, verify: false });
            println!("{name}: {label} {v:.0} {}", metric.unit());
        }
        return;
    }

    // Warm-up runs: allocator, caches, the kernel's socket caches; every byte checked.
    for (_, f) in &sides {
        std::hint::black_box(f(Run { work, sw_checksums: cfg.sw_checksums, verify: true }));
    }
    let mut results: [Vec<f64>; 4] = Default::default();
    for rep in 0..cfg.reps {
        for k in 0..sides.len() {
            let i = (rep + k) % sides.len();
            results[i].push(sides[i].1(Run { work, sw_checksums: cfg.sw_checksums, verify: false }));
        }
    }
    // smoltcp is credited with the better of its two drivers, per round and overall.
    let better = |poll: f64, split: f64| if metric.ratio(poll, split) >= 1.0 { poll } else { split };
    // Ratios are taken within each round (the four sides run back to back, so a slow
    // phase of the shared host tends to hit all of them) and their median reported.
    let per_round = |other: &dyn Fn(usize) -> f64| {
        median_f((0..cfg.reps).map(|r| metric.ratio(results[0][r], other(r))).collect())
    };
    let ratio_s = per_round(&|r| better(results[1][r], results[2][r]));
    let ratio_t = per_round(&|r| results[3][r]);
    let [d, s_poll, s_split, t] = results.map(median_f);
    let s = better(s_poll, s_split);
    let unit = metric.unit();
    println!(
        "{name}: demi {d:.0} {unit}, smoltcp {s:.0} {unit}, tokio {t:.0} {unit}, ratio_vs_smoltcp {ratio_s:.2}, ratio_vs_tokio {ratio_t:.2}"
    );
    println!("  ({name} smoltcp by driver: poll {s_poll:.0} {unit}, ingress/apps/egress {s_split:.0} {unit})");
}

/// Byte `k` of every stream (echo messages and bulk transfers) is `k % PERIOD`.
const PERIOD: usize = 251;
/// The largest piece one application call sends.
const CHUNK: usize = 64 * 1024;
/// Socket buffers (send and receive) on both user-level stacks.
const BUF: usize = 256 * 1024;

/// `CHUNK + PERIOD` bytes: `pattern[o..o + n]` is the stream from any offset `≡ o`.
fn pattern() -> Vec<u8> {
    (0..CHUNK + PERIOD).map(|k| (k % PERIOD) as u8).collect()
}

/// [`pattern`], made once for the whole process.
fn static_pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(pattern)
}

/// Checks `data`, which sits at stream offset `at`, against the pattern.
fn check(pattern: &[u8], at: usize, data: &[u8], who: &str) {
    let mut off = at;
    for piece in data.chunks(CHUNK) {
        let o = off % PERIOD;
        assert!(piece == &pattern[o..o + piece.len()], "{who}: received bytes differ at stream offset {off}");
        off += piece.len();
    }
}

// ---------------------------------------------------------------------------------
// demi: two net-stack `Stack`s over an in-memory link
// ---------------------------------------------------------------------------------

mod demi_side {
    use super::*;
    use bytes::Bytes;
    use demi::net_stack::iface::{ConnHandle, Event, Stack, StackConfig, StackError, TxFrame};
    use demi::net_stack::tcp::{TcpConfig, TcpError, TcpEvent};
    use demi::net_stack::wire::{ChecksumCaps, EthernetAddress};
    use std::net::{Ipv4Addr, SocketAddrV4};

    const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const PORT: u16 = 7;

    /// The size of the link's buffers (a device ring's slots): a frame that fits
    /// is written into one by the sender's stack and received from it borrowed;
    /// a larger one is moved as a `Bytes`.
    const SLOT: usize = 256;
    /// Slots per host, as many as frames a turn can bring.
    const SLOTS: usize = 1024;

    /// A frame on its way to a host.
    enum LinkFrame {
        /// The first `len` bytes of slot `slot` of the host's `slots`.
        Slot { slot: usize, len: usize },
        Moved(Bytes),
    }

    /// One host: its stack, frames that arrived for it, and what its application
    /// learnt from the events.
    struct Host {
        stack: Stack,
        rx: Vec<LinkFrame>,
        /// The link's buffers for frames to this host, `SLOTS` of `SLOT` bytes;
        /// the `Slot` frames in `rx` use the first ones.
        slots: Vec<u8>,
        slots_used: usize,
        /// The echo server's buffer, which it copies what it read into to send it.
        copy: Vec<u8>,
        readable: bool,
        writable: bool,
        accepted: bool,
        connected: bool,
    }

    impl Host {
        fn new(mac: u8, ip: Ipv4Addr, sw_checksums: bool, now: Instant) -> Host {
            let mut config = StackConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, mac]), ip);
            config.mtu = 1500;
            config.checksums = if sw_checksums { ChecksumCaps::all() } else { ChecksumCaps::offload() };
            config.tcp = TcpConfig {
                send_buffer: BUF,
                recv_buffer: BUF,
                ack_delay: None,
                nagle: false,
                ..TcpConfig::default()
            };
            config.seed = u64::from(mac);
            Host {
                stack: Stack::new(config, now),
                rx: Vec::with_capacity(256),
                slots: vec![0; SLOT * SLOTS],
                slots_used: 0,
                copy: vec![0; 2048],
                readable: false,
                writable: true,
                accepted: false,
                connected: false,
            }
        }

        /// The driver's receive half: frames in, due timers, events to flags.
        fn ingress(&mut self, now: Instant) {
            for frame in self.rx.drain(..) {
                match frame {
                    LinkFrame::Slot { slot, len } => self.stack.receive_slice(now, &self.slots[slot * SLOT..slot * SLOT + len]),
                    LinkFrame::Moved(frame) => self.stack.receive(now, frame),
                }
            }
            self.slots_used = 0;
            if self.stack.timeout_due(now) {
                self.stack.handle_timeout(now);
            }
            self.events();
        }

        fn events(&mut self) {
            while let Some(ev) = self.stack.poll_event() {
                match ev {
                    Event::Tcp(_, TcpEvent::Readable) => self.readable = true,
                    Event::Tcp(_, TcpEvent::Writable) => self.writable = true,
                    Event::Tcp(_, TcpEvent::Connected) => self.connected = true,
                    Event::AcceptReady(_) => self.accepted = true,
                    Event::Tcp(_, TcpEvent::Error(e)) => panic!("demi: connection failed: {e}"),
                    _ => {}
                }
            }
        }

        /// The driver's transmit half: every frame goes to `peer`, written into its
        /// next free slot by the stack if it fits, moved otherwise.
        fn egress(&mut self, now: Instant, peer: &mut Host) {
            self.events();
            loop {
                let slot = peer.slots_used;
                assert!(slot < SLOTS, "demi: link slots exhausted");
                let buf = &mut peer.slots[slot * SLOT..(slot + 1) * SLOT];
                match self.stack.poll_transmit_into(now, buf) {
                    Some(TxFrame::Written(len)) => {
                        peer.slots_used += 1;
                        peer.rx.push(LinkFrame::Slot { slot, len });
                    }
                    Some(TxFrame::Owned(f)) => peer.rx.push(LinkFrame::Moved(f)),
                    None => return,
                }
            }
        }
    }

    /// Two connected hosts: `a` is the client, `b` the server.
    struct Pair {
        a: Host,
        b: Host,
        ca: ConnHandle,
        cb: ConnHandle,
    }

    impl Pair {
        /// One turn of the loop: each host takes its frames, its application runs,
        /// and its frames go to the other host.
        fn turn(&mut self, mut app_a: impl FnMut(&mut Host, ConnHandle), mut app_b: impl FnMut(&mut Host, ConnHandle)) {
            let now = Instant::now();
            self.a.ingress(now);
            app_a(&mut self.a, self.ca);
            self.a.egress(now, &mut self.b);
            self.b.ingress(now);
            app_b(&mut self.b, self.cb);
            self.b.egress(now, &mut self.a);
        }

        fn connect(sw_checksums: bool) -> Pair {
            let now = Instant::now();
            let mut a = Host::new(1, IP_A, sw_checksums, now);
            let mut b = Host::new(2, IP_B, sw_checksums, now);
            let l = b.stack.tcp_listen(PORT, 16).expect("demi listen");
            let ca = a.stack.tcp_connect(now, 0, SocketAddrV4::new(IP_B, PORT)).expect("demi connect");
            let mut cb = None;
            let start = Instant::now();
            while cb.is_none() || !a.connected {
                assert!(start.elapsed().as_secs() < 10, "demi: handshake did not complete");
                let now = Instant::now();
                a.ingress(now);
                a.egress(now, &mut b);
                b.ingress(now);
                if b.accepted && cb.is_none() {
                    cb = Some(b.stack.tcp_accept(l).expect("demi accept").0);
                }
                b.egress(now, &mut a);
            }
            Pair { a, b, ca, cb: cb.unwrap() }
        }
    }

    /// The echo server's step: everything readable is copied out (one
    /// `tcp_recv_slice` per buffer-full) and sent back with `tcp_send_slice`.
    fn echo_back(host: &mut Host, c: ConnHandle) {
        if !host.readable {
            return;
        }
        let buf = &mut host.copy;
        loop {
            match host.stack.tcp_recv_slice(c, buf) {
                Ok(n) => {
                    let sent = host.stack.tcp_send_slice(c, &buf[..n]).expect("demi server send");
                    assert_eq!(sent, n, "demi: server send buffer full");
                    if n < buf.len() {
                        // All that was ready: no call to find nothing.
                        host.readable = false;
                        return;
                    }
                }
                Err(StackError::Tcp(TcpError::WouldBlock)) => {
                    host.readable = false;
                    return;
                }
                Err(e) => panic!("demi recv: {e}"),
            }
        }
    }

    /// Reads everything readable with one `tcp_recv_borrowed`, lending each
    /// received piece to `f` inside the call (a reader that needs nothing of the
    /// stack while it looks at the data).
    fn read_all(host: &mut Host, c: ConnHandle, f: impl FnMut(&[u8])) {
        if !host.readable {
            return;
        }
        match host.stack.tcp_recv_borrowed(c, f) {
            Ok(_) | Err(StackError::Tcp(TcpError::WouldBlock)) => host.readable = false,
            Err(e) => panic!("demi recv: {e}"),
        }
    }

    /// Echo round trips `first..first + n`; the RTTs if `record`.
    ///
    /// The client is an application's `loop { write; read }`: the moment it has read a
    /// whole echo it writes the next message, in the same step, so the ACK of the echo
    /// leaves with that message (what a task does under the libOS, whose driver
    /// transmits after the woken tasks ran). A round trip is timed from one message's
    /// send to the next one's.
    fn echo(p: &mut Pair, pattern: &Bytes, size: usize, first: usize, n: usize, record: bool) -> Vec<u64> {
        let send = |h: &mut Host, c: ConnHandle, i: usize| {
            let o = (i * size) % PERIOD;
            let sent = h.stack.tcp_send(c, pattern.slice(o..o + size)).expect("demi send");
            assert_eq!(sent, size, "demi: send buffer full during echo");
        };
        let end = first + n;
        let (mut i, mut got) = (first, 0usize);
        let mut clock = RttClock::start(record, n);
        send(&mut p.a, p.ca, i);
        while i < end {
            p.turn(
                |h, c| {
                    read_all(h, c, |d| {
                        check(pattern, i * size + got, d, "demi echo");
                        got += d.len();
                    });
                    if got >= size {
                        assert_eq!(got, size, "demi: more bytes echoed than sent");
                        clock.done();
                        (got, i) = (0, i + 1);
                        if i < end {
                            send(h, c, i);
                        }
                    }
                },
                echo_back,
            );
        }
        clock.batches
    }

    /// Sends `bytes` from a to b from stream offset `at`; returns the wall time (ns)
    /// until b's application has read the last byte.
    fn bulk(p: &mut Pair, pattern: &Bytes, at: usize, bytes: usize, verify: bool) -> u64 {
        let sent = Cell::new(0usize);
        let recvd = Cell::new(0usize);
        let t0 = Instant::now();
        while recvd.get() < bytes {
            p.turn(
                |h, c| {
                    while h.writable && sent.get() < bytes {
                        let off = at + sent.get();
                        let o = off % PERIOD;
                        let len = (bytes - sent.get()).min(CHUNK);
                        match h.stack.tcp_send(c, pattern.slice(o..o + len)) {
                            Ok(n) => {
                                sent.set(sent.get() + n);
                                if n < len {
                                    h.writable = false;
                                }
                            }
                            Err(StackError::Tcp(TcpError::WouldBlock)) => h.writable = false,
                            Err(e) => panic!("demi send: {e}"),
                        }
                    }
                },
                |h, c| {
                    read_all(h, c, |d| {
                        if verify {
                            check(pattern, at + recvd.get(), d, "demi bulk");
                        }
                        recvd.set(recvd.get() + d.len());
                    })
                },
            );
        }
        let ns = t0.elapsed().as_nanos() as u64;
        assert_eq!(recvd.get(), bytes, "demi: more bytes received than sent");
        // Let the last ACKs land so the next phase starts quiet.
        for _ in 0..4 {
            p.turn(|_, _| {}, |_, _| {});
        }
        ns
    }

    pub fn run(r: Run) -> f64 {
        // The messages are slices of a `'static` buffer (`Bytes::from_static`: no
        // reference count to keep), as smoltcp's and tokio's clients send from a
        // borrowed slice; an application sending a buffer of its own moves it in.
        let pattern = Bytes::from_static(static_pattern());
        let mut p = Pair::connect(r.sw_checksums);
        match r.work {
            Work::Echo { size, warmup, count } => {
                echo(&mut p, &pattern, size, 0, warmup, false);
                let frames = p.a.stack.stats().tx_frames + p.b.stack.stats().tx_frames;
                let samples = echo(&mut p, &pattern, size, warmup, count, true);
                let frames = p.a.stack.stats().tx_frames + p.b.stack.stats().tx_frames - frames;
                // The client's ACK of each echo rides on its next message.
                assert!(frames <= 2 * count as u64 + 4, "demi: {frames} frames for {count} round trips");
                figure(r.work, samples, 0)
            }
            Work::Bulk { warmup, bytes } => {
                bulk(&mut p, &pattern, 0, warmup, true);
                let ns = bulk(&mut p, &pattern, warmup, bytes, r.verify);
                figure(r.work, Vec::new(), ns)
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// smoltcp: one interface over its loopback device, two TCP sockets
// ---------------------------------------------------------------------------------

mod smoltcp_side {
    use super::*;
    use smoltcp::iface::{Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
    use smoltcp::phy::{ChecksumCapabilities, Device, DeviceCapabilities, Loopback, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SInstant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

    const PORT: u16 = 7;
    const CLIENT_PORT: u16 = 49_152;

    /// smoltcp's `Loopback` with the capabilities of the link under test: MTU 1500
    /// (the loopback itself reports 65535) and the checksum setting (the loopback
    /// itself reports "ignored"). Frames pass through the loopback unchanged.
    struct Link {
        lo: Loopback,
        caps: DeviceCapabilities,
    }

    impl Link {
        fn new(sw_checksums: bool) -> Link {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = 1500 + 14;
            caps.checksum = if sw_checksums { ChecksumCapabilities::default() } else { ChecksumCapabilities::ignored() };
            Link { lo: Loopback::new(Medium::Ethernet), caps }
        }
    }

    impl Device for Link {
        type RxToken<'a> = <Loopback as Device>::RxToken<'a>;
        type TxToken<'a> = <Loopback as Device>::TxToken<'a>;

        fn receive(&mut self, timestamp: SInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
            self.lo.receive(timestamp)
        }

        fn transmit(&mut self, timestamp: SInstant) -> Option<Self::TxToken<'_>> {
            self.lo.transmit(timestamp)
        }

        fn capabilities(&self) -> DeviceCapabilities {
            self.caps.clone()
        }
    }

    struct Pair {
        iface: Interface,
        dev: Link,
        sockets: SocketSet<'static>,
        client: SocketHandle,
        server: SocketHandle,
    }

    fn socket() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0u8; BUF]), tcp::SocketBuffer::new(vec![0u8; BUF]));
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        s
    }

    /// How the loop drives the interface.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Driver {
        /// `Interface::poll` (ingress, then egress), then the applications: the
        /// documented driver. An ACK leaves before the application has seen the data.
        Poll,
        /// `poll_ingress_single` until nothing is left, the applications, then
        /// `poll_egress` until nothing is left: demi's turn, so an answer carries the
        /// ACK of what it answers.
        Split,
    }

    impl Pair {
        fn poll(&mut self) {
            self.iface.poll(SInstant::now(), &mut self.dev, &mut self.sockets);
        }

        /// One turn of the loop under `driver`, with `apps` run between the ingress
        /// and the egress halves.
        fn turn(&mut self, driver: Driver, apps: impl FnOnce(&mut SocketSet<'static>, SocketHandle, SocketHandle)) {
            let now = SInstant::now();
            match driver {
                Driver::Poll => {
                    self.iface.poll(now, &mut self.dev, &mut self.sockets);
                    apps(&mut self.sockets, self.client, self.server);
                }
                Driver::Split => {
                    while self.iface.poll_ingress_single(now, &mut self.dev, &mut self.sockets) != PollIngressSingleResult::None {}
                    apps(&mut self.sockets, self.client, self.server);
                    while self.iface.poll_egress(now, &mut self.dev, &mut self.sockets) != PollResult::None {}
                }
            }
        }

        fn connect(sw_checksums: bool) -> Pair {
            let mut dev = Link::new(sw_checksums);
            let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1])));
            config.random_seed = 0x5eed;
            let mut iface = Interface::new(config, &mut dev, SInstant::now());
            iface.update_ip_addrs(|addrs| {
                addrs.push(IpCidr::new(IpAddress::v4(198, 18, 0, 1), 24)).expect("smoltcp address");
            });
            let mut sockets = SocketSet::new(Vec::new());
            let mut server = socket();
            server.listen(PORT).expect("smoltcp listen");
            let server = sockets.add(server);
            let client = sockets.add(socket());
            sockets
                .get_mut::<tcp::Socket>(client)
                .connect(iface.context(), (IpAddress::v4(198, 18, 0, 1), PORT), CLIENT_PORT)
                .expect("smoltcp connect");
            let mut p = Pair { iface, dev, sockets, client, server };
            let start = Instant::now();
            loop {
                p.poll();
                let c = p.sockets.get::<tcp::Socket>(p.client);
                let s = p.sockets.get::<tcp::Socket>(p.server);
                if c.state() == tcp::State::Established && s.state() == tcp::State::Established {
                    break;
                }
                assert!(start.elapsed().as_secs() < 10, "smoltcp: handshake did not complete");
            }
            p
        }
    }

    /// Echo round trips `first..first + n`, the client written as demi's is (it sends
    /// the next message in the step that read the last echo); the RTTs if `record`.
    fn echo(p: &mut Pair, driver: Driver, pattern: &[u8], size: usize, first: usize, n: usize, record: bool) -> Vec<u64> {
        let mut buf = vec![0u8; CHUNK];
        let send = |c: &mut tcp::Socket, i: usize| {
            let o = (i * size) % PERIOD;
            let sent = c.send_slice(&pattern[o..o + size]).expect("smoltcp send");
            assert_eq!(sent, size, "smoltcp: send buffer full during echo");
        };
        let end = first + n;
        let (mut i, mut got) = (first, 0usize);
        let mut clock = RttClock::start(record, n);
        send(p.sockets.get_mut::<tcp::Socket>(p.client), i);
        while i < end {
            p.turn(driver, |sockets, client, server| {
                let s = sockets.get_mut::<tcp::Socket>(server);
                while s.can_recv() {
                    let n = s.recv_slice(&mut buf).expect("smoltcp server recv");
                    let sent = s.send_slice(&buf[..n]).expect("smoltcp server send");
                    assert_eq!(sent, n, "smoltcp: server send buffer full");
                }
                let c = sockets.get_mut::<tcp::Socket>(client);
                while c.can_recv() {
                    let n = c.recv_slice(&mut buf).expect("smoltcp client recv");
                    check(pattern, i * size + got, &buf[..n], "smoltcp echo");
                    got += n;
                }
                if got >= size {
                    assert_eq!(got, size, "smoltcp: more bytes echoed than sent");
                    clock.done();
                    (got, i) = (0, i + 1);
                    if i < end {
                        send(c, i);
                    }
                }
            });
        }
        clock.batches
    }

    fn bulk(p: &mut Pair, driver: Driver, pattern: &[u8], at: usize, bytes: usize, verify: bool) -> u64 {
        let (mut sent, mut recvd) = (0usize, 0usize);
        let t0 = Instant::now();
        while recvd < bytes {
            p.turn(driver, |sockets, client, server| {
                let c = sockets.get_mut::<tcp::Socket>(client);
                while sent < bytes && c.can_send() {
                    let off = at + sent;
                    let o = off % PERIOD;
                    let len = (bytes - sent).min(CHUNK);
                    let n = c.send_slice(&pattern[o..o + len]).expect("smoltcp send");
                    sent += n;
                    if n < len {
                        break;
                    }
                }
                let s = sockets.get_mut::<tcp::Socket>(server);
                while s.can_recv() {
                    // Zero-copy read: consume what is contiguous in the receive buffer.
                    let n = s
                        .recv(|data| {
                            if verify {
                                check(pattern, at + recvd, data, "smoltcp bulk");
                            }
                            (data.len(), data.len())
                        })
                        .expect("smoltcp recv");
                    recvd += n;
                }
            });
        }
        let ns = t0.elapsed().as_nanos() as u64;
        assert_eq!(recvd, bytes, "smoltcp: more bytes received than sent");
        for _ in 0..4 {
            p.poll();
        }
        ns
    }

    pub fn run(r: Run, driver: Driver) -> f64 {
        let pattern = pattern();
        let mut p = Pair::connect(r.sw_checksums);
        match r.work {
            Work::Echo { size, warmup, count } => {
                echo(&mut p, driver, &pattern, size, 0, warmup, false);
                let samples = echo(&mut p, driver, &pattern, size, warmup, count, true);
                figure(r.work, samples, 0)
            }
            Work::Bulk { warmup, bytes } => {
                bulk(&mut p, driver, &pattern, 0, warmup, true);
                let ns = bulk(&mut p, driver, &pattern, warmup, bytes, r.verify);
                figure(r.work, Vec::new(), ns)
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// tokio: TcpListener / TcpStream over the kernel's loopback
// ---------------------------------------------------------------------------------

mod tokio_side {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("tokio bind");
        let addr = listener.local_addr().expect("tokio local_addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.expect("tokio connect");
        let (server, _) = accepted.expect("tokio accept");
        client.set_nodelay(true).expect("tokio nodelay");
        server.set_nodelay(true).expect("tokio nodelay");
        (client, server)
    }

    /// Echoes whatever arrives until the peer closes.
    async fn serve(mut s: TcpStream) {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    async fn echo(s: &mut TcpStream, pattern: &[u8], size: usize, first: usize, n: usize, record: bool) -> Vec<u64> {
        let mut buf = vec![0u8; size];
        let mut clock = RttClock::start(record, n);
        for i in first..first + n {
            let at = i * size;
            let o = at % PERIOD;
            s.write_all(&pattern[o..o + size]).await.expect("tokio write");
            s.read_exact(&mut buf).await.expect("tokio read");
            check(pattern, at, &buf, "tokio echo");
            clock.done();
        }
        clock.batches
    }

    async fn write_stream(mut s: TcpStream, pattern: Rc<Vec<u8>>, at: usize, bytes: usize) -> TcpStream {
        let mut sent = 0;
        while sent < bytes {
            let o = (at + sent) % PERIOD;
            let len = (bytes - sent).min(CHUNK);
            s.write_all(&pattern[o..o + len]).await.expect("tokio write");
            sent += len;
        }
        s
    }

    async fn read_stream(s: &mut TcpStream, pattern: &[u8], at: usize, bytes: usize, verify: bool) {
        let mut buf = vec![0u8; CHUNK];
        let mut recvd = 0;
        while recvd < bytes {
            let n = s.read(&mut buf).await.expect("tokio read");
            assert!(n > 0, "tokio: stream ended early");
            if verify {
                check(pattern, at + recvd, &buf[..n], "tokio bulk");
            }
            recvd += n;
        }
        assert_eq!(recvd, bytes, "tokio: more bytes received than sent");
    }

    pub fn run(rt: &tokio::runtime::Runtime, r: Run) -> f64 {
        let local = tokio::task::LocalSet::new();
        local.block_on(rt, async move {
            let pattern = Rc::new(pattern());
            let (mut client, mut server) = pair().await;
            match r.work {
                Work::Echo { size, warmup, count } => {
                    let server = tokio::task::spawn_local(serve(server));
                    echo(&mut client, &pattern, size, 0, warmup, false).await;
                    let samples = echo(&mut client, &pattern, size, warmup, count, true).await;
                    drop(client);
                    server.await.expect("tokio server");
                    figure(r.work, samples, 0)
                }
                Work::Bulk { warmup, bytes } => {
                    let w = tokio::task::spawn_local(write_stream(client, pattern.clone(), 0, warmup));
                    read_stream(&mut server, &pattern, 0, warmup, true).await;
                    client = w.await.expect("tokio writer");
                    let t0 = Instant::now();
                    let w = tokio::task::spawn_local(write_stream(client, pattern.clone(), warmup, bytes));
                    read_stream(&mut server, &pattern, warmup, bytes, r.verify).await;
                    let ns = t0.elapsed().as_nanos() as u64;
                    drop(w.await.expect("tokio writer"));
                    figure(r.work, Vec::new(), ns)
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------

fn main() {
    let cfg = Config::from_env();
    let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let echo = Work::Echo { size: 64, warmup: cfg.n(5_000, 1_000), count: cfg.n(100_000, 30_000) };
    let bulk_bytes = cfg.n(256 << 20, 64 << 20);
    let bulk = Work::Bulk { warmup: cfg.n(8 << 20, 4 << 20), bytes: bulk_bytes };

    println!(
        "stack bench: demi = two net-stack Stacks over an in-memory link (frames up to 256 B written into link buffers and read in place, larger ones moved as Bytes) in one thread; \
         smoltcp 0.14 = two TCP sockets on one Interface over its Loopback device (the better of two drivers: Interface::poll, or ingress/apps/egress); \
         both Ethernet, MTU 1500, 256 KiB socket buffers, Nagle off, delayed ACK off, checksums {}; \
         tokio = current_thread TcpStream over kernel loopback 127.0.0.1 (MTU 64 KiB), TCP_NODELAY; \
         echo: 64 B ping-pong, RTT = median over batches of {BATCH} round trips (one clock read a batch); bulk: {} MiB one way, MB/s = 10^6 B/s; \
         {} rounds after 1 warm-up, rotating order, figures the median of each side's, ratios the median of the rounds' ratios{}; \
         ratio > 1 means demi is better: other/demi for ns, demi/other for MB/s",
        if cfg.sw_checksums { "computed and verified in software on both" } else { "trusted to the link on both (offload)" },
        bulk_bytes >> 20,
        cfg.reps,
        if cfg.quick { " [DEMI_BENCH_QUICK]" } else { "" }
    );

    run_case(&cfg, "tcp_echo_rtt_64B", Metric::LatencyNs, echo, &tokio_rt);

    run_case(&cfg, "tcp_bulk_mtu1500", Metric::MBps, bulk, &tokio_rt);
}
