//! `map(q, f)`: `f` is applied to each element popped from `q` and to each element
//! pushed through the map before it reaches `q`.
//!
//! End-of-stream markers (the empty element of a byte stream) and errors are not
//! given to `f`: they end the map as they end any combinator. `f` runs on the CPU,
//! in the map's task for pops and in the push call for pushes; it should not
//! return an empty element (a popped empty element reads as end of stream).

use demi_runtime::Sga;
use std::rc::Rc;

/// The function of a map.
pub(crate) type MapFn = Rc<dyn Fn(Sga) -> Sga>;
