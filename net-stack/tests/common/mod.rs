//! Shared pieces of the stack-level tests: one `Stack` driven by hand, frames built
//! with the wire layer's representations, and the frames it sends parsed back with
//! the same layer into owned values that tests compare field by field.
//!
//! The stack under test is 10.0.0.1/24 at 02:00:00:00:00:01; the peer is 10.0.0.2
//! at 02:00:00:00:00:02.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use demi_net_stack::iface::{ConnHandle, Event, ListenHandle, Stack, StackConfig};
use demi_net_stack::tcp::TcpConfig;
use demi_net_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, DstUnreachable, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags,
    TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
pub const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
pub const OTHER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);
pub const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
pub const SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 255);

/// The peer's initial sequence number in handshakes the tests drive.
pub const PEER_ISS: SeqNumber = SeqNumber(1_000_000);

/// TIME-WAIT in these tests: short, so that reaping can be observed.
pub const TIME_WAIT: Duration = Duration::from_millis(100);

pub fn ours(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(OUR_IP, port)
}

pub fn peer(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(PEER_IP, port)
}

/// The configuration of the stack under test: immediate ACKs (so every expected
/// segment comes out of the call that causes it) and a short TIME-WAIT.
pub fn config() -> StackConfig {
    let mut c = StackConfig::new(OUR_MAC, OUR_IP);
    // No rate limit on ACKs to unacceptable segments: each test sees each answer.
    c.tcp = TcpConfig {
        ack_delay: None,
        time_wait: TIME_WAIT,
        invalid_ack_interval: std::time::Duration::ZERO,
        ..TcpConfig::default()
    };
    c
}

/// A stack that knows the peer's MAC address statically (no ARP in the way).
pub fn stack() -> (Stack, Instant) {
    stack_with(config())
}

pub fn stack_with(config: StackConfig) -> (Stack, Instant) {
    let now = Instant::now();
    let mut s = Stack::new(config, now);
    s.add_static_neighbor(PEER_IP, PEER_MAC);
    (s, now)
}

/// Everything the stack has to send now.
pub fn drain(s: &mut Stack, now: Instant) -> Vec<Bytes> {
    std::iter::from_fn(|| s.poll_transmit(now)).take(10_000).collect()
}

/// Everything the stack has to say to the application now.
pub fn events(s: &mut Stack) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).take(10_000).collect()
}

/// Feeds `frame` and returns what the stack sends in answer.
pub fn exchange(s: &mut Stack, now: Instant, frame: Bytes) -> Vec<Bytes> {
    s.receive(now, frame);
    drain(s, now)
}

/// The only frame in `frames`.
#[track_caller]
pub fn single(frames: Vec<Bytes>) -> Bytes {
    assert_eq!(frames.len(), 1, "expected exactly one frame, got {frames:02x?}");
    frames.into_iter().next().unwrap()
}

// ---- building frames ----------------------------------------------------------------

pub fn eth_frame(dst: EthernetAddress, src: EthernetAddress, ethertype: EtherType, payload: &[u8]) -> Bytes {
    let repr = EthernetRepr { src, dst, ethertype };
    let mut buf = BytesMut::zeroed(repr.buffer_len() + payload.len());
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    buf.freeze()
}

pub fn arp_frame(
    eth_dst: EthernetAddress,
    operation: ArpOperation,
    sender: (EthernetAddress, Ipv4Addr),
    target: (EthernetAddress, Ipv4Addr),
) -> Bytes {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sender.0,
        source_protocol_addr: sender.1,
        target_hardware_addr: target.0,
        target_protocol_addr: target.1,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    eth_frame(eth_dst, sender.0, EtherType::Arp, &buf)
}

/// "Who has `target`? Tell the peer", broadcast.
pub fn arp_request_from_peer(target: Ipv4Addr) -> Bytes {
    arp_frame(EthernetAddress::BROADCAST, ArpOperation::Request, (PEER_MAC, PEER_IP), (EthernetAddress([0; 6]), target))
}

/// The peer answers our request for its address.
pub fn arp_reply_from_peer() -> Bytes {
    arp_frame(OUR_MAC, ArpOperation::Reply, (PEER_MAC, PEER_IP), (OUR_MAC, OUR_IP))
}

/// The IPv4 header the tests send: DF, TTL 64, ident 0x4242.
pub fn ip_repr(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> Ipv4Repr {
    Ipv4Repr { src_addr: src, dst_addr: dst, protocol, payload_len, ttl: 64, ident: 0x4242, dont_fragment: true }
}

/// An Ethernet frame (peer's MAC to ours) carrying an IPv4 datagram around `l4`.
pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8]) -> Bytes {
    ipv4_frame_to(OUR_MAC, src, dst, protocol, l4)
}

pub fn ipv4_frame_to(eth_dst: EthernetAddress, src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8]) -> Bytes {
    let ip = ip_repr(src, dst, protocol, l4.len());
    let mut buf = vec![0u8; ip.buffer_len()];
    let mut pkt = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut pkt, &ChecksumCaps::all());
    pkt.payload_mut().copy_from_slice(l4);
    eth_frame(eth_dst, PEER_MAC, EtherType::Ipv4, &buf)
}

pub fn udp_bytes(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr { src_port: src.port(), dst_port: dst.port() };
    let mut buf = vec![0u8; repr.buffer_len(payload.len())];
    repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), *src.ip(), *dst.ip(), payload, &ChecksumCaps::all());
    buf
}

pub fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Bytes {
    ipv4_frame(*src.ip(), *dst.ip(), IpProtocol::Udp, &udp_bytes(src, dst, payload))
}

pub fn icmp_bytes(repr: &Icmpv4Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &ChecksumCaps::all());
    buf
}

pub fn echo_request_bytes(ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    icmp_bytes(&Icmpv4Repr::EchoRequest { ident, seq_no, data })
}

pub fn echo_request_frame(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq_no: u16, data: &[u8]) -> Bytes {
    ipv4_frame(src, dst, IpProtocol::Icmp, &echo_request_bytes(ident, seq_no, data))
}

pub fn tcp_bytes(src: SocketAddrV4, dst: SocketAddrV4, repr: &TcpRepr<'_>) -> Vec<u8> {
    let repr = TcpRepr { src_port: src.port(), dst_port: dst.port(), ..*repr };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), *src.ip(), *dst.ip(), &ChecksumCaps::all());
    buf
}

pub fn tcp_frame(src: SocketAddrV4, dst: SocketAddrV4, repr: &TcpRepr<'_>) -> Bytes {
    ipv4_frame(*src.ip(), *dst.ip(), IpProtocol::Tcp, &tcp_bytes(src, dst, repr))
}

/// A segment from the peer's `from` port to our `to` port.
pub fn seg_frame(from: u16, to: u16, flags: TcpFlags, seq: SeqNumber, ack: Option<SeqNumber>, payload: &[u8]) -> Bytes {
    let repr = TcpRepr { seq_number: seq, ack_number: ack, flags, window_len: 65_535, payload, ..TcpRepr::default() };
    tcp_frame(peer(from), ours(to), &repr)
}

/// The peer's SYN, as Linux would send it (MSS 1460, window scale 7).
pub fn syn_frame(from: u16, to: u16, iss: SeqNumber) -> Bytes {
    let repr = TcpRepr {
        seq_number: iss,
        flags: TcpFlags::SYN,
        window_len: 64_240,
        max_seg_size: Some(1460),
        window_scale: Some(7),
        ..TcpRepr::default()
    };
    tcp_frame(peer(from), ours(to), &repr)
}

/// Recomputes the IPv4 header checksum of a frame after a test edited the header.
pub fn refill_ip_checksum(frame: &mut [u8]) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.fill_checksum();
}

/// Recomputes the TCP checksum of a frame (IPv4 header without options) after a
/// test edited the segment.
pub fn refill_tcp_checksum(frame: &mut [u8]) {
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let mut tcp = TcpPacket::new_unchecked(&mut frame[34..14 + total]);
    tcp.set_checksum(0);
    tcp.fill_checksum(PEER_IP, OUR_IP);
}

// ---- parsing what the stack sends ---------------------------------------------------

/// An outgoing frame, parsed and validated through the wire layer. Checksums are
/// verified according to `caps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Arp(EthernetRepr, ArpRepr),
    Icmp(EthernetRepr, Ipv4Repr, OutIcmp),
    Udp(EthernetRepr, Ipv4Repr, OutUdp),
    Tcp(EthernetRepr, Ipv4Repr, OutTcp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutIcmp {
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: Vec<u8>,
    },
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: Vec<u8>,
    },
    /// The message as sent: everything after the 8-byte ICMP header.
    DstUnreachable {
        reason: DstUnreachable,
        quoted: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutUdp {
    pub src_port: u16,
    pub dst_port: u16,
    pub length_field: u16,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutTcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
    pub flags: TcpFlags,
    pub window: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub payload: Vec<u8>,
}

/// Parses a frame the stack sent, with every checksum verified.
#[track_caller]
pub fn parse(frame: &[u8]) -> Out {
    parse_with(frame, &ChecksumCaps::all())
}

/// Parses a frame the stack sent. Panics (failing the test) on anything the wire
/// layer rejects; every frame a stack sends must be well-formed.
#[track_caller]
pub fn parse_with(frame: &[u8], caps: &ChecksumCaps) -> Out {
    try_parse(frame, caps).unwrap_or_else(|e| panic!("stack sent a bad frame ({e}): {frame:02x?}"))
}

pub fn try_parse(frame: &[u8], caps: &ChecksumCaps) -> Result<Out, String> {
    let eth_frame = EthernetFrame::new_checked(frame).map_err(|e| format!("ethernet: {e}"))?;
    let eth = EthernetRepr::parse(&eth_frame).map_err(|e| format!("ethernet: {e}"))?;
    if eth.src != OUR_MAC {
        return Err(format!("source MAC {}", eth.src));
    }
    match eth.ethertype {
        EtherType::Arp => {
            let pkt = ArpPacket::new_checked(eth_frame.payload()).map_err(|e| format!("arp: {e}"))?;
            let arp = ArpRepr::parse(&pkt).map_err(|e| format!("arp: {e}"))?;
            Ok(Out::Arp(eth, arp))
        }
        EtherType::Ipv4 => {
            let pkt = Ipv4Packet::new_checked(eth_frame.payload()).map_err(|e| format!("ipv4: {e}"))?;
            let ip = Ipv4Repr::parse(&pkt, caps).map_err(|e| format!("ipv4: {e}"))?;
            if pkt.header_len() != 20 || pkt.total_len() as usize != eth_frame.payload().len() {
                return Err("ipv4: unexpected header or total length".into());
            }
            if ip.src_addr != OUR_IP {
                return Err(format!("ipv4: source {}", ip.src_addr));
            }
            let l4 = pkt.payload();
            match ip.protocol {
                IpProtocol::Icmp => {
                    let p = Icmpv4Packet::new_checked(l4).map_err(|e| format!("icmp: {e}"))?;
                    let icmp = match Icmpv4Repr::parse(&p, caps).map_err(|e| format!("icmp: {e}"))? {
                        Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                            OutIcmp::EchoReply { ident, seq_no, data: data.to_vec() }
                        }
                        Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                            OutIcmp::EchoRequest { ident, seq_no, data: data.to_vec() }
                        }
                        Icmpv4Repr::DstUnreachable { reason, .. } => {
                            if p.msg_type() != Icmpv4Message::DstUnreachable {
                                return Err("icmp: type".into());
                            }
                            OutIcmp::DstUnreachable { reason, quoted: p.data().to_vec() }
                        }
                    };
                    Ok(Out::Icmp(eth, ip, icmp))
                }
                IpProtocol::Udp => {
                    let p = UdpPacket::new_checked(l4).map_err(|e| format!("udp: {e}"))?;
                    let udp = UdpRepr::parse(&p, ip.src_addr, ip.dst_addr, caps).map_err(|e| format!("udp: {e}"))?;
                    if usize::from(p.len()) != l4.len() {
                        return Err("udp: length field".into());
                    }
                    Ok(Out::Udp(
                        eth,
                        ip,
                        OutUdp {
                            src_port: udp.src_port,
                            dst_port: udp.dst_port,
                            length_field: p.len(),
                            payload: p.payload().to_vec(),
                        },
                    ))
                }
                IpProtocol::Tcp => {
                    let p = TcpPacket::new_checked(l4).map_err(|e| format!("tcp: {e}"))?;
                    let t = TcpRepr::parse(&p, ip.src_addr, ip.dst_addr, caps).map_err(|e| format!("tcp: {e}"))?;
                    Ok(Out::Tcp(
                        eth,
                        ip,
                        OutTcp {
                            src_port: t.src_port,
                            dst_port: t.dst_port,
                            seq: t.seq_number,
                            ack: t.ack_number,
                            flags: t.flags,
                            window: t.window_len,
                            mss: t.max_seg_size,
                            window_scale: t.window_scale,
                            payload: t.payload.to_vec(),
                        },
                    ))
                }
                other => Err(format!("ipv4: protocol {other}")),
            }
        }
        other => Err(format!("ethertype {other}")),
    }
}

#[track_caller]
pub fn parse_arp(frame: &[u8]) -> (EthernetRepr, ArpRepr) {
    match parse(frame) {
        Out::Arp(eth, arp) => (eth, arp),
        other => panic!("expected ARP, got {other:?}"),
    }
}

#[track_caller]
pub fn parse_icmp(frame: &[u8]) -> (EthernetRepr, Ipv4Repr, OutIcmp) {
    match parse(frame) {
        Out::Icmp(eth, ip, icmp) => (eth, ip, icmp),
        other => panic!("expected ICMP, got {other:?}"),
    }
}

#[track_caller]
pub fn parse_udp(frame: &[u8]) -> (EthernetRepr, Ipv4Repr, OutUdp) {
    match parse(frame) {
        Out::Udp(eth, ip, udp) => (eth, ip, udp),
        other => panic!("expected UDP, got {other:?}"),
    }
}

/// A TCP segment the stack sent to the peer (addresses and MACs checked here).
#[track_caller]
pub fn parse_tcp(frame: &[u8]) -> OutTcp {
    parse_tcp_with(frame, &ChecksumCaps::all())
}

#[track_caller]
pub fn parse_tcp_with(frame: &[u8], caps: &ChecksumCaps) -> OutTcp {
    match parse_with(frame, caps) {
        Out::Tcp(eth, ip, tcp) => {
            assert_eq!((eth.dst, eth.ethertype), (PEER_MAC, EtherType::Ipv4));
            assert_eq!((ip.src_addr, ip.dst_addr, ip.protocol), (OUR_IP, PEER_IP, IpProtocol::Tcp));
            tcp
        }
        other => panic!("expected TCP, got {other:?}"),
    }
}

// ---- TCP handshakes -----------------------------------------------------------------

/// An established connection accepted from a listener, as the peer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub handle: ConnHandle,
    pub listener: ListenHandle,
    /// Our port and the peer's.
    pub local_port: u16,
    pub peer_port: u16,
    /// The peer's next sequence number (our RCV.NXT).
    pub peer_seq: SeqNumber,
    /// Our next sequence number (the peer's RCV.NXT).
    pub our_seq: SeqNumber,
}

impl Conn {
    /// A segment from the peer on this connection, acknowledging all we sent.
    pub fn segment(&self, flags: TcpFlags, payload: &[u8]) -> Bytes {
        seg_frame(self.peer_port, self.local_port, flags, self.peer_seq, Some(self.our_seq), payload)
    }
}

/// Drives SYN → SYN-ACK → ACK from the peer's `peer_port` to our listener `l` on
/// `local_port`, accepts the connection and checks every step. The SYN-ACK's
/// checksums are verified as far as the stack computes them.
#[track_caller]
pub fn handshake(s: &mut Stack, now: Instant, l: ListenHandle, local_port: u16, peer_port: u16) -> Conn {
    let caps = s.config().checksums;
    let synack = parse_tcp_with(&single(exchange(s, now, syn_frame(peer_port, local_port, PEER_ISS))), &caps);
    assert_eq!(synack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((synack.src_port, synack.dst_port), (local_port, peer_port));
    assert_eq!(synack.ack, Some(PEER_ISS + 1));
    let our_seq = synack.seq + 1;
    let ack = seg_frame(peer_port, local_port, TcpFlags::ACK, PEER_ISS + 1, Some(our_seq), b"");
    assert_eq!(exchange(s, now, ack), Vec::<Bytes>::new(), "the final ACK of a handshake is not answered");
    assert!(events(s).contains(&Event::AcceptReady(l)));
    let (handle, remote) = s.tcp_accept(l).expect("an established connection to accept");
    assert_eq!(remote, peer(peer_port));
    Conn { handle, listener: l, local_port, peer_port, peer_seq: PEER_ISS + 1, our_seq }
}

/// A stack with a listener on port 80 and one accepted connection from peer port
/// 40000.
pub fn established() -> (Stack, Instant, Conn) {
    established_with(config())
}

pub fn established_with(config: StackConfig) -> (Stack, Instant, Conn) {
    let (mut s, now) = stack_with(config);
    let l = s.tcp_listen(80, 16).unwrap();
    let c = handshake(&mut s, now, l, 80, 40_000);
    (s, now, c)
}
