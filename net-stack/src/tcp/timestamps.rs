//! TCP timestamps (RFC 7323 §3-§5): the option's clock, TS.Recent, round-trip
//! samples from echoed timestamps, and PAWS.
//!
//! * The clock ticks once a millisecond from when the connection was created, plus
//!   a per-connection offset derived from the ISS (so that the values say nothing
//!   about uptime, RFC 7323 §7.1).
//! * TS.Recent is the peer's TSval that our next segment echoes. It is taken from a
//!   segment that passed PAWS and the acceptability test and starts at or before
//!   the ACK we last sent (Last.ACK.sent, §4.3), so that with delayed ACKs the echo
//!   is of the earliest segment acknowledged and a hole fill echoes the segment
//!   that filled it.
//! * PAWS (§5.3): a segment (other than an RST) whose TSval is older than
//!   TS.Recent is a duplicate from an earlier wrap of the sequence space: it is
//!   dropped and answered with an ACK. After 24 days without an update TS.Recent
//!   is no longer trusted (§5.5) and the segment is accepted.

use std::time::Duration;

use crate::time::Ticks;
use crate::wire::SeqNumber;

/// The bytes the option takes in every segment once negotiated (NOP, NOP, kind,
/// length, TSval, TSecr): data segments carry that much less payload (RFC 6691).
pub(super) const TS_OPTION_LEN: usize = 12;

/// How long TS.Recent stays valid without an update (RFC 7323 §5.5).
const RECENT_LIFETIME: Duration = Duration::from_secs(24 * 24 * 60 * 60);
/// [`RECENT_LIFETIME`] in nanoseconds.
const RECENT_LIFETIME_NS: u64 = RECENT_LIFETIME.as_nanos() as u64;

/// Nanoseconds per tick of the option's clock (1 ms; RFC 7323 §5.4 asks for
/// 1 ms to 1 s).
const TICK_NS: u64 = 1_000_000;

/// The timestamps state of a connection.
#[derive(Debug, Clone)]
pub(super) struct Timestamps {
    /// Whether our SYN (or SYN-ACK) carries the option.
    pub(super) offer: bool,
    /// Both SYNs carried it: every segment carries it from now on.
    pub(super) enabled: bool,
    /// When the clock started: the connection's creation.
    origin: Ticks,
    /// Added to the milliseconds since `origin`.
    offset: u32,
    /// TS.Recent: the TSval our segments echo.
    pub(super) recent: u32,
    /// When TS.Recent was last set.
    recent_at: Ticks,
    /// Last.ACK.sent: the ACK field of our latest segment.
    pub(super) last_ack_sent: SeqNumber,
    /// The clock when we last retransmitted, while retransmitted data is
    /// outstanding: an echo older than that is not a round trip (see
    /// [`rtt`](Self::rtt)).
    pub(super) last_rxt: Option<u32>,
}

impl Timestamps {
    /// The state of a new connection with ISS `iss`, created at `now`.
    pub(super) fn new(offer: bool, iss: SeqNumber, now: Ticks) -> Timestamps {
        // The ISS is already a keyed hash (RFC 6528); mixing it once more keeps
        // the offset from being the ISS itself.
        let offset = iss.0.wrapping_mul(0x9e37_79b9).rotate_left(16);
        Timestamps {
            offer,
            enabled: false,
            origin: now,
            offset,
            recent: 0,
            recent_at: now,
            last_ack_sent: SeqNumber(0),
            last_rxt: None,
        }
    }

    /// The clock value at `now` (TSval of a segment sent then).
    /// Before the origin it reads as at the origin.
    pub(super) fn clock(&self, now: Ticks) -> u32 {
        let ms = now.since(self.origin) / TICK_NS;
        // The clock wraps: only differences of values are meaningful.
        self.offset.wrapping_add(ms as u32)
    }

    /// Learns the peer's SYN: the option is used only if both SYNs carry it.
    pub(super) fn on_peer_syn(&mut self, configured: bool, tsval: Option<u32>, now: Ticks) {
        self.enabled = configured && tsval.is_some();
        if let Some(tsval) = tsval.filter(|_| self.enabled) {
            self.recent = tsval;
            self.recent_at = now;
        }
    }

    /// PAWS (RFC 7323 §5.3 R1): whether a segment with `tsval` is an old duplicate.
    /// A TS.Recent idle for more than 24 days is replaced instead (§5.5).
    pub(super) fn paws_rejects(&mut self, tsval: u32, now: Ticks) -> bool {
        if !ts_lt(tsval, self.recent) {
            return false;
        }
        if now.since(self.recent_at) > RECENT_LIFETIME_NS {
            self.recent = tsval;
            self.recent_at = now;
            return false;
        }
        true
    }

    /// Whether `tsval` is not older than TS.Recent: PAWS lets such a segment
    /// through without touching anything.
    pub(super) fn in_order(&self, tsval: u32) -> bool {
        !ts_lt(tsval, self.recent)
    }

    /// RFC 7323 §4.3 (2): an acceptable segment at `seq` with `tsval` updates
    /// TS.Recent if it starts at or before Last.ACK.sent and is not older.
    pub(super) fn update_recent(&mut self, seq: SeqNumber, tsval: u32, now: Ticks) {
        if seq.le(self.last_ack_sent) && !ts_lt(tsval, self.recent) {
            self.recent = tsval;
            self.recent_at = now;
        }
    }

    /// A round-trip sample from an echoed timestamp (RFC 7323 §4.1), in
    /// nanoseconds (whole milliseconds: the clock's ticks): `None` when the echo is
    /// from the future or less than a tick ago (the clock cannot tell such a round
    /// trip from zero), and when it is older than
    /// our last retransmission. The peer answers a retransmission of data it
    /// already had with an ACK echoing the original (RFC 7323 §4.3 updates
    /// TS.Recent only from acceptable segments): that echo measures the original's
    /// lost ACK plus the whole retransmission timeout, and feeding it to the
    /// estimator would inflate the RTO further with every loss (Karn's reasoning,
    /// applied to echoes).
    pub(super) fn rtt(&self, now: Ticks, tsecr: u32) -> Option<u64> {
        if self.last_rxt.is_some_and(|rxt| ts_lt(tsecr, rxt)) {
            return None;
        }
        let elapsed = self.clock(now).wrapping_sub(tsecr) as i32;
        (elapsed > 0).then(|| elapsed as u64 * TICK_NS)
    }
}

/// `a < b` in timestamp arithmetic (modulo 2^32, RFC 7323 §5.2).
fn ts_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `d` after the tests' epoch.
    fn at(d: Duration) -> Ticks {
        Ticks::ZERO.add(d)
    }

    /// The clock is the milliseconds since the connection began, plus the
    /// offset; before that beginning it reads as at the beginning.
    #[test]
    fn the_clock_counts_milliseconds_from_its_origin() {
        let origin = at(Duration::from_millis(7));
        let ts = Timestamps::new(true, SeqNumber(77), origin);
        let offset = ts.offset;
        let mut state = 12345u64;
        for _ in 0..5000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let ns = (state >> 33) % 5_000_000;
            let expected = offset.wrapping_add((ns / 1_000_000) as u32);
            assert_eq!(ts.clock(origin.add_nanos(ns)), expected, "at {ns} ns");
        }
        assert_eq!(ts.clock(at(Duration::from_millis(3))), offset);
        // The wrap of the 32-bit clock, 49.7 days on.
        let wrap = origin.add(Duration::from_millis(1 << 32));
        assert_eq!(ts.clock(wrap.add(Duration::from_millis(5))), offset.wrapping_add(5));
    }

    #[test]
    fn clock_recent_and_paws() {
        let t0 = Ticks::ZERO;
        let mut ts = Timestamps::new(true, SeqNumber(1000), t0);
        let base = ts.clock(t0);
        assert_eq!(ts.clock(at(Duration::from_micros(2500))), base.wrapping_add(2));
        ts.on_peer_syn(true, Some(u32::MAX - 1), t0);
        assert!(ts.enabled);
        // Comparisons wrap.
        assert!(!ts.paws_rejects(3, t0));
        assert!(ts.paws_rejects(u32::MAX - 2, t0));
        ts.last_ack_sent = SeqNumber(10);
        ts.update_recent(SeqNumber(11), 5, t0);
        assert_eq!(ts.recent, u32::MAX - 1);
        ts.update_recent(SeqNumber(10), 5, t0);
        assert_eq!(ts.recent, 5);
        // Up to 24 days idle an old TSval is still dropped; after, it is taken.
        assert!(ts.paws_rejects(1, at(RECENT_LIFETIME)));
        let later = at(RECENT_LIFETIME + Duration::from_secs(1));
        assert!(!ts.paws_rejects(1, later));
        assert_eq!(ts.recent, 1);
        // RTT: whole ticks only, none from the future.
        let now = at(Duration::from_millis(30));
        let ms = |n: u64| n * 1_000_000;
        assert_eq!(ts.rtt(now, base.wrapping_add(10)), Some(ms(20)));
        assert_eq!(ts.rtt(now, base.wrapping_add(30)), None);
        assert_eq!(ts.rtt(now, base.wrapping_add(31)), None);
        // Nothing older than the last retransmission.
        ts.last_rxt = Some(base.wrapping_add(15));
        assert_eq!(ts.rtt(now, base.wrapping_add(10)), None);
        assert_eq!(ts.rtt(now, base.wrapping_add(15)), Some(ms(15)));
        // Not negotiated without the peer's option.
        ts.on_peer_syn(true, None, t0);
        assert!(!ts.enabled);
    }
}
