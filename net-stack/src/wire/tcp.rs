//! TCP headers, options and sequence numbers.
//!
//! Implements:
//! * RFC 9293 (which obsoletes RFC 793) §3.1: the header, data offset, control bits
//!   and the checksum over the IPv4 pseudo-header and the segment; §3.2: the
//!   end-of-list, no-operation and maximum segment size options; §3.4: sequence
//!   number comparisons modulo 2^32;
//! * RFC 1982, *Serial Number Arithmetic*, for the order of [`SeqNumber`]s;
//! * RFC 7323: the window scale and timestamps options (a window scale above 14 is
//!   read as 14, §2.3);
//! * RFC 2018: the SACK-permitted and SACK options;
//! * RFC 3168: the ECE and CWR control bits (carried, not acted on).
//!
//! Options are emitted in the layout Linux and the BSDs use, padded with NOPs so that
//! every 32-bit value (timestamps, SACK edges) sits on a 4-byte boundary: on a SYN
//! `MSS, SACK-permitted, TS, NOP, WS`, on other segments `NOP, NOP, TS` and
//! `NOP, NOP, SACK`. Emitted options never exceed 40 bytes; SACK blocks that do not
//! fit are dropped.

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{read_u16, read_u32, write_u16, write_u32, ChecksumCaps, Error, Result};

mod flags;
mod option;
mod seq_number;

pub use self::flags::TcpFlags;
pub use self::option::{TcpOption, TcpOptions};
pub use self::seq_number::SeqNumber;

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The most option bytes a header can carry (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The largest header, options included.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + MAX_OPTIONS_LEN;

/// The largest window scale shift RFC 7323 allows.
pub const MAX_WINDOW_SCALE: u8 = 14;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// A view of a TCP segment in a byte buffer: the whole IP payload.
///
/// After [`check_len`](Self::check_len) the buffer holds the header with all the
/// options its data offset declares, and no accessor panics. Everything after the
/// header is payload, and the checksum covers the whole buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the data offset against the buffer: [`Error::Truncated`] if the
    /// buffer is shorter than 20 bytes or than the data offset says,
    /// [`Error::Malformed`] if the data offset is below 5 words.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if len < header_len {
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

    /// The sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(read_u32(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// The acknowledgment number field (meaningful only with [`TcpFlags::ACK`]).
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(read_u32(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// The header length in bytes: the data offset times 4, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_bits(self.buffer.as_ref()[field::FLAGS])
    }

    /// The window field, unscaled.
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer field.
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes, padding included; iterate them with [`TcpOptions`].
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The sequence space the segment occupies: payload length plus one for SYN and
    /// one for FIN.
    pub fn segment_len(&self) -> usize {
        let flags = self.flags();
        self.buffer.as_ref().len() - self.header_len()
            + usize::from(flags.contains(TcpFlags::SYN))
            + usize::from(flags.contains(TcpFlags::FIN))
    }

    /// Whether the checksum is right for a segment from `src` to `dst`. Always true
    /// under `--cfg fuzzing`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let sum = segment_sum(self.buffer.as_ref(), src, dst);
        checksum::verified(checksum::fold(sum) == 0xffff)
    }
}

/// The partial sum of `segment` and its pseudo-header.
fn segment_sum(segment: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    checksum::combine(
        checksum::pseudo_header(src, dst, IpProtocol::Tcp, segment.len()),
        checksum::sum(segment),
    )
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The data after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, value.0);
    }

    /// Sets the acknowledgment number field.
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, value.0);
    }

    /// Sets the header length in bytes (a multiple of 4 from 20 to 60); clears the
    /// reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8 & 0x0f) << 4;
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.bits();
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer field.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// The option bytes, mutably (as long as the header length says).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// The data after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }

    /// Computes the checksum over the pseudo-header and the whole buffer and stores
    /// it.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let value = !checksum::fold(segment_sum(self.buffer.as_ref(), src, dst));
        self.set_checksum(value);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The contents of a TCP segment: header fields, the options the stack uses, and the
/// payload.
///
/// The ACK flag and `ack_number` go together: `parse` sets `ack_number` exactly when
/// the ACK flag is set, and `emit` sets the ACK flag exactly when `ack_number` is
/// `Some`, whatever `flags` says about ACK. Every other flag is carried as is.
///
/// `Default` gives an empty segment from port 0 to port 0 with no flags, handy with
/// struct update syntax:
///
/// ```
/// use demi_net_stack::wire::{SeqNumber, TcpFlags, TcpRepr};
///
/// let syn = TcpRepr {
///     src_port: 49152,
///     dst_port: 80,
///     seq_number: SeqNumber(1000),
///     flags: TcpFlags::SYN,
///     window_len: 64240,
///     max_seg_size: Some(1460),
///     ..TcpRepr::default()
/// };
/// assert_eq!(syn.header_len(), 24);
/// assert_eq!(syn.segment_len(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpRepr<'a> {
    /// The source port.
    pub src_port: u16,
    /// The destination port.
    pub dst_port: u16,
    /// The sequence number of the first byte (of the SYN, if set).
    pub seq_number: SeqNumber,
    /// The acknowledgment number, present exactly when ACK is set.
    pub ack_number: Option<SeqNumber>,
    /// The window field, unscaled.
    pub window_len: u16,
    /// The control bits (see the type docs for ACK).
    pub flags: TcpFlags,
    /// The maximum segment size option.
    pub max_seg_size: Option<u16>,
    /// The window scale option, at most [`MAX_WINDOW_SCALE`] after `parse`.
    pub window_scale: Option<u8>,
    /// Whether the SACK-permitted option is present.
    pub sack_permitted: bool,
    /// SACK blocks as (left edge, right edge), from the front. Parsing keeps the
    /// first three of a SACK option; emitting drops the ones that do not fit in 40
    /// bytes of options.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// The timestamps option as (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    /// The segment's data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Validates `packet` (the whole IP payload), sent from `src` to `dst`, and
    /// reads it.
    ///
    /// * [`Error::Truncated`] / [`Error::Malformed`]: see [`TcpPacket::check_len`];
    /// * [`Error::BadChecksum`]: only if `caps.tcp` verifies on receive;
    /// * [`Error::Malformed`]: an option is malformed (see [`TcpOption::parse`]).
    ///   RFC 9293 §3.1 lets a receiver treat an illegal option length as an error;
    ///   such segments are dropped rather than half-understood.
    ///
    /// Unknown options are skipped; a repeated option counts as its last instance.
    /// Flag combinations and port numbers are not judged here: that is the
    /// connection's job.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        caps: &ChecksumCaps,
    ) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        if caps.tcp.rx() && !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let flags = packet.flags();
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: flags.contains(TcpFlags::ACK).then(|| packet.ack_number()),
            window_len: packet.window_len(),
            flags,
            payload: packet.payload(),
            ..TcpRepr::default()
        };
        let options = packet.options();
        // The layouts nearly every segment of a connection carries: none, and
        // `NOP, NOP, TS` (RFC 7323 Appendix A). Same result as the loop, without it.
        match options.len() {
            0 => return Ok(repr),
            12 if options[..4] == [1, 1, 8, 10] => {
                repr.timestamp = Some((read_u32(options, 4), read_u32(options, 8)));
                return Ok(repr);
            }
            _ => {}
        }
        for option in TcpOptions::new(options) {
            match option? {
                TcpOption::Mss(value) => repr.max_seg_size = Some(value),
                TcpOption::WindowScale(shift) => {
                    repr.window_scale = Some(shift.min(MAX_WINDOW_SCALE));
                }
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Sack(blocks) => repr.sack_ranges = [blocks[0], blocks[1], blocks[2]],
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamp = Some((tsval, tsecr)),
                TcpOption::End | TcpOption::Nop | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    /// Option bytes before any SACK blocks: MSS, SACK-permitted/timestamps with
    /// their NOP padding, and NOP + window scale. At most 20.
    fn fixed_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        len += match (self.sack_permitted, self.timestamp.is_some()) {
            (_, true) => 12,    // SACK-permitted + TS, or NOP NOP TS
            (true, false) => 4, // NOP NOP SACK-permitted
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks `emit` writes: as many of `sack_ranges` as fit.
    fn sack_blocks_emitted(&self) -> usize {
        let wanted = self.sack_ranges.iter().flatten().count();
        let room = MAX_OPTIONS_LEN - self.fixed_options_len();
        // NOP, NOP, kind, length, then 8 bytes a block.
        wanted.min(room.saturating_sub(4) / 8)
    }

    /// The option bytes `emit` writes, a multiple of 4 and at most 40.
    pub fn options_len(&self) -> usize {
        let blocks = self.sack_blocks_emitted();
        self.fixed_options_len() + if blocks > 0 { 4 + 8 * blocks } else { 0 }
    }

    /// The length of the emitted header, options included.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// The length of the emitted segment: header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// The sequence space the segment occupies: payload plus one each for SYN and
    /// FIN.
    pub fn segment_len(&self) -> usize {
        self.payload.len()
            + usize::from(self.flags.contains(TcpFlags::SYN))
            + usize::from(self.flags.contains(TcpFlags::FIN))
    }

    /// Writes the segment (header, options, payload) into `packet`, then the
    /// checksum for `src` → `dst` if `caps.tcp` computes on transmit (zero
    /// otherwise). The urgent pointer is written as zero.
    ///
    /// The buffer should be exactly [`buffer_len`](Self::buffer_len) long (the IP
    /// payload); bytes beyond that are left alone and not checksummed.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        caps: &ChecksumCaps,
    ) {
        let mut flags = self.flags;
        flags.set(TcpFlags::ACK, self.ack_number.is_some());
        let header_len = self.header_len();
        let buffer_len = header_len + self.payload.len();
        let buf = &mut packet.buffer.as_mut()[..buffer_len];
        write_u16(buf, field::SRC_PORT, self.src_port);
        write_u16(buf, field::DST_PORT, self.dst_port);
        write_u32(buf, field::SEQ_NUM, self.seq_number.0);
        write_u32(buf, field::ACK_NUM, self.ack_number.unwrap_or_default().0);
        buf[field::DATA_OFF] = ((header_len / 4) as u8 & 0x0f) << 4;
        buf[field::FLAGS] = flags.bits();
        write_u16(buf, field::WINDOW, self.window_len);
        write_u16(buf, field::CHECKSUM, 0);
        write_u16(buf, field::URGENT, 0);
        let (options, payload) = buf[HEADER_LEN..].split_at_mut(header_len - HEADER_LEN);
        self.emit_options(options);
        payload.copy_from_slice(self.payload);
        if caps.tcp.tx() {
            let segment = &packet.buffer.as_ref()[..buffer_len];
            let value = !checksum::fold(segment_sum(segment, src, dst));
            packet.set_checksum(value);
        }
    }

    /// Writes the options in the NOP-aligned layout described in the module docs.
    fn emit_options(&self, mut out: &mut [u8]) {
        // The common case first: only timestamps, as `NOP, NOP, TS`.
        if let (12, Some((tsval, tsecr))) = (out.len(), self.timestamp) {
            if self.max_seg_size.is_none() && !self.sack_permitted && self.window_scale.is_none() {
                out[..4].copy_from_slice(&[1, 1, 8, 10]);
                write_u32(out, 4, tsval);
                write_u32(out, 8, tsecr);
                return;
            }
        }
        if let Some(mss) = self.max_seg_size {
            out = TcpOption::Mss(mss).emit(out);
        }
        if let Some((tsval, tsecr)) = self.timestamp {
            if self.sack_permitted {
                out = TcpOption::SackPermitted.emit(out);
            } else {
                out = TcpOption::Nop.emit(out);
                out = TcpOption::Nop.emit(out);
            }
            out = TcpOption::Timestamps { tsval, tsecr }.emit(out);
        } else if self.sack_permitted {
            out = TcpOption::Nop.emit(out);
            out = TcpOption::Nop.emit(out);
            out = TcpOption::SackPermitted.emit(out);
        }
        if let Some(shift) = self.window_scale {
            out = TcpOption::Nop.emit(out);
            out = TcpOption::WindowScale(shift).emit(out);
        }
        let count = self.sack_blocks_emitted();
        if count > 0 {
            let mut blocks = [None; 4];
            for (slot, block) in blocks
                .iter_mut()
                .zip(self.sack_ranges.iter().flatten().take(count))
            {
                *slot = Some(*block);
            }
            out = TcpOption::Nop.emit(out);
            out = TcpOption::Nop.emit(out);
            out = TcpOption::Sack(blocks).emit(out);
        }
        debug_assert!(out.is_empty(), "options_len disagrees with emit_options");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A SYN from 198.18.0.1:49152 to 198.18.0.2:80 as Linux lays it out: MSS 1460,
    /// SACK permitted, timestamps, NOP, window scale 7.
    const SYN_SEGMENT: [u8; 40] = [
        0xc0, 0x00, 0x00, 0x50, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x00, 0x00, 0x00, //
        0xa0, 0x02, 0xfa, 0xf0, 0xd3, 0x84, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, //
        0x04, 0x02, 0x08, 0x0a, 0x00, 0x12, 0xd6, 0x87, 0x00, 0x00, 0x00, 0x00, //
        0x01, 0x03, 0x03, 0x07,
    ];

    /// PSH|ACK with NOP NOP TS, NOP NOP SACK (two blocks) and an HTTP request.
    const ACK_SEGMENT: [u8; 70] = [
        0xc0, 0x00, 0x00, 0x50, 0x1a, 0x2b, 0x3c, 0x4e, 0x99, 0x88, 0x77, 0x66, //
        0xd0, 0x18, 0x01, 0xf6, 0x6d, 0xa3, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, //
        0x00, 0x12, 0xd6, 0xa0, 0x7f, 0x00, 0x00, 0x01, 0x01, 0x01, 0x05, 0x12, //
        0x1a, 0x2b, 0x40, 0x00, 0x1a, 0x2b, 0x50, 0x00, 0x1a, 0x2b, 0x60, 0x00, //
        0x1a, 0x2b, 0x70, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, //
        0x54, 0x50, 0x2f, 0x31, 0x2e, 0x30, 0x0d, 0x0a, 0x0d, 0x0a,
    ];

    fn src() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 1)
    }

    fn dst() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 2)
    }

    fn syn() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 49152,
            dst_port: 80,
            seq_number: SeqNumber(0x1a2b_3c4d),
            ack_number: None,
            window_len: 64240,
            flags: TcpFlags::SYN,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamp: Some((0x0012_d687, 0)),
            payload: &[],
        }
    }

    fn ack() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 49152,
            dst_port: 80,
            seq_number: SeqNumber(0x1a2b_3c4e),
            ack_number: Some(SeqNumber(0x9988_7766)),
            window_len: 502,
            flags: TcpFlags::PSH | TcpFlags::ACK,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [
                Some((0x1a2b_4000, 0x1a2b_5000)),
                Some((0x1a2b_6000, 0x1a2b_7000)),
                None,
            ],
            timestamp: Some((0x0012_d6a0, 0x7f00_0001)),
            payload: b"GET / HTTP/1.0\r\n\r\n",
        }
    }

    fn emit(repr: &TcpRepr<'_>, caps: &ChecksumCaps) -> Vec<u8> {
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut out[..]),
            src(),
            dst(),
            caps,
        );
        out
    }

    fn parse<'a>(bytes: &'a [u8], caps: &ChecksumCaps) -> Result<TcpRepr<'a>> {
        TcpRepr::parse(&TcpPacket::new_unchecked(bytes), src(), dst(), caps)
    }

    #[test]
    fn syn_round_trip() {
        assert_eq!(parse(&SYN_SEGMENT, &ChecksumCaps::all()), Ok(syn()));
        assert_eq!(syn().header_len(), 40);
        assert_eq!(syn().segment_len(), 1);
        assert_eq!(emit(&syn(), &ChecksumCaps::all()), SYN_SEGMENT);
    }

    #[test]
    fn ack_with_sack_and_data_round_trip() {
        let packet = TcpPacket::new_checked(&ACK_SEGMENT[..]).unwrap();
        assert_eq!(packet.header_len(), 52);
        assert_eq!(packet.segment_len(), 18);
        assert_eq!(packet.urgent_at(), 0);
        assert_eq!(parse(&ACK_SEGMENT, &ChecksumCaps::all()), Ok(ack()));
        assert_eq!(emit(&ack(), &ChecksumCaps::all()), ACK_SEGMENT);
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..SYN_SEGMENT.len() {
            assert_eq!(
                parse(&SYN_SEGMENT[..len], &ChecksumCaps::all()),
                Err(Error::Truncated)
            );
        }
        for len in 0..ACK_SEGMENT.len() {
            let result = parse(&ACK_SEGMENT[..len], &ChecksumCaps::all());
            if len < 52 {
                assert_eq!(result, Err(Error::Truncated), "len {len}");
            } else if !cfg!(fuzzing) {
                // The header is whole; the missing payload breaks the checksum.
                assert_eq!(result, Err(Error::BadChecksum), "len {len}");
            }
        }
    }

    #[test]
    fn bad_checksum_rejected_unless_offloaded() {
        let mut bytes = ACK_SEGMENT;
        bytes[69] ^= 1;
        if !cfg!(fuzzing) {
            assert_eq!(parse(&bytes, &ChecksumCaps::all()), Err(Error::BadChecksum));
            // Right bytes, wrong pseudo-header (swapping the addresses would not
            // show: the sum is commutative).
            let packet = TcpPacket::new_unchecked(&ACK_SEGMENT[..]);
            assert!(!packet.verify_checksum(src(), Ipv4Addr::new(198, 18, 0, 3)));
        }
        let parsed = parse(&bytes, &ChecksumCaps::offload()).unwrap();
        assert_eq!(parsed.payload.last(), Some(&0x0b));
        let unchecked = emit(&ack(), &ChecksumCaps::offload());
        assert_eq!(&unchecked[16..18], &[0, 0]);
        assert_eq!(&unchecked[18..], &ACK_SEGMENT[18..]);
    }

    #[test]
    fn bad_data_offsets() {
        let mut bytes = SYN_SEGMENT;
        bytes[12] = 0x40; // 16 bytes: less than the fixed header
        assert_eq!(
            parse(&bytes, &ChecksumCaps::offload()),
            Err(Error::Malformed)
        );
        bytes[12] = 0xf0; // 60 bytes: more than the buffer
        assert_eq!(
            parse(&bytes, &ChecksumCaps::offload()),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn malformed_options_reject_the_segment() {
        let mut bytes = SYN_SEGMENT;
        bytes[21] = 0; // MSS length 0
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.fill_checksum(src(), dst());
        assert_eq!(parse(&bytes, &ChecksumCaps::all()), Err(Error::Malformed));
    }

    #[test]
    fn ack_flag_follows_ack_number() {
        // A segment whose ACK flag is clear has no acknowledgment number, whatever
        // the field holds.
        let mut bytes = ACK_SEGMENT;
        bytes[13] = TcpFlags::PSH.bits();
        TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(src(), dst());
        let parsed = parse(&bytes, &ChecksumCaps::all()).unwrap();
        assert_eq!((parsed.ack_number, parsed.flags), (None, TcpFlags::PSH));
        // On emit, ACK is set from `ack_number` alone.
        let repr = TcpRepr {
            flags: TcpFlags::ACK | TcpFlags::FIN,
            ack_number: None,
            ..ack()
        };
        let bytes = emit(&repr, &ChecksumCaps::all());
        assert_eq!(TcpPacket::new_unchecked(&bytes[..]).flags(), TcpFlags::FIN);
        assert_eq!(&bytes[8..12], &[0, 0, 0, 0]);
        assert_eq!(repr.segment_len(), repr.payload.len() + 1);
    }

    #[test]
    fn window_scale_is_clamped_on_parse() {
        let mut bytes = SYN_SEGMENT;
        bytes[39] = 15;
        TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(src(), dst());
        assert_eq!(
            parse(&bytes, &ChecksumCaps::all()).unwrap().window_scale,
            Some(14)
        );
    }

    #[test]
    fn options_are_aligned_and_limited_to_40_bytes() {
        let blocks = [Some((1, 2)), Some((3, 4)), Some((5, 6))];
        let cases = [
            // (repr, options length, SACK blocks that survive)
            (
                TcpRepr {
                    sack_ranges: blocks,
                    ..syn()
                },
                40,
                2,
            ),
            (
                TcpRepr {
                    sack_ranges: blocks,
                    ..ack()
                },
                40,
                3,
            ),
            (
                TcpRepr {
                    sack_ranges: blocks,
                    timestamp: None,
                    ..ack()
                },
                28,
                3,
            ),
            (
                TcpRepr {
                    sack_permitted: true,
                    timestamp: None,
                    ..TcpRepr::default()
                },
                4,
                0,
            ),
            (
                TcpRepr {
                    window_scale: Some(2),
                    ..TcpRepr::default()
                },
                4,
                0,
            ),
            (TcpRepr::default(), 0, 0),
        ];
        for (repr, options_len, survivors) in cases {
            assert_eq!(repr.options_len(), options_len, "{repr:?}");
            let bytes = emit(&repr, &ChecksumCaps::all());
            let parsed = parse(&bytes, &ChecksumCaps::all()).unwrap();
            assert_eq!(parsed.sack_ranges.iter().flatten().count(), survivors);
            assert_eq!(
                parsed.sack_ranges[..survivors],
                repr.sack_ranges[..survivors]
            );
            assert_eq!(
                (
                    parsed.max_seg_size,
                    parsed.window_scale,
                    parsed.sack_permitted,
                    parsed.timestamp
                ),
                (
                    repr.max_seg_size,
                    repr.window_scale,
                    repr.sack_permitted,
                    repr.timestamp
                )
            );
        }
        // The timestamps sit on a 4-byte boundary after NOP, NOP.
        let bytes = emit(&ack(), &ChecksumCaps::all());
        assert_eq!(&bytes[20..24], &[1, 1, 8, 10]);
    }

    fn arb_repr() -> impl Strategy<Value = (TcpRepr<'static>, Vec<u8>)> {
        (
            (
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                any::<Option<u32>>(),
                any::<u16>(),
            ),
            (
                any::<u8>(),
                any::<Option<u16>>(),
                proptest::option::of(0u8..=14),
                any::<bool>(),
            ),
            (
                0usize..=3,
                any::<[(u32, u32); 3]>(),
                any::<Option<(u32, u32)>>(),
            ),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(
                |((sp, dp, seq, ack, win), (flags, mss, ws, sackp), (n, ranges, ts), payload)| {
                    let mut sack_ranges = [None; 3];
                    for (slot, range) in sack_ranges.iter_mut().zip(ranges).take(n) {
                        *slot = Some(range);
                    }
                    let repr = TcpRepr {
                        src_port: sp,
                        dst_port: dp,
                        seq_number: SeqNumber(seq),
                        ack_number: ack.map(SeqNumber),
                        window_len: win,
                        flags: TcpFlags::from_bits(flags & !TcpFlags::ACK.bits()),
                        max_seg_size: mss,
                        window_scale: ws,
                        sack_permitted: sackp,
                        sack_ranges,
                        timestamp: ts,
                        payload: &[],
                    };
                    (repr, payload)
                },
            )
    }

    /// The shortcut for the `NOP, NOP, TS` layout reads what the option loop reads,
    /// and other 12-byte layouts still go through the loop.
    #[test]
    fn timestamp_only_layouts_parse_like_the_option_loop() {
        let layouts: [[u8; 12]; 3] = [
            [1, 1, 8, 10, 0, 0, 0, 7, 0xff, 0, 0, 9],
            [8, 10, 0, 0, 0, 7, 0xff, 0, 0, 9, 1, 1],
            [1, 1, 8, 10, 0, 0, 0, 7, 0xff, 0, 0, 9].map(|b| if b == 10 { 11 } else { b }),
        ];
        for options in layouts {
            let repr = TcpRepr {
                src_port: 1,
                dst_port: 2,
                seq_number: SeqNumber(3),
                ack_number: Some(SeqNumber(4)),
                flags: TcpFlags::ACK,
                window_len: 5,
                ..TcpRepr::default()
            };
            let mut bytes = emit(&repr, &ChecksumCaps::all());
            bytes.splice(HEADER_LEN..HEADER_LEN, options);
            bytes[field::DATA_OFF] = 8 << 4;
            bytes.extend_from_slice(b"data");
            TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(src(), dst());
            let parsed = parse(&bytes, &ChecksumCaps::all());
            let mut looped = Ok(TcpRepr { payload: b"data", ..repr });
            for option in TcpOptions::new(&options) {
                match option {
                    Ok(TcpOption::Timestamps { tsval, tsecr }) => {
                        if let Ok(r) = looped.as_mut() {
                            r.timestamp = Some((tsval, tsecr));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => looped = Err(e),
                }
            }
            assert_eq!(parsed, looped, "options {options:?}");
        }
        // And emitting a timestamp-only header gives that layout.
        let repr = TcpRepr { timestamp: Some((7, 9)), ack_number: Some(SeqNumber(1)), ..TcpRepr::default() };
        let bytes = emit(&repr, &ChecksumCaps::all());
        assert_eq!(&bytes[HEADER_LEN..], &[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            for caps in [ChecksumCaps::all(), ChecksumCaps::offload()] {
                if let Ok(repr) = parse(&bytes, &caps) {
                    prop_assert!(repr.options_len() <= MAX_OPTIONS_LEN);
                    let _ = emit(&repr, &caps);
                }
            }
        }

        #[test]
        fn emit_then_parse((repr, payload) in arb_repr()) {
            let mut repr = repr;
            repr.payload = &payload;
            if repr.ack_number.is_some() {
                repr.flags.insert(TcpFlags::ACK);
            }
            let bytes = emit(&repr, &ChecksumCaps::all());
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert_eq!(repr.header_len() % 4, 0);
            prop_assert!(repr.header_len() <= MAX_HEADER_LEN);
            let parsed = parse(&bytes, &ChecksumCaps::all()).unwrap();
            let kept = repr.sack_blocks_emitted();
            let mut expected = repr;
            for slot in expected.sack_ranges.iter_mut().skip(kept) {
                *slot = None;
            }
            prop_assert_eq!(parsed, expected);
        }
    }
}
