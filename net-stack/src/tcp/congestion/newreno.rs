//! NewReno's window (RFC 5681 §3.1): slow start, congestion avoidance by byte
//! counting, halving on loss, one segment after a timeout. Fast recovery itself
//! (RFC 6582) is the connection's, which sets cwnd to ssthresh when it ends.

use crate::time::Ticks;

use super::{halved, initial_window, CongestionController};

/// RFC 5681 congestion window.
#[derive(Debug, Clone)]
pub(in crate::tcp) struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance not yet turned into window.
    acked: usize,
}

impl NewReno {
    /// The initial window, and an "arbitrarily high" ssthresh (RFC 5681 §3.1).
    pub(in crate::tcp) fn new(mss: usize) -> NewReno {
        NewReno {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            acked: 0,
        }
    }
}

impl CongestionController for NewReno {
    fn on_ack(&mut self, bytes_acked: usize, _srtt_ns: Option<u64>, _now: Ticks) {
        if self.cwnd < self.ssthresh {
            // Slow start, RFC 5681 equation (2): at most one MSS per ACK.
            self.cwnd = self.cwnd.saturating_add(bytes_acked.min(self.mss));
        } else {
            // Congestion avoidance by byte counting (RFC 5681 §3.1, RFC 3465): one
            // MSS each time a window's worth of bytes has been acknowledged.
            self.acked = self.acked.saturating_add(bytes_acked);
            if self.acked >= self.cwnd {
                self.acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
        }
    }

    fn on_enter_recovery(&mut self, flight_size: usize, _now: Ticks) {
        self.ssthresh = halved(flight_size, self.mss);
        self.cwnd = self.ssthresh;
        self.acked = 0;
    }

    fn on_exit_recovery(&mut self, _now: Ticks) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, flight_size: usize, _now: Ticks) {
        self.ssthresh = halved(flight_size, self.mss);
        self.cwnd = self.mss;
        self.acked = 0;
    }

    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance() {
        let now = Ticks::ZERO;
        let mut cc = NewReno::new(1000);
        assert_eq!(cc.cwnd(), 4000);
        for _ in 0..4 {
            cc.on_ack(1000, None, now);
        }
        assert_eq!(cc.cwnd(), 8000);
        // A small ACK grows the window by what it acknowledged.
        cc.on_ack(10, None, now);
        assert_eq!(cc.cwnd(), 8010);
        cc.on_rto(8000, now);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1000, 4000));
        for _ in 0..3 {
            cc.on_ack(1000, None, now);
        }
        assert_eq!(cc.cwnd(), 4000);
        // Avoidance: one MSS per window acknowledged.
        for _ in 0..3 {
            cc.on_ack(1000, None, now);
        }
        assert_eq!(cc.cwnd(), 4000);
        cc.on_ack(1000, None, now);
        assert_eq!(cc.cwnd(), 5000);
        cc.on_enter_recovery(5000, now);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (2500, 2500));
        cc.on_exit_recovery(now);
        assert_eq!(cc.cwnd(), 2500);
        cc.on_enter_recovery(1000, now);
        assert_eq!(cc.ssthresh(), 2000);
    }
}
