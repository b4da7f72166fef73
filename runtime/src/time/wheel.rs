//! Hierarchical timing wheel backing the runtime's timers.
//!
//! # Time unit
//!
//! Time is measured in abstract *ticks* (`u64`); the runtime uses one tick per microsecond.
//! The wheel has a current time, [`Wheel::elapsed`], which starts at tick 0 and only moves
//! forward through [`Wheel::advance`].
//!
//! # Layout
//!
//! There are [`LEVELS`] (7) levels of [`SLOTS`] (64) slots each. A slot of level `L` covers
//! `64^L` consecutive ticks, so a whole level `L` covers `64^(L+1)` ticks and the seven levels
//! together cover `2^42` ticks (about 51 days at one tick per microsecond). A timer is filed
//! at the level given by the highest bit in which its deadline differs from `elapsed`:
//! level `L` holds deadlines that agree with `elapsed` on every bit above `6 * (L + 1)` but
//! lie in a later level-`L` slot. Timers whose deadline is outside the current `2^42`-tick
//! block go to an overflow set ordered by deadline and are moved into the wheel when the
//! block they belong to begins.
//!
//! Consequences of that rule, relied upon everywhere below:
//! * every occupied slot of a level lies after the slot `elapsed` is in, so the next
//!   occupied slot of a level is simply the lowest set bit of its occupancy bitmap
//!   (`trailing_zeros`; slots never wrap around behind `elapsed`). The one exception is
//!   level 0's current slot, which holds the timers due exactly at `elapsed` while
//!   [`Wheel::advance`] is firing them (or after a `fire` callback panicked);
//! * every timer at level `L` is due before every timer at any level above `L`, and every
//!   timer in the wheel is due before every timer in the overflow set. So the earliest timer
//!   is in the lowest occupied slot of the lowest non-empty level.
//!
//! Timers are stored in a [`Slab`]; each slot is an intrusive doubly-linked list threaded
//! through slab indices, and a `u64` bitmap per level records which slots are non-empty.
//!
//! # Complexity
//!
//! * [`Wheel::insert`], [`Wheel::remove`], [`Wheel::get_mut`]: O(1), except that inserting
//!   or removing a timer in the overflow set (deadline outside the current `2^42`-tick
//!   block) costs O(log n).
//! * [`Wheel::advance`]: jumps straight from one occupied slot to the next with the bitmaps,
//!   never tick by tick. Whenever it reaches a slot of a level above 0, it moves that slot's
//!   timers to lower levels relative to the new time ("cascading"); each timer descends at
//!   most once per level, so the amortized cost per timer is O(levels).
//! * [`Wheel::next_deadline`]: exact. O(1) when the cached minimum is valid; otherwise
//!   O(levels) plus a scan of the single slot holding the earliest timer.
//!
//! # Contract
//!
//! * A timer fires during the first `advance(now)` call with `now >= deadline`, never earlier.
//! * Within one `advance` call, timers fire in non-decreasing deadline order (ties in any
//!   order).
//! * A [`TimerKey`] names exactly one arming of a timer; once that timer fired or was removed,
//!   the key is stale and every operation on it is a harmless no-op, even if its slab slot has
//!   been reused by a newer timer.
//! * No operation panics, whatever deadline, key or time it is given.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use slab::Slab;

/// Base-2 logarithm of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Number of slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Mask extracting a slot number from a deadline shifted down to a level.
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Number of levels in the wheel.
const LEVELS: usize = 7;
/// Number of low-order tick bits the levels cover together; deadlines that differ from
/// `elapsed` above these bits live in the overflow set.
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// Sentinel slab index terminating the slot lists ("no entry").
const NIL: u32 = u32::MAX;
/// Value of [`Entry::level`] for a timer kept in the overflow set.
const OVERFLOW: u8 = LEVELS as u8;

/// Handle to an armed timer; generation-checked so a stale key never removes another timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    /// Slab index of the timer's entry.
    index: u32,
    /// Generation stamped on the entry when it was armed; a reused slab slot carries a
    /// different generation, which is how stale keys are told apart.
    generation: u32,
}

/// One armed timer, stored in the slab.
struct Entry<T> {
    /// The caller's payload.
    value: T,
    /// Tick at which the timer is due.
    deadline: u64,
    /// Previous entry in the same slot list, or [`NIL`].
    prev: u32,
    /// Next entry in the same slot list, or [`NIL`].
    next: u32,
    /// Generation this arming was stamped with (copied into its [`TimerKey`]).
    generation: u32,
    /// Level the timer is filed at, or [`OVERFLOW`]. Together with `deadline` this identifies
    /// the slot list (or overflow set element) holding the timer.
    level: u8,
}

/// The next point in time at which [`Wheel::advance`] has work to do.
enum Event {
    /// Slot `slot` of level `level` begins at tick `start`; its timers must be fired (level 0)
    /// or cascaded to lower levels (levels above 0) once the wheel reaches `start`.
    Slot {
        /// Level of the occupied slot.
        level: usize,
        /// Index of the occupied slot within its level.
        slot: usize,
        /// First tick covered by the slot.
        start: u64,
    },
    /// The `2^42`-tick block holding the earliest overflow timer begins at tick `start`; its
    /// overflow timers must be moved into the wheel once the wheel reaches `start`.
    Overflow {
        /// First tick of the block.
        start: u64,
    },
}

/// Hierarchical timing wheel: maps deadlines (ticks) to values of type `T` and hands the values
/// back, in deadline order, as time advances. See the module documentation.
///
/// Not `Sync` (the cached earliest deadline lives in a `Cell`); it is `Send` when `T` is.
pub(crate) struct Wheel<T> {
    /// Storage for every armed timer.
    entries: Slab<Entry<T>>,
    /// Head of each slot's intrusive list, indexed by `[level][slot]`; [`NIL`] when empty.
    heads: [[u32; SLOTS]; LEVELS],
    /// Per-level bitmaps: bit `s` of `occupied[l]` is set iff slot `s` of level `l` is non-empty.
    occupied: [u64; LEVELS],
    /// Timers too far ahead for the levels, as `(deadline, slab index)`.
    overflow: BTreeSet<(u64, u32)>,
    /// Current time of the wheel.
    elapsed: u64,
    /// Generation to stamp on the next armed timer.
    next_generation: u32,
    /// Exact earliest deadline when known (`None` = unknown, recompute). Only ever `Some`
    /// while the wheel is non-empty.
    min_cache: Cell<Option<u64>>,
}

impl<T> Wheel<T> {
    /// Empty wheel whose current time (`elapsed`) is tick 0.
    pub(crate) fn new() -> Self {
        Wheel {
            entries: Slab::new(),
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            overflow: BTreeSet::new(),
            elapsed: 0,
            next_generation: 0,
            min_cache: Cell::new(None),
        }
    }

    /// The tick the wheel has been advanced to.
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of armed timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Arms a timer that fires at `deadline` (a tick). If `deadline <= elapsed()` the timer is
    /// not stored and the value is handed back as `Err(value)` (caller fires it at once).
    ///
    /// `Err(value)` is also returned in the (practically unreachable) case that `u32::MAX`
    /// timers are already armed, since keys index the slab with 32 bits.
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> Result<TimerKey, T> {
        if deadline <= self.elapsed() {
            return Err(value);
        }
        let vacant = self.entries.vacant_entry();
        let index = match u32::try_from(vacant.key()) {
            Ok(index) if index != NIL => index,
            _ => return Err(value),
        };
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        vacant.insert(Entry {
            value,
            deadline,
            prev: NIL,
            next: NIL,
            generation,
            level: 0,
        });
        self.link(index);

        // Keep the cached minimum exact: a new timer can only lower it. If the wheel was
        // empty before, the new deadline *is* the minimum.
        match self.min_cache.get() {
            Some(min) => self.min_cache.set(Some(min.min(deadline))),
            None if self.entries.len() == 1 => self.min_cache.set(Some(deadline)),
            None => {}
        }
        Ok(TimerKey { index, generation })
    }

    /// Disarms; returns the value if the key still names an armed timer, `None` for a stale
    /// key (already fired or removed) -- never panics, never removes a different timer.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<T> {
        let index = self.live_index(key)?;
        self.unlink(index);
        let entry = self.entries.remove(index as usize);
        if self.min_cache.get() == Some(entry.deadline) {
            self.min_cache.set(None);
        }
        Some(entry.value)
    }

    /// Mutable access to an armed timer's value (`None` for a stale key).
    pub(crate) fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        let index = self.live_index(key)?;
        self.entries
            .get_mut(index as usize)
            .map(|entry| &mut entry.value)
    }

    /// The exact earliest deadline among armed timers (the real minimum, not a slot
    /// boundary), or `None` when empty.
    ///
    /// Served from a cache when possible; otherwise costs O(levels) plus a scan of the one
    /// slot holding the earliest timer.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        if let Some(min) = self.min_cache.get() {
            return Some(min);
        }
        let min = self.compute_next_deadline();
        self.min_cache.set(min);
        min
    }

    /// Advances the wheel to `now` and calls `fire(key, value)` for every timer with
    /// `deadline <= now`, in non-decreasing deadline order (ties in any order). If
    /// `now < elapsed`, does nothing. After return, `elapsed() == max(old elapsed, now)`.
    ///
    /// `fire` cannot reach the wheel (it is mutably borrowed here); timers it wants to arm
    /// must be inserted after `advance` returns. If `fire` panics, the wheel stays
    /// consistent: `elapsed` is left at the deadline being fired, and the timers not yet
    /// handed out remain armed (and fire, in order, on the next `advance`).
    pub(crate) fn advance(&mut self, now: u64, mut fire: impl FnMut(TimerKey, T)) {
        if now < self.elapsed() {
            return;
        }
        // Jump from event to event. Events never lie before `elapsed`, so the wheel only
        // moves forward, and each one moves timers to a lower level or fires them, so the
        // loop ends. Events are visited in time order, which yields the firing order. Only
        // level-0 slots fire; cascading never runs caller code, so the wheel is consistent
        // whenever `fire` is called.
        while let Some(event) = self.next_event() {
            match event {
                Event::Slot {
                    level: 0,
                    slot,
                    start,
                } if start <= now => {
                    self.elapsed = start;
                    self.fire_slot(slot, &mut fire);
                }
                Event::Slot { level, slot, start } if start <= now => {
                    self.elapsed = start;
                    self.cascade_slot(level, slot);
                }
                Event::Overflow { start } if start <= now => {
                    self.elapsed = start;
                    self.cascade_overflow();
                }
                _ => break,
            }
        }
        // The next event (if any) lies after `now`, so every remaining timer keeps its place:
        // `now` is still in the same block and before the same slots as `elapsed` was.
        self.elapsed = now;
    }

    /// Slab index named by `key` if it still denotes an armed timer.
    fn live_index(&self, key: TimerKey) -> Option<u32> {
        match self.entries.get(key.index as usize) {
            Some(entry) if entry.generation == key.generation => Some(key.index),
            _ => None,
        }
    }

    /// Earliest pending event, or `None` when no timer is armed.
    fn next_event(&self) -> Option<Event> {
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                let start = slot_start(self.elapsed, level, slot);
                // `start == elapsed` only for level 0's current slot (see module docs).
                debug_assert!(start >= self.elapsed, "wheel slot behind current time");
                return Some(Event::Slot { level, slot, start });
            }
        }
        self.overflow.first().map(|&(deadline, _)| Event::Overflow {
            start: block_start(deadline),
        })
    }

    /// Recomputes the earliest deadline without the cache.
    fn compute_next_deadline(&self) -> Option<u64> {
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits == 0 {
                continue;
            }
            let slot = bits.trailing_zeros() as usize;
            let mut index = self.heads[level][slot];
            if level == 0 {
                // A level-0 slot spans one tick: every timer in it has the same deadline.
                return self.entries.get(index as usize).map(|entry| entry.deadline);
            }
            // The earliest timer lies in this slot, but the slot spans many ticks.
            let mut min = None;
            while let Some(entry) = self.entries.get(index as usize) {
                min = Some(min.map_or(entry.deadline, |m: u64| m.min(entry.deadline)));
                index = entry.next;
            }
            return min;
        }
        self.overflow.first().map(|&(deadline, _)| deadline)
    }

    /// Fires every timer in slot `slot` of level 0, all of which are due exactly at
    /// `elapsed`. Each timer is detached and removed before its callback runs, so a panicking
    /// callback leaves the rest of the slot armed and consistent.
    fn fire_slot(&mut self, slot: usize, fire: &mut impl FnMut(TimerKey, T)) {
        loop {
            let index = self.heads[0][slot];
            if index == NIL {
                break;
            }
            self.unlink(index);
            let Some(entry) = self.entries.try_remove(index as usize) else {
                break;
            };
            self.min_cache.set(None);
            let key = TimerKey {
                index,
                generation: entry.generation,
            };
            fire(key, entry.value);
        }
    }

    /// Re-files every timer of slot `slot` of `level` (above 0) relative to `elapsed`, which
    /// must equal the slot's start: each lands at a strictly lower level (timers due exactly
    /// at `elapsed` land in level 0's current slot and are fired next).
    fn cascade_slot(&mut self, level: usize, slot: usize) {
        loop {
            let index = self.heads[level][slot];
            if index == NIL {
                break;
            }
            self.unlink(index);
            self.link(index);
        }
    }

    /// Moves every overflow timer of the `2^42`-tick block `elapsed` is in into the wheel.
    /// `elapsed` must equal the block's start.
    fn cascade_overflow(&mut self) {
        let block = self.elapsed >> WHEEL_BITS;
        while let Some(&(deadline, index)) = self.overflow.first() {
            if deadline >> WHEEL_BITS != block {
                break;
            }
            self.overflow.pop_first();
            self.link(index);
        }
    }

    /// Files the (unlinked) entry `index`, whose deadline is not before `elapsed`, at the
    /// level and slot matching its deadline relative to `elapsed`, or in the overflow set.
    /// A deadline equal to `elapsed` (only while cascading) lands in level 0's current slot.
    fn link(&mut self, index: u32) {
        let elapsed = self.elapsed;
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        let deadline = entry.deadline;
        let level = level_for(elapsed, deadline);
        entry.prev = NIL;
        if level >= LEVELS {
            entry.level = OVERFLOW;
            entry.next = NIL;
            self.overflow.insert((deadline, index));
            return;
        }
        let slot = slot_of(deadline, level);
        let head = self.heads[level][slot];
        entry.level = level as u8;
        entry.next = head;
        if let Some(old_head) = self.entries.get_mut(head as usize) {
            old_head.prev = index;
        }
        self.heads[level][slot] = index;
        self.occupied[level] |= 1 << slot;
    }

    /// Detaches the entry `index` from the slot list or overflow set holding it. The entry
    /// itself stays in the slab.
    fn unlink(&mut self, index: u32) {
        let Some(entry) = self.entries.get(index as usize) else {
            return;
        };
        let (level, deadline, prev, next) = (
            usize::from(entry.level),
            entry.deadline,
            entry.prev,
            entry.next,
        );
        if level >= LEVELS {
            self.overflow.remove(&(deadline, index));
            return;
        }
        let slot = slot_of(deadline, level);
        match self.entries.get_mut(prev as usize) {
            Some(prev_entry) => prev_entry.next = next,
            None => self.heads[level][slot] = next,
        }
        if let Some(next_entry) = self.entries.get_mut(next as usize) {
            next_entry.prev = prev;
        }
        if self.heads[level][slot] == NIL {
            self.occupied[level] &= !(1 << slot);
        }
        if let Some(entry) = self.entries.get_mut(index as usize) {
            entry.prev = NIL;
            entry.next = NIL;
        }
    }
}

impl<T> fmt::Debug for Wheel<T> {
    /// Summarizes the wheel (current time, number of timers, earliest deadline) without
    /// requiring `T: Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("elapsed", &self.elapsed)
            .field("len", &self.len())
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

/// Level at which a timer due at `deadline` is filed when the wheel is at `elapsed`
/// (`deadline >= elapsed`): the level of the highest bit in which the two differ (level 0
/// if they are equal). A result of [`LEVELS`] or more means the overflow set.
fn level_for(elapsed: u64, deadline: u64) -> usize {
    // OR-ing the slot mask makes the result at least level 0 even when the two are equal.
    let differing = (elapsed ^ deadline) | SLOT_MASK;
    let highest_bit = 63 - differing.leading_zeros();
    (highest_bit / SLOT_BITS) as usize
}

/// Slot of `level` (which must be below [`LEVELS`]) that a deadline falls into.
fn slot_of(deadline: u64, level: usize) -> usize {
    ((deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize
}

/// First tick of slot `slot` of `level`, within the level-`level` rotation `elapsed` is in.
/// Built with bit operations only, so it cannot overflow.
fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let shift = level as u32 * SLOT_BITS;
    let rotation_mask = (1u64 << (shift + SLOT_BITS)) - 1;
    (elapsed & !rotation_mask) | ((slot as u64) << shift)
}

/// First tick of the `2^42`-tick block containing `tick`.
fn block_start(tick: u64) -> u64 {
    tick & !((1u64 << WHEEL_BITS) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proptest::sample::Index;

    /// Deadlines on both sides of every level boundary, plus the extremes.
    const FAR: [u64; 14] = [
        1,
        63,
        64,
        4095,
        4096,
        (1 << 18) + 3,
        1 << 24,
        (1 << 30) - 1,
        (1 << 36) + 5,
        1 << 42,
        (1 << 42) + 7,
        3 << 42,
        u64::MAX - 1,
        u64::MAX,
    ];

    /// Advances `wheel` to `now`, returning the fired `(key, value)` pairs in firing order.
    fn advance<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<(TimerKey, T)> {
        let mut fired = Vec::new();
        wheel.advance(now, |key, value| fired.push((key, value)));
        fired
    }

    /// Values of `fired`, in firing order.
    fn values<T: Copy>(fired: &[(TimerKey, T)]) -> Vec<T> {
        fired.iter().map(|&(_, value)| value).collect()
    }

    #[test]
    fn fires_at_exact_tick() {
        let mut wheel = Wheel::new();
        let key = wheel.insert(5, "a").unwrap();
        assert_eq!(wheel.len(), 1);
        assert!(advance(&mut wheel, 4).is_empty());
        assert_eq!(wheel.elapsed(), 4);
        assert_eq!(advance(&mut wheel, 5), vec![(key, "a")]);
        assert_eq!(wheel.elapsed(), 5);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn insert_in_past_returns_err() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.insert(0, 1), Err(1));
        assert!(advance(&mut wheel, 10).is_empty());
        assert_eq!(wheel.insert(9, 2), Err(2));
        assert_eq!(wheel.insert(10, 3), Err(3));
        assert!(wheel.insert(11, 4).is_ok());
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn advance_backwards_is_noop() {
        let mut wheel = Wheel::new();
        wheel.insert(100, ()).unwrap();
        advance(&mut wheel, 50);
        assert!(advance(&mut wheel, 10).is_empty());
        assert_eq!(wheel.elapsed(), 50);
        assert_eq!(advance(&mut wheel, 100).len(), 1);
    }

    #[test]
    fn remove_before_fire() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(70, 'a').unwrap();
        let b = wheel.insert(70, 'b').unwrap();
        let c = wheel.insert(70, 'c').unwrap();
        assert_eq!(wheel.remove(b), Some('b'));
        assert_eq!(wheel.remove(b), None);
        assert_eq!(wheel.len(), 2);
        let fired = advance(&mut wheel, 1000);
        let mut got = values(&fired);
        got.sort_unstable();
        assert_eq!(got, vec!['a', 'c']);
        assert_eq!(wheel.remove(a), None);
        assert_eq!(wheel.remove(c), None);
    }

    #[test]
    fn stale_key_does_not_touch_reused_slot() {
        let mut wheel = Wheel::new();
        let old = wheel.insert(3, 1).unwrap();
        assert_eq!(advance(&mut wheel, 3), vec![(old, 1)]);
        let new = wheel.insert(9, 2).unwrap();
        assert_eq!(new.index, old.index, "slab slot should be reused");
        assert_ne!(new, old);
        assert_eq!(wheel.remove(old), None);
        assert_eq!(wheel.get_mut(old), None);
        assert_eq!(wheel.len(), 1);
        // Stale after removal, too.
        assert_eq!(wheel.remove(new), Some(2));
        let newer = wheel.insert(9, 3).unwrap();
        assert_eq!(wheel.remove(new), None);
        assert_eq!(advance(&mut wheel, 9), vec![(newer, 3)]);
        // Keys that never existed.
        let bogus = TimerKey {
            index: u32::MAX,
            generation: 0,
        };
        assert_eq!(wheel.remove(bogus), None);
        assert_eq!(wheel.get_mut(bogus), None);
    }

    #[test]
    fn removing_from_shared_slot_keeps_list_intact() {
        // Every subset of six timers sharing one slot list (level 1, slot 1), removed in
        // insertion order and in reverse (so both neighbours of a removed node get relinked).
        for (pattern, reverse) in (0u32..64).flat_map(|p| [(p, false), (p, true)]) {
            let mut wheel = Wheel::new();
            let keys: Vec<TimerKey> = (0..6)
                .map(|i| wheel.insert(64 + i, 64 + i).unwrap())
                .collect();
            let mut order: Vec<usize> = (0..6).collect();
            if reverse {
                order.reverse();
            }
            for &i in &order {
                if pattern & (1 << i) != 0 {
                    assert_eq!(wheel.remove(keys[i]), Some(64 + i as u64));
                }
            }
            let kept: Vec<u64> = (0..6)
                .filter(|&i| pattern & (1 << i) == 0)
                .map(|i| 64 + i as u64)
                .collect();
            assert_eq!(wheel.len(), kept.len());
            assert_eq!(wheel.next_deadline(), kept.first().copied());
            assert_eq!(values(&advance(&mut wheel, 1000)), kept);
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn get_mut_updates_value() {
        let mut wheel = Wheel::new();
        let key = wheel.insert(1 << 20, 1).unwrap();
        *wheel.get_mut(key).unwrap() += 41;
        assert_eq!(advance(&mut wheel, 1 << 20), vec![(key, 42)]);
    }

    #[test]
    fn far_deadlines_fire_on_one_big_jump() {
        for &deadline in &FAR {
            let mut wheel = Wheel::new();
            let key = wheel.insert(deadline, deadline).unwrap();
            assert_eq!(wheel.next_deadline(), Some(deadline));
            assert!(advance(&mut wheel, deadline - 1).is_empty(), "{deadline}");
            assert_eq!(wheel.next_deadline(), Some(deadline));
            assert_eq!(advance(&mut wheel, deadline), vec![(key, deadline)]);
        }
        // All at once, in one jump to the end of time: deadline order.
        let mut wheel = Wheel::new();
        for &deadline in FAR.iter().rev() {
            wheel.insert(deadline, deadline).unwrap();
        }
        assert_eq!(values(&advance(&mut wheel, u64::MAX)), FAR.to_vec());
        assert_eq!(wheel.elapsed(), u64::MAX);
        assert_eq!(wheel.insert(u64::MAX, 0), Err(0));
    }

    #[test]
    fn far_deadlines_fire_on_many_small_jumps() {
        for start in [0, 1, 62, 4095, (1 << 42) - 1, u64::MAX - 70] {
            let mut wheel = Wheel::new();
            advance(&mut wheel, start);
            let deadlines: Vec<u64> = FAR
                .iter()
                .map(|&offset| start.saturating_add(offset))
                .filter(|&deadline| deadline > start)
                .collect();
            for &deadline in &deadlines {
                wheel.insert(deadline, deadline).unwrap();
            }
            // Stops at d - 2^k for shrinking k, then d - 1 and d, for every deadline.
            let mut stops: Vec<u64> = deadlines
                .iter()
                .flat_map(|&d| (0..64).map(move |k| d.saturating_sub(1 << k)).chain([d]))
                .filter(|&stop| stop > start)
                .collect();
            stops.sort_unstable();
            stops.dedup();
            let mut fired = Vec::new();
            for &stop in &stops {
                for (_, deadline) in advance(&mut wheel, stop) {
                    assert_eq!(deadline, stop, "fired early or late");
                    fired.push(deadline);
                }
                assert_eq!(wheel.elapsed(), stop);
                let expected_next = deadlines.iter().copied().find(|&d| d > stop);
                assert_eq!(wheel.next_deadline(), expected_next);
            }
            assert_eq!(fired, deadlines);
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn next_deadline_is_exact() {
        let mut wheel = Wheel::new();
        assert_eq!(wheel.next_deadline(), None);
        let a = wheel.insert(5000, ()).unwrap();
        assert_eq!(wheel.next_deadline(), Some(5000));
        // 5000, 4100 and 4097 all share slot 1 of level 2: the minimum needs a scan.
        let b = wheel.insert(4100, ()).unwrap();
        let c = wheel.insert(4097, ()).unwrap();
        assert_eq!(wheel.next_deadline(), Some(4097));
        assert_eq!(wheel.remove(c), Some(()));
        assert_eq!(wheel.next_deadline(), Some(4100));
        advance(&mut wheel, 4099);
        assert_eq!(wheel.next_deadline(), Some(4100));
        assert_eq!(wheel.remove(b), Some(()));
        assert_eq!(wheel.next_deadline(), Some(5000));
        let d = wheel.insert(u64::MAX, ()).unwrap();
        assert_eq!(wheel.remove(a), Some(()));
        assert_eq!(wheel.next_deadline(), Some(u64::MAX));
        wheel.insert(1 << 50, ()).unwrap();
        assert_eq!(wheel.next_deadline(), Some(1 << 50));
        assert_eq!(advance(&mut wheel, 1 << 50).len(), 1);
        assert_eq!(wheel.next_deadline(), Some(u64::MAX));
        assert_eq!(wheel.remove(d), Some(()));
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn panicking_callback_leaves_wheel_consistent() {
        let mut wheel = Wheel::new();
        for deadline in [100, 100, 100, 5000, 7000] {
            wheel.insert(deadline, deadline).unwrap();
        }
        let mut fired = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wheel.advance(6000, |_, value| {
                fired.push(value);
                if fired.len() == 2 {
                    panic!("callback failure (expected by this test)");
                }
            });
        }));
        assert!(result.is_err());
        assert_eq!(fired, vec![100, 100]);
        // The third timer due at 100 is still armed and is the earliest.
        assert_eq!(wheel.elapsed(), 100);
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.next_deadline(), Some(100));
        assert_eq!(values(&advance(&mut wheel, 6000)), vec![100, 5000]);
        assert_eq!(wheel.next_deadline(), Some(7000));
        assert_eq!(values(&advance(&mut wheel, 7000)), vec![7000]);
    }

    #[test]
    fn fires_in_deadline_order_within_one_advance() {
        let mut wheel = Wheel::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut expected = Vec::new();
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let deadline = 1 + (x >> (x % 50));
            wheel.insert(deadline, deadline).unwrap();
            expected.push(deadline);
        }
        expected.sort_unstable();
        let fired = values(&advance(&mut wheel, u64::MAX));
        assert_eq!(fired, expected);
    }

    /// How a test operation picks a deadline.
    #[derive(Clone, Debug)]
    enum When {
        /// `elapsed + offset`, saturating (offset 0 means "now": rejected).
        After(u64),
        /// An absolute tick.
        At(u64),
        /// Near a level (or block) boundary ahead: see [`boundary`].
        Boundary(u32, u64, i8),
    }

    /// The tick `delta` away from the `steps`-th multiple of `2^shift` after `now`,
    /// clamped to `u64::MAX`.
    fn boundary(now: u64, shift: u32, steps: u64, delta: i8) -> u64 {
        let base = ((u128::from(now) >> shift) + u128::from(steps)) << shift;
        let tick = base.saturating_add_signed(i128::from(delta));
        u64::try_from(tick).unwrap_or(u64::MAX)
    }

    /// Parameters for [`boundary`]: mostly exact level boundaries (multiples of 6 bits).
    fn boundary_params() -> impl Strategy<Value = (u32, u64, i8)> {
        let shift = prop_oneof![
            3 => (0u32..=7).prop_map(|level| level * SLOT_BITS),
            2 => Just(WHEEL_BITS),
            1 => 0u32..64,
        ];
        (shift, 1u64..=2, -1i8..=1)
    }

    /// One step of the model-based test.
    #[derive(Clone, Debug)]
    enum Op {
        /// Arm a timer.
        Insert(When),
        /// Remove one of the keys handed out so far (live or stale).
        Remove(Index),
        /// Remove the key handed out this many insertions ago (timers armed close together
        /// often share a slot list, so this exercises unlinking from the middle of lists).
        RemoveRecent(usize),
        /// `get_mut` on one of the keys handed out so far (live or stale).
        GetMut(Index),
        /// Advance by this many ticks (saturating).
        Advance(u64),
        /// Advance to an absolute tick (possibly in the past).
        AdvanceTo(u64),
        /// Advance to near a level (or block) boundary ahead: see [`boundary`].
        AdvanceBoundary(u32, u64, i8),
        /// Compare `next_deadline()` with the model. Not done after every step, so that
        /// states where the cached minimum is unknown are exercised too.
        NextDeadline,
    }

    /// Tick distances spanning tiny to huge.
    fn distance() -> impl Strategy<Value = u64> {
        prop_oneof![
            // A few fixed distances, so that timers often share slots (and whole lists).
            3 => prop::sample::select(vec![1u64, 2, 64, 100, 4096, 5000, 1 << 20, 1 << 43]),
            4 => 0u64..70,
            3 => 0u64..5000,
            2 => 0u64..(1 << 26),
            1 => 0u64..(1 << 45),
            1 => any::<u64>(),
        ]
    }

    /// Random operations, weighted towards inserts and short advances.
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => distance().prop_map(|d| Op::Insert(When::After(d))),
            1 => (u64::MAX - 200..=u64::MAX).prop_map(|t| Op::Insert(When::At(t))),
            2 => boundary_params().prop_map(|(s, n, d)| Op::Insert(When::Boundary(s, n, d))),
            2 => any::<Index>().prop_map(Op::Remove),
            2 => (0usize..6).prop_map(Op::RemoveRecent),
            1 => any::<Index>().prop_map(Op::GetMut),
            4 => distance().prop_map(Op::Advance),
            1 => (u64::MAX - 200..=u64::MAX).prop_map(Op::AdvanceTo),
            2 => boundary_params().prop_map(|(s, n, d)| Op::AdvanceBoundary(s, n, d)),
            3 => Just(Op::NextDeadline),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn matches_model(ops in prop::collection::vec(op(), 1..160)) {
            let mut wheel: Wheel<u64> = Wheel::new();
            // Model: timer id -> (deadline, key) for armed timers.
            let mut live: BTreeMap<u64, (u64, TimerKey)> = BTreeMap::new();
            // Every key ever handed out, with its timer id.
            let mut issued: Vec<(TimerKey, u64)> = Vec::new();
            let mut now = 0u64;
            let mut next_id = 0u64;

            for op in ops {
                match op {
                    Op::Insert(when) => {
                        let deadline = match when {
                            When::After(offset) => now.saturating_add(offset),
                            When::At(tick) => tick,
                            When::Boundary(shift, steps, delta) => boundary(now, shift, steps, delta),
                        };
                        let id = next_id;
                        next_id += 1;
                        match wheel.insert(deadline, id) {
                            Ok(key) => {
                                prop_assert!(deadline > now);
                                prop_assert!(issued.iter().all(|&(k, _)| k != key));
                                live.insert(id, (deadline, key));
                                issued.push((key, id));
                            }
                            Err(value) => {
                                prop_assert!(deadline <= now);
                                prop_assert_eq!(value, id);
                            }
                        }
                    }
                    Op::Remove(_) | Op::RemoveRecent(_) if !issued.is_empty() => {
                        let position = match op {
                            Op::Remove(pick) => pick.index(issued.len()),
                            Op::RemoveRecent(back) => issued.len() - 1 - back.min(issued.len() - 1),
                            _ => unreachable!(),
                        };
                        let (key, id) = issued[position];
                        let expected = live.remove(&id).map(|_| id);
                        prop_assert_eq!(wheel.remove(key), expected);
                    }
                    Op::GetMut(pick) if !issued.is_empty() => {
                        let (key, id) = issued[pick.index(issued.len())];
                        let expected = live.get(&id).map(|_| id);
                        prop_assert_eq!(wheel.get_mut(key).copied(), expected);
                    }
                    Op::Remove(_) | Op::RemoveRecent(_) | Op::GetMut(_) => {}
                    Op::NextDeadline => {
                        let expected = live.values().map(|&(deadline, _)| deadline).min();
                        prop_assert_eq!(wheel.next_deadline(), expected);
                    }
                    Op::Advance(_) | Op::AdvanceTo(_) | Op::AdvanceBoundary(..) => {
                        let target = match op {
                            Op::Advance(by) => now.saturating_add(by),
                            Op::AdvanceTo(tick) => tick,
                            Op::AdvanceBoundary(shift, steps, delta) => {
                                boundary(now, shift, steps, delta)
                            }
                            _ => unreachable!(),
                        };
                        let fired = advance(&mut wheel, target);
                        now = now.max(target);
                        let mut previous = 0;
                        for &(key, id) in &fired {
                            let model = live.remove(&id);
                            prop_assert!(model.is_some(), "fired a timer not armed");
                            let (deadline, model_key) = model.unwrap();
                            prop_assert_eq!(key, model_key);
                            prop_assert!(deadline <= now, "fired early");
                            prop_assert!(deadline >= previous, "fired out of order");
                            previous = deadline;
                        }
                        prop_assert!(
                            live.values().all(|&(deadline, _)| deadline > now),
                            "a due timer did not fire"
                        );
                    }
                }
                prop_assert_eq!(wheel.elapsed(), now);
                prop_assert_eq!(wheel.len(), live.len());
                prop_assert_eq!(wheel.is_empty(), live.is_empty());
            }
            let expected_next = live.values().map(|&(deadline, _)| deadline).min();
            prop_assert_eq!(wheel.next_deadline(), expected_next);
        }
    }
}
