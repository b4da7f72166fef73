//! CUBIC (RFC 9438): after a congestion event the window follows
//! W_cubic(t) = C (t - K)^3 + W_max (§4.2), concave up to the window where the
//! loss happened and convex beyond it, never slower than an estimate of what Reno
//! would have (the Reno-friendly region, §4.3), with multiplicative decrease by
//! β = 0.7 (§4.6) and fast convergence (§4.7). Slow start is Reno's.
//!
//! Windows in the cubic function are in segments and time in seconds, as in the
//! RFC; the connection sees bytes.

use std::time::Duration;

use crate::time::Ticks;

use super::{initial_window, CongestionController};

/// C, in segments per second cubed (§5.1).
pub(in crate::tcp) const C: f64 = 0.4;
/// The multiplicative decrease factor (§4.6).
pub(in crate::tcp) const BETA: f64 = 0.7;
/// The Reno-friendly additive increase while W_est < W_max: 3 (1 - β) / (1 + β).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// K: the time (s) the cubic function takes to climb from `cwnd_epoch` back to
/// `w_max` (RFC 9438 equation 2); 0 when the epoch starts at or above W_max.
pub(in crate::tcp) fn cubic_k(w_max: f64, cwnd_epoch: f64) -> f64 {
    if w_max <= cwnd_epoch {
        0.0
    } else {
        ((w_max - cwnd_epoch) / C).cbrt()
    }
}

/// W_cubic(t) = C (t - K)^3 + W_max (RFC 9438 equation 1), in segments.
pub(in crate::tcp) fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    C * (t - k).powi(3) + w_max
}

/// The state of the current congestion avoidance epoch.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    start: Ticks,
    k: f64,
    /// The Reno-friendly estimate W_est, in segments.
    w_est: f64,
}

/// The CUBIC congestion window.
#[derive(Debug, Clone)]
pub(in crate::tcp) struct Cubic {
    mss: usize,
    /// In bytes; fractional so that small per-ACK increments add up.
    cwnd: f64,
    ssthresh: usize,
    /// The window before the last reduction, in segments (0 before any).
    w_max: f64,
    epoch: Option<Epoch>,
}

impl Cubic {
    /// Reno's initial window and an arbitrarily high ssthresh.
    pub(in crate::tcp) fn new(mss: usize) -> Cubic {
        Cubic {
            mss,
            cwnd: initial_window(mss) as f64,
            ssthresh: usize::MAX,
            w_max: 0.0,
            epoch: None,
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd / self.mss as f64
    }

    /// A congestion event: W_max with fast convergence (§4.7), ssthresh = β *
    /// flight (at least 2 MSS, §4.6), and a new epoch at the next ACK.
    fn reduce(&mut self, flight_size: usize) {
        let segments = self.segments();
        self.w_max = if segments < self.w_max {
            segments * (1.0 + BETA) / 2.0
        } else {
            segments
        };
        self.ssthresh = ((flight_size as f64 * BETA).round() as usize).max(2 * self.mss);
        self.epoch = None;
    }
}

impl CongestionController for Cubic {
    fn on_ack(&mut self, bytes_acked: usize, srtt_ns: Option<u64>, now: Ticks) {
        if (self.cwnd as usize) < self.ssthresh {
            self.cwnd += bytes_acked.min(self.mss) as f64;
            return;
        }
        let segments = self.segments();
        let epoch = *self.epoch.get_or_insert_with(|| {
            if self.w_max < segments {
                // No reduction yet, or slow start overshot it: start on the plateau.
                self.w_max = segments;
            }
            Epoch {
                start: now,
                k: cubic_k(self.w_max, segments),
                w_est: segments,
            }
        });
        let acked = bytes_acked as f64 / self.mss as f64;
        // §4.3: Reno's estimate grows by α per window acknowledged (1 above W_max).
        let alpha = if epoch.w_est >= self.w_max { 1.0 } else { ALPHA };
        let w_est = epoch.w_est + alpha * acked / segments;
        // §4.2: aim at W_cubic one RTT ahead, within [cwnd, 1.5 cwnd].
        let t = Duration::from_nanos(now.since(epoch.start)) + Duration::from_nanos(srtt_ns.unwrap_or(0));
        let cubic = w_cubic(t.as_secs_f64(), epoch.k, self.w_max);
        let next = if cubic < w_est {
            w_est
        } else {
            let target = cubic.clamp(segments, 1.5 * segments);
            segments + (target - segments) / segments * acked
        };
        self.cwnd = self.cwnd.max(next * self.mss as f64);
        self.epoch = Some(Epoch { w_est, ..epoch });
    }

    fn on_enter_recovery(&mut self, flight_size: usize, _now: Ticks) {
        self.reduce(flight_size);
        self.cwnd = self.ssthresh as f64;
    }

    fn on_exit_recovery(&mut self, _now: Ticks) {
        self.cwnd = self.ssthresh as f64;
    }

    fn on_rto(&mut self, flight_size: usize, _now: Ticks) {
        // §4.8: ssthresh by β, cwnd to the loss window as Reno.
        self.reduce(flight_size);
        self.cwnd = self.mss as f64;
    }

    fn cwnd(&self) -> usize {
        self.cwnd as usize
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn the_cubic_function_by_hand() {
        // W_max 100, epoch at 70: K = cbrt(30 / 0.4) = cbrt(75) = 4.217163.
        let k = cubic_k(100.0, 70.0);
        assert!(close(k, 4.217_163), "{k}");
        assert!(close(w_cubic(0.0, k, 100.0), 70.0));
        assert!(close(w_cubic(k, k, 100.0), 100.0));
        // Concave before K, convex after: 100 -/+ 0.4 * 2^3.
        assert!(close(w_cubic(k - 2.0, k, 100.0), 96.8));
        assert!(close(w_cubic(k + 2.0, k, 100.0), 103.2));
        assert!(close(w_cubic(k + 10.0, k, 100.0), 500.0));
        assert_eq!(cubic_k(50.0, 60.0), 0.0);
        assert!(close(ALPHA, 0.529_411_8));
    }

    #[test]
    fn window_follows_the_cubic_after_a_loss() {
        let t0 = Ticks::ZERO;
        let mss = 1000;
        let mut cc = Cubic::new(mss);
        // Grow to 100 segments in slow start, then lose with 100 in flight.
        while cc.cwnd() < 100_000 {
            cc.on_ack(mss, None, t0);
        }
        assert_eq!(cc.cwnd(), 100_000);
        cc.on_enter_recovery(100_000, t0);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (70_000, 70_000));
        cc.on_exit_recovery(t0);
        assert_eq!(cc.cwnd(), 70_000);
        // The first ACK starts the epoch: W_cubic(0) = 70 is below Reno's estimate
        // 70 + α/70, so the window is W_est.
        cc.on_ack(mss, None, t0);
        let w_est = 70.0 + ALPHA / 70.0;
        assert!(close(cc.cwnd / 1000.0, w_est), "{}", cc.cwnd);
        // At t = K the cubic is at W_max = 100: one segment ACKed moves the window
        // by (100 - cwnd) / cwnd.
        let k = cubic_k(100.0, 70.0);
        cc.on_ack(mss, None, t0.add(Duration::from_secs_f64(k)));
        let expected = w_est + (100.0 - w_est) / w_est;
        assert!(close(cc.cwnd / 1000.0, expected), "{}", cc.cwnd);
        // Far beyond K the target is capped at 1.5 cwnd: one whole window of ACKs
        // adds at most half a window.
        let before = cc.segments();
        cc.on_ack(mss * 10, None, t0.add(Duration::from_secs(60)));
        let step = cc.segments() - before;
        assert!(close(step, 0.5 * before * 10.0 / before), "{step}");
    }

    #[test]
    fn fast_convergence_and_timeouts() {
        let t0 = Ticks::ZERO;
        let mut cc = Cubic::new(1000);
        cc.cwnd = 100_000.0;
        cc.ssthresh = 50_000;
        cc.on_enter_recovery(100_000, t0);
        assert!(close(cc.w_max, 100.0));
        // A second loss below W_max: W_max = 70 * (1 + β) / 2 = 59.5.
        cc.on_enter_recovery(70_000, t0);
        assert!(close(cc.w_max, 59.5));
        assert_eq!(cc.ssthresh(), 49_000);
        cc.on_rto(10_000, t0);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1000, 7000));
        cc.on_rto(1000, t0);
        assert_eq!(cc.ssthresh(), 2000);
    }
}
