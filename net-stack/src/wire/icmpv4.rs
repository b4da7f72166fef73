//! ICMPv4 messages.
//!
//! Implements:
//! * RFC 792, *Internet Control Message Protocol*: the message header and checksum,
//!   echo request/reply, and destination unreachable, which quotes the offending
//!   datagram's IP header and the first 64 bits of its data;
//! * RFC 1122 §3.2.2: unknown message types are ignored (here: `parse` returns
//!   [`Error::Unsupported`]), echo replies repeat the request's identifier, sequence
//!   number and data;
//! * RFC 1812 §4.3.2.3 on how much of the offending datagram to quote (at least the
//!   header and 8 bytes, which is what [`Icmpv4Repr::dst_unreachable`] takes).
//!
//! RFC 1191's next-hop MTU of "fragmentation needed" messages is readable through
//! [`Icmpv4Packet::next_hop_mtu`]; the representation does not carry it.

use core::fmt;

use super::checksum;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{read_u16, write_u16, ChecksumCaps, Error, Result};

/// Length of the ICMP header: type, code, checksum and the 4-byte "rest of header".
pub const HEADER_LEN: usize = 8;

/// How many bytes of the offending datagram's payload an error message quotes.
pub const QUOTED_DATA_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ_NO: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
}

/// The ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    /// Echo reply, 0.
    EchoReply,
    /// Destination unreachable, 3.
    DstUnreachable,
    /// Echo request, 8.
    EchoRequest,
    /// Time exceeded, 11.
    TimeExceeded,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(value: u8) -> Self {
        match value {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(value: Icmpv4Message) -> Self {
        match value {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::Unknown(other) => other,
        }
    }
}

/// The code of a destination unreachable message: why the datagram was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DstUnreachable {
    /// 0: no route to the network.
    NetUnreachable,
    /// 1: the host did not answer.
    HostUnreachable,
    /// 2: the host does not implement the protocol.
    ProtoUnreachable,
    /// 3: nothing listens on the port (UDP's "connection refused").
    PortUnreachable,
    /// 4: the datagram needed fragmenting but had DF set (path MTU discovery).
    FragRequired,
    /// Any other code (administratively prohibited, …).
    Other(u8),
}

impl From<u8> for DstUnreachable {
    fn from(value: u8) -> Self {
        match value {
            0 => DstUnreachable::NetUnreachable,
            1 => DstUnreachable::HostUnreachable,
            2 => DstUnreachable::ProtoUnreachable,
            3 => DstUnreachable::PortUnreachable,
            4 => DstUnreachable::FragRequired,
            other => DstUnreachable::Other(other),
        }
    }
}

impl From<DstUnreachable> for u8 {
    fn from(value: DstUnreachable) -> Self {
        match value {
            DstUnreachable::NetUnreachable => 0,
            DstUnreachable::HostUnreachable => 1,
            DstUnreachable::ProtoUnreachable => 2,
            DstUnreachable::PortUnreachable => 3,
            DstUnreachable::FragRequired => 4,
            DstUnreachable::Other(other) => other,
        }
    }
}

impl fmt::Display for DstUnreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DstUnreachable::NetUnreachable => f.write_str("network unreachable"),
            DstUnreachable::HostUnreachable => f.write_str("host unreachable"),
            DstUnreachable::ProtoUnreachable => f.write_str("protocol unreachable"),
            DstUnreachable::PortUnreachable => f.write_str("port unreachable"),
            DstUnreachable::FragRequired => f.write_str("fragmentation needed"),
            DstUnreachable::Other(code) => write!(f, "unreachable code {code}"),
        }
    }
}

/// A view of an ICMPv4 message in a byte buffer: the whole IP payload.
///
/// After [`check_len`](Self::check_len) the buffer holds the 8-byte header and no
/// accessor panics. The checksum covers the whole buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 8-byte header: [`Error::Truncated`] otherwise.
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

    /// The message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// The sequence number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// The next-hop MTU of a "fragmentation needed" message (RFC 1191); 0 from
    /// routers that predate it.
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Whether the checksum over the whole message is right. Always true under
    /// `--cfg fuzzing`.
    pub fn verify_checksum(&self) -> bool {
        checksum::verified(checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// Everything after the 8-byte header: echo data, or the quoted datagram of an
    /// error message.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Sets the 4-byte "rest of header" (unused in most error messages) to zero.
    pub fn clear_rest_of_header(&mut self) {
        self.buffer.as_mut()[4..HEADER_LEN].fill(0);
    }

    /// Computes the checksum over the whole buffer and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(value);
    }

    /// Everything after the header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The ICMPv4 messages this stack sends and understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// An echo request ("ping").
    EchoRequest {
        /// The identifier, echoed in the reply.
        ident: u16,
        /// The sequence number, echoed in the reply.
        seq_no: u16,
        /// The data, echoed in the reply.
        data: &'a [u8],
    },
    /// An echo reply.
    EchoReply {
        /// The request's identifier.
        ident: u16,
        /// The request's sequence number.
        seq_no: u16,
        /// The request's data.
        data: &'a [u8],
    },
    /// A destination unreachable error about a datagram.
    DstUnreachable {
        /// Why the datagram was not delivered.
        reason: DstUnreachable,
        /// The offending datagram's IP header, as quoted. Parsed leniently (no
        /// checksum, length or fragment checks: the quote is cut short). Emitted as a
        /// 20-byte header with a valid checksum; its options and DSCP/ECN are lost.
        header: Ipv4Repr,
        /// The start of the offending datagram's payload: on emit, what to quote
        /// (8 bytes, see [`Icmpv4Repr::dst_unreachable`]); on parse, everything the
        /// sender quoted after the header, capped at the quoted `payload_len`.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// A destination unreachable message about the datagram with header `header`
    /// and payload `payload`: quotes the header and the first
    /// [`QUOTED_DATA_LEN`] bytes of the payload (fewer if it is shorter), as RFC 792
    /// asks. For a UDP datagram to a closed port, `reason` is
    /// [`DstUnreachable::PortUnreachable`].
    pub fn dst_unreachable(reason: DstUnreachable, header: Ipv4Repr, payload: &'a [u8]) -> Self {
        let quoted = payload.len().min(QUOTED_DATA_LEN);
        Icmpv4Repr::DstUnreachable {
            reason,
            header,
            data: &payload[..quoted],
        }
    }

    /// Validates `packet` (the whole IP payload) and reads it.
    ///
    /// * [`Error::Truncated`]: shorter than the header, or a destination unreachable
    ///   message shorter than the quoted IP header it declares;
    /// * [`Error::BadChecksum`]: only if `caps.icmp` verifies on receive;
    /// * [`Error::Malformed`]: an echo message with a non-zero code, or a quoted
    ///   header that is not IPv4 or has an IHL below 5;
    /// * [`Error::Unsupported`]: any other message type (time exceeded, redirect, …).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        caps: &ChecksumCaps,
    ) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if caps.icmp.rx() && !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        match packet.msg_type() {
            Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply => {
                if packet.msg_code() != 0 {
                    return Err(Error::Malformed);
                }
                let (ident, seq_no, data) =
                    (packet.echo_ident(), packet.echo_seq_no(), packet.data());
                Ok(if packet.msg_type() == Icmpv4Message::EchoRequest {
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                })
            }
            Icmpv4Message::DstUnreachable => {
                let quoted = packet.data();
                let (header, header_len) = Ipv4Repr::parse_quoted(quoted)?;
                let data = &quoted[header_len..];
                let data = &data[..data.len().min(header.payload_len)];
                Ok(Icmpv4Repr::DstUnreachable {
                    reason: DstUnreachable::from(packet.msg_code()),
                    header,
                    data,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// The length of the emitted message.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Icmpv4Repr::DstUnreachable { data, .. } => HEADER_LEN + ipv4::HEADER_LEN + data.len(),
        }
    }

    /// Writes the message into `packet`, with the checksum if `caps.icmp` computes
    /// on transmit (zero otherwise). The checksum covers the whole buffer, so the
    /// buffer should be exactly [`buffer_len`](Self::buffer_len) long.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
        caps: &ChecksumCaps,
    ) {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let msg_type = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    Icmpv4Message::EchoRequest
                } else {
                    Icmpv4Message::EchoReply
                };
                packet.set_msg_type(msg_type);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                packet.data_mut()[..data.len()].copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable {
                reason,
                header,
                data,
            } => {
                packet.set_msg_type(Icmpv4Message::DstUnreachable);
                packet.set_msg_code(reason.into());
                packet.clear_rest_of_header();
                let quoted = packet.data_mut();
                let mut ip =
                    Ipv4Packet::new_unchecked(&mut quoted[..ipv4::HEADER_LEN + data.len()]);
                // The quoted header's checksum is part of the ICMP data: no device
                // fills it in, so it is always computed here.
                header.emit(&mut ip, &ChecksumCaps::all());
                ip.payload_mut().copy_from_slice(data);
            }
        }
        if caps.icmp.tx() {
            packet.fill_checksum();
        } else {
            packet.set_checksum(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::IpProtocol;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// An echo request: ident 0x1234, sequence 1, 23 bytes of data.
    const ECHO_REQUEST: [u8; 31] = [
        0x08, 0x00, 0xd1, 0x21, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, //
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, //
        0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
    ];

    /// The UDP datagram 198.18.0.1:5353 → 198.18.0.2:53 ("hello"): IP header first.
    const IPV4_UDP: [u8; 33] = [
        0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xee, 0xa3, //
        0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, 0x14, 0xe9, 0x00, 0x35, //
        0x00, 0x0d, 0x1a, 0xbc, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    /// The port unreachable 198.18.0.2 sends back about `IPV4_UDP`: the whole IP
    /// header and the first 8 bytes of the datagram (its UDP header).
    const PORT_UNREACHABLE: [u8; 36] = [
        0x03, 0x03, 0xcd, 0x15, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x21, //
        0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0xee, 0xa3, 0xc6, 0x12, 0x00, 0x01, //
        0xc6, 0x12, 0x00, 0x02, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d, 0x1a, 0xbc, //
    ];

    fn echo() -> Icmpv4Repr<'static> {
        Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: &ECHO_REQUEST[8..],
        }
    }

    fn emit(repr: &Icmpv4Repr<'_>, caps: &ChecksumCaps) -> Vec<u8> {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), caps);
        out
    }

    #[test]
    fn echo_round_trip() {
        let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(echo()));
        assert_eq!(&emit(&echo(), &ChecksumCaps::all())[..], &ECHO_REQUEST[..]);
    }

    #[test]
    fn echo_reply_round_trip() {
        let reply = Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 1,
            data: &ECHO_REQUEST[8..],
        };
        let bytes = emit(&reply, &ChecksumCaps::all());
        assert_eq!(bytes[0], 0);
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(reply));
    }

    #[test]
    fn port_unreachable_quotes_header_and_8_bytes() {
        let ip = Ipv4Packet::new_checked(&IPV4_UDP[..]).unwrap();
        let header = Ipv4Repr::parse(&ip, &ChecksumCaps::all()).unwrap();
        let repr =
            Icmpv4Repr::dst_unreachable(DstUnreachable::PortUnreachable, header, ip.payload());
        assert_eq!(repr.buffer_len(), 36);
        let bytes = emit(&repr, &ChecksumCaps::all());
        assert_eq!(&bytes[..], &PORT_UNREACHABLE[..]);

        let packet = Icmpv4Packet::new_checked(&PORT_UNREACHABLE[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(repr));
    }

    #[test]
    fn quoted_data_is_capped_by_the_quoted_length() {
        // A quote with more bytes after the header than the quoted datagram had.
        let mut bytes = PORT_UNREACHABLE.to_vec();
        bytes[8 + 3] = 24; // quoted total length 24: 4 bytes of payload
        bytes.extend_from_slice(&[0xee; 4]);
        Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        let Ok(Icmpv4Repr::DstUnreachable { header, data, .. }) =
            Icmpv4Repr::parse(&packet, &ChecksumCaps::all())
        else {
            panic!("did not parse");
        };
        assert_eq!((header.protocol, header.payload_len), (IpProtocol::Udp, 4));
        assert_eq!(data, &PORT_UNREACHABLE[28..32]);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..HEADER_LEN {
            let packet = Icmpv4Packet::new_unchecked(&ECHO_REQUEST[..len]);
            assert_eq!(
                Icmpv4Repr::parse(&packet, &ChecksumCaps::all()),
                Err(Error::Truncated)
            );
        }
        // Shorter echo messages are valid echoes with less data, once the checksum
        // is right; shorter error messages lose the quoted header.
        for len in HEADER_LEN..ECHO_REQUEST.len() {
            let mut bytes = ECHO_REQUEST[..len].to_vec();
            Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
            let packet = Icmpv4Packet::new_unchecked(&bytes[..]);
            let Ok(Icmpv4Repr::EchoRequest { data, .. }) =
                Icmpv4Repr::parse(&packet, &ChecksumCaps::all())
            else {
                panic!("len {len} did not parse");
            };
            assert_eq!(data.len(), len - HEADER_LEN);
        }
        for len in 0..HEADER_LEN + ipv4::HEADER_LEN {
            let packet = Icmpv4Packet::new_unchecked(&PORT_UNREACHABLE[..len]);
            assert_eq!(
                Icmpv4Repr::parse(&packet, &ChecksumCaps::offload()),
                Err(Error::Truncated)
            );
        }
    }

    #[test]
    fn bad_checksum_rejected_unless_offloaded() {
        let mut bytes = ECHO_REQUEST;
        bytes[30] ^= 0x20;
        let packet = Icmpv4Packet::new_unchecked(&bytes[..]);
        if !cfg!(fuzzing) {
            assert_eq!(
                Icmpv4Repr::parse(&packet, &ChecksumCaps::all()),
                Err(Error::BadChecksum)
            );
        }
        assert!(Icmpv4Repr::parse(&packet, &ChecksumCaps::offload()).is_ok());
        let zeroed = emit(&echo(), &ChecksumCaps::offload());
        assert_eq!(&zeroed[2..4], &[0, 0]);
    }

    #[test]
    fn other_messages() {
        let mut bytes = ECHO_REQUEST;
        bytes[0] = 11; // time exceeded
        let packet = Icmpv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(
            Icmpv4Repr::parse(&packet, &ChecksumCaps::offload()),
            Err(Error::Unsupported)
        );
        bytes[0] = 8;
        bytes[1] = 1; // echo with a non-zero code
        let packet = Icmpv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(
            Icmpv4Repr::parse(&packet, &ChecksumCaps::offload()),
            Err(Error::Malformed)
        );
        let mut bytes = PORT_UNREACHABLE;
        bytes[8] = 0x65; // the quoted header is not IPv4
        let packet = Icmpv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(
            Icmpv4Repr::parse(&packet, &ChecksumCaps::offload()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn frag_required_carries_the_mtu_in_the_view() {
        let mut bytes = PORT_UNREACHABLE;
        bytes[1] = 4;
        bytes[6..8].copy_from_slice(&1400u16.to_be_bytes());
        let packet = Icmpv4Packet::new_unchecked(&bytes[..]);
        assert_eq!(packet.next_hop_mtu(), 1400);
        let Ok(Icmpv4Repr::DstUnreachable { reason, header, .. }) =
            Icmpv4Repr::parse(&packet, &ChecksumCaps::offload())
        else {
            panic!("did not parse");
        };
        assert_eq!(reason, DstUnreachable::FragRequired);
        assert_eq!(header.dst_addr, Ipv4Addr::new(198, 18, 0, 2));
    }

    #[test]
    fn codes_convert() {
        for code in 0..=255u8 {
            assert_eq!(u8::from(DstUnreachable::from(code)), code);
            assert_eq!(u8::from(Icmpv4Message::from(code)), code);
        }
        assert_eq!(
            DstUnreachable::PortUnreachable.to_string(),
            "port unreachable"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let packet = Icmpv4Packet::new_unchecked(&data[..]);
            for caps in [ChecksumCaps::all(), ChecksumCaps::offload()] {
                if let Ok(repr) = Icmpv4Repr::parse(&packet, &caps) {
                    // Whatever parsed can be emitted again.
                    let _ = emit(&repr, &caps);
                }
            }
        }

        #[test]
        fn echo_emit_parse(ident: u16, seq_no: u16, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let repr = Icmpv4Repr::EchoRequest { ident, seq_no, data: &data };
            let bytes = emit(&repr, &ChecksumCaps::all());
            let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Icmpv4Repr::parse(&packet, &ChecksumCaps::all()), Ok(repr));
        }
    }
}
