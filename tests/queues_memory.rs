//! Queue combinators over in-memory queues: the semantics of `queue()`, `merge`,
//! `filter`, `sort`, `map` and `qconnect` as docs/api.md ("Queue combinators")
//! defines them — order, composition, close propagation, errors, back-pressure and
//! merge fairness. Sockets as inputs: `queues_sockets.rs`.

mod common;

use common::GUARD;
use demi::{LibOs, OpCode, Predicate, QDesc, QError, QToken, QValue, Sga};
use std::time::Duration;

fn libos() -> LibOs {
    LibOs::posix().unwrap()
}

fn el(s: &str) -> Sga {
    Sga::from(s.as_bytes().to_vec())
}

fn text(sga: Sga) -> String {
    String::from_utf8(sga.to_vec()).unwrap()
}

fn push(l: &LibOs, qd: QDesc, s: &str) {
    l.wait(l.push(qd, el(s)).unwrap(), Some(GUARD)).unwrap().ok().unwrap();
}

fn pop(l: &LibOs, qd: QDesc) -> String {
    text(l.wait(l.pop(qd).unwrap(), Some(GUARD)).unwrap().into_sga().unwrap())
}

fn pop_result(l: &LibOs, qd: QDesc) -> Result<Sga, QError> {
    l.wait(l.pop(qd).unwrap(), Some(GUARD)).unwrap().into_sga()
}

/// True if the token is still pending after the runtime ran for a while.
fn stays_pending(l: &LibOs, qt: QToken) -> bool {
    matches!(l.wait_any(&[qt], Some(Duration::from_millis(20))), Err(QError::TimedOut))
}

/// Runs the runtime for `ms` milliseconds.
fn idle(l: &LibOs, ms: u64) {
    let q = l.queue().unwrap();
    let qt = l.pop(q).unwrap();
    assert_eq!(l.wait(qt, Some(Duration::from_millis(ms))).err(), Some(QError::TimedOut));
    l.close(q).unwrap();
}

// ---- queue() --------------------------------------------------------------------------

#[test]
fn memory_queue_is_fifo_of_whole_elements() {
    let l = libos();
    let q = l.queue().unwrap();
    assert_eq!(q.index() >> 30, 0b01, "memory queues live in the `01` index space");
    let mut two = Sga::from(&b"ab"[..]);
    two.push_segment(demi::Bytes::from_static(b"cd"));
    let r = l.wait(l.push(q, two).unwrap(), None).unwrap();
    assert_eq!((r.opcode, r.qd, r.value), (OpCode::Push, q, Ok(QValue::Pushed)));
    push(&l, q, "e");
    let r = l.wait(l.pop(q).unwrap(), None).unwrap();
    assert_eq!((r.opcode, r.qd), (OpCode::Pop, q));
    let sga = r.into_sga().unwrap();
    assert_eq!(sga.num_segments(), 2, "the element pops as it was pushed");
    assert_eq!(text(sga), "abcd");
    assert_eq!(pop(&l, q), "e");
}

#[test]
fn memory_queue_pop_waits_and_pops_complete_in_order() {
    let l = libos();
    let q = l.queue().unwrap();
    let p1 = l.pop(q).unwrap();
    let p2 = l.pop(q).unwrap();
    assert!(stays_pending(&l, p1));
    push(&l, q, "x");
    push(&l, q, "y");
    assert_eq!(text(l.wait(p2, Some(GUARD)).unwrap().into_sga().unwrap()), "y");
    assert_eq!(text(l.wait(p1, Some(GUARD)).unwrap().into_sga().unwrap()), "x");
}

#[test]
fn memory_queue_back_pressure_blocks_pushes_when_full() {
    let l = libos();
    let q = l.queue_with_capacity(2).unwrap();
    push(&l, q, "1");
    push(&l, q, "2");
    let blocked = l.push(q, el("3")).unwrap();
    let blocked2 = l.push(q, el("4")).unwrap();
    assert!(stays_pending(&l, blocked), "a push to a full queue waits");
    assert_eq!(pop(&l, q), "1");
    l.wait(blocked, Some(GUARD)).unwrap().ok().unwrap();
    assert!(stays_pending(&l, blocked2));
    assert_eq!(pop(&l, q), "2");
    assert_eq!(pop(&l, q), "3");
    assert_eq!(pop(&l, q), "4", "blocked pushes enter in order");
    l.wait(blocked2, Some(GUARD)).unwrap().ok().unwrap();
}

#[test]
fn memory_queue_errors_and_close() {
    let l = libos();
    assert!(matches!(l.queue_with_capacity(0), Err(QError::InvalidArgument(_))));
    let q = l.queue_with_capacity(1).unwrap();
    assert!(matches!(l.push(q, Sga::new()), Err(QError::InvalidArgument(_))), "empty elements are refused");
    let pop_waiting = l.pop(q).unwrap();
    l.close(q).unwrap();
    assert_eq!(l.wait(pop_waiting, Some(GUARD)).unwrap().value, Err(QError::Canceled));
    assert_eq!(l.push(q, el("x")), Err(QError::BadDescriptor));
    assert_eq!(l.pop(q), Err(QError::BadDescriptor));
    assert_eq!(l.close(q), Err(QError::BadDescriptor));
    // A closed descriptor's slot is reused under a new generation.
    let q2 = l.queue().unwrap();
    assert_ne!(q, q2);
    assert_eq!(l.pop(q), Err(QError::BadDescriptor));
    // A blocked push is cancelled by close.
    let q3 = l.queue_with_capacity(1).unwrap();
    push(&l, q3, "a");
    let blocked = l.push(q3, el("b")).unwrap();
    l.close(q3).unwrap();
    assert_eq!(l.wait(blocked, Some(GUARD)).unwrap().value, Err(QError::Canceled));
    // Socket calls on a memory queue are refused.
    assert_eq!(l.local_addr(q2), Err(QError::BadDescriptor));
}

// ---- merge ----------------------------------------------------------------------------

#[test]
fn merge_pops_from_either_and_pushes_to_both() {
    let l = libos();
    let (a, b) = (l.queue().unwrap(), l.queue().unwrap());
    let m = l.merge(a, b).unwrap();
    push(&l, b, "from b");
    assert_eq!(pop(&l, m), "from b");
    let waiting = l.pop(m).unwrap();
    push(&l, a, "from a");
    let r = l.wait(waiting, Some(GUARD)).unwrap();
    assert_eq!(r.qd, m, "completions name the merged queue");
    assert_eq!(text(r.into_sga().unwrap()), "from a");
    let r = l.wait(l.push(m, el("both")).unwrap(), Some(GUARD)).unwrap();
    assert_eq!((r.qd, r.value), (m, Ok(QValue::Pushed)));
    assert_eq!(pop(&l, a), "both");
    assert_eq!(pop(&l, b), "both");
    assert!(matches!(l.merge(a, a), Err(QError::InvalidArgument(_))));
    assert_eq!(l.merge(a, QDesc::from_parts((1 << 30) | 999, 7)), Err(QError::BadDescriptor));
}

#[test]
fn merge_is_fair_and_keeps_each_inputs_order() {
    let l = libos();
    let (a, b) = (l.queue().unwrap(), l.queue().unwrap());
    for i in 0..50 {
        push(&l, a, &format!("a{i}"));
        push(&l, b, &format!("b{i}"));
    }
    let m = l.merge(a, b).unwrap();
    let got: Vec<String> = (0..100).map(|_| pop(&l, m)).collect();
    // Per-input order is kept.
    let from_a: Vec<&String> = got.iter().filter(|s| s.starts_with('a')).collect();
    let from_b: Vec<&String> = got.iter().filter(|s| s.starts_with('b')).collect();
    assert_eq!(from_a.len(), 50);
    assert_eq!(from_b.len(), 50);
    assert!(from_a.iter().enumerate().all(|(i, s)| **s == format!("a{i}")));
    assert!(from_b.iter().enumerate().all(|(i, s)| **s == format!("b{i}")));
    // Fair: with both inputs full, neither gets more than one element ahead.
    let mut lead: i32 = 0;
    for s in &got {
        lead += if s.starts_with('a') { 1 } else { -1 };
        assert!(lead.abs() <= 2, "merge starved an input: {got:?}");
    }
}

#[test]
fn merge_does_not_let_a_flooding_input_starve_a_quiet_one() {
    let l = libos();
    let (busy, quiet) = (l.queue().unwrap(), l.queue().unwrap());
    let m = l.merge(busy, quiet).unwrap();
    for i in 0..500 {
        push(&l, busy, &format!("busy{i}"));
    }
    for _ in 0..10 {
        assert!(pop(&l, m).starts_with("busy"));
    }
    push(&l, quiet, "quiet");
    // At most one element of the busy input was read ahead of it.
    let next_two = [pop(&l, m), pop(&l, m)];
    assert!(next_two.contains(&"quiet".to_string()), "quiet input starved: {next_two:?}");
}

#[test]
fn merge_goes_on_when_one_input_closes_and_ends_with_the_last() {
    let l = libos();
    let (a, b) = (l.queue().unwrap(), l.queue().unwrap());
    let m = l.merge(a, b).unwrap();
    let waiting = l.pop(m).unwrap();
    assert!(stays_pending(&l, waiting));
    l.close(a).unwrap();
    assert!(stays_pending(&l, waiting), "one closed input is not the end of the merge");
    push(&l, b, "still here");
    assert_eq!(text(l.wait(waiting, Some(GUARD)).unwrap().into_sga().unwrap()), "still here");
    let waiting = l.pop(m).unwrap();
    l.close(b).unwrap();
    assert_eq!(l.wait(waiting, Some(GUARD)).unwrap().value, Err(QError::Canceled));
    assert_eq!(pop_result(&l, m), Err(QError::Canceled), "the end is sticky");
    // Pushes to a merge with a closed input fail (each input must take the push).
    assert!(l.wait(l.push(m, el("x")).unwrap(), Some(GUARD)).unwrap().value.is_err());
    l.close(m).unwrap();
}

#[test]
fn closing_a_merge_leaves_inputs_open_and_loses_no_element() {
    let l = libos();
    let (a, b) = (l.queue().unwrap(), l.queue().unwrap());
    let m = l.merge(a, b).unwrap();
    let waiting = l.pop(m).unwrap();
    assert!(stays_pending(&l, waiting)); // the merge now has a pop outstanding on a and b
    l.close(m).unwrap();
    assert_eq!(l.wait(waiting, Some(GUARD)).unwrap().value, Err(QError::Canceled));
    assert_eq!(l.pop(m), Err(QError::BadDescriptor));
    push(&l, a, "kept");
    assert_eq!(pop(&l, a), "kept", "the merge's outstanding read was withdrawn, not fed");
}

// ---- filter ---------------------------------------------------------------------------

#[test]
fn filter_pops_and_pushes_only_matching_elements() {
    let l = libos();
    let q = l.queue().unwrap();
    let f = l.filter(q, |s: &Sga| s.to_vec().starts_with(b"keep")).unwrap();
    for s in ["drop1", "keep1", "drop2", "drop3", "keep2"] {
        push(&l, q, s);
    }
    assert_eq!(pop(&l, f), "keep1");
    assert_eq!(pop(&l, f), "keep2");
    let r = l.wait(l.push(f, el("nope")).unwrap(), Some(GUARD)).unwrap();
    assert_eq!(r.value, Ok(QValue::Pushed), "a filtered-out push completes, dropped");
    push(&l, f, "keep3");
    assert_eq!(pop(&l, q), "keep3", "only the matching push reached the input");
    let st = l.filter_stats(f).unwrap();
    assert_eq!((st.passed, st.dropped, st.dropped_push, st.offloaded), (2, 3, 1, false));
}

#[test]
fn filter_with_a_declarative_predicate_on_the_cpu() {
    let l = libos();
    let q = l.queue().unwrap();
    let p = Predicate::bytes_at(0, *b"GET ").and(Predicate::len_between(0, 20));
    let f = l.filter(q, p).unwrap();
    for s in ["POST /a", "GET /a-very-long-path-here", "GET /b"] {
        push(&l, q, s);
    }
    assert_eq!(pop(&l, f), "GET /b");
    // Peer tests use the element's address.
    let g = l.filter(q, Predicate::peer_port(53)).unwrap();
    l.wait(l.pushto(q, el("no"), "198.18.0.1:54".parse().unwrap()).unwrap(), None).unwrap();
    l.wait(l.pushto(q, el("yes"), "198.18.0.1:53".parse().unwrap()).unwrap(), None).unwrap();
    assert_eq!(pop(&l, g), "yes");
}

#[test]
fn filter_ends_when_its_input_closes() {
    let l = libos();
    let q = l.queue().unwrap();
    let f = l.filter(q, |_: &Sga| true).unwrap();
    push(&l, q, "a");
    let first = l.pop(f).unwrap();
    let second = l.pop(f).unwrap();
    assert_eq!(text(l.wait(first, Some(GUARD)).unwrap().into_sga().unwrap()), "a");
    l.close(q).unwrap();
    assert_eq!(l.wait(second, Some(GUARD)).unwrap().value, Err(QError::Canceled));
    // Pushing through to a closed input fails.
    assert_eq!(l.wait(l.push(f, el("x")).unwrap(), Some(GUARD)).unwrap().value, Err(QError::Canceled));
}

// ---- sort -----------------------------------------------------------------------------

fn by_first_byte(a: &Sga, b: &Sga) -> std::cmp::Ordering {
    a.to_vec()[0].cmp(&b.to_vec()[0])
}

#[test]
fn sort_pops_the_highest_priority_available() {
    let l = libos();
    let q = l.queue().unwrap();
    for s in ["1 low", "9 urgent", "5 mid", "9 urgent too", "1 low too"] {
        push(&l, q, s);
    }
    let s = l.sort(q, by_first_byte).unwrap();
    let got: Vec<String> = (0..5).map(|_| pop(&l, s)).collect();
    assert_eq!(got, ["9 urgent", "9 urgent too", "5 mid", "1 low", "1 low too"]);
    // With nothing buffered, a pop takes the next element whatever its priority.
    let waiting = l.pop(s).unwrap();
    push(&l, q, "0 only one");
    assert_eq!(text(l.wait(waiting, Some(GUARD)).unwrap().into_sga().unwrap()), "0 only one");
    // Pushes pass through unchanged.
    push(&l, s, "7 pushed");
    assert_eq!(pop(&l, s), "7 pushed");
}

#[test]
fn sort_read_ahead_is_bounded_by_its_capacity() {
    let l = libos();
    let q = l.queue().unwrap();
    let s = l.sort_with_capacity(q, by_first_byte, 2).unwrap();
    for x in ["1", "2", "3", "9"] {
        push(&l, q, x);
    }
    // The sort reads only two elements ahead: "3" and "9" are still in q when the
    // first pop picks; each pop makes room for one more.
    let got: Vec<String> = (0..4).map(|_| pop(&l, s)).collect();
    assert_eq!(got, ["2", "3", "9", "1"]);
}

// ---- map ------------------------------------------------------------------------------

#[test]
fn map_applies_to_pops_and_pushes() {
    let l = libos();
    let q = l.queue().unwrap();
    let m = l.map(q, |s: Sga| Sga::from(s.to_vec().to_ascii_uppercase())).unwrap();
    push(&l, q, "hello");
    assert_eq!(pop(&l, m), "HELLO");
    push(&l, m, "pushed");
    assert_eq!(pop(&l, q), "PUSHED");
    l.close(q).unwrap();
    assert_eq!(pop_result(&l, m), Err(QError::Canceled));
    assert_eq!(l.wait(l.push(m, el("x")).unwrap(), Some(GUARD)).unwrap().value, Err(QError::Canceled));
}

#[test]
fn map_calling_back_into_its_own_queue_is_an_error_not_a_panic() {
    let l = libos();
    let q = l.queue().unwrap();
    let inner = l.clone();
    let slot = std::rc::Rc::new(std::cell::Cell::new(None::<QDesc>));
    let s2 = slot.clone();
    let m = l
        .map(q, move |s: Sga| {
            if let Some(me) = s2.get() {
                assert_eq!(inner.pop(me).err(), Some(QError::InvalidState));
            }
            s
        })
        .unwrap();
    slot.set(Some(m));
    push(&l, m, "x");
    assert_eq!(pop(&l, q), "x");
}

// ---- composition ----------------------------------------------------------------------

#[test]
fn combinators_compose() {
    let l = libos();
    let (a, b) = (l.queue().unwrap(), l.queue().unwrap());
    // sort(map(filter(merge(a, b)))): even numbers, doubled, largest first.
    let merged = l.merge(a, b).unwrap();
    let even = l.filter(merged, |s: &Sga| text(s.clone()).parse::<u32>().unwrap() % 2 == 0).unwrap();
    let doubled = l.map(even, |s: Sga| el(&(text(s).parse::<u32>().unwrap() * 2).to_string())).unwrap();
    let sorted = l
        .sort(doubled, |x: &Sga, y: &Sga| {
            text(x.clone()).parse::<u32>().unwrap().cmp(&text(y.clone()).parse::<u32>().unwrap())
        })
        .unwrap();
    for i in 1..=5 {
        push(&l, a, &i.to_string());
        push(&l, b, &(i + 10).to_string());
    }
    // Give the chain's tasks time to bring everything to the sort.
    idle(&l, 20);
    let got: Vec<u32> = (0..4).map(|_| pop(&l, sorted).parse().unwrap()).collect();
    assert_eq!(got, [28, 24, 8, 4]);
    // Push through the whole chain: sort → map (doubles) → filter (even) → both
    // inputs, where the merge (read by the sort, eagerly) takes them back up: 42
    // from each input, doubled again on the way up.
    push(&l, sorted, "21");
    assert_eq!(pop(&l, sorted), "84");
    assert_eq!(pop(&l, sorted), "84");
    // Closing both inputs ends every stage down the chain.
    l.close(a).unwrap();
    l.close(b).unwrap();
    assert_eq!(pop_result(&l, sorted), Err(QError::Canceled));
}

// ---- qconnect -------------------------------------------------------------------------

#[test]
fn qconnect_moves_elements_in_order_until_the_input_closes() {
    let l = libos();
    let (src, dst) = (l.queue().unwrap(), l.queue().unwrap());
    let qt = l.qconnect(src, dst).unwrap();
    for i in 0..100 {
        push(&l, src, &i.to_string());
    }
    for i in 0..100 {
        assert_eq!(pop(&l, dst), i.to_string());
    }
    assert!(stays_pending(&l, qt));
    l.close(src).unwrap();
    let r = l.wait(qt, Some(GUARD)).unwrap();
    assert_eq!((r.opcode, r.value), (OpCode::Other, Ok(QValue::Closed)));
    push(&l, dst, "dst still open");
    assert_eq!(pop(&l, dst), "dst still open");
}

#[test]
fn qconnect_stops_when_the_output_closes_without_losing_input() {
    let l = libos();
    let (src, dst) = (l.queue().unwrap(), l.queue().unwrap());
    let qt = l.qconnect(src, dst).unwrap();
    push(&l, src, "moved");
    assert_eq!(pop(&l, dst), "moved");
    l.close(dst).unwrap();
    assert_eq!(l.wait(qt, Some(GUARD)).unwrap().value, Ok(QValue::Closed));
    push(&l, src, "stays");
    assert_eq!(pop(&l, src), "stays", "the connection's outstanding read was withdrawn");
}

#[test]
fn qconnect_back_pressure_from_a_full_output() {
    let l = libos();
    let src = l.queue().unwrap();
    let dst = l.queue_with_capacity(4).unwrap();
    let _qt = l.qconnect(src, dst).unwrap();
    for i in 0..40 {
        push(&l, src, &i.to_string());
    }
    // Let the connection run: it fills dst and its window, and stops reading src.
    idle(&l, 30);
    // src still holds what the connection could not move (40 - 4 in dst - window - 1 read).
    let mut left_in_src = 0;
    while l.wait(l.pop(src).unwrap(), Some(Duration::from_millis(5))).is_ok() {
        left_in_src += 1;
    }
    assert!(left_in_src >= 40 - 4 - 8 - 1, "only {left_in_src} left: no back-pressure");
    assert!(left_in_src < 40);
    assert!(matches!(l.qconnect(src, src), Err(QError::InvalidArgument(_))));
}
