//! Opening: the three-way handshake both ways, simultaneous open, refusal, SYN
//! retransmission, MSS and window scale negotiation.

use super::*;

fn our_syn() -> TcpRepr<'static> {
    TcpRepr {
        max_seg_size: Some(1460),
        ..with(ours(LOCAL_ISS, None), TcpFlags::SYN)
    }
}

fn peer_syn() -> TcpRepr<'static> {
    TcpRepr {
        max_seg_size: Some(1460),
        ..with(peer(REMOTE_ISS, None), TcpFlags::SYN)
    }
}

#[test]
fn active_open() {
    let mut h = Harness::connect(&config());
    assert_eq!(h.conn.state(), State::SynSent);
    h.expect(our_syn());
    h.expect_nothing();
    assert_eq!(h.conn.poll_at(), Some(h.now + Duration::from_secs(1)));

    h.advance(ms(40));
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.events(), [TcpEvent::Connected]);
    // The SYN was timed: SRTT 40 ms, and no timer is left.
    assert_eq!(h.conn.stats().srtt, Some(ms(40)));
    assert_eq!(h.conn.stats().rto, ms(200));
    assert_eq!(h.conn.poll_at(), None);
    assert_eq!((h.conn.local(), h.conn.remote()), (local(), remote()));
}

#[test]
fn passive_open() {
    let mut h = Harness::accept(&config(), &peer_syn());
    assert_eq!(h.conn.state(), State::SynReceived);
    h.expect(TcpRepr {
        max_seg_size: Some(1460),
        ..with(ours(LOCAL_ISS, Some(REMOTE_ISS + 1)), TcpFlags::SYN)
    });
    h.expect_nothing();
    assert!(h.events().is_empty());

    h.advance(ms(5));
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.events(), [TcpEvent::Connected]);
    assert_eq!(h.conn.stats().srtt, Some(ms(5)));
}

#[test]
fn passive_open_with_data_on_the_final_ack() {
    let mut h = Harness::accept(&config(), &peer_syn());
    h.recv().expect("SYN-ACK");
    h.send(TcpRepr {
        payload: b"hello",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    h.expect(TcpRepr {
        window_len: 65_530,
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 6))
    });
    assert_eq!(h.events(), [TcpEvent::Connected, TcpEvent::Readable]);
    assert_eq!(h.read_all(), b"hello");
}

#[test]
fn duplicate_syn_in_syn_received_resends_the_syn_ack() {
    let mut h = Harness::accept(&config(), &peer_syn());
    let syn_ack = h.recv().expect("SYN-ACK");
    h.expect_nothing();
    h.send(peer_syn());
    h.expect(syn_ack.repr);
    assert_eq!(h.conn.stats().retransmits, 1);
}

#[test]
fn syn_received_answers_a_bad_ack_with_a_reset() {
    let mut h = Harness::accept(&config(), &peer_syn());
    h.recv().expect("SYN-ACK");
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 7)));
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 7, None), TcpFlags::RST)
    });
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::SynReceived);
}

#[test]
fn syn_ack_retransmitted_then_timed_out() {
    let mut h = Harness::accept(&config(), &peer_syn());
    let syn_ack = h.recv().expect("SYN-ACK");
    for backoff in [1, 2, 4] {
        assert_eq!(h.advance_to_timer(), Duration::from_secs(backoff));
        h.expect(syn_ack.repr);
        h.expect_nothing();
    }
    assert_eq!(h.advance_to_timer(), Duration::from_secs(8));
    // The peer knows of us: it gets a reset.
    h.expect(TcpRepr {
        window_len: 0,
        ..with(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), TcpFlags::RST)
    });
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::TimedOut), TcpEvent::Closed]
    );
}

#[test]
fn rst_ack_in_syn_sent_is_refused() {
    let mut h = Harness::connect(&config());
    h.expect(our_syn());
    h.send(with(peer(0, Some(LOCAL_ISS + 1)), TcpFlags::RST));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::Refused), TcpEvent::Closed]
    );
    assert_eq!(
        h.conn.send(Bytes::from_static(b"x")),
        Err(TcpError::Refused)
    );
    assert_eq!(h.conn.recv(10), Err(TcpError::Refused));
    assert_eq!(h.conn.poll_at(), None);
}

#[test]
fn syn_sent_ignores_resets_that_do_not_ack_the_syn() {
    let mut h = Harness::connect(&config());
    h.expect(our_syn());
    // No ACK: dropped.
    h.send(with(peer(0, None), TcpFlags::RST));
    // A wrong ACK on a reset: dropped too, and not answered.
    h.send(with(peer(0, Some(LOCAL_ISS + 5)), TcpFlags::RST));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::SynSent);
    assert!(h.events().is_empty());
}

#[test]
fn syn_sent_answers_a_bad_ack_with_a_reset() {
    let mut h = Harness::connect(&config());
    h.expect(our_syn());
    h.send(with(peer(REMOTE_ISS, Some(LOCAL_ISS)), TcpFlags::SYN));
    h.expect(with(
        TcpRepr {
            window_len: 0,
            ..ours(LOCAL_ISS, None)
        },
        TcpFlags::RST,
    ));
    assert_eq!(h.conn.state(), State::SynSent);
}

#[test]
fn simultaneous_open() {
    let mut h = Harness::connect(&config());
    h.expect(our_syn());
    // The peer's SYN crosses ours.
    h.send(peer_syn());
    assert_eq!(h.conn.state(), State::SynReceived);
    h.expect(TcpRepr {
        max_seg_size: Some(1460),
        ..with(ours(LOCAL_ISS, Some(REMOTE_ISS + 1)), TcpFlags::SYN)
    });
    h.expect_nothing();
    // Then its SYN-ACK (the answer to our SYN) arrives.
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.events(), [TcpEvent::Connected]);
    h.expect_nothing();
    // Data flows.
    h.write(b"hi");
    h.expect_data(
        with(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), TcpFlags::PSH),
        b"hi",
    );
}

#[test]
fn retransmitted_syn_ack_in_established_is_acked() {
    let mut h = Harness::established(&config());
    h.send(with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN));
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Established);
}

#[test]
fn syn_retransmitted_with_backoff_then_timed_out() {
    let mut h = Harness::connect(&config());
    h.expect(our_syn());
    for backoff in [1, 2, 4] {
        assert_eq!(h.advance_to_timer(), Duration::from_secs(backoff));
        h.expect(our_syn());
        h.expect_nothing();
    }
    assert_eq!(h.conn.stats().retransmits, 3);
    assert_eq!(h.advance_to_timer(), Duration::from_secs(8));
    // Nobody knows of us: no reset.
    h.expect_nothing();
    assert_eq!(h.conn.state(), State::Closed);
    assert_eq!(
        h.events(),
        [TcpEvent::Error(TcpError::TimedOut), TcpEvent::Closed]
    );
    assert_eq!(h.conn.stats().rto_fires, 4);
    assert_eq!(h.elapsed(), Duration::from_secs(15));
}

#[test]
fn karn_no_sample_from_a_retransmitted_syn() {
    let mut h = Harness::connect(&config());
    h.expect(our_syn());
    h.advance_to_timer();
    h.expect(our_syn());
    h.advance(ms(30));
    h.send(with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN));
    assert_eq!(h.conn.state(), State::Established);
    assert_eq!(h.conn.stats().srtt, None);
    // The backed-off RTO stays until a valid sample.
    assert_eq!(h.conn.stats().rto, Duration::from_secs(2));
}

#[test]
fn mss_from_the_option() {
    let mut h = Harness::connect(&config());
    h.recv().expect("SYN");
    h.send(TcpRepr {
        max_seg_size: Some(1000),
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    h.recv().expect("ACK");
    assert_eq!(h.conn.send_mss(), 1000);
    h.write(&pattern(0, 2500));
    let ack = Some(REMOTE_ISS + 1);
    h.expect_data(ours(LOCAL_ISS + 1, ack), &pattern(0, 1000));
    h.expect_data(ours(LOCAL_ISS + 1001, ack), &pattern(1000, 1000));
    h.expect_data(
        with(ours(LOCAL_ISS + 2001, ack), TcpFlags::PSH),
        &pattern(2000, 500),
    );
    h.expect_nothing();
}

#[test]
fn mss_defaults_to_536_without_the_option() {
    let mut h = Harness::accept(&config(), &with(peer(REMOTE_ISS, None), TcpFlags::SYN));
    h.recv().expect("SYN-ACK");
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)));
    assert_eq!(h.conn.send_mss(), 536);
    h.write(&pattern(0, 600));
    h.expect_data(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), &pattern(0, 536));
    h.expect_data(
        with(ours(LOCAL_ISS + 537, Some(REMOTE_ISS + 1)), TcpFlags::PSH),
        &pattern(536, 64),
    );
}

#[test]
fn our_mss_caps_a_larger_peer_mss() {
    let config = TcpConfig {
        mss: 1200,
        ..config()
    };
    let syn = TcpRepr {
        max_seg_size: Some(8960),
        ..with(peer(REMOTE_ISS, None), TcpFlags::SYN)
    };
    let mut h = Harness::accept(&config, &syn);
    let syn_ack = h.recv().expect("SYN-ACK");
    assert_eq!(syn_ack.repr.max_seg_size, Some(1200));
    assert_eq!(h.conn.send_mss(), 1200);
}

fn scaled_config() -> TcpConfig {
    TcpConfig {
        recv_buffer: 256 * 1024,
        window_scaling: true,
        ..config()
    }
}

#[test]
fn window_scaling_negotiated_on_active_open() {
    let mut h = Harness::connect(&scaled_config());
    // 256 KiB needs a shift of 3; the SYN's own window is unscaled and capped.
    h.expect(TcpRepr {
        window_scale: Some(3),
        ..our_syn()
    });
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        window_scale: Some(2),
        window_len: 1000,
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    // Our window field is now scaled: 262144 >> 3.
    h.expect(TcpRepr {
        window_len: 32_768,
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1))
    });
    // The SYN-ACK's window (1000) was not scaled: 1000 bytes may go.
    h.write(&pattern(0, 3000));
    let ack = Some(REMOTE_ISS + 1);
    let scaled = |repr: TcpRepr<'static>| TcpRepr {
        window_len: 32_768,
        ..repr
    };
    h.expect_data(scaled(ours(LOCAL_ISS + 1, ack)), &pattern(0, 1000));
    h.expect_nothing();
    // Later windows are scaled by 4: 300 << 2 = 1200 bytes.
    h.send(TcpRepr {
        window_len: 300,
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1001))
    });
    h.expect_data(scaled(ours(LOCAL_ISS + 1001, ack)), &pattern(1000, 1200));
    h.expect_nothing();
}

#[test]
fn window_scaling_not_used_when_the_peer_does_not_offer_it() {
    let mut h = Harness::connect(&scaled_config());
    h.recv().expect("SYN");
    h.send(TcpRepr {
        window_len: 1000,
        max_seg_size: Some(1460),
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    // Unscaled, so the window is capped at 65,535.
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    h.write(&pattern(0, 3000));
    h.send(TcpRepr {
        window_len: 1500,
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    h.expect_data(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)), &pattern(0, 1460));
    h.expect_nothing();
}

#[test]
fn window_scaling_on_passive_open_follows_the_syn() {
    let offered = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut h = Harness::accept(&scaled_config(), &offered);
    h.expect(TcpRepr {
        max_seg_size: Some(1460),
        window_scale: Some(3),
        ..with(ours(LOCAL_ISS, Some(REMOTE_ISS + 1)), TcpFlags::SYN)
    });
    h.send(TcpRepr {
        window_len: 2,
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    // 2 << 7 = 256 bytes of window.
    h.write(&pattern(0, 1000));
    let segment = h.recv().expect("data");
    assert_eq!(segment.payload.len(), 256);
    assert_eq!(segment.repr.window_len, 32_768);

    let mut h = Harness::accept(&scaled_config(), &peer_syn());
    let syn_ack = h.recv().expect("SYN-ACK");
    assert_eq!(syn_ack.repr.window_scale, None);
    h.send(peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1)));
    h.send(TcpRepr {
        payload: b"x",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 2)));
}
