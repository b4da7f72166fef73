//! Timers: `sleep`, `sleep_until`, `timeout`, `interval`, over a hierarchical timing
//! wheel with 1 µs ticks, and a clock that tests can pause and advance.
//!
//! A timer's state is a key into the runtime's wheel; the future itself is plain data
//! (`Send + Sync`), which is what hyper's `Timer` trait asks of its sleeps. Timer
//! futures must be polled on the thread of the runtime that created them.

mod wheel;

use crate::executor::Handle;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
pub(crate) use wheel::TimerKey;
use wheel::Wheel;

/// The runtime's clock and timing wheel.
pub(crate) struct TimeState {
    base: Instant,
    paused_at: Cell<Option<Instant>>,
    /// How far the clock runs ahead of the real clock since the last resume (what
    /// `advance` added while it was paused), so it never goes backwards.
    offset: Cell<Duration>,
    wheel: RefCell<Wheel<Waker>>,
    fired: RefCell<Vec<Waker>>,
    /// The instant at which tick `.0` begins (`instant_of`), kept for the wheel's
    /// next deadline so that a busy loop tells "nothing due" by comparing instants,
    /// without converting `now` to a tick on every turn.
    due: Cell<Option<(u64, Instant)>>,
}

impl TimeState {
    pub(crate) fn new(paused: bool) -> Self {
        let base = Instant::now();
        TimeState {
            base,
            paused_at: Cell::new(paused.then_some(base)),
            offset: Cell::new(Duration::ZERO),
            wheel: RefCell::new(Wheel::new()),
            fired: RefCell::new(Vec::new()),
            due: Cell::new(None),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.paused_at.get().unwrap_or_else(|| Instant::now() + self.offset.get())
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused_at.get().is_some()
    }

    pub(crate) fn pause(&self) {
        if self.paused_at.get().is_none() {
            self.paused_at.set(Some(self.now()));
        }
    }

    /// Runs on from the paused instant (or from the real time, if that is later).
    pub(crate) fn resume(&self) {
        if let Some(paused_at) = self.paused_at.take() {
            self.offset.set(paused_at.saturating_duration_since(Instant::now()));
        }
    }

    pub(crate) fn advance(&self, by: Duration) {
        if let Some(t) = self.paused_at.get() {
            self.paused_at.set(Some(t + by));
        }
    }

    pub(crate) fn advance_to(&self, to: Instant) {
        if let Some(t) = self.paused_at.get() {
            self.paused_at.set(Some(t.max(to)));
        }
    }

    /// Tick of an instant, rounded down (for "now").
    fn tick_floor(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_micros().min(u64::MAX as u128) as u64
    }

    /// Tick of a deadline, rounded up (a timer never fires early).
    fn tick_ceil(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        let us = d.as_micros() + u128::from(!d.subsec_nanos().is_multiple_of(1000));
        us.min(u64::MAX as u128) as u64
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.base.checked_add(Duration::from_micros(tick)).unwrap_or(self.base + Duration::from_secs(86400 * 365 * 30))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.wheel.borrow().is_empty()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.wheel.borrow().next_deadline().map(|t| self.instant_of(t))
    }

    /// Fires every timer due by `now`; returns how many fired.
    pub(crate) fn fire(&self, now: Instant) -> usize {
        // Nothing due (the common case of a busy loop): leave the wheel where it is.
        // It jumps straight to the next timer when one is due, so lagging costs nothing.
        let Some(next) = self.wheel.borrow().next_deadline() else { return 0 };
        // `tick_floor(now) < next` exactly when `now < instant_of(next)` (for ticks
        // `instant_of` represents, and `now` never before `base`).
        let start = match self.due.get() {
            Some((t, at)) if t == next => at,
            _ => {
                let at = self.instant_of(next);
                self.due.set(Some((next, at)));
                at
            }
        };
        if now < start {
            return 0;
        }
        let tick = self.tick_floor(now);
        let mut fired = self.fired.take();
        self.wheel.borrow_mut().advance(tick, |_, w| fired.push(w));
        let n = fired.len();
        for w in fired.drain(..) {
            w.wake();
        }
        self.fired.replace(fired);
        n
    }

    fn insert(&self, deadline: Instant, waker: &Waker) -> Option<TimerKey> {
        let tick = self.tick_ceil(deadline);
        self.wheel.borrow_mut().insert(tick, waker.clone()).ok()
    }

    /// Updates the waker of an armed timer; false if the key is stale.
    fn update(&self, key: TimerKey, waker: &Waker) -> bool {
        match self.wheel.borrow_mut().get_mut(key) {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    fn remove(&self, key: TimerKey) {
        self.wheel.borrow_mut().remove(key);
    }

    pub(crate) fn clear(&self) {
        *self.wheel.borrow_mut() = Wheel::new();
    }
}

/// The current time on the current runtime's clock (paused or real).
///
/// # Panics
/// Outside a runtime.
pub fn now() -> Instant {
    Handle::current().now()
}

/// Pauses the current runtime's clock. See [`Handle::pause_clock`].
pub fn pause() {
    Handle::current().pause_clock();
}

/// Resumes the current runtime's real clock.
pub fn resume() {
    Handle::current().resume_clock();
}

/// Moves the paused clock forward by `by`, then yields so that tasks whose timers
/// are now due run before the caller continues past their wake-up.
pub async fn advance(by: Duration) {
    let h = Handle::current();
    h.advance_clock(by);
    // Wake the due timers' tasks now, so they are queued ahead of the caller's yield.
    h.core.time.fire(h.now());
    crate::executor::yield_now().await;
}

/// A future that completes at a deadline. Created by [`sleep`] and [`sleep_until`].
pub struct Sleep {
    deadline: Instant,
    /// (runtime id, wheel key) while armed.
    armed: Option<(usize, TimerKey)>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).field("armed", &self.armed.is_some()).finish()
    }
}

/// Completes after `duration` on the current runtime's clock.
///
/// # Panics
/// Outside a runtime.
pub fn sleep(duration: Duration) -> Sleep {
    let now = now();
    sleep_until(now.checked_add(duration).unwrap_or(now + Duration::from_secs(86400 * 365 * 30)))
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, armed: None }
}

impl Sleep {
    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed on the current runtime's clock.
    pub fn is_elapsed(&self) -> bool {
        Handle::try_current().is_some_and(|h| h.now() >= self.deadline)
    }

    /// Moves the deadline (the sleep can be polled again after completing).
    pub fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    fn disarm(&mut self) {
        if let Some((id, key)) = self.armed.take() {
            if let Some(h) = Handle::try_current() {
                if h.id() == id {
                    h.core.time.remove(key);
                }
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(h) = Handle::try_current() else {
            panic!("demi: a timer was polled outside a demi runtime");
        };
        let time = &h.core.time;
        // A paused clock can be moved by advance() between wheel turns: look at it
        // (cheap, no clock read).
        if time.is_paused() && time.now() >= self.deadline {
            self.disarm();
            return Poll::Ready(());
        }
        // Real clock: no clock read here. An armed timer whose key went stale has fired
        // (the wheel only fires at or after the deadline), and a deadline the wheel is
        // already past is over.
        if let Some((id, key)) = self.armed {
            if id == h.id() {
                if time.update(key, cx.waker()) {
                    return Poll::Pending;
                }
                self.armed = None;
                return Poll::Ready(());
            }
        }
        match time.insert(self.deadline, cx.waker()) {
            Some(key) => {
                self.armed = Some((h.id(), key));
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// A future with a deadline. Created by [`timeout`].
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
    }
}

/// Runs `future` for at most `duration`: `Ok(output)`, or `Err(Elapsed)` if the
/// deadline passed first (the future is then dropped with the `Timeout`).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

/// Like [`timeout`] with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep_until(deadline) }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        this.sleep.poll(cx).map(|()| Err(Elapsed(())))
    }
}

/// Ticks at a fixed period. Created by [`interval`].
///
/// The first tick completes at once. A tick that is late (the task was busy past
/// one or more periods) completes at once and the missed ticks are skipped: the next
/// tick is the first multiple of the period after now.
#[derive(Debug)]
pub struct Interval {
    sleep: Sleep,
    period: Duration,
}

/// Ticks every `period`, starting now.
///
/// # Panics
/// If `period` is zero, or outside a runtime.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "demi: interval period must be non-zero");
    Interval { sleep: sleep_until(now()), period }
}

impl Interval {
    /// Waits for the next tick; returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.sleep.deadline();
        let now = now();
        let mut next = scheduled + self.period;
        if next <= now {
            let behind = now.duration_since(scheduled).as_nanos() / self.period.as_nanos();
            next = scheduled + self.period * (behind as u32).saturating_add(1);
            if next <= now {
                next = now + self.period;
            }
        }
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}
