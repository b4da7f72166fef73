//! Timestamps (RFC 7323 §3-§5): negotiation, the echo, RTT samples from echoes,
//! PAWS, and room for SACK blocks next to the option.

use super::*;

fn ts_config() -> TcpConfig {
    TcpConfig {
        timestamps: true,
        ..config()
    }
}

/// Our clock at the harness's current time.
fn clock(h: &Harness) -> u32 {
    h.conn.ts.clock(h.conn.ticks(h.now))
}

/// A segment from the peer carrying (TSval, TSecr).
fn peer_ts(seq: u32, ack: Option<u32>, tsval: u32, tsecr: u32) -> TcpRepr<'static> {
    TcpRepr {
        timestamp: Some((tsval, tsecr)),
        ..peer(seq, ack)
    }
}

/// An active open with timestamps on both SYNs; the peer's SYN-ACK has TSval 500.
fn established() -> Harness {
    let mut h = Harness::connect(&ts_config());
    let syn = h.recv().expect("SYN");
    let syn_tsval = clock(&h);
    assert_eq!(syn.repr.timestamp, Some((syn_tsval, 0)));
    h.advance(ms(10));
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        ..with(
            peer_ts(REMOTE_ISS, Some(LOCAL_ISS + 1), 500, syn_tsval),
            TcpFlags::SYN,
        )
    });
    h.expect(TcpRepr {
        timestamp: Some((clock(&h), 500)),
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1))
    });
    assert_eq!(h.events(), [TcpEvent::Connected]);
    h
}

#[test]
fn negotiated_when_both_syns_carry_it_and_echoed() {
    let mut h = established();
    // The option takes 12 bytes of every segment's payload.
    assert_eq!(h.conn.send_mss(), 1448);
    h.advance(ms(5));
    h.send(TcpRepr {
        payload: b"hello",
        ..peer_ts(REMOTE_ISS + 1, Some(LOCAL_ISS + 1), 505, 0)
    });
    assert_eq!(h.read_all(), b"hello");
    h.expect(TcpRepr {
        timestamp: Some((clock(&h), 505)),
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 6))
    });
    // Data carries it too.
    h.advance(ms(1));
    h.write(b"reply");
    h.expect_data(
        TcpRepr {
            timestamp: Some((clock(&h), 505)),
            ..with(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 6)), TcpFlags::PSH)
        },
        b"reply",
    );
    // A segment without the option is dropped (RFC 7323 §3.2).
    h.send(TcpRepr {
        payload: b"bare",
        ..peer(REMOTE_ISS + 6, Some(LOCAL_ISS + 6))
    });
    h.expect_nothing();
    assert_eq!(h.conn.recv_available(), 0);
}

#[test]
fn passive_open_answers_the_offer() {
    let syn = TcpRepr {
        timestamp: Some((7, 0)),
        ..with(peer(REMOTE_ISS, None), TcpFlags::SYN)
    };
    let mut h = Harness::accept(&ts_config(), &syn);
    let syn_ack = h.recv().expect("SYN-ACK");
    assert_eq!(syn_ack.repr.timestamp, Some((clock(&h), 7)));
}

#[test]
fn not_used_when_the_peer_does_not_offer_it() {
    // Active open: the SYN-ACK has no option.
    let mut h = Harness::connect(&ts_config());
    assert!(h.recv().expect("SYN").repr.timestamp.is_some());
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    assert_eq!(h.conn.send_mss(), 1460);
    h.send(TcpRepr {
        payload: b"data",
        ..peer(REMOTE_ISS + 1, Some(LOCAL_ISS + 1))
    });
    assert_eq!(h.read_all(), b"data");

    // Passive open: no option on the SYN, none on the SYN-ACK.
    let mut h = Harness::accept(&ts_config(), &with(peer(REMOTE_ISS, None), TcpFlags::SYN));
    assert_eq!(h.recv().expect("SYN-ACK").repr.timestamp, None);

    // Not configured: the peer's offer is not answered.
    let syn = TcpRepr {
        timestamp: Some((7, 0)),
        ..with(peer(REMOTE_ISS, None), TcpFlags::SYN)
    };
    let mut h = Harness::accept(&config(), &syn);
    assert_eq!(h.recv().expect("SYN-ACK").repr.timestamp, None);
}

#[test]
fn rtt_is_measured_from_the_echo_even_after_a_retransmission() {
    let mut h = established();
    assert_eq!(h.conn.stats().srtt, Some(ms(10)));
    h.write(b"data");
    let first = h.recv().expect("data");
    let original = first.repr.timestamp.expect("TS").0;
    assert_eq!(h.advance_to_timer(), ms(200));
    let resent = h.recv().expect("retransmission");
    let resent_tsval = resent.repr.timestamp.expect("TS").0;
    assert_eq!(h.conn.stats().rto, ms(400));
    h.advance(ms(50));
    // An ACK echoing the original is not a round trip: no sample.
    h.send(peer_ts(REMOTE_ISS + 1, Some(LOCAL_ISS + 3), 600, original));
    assert_eq!(h.conn.stats().srtt, Some(ms(10)));
    // The echo of the retransmission is (Karn's algorithm alone would take none).
    h.send(peer_ts(REMOTE_ISS + 1, Some(LOCAL_ISS + 5), 601, resent_tsval));
    let stats = h.conn.stats();
    // SRTT 7/8 * 10 + 1/8 * 50; the backoff is over.
    assert_eq!(stats.srtt, Some(Duration::from_micros(15_000)));
    assert_eq!(stats.rto, ms(200));
}

#[test]
fn paws_drops_an_old_segment_and_acks() {
    let mut h = established();
    h.send(TcpRepr {
        payload: b"new",
        ..peer_ts(REMOTE_ISS + 1, Some(LOCAL_ISS + 1), 600, 0)
    });
    h.recv().expect("ACK");
    assert_eq!(h.read_all(), b"new");
    // The next bytes, but with an older timestamp: an old duplicate.
    h.send(TcpRepr {
        payload: b"old",
        ..peer_ts(REMOTE_ISS + 4, Some(LOCAL_ISS + 1), 599, 0)
    });
    h.expect(TcpRepr {
        timestamp: Some((clock(&h), 600)),
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 4))
    });
    h.expect_nothing();
    assert_eq!(h.conn.recv_available(), 0);
    assert_eq!(h.conn.stats().paws_drops, 1);
    // An equal timestamp passes.
    h.send(TcpRepr {
        payload: b"same",
        ..peer_ts(REMOTE_ISS + 4, Some(LOCAL_ISS + 1), 600, 0)
    });
    assert_eq!(h.read_all(), b"same");
}

#[test]
fn ts_recent_follows_last_ack_sent() {
    let config = TcpConfig {
        ack_delay: Some(ms(100)),
        ..ts_config()
    };
    let mut h = Harness::connect(&config);
    let tsval = h.recv().expect("SYN").repr.timestamp.expect("TS").0;
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        ..with(peer_ts(REMOTE_ISS, Some(LOCAL_ISS + 1), 500, tsval), TcpFlags::SYN)
    });
    h.recv().expect("ACK");
    // Two in-order segments before our delayed ACK: the echo is of the first
    // (RFC 7323 §4.3 case A).
    h.send(TcpRepr {
        payload: b"a",
        ..peer_ts(REMOTE_ISS + 1, Some(LOCAL_ISS + 1), 510, tsval)
    });
    h.send(TcpRepr {
        payload: b"b",
        ..peer_ts(REMOTE_ISS + 2, Some(LOCAL_ISS + 1), 520, tsval)
    });
    h.expect_nothing();
    h.advance_to_timer();
    let ack = h.recv().expect("delayed ACK");
    assert_eq!(ack.repr.ack_number, Some(SeqNumber(REMOTE_ISS + 3)));
    assert_eq!(ack.repr.timestamp.map(|(_, tsecr)| tsecr), Some(510));
}

#[test]
fn three_sack_blocks_fit_next_to_the_option() {
    let repr = TcpRepr {
        ack_number: Some(SeqNumber(1)),
        timestamp: Some((1, 2)),
        sack_ranges: [Some((10, 20)), Some((30, 40)), Some((50, 60))],
        ..ours(1, Some(1))
    };
    // NOP NOP TS (12) + NOP NOP SACK with three blocks (28).
    assert_eq!(repr.options_len(), 40);
    let mut buffer = vec![0u8; repr.buffer_len()];
    let (src, dst) = (*local().ip(), *remote().ip());
    let caps = crate::wire::ChecksumCaps::all();
    repr.emit(&mut crate::wire::TcpPacket::new_unchecked(&mut buffer[..]), src, dst, &caps);
    let packet = crate::wire::TcpPacket::new_checked(&buffer[..]).expect("valid");
    let parsed = TcpRepr::parse(&packet, src, dst, &caps).expect("parses");
    assert_eq!(parsed.sack_ranges, repr.sack_ranges);
    assert_eq!(parsed.timestamp, Some((1, 2)));
}
