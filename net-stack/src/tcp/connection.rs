//! The connection: its state, how it opens, and the application's side of it.
//!
//! Segment arrival lives in `input.rs`, segment output in `output.rs`, timers in
//! `timers.rs`; they all work on the fields of [`Connection`] defined here.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::TcpConfig;
use super::congestion::{new_controller, Controller};
use super::events::EventSet;
use super::recv::RecvBuffer;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::send::SendQueue;
use super::timers::TimerTable;
use super::timestamps::{Timestamps, TS_OPTION_LEN};
use super::{State, TcpError, TcpEvent};
use crate::time::Ticks;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

/// The MSS assumed when the peer sends no MSS option (RFC 9293 §3.7.1).
pub(super) const DEFAULT_MSS: usize = 536;

/// The smallest peer MSS we honour: a smaller option is raised to this, so that a
/// peer cannot make us cut the stream into tiny segments.
pub(super) const MIN_PEER_MSS: usize = 64;

/// Counters and estimates of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Segments handed out by `poll_transmit` (retransmissions and RSTs included).
    pub segments_sent: u64,
    /// Segments fed to `handle_segment`, acceptable or not.
    pub segments_received: u64,
    /// Segments that carried already-sent sequence space again (SYN, data, FIN).
    pub retransmits: u64,
    /// Retransmission timer expiries.
    pub rto_fires: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes received in order (each byte counted once).
    pub bytes_received: u64,
    /// The smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// The current retransmission timeout, backoff included.
    pub rto: Duration,
    /// Fast retransmits: losses detected by duplicate ACKs or SACK (each starts a
    /// fast recovery).
    pub fast_retransmits: u64,
    /// Duplicate ACKs received (RFC 5681 §2).
    pub dup_acks: u64,
    /// SACK blocks received (valid or not).
    pub sack_blocks_received: u64,
    /// SACK blocks sent.
    pub sack_blocks_sent: u64,
    /// The congestion window in bytes (`usize::MAX` without congestion control).
    pub cwnd: usize,
    /// The slow-start threshold in bytes (`usize::MAX` until the first loss).
    pub ssthresh: usize,
    /// Challenge ACKs sent (RFC 5961): for an RST in the window but not exactly
    /// at RCV.NXT, a SYN in a synchronized state, or an ACK too far behind
    /// SND.UNA.
    pub challenge_acks: u64,
    /// Segments dropped by PAWS (RFC 7323 §5): their timestamp was older than the
    /// latest one taken.
    pub paws_drops: u64,
    /// Keepalive probes sent (RFC 1122 §4.2.3.6).
    pub keepalive_probes: u64,
    /// ACKs not sent in answer to unacceptable segments because one had just been
    /// sent (see [`TcpConfig::invalid_ack_interval`](super::TcpConfig)).
    pub acks_rate_limited: u64,
}

/// One TCP connection, as a sans-IO state machine (RFC 9293).
///
/// See the [module docs](super) for the order in which to call its methods.
///
/// Inside, time is counted in nanoseconds from an epoch: the `now` it was created
/// with, or, for a connection of a [`Stack`](crate::iface::Stack), the stack's
/// epoch. The methods that take an `Instant` convert it; one earlier than the
/// epoch counts as the epoch itself.
#[derive(Debug)]
pub struct Connection {
    pub(super) config: TcpConfig,
    /// What its [`Ticks`] count from.
    epoch: Instant,
    pub(super) state: State,
    pub(super) local: SocketAddrV4,
    pub(super) remote: SocketAddrV4,
    /// Whether we sent the first SYN (active or simultaneous open).
    pub(super) active_open: bool,

    // Send sequence space (RFC 9293 §3.3.1), plus `snd_max`: the highest sequence
    // number sent so far. `snd_nxt` goes back to `snd_una` on a timeout (go-back-N),
    // so anything sent below `snd_max` is a retransmission.
    pub(super) iss: SeqNumber,
    pub(super) snd_una: SeqNumber,
    pub(super) snd_nxt: SeqNumber,
    pub(super) snd_max: SeqNumber,
    /// The peer's window in bytes (scaled).
    pub(super) snd_wnd: usize,
    /// The largest window the peer has offered (for sender-side SWS avoidance).
    pub(super) max_snd_wnd: usize,
    pub(super) snd_wl1: SeqNumber,
    pub(super) snd_wl2: SeqNumber,
    /// The largest payload we send in one segment.
    pub(super) snd_mss: usize,
    /// The shift applied to the peer's window field (0 without window scaling).
    pub(super) snd_wscale: u8,
    pub(super) send_queue: SendQueue,
    /// `close` was called: a FIN follows the queued data.
    pub(super) fin_queued: bool,

    // Receive sequence space.
    pub(super) irs: SeqNumber,
    pub(super) rcv_nxt: SeqNumber,
    /// The right edge of the window we last advertised.
    pub(super) rcv_adv: SeqNumber,
    /// The shift applied to our window field (0 without window scaling).
    pub(super) rcv_wscale: u8,
    /// Whether our SYN (or SYN-ACK) carries the window scale option.
    pub(super) offer_window_scale: bool,
    pub(super) recv_buffer: RecvBuffer,
    /// The sequence number of the peer's FIN, once seen (maybe ahead of `rcv_nxt`).
    pub(super) remote_fin: Option<SeqNumber>,
    /// The peer's FIN has been reached in order.
    pub(super) fin_received: bool,

    // Acknowledgments.
    /// An ACK must go out with the next `poll_transmit`.
    pub(super) ack_now: bool,
    /// When an ACK last answered an unacceptable segment (rate limit, RFC 5961 §7).
    pub(super) last_invalid_ack: Option<Ticks>,
    /// In-order bytes received since our last ACK (delayed-ACK accounting).
    pub(super) unacked_bytes: usize,

    // Timers and retransmission.
    pub(super) timers: TimerTable,
    pub(super) rtt: RttEstimator,
    /// The segment being timed: the sequence number its ACK must reach, and when it
    /// left. Cleared on any retransmission (Karn's algorithm).
    pub(super) rtt_sample: Option<(SeqNumber, Ticks)>,
    /// Retransmission timeouts in a row (SYN or data).
    pub(super) retransmits: u32,
    /// After a timeout, one segment at a time until an ACK arrives.
    pub(super) rto_recovery: bool,
    /// The congestion window and slow-start threshold.
    pub(super) cc: Controller,
    /// Loss recovery (`recovery.rs`): duplicate ACKs in a row outside recovery.
    pub(super) dupacks: u32,
    /// In fast recovery (RFC 6582 / RFC 6675) until `recover` is acknowledged.
    pub(super) in_recovery: bool,
    /// SND.MAX when recovery (or the last timeout) started: no new recovery before
    /// it is acknowledged (RFC 6582 §3.2).
    pub(super) recover: SeqNumber,
    /// The highest sequence number retransmitted in this recovery (RFC 6675
    /// HighRxt; an exclusive end here).
    pub(super) high_rxt: SeqNumber,
    /// Data below this is taken as lost whatever the scoreboard says: the segment
    /// at SND.UNA when recovery starts, and after each partial ACK without SACK.
    pub(super) lost_hint: SeqNumber,
    /// Retransmit the next lost segment even if the window is full (the fast
    /// retransmit itself, and NewReno's partial-ACK retransmission).
    pub(super) rxt_forced: bool,
    /// Without SACK: bytes the duplicate ACKs in this recovery stand for (each
    /// one a segment that left the network).
    pub(super) reno_sacked: usize,
    /// Both SYNs carried SACK-permitted.
    pub(super) sack_ok: bool,
    /// Whether our SYN (or SYN-ACK) carries SACK-permitted.
    pub(super) offer_sack: bool,
    /// The timestamps option (RFC 7323): clock, TS.Recent, Last.ACK.sent.
    pub(super) ts: Timestamps,
    /// What the peer SACKed (sender side).
    pub(super) scoreboard: Scoreboard,
    /// Receiver side: stream offsets of the latest out-of-order arrivals, most
    /// recent first, so that SACK blocks come in the order RFC 2018 asks for.
    pub(super) sack_recent: [Option<u64>; 3],
    /// The persist timer fired: send one window probe.
    pub(super) probe_pending: bool,
    pub(super) persist_backoff: u32,
    /// Probes sent since the peer last acknowledged anything.
    pub(super) persist_probes: u32,
    /// The keepalive timer fired: send one probe.
    pub(super) keepalive_pending: bool,
    /// Keepalive probes sent since a segment last arrived.
    pub(super) keepalive_unanswered: u32,

    // The application's side.
    /// Events not yet taken by `poll_event`, at most one of each kind.
    pub(super) events: EventSet,
    pub(super) error: Option<TcpError>,
    pub(super) aborted: bool,
    /// `send` accepted less than offered: report `Writable` when room frees up.
    pub(super) send_blocked: bool,
    /// An RST (or RST-ACK) to send before anything else.
    pub(super) reset_out: Option<TcpRepr<'static>>,
    /// The options other than timestamps of the last segment handed out, when it
    /// had some (its `SegmentHeader::more_options`); only those fields are used.
    pub(super) tx_options: TcpRepr<'static>,
    /// CLOSED was entered while an RST was still queued: report `Closed` once it is
    /// out.
    pub(super) closed_event_pending: bool,
    /// The counters; its estimates (`srtt`, `rto`, `cwnd`, `ssthresh`) are not
    /// kept up to date: [`stats`](Self::stats) reads them from `rtt` and `cc`.
    pub(super) stats: ConnStats,
}

impl Connection {
    /// A connection in `state` with everything else at its starting value, made at
    /// `now` counted from `epoch`.
    fn new(
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        state: State,
        epoch: Instant,
        now: Ticks,
    ) -> Connection {
        let rtt = RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max);
        Connection {
            config: config.clone(),
            epoch,
            state,
            local,
            remote,
            active_open: state == State::SynSent,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_mss: usize::from(config.mss).clamp(1, DEFAULT_MSS),
            snd_wscale: 0,
            send_queue: SendQueue::new(iss + 1),
            fin_queued: false,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            rcv_wscale: 0,
            offer_window_scale: config.window_scaling,
            recv_buffer: RecvBuffer::new(config.recv_buffer),
            remote_fin: None,
            fin_received: false,
            ack_now: false,
            last_invalid_ack: None,
            unacked_bytes: 0,
            timers: TimerTable::default(),
            rtt,
            rtt_sample: None,
            retransmits: 0,
            rto_recovery: false,
            cc: new_controller(config.congestion, usize::from(config.mss).clamp(1, DEFAULT_MSS)),
            dupacks: 0,
            in_recovery: false,
            recover: iss,
            high_rxt: iss,
            lost_hint: iss,
            rxt_forced: false,
            reno_sacked: 0,
            sack_ok: false,
            offer_sack: config.sack,
            ts: Timestamps::new(config.timestamps, iss, now),
            scoreboard: Scoreboard::default(),
            sack_recent: [None; 3],
            probe_pending: false,
            persist_backoff: 0,
            persist_probes: 0,
            keepalive_pending: false,
            keepalive_unanswered: 0,
            events: EventSet::default(),
            error: None,
            aborted: false,
            send_blocked: false,
            reset_out: None,
            tx_options: TcpRepr::default(),
            closed_event_pending: false,
            stats: ConnStats::default(),
        }
    }

    /// Active open: the connection starts in SYN-SENT and its SYN (ISS `iss`, our
    /// MSS and, if configured, window scale) comes out of the next
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn connect(
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        now: Instant,
    ) -> Connection {
        Connection::connect_at(config, local, remote, iss, now, Ticks::ZERO)
    }

    /// [`connect`](Self::connect) at `now` counted from `epoch` (a stack's
    /// connections share its epoch).
    pub(crate) fn connect_at(
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        epoch: Instant,
        now: Ticks,
    ) -> Connection {
        Connection::new(config, local, remote, iss, State::SynSent, epoch, now)
    }

    /// Passive open for `syn`, a SYN (without ACK or RST) that the stack's listener
    /// for `local` accepted from `remote`. The connection starts in SYN-RECEIVED and
    /// its SYN-ACK comes out of the next [`poll_transmit`](Self::poll_transmit).
    ///
    /// Data on the SYN is not kept (the peer sends it again after the handshake).
    pub fn accept(
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr<'_>,
        iss: SeqNumber,
        now: Instant,
    ) -> Connection {
        Connection::accept_at(config, local, remote, syn, iss, now, Ticks::ZERO)
    }

    /// [`accept`](Self::accept) at `now` counted from `epoch` (a stack's
    /// connections share its epoch).
    pub(crate) fn accept_at(
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr<'_>,
        iss: SeqNumber,
        epoch: Instant,
        now: Ticks,
    ) -> Connection {
        let mut connection = Connection::new(config, local, remote, iss, State::SynReceived, epoch, now);
        connection.take_peer_syn(syn, now);
        connection
    }

    /// `now` counted from the connection's epoch (0 before it).
    pub(crate) fn ticks(&self, now: Instant) -> Ticks {
        Ticks::between(self.epoch, now)
    }

    /// The `Instant` of `t`, counted from the connection's epoch.
    pub(super) fn instant(&self, t: Ticks) -> Option<Instant> {
        t.instant(self.epoch)
    }

    /// Learns the peer's ISN and options from its SYN (RFC 9293 §3.10.7.2/3 and
    /// RFC 7323 §2.2).
    pub(super) fn take_peer_syn(&mut self, syn: &TcpRepr<'_>, now: Ticks) {
        self.irs = syn.seq_number;
        self.rcv_nxt = self.irs + 1;
        self.rcv_adv = self.rcv_nxt;
        self.remote_fin = None;
        let peer_mss = syn.max_seg_size.map_or(DEFAULT_MSS, usize::from);
        self.snd_mss = peer_mss
            .max(MIN_PEER_MSS)
            .min(usize::from(self.config.mss))
            .max(1);
        match syn.window_scale {
            Some(shift) if self.config.window_scaling => {
                self.snd_wscale = shift.min(crate::wire::tcp::MAX_WINDOW_SCALE);
                self.rcv_wscale = self.config.window_shift();
            }
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
                // On a passive open our SYN-ACK carries the option only if the
                // peer's SYN did (RFC 7323 §1.3). In a simultaneous open our SYN
                // already carried it; scaling is simply off.
                if self.state == State::SynReceived {
                    self.offer_window_scale = false;
                }
            }
        }
        // SACK (RFC 2018 §2): only if both SYNs carry SACK-permitted; a SYN-ACK
        // offers it only in answer to a SYN that did.
        self.sack_ok = self.config.sack && syn.sack_permitted;
        if self.state == State::SynReceived && !self.sack_ok {
            self.offer_sack = false;
        }
        // Timestamps (RFC 7323 §3.2): likewise. Once in use, the option takes
        // room from every segment's payload (RFC 6691).
        self.ts
            .on_peer_syn(self.config.timestamps, syn.timestamp.map(|(tsval, _)| tsval), now);
        self.ts.last_ack_sent = self.rcv_nxt;
        if self.state == State::SynReceived && !self.ts.enabled {
            self.ts.offer = false;
        }
        if self.ts.enabled {
            self.snd_mss = self.snd_mss.saturating_sub(TS_OPTION_LEN).max(1);
        }
        self.cc = new_controller(self.config.congestion, self.snd_mss);
        // The window of a SYN is never scaled.
        self.snd_wnd = usize::from(syn.window_len);
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = syn.seq_number;
        self.snd_wl2 = syn.ack_number.unwrap_or(self.iss);
    }

    /// The connection state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our address and port.
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    /// The peer's address and port.
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// Counters and estimates, as of now.
    pub fn stats(&self) -> ConnStats {
        // The estimates are read from where they live, instead of copied into the
        // counters on every ACK.
        ConnStats {
            srtt: self.rtt.srtt(),
            rto: self.rtt.rto(),
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            ..self.stats.clone()
        }
    }

    /// Turns the Nagle algorithm on or off from now on (`false` is `TCP_NODELAY`).
    pub fn set_nagle(&mut self, on: bool) {
        self.config.nagle = on;
    }

    /// The memory this connection's buffers may come to hold: its send and receive
    /// capacities (the stack caps the total over all connections).
    pub fn buffer_budget(&self) -> usize {
        self.config.send_buffer.saturating_add(self.config.recv_buffer)
    }

    /// The largest payload this connection puts in one segment (the smaller of our
    /// MSS and the peer's, 536 if the peer sent none), less the timestamps option
    /// when it is in use.
    pub fn send_mss(&self) -> usize {
        self.snd_mss
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event for the application, if any.
    ///
    /// At most one event of each kind waits: one raised while another of its kind
    /// waits is merged into it (a burst of segments gives one `Readable`). Waiting
    /// events come out in the order of a connection's life, not the order they were
    /// raised in: `Connected`, `Readable`, `Writable`, `PeerClosed`, `Error`,
    /// `Closed`. That is the order they happen in, except that a `Writable` raised
    /// after `PeerClosed` (send space freed in CLOSE-WAIT) comes before it when both
    /// wait.
    #[inline]
    pub fn poll_event(&mut self) -> Option<TcpEvent> {
        self.events.pop()
    }

    /// Forgets the waiting events (nobody will take them).
    pub(crate) fn drop_events(&mut self) {
        self.events.clear();
    }

    /// Queues `data` for sending without copying it, and returns how many bytes were
    /// taken (the front of `data`; fewer than offered when the send buffer fills up).
    ///
    /// Data may be queued from SYN-SENT on; it goes out once the connection is
    /// established.
    ///
    /// # Errors
    ///
    /// * [`TcpError::WouldBlock`]: the send buffer is full (a
    ///   [`TcpEvent::Writable`] follows when it drains);
    /// * [`TcpError::InvalidState`]: after `close` or `abort`, or when the
    ///   connection is closed;
    /// * the connection's error after a reset or timeout.
    #[inline]
    pub fn send(&mut self, data: Bytes) -> Result<usize, TcpError> {
        let taken = self.send_room(data.len())?;
        if taken < data.len() {
            self.send_queue.push(data.slice(..taken));
        } else {
            self.send_queue.push(data);
        }
        Ok(taken)
    }

    /// [`send`](Self::send) for borrowed bytes: queues a copy of as much of `data`
    /// as the send buffer has room for, into the send queue's store (consecutive
    /// writes form one piece), so no buffer is allocated per write and no reference
    /// count is kept; for large buffers, [`send`](Self::send) moves a [`Bytes`] in
    /// without a copy.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    #[inline]
    pub fn send_slice(&mut self, data: &[u8]) -> Result<usize, TcpError> {
        let taken = self.send_room(data.len())?;
        self.send_queue.push_slice(&data[..taken]);
        Ok(taken)
    }

    /// How many of `len` bytes a send may queue now (0 for `len` 0 on an open
    /// connection), marking the connection blocked if not all; the errors of
    /// [`send`](Self::send).
    #[inline]
    fn send_room(&mut self, len: usize) -> Result<usize, TcpError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let open = matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        );
        if !open || self.fin_queued || self.aborted {
            return Err(TcpError::InvalidState);
        }
        if len == 0 {
            return Ok(0);
        }
        // `send_capacity`, whose checks of the state are the ones just made.
        let room = self.config.send_buffer.saturating_sub(self.send_queue.len());
        if room == 0 {
            self.send_blocked = true;
            return Err(TcpError::WouldBlock);
        }
        if len > room {
            self.send_blocked = true;
            return Ok(room);
        }
        Ok(len)
    }

    /// How many more bytes [`send`](Self::send) would take now (0 once sending is
    /// over).
    pub fn send_capacity(&self) -> usize {
        let open = matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        );
        if !open || self.fin_queued || self.error.is_some() {
            return 0;
        }
        self.config
            .send_buffer
            .saturating_sub(self.send_queue.len())
    }

    /// Takes up to `max` bytes of in-order data, without copying: a slice of one
    /// received frame, so possibly fewer bytes than are available.
    ///
    /// Reading frees window space; if the window we advertised was small, a window
    /// update is sent (receiver-side SWS avoidance, RFC 9293 §3.8.6.2.2).
    ///
    /// # Errors
    ///
    /// * [`TcpError::WouldBlock`]: no data yet (or `max` is 0);
    /// * [`TcpError::Finished`]: the peer closed and everything was read;
    /// * [`TcpError::Aborted`] after [`abort`](Self::abort);
    /// * [`TcpError::InvalidState`] on a connection closed before it was
    ///   established;
    /// * the connection's error after a reset or timeout (unread data is dropped).
    pub fn recv(&mut self, max: usize) -> Result<Bytes, TcpError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.aborted {
            return Err(TcpError::Aborted);
        }
        if let Some(data) = self.recv_buffer.read(max) {
            self.maybe_window_update();
            return Ok(data);
        }
        if self.recv_buffer.ready_len() > 0 {
            return Err(TcpError::WouldBlock);
        }
        if self.fin_received {
            return Err(TcpError::Finished);
        }
        match self.state {
            State::Closed | State::Listen => Err(TcpError::InvalidState),
            _ => Err(TcpError::WouldBlock),
        }
    }

    /// Takes every in-order byte ready to read, without copying: hands each
    /// received buffer (a slice of one frame) to `f`, in order, and returns how many
    /// bytes that was. The same as calling [`recv`](Self::recv) with no limit until
    /// it fails, in one call (the window update rule is applied once, at the end,
    /// which asks for the same update).
    ///
    /// # Errors
    ///
    /// When nothing is ready: what [`recv`](Self::recv) returns then.
    pub fn recv_all(&mut self, f: impl FnMut(Bytes)) -> Result<usize, TcpError> {
        self.read_with(|buffer| buffer.read_all(f))
    }

    /// Takes every in-order byte ready to read, lending each piece to `f` in
    /// order (nothing copied or allocated: slices of received frames, or of the
    /// store the payloads of borrowed frames were copied into), and returns how
    /// many bytes. The same as [`recv_all`](Self::recv_all) without handing out
    /// [`Bytes`], which for copied bytes would be another copy.
    ///
    /// # Errors
    ///
    /// When nothing is ready: what [`recv`](Self::recv) returns then.
    pub fn recv_borrowed(&mut self, f: impl FnMut(&[u8])) -> Result<usize, TcpError> {
        self.read_with(|buffer| buffer.read_borrowed(f))
    }

    /// Copies up to `out.len()` in-order bytes into `out` (POSIX `read`'s shape)
    /// and returns how many, more than 0.
    ///
    /// # Errors
    ///
    /// When nothing is ready, or `out` is empty: what [`recv`](Self::recv) returns
    /// then.
    pub fn recv_slice(&mut self, out: &mut [u8]) -> Result<usize, TcpError> {
        self.read_with(|buffer| buffer.read_into(out))
    }

    /// A read that takes what `take` takes from the receive buffer (it returns how
    /// many bytes): the connection's error or `Aborted` first, the window update
    /// rule once if anything was taken, else what [`recv`](Self::recv) answers
    /// when it finds nothing to take.
    #[inline(always)]
    fn read_with(&mut self, take: impl FnOnce(&mut super::recv::RecvBuffer) -> usize) -> Result<usize, TcpError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.aborted {
            return Err(TcpError::Aborted);
        }
        let taken = take(&mut self.recv_buffer);
        if taken > 0 {
            self.maybe_window_update();
            return Ok(taken);
        }
        self.recv(0).map(|data| data.len())
    }

    /// How many in-order bytes are ready to read.
    pub fn recv_available(&self) -> usize {
        self.recv_buffer.ready_len()
    }

    /// Graceful close (RFC 9293 §3.10.4): a FIN follows the queued data, and
    /// receiving goes on until the peer closes too. Closing in SYN-SENT just drops
    /// the connection; in SYN-RECEIVED the FIN waits until the handshake completes.
    /// Calling it again, or after the peer reset, does nothing.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent => self.enter_closed(),
            State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Abort (RFC 9293 §3.10.5): drops everything queued both ways, sends an RST if
    /// the peer knows of the connection, and goes to CLOSED. A
    /// [`TcpEvent::Closed`] follows once the RST is out.
    pub fn abort(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.aborted = true;
        let synchronized_with_peer = matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
                | State::Closing
                | State::LastAck
        );
        if synchronized_with_peer {
            self.queue_reset();
        }
        self.recv_buffer.clear();
        self.enter_closed();
    }

    /// Queues an RST for the peer: `<SEQ=SND.MAX><ACK=RCV.NXT><CTL=RST,ACK>`.
    pub(super) fn queue_reset(&mut self) {
        let mut repr = self.header(self.snd_max, TcpFlags::RST);
        repr.window_len = 0;
        self.reset_out = Some(repr);
    }

    /// Goes to CLOSED: stops every timer and reports `Closed` (once a queued RST is
    /// out).
    pub(super) fn enter_closed(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.timers.stop_all();
        self.ack_now = false;
        self.probe_pending = false;
        self.keepalive_pending = false;
        if self.reset_out.is_some() {
            self.closed_event_pending = true;
        } else {
            self.push_event(TcpEvent::Closed);
        }
    }

    /// Raises an event; one of its kind already waiting absorbs it. (The stack
    /// uses it too, to announce what arrived before `accept`.)
    #[inline]
    pub(crate) fn push_event(&mut self, event: TcpEvent) {
        self.events.insert(event);
    }

    /// The receive window: free buffer space, capped at what the window field can
    /// say.
    pub(super) fn rcv_wnd(&self) -> usize {
        let cap = 0xffff_usize << self.rcv_wscale;
        self.recv_buffer.free().min(cap)
    }

    /// The window as the field of a non-SYN segment.
    pub(super) fn window_field(&self) -> u16 {
        (self.rcv_wnd() >> self.rcv_wscale).min(0xffff) as u16
    }

    /// The window the peer currently believes in: from RCV.NXT to the right edge we
    /// last advertised.
    #[inline]
    fn advertised_window(&self) -> usize {
        let distance = self.rcv_adv - self.rcv_nxt;
        distance.max(0) as usize
    }

    /// After a read: asks for a window update if the window grew enough over what
    /// the peer believes (RFC 9293 §3.8.6.2.2: by min(buffer / 2, MSS)) and at least
    /// doubled it, so that a reader draining a full buffer reopens the window at once
    /// without an update for every read.
    #[inline]
    fn maybe_window_update(&mut self) {
        // The window never exceeds the buffer, so it cannot double one above half
        // the buffer: the answer after a small read, without working the window out.
        if self.advertised_window() > self.recv_buffer.capacity() / 2 {
            return;
        }
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) || self.fin_received
        {
            return;
        }
        let advertised = self.advertised_window();
        let window = (self.rcv_wnd() >> self.rcv_wscale) << self.rcv_wscale;
        let threshold = (self.config.recv_buffer / 2).min(self.snd_mss).max(1);
        if window >= advertised + threshold && window >= 2 * advertised {
            self.ack_now = true;
        }
    }

    /// The most bytes the connection may have in flight besides the peer's window:
    /// the congestion window, plus one segment per duplicate ACK for the first two
    /// (limited transmit, RFC 3042). Right after a retransmission timeout, one
    /// segment until an ACK arrives, whatever the congestion control.
    pub(super) fn send_window_limit(&self) -> usize {
        if self.rto_recovery {
            return self.snd_mss;
        }
        let cwnd = self.cc.cwnd();
        if self.config.fast_retransmit && !self.in_recovery && self.dupacks > 0 {
            let extra = self.dupacks.min(2) as usize * self.snd_mss;
            cwnd.saturating_add(extra)
        } else {
            cwnd
        }
    }

    /// A header from us to the peer with `seq`, `flags`, our window and, in every
    /// state but SYN-SENT, ACK with RCV.NXT.
    pub(super) fn header(&self, seq: SeqNumber, flags: TcpFlags) -> TcpRepr<'static> {
        let ack = (self.state != State::SynSent).then_some(self.rcv_nxt);
        let mut flags = flags;
        flags.set(TcpFlags::ACK, ack.is_some());
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: seq,
            ack_number: ack,
            window_len: self.window_field(),
            flags,
            ..TcpRepr::default()
        }
    }
}
