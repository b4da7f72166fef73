//! A first-in first-out queue for queues that usually hold one entry.

use std::collections::VecDeque;
use std::fmt;

/// A first-in first-out queue that holds its first entry apart from the rest: a
/// queue of one (the usual `dirty` and event queue of a stack, the one busy
/// connection, and the usual receive queue of a connection, one segment) is
/// pushed and popped without a ring buffer's index arithmetic.
///
/// Two queues are equal when they hold equal entries in the same order: the
/// first entry is always in `front`, so equal contents are equal fields.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Fifo<T> {
    /// The first entry; `None` only when the queue is empty.
    front: Option<T>,
    /// The entries after it, in order.
    rest: VecDeque<T>,
}

/// Formats as the list of its entries, in order (as a `VecDeque` does).
impl<T: fmt::Debug> fmt::Debug for Fifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.front.iter().chain(&self.rest)).finish()
    }
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo { front: None, rest: VecDeque::new() }
    }
}

impl<T> Fifo<T> {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<&T> {
        self.front.as_ref()
    }

    #[inline]
    pub(crate) fn push_back(&mut self, value: T) {
        if self.front.is_none() {
            self.front = Some(value);
        } else {
            self.push_rest(value);
        }
    }

    /// [`push_back`](Self::push_back) behind the front entry: out of the callers'
    /// code, which is mostly the queue of one.
    #[inline(never)]
    fn push_rest(&mut self, value: T) {
        self.rest.push_back(value);
    }

    #[inline]
    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.front.as_mut()
    }

    /// The last entry.
    #[inline]
    pub(crate) fn back_mut(&mut self) -> Option<&mut T> {
        match self.rest.back_mut() {
            Some(back) => Some(back),
            None => self.front.as_mut(),
        }
    }

    /// Drops the first entry, if any, where it lies (no move out to a caller, which
    /// for a large entry is a copy).
    #[inline]
    pub(crate) fn remove_front(&mut self) {
        if self.rest.is_empty() {
            self.front = None;
        } else {
            self.front = self.pop_rest();
        }
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let first = self.front.take()?;
        if !self.rest.is_empty() {
            self.front = self.pop_rest();
        }
        Some(first)
    }

    /// The first entry behind the front one (out of the callers' code, as
    /// [`push_rest`](Self::push_rest)).
    #[inline(never)]
    fn pop_rest(&mut self) -> Option<T> {
        self.rest.pop_front()
    }

    /// How many entries it holds.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.len()
    }

    /// The entry `index` places from the front, if there is one.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        match index.checked_sub(1) {
            None => self.front.as_ref(),
            Some(i) => self.rest.get(i),
        }
    }

    /// The entries from the one `first` places from the front on, in order (none
    /// if `first` is the length or more).
    pub(crate) fn iter_from(&self, first: usize) -> impl Iterator<Item = &T> {
        let (front, rest) = match first.checked_sub(1) {
            None => (self.front.as_ref(), self.rest.range(..)),
            Some(i) => (None, self.rest.range(i.min(self.rest.len())..)),
        };
        front.into_iter().chain(rest)
    }

    /// Every entry, in order, to change.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.front.iter_mut().chain(self.rest.iter_mut())
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.front = None;
        self.rest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Fifo` against a `VecDeque` over a run of pushes, pops, changes to the front
    /// entry and the odd clear, the queue emptied and refilled along the way; every
    /// look at it (entries by index, from an index on, length) agrees.
    #[test]
    fn the_fifo_keeps_the_order_of_a_vecdeque() {
        let (mut fifo, mut model) = (Fifo::default(), VecDeque::new());
        let mut x: u32 = 1;
        for i in 0..2000usize {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if x & 0x1_0000 == 0 {
                if x & 0x100_0000 == 0 {
                    assert_eq!(fifo.pop_front(), model.pop_front(), "step {i}");
                } else {
                    fifo.remove_front();
                    model.pop_front();
                }
            } else if x & 0x7_0000 == 0x3_0000 {
                if let (Some(a), Some(b)) = (fifo.back_mut(), model.back_mut()) {
                    (*a, *b) = (*a + 20_000, *b + 20_000);
                }
            } else if x & 0x7_0000 == 0x1_0000 {
                if let (Some(a), Some(b)) = (fifo.front_mut(), model.front_mut()) {
                    (*a, *b) = (*a + 10_000, *b + 10_000);
                }
            } else if x & 0xff_0000 == 0x33_0000 {
                fifo.clear();
                model.clear();
            } else {
                fifo.push_back(i);
                model.push_back(i);
            }
            assert_eq!(fifo.front(), model.front(), "step {i}");
            assert_eq!(fifo.is_empty(), model.is_empty(), "step {i}");
            assert_eq!(format!("{fifo:?}"), format!("{model:?}"), "step {i}");
            assert_eq!(fifo.len(), model.len(), "step {i}");
            for at in [0, 1, 2, model.len().saturating_sub(1), model.len(), model.len() + 1] {
                assert_eq!(fifo.get(at), model.get(at), "step {i} at {at}");
                let from: Vec<_> = fifo.iter_from(at).collect();
                assert_eq!(from, model.range(at.min(model.len())..).collect::<Vec<_>>(), "step {i} from {at}");
            }
        }
        while let Some(v) = model.pop_front() {
            assert_eq!(fifo.pop_front(), Some(v));
        }
        assert_eq!(fifo.pop_front(), None);
    }
}
