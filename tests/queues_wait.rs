//! `WaitSet`: waiting on many outstanding tokens at once, each completion costing
//! the same whatever the number of tokens (the figures are in `benches/queues.rs`);
//! and `wait_any` over a slice with 10,000 tokens, for correctness.

use demi::{LibOs, OpCode, QDesc, QError, QToken, QValue, Runtime, Sga, WaitSet};
use std::collections::HashSet;
use std::time::Duration;

const N: usize = 10_000;

fn start(rt: &Runtime, n: usize) -> Vec<QToken> {
    (0..n).map(|i| rt.op_start(OpCode::Pop, QDesc::from_parts(i as u32, 1))).collect()
}

#[test]
fn wait_set_returns_each_completion_once_in_completion_order() {
    let rt = Runtime::new().unwrap();
    let h = rt.handle().clone();
    let tokens = start(&rt, N);
    rt.block_on(async {
        let mut set = WaitSet::new();
        for &qt in &tokens {
            set.insert(qt).unwrap();
        }
        set.insert(tokens[0]).unwrap();
        assert_eq!(set.len(), N, "inserting a member again changes nothing");
        // Complete in a scrambled order; each wait returns exactly the next one.
        let order: Vec<usize> = (0..N).map(|i| (i * 7919) % N).collect();
        let mut seen = HashSet::new();
        for &i in &order {
            h.op_complete(tokens[i], Ok(QValue::Popped(Sga::from(i.to_le_bytes().to_vec())))).unwrap();
            let r = set.wait_any(None).await.unwrap();
            assert_eq!(r.qt, tokens[i]);
            assert!(seen.insert(r.qt));
        }
        assert!(set.is_empty());
        assert!(matches!(set.wait_any(None).await, Err(QError::InvalidArgument(_))));
    });
}

#[test]
fn wait_set_edge_cases() {
    let rt = Runtime::new().unwrap();
    let h = rt.handle().clone();
    rt.block_on(async {
        let mut set = WaitSet::new();
        // Already complete when inserted.
        let done = h.op_start_completed(OpCode::Push, QDesc::from_parts(0, 1), Ok(QValue::Pushed));
        let pending = h.op_start(OpCode::Pop, QDesc::from_parts(1, 1));
        set.insert(pending).unwrap();
        set.insert(done).unwrap();
        assert_eq!(set.wait_any(None).await.unwrap().qt, done);
        // Timeout: nothing taken, the token stays a member.
        assert_eq!(set.wait_any(Some(Duration::from_millis(5))).await.err(), Some(QError::TimedOut));
        assert!(set.contains(pending));
        // Removed: its completion is not reported; the operation is untouched.
        assert!(set.remove(pending));
        assert!(!set.remove(pending));
        h.op_complete(pending, Ok(QValue::Connected)).unwrap();
        assert!(set.is_empty());
        assert_eq!(demi::wait(pending, None).await.unwrap().value, Ok(QValue::Connected));
        // A consumed token cannot join.
        assert_eq!(set.insert(pending), Err(QError::BadToken));
        // A member whose result is taken by another wait stops counting.
        let a = h.op_start(OpCode::Pop, QDesc::from_parts(2, 1));
        let b = h.op_start(OpCode::Pop, QDesc::from_parts(3, 1));
        set.insert(a).unwrap();
        set.insert(b).unwrap();
        h.op_complete(a, Ok(QValue::Pushed)).unwrap();
        demi::wait(a, None).await.unwrap();
        h.op_complete(b, Ok(QValue::Pushed)).unwrap();
        assert_eq!(set.wait_any(None).await.unwrap().qt, b);
        assert!(set.is_empty());
    });
}

#[test]
fn wait_set_with_queues_from_the_sync_face() {
    let l = LibOs::posix().unwrap();
    let queues: Vec<QDesc> = (0..100).map(|_| l.queue().unwrap()).collect();
    let mut set = WaitSet::new();
    let pops: Vec<QToken> = l.runtime().block_on(async {
        let pops: Vec<QToken> = queues.iter().map(|&q| l.pop(q).unwrap()).collect();
        for &qt in &pops {
            set.insert(qt).unwrap();
        }
        pops
    });
    l.wait(l.push(queues[57], Sga::from(&b"x"[..])).unwrap(), None).unwrap();
    let r = l.wait_next(&mut set, Some(Duration::from_secs(5))).unwrap();
    assert_eq!((r.qt, r.qd), (pops[57], queues[57]));
}

#[test]
fn wait_any_over_a_slice_of_ten_thousand_tokens_is_correct() {
    let rt = Runtime::new().unwrap();
    let h = rt.handle().clone();
    let mut tokens = start(&rt, N);
    rt.block_on(async {
        for round in 0..50 {
            let i = (round * 4099) % N;
            h.op_complete(tokens[i], Ok(QValue::Pushed)).unwrap();
            let (pos, r) = demi::wait_any(&tokens, None).await.unwrap();
            assert_eq!((pos, r.qt), (i, tokens[i]));
            tokens[i] = h.op_start(OpCode::Pop, QDesc::from_parts(i as u32, 2));
        }
    });
}
