//! The single-threaded, run-to-completion polling executor.
//!
//! One [`Runtime`] per thread. Its loop, in order, each turn:
//! 1. polls the `block_on` future, if it was woken;
//! 2. runs up to `event_interval` ready tasks (a task that wakes itself goes to the
//!    back of the queue, so a task that yields forever cannot starve the others);
//! 3. gives every driver a non-blocking turn (those before the last one that did
//!    work get a second, when no task is ready: see `Core::poll_drivers`) and fires
//!    expired timers;
//! 4. when nothing is ready, idles as the [`IdlePolicy`] says: spin, or park in epoll
//!    up to the next timer or driver deadline (the default polls for
//!    [`AUTO_SPIN_WINDOW`] after the last work before it parks).
//!
//! Tasks are `async-task` tasks and may be `!Send`. Their wakers are `Send + Sync`: a
//! wake from another thread goes through a locked injection queue and an eventfd that
//! interrupts a parked loop.

use crate::driver::{Driver, DriverId, IdleMode, IdlePolicy, Interest, Readiness, AUTO_SPIN_WINDOW};
use crate::op::{OpTable, QToken};
use crate::queue::{OpCode, QDesc, QError, QResult, QValue};
use crate::reactor::{Reactor, Unparker};
use crate::task::{JoinHandle, TaskOutput};
use crate::time::TimeState;
/// Task metadata: the runtime that owns the task. Keeping it in the task header lets
/// the schedule function be zero-sized, so async-task does not clone and drop a
/// waker around every schedule.
pub(crate) type TaskMeta = Arc<Shared>;
type Runnable = async_task::Runnable<TaskMeta>;
use futures::FutureExt;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Tasks run per batch before drivers and timers get a turn (tokio uses the same).
const DEFAULT_EVENT_INTERVAL: u32 = 61;

static NEXT_RUNTIME_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The runtime whose loop is running on this thread (innermost `block_on`).
    static CURRENT: RefCell<Option<Handle>> = const { RefCell::new(None) };
    /// Its id, for the scheduling fast path.
    static CURRENT_ID: Cell<usize> = const { Cell::new(0) };
}

/// Configures and builds a [`Runtime`].
///
/// ```
/// use demi_runtime::{Builder, IdlePolicy};
/// let rt = Builder::new().event_interval(31).idle(IdlePolicy::Park).build().unwrap();
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    event_interval: u32,
    idle: IdlePolicy,
    start_paused: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Default settings: 61 tasks per batch, [`IdlePolicy::Auto`], real clock.
    pub fn new() -> Self {
        Builder { event_interval: DEFAULT_EVENT_INTERVAL, idle: IdlePolicy::Auto, start_paused: false }
    }

    /// Tasks run per batch before drivers and timers get a turn (at least 1).
    pub fn event_interval(mut self, n: u32) -> Self {
        self.event_interval = n.max(1);
        self
    }

    /// What the loop does when nothing is ready.
    pub fn idle(mut self, policy: IdlePolicy) -> Self {
        self.idle = policy;
        self
    }

    /// Starts with the clock paused (see [`Handle::pause_clock`]); for tests.
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }

    /// Builds the runtime. Fails only if the kernel refuses an epoll instance or an
    /// eventfd (descriptor limits).
    pub fn build(self) -> io::Result<Runtime> {
        let (reactor, unparker) = Reactor::new()?;
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            id,
            injector: Mutex::new(Vec::new()),
            injected: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            unparker,
        });
        let core = Rc::new(Core {
            main_waker: Waker::from(shared.clone()),
            shared,
            local: RefCell::new(VecDeque::with_capacity(256)),
            active: RefCell::new(Slab::new()),
            live: Cell::new(0),
            ops: OpTable::new(),
            time: TimeState::new(self.start_paused),
            drivers: RefCell::new(Vec::new()),
            spin_drivers: Cell::new(0),
            reactor,
            config: self,
            running: Cell::new(false),
            idle_since: Cell::new(None),
        });
        Ok(Runtime { handle: Handle { core } })
    }
}

/// The state other threads may touch: the injection queue and the unpark flag.
pub(crate) struct Shared {
    id: usize,
    injector: Mutex<Vec<Runnable>>,
    injected: AtomicBool,
    main_woken: AtomicBool,
    parked: AtomicBool,
    unparker: Unparker,
}

/// The schedule function of every task. It captures nothing (zero-sized), so
/// async-task does not clone and drop a waker around each call; the owning runtime
/// comes from the task's metadata.
fn schedule_task(runnable: Runnable) {
    let here = CURRENT_ID.try_with(|id| id.get() == runnable.metadata().id).unwrap_or(false);
    let runnable = if here {
        match CURRENT.try_with(|c| match &*c.borrow() {
            Some(h) => {
                h.core.local.borrow_mut().push_back(runnable);
                None
            }
            None => Some(runnable),
        }) {
            Ok(None) => return,
            Ok(Some(r)) => r,
            Err(_) => return, // thread is exiting; the task is dropped with it
        }
    } else {
        runnable
    };
    let shared = runnable.metadata().clone();
    shared.inject(runnable);
}

impl Shared {
    fn inject(&self, runnable: Runnable) {
        self.injector.lock().unwrap_or_else(|e| e.into_inner()).push(runnable);
        self.injected.store(true, Ordering::SeqCst);
        self.unpark_if_parked();
    }

    fn unpark_if_parked(&self) {
        if self.parked.load(Ordering::SeqCst) {
            self.unparker.unpark();
        }
    }
}

/// Waking the `block_on` future.
impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // On the runtime's own thread the loop is running (not parked in epoll_wait) and
        // will look at the flag on its next turn: no barrier, no unpark.
        if CURRENT_ID.try_with(|id| id.get() == self.id).unwrap_or(false) {
            self.main_woken.store(true, Ordering::Relaxed);
            return;
        }
        self.main_woken.store(true, Ordering::SeqCst);
        self.unpark_if_parked();
    }
}

pub(crate) struct Core {
    shared: Arc<Shared>,
    main_waker: Waker,
    local: RefCell<VecDeque<Runnable>>,
    /// Wakers of live tasks, so shutdown can drop every task's future on this thread.
    active: RefCell<Slab<Waker>>,
    /// Tasks spawned and not yet finished or dropped.
    live: Cell<usize>,
    pub(crate) ops: OpTable,
    pub(crate) time: TimeState,
    drivers: RefCell<Vec<Option<Rc<dyn Driver>>>>,
    spin_drivers: Cell<usize>,
    reactor: Reactor,
    config: Builder,
    running: Cell<bool>,
    /// When the loop's current idle stretch began (its first turn without work since
    /// the last one with work), for the spin window; `None` while it works. Kept
    /// this way so that busy turns only clear it: the clock is read on idle turns.
    idle_since: Cell<Option<Instant>>,
}

impl Core {
    fn drain_injector(&self) {
        // A plain load first: the flag is almost always clear, and the swap is a full
        // barrier (a locked xchg) on every loop turn otherwise.
        if self.shared.injected.load(Ordering::Relaxed) && self.shared.injected.swap(false, Ordering::SeqCst) {
            let mut inj = self.shared.injector.lock().unwrap_or_else(|e| e.into_inner());
            self.local.borrow_mut().extend(inj.drain(..));
        }
    }

    /// Runs up to one batch of ready tasks; returns how many ran.
    fn run_batch(&self) -> u32 {
        self.drain_injector();
        let mut ran = 0;
        while ran < self.config.event_interval {
            let next = self.local.borrow_mut().pop_front();
            match next {
                Some(runnable) => {
                    runnable.run();
                    ran += 1;
                }
                None => {
                    if self.shared.injected.load(Ordering::Relaxed) {
                        self.drain_injector();
                        continue;
                    }
                    break;
                }
            }
        }
        ran
    }

    fn driver(&self, index: usize) -> Option<Rc<dyn Driver>> {
        self.drivers.borrow().get(index).cloned().flatten()
    }

    /// Polls every driver at `now`. One driver's work can be another's input (two
    /// stacks joined by an in-process link: one's transmit is the other's receive),
    /// which the drivers polled before it miss until the next turn. So when no task
    /// is ready (one that is runs first; they see it next turn), the drivers before
    /// the last one that reported work get a second poll, at the same `now`: that
    /// instant is then stale by one pass over the drivers, as it already is for the
    /// last driver of any pass, and timers (fired after the drivers) are not
    /// delayed past this turn. With one driver, or work only in the first, nothing
    /// is polled twice.
    fn poll_drivers(&self, now: Instant) -> usize {
        let mut work = 0;
        let mut last_busy = 0;
        let n = self.drivers.borrow().len();
        for i in 0..n {
            if let Some(d) = self.driver(i) {
                let w = d.poll(now);
                if w > 0 {
                    last_busy = i;
                }
                work += w;
            }
        }
        if last_busy > 0 && !self.has_ready_work() {
            for i in 0..last_busy {
                if let Some(d) = self.driver(i) {
                    work += d.poll(now);
                }
            }
        }
        work
    }

    /// Asks every driver whether the loop may sleep ([`Driver::prepare_park`]); all
    /// are asked, so each one that can be woken has arranged it.
    fn drivers_ready_to_park(&self) -> bool {
        let n = self.drivers.borrow().len();
        let mut ready = true;
        for i in 0..n {
            if let Some(d) = self.driver(i) {
                ready &= d.prepare_park();
            }
        }
        ready
    }

    fn driver_deadline(&self) -> Option<Instant> {
        let n = self.drivers.borrow().len();
        (0..n).filter_map(|i| self.driver(i)).filter_map(|d| d.next_deadline()).min()
    }

    fn dispatch(&self, data: u64, readiness: Readiness) -> usize {
        match self.driver((data >> 32) as usize) {
            Some(d) => d.on_event(data as u32, readiness),
            None => 0,
        }
    }

    fn poll_reactor(&self, timeout: Option<Duration>) -> usize {
        let mut work = 0;
        // An epoll failure here would be EBADF/EFAULT: a bug, not a runtime condition.
        self.reactor
            .poll(timeout, &self.shared.unparker, |data, r| work += self.dispatch(data, r))
            .expect("demi: epoll_wait failed on the runtime's own epoll set");
        work
    }

    fn has_ready_work(&self) -> bool {
        !self.local.borrow().is_empty()
            || self.shared.main_woken.load(Ordering::SeqCst)
            || self.shared.injected.load(Ordering::SeqCst)
    }

    /// How long the loop keeps polling after its last work before it parks, if the
    /// policy has such a window now: [`IdlePolicy::SpinThenPark`], and
    /// [`IdlePolicy::Auto`] when no driver spins and the clock runs.
    fn spin_window(&self) -> Option<Duration> {
        match self.config.idle {
            IdlePolicy::SpinThenPark(d) => Some(d),
            IdlePolicy::Auto if self.spin_drivers.get() == 0 && !self.time.is_paused() => Some(AUTO_SPIN_WINDOW),
            _ => None,
        }
    }

    /// Records that this turn did work: the spin window starts again at the next
    /// idle turn.
    fn note_work(&self) {
        self.idle_since.set(None);
    }

    fn should_spin(&self) -> bool {
        match self.config.idle {
            IdlePolicy::Spin => true,
            IdlePolicy::Park => false,
            IdlePolicy::Auto if self.spin_drivers.get() > 0 => true,
            IdlePolicy::Auto | IdlePolicy::SpinThenPark(_) => {
                let Some(window) = self.spin_window() else { return false };
                let now = Instant::now();
                let since = self.idle_since.get().unwrap_or(now);
                self.idle_since.set(Some(since));
                now.duration_since(since) < window
            }
        }
    }

    /// Drivers, timers and the reactor get a turn. When `may_block` (nothing ran this
    /// iteration) and nothing turns up, the loop idles here.
    fn turn(&self, may_block: bool) {
        let has_drivers = !self.drivers.borrow().is_empty();
        let mut work = 0;
        let mut now = None;
        if has_drivers || !self.time.is_empty() {
            let t = self.time.now();
            now = Some(t);
            if has_drivers {
                work += self.poll_drivers(t);
            }
            work += self.time.fire(t);
        }
        let idle = may_block && work == 0 && !self.has_ready_work();
        if !idle {
            // Tasks ran or drivers had work: the spin window starts again at the
            // next idle turn (a busy loop that never reaches an idle turn must not
            // find its window expired the first time it does).
            if work > 0 || !may_block {
                self.note_work();
            }
            if self.reactor.has_registrations() {
                self.poll_reactor(Some(Duration::ZERO));
            }
            return;
        }
        if self.should_spin() {
            if self.reactor.has_registrations() && self.poll_reactor(Some(Duration::ZERO)) > 0 {
                self.note_work();
            }
            // Polling the drivers is the spin; a pause (tens of ns on current x86)
            // would only delay noticing the next frame. Without drivers, be polite.
            if self.spin_drivers.get() == 0 {
                std::hint::spin_loop();
            }
            return;
        }
        let deadline = match (self.time.next_deadline(), if has_drivers { self.driver_deadline() } else { None }) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.time.is_paused() {
            // Paused clock: look for I/O without sleeping; if there is none, jump the
            // clock to the next deadline instead of waiting for it.
            if self.reactor.has_registrations() && self.poll_reactor(Some(Duration::ZERO)) > 0 {
                return;
            }
            if let Some(d) = deadline {
                self.time.advance_to(d);
                self.time.fire(self.time.now());
                return;
            }
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(now.unwrap_or_else(|| self.time.now())));
        if timeout != Some(Duration::ZERO) && !self.drivers_ready_to_park() {
            return;
        }
        self.shared.parked.store(true, Ordering::SeqCst);
        let timeout = if self.has_ready_work() { Some(Duration::ZERO) } else { timeout };
        self.poll_reactor(timeout);
        self.shared.parked.store(false, Ordering::SeqCst);
        if !self.time.is_empty() {
            self.time.fire(self.time.now());
        }
    }

    /// Drops every task's future on this thread and forgets drivers and operations.
    fn shutdown(&self) {
        // Several rounds: dropping a future may wake or spawn other tasks.
        for _ in 0..16 {
            let wakers = std::mem::take(&mut *self.active.borrow_mut());
            for (_, w) in wakers {
                w.wake();
            }
            self.drain_injector();
            let queued: Vec<Runnable> = self.local.borrow_mut().drain(..).collect();
            if queued.is_empty() && self.active.borrow().is_empty() {
                break;
            }
            // Dropping a runnable cancels its task and drops the future here.
            drop(queued);
        }
        self.drivers.borrow_mut().clear();
        self.ops.clear();
        self.time.clear();
    }
}

/// Removes a task from the shutdown list when its future completes or is dropped.
struct ActiveGuard {
    core: Weak<Core>,
    key: Option<usize>,
}

impl ActiveGuard {
    /// Called when the task first returns `Pending`: only then can it be alive and
    /// unreachable from the ready queue at shutdown.
    fn register(&mut self, waker: &Waker) {
        if self.key.is_none() {
            if let Some(core) = self.core.upgrade() {
                if let Ok(mut active) = core.active.try_borrow_mut() {
                    self.key = Some(active.insert(waker.clone()));
                };
            }
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            core.live.set(core.live.get() - 1);
            if let Some(key) = self.key {
                if let Ok(mut active) = core.active.try_borrow_mut() {
                    active.try_remove(key);
                }
            }
        }
    }
}

/// A demi runtime: owns the executor, timers, operation slots, drivers and reactor of
/// one thread. Dropping it cancels every task (their futures are dropped on this
/// thread) and releases every driver. Use [`Handle`]s to reach it from tasks and
/// libOSes.
pub struct Runtime {
    handle: Handle,
}

impl Runtime {
    /// A runtime with default settings (see [`Builder`]).
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// A cheap, clonable handle to this runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Deref for Runtime {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _enter = Enter::new(&self.handle);
        self.handle.core.shutdown();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

/// A clonable reference to a [`Runtime`], for spawning, timers, drivers and the
/// operation slots. Handles are `!Send`: a runtime belongs to one thread.
#[derive(Clone)]
pub struct Handle {
    pub(crate) core: Rc<Core>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.core.shared.id)
            .field("ready_tasks", &self.core.local.borrow().len())
            .field("live_tasks", &self.core.live.get())
            .field("pending_ops", &self.core.ops.len())
            .finish()
    }
}

/// Makes a handle the thread's current runtime for a scope.
struct Enter {
    prev: Option<Handle>,
    prev_id: usize,
}

impl Enter {
    fn new(handle: &Handle) -> Enter {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(handle.clone()));
        let prev_id = CURRENT_ID.with(|c| c.replace(handle.core.shared.id));
        Enter { prev, prev_id }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
        let _ = CURRENT_ID.try_with(|c| c.set(self.prev_id));
    }
}

struct Running<'a>(&'a Cell<bool>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Handle {
    /// The runtime running on this thread.
    ///
    /// # Panics
    /// Outside a runtime (not inside `block_on`, a task, or `#[demi::main]`). Use
    /// [`try_current`](Self::try_current) to check.
    pub fn current() -> Handle {
        Self::try_current()
            .expect("demi: no runtime is running on this thread (call from inside block_on or #[demi::main])")
    }

    /// The runtime running on this thread, if any.
    pub fn try_current() -> Option<Handle> {
        CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
    }

    /// Runs `fut` to completion on this thread, driving tasks, drivers and timers.
    ///
    /// # Panics
    /// If this runtime's loop is already running on this thread (use `.await` there),
    /// or if `fut` panics.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match self.try_block_on(fut) {
            Ok(v) => v,
            Err(_) => panic!("demi: block_on called from inside the same runtime; await the future instead"),
        }
    }

    /// Like [`block_on`](Self::block_on), but reports re-entry as
    /// [`QError::WouldDeadlock`] instead of panicking.
    pub fn try_block_on<F: Future>(&self, fut: F) -> Result<F::Output, QError> {
        let core = &*self.core;
        if core.running.replace(true) {
            return Err(QError::WouldDeadlock);
        }
        let _running = Running(&core.running);
        let _enter = Enter::new(self);
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(&core.main_waker);
        core.shared.main_woken.store(true, Ordering::SeqCst);
        loop {
            let mut progressed = false;
            if core.shared.main_woken.load(Ordering::Relaxed) && core.shared.main_woken.swap(false, Ordering::SeqCst) {
                progressed = true;
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return Ok(v);
                }
            }
            progressed |= core.run_batch() > 0;
            core.turn(!progressed);
        }
    }

    /// Spawns a task (its future may be `!Send`). It starts running on this runtime's
    /// thread at the next batch. The returned handle awaits its output; dropping the
    /// handle detaches the task.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let core = &self.core;
        core.live.set(core.live.get() + 1);
        let mut guard = ActiveGuard { core: Rc::downgrade(core), key: None };
        let wrapped = async move {
            let mut fut = pin!(AssertUnwindSafe(future).catch_unwind());
            let out: TaskOutput<F::Output> = std::future::poll_fn(|cx| {
                let r = fut.as_mut().poll(cx);
                if r.is_pending() {
                    guard.register(cx.waker());
                }
                r
            })
            .await;
            out
        };
        let (runnable, task) =
            async_task::Builder::new().metadata(core.shared.clone()).spawn_local(move |_| wrapped, schedule_task);
        runnable.schedule();
        JoinHandle::new(task.fallible())
    }

    /// Ready tasks and live tasks (for diagnostics and tests).
    pub fn task_counts(&self) -> (usize, usize) {
        (self.core.local.borrow().len(), self.core.live.get())
    }

    /// Registers a driver; it is polled on every turn from now on.
    pub fn add_driver(&self, driver: Rc<dyn Driver>) -> DriverId {
        if driver.idle_mode() == IdleMode::Spin {
            self.core.spin_drivers.set(self.core.spin_drivers.get() + 1);
        }
        let mut drivers = self.core.drivers.borrow_mut();
        let index = match drivers.iter().position(Option::is_none) {
            Some(i) => {
                drivers[i] = Some(driver);
                i
            }
            None => {
                drivers.push(Some(driver));
                drivers.len() - 1
            }
        };
        DriverId(index as u32)
    }

    /// Unregisters a driver (its fds should be deregistered first).
    pub fn remove_driver(&self, id: DriverId) {
        let removed = self.core.drivers.borrow_mut().get_mut(id.0 as usize).and_then(Option::take);
        if let Some(d) = removed {
            if d.idle_mode() == IdleMode::Spin {
                self.core.spin_drivers.set(self.core.spin_drivers.get().saturating_sub(1));
            }
            let mut drivers = self.core.drivers.borrow_mut();
            while matches!(drivers.last(), Some(None)) {
                drivers.pop();
            }
        }
    }

    /// Registers `fd` with the reactor (edge-triggered); readiness reaches
    /// `driver.on_event(token, …)`.
    pub fn register_fd(&self, fd: RawFd, driver: DriverId, token: u32, interest: Interest) -> io::Result<()> {
        self.core.reactor.register(fd, ((driver.0 as u64) << 32) | token as u64, interest)
    }

    /// Registers `fd` (readable, edge-triggered) as a way to wake the loop from a
    /// sleep, for a driver that is polled on every turn anyway (a poll-mode device's
    /// doorbell): unlike [`register_fd`](Self::register_fd), it does not make busy
    /// turns look at the reactor. Events arrive through [`Driver::on_event`] with
    /// `token`. Remove it with [`deregister_wake_fd`](Self::deregister_wake_fd).
    pub fn register_wake_fd(&self, fd: RawFd, driver: DriverId, token: u32) -> io::Result<()> {
        self.core.reactor.register_wake(fd, ((driver.0 as u64) << 32) | token as u64)
    }

    /// Removes an fd added with [`register_wake_fd`](Self::register_wake_fd).
    pub fn deregister_wake_fd(&self, fd: RawFd) -> io::Result<()> {
        self.core.reactor.deregister_wake(fd)
    }

    /// Changes a registration's interest or token.
    pub fn reregister_fd(&self, fd: RawFd, driver: DriverId, token: u32, interest: Interest) -> io::Result<()> {
        self.core.reactor.reregister(fd, ((driver.0 as u64) << 32) | token as u64, interest)
    }

    /// Removes `fd` from the reactor. Call before closing the fd.
    pub fn deregister_fd(&self, fd: RawFd) -> io::Result<()> {
        self.core.reactor.deregister(fd)
    }

    /// Starts an operation: a pending slot and the token naming it.
    pub fn op_start(&self, opcode: OpCode, qd: QDesc) -> QToken {
        self.core.ops.start(opcode, qd)
    }

    /// Starts an operation that already has its result (the fast path of a push or
    /// pop that completes at once).
    pub fn op_start_completed(&self, opcode: OpCode, qd: QDesc, value: Result<QValue, QError>) -> QToken {
        self.core.ops.start_completed(opcode, qd, value)
    }

    /// Completes an operation and wakes its one waiter. Fails with
    /// [`QError::BadToken`] for an unknown token and [`QError::InvalidState`] if it
    /// was already complete.
    pub fn op_complete(&self, qt: QToken, value: Result<QValue, QError>) -> Result<(), QError> {
        self.core.ops.complete(qt, value)
    }

    /// The operation and queue a live token stands for.
    pub fn op_describe(&self, qt: QToken) -> Result<(OpCode, QDesc), QError> {
        self.core.ops.describe(qt)
    }

    /// True if the token names an operation whose result is waiting to be taken.
    pub fn op_is_done(&self, qt: QToken) -> Result<bool, QError> {
        Ok(self.core.ops.status(qt)? == crate::op::SlotStatus::Done)
    }

    /// Operation slots in use: pending, or completed and not yet waited for.
    pub fn ops_in_use(&self) -> usize {
        self.core.ops.len()
    }

    /// Waits for one token, driving the runtime from synchronous code. `None` waits
    /// forever. On timeout the token stays pending and can be waited again.
    pub fn wait(&self, qt: QToken, timeout: Option<Duration>) -> Result<QResult, QError> {
        self.try_block_on(crate::wait::wait(qt, timeout))?
    }

    /// Waits for the first of `qts` to complete; the others stay pending and waitable.
    pub fn wait_any(&self, qts: &[QToken], timeout: Option<Duration>) -> Result<(usize, QResult), QError> {
        self.try_block_on(crate::wait::wait_any(qts, timeout))?
    }

    /// Waits for all of `qts`; on timeout none of their results is taken.
    pub fn wait_all(&self, qts: &[QToken], timeout: Option<Duration>) -> Result<Vec<QResult>, QError> {
        self.try_block_on(crate::wait::wait_all(qts, timeout))?
    }

    /// The runtime's clock (paused or real).
    pub fn now(&self) -> Instant {
        self.core.time.now()
    }

    /// Pauses the clock: time stands still except through
    /// [`advance_clock`](Self::advance_clock), and when the loop has nothing to do it
    /// jumps straight to the next timer.
    pub fn pause_clock(&self) {
        self.core.time.pause();
    }

    /// Resumes the real clock from the paused instant.
    pub fn resume_clock(&self) {
        self.core.time.resume();
    }

    /// Moves a paused clock forward. Timers due by then fire on the next turn.
    pub fn advance_clock(&self, by: Duration) {
        self.core.time.advance(by);
    }

    /// A number unique to this runtime within the process.
    pub fn id(&self) -> usize {
        self.core.shared.id
    }
}

/// Spawns a task on the current runtime. See [`Handle::spawn`].
///
/// # Panics
/// Outside a runtime.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    Handle::current().spawn(future)
}

/// Yields once: the task goes to the back of the ready queue, behind every other
/// ready task, and drivers get a turn before it runs again if the batch ends.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polls of a test's drivers: (driver, now, frames received).
    type PollLog = Rc<RefCell<Vec<(&'static str, Instant, usize)>>>;

    /// One end of an in-process link: `poll` sends what it was given to send (work),
    /// and takes what arrived, completing `on_receive` (if any) when something did.
    /// Every poll is logged as (driver, now, frames received).
    struct LinkEnd {
        name: &'static str,
        to_send: Cell<usize>,
        outbox: Rc<Cell<usize>>,
        inbox: Rc<Cell<usize>>,
        on_receive: Cell<Option<QToken>>,
        handle: Handle,
        log: PollLog,
    }

    impl Driver for LinkEnd {
        fn name(&self) -> &'static str {
            self.name
        }

        fn poll(&self, now: Instant) -> usize {
            let sent = self.to_send.take();
            self.outbox.set(self.outbox.get() + sent);
            let received = self.inbox.take();
            self.log.borrow_mut().push((self.name, now, received));
            if received > 0 {
                if let Some(qt) = self.on_receive.take() {
                    self.handle.op_complete(qt, Ok(QValue::Pushed)).unwrap();
                }
            }
            sent + received
        }
    }

    /// Two link ends registered as `a` (polled first) and `b`, joined both ways.
    fn link(rt: &Runtime) -> (Rc<LinkEnd>, Rc<LinkEnd>, PollLog) {
        let (a_to_b, b_to_a) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let log = Rc::new(RefCell::new(Vec::new()));
        let end = |name, outbox: &Rc<Cell<usize>>, inbox: &Rc<Cell<usize>>| {
            Rc::new(LinkEnd {
                name,
                to_send: Cell::new(0),
                outbox: outbox.clone(),
                inbox: inbox.clone(),
                on_receive: Cell::new(None),
                handle: rt.handle().clone(),
                log: log.clone(),
            })
        };
        let a = end("a", &a_to_b, &b_to_a);
        let b = end("b", &b_to_a, &a_to_b);
        rt.add_driver(a.clone());
        rt.add_driver(b.clone());
        (a, b, log)
    }

    #[test]
    fn a_driver_before_one_that_did_work_is_polled_again_at_the_same_instant() {
        let rt = Runtime::new().unwrap();
        let (a, b, log) = link(&rt);
        // `b` sends on its first poll; `a` (polled before it) receives it in the same
        // turn, at the same instant, and completes the token the main future awaits.
        b.to_send.set(1);
        let qt = rt.op_start(OpCode::Pop, QDesc::from_parts(0, 1));
        a.on_receive.set(Some(qt));
        rt.block_on(async { qt.await.unwrap() });
        let log = log.borrow();
        assert_eq!(log.len(), 3, "{log:?}");
        let [(n0, t0, r0), (n1, t1, r1), (n2, t2, r2)] = [log[0], log[1], log[2]];
        assert_eq!([(n0, r0), (n1, r1), (n2, r2)], [("a", 0), ("b", 0), ("a", 1)]);
        assert!(t0 == t1 && t1 == t2, "one instant for the whole turn");
    }

    #[test]
    fn no_second_poll_when_a_task_is_ready() {
        let rt = Runtime::new().unwrap();
        let (a, b, log) = link(&rt);
        // `a` sends; `b` receives it and completes the token a task awaits. With the
        // task ready after the pass, it runs before `a` is polled again.
        a.to_send.set(1);
        let qt = rt.op_start(OpCode::Pop, QDesc::from_parts(0, 1));
        b.on_receive.set(Some(qt));
        let task_ran_at = Rc::new(Cell::new(usize::MAX));
        rt.block_on({
            let (log, task_ran_at) = (log.clone(), task_ran_at.clone());
            async move {
                let task = spawn(async move {
                    qt.await.unwrap();
                    task_ran_at.set(log.borrow().len());
                });
                task.await.unwrap();
            }
        });
        let seen = log.borrow();
        assert_eq!((seen[0].0, seen[1].0, seen[1].2), ("a", "b", 1), "{seen:?}");
        assert_eq!(task_ran_at.get(), 2, "the task ran right after the first pass: {seen:?}");
    }
}
