//! The on-device layout of a demi log (format version 1).
//!
//! ```text
//! block 0        superblock (first 40 bytes used, rest zero)
//! block 1 ...    batches: records packed back to back (8-byte aligned), the last
//!                block of each batch padded with zeros; the next batch starts on
//!                the next block boundary.
//! ```
//!
//! Superblock (little endian):
//! `0..8 magic "DEMILOG\0" | 8..12 version | 12..16 block size | 16..24 log id |
//! 24..28 max record bytes | 28..32 epoch | 32..36 crc32c(0..32) | 36..40 zero`.
//! It fits in one 512-byte sector, so rewriting it (to bump the epoch) is atomic on
//! any disk that writes sectors atomically.
//!
//! Record (little endian), header of [`RECORD_HEADER`] bytes:
//! `0..4 magic "DREC" | 4..8 crc32c(8..end) | 8..16 seq | 16..20 payload length |
//! 20..24 epoch | 24..28 crc of the previous record | 28..30 segment count |
//! 30..32 zero | 32..36 crc32c(8..32) | 36..40 zero`, then one u32 length per
//! segment, then the payload.
//!
//! What a valid record needs: both checksums, `seq` equal to the previous record's
//! plus one (0 first), the previous-record crc equal to the actual previous record's
//! (for record 0: a value derived from the log id), and an epoch not below the
//! previous record's nor above the superblock's. The chain and the epoch make stale
//! records from a torn batch that a later batch partly overwrote unacceptable: each
//! open that may write bumps the epoch first.

use crate::crc::{crc32c, crc32c_append};
use crate::error::StorageError;
use bytes::{Bytes, BytesMut};
use demi_runtime::Sga;

/// Superblock magic.
pub const MAGIC: [u8; 8] = *b"DEMILOG\0";
/// Format version written by this build (and the newest it reads).
pub const VERSION: u32 = 1;
/// The layout's block size: batches start on multiples of it.
pub const BLOCK_SIZE: u32 = 4096;
/// Record magic ("DREC").
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"DREC");
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 40;
/// Default and largest accepted payload of one record.
pub const DEFAULT_MAX_RECORD: u32 = 1 << 20;
/// Most segments in one record.
pub const MAX_SEGMENTS: usize = 1024;

/// The decoded superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Format version.
    pub version: u32,
    /// Layout block size.
    pub block_size: u32,
    /// Random identity of this log (seeds the record chain).
    pub log_id: u64,
    /// Largest payload accepted.
    pub max_record: u32,
    /// Bumped by every open that may write.
    pub epoch: u32,
}

impl Superblock {
    /// Bytes used at the start of block 0.
    pub const LEN: usize = 40;

    /// A new superblock for a fresh log.
    pub fn new(log_id: u64, max_record: u32) -> Self {
        Superblock { version: VERSION, block_size: BLOCK_SIZE, log_id, max_record, epoch: 1 }
    }

    /// Writes the superblock into `dst` (at least [`LEN`](Self::LEN) bytes).
    pub fn encode(&self, dst: &mut [u8]) {
        dst[..Self::LEN].fill(0);
        dst[0..8].copy_from_slice(&MAGIC);
        dst[8..12].copy_from_slice(&self.version.to_le_bytes());
        dst[12..16].copy_from_slice(&self.block_size.to_le_bytes());
        dst[16..24].copy_from_slice(&self.log_id.to_le_bytes());
        dst[24..28].copy_from_slice(&self.max_record.to_le_bytes());
        dst[28..32].copy_from_slice(&self.epoch.to_le_bytes());
        let c = crc32c(&dst[0..32]);
        dst[32..36].copy_from_slice(&c.to_le_bytes());
    }

    /// Parses block 0. Wrong magic (or too little data) is [`StorageError::NotALog`];
    /// a newer version [`StorageError::UnsupportedVersion`]; a bad checksum or
    /// impossible field [`StorageError::CorruptSuperblock`].
    pub fn decode(src: &[u8]) -> Result<Superblock, StorageError> {
        if src.len() < Self::LEN || src[0..8] != MAGIC {
            return Err(StorageError::NotALog);
        }
        let version = le32(&src[8..]);
        if version > VERSION {
            return Err(StorageError::UnsupportedVersion { found: version, supported: VERSION });
        }
        if crc32c(&src[0..32]) != le32(&src[32..]) {
            return Err(StorageError::CorruptSuperblock);
        }
        let sb = Superblock {
            version,
            block_size: le32(&src[12..]),
            log_id: le64(&src[16..]),
            max_record: le32(&src[24..]),
            epoch: le32(&src[28..]),
        };
        if version == 0 || !sb.block_size.is_power_of_two() || sb.block_size < 512 || sb.max_record == 0 {
            return Err(StorageError::CorruptSuperblock);
        }
        Ok(sb)
    }

    /// The chain value record 0 links to.
    pub fn chain_seed(&self) -> u32 {
        crc32c(&self.log_id.to_le_bytes())
    }
}

/// A parsed record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Checksum over the record from byte 8 to its end.
    pub crc: u32,
    /// Sequence number.
    pub seq: u64,
    /// Payload bytes.
    pub payload_len: u32,
    /// Epoch of the open that wrote it.
    pub epoch: u32,
    /// Checksum of the previous record.
    pub prev_crc: u32,
    /// Segments.
    pub nsegs: u16,
}

impl RecordHeader {
    /// Bytes from the header's start to the end of the payload.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER + 4 * self.nsegs as usize + self.payload_len as usize
    }

    /// Parses and checks a header (magic, header checksum, sane sizes). `None` means
    /// no record starts here.
    pub fn parse(src: &[u8], max_record: u32) -> Option<RecordHeader> {
        if src.len() < RECORD_HEADER || le32(src) != RECORD_MAGIC {
            return None;
        }
        if crc32c(&src[8..32]) != le32(&src[32..]) {
            return None;
        }
        let h = RecordHeader {
            crc: le32(&src[4..]),
            seq: le64(&src[8..]),
            payload_len: le32(&src[16..]),
            epoch: le32(&src[20..]),
            prev_crc: le32(&src[24..]),
            nsegs: u16::from_le_bytes([src[28], src[29]]),
        };
        if h.payload_len > max_record || h.nsegs as usize > MAX_SEGMENTS || h.nsegs == 0 {
            return None;
        }
        Some(h)
    }

    /// Checks the whole record (`src` starts at the header and holds
    /// [`record_len`](Self::record_len) bytes): the checksum and that the segment
    /// lengths add up.
    pub fn verify(&self, src: &[u8]) -> bool {
        let len = self.record_len();
        if src.len() < len || crc32c(&src[8..len]) != self.crc {
            return false;
        }
        let segs = &src[RECORD_HEADER..RECORD_HEADER + 4 * self.nsegs as usize];
        let total: u64 = segs.chunks_exact(4).map(|c| le32(c) as u64).sum();
        total == self.payload_len as u64
    }

    /// The record's payload as the segments that were pushed (one copy, one
    /// allocation). `src` must have passed [`verify`](Self::verify).
    pub fn to_sga(&self, src: &[u8]) -> Sga {
        let table = RECORD_HEADER + 4 * self.nsegs as usize;
        let payload = Bytes::from(BytesMut::from(&src[table..table + self.payload_len as usize]));
        let mut sga = Sga::new();
        if self.nsegs == 1 {
            // The whole payload (verify checked the length): no slice, whose first
            // clone of a Vec-backed Bytes would allocate a shared header.
            sga.push_segment(payload);
            return sga;
        }
        let mut at = 0;
        for c in src[RECORD_HEADER..table].chunks_exact(4) {
            let n = le32(c) as usize;
            sga.push_segment(payload.slice(at..at + n));
            at += n;
        }
        sga
    }
}

/// Bytes a record of `sga` takes (header, segment table, payload), unpadded.
pub fn record_len(sga: &Sga) -> usize {
    RECORD_HEADER + 4 * sga.num_segments() + sga.len()
}

/// Writes a record for `sga` at the start of `dst` (at least [`record_len`] bytes)
/// and returns its checksum.
pub fn encode_record(dst: &mut [u8], seq: u64, epoch: u32, prev_crc: u32, sga: &Sga) -> u32 {
    dst[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    dst[8..16].copy_from_slice(&seq.to_le_bytes());
    dst[16..20].copy_from_slice(&(sga.len() as u32).to_le_bytes());
    dst[20..24].copy_from_slice(&epoch.to_le_bytes());
    dst[24..28].copy_from_slice(&prev_crc.to_le_bytes());
    dst[28..30].copy_from_slice(&(sga.num_segments() as u16).to_le_bytes());
    dst[30..32].fill(0);
    let hc = crc32c(&dst[8..32]);
    dst[32..36].copy_from_slice(&hc.to_le_bytes());
    dst[36..40].fill(0);
    let mut at = RECORD_HEADER;
    for s in sga.segments() {
        dst[at..at + 4].copy_from_slice(&(s.len() as u32).to_le_bytes());
        at += 4;
    }
    for s in sga.segments() {
        dst[at..at + s.len()].copy_from_slice(s);
        at += s.len();
    }
    let crc = crc32c_append(0, &dst[8..at]);
    dst[4..8].copy_from_slice(&crc.to_le_bytes());
    crc
}

pub(crate) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trip_and_errors() {
        let sb = Superblock::new(0x1234_5678_9abc_def0, DEFAULT_MAX_RECORD);
        let mut b = vec![0u8; 4096];
        sb.encode(&mut b);
        assert_eq!(Superblock::decode(&b), Ok(sb));
        let mut v = b.clone();
        v[8] = 2;
        assert_eq!(Superblock::decode(&v), Err(StorageError::UnsupportedVersion { found: 2, supported: 1 }));
        let mut c = b.clone();
        c[20] ^= 1;
        assert_eq!(Superblock::decode(&c), Err(StorageError::CorruptSuperblock));
        assert_eq!(Superblock::decode(&[0u8; 4096]), Err(StorageError::NotALog));
        assert_eq!(Superblock::decode(b"#!/bin/sh\n"), Err(StorageError::NotALog));
    }

    #[test]
    fn record_round_trip_keeps_segments() {
        let sga = Sga::from_segments([Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde")]);
        let mut b = vec![0u8; record_len(&sga)];
        let crc = encode_record(&mut b, 7, 3, 99, &sga);
        let h = RecordHeader::parse(&b, DEFAULT_MAX_RECORD).unwrap();
        assert_eq!((h.seq, h.epoch, h.prev_crc, h.crc, h.nsegs), (7, 3, 99, crc, 3));
        assert!(h.verify(&b));
        assert_eq!(h.to_sga(&b), sga);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(!h.verify(&b));
    }
}
