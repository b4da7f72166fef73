//! Two connections talking through an in-memory link that loses, duplicates and
//! reorders segments, on a virtual clock. Every segment goes through the wire
//! layer: emitted to bytes, parsed back with its checksum verified.
//!
//! A run is fully determined by its seed. Set `TCP_TRACE=1` to print every segment
//! and the final statistics (with `--nocapture`).

use std::net::Ipv4Addr;

use super::*;
use crate::tcp::ConnStats;
use crate::wire::{ChecksumCaps, TcpPacket};

/// xorshift64*: a tiny deterministic PRNG, so a failing seed reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A frame in flight: when it arrives, at which end, and its bytes.
struct InFlight {
    at: Instant,
    to: usize,
    bytes: Bytes,
}

/// The faults of the link.
#[derive(Clone, Copy)]
struct Faults {
    loss_per_mille: u64,
    duplicate_per_mille: u64,
    /// Base one-way delay; each frame gets up to `jitter` more, which reorders.
    delay: Duration,
    jitter: Duration,
}

/// One end: its connection (none until the SYN arrives at the passive end), what it
/// must send and what it got.
struct End {
    addr: SocketAddrV4,
    conn: Option<Connection>,
    to_send: Bytes,
    sent: usize,
    received: Vec<u8>,
    closed: bool,
    finished: bool,
}

impl End {
    /// Runs the application: write what fits, read everything, close when done.
    fn run_app(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        while let Some(event) = conn.poll_event() {
            match event {
                TcpEvent::Closed => self.closed = true,
                TcpEvent::Error(error) => panic!("{} failed: {error}", self.addr),
                _ => {}
            }
        }
        if self.closed {
            return;
        }
        while self.sent < self.to_send.len() {
            match conn.send(
                self.to_send
                    .slice(self.sent..(self.sent + 5000).min(self.to_send.len())),
            ) {
                Ok(n) => self.sent += n,
                Err(TcpError::WouldBlock) => break,
                Err(error) => panic!("send: {error}"),
            }
        }
        loop {
            match conn.recv(usize::MAX) {
                Ok(data) => self.received.extend_from_slice(&data),
                Err(TcpError::WouldBlock) => break,
                Err(TcpError::Finished) => {
                    self.finished = true;
                    break;
                }
                Err(error) => panic!("recv: {error}"),
            }
        }
        if self.sent == self.to_send.len() && conn.state() != State::SynSent {
            conn.close();
        }
    }
}

fn emit(segment: &Segment, from: SocketAddrV4, to: SocketAddrV4) -> Bytes {
    let mut bytes = vec![0u8; segment.buffer_len()];
    segment.emit(&mut bytes, *from.ip(), *to.ip(), &ChecksumCaps::all());
    Bytes::from(bytes)
}

/// Transfers `a_to_b` bytes one way and `b_to_a` the other over a faulty link, both
/// sides closing when done; returns the virtual time it took and both ends' stats.
fn transfer(
    seed: u64,
    faults: Faults,
    a_to_b: usize,
    b_to_a: usize,
    config: &TcpConfig,
) -> (Duration, [ConnStats; 2]) {
    // Shown if the test fails (the harness prints captured output).
    eprintln!("transfer: seed {seed:#x}, {a_to_b} bytes one way, {b_to_a} the other");
    let mut rng = Rng(seed | 1);
    let t0 = Instant::now();
    let mut now = t0;
    let data = |n: usize, salt: usize| {
        Bytes::from(
            (0..n)
                .map(|i| ((i * 131 + salt) % 256) as u8)
                .collect::<Vec<_>>(),
        )
    };
    let a_addr = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
    let b_addr = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
    let mut ends = [
        End {
            addr: a_addr,
            conn: Some(Connection::connect(
                config,
                a_addr,
                b_addr,
                SeqNumber(rng.next() as u32),
                now,
            )),
            to_send: data(a_to_b, 1),
            sent: 0,
            received: Vec::new(),
            closed: false,
            finished: false,
        },
        End {
            addr: b_addr,
            conn: None,
            to_send: data(b_to_a, 2),
            sent: 0,
            received: Vec::new(),
            closed: false,
            finished: false,
        },
    ];
    let b_iss = SeqNumber(rng.next() as u32);
    let mut link: Vec<InFlight> = Vec::new();
    let caps = ChecksumCaps::all();

    for _step in 0..1_000_000 {
        // Deliver what has arrived.
        let (arrived, later): (Vec<_>, Vec<_>) =
            link.into_iter().partition(|frame| frame.at <= now);
        link = later;
        for frame in arrived {
            let (from, to) = (ends[1 - frame.to].addr, ends[frame.to].addr);
            let packet = TcpPacket::new_checked(&frame.bytes[..]).expect("valid segment");
            let seg = TcpRepr::parse(&packet, *from.ip(), *to.ip(), &caps).expect("valid segment");
            let payload = frame.bytes.slice(packet.header_len()..);
            let end = &mut ends[frame.to];
            match end.conn.as_mut() {
                Some(conn) => conn.handle_segment(now, &seg, payload),
                // The passive end's listener: a SYN opens the connection.
                None if seg.flags == TcpFlags::SYN => {
                    end.conn = Some(Connection::accept(config, to, from, &seg, b_iss, now));
                }
                None => {}
            }
        }
        // Timers, the applications, then everything there is to send.
        for i in 0..2 {
            if let Some(conn) = ends[i].conn.as_mut() {
                conn.handle_timeout(now);
            }
            ends[i].run_app();
            let (from, to) = (ends[i].addr, ends[1 - i].addr);
            if let Some(conn) = ends[i].conn.as_mut() {
                while let Some(segment) = conn.poll_transmit(now) {
                    if !conn.may_transmit_more() {
                        // The stack skips the next call when the connection says so:
                        // hold it to that (nothing sent, no timer moved).
                        let (at, state) = (conn.poll_at(), conn.state());
                        assert!(conn.poll_transmit(now).is_none(), "may_transmit_more said no, but a segment came");
                        assert_eq!((conn.poll_at(), conn.state()), (at, state), "may_transmit_more said no, but the call did something");
                    }
                    if std::env::var_os("TCP_TRACE").is_some() {
                        eprintln!(
                            "{:?} {} {:?} seq={} ack={:?} len={} win={} state={:?} rto={:?}",
                            now - t0,
                            i,
                            segment.repr.flags,
                            segment.repr.seq_number,
                            segment.repr.ack_number.map(|a| a.0),
                            segment.payload.len(),
                            segment.repr.window_len,
                            conn.state(),
                            conn.stats().rto
                        );
                    }
                    let bytes = emit(&segment, from, to);
                    let copies = if rng.chance(faults.loss_per_mille) {
                        0
                    } else if rng.chance(faults.duplicate_per_mille) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let jitter = faults.jitter.mul_f64(rng.below(1000) as f64 / 1000.0);
                        link.push(InFlight {
                            at: now + faults.delay + jitter,
                            to: 1 - i,
                            bytes: bytes.clone(),
                        });
                    }
                }
            }
        }
        if ends.iter().all(|end| end.closed) {
            assert_eq!(ends[1].received.len(), a_to_b);
            assert!(ends[1].received == ends[0].to_send[..], "A -> B differs");
            assert!(ends[0].received == ends[1].to_send[..], "B -> A differs");
            assert!(ends[0].finished && ends[1].finished);
            if std::env::var_os("TCP_TRACE").is_some() {
                for end in &ends {
                    eprintln!(
                        "{:?} {:?}",
                        now - t0,
                        end.conn.as_ref().map(Connection::stats)
                    );
                }
            }
            let stats = ends.map(|end| {
                end.conn
                    .map(|conn| conn.stats())
                    .unwrap_or_default()
            });
            return (now - t0, stats);
        }
        // On to the next arrival or deadline.
        let deadlines = ends
            .iter()
            .filter_map(|end| end.conn.as_ref().and_then(Connection::poll_at));
        let next = link.iter().map(|frame| frame.at).chain(deadlines).min();
        now = next
            .expect("a stuck transfer: nothing in flight and no timer")
            .max(now);
    }
    panic!("transfer did not finish");
}

fn lossy() -> Faults {
    Faults {
        loss_per_mille: 20,
        duplicate_per_mille: 10,
        delay: ms(1),
        jitter: ms(2),
    }
}

fn loopback_config() -> TcpConfig {
    TcpConfig {
        time_wait: ms(100),
        ..TcpConfig::default()
    }
}

#[test]
fn one_megabyte_over_a_lossy_reordering_link() {
    let started = Instant::now();
    for seed in [1, 0x5eed, 0xdead_beef] {
        transfer(seed, lossy(), 1 << 20, 64 * 1024, &loopback_config());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn clean_link_small_buffers_and_nagle() {
    let config = TcpConfig {
        send_buffer: 4096,
        recv_buffer: 3000,
        nagle: true,
        ..loopback_config()
    };
    let clean = Faults {
        loss_per_mille: 0,
        duplicate_per_mille: 0,
        delay: ms(1),
        jitter: Duration::ZERO,
    };
    let (took, stats) = transfer(7, clean, 200_000, 50_000, &config);
    // Nothing is lost, so nothing is sent twice, and flow control keeps it moving.
    for stats in &stats {
        assert_eq!((stats.retransmits, stats.rto_fires), (0, 0));
    }
    assert_eq!(stats[0].bytes_sent, 200_000);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // And with faults: small windows make zero-window episodes frequent.
    transfer(8, lossy(), 100_000, 10_000, &config);
}

#[test]
fn heavy_loss_without_delayed_acks_or_window_scaling() {
    let config = TcpConfig {
        ack_delay: None,
        window_scaling: false,
        mss: 536,
        max_retransmits: 30,
        ..loopback_config()
    };
    let faults = Faults {
        loss_per_mille: 150,
        duplicate_per_mille: 50,
        delay: ms(5),
        jitter: ms(20),
    };
    transfer(99, faults, 100_000, 100_000, &config);
}
