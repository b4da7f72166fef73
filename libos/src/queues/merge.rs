//! `merge(q1, q2)`: a pop from either input is a pop from the merged queue; a push
//! to the merged queue is a push to both.
//!
//! Fairness: the merge keeps at most one pop outstanding per input and takes
//! completions round-robin, starting after the input it took from last, so when
//! both inputs have elements they alternate and neither can starve the other.
//! Order is kept per input (elements of one input pop in that input's order); the
//! interleaving of the two is arrival order.
//!
//! An input that ends (closed, end of stream) drops out silently while the other
//! goes on; an input's error is reported once, in order, by one pop of the merge,
//! and ends that input. When both have ended, pops past the buffered elements
//! complete with the end of the last one: an empty element for end of stream,
//! [`QError::Canceled`](demi_runtime::QError::Canceled) for a close, or its error.
//!
//! A push goes to both inputs (each gets the same refcounted buffers, no copy) and
//! completes when both pushes have; its result is the first failure, if any (there
//! is no atomicity across inputs: one may have taken the element).

use super::stage::Kind;

pub(crate) fn kind() -> Kind {
    Kind::Merge
}
