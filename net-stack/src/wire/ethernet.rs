//! Ethernet II frames.
//!
//! Implements the DIX / IEEE 802.3 frame header with an EtherType (destination,
//! source, type; no preamble, no frame check sequence: devices strip both), as used by
//! RFC 894 (IPv4 over Ethernet) and RFC 826 (ARP). VLAN tags and 802.3 length fields
//! are not interpreted: their type values come out as [`EtherType::Unknown`].
//!
//! Short frames are padded by the sender to 60 bytes, so a frame's payload may be
//! longer than the packet inside it; the IPv4 and ARP layers use their own lengths.

use core::fmt;

use super::{read_u16, write_u16, Error, Result};

/// Length of the Ethernet header: destination, source and EtherType.
pub const HEADER_LEN: usize = 14;

mod field {
    use core::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
}

/// A 48-bit Ethernet (MAC) address.
///
/// Displays as six lower-case hex pairs separated by colons:
///
/// ```
/// use demi_net_stack::wire::EthernetAddress;
///
/// let addr = EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0xab, 0xcd]);
/// assert_eq!(addr.to_string(), "02:00:5e:10:ab:cd");
/// assert!(addr.is_unicast() && addr.is_local());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address, `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// The address in `data`, or `None` unless `data` is exactly 6 bytes long.
    pub fn from_bytes(data: &[u8]) -> Option<EthernetAddress> {
        <[u8; 6]>::try_from(data).ok().map(EthernetAddress)
    }

    /// The six address bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Whether this is a group address (the I/G bit is set); broadcast is one too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual address (the I/G bit is clear).
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether this is a locally administered address (the U/L bit is set).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The EtherType field: which protocol the frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4, 0x0800.
    Ipv4,
    /// ARP, 0x0806.
    Arp,
    /// Any other value (IPv6, VLAN tags, 802.3 lengths, …).
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Unknown(value) => write!(f, "0x{value:04x}"),
        }
    }
}

/// A view of an Ethernet II frame in a byte buffer.
///
/// After [`check_len`](Self::check_len) (or [`new_checked`](Self::new_checked)) the
/// buffer holds at least the 14-byte header and no accessor panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length; accessors may panic if it is
    /// shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds a whole header: [`Error::Truncated`] otherwise.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The header length, [`HEADER_LEN`].
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// The frame length needed for a payload of `payload_len` bytes (no padding).
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// The destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        let b = &self.buffer.as_ref()[field::DST];
        EthernetAddress([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The source address.
    pub fn src_addr(&self) -> EthernetAddress {
        let b = &self.buffer.as_ref()[field::SRC];
        EthernetAddress([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Everything after the header, including any padding the sender added.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.into());
    }

    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The contents of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// The source address.
    pub src: EthernetAddress,
    /// The destination address.
    pub dst: EthernetAddress,
    /// The protocol of the payload.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of `frame`: [`Error::Truncated`] if it is shorter than 14
    /// bytes. Any addresses and EtherType are accepted; filtering is the stack's job.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src: frame.src_addr(),
            dst: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// The header length, [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`.
    ///
    /// # Panics
    ///
    /// If the frame's buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A broadcast frame carrying an ARP request, padded to the 60-byte minimum.
    const ARP_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, //
        0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, //
        0x00, 0x00, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0xc6, 0x12, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    #[test]
    fn parse_and_emit_round_trip() {
        let frame = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
                dst: EthernetAddress::BROADCAST,
                ethertype: EtherType::Arp,
            }
        );
        assert_eq!(frame.payload(), &ARP_FRAME[14..]);

        let mut out = ARP_FRAME;
        out[..14].fill(0);
        let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
        repr.emit(&mut frame);
        assert_eq!(out, ARP_FRAME);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            let frame = EthernetFrame::new_unchecked(&ARP_FRAME[..len]);
            assert_eq!(
                EthernetRepr::parse(&frame),
                Err(Error::Truncated),
                "len {len}"
            );
            assert_eq!(
                EthernetFrame::new_checked(&ARP_FRAME[..len]),
                Err(Error::Truncated)
            );
        }
        let frame = EthernetFrame::new_checked(&ARP_FRAME[..HEADER_LEN]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn address_classes() {
        let broadcast = EthernetAddress::BROADCAST;
        assert!(broadcast.is_broadcast() && broadcast.is_multicast() && !broadcast.is_unicast());
        let multicast = EthernetAddress([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        assert!(multicast.is_multicast() && !multicast.is_broadcast());
        let unicast = EthernetAddress([0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]);
        assert!(unicast.is_unicast() && !unicast.is_local());
        assert_eq!(broadcast.to_string(), "ff:ff:ff:ff:ff:ff");
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5, 6]).unwrap().0,
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn ethertype_conversions() {
        for value in [0x0800u16, 0x0806, 0x86dd, 0x8100, 0] {
            assert_eq!(u16::from(EtherType::from(value)), value);
        }
        assert_eq!(EtherType::from(0x86dd), EtherType::Unknown(0x86dd));
        assert_eq!(EtherType::Unknown(0x86dd).to_string(), "0x86dd");
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let frame = EthernetFrame::new_unchecked(&data[..]);
            if let Ok(repr) = EthernetRepr::parse(&frame) {
                prop_assert_eq!(frame.payload().len(), data.len() - HEADER_LEN);
                let mut out = vec![0u8; data.len()];
                out[HEADER_LEN..].copy_from_slice(frame.payload());
                repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
                prop_assert_eq!(out, data);
            }
        }
    }
}
