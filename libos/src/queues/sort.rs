//! `sort(q, order)`: pops return the highest-priority element available.
//!
//! The sort reads ahead from its input (up to its capacity, eagerly, whether or
//! not anyone pops) into a max-heap ordered by `order`; each pop takes the greatest
//! element that has arrived. Equal elements pop in arrival order. Pushes pass
//! through to the input unchanged.

use demi_runtime::Sga;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;

/// The order of a sort: `Greater` pops first.
pub(crate) type Order = Rc<dyn Fn(&Sga, &Sga) -> Ordering>;

struct Entry {
    sga: Sga,
    seq: u64,
    order: Order,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Older first among equals: a smaller sequence number is "greater".
        (self.order)(&self.sga, &other.sga).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A max-heap of elements under a caller's order, stable among equals.
pub(crate) struct Heap {
    heap: BinaryHeap<Entry>,
    order: Order,
    seq: u64,
}

impl Default for Heap {
    fn default() -> Self {
        Heap::new(Rc::new(|_: &Sga, _: &Sga| Ordering::Equal))
    }
}

impl Heap {
    pub(crate) fn new(order: Order) -> Self {
        Heap { heap: BinaryHeap::new(), order, seq: 0 }
    }

    pub(crate) fn push(&mut self, sga: Sga) {
        self.seq += 1;
        self.heap.push(Entry { sga, seq: self.seq, order: self.order.clone() });
    }

    pub(crate) fn pop(&mut self) -> Option<Sga> {
        self.heap.pop().map(|e| e.sga)
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greatest_first_and_stable_among_equals() {
        let by_first: Order = Rc::new(|a: &Sga, b: &Sga| a.to_vec()[0].cmp(&b.to_vec()[0]));
        let mut h = Heap::new(by_first);
        for e in [&b"1a"[..], b"3a", b"2a", b"3b", b"1b"] {
            h.push(Sga::from(e));
        }
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| h.pop()).map(|s| s.to_vec()).collect();
        assert_eq!(out, [&b"3a"[..], b"3b", b"2a", b"1a", b"1b"]);
    }
}
