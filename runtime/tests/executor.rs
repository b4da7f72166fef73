//! The executor: `block_on`, `spawn` and join handles, fairness of busy tasks towards
//! timers and drivers, wakes from other threads, cancellation, panics, shutdown and
//! batching.

mod common;

use common::{drop_flag, poll_once, RemoteWake};
use demi_runtime::time::{self, sleep};
use demi_runtime::{
    spawn, yield_now, Builder, Driver, Handle, JoinError, JoinHandle, OpCode, QDesc, QError, QToken, QValue,
    Runtime,
};
use std::cell::Cell;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Spawns a task that yields forever, counting its turns in `turns`. It gives up after
/// `limit` of wall time and then finishes, so a starvation bug fails the test (the
/// task is found finished) instead of hanging it.
fn spawn_busy(turns: Rc<Cell<u64>>, limit: Duration) -> JoinHandle<()> {
    spawn(async move {
        let start = Instant::now();
        while start.elapsed() < limit {
            turns.set(turns.get() + 1);
            yield_now().await;
        }
    })
}

#[test]
fn block_on_returns_the_output_of_its_future() {
    let rt = Runtime::new().unwrap();
    assert!(Handle::try_current().is_none());
    assert_eq!(rt.block_on(async { 40 + 2 }), 42);
    let again = rt.block_on(async {
        assert!(Handle::try_current().is_some(), "no current runtime inside block_on");
        yield_now().await;
        String::from("again")
    });
    assert_eq!(again, "again");
    assert!(Handle::try_current().is_none(), "block_on left its runtime current");
}

#[test]
fn join_handle_gives_the_output_of_a_spawned_task() {
    let rt = Runtime::new().unwrap();
    // Spawned before the loop runs: it starts at the first batch.
    let early = rt.spawn(async { 7 });
    let (a, b) = rt.block_on(async {
        let late = spawn(async {
            yield_now().await;
            "done"
        });
        (late.await.unwrap(), early.await.unwrap())
    });
    assert_eq!((a, b), ("done", 7));
    assert_eq!(rt.task_counts(), (0, 0), "finished tasks are still counted");
}

#[test]
fn ten_thousand_tasks_all_complete() {
    const N: usize = 10_000;
    let rt = Runtime::new().unwrap();
    let ran = Rc::new(Cell::new(0usize));
    let r = ran.clone();
    let sum = rt.block_on(async move {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let r = r.clone();
                spawn(async move {
                    yield_now().await;
                    r.set(r.get() + 1);
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(ran.get(), N);
    assert_eq!(sum, N * (N - 1) / 2);
    assert_eq!(rt.task_counts(), (0, 0));
}

#[test]
fn spawn_from_inside_a_task() {
    let rt = Runtime::new().unwrap();
    let out = rt.block_on(async {
        spawn(async {
            let inner = spawn(async {
                let innermost = Handle::current().spawn(async { 3 });
                innermost.await.unwrap() * 2
            });
            inner.await.unwrap() + 1
        })
        .await
        .unwrap()
    });
    assert_eq!(out, 7);
}

#[test]
fn a_task_that_yields_forever_does_not_starve_a_timer() {
    let rt = Runtime::new().unwrap();
    let turns = Rc::new(Cell::new(0u64));
    let t = turns.clone();
    let (slept, busy_turns_meanwhile, busy_gave_up) = rt.block_on(async move {
        let busy = spawn_busy(t.clone(), Duration::from_secs(2));
        let sleeper = spawn(async move {
            let before = t.get();
            let start = Instant::now();
            sleep(Duration::from_millis(5)).await;
            (start.elapsed(), t.get() - before)
        });
        let (slept, turns) = sleeper.await.unwrap();
        let gave_up = busy.is_finished();
        busy.abort();
        (slept, turns, gave_up)
    });
    assert!(!busy_gave_up, "the timer only fired after the busy task gave up");
    assert!(slept >= Duration::from_millis(5), "sleep(5ms) completed after {slept:?}");
    assert!(busy_turns_meanwhile > 0, "the busy task did not run while the timer was pending");
    assert!(turns.get() > 0);
}

/// A driver that counts its polls, records how busy a task was at each, and completes
/// an operation slot on its `complete_at`-th poll.
struct CompletingDriver {
    handle: Handle,
    qt: QToken,
    complete_at: usize,
    polls: Cell<usize>,
    busy_turns: Rc<Cell<u64>>,
    busy_turns_at_completion: Cell<u64>,
}

impl Driver for CompletingDriver {
    fn name(&self) -> &'static str {
        "test-completing-driver"
    }

    fn poll(&self, _now: Instant) -> usize {
        let n = self.polls.get() + 1;
        self.polls.set(n);
        if n == self.complete_at {
            self.busy_turns_at_completion.set(self.busy_turns.get());
            self.handle.op_complete(self.qt, Ok(QValue::Pushed)).unwrap();
            return 1;
        }
        0
    }
}

#[test]
fn a_task_that_yields_forever_does_not_starve_a_driver() {
    let rt = Runtime::new().unwrap();
    let qd = QDesc::from_parts(1, 1);
    let qt = rt.op_start(OpCode::Push, qd);
    let turns = Rc::new(Cell::new(0u64));
    let driver = Rc::new(CompletingDriver {
        handle: rt.handle().clone(),
        qt,
        complete_at: 3,
        polls: Cell::new(0),
        busy_turns: turns.clone(),
        busy_turns_at_completion: Cell::new(0),
    });
    let id = rt.add_driver(driver.clone());
    let t = turns.clone();
    let (result, busy_gave_up) = rt.block_on(async move {
        let busy = spawn_busy(t, Duration::from_secs(2));
        let waiter = spawn(async move { qt.await });
        let result = time::timeout(Duration::from_secs(4), waiter).await.expect("the driver never completed the slot");
        let result = result.unwrap();
        let gave_up = busy.is_finished();
        busy.abort();
        (result, gave_up)
    });
    rt.remove_driver(id);
    assert!(!busy_gave_up, "the driver only completed the slot after the busy task gave up");
    let r = result.unwrap();
    assert_eq!((r.opcode, r.qd, r.qt, r.value), (OpCode::Push, qd, qt, Ok(QValue::Pushed)));
    assert!(driver.polls.get() >= 3);
    assert!(driver.busy_turns_at_completion.get() > 0, "the driver was not polled while the busy task ran");
}

#[test]
fn a_wake_from_another_thread_unparks_the_loop_for_a_task() {
    let rt = Runtime::new().unwrap();
    let start = Instant::now();
    let r = rt.block_on(async {
        let task = spawn(RemoteWake::after(Duration::from_millis(20)));
        time::timeout(Duration::from_secs(5), task).await
    });
    assert!(matches!(r, Ok(Ok(()))), "the task was not woken from the other thread: {r:?}");
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(start.elapsed() < Duration::from_secs(4), "woken only by the timeout's timer");
}

#[test]
fn a_wake_from_another_thread_unparks_the_loop_for_the_main_future() {
    let rt = Runtime::new().unwrap();
    let start = Instant::now();
    let r = rt.block_on(async { time::timeout(Duration::from_secs(5), RemoteWake::after(Duration::from_millis(20))).await });
    assert!(r.is_ok(), "the main future was not woken from the other thread");
    assert!(start.elapsed() < Duration::from_secs(4), "woken only by the timeout's timer");
}

#[test]
fn immediate_wakes_from_other_threads_are_never_lost() {
    // No delay: the wake races with the loop going to sleep in epoll.
    let rt = Runtime::new().unwrap();
    let r = rt.block_on(async {
        let wakes = async {
            for i in 0..200 {
                if i % 2 == 0 {
                    RemoteWake::after(Duration::ZERO).await;
                } else {
                    spawn(RemoteWake::after(Duration::ZERO)).await.unwrap();
                }
            }
        };
        time::timeout(Duration::from_secs(5), wakes).await
    });
    assert!(r.is_ok(), "a wake from another thread was lost");
}

#[test]
fn abort_cancels_a_pending_task_and_drops_its_future() {
    let rt = Runtime::new().unwrap();
    let (flag, dropped) = drop_flag();
    let polls = Rc::new(Cell::new(0));
    let p = polls.clone();
    let d = dropped.clone();
    rt.block_on(async move {
        let task = spawn(async move {
            let _flag = flag;
            std::future::poll_fn(|_| {
                p.set(p.get() + 1);
                Poll::<()>::Pending
            })
            .await;
        });
        yield_now().await;
        assert_eq!(polls.get(), 1, "the task did not start");
        assert!(!d.get());
        task.abort();
        assert!(task.is_finished());
        let r = task.await;
        assert!(matches!(r, Err(JoinError::Cancelled)), "{r:?}");
        // The future is dropped on the task's next (cancelled) run, without a poll.
        yield_now().await;
        assert!(d.get(), "the aborted task's future was not dropped");
        assert_eq!(polls.get(), 1, "the aborted task was polled again");
    });
    assert!(dropped.get());
    assert_eq!(rt.task_counts(), (0, 0));
}

#[test]
fn abort_after_completion_keeps_the_output() {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let task = spawn(async { 9 });
        yield_now().await;
        assert!(task.is_finished());
        task.abort();
        assert_eq!(task.await.unwrap(), 9);
    });
}

#[test]
fn dropping_a_join_handle_detaches_the_task() {
    let rt = Builder::new().start_paused(true).build().unwrap();
    let done = Rc::new(Cell::new(0));
    let d = done.clone();
    rt.block_on(async move {
        let (a, b) = (d.clone(), d.clone());
        drop(spawn(async move {
            sleep(Duration::from_secs(1)).await;
            a.set(a.get() + 1);
        }));
        spawn(async move {
            sleep(Duration::from_secs(1)).await;
            b.set(b.get() + 1);
        })
        .detach();
        sleep(Duration::from_secs(2)).await;
    });
    assert_eq!(done.get(), 2, "a detached task did not run to completion");
}

#[test]
fn a_panicking_task_reports_its_message_and_the_runtime_keeps_going() {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let survivor = spawn(async {
            for _ in 0..3 {
                yield_now().await;
            }
            5
        });
        let formatted = spawn(async {
            yield_now().await;
            if std::hint::black_box(true) {
                panic!("task exploded: {}", 42);
            }
            0
        });
        let literal = spawn(async {
            if std::hint::black_box(true) {
                panic!("static message");
            }
        });
        let err = formatted.await.unwrap_err();
        assert!(err.is_panic() && !err.is_cancelled());
        assert_eq!(err.panic_message(), Some("task exploded: 42"));
        assert_eq!(err.to_string(), "task panicked: task exploded: 42");
        let err = literal.await.unwrap_err();
        assert!(matches!(&err, JoinError::Panicked(_)));
        assert_eq!(err.panic_message(), Some("static message"));
        // The runtime survived: old and new tasks still run.
        assert_eq!(survivor.await.unwrap(), 5);
        assert_eq!(spawn(async { 6 }).await.unwrap(), 6);
    });
    assert_eq!(rt.task_counts(), (0, 0));
}

#[test]
fn dropping_the_runtime_drops_every_pending_task() {
    let rt = Runtime::new().unwrap();
    let qt = rt.op_start(OpCode::Pop, QDesc::from_parts(2, 1));
    let (on_timer, on_timer_dropped) = drop_flag();
    let (forever, forever_dropped) = drop_flag();
    let (on_token, on_token_dropped) = drop_flag();
    let (never_ran, never_ran_dropped) = drop_flag();
    let mut handles = rt.block_on(async move {
        let handles = vec![
            spawn(async move {
                let _f = on_timer;
                sleep(Duration::from_secs(3600)).await;
            }),
            spawn(async move {
                let _f = forever;
                std::future::pending::<()>().await;
            }),
            spawn(async move {
                let _f = on_token;
                let _ = qt.await;
            }),
        ];
        yield_now().await;
        yield_now().await;
        handles
    });
    handles.push(rt.spawn(async move {
        let _f = never_ran;
    }));
    assert_eq!(rt.task_counts().1, 4);
    let flags = [&on_timer_dropped, &forever_dropped, &on_token_dropped, &never_ran_dropped];
    assert!(flags.iter().all(|f| !f.get()));
    drop(rt);
    assert!(on_timer_dropped.get(), "a task waiting on a timer was not dropped");
    assert!(forever_dropped.get(), "a pending task was not dropped");
    assert!(on_token_dropped.get(), "a task waiting on a qtoken was not dropped");
    assert!(never_ran_dropped.get(), "a task that never ran was not dropped");
    for h in &mut handles {
        assert!(matches!(poll_once(h), Poll::Ready(Err(JoinError::Cancelled))));
    }
}

#[test]
fn block_on_inside_the_same_runtime_is_refused() {
    let rt = Runtime::new().unwrap();
    let h = rt.handle().clone();
    rt.block_on(async move {
        assert_eq!(h.try_block_on(async { 1 }), Err(QError::WouldDeadlock));
        let h2 = h.clone();
        let from_task = spawn(async move { h2.try_block_on(async {}) }).await.unwrap();
        assert_eq!(from_task, Err(QError::WouldDeadlock));
        // The synchronous waits report it too, and leave the token alone.
        let qt = h.op_start_completed(OpCode::Push, QDesc::from_parts(0, 1), Ok(QValue::Pushed));
        assert_eq!(h.wait(qt, None), Err(QError::WouldDeadlock));
        assert_eq!(h.wait_any(&[qt], None), Err(QError::WouldDeadlock));
        assert_eq!(h.wait_all(&[qt], None), Err(QError::WouldDeadlock));
        assert_eq!(h.op_is_done(qt), Ok(true));
        assert_eq!(qt.await.unwrap().value, Ok(QValue::Pushed));
        // Another runtime may run inside this one.
        let other = Runtime::new().unwrap();
        assert_eq!(other.block_on(async { yield_now().await; 2 }), 2);
        // ... and leaves this one current when it returns.
        assert_eq!(spawn(async { 4 }).await.unwrap(), 4);
    });
    assert_eq!(rt.try_block_on(async { 3 }), Ok(3), "the runtime cannot be entered after a refused re-entry");
}

#[test]
#[should_panic(expected = "block_on called from inside the same runtime")]
fn nested_block_on_panics() {
    let rt = Runtime::new().unwrap();
    let h = rt.handle().clone();
    rt.block_on(async move { h.block_on(async {}) });
}

#[test]
fn the_runtime_is_usable_after_its_main_future_panicked() {
    let rt = Runtime::new().unwrap();
    let task = rt.spawn(async {
        yield_now().await;
        8
    });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            if std::hint::black_box(true) {
                panic!("main future failed");
            }
        })
    }));
    assert!(caught.is_err());
    assert!(Handle::try_current().is_none(), "the panic left the runtime current");
    assert_eq!(rt.try_block_on(task).map(Result::unwrap), Ok(8), "the runtime still thinks it is running");
}

/// Records, at each poll, how many task runs happened since the previous poll.
struct BatchProbe {
    task_runs: Rc<Cell<usize>>,
    last: Cell<usize>,
    max_gap: Cell<usize>,
    polls: Cell<usize>,
}

impl Driver for BatchProbe {
    fn name(&self) -> &'static str {
        "test-batch-probe"
    }

    fn poll(&self, _now: Instant) -> usize {
        let runs = self.task_runs.get();
        self.max_gap.set(self.max_gap.get().max(runs - self.last.get()));
        self.last.set(runs);
        self.polls.set(self.polls.get() + 1);
        0
    }
}

#[test]
fn drivers_are_polled_after_every_batch_of_event_interval_tasks() {
    const TASKS: usize = 8;
    const TURNS: usize = 25;
    let rt = Builder::new().event_interval(4).build().unwrap();
    let task_runs = Rc::new(Cell::new(0));
    let probe = Rc::new(BatchProbe {
        task_runs: task_runs.clone(),
        last: Cell::new(0),
        max_gap: Cell::new(0),
        polls: Cell::new(0),
    });
    rt.add_driver(probe.clone());
    let runs = task_runs.clone();
    rt.block_on(async move {
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let runs = runs.clone();
                spawn(async move {
                    for _ in 0..TURNS {
                        runs.set(runs.get() + 1);
                        yield_now().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(task_runs.get(), TASKS * TURNS);
    assert!(probe.max_gap.get() <= 4, "{} tasks ran between two driver polls", probe.max_gap.get());
    assert_eq!(probe.max_gap.get(), 4, "tasks were not batched");
    assert!(probe.polls.get() >= TASKS * TURNS / 4);
}
