//! Loss recovery: duplicate ACKs, fast retransmit and fast recovery (RFC 5681 §3.2,
//! RFC 6582), SACK-based recovery (RFC 6675), limited transmit (RFC 3042), what a
//! timeout does to the congestion state (RFC 5681 §3.1, RFC 6298 §5), and the
//! receiver's SACK blocks (RFC 2018 §4).
//!
//! Recovery counts what is in the network as RFC 6675's `pipe`: outstanding bytes,
//! less those SACKed, less those deemed lost, plus those retransmitted. Without
//! SACK each duplicate ACK stands for one segment that left the network (as if it
//! had been SACKed), which makes NewReno's window inflation unnecessary: cwnd stays
//! at ssthresh for the whole recovery, and the send path sends while
//! `cwnd - pipe >= MSS`, choosing segments by RFC 6675's NextSeg.


use super::connection::Connection;
use super::sack::DUP_THRESH;
use crate::time::Ticks;
use crate::wire::SeqNumber;

impl Connection {
    /// Takes the SACK blocks of an acceptable ACK into the scoreboard.
    pub(super) fn on_sack_blocks(&mut self, blocks: &[Option<(u32, u32)>; 3]) {
        if !self.sack_ok {
            return;
        }
        for &(left, right) in blocks.iter().flatten() {
            self.stats.sack_blocks_received += 1;
            self.scoreboard.add(
                SeqNumber(left),
                SeqNumber(right),
                self.snd_una,
                self.snd_max,
            );
        }
    }

    /// A duplicate ACK (RFC 5681 §2: no data, same ACK and window, data
    /// outstanding).
    pub(super) fn on_dup_ack(&mut self) {
        self.stats.dup_acks += 1;
        if self.in_recovery {
            self.cc.on_dupack();
            if !self.sack_ok {
                self.reno_sacked = self.reno_sacked.saturating_add(self.snd_mss);
            }
        } else {
            self.dupacks = self.dupacks.saturating_add(1);
        }
    }

    /// Starts fast recovery if the ACKs so far say that the segment at SND.UNA is
    /// lost: DupThresh duplicate ACKs, or with SACK, IsLost(SND.UNA) (RFC 6675
    /// §5). Not twice for the same window (RFC 6582 §3.2: only once `recover` is
    /// acknowledged), nor while going back after a timeout.
    pub(super) fn maybe_enter_recovery(&mut self, now: Ticks) {
        if !self.config.fast_retransmit
            || self.in_recovery
            || self.rto_recovery
            || self.snd_una == self.snd_max
            || self.snd_nxt != self.snd_max
            || !self.snd_una.gt(self.recover)
        {
            return;
        }
        let by_dupacks = self.dupacks as usize >= DUP_THRESH;
        let by_sack = self.sack_ok
            && self
                .scoreboard
                .lost_end(self.snd_mss, self.snd_una)
                .gt(self.snd_una);
        if !(by_dupacks || by_sack) {
            return;
        }
        let flight = (self.snd_max - self.snd_una) as usize;
        self.cc.on_enter_recovery(flight, now);
        self.stats.fast_retransmits += 1;
        self.in_recovery = true;
        self.recover = self.snd_max;
        self.high_rxt = self.snd_una;
        self.lost_hint = self.snd_una + self.snd_mss;
        self.rxt_forced = true;
        self.reno_sacked = if self.sack_ok {
            0
        } else {
            (self.dupacks as usize).saturating_mul(self.snd_mss)
        };
        self.dupacks = 0;
    }

    /// An ACK of new data: `acked` bytes of data were released. Ends recovery when
    /// `recover` is reached (cwnd = ssthresh); a partial ACK without SACK marks the
    /// next segment lost and has it resent at once (RFC 6582 §3.2 step 3). Outside
    /// recovery the congestion window grows.
    pub(super) fn recovery_on_new_ack(&mut self, ack: SeqNumber, acked: usize, now: Ticks) {
        self.dupacks = 0;
        self.scoreboard.ack_to(ack);
        if !self.in_recovery {
            // After a timeout too: the loss window grows by slow start (RFC 5681
            // §3.1).
            if acked > 0 {
                self.cc.on_ack(acked, self.rtt.srtt_nanos(), now);
            }
            return;
        }
        if ack.ge(self.recover) {
            self.in_recovery = false;
            self.rxt_forced = false;
            self.reno_sacked = 0;
            self.cc.on_exit_recovery(now);
            return;
        }
        self.high_rxt = self.high_rxt.max(ack);
        self.lost_hint = self.lost_hint.max(ack);
        if !self.sack_ok {
            self.reno_sacked = self
                .reno_sacked
                .saturating_sub(acked.saturating_sub(self.snd_mss));
            self.lost_hint = ack + self.snd_mss;
            self.rxt_forced = true;
        }
    }

    /// The congestion side of a retransmission timeout (RFC 5681 §3.1, RFC 6298
    /// §5.4-5.6): loss window and halved ssthresh on the first timeout of a series,
    /// recovery abandoned, SACK information dropped (the receiver may renege, RFC
    /// 2018 §8), and no fast retransmit for anything sent so far.
    pub(super) fn recovery_on_rto(&mut self, first: bool, now: Ticks) {
        if first {
            let flight = (self.snd_max - self.snd_una).max(0) as usize;
            self.cc.on_rto(flight, now);
        }
        self.in_recovery = false;
        self.rxt_forced = false;
        self.reno_sacked = 0;
        self.dupacks = 0;
        self.recover = self.snd_max;
        self.high_rxt = self.snd_una;
        self.scoreboard.clear();
    }

    /// The end of the data deemed lost: below it, every unSACKed byte is lost.
    fn lost_end(&self) -> SeqNumber {
        let by_sack = if self.sack_ok {
            self.scoreboard.lost_end(self.snd_mss, self.snd_una)
        } else {
            self.snd_una
        };
        by_sack.max(self.lost_hint).min(self.snd_max).max(self.snd_una)
    }

    /// RFC 6675 `pipe`: the bytes still in the network.
    pub(super) fn pipe(&self) -> usize {
        let (una, max) = (self.snd_una, self.snd_max);
        let flight = (max - una).max(0) as usize;
        let sacked = if self.sack_ok {
            self.scoreboard.sacked_between(una, max)
        } else {
            self.reno_sacked.min(flight)
        };
        let unsacked_below = |end: SeqNumber| -> usize {
            let end = end.min(max).max(una);
            let span = (end - una) as usize;
            if self.sack_ok {
                span - self.scoreboard.sacked_between(una, end)
            } else {
                span
            }
        };
        let lost = unsacked_below(self.lost_end());
        let retransmitted = unsacked_below(self.high_rxt);
        (flight - sacked).saturating_sub(lost) + retransmitted
    }

    /// RFC 6675 NextSeg: the sequence range `[seq, end)` to send next in recovery,
    /// if any: the first lost hole not yet retransmitted (rule 1), else new data
    /// the peer's window allows (rule 2), else with SACK the first unSACKed range
    /// not yet retransmitted (rule 3). `end` may include the FIN.
    pub(super) fn next_seg(&self) -> Option<(SeqNumber, SeqNumber)> {
        let mut seq = self.high_rxt.max(self.snd_una);
        if let Some(end) = self.scoreboard.sacked_until(seq) {
            seq = end;
        }
        let hole_end = |seq: SeqNumber| {
            self.scoreboard
                .next_sacked(seq)
                .map_or(self.snd_max, |start| start.min(self.snd_max))
        };
        if seq.lt(self.lost_end()) {
            return Some((seq, hole_end(seq)));
        }
        let data_end = self.send_queue.end();
        let send_end = data_end + usize::from(self.fin_queued);
        if self.snd_max.lt(send_end) {
            let window_end = self.snd_una + self.snd_wnd;
            let room = (window_end - self.snd_max).max(0) as usize;
            if room > 0 || self.snd_max == data_end {
                return Some((self.snd_max, send_end));
            }
        }
        if self.sack_ok && seq.lt(self.snd_max) {
            return Some((seq, hole_end(seq)));
        }
        None
    }

    /// Receiver side: an out-of-order segment starting at stream offset `offset`
    /// was stored; its block goes first in the next SACK option.
    pub(super) fn note_out_of_order(&mut self, offset: u64) {
        if !self.sack_ok {
            return;
        }
        let [first, second, _] = self.sack_recent;
        self.sack_recent = [Some(offset), first, second];
    }

    /// The SACK blocks for our next ACK (RFC 2018 §4): the block holding the most
    /// recent out-of-order arrival first, then the blocks of earlier arrivals,
    /// then any other blocks, up to three, none repeated.
    pub(super) fn sack_blocks(&self) -> [Option<(u32, u32)>; 3] {
        // Nothing held out of order (the usual case): no blocks.
        if self.recv_buffer.ranges_descending().next().is_none() {
            return [None; 3];
        }
        let mut blocks: [Option<(u64, u64)>; 3] = [None; 3];
        let mut count = 0;
        let recent = self
            .sack_recent
            .iter()
            .flatten()
            .filter_map(|&offset| self.recv_buffer.range_containing(offset));
        for block in recent.chain(self.recv_buffer.ranges_descending()) {
            if count == blocks.len() {
                break;
            }
            if !blocks[..count].contains(&Some(block)) {
                blocks[count] = Some(block);
                count += 1;
            }
        }
        let next = self.recv_buffer.next();
        blocks.map(|block| {
            block.map(|(start, end)| {
                let left = self.rcv_nxt + (start - next) as usize;
                let right = self.rcv_nxt + (end - next) as usize;
                (left.0, right.0)
            })
        })
    }
}
