//! Retransmission: RTO with backoff, go-back from SND.UNA, Karn's algorithm, and
//! giving up.

use super::*;

#[test]
fn rto_retransmits_the_oldest_segment_with_doubled_rto() {
    let mut h = Harness::established(&config());
    let ack = Some(REMOTE_ISS + 1);
    h.write(&pattern(0, 3000));
    h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1460));
    h.expect_data(ours(LOCAL_ISS + 1461, ack), &pattern(1460, 1460));
    h.expect_data(
        with(ours(LOCAL_ISS + 2921, ack), TcpFlags::PSH),
        &pattern(2920, 80),
    );
    h.expect_nothing();

    for (n, rto) in [(1, 200), (2, 400), (3, 800)] {
        assert_eq!(h.advance_to_timer(), ms(rto));
        // Only the oldest segment, up to the MSS.
        h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1460));
        h.expect_nothing();
        let stats = h.conn.stats();
        assert_eq!((stats.rto_fires, stats.retransmits), (n, n));
        assert_eq!(stats.rto, ms(2 * rto));
    }

    // The first segment gets through: the rest goes again (go-back-N).
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1461)));
    h.expect_data(ours(LOCAL_ISS + 1461, ack), &pattern(1460, 1460));
    h.expect_data(
        with(ours(LOCAL_ISS + 2921, ack), TcpFlags::PSH),
        &pattern(2920, 80),
    );
    h.expect_nothing();
    assert_eq!(h.conn.stats().retransmits, 5);
    // The RTO stays backed off (Karn): nothing was timed.
    assert_eq!(h.conn.poll_at(), Some(h.now + ms(1600)));
}

#[test]
fn an_ack_beyond_the_resent_segment_skips_what_the_peer_has() {
    let mut h = Harness::established(&config());
    let ack = Some(REMOTE_ISS + 1);
    h.write(&pattern(0, 3000));
    while h.recv().is_some() {}
    h.advance_to_timer();
    h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1460));
    // The peer held the later segments out of order: the ACK covers them all.
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 3001)));
    h.expect_nothing();
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn karn_no_rtt_sample_from_a_retransmission() {
    let mut h = Harness::established(&config());
    let ack = Some(REMOTE_ISS + 1);
    assert_eq!(h.conn.stats().srtt, Some(ms(10)));
    h.write(b"hello");
    h.recv().expect("data");
    h.advance_to_timer();
    h.expect_data(with(ours(LOCAL_ISS + 1, ack), TcpFlags::PSH), b"hello");
    // The ACK could be for either transmission: no sample.
    h.advance(ms(50));
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 6)));
    assert_eq!(h.conn.stats().srtt, Some(ms(10)));
    assert_eq!(h.conn.stats().rto, ms(400));
    // New data is timed again, and its sample ends the backoff.
    h.write(b"again");
    h.recv().expect("data");
    h.advance(ms(30));
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 11)));
    // SRTT = 7/8 * 10 + 1/8 * 30; RTTVAR = 3/4 * 5 + 1/4 * 20.
    assert_eq!(h.conn.stats().srtt, Some(Duration::from_micros(12_500)));
    assert_eq!(h.conn.stats().rto, ms(200));
}

#[test]
fn rtt_samples_set_the_rto() {
    let config = TcpConfig {
        rto_min: ms(1),
        ..config()
    };
    let mut h = Harness::established(&config);
    // SRTT 10 ms, RTTVAR 5 ms: RTO 30 ms.
    assert_eq!(h.conn.stats().rto, ms(30));
    h.write(b"x");
    h.recv().expect("data");
    assert_eq!(h.conn.poll_at(), Some(h.now + ms(30)));
    h.advance(ms(10));
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 2)));
    // RTTVAR = 3/4 * 5, SRTT 10: 10 + 15.
    assert_eq!(h.conn.stats().rto, ms(25));
}

#[test]
fn retransmission_limit_times_out_with_a_reset() {
    let mut h = Harness::established(&config());
    let ack = Some(REMOTE_ISS + 1);
    h.write(b"hello");
    h.recv().expect("data");
    // max_retransmits is 5.
    for rto in [200, 400, 800, 1600, 3200] {
        assert_eq!(h.advance_to_timer(), ms(rto));
        h.expect_data(with(ours(LOCAL_ISS + 1, ack), TcpFlags::PSH), b"hello");
        assert!(h.events().is_empty());
    }
    assert_eq!(h.advance_to_timer(), ms(6400));
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 6, ack), TcpFlags::RST)
    });
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::TimedOut), TcpEvent::Closed]
    );
    assert_eq!(
        h.conn.send(Bytes::from_static(b"x")),
        Err(TcpError::TimedOut)
    );
    assert_eq!(h.conn.recv(1), Err(TcpError::TimedOut));
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn rto_is_capped_at_rto_max() {
    let config = TcpConfig {
        rto_max: ms(500),
        max_retransmits: 10,
        ..config()
    };
    let mut h = Harness::established(&config);
    h.write(b"x");
    h.recv().expect("data");
    let intervals: Vec<_> = (0..5)
        .map(|_| {
            let by = h.advance_to_timer();
            h.recv().expect("retransmission");
            by
        })
        .collect();
    assert_eq!(intervals, [ms(200), ms(400), ms(500), ms(500), ms(500)]);
}
