//! Scatter-gather arrays: the atomic element of every demi queue.
//!
//! An [`Sga`] is an ordered list of refcounted, immutable buffers ([`Bytes`]) and an
//! optional peer address. A push hands the whole array to the queue and the queue
//! delivers it as **one** element; where the queue keeps element boundaries (UDP,
//! framed TCP, memory queues, storage logs) the same segments pop out on the other side.
//!
//! Buffers are refcounted, so the application may drop its copy as soon as `push`
//! returns: the memory stays alive until the I/O that uses it is done
//! (Demikernel's *free-protection*, by construction). Device- or pool-backed memory
//! sits behind the same [`Bytes`] interface via [`Bytes::from_owner`], with no copy.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::net::SocketAddr;

/// Segments an [`Sga`] stores inline before it allocates.
const INLINE_SEGMENTS: usize = 2;

/// A scatter-gather array: an ordered list of buffers forming one queue element,
/// with an optional address (the destination of a `pushto`, the source of a popped
/// datagram).
///
/// ```
/// use demi_runtime::Sga;
/// let mut sga = Sga::from(&b"hello "[..]);
/// sga.push_segment(bytes::Bytes::from_static(b"world"));
/// assert_eq!(sga.len(), 11);
/// assert_eq!(sga.num_segments(), 2);
/// assert_eq!(&sga.to_bytes()[..], b"hello world");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sga {
    segments: SmallVec<[Bytes; INLINE_SEGMENTS]>,
    len: usize,
    addr: Option<SocketAddr>,
}

impl Sga {
    /// An empty array (no segments, no address). A popped empty `Sga` from a TCP
    /// queue means the peer closed its side of the stream.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// An array of the given segments.
    pub fn from_segments<I: IntoIterator<Item = Bytes>>(segments: I) -> Self {
        let mut sga = Self::new();
        for s in segments {
            sga.push_segment(s);
        }
        sga
    }

    /// Appends a segment. Empty segments are kept: framed queues reproduce the exact
    /// segmentation that was pushed.
    #[inline]
    pub fn push_segment(&mut self, segment: Bytes) {
        self.len += segment.len();
        self.segments.push(segment);
    }

    /// Sets the address and returns the array (builder style).
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Sets or clears the address.
    pub fn set_addr(&mut self, addr: Option<SocketAddr>) {
        self.addr = addr;
    }

    /// The address attached to this element, if any.
    #[inline]
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Total bytes over all segments.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the array holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of segments.
    #[inline]
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// The segments, in order.
    #[inline]
    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// Iterates over the segments as byte slices.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().map(|b| &b[..])
    }

    /// Takes the segments out, leaving the array empty.
    pub fn into_segments(self) -> SmallVec<[Bytes; INLINE_SEGMENTS]> {
        self.segments
    }

    /// The contents as one contiguous buffer: no copy for zero or one segment, one
    /// copy otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match self.segments.len() {
            0 => Bytes::new(),
            1 => self.segments[0].clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len);
                for s in &self.segments {
                    out.extend_from_slice(s);
                }
                out.freeze()
            }
        }
    }

    /// The contents copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for s in &self.segments {
            out.extend_from_slice(s);
        }
        out
    }

    /// Removes the last segment and returns it (`None` if there is none).
    ///
    /// ```
    /// use demi_runtime::Sga;
    /// let mut sga = Sga::from_segments([bytes::Bytes::from_static(b"ab"), bytes::Bytes::from_static(b"c")]);
    /// assert_eq!(sga.pop_segment().as_deref(), Some(&b"c"[..]));
    /// assert_eq!(sga.len(), 2);
    /// ```
    #[inline]
    pub fn pop_segment(&mut self) -> Option<Bytes> {
        let segment = self.segments.pop()?;
        self.len -= segment.len();
        Some(segment)
    }

    /// Drops the first `n` bytes (whole segments, then a prefix of the next one),
    /// and the empty segments met on the way. Used by queues that write an element
    /// in several goes.
    ///
    /// # Panics
    /// Never: `n` larger than [`len`](Self::len) empties the array.
    pub fn advance(&mut self, n: usize) {
        // Fast path: the whole element went (a push that fit in one go). Dropping
        // every segment is what the general path does then too, empty ones included.
        if n >= self.len {
            self.len = 0;
            self.segments.clear();
            return;
        }
        self.advance_part(n);
    }

    /// [`advance`](Self::advance), the general path.
    fn advance_part(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        let mut drop_whole = 0;
        for s in self.segments.iter_mut() {
            if n >= s.len() {
                n -= s.len();
                drop_whole += 1;
            } else {
                let _ = s.split_to(n);
                break;
            }
        }
        self.segments.drain(..drop_whole);
    }
}

impl std::fmt::Debug for Sga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sga")
            .field("len", &self.len)
            .field("segments", &self.segments.len())
            .field("addr", &self.addr)
            .finish()
    }
}

impl From<Bytes> for Sga {
    fn from(b: Bytes) -> Self {
        let mut sga = Sga::new();
        sga.push_segment(b);
        sga
    }
}

impl From<Vec<u8>> for Sga {
    fn from(v: Vec<u8>) -> Self {
        Sga::from(Bytes::from(v))
    }
}

impl From<&[u8]> for Sga {
    fn from(v: &[u8]) -> Self {
        Sga::from(Bytes::copy_from_slice(v))
    }
}

impl From<&'static str> for Sga {
    fn from(s: &'static str) -> Self {
        Sga::from(Bytes::from_static(s.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_whole_and_partial_segments() {
        let mut sga = Sga::from_segments([
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ]);
        sga.advance(5);
        assert_eq!(sga.len(), 3);
        assert_eq!(sga.num_segments(), 2);
        assert_eq!(sga.to_vec(), b"fgh");
        sga.advance(100);
        assert!(sga.is_empty());
        assert_eq!(sga.num_segments(), 0);
    }

    /// The fast path of `advance` (the whole element) leaves what the general path
    /// leaves, for every split of up to four segments (empty ones included) and
    /// every `n` up to past the end.
    #[test]
    fn advance_fast_path_matches_the_general_path() {
        let data = Bytes::from_static(b"0123456789");
        for shape in 0..5u32.pow(4) {
            let lens: Vec<usize> = (0..4).map(|k| (shape / 5u32.pow(k) % 5) as usize).collect();
            let mut at = 0;
            let segs: Vec<Bytes> = lens
                .iter()
                .map(|&l| {
                    let s = data.slice(at..at + l.min(10 - at));
                    at += s.len();
                    s
                })
                .collect();
            let whole = Sga::from_segments(segs);
            for n in 0..=whole.len() + 2 {
                let (mut fast, mut general) = (whole.clone(), whole.clone());
                fast.advance(n);
                general.advance_part(n);
                assert_eq!(fast, general, "segments {lens:?}, n {n}");
                assert_eq!(fast.segments(), general.segments(), "segments {lens:?}, n {n}");
            }
        }
    }

    #[test]
    fn one_segment_to_bytes_is_zero_copy() {
        let b = Bytes::from(vec![7u8; 64]);
        let sga = Sga::from(b.clone());
        assert_eq!(sga.to_bytes().as_ptr(), b.as_ptr());
    }
}
