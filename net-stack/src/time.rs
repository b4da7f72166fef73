//! Time inside the stack: whole nanoseconds since an epoch.
//!
//! The public API takes and returns [`Instant`]s. Inside, a moment is a [`Ticks`]:
//! the nanoseconds since the epoch of its stack (the `now` given to
//! `Stack::new`) or, for a connection made on its own, of the connection (the
//! `now` given to `Connection::connect` or `accept`). A `u64` of nanoseconds
//! spans 584 years, and comparing, adding and subtracting it is one instruction
//! each, where `Instant` keeps seconds and nanoseconds apart and checks every
//! step for overflow.
//!
//! Conversions:
//!
//! * an `Instant` becomes `Ticks` by subtracting the epoch; one earlier than the
//!   epoch counts as the epoch itself (0). A driver never goes back before the
//!   `now` it created the stack with, so this only matters for callers whose
//!   clock runs backwards;
//! * adding a `Duration` saturates at `u64::MAX` nanoseconds (584 years past the
//!   epoch: in practice, never) instead of panicking as `Instant + Duration`
//!   does on overflow;
//! * a deadline goes back out as the epoch plus its nanoseconds, which is exactly
//!   the `Instant` the same arithmetic on `Instant`s would have given (both count
//!   whole nanoseconds).

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Nanoseconds in a `Duration`, saturating at `u64::MAX` (584 years). (In 64 bits:
/// either step saturates exactly when the 128-bit `as_nanos` would not fit.)
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A moment as nanoseconds since an epoch (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Ticks(u64);

impl Ticks {
    /// The epoch itself.
    pub(crate) const ZERO: Ticks = Ticks(0);

    /// `n` nanoseconds after the epoch.
    #[cfg(test)]
    pub(crate) const fn from_nanos(n: u64) -> Ticks {
        Ticks(n)
    }

    /// Nanoseconds since the epoch.
    #[cfg(test)]
    pub(crate) const fn nanos(self) -> u64 {
        self.0
    }

    /// `at` counted from `epoch`; 0 if `at` is earlier.
    #[inline]
    pub(crate) fn between(epoch: Instant, at: Instant) -> Ticks {
        Ticks(at.checked_duration_since(epoch).map_or(0, duration_nanos))
    }

    /// `d` later, saturating.
    #[inline]
    pub(crate) fn add(self, d: Duration) -> Ticks {
        self.add_nanos(duration_nanos(d))
    }

    /// `nanos` nanoseconds later, saturating.
    #[inline]
    pub(crate) const fn add_nanos(self, nanos: u64) -> Ticks {
        Ticks(self.0.saturating_add(nanos))
    }

    /// Nanoseconds from `earlier` to `self`; 0 if `earlier` is not earlier.
    #[inline]
    pub(crate) const fn since(self, earlier: Ticks) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The `Instant` this is, counted from `epoch`; `None` past what `Instant`
    /// can hold (not for centuries on any platform).
    #[inline]
    pub(crate) fn instant(self, epoch: Instant) -> Option<Instant> {
        epoch.checked_add(Duration::from_nanos(self.0))
    }
}

/// A stack's converter from `Instant` to [`Ticks`], with the last conversion
/// kept: a driver calls several of the stack's methods with one `now` per turn
/// of its loop, and only the first of them pays for the subtraction. Where it can
/// (Unix), it subtracts seconds and nanoseconds it reads itself ([`Parts`])
/// rather than through `std`'s `Instant` arithmetic, with the same result.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    epoch: Instant,
    /// The last `now` converted, and what it came to.
    last: Instant,
    last_ticks: Ticks,
    /// The epoch's seconds and nanoseconds as [`Parts`] reads them, if that
    /// reading agreed with `Instant`'s own arithmetic when the clock was made.
    epoch_parts: Option<(i64, u32)>,
}

impl Clock {
    /// A clock counting from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Clock {
        let mut clock = Clock { epoch, last: epoch, last_ticks: Ticks::ZERO, epoch_parts: Parts::of(epoch) };
        // Trust the reading only if it gives what `Instant`'s arithmetic gives, across
        // a borrow from the seconds and without one.
        let agrees = [Duration::from_nanos(1), Duration::new(0, 999_999_999), Duration::new(1, 1), Duration::new(86_400, 500_000_000)]
            .into_iter()
            .all(|d| epoch.checked_add(d).is_none_or(|at| clock.read(at) == Some(Ticks::between(epoch, at))));
        if !agrees {
            clock.epoch_parts = None;
        }
        clock
    }

    /// The instant the clock counts from.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// `now` in ticks (0 before the epoch).
    #[inline]
    pub(crate) fn ticks(&mut self, now: Instant) -> Ticks {
        if now != self.last {
            self.convert(now);
        }
        self.last_ticks
    }

    #[inline]
    fn convert(&mut self, now: Instant) {
        self.last = now;
        self.last_ticks = match self.read(now) {
            Some(t) => t,
            None => Ticks::between(self.epoch, now),
        };
    }

    /// [`Ticks::between`] the epoch and `now` from their seconds and nanoseconds
    /// as [`Parts`] reads them: the whole nanoseconds from one to the other, 0 if
    /// `now` is not later, `u64::MAX` past that (as `duration_nanos` saturates);
    /// `None` where that reading is not available.
    #[inline]
    fn read(&self, now: Instant) -> Option<Ticks> {
        let (epoch_sec, epoch_nsec) = self.epoch_parts?;
        let (sec, nsec) = Parts::of(now)?;
        let nanos = (i128::from(sec) - i128::from(epoch_sec)) * 1_000_000_000 + i128::from(nsec) - i128::from(epoch_nsec);
        Some(Ticks(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)))
    }

    /// The `Instant` of `t` (see [`Ticks::instant`]).
    #[inline]
    pub(crate) fn instant(&self, t: Ticks) -> Option<Instant> {
        t.instant(self.epoch)
    }
}

/// Reads an `Instant`'s seconds and nanoseconds through its `Hash`, which on Unix
/// feeds the hasher exactly those: `tv_sec` as an `i64`, then `tv_nsec` as a `u32`.
/// Subtracting two `Instant`s is a call into `std` (~80 instructions, with the
/// conversion to nanoseconds) where this is a few moves. Any other sequence of
/// writes (another platform's `Instant`, a change in `std`) gives `None`, and
/// [`Clock`] then subtracts as `std` does; it also checks the reading against that
/// subtraction before it uses it.
#[derive(Default)]
struct Parts {
    sec: i64,
    nsec: u32,
    writes: u8,
    unexpected: bool,
}

impl Parts {
    #[inline]
    fn of(at: Instant) -> Option<(i64, u32)> {
        let mut p = Parts::default();
        at.hash(&mut p);
        (p.writes == 2 && !p.unexpected && p.nsec < 1_000_000_000).then_some((p.sec, p.nsec))
    }
}

impl Hasher for Parts {
    fn finish(&self) -> u64 {
        0
    }

    #[inline]
    fn write(&mut self, _: &[u8]) {
        self.unexpected = true;
    }

    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.unexpected |= self.writes != 0;
        self.sec = v;
        self.writes += 1;
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.unexpected |= self.writes != 1;
        self.nsec = v;
        self.writes += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_nanos_saturate_like_as_nanos() {
        for d in [
            Duration::ZERO,
            Duration::new(1, 999_999_999),
            Duration::new(u64::MAX / 1_000_000_000, 0),
            Duration::new(u64::MAX / 1_000_000_000, 999_999_999),
            Duration::new(u64::MAX / 1_000_000_000 + 1, 0),
            Duration::MAX,
        ] {
            assert_eq!(duration_nanos(d), u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), "{d:?}");
        }
    }

    #[test]
    fn ticks_add_saturate_and_since_never_goes_negative() {
        let t = Ticks::from_nanos(1_500);
        assert_eq!(t.add(Duration::from_micros(2)), Ticks::from_nanos(3_500));
        assert_eq!(t.add_nanos(7), Ticks::from_nanos(1_507));
        assert_eq!(t.add(Duration::MAX), Ticks::from_nanos(u64::MAX));
        assert_eq!(Ticks::from_nanos(u64::MAX - 1).add_nanos(5).nanos(), u64::MAX);
        assert_eq!(t.since(Ticks::from_nanos(500)), 1_000);
        assert_eq!(Ticks::from_nanos(500).since(t), 0);
        assert_eq!(t.since(t), 0);
        assert!(Ticks::ZERO < t && t < t.add_nanos(1));
    }

    #[test]
    fn ticks_and_instants_agree() {
        let epoch = Instant::now();
        let d = Duration::new(3, 141_592_653);
        let t = Ticks::between(epoch, epoch + d);
        assert_eq!(t.nanos(), 3_141_592_653);
        assert_eq!(t.instant(epoch), Some(epoch + d));
        // A deadline computed on ticks is the one `Instant + Duration` gives.
        let rto = Duration::from_micros(200_250);
        assert_eq!(t.add(rto).instant(epoch), Some(epoch + d + rto));
        assert_eq!(Ticks::ZERO.instant(epoch), Some(epoch));
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        let epoch = Instant::now() + Duration::from_secs(1);
        assert_eq!(Ticks::between(epoch, epoch - Duration::from_nanos(1)), Ticks::ZERO);
        let mut clock = Clock::new(epoch);
        assert_eq!(clock.ticks(epoch - Duration::from_secs(1)), Ticks::ZERO);
        assert_eq!(clock.ticks(epoch), Ticks::ZERO);
    }

    /// The clock's own reading of an `Instant` (through [`Parts`]) gives exactly
    /// what `Instant`'s arithmetic gives: around the epoch, across borrows from
    /// the seconds, far out to where the count saturates, and before the epoch.
    #[test]
    fn the_clock_reads_instants_as_std_subtracts_them() {
        let epoch = Instant::now();
        let clock = Clock::new(epoch);
        // On Unix the reading is there (elsewhere the clock subtracts as `std` does).
        #[cfg(unix)]
        assert!(clock.epoch_parts.is_some(), "no reading of Instant on this Unix");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut offsets: Vec<Duration> = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(0, 999_999_999),
            Duration::new(1, 0),
            Duration::new(1, 999_999_999),
            Duration::new(u64::MAX / 1_000_000_000, 709_551_615),
            Duration::new(u64::MAX / 1_000_000_000, 709_551_616),
            Duration::new(u64::MAX / 1_000_000_000 + 1, 0),
            Duration::new(3 * (u64::MAX / 1_000_000_000), 0),
        ]
        .into();
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offsets.push(Duration::new(x % 100_000, (x >> 20) as u32 % 1_000_000_000));
        }
        for d in offsets {
            for at in [epoch.checked_add(d), epoch.checked_sub(d)].into_iter().flatten() {
                let expected = Ticks::between(epoch, at);
                if clock.epoch_parts.is_some() {
                    assert_eq!(clock.read(at), Some(expected), "{d:?}");
                }
                let mut c = clock.clone();
                assert_eq!(c.ticks(at), expected, "{d:?}");
            }
        }
    }

    #[test]
    fn the_clock_keeps_its_last_conversion() {
        let epoch = Instant::now();
        let mut clock = Clock::new(epoch);
        assert_eq!(clock.epoch(), epoch);
        let later = epoch + Duration::from_millis(5);
        assert_eq!(clock.ticks(later), Ticks::from_nanos(5_000_000));
        // The same `now` twice: the kept value, and the same one.
        assert_eq!(clock.last, later);
        assert_eq!(clock.ticks(later), Ticks::from_nanos(5_000_000));
        // A later `now` after an earlier one, and back again.
        let even_later = later + Duration::from_nanos(1);
        assert_eq!(clock.ticks(even_later), Ticks::from_nanos(5_000_001));
        assert_eq!(clock.last, even_later);
        assert_eq!(clock.ticks(later), Ticks::from_nanos(5_000_000));
        // Before the epoch after a later one: 0, not the kept value.
        assert_eq!(clock.ticks(epoch - Duration::from_millis(1)), Ticks::ZERO);
        assert_eq!(clock.ticks(even_later), Ticks::from_nanos(5_000_001));
        assert_eq!(clock.instant(Ticks::from_nanos(5_000_001)), Some(even_later));
    }
}
