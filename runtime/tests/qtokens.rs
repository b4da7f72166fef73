//! Operation slots and their tokens: `wait`, `wait_any`, `wait_all` and `qt.await`.
//!
//! The tests play the libOS with `op_start` / `op_complete`, completing operations
//! from tasks that sleep on a paused clock, so the order of completions is exact.

mod common;

use common::poll_once;
use demi_runtime::time::{self, sleep};
use demi_runtime::{
    spawn, wait, wait_all, wait_any, yield_now, Builder, Handle, OpCode, QDesc, QError, QResult, QToken, QValue,
    Runtime, Sga,
};
use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

fn paused() -> Runtime {
    Builder::new().start_paused(true).build().unwrap()
}

/// Long enough to mean "forever" on a paused clock, where it costs no wall time: a
/// lost wake fails the test with `TimedOut` instead of hanging it.
const LONG: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn qd(n: u32) -> QDesc {
    QDesc::from_parts(n, 1)
}

fn popped(bytes: &'static str) -> Result<QValue, QError> {
    Ok(QValue::Popped(Sga::from(bytes)))
}

/// Completes `qt` with `value` after `after` on the runtime's clock, from a task.
fn complete_later(h: &Handle, qt: QToken, after: Duration, value: Result<QValue, QError>) {
    let h2 = h.clone();
    h.spawn(async move {
        sleep(after).await;
        h2.op_complete(qt, value).unwrap();
    })
    .detach();
}

#[test]
fn wait_on_an_already_completed_token_returns_its_result() {
    let rt = paused();
    let start = rt.now();
    let qt = rt.op_start(OpCode::Push, qd(1));
    assert_eq!(rt.op_is_done(qt), Ok(false));
    assert_eq!(rt.op_describe(qt), Ok((OpCode::Push, qd(1))));
    rt.op_complete(qt, Ok(QValue::Pushed)).unwrap();
    assert_eq!(rt.op_is_done(qt), Ok(true));
    let r = rt.wait(qt, None).unwrap();
    assert_eq!(r, QResult { opcode: OpCode::Push, qd: qd(1), qt, value: Ok(QValue::Pushed) });

    let qt = rt.op_start_completed(OpCode::Pop, qd(2), popped("element"));
    let r = rt.wait(qt, Some(Duration::ZERO)).unwrap();
    assert_eq!((r.opcode, r.qd, r.qt), (OpCode::Pop, qd(2), qt));
    assert_eq!(r.into_sga().unwrap().to_vec(), b"element");
    assert_eq!(rt.ops_in_use(), 0, "taken results still hold their slots");
    assert_eq!(rt.now(), start);
}

#[test]
fn wait_on_a_pending_token_returns_when_a_task_completes_it() {
    let rt = paused();
    let start = rt.now();
    let qt = rt.op_start(OpCode::Pop, qd(1));
    complete_later(&rt, qt, ms(10), popped("late"));
    let r = rt.wait(qt, Some(LONG)).unwrap();
    assert_eq!(r.value, popped("late"));
    assert_eq!(rt.now() - start, ms(10));
    // A failed operation is a completion too.
    let qt = rt.op_start(OpCode::Connect, qd(2));
    complete_later(&rt, qt, ms(10), Err(QError::ConnectionRefused));
    assert_eq!(rt.wait(qt, Some(LONG)).unwrap().value, Err(QError::ConnectionRefused));
}

#[test]
fn a_timed_out_wait_leaves_the_token_pending_and_waitable() {
    let rt = paused();
    let start = rt.now();
    let qt = rt.op_start(OpCode::Pop, qd(1));
    assert_eq!(rt.wait(qt, Some(ms(50))), Err(QError::TimedOut));
    assert_eq!(rt.now() - start, ms(50));
    assert_eq!(rt.wait(qt, Some(Duration::ZERO)), Err(QError::TimedOut));
    assert_eq!(rt.op_is_done(qt), Ok(false));
    assert_eq!(rt.ops_in_use(), 1);

    complete_later(&rt, qt, ms(10), popped("x"));
    let r = rt.wait(qt, Some(Duration::from_secs(1))).unwrap();
    assert_eq!(r.value, popped("x"));
    assert_eq!(rt.now() - start, ms(60));
    assert_eq!(rt.ops_in_use(), 0);
}

#[test]
fn a_consumed_token_is_a_bad_token() {
    let rt = Runtime::new().unwrap();
    let qt = rt.op_start_completed(OpCode::Push, qd(1), Ok(QValue::Pushed));
    rt.wait(qt, None).unwrap();
    assert_eq!(rt.wait(qt, None), Err(QError::BadToken));
    assert_eq!(rt.wait(qt, Some(ms(1))), Err(QError::BadToken));
    assert_eq!(rt.op_is_done(qt), Err(QError::BadToken));
    assert_eq!(rt.op_describe(qt), Err(QError::BadToken));
    assert_eq!(rt.op_complete(qt, Ok(QValue::Pushed)), Err(QError::BadToken));

    // The slot is reused by the next operation; the old token still names nothing.
    let newer = rt.op_start(OpCode::Pop, qd(2));
    assert_ne!(newer, qt);
    assert_eq!(rt.wait(qt, None), Err(QError::BadToken));
    assert_eq!(rt.op_complete(qt, Ok(QValue::Pushed)), Err(QError::BadToken));
    assert_eq!(rt.op_is_done(newer), Ok(false), "a stale token touched the newer operation");
    rt.op_complete(newer, popped("new")).unwrap();
    assert_eq!(rt.wait(newer, None).unwrap().value, popped("new"));
}

#[test]
fn an_unknown_token_is_a_bad_token() {
    let rt = Runtime::new().unwrap();
    let made_up = QToken::from_raw(12345);
    assert_eq!(QToken::from_raw(made_up.raw()), made_up);
    let real = rt.op_start(OpCode::Pop, qd(1));
    assert_eq!(rt.wait(made_up, None), Err(QError::BadToken));
    assert_eq!(rt.wait_any(&[made_up], None), Err(QError::BadToken));
    assert_eq!(rt.wait_any(&[real, made_up], None), Err(QError::BadToken));
    assert_eq!(rt.wait_all(&[real, made_up], None), Err(QError::BadToken));
    assert_eq!(rt.op_complete(made_up, Ok(QValue::Pushed)), Err(QError::BadToken));
    assert_eq!(rt.op_is_done(made_up), Err(QError::BadToken));
    // The good token next to it was not disturbed.
    assert_eq!(rt.op_is_done(real), Ok(false));
    rt.op_complete(real, popped("ok")).unwrap();
    assert_eq!(rt.wait(real, None).unwrap().value, popped("ok"));
}

#[test]
fn a_token_can_be_awaited_in_a_task() {
    let rt = paused();
    let qt = rt.op_start(OpCode::Accept, qd(1));
    let h = rt.handle().clone();
    let r = rt.block_on(async move {
        let waiter = spawn(async move { qt.await });
        yield_now().await;
        assert!(!waiter.is_finished());
        h.op_complete(qt, Ok(QValue::Closed)).unwrap();
        let r = time::timeout(LONG, waiter).await.expect("the waiter was not woken").unwrap();
        // Awaiting it again: the result was taken.
        assert_eq!(qt.await, Err(QError::BadToken));
        assert_eq!(wait(qt, Some(ms(1))).await, Err(QError::BadToken));
        r
    });
    assert_eq!(r.unwrap().value, Ok(QValue::Closed));
}

#[test]
fn awaiting_a_token_outside_a_runtime_is_an_error() {
    let rt = Runtime::new().unwrap();
    let qt = rt.op_start_completed(OpCode::Push, qd(1), Ok(QValue::Pushed));
    let mut fut = qt.into_future();
    assert_eq!(poll_once(&mut fut), Poll::Ready(Err(QError::NoRuntime)));
    let mut fut = Box::pin(wait(qt, Some(ms(1))));
    assert_eq!(poll_once(&mut fut), Poll::Ready(Err(QError::NoRuntime)));
    // The token was not consumed.
    assert_eq!(rt.wait(qt, None).unwrap().value, Ok(QValue::Pushed));
}

#[test]
fn wait_any_returns_the_first_completion_and_leaves_the_rest_waitable() {
    let rt = paused();
    let start = rt.now();
    let qts = [rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1)), rt.op_start(OpCode::Pop, qd(2))];
    complete_later(&rt, qts[0], ms(20), popped("zero"));
    complete_later(&rt, qts[1], ms(30), popped("one"));
    complete_later(&rt, qts[2], ms(10), popped("two"));

    let (i, r) = rt.wait_any(&qts, Some(LONG)).unwrap();
    assert_eq!((i, r.qt, r.qd, r.value), (2, qts[2], qd(2), popped("two")));
    assert_eq!(rt.now() - start, ms(10));
    assert_eq!(rt.op_is_done(qts[0]), Ok(false));
    assert_eq!(rt.op_is_done(qts[1]), Ok(false));

    // The returned token is consumed: the rest are waited for again.
    assert_eq!(rt.wait_any(&qts, None), Err(QError::BadToken));
    let (i, r) = rt.wait_any(&qts[..2], Some(LONG)).unwrap();
    assert_eq!((i, r.value), (0, popped("zero")));
    assert_eq!(rt.now() - start, ms(20));
    assert_eq!(rt.wait(qts[1], Some(LONG)).unwrap().value, popped("one"));
    assert_eq!(rt.now() - start, ms(30));
    assert_eq!(rt.ops_in_use(), 0);
}

#[test]
fn wait_any_returns_completions_in_the_order_they_happened() {
    let rt = paused();
    let (a, b) = (rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1)));
    let h = rt.handle().clone();
    rt.spawn(async move {
        sleep(ms(5)).await;
        // Both at the same instant: b first.
        h.op_complete(b, popped("b")).unwrap();
        h.op_complete(a, popped("a")).unwrap();
    })
    .detach();
    let (i, r) = rt.wait_any(&[a, b], Some(LONG)).unwrap();
    assert_eq!((i, r.value), (1, popped("b")));
    assert_eq!(rt.op_is_done(a), Ok(true));
    let start = rt.now();
    assert_eq!(rt.wait(a, None).unwrap().value, popped("a"));
    assert_eq!(rt.now(), start);
}

#[test]
fn wait_any_returns_an_already_completed_token_at_once() {
    let rt = paused();
    let start = rt.now();
    let qts = [
        rt.op_start(OpCode::Pop, qd(0)),
        rt.op_start_completed(OpCode::Push, qd(1), Ok(QValue::Pushed)),
        rt.op_start(OpCode::Pop, qd(2)),
    ];
    complete_later(&rt, qts[0], ms(10), popped("zero"));
    complete_later(&rt, qts[2], ms(10), popped("two"));
    let (i, r) = rt.wait_any(&qts, None).unwrap();
    assert_eq!((i, r.opcode, r.value), (1, OpCode::Push, Ok(QValue::Pushed)));
    assert_eq!(rt.now(), start, "wait_any waited although a token was complete");
    assert_eq!(rt.op_is_done(qts[0]), Ok(false));
    assert_eq!(rt.op_is_done(qts[2]), Ok(false));
    let rest = rt.wait_all(&[qts[0], qts[2]], Some(LONG)).unwrap();
    assert_eq!(rest.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), [popped("zero"), popped("two")]);
}

#[test]
fn wait_any_on_no_tokens_is_an_invalid_argument() {
    let rt = Runtime::new().unwrap();
    assert!(matches!(rt.wait_any(&[], None), Err(QError::InvalidArgument(_))));
    assert!(matches!(rt.wait_any(&[], Some(ms(1))), Err(QError::InvalidArgument(_))));
    let r = rt.block_on(async { wait_any(&[], None).await });
    assert!(matches!(r, Err(QError::InvalidArgument(_))));
}

#[test]
fn a_timed_out_wait_any_leaves_every_token_pending() {
    let rt = paused();
    let start = rt.now();
    let qts = [rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1))];
    assert_eq!(rt.wait_any(&qts, Some(ms(100))), Err(QError::TimedOut));
    assert_eq!(rt.now() - start, ms(100));
    assert_eq!(rt.op_is_done(qts[0]), Ok(false));
    assert_eq!(rt.op_is_done(qts[1]), Ok(false));
    assert_eq!(rt.ops_in_use(), 2);
    // Each is still waitable, by any kind of wait.
    complete_later(&rt, qts[1], ms(10), popped("one"));
    let (i, r) = rt.wait_any(&qts, Some(ms(100))).unwrap();
    assert_eq!((i, r.value), (1, popped("one")));
    complete_later(&rt, qts[0], ms(10), popped("zero"));
    assert_eq!(rt.wait(qts[0], Some(ms(100))).unwrap().value, popped("zero"));
}

#[test]
fn wait_all_returns_every_result_in_the_order_of_the_tokens() {
    let rt = paused();
    let start = rt.now();
    let qts: Vec<QToken> = (0..4).map(|i| rt.op_start(OpCode::Pop, qd(i))).collect();
    // Completed in reverse order.
    let values = ["a", "b", "c", "d"];
    for (i, &qt) in qts.iter().enumerate() {
        complete_later(&rt, qt, ms(40 - 10 * i as u64), popped(values[i]));
    }
    let rs = rt.wait_all(&qts, Some(LONG)).unwrap();
    assert_eq!(rt.now() - start, ms(40));
    assert_eq!(rs.len(), 4);
    for (i, r) in rs.into_iter().enumerate() {
        assert_eq!((r.qt, r.qd, r.value), (qts[i], qd(i as u32), popped(values[i])));
    }
    assert_eq!(rt.ops_in_use(), 0);
    assert_eq!(rt.wait_all(&[], None), Ok(vec![]));
}

#[test]
fn a_timed_out_wait_all_takes_no_result() {
    let rt = paused();
    let start = rt.now();
    let done = rt.op_start_completed(OpCode::Push, qd(0), Ok(QValue::Pushed));
    let early = rt.op_start(OpCode::Pop, qd(1));
    let late = rt.op_start(OpCode::Pop, qd(2));
    complete_later(&rt, early, ms(10), popped("early"));
    complete_later(&rt, late, ms(200), popped("late"));
    let qts = [done, early, late];
    assert_eq!(rt.wait_all(&qts, Some(ms(100))), Err(QError::TimedOut));
    assert_eq!(rt.now() - start, ms(100));
    assert_eq!(rt.op_is_done(done), Ok(true));
    assert_eq!(rt.op_is_done(early), Ok(true));
    assert_eq!(rt.op_is_done(late), Ok(false));
    assert_eq!(rt.ops_in_use(), 3);
    let rs = rt.wait_all(&qts, Some(ms(150))).unwrap();
    assert_eq!(rt.now() - start, ms(200));
    let values: Vec<_> = rs.into_iter().map(|r| r.value).collect();
    assert_eq!(values, [Ok(QValue::Pushed), popped("early"), popped("late")]);
}

#[test]
fn async_wait_forms_with_no_timeout_work_inside_tasks() {
    let rt = paused();
    let h = rt.handle().clone();
    let qts = [rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1))];
    complete_later(&rt, qts[0], ms(10), popped("zero"));
    complete_later(&rt, qts[1], ms(20), popped("one"));
    let (first, second) = rt.block_on(async move {
        let t = spawn(async move {
            let first = wait_any(&qts, None).await.unwrap().0;
            let second = wait(qts[1], None).await.unwrap();
            (first, second.value)
        });
        let r = time::timeout(LONG, t).await.expect("a wait never returned").unwrap();
        assert_eq!(h.ops_in_use(), 0);
        r
    });
    assert_eq!((first, second), (0, popped("one")));
    // wait_all from a task.
    let qts = [rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1))];
    complete_later(&rt, qts[1], ms(5), popped("b"));
    complete_later(&rt, qts[0], ms(7), popped("a"));
    let rs = rt.block_on(async move {
        let t = spawn(async move { wait_all(&qts, None).await });
        time::timeout(LONG, t).await.expect("wait_all never returned").unwrap()
    });
    assert_eq!(rs.unwrap().into_iter().map(|r| r.value).collect::<Vec<_>>(), [popped("a"), popped("b")]);
}

#[test]
fn completing_twice_is_refused_and_the_first_result_stands() {
    let rt = Runtime::new().unwrap();
    let qt = rt.op_start(OpCode::Pop, qd(1));
    assert_eq!(rt.op_complete(qt, popped("first")), Ok(()));
    assert_eq!(rt.op_complete(qt, popped("second")), Err(QError::InvalidState));
    assert_eq!(rt.op_complete(qt, Err(QError::ConnectionReset)), Err(QError::InvalidState));
    assert_eq!(rt.wait(qt, None).unwrap().value, popped("first"));
    let qt = rt.op_start_completed(OpCode::Push, qd(1), Ok(QValue::Pushed));
    assert_eq!(rt.op_complete(qt, Err(QError::Canceled)), Err(QError::InvalidState));
    assert_eq!(rt.wait(qt, None).unwrap().value, Ok(QValue::Pushed));
}

/// Awaits `qt`, counting how often the task is polled.
async fn counted_wait(qt: QToken, polls: Rc<Cell<u32>>) -> QResult {
    let mut fut = qt.into_future();
    std::future::poll_fn(|cx| {
        polls.set(polls.get() + 1);
        Pin::new(&mut fut).poll(cx)
    })
    .await
    .unwrap()
}

#[test]
fn a_completion_wakes_exactly_its_waiter() {
    let rt = paused();
    let h = rt.handle().clone();
    let (a, b) = (rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1)));
    rt.block_on(async move {
        let (polls_a, polls_b) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        let task_a = spawn(counted_wait(a, polls_a.clone()));
        let task_b = spawn(counted_wait(b, polls_b.clone()));
        yield_now().await;
        assert_eq!((polls_a.get(), polls_b.get()), (1, 1));

        h.op_complete(a, popped("a")).unwrap();
        for _ in 0..3 {
            yield_now().await;
        }
        assert!(task_a.is_finished());
        assert!(!task_b.is_finished());
        assert_eq!((polls_a.get(), polls_b.get()), (2, 1), "a completion woke another waiter");

        h.op_complete(b, popped("b")).unwrap();
        assert_eq!(time::timeout(LONG, task_b).await.expect("not woken").unwrap().value, popped("b"));
        assert_eq!(polls_b.get(), 2);
        assert_eq!(task_a.await.unwrap().value, popped("a"));
    });
}

#[test]
fn a_completion_wakes_a_wait_any_once_and_only_for_its_own_tokens() {
    let rt = paused();
    let h = rt.handle().clone();
    let mine = [rt.op_start(OpCode::Pop, qd(0)), rt.op_start(OpCode::Pop, qd(1))];
    let other = rt.op_start(OpCode::Pop, qd(2));
    rt.block_on(async move {
        let polls = Rc::new(Cell::new(0));
        let p = polls.clone();
        let waiter = spawn(async move {
            let mut fut = Box::pin(wait_any(&mine, None));
            std::future::poll_fn(|cx| {
                p.set(p.get() + 1);
                fut.as_mut().poll(cx)
            })
            .await
        });
        yield_now().await;
        assert_eq!(polls.get(), 1);
        h.op_complete(other, Ok(QValue::Pushed)).unwrap();
        time::advance(ms(1)).await;
        assert_eq!(polls.get(), 1, "a foreign completion woke wait_any");
        h.op_complete(mine[1], popped("one")).unwrap();
        let (i, r) = time::timeout(LONG, waiter).await.expect("wait_any was not woken").unwrap().unwrap();
        assert_eq!((i, r.value), (1, popped("one")));
        assert_eq!(polls.get(), 2);
        assert_eq!(h.op_is_done(mine[0]), Ok(false));
    });
}

#[test]
fn wait_all_rejects_a_repeated_token_and_takes_nothing() {
    let rt = paused();
    let a = rt.op_start(OpCode::Pop, qd(1));
    let b = rt.op_start_completed(OpCode::Push, qd(1), Ok(QValue::Pushed));
    assert!(matches!(rt.wait_all(&[a, b, a], None), Err(QError::InvalidArgument(_))));
    assert!(matches!(rt.wait_all(&[b, b], None), Err(QError::InvalidArgument(_))));
    // Nothing was taken: b is still there, a still pending.
    assert_eq!(rt.wait(b, None).unwrap().value, Ok(QValue::Pushed));
    assert_eq!(rt.op_is_done(a), Ok(false));
}
