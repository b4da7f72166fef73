//! The wire layer: reading and writing packet headers, nothing else.
//!
//! Every protocol header lives in its own module and comes in two levels:
//!
//! * a **view** (`EthernetFrame<T>`, `Ipv4Packet<T>`, `TcpPacket<T>`, …) wraps any
//!   `T: AsRef<[u8]>` without copying. `new_checked` (or `check_len`) makes sure
//!   the buffer is long enough for every fixed field and for the lengths the header
//!   itself declares; after that no accessor panics, whatever the bytes say. Field
//!   setters are there when `T: AsMut<[u8]>` too. `new_unchecked` skips the check:
//!   accessors on an unchecked view may panic, which is only acceptable for buffers
//!   the caller sized itself (the emit path).
//! * a **representation** (`EthernetRepr`, `Ipv4Repr`, `TcpRepr`, …) is the
//!   validated, high-level content of a header. `parse` builds one from a view and
//!   rejects anything malformed, `buffer_len` says how many bytes `emit` needs, and
//!   `emit` writes the header (and, for the transport layers, the checksum) into a
//!   view over a buffer of at least that length.
//!
//! The contract towards the rest of the stack:
//!
//! * **No panics on input from the network.** Every `parse` and every checked view
//!   returns an [`Error`] for bad bytes instead. `emit` may panic when the caller
//!   hands it a buffer shorter than `buffer_len()`: that is a bug in the caller,
//!   never something a peer can trigger.
//! * **No allocation and no I/O.** Representations borrow payloads from the input.
//! * **Checksums follow [`ChecksumCaps`]**, so a device that offloads them can skip
//!   the software work in either direction.
//! * **IPv4 fragments are never mistaken for whole datagrams**:
//!   [`Ipv4Repr::parse`] returns `Err(Error::Unsupported)` for them (see its docs).
//!
//! Modules and the RFCs they implement:
//!
//! | module | protocol | RFCs |
//! |---|---|---|
//! | [`checksum`] | internet checksum | RFC 1071, RFC 768 / RFC 9293 pseudo-header |
//! | [`ethernet`] | Ethernet II framing | RFC 894 (IPv4 over Ethernet) |
//! | [`arp`] | ARP for IPv4 over Ethernet | RFC 826 |
//! | [`ipv4`] | IPv4 | RFC 791, RFC 1122, RFC 6864 (ident) |
//! | [`icmpv4`] | ICMPv4 echo and destination unreachable | RFC 792, RFC 1122, RFC 1812 |
//! | [`udp`] | UDP | RFC 768 |
//! | [`tcp`] | TCP header and options | RFC 9293 (793), RFC 1982, RFC 2018, RFC 7323 |
//!
//! # Fuzzing
//!
//! When the crate is compiled with `--cfg fuzzing` (cargo-fuzz sets it), checksum
//! verification always succeeds so a fuzzer's random bytes get past it and reach the
//! parsing code behind it.

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use self::icmpv4::{DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use self::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use self::tcp::{SeqNumber, TcpFlags, TcpOption, TcpOptions, TcpPacket, TcpRepr};
pub use self::udp::{UdpPacket, UdpRepr};
pub use std::net::Ipv4Addr;

/// Why a packet could not be parsed.
///
/// The stack's usual reaction to all of these is to drop the packet (and maybe count
/// it); the variants exist so that counters and tests can tell the causes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length the header declares.
    Truncated,
    /// A field holds a value the protocol forbids (bad version, a length field
    /// smaller than the header, an option with an impossible length, …).
    Malformed,
    /// The checksum does not match the contents.
    BadChecksum,
    /// Well-formed, but something this stack does not handle: an ARP packet for
    /// another hardware or protocol type, an ICMP message type it does not know, or
    /// an IPv4 fragment (see [`Ipv4Repr::parse`]).
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "packet truncated",
            Error::Malformed => "malformed packet",
            Error::BadChecksum => "bad checksum",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

/// The result type of the wire layer.
pub type Result<T> = core::result::Result<T, Error>;

/// In which directions software handles one protocol's checksum.
///
/// A direction that software does not handle is left to the device: on receive the
/// checksum is not verified (the device already did, or dropped the frame), on
/// transmit the field is left zero for the device to fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Checksum {
    /// Verify on receive and compute on transmit.
    #[default]
    Both,
    /// Verify on receive only; the device computes it on transmit.
    Rx,
    /// Compute on transmit only; the device verified it on receive.
    Tx,
    /// Neither: the device does both.
    None,
}

impl Checksum {
    /// Whether received packets have this checksum verified in software.
    ///
    /// Always `false` when compiled with `--cfg fuzzing`.
    pub const fn rx(self) -> bool {
        if cfg!(fuzzing) {
            return false;
        }
        matches!(self, Checksum::Both | Checksum::Rx)
    }

    /// Whether transmitted packets get this checksum computed in software.
    pub const fn tx(self) -> bool {
        matches!(self, Checksum::Both | Checksum::Tx)
    }
}

/// Which checksums software computes and verifies, per protocol.
///
/// Built from the device's offload capabilities. [`ChecksumCaps::default`] is
/// [`ChecksumCaps::all`].
///
/// ```
/// use demi_net_stack::wire::{Checksum, ChecksumCaps};
///
/// // A NIC that verifies TCP/UDP checksums on receive but computes none on transmit.
/// let caps = ChecksumCaps { tcp: Checksum::Tx, udp: Checksum::Tx, ..ChecksumCaps::all() };
/// assert!(!caps.tcp.rx() && caps.tcp.tx());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChecksumCaps {
    /// The IPv4 header checksum.
    pub ipv4: Checksum,
    /// The UDP checksum (over the pseudo-header and the datagram).
    pub udp: Checksum,
    /// The TCP checksum (over the pseudo-header and the segment).
    pub tcp: Checksum,
    /// The ICMPv4 checksum (over the whole message).
    pub icmp: Checksum,
}

impl ChecksumCaps {
    /// Software verifies and computes every checksum: for devices without offload
    /// (memory, shared memory, raw sockets) and for the simulator.
    pub const fn all() -> Self {
        ChecksumCaps {
            ipv4: Checksum::Both,
            udp: Checksum::Both,
            tcp: Checksum::Both,
            icmp: Checksum::Both,
        }
    }

    /// Software touches no checksum: the device verifies and fills in all of them.
    pub const fn offload() -> Self {
        ChecksumCaps {
            ipv4: Checksum::None,
            udp: Checksum::None,
            tcp: Checksum::None,
            icmp: Checksum::None,
        }
    }
}

impl Default for ChecksumCaps {
    fn default() -> Self {
        Self::all()
    }
}

/// Reads a big-endian `u16` at `at`. The caller has checked the length.
#[inline(always)]
fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Reads a big-endian `u32` at `at`. The caller has checked the length.
#[inline(always)]
fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Writes a big-endian `u16` at `at`.
#[inline(always)]
fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
#[inline(always)]
fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Reads an IPv4 address at `at`. The caller has checked the length.
#[inline(always)]
fn read_ipv4(data: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(data[at], data[at + 1], data[at + 2], data[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A captured-style frame: Ethernet, IPv4 (DF, ident 0x1c46, TTL 64) and a TCP SYN
    /// from 198.18.0.1:49152 to 198.18.0.2:80 with MSS 1460, SACK permitted,
    /// timestamps and window scale 7, in Linux's option layout.
    const SYN_FRAME: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x08, 0x00, 0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, //
        0x92, 0x4e, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, 0xc0, 0x00, //
        0x00, 0x50, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, //
        0xfa, 0xf0, 0xd3, 0x84, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, //
        0x08, 0x0a, 0x00, 0x12, 0xd6, 0x87, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, //
        0x03, 0x07,
    ];

    /// A minimum-size frame carrying a UDP datagram ("hello" from 198.18.0.1:5353 to
    /// 198.18.0.2:53), padded with zeros to 60 bytes.
    const UDP_FRAME: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x08, 0x00, 0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, //
        0xee, 0xa3, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, 0x14, 0xe9, //
        0x00, 0x35, 0x00, 0x0d, 0x1a, 0xbc, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    fn a() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 1)
    }

    fn b() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 2)
    }

    #[test]
    fn syn_frame_through_every_layer_and_back() {
        let caps = ChecksumCaps::all();
        let frame = EthernetFrame::new_checked(&SYN_FRAME[..]).unwrap();
        let eth = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(eth.ethertype, EtherType::Ipv4);
        let ip_packet = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip = Ipv4Repr::parse(&ip_packet, &caps).unwrap();
        assert_eq!(
            (ip.src_addr, ip.dst_addr, ip.protocol),
            (a(), b(), IpProtocol::Tcp)
        );
        let tcp_packet = TcpPacket::new_checked(ip_packet.payload()).unwrap();
        let tcp = TcpRepr::parse(&tcp_packet, ip.src_addr, ip.dst_addr, &caps).unwrap();
        assert_eq!(tcp.flags, TcpFlags::SYN);
        assert_eq!(tcp.max_seg_size, Some(1460));
        assert_eq!(tcp.window_scale, Some(7));
        assert!(tcp.sack_permitted);
        assert_eq!(tcp.timestamp, Some((0x0012_d687, 0)));

        let len = eth.buffer_len() + ip.buffer_len();
        assert_eq!(ip.payload_len, tcp.buffer_len());
        let mut out = vec![0u8; len];
        let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
        eth.emit(&mut frame);
        let mut ip_out = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut ip_out, &caps);
        let mut tcp_out = TcpPacket::new_unchecked(ip_out.payload_mut());
        tcp.emit(&mut tcp_out, ip.src_addr, ip.dst_addr, &caps);
        assert_eq!(out, SYN_FRAME);
    }

    #[test]
    fn padded_udp_frame_parses_to_the_datagram_only() {
        let caps = ChecksumCaps::all();
        let frame = EthernetFrame::new_checked(&UDP_FRAME[..]).unwrap();
        assert_eq!(frame.payload().len(), 46);
        let ip_packet = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip = Ipv4Repr::parse(&ip_packet, &caps).unwrap();
        assert_eq!(ip.payload_len, 13);
        assert_eq!(ip_packet.payload().len(), 13);
        let udp_packet = UdpPacket::new_checked(ip_packet.payload()).unwrap();
        let udp = UdpRepr::parse(&udp_packet, ip.src_addr, ip.dst_addr, &caps).unwrap();
        assert_eq!((udp.src_port, udp.dst_port), (5353, 53));
        assert_eq!(udp_packet.payload(), b"hello");
    }

    #[test]
    fn checksum_caps_directions() {
        assert!(Checksum::Both.tx() && Checksum::Tx.tx());
        assert!(!Checksum::Rx.tx() && !Checksum::None.tx());
        if !cfg!(fuzzing) {
            assert!(Checksum::Both.rx() && Checksum::Rx.rx());
        }
        assert!(!Checksum::Tx.rx() && !Checksum::None.rx());
        assert_eq!(ChecksumCaps::default(), ChecksumCaps::all());
        assert_eq!(ChecksumCaps::offload().tcp, Checksum::None);
    }

    #[test]
    fn errors_display() {
        assert_eq!(Error::Truncated.to_string(), "packet truncated");
        let boxed: Box<dyn std::error::Error> = Box::new(Error::BadChecksum);
        assert_eq!(boxed.to_string(), "bad checksum");
    }
}
