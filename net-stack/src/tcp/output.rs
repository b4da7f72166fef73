//! Segment output: what to send now, if anything.
//!
//! In order of priority: a queued RST; the SYN or SYN-ACK (first transmission or a
//! retransmission after the timer went back to the ISS); then data, FIN and ACKs.
//! Data goes out from SND.NXT within the peer's window and the congestion hook
//! ([`send_window_limit`](Connection::send_window_limit)), cut at the MSS, with
//! sender-side SWS avoidance and, if configured, Nagle. A window probe forces one
//! byte past a zero window. In fast recovery, segments are chosen by RFC 6675
//! NextSeg and sent while the congestion window exceeds `pipe` (`recovery.rs`).
//! After a timeout, data the peer has SACKed since is skipped. Whatever carries an
//! ACK satisfies a pending one (with SACK blocks when SACK is in use).

use std::time::Instant;

use super::connection::Connection;
use super::segment::{Segment, SegmentHeader};
use super::timers::Timer;
use super::{State, TcpEvent};
use crate::time::Ticks;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

/// What [`Connection::plan_data`] decided to send.
#[derive(Debug, Clone, Copy)]
enum DataPlan {
    /// An ACK without data.
    BareAck,
    /// `len` bytes from `seq` (SND.NXT already advanced unless `probe`), maybe the FIN.
    Data { seq: SeqNumber, len: usize, fin: bool, probe: bool },
    /// In fast recovery: the segment NextSeg picked.
    Recovery { seq: SeqNumber, len: usize, fin: bool },
    /// A keepalive probe: an ACK at SND.NXT - 1, which the peer must answer.
    Keepalive,
}

impl Connection {
    /// The next segment to send now, if any.
    ///
    /// Call it until it returns `None` after every
    /// [`handle_segment`](Self::handle_segment),
    /// [`handle_timeout`](Self::handle_timeout) and application call, then read
    /// [`poll_at`](Self::poll_at): sending arms timers.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        let header = self.poll_transmit_header(self.ticks(now))?;
        let payload = self.send_queue.payload(header.payload_seq, header.payload_len);
        Some(Segment {
            repr: self.segment_repr(&header),
            payload,
        })
    }

    /// The whole header of `seg`, the segment [`poll_transmit_header`](Self::poll_transmit_header)
    /// returned last: its fields, the connection's ports, and the options kept for
    /// it if it has more than timestamps.
    pub(crate) fn segment_repr(&self, seg: &SegmentHeader) -> TcpRepr<'static> {
        let mut repr = TcpRepr::default();
        if seg.more_options {
            let o = &self.tx_options;
            repr.max_seg_size = o.max_seg_size;
            repr.window_scale = o.window_scale;
            repr.sack_permitted = o.sack_permitted;
            repr.sack_ranges = o.sack_ranges;
        }
        repr.src_port = self.local.port();
        repr.dst_port = self.remote.port();
        repr.seq_number = seg.seq_number;
        repr.ack_number = seg.ack_number;
        repr.window_len = seg.window_len;
        repr.flags = seg.flags;
        repr.timestamp = seg.timestamp;
        repr
    }

    /// [`poll_transmit`](Self::poll_transmit) without gathering the payload: the
    /// header, and where the payload lies in the send queue. The stack copies the
    /// payload from the queue into the frame with
    /// [`copy_payload`](Self::copy_payload) (no slices cloned and dropped per
    /// segment). `now` is in ticks.
    pub(crate) fn poll_transmit_header(&mut self, now: Ticks) -> Option<SegmentHeader> {
        // Tested before it is taken: `take` copied the whole (absent) header out
        // on every call.
        if self.reset_out.is_some() {
            return Some(self.transmit_reset(now));
        }
        // Each arm returns its segment directly: holding it in a local across
        // `arm_persist` made every call (even one sending nothing) copy the whole
        // `Option<Segment>` (~170 bytes) to the return slot.
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    return Some(self.transmit_syn(now));
                }
            }
            _ => {
                if let Some(plan) = self.plan_data() {
                    return Some(self.transmit_data(plan, now));
                }
            }
        }
        self.arm_persist(now);
        None
    }

    /// After a segment was handed out: whether calling
    /// [`poll_transmit_header`](Self::poll_transmit_header) again could return
    /// another or change anything. `false` only in the plain case, where that call
    /// is known to find nothing and leave the connection as it is: ESTABLISHED,
    /// CLOSE-WAIT or FIN-WAIT-2 (no FIN of ours to send), nothing queued past
    /// SND.NXT, nothing SACKed, no loss recovery, no RST, ACK, window probe or
    /// keepalive pending, and the persist timer idle. The stack then skips that
    /// call.
    pub(crate) fn may_transmit_more(&self) -> bool {
        !(matches!(self.state, State::Established | State::CloseWait | State::FinWait2)
            && (self.send_queue.end() - self.snd_nxt) <= 0
            && !self.ack_now
            && self.reset_out.is_none()
            && !self.probe_pending
            && !self.keepalive_pending
            && !self.in_recovery
            && self.scoreboard.is_empty()
            && !self.timers.is_armed(Timer::Persist))
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run, if any timer is
    /// armed: retransmission, delayed ACK, persist (zero-window probe), TIME-WAIT
    /// or keepalive.
    pub fn poll_at(&self) -> Option<Instant> {
        self.timers.next().and_then(|t| self.instant(t))
    }

    /// [`poll_at`](Self::poll_at) in ticks.
    pub(crate) fn deadline(&self) -> Option<Ticks> {
        self.timers.next()
    }

    /// The queued RST, which the caller checked is there.
    #[cold]
    fn transmit_reset(&mut self, now: Ticks) -> SegmentHeader {
        let repr = self.reset_out.take().expect("an RST is queued");
        if self.closed_event_pending {
            self.closed_event_pending = false;
            self.push_event(TcpEvent::Closed);
        }
        let seg = self.split_options(repr);
        self.sent(seg, now)
    }

    /// The SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), when SND.NXT is at the ISS.
    /// The caller checked that SND.NXT is at the ISS.
    fn transmit_syn(&mut self, now: Ticks) -> SegmentHeader {
        let mut seg = self.plain_header(self.iss, TcpFlags::SYN);
        // The window of a SYN is never scaled.
        seg.window_len = self.recv_buffer.free().min(0xffff) as u16;
        seg.more_options = true;
        self.tx_options = TcpRepr {
            max_seg_size: Some(self.config.mss),
            window_scale: self.offer_window_scale.then(|| self.config.window_shift()),
            sack_permitted: self.offer_sack,
            ..TcpRepr::default()
        };
        let retransmission = self.snd_max != self.iss;
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.iss + 1;
        if retransmission {
            self.stats.retransmits += 1;
            self.ts.last_rxt = Some(self.ts.clock(now));
        } else {
            self.rtt_sample = Some((self.iss + 1, now));
        }
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now.add_nanos(self.rtt.rto_nanos()));
        }
        self.sent(seg, now)
    }

    /// Builds the segment [`plan_data`](Self::plan_data) chose.
    fn transmit_data(&mut self, plan: DataPlan, now: Ticks) -> SegmentHeader {
        match plan {
            DataPlan::BareAck => {
                let seg = self.plain_header(self.bare_ack_seq(), TcpFlags::ACK);
                self.sent(seg, now)
            }
            DataPlan::Data { seq, len, fin, probe } => self.data_segment(seq, len, fin, probe, now),
            DataPlan::Keepalive => {
                self.stats.keepalive_probes += 1;
                let seg = self.plain_header(self.snd_nxt - 1, TcpFlags::ACK);
                self.sent(seg, now)
            }
            DataPlan::Recovery { seq, len, fin } => {
                let seg_end = seq + len + usize::from(fin);
                if seq.lt(self.snd_max) {
                    self.high_rxt = self.high_rxt.max(seg_end);
                }
                let segment = self.data_segment(seq, len, fin, false, now);
                self.snd_nxt = self.snd_max;
                segment
            }
        }
    }

    /// Decides what [`transmit_data`](Self::transmit_data) sends: data, FIN, a
    /// window probe, or a bare ACK; `None` for nothing. (Split from building the
    /// segment so that "nothing to send", the common answer, moves no segment.)
    fn plan_data(&mut self) -> Option<DataPlan> {
        if std::mem::take(&mut self.keepalive_pending) {
            return Some(DataPlan::Keepalive);
        }
        if self.in_recovery {
            if let Some(plan) = self.plan_recovery() {
                return Some(plan);
            }
            if !self.ack_now {
                return None;
            }
            return Some(DataPlan::BareAck);
        }
        // Going back after a timeout: skip what the peer has SACKed since.
        if let Some(end) = self.scoreboard.sacked_until(self.snd_nxt) {
            self.snd_nxt = end;
        }
        let data_end = self.send_queue.end();
        let unsent = (data_end - self.snd_nxt).max(0) as usize;
        let in_flight = (self.snd_nxt - self.snd_una).max(0) as usize;
        let window = self.snd_wnd.min(self.send_window_limit());
        let usable = window.saturating_sub(in_flight);
        let mut len = unsent.min(usable).min(self.snd_mss);
        if let Some(sacked) = self.scoreboard.next_sacked(self.snd_nxt) {
            len = len.min((sacked - self.snd_nxt).max(0) as usize);
        }

        let mut probe = false;
        if self.probe_pending {
            self.probe_pending = false;
            if len == 0 && unsent > 0 && self.snd_wnd == 0 {
                len = 1;
                probe = true;
            }
        }
        if !probe && len > 0 && len < self.snd_mss && in_flight > 0 {
            // Sender SWS avoidance (RFC 9293 §3.8.6.2.1): no small segment cut by the
            // window while an ACK is still to come, unless it is a good part of the
            // largest window the peer offered.
            let window_limited = len < unsent && len < self.max_snd_wnd / 2;
            // Nagle (RFC 896): no small segment at all while data is unacknowledged,
            // except the last one before a FIN.
            let nagle = self.config.nagle && !self.fin_queued;
            if window_limited || nagle {
                len = 0;
            }
        }
        let fin = self.closing() && self.fin_queued && !probe && self.snd_nxt + len == data_end;

        if len == 0 && !fin {
            if !self.ack_now {
                return None;
            }
            return Some(DataPlan::BareAck);
        }
        let seq = self.snd_nxt;
        if !probe {
            self.snd_nxt = seq + len + usize::from(fin);
        }
        Some(DataPlan::Data { seq, len, fin, probe })
    }

    /// In fast recovery: the next segment RFC 6675 NextSeg picks, while
    /// `cwnd - pipe` leaves room for one (the fast retransmit itself goes out
    /// whatever the window).
    fn plan_recovery(&mut self) -> Option<DataPlan> {
        let forced = std::mem::take(&mut self.rxt_forced);
        if !forced && self.cc.cwnd().saturating_sub(self.pipe()) < self.snd_mss {
            return None;
        }
        let (seq, end) = self.next_seg()?;
        let data_end = self.send_queue.end();
        let len = ((end.min(data_end) - seq).max(0) as usize).min(self.snd_mss);
        let fin = self.closing() && self.fin_queued && seq + len == data_end && end.gt(data_end);
        if len == 0 && !fin {
            return None;
        }
        Some(DataPlan::Recovery { seq, len, fin })
    }

    /// Whether our FIN may go out (after the data) in this state.
    fn closing(&self) -> bool {
        matches!(
            self.state,
            State::FinWait1 | State::Closing | State::LastAck
        )
    }

    /// A segment with `len` bytes from `seq` and maybe the FIN, with the
    /// bookkeeping of sending it: retransmission count, RTT timing (Karn: nothing
    /// retransmitted is timed, and retransmitting below the timed segment's end
    /// cancels the measurement), the retransmission timer, SND.MAX.
    #[inline(always)]
    fn data_segment(
        &mut self,
        seq: SeqNumber,
        len: usize,
        fin: bool,
        probe: bool,
        now: Ticks,
    ) -> SegmentHeader {
        let data_end = self.send_queue.end();
        let mut flags = TcpFlags::ACK;
        if len > 0 && seq + len == data_end {
            flags |= TcpFlags::PSH;
        }
        if fin {
            flags |= TcpFlags::FIN;
        }
        let end = seq + len + usize::from(fin);
        let retransmission = seq.lt(self.snd_max);
        if retransmission {
            self.stats.retransmits += 1;
            self.ts.last_rxt = Some(self.ts.clock(now));
            if self.rtt_sample.is_some_and(|(timed, _)| seq.lt(timed)) {
                self.rtt_sample = None;
            }
        }
        if !probe {
            if !retransmission && self.rtt_sample.is_none() {
                self.rtt_sample = Some((end, now));
            }
            if !self.timers.is_armed(Timer::Retransmit) {
                self.timers.set(Timer::Retransmit, now.add_nanos(self.rtt.rto_nanos()));
            }
        }
        self.snd_max = self.snd_max.max(end);
        self.stats.bytes_sent += len as u64;
        // What the queue holds from `seq` on (all of `len` but for a FIN-only
        // segment's empty payload).
        let mut seg = self.plain_header(seq, flags);
        seg.payload_seq = seq;
        seg.payload_len = self.send_queue.available(seq, len);
        self.sent(seg, now)
    }

    /// The sequence number of a segment without data: one the peer finds acceptable
    /// whatever it has received. The peer's RCV.NXT lies between SND.UNA and
    /// SND.MAX; after a timeout SND.NXT has gone back and may be behind it, and a
    /// bare ACK behind RCV.NXT is dropped as old (two connections both going back
    /// would then never hear each other's ACKs). SND.MAX is inside the window the
    /// peer offered, except after a probe past a zero window: then SND.UNA, which is
    /// what the peer's zero-window ACK said RCV.NXT was.
    fn bare_ack_seq(&self) -> SeqNumber {
        if self.snd_wnd == 0 {
            self.snd_una
        } else {
            self.snd_max
        }
    }

    /// The header [`header`](Self::header) gives for `seq` and `flags`, without
    /// options, and no payload (`payload_seq` SND.UNA).
    #[inline]
    fn plain_header(&self, seq: SeqNumber, flags: TcpFlags) -> SegmentHeader {
        bare_segment(&self.header(seq, flags), false, self.snd_una)
    }

    /// `repr` (no payload) as a [`SegmentHeader`], its options other than
    /// timestamps kept in `tx_options` if it has any.
    fn split_options(&mut self, repr: TcpRepr<'static>) -> SegmentHeader {
        let more_options = repr.max_seg_size.is_some()
            || repr.window_scale.is_some()
            || repr.sack_permitted
            || repr.sack_ranges.iter().any(Option::is_some);
        if more_options {
            self.tx_options = repr;
        }
        bare_segment(&repr, more_options, self.snd_una)
    }

    /// Bookkeeping for every segment handed out: an ACK in it satisfies any pending
    /// one, and its window is what the peer now believes. Adds the timestamps
    /// option: offered on our SYN, then on every segment once both SYNs carried it
    /// (RSTs included, as RFC 7323 §3.2 recommends). Adds SACK blocks to a plain
    /// ACK while data is held out of order (kept in `tx_options`).
    ///
    /// Inlined into its callers, so that the header is filled in place instead of
    /// being passed in and copied back out (about 30 instructions a segment).
    #[inline(always)]
    fn sent(&mut self, mut seg: SegmentHeader, now: Ticks) -> SegmentHeader {
        self.stats.segments_sent += 1;
        let syn = seg.flags.contains(TcpFlags::SYN);
        let offer = self.ts.offer && (seg.ack_number.is_none() || self.ts.enabled);
        if (syn && offer) || (!syn && self.ts.enabled) {
            // TSecr is only meaningful with ACK (RFC 7323 §3.2): zero on a SYN.
            let tsecr = if seg.ack_number.is_some() {
                self.ts.recent
            } else {
                0
            };
            seg.timestamp = Some((self.ts.clock(now), tsecr));
        }
        if let Some(ack) = seg.ack_number {
            self.ts.last_ack_sent = ack;
        }
        let plain_ack = seg.ack_number.is_some()
            && !seg.flags.intersects(TcpFlags::RST | TcpFlags::SYN);
        // SACK blocks only describe data held out of order (usually none).
        if self.sack_ok && plain_ack && self.recv_buffer.has_out_of_order() {
            seg.more_options = self.add_sack_blocks(seg);
        }
        if seg.ack_number.is_some() && !seg.flags.contains(TcpFlags::RST) {
            self.ack_now = false;
            self.unacked_bytes = 0;
            self.timers.stop(Timer::DelayedAck);
            let shift = if syn {
                0
            } else {
                self.rcv_wscale
            };
            self.rcv_adv = self.rcv_nxt + (usize::from(seg.window_len) << shift);
        }
        seg
    }

    /// Puts SACK blocks on `seg` (kept with its other options in `tx_options`).
    /// The segment was sized for the send MSS: SACK blocks on a data segment must
    /// fit in what the payload left (RFC 6691), or the frame would exceed the MTU.
    /// The first blocks (the latest arrivals) stay. Returns the segment's
    /// `more_options`. (`seg` is taken by value: a reference would keep the hot
    /// path's header in memory, copied out field by field.)
    #[cold]
    fn add_sack_blocks(&mut self, seg: SegmentHeader) -> bool {
        let mut repr = self.segment_repr(&seg);
        repr.sack_ranges = self.sack_blocks();
        if seg.payload_len > 0 {
            let room = self.snd_mss.saturating_sub(seg.payload_len);
            let mut n = repr.sack_ranges.iter().flatten().count();
            while n > 0 && repr.options_len() > room {
                n -= 1;
                repr.sack_ranges[n] = None;
            }
        }
        let blocks = repr.sack_ranges.iter().flatten().count();
        self.stats.sack_blocks_sent += blocks as u64;
        if blocks > 0 || seg.more_options {
            self.tx_options = repr;
            return true;
        }
        false
    }

    /// Copies `len` bytes of the send queue from `seq` to the end of `out` and
    /// returns their partial checksum (RFC 1071), for a
    /// [`SegmentHeader`] from [`poll_transmit_header`](Self::poll_transmit_header).
    ///
    /// With `summed` false (the device computes TCP checksums) the bytes are only
    /// copied, and the result is 0.
    pub(crate) fn copy_payload<O: crate::chunk::FrameOut>(&self, seq: SeqNumber, len: usize, out: &mut O, summed: bool) -> u32 {
        self.send_queue.copy_out(seq, len, out, summed)
    }

    /// Arms the persist timer when data waits behind a zero window with nothing in
    /// flight to bring a window update (RFC 9293 §3.8.6.1).
    fn arm_persist(&mut self, now: Ticks) {
        if !self.state.is_synchronized() {
            return;
        }
        let waiting = self.send_queue.end().gt(self.snd_nxt);
        if self.snd_wnd == 0 && waiting && self.snd_una == self.snd_nxt {
            if !self.timers.is_armed(Timer::Persist) {
                self.timers
                    .set(Timer::Persist, now.add(self.persist_interval()));
            }
        } else if self.timers.is_armed(Timer::Persist) && self.snd_wnd > 0 {
            self.timers.stop(Timer::Persist);
            self.persist_backoff = 0;
        }
    }

    /// The sequence number of our FIN, if `close` was called: right after the
    /// queued data.
    pub(super) fn fin_seq(&self) -> Option<SeqNumber> {
        self.fin_queued.then(|| self.send_queue.end())
    }
}

/// The [`SegmentHeader`] of `repr`'s plain fields, with no payload (`payload_seq`
/// is where one would start: SND.UNA).
#[inline]
fn bare_segment(repr: &TcpRepr<'static>, more_options: bool, payload_seq: SeqNumber) -> SegmentHeader {
    SegmentHeader {
        seq_number: repr.seq_number,
        ack_number: repr.ack_number,
        window_len: repr.window_len,
        flags: repr.flags,
        timestamp: repr.timestamp,
        more_options,
        payload_seq,
        payload_len: 0,
    }
}
