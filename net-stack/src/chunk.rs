//! [`Chunk`]: a piece of a TCP byte stream held in a connection's send queue or
//! receive buffer.
//!
//! A chunk is either a slice of a [`Bytes`] (an application's buffer handed to
//! `tcp_send`, or a received frame handed to `Stack::receive`), kept without a copy,
//! or up to [`INLINE`] bytes copied into the chunk itself. Inline chunks are what
//! the borrowed-frame paths store (`Stack::receive_slice`, `tcp_send_slice`): a
//! small payload is copied once instead of being given a reference-counted buffer,
//! whose count costs two atomic operations per frame (the copy-break of network
//! drivers, which copy small received packets and hand large ones on).

use std::fmt;
use std::ops::Deref;

use bytes::{Buf, Bytes, BytesMut};

use crate::fifo::Fifo;
use crate::wire::checksum;

/// The most bytes an inline chunk holds: as many as keep a [`Chunk`] within 128
/// bytes, which the compiler moves (into and out of the queues) with a few
/// vector moves. At 128 (a 136-byte chunk) every move was a call to `memmove`,
/// 4% of the bulk transfer's time.
pub(crate) const INLINE: usize = 112;

/// A piece of a byte stream: shared or inline. Dereferences to its bytes.
#[derive(Clone)]
pub(crate) enum Chunk {
    /// A slice of a reference-counted buffer.
    Shared(Bytes),
    /// Bytes `start..end` of its own array.
    Inline { start: u8, end: u8, data: [u8; INLINE] },
}

/// Copies `src` into `dst` (of the same length), with a few wide moves in the
/// caller's code when it is short (up to 128 bytes): the payloads of small
/// segments, where a call to `memcpy` and its dispatch on the length cost more
/// than the copy.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    assert_eq!(dst.len(), n, "copy_short between slices of different lengths");
    if n > 128 {
        dst.copy_from_slice(src);
    } else if n >= 32 {
        // Up to four 32-byte blocks from both ends, overlapping as need be. (No
        // loop: the compiler turns a copy loop back into a call to `memcpy`.)
        dst[..32].copy_from_slice(&src[..32]);
        dst[n - 32..].copy_from_slice(&src[n - 32..]);
        if n > 64 {
            dst[32..64].copy_from_slice(&src[32..64]);
            dst[n - 64..n - 32].copy_from_slice(&src[n - 64..n - 32]);
        }
    } else if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Where a segment's payload is copied to: the end of a frame being built in a
/// [`BytesMut`], or a device's buffer ([`SliceOut`]).
pub(crate) trait FrameOut {
    /// Appends `data`; returns its partial checksum (RFC 1071) if `summed`, else 0.
    fn put(&mut self, data: &[u8], summed: bool) -> u32;
}

impl FrameOut for BytesMut {
    #[inline]
    fn put(&mut self, data: &[u8], summed: bool) -> u32 {
        if !summed {
            self.extend_from_slice(data);
            return 0;
        }
        checksum::extend_and_sum(self, data)
    }
}

/// A buffer written from the front.
pub(crate) struct SliceOut<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) at: usize,
}

impl FrameOut for SliceOut<'_> {
    #[inline]
    fn put(&mut self, data: &[u8], summed: bool) -> u32 {
        let end = self.at + data.len();
        copy_short(&mut self.buf[self.at..end], data);
        self.at = end;
        if summed {
            checksum::sum(data)
        } else {
            0
        }
    }
}

impl Chunk {
    /// An inline chunk holding `data` (at most [`INLINE`] bytes).
    #[inline]
    fn inline(data: &[u8]) -> Chunk {
        debug_assert!(data.len() <= INLINE);
        let mut buf = [0u8; INLINE];
        copy_short(&mut buf[..data.len()], data);
        Chunk::Inline { start: 0, end: data.len() as u8, data: buf }
    }

    /// A chunk holding a copy of `data`: inline if it fits, else a new buffer.
    #[inline]
    pub(crate) fn copy_of(data: &[u8]) -> Chunk {
        if data.len() <= INLINE {
            Chunk::inline(data)
        } else {
            Chunk::Shared(Bytes::copy_from_slice(data))
        }
    }

    /// Appends a copy of `data` to `queue`: into its last chunk if that is an
    /// inline one with room, else into a new chunk. (Pushing an empty inline
    /// chunk and filling it where it lies measured ~30 ns a round trip slower
    /// than building it and moving it in.)
    #[inline]
    pub(crate) fn append_copy(queue: &mut Fifo<Chunk>, data: &[u8]) {
        if let Some(back) = queue.back_mut() {
            if back.try_extend(data) {
                return;
            }
        }
        queue.push_back(Chunk::copy_of(data));
    }

    /// Appends `data` if this is an inline chunk with room for it after its end;
    /// `false` (nothing done) otherwise.
    #[inline]
    pub(crate) fn try_extend(&mut self, data: &[u8]) -> bool {
        match self {
            Chunk::Inline { end, data: buf, .. } if INLINE - usize::from(*end) >= data.len() => {
                let at = usize::from(*end);
                copy_short(&mut buf[at..at + data.len()], data);
                *end += data.len() as u8;
                true
            }
            _ => false,
        }
    }

    /// Drops the first `n` bytes (at most its length).
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Chunk::Shared(b) => b.advance(n),
            Chunk::Inline { start, end, .. } => {
                assert!(n <= usize::from(*end - *start), "advance past the end of a chunk");
                *start += n as u8;
            }
        }
    }

    /// Splits off and returns the first `n` bytes (at most its length).
    pub(crate) fn split_to(&mut self, n: usize) -> Chunk {
        match self {
            Chunk::Shared(b) => Chunk::Shared(b.split_to(n)),
            Chunk::Inline { .. } => {
                let head = Chunk::inline(&self[..n]);
                self.advance(n);
                head
            }
        }
    }

    /// Its bytes as a [`Bytes`]: the shared slice itself, or a copy of the inline
    /// bytes.
    #[inline]
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Inline { .. } => Bytes::copy_from_slice(&self),
        }
    }

    /// Its bytes as a [`Bytes`] (as [`into_bytes`](Self::into_bytes)), taken
    /// where the chunk lies, which is left empty: moving a whole chunk out of its
    /// queue first copies its 120 bytes, twice.
    #[inline]
    pub(crate) fn take_bytes(&mut self) -> Bytes {
        match self {
            Chunk::Shared(b) => std::mem::take(b),
            Chunk::Inline { .. } => Bytes::copy_from_slice(self),
        }
    }

    /// Bytes `from..to` as a [`Bytes`]: a slice of the shared buffer, or a copy.
    pub(crate) fn slice_bytes(&self, from: usize, to: usize) -> Bytes {
        match self {
            Chunk::Shared(b) => b.slice(from..to),
            Chunk::Inline { .. } => Bytes::copy_from_slice(&self[from..to]),
        }
    }
}

impl Deref for Chunk {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Inline { start, end, data } => &data[usize::from(*start)..usize::from(*end)],
        }
    }
}

impl From<Bytes> for Chunk {
    #[inline]
    fn from(b: Bytes) -> Chunk {
        Chunk::Shared(b)
    }
}

/// Two chunks are equal when they hold the same bytes, however held.
impl PartialEq for Chunk {
    fn eq(&self, other: &Chunk) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Chunk {}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Chunk::Shared(_) => "Shared",
            Chunk::Inline { .. } => "Inline",
        };
        write!(f, "{kind}({:?})", Bytes::copy_from_slice(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_moved_without_a_call() {
        assert!(std::mem::size_of::<Chunk>() <= 128, "{} bytes", std::mem::size_of::<Chunk>());
    }

    #[test]
    fn short_copies_copy_every_length() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
        for len in 0..=300 {
            for offset in [0, 1, 5] {
                if offset + len > src.len() {
                    continue;
                }
                let mut dst = vec![0xeeu8; len + 2];
                copy_short(&mut dst[1..1 + len], &src[offset..offset + len]);
                assert_eq!(&dst[1..1 + len], &src[offset..offset + len], "len {len} offset {offset}");
                assert_eq!((dst[0], dst[len + 1]), (0xee, 0xee), "len {len}: wrote outside");
            }
        }
    }

    #[test]
    fn small_copies_are_inline_and_large_ones_shared() {
        let small = Chunk::copy_of(b"hello");
        assert!(matches!(small, Chunk::Inline { .. }));
        assert_eq!(&small[..], b"hello");
        let full = Chunk::copy_of(&[7u8; INLINE]);
        assert!(matches!(full, Chunk::Inline { .. }));
        assert_eq!(full.len(), INLINE);
        let large = Chunk::copy_of(&[7u8; INLINE + 1]);
        assert!(matches!(large, Chunk::Shared(_)));
        assert_eq!(large.len(), INLINE + 1);
        assert!(Chunk::copy_of(&[]).is_empty());
    }

    #[test]
    fn inline_chunks_extend_until_full_and_shared_ones_never() {
        let mut c = Chunk::copy_of(b"ab");
        assert!(c.try_extend(b"cd"));
        assert_eq!(&c[..], b"abcd");
        assert!(c.try_extend(&[1u8; INLINE - 4]));
        assert_eq!(c.len(), INLINE);
        assert!(!c.try_extend(b"x"), "a full chunk takes nothing");
        assert_eq!(c.len(), INLINE);
        assert!(c.try_extend(b""));
        let mut shared = Chunk::from(Bytes::from_static(b"ab"));
        assert!(!shared.try_extend(b"c"));
        assert_eq!(&shared[..], b"ab");
    }

    #[test]
    fn advance_split_and_slice_agree_for_both_kinds() {
        let text = b"0123456789abcdef";
        for mut c in [Chunk::copy_of(text), Chunk::from(Bytes::from_static(text))] {
            assert_eq!(c.slice_bytes(3, 7), "3456");
            let head = c.split_to(4);
            assert_eq!((&head[..], &c[..]), (&b"0123"[..], &b"456789abcdef"[..]));
            c.advance(2);
            assert_eq!(&c[..], b"6789abcdef");
            // An inline chunk advanced from the front still extends at its end.
            let extended = c.try_extend(b"!");
            assert_eq!(extended, matches!(c, Chunk::Inline { .. }));
            let expected: &[u8] = if extended { b"6789abcdef!" } else { b"6789abcdef" };
            assert_eq!(&c[..], expected);
            assert_eq!(c.clone().into_bytes(), expected);
            c.advance(c.len());
            assert!(c.is_empty());
        }
        assert_eq!(Chunk::copy_of(b"xy"), Chunk::from(Bytes::from_static(b"xy")));
    }

    #[test]
    #[should_panic(expected = "advance past the end")]
    fn advancing_an_inline_chunk_past_its_end_panics() {
        Chunk::copy_of(b"ab").advance(3);
    }
}
