//! ARP packets.
//!
//! Implements RFC 826, *An Ethernet Address Resolution Protocol*: the generic packet
//! layout (hardware and protocol types and address lengths, operation, sender and
//! target addresses) through [`ArpPacket`], and its only variant this stack speaks,
//! Ethernet hardware with IPv4 protocol addresses, through [`ArpRepr`].
//!
//! In an Ethernet frame the 28-byte packet is followed by padding; the view ignores
//! everything after the addresses.

use core::fmt;
use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetAddress};
use super::{read_u16, write_u16, Error, Result};

/// The hardware type of Ethernet (RFC 826, IANA "Hardware Types": 1).
pub const HARDWARE_ETHERNET: u16 = 1;

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    /// Where the variable-length addresses start.
    pub const ADDRS: usize = 8;
}

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// A request, 1: "who has the target protocol address?"
    Request,
    /// A reply, 2: "the sender protocol address is at the sender hardware address".
    Reply,
    /// Any other operation code (RARP, InARP, …).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

impl fmt::Display for ArpOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArpOperation::Request => f.write_str("request"),
            ArpOperation::Reply => f.write_str("reply"),
            ArpOperation::Unknown(value) => write!(f, "operation {value}"),
        }
    }
}

/// A view of an ARP packet of any hardware and protocol type in a byte buffer.
///
/// After [`check_len`](Self::check_len) the buffer holds the fixed fields and all four
/// addresses at the lengths the packet declares, and no accessor panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 8 fixed bytes and the four addresses at the
    /// declared lengths: [`Error::Truncated`] otherwise.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::ADDRS || len < self.packet_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The length of the packet the header declares: 8 plus twice the sum of the
    /// address lengths (28 for Ethernet/IPv4).
    pub fn packet_len(&self) -> usize {
        field::ADDRS + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    /// The hardware type ([`HARDWARE_ETHERNET`] for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// The protocol type, an EtherType ([`EtherType::Ipv4`] for IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// The hardware address length (6 for Ethernet).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length (4 for IPv4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// Start offsets of the sender hardware, sender protocol, target hardware and
    /// target protocol addresses.
    fn offsets(&self) -> [usize; 4] {
        let hlen = usize::from(self.hardware_len());
        let plen = usize::from(self.protocol_len());
        let sha = field::ADDRS;
        [sha, sha + hlen, sha + hlen + plen, sha + 2 * hlen + plen]
    }

    /// The sender hardware address bytes.
    pub fn source_hardware_addr(&self) -> &[u8] {
        let [sha, spa, _, _] = self.offsets();
        &self.buffer.as_ref()[sha..spa]
    }

    /// The sender protocol address bytes.
    pub fn source_protocol_addr(&self) -> &[u8] {
        let [_, spa, tha, _] = self.offsets();
        &self.buffer.as_ref()[spa..tha]
    }

    /// The target hardware address bytes.
    pub fn target_hardware_addr(&self) -> &[u8] {
        let [_, _, tha, tpa] = self.offsets();
        &self.buffer.as_ref()[tha..tpa]
    }

    /// The target protocol address bytes.
    pub fn target_protocol_addr(&self) -> &[u8] {
        let [_, _, _, tpa] = self.offsets();
        &self.buffer.as_ref()[tpa..self.packet_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::PTYPE, value.into());
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER, value.into());
    }

    /// Sets the sender hardware address; `value` must be `hardware_len` bytes long.
    pub fn set_source_hardware_addr(&mut self, value: &[u8]) {
        let [sha, spa, _, _] = self.offsets();
        self.buffer.as_mut()[sha..spa].copy_from_slice(value);
    }

    /// Sets the sender protocol address; `value` must be `protocol_len` bytes long.
    pub fn set_source_protocol_addr(&mut self, value: &[u8]) {
        let [_, spa, tha, _] = self.offsets();
        self.buffer.as_mut()[spa..tha].copy_from_slice(value);
    }

    /// Sets the target hardware address; `value` must be `hardware_len` bytes long.
    pub fn set_target_hardware_addr(&mut self, value: &[u8]) {
        let [_, _, tha, tpa] = self.offsets();
        self.buffer.as_mut()[tha..tpa].copy_from_slice(value);
    }

    /// Sets the target protocol address; `value` must be `protocol_len` bytes long.
    pub fn set_target_protocol_addr(&mut self, value: &[u8]) {
        let [_, _, _, tpa] = self.offsets();
        let end = self.packet_len();
        self.buffer.as_mut()[tpa..end].copy_from_slice(value);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The contents of an ARP packet this stack understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpRepr {
    /// ARP for IPv4 addresses over Ethernet.
    EthernetIpv4 {
        /// Request, reply, or an operation the stack should ignore.
        operation: ArpOperation,
        /// The sender's MAC address.
        source_hardware_addr: EthernetAddress,
        /// The sender's IPv4 address.
        source_protocol_addr: Ipv4Addr,
        /// The target's MAC address (ignored in requests, usually zero).
        target_hardware_addr: EthernetAddress,
        /// The IPv4 address being asked about, or the requester's in a reply.
        target_protocol_addr: Ipv4Addr,
    },
}

impl ArpRepr {
    /// Validates `packet` and reads it.
    ///
    /// * [`Error::Truncated`]: see [`ArpPacket::check_len`];
    /// * [`Error::Unsupported`]: the hardware type is not Ethernet or the protocol
    ///   type is not IPv4;
    /// * [`Error::Malformed`]: Ethernet/IPv4 types but address lengths other than
    ///   6 and 4.
    ///
    /// Unknown operations parse (as [`ArpOperation::Unknown`]); ignoring them is the
    /// stack's decision.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET || packet.protocol_type() != EtherType::Ipv4
        {
            return Err(Error::Unsupported);
        }
        if packet.hardware_len() != 6 || packet.protocol_len() != 4 {
            return Err(Error::Malformed);
        }
        let mac = |bytes: &[u8]| EthernetAddress::from_bytes(bytes).ok_or(Error::Malformed);
        let ip = |bytes: &[u8]| {
            <[u8; 4]>::try_from(bytes)
                .map(Ipv4Addr::from)
                .map_err(|_| Error::Malformed)
        };
        Ok(ArpRepr::EthernetIpv4 {
            operation: packet.operation(),
            source_hardware_addr: mac(packet.source_hardware_addr())?,
            source_protocol_addr: ip(packet.source_protocol_addr())?,
            target_hardware_addr: mac(packet.target_hardware_addr())?,
            target_protocol_addr: ip(packet.target_protocol_addr())?,
        })
    }

    /// The length of the emitted packet, [`ETHERNET_IPV4_LEN`] (without padding).
    pub const fn buffer_len(&self) -> usize {
        match self {
            ArpRepr::EthernetIpv4 { .. } => ETHERNET_IPV4_LEN,
        }
    }

    /// Writes the packet into `packet`.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        match *self {
            ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            } => {
                packet.set_hardware_type(HARDWARE_ETHERNET);
                packet.set_protocol_type(EtherType::Ipv4);
                packet.set_hardware_len(6);
                packet.set_protocol_len(4);
                packet.set_operation(operation);
                packet.set_source_hardware_addr(&source_hardware_addr.0);
                packet.set_source_protocol_addr(&source_protocol_addr.octets());
                packet.set_target_hardware_addr(&target_hardware_addr.0);
                packet.set_target_protocol_addr(&target_protocol_addr.octets());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "Who has 198.18.0.2? Tell 198.18.0.1 (02:00:00:00:00:01)".
    const ARP_REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, //
        0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0xc6, 0x12, 0x00, 0x02,
    ];

    fn request() -> ArpRepr {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
            source_protocol_addr: Ipv4Addr::new(198, 18, 0, 1),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(198, 18, 0, 2),
        }
    }

    #[test]
    fn parse_and_emit_round_trip() {
        let packet = ArpPacket::new_checked(&ARP_REQUEST[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Ok(request()));
        let mut out = [0u8; 28];
        request().emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, ARP_REQUEST);
        assert_eq!(request().buffer_len(), 28);
    }

    #[test]
    fn padding_after_the_packet_is_ignored() {
        let mut padded = [0xeeu8; 46];
        padded[..28].copy_from_slice(&ARP_REQUEST);
        let packet = ArpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Ok(request()));
        assert_eq!(packet.target_protocol_addr(), &[198, 18, 0, 2]);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..ARP_REQUEST.len() {
            let packet = ArpPacket::new_unchecked(&ARP_REQUEST[..len]);
            assert_eq!(ArpRepr::parse(&packet), Err(Error::Truncated), "len {len}");
        }
    }

    #[test]
    fn other_types_and_lengths() {
        let mut data = ARP_REQUEST;
        data[1] = 6; // IEEE 802 hardware
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&data[..])),
            Err(Error::Unsupported)
        );
        let mut data = ARP_REQUEST;
        data[2..4].copy_from_slice(&[0x86, 0xdd]); // IPv6 protocol addresses
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&data[..])),
            Err(Error::Unsupported)
        );
        let mut data = [0u8; 40];
        data[..28].copy_from_slice(&ARP_REQUEST);
        data[5] = 6; // protocol length 6 with IPv4: the buffer is long enough
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&data[..])),
            Err(Error::Malformed)
        );
        let mut data = ARP_REQUEST;
        data[4] = 8; // hardware length 8 needs 32 bytes
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&data[..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn unknown_operations_parse() {
        let mut data = ARP_REQUEST;
        data[7] = 3;
        let Ok(ArpRepr::EthernetIpv4 { operation, .. }) =
            ArpRepr::parse(&ArpPacket::new_unchecked(&data[..]))
        else {
            panic!("did not parse");
        };
        assert_eq!(operation, ArpOperation::Unknown(3));
        assert_eq!(u16::from(operation), 3);
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let packet = ArpPacket::new_unchecked(&data[..]);
            if packet.check_len().is_ok() {
                let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
                let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
            }
            if let Ok(repr) = ArpRepr::parse(&packet) {
                let mut out = [0u8; 28];
                repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
                prop_assert_eq!(&out[..], &data[..28]);
            }
        }
    }
}
