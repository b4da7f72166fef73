//! The retransmission timeout, per RFC 6298.
//!
//! * §2.1: before any measurement the RTO is the configured initial value;
//! * §2.2: the first sample R sets SRTT = R and RTTVAR = R/2;
//! * §2.3: later samples update RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| (with the old
//!   SRTT) and then SRTT = 7/8 SRTT + 1/8 R;
//! * RTO = SRTT + max(G, 4 * RTTVAR), clamped to [`rto_min`, `rto_max`] (§2.4, §2.5).
//!   The caller's clock has no tick, so G is one microsecond;
//! * §5.5: every timeout doubles the RTO (up to `rto_max`), and the backed-off value
//!   stays until a new sample arrives (§5.7; with Karn's algorithm that is the first
//!   ACK of a segment that was not retransmitted: the connection takes care not to
//!   feed samples from retransmissions).

use std::time::Duration;

use crate::time::duration_nanos as nanos;

/// The smallest term added to SRTT ("G" in RFC 6298), in nanoseconds.
const GRANULARITY_NS: u64 = 1_000;

/// Backoff stops doubling after this many timeouts (the cap is reached long before).
const MAX_BACKOFF: u32 = 31;

/// SRTT, RTTVAR and the RTO with its backoff.
///
/// The arithmetic is on integer nanoseconds (exactly what `Duration`'s own
/// operators would give, truncating at the nanosecond, but without splitting
/// seconds and nanoseconds on every step). What every ACK of new data reads comes
/// as nanoseconds ([`rto_nanos`](Self::rto_nanos),
/// [`srtt_nanos`](Self::srtt_nanos)); the `Duration`s are made when asked for.
#[derive(Debug, Clone)]
pub(super) struct RttEstimator {
    srtt_ns: Option<u64>,
    rttvar_ns: u64,
    /// The RTO from the estimates (or the initial one), clamped, before backoff.
    base_ns: u64,
    /// Timeouts since the last sample.
    backoff: u32,
    min_ns: u64,
    max_ns: u64,
    /// The backed-off RTO: what deadlines are computed with.
    rto_ns: u64,
}

impl RttEstimator {
    /// An estimator without samples. `min` is raised to `max` if above it.
    pub(super) fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        let (min_ns, max_ns) = (nanos(min.min(max)), nanos(max));
        let mut estimator = RttEstimator {
            srtt_ns: None,
            rttvar_ns: 0,
            base_ns: nanos(initial).clamp(min_ns, max_ns),
            backoff: 0,
            min_ns,
            max_ns,
            rto_ns: 0,
        };
        estimator.refresh();
        estimator
    }

    /// Recomputes the backed-off RTO after a change.
    fn refresh(&mut self) {
        // Without backoff (after every sample) the RTO is the base: `base_ns` is
        // already within the bounds.
        self.rto_ns = if self.backoff == 0 {
            self.base_ns
        } else {
            self.base_ns
                .checked_mul(1 << self.backoff)
                .map_or(self.max_ns, |rto| rto.min(self.max_ns))
        };
    }

    /// The smoothed round-trip time, once there is a sample.
    pub(super) fn srtt(&self) -> Option<Duration> {
        self.srtt_ns.map(Duration::from_nanos)
    }

    /// The smoothed round-trip time in nanoseconds, once there is a sample.
    pub(super) fn srtt_nanos(&self) -> Option<u64> {
        self.srtt_ns
    }

    /// The current RTO, backoff included.
    pub(super) fn rto(&self) -> Duration {
        Duration::from_nanos(self.rto_ns)
    }

    /// The current RTO in nanoseconds.
    pub(super) fn rto_nanos(&self) -> u64 {
        self.rto_ns
    }

    /// The RTO without backoff.
    pub(super) fn base_rto(&self) -> Duration {
        Duration::from_nanos(self.base_ns)
    }

    /// [`sample_nanos`](Self::sample_nanos) for a `Duration` (the tests').
    #[cfg(test)]
    pub(super) fn sample(&mut self, rtt: Duration) {
        self.sample_nanos(nanos(rtt));
    }

    /// Adds a round-trip measurement of `rtt` nanoseconds and ends any backoff.
    pub(super) fn sample_nanos(&mut self, rtt: u64) {
        let srtt = match self.srtt_ns {
            None => {
                self.rttvar_ns = rtt / 2;
                rtt
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar_ns = self.rttvar_ns.saturating_mul(3) / 4 + delta / 4;
                srtt.saturating_mul(7) / 8 + rtt / 8
            }
        };
        self.srtt_ns = Some(srtt);
        let variance = self.rttvar_ns.checked_mul(4).unwrap_or(self.max_ns);
        self.base_ns = srtt
            .saturating_add(variance.max(GRANULARITY_NS))
            .clamp(self.min_ns, self.max_ns);
        self.backoff = 0;
        self.refresh();
    }

    /// A retransmission timeout: doubles the RTO.
    pub(super) fn back_off(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
        self.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn follows_rfc_6298() {
        let mut rtt = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!((rtt.srtt(), rtt.rto()), (None, ms(1000)));
        rtt.sample(ms(100));
        // SRTT 100, RTTVAR 50: 100 + 200.
        assert_eq!((rtt.srtt(), rtt.rto()), (Some(ms(100)), ms(300)));
        rtt.sample(ms(200));
        // RTTVAR = 37.5 + 25 = 62.5, SRTT = 87.5 + 25 = 112.5: 112.5 + 250.
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.rto(), Duration::from_micros(362_500));
        rtt.back_off();
        assert_eq!(rtt.rto(), Duration::from_micros(725_000));
        assert_eq!(rtt.base_rto(), Duration::from_micros(362_500));
        rtt.back_off();
        assert_eq!(rtt.rto(), Duration::from_micros(1_450_000));
        rtt.sample(ms(112));
        assert!(rtt.rto() < ms(400));
    }

    #[test]
    fn clamped_to_min_and_max() {
        let mut rtt = RttEstimator::new(ms(1000), ms(200), ms(5000));
        for _ in 0..10 {
            rtt.sample(Duration::from_micros(10));
        }
        assert_eq!(rtt.rto(), ms(200));
        for _ in 0..40 {
            rtt.back_off();
        }
        assert_eq!(rtt.rto(), ms(5000));
        let fabric = RttEstimator::new(
            Duration::from_micros(300),
            Duration::from_micros(20),
            ms(10),
        );
        assert_eq!(fabric.rto(), Duration::from_micros(300));
    }

    proptest! {
        #[test]
        fn rto_stays_within_bounds(
            min_us in 1u64..1_000_000,
            span_us in 0u64..100_000_000,
            initial_us in 0u64..100_000_000,
            steps in proptest::collection::vec(prop_oneof![
                (0u64..200_000_000).prop_map(Some),
                Just(None),
            ], 0..50),
        ) {
            let (min, max) = (Duration::from_micros(min_us), Duration::from_micros(min_us + span_us));
            let mut rtt = RttEstimator::new(Duration::from_micros(initial_us), min, max);
            prop_assert!(rtt.rto() >= min && rtt.rto() <= max);
            let mut last_base = rtt.rto();
            for step in steps {
                match step {
                    Some(sample) => {
                        rtt.sample(Duration::from_micros(sample));
                        let srtt = rtt.srtt().unwrap();
                        // The RTO covers the smoothed RTT unless the cap is lower.
                        prop_assert!(rtt.rto() > srtt || rtt.rto() == max);
                        last_base = rtt.rto();
                    }
                    None => {
                        let before = rtt.rto();
                        rtt.back_off();
                        prop_assert!(rtt.rto() == max || rtt.rto() == before * 2);
                        prop_assert_eq!(rtt.base_rto(), last_base);
                    }
                }
                prop_assert!(rtt.rto() >= min && rtt.rto() <= max);
            }
        }
    }
}
