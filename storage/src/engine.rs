//! The log engine: a crash-safe, append-only log of records over a [`BlockDevice`].
//!
//! The engine does no I/O of its own and knows no runtime: callers hand it pushes and
//! pops with a `u64` tag, call [`Log::poll`] (the storage libOS does so on every
//! runtime turn), and get [`LogEvent`]s back carrying the same tags.
//!
//! - **Push** appends one record (the sga with its segment boundaries, checksummed)
//!   and completes when the record is durable.
//! - **Group commit**: pushes that arrive while a batch is being written and flushed
//!   queue up and go out together as the next batch: one write and one flush (linked,
//!   one submission) for all of them. A lone push pays one write and one flush; many
//!   concurrent pushes share them.
//! - **Pop** returns the record at the read cursor and advances it; at the end of the
//!   log it completes with an empty sga (pushes are never empty, so that is
//!   unambiguous). Pops only see durable records.
//! - **Seek** moves the read cursor; **truncate** keeps the first `n` records and
//!   durably invalidates the rest before it returns (control path, synchronous).
//! - **Recovery** on open: see [`recovery`].
//! - **Preallocation**: the log allocates and zero-fills
//!   [`LogConfig::preallocate`] bytes ahead of its end, a chunk at a time, so that
//!   appends overwrite blocks the file system has already recorded and a flush is a
//!   plain cache flush (no journal commit). Zeros past the end read as "no record".
//!
//! Failures: a write that fails (`ENOSPC`, `EROFS`, …) fails the pushes of its batch
//! with a typed error and changes nothing; a failed flush poisons the log (the
//! kernel may have dropped dirty data: only a reopen, which recovers from what is
//! really on the device, is safe).

use crate::buf::round_up;
use crate::device::{BlockDevice, IoCompletion, IoRequest};
use crate::error::StorageError;
use crate::format::{self, RecordHeader, Superblock, MAX_SEGMENTS};
use crate::recovery::{self, sync_io, sync_read, RecordLoc, TAG_SYNC};
use demi_runtime::Sga;
use slab::Slab;
use std::collections::VecDeque;

const TAG_WRITE: u64 = 1 << 61;
const TAG_FLUSH: u64 = (1 << 61) | 1;
const TAG_ZERO: u64 = (1 << 61) | 2;
const TAG_ALLOC: u64 = (1 << 61) | 3;

/// Tunables of a log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Largest record payload accepted (written into the superblock by `create`; on
    /// open the superblock's value is used).
    pub max_record: u32,
    /// Bytes of records in one group-commit batch (at least one record always goes).
    pub max_batch_bytes: usize,
    /// Records in one batch.
    pub max_batch_records: usize,
    /// The layout's block size for `create` (a power of two, at least 512 and a
    /// multiple of the device's block size); on open the superblock's value is used.
    pub block_size: u32,
    /// Bytes allocated and zeroed ahead of the log's end, a chunk at a time (0: off).
    /// Appends then overwrite blocks the file system has already allocated and
    /// recorded, so a flush needs no metadata commit (on ext4, no journal commit
    /// per batch); the cost is writing every byte twice, once as part of a large
    /// sequential write.
    pub preallocate: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_record: format::DEFAULT_MAX_RECORD,
            max_batch_bytes: 1 << 20,
            max_batch_records: 1024,
            block_size: format::BLOCK_SIZE,
            preallocate: 8 << 20,
        }
    }
}

/// What a completed operation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOutput {
    /// The record is durable with this sequence number.
    Pushed {
        /// Its sequence number (position in the log).
        seq: u64,
    },
    /// The record at the cursor; empty at the end of the log.
    Popped(Sga),
}

/// A completed push or pop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// The tag given to [`Log::push`] or [`Log::pop`].
    pub tag: u64,
    /// The outcome.
    pub result: Result<LogOutput, StorageError>,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records made durable.
    pub records: u64,
    /// Batches written (each one write and one flush).
    pub batches: u64,
    /// Bytes written by batches (records plus padding).
    pub bytes_written: u64,
    /// Records read by pops.
    pub reads: u64,
}

struct Pending {
    tag: u64,
    sga: Sga,
}

struct Batch {
    tags: Vec<u64>,
    locs: Vec<RecordLoc>,
    end: u64,
    bytes: u64,
    error: Option<StorageError>,
    /// The write's completion has arrived.
    written: bool,
    /// The flush's result, when it arrived before the write's completion (a linked
    /// chain runs in order, but its completions may be posted out of order, as with
    /// SQPOLL).
    flushed: Option<Result<usize, crate::error::DeviceError>>,
}

struct Read {
    tag: u64,
    seq: u64,
    loc: RecordLoc,
    base: u64,
}

/// A log over a device. See the [module docs](self).
pub struct Log<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    bs: usize,
    read_only: bool,
    poisoned: bool,
    config: LogConfig,
    index: Vec<RecordLoc>,
    tail: u64,
    cursor: u64,
    queued: VecDeque<Pending>,
    batch: Option<Batch>,
    reads: Slab<Read>,
    events: Vec<LogEvent>,
    comps: Vec<IoCompletion>,
    stats: LogStats,
    /// Everything below this offset has been written (records or zeros).
    zeroed_to: u64,
    /// The zero-fill write in flight: its start.
    zero_inflight: Option<u64>,
    /// The zeros, kept between fills.
    zero_buf: Option<crate::buf::DmaBuf>,
    /// A zero fill failed (e.g. `ENOSPC`): appends just extend the file from now on.
    prealloc_off: bool,
}

fn fresh_log_id() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let local = 0u8;
    let mix = t ^ ((std::process::id() as u64) << 32) ^ (&local as *const u8 as u64).rotate_left(17);
    let a = crate::crc::crc32c(&mix.to_le_bytes()) as u64;
    let b = crate::crc::crc32c(&(!mix).to_le_bytes()) as u64;
    (a << 32 | b) ^ mix
}

impl<D: BlockDevice> Log<D> {
    /// Makes a new, empty log on `dev` (whatever it held is forgotten): writes and
    /// flushes the superblock.
    pub fn create(mut dev: D, config: &LogConfig) -> Result<Log<D>, StorageError> {
        const LIMIT: u32 = 256 << 20;
        if config.max_record == 0 || config.max_record > LIMIT {
            return Err(StorageError::RecordTooLarge { len: config.max_record as usize, max: LIMIT as usize });
        }
        let bs = config.block_size as usize;
        let dev_bs = dev.geometry().block_size;
        if !config.block_size.is_power_of_two() || config.block_size < 512 || !config.block_size.is_multiple_of(dev_bs) {
            return Err(StorageError::BlockSizeMismatch { log: config.block_size, device: dev_bs });
        }
        let mut sb = Superblock::new(fresh_log_id(), config.max_record);
        sb.block_size = config.block_size;
        write_superblock(&mut dev, &sb, bs)?;
        Ok(Log::assemble(dev, sb, config, recovery::Recovered { index: Vec::new(), tail: bs as u64 }, false))
    }

    /// Opens the log on `dev` and recovers it (see [`recovery`]).
    /// If the device refuses writes the log opens read-only.
    pub fn open(mut dev: D, config: &LogConfig) -> Result<Log<D>, StorageError> {
        let mut sb = recovery::read_superblock(&mut dev)?;
        let rec = recovery::scan(&mut dev, &sb)?;
        let bs = sb.block_size as usize;
        // Records written from now on carry a new epoch, so stale records beyond the
        // recovered end can never be taken for new ones.
        let mut bumped = sb;
        bumped.epoch = sb.epoch.wrapping_add(1).max(1);
        let read_only = match write_superblock(&mut dev, &bumped, bs) {
            Ok(()) => {
                sb = bumped;
                false
            }
            Err(StorageError::ReadOnly) => true,
            Err(e) => return Err(e),
        };
        Ok(Log::assemble(dev, sb, config, rec, read_only))
    }

    /// Opens the log without writing anything (no epoch bump); pushes fail with
    /// [`StorageError::ReadOnly`].
    pub fn open_read_only(mut dev: D, config: &LogConfig) -> Result<Log<D>, StorageError> {
        let sb = recovery::read_superblock(&mut dev)?;
        let rec = recovery::scan(&mut dev, &sb)?;
        Ok(Log::assemble(dev, sb, config, rec, true))
    }

    fn assemble(dev: D, sb: Superblock, config: &LogConfig, rec: recovery::Recovered, read_only: bool) -> Log<D> {
        let mut config = config.clone();
        config.max_record = sb.max_record;
        Log {
            dev,
            bs: sb.block_size as usize,
            sb,
            read_only,
            poisoned: false,
            config,
            index: rec.index,
            tail: rec.tail,
            cursor: 0,
            queued: VecDeque::new(),
            batch: None,
            reads: Slab::new(),
            events: Vec::new(),
            comps: Vec::new(),
            stats: LogStats::default(),
            zeroed_to: rec.tail,
            zero_inflight: None,
            zero_buf: None,
            prealloc_off: false,
        }
    }

    /// Durable records.
    pub fn len(&self) -> u64 {
        self.index.len() as u64
    }

    /// True when the log holds no durable record.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The read cursor (sequence number the next pop returns).
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// Whether pushes are refused because the device is read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The superblock in force.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Device requests queued or in flight (reads, batches, zero fills).
    pub fn device_pending(&self) -> usize {
        self.dev.pending()
    }

    /// Nothing queued, in flight or waiting to be reported.
    pub fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.batch.is_none() && self.reads.is_empty() && self.events.is_empty()
    }

    /// Queues one record. Fails (and queues nothing) as [`check_push`](Self::check_push)
    /// says.
    pub fn push(&mut self, sga: Sga, tag: u64) -> Result<(), StorageError> {
        self.check_push(&sga)?;
        self.queued.push_back(Pending { tag, sga });
        Ok(())
    }

    /// Whether [`push`](Self::push) would accept `sga`: not empty, within the record
    /// and segment limits, log writable and not poisoned.
    pub fn check_push(&self, sga: &Sga) -> Result<(), StorageError> {
        if sga.is_empty() {
            return Err(StorageError::EmptyRecord);
        }
        if sga.len() > self.config.max_record as usize {
            return Err(StorageError::RecordTooLarge { len: sga.len(), max: self.config.max_record as usize });
        }
        if sga.num_segments() > MAX_SEGMENTS {
            return Err(StorageError::RecordTooLarge { len: sga.num_segments(), max: MAX_SEGMENTS });
        }
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    /// Starts reading the record at the cursor (or reports the end of the log).
    pub fn pop(&mut self, tag: u64) {
        let seq = self.cursor;
        let Some(&loc) = self.index.get(seq as usize) else {
            self.events.push(LogEvent { tag, result: Ok(LogOutput::Popped(Sga::new())) });
            return;
        };
        self.cursor += 1;
        let bs = self.bs as u64;
        let base = loc.offset / bs * bs;
        let len = round_up((loc.offset + loc.len as u64 - base) as usize, self.bs);
        let buf = self.dev.alloc(len);
        let dtag = self.reads.insert(Read { tag, seq, loc, base }) as u64;
        debug_assert!(dtag < TAG_WRITE);
        self.dev.submit(IoRequest::read(base, buf, dtag));
        // Out now rather than at the next poll: a task that pops usually awaits
        // the result next, and a read that waits for the other woken tasks to run
        // first is slower (every microsecond counts at depth, docs/performance.md).
        self.dev.kick();
    }

    /// Moves the read cursor to record `pos` (`pos == len()` is the end).
    pub fn seek(&mut self, pos: u64) -> Result<(), StorageError> {
        if pos > self.len() {
            return Err(StorageError::OutOfRange { requested: pos, records: self.len() });
        }
        self.cursor = pos;
        Ok(())
    }

    /// Keeps the first `len` records and durably invalidates the rest. Waits for the
    /// batch in flight first; queued pushes are appended after the cut.
    pub fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        if len > self.len() {
            return Err(StorageError::OutOfRange { requested: len, records: self.len() });
        }
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        while self.batch.is_some() {
            let mut got = Vec::new();
            if self.dev.wait(&mut got) == 0 && self.dev.pending() == 0 {
                return Err(StorageError::Io(libc::EIO));
            }
            for c in got {
                self.handle(c);
            }
        }
        if len == self.len() {
            return Ok(());
        }
        let loc = self.index[len as usize];
        let bs = self.bs as u64;
        let block = loc.offset / bs * bs;
        let mut buf = sync_read(&mut self.dev, block, self.bs, &mut self.comps)?;
        buf.as_mut_slice()[(loc.offset - block) as usize..].fill(0);
        // The cut and a new epoch go out together (one flush), so records written
        // after the cut can never be confused with the ones it removed.
        let mut sb = self.sb;
        sb.epoch = sb.epoch.wrapping_add(1).max(1);
        let mut sbuf = self.dev.alloc(self.bs);
        sbuf.as_mut_slice().fill(0);
        sb.encode(sbuf.as_mut_slice());
        let chain = vec![
            IoRequest::write(block, buf, TAG_SYNC),
            IoRequest::write(0, sbuf, TAG_SYNC | 1),
            IoRequest::flush(TAG_SYNC | 2),
        ];
        let done = sync_io(&mut self.dev, chain, &mut self.comps)?;
        for c in done {
            if let Err(e) = c.result {
                if c.tag == TAG_SYNC | 2 {
                    self.poisoned = true;
                }
                return Err(e.into());
            }
        }
        self.sb = sb;
        self.index.truncate(len as usize);
        self.tail = if loc.offset == block { block } else { block + bs };
        self.cursor = self.cursor.min(len);
        Ok(())
    }

    fn chain_value(&self) -> u32 {
        self.index.last().map(|l| l.crc).unwrap_or_else(|| self.sb.chain_seed())
    }

    fn start_batch(&mut self) {
        if self.batch.is_some() || self.queued.is_empty() {
            return;
        }
        if self.poisoned {
            for p in self.queued.drain(..) {
                self.events.push(LogEvent { tag: p.tag, result: Err(StorageError::Poisoned) });
            }
            return;
        }
        let mut total = 0usize;
        let mut n = 0usize;
        for p in &self.queued {
            let l = round_up(format::record_len(&p.sga), 8);
            if n > 0 && (total + l > self.config.max_batch_bytes || n >= self.config.max_batch_records) {
                break;
            }
            total += l;
            n += 1;
        }
        let size = round_up(total, self.bs);
        if let Some(z) = self.zero_inflight {
            if self.tail + size as u64 > z {
                // The batch would reach blocks a zero fill is still writing: wait for
                // it (the fill's completion starts the batch).
                return;
            }
        }
        let mut buf = self.dev.alloc(size);
        let dst = buf.as_mut_slice();
        let mut at = 0usize;
        let first_seq = self.index.len() as u64;
        let mut prev = self.chain_value();
        let epoch = self.sb.epoch;
        let mut tags = Vec::with_capacity(n);
        let mut locs = Vec::with_capacity(n);
        for (seq, p) in (first_seq..).zip(self.queued.drain(..n)) {
            let l = format::record_len(&p.sga);
            let crc = format::encode_record(&mut dst[at..at + l], seq, epoch, prev, &p.sga);
            let padded = round_up(l, 8);
            dst[at + l..at + padded].fill(0);
            locs.push(RecordLoc { offset: self.tail + at as u64, len: l as u32, crc, epoch });
            tags.push(p.tag);
            prev = crc;
            at += padded;
        }
        dst[at..].fill(0);
        let end = self.tail + size as u64;
        self.dev.submit_chain(vec![IoRequest::write(self.tail, buf, TAG_WRITE), IoRequest::flush(TAG_FLUSH)]);
        self.batch = Some(Batch { tags, locs, end, bytes: size as u64, error: None, written: false, flushed: None });
        self.zero_ahead(end);
    }

    /// Starts the next zero fill once the log's end is within half a chunk of the
    /// zeroed region's end. The fill starts after everything a batch has written
    /// and no batch writes into it before it completes.
    fn zero_ahead(&mut self, end: u64) {
        let chunk = round_up(self.config.preallocate as usize, self.bs) as u64;
        if chunk == 0 || self.prealloc_off || self.zero_inflight.is_some() || end + chunk / 2 <= self.zeroed_to {
            return;
        }
        let start = self.zeroed_to.max(end);
        let buf = match self.zero_buf.take() {
            Some(b) if b.len() == chunk as usize => b,
            _ => {
                let mut b = self.dev.alloc(chunk as usize);
                b.as_mut_slice().fill(0);
                b
            }
        };
        // Allocating first makes the zero write an overwrite that does not extend the
        // file (on ext4 an extending direct write holds the inode lock exclusively
        // until it is done, stalling the appends meanwhile).
        self.dev.submit_chain(vec![IoRequest::allocate(start, chunk, TAG_ALLOC), IoRequest::write(start, buf, TAG_ZERO)]);
        self.zero_inflight = Some(start);
        self.zeroed_to = start + chunk;
    }

    /// Completes the batch in flight: both its write and its flush are done.
    fn finish_batch(&mut self, flushed: Result<usize, crate::error::DeviceError>) {
        let Some(b) = self.batch.take() else { return };
        let err = match (b.error, flushed) {
            (Some(e), _) => Some(e),
            (None, Ok(_)) => None,
            (None, Err(e)) => {
                self.poisoned = true;
                Some(e.into())
            }
        };
        match err {
            None => {
                let first = self.index.len() as u64;
                self.index.extend_from_slice(&b.locs);
                self.tail = b.end;
                self.stats.records += b.tags.len() as u64;
                self.stats.batches += 1;
                self.stats.bytes_written += b.bytes;
                for (i, tag) in b.tags.into_iter().enumerate() {
                    self.events.push(LogEvent { tag, result: Ok(LogOutput::Pushed { seq: first + i as u64 }) });
                }
            }
            Some(e) => {
                for tag in b.tags {
                    self.events.push(LogEvent { tag, result: Err(e) });
                }
            }
        }
    }

    fn handle(&mut self, c: IoCompletion) {
        match c.tag {
            TAG_WRITE => {
                let Some(b) = self.batch.as_mut() else { return };
                let want = c.buf.as_ref().map(|b| b.len()).unwrap_or(0);
                match c.result {
                    Ok(n) if n < want => b.error = Some(StorageError::DiskFull),
                    Ok(_) => {}
                    Err(e) => b.error = Some(e.into()),
                }
                b.written = true;
                if let Some(flushed) = b.flushed.take() {
                    self.finish_batch(flushed);
                }
            }
            TAG_FLUSH => {
                let Some(b) = self.batch.as_mut() else { return };
                if b.written {
                    self.finish_batch(c.result);
                } else {
                    b.flushed = Some(c.result);
                }
            }
            TAG_ZERO => {
                let start = self.zero_inflight.take().expect("zero completion without a fill");
                let want = c.buf.as_ref().map(|b| b.len()).unwrap_or(0);
                if !matches!(c.result, Ok(n) if n == want) {
                    self.prealloc_off = true;
                    self.zeroed_to = start;
                }
                self.zero_buf = c.buf;
            }
            TAG_ALLOC => {}
            t if t & TAG_SYNC != 0 => {}
            t => {
                let Some(r) = self.reads.try_remove(t as usize) else { return };
                let result = match (c.result, c.buf) {
                    (Ok(n), Some(mut buf)) => {
                        let l = buf.len();
                        buf.as_mut_slice()[n.min(l)..].fill(0);
                        self.stats.reads += 1;
                        decode_at(buf.as_slice(), &r, self.sb.max_record).ok_or(StorageError::CorruptRecord { seq: r.seq })
                    }
                    (Ok(_), None) => Err(StorageError::Io(libc::EIO)),
                    (Err(e), _) => Err(e.into()),
                };
                self.events.push(LogEvent { tag: r.tag, result: result.map(LogOutput::Popped) });
            }
        }
    }

    /// One non-blocking turn: starts a batch if pushes are queued and none is in
    /// flight, reaps device completions, reports finished operations into `out`.
    /// Returns how many events were added.
    pub fn poll(&mut self, out: &mut Vec<LogEvent>) -> usize {
        self.start_batch();
        let mut comps = std::mem::take(&mut self.comps);
        loop {
            self.dev.poll(&mut comps);
            if comps.is_empty() {
                break;
            }
            for c in comps.drain(..) {
                self.handle(c);
            }
            // A batch finished: the pushes that queued meanwhile go out now.
            if self.batch.is_none() && !self.queued.is_empty() {
                self.start_batch();
                continue;
            }
            break;
        }
        self.comps = comps;
        let n = self.events.len();
        out.append(&mut self.events);
        n
    }

    /// Blocks until every queued and in-flight operation has finished, reporting
    /// them into `out` (used before closing).
    pub fn drain(&mut self, out: &mut Vec<LogEvent>) -> Result<(), StorageError> {
        loop {
            self.poll(out);
            if self.queued.is_empty() && self.batch.is_none() && self.reads.is_empty() && self.zero_inflight.is_none() {
                return Ok(());
            }
            let mut got = Vec::new();
            if self.dev.wait(&mut got) == 0 && self.dev.pending() == 0 {
                return Err(StorageError::Io(libc::EIO));
            }
            self.comps.extend(got);
            let comps = std::mem::take(&mut self.comps);
            for c in comps {
                self.handle(c);
            }
        }
    }

    /// Gives the device back (after [`drain`](Self::drain), or anything in flight
    /// is abandoned to the device, which still owns the buffers).
    pub fn into_device(self) -> D {
        self.dev
    }
}

fn decode_at(buf: &[u8], r: &Read, max_record: u32) -> Option<Sga> {
    let at = (r.loc.offset - r.base) as usize;
    let h = RecordHeader::parse(buf.get(at..)?, max_record)?;
    if h.seq != r.seq || h.crc != r.loc.crc {
        return None;
    }
    let rec = buf.get(at..at + h.record_len())?;
    if !h.verify(rec) {
        return None;
    }
    Some(h.to_sga(rec))
}

fn write_superblock<D: BlockDevice>(dev: &mut D, sb: &Superblock, bs: usize) -> Result<(), StorageError> {
    let mut buf = dev.alloc(bs);
    buf.as_mut_slice().fill(0);
    sb.encode(buf.as_mut_slice());
    let mut others = Vec::new();
    let done = sync_io(dev, vec![IoRequest::write(0, buf, TAG_SYNC), IoRequest::flush(TAG_SYNC | 1)], &mut others)?;
    for c in done {
        c.result?;
    }
    Ok(())
}
