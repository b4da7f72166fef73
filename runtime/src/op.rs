//! Operation slots: the state behind every qtoken.
//!
//! A libOS that starts an operation (a push, a pop, an accept) takes a slot from the
//! runtime's slab and hands the application a [`QToken`] naming it. The slot holds
//! the operation's identity, its result once it is there, and the one waiter to wake.
//! When the device finishes, the libOS completes the slot and exactly that waiter is
//! woken — no boxed coroutine per operation, no scan over other tokens.
//!
//! Tokens are generation-checked: a token whose result was already taken, or that
//! was never issued, is reported as [`QError::BadToken`], never confused with a
//! newer operation that reuses the slot.

use crate::queue::{OpCode, QDesc, QError, QResult, QValue};
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

/// A queue token: names one outstanding operation. Cheap to copy; collect its result
/// with `wait`, `wait_any`, `wait_all`, or `.await` (a token is a future through
/// [`IntoFuture`](std::future::IntoFuture)). A result can be taken once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QToken(u64);

impl QToken {
    fn new(index: usize, generation: u32) -> Self {
        QToken(((generation as u64) << 32) | index as u64)
    }

    fn index(self) -> usize {
        self.0 as u32 as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The raw 64-bit value (for FFI and logs).
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Rebuilds a token from [`raw`](Self::raw). A made-up value is harmless: waiting
    /// on it gives [`QError::BadToken`].
    pub fn from_raw(raw: u64) -> Self {
        QToken(raw)
    }
}

impl fmt::Debug for QToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "qt#{}.{}", self.index(), self.generation())
    }
}

/// Completions of a group of tokens (one `wait_any` or `wait_all`), in the order they
/// happened, as positions in the waited slice.
#[derive(Default)]
pub(crate) struct WaitGroup {
    ready: RefCell<VecDeque<usize>>,
    waker: RefCell<Option<Waker>>,
}

impl WaitGroup {
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut w = self.waker.borrow_mut();
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }

    pub(crate) fn next_ready(&self) -> Option<usize> {
        self.ready.borrow_mut().pop_front()
    }

    fn notify(&self, pos: usize) {
        self.ready.borrow_mut().push_back(pos);
        let waker = self.waker.borrow().clone();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Completions of a [`WaitSet`](crate::WaitSet), as the tokens themselves, in the
/// order they happened.
#[derive(Default)]
pub(crate) struct SetGroup {
    pub(crate) ready: RefCell<VecDeque<QToken>>,
    waker: RefCell<Option<Waker>>,
}

impl SetGroup {
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut w = self.waker.borrow_mut();
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }

    pub(crate) fn next_ready(&self) -> Option<QToken> {
        self.ready.borrow_mut().pop_front()
    }

    pub(crate) fn notify(&self, qt: QToken) {
        self.ready.borrow_mut().push_back(qt);
        let waker = self.waker.borrow().clone();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Who is waiting for a slot.
enum Waiter {
    None,
    Task(Waker),
    Group { group: Weak<WaitGroup>, pos: usize },
    Set { set: Weak<SetGroup>, qt: QToken },
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::None => {}
            Waiter::Task(w) => w.wake(),
            Waiter::Group { group, pos } => {
                if let Some(g) = group.upgrade() {
                    g.notify(pos);
                }
            }
            Waiter::Set { set, qt } => {
                if let Some(s) = set.upgrade() {
                    s.notify(qt);
                }
            }
        }
    }
}

enum State {
    Pending(Waiter),
    Done(Result<QValue, QError>),
}

struct Slot {
    generation: u32,
    opcode: OpCode,
    qd: QDesc,
    state: State,
}

/// The slab of operation slots of one runtime.
pub(crate) struct OpTable {
    slots: RefCell<Slab<Slot>>,
    next_generation: Cell<u32>,
}

/// Whether a slot has its result yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotStatus {
    Pending,
    Done,
}

impl OpTable {
    pub(crate) fn new() -> Self {
        OpTable { slots: RefCell::new(Slab::new()), next_generation: Cell::new(1) }
    }

    fn generation(&self) -> u32 {
        let g = self.next_generation.get();
        self.next_generation.set(g.wrapping_add(1).max(1));
        g
    }

    fn lookup(slots: &mut Slab<Slot>, qt: QToken) -> Result<&mut Slot, QError> {
        match slots.get_mut(qt.index()) {
            Some(slot) if slot.generation == qt.generation() => Ok(slot),
            _ => Err(QError::BadToken),
        }
    }

    pub(crate) fn start(&self, opcode: OpCode, qd: QDesc) -> QToken {
        let generation = self.generation();
        let index = self.slots.borrow_mut().insert(Slot {
            generation,
            opcode,
            qd,
            state: State::Pending(Waiter::None),
        });
        QToken::new(index, generation)
    }

    pub(crate) fn start_completed(
        &self,
        opcode: OpCode,
        qd: QDesc,
        value: Result<QValue, QError>,
    ) -> QToken {
        let generation = self.generation();
        let index = self.slots.borrow_mut().insert(Slot {
            generation,
            opcode,
            qd,
            state: State::Done(value),
        });
        QToken::new(index, generation)
    }

    /// Stores the result and wakes the waiter. Fails for an unknown token or one that
    /// is already complete (the first result stands).
    pub(crate) fn complete(&self, qt: QToken, value: Result<QValue, QError>) -> Result<(), QError> {
        let waiter = {
            let mut slots = self.slots.borrow_mut();
            let slot = Self::lookup(&mut slots, qt)?;
            match std::mem::replace(&mut slot.state, State::Done(value)) {
                State::Pending(w) => w,
                State::Done(first) => {
                    slot.state = State::Done(first);
                    return Err(QError::InvalidState);
                }
            }
        };
        waiter.wake();
        Ok(())
    }

    pub(crate) fn status(&self, qt: QToken) -> Result<SlotStatus, QError> {
        let mut slots = self.slots.borrow_mut();
        let slot = Self::lookup(&mut slots, qt)?;
        Ok(match slot.state {
            State::Pending(_) => SlotStatus::Pending,
            State::Done(_) => SlotStatus::Done,
        })
    }

    /// The operation a live token stands for.
    pub(crate) fn describe(&self, qt: QToken) -> Result<(OpCode, QDesc), QError> {
        let mut slots = self.slots.borrow_mut();
        let slot = Self::lookup(&mut slots, qt)?;
        Ok((slot.opcode, slot.qd))
    }

    /// Takes the result if it is there (freeing the slot); `Ok(None)` if pending.
    pub(crate) fn take(&self, qt: QToken) -> Result<Option<QResult>, QError> {
        let mut slots = self.slots.borrow_mut();
        let slot = Self::lookup(&mut slots, qt)?;
        if let State::Pending(_) = slot.state {
            return Ok(None);
        }
        let slot = slots.remove(qt.index());
        match slot.state {
            State::Done(value) => Ok(Some(QResult { opcode: slot.opcode, qd: slot.qd, qt, value })),
            State::Pending(_) => unreachable!("checked above"),
        }
    }

    /// Takes the result, or makes `waker` the slot's waiter (`Pending`). Answers in
    /// the shape of the token's future, so the result is built where the future
    /// returns it instead of being moved from one wrapper into another.
    pub(crate) fn take_or_wait(&self, qt: QToken, waker: &Waker) -> Poll<Result<QResult, QError>> {
        // One borrow and one lookup for either outcome (this is every `.await` of a
        // token).
        let mut slots = self.slots.borrow_mut();
        let slot = match Self::lookup(&mut slots, qt) {
            Ok(slot) => slot,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let State::Pending(w) = &mut slot.state {
            match w {
                Waiter::Task(old) if old.will_wake(waker) => {}
                _ => *w = Waiter::Task(waker.clone()),
            }
            return Poll::Pending;
        }
        let slot = slots.remove(qt.index());
        match slot.state {
            State::Done(value) => Poll::Ready(Ok(QResult { opcode: slot.opcode, qd: slot.qd, qt, value })),
            State::Pending(_) => unreachable!("checked above"),
        }
    }

    /// Makes a group the slot's waiter unless the slot is already done.
    pub(crate) fn join_group(
        &self,
        qt: QToken,
        group: &Rc<WaitGroup>,
        pos: usize,
    ) -> Result<SlotStatus, QError> {
        let mut slots = self.slots.borrow_mut();
        let slot = Self::lookup(&mut slots, qt)?;
        match &mut slot.state {
            State::Pending(w) => {
                *w = Waiter::Group { group: Rc::downgrade(group), pos };
                Ok(SlotStatus::Pending)
            }
            State::Done(_) => Ok(SlotStatus::Done),
        }
    }

    /// [`join_group`](Self::join_group) for every token of a slice, position by
    /// position, in one pass over the slab; the position of the first token that is
    /// already done, if any. A bad token fails the call (tokens before it have joined).
    pub(crate) fn join_group_all(&self, qts: &[QToken], group: &Rc<WaitGroup>) -> Result<Option<usize>, QError> {
        let mut slots = self.slots.borrow_mut();
        let weak = Rc::downgrade(group);
        let mut first_done = None;
        for (pos, &qt) in qts.iter().enumerate() {
            let slot = Self::lookup(&mut slots, qt)?;
            match &mut slot.state {
                State::Pending(w) => match w {
                    Waiter::Group { group: g, pos: p } if *p == pos && g.ptr_eq(&weak) => {}
                    _ => *w = Waiter::Group { group: weak.clone(), pos },
                },
                State::Done(_) => {
                    first_done.get_or_insert(pos);
                }
            }
        }
        Ok(first_done)
    }

    /// Makes a set the slot's waiter. `Ok(None)`: it already was; otherwise the
    /// slot's status (a done slot is not changed: the caller reports it itself).
    pub(crate) fn join_set(&self, qt: QToken, set: &Rc<SetGroup>) -> Result<Option<SlotStatus>, QError> {
        let mut slots = self.slots.borrow_mut();
        let slot = Self::lookup(&mut slots, qt)?;
        match &mut slot.state {
            State::Pending(Waiter::Set { set: s, .. }) if std::ptr::eq(s.as_ptr(), Rc::as_ptr(set)) => Ok(None),
            State::Pending(w) => {
                *w = Waiter::Set { set: Rc::downgrade(set), qt };
                Ok(Some(SlotStatus::Pending))
            }
            State::Done(_) => Ok(Some(SlotStatus::Done)),
        }
    }

    /// True if the pending slot's waiter is `set`; with `leave`, it stops being.
    pub(crate) fn in_set(&self, qt: QToken, set: &Rc<SetGroup>, leave: bool) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Ok(slot) = Self::lookup(&mut slots, qt) else { return false };
        match &mut slot.state {
            State::Pending(w @ Waiter::Set { .. }) => {
                let Waiter::Set { set: s, .. } = &*w else { unreachable!() };
                if !std::ptr::eq(s.as_ptr(), Rc::as_ptr(set)) {
                    return false;
                }
                if leave {
                    *w = Waiter::None;
                }
                true
            }
            _ => false,
        }
    }

    /// Slots in use (pending or holding an untaken result).
    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Drops every slot (runtime shutdown), waking nobody.
    pub(crate) fn clear(&self) {
        let slots = std::mem::take(&mut *self.slots.borrow_mut());
        drop(slots);
    }
}
