//! TCP sequence numbers and their arithmetic.
//!
//! Implements RFC 9293 §3.4 (sequence numbers compared modulo 2^32) with the order of
//! RFC 1982, *Serial Number Arithmetic*.

use core::fmt;
use core::ops;

/// A TCP sequence number: a `u32` that wraps around.
///
/// Arithmetic is modulo 2^32: adding or subtracting a `usize` wraps (a count is taken
/// modulo 2^32 as well), and subtracting two sequence numbers gives the signed
/// distance between them as an `i32`.
///
/// **Sequence numbers are not totally ordered**, so `SeqNumber` implements neither
/// `Ord` nor `PartialOrd` (whose contract requires transitivity). Compare with
/// [`lt`](Self::lt), [`le`](Self::le), [`gt`](Self::gt) and [`ge`](Self::ge), which
/// follow RFC 1982: `a` is before `b` when `b` is 1..2^31 steps ahead of `a`. Two
/// numbers exactly 2^31 apart are neither before nor after each other, and the order
/// is not transitive across more than half the space. TCP keeps all the numbers it
/// compares within one window (< 2^30), where the order behaves.
///
/// ```
/// use demi_net_stack::wire::SeqNumber;
///
/// let near_wrap = SeqNumber(u32::MAX - 1);
/// let after = near_wrap + 5;
/// assert_eq!(after, SeqNumber(3));
/// assert!(near_wrap.lt(after));
/// assert_eq!(after - near_wrap, 5);
/// assert_eq!(near_wrap - after, -5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Whether `self` comes strictly before `other` (RFC 1982).
    pub const fn lt(self, other: SeqNumber) -> bool {
        (other.0.wrapping_sub(self.0) as i32) > 0
    }

    /// Whether `self` is `other` or comes before it.
    pub const fn le(self, other: SeqNumber) -> bool {
        self.0 == other.0 || self.lt(other)
    }

    /// Whether `self` comes strictly after `other`.
    pub const fn gt(self, other: SeqNumber) -> bool {
        other.lt(self)
    }

    /// Whether `self` is `other` or comes after it.
    pub const fn ge(self, other: SeqNumber) -> bool {
        other.le(self)
    }

    /// The later of the two (`self` if they are equal or incomparable).
    pub const fn max(self, other: SeqNumber) -> SeqNumber {
        if self.lt(other) {
            other
        } else {
            self
        }
    }

    /// The earlier of the two (`self` if they are equal or incomparable).
    pub const fn min(self, other: SeqNumber) -> SeqNumber {
        if other.lt(self) {
            other
        } else {
            self
        }
    }

    /// Whether `self` lies in the `len` numbers starting at `start`, that is
    /// `start <= self < start + len` modulo 2^32. Always false for `len == 0`.
    pub const fn within(self, start: SeqNumber, len: usize) -> bool {
        (self.0.wrapping_sub(start.0) as u64) < len as u64
    }
}

impl ops::Add<usize> for SeqNumber {
    type Output = SeqNumber;

    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl ops::Sub<usize> for SeqNumber {
    type Output = SeqNumber;

    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl ops::AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl ops::SubAssign<usize> for SeqNumber {
    fn sub_assign(&mut self, rhs: usize) {
        *self = *self - rhs;
    }
}

impl ops::Sub for SeqNumber {
    /// The signed distance from `rhs` to `self`: positive if `self` is after `rhs`.
    type Output = i32;

    fn sub(self, rhs: SeqNumber) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_around() {
        let mut seq = SeqNumber(u32::MAX);
        seq += 1;
        assert_eq!(seq, SeqNumber(0));
        seq -= 2;
        assert_eq!(seq, SeqNumber(u32::MAX - 1));
        assert_eq!(SeqNumber(0) - 1, SeqNumber(u32::MAX));
        assert_eq!(SeqNumber(5) - SeqNumber(u32::MAX), 6);
        assert_eq!(SeqNumber(7).to_string(), "7");
    }

    #[test]
    fn half_the_space_apart_is_incomparable() {
        let a = SeqNumber(0);
        let b = SeqNumber(1 << 31);
        assert!(!a.lt(b) && !a.gt(b) && !a.le(b) && !a.ge(b));
        assert_eq!(a.max(b), a);
        assert_eq!(b.max(a), b);
    }

    #[test]
    fn within_a_window() {
        let start = SeqNumber(u32::MAX - 2);
        assert!(start.within(start, 1));
        assert!(!start.within(start, 0));
        assert!((start + 4).within(start, 5));
        assert!(!(start + 5).within(start, 5));
        assert!(!(start - 1).within(start, 5));
        assert!((start - 1).within(start, usize::MAX));
    }

    proptest! {
        #[test]
        fn ahead_by_less_than_half_is_after(a: u32, n in 1usize..(1 << 31)) {
            let a = SeqNumber(a);
            let b = a + n;
            prop_assert!(a.lt(b) && a.le(b) && b.gt(a) && b.ge(a));
            prop_assert!(!b.lt(a) && !a.gt(b) && !b.le(a));
            prop_assert_eq!(b - a, n as i32);
            prop_assert_eq!(a - b, -(n as i32));
            prop_assert_eq!(b - n, a);
            prop_assert_eq!(a.max(b), b);
            prop_assert_eq!(a.min(b), a);
            prop_assert!(b.within(a, n + 1) && !b.within(a, n));
        }

        #[test]
        fn order_is_antisymmetric(a: u32, b: u32) {
            let (a, b) = (SeqNumber(a), SeqNumber(b));
            prop_assert!(!(a.lt(b) && b.lt(a)));
            prop_assert_eq!(a.lt(b), b.gt(a));
            prop_assert_eq!(a.le(b), a.lt(b) || a == b);
            prop_assert!(a.le(a) && a.ge(a) && !a.lt(a));
            // Exactly one of before, equal, after, or the single incomparable case.
            let relations = [a.lt(b), a == b, a.gt(b)].iter().filter(|&&r| r).count();
            prop_assert_eq!(relations, usize::from(b.0.wrapping_sub(a.0) != 1 << 31));
        }

        #[test]
        fn addition_is_modular(a: u32, n: usize, m: usize) {
            let a = SeqNumber(a);
            prop_assert_eq!((a + n) + m, a + (n as u32).wrapping_add(m as u32) as usize);
            prop_assert_eq!(a + n - n, a);
        }
    }
}
