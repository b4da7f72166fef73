//! Packet-level tests of [`Connection`], grouped by what they exercise, in the
//! spirit of smoltcp's `send!`/`recv!`: build a segment from the peer, feed it, and
//! check the exact segments that come back.
//!
//! The connection under test is always 198.18.0.1:49152 with ISS 1000; the peer is
//! 198.18.0.2:80 with ISS 5000. So our data starts at 1001 and the peer's at 5001.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{CongestionControl, Connection, Segment, State, TcpConfig, TcpError, TcpEvent};
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

mod close;
mod data;
mod handshake;
mod keepalive;
mod loopback;
mod prediction;
mod recovery;
mod reset;
mod retransmit;
mod robustness;
mod sack;
mod timestamps;
mod window;

pub(super) const LOCAL_PORT: u16 = 49152;
pub(super) const REMOTE_PORT: u16 = 80;
pub(super) const LOCAL_ISS: u32 = 1000;
pub(super) const REMOTE_ISS: u32 = 5000;

pub(super) fn local() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), LOCAL_PORT)
}

pub(super) fn remote() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), REMOTE_PORT)
}

/// The test configuration: MSS 1460, a 65,535-byte receive buffer (so the window is
/// exactly 65,535), no window scaling, no delayed ACKs, RTO 1 s initial and 200 ms
/// minimum, a 1 s TIME-WAIT, NewReno with fast retransmit, no SACK, no timestamps.
pub(super) fn config() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        send_buffer: 64 * 1024,
        recv_buffer: 65_535,
        window_scaling: false,
        rto_initial: Duration::from_secs(1),
        rto_min: Duration::from_millis(200),
        rto_max: Duration::from_secs(60),
        max_retransmits: 5,
        max_syn_retransmits: 3,
        time_wait: Duration::from_secs(1),
        ack_delay: None,
        nagle: false,
        // No rate limit on ACKs to unacceptable segments, so that each test sees
        // the answer to each segment (`reset.rs` tests the limit).
        invalid_ack_interval: Duration::ZERO,
        congestion: CongestionControl::NewReno,
        fast_retransmit: true,
        sack: false,
        timestamps: false,
        keepalive: None,
    }
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A segment from the peer: seq, and ACK when `ack` is given, window 65,535.
pub(super) fn peer(seq: u32, ack: Option<u32>) -> TcpRepr<'static> {
    TcpRepr {
        src_port: REMOTE_PORT,
        dst_port: LOCAL_PORT,
        seq_number: SeqNumber(seq),
        ack_number: ack.map(SeqNumber),
        window_len: 65_535,
        flags: if ack.is_some() {
            TcpFlags::ACK
        } else {
            TcpFlags::empty()
        },
        ..TcpRepr::default()
    }
}

/// A segment from us: seq, and ACK when `ack` is given, window 65,535.
pub(super) fn ours(seq: u32, ack: Option<u32>) -> TcpRepr<'static> {
    TcpRepr {
        src_port: LOCAL_PORT,
        dst_port: REMOTE_PORT,
        ..peer(seq, ack)
    }
}

/// Adds `flags` to a segment.
pub(super) fn with(repr: TcpRepr<'_>, flags: TcpFlags) -> TcpRepr<'_> {
    TcpRepr {
        flags: repr.flags | flags,
        ..repr
    }
}

/// `n` bytes of a recognisable pattern starting at stream offset `from`.
pub(super) fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

/// One connection on a virtual clock.
pub(super) struct Harness {
    pub(super) conn: Connection,
    pub(super) t0: Instant,
    pub(super) now: Instant,
}

impl Harness {
    /// An active open: the SYN not polled yet.
    pub(super) fn connect(config: &TcpConfig) -> Harness {
        let t0 = Instant::now();
        let conn = Connection::connect(config, local(), remote(), SeqNumber(LOCAL_ISS), t0);
        Harness { conn, t0, now: t0 }
    }

    /// A passive open for `syn`: the SYN-ACK not polled yet.
    pub(super) fn accept(config: &TcpConfig, syn: &TcpRepr<'_>) -> Harness {
        let t0 = Instant::now();
        let conn = Connection::accept(config, local(), remote(), syn, SeqNumber(LOCAL_ISS), t0);
        Harness { conn, t0, now: t0 }
    }

    /// An active open carried through the handshake (the SYN-ACK arrives 10 ms after
    /// the SYN, with MSS 1460 and window 65,535), events drained.
    pub(super) fn established(config: &TcpConfig) -> Harness {
        let mut h = Harness::connect(config);
        let syn = h.recv().expect("SYN");
        assert_eq!(syn.repr.flags, TcpFlags::SYN);
        h.advance(ms(10));
        h.send(TcpRepr {
            max_seg_size: Some(1460),
            ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
        });
        h.expect(TcpRepr {
            window_len: h.conn.window_field(),
            ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1))
        });
        h.expect_nothing();
        assert_eq!(h.events(), [TcpEvent::Connected]);
        assert_eq!(h.conn.state(), State::Established);
        h
    }

    /// Feeds a segment from the peer (its payload as a `Bytes`).
    pub(super) fn send(&mut self, seg: TcpRepr<'_>) {
        let payload = Bytes::copy_from_slice(seg.payload);
        self.conn.handle_segment(self.now, &seg, payload);
    }

    /// The next segment from the connection.
    pub(super) fn recv(&mut self) -> Option<Segment> {
        self.conn.poll_transmit(self.now)
    }

    /// Asserts that the next segment is `expected` with an empty payload.
    #[track_caller]
    pub(super) fn expect(&mut self, expected: TcpRepr<'_>) {
        self.expect_data(expected, b"");
    }

    /// Asserts that the next segment is `expected` (header) carrying `payload`.
    #[track_caller]
    pub(super) fn expect_data(&mut self, expected: TcpRepr<'_>, payload: &[u8]) {
        let segment = self.recv().expect("a segment");
        let expected = TcpRepr {
            payload: &[],
            ..expected
        };
        assert_eq!(segment.repr, expected, "header");
        let got = segment.payload.to_bytes();
        assert_eq!(got.len(), payload.len(), "payload length");
        assert!(got == payload, "payload bytes differ");
    }

    /// Asserts that nothing is to be sent.
    #[track_caller]
    pub(super) fn expect_nothing(&mut self) {
        if let Some(segment) = self.recv() {
            panic!(
                "unexpected segment {:?} with {} bytes",
                segment.repr,
                segment.payload.len()
            );
        }
    }

    /// Moves the clock on by `by` and runs any timers due.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.handle_timeout(self.now);
    }

    /// Moves the clock to the next deadline and runs it; returns how far it moved.
    #[track_caller]
    pub(super) fn advance_to_timer(&mut self) -> Duration {
        let at = self.conn.poll_at().expect("a timer");
        let by = at.saturating_duration_since(self.now);
        self.advance(by);
        by
    }

    /// The time since the harness started.
    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Every queued event.
    pub(super) fn events(&mut self) -> Vec<TcpEvent> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// Every readable byte.
    pub(super) fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Ok(chunk) = self.conn.recv(usize::MAX) {
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// Queues `data` and checks that all of it was taken.
    #[track_caller]
    pub(super) fn write(&mut self, data: &[u8]) {
        let taken = self.conn.send(Bytes::copy_from_slice(data));
        assert_eq!(taken, Ok(data.len()));
    }
}

#[test]
fn errors_and_states_display() {
    assert_eq!(TcpError::Refused.to_string(), "connection refused");
    let boxed: Box<dyn std::error::Error> = Box::new(TcpError::Reset);
    assert_eq!(boxed.to_string(), "connection reset by peer");
    assert_eq!(State::FinWait2.to_string(), "FIN-WAIT-2");
    assert!(State::CloseWait.is_synchronized() && !State::SynReceived.is_synchronized());
}
