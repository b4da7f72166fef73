//! The append-only log: write-command effects, as RESP arrays, in a log file on
//! demi's storage engine (`LibOs::creat`/`open`: io_uring, O_DIRECT, every push
//! durable when it completes, group commit).
//!
//! Connections [`append`](Aof::append) the effects of a batch of commands (whole
//! commands only) and get back the stream offset just past them. One writer task
//! pushes everything appended since its last push as one record (up to
//! [`MAX_BATCH`] bytes, whole commands, one segment per appended chunk) and, when
//! the push completes, moves the durable offset and wakes the connections waiting
//! for it ([`durable`](Aof::durable)). So concurrent clients share records and
//! flushes: while one record is being written, the next one fills up.
//!
//! On start, [`Aof::open`] pops every record and hands its commands to the caller
//! to replay. A record that does not hold whole commands means the file is not
//! ours or is damaged: start-up fails rather than guess.

use crate::resp::{Command, Parser};
use bytes::Bytes;
use demi::{LibOs, OpenMode, QDesc, Sga, StorageError, StorageOptions};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Largest record the log is created with (the storage engine's limit).
pub const MAX_RECORD: usize = 256 << 20;
/// Bytes gathered into one record when several chunks are waiting.
const MAX_BATCH: usize = 1 << 20;
/// Segments in one record (the engine allows 1024).
const MAX_SEGMENTS: usize = 1000;

#[derive(Default)]
struct State {
    /// Appended chunks not yet pushed.
    pending: VecDeque<Bytes>,
    /// Offset just past everything appended.
    appended: u64,
    /// Offset just past everything durable.
    durable: u64,
    /// Connections waiting for an offset to be durable.
    waiters: Vec<(u64, Waker)>,
    /// The writer task, parked while nothing is pending.
    writer: Option<Waker>,
}

/// The log of one kv server.
pub struct Aof {
    libos: LibOs,
    qd: QDesc,
    path: PathBuf,
    state: RefCell<State>,
}

impl Aof {
    /// Opens `dir/kv.aof` (creating `dir` and the file if missing) and replays it:
    /// `apply` gets every logged command in order. Returns the log and the number of
    /// records read.
    pub async fn open(
        libos: &LibOs,
        dir: &Path,
        mut apply: impl FnMut(&Command) -> Result<(), String>,
    ) -> Result<(Rc<Aof>, u64), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let path = dir.join("kv.aof");
        let qd = if path.exists() {
            libos.open(&path).map_err(|e| open_error(&path, e))?
        } else {
            let mut options = StorageOptions::default();
            options.log.max_record = MAX_RECORD as u32;
            libos.open_with(&path, OpenMode::CreateTruncate, &options).map_err(|e| open_error(&path, e))?
        };
        let mut records = 0u64;
        loop {
            let sga = match libos.pop(qd) {
                Ok(qt) => qt.await.and_then(demi::QResult::into_sga),
                Err(e) => Err(e),
            }
            .map_err(|e| format!("reading record {records} of {}: {e}", path.display()))?;
            if sga.is_empty() {
                break;
            }
            let mut parser = Parser::new();
            for seg in sga.segments() {
                parser.feed(seg);
            }
            loop {
                match parser.next() {
                    Ok(Some(cmd)) => apply(&cmd).map_err(|e| format!("{}: record {records}: {e}", path.display()))?,
                    Ok(None) => break,
                    Err(e) => return Err(format!("{}: record {records} is not RESP: {e}", path.display())),
                }
            }
            if !parser.at_boundary() {
                return Err(format!("{}: record {records} ends inside a command", path.display()));
            }
            records += 1;
        }
        let aof = Rc::new(Aof { libos: libos.clone(), qd, path, state: RefCell::new(State::default()) });
        demi::spawn(aof.clone().writer()).detach();
        Ok((aof, records))
    }

    /// Queues whole commands for the log; returns the offset just past them (wait
    /// for it with [`durable`](Self::durable)).
    pub fn append(&self, chunk: Bytes) -> u64 {
        let mut s = self.state.borrow_mut();
        s.appended += chunk.len() as u64;
        s.pending.push_back(chunk);
        if let Some(w) = s.writer.take() {
            w.wake();
        }
        s.appended
    }

    /// The offset just past everything appended so far.
    pub fn appended(&self) -> u64 {
        self.state.borrow().appended
    }

    /// Completes once everything up to `offset` is durable.
    pub async fn durable(&self, offset: u64) {
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.durable >= offset {
                return Poll::Ready(());
            }
            s.waiters.push((offset, cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Pushes what was appended, one record at a time, until the process ends. A
    /// failed push ends the process: acknowledged writes can no longer be made
    /// durable, and a log with a hole must not be appended to.
    async fn writer(self: Rc<Self>) {
        loop {
            // Wait for something to write, then let every other ready connection
            // run first: what they append goes into the same record and flush.
            poll_fn(|cx| {
                let mut s = self.state.borrow_mut();
                if s.pending.is_empty() {
                    s.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Ready(())
            })
            .await;
            demi::yield_now().await;
            let (sga, end) = poll_fn(|cx| {
                let mut s = self.state.borrow_mut();
                if s.pending.is_empty() {
                    s.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                let mut segs = Vec::new();
                let mut bytes = 0usize;
                let mut end = s.durable;
                while let Some(front) = s.pending.front() {
                    if !segs.is_empty() && (bytes + front.len() > MAX_BATCH || segs.len() == MAX_SEGMENTS) {
                        break;
                    }
                    let chunk = s.pending.pop_front().expect("checked non-empty");
                    bytes += chunk.len();
                    end += chunk.len() as u64;
                    segs.push(chunk);
                }
                Poll::Ready((Sga::from_segments(segs), end))
            })
            .await;
            let result = match self.libos.push(self.qd, sga) {
                Ok(qt) => qt.await.and_then(demi::QResult::ok),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                eprintln!("kv: appending to {} failed: {e}; exiting", self.path.display());
                std::process::exit(1);
            }
            let mut s = self.state.borrow_mut();
            s.durable = end;
            let mut i = 0;
            while i < s.waiters.len() {
                if s.waiters[i].0 <= end {
                    s.waiters.swap_remove(i).1.wake();
                } else {
                    i += 1;
                }
            }
        }
    }
}

fn open_error(path: &Path, e: StorageError) -> String {
    let hint = match &e {
        StorageError::Io(code) if *code == libc::EINVAL => {
            " (O_DIRECT: put --dir on a disk file system such as ext4, not tmpfs)"
        }
        StorageError::NotALog => " (not a demi log: move it away or choose another --dir)",
        _ => "",
    };
    format!("opening {}: {e}{hint}", path.display())
}
