//! In-memory queues and queue combinators: the control-path queue calls that
//! build new queues from old ones — `queue()`, `merge`, `filter`, `sort`, `map` —
//! and `qconnect`, which moves elements from one queue into another.
//!
//! Their descriptors live in their own index space of the libOS (top bits `01` of
//! [`QDesc::index`], see `route` in the crate root), so [`LibOs::push`],
//! [`LibOs::pop`], [`LibOs::close`] and the `wait*` calls take them like any other
//! queue. A combinator reads and writes its inputs only through those same calls,
//! so it works over any queue the libOS has — memory queues, other combinators,
//! TCP and UDP on either libOS, storage queues — and combinators compose.
//!
//! Each combinator is a state machine driven by one task on the runtime (see
//! `stage.rs`); memory queues need no task. The semantics (order, close, errors,
//! back-pressure, fairness) are in `docs/api.md`, "Queue combinators", and in each
//! file's docs.
//!
//! One file per concern: `memory.rs`, `merge.rs`, `filter.rs`, `sort.rs`, `map.rs`,
//! `qconnect.rs`, `predicate.rs` (the declarative, offloadable filter predicate), and
//! `stage.rs` (the engine the combinators share).

pub(crate) mod filter;
pub(crate) mod map;
pub(crate) mod memory;
pub(crate) mod merge;
pub(crate) mod predicate;
pub(crate) mod qconnect;
pub(crate) mod sort;
pub(crate) mod stage;

pub use filter::{Filter, FilterStats};
pub use memory::DEFAULT_CAPACITY;
pub use predicate::{Predicate, Proto};

use crate::{Backend, LibOs, Space};
use demi_runtime::{Handle, OpCode, QDesc, QError, QToken, Sga};
use filter::{Counters, FilterState};
use memory::MemQueue;
use qconnect::Connect;
use slab::Slab;
use stage::{Kind, Stage};
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Errors by which an input says it was closed (at the call, or in the completion).
pub(crate) fn is_close(e: QError) -> bool {
    matches!(e, QError::Canceled | QError::BadDescriptor)
}

#[derive(Clone)]
pub(crate) enum Obj {
    Memory(Rc<RefCell<MemQueue>>),
    Stage(Rc<RefCell<Stage>>),
}

struct Entry {
    generation: u32,
    obj: Obj,
}

/// The table of one libOS's memory queues and combinators, and its connections.
#[derive(Default)]
pub(crate) struct Queues {
    table: RefCell<Slab<Entry>>,
    next_generation: Cell<u32>,
    connects: RefCell<Slab<Rc<RefCell<Connect>>>>,
    /// Wakers to call when a queue of this table closes (qconnect watching `qout`).
    watchers: RefCell<Vec<(QDesc, Waker)>>,
}

impl Queues {
    pub(crate) fn is_ours(&self, qd: QDesc) -> bool {
        crate::route(qd) == Space::Queues
    }

    fn key(qd: QDesc) -> usize {
        (qd.index() & !crate::QUEUES_INDEX_BIT) as usize
    }

    fn insert(&self, make: impl FnOnce(QDesc) -> Obj) -> Result<QDesc, QError> {
        let generation = self.next_generation.get().max(1);
        self.next_generation.set(generation.wrapping_add(1));
        let mut table = self.table.borrow_mut();
        let entry = table.vacant_entry();
        let key = u32::try_from(entry.key()).ok().filter(|k| k & !(crate::QUEUES_INDEX_BIT - 1) == 0);
        let Some(key) = key else { return Err(QError::NoBufferSpace) };
        let qd = QDesc::from_parts(crate::QUEUES_INDEX_BIT | key, generation);
        entry.insert(Entry { generation, obj: make(qd) });
        Ok(qd)
    }

    pub(crate) fn get(&self, qd: QDesc) -> Result<Obj, QError> {
        match self.table.borrow().get(Self::key(qd)) {
            Some(e) if e.generation == qd.generation() => Ok(e.obj.clone()),
            _ => Err(QError::BadDescriptor),
        }
    }

    fn remove(&self, qd: QDesc) -> Result<Obj, QError> {
        self.get(qd)?;
        let obj = self.table.borrow_mut().remove(Self::key(qd)).obj;
        let woken: Vec<Waker> = {
            let mut w = self.watchers.borrow_mut();
            let (gone, keep) = w.drain(..).partition(|(q, _)| *q == qd);
            *w = keep;
            gone.into_iter().map(|(_, w)| w).collect()
        };
        woken.into_iter().for_each(Waker::wake);
        Ok(obj)
    }

    /// True if `qd` (one of ours) is open; if so, `waker` is woken when it closes.
    pub(crate) fn watch_open(&self, qd: QDesc, waker: &Waker) -> bool {
        if self.get(qd).is_err() {
            return false;
        }
        let mut w = self.watchers.borrow_mut();
        if !w.iter().any(|(q, old)| *q == qd && old.will_wake(waker)) {
            w.push((qd, waker.clone()));
        }
        true
    }

    /// Takes back a pending pop made on `qd` by a combinator or connection that no
    /// longer wants it. Only memory queues and combinators can; on other queues the
    /// pop stays in flight (its element, if one comes, is dropped).
    pub(crate) fn withdraw_pop(&self, rt: &Handle, qd: QDesc, qt: QToken) {
        match self.get(qd) {
            Ok(Obj::Memory(m)) => {
                if let Ok(mut m) = m.try_borrow_mut() {
                    m.withdraw_pop(rt, qt);
                }
            }
            Ok(Obj::Stage(s)) => {
                if let Ok(mut s) = s.try_borrow_mut() {
                    s.withdraw_pop(qt);
                }
            }
            Err(_) => {}
        }
    }

    /// Closes everything (the libOS is going away): pending operations complete
    /// with `Canceled`, connection tokens too; tasks end at their next turn.
    pub(crate) fn shutdown(&self, rt: &Handle) {
        let entries = std::mem::take(&mut *self.table.borrow_mut());
        for (_, e) in entries {
            match e.obj {
                Obj::Memory(m) => {
                    if let Ok(mut m) = m.try_borrow_mut() {
                        m.close(rt);
                    }
                }
                Obj::Stage(s) => {
                    if let Ok(mut s) = s.try_borrow_mut() {
                        drop(s.close());
                    }
                }
            }
        }
        let connects = std::mem::take(&mut *self.connects.borrow_mut());
        for (_, c) in connects {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.cancel();
            }
        }
        self.watchers.borrow_mut().clear();
    }
}

// ---- the calls, as LibOs routes them ----------------------------------------------

fn busy<T>(_: T) -> QError {
    // A map's function or a filter's closure called back into its own queue.
    QError::InvalidState
}

pub(crate) fn push(libos: &LibOs, qd: QDesc, sga: Sga) -> Result<QToken, QError> {
    match libos.inner.queues.get(qd)? {
        Obj::Memory(m) => m.try_borrow_mut().map_err(busy)?.push(&libos.inner.rt, sga),
        Obj::Stage(s) => s.try_borrow_mut().map_err(busy)?.push(libos, sga),
    }
}

pub(crate) fn pop(libos: &LibOs, qd: QDesc) -> Result<QToken, QError> {
    match libos.inner.queues.get(qd)? {
        Obj::Memory(m) => Ok(m.try_borrow_mut().map_err(busy)?.pop(&libos.inner.rt)),
        Obj::Stage(s) => Ok(s.try_borrow_mut().map_err(busy)?.pop()),
    }
}

pub(crate) fn close(libos: &LibOs, qd: QDesc) -> Result<(), QError> {
    let queues = &libos.inner.queues;
    match queues.remove(qd)? {
        Obj::Memory(m) => m.borrow_mut().close(&libos.inner.rt),
        Obj::Stage(s) => {
            let (reads, offloaded_on) = {
                let mut s = s.borrow_mut();
                let offloaded_on = match s.kind() {
                    Kind::Filter(f) if f.stats.offloaded.replace(false) => s.inputs().next(),
                    _ => None,
                };
                (s.close(), offloaded_on)
            };
            for (input, qt) in reads {
                queues.withdraw_pop(&libos.inner.rt, input, qt);
            }
            if offloaded_on.is_some() {
                if let Backend::Net(n) = &libos.inner.backend {
                    n.remove_udp_filter(qd);
                }
            }
        }
    }
    Ok(())
}

/// Inputs must be open queues of this libOS. Ours are checked here; a queue of the
/// backend (socket, storage) that is not open shows as a closed input at the first
/// pop or push.
fn check_input(libos: &LibOs, qd: QDesc) -> Result<(), QError> {
    if libos.inner.queues.is_ours(qd) {
        libos.inner.queues.get(qd).map(drop)
    } else {
        Ok(())
    }
}

fn spawn_task<T: 'static>(libos: &LibOs, obj: Rc<RefCell<T>>, poll: fn(&mut T, &mut std::task::Context<'_>, &LibOs) -> Poll<()>) {
    let weak = Rc::downgrade(&libos.inner);
    let task = std::future::poll_fn(move |cx| {
        let Some(inner) = weak.upgrade() else { return Poll::Ready(()) };
        let libos = LibOs { inner };
        let r = match obj.try_borrow_mut() {
            Ok(mut o) => poll(&mut o, cx, &libos),
            Err(_) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        };
        // Dropped after the borrow: this may be the last handle of the libOS.
        drop(libos);
        r
    });
    libos.inner.rt.spawn(task).detach();
}

fn new_stage(libos: &LibOs, kind: Kind, inputs: &[QDesc], capacity: usize, heap: Option<sort::Heap>) -> Result<QDesc, QError> {
    for &qd in inputs {
        check_input(libos, qd)?;
    }
    let rt = libos.inner.rt.clone();
    let mut made = None;
    let qd = libos.inner.queues.insert(|qd| {
        let mut st = Stage::new(qd, rt, kind, inputs, capacity);
        if let Some(h) = heap {
            st.set_heap(h);
        }
        let st = Rc::new(RefCell::new(st));
        made = Some(st.clone());
        Obj::Stage(st)
    })?;
    spawn_task(libos, made.expect("made by insert"), Stage::poll);
    Ok(qd)
}

pub(crate) fn queue(libos: &LibOs, capacity: usize) -> Result<QDesc, QError> {
    if capacity == 0 {
        return Err(QError::InvalidArgument("a memory queue needs a capacity of at least one element"));
    }
    libos.inner.queues.insert(|qd| Obj::Memory(Rc::new(RefCell::new(MemQueue::new(qd, capacity)))))
}

pub(crate) fn merge(libos: &LibOs, a: QDesc, b: QDesc) -> Result<QDesc, QError> {
    if a == b {
        return Err(QError::InvalidArgument("merge of a queue with itself"));
    }
    new_stage(libos, merge::kind(), &[a, b], 0, None)
}

pub(crate) fn filter(libos: &LibOs, qd: QDesc, test: Filter) -> Result<QDesc, QError> {
    check_input(libos, qd)?;
    let local = if libos.inner.queues.is_ours(qd) { None } else { libos.local_addr(qd).ok() };
    let stats = Rc::new(Counters::default());
    let socket = from_sockets(libos, qd, 0);
    let state = FilterState { test: test.clone(), local, socket, stats: stats.clone() };
    let fqd = new_stage(libos, Kind::Filter(state), &[qd], 0, None)?;
    if let (Filter::Predicate(p), Backend::Net(n)) = (&test, &libos.inner.backend) {
        if !libos.inner.queues.is_ours(qd) {
            let installed = n.install_udp_filter(qd, fqd, Rc::new(p.clone()), stats.dropped_offload.clone());
            stats.offloaded.set(installed.unwrap_or(false));
        }
    }
    Ok(fqd)
}

/// True if every element of `qd` comes from a socket: `qd` is one, or a
/// combinator over sockets only (then a declarative predicate can tell UDP
/// elements, which carry their source address, from TCP ones).
fn from_sockets(libos: &LibOs, qd: QDesc, depth: usize) -> bool {
    if !libos.inner.queues.is_ours(qd) {
        return libos.local_addr(qd).is_ok();
    }
    match libos.inner.queues.get(qd) {
        Ok(Obj::Stage(s)) if depth < 64 => match s.try_borrow() {
            Ok(s) => s.inputs().collect::<Vec<_>>().into_iter().all(|i| from_sockets(libos, i, depth + 1)),
            Err(_) => false,
        },
        _ => false,
    }
}

pub(crate) fn filter_stats(libos: &LibOs, qd: QDesc) -> Result<FilterStats, QError> {
    match libos.inner.queues.get(qd)? {
        Obj::Stage(s) => match s.try_borrow().map_err(busy)?.kind() {
            Kind::Filter(f) => {
                if let Backend::Net(n) = &libos.inner.backend {
                    if f.stats.offloaded.get() && !n.has_udp_filter(qd) {
                        f.stats.offloaded.set(false);
                    }
                }
                Ok(f.snapshot())
            }
            _ => Err(QError::InvalidArgument("not a filter queue")),
        },
        Obj::Memory(_) => Err(QError::InvalidArgument("not a filter queue")),
    }
}

pub(crate) fn sort(libos: &LibOs, qd: QDesc, order: sort::Order, capacity: usize) -> Result<QDesc, QError> {
    if capacity == 0 {
        return Err(QError::InvalidArgument("a sort needs a capacity of at least one element"));
    }
    new_stage(libos, Kind::Sort, &[qd], capacity, Some(sort::Heap::new(order)))
}

pub(crate) fn map(libos: &LibOs, qd: QDesc, f: map::MapFn) -> Result<QDesc, QError> {
    new_stage(libos, Kind::Map(f), &[qd], 0, None)
}

pub(crate) fn qconnect(libos: &LibOs, qin: QDesc, qout: QDesc) -> Result<QToken, QError> {
    if qin == qout {
        return Err(QError::InvalidArgument("qconnect of a queue to itself"));
    }
    check_input(libos, qin)?;
    check_input(libos, qout)?;
    let rt = libos.inner.rt.clone();
    let token = rt.op_start(OpCode::Other, qin);
    let c = Rc::new(RefCell::new(Connect::new(rt, qin, qout, token)));
    let key = libos.inner.queues.connects.borrow_mut().insert(c.clone());
    // The task removes its entry when it ends.
    let wrapped = Rc::new(RefCell::new((c, key)));
    spawn_task(libos, wrapped, |(c, key), cx, libos| {
        let r = match c.try_borrow_mut() {
            Ok(mut c) => c.poll(cx, libos),
            Err(_) => Poll::Pending,
        };
        if r.is_ready() {
            let mut connects = libos.inner.queues.connects.borrow_mut();
            if connects.get(*key).is_some_and(|e| Rc::ptr_eq(e, c)) {
                connects.remove(*key);
            }
        }
        r
    });
    Ok(token)
}

/// Ordering helper for `sort`: wraps a caller's order.
pub(crate) fn order<F: Fn(&Sga, &Sga) -> Ordering + 'static>(f: F) -> sort::Order {
    Rc::new(f)
}
