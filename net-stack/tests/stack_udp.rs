//! UDP (RFC 768) at the stack level, and ICMP port unreachable for closed ports
//! (RFC 1122 §3.2.2.1, RFC 792).

mod common;

use common::*;
use demi_net_stack::iface::{Event, StackConfig, StackError};
use demi_net_stack::wire::{DstUnreachable, EtherType, EthernetAddress, IpProtocol};
use std::net::{Ipv4Addr, SocketAddrV4};

#[test]
fn a_datagram_for_a_bound_port_is_readable_with_its_source() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    assert_eq!(s.udp_local_port(u), Ok(5000));
    assert_eq!(s.udp_recv_from(u), Err(StackError::WouldBlock));
    assert!(exchange(&mut s, now, udp_frame(peer(40_000), ours(5000), b"hello")).is_empty());
    assert_eq!(events(&mut s), vec![Event::UdpReadable(u)]);
    let (data, src) = s.udp_recv_from(u).unwrap();
    assert_eq!((&data[..], src), (&b"hello"[..], peer(40_000)));
    assert_eq!(s.udp_recv_from(u), Err(StackError::WouldBlock));
}

#[test]
fn datagram_boundaries_are_kept_and_readable_is_edge_triggered() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    for payload in [&b"a"[..], b"", b"ccc"] {
        s.receive(now, udp_frame(peer(40_001), ours(5000), payload));
    }
    assert_eq!(events(&mut s), vec![Event::UdpReadable(u)], "one event for a queue that became non-empty");
    for payload in [&b"a"[..], b"", b"ccc"] {
        let (data, src) = s.udp_recv_from(u).unwrap();
        assert_eq!((&data[..], src), (payload, peer(40_001)));
    }
    assert_eq!(s.udp_recv_from(u), Err(StackError::WouldBlock));
    // The queue drained: the next datagram raises the event again.
    s.receive(now, udp_frame(peer(40_001), ours(5000), b"d"));
    assert_eq!(events(&mut s), vec![Event::UdpReadable(u)]);
}

#[test]
fn ethernet_padding_is_not_part_of_the_datagram() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let mut frame = udp_frame(peer(1), ours(5000), b"hi").to_vec();
    frame.resize(60, 0xee);
    s.receive(now, frame.into());
    assert_eq!(&s.udp_recv_from(u).unwrap().0[..], b"hi");
}

#[test]
fn a_zero_checksum_means_none() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let mut udp = udp_bytes(peer(1), ours(5000), b"no sum");
    udp[6..8].copy_from_slice(&[0, 0]);
    s.receive(now, ipv4_frame(PEER_IP, OUR_IP, IpProtocol::Udp, &udp));
    assert_eq!(&s.udp_recv_from(u).unwrap().0[..], b"no sum");
}

#[test]
fn send_to_builds_a_correct_datagram() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let payload: Vec<u8> = (0..=255u8).collect();
    s.udp_send_to(now, u, peer(40_000), &payload).unwrap();
    let frame = single(drain(&mut s, now));
    assert_eq!(frame.len(), 14 + 20 + 8 + payload.len());
    // The IP header checksum and the UDP checksum were verified by `parse_udp`.
    let (eth, ip, udp) = parse_udp(&frame);
    assert_eq!((eth.dst, eth.src, eth.ethertype), (PEER_MAC, OUR_MAC, EtherType::Ipv4));
    assert_eq!((ip.src_addr, ip.dst_addr, ip.protocol, ip.ttl), (OUR_IP, PEER_IP, IpProtocol::Udp, 64));
    assert!(ip.dont_fragment);
    assert_eq!((udp.src_port, udp.dst_port), (5000, 40_000));
    assert_eq!(usize::from(udp.length_field), 8 + payload.len());
    assert_ne!(u16::from_be_bytes([frame[40], frame[41]]), 0, "a checksum is filled in");
    assert_eq!(udp.payload, payload);
    assert_eq!(s.stats().tx_frames, 1);
}

#[test]
fn send_to_a_broadcast_address_goes_to_the_broadcast_mac() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    for dst in [SUBNET_BROADCAST, Ipv4Addr::BROADCAST] {
        s.udp_send_to(now, u, SocketAddrV4::new(dst, 67), b"all").unwrap();
        let (eth, ip, _) = parse_udp(&single(drain(&mut s, now)));
        assert_eq!((eth.dst, ip.dst_addr), (EthernetAddress::BROADCAST, dst));
    }
    assert_eq!(s.neighbor_stats().requests_sent, 0);
}

#[test]
fn send_off_subnet_without_a_gateway_is_unreachable() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let far = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9);
    assert_eq!(s.udp_send_to(now, u, far, b"x"), Err(StackError::Unreachable));
    assert_eq!(s.stats().tx_no_route, 1);
    assert!(drain(&mut s, now).is_empty());
}

#[test]
fn a_datagram_to_a_closed_port_gets_port_unreachable_quoting_header_and_8_bytes() {
    let (mut s, now) = stack();
    let frame = udp_frame(peer(40_000), ours(6000), b"nobody listens here");
    let reply = single(exchange(&mut s, now, frame.clone()));
    let (eth, ip, icmp) = parse_icmp(&reply);
    assert_eq!((eth.dst, ip.src_addr, ip.dst_addr), (PEER_MAC, OUR_IP, PEER_IP));
    // Type 3, code 3, the unused word zero, then the offending IP header (20 bytes,
    // byte for byte) and the first 8 bytes of its payload (the UDP header).
    let icmp_bytes = &reply[34..];
    assert_eq!(&icmp_bytes[..2], &[3, 3]);
    assert_eq!(&icmp_bytes[4..8], &[0; 4]);
    let OutIcmp::DstUnreachable { reason, quoted } = icmp else { panic!("{icmp:?}") };
    assert_eq!(reason, DstUnreachable::PortUnreachable);
    assert_eq!(quoted, frame[14..14 + 20 + 8].to_vec());
    assert_eq!(ip.payload_len, 8 + 28);
    assert_eq!(s.stats().udp_no_socket, 1);
}

#[test]
fn a_short_datagram_to_a_closed_port_is_quoted_whole() {
    let (mut s, now) = stack();
    let frame = udp_frame(peer(40_000), ours(6000), b"");
    let (_, _, icmp) = parse_icmp(&single(exchange(&mut s, now, frame.clone())));
    let OutIcmp::DstUnreachable { quoted, .. } = icmp else { panic!("{icmp:?}") };
    assert_eq!(quoted, frame[14..].to_vec());
}

#[test]
fn no_port_unreachable_for_broadcasts() {
    let (mut s, now) = stack();
    let udp = udp_bytes(peer(68), SocketAddrV4::new(SUBNET_BROADCAST, 6000), b"x");
    let frame = ipv4_frame_to(EthernetAddress::BROADCAST, PEER_IP, SUBNET_BROADCAST, IpProtocol::Udp, &udp);
    assert!(exchange(&mut s, now, frame).is_empty());
    // Link-layer broadcast to our unicast address: no error either (RFC 1122 §3.2.2).
    let udp = udp_bytes(peer(68), ours(6000), b"x");
    let frame = ipv4_frame_to(EthernetAddress::BROADCAST, PEER_IP, OUR_IP, IpProtocol::Udp, &udp);
    assert!(exchange(&mut s, now, frame).is_empty());
    assert_eq!(s.stats().udp_no_socket, 2);
}

#[test]
fn no_port_unreachable_for_a_source_that_is_not_one_host() {
    // With a gateway, so that an answer to 0.0.0.0 would have somewhere to go.
    let gateway = Ipv4Addr::new(10, 0, 0, 254);
    let (mut s, now) = stack_with(StackConfig { gateway: Some(gateway), ..config() });
    s.add_static_neighbor(gateway, OTHER_MAC);
    for src in [Ipv4Addr::BROADCAST, SUBNET_BROADCAST, Ipv4Addr::new(224, 0, 0, 251), Ipv4Addr::UNSPECIFIED] {
        let frame = udp_frame(SocketAddrV4::new(src, 9), ours(6000), b"x");
        assert!(exchange(&mut s, now, frame).is_empty(), "from {src}");
    }
    // A datagram from off the subnet is answered through the gateway.
    let far = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 9);
    let (eth, ip, _) = parse_icmp(&single(exchange(&mut s, now, udp_frame(far, ours(6000), b"x"))));
    assert_eq!((eth.dst, ip.dst_addr), (OTHER_MAC, *far.ip()));
}

#[test]
fn broadcast_datagrams_reach_a_bound_socket() {
    let (mut s, now) = stack();
    let u = s.udp_bind(6000).unwrap();
    let udp = udp_bytes(peer(68), SocketAddrV4::new(Ipv4Addr::BROADCAST, 6000), b"all");
    let frame = ipv4_frame_to(EthernetAddress::BROADCAST, PEER_IP, Ipv4Addr::BROADCAST, IpProtocol::Udp, &udp);
    s.receive(now, frame);
    assert_eq!(s.udp_recv_from(u).unwrap(), (bytes::Bytes::from_static(b"all"), peer(68)));
}

#[test]
fn port_in_use_until_closed() {
    let (mut s, _) = stack();
    let u = s.udp_bind(5000).unwrap();
    assert_eq!(s.udp_bind(5000), Err(StackError::AddressInUse));
    let e = s.udp_bind(0).unwrap();
    assert!(s.udp_local_port(e).unwrap() >= 49_152);
    s.udp_close(u).unwrap();
    assert_eq!(s.udp_recv_from(u), Err(StackError::BadHandle));
    assert_eq!(s.udp_close(u), Err(StackError::BadHandle));
    let again = s.udp_bind(5000).unwrap();
    assert_ne!(again, u, "a stale handle does not name the new socket");
    assert_eq!(s.udp_recv_from(u), Err(StackError::BadHandle));
}

#[test]
fn oversize_datagrams_are_refused() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let max = 1500 - 20 - 8;
    assert_eq!(s.udp_send_to(now, u, peer(9), &vec![0; max + 1]), Err(StackError::MessageTooLong));
    assert!(drain(&mut s, now).is_empty());
    s.udp_send_to(now, u, peer(9), &vec![7; max]).unwrap();
    let frame = single(drain(&mut s, now));
    assert_eq!(frame.len(), 14 + 1500);
    assert_eq!(parse_udp(&frame).2.payload.len(), max);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (mut s, now) = stack_with(StackConfig { udp_queue_len: 2, ..config() });
    let u = s.udp_bind(5000).unwrap();
    for payload in [&b"1"[..], b"2", b"3", b"4"] {
        s.receive(now, udp_frame(peer(1), ours(5000), payload));
    }
    assert_eq!(s.stats().udp_queue_full, 2);
    assert_eq!(&s.udp_recv_from(u).unwrap().0[..], b"1");
    assert_eq!(&s.udp_recv_from(u).unwrap().0[..], b"2");
    assert_eq!(s.udp_recv_from(u), Err(StackError::WouldBlock));
    // Room again.
    s.receive(now, udp_frame(peer(1), ours(5000), b"5"));
    assert_eq!(&s.udp_recv_from(u).unwrap().0[..], b"5");
}

#[test]
fn bad_udp_checksum_is_dropped_and_counted() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let mut udp = udp_bytes(peer(1), ours(5000), b"data");
    udp[9] ^= 0x01;
    assert!(exchange(&mut s, now, ipv4_frame(PEER_IP, OUR_IP, IpProtocol::Udp, &udp)).is_empty());
    assert_eq!(s.stats().rx_bad_checksum, 1);
    assert_eq!(s.udp_recv_from(u), Err(StackError::WouldBlock));
    assert!(events(&mut s).is_empty());
}

#[test]
fn ip_options_are_skipped() {
    let (mut s, now) = stack();
    let u = s.udp_bind(5000).unwrap();
    let mut f = udp_frame(peer(9), ours(5000), b"after options").to_vec();
    // 8 bytes of options: a 4-byte unknown option (type 0x88, "stream id") and NOPs.
    f.splice(34..34, [0x88, 4, 0, 1, 1, 1, 1, 0]);
    f[14] = 0x47;
    let total = u16::from_be_bytes([f[16], f[17]]) + 8;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    refill_ip_checksum(&mut f);
    s.receive(now, f.into());
    assert_eq!(s.udp_recv_from(u).unwrap(), (bytes::Bytes::from_static(b"after options"), peer(9)));
    // Port unreachable quotes the header as sent (RFC 792: "internet header"); this
    // stack re-emits it without its options: the quote is 20 + 8 bytes.
    let mut f = udp_frame(peer(9), ours(6000), b"x").to_vec();
    f.splice(34..34, [1, 1, 1, 0]);
    f[14] = 0x46;
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    refill_ip_checksum(&mut f);
    let (_, _, icmp) = parse_icmp(&single(exchange(&mut s, now, f.into())));
    let OutIcmp::DstUnreachable { quoted, .. } = icmp else { panic!("{icmp:?}") };
    assert_eq!(quoted.len(), 28);
    assert_eq!(&quoted[20..28], &udp_bytes(peer(9), ours(6000), b"x")[..8]);
}
