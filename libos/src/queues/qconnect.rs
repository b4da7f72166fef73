//! `qconnect(qin, qout)`: elements popped from `qin` are pushed to `qout`,
//! continuously, until either side closes.
//!
//! One task per connection keeps one pop outstanding on `qin` and up to [`WINDOW`]
//! pushes on `qout`; it reads the next element only while the window has room, so a
//! slow or full `qout` (a bounded memory queue, a TCP send buffer) holds `qin` back
//! instead of buffering without bound. Elements keep their order.
//!
//! It ends when `qin` ends (closed, or end of stream: the empty element is not
//! forwarded), when `qout` is closed (noticed at once for memory queues and
//! combinators, at the next push otherwise), or on an error. `qconnect` returns a
//! token (opcode [`OpCode::Other`], on `qin`) that completes then: with
//! [`QValue::Closed`] when a side closed or ended, with the error otherwise. Neither
//! queue is closed by it; an element popped from `qin` when `qout` turned out to be
//! closed is dropped.

use super::{is_close, stage::poll_token};
use crate::LibOs;
use demi_runtime::{Handle, QDesc, QError, QToken, QValue};
use std::collections::VecDeque;
use std::task::{Context, Poll};

/// Pushes a connection keeps in flight on `qout`.
pub(crate) const WINDOW: usize = 8;

pub(crate) struct Connect {
    pub(crate) qin: QDesc,
    pub(crate) qout: QDesc,
    token: QToken,
    rt: Handle,
    reading: Option<QToken>,
    pushing: VecDeque<QToken>,
    finished: bool,
}

impl Connect {
    pub(crate) fn new(rt: Handle, qin: QDesc, qout: QDesc, token: QToken) -> Connect {
        Connect { qin, qout, token, rt, reading: None, pushing: VecDeque::new(), finished: false }
    }

    /// Ends the connection now (libOS shutdown): its token completes `Canceled`.
    pub(crate) fn cancel(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.rt.op_complete(self.token, Err(QError::Canceled));
        }
    }

    fn finish(&mut self, libos: &LibOs, why: Result<(), QError>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let v = match why {
            Ok(()) => Ok(QValue::Closed),
            Err(e) if is_close(e) => Ok(QValue::Closed),
            Err(e) => Err(e),
        };
        let _ = self.rt.op_complete(self.token, v);
        if let Some(qt) = self.reading {
            libos.inner.queues.withdraw_pop(&self.rt, self.qin, qt);
        }
    }

    /// One turn of the connection's task. `Ready` when the task can end.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, libos: &LibOs) -> Poll<()> {
        let queues = &libos.inner.queues;
        loop {
            while let Some(&qt) = self.pushing.front() {
                match poll_token(qt, cx) {
                    Poll::Ready(r) => {
                        self.pushing.pop_front();
                        if let Err(e) = r.and_then(|r| r.ok()) {
                            self.finish(libos, Err(e));
                        }
                    }
                    Poll::Pending => break,
                }
            }
            if self.finished {
                // Take and drop what is still in flight, then end.
                if let Some(qt) = self.reading {
                    if poll_token(qt, cx).is_ready() {
                        self.reading = None;
                    }
                }
                self.pushing.retain(|&qt| poll_token(qt, cx).is_pending());
                return if self.reading.is_none() && self.pushing.is_empty() { Poll::Ready(()) } else { Poll::Pending };
            }
            if queues.is_ours(self.qout) && !queues.watch_open(self.qout, cx.waker()) {
                self.finish(libos, Ok(()));
                continue;
            }
            if let Some(qt) = self.reading {
                let Poll::Ready(r) = poll_token(qt, cx) else { return Poll::Pending };
                self.reading = None;
                match r.and_then(|r| r.into_sga()) {
                    Ok(sga) if sga.is_empty() && sga.addr().is_none() => self.finish(libos, Ok(())),
                    Ok(sga) => match libos.push(self.qout, sga) {
                        Ok(qt) => self.pushing.push_back(qt),
                        Err(e) => self.finish(libos, Err(e)),
                    },
                    Err(e) => self.finish(libos, Err(e)),
                }
                continue;
            }
            if self.pushing.len() >= WINDOW {
                return Poll::Pending;
            }
            match libos.pop(self.qin) {
                Ok(qt) => self.reading = Some(qt),
                Err(e) => self.finish(libos, Err(e)),
            }
        }
    }
}
