//! Frames as they cross between a device and the [`Stack`](super::Stack): moved as
//! [`Bytes`], or borrowed from (or written into) the device's own buffers.

use bytes::{Buf, Bytes};

/// A frame from [`Stack::poll_transmit_into`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxFrame {
    /// Written into the caller's buffer: its first `n` bytes.
    Written(usize),
    /// A frame to keep or pass on, as [`Stack::poll_transmit`] gives.
    Owned(Bytes),
}

/// A frame [`Stack::poll_transmit_any`] made ready.
pub(super) enum Built {
    /// A frame to hand over.
    Owned(Bytes),
    /// The first `len` bytes of the caller's buffer.
    Written(usize),
}

/// A received frame as the one-pass receive path takes it: a [`Bytes`] whose
/// payload is kept as a slice of it, or a borrowed one whose payload is copied.
pub(super) trait RxFrame: std::ops::Deref<Target = [u8]> + Sized {
    /// What a segment's data is taken as.
    type Data: crate::tcp::SegmentData;
    /// The bytes `start..end` (a valid range, `start <= end`), the frame consumed.
    fn into_payload(self, start: usize, end: usize) -> Self::Data;
    /// The whole frame as a [`Bytes`]: itself, or a copy.
    fn into_frame(self) -> Bytes;
}

impl RxFrame for Bytes {
    type Data = Bytes;

    #[inline(always)]
    fn into_payload(self, start: usize, end: usize) -> Bytes {
        // One variable throughout (no merge of two values, which the compiler
        // staged in a second stack slot: a copy whose loads were stalled), and
        // `truncate` only for padding or a frame longer than its datagram.
        let mut payload = self;
        if start == end {
            payload = Bytes::new();
        } else {
            if end < payload.len() {
                payload.truncate(end);
            }
            payload.advance(start);
        }
        payload
    }

    #[inline(always)]
    fn into_frame(self) -> Bytes {
        self
    }
}

impl<'a> RxFrame for &'a [u8] {
    type Data = &'a [u8];

    #[inline(always)]
    fn into_payload(self, start: usize, end: usize) -> &'a [u8] {
        &self[start..end]
    }

    #[inline]
    fn into_frame(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
