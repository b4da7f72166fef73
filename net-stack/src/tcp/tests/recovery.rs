//! Loss recovery and congestion control: fast retransmit on three duplicate ACKs,
//! NewReno fast recovery, limited transmit, slow start, congestion avoidance, the
//! loss window after a timeout, and no congestion control at all.
//!
//! Segment `k` (from 1) is our `k`-th full-sized segment: sequence number
//! `1001 + (k - 1) * 1460`.

use super::*;

const MSS: usize = 1460;

/// The sequence number of our segment `k`.
pub(super) fn seg(k: usize) -> u32 {
    LOCAL_ISS + 1 + ((k - 1) * MSS) as u32
}

/// Asserts that the next segment is our full-sized segment `k`.
#[track_caller]
pub(super) fn expect_seg(h: &mut Harness, k: usize) {
    h.expect_data(
        ours(seg(k), Some(REMOTE_ISS + 1)),
        &pattern((k - 1) * MSS, MSS),
    );
}

/// An ACK from the peer for everything before our segment `k`.
pub(super) fn ack_before(k: usize) -> TcpRepr<'static> {
    peer(REMOTE_ISS + 1, Some(seg(k)))
}

/// Sends everything that may go now; returns how many segments went.
fn drain(h: &mut Harness) -> usize {
    std::iter::from_fn(|| h.recv()).count()
}

#[test]
fn three_duplicate_acks_retransmit_before_the_timeout() {
    let mut h = Harness::established(&config());
    h.write(&pattern(0, 20 * MSS));
    // The initial window: 4380 bytes, three segments.
    assert_eq!(h.conn.stats().cwnd, 3 * MSS);
    for k in 1..=3 {
        expect_seg(&mut h, k);
    }
    h.expect_nothing();
    // Segment 1 is acknowledged: slow start opens room for two more.
    h.send(ack_before(2));
    expect_seg(&mut h, 4);
    expect_seg(&mut h, 5);
    h.expect_nothing();

    // Segment 2 is lost; 3, 4 and 5 arrive. The first two duplicate ACKs each
    // send a new segment (limited transmit), the third retransmits segment 2.
    h.advance(ms(5));
    h.send(ack_before(2));
    expect_seg(&mut h, 6);
    h.expect_nothing();
    h.send(ack_before(2));
    expect_seg(&mut h, 7);
    h.expect_nothing();
    h.send(ack_before(2));
    expect_seg(&mut h, 2);
    h.expect_nothing();
    let stats = h.conn.stats();
    assert_eq!((stats.fast_retransmits, stats.dup_acks), (1, 3));
    assert_eq!((stats.retransmits, stats.rto_fires), (1, 0));
    // FlightSize was segments 2-7: ssthresh and cwnd are half of it.
    assert_eq!((stats.ssthresh, stats.cwnd), (3 * MSS, 3 * MSS));
    assert!(h.elapsed() < ms(200), "before the RTO");

    // Each further duplicate ACK is a segment that left the network: one new
    // segment each (pipe, RFC 6675), without inflating cwnd.
    h.send(ack_before(2));
    expect_seg(&mut h, 8);
    h.expect_nothing();
    // The retransmission fills the hole: the ACK covers everything up to 7
    // (`recover`), recovery ends with cwnd = ssthresh.
    h.send(ack_before(8));
    let stats = h.conn.stats();
    assert_eq!((stats.cwnd, stats.ssthresh), (3 * MSS, 3 * MSS));
    // Segment 8 is in flight; cwnd allows two more.
    expect_seg(&mut h, 9);
    expect_seg(&mut h, 10);
    h.expect_nothing();
    assert_eq!(stats.retransmits, 1);
}

#[test]
fn partial_acks_resend_the_next_hole_newreno() {
    let mut h = Harness::established(&config());
    h.write(&pattern(0, 20 * MSS));
    drain(&mut h);
    h.send(ack_before(2));
    assert_eq!(drain(&mut h), 2);
    // Segments 2 and 4 are lost; 3 and 5 arrive, plus the limited-transmit ones.
    for k in [6, 7] {
        h.send(ack_before(2));
        expect_seg(&mut h, k);
    }
    h.send(ack_before(2));
    expect_seg(&mut h, 2);
    h.expect_nothing();
    // The retransmission of 2 arrives: a partial ACK up to the next hole, which is
    // resent at once (RFC 6582).
    h.send(ack_before(4));
    expect_seg(&mut h, 4);
    h.send(ack_before(8));
    let stats = h.conn.stats();
    assert_eq!((stats.retransmits, stats.fast_retransmits), (2, 1));
    assert_eq!(stats.cwnd, stats.ssthresh);
}

#[test]
fn limited_transmit_only_with_fast_retransmit() {
    let config = TcpConfig {
        fast_retransmit: false,
        ..config()
    };
    let mut h = Harness::established(&config);
    h.write(&pattern(0, 20 * MSS));
    assert_eq!(drain(&mut h), 3);
    for _ in 0..5 {
        h.send(ack_before(1));
        h.expect_nothing();
    }
    assert_eq!(h.conn.stats().dup_acks, 5);
    // Only the timer recovers.
    assert_eq!(h.advance_to_timer(), ms(200));
    expect_seg(&mut h, 1);
    assert_eq!(h.conn.stats().fast_retransmits, 0);
}

#[test]
fn slow_start_doubles_cwnd_every_round_trip() {
    let config = TcpConfig {
        send_buffer: 256 * 1024,
        ..config()
    };
    let mut h = Harness::established(&config);
    h.write(&pattern(0, 100 * MSS));
    let mut acked = 1;
    for round in 0..4 {
        let cwnd = h.conn.stats().cwnd;
        assert_eq!(cwnd, (3 << round) * MSS);
        let sent = drain(&mut h);
        assert_eq!(sent, 3 << round, "round {round}");
        h.advance(ms(10));
        for _ in 0..sent {
            acked += 1;
            h.send(ack_before(acked));
        }
        assert_eq!(h.conn.stats().cwnd, 2 * cwnd);
    }
}

#[test]
fn a_timeout_leaves_one_segment_then_avoidance_adds_one_per_round_trip() {
    let mut h = Harness::established(&config());
    h.write(&pattern(0, 40 * MSS));
    assert_eq!(drain(&mut h), 3);
    h.advance_to_timer();
    let stats = h.conn.stats();
    // RFC 5681 §3.1: cwnd = 1 MSS, ssthresh = max(FlightSize / 2, 2 MSS).
    assert_eq!((stats.cwnd, stats.ssthresh), (MSS, 2 * MSS));
    expect_seg(&mut h, 1);
    h.expect_nothing();
    // Slow start up to ssthresh: the ACK of segment 1 makes cwnd 2 MSS.
    h.send(ack_before(2));
    assert_eq!(h.conn.stats().cwnd, 2 * MSS);
    expect_seg(&mut h, 2);
    expect_seg(&mut h, 3);
    h.expect_nothing();
    // Congestion avoidance: a whole window acknowledged adds one MSS.
    let mut acked = 2;
    for round in 0..4 {
        let cwnd = h.conn.stats().cwnd;
        assert_eq!(cwnd, (2 + round) * MSS);
        let in_flight = cwnd / MSS;
        h.advance(ms(10));
        for _ in 0..in_flight {
            acked += 1;
            h.send(ack_before(acked));
        }
        assert_eq!(h.conn.stats().cwnd, cwnd + MSS, "round {round}");
        assert_eq!(drain(&mut h), in_flight + 1);
    }
}

#[test]
fn no_congestion_control_sends_the_whole_window() {
    let config = TcpConfig {
        congestion: CongestionControl::None,
        send_buffer: 256 * 1024,
        ..config()
    };
    let mut h = Harness::established(&config);
    h.write(&pattern(0, 60 * MSS));
    // The peer's window (65,535) is the only limit: 44 full segments (the rest
    // of the window is too small a segment to send, RFC 9293 §3.8.6.2.1).
    assert_eq!(drain(&mut h), 44);
    let stats = h.conn.stats();
    assert_eq!((stats.cwnd, stats.ssthresh), (usize::MAX, usize::MAX));
    h.advance_to_timer();
    assert_eq!(h.conn.stats().cwnd, usize::MAX);
}

#[test]
fn cubic_grows_and_backs_off_by_beta() {
    let config = TcpConfig {
        congestion: CongestionControl::Cubic,
        send_buffer: 256 * 1024,
        ..config()
    };
    let mut h = Harness::established(&config);
    h.write(&pattern(0, 100 * MSS));
    assert_eq!(drain(&mut h), 3);
    for k in 2..=4 {
        h.send(ack_before(k));
    }
    assert_eq!(h.conn.stats().cwnd, 6 * MSS);
    assert_eq!(drain(&mut h), 6);
    // Segment 4 is lost: three duplicate ACKs, flight 4..11 (limited transmit).
    for _ in 0..3 {
        h.send(ack_before(4));
        drain(&mut h);
    }
    let stats = h.conn.stats();
    assert_eq!(stats.fast_retransmits, 1);
    // ssthresh = 0.7 * FlightSize (8 segments).
    assert_eq!(stats.ssthresh, 8 * MSS * 7 / 10);
    assert_eq!(stats.cwnd, stats.ssthresh);
}
