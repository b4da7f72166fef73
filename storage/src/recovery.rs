//! Opening a log: reading the superblock and scanning the records (recovery).
//!
//! The scan starts at block 1 and accepts records while each one is valid (see
//! [`format`](crate::format) for what that means). Where no valid record starts at
//! the current position and the position is inside a block, the scan looks once more
//! at the next block boundary (the previous batch ended and was padded). The first
//! position where neither holds is the end of the log: anything after it (a torn
//! batch, stale blocks) is ignored and later overwritten. Because a push completes
//! only after its batch is flushed, and flushed blocks are never rewritten with
//! different bytes, every completed push is before that point.
//!
//! The scan reads through the device synchronously (this is the control path) in
//! windows of [`SCAN_WINDOW`] bytes.

use crate::buf::round_up;
use crate::device::{BlockDevice, IoCompletion, IoRequest};
use crate::error::StorageError;
use crate::format::{RecordHeader, Superblock, RECORD_HEADER};

/// Bytes read at a time while scanning.
pub const SCAN_WINDOW: usize = 1 << 20;

/// Tags of control-path requests carry this bit.
pub(crate) const TAG_SYNC: u64 = 1 << 62;

/// Where a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc {
    /// Byte offset of its header.
    pub offset: u64,
    /// Bytes from the header to the end of the payload.
    pub len: u32,
    /// Its checksum (the next record's chain value).
    pub crc: u32,
    /// The epoch it was written in.
    pub epoch: u32,
}

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// Every valid record, in order (`index[i]` has sequence number `i`).
    pub index: Vec<RecordLoc>,
    /// Where the next batch goes (block-aligned).
    pub tail: u64,
}

/// Runs `chain` and waits for it. Completions of other requests that arrive
/// meanwhile go to `others`.
pub(crate) fn sync_io<D: BlockDevice + ?Sized>(
    dev: &mut D,
    chain: Vec<IoRequest>,
    others: &mut Vec<IoCompletion>,
) -> Result<Vec<IoCompletion>, StorageError> {
    let want = chain.len();
    debug_assert!(chain.iter().all(|r| r.tag & TAG_SYNC != 0));
    dev.submit_chain(chain);
    let mut mine = Vec::with_capacity(want);
    let mut got = Vec::new();
    while mine.len() < want {
        let n = dev.wait(&mut got);
        if n == 0 && dev.pending() == 0 {
            // The device dropped the request (a simulated crash): report an I/O error.
            return Err(StorageError::Io(libc::EIO));
        }
        for c in got.drain(..) {
            if c.tag & TAG_SYNC != 0 {
                mine.push(c);
            } else {
                others.push(c);
            }
        }
    }
    Ok(mine)
}

/// Reads `len` bytes at `offset` (block-aligned) synchronously; bytes past the end
/// of the data read as zeros.
pub(crate) fn sync_read<D: BlockDevice + ?Sized>(
    dev: &mut D,
    offset: u64,
    len: usize,
    others: &mut Vec<IoCompletion>,
) -> Result<crate::buf::DmaBuf, StorageError> {
    let buf = dev.alloc(len);
    let mut done = sync_io(dev, vec![IoRequest::read(offset, buf, TAG_SYNC)], others)?;
    let c = done.pop().expect("one completion");
    let n = c.result?;
    let mut buf = c.buf.expect("read buffer comes back");
    let l = buf.len();
    buf.as_mut_slice()[n.min(l)..].fill(0);
    Ok(buf)
}

/// Reads and checks the superblock.
pub fn read_superblock<D: BlockDevice + ?Sized>(dev: &mut D) -> Result<Superblock, StorageError> {
    let mut others = Vec::new();
    let bs = (dev.geometry().block_size as usize).max(512);
    let buf = sync_read(dev, 0, bs, &mut others)?;
    let sb = Superblock::decode(buf.as_slice())?;
    let dev_bs = dev.geometry().block_size;
    if sb.block_size % dev_bs != 0 {
        return Err(StorageError::BlockSizeMismatch { log: sb.block_size, device: dev_bs });
    }
    Ok(sb)
}

/// The scan's read-ahead: starts small (most logs opened in tests and tools are
/// short) and doubles up to [`SCAN_WINDOW`].
struct Window {
    start: u64,
    buf: Option<crate::buf::DmaBuf>,
    size: usize,
}

impl Window {
    fn get<'a, D: BlockDevice + ?Sized>(
        &'a mut self,
        dev: &mut D,
        bs: usize,
        offset: u64,
        len: usize,
    ) -> Result<&'a [u8], StorageError> {
        let covered = match &self.buf {
            Some(b) => offset >= self.start && offset + len as u64 <= self.start + b.len() as u64,
            None => false,
        };
        if !covered {
            self.buf = None;
            let start = offset / bs as u64 * bs as u64;
            let need = round_up((offset - start) as usize + len, bs).max(self.size);
            self.size = (self.size * 2).min(SCAN_WINDOW);
            let mut others = Vec::new();
            self.buf = Some(sync_read(dev, start, need, &mut others)?);
            self.start = start;
        }
        let b = self.buf.as_ref().expect("window filled");
        let at = (offset - self.start) as usize;
        Ok(&b.as_slice()[at..at + len])
    }
}

/// Scans the records after the superblock. See the [module docs](self).
pub fn scan<D: BlockDevice + ?Sized>(dev: &mut D, sb: &Superblock) -> Result<Recovered, StorageError> {
    let bs = sb.block_size as usize;
    let capacity = dev.geometry().capacity;
    let mut win = Window { start: 0, buf: None, size: 16 << 10 };
    let mut index: Vec<RecordLoc> = Vec::new();
    let mut pos = bs as u64;
    let mut prev_crc = sb.chain_seed();
    let mut floor = 0u32;
    let try_at = |win: &mut Window, dev: &mut D, at: u64, seq: u64, prev_crc: u32, floor: u32| -> Result<Option<RecordLoc>, StorageError> {
        if let Some(cap) = capacity {
            if at + RECORD_HEADER as u64 > cap {
                return Ok(None);
            }
        }
        let h = match RecordHeader::parse(win.get(dev, bs, at, RECORD_HEADER)?, sb.max_record) {
            Some(h) => h,
            None => return Ok(None),
        };
        if h.seq != seq || h.prev_crc != prev_crc || h.epoch < floor || h.epoch > sb.epoch {
            return Ok(None);
        }
        let len = h.record_len();
        if let Some(cap) = capacity {
            if at + len as u64 > cap {
                return Ok(None);
            }
        }
        if !h.verify(win.get(dev, bs, at, len)?) {
            return Ok(None);
        }
        Ok(Some(RecordLoc { offset: at, len: len as u32, crc: h.crc, epoch: h.epoch }))
    };
    loop {
        let seq = index.len() as u64;
        let mut found = try_at(&mut win, dev, pos, seq, prev_crc, floor)?;
        if found.is_none() && !pos.is_multiple_of(bs as u64) {
            pos = round_up(pos as usize, bs) as u64;
            found = try_at(&mut win, dev, pos, seq, prev_crc, floor)?;
        }
        match found {
            Some(loc) => {
                index.push(loc);
                prev_crc = loc.crc;
                floor = loc.epoch;
                pos = loc.offset + round_up(loc.len as usize, 8) as u64;
            }
            None => break,
        }
    }
    let tail = round_up(pos as usize, bs) as u64;
    Ok(Recovered { index, tail })
}
