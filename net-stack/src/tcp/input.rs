//! Segment arrival: RFC 9293 §3.10.7, "SEGMENT ARRIVES".
//!
//! The steps, in the RFC's order: the CLOSED and SYN-SENT special cases; then, for
//! every other state, the sequence acceptability test (four cases) with trimming to
//! the window, the RST check, the SYN check, ACK processing (including the state
//! changes it causes while closing), and finally the segment text and the FIN.

use std::time::Instant;

use bytes::Bytes;

use super::connection::Connection;
use super::rst::rst_for;
use super::timers::Timer;
use super::{State, TcpError, TcpEvent};
use crate::time::{duration_nanos, Ticks};
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

/// A received segment's data as the stack has it: a slice of a shared frame
/// ([`Bytes`], kept without a copy), or bytes of a borrowed frame (`&[u8]`, copied
/// into the receive buffer).
pub(crate) trait SegmentData {
    /// How many bytes.
    fn len(&self) -> usize;
    /// The bytes, if they are borrowed (and must be copied to be kept).
    fn lent(&self) -> Option<&[u8]>;
    /// The bytes as a [`Bytes`]: itself, or a copy of the borrowed bytes.
    fn into_bytes(self) -> Bytes;
}

impl SegmentData for Bytes {
    #[inline(always)]
    fn len(&self) -> usize {
        Bytes::len(self)
    }
    #[inline(always)]
    fn lent(&self) -> Option<&[u8]> {
        None
    }
    #[inline(always)]
    fn into_bytes(self) -> Bytes {
        self
    }
}

impl SegmentData for &[u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    #[inline(always)]
    fn lent(&self) -> Option<&[u8]> {
        Some(self)
    }
    #[inline]
    fn into_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

/// The acceptability test of RFC 9293 §3.10.7.4: may a segment of `len` sequence
/// numbers at `seq` be processed, given the receive window `[rcv_nxt, rcv_nxt + wnd)`?
pub(super) fn acceptable(seq: SeqNumber, len: usize, rcv_nxt: SeqNumber, wnd: usize) -> bool {
    match (len, wnd) {
        (0, 0) => seq == rcv_nxt,
        (0, _) => seq.within(rcv_nxt, wnd),
        (_, 0) => false,
        _ => seq.within(rcv_nxt, wnd) || (seq + (len - 1)).within(rcv_nxt, wnd),
    }
}

/// The header fields of a segment that carries no option but timestamps: all
/// that header prediction and the predicted path read.
///
/// The stack's one-pass receive path fills this from the frame instead of a whole
/// [`TcpRepr`] (a third of the size, and no SACK blocks or other options to set
/// and compare) and hands it to [`Connection::handle_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHead {
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: SeqNumber,
    /// The acknowledgment number, present exactly when ACK is set.
    pub(crate) ack: Option<SeqNumber>,
    /// The window field, unscaled.
    pub(crate) window: u16,
    pub(crate) flags: TcpFlags,
    /// (TSval, TSecr).
    pub(crate) timestamp: Option<(u32, u32)>,
}

impl SegmentHead {
    /// The head of `seg` (its other options, SACK blocks included, are not kept).
    pub(super) fn of(seg: &TcpRepr<'_>) -> SegmentHead {
        SegmentHead {
            src_port: seg.src_port,
            dst_port: seg.dst_port,
            seq: seg.seq_number,
            ack: seg.ack_number,
            window: seg.window_len,
            flags: seg.flags,
            timestamp: seg.timestamp,
        }
    }

    /// The segment as a [`TcpRepr`] without options but timestamps and with an
    /// empty `payload` field (connections read the data from the `Bytes`).
    fn repr(&self) -> TcpRepr<'static> {
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq_number: self.seq,
            ack_number: self.ack,
            window_len: self.window,
            flags: self.flags,
            timestamp: self.timestamp,
            ..TcpRepr::default()
        }
    }
}

/// What ACK processing needs from a segment besides its numbers.
#[derive(Debug, Clone, Copy)]
struct AckInfo {
    /// The SACK blocks it carries.
    sack: [Option<(u32, u32)>; 3],
    /// It could be a duplicate ACK: no data, SYN or FIN, and the same window.
    maybe_duplicate: bool,
    /// The echoed timestamp, when timestamps are in use.
    tsecr: Option<u32>,
}

impl Connection {
    /// Processes a segment that arrived for this connection.
    ///
    /// The stack has verified the checksum and matched the 4-tuple. `payload` is the
    /// segment's data as a zero-copy [`Bytes`] (the same bytes as `seg.payload`,
    /// which is not read); received data is kept as slices of it.
    ///
    /// Anything a peer can send is handled without panicking: unacceptable segments
    /// are dropped, answered with an ACK or an RST as RFC 9293 says. In CLOSED, every
    /// segment but an RST is answered with an RST ([`rst_for`]).
    pub fn handle_segment(&mut self, now: Instant, seg: &TcpRepr<'_>, payload: Bytes) {
        self.handle_segment_with(self.ticks(now), seg, payload, true);
    }

    /// [`handle_segment`](Self::handle_segment) with `now` in ticks.
    pub(crate) fn handle_segment_at(&mut self, now: Ticks, seg: &TcpRepr<'_>, payload: Bytes) {
        self.handle_segment_with(now, seg, payload, true);
    }

    /// [`handle_segment`](Self::handle_segment) that never takes the header
    /// prediction path: what the tests compare that path with.
    #[cfg(test)]
    pub(super) fn handle_segment_general(&mut self, now: Instant, seg: &TcpRepr<'_>, payload: Bytes) {
        self.handle_segment_with(self.ticks(now), seg, payload, false);
    }

    /// [`handle_segment`](Self::handle_segment) for a segment with no option but
    /// timestamps, given as its [`SegmentHead`]: the same processing, without
    /// building a [`TcpRepr`] unless header prediction fails. `now` is in ticks.
    /// Borrowed data is copied only if kept: a predicted segment's into the
    /// receive buffer, any other's into a [`Bytes`] for the general path.
    pub(crate) fn handle_head<D: SegmentData>(&mut self, now: Ticks, head: &SegmentHead, payload: D) {
        if self.state == State::Established && self.predicted_head(head, payload.len()) {
            self.stats.segments_received += 1;
            self.on_predicted(now, head, payload);
            // A predicted segment leaves the connection in ESTABLISHED.
            self.restart_keepalive(now);
        } else {
            self.handle_head_general(now, head, payload.into_bytes());
        }
    }

    /// [`handle_head`](Self::handle_head) for a segment prediction said no to:
    /// straight to the general path (out of line, so that the predicted path's code
    /// stays small).
    #[inline(never)]
    fn handle_head_general(&mut self, now: Ticks, head: &SegmentHead, payload: Bytes) {
        self.handle_segment_with(now, &head.repr(), payload, false);
    }

    #[inline(always)]
    fn handle_segment_with(&mut self, now: Ticks, seg: &TcpRepr<'_>, payload: Bytes, predict: bool) {
        self.stats.segments_received += 1;
        match self.state {
            State::Closed | State::Listen => {
                let seg = TcpRepr {
                    payload: &payload,
                    ..*seg
                };
                if let Some(reset) = rst_for(&seg) {
                    self.reset_out = Some(reset);
                }
            }
            State::SynSent => self.on_syn_sent(now, seg),
            State::Established if predict && self.predicted(seg, payload.len()) => {
                self.on_predicted(now, &SegmentHead::of(seg), payload)
            }
            _ => self.on_segment(now, seg, payload),
        }
        if self.state != State::Closed {
            self.restart_keepalive(now);
        }
    }

    /// Header prediction (Van Jacobson's fast path; RFC 9293 §3.10.7.4 reduced to
    /// its common case): in ESTABLISHED, a segment with ACK (and maybe PSH) and
    /// nothing else, exactly at RCV.NXT, whose data fits the window, that
    /// acknowledges nothing unsent, passes PAWS without ado and carries no SACK
    /// blocks, while no loss recovery is under way and nothing is held out of
    /// order or after a FIN. For such a segment most steps of
    /// [`on_segment`](Self::on_segment) are known to do nothing; [`on_predicted`]
    /// does the rest, with the same functions, so the connection ends up exactly
    /// where the general path would leave it (the tests in `tests/prediction.rs`
    /// check that). A bare ACK that acknowledges nothing new is a possible
    /// duplicate ACK and takes the general path.
    ///
    /// [`on_predicted`]: Self::on_predicted
    pub(super) fn predicted(&self, seg: &TcpRepr<'_>, len: usize) -> bool {
        seg.sack_ranges == [None; 3] && self.predicted_head(&SegmentHead::of(seg), len)
    }

    /// [`predicted`](Self::predicted) for a segment without SACK blocks.
    #[inline]
    fn predicted_head(&self, seg: &SegmentHead, len: usize) -> bool {
        let Some(ack) = seg.ack else {
            return false;
        };
        seg.flags.bits() & !(TcpFlags::ACK.bits() | TcpFlags::PSH.bits()) == 0
            && seg.seq == self.rcv_nxt
            && (!self.ts.enabled || seg.timestamp.is_some_and(|(tsval, _)| self.ts.in_order(tsval)))
            && len <= self.rcv_wnd()
            // SND.UNA <= ack <= SND.MAX, and new data acknowledged unless data
            // came: the differences say it with fewer comparisons.
            && (ack - self.snd_una) >= 0
            && (self.snd_max - ack) >= 0
            && (len > 0 || ack != self.snd_una)
            && !self.in_recovery
            && self.dupacks == 0
            && self.scoreboard.is_empty()
            && self.remote_fin.is_none()
            && !self.recv_buffer.has_out_of_order()
    }

    /// A segment [`predicted`](Self::predicted) accepted: TS.Recent, the ACK, the
    /// window, the data. What the general path does with such a segment, less the
    /// steps that the conditions of prediction make void.
    fn on_predicted<D: SegmentData>(&mut self, now: Ticks, seg: &SegmentHead, payload: D) {
        let seq = seg.seq;
        let Some(ack) = seg.ack else {
            return;
        };
        let mut tsecr = None;
        if let (true, Some((tsval, echo))) = (self.ts.enabled, seg.timestamp) {
            self.ts.update_recent(seq, tsval, now);
            tsecr = Some(echo);
        }
        if self.snd_una.lt(ack) {
            self.on_predicted_ack(now, ack, tsecr);
        }
        if self.snd_wl1.lt(seq) || (self.snd_wl1 == seq && self.snd_wl2.le(ack)) {
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.set_send_window(seg.window, false);
        }
        self.persist_probes = 0;
        if payload.len() > 0 {
            self.on_predicted_data(now, payload);
        }
    }

    /// [`on_new_ack`](Self::on_new_ack) for a predicted segment: no recovery under
    /// way, no duplicate ACKs counted and nothing SACKed, so of the recovery
    /// bookkeeping only the growth of the congestion window is left.
    /// (Inlined into both kinds of `on_predicted`, as it was into the one there
    /// was before segments could be borrowed.)
    #[inline(always)]
    fn on_predicted_ack(&mut self, now: Ticks, ack: SeqNumber, tsecr: Option<u32>) {
        debug_assert!(!self.in_recovery && self.dupacks == 0 && self.scoreboard.is_empty());
        self.sample_rtt(now, ack, tsecr);
        let released = self.release_acked(ack);
        if released > 0 {
            self.cc.on_ack(released, self.rtt.srtt_nanos(), now);
        }
        self.after_new_ack(now, released);
    }

    /// [`on_data`](Self::on_data) for a predicted segment: in ESTABLISHED, exactly
    /// at RCV.NXT, within the window, no FIN seen and nothing held out of order, so
    /// all of `data` is appended and no immediate ACK is called for.
    fn on_predicted_data<D: SegmentData>(&mut self, now: Ticks, data: D) {
        let len = data.len();
        match data.lent() {
            Some(lent) => self.recv_buffer.append_slice(lent),
            None => self.recv_buffer.append(data.into_bytes()),
        }
        self.rcv_nxt += len;
        self.stats.bytes_received += len as u64;
        self.unacked_bytes += len;
        self.push_event(TcpEvent::Readable);
        self.schedule_ack(now, false);
    }

    /// SYN-SENT (RFC 9293 §3.10.7.3): a SYN-ACK completes the handshake, a bare SYN
    /// means simultaneous open, an RST that acknowledges our SYN means refused.
    fn on_syn_sent(&mut self, now: Ticks, seg: &TcpRepr<'_>) {
        let flags = seg.flags;
        if let Some(ack) = seg.ack_number {
            if !(self.snd_una.lt(ack) && ack.le(self.snd_max)) {
                if !flags.contains(TcpFlags::RST) {
                    self.reset_out = Some(self.reset_for_ack(ack));
                }
                return;
            }
        }
        if flags.contains(TcpFlags::RST) {
            if seg.ack_number.is_some() {
                self.fail(TcpError::Refused, false);
            }
            return;
        }
        if !flags.contains(TcpFlags::SYN) {
            return;
        }
        self.take_peer_syn(seg, now);
        match seg.ack_number {
            Some(ack) => {
                self.on_new_ack(now, ack, seg.timestamp.map(|(_, tsecr)| tsecr));
                self.establish();
                self.ack_now = true;
            }
            None => {
                // Simultaneous open: our SYN goes out again, now as a SYN-ACK.
                self.state = State::SynReceived;
                self.snd_nxt = self.iss;
                self.rtt_sample = None;
            }
        }
    }

    /// `<SEQ=SEG.ACK><CTL=RST>`: the answer to an unacceptable ACK before the
    /// connection is synchronized.
    fn reset_for_ack(&self, ack: SeqNumber) -> TcpRepr<'static> {
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: ack,
            flags: TcpFlags::RST,
            ..TcpRepr::default()
        }
    }

    /// SYN-RECEIVED and every synchronized state (RFC 9293 §3.10.7.4).
    fn on_segment(&mut self, now: Ticks, seg: &TcpRepr<'_>, payload: Bytes) {
        let mut flags = seg.flags;
        if flags.contains(TcpFlags::SYN | TcpFlags::RST) {
            return;
        }
        if self.ts.enabled && !flags.contains(TcpFlags::RST) {
            match seg.timestamp {
                // RFC 7323 §3.2: once negotiated, a segment without the option
                // is dropped.
                None => return,
                // PAWS (RFC 7323 §5.3): an old duplicate is dropped and answered
                // with an ACK.
                Some((tsval, _)) if self.ts.paws_rejects(tsval, now) => {
                    self.stats.paws_drops += 1;
                    self.ack_now = true;
                    return;
                }
                Some(_) => {}
            }
        }
        let mut seq = seg.seq_number;
        let mut data = payload;
        let syn_window = flags.contains(TcpFlags::SYN);

        // The peer's SYN again: its SYN-ACK (simultaneous open, or our ACK of it was
        // lost) or its SYN (our SYN-ACK was lost). Its data is not kept.
        if syn_window && seq == self.irs {
            if self.state == State::SynReceived && seg.ack_number.is_none() {
                self.snd_nxt = self.iss;
                return;
            }
            flags.remove(TcpFlags::SYN | TcpFlags::FIN);
            seq += 1;
            data = Bytes::new();
            if self.state != State::SynReceived {
                self.ack_now = true;
            }
        }

        // First: the sequence number.
        let fin = flags.contains(TcpFlags::FIN);
        let seg_len = data.len() + usize::from(flags.contains(TcpFlags::SYN)) + usize::from(fin);
        let wnd = self.rcv_wnd();
        if !acceptable(seq, seg_len, self.rcv_nxt, wnd) {
            if flags.contains(TcpFlags::RST) {
                return;
            }
            if flags.contains(TcpFlags::SYN) && self.state.is_synchronized() {
                // RFC 5961 §4: any SYN gets a challenge ACK (this one sent below).
                self.stats.challenge_acks += 1;
            }
            // A zero window accepts nothing, but the ACK of a segment right at the
            // window (a window probe) is still news (RFC 9293 §3.10.7.4).
            if wnd == 0 && seq == self.rcv_nxt && !flags.contains(TcpFlags::SYN) {
                if let Some(ack) = seg.ack_number {
                    let info = AckInfo {
                        sack: seg.sack_ranges,
                        maybe_duplicate: false,
                        tsecr: self.tsecr(seg),
                    };
                    self.on_ack(now, seq, ack, seg.window_len, syn_window, info);
                }
            }
            if self.state == State::TimeWait && fin {
                // A retransmitted FIN: our ACK was lost. Restart the 2*MSL wait.
                self.timers
                    .set(Timer::TimeWait, now.add(self.config.time_wait));
            }
            if self.state != State::Closed {
                self.invalid_segment_ack(now);
            }
            return;
        }

        // RFC 7323 §4.3: an acceptable segment may update TS.Recent.
        if let (true, Some((tsval, _))) = (self.ts.enabled, seg.timestamp) {
            self.ts.update_recent(seg.seq_number, tsval, now);
        }

        // Second: RST (RFC 5961 §3.2). Only one exactly at RCV.NXT resets; one
        // elsewhere in the window may be a blind attack and gets a challenge ACK:
        // a peer that really reset answers it with an RST at the right number.
        if flags.contains(TcpFlags::RST) {
            if seq == self.rcv_nxt {
                return self.on_reset();
            }
            self.challenge_ack(now);
            return;
        }

        // Fourth: a SYN in the window. Answer with a challenge ACK and drop it
        // (RFC 9293 §3.10.7.4, RFC 5961 §4).
        if flags.contains(TcpFlags::SYN) {
            self.challenge_ack(now);
            return;
        }

        // Trim to the window: bytes before RCV.NXT are old, bytes past the right
        // edge do not fit (a FIN just past the data is kept: it takes no room).
        let mut fin = fin;
        let trimmed_front = seq.lt(self.rcv_nxt);
        if trimmed_front {
            let cut = (self.rcv_nxt - seq) as usize;
            if cut > data.len() {
                fin = false;
            }
            data = data.slice(cut.min(data.len())..);
            seq = self.rcv_nxt;
        }
        let room = ((self.rcv_nxt + wnd) - seq).max(0) as usize;
        if data.len() > room {
            data.truncate(room);
            fin = false;
        }

        // Fifth: the ACK field. Segments without one are dropped.
        let Some(ack) = seg.ack_number else {
            return;
        };
        let info = AckInfo {
            sack: seg.sack_ranges,
            // RFC 5681 §2: no data, no SYN or FIN, the window unchanged.
            maybe_duplicate: seg_len == 0
                && !syn_window
                && (usize::from(seg.window_len) << self.snd_wscale) == self.snd_wnd,
            tsecr: self.tsecr(seg),
        };
        if !self.on_ack(now, seq, ack, seg.window_len, syn_window, info) {
            return;
        }

        // Seventh and eighth: the text and the FIN.
        if !data.is_empty() || fin {
            self.on_data(now, seq, data, fin, trimmed_front);
        }
    }

    /// RFC 5961: answers a suspicious segment with an ACK and counts it, within the
    /// rate limit of [`invalid_segment_ack`](Self::invalid_segment_ack).
    fn challenge_ack(&mut self, now: Ticks) {
        self.stats.challenge_acks += 1;
        self.invalid_segment_ack(now);
    }

    /// An ACK in answer to a segment we cannot accept (out of the window, an ACK of
    /// data never sent, a challenge), at most one per `invalid_ack_interval`
    /// (RFC 5961 §7). Without the limit, two stacks that disagree about the
    /// sequence space — one of them fooled by a forged or corrupted segment — would
    /// answer each other's ACKs forever.
    fn invalid_segment_ack(&mut self, now: Ticks) {
        let due = self
            .last_invalid_ack
            .is_none_or(|t| now.since(t) >= duration_nanos(self.config.invalid_ack_interval));
        if due {
            self.last_invalid_ack = Some(now);
            self.ack_now = true;
        } else {
            self.stats.acks_rate_limited += 1;
        }
    }

    /// The TSecr of `seg` if timestamps are in use.
    fn tsecr(&self, seg: &TcpRepr<'_>) -> Option<u32> {
        seg.timestamp
            .filter(|_| self.ts.enabled)
            .map(|(_, tsecr)| tsecr)
    }

    /// A valid RST: the connection is gone (RFC 9293 §3.10.7.4, second).
    fn on_reset(&mut self) {
        match self.state {
            State::SynReceived => {
                let error = if self.active_open {
                    TcpError::Refused
                } else {
                    TcpError::Reset
                };
                self.fail(error, false);
            }
            State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                self.recv_buffer.clear();
                self.fail(TcpError::Reset, false);
            }
            _ => self.enter_closed(),
        }
    }

    /// ACK processing (RFC 9293 §3.10.7.4, fifth). Returns whether the rest of the
    /// segment should be processed.
    fn on_ack(
        &mut self,
        now: Ticks,
        seq: SeqNumber,
        ack: SeqNumber,
        window: u16,
        syn_window: bool,
        info: AckInfo,
    ) -> bool {
        if self.state == State::SynReceived {
            if !(self.snd_una.lt(ack) && ack.le(self.snd_max)) {
                self.reset_out = Some(self.reset_for_ack(ack));
                return false;
            }
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.set_send_window(window, syn_window);
            self.establish();
        }
        if ack.gt(self.snd_max) {
            // It acknowledges something not yet sent.
            self.invalid_segment_ack(now);
            return false;
        }
        // RFC 5961 §5.2: an ACK more than the largest window the peer offered
        // behind SND.UNA cannot come from the peer: drop the segment and ACK.
        let behind = self.snd_una - ack;
        if behind > 0 && behind as usize > self.max_snd_wnd {
            self.challenge_ack(now);
            return false;
        }
        if self.state.is_synchronized() {
            self.on_sack_blocks(&info.sack);
        }
        if self.snd_una.lt(ack) {
            self.on_new_ack(now, ack, info.tsecr);
        } else if info.maybe_duplicate && ack == self.snd_una && self.snd_una != self.snd_max {
            self.on_dup_ack();
        }
        if self.state.is_synchronized() {
            self.maybe_enter_recovery(now);
        }
        // The window, if this segment is newer than the one it last came from.
        if ack == self.snd_una
            && (self.snd_wl1.lt(seq) || (self.snd_wl1 == seq && self.snd_wl2.le(ack)))
        {
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.set_send_window(window, syn_window);
        }
        self.persist_probes = 0;

        let fin_acked = self.fin_seq().is_some_and(|fin| self.snd_una == fin + 1);
        match self.state {
            State::FinWait1 if fin_acked => self.state = State::FinWait2,
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => {
                self.enter_closed();
                return false;
            }
            _ => {}
        }
        true
    }

    /// Takes the peer's window field (scaled unless it comes from a SYN).
    fn set_send_window(&mut self, window: u16, syn_window: bool) {
        let shift = if syn_window { 0 } else { self.snd_wscale };
        self.snd_wnd = usize::from(window) << shift;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        if self.snd_wnd > 0 {
            // (Stopping an unarmed timer does nothing: the check saves the call.)
            if self.timers.is_armed(Timer::Persist) {
                self.timers.stop(Timer::Persist);
            }
            self.persist_backoff = 0;
            self.probe_pending = false;
        }
    }

    /// An ACK of new data (`SND.UNA < ack <= SND.MAX`): releases acknowledged bytes,
    /// takes an RTT sample, and restarts or stops the retransmission timer
    /// (RFC 6298 §5.2-5.3).
    ///
    /// The sample comes from the timed segment if the ACK covers it (measured on
    /// the caller's clock, so finer than a timestamp tick); otherwise, with
    /// timestamps, from the echoed `tsecr` (RFC 7323 §4.1), which identifies the
    /// transmission it answers and so is safe after retransmissions too.
    pub(super) fn on_new_ack(&mut self, now: Ticks, ack: SeqNumber, tsecr: Option<u32>) {
        self.sample_rtt(now, ack, tsecr);
        let released = self.release_acked(ack);
        self.recovery_on_new_ack(ack, released, now);
        self.after_new_ack(now, released);
    }

    /// The RTT sample of an ACK of new data (see [`on_new_ack`](Self::on_new_ack)).
    #[inline(always)]
    fn sample_rtt(&mut self, now: Ticks, ack: SeqNumber, tsecr: Option<u32>) {
        if let Some((end, sent)) = self.rtt_sample {
            if ack.ge(end) {
                self.rtt.sample_nanos(now.since(sent));
                self.rtt_sample = None;
                return;
            }
        }
        if let Some(rtt) = tsecr.and_then(|tsecr| self.ts.rtt(now, tsecr)) {
            self.rtt.sample_nanos(rtt);
        }
    }

    /// Moves SND.UNA (and SND.NXT if behind) to `ack` and releases the bytes
    /// acknowledged; returns how many.
    #[inline(always)]
    fn release_acked(&mut self, ack: SeqNumber) -> usize {
        self.snd_una = ack;
        if self.snd_una == self.snd_max {
            // Nothing retransmitted is outstanding any more.
            self.ts.last_rxt = None;
        }
        if self.snd_nxt.lt(ack) {
            self.snd_nxt = ack;
        }
        self.send_queue.ack_to(ack)
    }

    /// The end of an ACK of new data: the retransmission timer, `Writable`.
    #[inline(always)]
    fn after_new_ack(&mut self, now: Ticks, released: usize) {
        self.retransmits = 0;
        self.rto_recovery = false;
        if self.snd_una == self.snd_nxt {
            self.timers.stop(Timer::Retransmit);
        } else {
            self.timers.set(Timer::Retransmit, now.add_nanos(self.rtt.rto_nanos()));
        }
        if released > 0 && self.send_blocked && self.send_capacity() > 0 {
            self.send_blocked = false;
            self.push_event(TcpEvent::Writable);
        }
    }

    /// The handshake is complete.
    pub(super) fn establish(&mut self) {
        self.state = State::Established;
        self.retransmits = 0;
        self.push_event(TcpEvent::Connected);
        if self.fin_queued {
            // `close` was called in SYN-RECEIVED.
            self.state = State::FinWait1;
        }
    }

    /// Segment text and FIN (RFC 9293 §3.10.7.4, seventh and eighth). `seq` is at or
    /// after RCV.NXT and the data lies within the window.
    fn on_data(
        &mut self,
        now: Ticks,
        seq: SeqNumber,
        mut data: Bytes,
        fin: bool,
        trimmed_front: bool,
    ) {
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            // The peer's FIN was received already: nothing may follow it.
            return;
        }
        // Out-of-order data, and a retransmission that overlapped what we had, are
        // acknowledged at once (RFC 5681 §4.2).
        let mut immediate = trimmed_front || seq != self.rcv_nxt;
        if let Some(fin_seq) = self.remote_fin {
            // Nothing is taken past a FIN already seen.
            let limit = (fin_seq - seq).max(0) as usize;
            data.truncate(limit);
        }
        let data_len = data.len();
        if !data.is_empty() {
            let offset = self.recv_buffer.next() + (seq - self.rcv_nxt) as u64;
            let inserted = self.recv_buffer.insert(offset, data);
            if inserted.advanced == 0 && seq != self.rcv_nxt {
                self.note_out_of_order(offset);
            }
            if inserted.advanced > 0 {
                self.rcv_nxt += inserted.advanced;
                self.stats.bytes_received += inserted.advanced as u64;
                self.unacked_bytes += inserted.advanced;
                self.push_event(TcpEvent::Readable);
                // Filling a hole: ACK at once so the sender learns quickly.
                immediate |= inserted.had_out_of_order;
            }
        }
        if fin && self.remote_fin.is_none() {
            self.remote_fin = Some(seq + data_len);
            immediate = true;
        }
        if self.remote_fin == Some(self.rcv_nxt) && !self.fin_received {
            self.on_fin(now);
            immediate = true;
        }
        self.schedule_ack(now, immediate);
    }

    /// The peer's FIN, reached in order.
    fn on_fin(&mut self, now: Ticks) {
        self.rcv_nxt += 1;
        self.fin_received = true;
        self.push_event(TcpEvent::PeerClosed);
        match self.state {
            State::Established => self.state = State::CloseWait,
            // Had our FIN been acknowledged, we would be in FIN-WAIT-2.
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    /// Delayed ACKs (RFC 1122 §4.2.3.2, RFC 5681 §4.2): at once when asked to or
    /// when two full-sized segments are unacknowledged, otherwise within the delay.
    fn schedule_ack(&mut self, now: Ticks, immediate: bool) {
        let Some(delay) = self.config.ack_delay else {
            self.ack_now = true;
            return;
        };
        if immediate || self.unacked_bytes >= 2 * self.snd_mss {
            self.ack_now = true;
        } else if self.unacked_bytes > 0 && !self.timers.is_armed(Timer::DelayedAck) {
            self.timers.set(Timer::DelayedAck, now.add(delay));
        }
    }

    /// TIME-WAIT: wait 2*MSL for stray segments (the ACK of the peer's FIN is
    /// already pending or sent).
    fn enter_time_wait(&mut self, now: Ticks) {
        self.state = State::TimeWait;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::Persist);
        self.timers.stop(Timer::DelayedAck);
        self.timers
            .set(Timer::TimeWait, now.add(self.config.time_wait));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_acceptability_cases() {
        let rcv_nxt = SeqNumber(u32::MAX - 9);
        // Zero length, zero window: only exactly RCV.NXT.
        assert!(acceptable(rcv_nxt, 0, rcv_nxt, 0));
        assert!(!acceptable(rcv_nxt + 1, 0, rcv_nxt, 0));
        // Zero length, open window: anywhere inside it.
        assert!(acceptable(rcv_nxt + 19, 0, rcv_nxt, 20));
        assert!(!acceptable(rcv_nxt + 20, 0, rcv_nxt, 20));
        assert!(!acceptable(rcv_nxt - 1, 0, rcv_nxt, 20));
        // Data, zero window: never.
        assert!(!acceptable(rcv_nxt, 1, rcv_nxt, 0));
        // Data, open window: the first or the last byte inside it.
        assert!(acceptable(rcv_nxt - 5, 6, rcv_nxt, 20));
        assert!(!acceptable(rcv_nxt - 5, 5, rcv_nxt, 20));
        assert!(acceptable(rcv_nxt + 19, 100, rcv_nxt, 20));
        assert!(!acceptable(rcv_nxt + 20, 1, rcv_nxt, 20));
    }
}
