//! Closing: from our side (FIN-WAIT-1/2, TIME-WAIT), from the peer's (CLOSE-WAIT,
//! LAST-ACK), at once (CLOSING), and the 2*MSL wait.

use super::*;

/// Established, then our FIN sent and acknowledged (FIN-WAIT-2).
fn fin_wait_2() -> Harness {
    let mut h = Harness::established(&config());
    h.conn.close();
    assert_eq!(h.conn.state(), State::FinWait1);
    h.expect(with(
        ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)),
        TcpFlags::FIN,
    ));
    h.expect_nothing();
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 2)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::FinWait2);
    assert_eq!(h.conn.poll_at(), None);
    h
}

/// FIN-WAIT-2, then the peer's FIN (TIME-WAIT).
fn time_wait() -> Harness {
    let mut h = fin_wait_2();
    h.send(with(
        peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 2)),
        TcpFlags::FIN,
    ));
    h.expect(ours(LOCAL_ISS + 2, Some(REMOTE_ISS + 2)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::TimeWait);
    assert_eq!(h.events(), [TcpEvent::PeerClosed]);
    h
}

#[test]
fn active_close_through_time_wait() {
    let mut h = time_wait();
    assert_eq!(h.conn.recv(10), Err(TcpError::Finished));
    assert_eq!(
        h.conn.send(Bytes::from_static(b"x")),
        Err(TcpError::InvalidState)
    );
    // TIME-WAIT lasts 2*MSL (1 s in these tests).
    assert_eq!(h.advance_to_timer(), Duration::from_secs(1));
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(h.events(), [TcpEvent::Closed]);
    h.expect_nothing();
    assert_eq!(h.conn.poll_at(), None);
    assert_eq!(h.conn.recv(10), Err(TcpError::Finished));
}

#[test]
fn fin_wait_2_still_receives_data() {
    let mut h = fin_wait_2();
    h.send(TcpRepr {
        payload: b"late",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 2))
    });
    h.expect(TcpRepr {
        window_len: 65_531,
        ..ours(LOCAL_ISS + 2, Some(REMOTE_ISS + 5))
    });
    assert_eq!(h.read_all(), b"late");
}

#[test]
fn retransmitted_fin_in_time_wait_is_acked_again_and_restarts_the_wait() {
    let mut h = time_wait();
    h.advance(ms(700));
    h.send(with(
        peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 2)),
        TcpFlags::FIN,
    ));
    h.expect(ours(LOCAL_ISS + 2, Some(REMOTE_ISS + 2)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::TimeWait);
    assert_eq!(h.advance_to_timer(), Duration::from_secs(1));
    assert_eq!(h.events(), [TcpEvent::Closed]);
}

#[test]
fn fin_and_ack_of_our_fin_in_one_segment() {
    let mut h = Harness::established(&config());
    h.conn.close();
    h.recv().expect("FIN");
    h.send(with(
        peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 2)),
        TcpFlags::FIN,
    ));
    h.expect(ours(LOCAL_ISS + 2, Some(REMOTE_ISS + 2)));
    assert_eq!(h.conn.state(), State::TimeWait);
}

#[test]
fn passive_close_through_last_ack() {
    let mut h = Harness::established(&config());
    h.send(TcpRepr {
        payload: b"bye",
        ..with(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)), TcpFlags::FIN)
    });
    h.expect(TcpRepr {
        window_len: 65_532,
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 5))
    });
    assert_eq!(h.conn.state(), State::CloseWait);
    assert_eq!(h.events(), [TcpEvent::Readable, TcpEvent::PeerClosed]);
    assert_eq!(h.conn.recv(10).unwrap(), "bye");
    assert_eq!(h.conn.recv(10), Err(TcpError::Finished));
    // We may still send, and our FIN rides on the last data.
    h.write(b"ok");
    h.conn.close();
    assert_eq!(h.conn.state(), State::LastAck);
    h.expect_data(
        with(
            ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 5)),
            TcpFlags::PSH | TcpFlags::FIN,
        ),
        b"ok",
    );
    h.expect_nothing();
    h.send(peer(REMOTE_ISS + 5, Some(LOCAL_ISS + 4)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(h.events(), [TcpEvent::Closed]);
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn simultaneous_close_through_closing() {
    let mut h = Harness::established(&config());
    h.conn.close();
    h.expect(with(
        ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)),
        TcpFlags::FIN,
    ));
    // The peer's FIN crosses ours: it does not acknowledge our FIN yet.
    h.send(with(
        peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)),
        TcpFlags::FIN,
    ));
    assert_eq!(h.conn.state(), State::Closing);
    h.expect(ours(LOCAL_ISS + 2, Some(REMOTE_ISS + 2)));
    h.expect_nothing();
    // Its ACK of our FIN.
    h.send(peer(REMOTE_ISS + 2, Some(LOCAL_ISS + 2)));
    assert_eq!(h.conn.state(), State::TimeWait);
    h.expect_nothing();
    assert_eq!(h.advance_to_timer(), Duration::from_secs(1));
    assert_eq!(h.events(), [TcpEvent::PeerClosed, TcpEvent::Closed]);
}

#[test]
fn fin_is_retransmitted() {
    let mut h = Harness::established(&config());
    h.write(b"data");
    h.conn.close();
    let fin = with(
        ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)),
        TcpFlags::PSH | TcpFlags::FIN,
    );
    h.expect_data(fin, b"data");
    assert_eq!(h.advance_to_timer(), ms(200));
    h.expect_data(fin, b"data");
    // The data is acknowledged but not the FIN: the FIN alone goes again.
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 5)));
    h.expect_nothing();
    assert_eq!(h.advance_to_timer(), ms(400));
    h.expect(with(
        ours(LOCAL_ISS + 5, Some(REMOTE_ISS + 1)),
        TcpFlags::FIN,
    ));
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 6)));
    assert_eq!(h.conn.state(), State::FinWait2);
}

#[test]
fn out_of_order_fin_waits_for_the_data_before_it() {
    let mut h = Harness::established(&config());
    let ack = Some(LOCAL_ISS + 1);
    h.send(TcpRepr {
        payload: b"world",
        ..with(peer(REMOTE_ISS + 6, ack), TcpFlags::FIN)
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    assert_eq!(h.conn.state(), State::Established);
    h.send(TcpRepr {
        payload: b"hello",
        ..peer(REMOTE_ISS + 1, ack)
    });
    h.expect(TcpRepr {
        window_len: 65_525,
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 12))
    });
    assert_eq!(h.conn.state(), State::CloseWait);
    assert_eq!(h.events(), [TcpEvent::Readable, TcpEvent::PeerClosed]);
    assert_eq!(h.read_all(), b"helloworld");
    assert_eq!(h.conn.recv(1), Err(TcpError::Finished));
}

#[test]
fn close_before_the_handshake() {
    let mut h = Harness::connect(&config());
    h.recv().expect("SYN");
    h.conn.close();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(h.events(), [TcpEvent::Closed]);
    h.expect_nothing();
    assert_eq!(h.conn.poll_at(), None);

    // In SYN-RECEIVED the FIN waits for the handshake.
    let syn = with(peer(REMOTE_ISS, None), TcpFlags::SYN);
    let mut h = Harness::accept(&config(), &syn);
    h.recv().expect("SYN-ACK");
    h.conn.close();
    h.expect_nothing();
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)));
    assert_eq!(h.conn.state(), State::FinWait1);
    h.expect(with(
        ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)),
        TcpFlags::FIN,
    ));
}

#[test]
fn calls_after_close() {
    let mut h = Harness::established(&config());
    h.conn.close();
    assert_eq!(
        h.conn.send(Bytes::from_static(b"x")),
        Err(TcpError::InvalidState)
    );
    assert_eq!(h.conn.send_capacity(), 0);
    assert_eq!(h.conn.recv(1), Err(TcpError::WouldBlock));
    h.conn.close();
    assert_eq!(h.conn.state(), State::FinWait1);
}
