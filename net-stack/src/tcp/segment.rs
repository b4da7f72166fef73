//! Outgoing segments: a header and a zero-copy payload.

use std::net::Ipv4Addr;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::wire::{Checksum, ChecksumCaps, SeqNumber, TcpFlags, TcpPacket, TcpRepr};

/// The payload of an outgoing segment: slices of the buffers the application queued,
/// gathered without copying.
///
/// A segment usually spans one or two of the application's buffers, so the slices
/// live inline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    chunks: SmallVec<[Bytes; 2]>,
    len: usize,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Payload {
        Payload::default()
    }

    /// Appends a slice (empty ones are skipped).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices, in order (none of them empty).
    pub fn chunks(&self) -> std::slice::Iter<'_, Bytes> {
        self.chunks.iter()
    }

    /// Copies the bytes to the start of `out`.
    ///
    /// # Panics
    ///
    /// If `out` is shorter than [`len`](Self::len).
    pub fn copy_to_slice(&self, out: &mut [u8]) {
        let mut at = 0;
        for chunk in &self.chunks {
            out[at..at + chunk.len()].copy_from_slice(chunk);
            at += chunk.len();
        }
    }

    /// The bytes as one buffer: no copy when there is a single slice.
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            _ => {
                let mut out = BytesMut::zeroed(self.len);
                self.copy_to_slice(&mut out);
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(chunk: Bytes) -> Payload {
        let mut payload = Payload::new();
        payload.push(chunk);
        payload
    }
}

/// A segment to send as the stack builds it: the header fields, and the payload as
/// a range of the connection's send queue (copied into the frame by
/// `Connection::copy_payload`).
///
/// It travels by value through several returns per segment, so it holds only what
/// nearly every segment needs. Options other than timestamps (MSS, window scale,
/// SACK-permitted, SACK blocks: on SYNs, and while data is held out of order) stay
/// in the connection, and `more_options` says there are some;
/// `Connection::segment_repr` gives the whole header either way. The ports are
/// the connection's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentHeader {
    /// The sequence number.
    pub(crate) seq_number: SeqNumber,
    /// The acknowledgment number, present exactly when ACK is set.
    pub(crate) ack_number: Option<SeqNumber>,
    /// The window field, unscaled.
    pub(crate) window_len: u16,
    /// The control bits.
    pub(crate) flags: TcpFlags,
    /// The timestamps option as (TSval, TSecr).
    pub(crate) timestamp: Option<(u32, u32)>,
    /// Whether the segment has options other than timestamps (kept in the
    /// connection until the next segment).
    pub(crate) more_options: bool,
    /// The sequence number of the first payload byte.
    pub(crate) payload_seq: SeqNumber,
    /// The payload length.
    pub(crate) payload_len: usize,
}

/// A segment to send: the header fields and the payload.
///
/// `repr.payload` is always empty; the data is in `payload`, so that it can go to the
/// device as a gather list. [`emit`](Self::emit) writes both into one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The header fields and options (with an empty payload).
    pub repr: TcpRepr<'static>,
    /// The data.
    pub payload: Payload,
}

impl Segment {
    /// The bytes [`emit`](Self::emit) writes: header, options and payload.
    pub fn buffer_len(&self) -> usize {
        self.repr.header_len() + self.payload.len()
    }

    /// The sequence space the segment occupies: payload plus SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.repr.segment_len() + self.payload.len()
    }

    /// Writes the segment (the whole IP payload) into `buffer` with the checksum for
    /// `src` → `dst` if `caps.tcp` computes it on transmit.
    ///
    /// # Panics
    ///
    /// If `buffer` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buffer: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, caps: &ChecksumCaps) {
        let len = self.buffer_len();
        let mut packet = TcpPacket::new_unchecked(&mut buffer[..len]);
        // The header first with no checksum, then the payload, then the checksum over
        // both.
        let header_only = ChecksumCaps {
            tcp: Checksum::None,
            ..*caps
        };
        self.repr.emit(&mut packet, src, dst, &header_only);
        self.payload.copy_to_slice(packet.payload_mut());
        if caps.tcp.tx() {
            packet.fill_checksum(src, dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_gathers_slices() {
        let mut payload = Payload::new();
        payload.push(Bytes::from_static(b"hel"));
        payload.push(Bytes::new());
        payload.push(Bytes::from_static(b"lo"));
        assert_eq!(payload.len(), 5);
        assert_eq!(payload.chunks().count(), 2);
        let mut out = [0u8; 6];
        payload.copy_to_slice(&mut out);
        assert_eq!(&out, b"hello\0");
        assert_eq!(payload.to_bytes(), Bytes::from_static(b"hello"));
        assert!(Payload::new().is_empty());
        assert_eq!(Payload::from(Bytes::from_static(b"x")).to_bytes(), "x");
    }

    #[test]
    fn emit_matches_a_repr_with_the_payload_inline() {
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let caps = ChecksumCaps::all();
        let mut payload = Payload::new();
        payload.push(Bytes::from_static(b"GET / "));
        payload.push(Bytes::from_static(b"HTTP/1.0\r\n\r\n"));
        let repr = TcpRepr {
            src_port: 49152,
            dst_port: 80,
            seq_number: SeqNumber(7),
            ack_number: Some(SeqNumber(9)),
            window_len: 100,
            flags: TcpFlags::PSH | TcpFlags::ACK,
            ..TcpRepr::default()
        };
        let segment = Segment { repr, payload };
        let mut out = vec![0u8; segment.buffer_len()];
        segment.emit(&mut out, src, dst, &caps);

        let inline = TcpRepr {
            payload: b"GET / HTTP/1.0\r\n\r\n",
            ..repr
        };
        let mut expected = vec![0u8; inline.buffer_len()];
        inline.emit(
            &mut TcpPacket::new_unchecked(&mut expected[..]),
            src,
            dst,
            &caps,
        );
        assert_eq!(out, expected);
        assert_eq!(segment.segment_len(), 18);
    }
}
