//! The storage libOS: log files as queues.
//!
//! `open`/`creat` open a file through an io_uring device (O_DIRECT) and put a
//! [`Log`] on it; the queue descriptor they return lives in the storage descriptor
//! space (see `route` in the crate root). `push` appends one durable record, `pop`
//! reads the next one (an empty element at the end of the log), `seek` and
//! `truncate` move the read cursor and cut the log. One driver, polled inline by
//! the runtime on every turn, runs every open log: it submits their batched
//! requests, reaps completions and completes the qtokens (a log's tags are the
//! qtokens' raw values). Each device's eventfd is registered with the runtime's
//! epoll so the loop can sleep while the disk works.
//!
//! This part of the libOS does not depend on the network backend: it works the same
//! under the POSIX and the memory libOS.

use crate::{SPACE_MASK, STORAGE_SPACE};
use demi_runtime::{Driver, DriverId, Handle, Interest, OpCode, QDesc, QError, QToken, QValue, Readiness, Sga};
use demi_storage::{
    BlockDevice, Log, LogConfig, LogEvent, LogOutput, OpenMode, StorageError, UringConfig, UringDevice,
};
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

/// How [`LibOs::open_with`](crate::LibOs::open_with) opens a log file.
#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    /// The io_uring device (ring size, SQPOLL, registered buffers).
    pub uring: UringConfig,
    /// The log (record limit and block size for new logs, group-commit limits).
    pub log: LogConfig,
}

struct File {
    generation: u32,
    log: Log<UringDevice>,
}

pub(crate) struct Storage {
    rt: Handle,
    driver: Cell<Option<DriverId>>,
    files: RefCell<Slab<File>>,
    next_generation: Cell<u32>,
    events: RefCell<Vec<LogEvent>>,
}

impl Storage {
    pub(crate) fn new(rt: Handle) -> Rc<Storage> {
        let s = Rc::new(Storage {
            rt: rt.clone(),
            driver: Cell::new(None),
            files: RefCell::new(Slab::new()),
            next_generation: Cell::new(1),
            events: RefCell::new(Vec::new()),
        });
        let id = rt.add_driver(s.clone());
        s.driver.set(Some(id));
        s
    }

    fn qd(index: usize, generation: u32) -> QDesc {
        QDesc::from_parts(STORAGE_SPACE | index as u32, generation)
    }

    fn with_file<R>(&self, qd: QDesc, f: impl FnOnce(&mut File) -> R) -> Result<R, QError> {
        let mut files = self.files.borrow_mut();
        match files.get_mut((qd.index() & !SPACE_MASK) as usize) {
            Some(file) if file.generation == qd.generation() => Ok(f(file)),
            _ => Err(QError::BadDescriptor),
        }
    }

    pub(crate) fn open(&self, path: &Path, mode: OpenMode, opts: &StorageOptions) -> Result<QDesc, StorageError> {
        let dev = UringDevice::open(path, mode, &opts.uring)?;
        let read_only = dev.read_only();
        let log = match (mode, read_only) {
            (OpenMode::CreateTruncate, _) => Log::create(dev, &opts.log)?,
            (OpenMode::Existing, false) => Log::open(dev, &opts.log)?,
            (OpenMode::Existing, true) => Log::open_read_only(dev, &opts.log)?,
        };
        let fd = log.device().notify_fd();
        let generation = self.next_generation.get();
        self.next_generation.set(generation.wrapping_add(1).max(1));
        let index = self.files.borrow_mut().insert(File { generation, log });
        if index as u32 & SPACE_MASK != 0 {
            self.files.borrow_mut().remove(index);
            return Err(StorageError::Io(libc::EMFILE));
        }
        if let (Some(fd), Some(driver)) = (fd, self.driver.get()) {
            if let Err(e) = self.rt.register_fd(fd, driver, index as u32, Interest::READABLE) {
                self.files.borrow_mut().remove(index);
                return Err(e.into());
            }
        }
        Ok(Self::qd(index, generation))
    }

    pub(crate) fn push(&self, qd: QDesc, sga: Sga) -> Result<QToken, QError> {
        self.with_file(qd, |f| f.log.check_push(&sga))?.map_err(QError::from)?;
        let qt = self.rt.op_start(OpCode::Push, qd);
        self.with_file(qd, |f| f.log.push(sga, qt.raw()))?.expect("checked above");
        Ok(qt)
    }

    pub(crate) fn pop(&self, qd: QDesc) -> Result<QToken, QError> {
        self.with_file(qd, |_| ())?;
        let qt = self.rt.op_start(OpCode::Pop, qd);
        self.with_file(qd, |f| f.log.pop(qt.raw()))?;
        Ok(qt)
    }

    pub(crate) fn seek(&self, qd: QDesc, pos: u64) -> Result<(), QError> {
        self.with_file(qd, |f| f.log.seek(pos))?.map_err(QError::from)
    }

    pub(crate) fn truncate(&self, qd: QDesc, len: u64) -> Result<(), QError> {
        let r = {
            let mut events = self.events.borrow_mut();
            self.with_file(qd, |f| {
                let r = f.log.truncate(len);
                f.log.poll(&mut events);
                r
            })?
        };
        self.complete_events();
        r.map_err(QError::from)
    }

    pub(crate) fn len(&self, qd: QDesc) -> Result<u64, QError> {
        self.with_file(qd, |f| f.log.len())
    }

    pub(crate) fn close(&self, qd: QDesc) -> Result<(), QError> {
        self.with_file(qd, |_| ())?;
        let mut file = self.files.borrow_mut().remove((qd.index() & !SPACE_MASK) as usize);
        self.finish(&mut file);
        Ok(())
    }

    /// Lets a closing log finish what it started (pushes in flight become durable or
    /// fail; their tokens complete), then drops it.
    fn finish(&self, file: &mut File) {
        if let Some(fd) = file.log.device().notify_fd() {
            let _ = self.rt.deregister_fd(fd);
        }
        let mut events = Vec::new();
        let _ = file.log.drain(&mut events);
        self.events.borrow_mut().extend(events);
        self.complete_events();
    }

    pub(crate) fn shutdown(&self) {
        let files: Vec<File> = self.files.borrow_mut().drain().collect();
        for mut f in files {
            self.finish(&mut f);
        }
        if let Some(id) = self.driver.take() {
            self.rt.remove_driver(id);
        }
    }

    fn complete_events(&self) -> usize {
        let mut events = std::mem::take(&mut *self.events.borrow_mut());
        let n = events.len();
        for e in events.drain(..) {
            let value = match e.result {
                Ok(LogOutput::Pushed { .. }) => Ok(QValue::Pushed),
                Ok(LogOutput::Popped(sga)) => Ok(QValue::Popped(sga)),
                Err(err) => Err(QError::from(err)),
            };
            // A token whose slot is gone (runtime shutting down) is simply dropped.
            let _ = self.rt.op_complete(QToken::from_raw(e.tag), value);
        }
        // Hand the emptied buffer back (its capacity saves reallocating it on the
        // next turn), unless new events arrived meanwhile.
        let mut slot = self.events.borrow_mut();
        if slot.is_empty() {
            *slot = events;
        }
        n
    }

    fn poll_file(&self, index: usize) -> usize {
        {
            let mut files = self.files.borrow_mut();
            let Some(f) = files.get_mut(index) else { return 0 };
            f.log.device().clear_notify();
            f.log.poll(&mut self.events.borrow_mut());
        }
        self.complete_events()
    }
}

impl Driver for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn poll(&self, _now: Instant) -> usize {
        {
            let mut files = self.files.borrow_mut();
            let mut events = self.events.borrow_mut();
            for (_, f) in files.iter_mut() {
                f.log.poll(&mut events);
            }
        }
        self.complete_events()
    }

    fn on_event(&self, token: u32, _r: Readiness) -> usize {
        self.poll_file(token as usize)
    }
}
