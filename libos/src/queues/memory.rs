//! `queue()`: an in-memory queue of atomic elements.
//!
//! FIFO, bounded: a push completes at once while fewer than `capacity` elements are
//! buffered (or a pop is waiting, which takes the element directly); otherwise it
//! waits until a pop makes room (back-pressure), and blocked pushes enter the queue
//! in the order they were made. Pops complete in the order they were made. Close
//! completes every pending pop and push with [`QError::Canceled`] and drops the
//! buffered elements.

use demi_runtime::{Handle, OpCode, QDesc, QError, QToken, QValue, Sga};
use std::collections::VecDeque;

/// Default capacity of [`queue()`](crate::LibOs::queue), in elements.
pub const DEFAULT_CAPACITY: usize = 1024;

pub(crate) struct MemQueue {
    qd: QDesc,
    capacity: usize,
    items: VecDeque<Sga>,
    pops: VecDeque<QToken>,
    /// Pushes waiting for room, oldest first.
    blocked: VecDeque<(QToken, Sga)>,
}

impl MemQueue {
    pub(crate) fn new(qd: QDesc, capacity: usize) -> Self {
        MemQueue { qd, capacity, items: VecDeque::new(), pops: VecDeque::new(), blocked: VecDeque::new() }
    }

    pub(crate) fn push(&mut self, rt: &Handle, sga: Sga) -> Result<QToken, QError> {
        if sga.is_empty() && sga.addr().is_none() {
            // An empty element is how byte streams say "end"; keep the two apart.
            return Err(QError::InvalidArgument("cannot push an empty element"));
        }
        if let Some(pop) = self.pops.pop_front() {
            let _ = rt.op_complete(pop, Ok(QValue::Popped(sga)));
            return Ok(rt.op_start_completed(OpCode::Push, self.qd, Ok(QValue::Pushed)));
        }
        if self.items.len() < self.capacity && self.blocked.is_empty() {
            self.items.push_back(sga);
            return Ok(rt.op_start_completed(OpCode::Push, self.qd, Ok(QValue::Pushed)));
        }
        let qt = rt.op_start(OpCode::Push, self.qd);
        self.blocked.push_back((qt, sga));
        Ok(qt)
    }

    pub(crate) fn pop(&mut self, rt: &Handle) -> QToken {
        match self.items.pop_front() {
            Some(sga) => {
                // Room for the oldest blocked push.
                if let Some((qt, waiting)) = self.blocked.pop_front() {
                    self.items.push_back(waiting);
                    let _ = rt.op_complete(qt, Ok(QValue::Pushed));
                }
                rt.op_start_completed(OpCode::Pop, self.qd, Ok(QValue::Popped(sga)))
            }
            None => {
                let qt = rt.op_start(OpCode::Pop, self.qd);
                self.pops.push_back(qt);
                qt
            }
        }
    }

    /// Takes back a pending pop (a combinator reading from this queue was closed):
    /// it completes with [`QError::Canceled`] and no element is lost to it.
    pub(crate) fn withdraw_pop(&mut self, rt: &Handle, qt: QToken) {
        if let Some(i) = self.pops.iter().position(|&p| p == qt) {
            self.pops.remove(i);
            let _ = rt.op_complete(qt, Err(QError::Canceled));
        }
    }

    pub(crate) fn close(&mut self, rt: &Handle) {
        self.items.clear();
        for qt in self.pops.drain(..).chain(self.blocked.drain(..).map(|b| b.0)) {
            let _ = rt.op_complete(qt, Err(QError::Canceled));
        }
    }
}
