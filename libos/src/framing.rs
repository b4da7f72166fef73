//! Element framing over byte streams.
//!
//! TCP is a byte stream: a pushed multi-segment element can arrive split or merged
//! with its neighbours. With framing on (a per-queue option; both ends must use it),
//! each element is sent behind a small header, and the receiver pops exactly the
//! elements that were pushed, with the same segmentation:
//!
//! ```text
//! element := nsegs:u32le  len[0]:u32le … len[nsegs-1]:u32le  bytes[0] … bytes[nsegs-1]
//! ```
//!
//! The receiver never allocates by a length the peer sent without checking it against
//! its limits ([`FrameLimits`]): an oversized or malformed header is
//! [`QError::InvalidData`], and the queue stops reading.

use bytes::{Buf, Bytes, BytesMut};
use demi_runtime::{QError, Sga};

/// Bounds on what a framed queue accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Most segments in one element.
    pub max_segments: u32,
    /// Most payload bytes in one element.
    pub max_element: u32,
}

impl Default for FrameLimits {
    /// 1024 segments, 16 MiB.
    fn default() -> Self {
        FrameLimits { max_segments: 1024, max_element: 16 << 20 }
    }
}

/// The header for `sga`, to be sent before its segments.
pub(crate) fn encode_header(sga: &Sga, limits: FrameLimits) -> Result<Bytes, QError> {
    let n = sga.num_segments();
    if n == 0 || sga.is_empty() {
        return Err(QError::InvalidArgument("a framed element needs at least one byte"));
    }
    if n > limits.max_segments as usize || sga.len() > limits.max_element as usize {
        return Err(QError::MessageTooLong);
    }
    let mut hdr = BytesMut::with_capacity(4 + 4 * n);
    hdr.extend_from_slice(&(n as u32).to_le_bytes());
    for s in sga.segments() {
        hdr.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    Ok(hdr.freeze())
}

/// Reassembles framed elements from stream bytes.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    buf: BytesMut,
    limits: FrameLimits,
}

impl FrameDecoder {
    pub(crate) fn new(limits: FrameLimits) -> Self {
        FrameDecoder { buf: BytesMut::new(), limits }
    }

    /// Where received bytes go.
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// True when no partial element is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn read_u32(&self, at: usize) -> u32 {
        let b = &self.buf[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The next whole element, `Ok(None)` if more bytes are needed.
    pub(crate) fn decode(&mut self) -> Result<Option<Sga>, QError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let n = self.read_u32(0);
        if n == 0 || n > self.limits.max_segments {
            return Err(QError::InvalidData);
        }
        let hdr_len = 4 + 4 * n as usize;
        if self.buf.len() < hdr_len {
            return Ok(None);
        }
        let mut total: u64 = 0;
        for i in 0..n as usize {
            total += u64::from(self.read_u32(4 + 4 * i));
        }
        if total == 0 || total > u64::from(self.limits.max_element) {
            return Err(QError::InvalidData);
        }
        let total = total as usize;
        if self.buf.len() < hdr_len + total {
            // Reserve for the rest of this element (bounded by the limit above).
            self.buf.reserve(hdr_len + total - self.buf.len());
            return Ok(None);
        }
        let lens: Vec<usize> = (0..n as usize).map(|i| self.read_u32(4 + 4 * i) as usize).collect();
        self.buf.advance(hdr_len);
        let mut payload = self.buf.split_to(total).freeze();
        let mut sga = Sga::new();
        for len in lens {
            sga.push_segment(payload.split_to(len));
        }
        Ok(Some(sga))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sga: &Sga) -> Vec<u8> {
        let mut out = encode_header(sga, FrameLimits::default()).unwrap().to_vec();
        out.extend_from_slice(&sga.to_vec());
        out
    }

    #[test]
    fn round_trip_keeps_segmentation_byte_by_byte() {
        let sga = Sga::from_segments([Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde")]);
        let wire = frame(&sga);
        let mut dec = FrameDecoder::new(FrameLimits::default());
        for (i, b) in wire.iter().enumerate() {
            assert_eq!(dec.decode().unwrap(), None, "complete too early at byte {i}");
            dec.buffer().extend_from_slice(&[*b]);
        }
        let got = dec.decode().unwrap().unwrap();
        assert_eq!(got.segments(), sga.segments());
        assert!(dec.is_empty());
    }

    #[test]
    fn two_elements_in_one_read() {
        let a = Sga::from(&b"first"[..]);
        let b = Sga::from_segments([Bytes::from_static(b"x"), Bytes::from_static(b"yz")]);
        let mut dec = FrameDecoder::new(FrameLimits::default());
        dec.buffer().extend_from_slice(&frame(&a));
        dec.buffer().extend_from_slice(&frame(&b));
        assert_eq!(dec.decode().unwrap().unwrap().to_vec(), b"first");
        assert_eq!(dec.decode().unwrap().unwrap().segments(), b.segments());
        assert_eq!(dec.decode().unwrap(), None);
    }

    #[test]
    fn hostile_headers_are_rejected_without_allocating() {
        let limits = FrameLimits { max_segments: 4, max_element: 1000 };
        let mut dec = FrameDecoder::new(limits);
        dec.buffer().extend_from_slice(&5u32.to_le_bytes());
        assert_eq!(dec.decode(), Err(QError::InvalidData));

        let mut dec = FrameDecoder::new(limits);
        dec.buffer().extend_from_slice(&1u32.to_le_bytes());
        dec.buffer().extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(dec.decode(), Err(QError::InvalidData));
        assert!(dec.buffer().capacity() < 1 << 20);

        let mut dec = FrameDecoder::new(limits);
        dec.buffer().extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(dec.decode(), Err(QError::InvalidData));
    }

    #[test]
    fn encoder_enforces_limits() {
        let limits = FrameLimits { max_segments: 2, max_element: 4 };
        let three = Sga::from_segments([Bytes::from_static(b"a"), Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        assert_eq!(encode_header(&three, limits), Err(QError::MessageTooLong));
        assert_eq!(encode_header(&Sga::from(&b"12345"[..]), limits), Err(QError::MessageTooLong));
        assert!(matches!(encode_header(&Sga::new(), limits), Err(QError::InvalidArgument(_))));
    }
}
