//! ARP (RFC 826) and ICMP echo (RFC 792) at the stack level: frames in, the exact
//! frames that come back.

mod common;

use common::*;
use demi_net_stack::iface::{NeighborConfig, Stack, StackError};
use demi_net_stack::wire::{ArpOperation, ArpRepr, EtherType, EthernetAddress, IpProtocol, Ipv4Packet};
use std::net::Ipv4Addr;
use std::time::Duration;

/// A stack that knows no neighbour, with a bound UDP socket to send from.
fn bare_stack(neighbor: NeighborConfig) -> (Stack, std::time::Instant, demi_net_stack::iface::UdpHandle) {
    let now = std::time::Instant::now();
    let mut s = Stack::new(demi_net_stack::iface::StackConfig { neighbor, ..config() }, now);
    let u = s.udp_bind(5000).unwrap();
    (s, now, u)
}

#[track_caller]
fn assert_arp_request_for(frame: &[u8], target: Ipv4Addr) {
    let (eth, arp) = parse_arp(frame);
    assert_eq!(eth.dst, EthernetAddress::BROADCAST);
    assert_eq!(eth.ethertype, EtherType::Arp);
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: OUR_MAC,
            source_protocol_addr: OUR_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        }
    );
}

#[track_caller]
fn assert_udp_to_peer(frame: &[u8], payload: &[u8]) {
    let (eth, ip, udp) = parse_udp(frame);
    assert_eq!(eth.dst, PEER_MAC);
    assert_eq!(ip.dst_addr, PEER_IP);
    assert_eq!(udp.payload, payload);
}

// ---- ARP ----------------------------------------------------------------------------

#[test]
fn arp_request_for_our_address_gets_a_reply_with_our_mac() {
    let (mut s, now, _) = bare_stack(NeighborConfig::default());
    let reply = single(exchange(&mut s, now, arp_request_from_peer(OUR_IP)));
    assert_eq!(reply.len(), 14 + 28);
    let (eth, arp) = parse_arp(&reply);
    assert_eq!((eth.dst, eth.src, eth.ethertype), (PEER_MAC, OUR_MAC, EtherType::Arp));
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: OUR_MAC,
            source_protocol_addr: OUR_IP,
            target_hardware_addr: PEER_MAC,
            target_protocol_addr: PEER_IP,
        }
    );
    assert_eq!(s.neighbor_stats().requests_sent, 0);
}

#[test]
fn the_requester_is_learnt_from_a_request_for_us() {
    let (mut s, now, u) = bare_stack(NeighborConfig::default());
    exchange(&mut s, now, arp_request_from_peer(OUR_IP));
    s.udp_send_to(now, u, peer(7), b"hi").unwrap();
    assert_udp_to_peer(&single(drain(&mut s, now)), b"hi");
    assert_eq!(s.neighbor_stats().requests_sent, 0);
}

#[test]
fn arp_request_for_another_address_gets_nothing_and_teaches_nothing() {
    let (mut s, now, u) = bare_stack(NeighborConfig::default());
    assert!(exchange(&mut s, now, arp_request_from_peer(OTHER_IP)).is_empty());
    // RFC 826: the sender is added only if the request is for us.
    s.udp_send_to(now, u, peer(7), b"hi").unwrap();
    assert_arp_request_for(&single(drain(&mut s, now)), PEER_IP);
}

#[test]
fn unsolicited_reply_does_not_fill_the_cache() {
    let (mut s, now, u) = bare_stack(NeighborConfig::default());
    let gratuitous = arp_frame(
        EthernetAddress::BROADCAST,
        ArpOperation::Reply,
        (OTHER_MAC, PEER_IP),
        (EthernetAddress::BROADCAST, PEER_IP),
    );
    assert!(exchange(&mut s, now, gratuitous).is_empty());
    s.udp_send_to(now, u, peer(7), b"hi").unwrap();
    assert_arp_request_for(&single(drain(&mut s, now)), PEER_IP);
}

#[test]
fn unknown_neighbour_is_resolved_first_then_the_queued_packets_go_out_in_order() {
    let (mut s, now, u) = bare_stack(NeighborConfig::default());
    s.udp_send_to(now, u, peer(7), b"one").unwrap();
    s.udp_send_to(now, u, peer(7), b"two").unwrap();
    assert_arp_request_for(&single(drain(&mut s, now)), PEER_IP);
    assert_eq!(s.neighbor_stats().requests_sent, 1);
    assert_eq!(s.poll_at(), Some(now + Duration::from_secs(1)), "the retry is scheduled");

    let t = now + Duration::from_millis(10);
    let out = exchange(&mut s, t, arp_reply_from_peer());
    assert_eq!(out.len(), 2);
    assert_udp_to_peer(&out[0], b"one");
    assert_udp_to_peer(&out[1], b"two");
    assert_eq!(s.poll_at(), None, "nothing left to resolve");
    // Later packets go straight out.
    s.udp_send_to(t, u, peer(7), b"three").unwrap();
    assert_udp_to_peer(&single(drain(&mut s, t)), b"three");
    assert_eq!(s.neighbor_stats().requests_sent, 1);
}

#[test]
fn arp_retries_then_gives_up_and_drops_the_queue() {
    let cfg = NeighborConfig { retries: 3, retry_interval: Duration::from_secs(1), ..NeighborConfig::default() };
    let (mut s, now, u) = bare_stack(cfg);
    s.udp_send_to(now, u, peer(7), b"a").unwrap();
    s.udp_send_to(now, u, peer(7), b"b").unwrap();
    assert_arp_request_for(&single(drain(&mut s, now)), PEER_IP);

    // Nothing before the retry interval.
    assert!(drain(&mut s, now + Duration::from_millis(999)).is_empty());
    for i in 1..3 {
        let t = now + Duration::from_secs(i);
        assert_eq!(s.poll_at(), Some(t));
        s.handle_timeout(t);
        assert_arp_request_for(&single(drain(&mut s, t)), PEER_IP);
    }
    assert_eq!(s.neighbor_stats().requests_sent, 3);

    let t = now + Duration::from_secs(3);
    s.handle_timeout(t);
    assert!(drain(&mut s, t).is_empty(), "retries are spent: no fourth request");
    let stats = s.neighbor_stats();
    assert_eq!((stats.requests_sent, stats.dropped_unresolved), (3, 2));

    // During the hold-down new packets to it fail at once, and are counted.
    assert_eq!(s.udp_send_to(t, u, peer(7), b"c"), Err(StackError::Unreachable));
    assert!(drain(&mut s, t).is_empty());
    assert_eq!(s.neighbor_stats().dropped_unresolved, 3);

    // A late reply does not resurrect the dropped packets.
    assert!(exchange(&mut s, t, arp_reply_from_peer()).is_empty());

    // After the hold-down resolution starts again.
    let (mut s, now, u) = bare_stack(NeighborConfig { retries: 1, ..NeighborConfig::default() });
    s.udp_send_to(now, u, peer(7), b"x").unwrap();
    assert_arp_request_for(&single(drain(&mut s, now)), PEER_IP);
    let t1 = now + Duration::from_secs(1);
    assert!(drain(&mut s, t1).is_empty());
    let t2 = now + Duration::from_secs(2);
    s.udp_send_to(t2, u, peer(7), b"y").unwrap();
    assert_arp_request_for(&single(drain(&mut s, t2)), PEER_IP);
    assert_udp_to_peer(&single(exchange(&mut s, t2, arp_reply_from_peer())), b"y");
}

#[test]
fn static_neighbours_need_no_arp_and_are_not_overwritten() {
    let (mut s, now, u) = bare_stack(NeighborConfig::default());
    s.add_static_neighbor(PEER_IP, PEER_MAC);
    s.udp_send_to(now, u, peer(7), b"static").unwrap();
    assert_udp_to_peer(&single(drain(&mut s, now)), b"static");
    // An ARP packet claiming the address for another MAC changes nothing.
    let spoof = arp_frame(OUR_MAC, ArpOperation::Request, (OTHER_MAC, PEER_IP), (EthernetAddress([0; 6]), OUR_IP));
    let reply = single(exchange(&mut s, now, spoof));
    assert_eq!(parse_arp(&reply).0.dst, OTHER_MAC);
    let later = now + Duration::from_secs(3600);
    s.udp_send_to(later, u, peer(7), b"still").unwrap();
    assert_udp_to_peer(&single(drain(&mut s, later)), b"still");
    assert_eq!(s.neighbor_stats().requests_sent, 0);
}

#[test]
fn learnt_entries_expire() {
    let cfg = NeighborConfig { entry_ttl: Duration::from_secs(5), ..NeighborConfig::default() };
    let (mut s, now, u) = bare_stack(cfg);
    exchange(&mut s, now, arp_request_from_peer(OUR_IP));
    let t = now + Duration::from_secs(4);
    s.udp_send_to(t, u, peer(7), b"fresh").unwrap();
    assert_udp_to_peer(&single(drain(&mut s, t)), b"fresh");
    let t = now + Duration::from_secs(5);
    s.udp_send_to(t, u, peer(7), b"stale").unwrap();
    assert_arp_request_for(&single(drain(&mut s, t)), PEER_IP);
    assert_udp_to_peer(&single(exchange(&mut s, t, arp_reply_from_peer())), b"stale");
}

#[test]
fn malformed_arp_is_dropped() {
    let (mut s, now, _) = bare_stack(NeighborConfig::default());
    // A broadcast sender address, and an unspecified sender IP.
    let bad_sha = arp_frame(
        EthernetAddress::BROADCAST,
        ArpOperation::Request,
        (EthernetAddress::BROADCAST, PEER_IP),
        (EthernetAddress([0; 6]), OUR_IP),
    );
    assert!(exchange(&mut s, now, bad_sha).is_empty());
    let bad_spa = arp_frame(
        EthernetAddress::BROADCAST,
        ArpOperation::Request,
        (PEER_MAC, Ipv4Addr::UNSPECIFIED),
        (EthernetAddress([0; 6]), OUR_IP),
    );
    assert!(exchange(&mut s, now, bad_spa).is_empty());
    // Hardware type 6 (IEEE 802): not ours to answer.
    let mut other_htype = arp_request_from_peer(OUR_IP).to_vec();
    other_htype[15] = 6;
    assert!(exchange(&mut s, now, other_htype.into()).is_empty());
    // Address lengths that are not 6 and 4.
    let mut bad_len = arp_request_from_peer(OUR_IP).to_vec();
    bad_len[18] = 8;
    assert!(exchange(&mut s, now, bad_len.into()).is_empty());
    let st = s.stats();
    assert_eq!(st.rx_malformed + st.rx_unsupported, 4, "{st:?}");
}

// ---- ICMP ---------------------------------------------------------------------------

#[test]
fn echo_request_gets_an_echo_reply() {
    let (mut s, now) = stack();
    let data: Vec<u8> = (0..56u8).collect();
    let reply = single(exchange(&mut s, now, echo_request_frame(PEER_IP, OUR_IP, 0x1234, 7, &data)));
    // `parse_icmp` verified the IP and ICMP checksums.
    let (eth, ip, icmp) = parse_icmp(&reply);
    assert_eq!((eth.dst, eth.src), (PEER_MAC, OUR_MAC));
    assert_eq!((ip.src_addr, ip.dst_addr, ip.protocol), (OUR_IP, PEER_IP, IpProtocol::Icmp));
    assert_eq!(ip.payload_len, 8 + data.len());
    assert_eq!(icmp, OutIcmp::EchoReply { ident: 0x1234, seq_no: 7, data });
    assert_eq!(s.stats().icmp_echo_replies, 1);
}

#[test]
fn echo_request_with_ip_options_and_padding_is_answered() {
    let (mut s, now) = stack();
    let icmp = echo_request_bytes(9, 9, b"opt");
    // An IPv4 header with 4 bytes of options (NOP NOP NOP EOL) and Ethernet padding.
    let mut ip = vec![0u8; 24 + icmp.len()];
    let repr = ip_repr(PEER_IP, OUR_IP, IpProtocol::Icmp, icmp.len());
    let mut pkt = Ipv4Packet::new_unchecked(&mut ip[..]);
    repr.emit(&mut pkt, &demi_net_stack::wire::ChecksumCaps::all());
    pkt.set_header_len(24);
    pkt.set_total_len((24 + icmp.len()) as u16);
    ip[20..24].copy_from_slice(&[1, 1, 1, 0]);
    ip[24..].copy_from_slice(&icmp);
    let mut pkt = Ipv4Packet::new_unchecked(&mut ip[..]);
    pkt.fill_checksum();
    ip.resize(46, 0);
    let frame = eth_frame(OUR_MAC, PEER_MAC, EtherType::Ipv4, &ip);
    let (_, _, reply) = parse_icmp(&single(exchange(&mut s, now, frame)));
    assert_eq!(reply, OutIcmp::EchoReply { ident: 9, seq_no: 9, data: b"opt".to_vec() });
}

#[test]
fn an_echo_reply_larger_than_the_mtu_is_truncated_to_it() {
    // RFC 1122 §3.2.2.6: a reply that would need fragmentation is truncated.
    let (mut s, now) = stack();
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let reply = single(exchange(&mut s, now, echo_request_frame(PEER_IP, OUR_IP, 2, 3, &data)));
    assert_eq!(reply.len(), 14 + 1500);
    let (_, ip, icmp) = parse_icmp(&reply);
    assert_eq!(ip.payload_len, 1480);
    assert_eq!(icmp, OutIcmp::EchoReply { ident: 2, seq_no: 3, data: data[..1472].to_vec() });
}

#[test]
fn echo_to_a_broadcast_address_is_not_answered() {
    let (mut s, now) = stack();
    for dst in [SUBNET_BROADCAST, Ipv4Addr::BROADCAST] {
        let icmp = echo_request_bytes(1, 1, b"smurf");
        let frame = ipv4_frame_to(EthernetAddress::BROADCAST, PEER_IP, dst, IpProtocol::Icmp, &icmp);
        assert!(exchange(&mut s, now, frame).is_empty(), "echo to {dst}");
    }
    assert_eq!(s.stats().icmp_echo_replies, 0);
}

#[test]
fn echo_from_a_broadcast_or_multicast_source_is_not_answered() {
    // RFC 1122 §3.2.1.3: such a source is invalid and the datagram is discarded;
    // answering would send a reply to every host of the subnet.
    let (mut s, now) = stack();
    for src in [Ipv4Addr::BROADCAST, SUBNET_BROADCAST, Ipv4Addr::new(224, 0, 0, 1)] {
        let frame = echo_request_frame(src, OUR_IP, 1, 1, b"reflect");
        assert!(exchange(&mut s, now, frame).is_empty(), "echo from {src}");
    }
    assert_eq!(s.stats().icmp_echo_replies, 0);
}

#[test]
fn echo_replies_and_unknown_icmp_are_not_answered() {
    let (mut s, now) = stack();
    let reply = icmp_bytes(&demi_net_stack::wire::Icmpv4Repr::EchoReply { ident: 1, seq_no: 1, data: b"x" });
    assert!(exchange(&mut s, now, ipv4_frame(PEER_IP, OUR_IP, IpProtocol::Icmp, &reply)).is_empty());
    // Type 13 (timestamp), checksum right.
    let mut ts = vec![13u8, 0, 0, 0, 0, 1, 0, 1];
    let sum = demi_net_stack::wire::checksum::checksum(&ts);
    ts[2..4].copy_from_slice(&(!sum).to_be_bytes());
    assert!(exchange(&mut s, now, ipv4_frame(PEER_IP, OUR_IP, IpProtocol::Icmp, &ts)).is_empty());
    // Echo with a non-zero code.
    let mut coded = echo_request_bytes(1, 1, b"x");
    coded[1] = 1;
    assert!(exchange(&mut s, now, ipv4_frame(PEER_IP, OUR_IP, IpProtocol::Icmp, &coded)).is_empty());
    assert_eq!(s.stats().icmp_echo_replies, 0);
}

#[test]
fn echo_reply_waits_for_arp_like_any_packet() {
    let now = std::time::Instant::now();
    let mut s = Stack::new(config(), now);
    let request = echo_request_frame(OTHER_IP, OUR_IP, 5, 6, b"who");
    // The request came from 10.0.0.3, whose MAC we do not know.
    assert_arp_request_for(&single(exchange(&mut s, now, request)), OTHER_IP);
    let reply = arp_frame(OUR_MAC, ArpOperation::Reply, (OTHER_MAC, OTHER_IP), (OUR_MAC, OUR_IP));
    let (eth, ip, icmp) = parse_icmp(&single(exchange(&mut s, now, reply)));
    assert_eq!((eth.dst, ip.dst_addr), (OTHER_MAC, OTHER_IP));
    assert_eq!(icmp, OutIcmp::EchoReply { ident: 5, seq_no: 6, data: b"who".to_vec() });
}
