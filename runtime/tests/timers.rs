//! Timers: `sleep`, `timeout`, `interval` and the paused clock.
//!
//! Every test but the real-clock one runs on a paused clock, where the loop jumps to
//! the next deadline whenever it has nothing else to do: the tests take no wall time
//! and can assert exact instants.

mod common;

use common::{CountingWaker, RemoteWake};
use demi_runtime::time::{self, sleep, sleep_until};
use demi_runtime::{spawn, yield_now, Builder, Runtime};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Context;
use std::time::{Duration, Instant};

fn paused() -> Runtime {
    Builder::new().start_paused(true).build().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_paused_sleep_completes_exactly_at_its_deadline_without_waiting() {
    let rt = paused();
    let wall = Instant::now();
    let start = rt.now();
    rt.block_on(async {
        let s = sleep(HOUR);
        let deadline = s.deadline();
        assert!(!s.is_elapsed());
        s.await;
        assert_eq!(time::now(), deadline, "woken at the wrong instant");
    });
    assert_eq!(rt.now() - start, HOUR);
    assert!(wall.elapsed() < Duration::from_secs(1), "the paused clock waited in real time");
}

#[test]
fn pausing_a_running_clock_auto_advances_to_the_deadline() {
    let rt = Runtime::new().unwrap();
    let wall = Instant::now();
    let (deadline, woke) = rt.block_on(async {
        time::pause();
        let s = sleep(HOUR);
        let deadline = s.deadline();
        s.await;
        (deadline, time::now())
    });
    // Timers have 1 µs ticks: a deadline between two ticks is rounded up, never down.
    assert!(woke >= deadline, "woken {:?} early", deadline - woke);
    assert!(woke - deadline < Duration::from_micros(1));
    assert!(wall.elapsed() < Duration::from_secs(1));
}

#[test]
fn sleeps_complete_in_deadline_order() {
    let rt = paused();
    let start = rt.now();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    rt.block_on(async move {
        let handles: Vec<_> = [30, 10, 20, 5, 10]
            .into_iter()
            .map(|n| {
                let l = l.clone();
                spawn(async move {
                    sleep(ms(n)).await;
                    l.borrow_mut().push((n, time::now() - start));
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    let expected: Vec<_> = [5, 10, 10, 20, 30].into_iter().map(|n| (n, ms(n))).collect();
    assert_eq!(*log.borrow(), expected);
}

#[test]
fn timeout_gives_elapsed_for_a_future_that_never_completes() {
    let rt = paused();
    rt.block_on(async {
        let start = time::now();
        let err = time::timeout(Duration::from_secs(1), std::future::pending::<()>()).await.unwrap_err();
        assert_eq!(err.to_string(), "deadline has elapsed");
        assert_eq!(time::now() - start, Duration::from_secs(1));

        assert_eq!(time::timeout(Duration::from_secs(1), async { 5 }).await, Ok(5));
        assert_eq!(time::now() - start, Duration::from_secs(1), "a ready future waited");

        let slow_enough = async {
            sleep(ms(300)).await;
            6
        };
        assert_eq!(time::timeout(Duration::from_secs(1), slow_enough).await, Ok(6));
        assert_eq!(time::now() - start, ms(1300));

        let too_slow = async {
            sleep(ms(300)).await;
            7
        };
        assert!(time::timeout_at(start + ms(1400), too_slow).await.is_err());
        assert_eq!(time::now() - start, ms(1400));
    });
}

#[test]
fn dropping_a_sleep_cancels_its_timer() {
    let rt = paused();
    rt.block_on(async {
        let (kept_wakes, kept_waker) = CountingWaker::new();
        let (dropped_wakes, dropped_waker) = CountingWaker::new();
        let mut kept = sleep(ms(10));
        let mut dropped = sleep(ms(10));
        assert!(Pin::new(&mut kept).poll(&mut Context::from_waker(&kept_waker)).is_pending());
        assert!(Pin::new(&mut dropped).poll(&mut Context::from_waker(&dropped_waker)).is_pending());
        drop(dropped);
        sleep(ms(20)).await;
        assert_eq!(kept_wakes.wakes(), 1, "the sleep that was kept was not woken");
        assert_eq!(dropped_wakes.wakes(), 0, "a dropped sleep was woken");
    });
}

#[test]
fn a_dropped_sleep_leaves_no_deadline_for_the_paused_clock_to_jump_to() {
    let rt = paused();
    let start = rt.now();
    rt.block_on(async {
        let mut s = sleep(HOUR);
        let (_, waker) = CountingWaker::new();
        assert!(Pin::new(&mut s).poll(&mut Context::from_waker(&waker)).is_pending());
    });
    // With a stale timer left in the wheel, the idle loop would jump an hour ahead
    // while it waits for the other thread.
    rt.block_on(RemoteWake::after(ms(1)));
    assert_eq!(rt.now(), start);
}

#[test]
fn reset_moves_a_sleeps_deadline() {
    let rt = paused();
    rt.block_on(async {
        let start = time::now();
        let (stale_wakes, stale_waker) = CountingWaker::new();

        // Earlier: arm for 10 s, move to 1 s.
        let mut s = sleep(Duration::from_secs(10));
        assert!(Pin::new(&mut s).poll(&mut Context::from_waker(&stale_waker)).is_pending());
        s.reset(start + Duration::from_secs(1));
        assert_eq!(s.deadline(), start + Duration::from_secs(1));
        (&mut s).await;
        assert_eq!(time::now() - start, Duration::from_secs(1));
        assert!(s.is_elapsed());

        // After completing, a reset sleep can be awaited again.
        s.reset(time::now() + ms(500));
        assert!(!s.is_elapsed());
        (&mut s).await;
        assert_eq!(time::now() - start, ms(1500));

        // Later: arm for +1 s, move to +3 s; the old timer must not fire.
        let mut s = sleep(Duration::from_secs(1));
        assert!(Pin::new(&mut s).poll(&mut Context::from_waker(&stale_waker)).is_pending());
        s.reset(start + ms(4500));
        sleep(Duration::from_secs(2)).await;
        assert_eq!(time::now() - start, ms(3500));
        (&mut s).await;
        assert_eq!(time::now() - start, ms(4500));
        assert_eq!(stale_wakes.wakes(), 0, "a timer disarmed by reset fired");
    });
}

#[test]
fn interval_ticks_at_multiples_of_its_period_and_skips_missed_ticks() {
    let rt = paused();
    rt.block_on(async {
        let start = time::now();
        let mut iv = time::interval(ms(10));
        assert_eq!(iv.period(), ms(10));
        assert_eq!(iv.tick().await, start, "the first tick is not immediate");
        assert_eq!(time::now(), start);
        assert_eq!(iv.tick().await, start + ms(10));
        assert_eq!(time::now(), start + ms(10));
        assert_eq!(iv.tick().await, start + ms(20));
        assert_eq!(time::now(), start + ms(20));

        // Busy past the ticks at 30 and 40 (and 50, exactly).
        time::advance(ms(35)).await;
        assert_eq!(time::now(), start + ms(55));
        // The late tick completes at once with the instant it was due...
        assert_eq!(iv.tick().await, start + ms(30));
        assert_eq!(time::now(), start + ms(55));
        // ... and the next one is the first multiple of the period after now.
        assert_eq!(iv.tick().await, start + ms(60));
        assert_eq!(time::now(), start + ms(60));
        assert_eq!(iv.tick().await, start + ms(70));
    });
}

#[test]
fn advance_clock_moves_a_paused_clock() {
    let rt = paused();
    let start = rt.now();
    rt.advance_clock(Duration::from_secs(5));
    assert_eq!(rt.now() - start, Duration::from_secs(5));
    // A deadline already passed completes at once, without moving the clock.
    rt.block_on(sleep_until(start + Duration::from_secs(4)));
    assert_eq!(rt.now() - start, Duration::from_secs(5));
    // A real clock is not moved.
    let real = Runtime::new().unwrap();
    let before = real.now();
    real.advance_clock(HOUR);
    assert!(real.now() - before < HOUR);
}

#[test]
fn advance_runs_the_tasks_whose_timers_became_due_before_returning() {
    let rt = paused();
    rt.block_on(async {
        let start = time::now();
        let woke_at = Rc::new(RefCell::new(None));
        let w = woke_at.clone();
        let sleeper = spawn(async move {
            sleep(Duration::from_secs(3)).await;
            *w.borrow_mut() = Some(time::now());
        });
        yield_now().await; // let the task arm its timer
        time::advance(Duration::from_secs(5)).await;
        assert_eq!(*woke_at.borrow(), Some(start + Duration::from_secs(5)), "the due task had not run");
        sleeper.await.unwrap();

        // The same from a task rather than the main future.
        let woke_at2 = Rc::new(RefCell::new(None));
        let w = woke_at2.clone();
        let sleeper = spawn(async move {
            sleep(Duration::from_secs(1)).await;
            *w.borrow_mut() = Some(time::now());
        });
        let w = woke_at2.clone();
        let advancer = spawn(async move {
            yield_now().await;
            time::advance(Duration::from_secs(2)).await;
            w.borrow().is_some()
        });
        assert!(advancer.await.unwrap(), "the due task had not run when advance returned");
        sleeper.await.unwrap();
    });
}

#[test]
fn resuming_the_clock_never_moves_it_backwards() {
    let rt = Runtime::new().unwrap();
    rt.pause_clock();
    rt.advance_clock(HOUR);
    // Let the wheel see the advanced time too.
    rt.block_on(async { sleep(Duration::from_secs(1)).await });
    let paused_at = rt.now();
    rt.resume_clock();
    let resumed_at = rt.now();
    assert!(resumed_at >= paused_at, "the clock went back {:?}", paused_at - resumed_at);
    // It runs on in real time from there, and timers work on it.
    let start = Instant::now();
    rt.block_on(async { sleep(ms(2)).await });
    assert!(start.elapsed() >= ms(2));
    assert!(rt.now() - resumed_at >= ms(2));
    assert!(rt.now() - resumed_at < Duration::from_secs(2), "the resumed clock jumped");
}

#[test]
fn a_real_clock_sleep_takes_at_least_its_duration() {
    let rt = Runtime::new().unwrap();
    let start = Instant::now();
    let clock_start = rt.now();
    rt.block_on(async { sleep(ms(2)).await });
    assert!(start.elapsed() >= ms(2), "sleep(2ms) took {:?}", start.elapsed());
    assert!(rt.now() - clock_start >= ms(2));
}
