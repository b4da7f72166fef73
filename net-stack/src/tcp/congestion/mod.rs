//! Congestion control: how much a connection may have in flight.
//!
//! The connection owns loss detection and recovery (fast retransmit, SACK-based
//! recovery, retransmission timeouts); a [`CongestionController`] only turns the
//! signals it gets into a congestion window (cwnd) and a slow-start threshold
//! (ssthresh). The send path keeps at most min(peer window, cwnd) in flight.
//!
//! * [`CongestionControl::NewReno`]: RFC 5681 slow start and congestion avoidance,
//!   with the initial window of RFC 5681 §3.1 / RFC 3390 (`newreno.rs`);
//! * [`CongestionControl::Cubic`]: RFC 9438 (`cubic.rs`);
//! * [`CongestionControl::None`]: no limit, for lossless fabrics.
//!
//! During recovery the connection counts what is in the network with RFC 6675's
//! `pipe` (duplicate ACKs stand for segments that left the network when the peer
//! does not SACK), so the window is not inflated by duplicate ACKs: cwnd is set to
//! ssthresh on entering recovery and stays there until recovery ends.

use std::fmt;

use crate::time::Ticks;

mod cubic;
mod newreno;

pub(super) use self::cubic::Cubic;
pub(super) use self::newreno::NewReno;

/// Which congestion control a connection uses ([`TcpConfig::congestion`]).
///
/// [`TcpConfig::congestion`]: super::TcpConfig::congestion
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CongestionControl {
    /// RFC 5681 slow start and congestion avoidance with RFC 6582 fast recovery.
    #[default]
    NewReno,
    /// CUBIC (RFC 9438): a window that grows as a cubic function of the time since
    /// the last congestion event, for long fat networks.
    Cubic,
    /// No congestion window at all: only the peer's window limits the sender. For
    /// lossless fabrics, where losses are not a sign of congestion.
    None,
}

/// The congestion control algorithm of one connection. Sizes are in bytes.
pub(super) trait CongestionController: fmt::Debug {
    /// `bytes_acked` new bytes were acknowledged outside recovery; `srtt_ns` is the
    /// smoothed round-trip time in nanoseconds, if known.
    fn on_ack(&mut self, bytes_acked: usize, srtt_ns: Option<u64>, now: Ticks);
    /// A duplicate ACK arrived during recovery. The window is not inflated (the
    /// connection's `pipe` accounts for the segment that left), so by default this
    /// does nothing.
    fn on_dupack(&mut self) {}
    /// Loss detected by duplicate ACKs or SACK: fast recovery starts with
    /// `flight_size` bytes outstanding.
    fn on_enter_recovery(&mut self, flight_size: usize, now: Ticks);
    /// Everything outstanding when recovery started has been acknowledged.
    fn on_exit_recovery(&mut self, now: Ticks);
    /// The retransmission timer fired with `flight_size` bytes outstanding (called
    /// once per series of timeouts).
    fn on_rto(&mut self, flight_size: usize, now: Ticks);
    /// The congestion window.
    fn cwnd(&self) -> usize;
    /// The slow-start threshold.
    fn ssthresh(&self) -> usize;
}

/// The initial window of RFC 5681 §3.1 (RFC 3390): min(4 MSS, max(2 MSS, 4380)).
pub(super) fn initial_window(mss: usize) -> usize {
    (4 * mss).min((2 * mss).max(4380))
}

/// ssthresh after a loss, RFC 5681 equation (4): max(FlightSize / 2, 2 MSS).
pub(super) fn halved(flight_size: usize, mss: usize) -> usize {
    (flight_size / 2).max(2 * mss)
}

/// A controller of kind `kind` for segments of `mss` bytes.
pub(super) fn new_controller(kind: CongestionControl, mss: usize) -> Controller {
    let mss = mss.max(1);
    match kind {
        CongestionControl::NewReno => Controller::NewReno(NewReno::new(mss)),
        CongestionControl::Cubic => Controller::Cubic(Cubic::new(mss)),
        CongestionControl::None => Controller::Unlimited(Unlimited),
    }
}

/// The controller of a connection, one of each [`CongestionControl`]: held in
/// place and dispatched by a `match`, which costs less than a boxed trait object
/// on a path that calls it on every ACK and every segment sent. Its methods are
/// those of [`CongestionController`].
#[derive(Debug)]
pub(super) enum Controller {
    NewReno(NewReno),
    Cubic(Cubic),
    Unlimited(Unlimited),
}

/// `$call` on the controller inside `$cc`, whichever kind it is.
macro_rules! dispatch {
    ($cc:expr, $c:ident => $call:expr) => {
        match $cc {
            Controller::NewReno($c) => $call,
            Controller::Cubic($c) => $call,
            Controller::Unlimited($c) => $call,
        }
    };
}

impl Controller {
    /// [`CongestionController::on_ack`].
    #[inline]
    pub(super) fn on_ack(&mut self, bytes_acked: usize, srtt_ns: Option<u64>, now: Ticks) {
        dispatch!(self, c => c.on_ack(bytes_acked, srtt_ns, now))
    }

    /// [`CongestionController::on_dupack`].
    pub(super) fn on_dupack(&mut self) {
        dispatch!(self, c => c.on_dupack())
    }

    /// [`CongestionController::on_enter_recovery`].
    pub(super) fn on_enter_recovery(&mut self, flight_size: usize, now: Ticks) {
        dispatch!(self, c => c.on_enter_recovery(flight_size, now))
    }

    /// [`CongestionController::on_exit_recovery`].
    pub(super) fn on_exit_recovery(&mut self, now: Ticks) {
        dispatch!(self, c => c.on_exit_recovery(now))
    }

    /// [`CongestionController::on_rto`].
    pub(super) fn on_rto(&mut self, flight_size: usize, now: Ticks) {
        dispatch!(self, c => c.on_rto(flight_size, now))
    }

    /// [`CongestionController::cwnd`].
    #[inline]
    pub(super) fn cwnd(&self) -> usize {
        dispatch!(self, c => c.cwnd())
    }

    /// [`CongestionController::ssthresh`].
    pub(super) fn ssthresh(&self) -> usize {
        dispatch!(self, c => c.ssthresh())
    }
}

/// [`CongestionControl::None`]: the window is unlimited and never changes.
#[derive(Debug)]
pub(super) struct Unlimited;

impl CongestionController for Unlimited {
    fn on_ack(&mut self, _: usize, _: Option<u64>, _: Ticks) {}
    fn on_enter_recovery(&mut self, _: usize, _: Ticks) {}
    fn on_exit_recovery(&mut self, _: Ticks) {}
    fn on_rto(&mut self, _: usize, _: Ticks) {}
    fn cwnd(&self) -> usize {
        usize::MAX
    }
    fn ssthresh(&self) -> usize {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_window_follows_rfc_3390() {
        assert_eq!(initial_window(1460), 4380);
        assert_eq!(initial_window(536), 2144);
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(1095), 4380);
        assert_eq!(halved(10_000, 1000), 5000);
        assert_eq!(halved(3000, 1000), 2000);
    }

    #[test]
    fn none_is_unlimited() {
        let mut cc = new_controller(CongestionControl::None, 1460);
        let now = Ticks::ZERO;
        cc.on_rto(100_000, now);
        cc.on_enter_recovery(100_000, now);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (usize::MAX, usize::MAX));
    }
}
