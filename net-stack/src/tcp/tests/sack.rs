//! Selective acknowledgments (RFC 2018) and SACK-based recovery (RFC 6675):
//! negotiation, the blocks the receiver sends, and a sender that resends only the
//! holes.

use super::recovery::{ack_before, expect_seg, seg};
use super::*;

fn sack_config() -> TcpConfig {
    TcpConfig {
        sack: true,
        ..config()
    }
}

/// An active open where both SYNs carry SACK-permitted.
fn established_with_sack() -> Harness {
    let mut h = Harness::connect(&sack_config());
    let syn = h.recv().expect("SYN");
    assert!(syn.repr.sack_permitted);
    h.advance(ms(10));
    h.send(TcpRepr {
        max_seg_size: Some(1460),
        sack_permitted: true,
        ..with(peer(REMOTE_ISS, Some(LOCAL_ISS + 1)), TcpFlags::SYN)
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    assert_eq!(h.events(), [TcpEvent::Connected]);
    h
}

/// An ACK for everything before our segment `k`, with SACK blocks for our
/// segments `from..=to`.
fn sack(k: usize, blocks: &[(usize, usize)]) -> TcpRepr<'static> {
    let mut ranges = [None; 3];
    for (slot, &(from, to)) in ranges.iter_mut().zip(blocks) {
        *slot = Some((seg(from), seg(to + 1)));
    }
    TcpRepr {
        sack_ranges: ranges,
        ..ack_before(k)
    }
}

#[test]
fn sack_is_used_only_when_both_syns_offer_it() {
    // The peer does not offer it: our ACKs of out-of-order data carry no blocks.
    let mut h = Harness::established(&sack_config());
    h.send(TcpRepr {
        payload: b"later",
        ..peer(REMOTE_ISS + 11, Some(LOCAL_ISS + 1))
    });
    h.expect(ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1)));
    // A SYN-ACK answers SACK-permitted only to a SYN that carried it.
    let syn = with(peer(REMOTE_ISS, None), TcpFlags::SYN);
    let mut h = Harness::accept(&sack_config(), &syn);
    assert!(!h.recv().expect("SYN-ACK").repr.sack_permitted);
    let mut h2 = Harness::accept(
        &sack_config(),
        &TcpRepr {
            sack_permitted: true,
            ..syn
        },
    );
    assert!(h2.recv().expect("SYN-ACK").repr.sack_permitted);
    // Not offered at all when off.
    let mut h = Harness::connect(&config());
    assert!(!h.recv().expect("SYN").repr.sack_permitted);
}

#[test]
fn receiver_blocks_describe_the_holes_most_recent_first() {
    let mut h = established_with_sack();
    let data = pattern(0, 400);
    let ack = Some(LOCAL_ISS + 1);
    let from_peer = |from: usize, to: usize| TcpRepr {
        payload: &data[from..to],
        ..peer(REMOTE_ISS + 1 + from as u32, ack)
    };
    let blocks = |list: &[(usize, usize)]| {
        let mut ranges = [None; 3];
        for (slot, &(from, to)) in ranges.iter_mut().zip(list) {
            *slot = Some((REMOTE_ISS + 1 + from as u32, REMOTE_ISS + 1 + to as u32));
        }
        ranges
    };
    let our_ack = |rcv: usize, list: &[(usize, usize)], window: u16| TcpRepr {
        sack_ranges: blocks(list),
        window_len: window,
        ..ours(LOCAL_ISS + 1, Some(REMOTE_ISS + 1 + rcv as u32))
    };
    h.send(from_peer(100, 200));
    h.expect(our_ack(0, &[(100, 200)], 65_535));
    h.send(from_peer(300, 350));
    h.expect(our_ack(0, &[(300, 350), (100, 200)], 65_535));
    h.send(from_peer(370, 380));
    h.expect(our_ack(0, &[(370, 380), (300, 350), (100, 200)], 65_535));
    // Joining a block moves it to the front; at most three blocks.
    h.send(from_peer(200, 250));
    h.expect(our_ack(0, &[(100, 250), (370, 380), (300, 350)], 65_535));
    h.send(from_peer(390, 395));
    h.expect(our_ack(0, &[(390, 395), (100, 250), (370, 380)], 65_535));
    // The hole at the front fills: the blocks that remain.
    h.send(from_peer(0, 100));
    h.expect(our_ack(250, &[(390, 395), (370, 380), (300, 350)], 65_285));
    h.send(from_peer(250, 400));
    h.expect(our_ack(400, &[], 65_135));
    assert_eq!(h.read_all(), data);
    assert_eq!(h.conn.stats().sack_blocks_sent, 1 + 2 + 3 + 3 + 3 + 3);
}

#[test]
fn sender_resends_only_the_holes() {
    let mut h = established_with_sack();
    h.write(&pattern(0, 20 * 1460));
    for k in 1..=3 {
        expect_seg(&mut h, k);
    }
    // Slow start: segments 1-3 acknowledged, 4-9 in flight.
    for k in 2..=4 {
        h.send(ack_before(k));
    }
    for k in 4..=9 {
        expect_seg(&mut h, k);
    }
    h.expect_nothing();
    // 4 and 6 are lost. 5 arrives, then 7: limited transmit sends 10 and 11.
    h.send(sack(4, &[(5, 5)]));
    expect_seg(&mut h, 10);
    h.send(sack(4, &[(7, 7), (5, 5)]));
    expect_seg(&mut h, 11);
    h.expect_nothing();
    // 8 arrives: the third duplicate ACK; 4 is lost (more than 2 MSS SACKed above
    // it) and goes again. 6 has only two segments above it: not lost yet.
    h.send(sack(4, &[(7, 8), (5, 5)]));
    expect_seg(&mut h, 4);
    h.expect_nothing();
    assert_eq!(h.conn.stats().fast_retransmits, 1);
    // 9 arrives: now 6 counts as lost and is resent, 5 and 7-9 are not.
    h.send(sack(4, &[(7, 9), (5, 5)]));
    expect_seg(&mut h, 6);
    h.expect_nothing();
    // 10 and 11 arrive: room for new data.
    h.send(sack(4, &[(7, 10), (5, 5)]));
    expect_seg(&mut h, 12);
    h.send(sack(4, &[(7, 11), (5, 5)]));
    expect_seg(&mut h, 13);
    h.expect_nothing();
    // The retransmissions arrive: everything up to 11 (recovery ends).
    h.send(sack(6, &[(7, 11)]));
    h.send(ack_before(12));
    let stats = h.conn.stats();
    assert_eq!((stats.retransmits, stats.rto_fires), (2, 0));
    assert_eq!(stats.cwnd, stats.ssthresh);
    assert_eq!(stats.sack_blocks_received, 12);
}

#[test]
fn blocks_outside_the_window_are_ignored() {
    let mut h = established_with_sack();
    h.write(&pattern(0, 3 * 1460));
    while h.recv().is_some() {}
    // Beyond SND.MAX, below SND.UNA (D-SACK), reversed: none counts as SACKed, so
    // nothing is deemed lost.
    let bogus = TcpRepr {
        sack_ranges: [
            Some((seg(2), seg(5) + 1)),
            Some((LOCAL_ISS - 100, LOCAL_ISS)),
            Some((seg(3), seg(2))),
        ],
        ..ack_before(1)
    };
    h.send(bogus);
    h.expect_nothing();
    assert_eq!(h.conn.stats().fast_retransmits, 0);
    assert_eq!(h.conn.stats().sack_blocks_received, 3);
}

#[test]
fn sack_blocks_on_a_full_data_segment_never_push_it_past_the_mss() {
    // Holes on our receive side and full-sized data to send: the blocks that ride on
    // the data must fit beside it, or the frame would exceed the MTU.
    let mut h = established_with_sack();
    for k in 0..3u32 {
        h.send(TcpRepr {
            payload: b"hole-maker",
            ..peer(REMOTE_ISS + 1 + 100 * (k + 1), Some(LOCAL_ISS + 1))
        });
        h.recv().expect("immediate ACK for out-of-order data");
    }
    h.write(&pattern(0, 3 * 1460));
    let mut data_segments = 0;
    while let Some(s) = h.recv() {
        if s.payload.is_empty() {
            continue;
        }
        data_segments += 1;
        assert!(
            s.repr.options_len() + s.payload.len() <= 1460,
            "options {} + payload {} exceed the MSS",
            s.repr.options_len(),
            s.payload.len()
        );
    }
    assert!(data_segments > 0);
}
