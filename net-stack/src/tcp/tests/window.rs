//! Zero windows: persist timer, probes with backoff, and the window reopening.

use super::*;

fn window(ack: u32, window_len: u16) -> TcpRepr<'static> {
    TcpRepr {
        window_len,
        ..peer(REMOTE_ISS + 1, Some(ack))
    }
}

/// Established, with the peer's window shut and 3000 bytes queued.
fn shut() -> Harness {
    let mut h = Harness::established(&config());
    h.send(window(LOCAL_ISS + 1, 0));
    h.write(&pattern(0, 3000));
    h.expect_nothing();
    h
}

#[test]
fn zero_window_probes_back_off_until_the_window_opens() {
    let mut h = shut();
    let ack = Some(REMOTE_ISS + 1);
    // The persist timer starts at the RTO (200 ms) and doubles per probe.
    for interval in [200, 400, 800, 1600] {
        assert_eq!(h.advance_to_timer(), ms(interval));
        // One byte past the window.
        h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1));
        h.expect_nothing();
        // The peer drops it and still has no room.
        h.send(window(LOCAL_ISS + 1, 0));
        h.expect_nothing();
    }
    assert_eq!(h.conn.stats().rto_fires, 0);
    // The window opens: data flows from the first unacknowledged byte.
    h.send(window(LOCAL_ISS + 1, 65_535));
    h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1460));
    h.expect_data(ours(LOCAL_ISS + 1461, ack), &pattern(1460, 1460));
    h.expect_data(
        with(ours(LOCAL_ISS + 2921, ack), TcpFlags::PSH),
        &pattern(2920, 80),
    );
    h.expect_nothing();
    // The persist timer is gone; the retransmission timer runs.
    assert_eq!(h.conn.poll_at(), Some(h.now + ms(200)));
    h.send(window(LOCAL_ISS + 3001, 65_535));
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn a_probe_the_peer_accepts_moves_the_stream_on() {
    let mut h = shut();
    let ack = Some(REMOTE_ISS + 1);
    h.advance_to_timer();
    h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1));
    // The peer had room again: it keeps the byte and opens the window.
    h.send(window(LOCAL_ISS + 2, 2000));
    h.expect_data(ours(LOCAL_ISS + 2, ack), &pattern(1, 1460));
    // 540 bytes of window are left: a runt, held until the ACK (SWS avoidance).
    h.expect_nothing();
    h.send(window(LOCAL_ISS + 1462, 2000));
    h.expect_data(ours(LOCAL_ISS + 1462, ack), &pattern(1461, 1460));
    h.expect_data(
        with(ours(LOCAL_ISS + 2922, ack), TcpFlags::PSH),
        &pattern(2921, 79),
    );
}

#[test]
fn unanswered_probes_time_out() {
    let mut h = shut();
    for _ in 0..5 {
        h.advance_to_timer();
        h.expect_data(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), &pattern(0, 1));
    }
    assert!(h.events().is_empty());
    h.advance_to_timer();
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 2, Some(REMOTE_ISS + 1)), TcpFlags::RST)
    });
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::TimedOut), TcpEvent::Closed]
    );
}

#[test]
fn window_closing_with_data_in_flight_falls_back_to_probes() {
    let mut h = Harness::established(&config());
    let ack = Some(REMOTE_ISS + 1);
    h.write(&pattern(0, 2000));
    h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1460));
    h.expect_data(
        with(ours(LOCAL_ISS + 1461, ack), TcpFlags::PSH),
        &pattern(1460, 540),
    );
    // The peer takes the first segment and shuts its window.
    h.send(window(LOCAL_ISS + 1461, 0));
    h.expect_nothing();
    // The second segment times out; with no window it cannot be resent, so the
    // connection probes instead, starting one (unbacked-off) RTO later.
    assert_eq!(h.advance_to_timer(), ms(200));
    h.expect_nothing();
    assert_eq!(h.advance_to_timer(), ms(200));
    h.expect_data(ours(LOCAL_ISS + 1461, ack), &pattern(1460, 1));
    h.send(window(LOCAL_ISS + 1461, 1000));
    h.expect_data(
        with(ours(LOCAL_ISS + 1461, ack), TcpFlags::PSH),
        &pattern(1460, 540),
    );
}
