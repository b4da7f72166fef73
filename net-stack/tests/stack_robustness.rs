//! Bad input never panics the stack, is dropped and counted, and never stops it
//! working: truncations at every length, wrong checksums (and the same frames
//! accepted when checksums are offloaded), impossible IPv4 and TCP lengths and
//! options, fragments, frames for someone else, segments outside the window, and
//! a property test feeding random and mutated frames.

mod common;

use bytes::Bytes;
use common::*;
use demi_net_stack::iface::{Event, Stack, StackConfig, StackError, StackStats, TxFrame};
use demi_net_stack::tcp::{State, TcpError};
use demi_net_stack::wire::{
    checksum, ArpOperation, ChecksumCaps, EtherType, EthernetAddress, IpProtocol, Ipv4Packet, SeqNumber, TcpFlags,
    TcpRepr,
};
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// A stack with something behind every port a frame below can reach: a listener
/// on 80 with an accepted connection from the peer's port 40000, and a UDP socket
/// on 5000.
fn busy(config: StackConfig) -> (Stack, Instant, Conn) {
    let (mut s, now, c) = established_with(config);
    s.udp_bind(5000).unwrap();
    (s, now, c)
}

fn offload_config() -> StackConfig {
    StackConfig { checksums: ChecksumCaps::offload(), ..config() }
}

/// Frames the stack answers or acts on when they arrive whole, for the stack of
/// [`busy`], with what a test calls them.
fn valid_frames(c: &Conn) -> Vec<(&'static str, Bytes)> {
    vec![
        ("arp request", arp_request_from_peer(OUR_IP)),
        ("icmp echo", echo_request_frame(PEER_IP, OUR_IP, 0x77, 1, b"abcdefghijklmnopqrstuvwxyz0123456789ABCD")),
        ("udp to a bound port", udp_frame(peer(9), ours(5000), b"datagram payload")),
        ("udp to a closed port", udp_frame(peer(9), ours(6000), b"nobody")),
        ("tcp syn", syn_frame(41_000, 80, PEER_ISS)),
        ("tcp data", c.segment(TcpFlags::ACK | TcpFlags::PSH, b"segment payload!")),
        ("tcp for no connection", seg_frame(41_001, 81, TcpFlags::ACK, SeqNumber(1), Some(SeqNumber(2)), b"x")),
    ]
}

/// What a frame did to the counters, in one number per cause.
fn dropped(before: StackStats, after: StackStats) -> (u64, u64, u64, u64) {
    (
        after.rx_malformed - before.rx_malformed,
        after.rx_bad_checksum - before.rx_bad_checksum,
        after.rx_fragments - before.rx_fragments,
        after.rx_not_for_us - before.rx_not_for_us,
    )
}

/// Feeds `frame` and expects it to be dropped silently: nothing sent, no event,
/// no new connection. Returns the counter changes.
#[track_caller]
fn expect_dropped(s: &mut Stack, now: Instant, frame: Bytes) -> (u64, u64, u64, u64) {
    let before = s.stats();
    let conns = s.tcp_connection_count();
    let out = exchange(s, now, frame.clone());
    assert!(out.is_empty(), "answered {frame:02x?} with {out:02x?}");
    assert_eq!(events(s), vec![], "events for {frame:02x?}");
    assert_eq!(s.tcp_connection_count(), conns);
    dropped(before, s.stats())
}

/// Edits the IPv4 header of a frame, then recomputes its checksum over as much of
/// the header as the frame holds (so the edit, not the checksum, is what is wrong).
fn edit_ip(frame: &Bytes, edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) -> Bytes {
    let mut f = frame.to_vec();
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    edit(&mut ip);
    let header_len = ip.header_len().min(f.len() - 14);
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(&f[14..14 + header_len]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f.into()
}

// ---- truncation ---------------------------------------------------------------------

#[test]
fn every_prefix_of_every_valid_frame_is_dropped_as_malformed() {
    let (_, _, c) = busy(config());
    for (name, frame) in valid_frames(&c) {
        // A fresh stack per frame, so that the whole frame's answer is checked too.
        let (mut s, now, _) = busy(config());
        for len in 0..frame.len() {
            let counted = expect_dropped(&mut s, now, frame.slice(..len));
            assert_eq!(counted, (1, 0, 0, 0), "{name} cut to {len} bytes");
        }
        let before = s.stats();
        let out = exchange(&mut s, now, frame.clone());
        let accepted = !out.is_empty() || !events(&mut s).is_empty();
        assert!(accepted, "{name}: the whole frame is acted on");
        assert_eq!(dropped(before, s.stats()), (0, 0, 0, 0), "{name}");
        for f in out {
            parse(&f);
        }
    }
}

#[test]
fn transport_headers_cut_short_inside_a_consistent_ip_datagram_are_dropped() {
    let (mut s, now, c) = busy(config());
    let l4s: Vec<(IpProtocol, Vec<u8>)> = vec![
        (IpProtocol::Icmp, echo_request_bytes(1, 2, b"echo data")),
        (IpProtocol::Udp, udp_bytes(peer(9), ours(5000), b"datagram")),
        (IpProtocol::Udp, udp_bytes(peer(9), ours(6000), b"datagram")),
        (IpProtocol::Tcp, tcp_bytes(peer(41_000), ours(80), &tcp_syn_repr())),
        (
            IpProtocol::Tcp,
            tcp_bytes(
                peer(c.peer_port),
                ours(c.local_port),
                &TcpRepr {
                    seq_number: c.peer_seq,
                    ack_number: Some(c.our_seq),
                    flags: TcpFlags::ACK,
                    window_len: 1000,
                    payload: b"segment data",
                    ..TcpRepr::default()
                },
            ),
        ),
    ];
    for (protocol, l4) in &l4s {
        for len in 0..l4.len() {
            let frame = ipv4_frame(PEER_IP, OUR_IP, *protocol, &l4[..len]);
            let (malformed, bad_checksum, _, _) = expect_dropped(&mut s, now, frame);
            assert_eq!(malformed + bad_checksum, 1, "{protocol} cut to {len} bytes");
        }
    }
    assert_eq!(s.tcp(c.handle).unwrap().recv_available(), 0);
    assert_eq!(s.tcp(c.handle).unwrap().state(), State::Established);
}

#[test]
fn transport_headers_cut_short_never_panic_with_checksums_offloaded() {
    let (mut s, now, c) = busy(offload_config());
    let caps = ChecksumCaps::offload();
    for (_, frame) in valid_frames(&c) {
        let Ok(ip) = Ipv4Packet::new_checked(&frame[14..]) else { continue };
        let protocol = ip.protocol();
        let l4 = ip.payload().to_vec();
        for len in 0..l4.len() {
            s.receive(now, ipv4_frame(PEER_IP, OUR_IP, protocol, &l4[..len]));
            for f in drain(&mut s, now) {
                parse_with(&f, &caps);
            }
            events(&mut s);
        }
    }
}

fn tcp_syn_repr() -> TcpRepr<'static> {
    TcpRepr {
        seq_number: PEER_ISS,
        flags: TcpFlags::SYN,
        window_len: 64_240,
        max_seg_size: Some(1460),
        window_scale: Some(7),
        ..TcpRepr::default()
    }
}

// ---- checksums ----------------------------------------------------------------------

/// Frames whose checksum (IP header, ICMP, UDP or TCP) is off by one bit, each
/// with the test that it was accepted when checksums are offloaded.
fn corrupted_frames() -> Vec<(&'static str, Bytes)> {
    let flip = |frame: Bytes, at: usize| {
        let mut f = frame.to_vec();
        f[at] ^= 0x01;
        Bytes::from(f)
    };
    vec![
        // The IPv4 header checksum is at 14 + 10; the transport ones at 34 + 2
        // (ICMP), 34 + 6 (UDP) and 34 + 16 (TCP).
        ("ipv4", flip(echo_request_frame(PEER_IP, OUR_IP, 1, 1, b"ip"), 25)),
        ("icmp", flip(echo_request_frame(PEER_IP, OUR_IP, 1, 1, b"icmp"), 37)),
        ("udp", flip(udp_frame(peer(9), ours(5000), b"udp"), 41)),
        ("tcp", flip(syn_frame(41_000, 80, PEER_ISS), 51)),
    ]
}

#[test]
fn wrong_checksums_are_dropped_and_counted() {
    let (mut s, now, c) = busy(config());
    for (name, frame) in corrupted_frames() {
        assert_eq!(expect_dropped(&mut s, now, frame), (0, 1, 0, 0), "{name}");
    }
    // Data on the established connection with a bad checksum is not delivered.
    let mut data = c.segment(TcpFlags::ACK | TcpFlags::PSH, b"corrupt").to_vec();
    let last = data.len() - 1;
    data[last] ^= 0x40;
    assert_eq!(expect_dropped(&mut s, now, data.into()), (0, 1, 0, 0));
    assert_eq!(s.tcp(c.handle).unwrap().recv_available(), 0);
    assert_eq!(s.stats().rx_bad_checksum, 5);
    assert_eq!(s.stats().icmp_echo_replies, 0);
}

#[test]
fn wrong_checksums_are_accepted_when_offloaded() {
    let caps = ChecksumCaps::offload();
    let (mut s, now) = stack_with(offload_config());
    let u = s.udp_bind(5000).unwrap();
    s.tcp_listen(80, 4).unwrap();
    for (name, frame) in corrupted_frames() {
        let out = exchange(&mut s, now, frame);
        match name {
            "ipv4" | "icmp" => {
                let Out::Icmp(_, _, OutIcmp::EchoReply { .. }) = parse_with(&single(out.clone()), &caps) else {
                    panic!("{name}: expected an echo reply, got {out:02x?}")
                };
                // Left for the device to fill in.
                let f = &out[0];
                assert_eq!((&f[24..26], &f[36..38]), (&[0u8, 0][..], &[0u8, 0][..]), "{name}");
            }
            "udp" => {
                assert!(out.is_empty());
                assert_eq!(&s.udp_recv_from(u).unwrap().0[..], b"udp");
            }
            "tcp" => {
                let synack = parse_tcp_with(&single(out.clone()), &caps);
                assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
                assert_eq!(&out[0][50..52], &[0, 0], "TCP checksum left to the device");
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(s.stats().rx_bad_checksum, 0);
}

// ---- IPv4 lengths, version, fragments -----------------------------------------------

#[test]
fn bogus_ipv4_lengths_and_versions_are_dropped_as_malformed() {
    let (mut s, now, _) = busy(config());
    let echo = echo_request_frame(PEER_IP, OUR_IP, 3, 4, &[0x5a; 48]);
    let ip_len = (echo.len() - 14) as u16;
    type Edit = Box<dyn Fn(&mut Ipv4Packet<&mut [u8]>)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("total length 0", Box::new(|ip| ip.set_total_len(0))),
        ("total length 19", Box::new(|ip| ip.set_total_len(19))),
        ("total length past the frame", Box::new(move |ip| ip.set_total_len(ip_len + 1))),
        ("total length 65535", Box::new(|ip| ip.set_total_len(u16::MAX))),
        ("total length only the header", Box::new(|ip| ip.set_total_len(20))),
        ("header length 0", Box::new(|ip| ip.set_header_len(0))),
        ("header length 16", Box::new(|ip| ip.set_header_len(16))),
        (
            "header length 60 past the total",
            Box::new(|ip| {
                ip.set_header_len(60);
                ip.set_total_len(40);
            }),
        ),
        (
            "header length 60 past the frame",
            Box::new(|ip| {
                ip.set_header_len(60);
                ip.set_total_len(60);
            }),
        ),
        ("version 6", Box::new(|ip| ip.set_version(6))),
        ("version 0", Box::new(|ip| ip.set_version(0))),
    ];
    for (name, edit) in &edits {
        let frame = edit_ip(&echo, |ip| edit(ip));
        assert_eq!(expect_dropped(&mut s, now, frame.clone()), (1, 0, 0, 0), "{name}");
        // Truncated to just past the Ethernet header and at the end, too.
        expect_dropped(&mut s, now, frame.slice(..frame.len().min(14 + 20)));
    }
    // A total length shorter than the frame is fine (padding); the datagram ends there.
    let (_, _, icmp) = parse_icmp(&single(exchange(&mut s, now, echo.clone())));
    assert!(matches!(icmp, OutIcmp::EchoReply { ref data, .. } if data.len() == 48));
    let shorter = edit_ip(&echo, |ip| ip.set_total_len(20 + 8 + 8));
    let (_, _, icmp) = parse_icmp(&single(exchange(&mut s, now, {
        // Re-checksum the ICMP message as the shorter datagram holds it.
        let mut f = shorter.to_vec();
        f[36..38].copy_from_slice(&[0, 0]);
        let sum = checksum::checksum(&f[34..34 + 16]);
        f[36..38].copy_from_slice(&sum.to_be_bytes());
        Bytes::from(f)
    })));
    assert!(matches!(icmp, OutIcmp::EchoReply { ref data, .. } if data.len() == 8));
}

#[test]
fn ipv4_options_longer_than_the_datagram_claims_never_reach_the_transport() {
    // IHL 6 with the total length unchanged: the "options" eat the ICMP header.
    let (mut s, now, _) = busy(config());
    let echo = echo_request_frame(PEER_IP, OUR_IP, 3, 4, b"abc");
    let frame = edit_ip(&echo, |ip| ip.set_header_len(24));
    let (malformed, bad_checksum, _, _) = expect_dropped(&mut s, now, frame);
    assert_eq!(malformed + bad_checksum, 1);
}

#[test]
fn fragments_are_dropped_and_counted_never_delivered_whole() {
    let (mut s, now, c) = busy(config());
    let payload = [0x33u8; 64];
    let cases: Vec<(&str, Bytes)> = vec![
        ("first fragment of a UDP datagram", udp_frame(peer(9), ours(5000), &payload)),
        ("UDP to a closed port", udp_frame(peer(9), ours(6000), &payload)),
        ("ICMP echo", echo_request_frame(PEER_IP, OUR_IP, 1, 1, &payload)),
        ("TCP SYN", syn_frame(41_000, 80, PEER_ISS)),
        ("TCP data", c.segment(TcpFlags::ACK, &payload)),
    ];
    let mut expected = 0;
    for (name, frame) in &cases {
        for (more, offset) in [(true, 0), (true, 64), (false, 64), (false, 8 * 8191)] {
            let f = edit_ip(frame, |ip| ip.set_flags_frag(false, more, offset));
            assert_eq!(expect_dropped(&mut s, now, f), (0, 0, 1, 0), "{name}, MF {more}, offset {offset}");
            expected += 1;
        }
    }
    assert_eq!(s.stats().rx_fragments, expected);
    assert_eq!(s.stats().udp_no_socket, 0);
    assert_eq!(s.tcp(c.handle).unwrap().recv_available(), 0);
    // Don't-fragment alone is not a fragment.
    let f = edit_ip(&cases[0].1, |ip| ip.set_flags_frag(true, false, 0));
    assert!(exchange(&mut s, now, f).is_empty());
    assert_eq!(events(&mut s).len(), 1, "the datagram was delivered");
}

// ---- addressing ---------------------------------------------------------------------

#[test]
fn frames_for_another_mac_or_address_are_dropped() {
    let (mut s, now, c) = busy(config());
    let echo = echo_request_bytes(1, 1, b"not you");
    for mac in [OTHER_MAC, EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]), EthernetAddress([0x33, 0x33, 0, 0, 0, 1])] {
        let frame = ipv4_frame_to(mac, PEER_IP, OUR_IP, IpProtocol::Icmp, &echo);
        assert_eq!(expect_dropped(&mut s, now, frame), (0, 0, 0, 1), "to {mac}");
        let mut data = c.segment(TcpFlags::ACK, b"data").to_vec();
        data[..6].copy_from_slice(&mac.0);
        assert_eq!(expect_dropped(&mut s, now, data.into()), (0, 0, 0, 1), "to {mac}");
    }
    // Our MAC, another host's address.
    let frame = ipv4_frame(PEER_IP, OTHER_IP, IpProtocol::Icmp, &echo);
    assert_eq!(expect_dropped(&mut s, now, frame), (0, 0, 0, 1));
    // ARP for someone else addressed to our MAC: no answer.
    let arp = arp_frame(OUR_MAC, ArpOperation::Request, (PEER_MAC, PEER_IP), (EthernetAddress([0; 6]), OTHER_IP));
    assert!(exchange(&mut s, now, arp).is_empty());
    assert_eq!(s.stats().icmp_echo_replies, 0);
    assert_eq!(s.tcp(c.handle).unwrap().recv_available(), 0);
}

#[test]
fn unknown_ethertypes_and_ip_protocols_are_dropped() {
    let (mut s, now, _) = busy(config());
    let before = s.stats().rx_unsupported;
    for ethertype in [0x86dd, 0x8100, 0x0000, 0xffff] {
        let frame = eth_frame(OUR_MAC, PEER_MAC, EtherType::from(ethertype), &[0x45; 40]);
        expect_dropped(&mut s, now, frame);
    }
    for protocol in [IpProtocol::from(47), IpProtocol::from(0), IpProtocol::from(255)] {
        expect_dropped(&mut s, now, ipv4_frame(PEER_IP, OUR_IP, protocol, b"whatever payload"));
    }
    assert_eq!(s.stats().rx_unsupported - before, 7);
}

// ---- TCP headers --------------------------------------------------------------------

/// The peer's SYN to port 80 with raw option bytes (a multiple of 4).
fn syn_with_options(options: &[u8]) -> Bytes {
    let mut tcp = tcp_bytes(
        peer(41_000),
        ours(80),
        &TcpRepr { seq_number: PEER_ISS, flags: TcpFlags::SYN, window_len: 8192, ..TcpRepr::default() },
    );
    tcp.extend_from_slice(options);
    tcp[12] = ((20 + options.len()) / 4) as u8 * 16;
    let mut frame = ipv4_frame(PEER_IP, OUR_IP, IpProtocol::Tcp, &tcp).to_vec();
    refill_tcp_checksum(&mut frame);
    frame.into()
}

#[test]
fn bogus_tcp_data_offsets_are_dropped_as_malformed() {
    let (mut s, now, c) = busy(config());
    let syn = syn_with_options(&[2, 4, 5, 0xb4]);
    let data = c.segment(TcpFlags::ACK | TcpFlags::PSH, b"abcdefgh");
    for frame in [&syn, &data] {
        for words in [0u8, 1, 4, 15] {
            let mut f = frame.to_vec();
            f[34 + 12] = words << 4;
            refill_tcp_checksum(&mut f);
            let total = f.len() - 34;
            if usize::from(words) * 4 <= total && words >= 5 {
                continue; // a legal offset for this segment
            }
            assert_eq!(expect_dropped(&mut s, now, f.into()), (1, 0, 0, 0), "data offset {words} words");
        }
    }
    // The SYN with only its header length off by a word: its "options" run past it.
    let mut f = syn_with_options(&[]).to_vec();
    f[34 + 12] = 6 << 4;
    refill_tcp_checksum(&mut f);
    assert_eq!(expect_dropped(&mut s, now, f.into()), (1, 0, 0, 0));
    assert_eq!(s.tcp(c.handle).unwrap().recv_available(), 0);
}

#[test]
fn bogus_tcp_option_lengths_are_dropped_as_malformed() {
    let (mut s, now, _) = busy(config());
    let bad: [(&str, &[u8]); 12] = [
        ("MSS length 0", &[2, 0, 1, 1]),
        ("MSS length 1", &[2, 1, 1, 1]),
        ("MSS length 3", &[2, 3, 5, 1]),
        ("MSS length past the header", &[2, 6, 5, 0xb4]),
        ("MSS without a length", &[1, 1, 1, 2]),
        ("window scale length 2", &[3, 2, 1, 1]),
        ("window scale length 4", &[3, 4, 7, 1]),
        ("SACK-permitted length 3", &[4, 3, 0, 1]),
        ("timestamps length 9", &[8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("SACK length 9", &[5, 9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]),
        ("unknown option length 1", &[99, 1, 1, 1]),
        ("unknown option length past the header", &[99, 40, 1, 1]),
    ];
    for (name, options) in bad {
        assert_eq!(expect_dropped(&mut s, now, syn_with_options(options)), (1, 0, 0, 0), "{name}");
    }
    assert_eq!(s.tcp_connection_count(), 1);
}

#[test]
fn odd_but_legal_tcp_options_are_accepted() {
    // The MSS we then use: the peer's, 536 without the option (RFC 9293 §3.7.1), and
    // never below 64 whatever the peer says.
    let good: [(&str, &[u8], usize); 5] = [
        ("end of list, then garbage", &[0, 0xff, 0xff, 0xff], 536),
        ("unknown option skipped", &[99, 4, 1, 2, 2, 4, 2, 0], 512),
        ("window scale above 14", &[3, 3, 200, 0], 536),
        ("MSS 0", &[2, 4, 0, 0], 64),
        ("repeated MSS: the last counts", &[2, 4, 4, 0, 2, 4, 2, 0x40], 576),
    ];
    for (name, options, expected_mss) in good {
        let (mut s, now, _) = busy(config());
        let synack = parse_tcp(&single(exchange(&mut s, now, syn_with_options(options))));
        assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK, "{name}");
        let ack = seg_frame(41_000, 80, TcpFlags::ACK, PEER_ISS + 1, Some(synack.seq + 1), b"");
        assert!(exchange(&mut s, now, ack).is_empty());
        let l = match events(&mut s).as_slice() {
            [Event::AcceptReady(l)] => *l,
            other => panic!("{name}: {other:?}"),
        };
        let (h, _) = s.tcp_accept(l).unwrap();
        assert_eq!(s.tcp(h).unwrap().send_mss(), expected_mss, "{name}");
    }
}

// ---- segments and connections -------------------------------------------------------

#[test]
fn segments_for_unknown_connections_are_answered_with_rst() {
    let (mut s, now, c) = busy(config());
    // The listener's port, another peer port: no connection there.
    let stray = seg_frame(41_002, 80, TcpFlags::ACK | TcpFlags::PSH, SeqNumber(10), Some(SeqNumber(20)), b"hi");
    let rst = parse_tcp(&single(exchange(&mut s, now, stray)));
    assert_eq!((rst.flags, rst.seq, rst.ack), (TcpFlags::RST, SeqNumber(20), None));
    // The connection's port pair from another address of the subnet.
    let repr = TcpRepr { seq_number: SeqNumber(5), flags: TcpFlags::FIN, ..TcpRepr::default() };
    let frame = tcp_frame(std::net::SocketAddrV4::new(OTHER_IP, c.peer_port), ours(80), &repr);
    s.add_static_neighbor(OTHER_IP, OTHER_MAC);
    let out = single(exchange(&mut s, now, frame));
    let Out::Tcp(eth, ip, rst) = parse(&out) else { panic!() };
    assert_eq!((eth.dst, ip.dst_addr), (OTHER_MAC, OTHER_IP));
    assert_eq!((rst.flags, rst.seq, rst.ack), (TcpFlags::RST | TcpFlags::ACK, SeqNumber(0), Some(SeqNumber(6))));
    assert_eq!(s.stats().tcp_no_socket, 2);
    assert_eq!(s.tcp(c.handle).unwrap().state(), State::Established);
}

#[test]
fn out_of_window_segments_are_acked_and_not_delivered() {
    let (mut s, now, mut c) = busy(config());
    let expect_dup_ack = |s: &mut Stack, frame: Bytes, c: &Conn| {
        let ack = parse_tcp(&single(exchange(s, now, frame)));
        assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, c.our_seq, Some(c.peer_seq)));
        assert!(ack.payload.is_empty());
        assert_eq!(events(s), vec![]);
    };
    // Far beyond the right edge of the window (256 KiB).
    let ahead = seg_frame(c.peer_port, 80, TcpFlags::ACK, c.peer_seq + (1 << 20), Some(c.our_seq), b"future");
    expect_dup_ack(&mut s, ahead, &c);
    // Half the sequence space away.
    let far = seg_frame(c.peer_port, 80, TcpFlags::ACK, c.peer_seq + (1 << 31), Some(c.our_seq), b"far");
    expect_dup_ack(&mut s, far, &c);
    assert_eq!(s.tcp_recv(c.handle, 100), Err(StackError::Tcp(TcpError::WouldBlock)));

    // In-order data, then an old duplicate of it.
    exchange(&mut s, now, c.segment(TcpFlags::ACK, b"0123456789"));
    events(&mut s);
    let old = c.segment(TcpFlags::ACK, b"01234");
    c.peer_seq += 10;
    expect_dup_ack(&mut s, old, &c);
    assert_eq!(s.tcp_recv(c.handle, 100).unwrap(), Bytes::from_static(b"0123456789"));
    assert_eq!(s.tcp_recv(c.handle, 100), Err(StackError::Tcp(TcpError::WouldBlock)), "delivered once");

    // An RST outside the window is ignored, silently.
    let rst = seg_frame(c.peer_port, 80, TcpFlags::RST, c.peer_seq + (1 << 20), None, b"");
    assert!(exchange(&mut s, now, rst).is_empty());
    // A SYN inside the window gets a challenge ACK (RFC 5961 §4) and changes nothing.
    let syn = seg_frame(c.peer_port, 80, TcpFlags::SYN, c.peer_seq + 100, None, b"");
    expect_dup_ack(&mut s, syn, &c);
    // An ACK for data never sent is answered with an ACK; its data is dropped.
    let bad_ack = seg_frame(c.peer_port, 80, TcpFlags::ACK, c.peer_seq, Some(c.our_seq + 1000), b"dropped");
    expect_dup_ack(&mut s, bad_ack, &c);
    assert_eq!(s.tcp_recv(c.handle, 100), Err(StackError::Tcp(TcpError::WouldBlock)));
    assert_eq!(s.tcp(c.handle).unwrap().state(), State::Established);
}

// ---- property tests -----------------------------------------------------------------

/// A frame built from random bytes: raw, or behind a valid Ethernet header (and,
/// for IPv4, a valid IP header) so that the bytes reach the deeper parsers.
fn arbitrary_frame() -> impl Strategy<Value = Bytes> {
    let raw = proptest::collection::vec(any::<u8>(), 0..128).prop_map(Bytes::from);
    let arp = proptest::collection::vec(any::<u8>(), 0..64)
        .prop_map(|body| eth_frame(OUR_MAC, PEER_MAC, EtherType::Arp, &body));
    let ip = (
        prop_oneof![Just(IpProtocol::Icmp), Just(IpProtocol::Udp), Just(IpProtocol::Tcp)],
        prop_oneof![Just(OUR_IP), Just(SUBNET_BROADCAST), Just(PEER_IP)],
        proptest::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(protocol, dst, l4)| ipv4_frame(PEER_IP, dst, protocol, &l4));
    prop_oneof![raw, arp, ip]
}

/// A valid frame with some bits flipped and maybe cut short.
fn mutated_frame(c: Conn) -> impl Strategy<Value = Bytes> {
    let bases: Vec<Bytes> = valid_frames(&c)
        .into_iter()
        .map(|(_, f)| f)
        .chain([
            c.segment(TcpFlags::FIN | TcpFlags::ACK, b"bye"),
            c.segment(TcpFlags::RST, b""),
            c.segment(TcpFlags::SYN | TcpFlags::ACK, b""),
            arp_reply_from_peer(),
        ])
        .collect();
    (
        proptest::sample::select(bases),
        proptest::collection::vec((any::<usize>(), 0u8..8), 0..6),
        proptest::option::of(any::<usize>()),
    )
        .prop_map(|(base, flips, cut)| {
            let mut f = base.to_vec();
            for (at, bit) in flips {
                let at = at % f.len();
                f[at] ^= 1 << bit;
            }
            if let Some(cut) = cut {
                f.truncate(cut % (f.len() + 1));
            }
            Bytes::from(f)
        })
}

/// Feeds `frames` (with some time passing between them; each moved in as `Bytes`,
/// or lent with `receive_slice` and what follows taken with `poll_transmit_into`)
/// and checks that whatever the stack sends is a well-formed frame; then checks
/// that the stack still works.
fn feed_and_check(config: StackConfig, frames: Vec<(Bytes, u8, bool)>) -> Result<(), TestCaseError> {
    let caps = config.checksums;
    let (mut s, mut now, _) = busy(config);
    for (frame, advance_ms, lent) in frames {
        if lent {
            s.receive_slice(now, &frame);
        } else {
            s.receive(now, frame);
        }
        now += Duration::from_millis(u64::from(advance_ms));
        if s.poll_at().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        events(&mut s);
        let sent = if lent { drain_into(&mut s, now) } else { drain(&mut s, now) };
        for f in sent {
            if let Err(e) = try_parse(&f, &caps) {
                return Err(TestCaseError::fail(format!("stack sent a bad frame ({e}): {f:02x?}")));
            }
        }
    }
    // Still working: a fresh handshake on a new listener, and a ping.
    let l = s.tcp_listen(81, 4).expect("port 81 is free");
    let c = handshake(&mut s, now, l, 81, 50_000);
    prop_assert_eq!(s.tcp(c.handle).unwrap().state(), State::Established);
    s.tcp_send(c.handle, Bytes::from_static(b"alive")).unwrap();
    let seg = parse_tcp_with(&single(drain(&mut s, now)), &caps);
    prop_assert_eq!(seg.payload, b"alive".to_vec());
    let reply = single(exchange(&mut s, now, echo_request_frame(PEER_IP, OUR_IP, 1, 2, b"ping")));
    let is_reply = matches!(parse_with(&reply, &caps), Out::Icmp(_, _, OutIcmp::EchoReply { .. }));
    prop_assert!(is_reply, "no echo reply");
    Ok(())
}

/// Every frame the stack has to send, taken with `poll_transmit_into` a buffer
/// that holds small frames (larger ones come back as `Bytes`).
fn drain_into(s: &mut Stack, now: Instant) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut buf = [0xa5u8; 200];
    while let Some(f) = s.poll_transmit_into(now, &mut buf) {
        out.push(match f {
            TxFrame::Written(n) => Bytes::copy_from_slice(&buf[..n]),
            TxFrame::Owned(f) => f,
        });
    }
    out
}

fn any_config() -> impl Strategy<Value = StackConfig> {
    any::<bool>().prop_map(|offload| if offload { offload_config() } else { config() })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic_and_the_stack_still_works(
        config in any_config(),
        frames in proptest::collection::vec((arbitrary_frame(), 0u8..50, any::<bool>()), 1..12),
    ) {
        feed_and_check(config, frames)?;
    }

    #[test]
    fn mutated_valid_frames_never_panic_and_the_stack_still_works(
        config in any_config(),
        frames in proptest::collection::vec((mutated_frame(busy(config()).2), 0u8..50, any::<bool>()), 1..12),
    ) {
        feed_and_check(config, frames)?;
    }
}
