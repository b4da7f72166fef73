//! The receive buffer: in-order data waiting for the application, and out-of-order
//! data waiting for the hole before it to fill.
//!
//! Positions are 64-bit stream offsets (bytes since the start of the stream), so
//! ordering is plain integer ordering; the connection converts sequence numbers.
//! Data handed over as [`Bytes`] (frames given to `Stack::receive`) is kept as
//! slices of them, never copied; data from borrowed frames (`Stack::receive_slice`)
//! is copied into the buffer's store, consecutive copies as one piece
//! ([`Chunks`]).
//!
//! The buffer is bounded: in-order bytes plus out-of-order bytes never exceed the
//! capacity. Out-of-order data is accepted only inside the window
//! `[next, next + free)`, so it counts against the window it was sent into, and
//! overlapping or duplicate pieces are trimmed so that every byte is stored once.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::chunk::Chunks;

/// Received data for one connection.
#[derive(Debug)]
pub(super) struct RecvBuffer {
    capacity: usize,
    /// In-order data the application has not read yet.
    ready: Chunks,
    ready_len: usize,
    /// The stream offset just after the in-order data (RCV.NXT).
    next: u64,
    /// Out-of-order pieces by stream offset, all after `next`, none overlapping.
    out_of_order: BTreeMap<u64, Bytes>,
    out_of_order_len: usize,
    /// The out-of-order data as merged ranges `start -> end` (what SACK blocks
    /// describe): sorted, disjoint, not adjacent.
    ranges: BTreeMap<u64, u64>,
}

/// What an [`insert`](RecvBuffer::insert) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Inserted {
    /// How far the in-order data advanced.
    pub(super) advanced: usize,
    /// Whether out-of-order data was waiting before the insert (so an in-order
    /// segment filled, or began to fill, a hole).
    pub(super) had_out_of_order: bool,
}

impl RecvBuffer {
    /// An empty buffer of `capacity` bytes whose stream starts at offset 0.
    pub(super) fn new(capacity: usize) -> RecvBuffer {
        RecvBuffer {
            capacity,
            ready: Chunks::default(),
            ready_len: 0,
            next: 0,
            out_of_order: BTreeMap::new(),
            out_of_order_len: 0,
            ranges: BTreeMap::new(),
        }
    }

    /// The most bytes it holds, in order or not.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// In-order bytes waiting to be read.
    pub(super) fn ready_len(&self) -> usize {
        self.ready_len
    }

    /// Out-of-order bytes held.
    #[cfg(test)]
    pub(super) fn out_of_order_len(&self) -> usize {
        self.out_of_order_len
    }

    /// Whether any data is held out of order.
    pub(super) fn has_out_of_order(&self) -> bool {
        !self.out_of_order.is_empty()
    }

    /// The room past the in-order data: the receive window. Out-of-order data lies
    /// inside it.
    pub(super) fn free(&self) -> usize {
        self.capacity - self.ready_len
    }

    /// The stream offset of the next in-order byte.
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    /// Stores `data`, which starts at stream offset `offset`. Bytes before
    /// [`next`](Self::next) (already received) and from `next + free()` on (beyond
    /// the window) are dropped, as are bytes already held out of order.
    pub(super) fn insert(&mut self, offset: u64, mut data: Bytes) -> Inserted {
        let had_out_of_order = !self.out_of_order.is_empty();
        let window_end = self.next + self.free() as u64;
        let mut start = offset;
        let end = offset.saturating_add(data.len() as u64).min(window_end);
        if end <= self.next || start >= end {
            return Inserted {
                advanced: 0,
                had_out_of_order,
            };
        }
        if start < self.next {
            data = data.slice((self.next - start) as usize..);
            start = self.next;
        }
        data.truncate((end - start) as usize);

        if start > self.next {
            self.insert_out_of_order(start, data);
            return Inserted {
                advanced: 0,
                had_out_of_order,
            };
        }
        let before = self.next;
        self.push_ready(data);
        self.drain_out_of_order();
        Inserted {
            advanced: (self.next - before) as usize,
            had_out_of_order,
        }
    }

    /// Appends `data`, which starts at [`next`](Self::next) and fits in
    /// [`free`](Self::free), while nothing is held out of order: what
    /// [`insert`](Self::insert) would do with it, without its trimming and
    /// reassembly.
    pub(super) fn append(&mut self, data: Bytes) {
        debug_assert!(self.out_of_order.is_empty() && data.len() <= self.free());
        self.push_ready(data);
    }

    /// [`append`](Self::append) for borrowed bytes: copied into the store, as part
    /// of the last piece if that is a copy too.
    #[inline]
    pub(super) fn append_slice(&mut self, data: &[u8]) {
        debug_assert!(self.out_of_order.is_empty() && data.len() <= self.free());
        self.next += data.len() as u64;
        self.ready_len += data.len();
        self.ready.push_copy(data);
    }

    /// Appends in-order data.
    fn push_ready(&mut self, data: Bytes) {
        self.next += data.len() as u64;
        self.ready_len += data.len();
        self.ready.push(data);
    }

    /// The contiguous out-of-order range `[start, end)` holding `offset`, if any.
    pub(super) fn range_containing(&self, offset: u64) -> Option<(u64, u64)> {
        self.ranges
            .range(..=offset)
            .next_back()
            .filter(|&(_, &end)| end > offset)
            .map(|(&start, &end)| (start, end))
    }

    /// The contiguous out-of-order ranges, highest first.
    pub(super) fn ranges_descending(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().rev().map(|(&start, &end)| (start, end))
    }

    /// Adds `[start, end)` to the merged ranges.
    fn add_range(&mut self, mut start: u64, mut end: u64) {
        if let Some((&before, &before_end)) = self.ranges.range(..=start).next_back() {
            if before_end >= start {
                self.ranges.remove(&before);
                start = before;
                end = end.max(before_end);
            }
        }
        while let Some((&next, &next_end)) = self.ranges.range(start..=end).next() {
            self.ranges.remove(&next);
            end = end.max(next_end);
        }
        self.ranges.insert(start, end);
    }

    /// Moves the out-of-order pieces that the in-order data now reaches.
    fn drain_out_of_order(&mut self) {
        while let Some(entry) = self.ranges.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            entry.remove();
        }
        while let Some(entry) = self.out_of_order.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let data = entry.remove();
            self.out_of_order_len -= data.len();
            let end = start + data.len() as u64;
            if end > self.next {
                self.push_ready(data.slice((self.next - start) as usize..));
            }
        }
    }

    /// Stores the parts of `[start, start + data.len())` not held yet. `start` is
    /// after `next`.
    fn insert_out_of_order(&mut self, start: u64, data: Bytes) {
        let end = start + data.len() as u64;
        let mut cursor = start;
        // A piece that begins before `start` may cover its beginning.
        if let Some((&before, piece)) = self.out_of_order.range(..start).next_back() {
            cursor = cursor.max(before + piece.len() as u64);
        }
        let mut gaps = Vec::new();
        for (&piece_start, piece) in self.out_of_order.range(start..end) {
            if piece_start > cursor {
                gaps.push((cursor, piece_start));
            }
            cursor = cursor.max(piece_start + piece.len() as u64);
        }
        if cursor < end {
            gaps.push((cursor, end));
        }
        for (gap_start, gap_end) in gaps {
            let slice = data.slice((gap_start - start) as usize..(gap_end - start) as usize);
            self.out_of_order_len += slice.len();
            self.out_of_order.insert(gap_start, slice);
        }
        self.add_range(start, end);
    }

    /// Takes up to `max` in-order bytes: a slice of one received buffer, or a copy
    /// of (part of) one copied piece.
    pub(super) fn read(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
        }
        let front = self.ready.front()?.len();
        let data = if front <= max { self.ready.take_front()? } else { self.ready.split_front(max) };
        self.ready_len -= data.len();
        Some(data)
    }

    /// Takes all in-order bytes, handing each piece to `f` in order as a [`Bytes`]
    /// (copied pieces copied into one), and returns how many bytes: what calling
    /// [`read`](Self::read) with no limit until it gives `None` would hand out,
    /// without a last call to find nothing.
    pub(super) fn read_all(&mut self, mut f: impl FnMut(Bytes)) -> usize {
        let taken = self.ready_len;
        while let Some(data) = self.ready.take_front() {
            self.ready_len -= data.len();
            f(data);
        }
        taken
    }

    /// Takes all in-order bytes, lending each piece to `f` in order (nothing
    /// copied, nothing allocated), and returns how many bytes.
    pub(super) fn read_borrowed(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let taken = self.ready_len;
        while let Some(data) = self.ready.front() {
            f(data);
            self.ready.pop_front();
        }
        self.ready_len = 0;
        taken
    }

    /// Copies up to `out.len()` in-order bytes into `out` and takes them; returns
    /// how many.
    pub(super) fn read_into(&mut self, out: &mut [u8]) -> usize {
        let mut copied = 0;
        while copied < out.len() {
            let Some(front) = self.ready.front() else {
                break;
            };
            let (n, whole) = (front.len().min(out.len() - copied), front.len());
            crate::chunk::copy_short(&mut out[copied..copied + n], &front[..n]);
            copied += n;
            if n == whole {
                self.ready.pop_front();
            } else {
                self.ready.advance_front(n);
            }
        }
        self.ready_len -= copied;
        copied
    }

    /// Drops everything held (after a reset or abort).
    pub(super) fn clear(&mut self) {
        self.ready.clear();
        self.ready_len = 0;
        self.out_of_order.clear();
        self.out_of_order_len = 0;
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(buffer: &mut RecvBuffer) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = buffer.read(7) {
            assert!(chunk.len() <= 7);
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn read_all_hands_out_what_unlimited_reads_would() {
        let data = Bytes::from_static(b"0123456789abcdefghij");
        let fill = |buffer: &mut RecvBuffer| {
            buffer.insert(0, data.slice(0..5));
            buffer.insert(9, data.slice(9..14));
            buffer.insert(5, data.slice(5..9));
            buffer.insert(14, data.slice(14..16));
            // A partial read leaves the front buffer cut.
            assert_eq!(buffer.read(3).as_deref(), Some(&b"012"[..]));
        };
        let (mut by_reads, mut at_once) = (RecvBuffer::new(100), RecvBuffer::new(100));
        fill(&mut by_reads);
        fill(&mut at_once);
        let mut expected = Vec::new();
        while let Some(chunk) = by_reads.read(usize::MAX) {
            expected.push(chunk);
        }
        let mut got = Vec::new();
        assert_eq!(at_once.read_all(|chunk| got.push(chunk)), 13);
        assert_eq!(got, expected);
        assert_eq!((at_once.ready_len(), at_once.free()), (by_reads.ready_len(), by_reads.free()));
        assert_eq!((at_once.ready_len(), at_once.read_all(|_| panic!("nothing left"))), (0, 0));
    }

    #[test]
    fn hole_fills_deliver_in_order() {
        let mut buffer = RecvBuffer::new(100);
        let data = Bytes::from_static(b"abcdefghijkl");
        assert_eq!(buffer.insert(8, data.slice(8..12)).advanced, 0);
        assert_eq!(buffer.insert(4, data.slice(4..6)).advanced, 0);
        assert_eq!(buffer.out_of_order_len(), 6);
        let filled = buffer.insert(0, data.slice(0..5));
        assert_eq!(
            filled,
            Inserted {
                advanced: 6,
                had_out_of_order: true
            }
        );
        assert_eq!(buffer.insert(5, data.slice(5..10)).advanced, 6);
        assert_eq!(buffer.out_of_order_len(), 0);
        assert_eq!(buffer.next(), 12);
        assert_eq!(read_all(&mut buffer), b"abcdefghijkl");
    }

    #[test]
    fn out_of_order_ranges_merge_and_drain() {
        let mut buffer = RecvBuffer::new(100);
        let data = Bytes::from_static(b"0123456789abcdefghij");
        buffer.insert(10, data.slice(10..12));
        buffer.insert(4, data.slice(4..6));
        buffer.insert(14, data.slice(14..16));
        buffer.insert(12, data.slice(12..14));
        let ranges: Vec<_> = buffer.ranges_descending().collect();
        assert_eq!(ranges, [(10, 16), (4, 6)]);
        assert_eq!(buffer.range_containing(15), Some((10, 16)));
        assert_eq!(buffer.range_containing(16), None);
        assert_eq!(buffer.range_containing(6), None);
        buffer.insert(3, data.slice(3..11));
        assert_eq!(buffer.ranges_descending().collect::<Vec<_>>(), [(3, 16)]);
        buffer.insert(0, data.slice(0..3));
        assert_eq!(buffer.ranges_descending().count(), 0);
        assert_eq!(buffer.next(), 16);
    }

    #[test]
    fn duplicates_and_overlaps_are_stored_once() {
        let mut buffer = RecvBuffer::new(100);
        let data = Bytes::from_static(b"0123456789");
        buffer.insert(3, data.slice(3..6));
        buffer.insert(3, data.slice(3..6));
        buffer.insert(2, data.slice(2..8));
        buffer.insert(5, data.slice(5..7));
        assert_eq!(buffer.out_of_order_len(), 6);
        buffer.insert(0, data.slice(0..4));
        assert_eq!(buffer.ready_len(), 8);
        // Old data is dropped.
        assert_eq!(buffer.insert(1, data.slice(1..3)).advanced, 0);
        assert_eq!(buffer.insert(6, data.slice(6..10)).advanced, 2);
        assert_eq!(read_all(&mut buffer), b"0123456789");
    }

    #[test]
    fn nothing_beyond_the_window_is_kept() {
        let mut buffer = RecvBuffer::new(8);
        let data = Bytes::from_static(b"0123456789");
        buffer.insert(6, data.slice(6..10));
        assert_eq!(buffer.out_of_order_len(), 2);
        assert_eq!(buffer.insert(0, data.slice(0..10)).advanced, 8);
        assert_eq!(buffer.free(), 0);
        assert_eq!(buffer.insert(8, data.slice(8..10)).advanced, 0);
        assert_eq!(buffer.read(3).unwrap(), "012");
        assert_eq!(buffer.free(), 3);
        assert_eq!(buffer.insert(8, data.slice(8..10)).advanced, 2);
        buffer.clear();
        assert_eq!((buffer.ready_len(), buffer.read(1)), (0, None));
    }

    #[test]
    fn borrowed_appends_share_copied_pieces_and_read_back_in_order() {
        let mut buffer = RecvBuffer::new(1000);
        buffer.append_slice(b"ab");
        buffer.append_slice(b"cd");
        buffer.append(Bytes::from_static(b"EF"));
        buffer.append_slice(&[b'g'; 128]);
        buffer.append_slice(b"h");
        // "abcd" in one copied piece, "EF" shared, the g's and "h" in one copied
        // piece.
        let total = 4 + 2 + 128 + 1;
        assert_eq!(buffer.ready.len(), 3);
        assert_eq!((buffer.ready_len(), buffer.next()), (total, total as u64));
        let mut out = [0u8; 3];
        assert_eq!(buffer.read_into(&mut out), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(buffer.read(2).as_deref(), Some(&b"d"[..]));
        let mut lent = Vec::new();
        assert_eq!(buffer.read_borrowed(|d| lent.push(d.to_vec())), total - 4);
        assert_eq!(lent.len(), 2);
        assert_eq!(lent.concat(), [&b"EF"[..], &[b'g'; 128], b"h"].concat());
        assert_eq!((buffer.ready_len(), buffer.free()), (0, 1000));
        assert_eq!(buffer.read_borrowed(|_| panic!("nothing left")), 0);
        assert_eq!(buffer.read_into(&mut out), 0);
    }

    proptest! {
        /// A stream appended in pieces, some borrowed (copied) and some shared, and
        /// read in any mix of the four ways, comes out as the stream.
        #[test]
        fn every_way_of_appending_and_reading_gives_the_stream(
            pieces in proptest::collection::vec((1usize..300, any::<bool>()), 1..40),
            reads in proptest::collection::vec((0u8..4, 1usize..200), 1..40),
        ) {
            let total: usize = pieces.iter().map(|p| p.0).sum();
            let source: Vec<u8> = (0..total).map(|i| (i * 13 + i / 256) as u8).collect();
            let source = Bytes::from(source);
            let mut buffer = RecvBuffer::new(total);
            let mut out = Vec::new();
            let mut at = 0;
            let mut reads = reads.into_iter().cycle();
            for (len, borrowed) in pieces {
                if borrowed {
                    buffer.append_slice(&source[at..at + len]);
                } else {
                    buffer.append(source.slice(at..at + len));
                }
                at += len;
                let (how, max) = reads.next().expect("cycled");
                let before = out.len();
                match how {
                    0 => out.extend_from_slice(&buffer.read(max).unwrap_or_default()),
                    1 => { buffer.read_all(|d| out.extend_from_slice(&d)); }
                    2 => { buffer.read_borrowed(|d| out.extend_from_slice(d)); }
                    _ => {
                        let mut chunk = vec![0u8; max];
                        let n = buffer.read_into(&mut chunk);
                        out.extend_from_slice(&chunk[..n]);
                    }
                }
                prop_assert_eq!(buffer.ready_len(), at - out.len());
                prop_assert!(out.len() - before <= at - before);
            }
            buffer.read_borrowed(|d| out.extend_from_slice(d));
            prop_assert_eq!(&out[..], &source[..]);
            prop_assert_eq!(buffer.free(), total);
        }

        /// Pieces of a stream arriving in any order, overlapping and repeated, come
        /// out as the stream; the buffer never holds more than its capacity.
        #[test]
        fn any_arrival_order_reassembles(
            len in 1usize..400,
            capacity in 1usize..300,
            pieces in proptest::collection::vec((0usize..400, 1usize..80), 1..60),
            read_every in 1usize..10,
        ) {
            let source: Vec<u8> = (0..len).map(|i| (i * 7 + i / 256) as u8).collect();
            let source = Bytes::from(source);
            let mut buffer = RecvBuffer::new(capacity);
            let mut out = Vec::new();
            // The random pieces, then the whole stream in order to finish it off.
            let mut arrivals: Vec<(usize, usize)> = pieces
                .into_iter()
                .map(|(start, n)| (start % len, n))
                .map(|(start, n)| (start, (start + n).min(len)))
                .collect();
            arrivals.extend((0..len).step_by(50).map(|s| (s, (s + 50).min(len))));
            for (i, (start, end)) in arrivals.into_iter().enumerate() {
                buffer.insert(start as u64, source.slice(start..end));
                prop_assert!(buffer.ready_len() + buffer.out_of_order_len() <= capacity);
                let covered: u64 = buffer.ranges_descending().map(|(s, e)| e - s).sum();
                prop_assert_eq!(covered, buffer.out_of_order_len() as u64);
                if i % read_every == 0 {
                    out.extend_from_slice(&read_all(&mut buffer));
                }
            }
            // Whatever did not fit the window arrives again after reads.
            while (out.len() as u64) < len as u64 {
                out.extend_from_slice(&read_all(&mut buffer));
                let next = buffer.next() as usize;
                buffer.insert(next as u64, source.slice(next..));
            }
            out.extend_from_slice(&read_all(&mut buffer));
            prop_assert_eq!(&out[..], &source[..]);
        }
    }
}
