//! TCP options.
//!
//! Implements the option encodings of RFC 9293 §3.2 (end of list, no-operation,
//! maximum segment size), RFC 7323 (window scale, timestamps) and RFC 2018 (SACK
//! permitted, SACK). Parsing never panics and never loops: every option consumes at
//! least one byte, and impossible lengths are errors.

use core::iter::FusedIterator;

use crate::wire::{read_u16, read_u32, write_u16, write_u32, Error, Result};

mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// End of the option list (kind 0); what follows is padding.
    End,
    /// No-operation (kind 1), used for alignment.
    Nop,
    /// Maximum segment size (kind 2, length 4).
    Mss(u16),
    /// Window scale shift count (kind 3, length 3), as sent (not clamped).
    WindowScale(u8),
    /// SACK permitted (kind 4, length 2).
    SackPermitted,
    /// SACK blocks (kind 5, length 2 + 8n with n in 1..=4): left and right edges,
    /// filled from the front.
    Sack([Option<(u32, u32)>; 4]),
    /// Timestamps (kind 8, length 10).
    Timestamps {
        /// The sender's timestamp value.
        tsval: u32,
        /// The echoed timestamp (meaningful when ACK is set).
        tsecr: u32,
    },
    /// Any other option, with the bytes after its kind and length.
    Unknown {
        /// The option kind.
        kind: u8,
        /// The option's data (length minus 2 bytes).
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Reads the option at the start of `buffer`; returns the bytes after it too.
    ///
    /// * [`Error::Truncated`]: `buffer` is empty;
    /// * [`Error::Malformed`]: the length byte is missing, below 2, runs past the
    ///   end of `buffer`, or differs from the fixed length of a known option (a SACK
    ///   option must hold 1 to 4 whole blocks).
    pub fn parse(buffer: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>)> {
        let (&kind, rest) = buffer.split_first().ok_or(Error::Truncated)?;
        match kind {
            kind::END => return Ok((rest, TcpOption::End)),
            kind::NOP => return Ok((rest, TcpOption::Nop)),
            _ => {}
        }
        let len = usize::from(*rest.first().ok_or(Error::Malformed)?);
        if len < 2 || len > buffer.len() {
            return Err(Error::Malformed);
        }
        let data = &buffer[2..len];
        let option = match (kind, len) {
            (kind::MSS, 4) => TcpOption::Mss(read_u16(data, 0)),
            (kind::WINDOW_SCALE, 3) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 2) => TcpOption::SackPermitted,
            (kind::TIMESTAMPS, 10) => TcpOption::Timestamps {
                tsval: read_u32(data, 0),
                tsecr: read_u32(data, 4),
            },
            (kind::SACK, _) if data.len().is_multiple_of(8) && (8..=32).contains(&data.len()) => {
                let mut blocks = [None; 4];
                for (slot, block) in blocks.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((read_u32(block, 0), read_u32(block, 4)));
                }
                TcpOption::Sack(blocks)
            }
            (
                kind::MSS
                | kind::WINDOW_SCALE
                | kind::SACK_PERMITTED
                | kind::TIMESTAMPS
                | kind::SACK,
                _,
            ) => return Err(Error::Malformed),
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Ok((&buffer[len..], option))
    }

    /// The number of bytes the option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::End | TcpOption::Nop => 1,
            TcpOption::Mss(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(blocks) => 2 + 8 * blocks.iter().flatten().count(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns the rest of it. The
    /// `Some` blocks of a SACK option are written in order.
    ///
    /// # Panics
    ///
    /// If `buffer` is shorter than [`buffer_len`](Self::buffer_len). An `Unknown`
    /// option's data must leave its length within a byte (checked in debug builds).
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (out, rest) = buffer.split_at_mut(len);
        let header = |out: &mut [u8], kind: u8| {
            out[0] = kind;
            out[1] = len as u8;
        };
        match *self {
            TcpOption::End => out[0] = kind::END,
            TcpOption::Nop => out[0] = kind::NOP,
            TcpOption::Mss(value) => {
                header(out, kind::MSS);
                write_u16(out, 2, value);
            }
            TcpOption::WindowScale(shift) => {
                header(out, kind::WINDOW_SCALE);
                out[2] = shift;
            }
            TcpOption::SackPermitted => header(out, kind::SACK_PERMITTED),
            TcpOption::Sack(blocks) => {
                header(out, kind::SACK);
                for (at, (left, right)) in (2..).step_by(8).zip(blocks.iter().flatten()) {
                    write_u32(out, at, *left);
                    write_u32(out, at + 4, *right);
                }
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                header(out, kind::TIMESTAMPS);
                write_u32(out, 2, tsval);
                write_u32(out, 6, tsecr);
            }
            TcpOption::Unknown { kind, data } => {
                debug_assert!(len <= usize::from(u8::MAX), "TCP option too long");
                header(out, kind);
                out[2..].copy_from_slice(data);
            }
        }
        rest
    }
}

/// An iterator over the options of a TCP header.
///
/// Yields each option in order, including [`TcpOption::Nop`] and a final
/// [`TcpOption::End`] if there is one (the padding after it is skipped). A malformed
/// option yields one `Err` and ends the iteration. Every step consumes at least one
/// byte, so iteration always terminates.
///
/// ```
/// use demi_net_stack::wire::{TcpOption, TcpOptions};
///
/// let options = [1, 1, 4, 2, 2, 4, 0x05, 0xb4];
/// let parsed: Result<Vec<_>, _> = TcpOptions::new(&options).collect();
/// assert_eq!(
///     parsed.unwrap(),
///     [TcpOption::Nop, TcpOption::Nop, TcpOption::SackPermitted, TcpOption::Mss(1460)]
/// );
/// ```
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    /// Iterates over the options in `options` (see [`TcpPacket::options`](super::TcpPacket::options)).
    pub const fn new(options: &'a [u8]) -> Self {
        TcpOptions { rest: options }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((rest, option)) => {
                self.rest = if option == TcpOption::End { &[] } else { rest };
                Some(Ok(option))
            }
            Err(error) => {
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

impl FusedIterator for TcpOptions<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<TcpOption<'_>>> {
        TcpOptions::new(bytes).collect()
    }

    #[test]
    fn linux_syn_options() {
        let bytes = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x00, 0x12, 0xd6, 0x87, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(
            parse_all(&bytes).unwrap(),
            [
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 0x0012_d687,
                    tsecr: 0
                },
                TcpOption::Nop,
                TcpOption::WindowScale(7),
            ]
        );
    }

    #[test]
    fn end_of_list_stops_parsing() {
        // Bytes after the end of the list are padding, even if they look bogus.
        assert_eq!(
            parse_all(&[1, 0, 2, 0, 0xff]).unwrap(),
            [TcpOption::Nop, TcpOption::End]
        );
    }

    #[test]
    fn sack_blocks() {
        let mut bytes = vec![5, 26];
        for edge in 1..=6u32 {
            bytes.extend_from_slice(&(edge * 1000).to_be_bytes());
        }
        let (rest, option) = TcpOption::parse(&bytes).unwrap();
        assert!(rest.is_empty());
        let blocks = [
            Some((1000, 2000)),
            Some((3000, 4000)),
            Some((5000, 6000)),
            None,
        ];
        assert_eq!(option, TcpOption::Sack(blocks));
        let mut out = [0u8; 26];
        assert!(option.emit(&mut out).is_empty());
        assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn bogus_lengths_are_malformed() {
        let cases: &[&[u8]] = &[
            &[2],                         // no length byte
            &[2, 0],                      // length 0
            &[2, 1, 1, 1],                // length 1
            &[0x99, 1],                   // unknown kind, length 1
            &[0x99, 5, 0],                // runs past the end
            &[2, 3, 0],                   // MSS of length 3
            &[2, 5, 0, 0, 0],             // MSS of length 5
            &[3, 4, 7, 0],                // window scale of length 4
            &[4, 3, 0],                   // SACK permitted of length 3
            &[5, 2],                      // SACK without blocks
            &[5, 6, 0, 0, 0, 0],          // SACK with half a block
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // timestamps of length 9
            &[1, 1, 1, 8],                // cut off after NOPs
        ];
        for &bytes in cases {
            assert_eq!(parse_all(bytes), Err(Error::Malformed), "{bytes:?}");
        }
        let mut too_many_blocks = vec![5, 42];
        too_many_blocks.resize(42, 0);
        assert_eq!(parse_all(&too_many_blocks), Err(Error::Malformed));
        assert_eq!(TcpOption::parse(&[]), Err(Error::Truncated));
    }

    #[test]
    fn unknown_options_carry_their_data() {
        let bytes = [30, 4, 0xab, 0xcd, 1];
        let options = parse_all(&bytes).unwrap();
        assert_eq!(
            options,
            [
                TcpOption::Unknown {
                    kind: 30,
                    data: &[0xab, 0xcd]
                },
                TcpOption::Nop
            ]
        );
        let mut out = [0u8; 4];
        assert!(options[0].emit(&mut out).is_empty());
        assert_eq!(out, bytes[..4]);
    }

    proptest! {
        #[test]
        fn iteration_never_panics_and_terminates(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let mut count = 0;
            for option in TcpOptions::new(&bytes) {
                count += 1;
                prop_assert!(count <= bytes.len());
                if let Ok(option) = option {
                    // Whatever parses re-emits to the same number of bytes.
                    let mut out = [0u8; 64];
                    let rest = option.emit(&mut out).len();
                    prop_assert_eq!(64 - rest, option.buffer_len());
                }
            }
        }

        #[test]
        fn emit_then_parse(mss: u16, shift: u8, tsval: u32, tsecr: u32, edges: [u32; 8], n in 1usize..=4) {
            let mut blocks = [None; 4];
            for (i, slot) in blocks.iter_mut().take(n).enumerate() {
                *slot = Some((edges[2 * i], edges[2 * i + 1]));
            }
            for option in [
                TcpOption::Mss(mss),
                TcpOption::WindowScale(shift),
                TcpOption::Timestamps { tsval, tsecr },
                TcpOption::Sack(blocks),
            ] {
                let mut out = vec![0u8; option.buffer_len()];
                option.emit(&mut out);
                prop_assert_eq!(TcpOption::parse(&out), Ok((&[][..], option)));
            }
        }
    }
}
