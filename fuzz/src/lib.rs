//! Helpers shared by the fuzz targets of `demi-net-stack`: frame builders, a checker
//! for every frame a stack transmits, a driver that runs every wire parser over a
//! buffer (with emit/parse round trips), and the byte patterns the targets use to
//! check that data arrives intact.
//!
//! Everything here panics (with a message saying which invariant broke) when the
//! stack misbehaves; a panic is what libFuzzer reports as a crash.

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Instant;

use demi_net_stack::wire::checksum;
use demi_net_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber,
    TcpOptions, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// One `Instant` per process: every target measures its virtual time from it, so a
/// run is a pure function of the input (the ISN clock only sees differences).
pub fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The byte a peer's stream holds at sequence number `seq`: a function of the
/// absolute sequence number, so retransmissions, overlaps and reordering are always
/// consistent and a receiver's data can be checked byte for byte.
pub fn seq_pattern(seq: u32) -> u8 {
    let x = seq.wrapping_mul(0x9e37_79b1);
    (x >> 24) as u8 ^ (x >> 11) as u8
}

/// The byte an application queues at offset `offset` of its send stream (`salt`
/// tells the two directions of a connection apart).
pub fn stream_pattern(offset: u64, salt: u8) -> u8 {
    let x = (offset as u32)
        .wrapping_add(u32::from(salt) << 24)
        .wrapping_mul(0x85eb_ca6b);
    (x >> 24) as u8 ^ (x >> 13) as u8 ^ salt
}

/// `len` bytes of a peer's stream starting at `seq`.
pub fn seq_payload(seq: SeqNumber, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seq_pattern(seq.0.wrapping_add(i as u32)))
        .collect()
}

/// `len` bytes of an application stream starting at `offset`.
pub fn stream_payload(offset: u64, len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| stream_pattern(offset + i as u64, salt))
        .collect()
}

/// Signed distance `a - b` in sequence space.
pub fn seq_diff(a: SeqNumber, b: SeqNumber) -> i32 {
    a.0.wrapping_sub(b.0) as i32
}

// ---- building frames ------------------------------------------------------------------

/// Ethernet + IPv4 + `l4_len` bytes written by `fill`, with a valid IP checksum.
fn ipv4_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    l4_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + l4_len];
    let eth = EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: EtherType::Ipv4,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: l4_len,
        ttl: 64,
        ident: 0x1234,
        dont_fragment: true,
    };
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..]),
        &ChecksumCaps::all(),
    );
    fill(&mut frame[34..]);
    frame
}

/// A TCP segment in an Ethernet frame, checksums filled in.
pub fn tcp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    repr: &TcpRepr<'_>,
) -> Vec<u8> {
    ipv4_frame(
        src_mac,
        dst_mac,
        src,
        dst,
        IpProtocol::Tcp,
        repr.buffer_len(),
        |buf| {
            repr.emit(
                &mut TcpPacket::new_unchecked(buf),
                src,
                dst,
                &ChecksumCaps::all(),
            );
        },
    )
}

/// A UDP datagram in an Ethernet frame, checksums filled in.
pub fn udp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    ipv4_frame(
        src_mac,
        dst_mac,
        src.0,
        dst.0,
        IpProtocol::Udp,
        repr.buffer_len(payload.len()),
        |buf| {
            repr.emit(
                &mut UdpPacket::new_unchecked(buf),
                src.0,
                dst.0,
                payload,
                &ChecksumCaps::all(),
            );
        },
    )
}

/// An ICMP message in an Ethernet frame, checksums filled in.
pub fn icmp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    repr: &Icmpv4Repr<'_>,
) -> Vec<u8> {
    ipv4_frame(
        src_mac,
        dst_mac,
        src,
        dst,
        IpProtocol::Icmp,
        repr.buffer_len(),
        |buf| {
            repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &ChecksumCaps::all());
        },
    )
}

/// An ARP packet in an Ethernet frame.
pub fn arp_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, repr: &ArpRepr) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + repr.buffer_len()];
    let eth = EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: EtherType::Arp,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    repr.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    frame
}

// ---- checking what a stack transmits ----------------------------------------------------

/// What [`check_tx_frame`] found in a frame, for the targets' own bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct TxInfo {
    /// The destination IPv4 address and the TCP header, if the frame is a TCP segment.
    pub tcp: Option<(Ipv4Addr, TcpSummary)>,
}

/// The fields of a transmitted TCP segment.
#[derive(Debug, Clone, Default)]
pub struct TcpSummary {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The header as parsed (payload cleared).
    pub repr: TcpRepr<'static>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Checks a frame a stack with address `mac`/`ip`, IP MTU `mtu` and TCP MSS `mss`
/// transmitted: well-formed at every layer, from us, within the MTU, no payload past
/// the IP length, every checksum right, TCP payload within the MSS.
pub fn check_tx_frame(
    frame: &[u8],
    mac: EthernetAddress,
    ip: Ipv4Addr,
    mtu: usize,
    mss: usize,
) -> TxInfo {
    let caps = ChecksumCaps::all();
    let eth = EthernetFrame::new_checked(frame).expect("tx: Ethernet header truncated");
    let eth_repr = EthernetRepr::parse(&eth).expect("tx: Ethernet header malformed");
    assert_eq!(eth_repr.src, mac, "tx: source MAC is not ours");
    match eth_repr.ethertype {
        EtherType::Arp => {
            let pkt = ArpPacket::new_checked(eth.payload()).expect("tx: ARP truncated");
            let ArpRepr::EthernetIpv4 {
                source_hardware_addr,
                source_protocol_addr,
                ..
            } = ArpRepr::parse(&pkt).expect("tx: ARP malformed");
            assert_eq!(source_hardware_addr, mac, "tx: ARP sender MAC is not ours");
            assert_eq!(source_protocol_addr, ip, "tx: ARP sender IP is not ours");
            TxInfo::default()
        }
        EtherType::Ipv4 => {
            let payload = eth.payload();
            let pkt = Ipv4Packet::new_checked(payload).expect("tx: IPv4 truncated");
            let repr = Ipv4Repr::parse(&pkt, &caps).expect("tx: IPv4 malformed");
            assert_eq!(
                checksum::checksum(&payload[..pkt.header_len()]),
                0,
                "tx: bad IPv4 header checksum"
            );
            assert_eq!(repr.src_addr, ip, "tx: IPv4 source is not ours");
            assert_eq!(
                usize::from(pkt.total_len()),
                payload.len(),
                "tx: bytes after the IPv4 datagram"
            );
            assert!(
                payload.len() <= mtu,
                "tx: datagram of {} bytes over the MTU {mtu}; headers: {:02x?}",
                payload.len(),
                &frame[..frame.len().min(14 + 60 + 60)]
            );
            let l4 = pkt.payload();
            let l4_sum = |proto| {
                checksum::fold(checksum::combine(
                    checksum::pseudo_header(repr.src_addr, repr.dst_addr, proto, l4.len()),
                    checksum::sum(l4),
                ))
            };
            match repr.protocol {
                IpProtocol::Tcp => {
                    let seg = TcpPacket::new_checked(l4).expect("tx: TCP truncated");
                    let tcp = TcpRepr::parse(&seg, repr.src_addr, repr.dst_addr, &caps)
                        .expect("tx: TCP malformed");
                    assert_eq!(l4_sum(IpProtocol::Tcp), 0xffff, "tx: bad TCP checksum");
                    assert!(
                        tcp.payload.len() <= mss,
                        "tx: TCP payload of {} bytes over the MSS {mss}",
                        tcp.payload.len()
                    );
                    assert_ne!(tcp.src_port, 0, "tx: TCP from port 0");
                    assert_ne!(tcp.dst_port, 0, "tx: TCP to port 0");
                    let payload = tcp.payload.to_vec();
                    let summary = TcpSummary {
                        src_port: tcp.src_port,
                        dst_port: tcp.dst_port,
                        repr: TcpRepr {
                            payload: &[],
                            ..tcp
                        },
                        payload,
                    };
                    TxInfo {
                        tcp: Some((repr.dst_addr, summary)),
                    }
                }
                IpProtocol::Udp => {
                    let dgram = UdpPacket::new_checked(l4).expect("tx: UDP truncated");
                    UdpRepr::parse(&dgram, repr.src_addr, repr.dst_addr, &caps)
                        .expect("tx: UDP malformed");
                    assert!(
                        dgram.checksum() == 0 || l4_sum(IpProtocol::Udp) == 0xffff,
                        "tx: bad UDP checksum"
                    );
                    TxInfo::default()
                }
                IpProtocol::Icmp => {
                    let msg = Icmpv4Packet::new_checked(l4).expect("tx: ICMP truncated");
                    Icmpv4Repr::parse(&msg, &caps).expect("tx: ICMP malformed");
                    assert_eq!(checksum::checksum(l4), 0, "tx: bad ICMP checksum");
                    TxInfo::default()
                }
                other => panic!("tx: IPv4 datagram with protocol {other:?}"),
            }
        }
        EtherType::Unknown(t) => panic!("tx: frame with EtherType {t:#06x}"),
    }
}

// ---- every parser over a buffer -------------------------------------------------------

/// Runs every wire parser over `data`, at every layer it could be (a frame, an IPv4
/// datagram, a transport segment, an ARP packet, an ICMP message, a TCP option list)
/// and, when a representation parses, emits it again and checks that the result
/// parses back to the same thing. Nothing here may panic on any input, except the
/// round-trip assertions.
pub fn parse_everything(data: &[u8]) {
    let caps = ChecksumCaps::all();
    let src = Ipv4Addr::new(10, 0, 0, 2);
    let dst = Ipv4Addr::new(10, 0, 0, 1);

    if let Ok(frame) = EthernetFrame::new_checked(data) {
        let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype());
        if let Ok(repr) = EthernetRepr::parse(&frame) {
            let mut out = vec![0u8; repr.buffer_len() + frame.payload().len()];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
            let again =
                EthernetRepr::parse(&EthernetFrame::new_checked(&out[..]).unwrap()).unwrap();
            assert_eq!(again, repr, "Ethernet round trip");
        }
        ipv4_layer(frame.payload(), &caps);
        arp_layer(frame.payload());
    }
    ipv4_layer(data, &caps);
    arp_layer(data);
    tcp_layer(data, src, dst, &caps);
    udp_layer(data, src, dst, &caps);
    icmp_layer(data, &caps);
    for option in TcpOptions::new(data).take(64) {
        if option.is_err() {
            break;
        }
    }
}

fn ipv4_layer(data: &[u8], caps: &ChecksumCaps) {
    let Ok(pkt) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        pkt.version(),
        pkt.dscp(),
        pkt.ecn(),
        pkt.ident(),
        pkt.ttl(),
        pkt.checksum(),
    );
    let _ = (
        pkt.options(),
        pkt.frag_offset(),
        pkt.more_frags(),
        pkt.dont_frag(),
    );
    let _ = pkt.verify_checksum();
    let payload = pkt.payload();
    if let Ok(repr) = Ipv4Repr::parse(&pkt, caps) {
        assert_eq!(
            repr.payload_len,
            payload.len(),
            "Ipv4Repr::payload_len vs payload()"
        );
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), caps);
        let again = Ipv4Repr::parse(
            &Ipv4Packet::new_checked(&out[..]).expect("re-emitted IPv4 is truncated"),
            caps,
        )
        .expect("re-emitted IPv4 does not parse");
        assert_eq!(again, repr, "IPv4 round trip");
        tcp_layer(payload, repr.src_addr, repr.dst_addr, caps);
        udp_layer(payload, repr.src_addr, repr.dst_addr, caps);
        icmp_layer(payload, caps);
    } else {
        // The parsers behind it must cope with whatever the datagram holds anyway.
        tcp_layer(payload, pkt.src_addr(), pkt.dst_addr(), caps);
        udp_layer(payload, pkt.src_addr(), pkt.dst_addr(), caps);
        icmp_layer(payload, caps);
    }
}

fn arp_layer(data: &[u8]) {
    let Ok(pkt) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        pkt.hardware_type(),
        pkt.protocol_type(),
        pkt.operation(),
        pkt.packet_len(),
    );
    let _ = (pkt.source_hardware_addr(), pkt.source_protocol_addr());
    let _ = (pkt.target_hardware_addr(), pkt.target_protocol_addr());
    if let Ok(repr) = ArpRepr::parse(&pkt) {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        let again =
            ArpRepr::parse(&ArpPacket::new_checked(&out[..]).expect("re-emitted ARP is truncated"))
                .expect("re-emitted ARP does not parse");
        assert_eq!(again, repr, "ARP round trip");
        let ArpRepr::EthernetIpv4 { operation, .. } = repr;
        let _ = u16::from(operation) == u16::from(ArpOperation::Request);
    }
}

fn tcp_layer(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr, caps: &ChecksumCaps) {
    let Ok(pkt) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        pkt.src_port(),
        pkt.dst_port(),
        pkt.seq_number(),
        pkt.ack_number(),
        pkt.flags(),
    );
    let _ = (
        pkt.window_len(),
        pkt.checksum(),
        pkt.urgent_at(),
        pkt.segment_len(),
    );
    let _ = pkt.verify_checksum(src, dst);
    for option in TcpOptions::new(pkt.options()).take(64) {
        if option.is_err() {
            break;
        }
    }
    let Ok(repr) = TcpRepr::parse(&pkt, src, dst, caps) else {
        return;
    };
    assert_eq!(repr.payload, pkt.payload(), "TcpRepr::payload vs payload()");
    assert!(
        repr.window_scale.is_none_or(|s| s <= 14),
        "parsed window scale above 14"
    );
    let mut out = vec![0u8; repr.buffer_len()];
    assert!(repr.header_len() <= 60, "TcpRepr::header_len over 60");
    repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), src, dst, caps);
    let again = TcpRepr::parse(
        &TcpPacket::new_checked(&out[..]).expect("re-emitted TCP is truncated"),
        src,
        dst,
        caps,
    )
    .expect("re-emitted TCP does not parse");
    let emitted_blocks = again.sack_ranges.iter().flatten().count();
    assert!(
        repr.sack_ranges
            .iter()
            .flatten()
            .take(emitted_blocks)
            .eq(again.sack_ranges.iter().flatten()),
        "TCP round trip: SACK blocks"
    );
    assert_eq!(
        TcpRepr {
            sack_ranges: [None; 3],
            ..again
        },
        TcpRepr {
            sack_ranges: [None; 3],
            ..repr
        },
        "TCP round trip"
    );
}

fn udp_layer(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr, caps: &ChecksumCaps) {
    let Ok(pkt) = UdpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        pkt.src_port(),
        pkt.dst_port(),
        pkt.len(),
        pkt.checksum(),
        pkt.verify_checksum(src, dst),
    );
    let payload = pkt.payload();
    let Ok(repr) = UdpRepr::parse(&pkt, src, dst, caps) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len(payload.len())];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut out[..]),
        src,
        dst,
        payload,
        caps,
    );
    let pkt2 = UdpPacket::new_checked(&out[..]).expect("re-emitted UDP is truncated");
    assert_eq!(
        UdpRepr::parse(&pkt2, src, dst, caps),
        Ok(repr),
        "UDP round trip"
    );
    assert_eq!(pkt2.payload(), payload, "UDP round trip: payload");
}

fn icmp_layer(data: &[u8], caps: &ChecksumCaps) {
    let Ok(pkt) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        pkt.msg_type(),
        pkt.msg_code(),
        pkt.checksum(),
        pkt.echo_ident(),
        pkt.echo_seq_no(),
    );
    let _ = (pkt.next_hop_mtu(), pkt.verify_checksum(), pkt.data());
    let Ok(repr) = Icmpv4Repr::parse(&pkt, caps) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), caps);
    let again = Icmpv4Repr::parse(
        &Icmpv4Packet::new_checked(&out[..]).expect("re-emitted ICMP is truncated"),
        caps,
    )
    .expect("re-emitted ICMP does not parse");
    assert_eq!(again, repr, "ICMP round trip");
}

/// A one-line description of a frame, for traces (`DEMI_FUZZ_TRACE=1`).
pub fn summarize(frame: &[u8]) -> String {
    let caps = ChecksumCaps::offload();
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("runt frame of {} bytes", frame.len());
    };
    match eth.ethertype() {
        EtherType::Arp => match ArpPacket::new_checked(eth.payload())
            .ok()
            .and_then(|p| ArpRepr::parse(&p).ok())
        {
            Some(ArpRepr::EthernetIpv4 {
                operation,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) => {
                format!("ARP {operation} {source_protocol_addr} -> {target_protocol_addr}")
            }
            None => "ARP (malformed)".into(),
        },
        EtherType::Ipv4 => {
            let Ok(pkt) = Ipv4Packet::new_checked(eth.payload()) else {
                return "IPv4 (malformed)".into();
            };
            let Ok(ip) = Ipv4Repr::parse(&pkt, &caps) else {
                return "IPv4 (unparsable)".into();
            };
            match ip.protocol {
                IpProtocol::Tcp => match TcpPacket::new_checked(pkt.payload())
                    .ok()
                    .and_then(|t| TcpRepr::parse(&t, ip.src_addr, ip.dst_addr, &caps).ok())
                {
                    Some(t) => format!(
                        "TCP {}:{} -> {}:{} {:?} seq={} ack={:?} win={} len={} mss={:?} ws={:?} sackok={} sack={:?} ts={:?}",
                        ip.src_addr,
                        t.src_port,
                        ip.dst_addr,
                        t.dst_port,
                        t.flags,
                        t.seq_number.0,
                        t.ack_number.map(|a| a.0),
                        t.window_len,
                        t.payload.len(),
                        t.max_seg_size,
                        t.window_scale,
                        t.sack_permitted,
                        t.sack_ranges.iter().flatten().collect::<Vec<_>>(),
                        t.timestamp
                    ),
                    None => "TCP (malformed)".into(),
                },
                other => format!("IPv4 {} -> {} {other:?} {} bytes", ip.src_addr, ip.dst_addr, ip.payload_len),
            }
        }
        EtherType::Unknown(t) => format!("EtherType {t:#06x}"),
    }
}
