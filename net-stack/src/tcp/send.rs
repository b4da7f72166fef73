//! The send queue: the application's buffers from the oldest unacknowledged byte on.
//!
//! Bytes handed over as [`Bytes`] (`tcp_send`) are kept as they are, never copied;
//! bytes lent as a slice (`tcp_send_slice`) are copied into the queue's store,
//! consecutive writes as one piece ([`Chunks`]).
//! Segments are cut from the queue as [`Payload`]s of slices, and acknowledged bytes
//! are released from the front. Which bytes have been sent, and which need sending
//! again, is the connection's bookkeeping (`snd_una`, `snd_nxt`, `snd_max`); the
//! queue only maps sequence numbers to bytes.

use std::cell::Cell;

use bytes::Bytes;

use super::segment::Payload;
use crate::chunk::{Chunks, FrameOut};
use crate::wire::{checksum, SeqNumber};

/// Queued outgoing data, addressed by sequence number.
#[derive(Debug)]
pub(super) struct SendQueue {
    chunks: Chunks,
    /// Total bytes in `chunks`.
    len: usize,
    /// The sequence number of the first queued byte.
    head: SeqNumber,
    /// The chunk where the last copy or slice began: its index and the sequence
    /// number of its first byte. Segments go out in order, so the next one starts
    /// in that chunk or a few after it, and finding it costs a walk over the last
    /// segment's chunks instead of one from the head (which grew with every element
    /// queued: small pushes into a large buffer made each segment scan hundreds).
    cursor: Cell<(usize, SeqNumber)>,
}

impl SendQueue {
    /// An empty queue whose first byte will have sequence number `head`.
    pub(super) fn new(head: SeqNumber) -> SendQueue {
        SendQueue {
            chunks: Chunks::default(),
            len: 0,
            head,
            cursor: Cell::new((0, head)),
        }
    }

    /// Bytes queued (sent or not, but not acknowledged).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The sequence number just after the last queued byte.
    pub(super) fn end(&self) -> SeqNumber {
        self.head + self.len
    }

    /// Appends `data`. (Inlined: called, it took `data` through a stack copy
    /// stored in 8-byte pieces and read back 16 bytes at a time.)
    #[inline]
    pub(super) fn push(&mut self, data: Bytes) {
        self.len += data.len();
        self.chunks.push(data);
    }

    /// Appends a copy of `data`: into the last chunk if it is an inline one with
    /// room, else into a new chunk.
    #[inline]
    pub(super) fn push_slice(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_copy(data);
    }

    /// Releases every byte before `ack` and returns how many were released. An `ack`
    /// at or before the head releases nothing; one past the end releases everything
    /// (it covers a FIN).
    pub(super) fn ack_to(&mut self, ack: SeqNumber) -> usize {
        let distance = ack - self.head;
        if distance <= 0 {
            return 0;
        }
        // The usual case, where a peer acknowledges each segment of a request-response
        // exchange: exactly the front buffer.
        if self.chunks.front().is_some_and(|front| front.len() == distance as usize) {
            let released = distance as usize;
            self.chunks.pop_front();
            self.len -= released;
            self.head += released;
            // What `release` leaves the cursor at with one buffer popped.
            let (index, start) = self.cursor.get();
            self.cursor.set(if index <= 1 { (0, self.head) } else { (index - 1, start) });
            return released;
        }
        self.release(distance as usize)
    }

    /// Releases the first `distance` bytes (everything if fewer are queued) and
    /// returns how many: [`ack_to`](Self::ack_to) past its fast case.
    #[inline(never)]
    fn release(&mut self, distance: usize) -> usize {
        let mut left = distance.min(self.len);
        let released = left;
        let mut popped = 0;
        while left > 0 {
            let Some(front) = self.chunks.front().map(<[u8]>::len) else {
                break;
            };
            if front <= left {
                left -= front;
                self.chunks.pop_front();
                popped += 1;
            } else {
                self.chunks.advance_front(left);
                left = 0;
            }
        }
        self.len -= released;
        self.head += released;
        // The cursor's chunk moved down by `popped`; the first chunk starts at the head.
        let (index, start) = self.cursor.get();
        self.cursor.set(match index.checked_sub(popped) {
            Some(0) | None => (0, self.head),
            Some(i) => (i, start),
        });
        released
    }

    /// The chunk holding byte `seq` (at or after the head) and how far into it that
    /// byte is: from the cursor when `seq` is at or past it, else from the head.
    fn locate(&self, seq: SeqNumber) -> (usize, usize) {
        let (mut index, mut start) = self.cursor.get();
        if seq.lt(start) || index >= self.chunks.len() {
            (index, start) = (0, self.head);
        }
        let mut skip = (seq - start) as usize;
        while let Some(chunk) = self.chunks.get(index) {
            if skip < chunk.len() {
                break;
            }
            skip -= chunk.len();
            start += chunk.len();
            index += 1;
        }
        self.cursor.set((index, start));
        (index, skip)
    }

    /// How many of `len` bytes from `seq` the queue holds.
    pub(super) fn available(&self, seq: SeqNumber, len: usize) -> usize {
        let offset = seq - self.head;
        if offset < 0 {
            return 0;
        }
        self.len.saturating_sub(offset as usize).min(len)
    }

    /// Appends up to `len` bytes starting at `seq` to `out` (bytes outside the
    /// queue are not included) and, if `summed`, returns their partial checksum
    /// (RFC 1071): the payload summed on its way into the frame, with no slice of the
    /// queued buffers made. Not `summed` (checksums offloaded): 0.
    ///
    /// Most often the segment lies within the chunk the cursor is on (the one the
    /// last segment came from, or the first): that case is inlined into the caller
    /// and taken from the chunk without the head check and the walk, which would
    /// find the same place and leave the cursor as it is. (A cursor on a queued
    /// chunk always has that chunk's start, which is at or after the head.)
    #[inline]
    pub(super) fn copy_out<O: FrameOut>(&self, seq: SeqNumber, len: usize, out: &mut O, summed: bool) -> u32 {
        let (index, start) = self.cursor.get();
        if let Some(chunk) = self.chunks.get(index) {
            let skip = seq - start;
            if skip >= 0 && (skip as usize) < chunk.len() && skip as usize + len <= chunk.len() {
                return Self::copy_piece(&chunk[skip as usize..skip as usize + len], out, summed);
            }
        }
        self.copy_out_any(seq, len, out, summed)
    }

    /// [`copy_out`](Self::copy_out) from anywhere in the queue.
    #[inline(never)]
    fn copy_out_any<O: FrameOut>(&self, seq: SeqNumber, len: usize, out: &mut O, summed: bool) -> u32 {
        if (seq - self.head) < 0 {
            return 0;
        }
        let (first, mut skip) = self.locate(seq);
        // The usual case, a segment within one of the application's buffers: one
        // piece, no iterator.
        if let Some(chunk) = self.chunks.get(first) {
            if chunk.len() - skip >= len {
                return Self::copy_piece(&chunk[skip..skip + len], out, summed);
            }
        }
        let mut want = len;
        let (mut sum, mut odd) = (0u32, false);
        for chunk in self.chunks.iter_from(first) {
            if want == 0 {
                break;
            }
            let take = (chunk.len() - skip).min(want);
            let piece = &chunk[skip..skip + take];
            if !summed {
                out.put(piece, false);
                want -= take;
                skip = 0;
                continue;
            }
            let part = checksum::fold(out.put(piece, true));
            // A piece starting at an odd offset has its bytes in the other halves
            // of the 16-bit words: its contribution is its own sum byte-swapped.
            let part = if odd { part.swap_bytes() } else { part };
            sum = checksum::combine(sum, u32::from(part));
            odd ^= take % 2 == 1;
            want -= take;
            skip = 0;
        }
        sum
    }

    /// Appends `piece` to `out` and returns its partial checksum if `summed` (else 0).
    #[inline]
    fn copy_piece<O: FrameOut>(piece: &[u8], out: &mut O, summed: bool) -> u32 {
        out.put(piece, summed)
    }

    /// Up to `len` bytes starting at `seq`, as slices of the queued buffers. Bytes
    /// outside the queue are not included.
    pub(super) fn payload(&self, seq: SeqNumber, len: usize) -> Payload {
        let mut payload = Payload::new();
        if (seq - self.head) < 0 {
            return payload;
        }
        let (first, mut skip) = self.locate(seq);
        let mut want = len;
        for (index, chunk) in self.chunks.iter_from(first).enumerate() {
            if want == 0 {
                break;
            }
            let take = (chunk.len() - skip).min(want);
            payload.push(self.chunks.slice_bytes(first + index, skip, skip + take));
            want -= take;
            skip = 0;
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn queue() -> SendQueue {
        let mut queue = SendQueue::new(SeqNumber(u32::MAX - 2));
        queue.push(Bytes::from_static(b"hello "));
        queue.push(Bytes::new());
        queue.push(Bytes::from_static(b"world"));
        queue
    }

    #[test]
    fn acks_of_the_front_buffer_release_what_the_general_case_does() {
        // Every ACK distance, with the cursor at every buffer: `ack_to` (which
        // takes its fast case when the ACK ends the front buffer) against `release`.
        let head = SeqNumber(u32::MAX - 4);
        // Moved buffers (four pieces), and the same bytes lent: the first three
        // share one copied piece, then a shared buffer, then the last copy.
        let build = |cursor_at: usize, lent: bool| {
            let mut queue = SendQueue::new(head);
            for len in [3, 5, 2, 4] {
                let data = vec![len as u8; len];
                if !lent {
                    queue.push(Bytes::from(data));
                    continue;
                }
                if len == 4 {
                    // Shared: the last write is a piece of its own.
                    queue.push(Bytes::from_static(&[9; 118]));
                }
                queue.push_slice(&data);
            }
            queue.locate(head + cursor_at);
            queue
        };
        for lent in [false, true] {
            let len = build(0, lent).len();
            assert_eq!(build(0, lent).chunks.len(), if lent { 3 } else { 4 });
            for cursor_at in 0..len - 1 {
                for distance in 1..len + 2 {
                    let (mut fast, mut general) = (build(cursor_at, lent), build(cursor_at, lent));
                    assert_eq!(fast.ack_to(head + distance), general.release(distance));
                    let state = |q: &SendQueue| (q.chunks.clone(), q.len, q.head, q.cursor.get());
                    assert_eq!(state(&fast), state(&general), "lent {lent}, cursor at {cursor_at}, ack {distance}");
                }
            }
        }
    }

    #[test]
    fn payload_spans_buffers_across_the_wrap() {
        let queue = queue();
        assert_eq!(queue.len(), 11);
        assert_eq!(queue.end(), SeqNumber(8));
        let head = SeqNumber(u32::MAX - 2);
        assert_eq!(queue.payload(head + 4, 4).to_bytes(), "o wo");
        assert_eq!(queue.payload(head + 4, 4).chunks().count(), 2);
        assert_eq!(queue.payload(head + 6, 100).to_bytes(), "world");
        assert!(queue.payload(head + 11, 5).is_empty());
        assert!(queue.payload(head - 1, 5).is_empty());
    }

    #[test]
    fn copies_and_slices_match_the_bytes_in_any_order_of_calls() {
        // Many small chunks; reads in order (the cursor's case), back-steps
        // (retransmissions), and acks in between, checked against a flat copy.
        // Reads up to 1500 bytes, then up to 40 (mostly within one chunk, often
        // the cursor's).
        for longest in [1500, 40] {
            check_copies(longest);
        }
    }

    fn check_copies(longest: usize) {
        let start = SeqNumber(u32::MAX - 1000);
        let mut queue = SendQueue::new(start);
        let mut flat = Vec::new();
        let mut x = 0x1234_5678u32;
        let mut rand = |n: usize| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize % n
        };
        for i in 0..400 {
            let chunk: Vec<u8> = (0..1 + rand(300)).map(|j| (i * 7 + j) as u8).collect();
            flat.extend_from_slice(&chunk);
            // Half lent (copied into the store, consecutive ones as one piece), half moved.
            if rand(2) == 0 {
                queue.push_slice(&chunk);
            } else {
                queue.push(Bytes::from(chunk));
            }
        }
        let mut acked = 0usize;
        let mut next = 0usize;
        while acked < flat.len() {
            let (from, len) = match rand(10) {
                0 => (acked + rand(next - acked + 1), 1 + rand(2000)), // a retransmission
                _ => (next, 1 + rand(longest)),
            };
            let want = &flat[from.min(flat.len())..(from + len).min(flat.len())];
            let mut out = BytesMut::new();
            let sum = queue.copy_out(start + from, len, &mut out, true);
            assert_eq!(&out[..], want, "copy of {len} from {from}");
            assert_eq!(checksum::fold(sum), checksum::fold(checksum::sum(want)), "sum of {len} from {from}");
            assert_eq!(queue.payload(start + from, len).to_bytes(), want, "slices of {len} from {from}");
            next = next.max((from + len).min(flat.len()));
            if rand(3) == 0 {
                let to = acked + rand(next - acked + 1);
                queue.ack_to(start + to);
                acked = to.max(acked);
                if next == flat.len() && rand(4) == 0 {
                    acked = flat.len();
                    queue.ack_to(start + acked);
                }
            }
        }
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn acks_release_from_the_front() {
        let mut queue = queue();
        let head = SeqNumber(u32::MAX - 2);
        assert_eq!(queue.ack_to(head), 0);
        assert_eq!(queue.ack_to(head - 5), 0);
        assert_eq!(queue.ack_to(head + 3), 3);
        assert_eq!(queue.payload(head + 3, 5).to_bytes(), "lo wo");
        assert_eq!(queue.ack_to(head + 8), 5);
        assert_eq!(queue.payload(head + 8, 5).to_bytes(), "rld");
        // Past the end (a FIN): everything, and the head stops at the end.
        assert_eq!(queue.ack_to(head + 12), 3);
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.end(), head + 11);
    }
}
