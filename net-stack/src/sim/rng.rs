//! A small, seedable, reproducible pseudo-random number generator.
//!
//! [`Rng`] is xoshiro256\*\* (Blackman and Vigna, 2018) with its 256-bit state
//! expanded from a single `u64` seed by SplitMix64, as the algorithm's authors
//! recommend. It is fast, has a period of 2^256 − 1 and passes the usual statistical
//! test batteries; it is **not** cryptographically secure and must never be used for
//! anything an attacker may try to predict (initial sequence numbers on a real
//! network, for example).
//!
//! The simulator and the tests use it so that every run is a pure function of its
//! seed: the same seed always produces the same sequence, on every platform.

use core::ops::{Bound, RangeBounds};
use core::time::Duration;

/// A deterministic pseudo-random number generator (xoshiro256\*\*, seeded with
/// SplitMix64).
///
/// ```
/// use demi_net_stack::sim::Rng;
///
/// let mut a = Rng::new(42);
/// let mut b = Rng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
///
/// let die = a.gen_range(1..=6);
/// assert!((1..=6).contains(&die));
/// let x = a.gen_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of SplitMix64: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    ///
    /// Every seed is valid, including 0: SplitMix64 is a bijection, so the four
    /// state words it produces are distinct and never all zero.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// A new generator seeded from this one's next output.
    ///
    /// Use it to give a component its own stream, so that the number of values one
    /// component draws does not shift the values another one sees.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// The next 32 uniformly distributed bits (the high half of [`Rng::next_u64`],
    /// which are the better ones).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniformly distributed `f64` in `[0, 1)`, with 53 bits of precision.
    pub fn gen_f64(&mut self) -> f64 {
        // 2^-53: the spacing of f64 values in [0.5, 1).
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// `true` with probability `p`.
    ///
    /// `p` is clamped to `[0, 1]` and a NaN counts as 0, so this never panics.
    /// `p <= 0` and `p >= 1` are decided without drawing a value, so a generator
    /// that is only asked for certain outcomes does not advance.
    pub fn gen_bool(&mut self, p: f64) -> bool {
        // `!(p > 0.0)` is also true for NaN.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(p > 0.0) {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        self.gen_f64() < p
    }

    /// A uniformly distributed, unbiased value in `range` (`a..b`, `a..=b`, `a..`,
    /// `..b`, …).
    ///
    /// An empty range (such as `5..5` or `7..=3`) never panics: it yields its lower
    /// bound.
    ///
    /// ```
    /// use demi_net_stack::sim::Rng;
    /// let mut rng = Rng::new(1);
    /// for _ in 0..100 {
    ///     assert!(rng.gen_range(10..20) < 20);
    /// }
    /// assert_eq!(rng.gen_range(5..5), 5);
    /// ```
    pub fn gen_range<R: RangeBounds<u64>>(&mut self, range: R) -> u64 {
        let low = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let high = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&0) => return low,
            Bound::Excluded(&e) => e - 1,
            Bound::Unbounded => u64::MAX,
        };
        if low >= high {
            return low;
        }
        let span = high - low;
        if span == u64::MAX {
            return self.next_u64();
        }
        low + self.below(span + 1)
    }

    /// A uniformly distributed value in `0..n`, for `n > 0` (Lemire's
    /// multiply-and-shift method with rejection, so there is no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            // 2^64 mod n: outputs whose low word falls below it would be over-represented.
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// A uniformly distributed duration in `[0, max]`, with nanosecond resolution.
    ///
    /// Durations longer than `u64::MAX` nanoseconds (about 584 years) are treated as
    /// that. `max == 0` returns zero without drawing a value.
    pub fn gen_duration(&mut self, max: Duration) -> Duration {
        let max_ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if max_ns == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.gen_range(0..=max_ns))
    }

    /// Fills `dest` with random bytes.
    pub fn fill_bytes(&mut self, dest: &mut [u8]) {
        let mut chunks = dest.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&bytes[..rest.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs of SplitMix64 started from state 0.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut state), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn xoshiro256starstar_reference_values() {
        // The reference implementation started from the state [1, 2, 3, 4].
        let mut rng = Rng { s: [1, 2, 3, 4] };
        assert_eq!(rng.next_u64(), 11520);
        assert_eq!(rng.next_u64(), 0);
        assert_eq!(rng.next_u64(), 1_509_978_240);
        assert_eq!(rng.next_u64(), 1_215_971_899_390_074_240);
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(0xdead_beef);
        let mut b = Rng::new(0xdead_beef);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut a = Rng::new(7);
        let mut b = a.clone();
        let (mut x, mut y) = ([0u8; 37], [0u8; 37]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn different_seeds_differ() {
        for (s1, s2) in [(0, 1), (1, 2), (42, 43), (u64::MAX, 0)] {
            let a: Vec<u64> = {
                let mut r = Rng::new(s1);
                (0..16).map(|_| r.next_u64()).collect()
            };
            let b: Vec<u64> = {
                let mut r = Rng::new(s2);
                (0..16).map(|_| r.next_u64()).collect()
            };
            assert_ne!(a, b, "seeds {s1} and {s2}");
            // Not merely shifted copies of each other either.
            assert!(a.iter().all(|x| !b.contains(x)));
        }
    }

    #[test]
    fn fork_gives_an_independent_stream() {
        let mut parent = Rng::new(9);
        let mut child = parent.fork();
        assert_ne!(parent.next_u64(), child.next_u64());
        let mut again = Rng::new(9).fork();
        assert_eq!(Rng::new(9).fork(), again.clone());
        assert_eq!(again.next_u64(), Rng::new(9).fork().next_u64());
    }

    #[test]
    fn gen_range_bounds() {
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let x = rng.gen_range(10..20);
            assert!((10..20).contains(&x));
            let y = rng.gen_range(10..=20);
            assert!((10..=20).contains(&y));
            let z = rng.gen_range(u64::MAX - 3..);
            assert!(z >= u64::MAX - 3);
            let w = rng.gen_range(..3);
            assert!(w < 3);
        }
        // Both ends of an inclusive range are reachable.
        let draws: Vec<u64> = (0..1000).map(|_| rng.gen_range(0..=1)).collect();
        assert!(draws.contains(&0) && draws.contains(&1));
        // Degenerate and empty ranges do not panic.
        assert_eq!(rng.gen_range(5..=5), 5);
        assert_eq!(rng.gen_range(5..5), 5);
        let (high, low) = (7, 3);
        assert_eq!(rng.gen_range(high..=low), 7);
        assert_eq!(rng.gen_range(0..0), 0);
        assert_eq!(
            rng.gen_range((Bound::Excluded(u64::MAX), Bound::Unbounded)),
            u64::MAX
        );
        // The full range works.
        let _ = rng.gen_range(..);
        let _ = rng.gen_range(0..=u64::MAX);
    }

    #[test]
    fn gen_f64_in_unit_interval() {
        let mut rng = Rng::new(4);
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let x = rng.gen_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        let mean = sum / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn gen_range_is_roughly_uniform() {
        let mut rng = Rng::new(5);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[rng.gen_range(0..10) as usize] += 1;
        }
        for (i, &n) in buckets.iter().enumerate() {
            // Expected 10,000 with a standard deviation of about 95.
            assert!((9_500..=10_500).contains(&n), "bucket {i}: {n}");
        }
        // A span that is not a power of two and close to 2^64 is still in range.
        let n = u64::MAX / 3 * 2;
        for _ in 0..1000 {
            assert!(rng.gen_range(0..n) < n);
        }
    }

    #[test]
    fn gen_bool_probabilities() {
        let mut rng = Rng::new(6);
        let hits = (0..100_000).filter(|_| rng.gen_bool(0.25)).count();
        assert!((24_000..=26_000).contains(&hits), "{hits}");
        // Certain outcomes and nonsense probabilities draw nothing.
        let before = rng.clone();
        assert!(!rng.gen_bool(0.0));
        assert!(!rng.gen_bool(-1.0));
        assert!(!rng.gen_bool(f64::NAN));
        assert!(rng.gen_bool(1.0));
        assert!(rng.gen_bool(7.5));
        assert!(rng.gen_bool(f64::INFINITY));
        assert_eq!(rng, before);
    }

    #[test]
    fn gen_duration_bounds() {
        let mut rng = Rng::new(8);
        assert_eq!(rng.gen_duration(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_micros(50);
        let mut saw_low = false;
        let mut saw_high = false;
        for _ in 0..10_000 {
            let d = rng.gen_duration(max);
            assert!(d <= max);
            saw_low |= d < max / 10;
            saw_high |= d > max * 9 / 10;
        }
        assert!(saw_low && saw_high);
        // Absurdly long durations do not overflow.
        let _ = rng.gen_duration(Duration::MAX);
    }

    #[test]
    fn fill_bytes_covers_every_length() {
        let mut rng = Rng::new(10);
        for len in 0..40 {
            let mut buf = vec![0u8; len];
            rng.fill_bytes(&mut buf);
            if len >= 16 {
                assert!(buf.iter().any(|&b| b != 0));
            }
        }
        let mut big = vec![0u8; 64 * 1024];
        rng.fill_bytes(&mut big);
        let ones: u32 = big.iter().map(|b| b.count_ones()).sum();
        let expected = 64 * 1024 * 4;
        assert!(ones.abs_diff(expected) < expected / 100);
    }
}
