//! Connection settings.

use std::time::Duration;

use super::congestion::CongestionControl;

/// The settings of one connection, fixed when it opens.
///
/// ```
/// use std::time::Duration;
/// use demi_net_stack::tcp::TcpConfig;
///
/// // A fabric with microsecond round trips: tighter retransmission bounds.
/// let config = TcpConfig {
///     rto_initial: Duration::from_micros(200),
///     rto_min: Duration::from_micros(50),
///     ..TcpConfig::default()
/// };
/// assert_eq!(config.mss, 1460);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// The MSS we advertise: the largest payload we accept in one segment. The stack
    /// derives it from the device MTU (MTU - 40). Our segments are also no larger.
    pub mss: u16,
    /// How many bytes the application may have queued and unacknowledged.
    pub send_buffer: usize,
    /// The receive buffer: received bytes not yet read, in order or not, never exceed
    /// it, and it is the largest window we advertise. The window scale we offer is
    /// the smallest that lets it fit in the 16-bit field.
    pub recv_buffer: usize,
    /// Whether to offer window scaling (RFC 7323 §2). It is used only when the peer
    /// offers it too; otherwise windows are capped at 65,535 bytes.
    pub window_scaling: bool,
    /// The retransmission timeout before any round trip has been measured
    /// (RFC 6298 §2.1: 1 s).
    pub rto_initial: Duration,
    /// The smallest retransmission timeout (RFC 6298 §2.4 says 1 s; 200 ms is the
    /// usual practice, and fabrics can go down to microseconds).
    pub rto_min: Duration,
    /// The largest retransmission timeout, also the cap of backoff and of the persist
    /// timer (RFC 6298 §2.5: at least 60 s).
    pub rto_max: Duration,
    /// How many timeouts in a row the connection survives once synchronized (data,
    /// FIN, or unanswered window probes) before it gives up with
    /// [`TcpError::TimedOut`](super::TcpError::TimedOut) and sends an RST.
    pub max_retransmits: u32,
    /// How many times the SYN (or SYN-ACK) is retransmitted before giving up with
    /// [`TcpError::TimedOut`](super::TcpError::TimedOut).
    pub max_syn_retransmits: u32,
    /// How long TIME-WAIT lasts (2*MSL).
    pub time_wait: Duration,
    /// How long an ACK for in-order data may be delayed (RFC 1122 §4.2.3.2: under
    /// 0.5 s); `None` acknowledges every segment at once. Out-of-order data, hole
    /// fills, FINs and every second full-sized segment are acknowledged at once
    /// either way.
    pub ack_delay: Option<Duration>,
    /// The Nagle algorithm (RFC 896): hold back a less-than-full segment while data
    /// is unacknowledged. `false` is `TCP_NODELAY`.
    pub nagle: bool,
    /// At most one ACK per this interval answers segments that cannot be accepted
    /// (out of the window, acknowledging unsent data, RFC 5961 challenges). Linux
    /// uses 500 ms (`tcp_invalid_ratelimit`); the default here is 100 ms.
    pub invalid_ack_interval: Duration,
    /// The congestion control algorithm (RFC 5681 NewReno by default).
    pub congestion: CongestionControl,
    /// Fast retransmit and fast recovery on three duplicate ACKs (RFC 5681 §3.2,
    /// RFC 6582), with limited transmit (RFC 3042). Without it only the
    /// retransmission timer recovers losses.
    pub fast_retransmit: bool,
    /// Whether to offer selective acknowledgments (RFC 2018). They are used only
    /// when the peer offers them too; the sender then recovers by RFC 6675,
    /// resending only what the peer is missing.
    pub sack: bool,
    /// Whether to offer the timestamps option (RFC 7323 §3). It is used only when
    /// the peer offers it too; every segment then carries it, round trips are
    /// measured from the echoed values on every ACK of new data (retransmissions
    /// included), and PAWS drops old duplicates (§5). It takes 12 bytes of every
    /// segment, so data segments carry 12 bytes less payload.
    pub timestamps: bool,
    /// Keepalive probes on an idle ESTABLISHED connection (RFC 1122 §4.2.3.6);
    /// `None` (the default) sends none.
    pub keepalive: Option<Keepalive>,
}

/// When to probe an idle connection, and when to give up (RFC 1122 §4.2.3.6).
///
/// After `idle` without receiving a segment, the connection sends a probe (an ACK
/// one byte before SND.NXT, which the peer must answer), then another every
/// `interval` while none is answered. When `count` probes went unanswered, the
/// connection is aborted with [`TcpError::TimedOut`](super::TcpError::TimedOut)
/// and an RST. Any segment received starts the idle period again. No probe is sent
/// while data is outstanding: the retransmission timer watches the peer then.
///
/// ```
/// use std::time::Duration;
/// use demi_net_stack::tcp::{Keepalive, TcpConfig};
///
/// let config = TcpConfig {
///     keepalive: Some(Keepalive {
///         idle: Duration::from_secs(7200),
///         interval: Duration::from_secs(75),
///         count: 9,
///     }),
///     ..TcpConfig::default()
/// };
/// assert!(config.keepalive.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// How long the connection may go without receiving before the first probe
    /// (RFC 1122: no less than two hours by default).
    pub idle: Duration,
    /// The time between unanswered probes.
    pub interval: Duration,
    /// How many unanswered probes end the connection.
    pub count: u32,
}

impl Default for TcpConfig {
    /// MSS 1460 (Ethernet), 256 KiB buffers, window scaling on, RTO 1 s initial and
    /// 200 ms .. 60 s, 12 data and 6 SYN retransmissions, TIME-WAIT 30 s, 10 ms
    /// delayed ACKs, no Nagle, NewReno, fast retransmit, SACK and timestamps on, no keepalive.
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            window_scaling: true,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            max_retransmits: 12,
            max_syn_retransmits: 6,
            time_wait: Duration::from_secs(30),
            ack_delay: Some(Duration::from_millis(10)),
            nagle: false,
            invalid_ack_interval: Duration::from_millis(100),
            congestion: CongestionControl::NewReno,
            fast_retransmit: true,
            sack: true,
            timestamps: true,
            keepalive: None,
        }
    }
}

impl TcpConfig {
    /// The window scale shift we offer: the smallest that makes `recv_buffer` fit in
    /// 16 bits, at most 14 (RFC 7323 §2.3).
    pub fn window_shift(&self) -> u8 {
        let mut shift = 0;
        while shift < crate::wire::tcp::MAX_WINDOW_SCALE && (self.recv_buffer >> shift) > 0xffff {
            shift += 1;
        }
        shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_shift_fits_the_buffer() {
        let shift = |recv_buffer| {
            TcpConfig {
                recv_buffer,
                ..TcpConfig::default()
            }
            .window_shift()
        };
        assert_eq!(shift(0), 0);
        assert_eq!(shift(65_535), 0);
        assert_eq!(shift(65_536), 1);
        assert_eq!(shift(256 * 1024), 3);
        assert_eq!(shift(usize::MAX), 14);
    }
}
