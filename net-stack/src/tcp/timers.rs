//! The connection's timers: a table of deadlines indexed by [`Timer`], and what
//! happens when each one fires.

use std::time::Instant;

use super::connection::Connection;
use super::{State, TcpError, TcpEvent};
use crate::time::Ticks;

/// The timers of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Retransmission of the SYN, the SYN-ACK, data or FIN (RFC 6298).
    Retransmit,
    /// Zero-window probing (RFC 9293 §3.8.6.1).
    Persist,
    /// A delayed ACK is due (RFC 1122 §4.2.3.2).
    DelayedAck,
    /// TIME-WAIT ends (2*MSL).
    TimeWait,
    /// An idle connection is due a keepalive probe (RFC 1122 §4.2.3.6).
    Keepalive,
}

impl Timer {
    const ALL: [Timer; 5] = [
        Timer::Retransmit,
        Timer::Persist,
        Timer::DelayedAck,
        Timer::TimeWait,
        Timer::Keepalive,
    ];
}

/// One optional deadline per [`Timer`], and the earliest of them kept up to date
/// (read after every segment; timers are set and stopped far more often than they
/// change which one is first, and most stops find the timer already stopped).
#[derive(Debug, Clone, Default)]
pub(super) struct TimerTable {
    deadlines: [Option<Ticks>; 5],
    next: Option<Ticks>,
}

impl TimerTable {
    /// Arms `timer` for `at` (re-arming replaces the old deadline).
    #[inline]
    pub(super) fn set(&mut self, timer: Timer, at: Ticks) {
        let old = self.deadlines[timer as usize].replace(at);
        if self.next.is_none_or(|n| at <= n) {
            self.next = Some(at);
        } else if old == self.next {
            // The first deadline moved later.
            self.recompute();
        }
    }

    /// Disarms `timer`.
    #[inline]
    pub(super) fn stop(&mut self, timer: Timer) {
        let old = self.deadlines[timer as usize].take();
        if old.is_some() && old == self.next {
            self.recompute();
        }
    }

    /// Disarms every timer.
    pub(super) fn stop_all(&mut self) {
        self.deadlines = [None; 5];
        self.next = None;
    }

    fn recompute(&mut self) {
        self.next = self.deadlines.iter().flatten().min().copied();
    }

    /// The deadline of `timer`, if armed.
    pub(super) fn get(&self, timer: Timer) -> Option<Ticks> {
        self.deadlines[timer as usize]
    }

    /// Whether `timer` is armed.
    pub(super) fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Ticks> {
        self.next
    }

    /// Disarms and returns one timer whose deadline is at or before `now`.
    pub(super) fn take_expired(&mut self, now: Ticks) -> Option<Timer> {
        if self.next.is_none_or(|n| n > now) {
            return None;
        }
        let timer = Timer::ALL
            .into_iter()
            .find(|&timer| self.get(timer).is_some_and(|at| at <= now))?;
        self.stop(timer);
        Some(timer)
    }
}

impl Connection {
    /// Runs the timers whose deadline is at or before `now`. Calling it early, or
    /// when no timer is armed, does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_at(self.ticks(now));
    }

    /// [`handle_timeout`](Self::handle_timeout) with `now` in ticks.
    pub(crate) fn handle_timeout_at(&mut self, now: Ticks) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                Timer::Retransmit => self.on_retransmit_timeout(now),
                Timer::Persist => self.on_persist_timeout(now),
                Timer::DelayedAck => self.ack_now = true,
                Timer::TimeWait => self.enter_closed(),
                Timer::Keepalive => self.on_keepalive_timeout(now),
            }
        }
    }

    /// Something arrived: the connection is not idle. (Re)starts the keepalive
    /// period in ESTABLISHED, stops it in any other state.
    pub(super) fn restart_keepalive(&mut self, now: Ticks) {
        self.keepalive_unanswered = 0;
        match self.config.keepalive {
            Some(keepalive) if self.state == State::Established => {
                self.timers.set(Timer::Keepalive, now.add(keepalive.idle));
            }
            _ => self.timers.stop(Timer::Keepalive),
        }
    }

    /// RFC 1122 §4.2.3.6: the connection was idle for the keepalive period (or
    /// a probe went unanswered for the interval): probe, or give up after `count`
    /// unanswered probes.
    fn on_keepalive_timeout(&mut self, now: Ticks) {
        let Some(keepalive) = self.config.keepalive else {
            return;
        };
        if self.state != State::Established {
            return;
        }
        // Data in flight or waiting behind a zero window: the retransmission and
        // persist timers watch the peer.
        let waiting = self.send_queue.end().gt(self.snd_nxt);
        if self.snd_una != self.snd_max || waiting {
            self.keepalive_unanswered = 0;
            self.timers.set(Timer::Keepalive, now.add(keepalive.idle));
            return;
        }
        if self.keepalive_unanswered >= keepalive.count {
            return self.fail(TcpError::TimedOut, true);
        }
        self.keepalive_unanswered += 1;
        self.keepalive_pending = true;
        self.timers.set(Timer::Keepalive, now.add(keepalive.interval));
    }

    /// RFC 6298 §5.4-5.6: back off and go back to the oldest unacknowledged segment
    /// (or the SYN); give up after the configured number of attempts.
    fn on_retransmit_timeout(&mut self, now: Ticks) {
        self.stats.rto_fires += 1;
        // Karn: whatever was being timed is retransmitted now.
        self.rtt_sample = None;
        match self.state {
            State::SynSent | State::SynReceived => {
                self.retransmits += 1;
                if self.retransmits > self.config.max_syn_retransmits {
                    let rst = self.state == State::SynReceived;
                    return self.fail(TcpError::TimedOut, rst);
                }
                self.rtt.back_off();
                self.snd_nxt = self.iss;
            }
            _ if self.state.is_synchronized() && self.snd_una != self.snd_max => {
                self.retransmits += 1;
                if self.retransmits > self.config.max_retransmits {
                    return self.fail(TcpError::TimedOut, true);
                }
                self.rtt.back_off();
                self.recovery_on_rto(self.retransmits == 1, now);
                self.snd_nxt = self.snd_una;
                self.rto_recovery = true;
            }
            _ => {}
        }
    }

    /// RFC 9293 §3.8.6.1: the peer's window is zero and data waits: send a probe and
    /// back the persist timer off. Probes that go unanswered count like timeouts.
    fn on_persist_timeout(&mut self, now: Ticks) {
        self.persist_probes += 1;
        if self.persist_probes > self.config.max_retransmits {
            return self.fail(TcpError::TimedOut, true);
        }
        self.probe_pending = true;
        self.persist_backoff = (self.persist_backoff + 1).min(31);
        self.timers
            .set(Timer::Persist, now.add(self.persist_interval()));
    }

    /// The persist interval: the RTO (without retransmission backoff) doubled per
    /// probe sent, within the configured bounds.
    pub(super) fn persist_interval(&self) -> std::time::Duration {
        let base = self.rtt.base_rto();
        base.checked_mul(1 << self.persist_backoff)
            .unwrap_or(self.config.rto_max)
            .clamp(
                self.config.rto_min.min(self.config.rto_max),
                self.config.rto_max,
            )
    }

    /// Ends the connection with `error`: reports it, optionally sends an RST, and
    /// goes to CLOSED.
    pub(super) fn fail(&mut self, error: TcpError, send_rst: bool) {
        self.error = Some(error);
        self.push_event(TcpEvent::Error(error));
        if send_rst {
            self.queue_reset();
        }
        self.enter_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The timers count in ticks; the tests think in `Instant`s from `t0`.
    fn at(t0: Instant, t: Instant) -> Ticks {
        Ticks::between(t0, t)
    }

    #[test]
    fn next_is_the_earliest_and_expired_ones_come_out() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::TimeWait, at(t0, t0 + Duration::from_secs(30)));
        table.set(Timer::Retransmit, at(t0, t0 + Duration::from_secs(1)));
        table.set(Timer::DelayedAck, at(t0, t0 + Duration::from_millis(10)));
        assert_eq!(table.next(), Some(at(t0, t0 + Duration::from_millis(10))));
        assert!(table.is_armed(Timer::Retransmit) && !table.is_armed(Timer::Persist));
        assert_eq!(table.take_expired(Ticks::ZERO), None);
        let later = t0 + Duration::from_secs(2);
        let mut expired = Vec::new();
        while let Some(timer) = table.take_expired(at(t0, later)) {
            expired.push(timer);
        }
        assert_eq!(expired, [Timer::Retransmit, Timer::DelayedAck]);
        assert_eq!(table.next(), Some(at(t0, t0 + Duration::from_secs(30))));
        table.stop_all();
        assert_eq!(table.next(), None);
    }

    proptest::proptest! {
        /// The kept earliest deadline is always the minimum of the table.
        #[test]
        fn next_is_always_the_minimum(ops in proptest::collection::vec((0usize..5, proptest::option::of(0u64..50)), 0..60)) {
            let mut table = TimerTable::default();
            for (i, at) in ops {
                let timer = Timer::ALL[i];
                match at {
                    Some(ms) => table.set(timer, Ticks::ZERO.add(Duration::from_millis(ms))),
                    None => table.stop(timer),
                }
                let min = Timer::ALL.iter().filter_map(|&t| table.get(t)).min();
                proptest::prop_assert_eq!(table.next(), min);
            }
            let due = Ticks::ZERO.add(Duration::from_millis(25));
            while table.take_expired(due).is_some() {}
            let min = Timer::ALL.iter().filter_map(|&t| table.get(t)).min();
            proptest::prop_assert_eq!(table.next(), min);
            proptest::prop_assert!(min.is_none_or(|m| m > due));
        }
    }
}
