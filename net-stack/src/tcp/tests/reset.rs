//! Resets received (RFC 9293 acceptability, RFC 5961 exact match and challenge
//! ACKs) and sent (abort, CLOSED), and the SYN
//! and window checks around them.

use super::*;

#[test]
fn rst_at_rcv_nxt_resets() {
    let mut h = Harness::established(&config());
    h.send(TcpRepr {
        payload: b"unread",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    h.recv().expect("ACK");
    h.events();
    h.send(with(peer(REMOTE_ISS + 7, None), TcpFlags::RST));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::Reset), TcpEvent::Closed]
    );
    assert_eq!(h.conn.recv(10), Err(TcpError::Reset));
    assert_eq!(h.conn.send(Bytes::from_static(b"x")), Err(TcpError::Reset));
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn rst_in_the_window_but_not_at_rcv_nxt_gets_a_challenge_ack() {
    // RFC 5961 §3.2: it may be blind; the real peer answers the challenge with
    // an RST at RCV.NXT.
    let mut h = Harness::established(&config());
    h.send(with(peer(REMOTE_ISS + 60_000, None), TcpFlags::RST));
    h.send(with(peer(REMOTE_ISS + 2, Some(LOCAL_ISS + 1)), TcpFlags::RST));
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Established);
    assert!(h.events().is_empty());
    assert_eq!(h.conn.stats().challenge_acks, 2);
    h.send(with(peer(REMOTE_ISS + 1, None), TcpFlags::RST));
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::Reset), TcpEvent::Closed]
    );
}

#[test]
fn acks_too_far_behind_are_dropped_with_an_ack() {
    // RFC 5961 §5.2: valid ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
    let mut h = Harness::established(&config());
    let far_behind = (LOCAL_ISS + 1).wrapping_sub(65_536);
    h.send(TcpRepr {
        payload: b"data",
        ..peer(REMOTE_ISS + 1, Some(far_behind))
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.conn.recv_available(), 0);
    assert_eq!(h.conn.stats().challenge_acks, 1);
    // Within one window behind: an old ACK, but the data is taken.
    h.send(TcpRepr {
        payload: b"data",
        ..peer(REMOTE_ISS + 1, Some(far_behind + 1))
    });
    assert_eq!(h.read_all(), b"data");
    // Beyond SND.NXT: dropped and answered too.
    h.send(TcpRepr {
        payload: b"more",
        ..peer(REMOTE_ISS + 5, Some(LOCAL_ISS + 2))
    });
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn rst_outside_the_window_is_ignored() {
    let mut h = Harness::established(&config());
    // Past the right edge, and before RCV.NXT.
    h.send(with(peer(REMOTE_ISS + 1 + 65_535, None), TcpFlags::RST));
    h.send(with(peer(REMOTE_ISS, None), TcpFlags::RST));
    h.send(with(
        peer(REMOTE_ISS.wrapping_sub(10_000), Some(LOCAL_ISS + 1)),
        TcpFlags::RST,
    ));
    // Not even answered.
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Established);
    assert!(h.events().is_empty());
}

#[test]
fn rst_in_syn_received_after_passive_open() {
    let mut h = Harness::accept(&config(), &with(peer(REMOTE_ISS, None), TcpFlags::SYN));
    h.recv().expect("SYN-ACK");
    h.send(with(peer(REMOTE_ISS + 1, None), TcpFlags::RST));
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::Reset), TcpEvent::Closed]
    );
}

#[test]
fn rst_while_closing_just_closes() {
    let mut h = Harness::established(&config());
    h.send(with(
        peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)),
        TcpFlags::FIN,
    ));
    h.conn.close();
    while h.recv().is_some() {}
    assert_eq!(h.conn.state(), State::LastAck);
    h.events();
    h.send(with(peer(REMOTE_ISS + 2, None), TcpFlags::RST));
    assert_eq!(h.events(), [TcpEvent::Closed]);
}

#[test]
fn abort_sends_a_reset() {
    let mut h = Harness::established(&config());
    h.write(b"queued");
    h.conn.abort();
    assert_eq!(h.conn.state(), State::Closed);
    // `Closed` only once the RST is out.
    assert!(h.events().is_empty());
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), TcpFlags::RST)
    });
    h.expect_nothing();
    assert_eq!(h.events(), [TcpEvent::Closed]);
    assert_eq!(
        h.conn.send(Bytes::from_static(b"x")),
        Err(TcpError::InvalidState)
    );
    assert_eq!(h.conn.recv(1), Err(TcpError::Aborted));
    assert_eq!(h.conn.poll_at(), None);
    h.conn.abort();
    h.expect_nothing();
}

#[test]
fn abort_covers_data_already_sent() {
    let mut h = Harness::established(&config());
    h.write(b"sent");
    h.recv().expect("data");
    h.conn.abort();
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 5, Some(REMOTE_ISS + 1)), TcpFlags::RST)
    });
}

#[test]
fn abort_before_the_peer_knows_sends_nothing() {
    let mut h = Harness::connect(&config());
    h.recv().expect("SYN");
    h.conn.abort();
    h.expect_nothing();
    assert_eq!(h.events(), [TcpEvent::Closed]);
}

#[test]
fn segments_for_a_closed_connection_get_a_reset() {
    let mut h = Harness::established(&config());
    h.conn.abort();
    h.recv().expect("RST");
    // With ACK: <SEQ=SEG.ACK><CTL=RST>.
    h.send(TcpRepr {
        payload: b"data",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 1, None), TcpFlags::RST)
    });
    // Without: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    h.send(TcpRepr {
        payload: b"data",
        ..with(peer(REMOTE_ISS + 1, None), TcpFlags::FIN)
    });
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(0, Some(REMOTE_ISS + 6)), TcpFlags::RST)
    });
    // A reset is never answered.
    h.send(with(peer(REMOTE_ISS + 1, None), TcpFlags::RST));
    h.expect_nothing();
    assert_eq!(h.events(), [TcpEvent::Closed]);
}

#[test]
fn syn_in_the_window_gets_a_challenge_ack() {
    let mut h = Harness::established(&config());
    h.send(with(peer(REMOTE_ISS + 100, None), TcpFlags::SYN));
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Established);
    assert!(h.events().is_empty());
    // Outside the window too (RFC 5961 §4).
    h.send(with(peer(REMOTE_ISS + 100_000, None), TcpFlags::SYN));
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    assert_eq!(h.conn.stats().challenge_acks, 2);
}

#[test]
fn segments_without_ack_are_dropped() {
    let mut h = Harness::established(&config());
    h.send(TcpRepr {
        payload: b"no ack",
        ..peer(REMOTE_ISS + 1, None)
    });
    h.expect_nothing();
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn out_of_window_data_is_answered_with_an_ack() {
    let mut h = Harness::established(&config());
    h.send(TcpRepr {
        payload: b"far",
        ..peer(REMOTE_ISS + 1 + 70_000, Some(LOCAL_ISS + 1))
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    // An old duplicate too.
    h.send(TcpRepr {
        payload: b"old",
        ..peer(REMOTE_ISS - 3, Some(LOCAL_ISS + 1))
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.expect_nothing();
}

#[test]
fn acks_to_unacceptable_segments_are_rate_limited() {
    // RFC 5961 §7: a burst of out-of-window segments (or forged ones that make two
    // stacks disagree) gets one ACK per interval, not one each.
    let config = TcpConfig {
        invalid_ack_interval: ms(100),
        ..config()
    };
    let mut h = Harness::established(&config);
    let far = |k: u32| TcpRepr {
        payload: b"x",
        ..peer(REMOTE_ISS + 1_000_000 + k, Some(LOCAL_ISS + 1))
    };
    h.send(far(0));
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    for k in 1..10 {
        h.send(far(k));
    }
    h.expect_nothing();
    assert_eq!(h.conn.stats().acks_rate_limited, 9);
    // A challenge ACK shares the budget.
    h.send(with(peer(REMOTE_ISS + 5, None), TcpFlags::RST));
    h.expect_nothing();
    h.advance(ms(100));
    h.send(far(11));
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    assert_eq!(h.conn.state(), State::Established);
}
