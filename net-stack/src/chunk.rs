//! [`Chunks`]: a piece-by-piece queue of TCP stream bytes, the storage of a
//! connection's send queue and receive buffer.
//!
//! A piece is either a slice of a [`Bytes`] (an application's buffer handed to
//! `tcp_send`, or a received frame handed to `Stack::receive`), kept without a
//! copy, or bytes copied into the queue's own store: what the borrowed calls keep
//! (`Stack::receive_slice`, `tcp_send_slice`). A small payload is copied once
//! instead of being given a reference-counted buffer, whose count costs two
//! atomic operations per frame (the copy-break of network drivers, which copy
//! small received packets and hand large ones on). Consecutive copies share one
//! piece.
//!
//! The store is one buffer per queue, used from the front: pieces are consumed in
//! order, so the live copied bytes are one range of it. It is reused from its
//! start whenever the last copied piece is consumed, and compacted (or grown) only
//! when a copy does not fit after its end. A piece is as small as a `Bytes`, so a
//! queue that only ever holds `Bytes` costs what a queue of `Bytes` does.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::fifo::Fifo;
use crate::wire::checksum;

/// The store's size when it is first needed.
const STORE_MIN: usize = 1024;

/// One piece of a [`Chunks`] queue.
#[derive(Clone)]
enum Piece {
    /// A slice of a reference-counted buffer.
    Shared(Bytes),
    /// `len` bytes of the queue's store from `at`.
    Copied { at: u32, len: u32 },
}

/// A queue of stream bytes held as pieces: shared slices and copies. See the
/// [module docs](self).
#[derive(Clone, Default)]
pub(crate) struct Chunks {
    pieces: Fifo<Piece>,
    /// The copied pieces' bytes are `store[dead..end]`, in piece order; the
    /// rest is room. Its length is its size (it only grows, zero-filled).
    store: Vec<u8>,
    dead: usize,
    end: usize,
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

impl Chunks {
    /// How many pieces.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether it holds no piece.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The bytes of a piece.
    #[inline(always)]
    fn bytes_of<'a>(store: &'a [u8], piece: &'a Piece) -> &'a [u8] {
        match piece {
            Piece::Shared(b) => b,
            Piece::Copied { at, len } => &store[*at as usize..*at as usize + *len as usize],
        }
    }

    /// The bytes of the piece `index` places from the front.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&[u8]> {
        self.pieces.get(index).map(|p| Self::bytes_of(&self.store, p))
    }

    /// The bytes of the front piece.
    #[inline]
    pub(crate) fn front(&self) -> Option<&[u8]> {
        self.pieces.front().map(|p| Self::bytes_of(&self.store, p))
    }

    /// The pieces' bytes from the one `first` places from the front on.
    pub(crate) fn iter_from(&self, first: usize) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter_from(first).map(|p| Self::bytes_of(&self.store, p))
    }

    /// Appends `data` as a piece of its own, kept without a copy (nothing for an
    /// empty one).
    #[inline]
    pub(crate) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.pieces.push_back(Piece::Shared(data));
        }
    }

    /// Appends a copy of `data`: into the store, as part of the last piece if
    /// that is a copy too, else as a new piece. (A store is addressed with 32
    /// bits: past 4 GiB of live copies, a copy gets a buffer of its own.)
    #[inline]
    pub(crate) fn push_copy(&mut self, data: &[u8]) {
        let n = data.len();
        if n == 0 {
            return;
        }
        if self.end + n > self.store.len() && !self.make_room(n) {
            self.pieces.push_back(Piece::Shared(Bytes::copy_from_slice(data)));
            return;
        }
        let end = self.end;
        copy_short(&mut self.store[end..end + n], data);
        self.end = end + n;
        if let Some(Piece::Copied { at, len }) = self.pieces.back_mut() {
            if *at as usize + *len as usize == end {
                // Within the store, so within 32 bits.
                *len += n as u32;
                return;
            }
        }
        self.pieces.push_back(Piece::Copied { at: end as u32, len: n as u32 });
    }

    /// Makes room for `n` more bytes after `end`: moves the live bytes to the
    /// store's start if that frees enough (half the store or more), else grows it.
    /// `false` (nothing done) if the store would pass 4 GiB.
    #[inline(never)]
    fn make_room(&mut self, n: usize) -> bool {
        let live = self.end - self.dead;
        if self.dead > 0 && live.saturating_add(n) <= self.store.len() / 2 {
            self.store.copy_within(self.dead..self.end, 0);
            let dead = self.dead as u32;
            for piece in self.pieces.iter_mut() {
                if let Piece::Copied { at, .. } = piece {
                    *at -= dead;
                }
            }
            (self.dead, self.end) = (0, live);
            return true;
        }
        let Some(needed) = self.end.checked_add(n).filter(|&s| s <= u32::MAX as usize) else {
            return false;
        };
        let size = (self.store.len() * 2).clamp(STORE_MIN, u32::MAX as usize).max(needed);
        self.store.resize(size, 0);
        true
    }

    /// Drops the front piece.
    #[inline]
    pub(crate) fn pop_front(&mut self) {
        if let Some(Piece::Copied { at, len }) = self.pieces.front() {
            self.dead = *at as usize + *len as usize;
            if self.dead == self.end {
                // No copied bytes left: the store is reused from its start.
                (self.dead, self.end) = (0, 0);
            }
        }
        self.pieces.remove_front();
    }

    /// Drops the first `n` bytes of the front piece (at most its length).
    #[inline]
    pub(crate) fn advance_front(&mut self, n: usize) {
        match self.pieces.front_mut() {
            Some(Piece::Shared(b)) => b.advance(n),
            Some(Piece::Copied { at, len }) => {
                assert!(n <= *len as usize, "advance past the end of a piece");
                *at += n as u32;
                *len -= n as u32;
                self.dead = *at as usize;
            }
            None => assert_eq!(n, 0, "advance of an empty queue"),
        }
    }

    /// Takes the front piece as a [`Bytes`]: the shared slice itself, or a copy.
    #[inline]
    pub(crate) fn take_front(&mut self) -> Option<Bytes> {
        let data = match self.pieces.front_mut()? {
            Piece::Shared(b) => std::mem::take(b),
            Piece::Copied { .. } => return Some(self.take_front_copied()),
        };
        self.pieces.remove_front();
        Some(data)
    }

    /// [`take_front`](Self::take_front) of a copied piece (a reader that wants
    /// `Bytes` of borrowed data: a copy), out of line so that the shared case
    /// inlines.
    #[inline(never)]
    fn take_front_copied(&mut self) -> Bytes {
        let data = Bytes::copy_from_slice(self.front().unwrap_or_default());
        self.pop_front();
        data
    }

    /// Takes the first `n` bytes of the front piece (fewer than its length) as a
    /// [`Bytes`]: a slice of the shared buffer, or a copy.
    pub(crate) fn split_front(&mut self, n: usize) -> Bytes {
        let data = match self.pieces.front_mut() {
            Some(Piece::Shared(b)) => return b.split_to(n),
            Some(Piece::Copied { at, .. }) => Bytes::copy_from_slice(&self.store[*at as usize..*at as usize + n]),
            None => Bytes::new(),
        };
        self.advance_front(n);
        data
    }

    /// Bytes `from..to` of the piece `index` places from the front, as a
    /// [`Bytes`]: a slice of the shared buffer, or a copy.
    pub(crate) fn slice_bytes(&self, index: usize, from: usize, to: usize) -> Bytes {
        match self.pieces.get(index) {
            Some(Piece::Shared(b)) => b.slice(from..to),
            Some(p @ Piece::Copied { .. }) => Bytes::copy_from_slice(&Self::bytes_of(&self.store, p)[from..to]),
            None => Bytes::new(),
        }
    }

    /// Drops every piece.
    pub(crate) fn clear(&mut self) {
        self.pieces.clear();
        (self.dead, self.end) = (0, 0);
    }

    /// How many pieces are copies (tests).
    #[cfg(test)]
    pub(crate) fn copied_pieces(&self) -> usize {
        self.pieces.iter_from(0).filter(|p| matches!(p, Piece::Copied { .. })).count()
    }
}

/// Two queues are equal when they hold the same pieces' bytes, however held.
impl PartialEq for Chunks {
    fn eq(&self, other: &Chunks) -> bool {
        self.len() == other.len() && self.iter_from(0).eq(other.iter_from(0))
    }
}

impl Eq for Chunks {}

impl fmt::Debug for Chunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for piece in self.pieces.iter_from(0) {
            let kind = match piece {
                Piece::Shared(_) => "Shared",
                Piece::Copied { .. } => "Copied",
            };
            list.entry(&format_args!("{kind}({:?})", Bytes::copy_from_slice(Self::bytes_of(&self.store, piece))));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_piece_is_as_small_as_a_bytes() {
        assert_eq!(std::mem::size_of::<Piece>(), std::mem::size_of::<Bytes>());
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
    fn consecutive_copies_share_a_piece_and_shared_buffers_do_not() {
        let mut q = Chunks::default();
        q.push_copy(b"ab");
        q.push_copy(b"cd");
        q.push(Bytes::from_static(b"EF"));
        q.push(Bytes::new());
        q.push_copy(b"");
        q.push_copy(b"gh");
        assert_eq!(q.iter_from(0).collect::<Vec<_>>(), [&b"abcd"[..], b"EF", b"gh"]);
        assert_eq!((q.len(), q.copied_pieces()), (3, 2));
        assert_eq!(q.split_front(1), "a");
        assert_eq!(q.take_front().unwrap(), "bcd");
        assert_eq!(q.take_front().unwrap(), "EF");
        q.advance_front(1);
        assert_eq!(q.front(), Some(&b"h"[..]));
        q.pop_front();
        assert!(q.is_empty());
        assert_eq!((q.dead, q.end), (0, 0), "the store is reused from its start");
        assert_eq!(q.take_front(), None);
    }

    #[test]
    fn the_store_is_compacted_or_grown_and_pieces_follow() {
        let mut q = Chunks::default();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        // A shared piece between copies, so the copies are two pieces.
        q.push_copy(&data[..600]);
        q.push(Bytes::from_static(b"x"));
        q.push_copy(&data[600..1000]);
        assert_eq!(q.store.len(), STORE_MIN);
        // Most of the first piece consumed, then a copy that does not fit after
        // the end: the live bytes move to the start.
        q.advance_front(590);
        q.push_copy(&data[1000..1100]);
        assert_eq!((q.store.len(), q.dead, q.end), (STORE_MIN, 0, 510));
        assert_eq!(q.iter_from(0).collect::<Vec<_>>(), [&data[590..600], b"x", &data[600..1100]]);
        // Nothing to compact: it grows.
        q.push_copy(&data[1100..5000]);
        assert!(q.store.len() >= 4410);
        let mut out = Vec::new();
        while let Some(b) = q.take_front() {
            out.extend_from_slice(&b);
        }
        assert_eq!(out, [&data[590..600], b"x", &data[600..5000]].concat());
        assert_eq!((q.dead, q.end), (0, 0));
    }

    proptest! {
        /// Pushes of both kinds and every way of consuming, against a model: the
        /// bytes come out in order, in the pieces the model expects, and the store
        /// stays within four times the most live copied bytes (plus one push).
        #[test]
        fn chunks_keep_the_stream(ops in proptest::collection::vec((0u8..6, 0usize..700), 1..80)) {
            let source: Vec<u8> = (0..100_000u32).map(|i| (i * 13 + i / 256) as u8).collect();
            let mut q = Chunks::default();
            let mut model: std::collections::VecDeque<Vec<u8>> = Default::default();
            let (mut at, mut out, mut expected) = (0usize, Vec::new(), Vec::new());
            let mut most_live = 0usize;
            let mut back_is_copy = false;
            for (op, n) in ops {
                match op {
                    0 | 1 => {
                        let data = &source[at..at + n];
                        at += n;
                        if op == 0 { q.push_copy(data) } else { q.push(Bytes::copy_from_slice(data)) }
                        // A copy joins a copied last piece.
                        match model.back_mut() {
                            _ if n == 0 => {}
                            Some(back) if op == 0 && back_is_copy => back.extend_from_slice(data),
                            _ => model.push_back(data.to_vec()),
                        }
                        if n > 0 {
                            back_is_copy = op == 0;
                        }
                    }
                    2 => if let Some(b) = q.take_front() { out.extend_from_slice(&b); expected.extend(model.pop_front().unwrap_or_default()) },
                    3 => if let Some(f) = q.front().map(<[u8]>::len) {
                        let k = n % f.max(1);
                        if k < f {
                            out.extend_from_slice(&q.split_front(k));
                            let m = model.front_mut().unwrap();
                            expected.extend(m.drain(..k));
                        }
                    },
                    4 => if let Some(f) = q.front().map(<[u8]>::to_vec) {
                        out.extend_from_slice(&f);
                        q.pop_front();
                        expected.extend(model.pop_front().unwrap_or_default());
                    },
                    _ => if let Some(f) = q.front().map(<[u8]>::len) {
                        let k = n % f.max(1);
                        if k < f {
                            out.extend_from_slice(&q.front().unwrap()[..k]);
                            q.advance_front(k);
                            expected.extend(model.front_mut().unwrap().drain(..k));
                        }
                    },
                }
                let live = q.end - q.dead;
                most_live = most_live.max(live);
                // It grows only when the live bytes and the push need more than
                // half of it, and then doubles: less than four times what was live.
                prop_assert!(q.store.len() <= (4 * (most_live + 700)).max(STORE_MIN), "store {} live {}", q.store.len(), most_live);
                let held: Vec<&[u8]> = q.iter_from(0).collect();
                let modelled: Vec<&[u8]> = model.iter().map(Vec::as_slice).collect();
                prop_assert_eq!(held, modelled);
            }
            prop_assert_eq!(out, expected);
        }
    }
}
