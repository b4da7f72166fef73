//! `frame_sequence`: two stacks talking over a link the fuzzer controls.
//!
//! Stack A (10.0.0.1) connects to stack B (10.0.0.2), which listens; both resolve
//! each other with ARP. Every frame either sends sits in a queue for its direction
//! until an operation delivers, drops, duplicates, reorders, corrupts or truncates
//! it. Other operations move the virtual clock (running due timers), make either
//! application send, read, shut down, close or abort.
//!
//! Invariants while it runs: no panic; every transmitted frame passes
//! `check_tx_frame`; each side reads exactly the byte stream the other queued
//! (checked byte for byte) unless a frame was corrupted or truncated (under
//! `--cfg fuzzing` checksums do not catch that).
//!
//! Then the link heals: every queued frame is delivered in order, new frames too,
//! time moves from deadline to deadline (bounded), both applications read
//! everything. Unless a frame was corrupted, an application closed or aborted, or a
//! connection reported an error, each side must by then have read everything the
//! other queued: the connection recovers from loss, duplication and reordering.

#![no_main]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use demi_fuzz::{base_instant, check_tx_frame, stream_pattern, stream_payload, summarize};
use demi_net_stack::iface::{ConnHandle, Event, Stack, StackConfig};
use demi_net_stack::tcp::{TcpError, TcpEvent};
use demi_net_stack::wire::EthernetAddress;
use libfuzzer_sys::fuzz_target;

const MAX_QUEUE: usize = 512;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Smaller buffers reach zero windows and persist probes sooner.
    small_buffers: bool,
    delayed_acks: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Deliver { to_b: bool },
    DeliverAll,
    Drop { to_b: bool },
    Duplicate { to_b: bool },
    Reorder { to_b: bool, to: u8 },
    Corrupt { to_b: bool, at: u16, xor: u8 },
    Truncate { to_b: bool, len: u16 },
    Advance(u16),
    AdvanceToTimer,
    Send { a: bool, len: u16 },
    Recv { a: bool, max: u16 },
    Shutdown { a: bool },
    Close { a: bool },
    Abort { a: bool },
}

struct Side {
    stack: Stack,
    mac: EthernetAddress,
    ip: Ipv4Addr,
    conn: Option<ConnHandle>,
    salt: u8,
    /// Bytes this application queued.
    queued: u64,
    /// Bytes this application read (checked against the peer's pattern).
    read: u64,
    shut: bool,
    gone: bool,
    error: Option<TcpError>,
    peer_closed: bool,
    /// The handshake completed (A: `Connected`; B: accepted).
    connected: bool,
}

impl Side {
    fn new(
        mac: EthernetAddress,
        ip: Ipv4Addr,
        salt: u8,
        small: bool,
        delayed: bool,
        now: Instant,
    ) -> Side {
        let mut config = StackConfig::new(mac, ip);
        if small {
            config.tcp.recv_buffer = 3000;
            config.tcp.send_buffer = 5000;
            config.tcp.mss = 536;
        } else {
            config.tcp.recv_buffer = 64 * 1024;
            config.tcp.send_buffer = 64 * 1024;
        }
        config.tcp.ack_delay = delayed.then(|| Duration::from_millis(40));
        config.tcp.rto_min = Duration::from_millis(50);
        config.tcp.rto_initial = Duration::from_millis(300);
        config.tcp.rto_max = Duration::from_secs(10);
        config.tcp.time_wait = Duration::from_secs(2);
        config.seed = u64::from(salt);
        Side {
            stack: Stack::new(config, now),
            mac,
            ip,
            conn: None,
            salt,
            queued: 0,
            read: 0,
            shut: false,
            gone: false,
            error: None,
            peer_closed: false,
            connected: false,
        }
    }

    fn usable(&self) -> Option<ConnHandle> {
        if self.gone {
            None
        } else {
            self.conn
        }
    }
}

struct World {
    now: Instant,
    a: Side,
    b: Side,
    to_b: VecDeque<Bytes>,
    to_a: VecDeque<Bytes>,
    corrupted: bool,
    app_gave_up: bool,
    /// `DEMI_FUZZ_TRACE` is set: print every delivered frame.
    trace: bool,
}

impl World {
    fn side(&mut self, a: bool) -> (&mut Side, u8) {
        if a {
            let salt = self.b.salt;
            (&mut self.a, salt)
        } else {
            let salt = self.a.salt;
            (&mut self.b, salt)
        }
    }

    fn queue(&mut self, to_b: bool) -> &mut VecDeque<Bytes> {
        if to_b {
            &mut self.to_b
        } else {
            &mut self.to_a
        }
    }

    /// Drains both stacks: events to the applications, frames into the link queues.
    fn pump(&mut self, auto_read: bool) {
        for _ in 0..10_000 {
            let mut progress = false;
            for a in [true, false] {
                let now = self.now;
                progress |= self.events(a, auto_read);
                let (side, _) = self.side(a);
                let (mac, ip) = (side.mac, side.ip);
                let (mtu, mss) = (
                    side.stack.config().mtu,
                    usize::from(side.stack.config().tcp.mss),
                );
                let mut out = Vec::new();
                while let Some(frame) = side.stack.poll_transmit(now) {
                    check_tx_frame(&frame, mac, ip, mtu, mss);
                    out.push(frame);
                    assert!(out.len() <= 20_000, "frame storm");
                }
                progress |= !out.is_empty();
                let q = self.queue(a);
                q.extend(out);
                while q.len() > MAX_QUEUE {
                    q.pop_front();
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the two stacks never go quiet");
    }

    fn events(&mut self, a: bool, auto_read: bool) -> bool {
        let mut any = false;
        loop {
            let (side, _) = self.side(a);
            let Some(event) = side.stack.poll_event() else {
                break;
            };
            any = true;
            match event {
                Event::AcceptReady(l) => {
                    while let Ok((c, _)) = side.stack.tcp_accept(l) {
                        assert!(side.conn.is_none(), "a second connection was accepted");
                        side.conn = Some(c);
                        side.connected = true;
                    }
                }
                Event::Tcp(_, TcpEvent::Error(e)) => side.error = Some(e),
                Event::Tcp(_, TcpEvent::Connected) => side.connected = true,
                Event::Tcp(_, TcpEvent::PeerClosed) => side.peer_closed = true,
                Event::Tcp(_, TcpEvent::Readable) if auto_read => self.recv(a, usize::MAX),
                Event::Tcp(..) | Event::UdpReadable(_) => {}
            }
        }
        any
    }

    fn recv(&mut self, a: bool, max: usize) {
        let corrupted = self.corrupted;
        let (side, peer_salt) = self.side(a);
        let Some(c) = side.usable() else { return };
        let mut budget = max;
        while budget > 0 {
            match side.stack.tcp_recv(c, budget.min(1 << 20)) {
                Ok(data) => {
                    assert!(
                        !data.is_empty() && data.len() <= budget,
                        "tcp_recv returned {} bytes",
                        data.len()
                    );
                    if !corrupted {
                        for (i, &byte) in data.iter().enumerate() {
                            let off = side.read + i as u64;
                            assert_eq!(
                                byte,
                                stream_pattern(off, peer_salt),
                                "byte {off} of the stream differs"
                            );
                        }
                    }
                    side.read += data.len() as u64;
                    budget -= data.len();
                }
                Err(_) => break,
            }
        }
    }

    fn send(&mut self, a: bool, len: usize) {
        let (side, _) = self.side(a);
        let Some(c) = side.usable() else { return };
        if side.shut {
            return;
        }
        let data = Bytes::from(stream_payload(side.queued, len, side.salt));
        if let Ok(n) = side.stack.tcp_send(c, data) {
            assert!(n <= len, "tcp_send took {n} of {len}");
            side.queued += n as u64;
        }
    }

    fn timers(&mut self) {
        let now = self.now;
        for side in [&mut self.a, &mut self.b] {
            if side.stack.poll_at().is_some_and(|t| t <= now) {
                side.stack.handle_timeout(now);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.a.stack.poll_at(), self.b.stack.poll_at()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    fn deliver(&mut self, to_b: bool) {
        let now = self.now;
        if let Some(frame) = self.queue(to_b).pop_front() {
            if self.trace {
                let t = now - base_instant();
                eprintln!(
                    "{:>10.3?} {} {}",
                    t,
                    if to_b { "A->B" } else { "B->A" },
                    summarize(&frame)
                );
            }
            let dst = if to_b { &mut self.b } else { &mut self.a };
            dst.stack.receive(now, frame);
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Deliver { to_b } => self.deliver(to_b),
            Op::DeliverAll => {
                while !self.to_a.is_empty() || !self.to_b.is_empty() {
                    self.deliver(true);
                    self.deliver(false);
                }
            }
            Op::Drop { to_b } => {
                self.queue(to_b).pop_front();
            }
            Op::Duplicate { to_b } => {
                let q = self.queue(to_b);
                if let Some(f) = q.front().cloned() {
                    q.push_back(f);
                }
            }
            Op::Reorder { to_b, to } => {
                let q = self.queue(to_b);
                if let Some(f) = q.pop_front() {
                    let at = usize::from(to).min(q.len());
                    q.insert(at, f);
                }
            }
            Op::Corrupt { to_b, at, xor } => {
                let q = self.queue(to_b);
                if let Some(f) = q.front_mut() {
                    if !f.is_empty() && xor != 0 {
                        let mut v = f.to_vec();
                        let i = usize::from(at) % v.len();
                        v[i] ^= xor;
                        *f = Bytes::from(v);
                        self.corrupted = true;
                    }
                }
            }
            Op::Truncate { to_b, len } => {
                let q = self.queue(to_b);
                if let Some(f) = q.front_mut() {
                    let len = usize::from(len);
                    if len < f.len() {
                        f.truncate(len);
                        self.corrupted = true;
                    }
                }
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.timers();
            }
            Op::AdvanceToTimer => {
                if let Some(t) = self.next_deadline() {
                    self.now = self.now.max(t);
                    self.timers();
                }
            }
            Op::Send { a, len } => self.send(a, usize::from(len) * 2),
            Op::Recv { a, max } => self.recv(a, usize::from(max)),
            Op::Shutdown { a } => {
                let (side, _) = self.side(a);
                if let Some(c) = side.usable() {
                    let _ = side.stack.tcp_shutdown(c);
                    side.shut = true;
                    // Closing in SYN-SENT drops the connection (RFC 9293 §3.10.4).
                    if !side.connected {
                        self.app_gave_up = true;
                    }
                }
            }
            Op::Close { a } => {
                let (side, _) = self.side(a);
                if let Some(c) = side.usable() {
                    let _ = side.stack.tcp_close(c);
                    side.gone = true;
                    self.app_gave_up = true;
                }
            }
            Op::Abort { a } => {
                let (side, _) = self.side(a);
                if let Some(c) = side.usable() {
                    let _ = side.stack.tcp_abort(c);
                    side.gone = true;
                    self.app_gave_up = true;
                }
            }
        }
    }

    /// A perfect link from now on: deliver everything, follow the deadlines, read
    /// everything.
    fn heal(&mut self) {
        let limit = self.now + Duration::from_secs(3600);
        let mut stuck = 0;
        for _ in 0..20_000 {
            // Read whatever waits (a `Readable` may have gone by before the heal).
            self.recv(true, usize::MAX);
            self.recv(false, usize::MAX);
            self.pump(true);
            if !self.to_a.is_empty() || !self.to_b.is_empty() {
                self.apply(Op::DeliverAll);
                continue;
            }
            let Some(t) = self.next_deadline() else {
                return;
            };
            if t > limit {
                return;
            }
            if t <= self.now {
                stuck += 1;
                assert!(
                    stuck < 64,
                    "timer livelock: a deadline stays at or before now"
                );
            } else {
                stuck = 0;
            }
            self.now = self.now.max(t);
            self.timers();
        }
        panic!("the healed link never went idle");
    }
}

fuzz_target!(|input: Input| {
    let now = base_instant();
    let a = Side::new(
        EthernetAddress([2, 0, 0, 0, 0, 0xa]),
        Ipv4Addr::new(10, 0, 0, 1),
        0xa,
        input.small_buffers,
        input.delayed_acks,
        now,
    );
    let b = Side::new(
        EthernetAddress([2, 0, 0, 0, 0, 0xb]),
        Ipv4Addr::new(10, 0, 0, 2),
        0xb,
        input.small_buffers,
        input.delayed_acks,
        now,
    );
    let mut w = World {
        now,
        a,
        b,
        to_b: VecDeque::new(),
        to_a: VecDeque::new(),
        corrupted: false,
        app_gave_up: false,
        trace: std::env::var_os("DEMI_FUZZ_TRACE").is_some(),
    };
    w.b.stack.tcp_listen(80, 4).expect("listen");
    let c =
        w.a.stack
            .tcp_connect(now, 0, SocketAddrV4::new(w.b.ip, 80))
            .expect("connect");
    w.a.conn = Some(c);
    w.pump(false);

    for &op in input.ops.iter().take(512) {
        w.apply(op);
        w.pump(false);
    }

    w.heal();

    let broken = w.corrupted || w.app_gave_up || w.a.error.is_some() || w.b.error.is_some();
    if !broken {
        // Everything A queued reached B's application, and the other way round.
        if w.a.queued > 0 {
            assert!(
                w.b.conn.is_some(),
                "B never accepted the connection though A queued {} bytes",
                w.a.queued
            );
        }
        assert_eq!(
            w.b.read, w.a.queued,
            "B read {} of the {} bytes A queued",
            w.b.read, w.a.queued
        );
        assert_eq!(
            w.a.read, w.b.queued,
            "A read {} of the {} bytes B queued",
            w.a.read, w.b.queued
        );
        if w.a.shut && w.b.conn.is_some() {
            assert!(w.b.peer_closed, "A shut down but B never saw the FIN");
        }
        if w.b.shut {
            assert!(w.a.peer_closed, "B shut down but A never saw the FIN");
        }
    }
});
