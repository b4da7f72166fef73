//! The engine shared by `merge`, `filter`, `sort` and `map`: a queue whose pops are
//! fed by pops of its inputs and whose pushes become pushes to its inputs.
//!
//! Each combinator queue is one [`Stage`] plus one long-lived task on the runtime
//! (not a coroutine per operation). The task keeps at most one pop outstanding per
//! input, turns input completions into elements (through the kind's hook: drop for
//! a filter, transform for a map, heap for a sort), and completes the combinator's
//! own pops from them. Pushes are forwarded to the inputs when they are made; the
//! combinator's push token completes once every forwarded push has.
//!
//! Reading is demand-driven for FIFO kinds (an input is read only while pops are
//! waiting that buffered elements cannot serve, so at most one element per input is
//! read ahead) and eager for `sort` (it reads ahead up to its capacity, so that it
//! has something to order).

use super::{filter::FilterState, is_close, map::MapFn, sort::Heap};
use crate::LibOs;
use demi_runtime::{Handle, OpCode, QDesc, QError, QResult, QToken, QValue, Sga};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::future::IntoFuture;
use std::pin::Pin;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Iterations of the read loop before the task yields to others.
const BUDGET: usize = 256;

pub(crate) enum Kind {
    Merge,
    Filter(FilterState),
    Sort,
    Map(MapFn),
}

/// Why an input, or the whole stage, ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// End of stream (an empty element from a byte-stream queue).
    Eof,
    /// The input was closed.
    Closed,
    /// The input failed.
    Error(QError),
}

impl End {
    fn of(e: QError) -> End {
        if is_close(e) {
            End::Closed
        } else {
            End::Error(e)
        }
    }

    fn value(self) -> Result<QValue, QError> {
        match self {
            End::Eof => Ok(QValue::Popped(Sga::new())),
            End::Closed => Err(QError::Canceled),
            End::Error(e) => Err(e),
        }
    }
}

struct Input {
    qd: QDesc,
    /// The one pop outstanding on this input.
    reading: Option<QToken>,
    end: Option<End>,
}

/// Buffered elements, ready to be popped.
pub(crate) enum Ready {
    Fifo(VecDeque<Result<Sga, QError>>),
    Heap(Heap),
}

impl Ready {
    fn len(&self) -> usize {
        match self {
            Ready::Fifo(q) => q.len(),
            Ready::Heap(h) => h.len(),
        }
    }

    fn take(&mut self) -> Option<Result<Sga, QError>> {
        match self {
            Ready::Fifo(q) => q.pop_front(),
            Ready::Heap(h) => h.pop().map(Ok),
        }
    }

    fn put(&mut self, item: Result<Sga, QError>) {
        match (self, item) {
            (Ready::Fifo(q), item) => q.push_back(item),
            (Ready::Heap(h), Ok(sga)) => h.push(sga),
            // A sort has a single input, whose errors end it (never buffered).
            (Ready::Heap(_), Err(_)) => {}
        }
    }
}

struct OuterPush {
    qt: QToken,
    pending: SmallVec<[QToken; 2]>,
    result: Result<(), QError>,
}

pub(crate) struct Stage {
    pub(crate) qd: QDesc,
    rt: Handle,
    kind: Kind,
    inputs: Vec<Input>,
    /// The input to look at first next time (merge fairness).
    rr: usize,
    pops: VecDeque<QToken>,
    ready: Ready,
    /// Read-ahead limit (sort).
    capacity: usize,
    /// Every input has ended: pops past the buffered elements complete with this.
    terminal: Option<End>,
    pushes: VecDeque<OuterPush>,
    closed: bool,
    /// Tokens of inputs left in flight by close: taken and dropped when they complete.
    orphans: Vec<QToken>,
    waker: Option<Waker>,
}

/// Polls a token once with `cx` (which becomes its waiter if it is pending).
pub(crate) fn poll_token(qt: QToken, cx: &mut Context<'_>) -> Poll<Result<QResult, QError>> {
    let mut fut = qt.into_future();
    Pin::new(&mut fut).poll(cx)
}

/// The result of a token if it is already there, without becoming its waiter.
pub(crate) fn try_take(rt: &Handle, qt: QToken) -> Option<Result<QResult, QError>> {
    rt.try_take(qt).transpose()
}

/// Folds a forwarded push's outcome into its outer push (first error wins).
fn settle_one(result: &mut Result<(), QError>, r: Result<QResult, QError>) {
    let r = r.and_then(|r| r.ok());
    if result.is_ok() {
        if let Err(e) = r {
            *result = Err(if is_close(e) { QError::Canceled } else { e });
        }
    }
}

impl OuterPush {
    /// Takes what completed; true when nothing is pending any more.
    fn settle(&mut self, rt: &Handle, cx: Option<&mut Context<'_>>) -> bool {
        let mut cx = cx;
        let mut i = 0;
        while i < self.pending.len() {
            let qt = self.pending[i];
            let r = match cx.as_deref_mut() {
                Some(cx) => match poll_token(qt, cx) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                },
                None => try_take(rt, qt),
            };
            match r {
                Some(r) => {
                    settle_one(&mut self.result, r);
                    self.pending.remove(i);
                }
                None => i += 1,
            }
        }
        self.pending.is_empty()
    }
}

impl Stage {
    pub(crate) fn new(qd: QDesc, rt: Handle, kind: Kind, inputs: &[QDesc], capacity: usize) -> Stage {
        let ready = match kind {
            Kind::Sort => Ready::Heap(Heap::default()),
            _ => Ready::Fifo(VecDeque::new()),
        };
        Stage {
            qd,
            rt,
            kind,
            inputs: inputs.iter().map(|&qd| Input { qd, reading: None, end: None }).collect(),
            rr: 0,
            pops: VecDeque::new(),
            ready,
            capacity,
            terminal: None,
            pushes: VecDeque::new(),
            closed: false,
            orphans: Vec::new(),
            waker: None,
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    pub(crate) fn set_heap(&mut self, heap: Heap) {
        self.ready = Ready::Heap(heap);
    }

    pub(crate) fn inputs(&self) -> impl Iterator<Item = QDesc> + '_ {
        self.inputs.iter().map(|i| i.qd)
    }

    fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    // ---- operations (called through LibOs) -----------------------------------------

    pub(crate) fn pop(&mut self) -> QToken {
        // A sort with a live input answers from its task, after taking in what its
        // input has available, so that a pop sees the best element there is.
        let sorting = matches!(self.kind, Kind::Sort) && self.terminal.is_none();
        if self.pops.is_empty() && !sorting {
            if let Some(item) = self.ready.take() {
                let v = item.map(QValue::Popped);
                self.wake(); // room to read ahead again
                return self.rt.op_start_completed(OpCode::Pop, self.qd, v);
            }
            if let Some(end) = self.terminal {
                return self.rt.op_start_completed(OpCode::Pop, self.qd, end.value());
            }
        }
        let qt = self.rt.op_start(OpCode::Pop, self.qd);
        self.pops.push_back(qt);
        self.wake();
        qt
    }

    pub(crate) fn push(&mut self, libos: &LibOs, sga: Sga) -> Result<QToken, QError> {
        let mut targets: SmallVec<[(QDesc, Sga); 2]> = SmallVec::new();
        match &self.kind {
            Kind::Merge => targets.extend(self.inputs.iter().map(|i| (i.qd, sga.clone()))),
            Kind::Filter(f) => {
                if f.holds(&sga) {
                    targets.push((self.inputs[0].qd, sga));
                } else {
                    f.stats.dropped_push.set(f.stats.dropped_push.get() + 1);
                }
            }
            Kind::Map(f) => targets.push((self.inputs[0].qd, f(sga))),
            Kind::Sort => targets.push((self.inputs[0].qd, sga)),
        }
        let mut outer = OuterPush { qt: QToken::from_raw(0), pending: SmallVec::new(), result: Ok(()) };
        for (qd, sga) in targets {
            match libos.push(qd, sga) {
                Ok(qt) => outer.pending.push(qt),
                Err(e) => settle_one(&mut outer.result, Err(e)),
            }
        }
        if self.pushes.is_empty() && outer.settle(&self.rt, None) {
            return Ok(self.rt.op_start_completed(OpCode::Push, self.qd, outer.result.map(|()| QValue::Pushed)));
        }
        outer.qt = self.rt.op_start(OpCode::Push, self.qd);
        let qt = outer.qt;
        self.pushes.push_back(outer);
        self.wake();
        Ok(qt)
    }

    /// Takes back a pending pop made by a combinator reading from this one.
    pub(crate) fn withdraw_pop(&mut self, qt: QToken) {
        if let Some(i) = self.pops.iter().position(|&p| p == qt) {
            self.pops.remove(i);
            let _ = self.rt.op_complete(qt, Err(QError::Canceled));
        }
    }

    /// Closes the stage: its pending operations complete with `Canceled`; reads it
    /// has outstanding on inputs are withdrawn where the input allows (memory queues
    /// and combinators) and otherwise left to complete and be dropped. The inputs
    /// stay open.
    pub(crate) fn close(&mut self) -> Vec<(QDesc, QToken)> {
        self.closed = true;
        for qt in self.pops.drain(..) {
            let _ = self.rt.op_complete(qt, Err(QError::Canceled));
        }
        for p in self.pushes.drain(..) {
            let _ = self.rt.op_complete(p.qt, Err(QError::Canceled));
            self.orphans.extend(p.pending);
        }
        let reads: Vec<(QDesc, QToken)> =
            self.inputs.iter_mut().filter_map(|i| i.reading.take().map(|qt| (i.qd, qt))).collect();
        self.orphans.extend(reads.iter().map(|r| r.1));
        if let Ready::Fifo(q) = &mut self.ready {
            q.clear();
        }
        self.wake();
        reads
    }

    // ---- the task ------------------------------------------------------------------

    fn wants_read(&self) -> bool {
        match self.kind {
            Kind::Sort => self.ready.len() < self.capacity || self.pops.len() > self.ready.len(),
            _ => self.pops.len() > self.ready.len(),
        }
    }

    fn input_ended(&mut self, i: usize, end: End) {
        self.inputs[i].end = Some(end);
        if self.inputs.iter().all(|i| i.end.is_some()) {
            self.terminal = Some(end);
        } else if let End::Error(e) = end {
            // Other inputs go on; the error is reported once, in order.
            self.ready.put(Err(e));
        }
    }

    fn on_input(&mut self, i: usize, r: Result<QResult, QError>) {
        let value = match r {
            Ok(r) => r.value,
            Err(e) => Err(e),
        };
        let sga = match value {
            Ok(QValue::Popped(sga)) => sga,
            Ok(_) => return,
            Err(e) => return self.input_ended(i, End::of(e)),
        };
        if sga.is_empty() && sga.addr().is_none() {
            return self.input_ended(i, End::Eof);
        }
        let out = match &self.kind {
            Kind::Merge | Kind::Sort => Some(sga),
            Kind::Filter(f) => {
                let (keep, counter) =
                    if f.holds(&sga) { (Some(sga), &f.stats.passed) } else { (None, &f.stats.dropped) };
                counter.set(counter.get() + 1);
                keep
            }
            Kind::Map(f) => Some(f(sga)),
        };
        if let Some(sga) = out {
            self.ready.put(Ok(sga));
        }
    }

    /// Completes waiting pops from the buffer (or the end); true if any completed.
    fn serve(&mut self) -> bool {
        let mut served = false;
        while let Some(&qt) = self.pops.front() {
            let v = match self.ready.take() {
                Some(item) => item.map(QValue::Popped),
                None => match self.terminal {
                    Some(end) => end.value(),
                    None => return served,
                },
            };
            self.pops.pop_front();
            let _ = self.rt.op_complete(qt, v);
            served = true;
        }
        served
    }

    /// One turn of the stage's task. `Ready` when the task can end.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, libos: &LibOs) -> Poll<()> {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
        while let Some(front) = self.pushes.front_mut() {
            if !front.settle(&self.rt, Some(cx)) {
                break;
            }
            let p = self.pushes.pop_front().expect("front exists");
            let _ = self.rt.op_complete(p.qt, p.result.map(|()| QValue::Pushed));
        }
        if self.closed {
            self.orphans.retain(|&qt| poll_token(qt, cx).is_pending());
            return if self.orphans.is_empty() { Poll::Ready(()) } else { Poll::Pending };
        }
        let mut budget = BUDGET;
        loop {
            if self.read_round(cx, libos) {
                budget -= 1;
                if budget > 0 {
                    continue;
                }
                // Out of budget: serve, let other tasks run, then go on.
                self.serve();
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Serve only once every read that could complete at once has: a sort
            // then picks among everything available.
            if !self.serve() {
                return Poll::Pending;
            }
        }
    }

    /// Takes completed reads and starts the reads wanted; true if anything moved.
    fn read_round(&mut self, cx: &mut Context<'_>, libos: &LibOs) -> bool {
        let mut progress = false;
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            let Some(qt) = self.inputs[i].reading else { continue };
            if let Poll::Ready(r) = poll_token(qt, cx) {
                self.inputs[i].reading = None;
                self.on_input(i, r);
                self.rr = (i + 1) % n;
                progress = true;
            }
        }
        for k in 0..n {
            let i = (self.rr + k) % n;
            if self.inputs[i].reading.is_some() || self.inputs[i].end.is_some() || !self.wants_read() {
                continue;
            }
            match libos.pop(self.inputs[i].qd) {
                Ok(qt) => self.inputs[i].reading = Some(qt),
                Err(e) => self.input_ended(i, End::of(e)),
            }
            progress = true;
        }
        progress
    }
}
