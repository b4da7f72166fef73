//! IPv4 headers.
//!
//! Implements:
//! * RFC 791, *Internet Protocol*: the header, its options length (IHL), the total
//!   length, the fragmentation fields and the header checksum;
//! * RFC 1122 §3.2.1: silently discard datagrams with a bad version, header length or
//!   checksum (here: `parse` returns an error for them);
//! * RFC 6864: the identification field only matters for fragmentation, so emitted
//!   datagrams carry whatever `ident` the caller picks.
//!
//! Options are skipped, never interpreted; emitted headers carry none (IHL 5).
//! Fragments are detected and refused by [`Ipv4Repr::parse`]; reassembly, if the
//! stack ever does it, works on [`Ipv4Packet`] directly.

use core::fmt;
use std::net::Ipv4Addr;

use super::checksum;
use super::{read_ipv4, read_u16, write_u16, ChecksumCaps, Error, Result};

/// Length of an IPv4 header without options (IHL 5).
pub const HEADER_LEN: usize = 20;

/// The largest header, with 40 bytes of options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const DST_RANGE: Range<usize> = 16..20;
    pub const SRC_RANGE: Range<usize> = 12..16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// The protocol number of an IPv4 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMP, 1.
    Icmp,
    /// TCP, 6.
    Tcp,
    /// UDP, 17.
    Udp,
    /// Any other protocol number.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Unknown(value) => write!(f, "protocol {value}"),
        }
    }
}

/// A view of an IPv4 packet in a byte buffer.
///
/// After [`check_len`](Self::check_len) the buffer holds the whole header including
/// options, and at least `total_len` bytes, and no accessor panics. The buffer may be
/// longer than `total_len` (Ethernet pads short frames); [`payload`](Self::payload)
/// stops at `total_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the lengths the header declares against each other and the buffer.
    ///
    /// * [`Error::Truncated`]: the buffer is shorter than 20 bytes, than the header
    ///   length, or than the total length;
    /// * [`Error::Malformed`]: the header length is below 20, or the total length is
    ///   below the header length.
    ///
    /// The version is not checked here; [`Ipv4Repr::parse`] does that.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < header_len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed);
        }
        if len < total_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes: the IHL field times 4, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The differentiated services code point (the upper six bits of the old TOS).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// The explicit congestion notification bits (RFC 3168).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// The total length of the datagram, header included.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this datagram is a fragment: more-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// The time-to-live field.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SRC)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::DST)
    }

    /// The option bytes between the fixed header and the payload (often empty).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Whether the header checksum is right. Always true under `--cfg fuzzing`.
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        checksum::verified(checksum::fold(checksum::sum(header)) == 0xffff)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload: from the end of the header up to `total_len`, never including
    /// link-layer padding beyond it.
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        &data[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4 up to 60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP and ECN fields.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets the flags and fragment offset at once; `frag_offset` is in bytes and is
    /// rounded down to a multiple of 8.
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, frag_offset: u16) {
        let mut value = (frag_offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            value |= FLAG_DF;
        }
        if more_frags {
            value |= FLAG_MF;
        }
        write_u16(self.buffer.as_mut(), field::FLAGS_FRAG, value);
    }

    /// Sets the time-to-live field.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol field.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_RANGE].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_RANGE].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let value = checksum::checksum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(value);
    }

    /// The payload after the header, mutably. Unlike [`payload`](Ipv4Packet::payload)
    /// this runs to the end of the buffer, so it can be used to write a payload
    /// before (or without) setting `total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The contents of an IPv4 header that the stack acts on.
///
/// DSCP/ECN and options are not represented: parse ignores them and emit writes
/// zero DSCP/ECN and no options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// The source address.
    pub src_addr: Ipv4Addr,
    /// The destination address.
    pub dst_addr: Ipv4Addr,
    /// The protocol of the payload.
    pub protocol: IpProtocol,
    /// The payload length: `total_len` minus the header length.
    pub payload_len: usize,
    /// The time-to-live.
    pub ttl: u8,
    /// The identification field. With `dont_fragment` set RFC 6864 lets this be any
    /// value; a per-stack counter is customary.
    pub ident: u16,
    /// The don't-fragment flag (set it on TCP segments for path MTU discovery).
    pub dont_fragment: bool,
}

impl Ipv4Repr {
    /// Validates `packet` and reads its header.
    ///
    /// Errors, in the order they are checked:
    /// * [`Error::Truncated`] / [`Error::Malformed`]: see [`Ipv4Packet::check_len`];
    /// * [`Error::Malformed`]: the version is not 4;
    /// * [`Error::BadChecksum`]: the header checksum is wrong (only if `caps.ipv4`
    ///   verifies on receive);
    /// * [`Error::Unsupported`]: **the datagram is a fragment** (more-fragments set or
    ///   a non-zero fragment offset). This is the only case in which this function
    ///   returns `Unsupported`, so a caller can tell fragments apart reliably; the
    ///   fragment itself is still readable through `packet`.
    ///
    /// Buffers longer than `total_len` (link-layer padding) are fine; the payload is
    /// `packet.payload()`, which is `payload_len` bytes long.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, caps: &ChecksumCaps) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        if caps.ipv4.rx() && !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Self::from_header(packet))
    }

    /// Reads the header of a datagram quoted inside an ICMP error: it is usually cut
    /// short, so only the header itself must be present. Checks the version and the
    /// header length; ignores the checksum, the fragment fields and whether
    /// `total_len` bytes follow. Returns the header and its length (with options).
    pub(crate) fn parse_quoted(data: &[u8]) -> Result<(Ipv4Repr, usize)> {
        let packet = Ipv4Packet::new_unchecked(data);
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = packet.header_len();
        if packet.version() != 4 || header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if data.len() < header_len {
            return Err(Error::Truncated);
        }
        Ok((Self::from_header(&packet), header_len))
    }

    /// Reads the fields of a header whose lengths have been checked.
    fn from_header<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_fragment: packet.dont_frag(),
        }
    }

    /// The length of the emitted header, [`HEADER_LEN`].
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole datagram: header plus `payload_len`.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header (IHL 5, no options, zero DSCP/ECN, not a fragment) into
    /// `packet`, with the checksum if `caps.ipv4` computes on transmit and zero
    /// otherwise. The payload is the caller's to write, via `packet.payload_mut()`.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`HEADER_LEN`]. `buffer_len()` must not exceed
    /// 65 535 (checked in debug builds; the total length field is 16 bits).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        caps: &ChecksumCaps,
    ) {
        debug_assert!(
            self.buffer_len() <= usize::from(u16::MAX),
            "IPv4 datagram too long"
        );
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(0, 0);
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(self.ident);
        packet.set_flags_frag(self.dont_fragment, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        if caps.ipv4.tx() {
            packet.fill_checksum();
        } else {
            packet.set_checksum(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 198.18.0.1 → 198.18.0.2, UDP, ident 1, no DF, TTL 64, a 13-byte datagram.
    const IPV4_UDP: [u8; 33] = [
        0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xee, 0xa3, //
        0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, 0x14, 0xe9, 0x00, 0x35, //
        0x00, 0x0d, 0x1a, 0xbc, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 2),
            protocol: IpProtocol::Udp,
            payload_len: 13,
            ttl: 64,
            ident: 1,
            dont_fragment: false,
        }
    }

    /// Rewrites the header checksum after a test edited the header.
    fn refill(data: &mut [u8]) {
        Ipv4Packet::new_unchecked(data).fill_checksum();
    }

    #[test]
    fn parse_and_emit_round_trip() {
        let packet = Ipv4Packet::new_checked(&IPV4_UDP[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(repr()));
        assert_eq!(packet.payload(), &IPV4_UDP[20..]);
        assert!(packet.options().is_empty());
        assert_eq!((packet.dscp(), packet.ecn()), (0, 0));

        let mut out = [0u8; 33];
        let mut packet = Ipv4Packet::new_unchecked(&mut out[..]);
        repr().emit(&mut packet, &ChecksumCaps::all());
        packet.payload_mut().copy_from_slice(&IPV4_UDP[20..]);
        assert_eq!(out, IPV4_UDP);
        assert_eq!(repr().buffer_len(), 33);
    }

    #[test]
    fn emit_without_tx_checksum_leaves_zero() {
        let mut out = [0xffu8; 33];
        let mut packet = Ipv4Packet::new_unchecked(&mut out[..]);
        repr().emit(&mut packet, &ChecksumCaps::offload());
        assert_eq!(packet.checksum(), 0);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..IPV4_UDP.len() {
            let packet = Ipv4Packet::new_unchecked(&IPV4_UDP[..len]);
            assert_eq!(
                Ipv4Repr::parse(&packet, &ChecksumCaps::all()),
                Err(Error::Truncated),
                "len {len}"
            );
        }
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut padded = [0u8; 46];
        padded[..33].copy_from_slice(&IPV4_UDP);
        let packet = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(repr()));
        assert_eq!(packet.payload(), &IPV4_UDP[20..]);
    }

    #[test]
    fn bad_checksum_rejected_unless_offloaded() {
        let mut data = IPV4_UDP;
        data[8] = 63; // TTL changed, checksum not updated
        let packet = Ipv4Packet::new_unchecked(&data[..]);
        if !cfg!(fuzzing) {
            assert_eq!(
                Ipv4Repr::parse(&packet, &ChecksumCaps::all()),
                Err(Error::BadChecksum)
            );
            assert!(!packet.verify_checksum());
        }
        let parsed = Ipv4Repr::parse(&packet, &ChecksumCaps::offload()).unwrap();
        assert_eq!(parsed.ttl, 63);
    }

    #[test]
    fn fragments_are_reported_as_unsupported() {
        // More fragments set, offset 0: the first fragment.
        let mut first = IPV4_UDP;
        first[6] = 0x20;
        refill(&mut first);
        // Offset 185 * 8 = 1480, more fragments clear: the last fragment.
        let mut last = IPV4_UDP;
        last[6] = 0x00;
        last[7] = 0xb9;
        refill(&mut last);
        for data in [first, last] {
            let packet = Ipv4Packet::new_checked(&data[..]).unwrap();
            assert!(packet.is_fragment());
            assert_eq!(
                Ipv4Repr::parse(&packet, &ChecksumCaps::all()),
                Err(Error::Unsupported)
            );
        }
        let packet = Ipv4Packet::new_unchecked(&last[..]);
        assert_eq!((packet.more_frags(), packet.frag_offset()), (false, 1480));
        // DF alone is not a fragment.
        let mut df = IPV4_UDP;
        df[6] = 0x40;
        refill(&mut df);
        let parsed = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&df[..]), &ChecksumCaps::all());
        assert!(parsed.unwrap().dont_fragment);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6: one 4-byte option word (NOP, NOP, NOP, end of list).
        let mut data = [0u8; 37];
        data[..20].copy_from_slice(&IPV4_UDP[..20]);
        data[0] = 0x46;
        data[3] = 37;
        data[20..24].copy_from_slice(&[1, 1, 1, 0]);
        data[24..].copy_from_slice(&IPV4_UDP[20..]);
        refill(&mut data);
        let packet = Ipv4Packet::new_checked(&data[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[1, 1, 1, 0]);
        assert_eq!(packet.payload(), &IPV4_UDP[20..]);
        assert_eq!(Ipv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(repr()));
    }

    #[test]
    fn malformed_headers() {
        let cases: [(usize, u8, Error); 4] = [
            (0, 0x65, Error::Malformed), // version 6
            (0, 0x44, Error::Malformed), // IHL 4
            (3, 19, Error::Malformed),   // total length below the header length
            (3, 34, Error::Truncated),   // total length beyond the buffer
        ];
        for (at, value, error) in cases {
            let mut data = IPV4_UDP;
            data[at] = value;
            refill(&mut data);
            let packet = Ipv4Packet::new_unchecked(&data[..]);
            assert_eq!(Ipv4Repr::parse(&packet, &ChecksumCaps::all()), Err(error));
        }
        // IHL 15 needs 60 bytes of header.
        let mut data = IPV4_UDP;
        data[0] = 0x4f;
        assert_eq!(Ipv4Packet::new_checked(&data[..]), Err(Error::Truncated));
    }

    #[test]
    fn quoted_headers_may_be_cut_short() {
        let (quoted, header_len) = Ipv4Repr::parse_quoted(&IPV4_UDP[..28]).unwrap();
        assert_eq!((quoted, header_len), (repr(), 20));
        assert_eq!(
            Ipv4Repr::parse_quoted(&IPV4_UDP[..19]),
            Err(Error::Truncated)
        );
        let mut data = IPV4_UDP;
        data[0] = 0x65;
        assert_eq!(Ipv4Repr::parse_quoted(&data), Err(Error::Malformed));
    }

    #[test]
    fn protocol_numbers() {
        for value in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(value)), value);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::Unknown(50).to_string(), "protocol 50");
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let packet = Ipv4Packet::new_unchecked(&data[..]);
            for caps in [ChecksumCaps::all(), ChecksumCaps::offload()] {
                if let Ok(repr) = Ipv4Repr::parse(&packet, &caps) {
                    prop_assert_eq!(packet.payload().len(), repr.payload_len);
                    let _ = packet.options();
                }
            }
            let _ = Ipv4Repr::parse_quoted(&data);
        }

        #[test]
        fn valid_headers_parse(mut data in proptest::collection::vec(any::<u8>(), 20..100)) {
            // Force a plausible header, then check parse accepts it and agrees.
            let len = data.len();
            data[0] = 0x45;
            data[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            data[6] &= 0x40; // keep DF, clear MF and the offset
            data[7] = 0;
            refill(&mut data);
            let packet = Ipv4Packet::new_checked(&data[..]).unwrap();
            let repr = Ipv4Repr::parse(&packet, &ChecksumCaps::all()).unwrap();
            prop_assert_eq!(repr.payload_len, len - 20);
            let mut out = vec![0u8; len];
            let mut emitted = Ipv4Packet::new_unchecked(&mut out[..]);
            repr.emit(&mut emitted, &ChecksumCaps::all());
            emitted.payload_mut().copy_from_slice(packet.payload());
            data[1] = 0; // DSCP/ECN are not represented
            refill(&mut data);
            prop_assert_eq!(out, data);
        }
    }
}
