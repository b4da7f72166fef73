//! TCP: one connection as a sans-IO state machine.
//!
//! A [`Connection`] never touches a socket or a clock. The stack feeds it segments
//! that arrived for its 4-tuple and the current time, and asks it for segments to
//! send, the next deadline, and events for the application. The same connection runs
//! over a real device, in the simulator, and in the packet-level tests of this module.
//!
//! # RFCs implemented
//!
//! * **RFC 9293**, *Transmission Control Protocol*: the state machine of §3.3.2 (all
//!   eleven states, active, passive and simultaneous open, close from either side and
//!   simultaneous close), the segment arrival rules of §3.10.7 (the four-case
//!   sequence acceptability test, trimming to the window, RST and SYN checks, ACK
//!   processing, data and FIN), reset generation of §3.10.7.1 ([`rst_for`]), the MSS
//!   rules of §3.7.1 (536 when the peer sends no MSS option), zero-window probing of
//!   §3.8.6.1, and silly window syndrome avoidance on both sides (§3.8.6.2). The
//!   urgent mechanism is not implemented: URG is ignored and urgent data is read as
//!   ordinary data.
//! * **RFC 6298**, *Computing TCP's Retransmission Timer*: SRTT/RTTVAR, Karn's
//!   algorithm (no samples from retransmitted segments, the backed-off RTO kept until
//!   a valid sample), exponential backoff, clamping to the configured bounds.
//! * **RFC 7323** §2, *Window Scale*: offered on the SYN, used only when both SYNs
//!   carry it; SYN windows are never scaled.
//! * **RFC 6528**, *Defending against Sequence Number Attacks*: [`IsnGenerator`], with
//!   SipHash-2-4 as the keyed hash.
//! * **RFC 1122** §4.2.3.2 / **RFC 5681** §4.2: delayed ACKs (at least every second
//!   full-sized segment, immediately for out-of-order data, hole fills and FINs);
//!   **RFC 896**: the Nagle algorithm when [`TcpConfig::nagle`] is set.
//!
//! * **RFC 5681**, *TCP Congestion Control*, behind [`CongestionControl`] (chosen
//!   per connection by [`TcpConfig::congestion`]): the initial window of §3.1 /
//!   **RFC 3390**, slow start, congestion avoidance by byte counting, ssthresh =
//!   max(FlightSize / 2, 2 MSS) on loss, and after a retransmission timeout a loss
//!   window of one segment with retransmission from SND.UNA (also **RFC 6298**
//!   §5.4). [`CongestionControl::Cubic`] is **RFC 9438** CUBIC (W_cubic, the
//!   Reno-friendly region, fast convergence, β = 0.7, C = 0.4);
//!   [`CongestionControl::None`] leaves only the peer's window, for lossless
//!   fabrics.
//! * **RFC 5681** §3.2 fast retransmit on three duplicate ACKs and **RFC 6582**
//!   NewReno fast recovery with partial ACKs, **RFC 3042** limited transmit
//!   ([`TcpConfig::fast_retransmit`]).
//! * **RFC 2018**, *Selective Acknowledgment* ([`TcpConfig::sack`]): offered on
//!   the SYN, used when both SYNs carry it. The receiver reports its out-of-order
//!   data in up to three blocks, the one holding the latest arrival first. The
//!   sender keeps a scoreboard (at most 64 ranges; blocks outside
//!   [SND.UNA, SND.MAX] are ignored, so are D-SACKs, RFC 2883) and recovers by
//!   **RFC 6675**: IsLost with DupThresh 3, `pipe`, NextSeg, so only the holes are
//!   resent. Without SACK, recovery uses the same `pipe` accounting with each
//!   duplicate ACK standing for one segment that left the network, so cwnd is
//!   not inflated and is ssthresh when recovery ends.
//!
//! * **RFC 7323** §3-§5, *Timestamps* ([`TcpConfig::timestamps`]): offered on the
//!   SYN, used when both SYNs carry it; then on every segment (a millisecond clock
//!   from the connection's creation plus a per-connection offset from the ISS, and
//!   TS.Recent echoed), and a segment without it is dropped. TS.Recent follows
//!   Last.ACK.sent (§4.3). Every ACK of new data gives an RTT sample: from the
//!   timed segment when it covers it, otherwise from the echo (so also after
//!   retransmissions), but never from an echo older than our last retransmission.
//!   Data segments carry 12 bytes less payload (RFC 6691). PAWS (§5.3) drops a
//!   non-RST segment older than TS.Recent and answers with an ACK; a TS.Recent
//!   idle for 24 days is replaced (§5.5). With SACK, three blocks still fit.
//! * **RFC 1122** §4.2.3.6, keepalive ([`TcpConfig::keepalive`], off by default):
//!   probes of an idle ESTABLISHED connection, an abort with
//!   [`TcpError::TimedOut`] and an RST after the configured number go unanswered.
//! * **RFC 5961**, *Improving TCP's Robustness to Blind In-Window Attacks*: an RST
//!   resets only if exactly at RCV.NXT, elsewhere in the window it gets a
//!   challenge ACK (§3); so does any SYN in a synchronized state (§4); an ACK
//!   below SND.UNA - MAX.SND.WND is dropped with an ACK (§5). Challenge ACKs are
//!   not rate-limited (§7 is optional).
//!
//! # Using a connection
//!
//! 1. Create it with [`Connection::connect`] (active open: SYN-SENT) or, for a SYN a
//!    listener accepted, [`Connection::accept`] (passive open: SYN-RECEIVED).
//! 2. Whenever something happens (a segment arrived, a deadline passed, the
//!    application called `send`/`recv`/`close`/`abort`), call the matching method:
//!    [`handle_segment`](Connection::handle_segment) for each arriving segment,
//!    [`handle_timeout`](Connection::handle_timeout) when `now` has reached
//!    [`poll_at`](Connection::poll_at), or the application call itself.
//! 3. Then call [`poll_transmit`](Connection::poll_transmit) until it returns `None`
//!    and send every segment it returns, drain [`poll_event`](Connection::poll_event)
//!    until `None`, and re-read [`poll_at`](Connection::poll_at) to schedule the
//!    next timeout. `poll_transmit` may arm timers, so read `poll_at` last.
//! 4. After [`TcpEvent::Closed`] the connection has nothing more to send or wait for
//!    and can be dropped; a stack that keeps it around gets an RST for every segment
//!    it feeds it (as RFC 9293 wants for the CLOSED state).
//!
//! # What the stack does around it
//!
//! * **Demultiplexing and checksums.** The stack matches segments to connections by
//!   4-tuple and verifies checksums; `handle_segment` trusts both.
//! * **Listeners.** A segment for no connection goes to a listener if one owns the
//!   port: a SYN without ACK or RST becomes a [`Connection::accept`] (with an ISN
//!   from [`IsnGenerator`]), anything else gets [`rst_for`] (an RST is dropped). The
//!   connection is in SYN-RECEIVED until [`TcpEvent::Connected`], which is when the
//!   stack hands it to the application's `accept`. A segment for a 4-tuple in
//!   TIME-WAIT goes to that connection (a new SYN is answered with an ACK); a stack
//!   that wants to reuse the 4-tuple earlier may drop the old connection first.
//! * **Events.** `Connected`, `Readable`, `Writable` and `PeerClosed` wake the
//!   application; `Error` carries why the connection failed; `Closed` (always last)
//!   says its resources can go. Errors are also returned by `send`/`recv`.
//! * **Output.** [`Segment::repr`] is the header (ports, numbers, flags, window,
//!   options) with an empty payload; [`Segment::payload`] is the data as slices of
//!   the application's buffers. [`Segment::emit`] writes both, with the checksum,
//!   into one buffer; a device with gather support can send the slices as they are.
//!
//! ```
//! use std::net::{Ipv4Addr, SocketAddrV4};
//! use std::time::Instant;
//! use demi_net_stack::tcp::{Connection, State, TcpConfig};
//! use demi_net_stack::wire::{SeqNumber, TcpFlags};
//!
//! let now = Instant::now();
//! let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 49152);
//! let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
//! let mut conn = Connection::connect(&TcpConfig::default(), local, remote, SeqNumber(1000), now);
//! let syn = conn.poll_transmit(now).expect("a SYN");
//! assert_eq!(syn.repr.flags, TcpFlags::SYN);
//! assert_eq!(syn.repr.seq_number, SeqNumber(1000));
//! assert!(conn.poll_transmit(now).is_none());
//! assert_eq!(conn.state(), State::SynSent);
//! assert!(conn.poll_at().is_some()); // the SYN retransmission timer
//! ```

use core::fmt;

mod config;
mod congestion;
mod connection;
mod events;
mod input;
mod isn;
mod output;
mod recv;
mod rst;
mod recovery;
mod rtt;
mod sack;
mod segment;
mod send;
mod timers;
mod timestamps;

#[cfg(test)]
mod tests;

pub use self::config::{Keepalive, TcpConfig};
pub use self::congestion::CongestionControl;
pub use self::connection::{ConnStats, Connection};
pub use self::isn::IsnGenerator;
pub use self::rst::rst_for;
pub use self::segment::{Payload, Segment};
pub(crate) use self::input::SegmentData;
pub(crate) use self::segment::SegmentHeader;
pub(crate) use self::input::SegmentHead;

/// The connection states of RFC 9293 §3.3.2.
///
/// A [`Connection`] is never in `Listen`: listening is the stack's business. The
/// variant is there so that a socket layer can report it with the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection (never opened, or finished).
    Closed,
    /// Waiting for a SYN (a listener).
    Listen,
    /// Our SYN is out; waiting for the peer's SYN.
    SynSent,
    /// Both SYNs seen; waiting for the ACK of ours.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We closed; our FIN is not acknowledged yet.
    FinWait1,
    /// We closed and our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both closed; waiting 2*MSL for stray segments.
    TimeWait,
}

impl State {
    /// Whether both SYNs have been exchanged (every state from ESTABLISHED on, as
    /// RFC 9293 calls them "synchronized").
    pub const fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        })
    }
}

/// Why a connection call failed, or why the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpError {
    /// Nothing to read yet, or no room in the send buffer: try again after an event.
    WouldBlock,
    /// The peer closed its side and everything it sent has been read.
    Finished,
    /// The call makes no sense in this state (sending after `close`, for example).
    InvalidState,
    /// The peer reset the connection.
    Reset,
    /// The peer answered our SYN with a reset: nobody listens there.
    Refused,
    /// The peer stopped answering: retransmissions (of the SYN, data, FIN or window
    /// probes) ran out.
    TimedOut,
    /// We aborted the connection.
    Aborted,
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpError::WouldBlock => "operation would block",
            TcpError::Finished => "connection finished by the peer",
            TcpError::InvalidState => "invalid state for this operation",
            TcpError::Reset => "connection reset by peer",
            TcpError::Refused => "connection refused",
            TcpError::TimedOut => "connection timed out",
            TcpError::Aborted => "connection aborted",
        })
    }
}

impl std::error::Error for TcpError {}

/// Something the application (or the stack) should know about, from
/// [`Connection::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpEvent {
    /// The handshake completed (ESTABLISHED). The connection is writable.
    Connected,
    /// New in-order data can be read with [`Connection::recv`]. Not repeated while an
    /// earlier `Readable` is still queued.
    Readable,
    /// Send buffer space was freed after a [`Connection::send`] accepted less than it
    /// was offered (or nothing). Not repeated while one is still queued.
    Writable,
    /// The peer's FIN arrived and everything before it is readable: once it is read,
    /// `recv` returns [`TcpError::Finished`].
    PeerClosed,
    /// The connection is fully closed and has nothing more to send: it can be
    /// dropped. Always the last event; follows an `Error` after a failure.
    Closed,
    /// The connection failed ([`TcpError::Reset`], [`TcpError::Refused`] or
    /// [`TcpError::TimedOut`]); `Closed` follows.
    Error(TcpError),
}
