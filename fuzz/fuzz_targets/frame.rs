//! `frame`: one arbitrary frame into a busy stack.
//!
//! The input goes through every wire parser (with emit/parse round trips), and into
//! `Stack::receive` twice:
//!
//! 1. as it is, raw bytes;
//! 2. "steered": the first byte picks a valid template frame for the stack's current
//!    state (a segment in the window of an established connection, a SYN-ACK for
//!    the connection in SYN-SENT, a SYN to the listener, a UDP datagram, an ICMP
//!    echo, ARP...), the rest of the input is XORed over it (and appended past
//!    it), so that most mutations land deep in the protocol code instead of dying
//!    at the Ethernet or IP address checks.
//!
//! The stack under test has a UDP socket, a TCP listener, an established active
//! connection with unacknowledged data in flight, an accepted passive connection
//! with unread data, a connection in SYN-SENT, and a frame parked behind an ARP
//! resolution. After each frame the events are drained (with application reactions:
//! accept, recv, udp_recv_from, send) and every transmitted frame is checked by
//! `check_tx_frame`; then the timers are run for a while of virtual time.
//!
//! Invariants: no panic; every transmitted frame is well-formed, from us, within the
//! MTU, with correct checksums and TCP payloads within the MSS; one input does not
//! make the stack send without end (a frame storm) or ask for the same deadline
//! without end (a timer livelock).

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use demi_fuzz::{
    arp_frame, base_instant, check_tx_frame, icmp_frame, parse_everything, tcp_frame, udp_frame,
};
use demi_net_stack::iface::{ConnHandle, Event, Stack, StackConfig};
use demi_net_stack::tcp::TcpEvent;
use demi_net_stack::wire::{
    ArpOperation, ArpRepr, EthernetAddress, Icmpv4Repr, SeqNumber, TcpFlags, TcpRepr,
};
use libfuzzer_sys::fuzz_target;

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const PEER2_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x03]);
const UNKNOWN_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x04]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const UNKNOWN_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);

const PEER_ISN_ACTIVE: u32 = 0x1000_0000;
const PEER_ISN_PASSIVE: u32 = 0x2000_0000;
const PEER_ISN_SYN_SENT: u32 = 0x3000_0000;
const PEER_ISN_NEW: u32 = 0x4000_0000;

/// Frames one call may make the stack send before it counts as a storm.
const MAX_FRAMES_PER_PUMP: usize = 20_000;

struct Harness {
    stack: Stack,
    mtu: usize,
    mss: usize,
    /// ISS of the established connection we opened (unacknowledged data in flight).
    active_iss: SeqNumber,
    /// An established connection the listener accepted, with unread data.
    passive: Option<ConnHandle>,
    passive_iss: SeqNumber,
    /// A connection in SYN-SENT.
    syn_sent_iss: SeqNumber,
    sent_total: usize,
}

impl Harness {
    fn new(now: Instant) -> Harness {
        let mut config = StackConfig::new(OUR_MAC, OUR_IP);
        config.tcp.recv_buffer = 32 * 1024;
        config.tcp.send_buffer = 32 * 1024;
        config.udp_queue_len = 4;
        config.max_connections = 8;
        let mut stack = Stack::new(config, now);
        stack.add_static_neighbor(PEER_IP, PEER_MAC);
        stack.add_static_neighbor(PEER2_IP, PEER2_MAC);
        stack.udp_bind(53).expect("udp bind");
        stack.tcp_listen(80, 2).expect("listen");
        let mtu = stack.config().mtu;
        let mss = usize::from(stack.config().tcp.mss);
        let mut h = Harness {
            stack,
            mtu,
            mss,
            active_iss: SeqNumber(0),
            passive: None,
            passive_iss: SeqNumber(0),
            syn_sent_iss: SeqNumber(0),
            sent_total: 0,
        };

        // Active open to PEER:8080, completed by a scripted SYN-ACK.
        let active = h
            .stack
            .tcp_connect(now, 40000, SocketAddrV4::new(PEER_IP, 8080))
            .expect("connect");
        h.active_iss = h.take_syn(now, 40000).expect("SYN of the active open");
        let synack = TcpRepr {
            src_port: 8080,
            dst_port: 40000,
            seq_number: SeqNumber(PEER_ISN_ACTIVE),
            ack_number: Some(h.active_iss + 1),
            window_len: 65535,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((1, 0)),
            ..TcpRepr::default()
        };
        h.stack.receive(
            now,
            tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, &synack).into(),
        );
        h.pump(now);
        // Data in flight, not acknowledged.
        let data = Bytes::from(vec![0x5a; 4000]);
        h.sent_total += h.stack.tcp_send(active, data).expect("send");
        h.pump(now);

        // Passive open from PEER:40001 to the listener, completed by a scripted ACK
        // that carries 100 bytes nobody reads.
        let syn = TcpRepr {
            src_port: 40001,
            dst_port: 80,
            seq_number: SeqNumber(PEER_ISN_PASSIVE),
            window_len: 65535,
            flags: TcpFlags::SYN,
            max_seg_size: Some(1400),
            ..TcpRepr::default()
        };
        h.stack.receive(
            now,
            tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, &syn).into(),
        );
        h.passive_iss = h.take_syn(now, 80).expect("SYN-ACK of the passive open");
        let payload = [0xa5u8; 100];
        let ack = TcpRepr {
            src_port: 40001,
            dst_port: 80,
            seq_number: SeqNumber(PEER_ISN_PASSIVE + 1),
            ack_number: Some(h.passive_iss + 1),
            window_len: 65535,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            payload: &payload,
            ..TcpRepr::default()
        };
        h.stack.receive(
            now,
            tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, &ack).into(),
        );
        h.pump_with(now, false);

        // SYN-SENT towards PEER2:443.
        h.stack
            .tcp_connect(now, 40002, SocketAddrV4::new(PEER2_IP, 443))
            .expect("connect 2");
        h.syn_sent_iss = h
            .take_syn(now, 40002)
            .expect("SYN of the second active open");

        // A datagram waiting for ARP.
        let u = h.stack.udp_bind(0).expect("udp bind 2");
        h.stack
            .udp_send_to(now, u, SocketAddrV4::new(UNKNOWN_IP, 9), b"ping")
            .expect("udp send");
        h.pump(now);
        h
    }

    /// Drains the transmit queue and returns the ISS of the SYN (or SYN-ACK) sent
    /// from local port `port`.
    fn take_syn(&mut self, now: Instant, port: u16) -> Option<SeqNumber> {
        let mut iss = None;
        while let Some(frame) = self.stack.poll_transmit(now) {
            let info = check_tx_frame(&frame, OUR_MAC, OUR_IP, self.mtu, self.mss);
            if let Some((_, tcp)) = info.tcp {
                if tcp.src_port == port && tcp.repr.flags.contains(TcpFlags::SYN) {
                    iss = Some(tcp.repr.seq_number);
                }
            }
        }
        iss
    }

    fn pump(&mut self, now: Instant) {
        self.pump_with(now, true)
    }

    /// Delivers events to a small application (which accepts, reads, answers
    /// datagrams, writes when told it can) and drains and checks transmitted frames,
    /// until neither produces anything.
    fn pump_with(&mut self, now: Instant, read: bool) {
        let mut frames = 0usize;
        loop {
            let mut progress = false;
            while let Some(event) = self.stack.poll_event() {
                progress = true;
                match event {
                    Event::AcceptReady(l) => {
                        while let Ok((c, _)) = self.stack.tcp_accept(l) {
                            if self.passive.is_none() {
                                self.passive = Some(c);
                            }
                        }
                    }
                    Event::UdpReadable(u) => {
                        while self.stack.udp_recv_from(u).is_ok() {}
                        let _ = self.stack.udp_take_refusal(u);
                    }
                    Event::Tcp(c, TcpEvent::Readable) if read && Some(c) != self.passive => {
                        // Read everything; the passive connection keeps its data so
                        // that its window stays partly closed.
                        while let Ok(data) = self.stack.tcp_recv(c, 1000) {
                            assert!(
                                !data.is_empty() && data.len() <= 1000,
                                "tcp_recv returned {} bytes",
                                data.len()
                            );
                        }
                    }
                    Event::Tcp(c, TcpEvent::Writable) if self.sent_total < 1 << 20 => {
                        if let Ok(n) = self.stack.tcp_send(c, Bytes::from_static(&[0x11; 3000])) {
                            self.sent_total += n;
                        }
                    }
                    Event::Tcp(c, TcpEvent::PeerClosed) if read => {
                        let _ = self.stack.tcp_shutdown(c);
                    }
                    Event::Tcp(..) => {}
                }
            }
            while let Some(frame) = self.stack.poll_transmit(now) {
                progress = true;
                frames += 1;
                assert!(
                    frames <= MAX_FRAMES_PER_PUMP,
                    "frame storm: over {MAX_FRAMES_PER_PUMP} frames from one call"
                );
                check_tx_frame(&frame, OUR_MAC, OUR_IP, self.mtu, self.mss);
            }
            if !progress {
                break;
            }
        }
    }

    /// Runs the stack's timers for up to `rounds` deadlines.
    fn run_timers(&mut self, mut now: Instant, rounds: usize) {
        let mut stuck = 0;
        for _ in 0..rounds {
            let Some(at) = self.stack.poll_at() else {
                break;
            };
            if at <= now {
                stuck += 1;
                assert!(
                    stuck < 32,
                    "timer livelock: poll_at stays at or before now after handle_timeout"
                );
            } else {
                stuck = 0;
                now = at;
            }
            self.stack.handle_timeout(now);
            self.pump(now);
        }
    }

    /// Valid frames for the stack's current state, each a starting point for the
    /// steered input.
    fn templates(&self) -> Vec<Vec<u8>> {
        let active_data = [0x33u8; 64];
        let mut t = Vec::new();
        // 0: data + ACK of part of the in-flight data, on the active connection.
        t.push(tcp_frame(
            PEER_MAC,
            OUR_MAC,
            PEER_IP,
            OUR_IP,
            &TcpRepr {
                src_port: 8080,
                dst_port: 40000,
                seq_number: SeqNumber(PEER_ISN_ACTIVE + 1),
                ack_number: Some(self.active_iss + 1 + 1000),
                window_len: 512,
                flags: TcpFlags::ACK | TcpFlags::PSH,
                payload: &active_data,
                ..TcpRepr::default()
            },
        ));
        // 1: FIN + ACK of everything, on the active connection.
        t.push(tcp_frame(
            PEER_MAC,
            OUR_MAC,
            PEER_IP,
            OUR_IP,
            &TcpRepr {
                src_port: 8080,
                dst_port: 40000,
                seq_number: SeqNumber(PEER_ISN_ACTIVE + 1),
                ack_number: Some(self.active_iss + 1 + self.sent_total),
                window_len: 0,
                flags: TcpFlags::ACK | TcpFlags::FIN,
                sack_ranges: [
                    Some((self.active_iss.0 + 100, self.active_iss.0 + 200)),
                    None,
                    None,
                ],
                timestamp: Some((7, 1)),
                ..TcpRepr::default()
            },
        ));
        // 2: out-of-order data on the passive connection.
        t.push(tcp_frame(
            PEER_MAC,
            OUR_MAC,
            PEER_IP,
            OUR_IP,
            &TcpRepr {
                src_port: 40001,
                dst_port: 80,
                seq_number: SeqNumber(PEER_ISN_PASSIVE + 1 + 100 + 500),
                ack_number: Some(self.passive_iss + 1),
                window_len: 65535,
                flags: TcpFlags::ACK,
                payload: &active_data,
                ..TcpRepr::default()
            },
        ));
        // 3: RST in the window of the passive connection.
        t.push(tcp_frame(
            PEER_MAC,
            OUR_MAC,
            PEER_IP,
            OUR_IP,
            &TcpRepr {
                src_port: 40001,
                dst_port: 80,
                seq_number: SeqNumber(PEER_ISN_PASSIVE + 1 + 100),
                ack_number: Some(self.passive_iss + 1),
                flags: TcpFlags::RST | TcpFlags::ACK,
                ..TcpRepr::default()
            },
        ));
        // 4: SYN-ACK for the connection in SYN-SENT.
        t.push(tcp_frame(
            PEER2_MAC,
            OUR_MAC,
            PEER2_IP,
            OUR_IP,
            &TcpRepr {
                src_port: 443,
                dst_port: 40002,
                seq_number: SeqNumber(PEER_ISN_SYN_SENT),
                ack_number: Some(self.syn_sent_iss + 1),
                window_len: 1000,
                flags: TcpFlags::SYN | TcpFlags::ACK,
                max_seg_size: Some(100),
                window_scale: Some(14),
                ..TcpRepr::default()
            },
        ));
        // 5: a new SYN to the listener, every option.
        t.push(tcp_frame(
            PEER2_MAC,
            OUR_MAC,
            PEER2_IP,
            OUR_IP,
            &TcpRepr {
                src_port: 50000,
                dst_port: 80,
                seq_number: SeqNumber(PEER_ISN_NEW),
                window_len: 65535,
                flags: TcpFlags::SYN,
                max_seg_size: Some(536),
                window_scale: Some(3),
                sack_permitted: true,
                timestamp: Some((99, 0)),
                ..TcpRepr::default()
            },
        ));
        // 6: a UDP datagram to the bound socket.
        t.push(udp_frame(
            PEER_MAC,
            OUR_MAC,
            (PEER_IP, 5353),
            (OUR_IP, 53),
            b"hello, stack",
        ));
        // 7: a UDP datagram to a closed port (port unreachable comes back).
        t.push(udp_frame(
            PEER_MAC,
            OUR_MAC,
            (PEER_IP, 5353),
            (OUR_IP, 54),
            b"anyone?",
        ));
        // 8: ICMP echo request.
        t.push(icmp_frame(
            PEER_MAC,
            OUR_MAC,
            PEER_IP,
            OUR_IP,
            &Icmpv4Repr::EchoRequest {
                ident: 7,
                seq_no: 1,
                data: b"0123456789abcdef",
            },
        ));
        // 9: ICMP port unreachable about one of our datagrams.
        t.push(icmp_frame(
            PEER_MAC,
            OUR_MAC,
            PEER_IP,
            OUR_IP,
            &Icmpv4Repr::DstUnreachable {
                reason: demi_net_stack::wire::DstUnreachable::PortUnreachable,
                header: demi_net_stack::wire::Ipv4Repr {
                    src_addr: OUR_IP,
                    dst_addr: PEER_IP,
                    protocol: demi_net_stack::wire::IpProtocol::Udp,
                    payload_len: 12,
                    ttl: 64,
                    ident: 1,
                    dont_fragment: true,
                },
                data: &[0, 53, 0x14, 0xe9, 0, 12, 0, 0],
            },
        ));
        // 10: ARP reply resolving the parked datagram's destination.
        t.push(arp_frame(
            UNKNOWN_MAC,
            OUR_MAC,
            &ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: UNKNOWN_MAC,
                source_protocol_addr: UNKNOWN_IP,
                target_hardware_addr: OUR_MAC,
                target_protocol_addr: OUR_IP,
            },
        ));
        // 11: ARP request for our address.
        t.push(arp_frame(
            PEER_MAC,
            EthernetAddress::BROADCAST,
            &ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: PEER_MAC,
                source_protocol_addr: PEER_IP,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: OUR_IP,
            },
        ));
        t
    }

    /// The steered frame: template `sel % n`, the mask XORed over it and appended
    /// past it. Selector bit 0x80 cuts the frame to the mask's length; bit 0x40
    /// rewrites the IPv4 total length (and a UDP length) to match the frame.
    fn steer(&self, sel: u8, mask: &[u8]) -> Vec<u8> {
        let templates = self.templates();
        let mut frame = templates[usize::from(sel & 0x3f) % templates.len()].clone();
        for (i, m) in mask.iter().enumerate() {
            match frame.get_mut(i) {
                Some(b) => *b ^= m,
                None => frame.push(*m),
            }
        }
        if sel & 0x80 != 0 {
            frame.truncate(mask.len());
        }
        if sel & 0x40 != 0 && frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
            let ip_len = (frame.len() - 14).min(0xffff) as u16;
            frame[16..18].copy_from_slice(&ip_len.to_be_bytes());
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            if frame[23] == 17 && frame.len() >= 14 + ihl + 8 {
                let udp_len = (frame.len() - 14 - ihl).min(0xffff) as u16;
                frame[14 + ihl + 4..14 + ihl + 6].copy_from_slice(&udp_len.to_be_bytes());
            }
        }
        frame
    }
}

fuzz_target!(|data: &[u8]| {
    parse_everything(data);

    let start = base_instant();
    let mut h = Harness::new(start);
    let now = start + Duration::from_millis(5);

    // 1. The raw bytes.
    h.stack.receive(now, Bytes::copy_from_slice(data));
    h.pump(now);

    // 2. The steered frame.
    if let Some((&sel, mask)) = data.split_first() {
        let frame = h.steer(sel, mask);
        parse_everything(&frame);
        h.stack.receive(now, Bytes::from(frame));
        h.pump(now);
    }

    // 3. Time passes: retransmissions, delayed ACKs, ARP retries and timeouts.
    h.run_timers(now, 48);
});
