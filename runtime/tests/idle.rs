//! What the loop does with nothing to do, per [`IdlePolicy`]: the default keeps
//! polling for [`AUTO_SPIN_WINDOW`] after its last work and then sleeps; `Park`
//! sleeps at once; `Spin` never sleeps; `SpinThenPark(d)` polls for `d`.
//!
//! A test driver logs the loop's polls and its attempts to sleep (the loop asks
//! every driver's `prepare_park` just before it sleeps), so the tests look at what
//! the loop decided, not at how fast a shared machine ran it: a spin window is a
//! lower bound on the time to the first attempt to sleep, which preemption can only
//! lengthen; sleeping shows in the thread's CPU time, which preemption can only
//! lower.

use demi_runtime::time::sleep;
use demi_runtime::{Builder, Driver, IdleMode, IdlePolicy, Runtime, AUTO_SPIN_WINDOW};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Logs how often it was polled and when the loop went to sleep; never has work.
struct PollLog {
    mode: IdleMode,
    polls: Cell<usize>,
    /// Polls before the loop first went to sleep.
    polls_before_park: Cell<Option<usize>>,
    parks: RefCell<Vec<Instant>>,
}

impl PollLog {
    fn new(mode: IdleMode) -> Rc<PollLog> {
        Rc::new(PollLog { mode, polls: Cell::new(0), polls_before_park: Cell::new(None), parks: RefCell::new(Vec::new()) })
    }
}

impl Driver for PollLog {
    fn name(&self) -> &'static str {
        "test-poll-log"
    }

    fn poll(&self, _now: Instant) -> usize {
        self.polls.set(self.polls.get() + 1);
        0
    }

    fn idle_mode(&self) -> IdleMode {
        self.mode
    }

    fn prepare_park(&self) -> bool {
        if self.polls_before_park.get().is_none() {
            self.polls_before_park.set(Some(self.polls.get()));
        }
        self.parks.borrow_mut().push(Instant::now());
        true
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What a run saw: when it started, the driver's log, and the thread's CPU time.
struct Nap {
    start: Instant,
    log: Rc<PollLog>,
    cpu: Duration,
}

impl Nap {
    /// Time from the start of `block_on` to the loop's first attempt to sleep.
    fn first_park(&self) -> Option<Duration> {
        self.log.parks.borrow().first().map(|t| *t - self.start)
    }
}

/// Runs `sleep(nap)` on a runtime built by `builder`, with a driver asking for `mode`.
fn nap(builder: Builder, mode: IdleMode, nap: Duration) -> Nap {
    let rt = builder.build().unwrap();
    let log = PollLog::new(mode);
    let id = rt.add_driver(log.clone());
    let (start, cpu0) = (Instant::now(), thread_cpu());
    rt.block_on(async { sleep(nap).await });
    let cpu = thread_cpu() - cpu0;
    rt.remove_driver(id);
    Nap { start, log, cpu }
}

const NAP: Duration = Duration::from_millis(40);

#[test]
fn the_default_polls_for_its_window_after_work_then_sleeps() {
    let n = nap(Builder::new(), IdleMode::Park, NAP);
    let first = n.first_park().expect("the default loop never went to sleep during a 40 ms sleep");
    assert!(first >= AUTO_SPIN_WINDOW, "the default loop went to sleep {first:?} after its work, inside its {AUTO_SPIN_WINDOW:?} window");
    assert!(n.log.polls_before_park.get().unwrap() > 1, "the default loop did not poll while it waited");
    assert!(n.cpu < NAP / 4, "the default loop used {:?} of CPU during a {NAP:?} sleep", n.cpu);
}

#[test]
fn runtime_new_uses_the_default_policy() {
    let rt = Runtime::new().unwrap();
    let log = PollLog::new(IdleMode::Park);
    let id = rt.add_driver(log.clone());
    let start = Instant::now();
    rt.block_on(async { sleep(Duration::from_millis(10)).await });
    rt.remove_driver(id);
    let first = log.parks.borrow().first().map(|t| *t - start).expect("Runtime::new() never went to sleep");
    assert!(first >= AUTO_SPIN_WINDOW, "Runtime::new() went to sleep {first:?} after its work");
}

#[test]
fn park_sleeps_at_once() {
    let n = nap(Builder::new().idle(IdlePolicy::Park), IdleMode::Park, NAP);
    assert!(n.first_park().is_some(), "the parking loop never went to sleep");
    let polls = n.log.polls_before_park.get().unwrap();
    assert!(polls <= 2, "the parking loop polled {polls} times before it went to sleep");
    assert!(n.cpu < NAP / 4, "the parking loop used {:?} of CPU during a {NAP:?} sleep", n.cpu);
}

#[test]
fn spin_then_park_polls_for_the_given_time() {
    let window = Duration::from_millis(10);
    let n = nap(Builder::new().idle(IdlePolicy::SpinThenPark(window)), IdleMode::Park, NAP);
    let first = n.first_park().expect("SpinThenPark never went to sleep during a 40 ms sleep");
    assert!(first >= window, "SpinThenPark({window:?}) went to sleep after {first:?}");
    assert!(n.log.polls_before_park.get().unwrap() > 1, "SpinThenPark did not poll while it waited");
}

#[test]
fn spin_never_sleeps() {
    let n = nap(Builder::new().idle(IdlePolicy::Spin), IdleMode::Park, Duration::from_millis(10));
    assert_eq!(n.first_park(), None, "the spinning loop went to sleep");
    // At least the turn after `block_on`'s first poll and the one that fired the timer
    // (a thread descheduled for the whole nap may get no more).
    assert!(n.log.polls.get() >= 2, "the spinning loop polled {} times", n.log.polls.get());
}

#[test]
fn a_spinning_driver_keeps_the_default_loop_polling() {
    let n = nap(Builder::new(), IdleMode::Spin, Duration::from_millis(10));
    assert_eq!(n.first_park(), None, "with a poll-mode driver the default loop went to sleep");
}

#[test]
fn the_default_does_not_spin_with_the_clock_paused() {
    // A paused clock jumps to the next deadline when the loop has nothing to do; a
    // spin window would hold that jump back by real time.
    let t0 = Instant::now();
    let n = nap(Builder::new().start_paused(true), IdleMode::Park, Duration::from_secs(3600));
    assert!(t0.elapsed() < Duration::from_secs(5), "an hour's paused sleep took {:?}", t0.elapsed());
    assert!(n.log.polls.get() <= 4, "the paused loop polled {} times for one sleep", n.log.polls.get());
}
