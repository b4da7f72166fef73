//! The io_uring backend: a file or block device opened with O_DIRECT.
//!
//! Requests become SQEs (fixed-buffer reads and writes when the buffer is a
//! registered pool slot, `fdatasync`-style `FSYNC` for flushes; a chain is linked
//! with `IOSQE_IO_LINK`). `submit_chain` only queues; [`poll`](BlockDevice::poll)
//! hands what is queued to the kernel, one request (or chain) per `io_uring_enter`
//! by default ([`UringConfig::submit_batch`]); `wait`'s last such call also waits.
//! With [`UringConfig::sqpoll`] a kernel thread polls the submission queue and
//! `poll` makes no system call at all while it is awake. Completions are reaped from the
//! shared completion ring; an eventfd registered with the ring lets the runtime sleep
//! in epoll until one arrives.
//!
//! In-flight requests keep their buffers in a table keyed by the SQE's `user_data`;
//! dropping the device waits for all of them before the ring and buffers go.

use crate::buf::{round_up, BufPool, DmaBuf, PoolConfig, BUF_ALIGN};
use crate::device::{BlockDevice, Geometry, IoCompletion, IoKind, IoRequest};
use crate::error::DeviceError;
use io_uring::{opcode, squeue, types, IoUring};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Settings of an io_uring device.
#[derive(Clone, Debug)]
pub struct UringConfig {
    /// Submission queue entries (the completion queue has twice as many).
    pub entries: u32,
    /// Run a kernel submission-polling thread that sleeps after this many
    /// milliseconds without work (`IORING_SETUP_SQPOLL`). Off by default.
    pub sqpoll: Option<u32>,
    /// Register the buffer pool with the ring (fixed-buffer reads and writes).
    pub register_buffers: bool,
    /// At most this many requests go to the kernel per `io_uring_enter` (a chain
    /// longer than this still goes in one call: links never span calls). The default,
    /// 1, hands each request over on its own, as fio's io_uring engine does. On the
    /// virtio disk of docs/performance.md (storage), depth-32 random reads
    /// resubmitted about ten per call ran 15–20% slower than one per call, although
    /// they cost fewer system calls; the device seems to serve a batch that arrives
    /// with one notification less in parallel. Ignored with [`sqpoll`](Self::sqpoll).
    pub submit_batch: u32,
    /// Sizes of the buffer pool.
    pub pool: PoolConfig,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig { entries: 256, sqpoll: None, register_buffers: true, submit_batch: 1, pool: PoolConfig::default() }
    }
}

/// How to open the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read and write (read-only if the file does not allow writes).
    Existing,
    /// Create it, or truncate it to zero if it exists.
    CreateTruncate,
}

/// `IORING_ENTER_GETEVENTS`.
const ENTER_GETEVENTS: u32 = 1;

struct InFlight {
    tag: u64,
    buf: Option<DmaBuf>,
}

/// An io_uring device over one file. See the [module docs](self).
pub struct UringDevice {
    ring: IoUring,
    file: File,
    read_only: bool,
    block_size: u32,
    capacity: Option<u64>,
    pool: BufPool,
    inflight: slab::Slab<InFlight>,
    backlog: VecDeque<Vec<IoRequest>>,
    /// Lengths of the chains in the submission ring not yet handed to the kernel,
    /// oldest first (their sum is the ring's length, SQPOLL aside).
    unsubmitted: VecDeque<u32>,
    submit_batch: u32,
    sqpoll: bool,
    max_inflight: usize,
    eventfd: OwnedFd,
    /// The ring defers completion work to `io_uring_enter(GETEVENTS)`.
    deferred: bool,
    /// The file is registered with the ring (index 0 of its file table).
    fixed_file: bool,
}

impl UringDevice {
    /// Opens `path` with O_DIRECT. An existing file that cannot be opened for writing
    /// (`EACCES`, `EROFS`) is opened read-only; [`read_only`](Self::read_only) says so.
    pub fn open(path: &Path, mode: OpenMode, config: &UringConfig) -> std::io::Result<UringDevice> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).mode(0o644);
        if mode == OpenMode::CreateTruncate {
            opts.create(true).truncate(true);
        }
        let (file, read_only) = match opts.open(path) {
            Ok(f) => (f, false),
            Err(e) if mode == OpenMode::Existing && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS)) => {
                let f = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(path)?;
                (f, true)
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let capacity = if meta.file_type().is_file() { None } else { Some(block_device_size(&file)?) };
        let build = |defer: bool| {
            let mut builder = IoUring::builder();
            if let Some(idle) = config.sqpoll {
                builder.setup_sqpoll(idle);
            } else if defer {
                // Completion work runs only when this thread asks for events (never
                // by interrupting it); the kernel sets a flag in the ring and signals
                // the eventfd when there is some, and `poll` then enters once.
                builder.setup_single_issuer().setup_defer_taskrun().setup_coop_taskrun().setup_taskrun_flag();
            }
            builder.build(config.entries.max(8))
        };
        // Kernels before 6.1 reject the flags: fall back to a plain ring.
        let (ring, deferred) = match build(config.sqpoll.is_none()) {
            Ok(r) => (r, config.sqpoll.is_none()),
            Err(_) => (build(false)?, false),
        };
        let pool = BufPool::new(&config.pool, config.register_buffers);
        if config.register_buffers {
            let iov = pool.iovecs();
            // SAFETY: the iovecs describe the pool's region, which lives as long as
            // `pool` (a field of the device, dropped after the ring is drained); the
            // kernel unregisters them when the ring closes.
            unsafe { ring.submitter().register_buffers(&iov)? };
        }
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // Requests then name the file by its index in the ring's table, which spares
        // the kernel a file lookup and reference count per request; if the kernel
        // refuses, requests use the plain descriptor.
        let fixed_file = ring.submitter().register_files(&[file.as_raw_fd()]).is_ok();
        let max_inflight = (config.entries.max(8) as usize) * 2;
        Ok(UringDevice {
            ring,
            file,
            read_only,
            block_size: BUF_ALIGN as u32,
            capacity,
            pool,
            inflight: slab::Slab::new(),
            backlog: VecDeque::new(),
            unsubmitted: VecDeque::new(),
            submit_batch: config.submit_batch.max(1),
            sqpoll: config.sqpoll.is_some(),
            max_inflight,
            eventfd,
            deferred,
            fixed_file,
        })
    }

    /// The file could only be opened for reading.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The underlying file (for `fallocate`, `metadata`, …).
    pub fn file(&self) -> &File {
        &self.file
    }

    fn entry_for(&self, req: &mut IoRequest, key: usize) -> squeue::Entry {
        // The opcode builders take either kind of target; the macro builds the entry
        // for whichever applies.
        macro_rules! build {
            ($fd:expr) => {{
                let fd = $fd;
                match req.kind {
                    IoKind::Flush => opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build(),
                    IoKind::Allocate { len } => opcode::Fallocate::new(fd, len).offset(req.offset).mode(0).build(),
                    IoKind::Write => {
                        let b = req.buf.as_ref().expect("write without a buffer");
                        let len = b.len() as u32;
                        match b.registered_index() {
                            Some(i) => opcode::WriteFixed::new(fd, b.as_ptr(), len, i).offset(req.offset).build(),
                            None => opcode::Write::new(fd, b.as_ptr(), len).offset(req.offset).build(),
                        }
                    }
                    IoKind::Read => {
                        let b = req.buf.as_mut().expect("read without a buffer");
                        let len = b.len() as u32;
                        match b.registered_index() {
                            Some(i) => opcode::ReadFixed::new(fd, b.as_mut_ptr(), len, i).offset(req.offset).build(),
                            None => opcode::Read::new(fd, b.as_mut_ptr(), len).offset(req.offset).build(),
                        }
                    }
                }
            }};
        }
        let e = if self.fixed_file {
            // Index 0 of the ring's file table (IOSQE_FIXED_FILE).
            build!(types::Fixed(0))
        } else {
            build!(types::Fd(self.file.as_raw_fd()))
        };
        e.user_data(key as u64)
    }

    /// Moves queued chains into the submission ring while there is room.
    fn fill_sq(&mut self) {
        while let Some(chain) = self.backlog.front() {
            let n = chain.len();
            if !self.has_room(n) {
                break;
            }
            let chain = self.backlog.pop_front().expect("front exists");
            self.push_chain(chain, n);
        }
    }

    /// Whether a chain of `n` fits in the submission ring and under the in-flight limit.
    fn has_room(&mut self, n: usize) -> bool {
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        n <= room && self.inflight.len() + n <= self.max_inflight
    }

    /// Writes a chain of `n` requests into the submission ring (room was checked).
    fn push_chain(&mut self, chain: impl IntoIterator<Item = IoRequest>, n: usize) {
        for (i, mut req) in chain.into_iter().enumerate() {
            let key = self.inflight.vacant_key();
            let mut e = self.entry_for(&mut req, key);
            if i + 1 < n {
                e = e.flags(squeue::Flags::IO_LINK);
            }
            let k = self.inflight.insert(InFlight { tag: req.tag, buf: req.buf.take() });
            debug_assert_eq!(k, key);
            // SAFETY: the entry's buffer pointer stays valid until its completion:
            // the buffer now lives in `inflight[key]` and leaves it only when the
            // CQE for `key` is reaped (or the device is dropped after draining).
            let pushed = unsafe { self.ring.submission().push(&e) };
            debug_assert!(pushed.is_ok(), "room was checked");
        }
        self.unsubmitted.push_back(n as u32);
    }

    /// Hands the queued SQEs to the kernel, at most `submit_batch` per call (whole
    /// chains), and with the last call waits for `wait_for` completions.
    fn submit_now(&mut self, wait_for: usize) {
        if self.sqpoll {
            self.unsubmitted.clear();
            self.enter(0, wait_for);
            return;
        }
        loop {
            let mut n = 0u32;
            for &len in &self.unsubmitted {
                if n > 0 && n + len > self.submit_batch {
                    break;
                }
                n += len;
            }
            let last = n == self.unsubmitted.iter().sum::<u32>();
            let Some(done) = self.enter(n, if last { wait_for } else { 0 }) else { return };
            // Forget what the kernel took (all of it unless it ran short of memory).
            let mut took = done.min(n);
            while took > 0 {
                let Some(front) = self.unsubmitted.front_mut() else { break };
                if *front <= took {
                    took -= *front;
                    self.unsubmitted.pop_front();
                } else {
                    *front -= took;
                    took = 0;
                }
            }
            if last || done < n {
                return;
            }
        }
    }

    /// One `io_uring_enter`: submits `to_submit` SQEs and waits for `wait_for`
    /// completions. Returns how many SQEs the kernel took, `None` on an error.
    fn enter(&mut self, to_submit: u32, wait_for: usize) -> Option<u32> {
        // GETEVENTS also runs the deferred completion work (DEFER_TASKRUN), so the
        // completions that arrived are in the ring when this returns. With SQPOLL the
        // io_uring crate's own calls know when the kernel thread needs a wakeup.
        let flags = if self.deferred || wait_for > 0 { ENTER_GETEVENTS } else { 0 };
        loop {
            let r = if self.sqpoll {
                if wait_for > 0 {
                    self.ring.submit_and_wait(wait_for)
                } else {
                    self.ring.submit()
                }
            } else {
                // SAFETY: plain io_uring_enter on our own ring, no argument struct.
                unsafe { self.ring.submitter().enter::<libc::sigset_t>(to_submit, wait_for as u32, flags, None) }
            };
            match r {
                Ok(n) => return Some(n as u32),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // EBUSY/EAGAIN: the kernel is short of resources or the CQ is full;
                // reaping completions and retrying on the next poll resolves it.
                Err(_) => return None,
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        let mut n = 0;
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let key = cqe.user_data() as usize;
            let f = self.inflight.remove(key);
            let res = cqe.result();
            let result = if res < 0 { Err(DeviceError(-res)) } else { Ok(res as usize) };
            out.push(IoCompletion { tag: f.tag, result, buf: f.buf });
            n += 1;
        }
        n
    }
}

impl BlockDevice for UringDevice {
    fn geometry(&self) -> Geometry {
        Geometry { block_size: self.block_size, capacity: self.capacity }
    }

    fn alloc(&mut self, len: usize) -> DmaBuf {
        let mut b = self.pool.alloc(round_up(len, self.block_size as usize));
        b.set_len(len);
        b
    }

    fn submit(&mut self, req: IoRequest) {
        // Straight into the ring when nothing waits before it (no Vec, no backlog).
        if self.backlog.is_empty() && self.has_room(1) {
            self.push_chain([req], 1);
        } else {
            self.backlog.push_back(vec![req]);
        }
    }

    fn submit_chain(&mut self, chain: Vec<IoRequest>) {
        if !chain.is_empty() {
            self.backlog.push_back(chain);
        }
    }

    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        let mut got = self.reap(out);
        if !self.backlog.is_empty() {
            self.fill_sq();
        }
        let taskrun = self.deferred && self.ring.submission().taskrun();
        if taskrun || !self.ring.submission().is_empty() {
            self.submit_now(0);
            got += self.reap(out);
        }
        got
    }

    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        let got = self.reap(out);
        self.fill_sq();
        if got > 0 {
            if !self.ring.submission().is_empty() {
                self.submit_now(0);
            }
            return got + self.reap(out);
        }
        // One system call submits what is queued and waits for a completion.
        loop {
            if self.pending() == 0 {
                return 0;
            }
            self.submit_now(1);
            let n = self.reap(out);
            if n > 0 {
                return n;
            }
            self.fill_sq();
        }
    }

    fn kick(&mut self) {
        self.fill_sq();
        let queued: u32 = self.unsubmitted.iter().sum();
        if queued >= self.submit_batch || (self.sqpoll && !self.ring.submission().is_empty()) {
            self.submit_now(0);
        }
    }

    fn pending(&self) -> usize {
        self.inflight.len() + self.backlog.iter().map(Vec::len).sum::<usize>()
    }

    fn notify_fd(&self) -> Option<RawFd> {
        Some(self.eventfd.as_raw_fd())
    }

    // `clear_notify` stays the default no-op: the runtime's epoll registration is
    // edge-triggered, and every eventfd signal (one per CQE) is a new edge whatever
    // the counter holds, so reading it back would only cost a system call per wake.
}

impl Drop for UringDevice {
    fn drop(&mut self) {
        // Requests never handed over are simply dropped; what the kernel holds must
        // complete before the buffers are freed.
        self.backlog.clear();
        let mut sink = Vec::new();
        let mut stuck = 0;
        while !self.inflight.is_empty() {
            if self.ring.submit_and_wait(1).is_err() {
                stuck += 1;
            }
            self.reap(&mut sink);
            sink.clear();
            if stuck > 1000 {
                // The ring keeps failing: leak the buffers rather than free memory the
                // kernel may still write.
                for f in self.inflight.drain() {
                    std::mem::forget(f.buf);
                }
                break;
            }
        }
    }
}

fn block_device_size(file: &File) -> std::io::Result<u64> {
    let mut size: u64 = 0;
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    // SAFETY: the ioctl writes one u64 into `size`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}
