//! The send queue: the application's buffers from the oldest unacknowledged byte on.
//!
//! Bytes are kept as the [`Bytes`] the application handed over, never copied.
//! Segments are cut from the queue as [`Payload`]s of slices, and acknowledged bytes
//! are released from the front. Which bytes have been sent, and which need sending
//! again, is the connection's bookkeeping (`snd_una`, `snd_nxt`, `snd_max`); the
//! queue only maps sequence numbers to bytes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::segment::Payload;
use crate::wire::{checksum, SeqNumber};

/// Queued outgoing data, addressed by sequence number.
#[derive(Debug)]
pub(super) struct SendQueue {
    chunks: VecDeque<Bytes>,
    /// Total bytes in `chunks`.
    len: usize,
    /// The sequence number of the first queued byte.
    head: SeqNumber,
}

impl SendQueue {
    /// An empty queue whose first byte will have sequence number `head`.
    pub(super) fn new(head: SeqNumber) -> SendQueue {
        SendQueue {
            chunks: VecDeque::new(),
            len: 0,
            head,
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

    /// Appends `data`.
    pub(super) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Releases every byte before `ack` and returns how many were released. An `ack`
    /// at or before the head releases nothing; one past the end releases everything
    /// (it covers a FIN).
    pub(super) fn ack_to(&mut self, ack: SeqNumber) -> usize {
        let distance = ack - self.head;
        if distance <= 0 {
            return 0;
        }
        let mut left = (distance as usize).min(self.len);
        let released = left;
        while left > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(left);
                left = 0;
            }
        }
        self.len -= released;
        self.head += released;
        released
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
    pub(super) fn copy_out(&self, seq: SeqNumber, len: usize, out: &mut BytesMut, summed: bool) -> u32 {
        let offset = seq - self.head;
        if offset < 0 {
            return 0;
        }
        let mut skip = offset as usize;
        let mut want = len;
        let (mut sum, mut odd) = (0u32, false);
        for chunk in &self.chunks {
            if want == 0 {
                break;
            }
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            let take = (chunk.len() - skip).min(want);
            let piece = &chunk[skip..skip + take];
            out.extend_from_slice(piece);
            if !summed {
                want -= take;
                skip = 0;
                continue;
            }
            let part = checksum::fold(checksum::sum(piece));
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

    /// Up to `len` bytes starting at `seq`, as slices of the queued buffers. Bytes
    /// outside the queue are not included.
    pub(super) fn payload(&self, seq: SeqNumber, len: usize) -> Payload {
        let mut payload = Payload::new();
        let offset = seq - self.head;
        if offset < 0 {
            return payload;
        }
        let mut skip = offset as usize;
        let mut want = len;
        for chunk in &self.chunks {
            if want == 0 {
                break;
            }
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            let take = (chunk.len() - skip).min(want);
            payload.push(chunk.slice(skip..skip + take));
            want -= take;
            skip = 0;
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> SendQueue {
        let mut queue = SendQueue::new(SeqNumber(u32::MAX - 2));
        queue.push(Bytes::from_static(b"hello "));
        queue.push(Bytes::new());
        queue.push(Bytes::from_static(b"world"));
        queue
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
