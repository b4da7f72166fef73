//! UDP headers.
//!
//! Implements RFC 768, *User Datagram Protocol*: ports, the length field (header
//! plus data) and the checksum over the IPv4 pseudo-header and the datagram, where a
//! transmitted checksum of zero means "none" and a computed zero is sent as `0xffff`.
//! RFC 1122 §4.1.3.4 makes checking a non-zero checksum mandatory; a zero one is
//! accepted.

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{read_u16, write_u16, ChecksumCaps, Error, Result};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram in a byte buffer.
///
/// After [`check_len`](Self::check_len) the buffer holds the header and at least
/// `len()` bytes, and no accessor panics. Bytes beyond `len()` are not part of the
/// datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the length field against the header and the buffer:
    /// [`Error::Truncated`] if the buffer is shorter than the header or than the
    /// length field, [`Error::Malformed`] if the length field is below 8.
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            Err(Error::Malformed)
        } else if buffer_len < len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus data.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field (0 means the sender computed none).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the checksum is right for a datagram from `src` to `dst`. A zero
    /// checksum field means "not computed" and passes. Always true under
    /// `--cfg fuzzing`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = usize::from(self.len());
        let sum = checksum::combine(
            checksum::pseudo_header(src, dst, IpProtocol::Udp, len),
            checksum::sum(&self.buffer.as_ref()[..len]),
        );
        checksum::verified(checksum::fold(sum) == 0xffff)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// The data: after the header, up to the length field.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum over the pseudo-header and the first `len()` bytes and
    /// stores it, sending a computed zero as `0xffff`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let sum = checksum::combine(
            checksum::pseudo_header(src, dst, IpProtocol::Udp, len),
            checksum::sum(&self.buffer.as_ref()[..len]),
        );
        let value = !checksum::fold(sum);
        self.set_checksum(if value == 0 { 0xffff } else { value });
    }

    /// Everything after the header, mutably (to the end of the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The contents of a UDP header. The data is read with
/// [`UdpPacket::payload`] and written by [`UdpRepr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// The source port (0 means the sender expects no reply).
    pub src_port: u16,
    /// The destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Validates `packet`, sent from `src` to `dst`, and reads its ports.
    ///
    /// * [`Error::Truncated`] / [`Error::Malformed`]: see [`UdpPacket::check_len`];
    /// * [`Error::BadChecksum`]: a non-zero checksum is wrong (only if `caps.udp`
    ///   verifies on receive).
    ///
    /// Port 0 is not rejected here: what to do with it is the stack's policy.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        caps: &ChecksumCaps,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        if caps.udp.rx() && !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// The header length, [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The datagram length for `payload_len` bytes of data.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes the header and `payload` into `packet`, then the checksum if
    /// `caps.udp` computes on transmit (zero, "none", otherwise).
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than `buffer_len(payload.len())`; that length must
    /// fit the 16-bit length field (checked in debug builds).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
        caps: &ChecksumCaps,
    ) {
        self.emit_with(
            packet,
            src,
            dst,
            payload.len(),
            |out| out.copy_from_slice(payload),
            caps,
        );
    }

    /// Like [`emit`](Self::emit), but `fill` writes the `payload_len` bytes of data in
    /// place (from a scatter-gather list, say) before the checksum is computed.
    ///
    /// # Panics
    ///
    /// As [`emit`](Self::emit).
    pub fn emit_with<T, F>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload_len: usize,
        fill: F,
        caps: &ChecksumCaps,
    ) where
        T: AsRef<[u8]> + AsMut<[u8]>,
        F: FnOnce(&mut [u8]),
    {
        let len = self.buffer_len(payload_len);
        debug_assert!(len <= usize::from(u16::MAX), "UDP datagram too long");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len as u16);
        fill(&mut packet.payload_mut()[..payload_len]);
        if caps.udp.tx() {
            packet.fill_checksum(src, dst);
        } else {
            packet.set_checksum(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "hello" from 198.18.0.1:5353 to 198.18.0.2:53.
    const UDP_DATAGRAM: [u8; 13] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d, 0x1a, 0xbc, 0x68, 0x65, 0x6c, 0x6c, //
        0x6f,
    ];

    fn src() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 1)
    }

    fn dst() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 2)
    }

    const REPR: UdpRepr = UdpRepr {
        src_port: 5353,
        dst_port: 53,
    };

    #[test]
    fn parse_and_emit_round_trip() {
        let packet = UdpPacket::new_checked(&UDP_DATAGRAM[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::all()),
            Ok(REPR)
        );
        assert_eq!(packet.payload(), b"hello");

        let mut out = [0u8; 13];
        let mut packet = UdpPacket::new_unchecked(&mut out[..]);
        REPR.emit(&mut packet, src(), dst(), b"hello", &ChecksumCaps::all());
        assert_eq!(out, UDP_DATAGRAM);
        assert_eq!(REPR.buffer_len(5), 13);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..UDP_DATAGRAM.len() {
            let packet = UdpPacket::new_unchecked(&UDP_DATAGRAM[..len]);
            assert_eq!(
                UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::all()),
                Err(Error::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn length_field_is_honoured() {
        let mut data = [0u8; 20];
        data[..13].copy_from_slice(&UDP_DATAGRAM);
        let packet = UdpPacket::new_checked(&data[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::all()),
            Ok(REPR)
        );
        assert_eq!(packet.payload(), b"hello");
        let mut data = UDP_DATAGRAM;
        data[5] = 7;
        assert_eq!(UdpPacket::new_checked(&data[..]), Err(Error::Malformed));
    }

    #[test]
    fn bad_checksum_rejected_unless_offloaded() {
        let mut data = UDP_DATAGRAM;
        data[12] = b'O';
        let packet = UdpPacket::new_unchecked(&data[..]);
        if !cfg!(fuzzing) {
            assert_eq!(
                UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::all()),
                Err(Error::BadChecksum)
            );
            // The pseudo-header counts: the right bytes from the wrong host fail too.
            let packet = UdpPacket::new_unchecked(&UDP_DATAGRAM[..]);
            assert!(!packet.verify_checksum(Ipv4Addr::new(198, 18, 0, 3), dst()));
        }
        assert_eq!(
            UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::offload()),
            Ok(REPR)
        );
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut data = UDP_DATAGRAM;
        data[6] = 0;
        data[7] = 0;
        let packet = UdpPacket::new_unchecked(&data[..]);
        assert_eq!(
            UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::all()),
            Ok(REPR)
        );

        let mut out = [0xaau8; 13];
        let mut packet = UdpPacket::new_unchecked(&mut out[..]);
        REPR.emit(
            &mut packet,
            src(),
            dst(),
            b"hello",
            &ChecksumCaps::offload(),
        );
        assert_eq!(out, data);
    }

    #[test]
    fn computed_zero_is_sent_as_all_ones() {
        // Pick the data word so that the complement of the sum comes out zero.
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
        };
        let mut out = [0u8; 10];
        let mut packet = UdpPacket::new_unchecked(&mut out[..]);
        repr.emit(&mut packet, src(), dst(), &[0, 0], &ChecksumCaps::all());
        let sum = checksum::fold(checksum::combine(
            checksum::pseudo_header(src(), dst(), IpProtocol::Udp, 10),
            checksum::sum(&[0, 1, 0, 2, 0, 10, 0, 0]),
        ));
        let data = (0xffff - sum).to_be_bytes();
        repr.emit(&mut packet, src(), dst(), &data, &ChecksumCaps::all());
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum(src(), dst()));
    }

    #[test]
    fn emit_with_fills_in_place() {
        let mut out = [0u8; 13];
        let mut packet = UdpPacket::new_unchecked(&mut out[..]);
        REPR.emit_with(
            &mut packet,
            src(),
            dst(),
            5,
            |buf| {
                buf[..2].copy_from_slice(b"he");
                buf[2..].copy_from_slice(b"llo");
            },
            &ChecksumCaps::all(),
        );
        assert_eq!(out, UDP_DATAGRAM);
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let packet = UdpPacket::new_unchecked(&data[..]);
            for caps in [ChecksumCaps::all(), ChecksumCaps::offload()] {
                if UdpRepr::parse(&packet, src(), dst(), &caps).is_ok() {
                    prop_assert_eq!(packet.payload().len() + HEADER_LEN, usize::from(packet.len()));
                }
            }
        }

        #[test]
        fn emitted_datagrams_verify(
            src_port: u16,
            dst_port: u16,
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let repr = UdpRepr { src_port, dst_port };
            let mut out = vec![0u8; repr.buffer_len(payload.len())];
            repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), src(), dst(), &payload, &ChecksumCaps::all());
            let packet = UdpPacket::new_checked(&out[..]).unwrap();
            prop_assert_ne!(packet.checksum(), 0);
            prop_assert_eq!(UdpRepr::parse(&packet, src(), dst(), &ChecksumCaps::all()), Ok(repr));
            prop_assert_eq!(packet.payload(), &payload[..]);
        }
    }
}
