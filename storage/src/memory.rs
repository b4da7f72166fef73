//! The memory backend, with crash simulation.
//!
//! A [`MemDisk`] is a simulated disk: a durable image, the volatile state that reads
//! see, and the list of writes not yet made durable by a flush. A [`MemDevice`] is
//! the [`BlockDevice`] over it; requests run when the device is polled, in order.
//!
//! Crash simulation: [`MemDisk::crash_after`] makes the disk stop after a number of
//! requests (the request that would be next is never executed, and nothing completes
//! any more). [`MemDisk::crash_image`] then builds what a disk could hold after the
//! power went: the durable image, plus each unflushed write either lost, fully
//! written, or torn (an arbitrary subset of its sectors written), chosen by a seed.
//! [`MemDiskConfig`] can also make the disk read-only or small (to produce
//! `EROFS`/`ENOSPC`).
//!
//! Completion order: requests always execute in submission order (a flush covers
//! the writes before it), but a real device may *report* them in any order (io_uring
//! with SQPOLL can post a linked flush's completion before its write's).
//! [`MemDisk::scramble_completions`] makes this device do the same: each poll hands
//! out the completions ready so far shuffled, and keeps a random part of them back
//! for a later poll.

use crate::buf::{round_up, DmaBuf};
use crate::device::{BlockDevice, Geometry, IoCompletion, IoKind, IoRequest};
use crate::error::DeviceError;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// Shape and behaviour of a simulated disk.
#[derive(Clone, Debug)]
pub struct MemDiskConfig {
    /// Alignment of requests.
    pub block_size: u32,
    /// Unit of atomic writes: a crash tears writes at this granularity.
    pub sector_size: u32,
    /// Bytes the disk holds; writes past it fail with `ENOSPC`.
    pub capacity: u64,
    /// Writes fail with `EROFS`.
    pub read_only: bool,
}

impl Default for MemDiskConfig {
    fn default() -> Self {
        MemDiskConfig { block_size: 4096, sector_size: 512, capacity: 1 << 30, read_only: false }
    }
}

struct DiskState {
    config: MemDiskConfig,
    durable: Vec<u8>,
    volatile: Vec<u8>,
    unflushed: Vec<(u64, Vec<u8>)>,
    ops: u64,
    crash_after: Option<u64>,
    crashed: bool,
    /// Shuffle and hold back completions (see the module docs).
    scramble: Option<SplitMix>,
}

/// A simulated disk, shared by its devices and the test that inspects it. See the
/// [module docs](self).
#[derive(Clone)]
pub struct MemDisk(Rc<RefCell<DiskState>>);

impl MemDisk {
    /// An empty disk.
    pub fn new(config: MemDiskConfig) -> MemDisk {
        Self::from_image(Vec::new(), config)
    }

    /// A disk holding `image` (durable).
    pub fn from_image(image: Vec<u8>, config: MemDiskConfig) -> MemDisk {
        MemDisk(Rc::new(RefCell::new(DiskState {
            config,
            volatile: image.clone(),
            durable: image,
            unflushed: Vec::new(),
            ops: 0,
            crash_after: None,
            crashed: false,
            scramble: None,
        })))
    }

    /// From now on, the disk's devices report completions out of order, chosen by
    /// `seed`: each poll hands out a shuffled part of what is ready (at least one
    /// completion when any is ready, so waiting always progresses).
    pub fn scramble_completions(&self, seed: u64) {
        self.0.borrow_mut().scramble = Some(SplitMix(seed));
    }

    /// A device over this disk.
    pub fn device(&self) -> MemDevice {
        MemDevice { disk: self.clone(), queue: VecDeque::new(), ready: Vec::new() }
    }

    /// Crash when `n` requests have executed (counting from the disk's creation).
    pub fn crash_after(&self, n: u64) {
        self.0.borrow_mut().crash_after = Some(n);
    }

    /// Requests executed so far.
    pub fn ops(&self) -> u64 {
        self.0.borrow().ops
    }

    /// Whether the disk has crashed.
    pub fn crashed(&self) -> bool {
        self.0.borrow().crashed
    }

    /// Makes the disk read-only (or writable again) from now on.
    pub fn set_read_only(&self, on: bool) {
        self.0.borrow_mut().config.read_only = on;
    }

    /// What reads currently see (flushed or not).
    pub fn contents(&self) -> Vec<u8> {
        self.0.borrow().volatile.clone()
    }

    /// The durable image after a power failure now: unflushed writes are lost, kept
    /// or torn sector by sector, as `seed` chooses. Seed 0 loses them all.
    pub fn crash_image(&self, seed: u64) -> Vec<u8> {
        let st = self.0.borrow();
        let mut img = st.durable.clone();
        let sector = st.config.sector_size as usize;
        let mut rng = SplitMix(seed);
        for (off, data) in &st.unflushed {
            let mode = if seed == 0 { 0 } else { rng.next() % 3 };
            let off = *off as usize;
            let keep = |rng: &mut SplitMix| match mode {
                0 => false,
                1 => true,
                _ => rng.next() & 1 == 0,
            };
            for (i, chunk) in data.chunks(sector).enumerate() {
                if keep(&mut rng) {
                    let start = off + i * sector;
                    if img.len() < start + chunk.len() {
                        img.resize(start + chunk.len(), 0);
                    }
                    img[start..start + chunk.len()].copy_from_slice(chunk);
                }
            }
        }
        img
    }

    fn execute(&self, req: &mut IoRequest) -> Option<Result<usize, DeviceError>> {
        let mut st = self.0.borrow_mut();
        if st.crashed {
            return None;
        }
        if st.crash_after == Some(st.ops) {
            st.crashed = true;
            return None;
        }
        st.ops += 1;
        Some(match req.kind {
            IoKind::Flush => {
                let pending = std::mem::take(&mut st.unflushed);
                for (off, data) in pending {
                    let off = off as usize;
                    if st.durable.len() < off + data.len() {
                        st.durable.resize(off + data.len(), 0);
                    }
                    st.durable[off..off + data.len()].copy_from_slice(&data);
                }
                Ok(0)
            }
            IoKind::Write => {
                let buf = req.buf.as_ref().expect("write without a buffer");
                let (off, len) = (req.offset as usize, buf.len());
                if st.config.read_only {
                    Err(DeviceError(libc::EROFS))
                } else if (off + len) as u64 > st.config.capacity {
                    Err(DeviceError(libc::ENOSPC))
                } else {
                    if st.volatile.len() < off + len {
                        st.volatile.resize(off + len, 0);
                    }
                    st.volatile[off..off + len].copy_from_slice(buf.as_slice());
                    st.unflushed.push((req.offset, buf.as_slice().to_vec()));
                    Ok(len)
                }
            }
            IoKind::Allocate { len } => {
                if st.config.read_only {
                    Err(DeviceError(libc::EROFS))
                } else if req.offset + len > st.config.capacity {
                    Err(DeviceError(libc::ENOSPC))
                } else {
                    Ok(0)
                }
            }
            IoKind::Read => {
                let buf = req.buf.as_mut().expect("read without a buffer");
                let off = req.offset as usize;
                let avail = st.volatile.len().saturating_sub(off).min(buf.len());
                if avail > 0 {
                    buf.as_mut_slice()[..avail].copy_from_slice(&st.volatile[off..off + avail]);
                }
                Ok(avail)
            }
        })
    }
}

/// The [`BlockDevice`] of a [`MemDisk`].
pub struct MemDevice {
    disk: MemDisk,
    queue: VecDeque<Vec<IoRequest>>,
    ready: Vec<IoCompletion>,
}

impl MemDevice {
    /// The disk this device writes to.
    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }

    fn run(&mut self) {
        while let Some(chain) = self.queue.pop_front() {
            let mut failed = false;
            for mut req in chain {
                if failed {
                    self.ready.push(IoCompletion { tag: req.tag, result: Err(DeviceError::CANCELED), buf: req.buf });
                    continue;
                }
                match self.disk.execute(&mut req) {
                    // Crashed: the request (and everything after) never completes.
                    None => {
                        self.queue.clear();
                        return;
                    }
                    Some(result) => {
                        failed = result.is_err();
                        self.ready.push(IoCompletion { tag: req.tag, result, buf: req.buf });
                    }
                }
            }
        }
    }
}

impl BlockDevice for MemDevice {
    fn geometry(&self) -> Geometry {
        let st = self.disk.0.borrow();
        Geometry { block_size: st.config.block_size, capacity: Some(st.config.capacity) }
    }

    fn alloc(&mut self, len: usize) -> DmaBuf {
        let bs = self.disk.0.borrow().config.block_size as usize;
        let mut b = DmaBuf::heap(round_up(len.max(1), bs));
        b.set_len(len);
        b
    }

    fn submit_chain(&mut self, chain: Vec<IoRequest>) {
        if !chain.is_empty() {
            self.queue.push_back(chain);
        }
    }

    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        self.run();
        if let Some(rng) = self.disk.0.borrow_mut().scramble.as_mut() {
            // Fisher-Yates, then hand out a random non-empty prefix.
            for i in (1..self.ready.len()).rev() {
                self.ready.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            if !self.ready.is_empty() {
                let give = 1 + (rng.next() % self.ready.len() as u64) as usize;
                let kept = self.ready.split_off(give);
                let n = self.ready.len();
                out.append(&mut self.ready);
                self.ready = kept;
                return n;
            }
        }
        let n = self.ready.len();
        out.append(&mut self.ready);
        n
    }

    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        self.poll(out)
    }

    fn pending(&self) -> usize {
        if self.disk.crashed() {
            return 0;
        }
        self.queue.iter().map(Vec::len).sum::<usize>() + self.ready.len()
    }
}

/// SplitMix64: a tiny seeded generator for crash choices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
