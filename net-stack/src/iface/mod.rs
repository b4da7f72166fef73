//! The interface: one IPv4 host on one Ethernet link, as a sans-IO state machine.
//!
//! A [`Stack`] takes received frames and the current time, and hands back frames to
//! send, the next instant it needs attention, and events for the application. It
//! answers ARP (RFC 826) and ICMP echo (RFC 792), sends ICMP port unreachable for UDP
//! to a closed port (RFC 1122 §3.2.2.1), runs UDP sockets (RFC 768) and TCP
//! connections ([`crate::tcp`]), and answers TCP segments for no connection with a
//! reset (RFC 9293 §3.10.7.1).
//!
//! ## Call order
//!
//! ```text
//! loop {
//!     for frame in device.rx_burst()      { stack.receive(now, frame) }
//!     if stack.timeout_due(now)           { stack.handle_timeout(now) }  // poll_at() <= now
//!     application calls (tcp_send, udp_send_to, …)
//!     while let Some(ev) = stack.poll_event()        { deliver to the application }
//!     while let Some(frame) = stack.poll_transmit(now) { device.tx(frame) }
//!     sleep until stack.poll_at() or the next frame
//! }
//! ```
//!
//! Every method takes `now` where time matters; the stack never reads a clock.
//! Application calls may produce frames and events: drain both after them.
//!
//! A device with buffers of its own takes frames borrowed instead:
//! [`Stack::receive_slice`] reads a frame in place (the buffer is free again when
//! it returns), and [`Stack::poll_transmit_into`] writes the next frame into the
//! device's buffer when it can ([`TxFrame::Written`]) and hands any other over as
//! `Bytes` ([`TxFrame::Owned`]). Applications have the matching data calls:
//! [`Stack::tcp_send_slice`], [`Stack::tcp_recv_slice`] and
//! [`Stack::tcp_recv_borrowed`]. The two kinds mix freely, frame by frame and call
//! by call.

mod config;
mod frames;
pub mod neighbor;
mod sockets;
#[cfg(test)]
mod tests;

pub use config::StackConfig;
pub use frames::TxFrame;
pub use neighbor::{NeighborCache, NeighborConfig, NeighborStats};
pub use sockets::{ConnHandle, ListenHandle, UdpHandle};

use crate::chunk::SliceOut;
use frames::{Built, RxFrame};
use crate::time::{Clock, Ticks};
use crate::tcp::{self, Connection, IsnGenerator, SegmentHeader, TcpConfig, TcpError, TcpEvent};
use crate::wire::{
    checksum,
    ArpOperation, ArpPacket, ArpRepr, DstUnreachable, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpPacket,
    SeqNumber, TcpRepr, UdpPacket, UdpRepr,
};
use bytes::{Bytes, BytesMut};
use neighbor::Lookup;
use sockets::{Sockets, TupleKey};
use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
const DEFAULT_TTL: u8 = 64;
/// The size of the arena blocks frames are carved from.
const FRAME_BLOCK: usize = 64 * 1024;

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A UDP socket has datagrams to receive.
    UdpReadable(UdpHandle),
    /// A listener has an established connection to accept.
    AcceptReady(ListenHandle),
    /// Something happened on an accepted or connecting TCP connection.
    Tcp(ConnHandle, TcpEvent),
}

/// Why a stack call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackError {
    /// The handle names no open socket (never opened, closed, or stale).
    BadHandle,
    /// The local port is taken.
    AddressInUse,
    /// The local address is not this interface's.
    AddressNotAvailable,
    /// No route to the destination (off-subnet with no gateway).
    Unreachable,
    /// The datagram does not fit the MTU (no fragmentation).
    MessageTooLong,
    /// Connection, port or queue limits reached.
    NoBufferSpace,
    /// Nothing to return yet.
    WouldBlock,
    /// A TCP connection refused the call or failed.
    Tcp(TcpError),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::BadHandle => f.write_str("no such socket"),
            StackError::AddressInUse => f.write_str("address in use"),
            StackError::AddressNotAvailable => f.write_str("address not available on this interface"),
            StackError::Unreachable => f.write_str("no route to host"),
            StackError::MessageTooLong => f.write_str("datagram larger than the MTU allows"),
            StackError::NoBufferSpace => f.write_str("socket, port or queue limit reached"),
            StackError::WouldBlock => f.write_str("nothing available yet"),
            StackError::Tcp(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StackError {}

impl From<TcpError> for StackError {
    fn from(e: TcpError) -> Self {
        StackError::Tcp(e)
    }
}

/// Counters of one stack, by what happened to frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Dropped: malformed or truncated headers.
    pub rx_malformed: u64,
    /// Dropped: bad checksums.
    pub rx_bad_checksum: u64,
    /// Dropped: not addressed to this host.
    pub rx_not_for_us: u64,
    /// Dropped: IPv4 fragments (reassembly is not supported).
    pub rx_fragments: u64,
    /// Dropped: unknown EtherType or IP protocol.
    pub rx_unsupported: u64,
    /// UDP datagrams dropped because the socket's queue was full.
    pub udp_queue_full: u64,
    /// UDP datagrams to closed ports (answered with port unreachable).
    pub udp_no_socket: u64,
    /// TCP segments for no connection (answered with a reset).
    pub tcp_no_socket: u64,
    /// SYNs dropped because a listener's backlog or the connection limit was full.
    pub tcp_syn_dropped: u64,
    /// ICMP echo requests answered.
    pub icmp_echo_replies: u64,
    /// Packets dropped for lack of a route.
    pub tx_no_route: u64,
}

/// One IPv4 host's network stack. See the [module docs](self).
pub struct Stack {
    config: StackConfig,
    neighbors: neighbor::NeighborCache,
    /// Frames ready to go out.
    tx: VecDeque<Bytes>,
    /// Frames sent to our own address, to be received.
    loopback: VecDeque<Bytes>,
    /// The sockets, and the event queue.
    sockets: Sockets,
    isn: IsnGenerator,
    ip_ident: u16,
    stats: StackStats,
    arena: BytesMut,
    /// The last next hop found in the neighbour cache: its MAC, when the entry
    /// expires, and the cache's generation then (any change to the cache voids it).
    route_cache: Option<(Ipv4Addr, EthernetAddress, Option<Instant>, u64)>,
    /// Converts the callers' `Instant`s to the [`Ticks`](crate::time::Ticks) that
    /// connections and the timer index count in.
    clock: Clock,
    /// The subnet broadcast address, as a `u32` (for the one-pass receive path).
    rx_broadcast: u32,
    /// Our address as a `u64`, or `u64::MAX` if it is the subnet broadcast address
    /// (for the one-pass receive path, which then takes no datagram).
    rx_unicast: u64,
    /// Per connection (by handle index): the headers its last segment went out with.
    tx_heads: Vec<Option<(ConnHandle, TxHead)>>,
    /// Tests turn the kept headers off to compare with building them every time.
    #[cfg(test)]
    fast_tx: bool,
    /// Tests turn the one-pass receive path off to compare it with the general one.
    #[cfg(test)]
    fast_rx: bool,
    /// Frames the one-pass path took (tests).
    #[cfg(test)]
    fast_rx_hits: u64,
    /// Segments `send_plain_tcp_segment` built (tests).
    #[cfg(test)]
    plain_tx_hits: u64,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack").field("ip", &self.config.ip).field("mac", &self.config.mac).finish()
    }
}

impl Stack {
    /// A stack for one interface. `now` anchors the ISN clock, and is the epoch the
    /// stack counts time from: a `now` passed to any method later must not be
    /// earlier (one that is counts as this one).
    pub fn new(mut config: StackConfig, now: Instant) -> Stack {
        let mss_cap = config.mtu.saturating_sub(IP_LEN + crate::wire::tcp::HEADER_LEN).clamp(64, u16::MAX as usize);
        config.tcp.mss = config.tcp.mss.min(mss_cap as u16).max(64);
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&config.seed.to_le_bytes());
        secret[8..].copy_from_slice(&config.seed.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        let sockets = Sockets::new(&config);
        Stack {
            neighbors: neighbor::NeighborCache::new(config.neighbor.clone()),
            tx: VecDeque::new(),
            loopback: VecDeque::new(),
            sockets,
            isn: IsnGenerator::new(secret, now),
            ip_ident: (config.seed as u16) ^ 0x4d2,
            stats: StackStats::default(),
            arena: BytesMut::new(),
            route_cache: None,
            clock: Clock::new(now),
            rx_broadcast: u32::from(config.subnet_broadcast()),
            rx_unicast: if config.ip == config.subnet_broadcast() { u64::MAX } else { u64::from(u32::from(config.ip)) },
            tx_heads: Vec::new(),
            #[cfg(test)]
            fast_tx: true,
            #[cfg(test)]
            fast_rx: true,
            #[cfg(test)]
            fast_rx_hits: 0,
            #[cfg(test)]
            plain_tx_hits: 0,
            config,
        }
    }

    /// The configuration in force (the TCP MSS already fitted to the MTU).
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// Frame counters.
    pub fn stats(&self) -> StackStats {
        self.stats
    }

    /// ARP counters.
    pub fn neighbor_stats(&self) -> NeighborStats {
        self.neighbors.stats()
    }

    /// Adds a permanent ARP entry.
    pub fn add_static_neighbor(&mut self, ip: Ipv4Addr, mac: EthernetAddress) {
        self.neighbors.insert_static(ip, mac);
    }

    // ---- the sans-IO interface ----------------------------------------------------

    /// Processes one received Ethernet frame. Anything malformed is counted and
    /// dropped; nothing a peer sends can make this panic.
    pub fn receive(&mut self, now: Instant, frame: Bytes) {
        self.receive_any(now, frame);
    }

    /// [`receive`](Self::receive) for a frame the device keeps (a receive buffer it
    /// reuses once this returns): the frame is only read, and nothing of it is kept
    /// but copies. A segment of an established connection taken by the one-pass
    /// path copies its payload into the receive buffer's store (consecutive
    /// payloads form one piece); any other frame is copied into a [`Bytes`] and
    /// received as [`receive`](Self::receive) does.
    ///
    /// For small frames this is the cheaper call: no reference count is kept or
    /// dropped (two atomic operations per frame), and the device can reuse its
    /// buffer at once. For large ones [`receive`](Self::receive) keeps the frame
    /// itself without a copy. A device can choose per frame (network drivers call
    /// the size where they switch their copy-break).
    pub fn receive_slice(&mut self, now: Instant, frame: &[u8]) {
        self.receive_any(now, frame);
    }

    /// [`receive`](Self::receive) and [`receive_slice`](Self::receive_slice): the
    /// one-pass path, then the general one for a frame it declines.
    #[inline(always)]
    fn receive_any<F: RxFrame>(&mut self, now: Instant, frame: F) {
        self.stats.rx_frames += 1;
        #[cfg(test)]
        let fast = self.fast_rx;
        #[cfg(not(test))]
        let fast = true;
        let frame = if fast {
            match self.receive_tcp_fast(now, frame) {
                Some(frame) => frame,
                None => return,
            }
        } else {
            frame
        };
        self.receive_general(now, frame.into_frame());
    }

    /// [`receive`](Self::receive) for a frame the one-pass path declined: out of
    /// line, so that the path of nearly every frame keeps a small stack frame.
    #[inline(never)]
    fn receive_general(&mut self, now: Instant, frame: Bytes) {
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            self.stats.rx_malformed += 1;
            return;
        };
        let Ok(eth_repr) = EthernetRepr::parse(&eth) else {
            self.stats.rx_malformed += 1;
            return;
        };
        if eth_repr.dst != self.config.mac && !eth_repr.dst.is_broadcast() {
            self.stats.rx_not_for_us += 1;
            return;
        }
        match eth_repr.ethertype {
            EtherType::Arp => self.receive_arp(now, eth.payload()),
            EtherType::Ipv4 => {
                let payload = eth.payload();
                let offset = ETH_LEN;
                self.receive_ipv4(now, &frame, offset, payload.len(), eth_repr.dst.is_broadcast());
            }
            EtherType::Unknown(_) => self.stats.rx_unsupported += 1,
        }
    }

    /// The next frame to send, if any.
    #[inline]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        // The call that ends the caller's loop usually finds nothing at all to do
        // (no frame looped back or queued, no address being resolved, no
        // connection to ask), and `poll_transmit_any` would return `None` having
        // changed nothing: answered in the caller's code, as `poll_event` is.
        if self.nothing_to_transmit() {
            return None;
        }
        match self.poll_transmit_any(now, None)? {
            Built::Owned(frame) => Some(frame),
            // Never: no buffer was given to write into.
            Built::Written(_) => None,
        }
    }

    /// [`poll_transmit`](Self::poll_transmit) for a device that has a buffer ready
    /// for the next frame (a descriptor ring's, a shared-memory slot's): the
    /// frame of a segment under way, which is nearly every frame, is written
    /// straight into `buf` if it fits ([`TxFrame::Written`] with its length).
    /// Any other frame comes back as a [`Bytes`] ([`TxFrame::Owned`]), as from
    /// [`poll_transmit`](Self::poll_transmit): the first segments of a connection,
    /// frames queued earlier (ARP, resets, replies, packets that waited for a
    /// neighbour), and frames longer than `buf`.
    ///
    /// A written frame costs no buffer of the stack's and no reference count: with
    /// [`receive_slice`](Self::receive_slice) at the other end, a small frame
    /// crosses a link without an atomic operation. For large frames a device may
    /// prefer [`poll_transmit`](Self::poll_transmit), whose frames it can hand on
    /// without a copy.
    #[inline(always)]
    pub fn poll_transmit_into(&mut self, now: Instant, buf: &mut [u8]) -> Option<TxFrame> {
        if self.nothing_to_transmit() {
            return None;
        }
        match self.poll_transmit_any(now, Some(buf))? {
            Built::Owned(frame) => Some(TxFrame::Owned(frame)),
            Built::Written(len) => Some(TxFrame::Written(len)),
        }
    }

    /// Whether [`poll_transmit_any`](Self::poll_transmit_any) is sure to find
    /// nothing.
    #[inline(always)]
    fn nothing_to_transmit(&self) -> bool {
        self.loopback.is_empty() && self.tx.is_empty() && self.neighbors.nothing_resolving() && self.sockets.nothing_dirty()
    }

    /// [`poll_transmit`](Self::poll_transmit) when there may be something to do.
    fn poll_transmit_any(&mut self, now: Instant, mut out: Option<&mut [u8]>) -> Option<Built> {
        // Packets to our own address go round without touching the device.
        while let Some(frame) = self.loopback.pop_front() {
            self.receive(now, frame);
        }
        loop {
            if let Some(f) = self.tx.pop_front() {
                self.stats.tx_frames += 1;
                return Some(Built::Owned(f));
            }
            if let Some(ip) = self.neighbors.poll_request(now) {
                self.send_arp_request(ip);
                continue;
            }
            // Connections with something to say.
            // (`poll_segment` also queues the connection's events.)
            let mut handle = sockets::NO_CONN;
            // Looked at where it lies (`as_ref`): moved out of the option, its
            // narrowly written fields were read back with wider loads, a stalled
            // store forward.
            let seg = self.sockets.poll_segment(self.clock.ticks(now), &mut handle);
            let seg = seg.as_ref()?;
            // Fast path: `tx` is empty here, so a segment whose next hop is known goes
            // straight to the caller instead of through the queue.
            if let Some(frame) = self.send_tcp_segment(now, handle, seg, out.as_deref_mut()) {
                self.stats.tx_frames += 1;
                return Some(frame);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run.
    pub fn poll_at(&self) -> Option<Instant> {
        let tcp = self.sockets.poll_at().and_then(|t| self.clock.instant(t));
        let arp = self.neighbors.poll_at();
        match (tcp, arp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a timer is due by `now`: `poll_at().is_some_and(|t| t <= now)`, the
    /// check a driver makes on every turn of its loop before
    /// [`handle_timeout`](Self::handle_timeout), answered without building an
    /// `Instant` (the comparison is of the stack's own nanosecond counts, and the
    /// conversion of `now` is the one the turn's other calls already made).
    #[inline]
    pub fn timeout_due(&mut self, now: Instant) -> bool {
        let ticks = self.clock.ticks(now);
        // Tick 0 also stands for every `now` before the stack's epoch, which no
        // deadline is due by: that case, never a busy one, takes the general path.
        if ticks == Ticks::ZERO {
            return self.poll_at().is_some_and(|t| t <= now);
        }
        self.sockets.poll_at().is_some_and(|t| t <= ticks) || self.neighbors.poll_at().is_some_and(|t| t <= now)
    }

    /// Runs the timers due by `now` (retransmissions, delayed ACKs, TIME-WAIT, ARP).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.ticks(now);
        for handle in self.sockets.expired(now) {
            if let Some(c) = self.sockets.conn_mut(handle) {
                c.handle_timeout_at(now);
            }
            self.after_conn_call(handle);
        }
    }

    /// The next event for the application.
    ///
    /// A connection's events wait in the connection until they are handed out here,
    /// at most one of each kind ([`Connection::poll_event`]): an event raised while
    /// one of its kind waits is merged into it, so a burst of segments gives one
    /// `Readable` (and several freeings of send space one `Writable`).
    ///
    /// Order: the stack queues a connection once, when it first has an event
    /// waiting, and events of UDP sockets and listeners as they happen; it hands
    /// them out in that queue's order, a connection's waiting events one after the
    /// other in the order [`Connection::poll_event`] gives (`Connected`, `Readable`,
    /// `Writable`, `PeerClosed`, `Error`, `Closed`). An event raised on a connection
    /// while it waits in the queue joins its place there.
    ///
    /// Events of a connection the application gave up (`tcp_close`, `tcp_abort`)
    /// are not handed out, including those that were waiting when it did. Those of
    /// a connection not accepted yet are not either: its `Connected` becomes an
    /// [`Event::AcceptReady`] of its listener, and [`tcp_accept`](Self::tcp_accept)
    /// announces data and a FIN that came before it.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        // The loop that drains the events ends on an empty queue: that call is
        // answered in the caller's code.
        if self.sockets.no_events() {
            return None;
        }
        self.sockets.poll_event()
    }

    // ---- UDP ----------------------------------------------------------------------

    /// Opens a UDP socket on `port` (0: an ephemeral port).
    pub fn udp_bind(&mut self, port: u16) -> Result<UdpHandle, StackError> {
        self.sockets.udp_bind(port)
    }

    /// The local port of a UDP socket.
    pub fn udp_local_port(&self, h: UdpHandle) -> Result<u16, StackError> {
        self.sockets.udp(h).map(|s| s.port)
    }

    /// Sends one datagram. Larger than the MTU allows: [`StackError::MessageTooLong`].
    pub fn udp_send_to(&mut self, now: Instant, h: UdpHandle, dst: SocketAddrV4, payload: &[u8]) -> Result<(), StackError> {
        let src_port = self.sockets.udp(h)?.port;
        if IP_LEN + UDP_LEN + payload.len() > self.config.mtu {
            return Err(StackError::MessageTooLong);
        }
        let repr = UdpRepr { src_port, dst_port: dst.port() };
        let (src_ip, dst_ip, caps) = (self.config.ip, *dst.ip(), self.config.checksums);
        let len = repr.buffer_len(payload.len());
        let frame = self.build_ipv4(dst_ip, IpProtocol::Udp, len, |buf| {
            repr.emit(&mut UdpPacket::new_unchecked(buf), src_ip, dst_ip, payload, &caps);
        });
        self.route(now, dst_ip, frame)
    }

    /// The next queued datagram and its source.
    pub fn udp_recv_from(&mut self, h: UdpHandle) -> Result<(Bytes, SocketAddrV4), StackError> {
        self.sockets.udp_mut(h)?.queue.pop_front().ok_or(StackError::WouldBlock)
    }

    /// Takes the note that `peer` answered a datagram of this socket with ICMP port
    /// unreachable (a connected UDP socket reports it as "connection refused").
    pub fn udp_take_refusal(&mut self, h: UdpHandle) -> Result<Option<SocketAddrV4>, StackError> {
        Ok(self.sockets.udp_mut(h)?.refused_by.take())
    }

    /// Closes a UDP socket; queued datagrams are dropped.
    pub fn udp_close(&mut self, h: UdpHandle) -> Result<(), StackError> {
        self.sockets.udp_close(h)
    }

    // ---- TCP ----------------------------------------------------------------------

    /// Listens on `port` (0: ephemeral) with at most `backlog` connections waiting to
    /// be accepted (handshakes in progress count too). A SYN arriving when the backlog
    /// is full is dropped; the peer retries.
    pub fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<ListenHandle, StackError> {
        self.sockets.listen(port, backlog)
    }

    /// The local port of a listener.
    pub fn tcp_listen_port(&self, h: ListenHandle) -> Result<u16, StackError> {
        self.sockets.listener(h).map(|l| l.port)
    }

    /// Takes an established connection from a listener's queue. Data or a FIN that
    /// arrived before the call are announced with `Readable` / `PeerClosed` events.
    pub fn tcp_accept(&mut self, h: ListenHandle) -> Result<(ConnHandle, SocketAddrV4), StackError> {
        let conn = self.sockets.accept(h)?;
        let c = self.sockets.conn(conn)?;
        let remote = c.remote();
        // The events of a connection nobody had accepted were not delivered: announce
        // data and a FIN that arrived before `accept` (they often come with or right
        // after the handshake's last segment).
        let (readable, peer_closed) = (c.recv_available() > 0, c.state() == tcp::State::CloseWait);
        if readable || peer_closed {
            let c = self.sockets.conn_mut(conn).ok_or(StackError::BadHandle)?;
            if readable {
                c.push_event(TcpEvent::Readable);
            }
            if peer_closed {
                c.push_event(TcpEvent::PeerClosed);
            }
            self.sockets.queue_events(conn);
        }
        Ok((conn, remote))
    }

    /// Closes a listener; connections not yet accepted are reset.
    pub fn tcp_unlisten(&mut self, h: ListenHandle) -> Result<(), StackError> {
        for c in self.sockets.unlisten(h)? {
            if let Some(conn) = self.sockets.conn_mut(c) {
                conn.abort();
            }
            self.after_conn_call(c);
        }
        Ok(())
    }

    /// Starts connecting to `remote` from `local_port` (0: an ephemeral port).
    pub fn tcp_connect(&mut self, now: Instant, local_port: u16, remote: SocketAddrV4) -> Result<ConnHandle, StackError> {
        let tcp = self.config.tcp.clone();
        self.tcp_connect_with(now, local_port, remote, &tcp)
    }

    /// Like [`tcp_connect`](Self::tcp_connect) with this connection's own TCP
    /// settings (congestion control, SACK, timestamps, buffers, timers, …); the MSS
    /// is still fitted to the MTU.
    pub fn tcp_connect_with(
        &mut self,
        now: Instant,
        local_port: u16,
        remote: SocketAddrV4,
        tcp: &TcpConfig,
    ) -> Result<ConnHandle, StackError> {
        if !self.config.on_subnet(*remote.ip()) && self.config.gateway.is_none() {
            return Err(StackError::Unreachable);
        }
        if remote.port() == 0 || remote.ip().is_unspecified() || remote.ip().is_broadcast() || remote.ip().is_multicast() {
            return Err(StackError::AddressNotAvailable);
        }
        let port = if local_port == 0 { self.sockets.ephemeral_tcp_port()? } else { local_port };
        let local = SocketAddrV4::new(self.config.ip, port);
        let iss = self.isn.generate(local, remote, now);
        let tcp = self.fit_mss(tcp);
        let conn = Connection::connect_at(&tcp, local, remote, iss, self.clock.epoch(), self.clock.ticks(now));
        let h = self.sockets.insert_conn(conn, None)?;
        self.after_conn_call(h);
        Ok(h)
    }

    /// Turns Nagle's algorithm on or off on a connection (`false` is `TCP_NODELAY`).
    pub fn tcp_set_nagle(&mut self, h: ConnHandle, on: bool) -> Result<(), StackError> {
        self.sockets.app_conn_mut(h).ok_or(StackError::BadHandle)?.set_nagle(on);
        // Turning it off may release a held-back segment.
        self.after_conn_call(h);
        Ok(())
    }

    /// Sets the TCP settings of the connections a listener accepts from now on.
    pub fn tcp_listen_config(&mut self, h: ListenHandle, tcp: &TcpConfig) -> Result<(), StackError> {
        let tcp = self.fit_mss(tcp);
        self.sockets.set_listener_tcp(h, tcp)
    }

    /// `tcp` with its MSS lowered to what the MTU allows.
    fn fit_mss(&self, tcp: &TcpConfig) -> TcpConfig {
        TcpConfig { mss: tcp.mss.min(self.config.tcp.mss), ..tcp.clone() }
    }

    /// A connection, to read its state, addresses and statistics.
    pub fn tcp(&self, h: ConnHandle) -> Result<&Connection, StackError> {
        self.sockets.conn(h)
    }

    /// Queues data on a connection (zero-copy); returns how many bytes were taken.
    pub fn tcp_send(&mut self, h: ConnHandle, data: Bytes) -> Result<usize, StackError> {
        // (Inlined by request, as in `deliver_tcp`.)
        let r = self.sockets.app_call(h, #[inline(always)] |c| (c.send(data), true)).ok_or(StackError::BadHandle)?;
        Ok(r?)
    }

    /// Queues a copy of `data` on a connection; returns how many bytes were taken.
    /// The bytes go into the send queue's store (no allocation per write, no
    /// reference count); [`tcp_send`](Self::tcp_send) moves a buffer in without a
    /// copy, which suits large writes.
    pub fn tcp_send_slice(&mut self, h: ConnHandle, data: &[u8]) -> Result<usize, StackError> {
        let r = self.sockets.app_call(h, #[inline(always)] |c| (c.send_slice(data), true)).ok_or(StackError::BadHandle)?;
        Ok(r?)
    }

    /// Takes up to `max` bytes of in-order data.
    pub fn tcp_recv(&mut self, h: ConnHandle, max: usize) -> Result<Bytes, StackError> {
        // Fast path: a failed `recv` (WouldBlock, Finished, an error) changes nothing
        // in the connection (no state, timer, event or segment), so the bookkeeping of
        // `after_conn_call` would find nothing to do. Readers poll until WouldBlock,
        // so this is half of all `tcp_recv` calls.
        self.app_read(h, |c| c.recv(max))
    }

    /// Takes every in-order byte ready on a connection, handing each received buffer
    /// to `f` (zero-copy, in order); returns how many bytes. Equivalent to calling
    /// [`tcp_recv`](Self::tcp_recv) with no limit until it fails, with the stack's
    /// bookkeeping done once instead of per buffer.
    ///
    /// # Errors
    ///
    /// When nothing is ready: what `tcp_recv` returns then.
    pub fn tcp_recv_all(&mut self, h: ConnHandle, f: impl FnMut(Bytes)) -> Result<usize, StackError> {
        // As in `tcp_recv`, a failed call changes nothing.
        self.app_read(h, |c| c.recv_all(f))
    }

    /// Takes every in-order byte ready on a connection, lending each piece to `f`
    /// in order (nothing copied or allocated); returns how many bytes. The reader
    /// of [`receive_slice`](Self::receive_slice)'s copies: [`tcp_recv_all`](Self::tcp_recv_all)
    /// would copy each copied piece again, into a new [`Bytes`].
    ///
    /// # Errors
    ///
    /// When nothing is ready: what `tcp_recv` returns then.
    pub fn tcp_recv_borrowed(&mut self, h: ConnHandle, f: impl FnMut(&[u8])) -> Result<usize, StackError> {
        self.app_read(h, |c| c.recv_borrowed(f))
    }

    /// Copies up to `out.len()` in-order bytes into `out` (the shape of POSIX
    /// `read`); returns how many, more than 0.
    ///
    /// # Errors
    ///
    /// When nothing is ready, or `out` is empty: what `tcp_recv` returns then.
    pub fn tcp_recv_slice(&mut self, h: ConnHandle, out: &mut [u8]) -> Result<usize, StackError> {
        self.app_read(h, |c| c.recv_slice(out))
    }

    /// An application's read on connection `h`: the stack's bookkeeping runs only
    /// if it succeeded (a failed read changes nothing in the connection).
    #[inline(always)]
    fn app_read<T>(&mut self, h: ConnHandle, read: impl FnOnce(&mut Connection) -> Result<T, TcpError>) -> Result<T, StackError> {
        let r = self
            .sockets
            .app_call(h, |c| {
                let r = read(c);
                let changed = r.is_ok();
                (r, changed)
            })
            .ok_or(StackError::BadHandle)?;
        Ok(r?)
    }

    /// Sends a FIN after the queued data; the handle stays usable for receiving.
    pub fn tcp_shutdown(&mut self, h: ConnHandle) -> Result<(), StackError> {
        self.sockets.app_conn_mut(h).ok_or(StackError::BadHandle)?.close();
        self.after_conn_call(h);
        Ok(())
    }

    /// Closes gracefully and gives the handle up: the stack finishes the close
    /// (FIN, TIME-WAIT) on its own and then frees the connection. With received data
    /// still unread, or if data arrives later, the connection is reset instead (RFC
    /// 1122 §4.2.2.13): the peer learns that it was not read.
    pub fn tcp_close(&mut self, h: ConnHandle) -> Result<(), StackError> {
        let c = self.sockets.app_conn_mut(h).ok_or(StackError::BadHandle)?;
        if c.recv_available() > 0 {
            c.abort();
        } else {
            c.close();
        }
        self.sockets.release(h);
        self.after_conn_call(h);
        Ok(())
    }

    /// Resets the connection and gives the handle up.
    pub fn tcp_abort(&mut self, h: ConnHandle) -> Result<(), StackError> {
        self.sockets.app_conn_mut(h).ok_or(StackError::BadHandle)?.abort();
        self.sockets.release(h);
        self.after_conn_call(h);
        Ok(())
    }

    /// True if a listener or a connection uses local TCP port `port`.
    pub fn tcp_port_in_use(&self, port: u16) -> bool {
        self.sockets.tcp_port_in_use(port)
    }

    /// Live TCP connections (all states, including released ones finishing their close).
    pub fn tcp_connection_count(&self) -> usize {
        self.sockets.conn_count()
    }

    // ---- internals: events --------------------------------------------------------

    /// After any call into a connection: queue its events, reschedule its timer,
    /// mark it for transmission (it is freed there once it is finished).
    #[inline]
    fn after_conn_call(&mut self, h: ConnHandle) {
        self.sockets.after_call(h);
    }

    // ---- internals: receive -------------------------------------------------------

    fn receive_arp(&mut self, now: Instant, payload: &[u8]) {
        let Ok(pkt) = ArpPacket::new_checked(payload) else {
            self.stats.rx_malformed += 1;
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = ArpRepr::parse(&pkt)
        else {
            self.stats.rx_unsupported += 1;
            return;
        };
        if !source_hardware_addr.is_unicast() || source_protocol_addr.is_unspecified() {
            self.stats.rx_malformed += 1;
            return;
        }
        let for_us = target_protocol_addr == self.config.ip;
        if for_us || self.neighbors.is_resolving(source_protocol_addr) {
            let waiting = self.neighbors.fill(now, source_protocol_addr, source_hardware_addr);
            for frame in waiting {
                self.tx.push_back(with_dst_mac(frame, source_hardware_addr));
            }
        }
        if for_us && operation == ArpOperation::Request {
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.config.mac,
                source_protocol_addr: self.config.ip,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            self.send_arp(source_hardware_addr, &reply);
        }
    }

    fn receive_ipv4(&mut self, now: Instant, frame: &Bytes, offset: usize, len: usize, l2_broadcast: bool) {
        let data = &frame[offset..offset + len];
        let Ok(pkt) = Ipv4Packet::new_checked(data) else {
            self.stats.rx_malformed += 1;
            return;
        };
        let ip = match Ipv4Repr::parse(&pkt, &self.config.checksums) {
            Ok(ip) => ip,
            Err(crate::wire::Error::Unsupported) => {
                self.stats.rx_fragments += 1;
                return;
            }
            Err(crate::wire::Error::BadChecksum) => {
                self.stats.rx_bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.stats.rx_malformed += 1;
                return;
            }
        };
        let broadcast = ip.dst_addr.is_broadcast() || ip.dst_addr == self.config.subnet_broadcast();
        if ip.dst_addr != self.config.ip && !broadcast {
            self.stats.rx_not_for_us += 1;
            return;
        }
        // RFC 1122 §3.2.1.3: a broadcast or multicast source names no single host and
        // the datagram is discarded (an echo reply or port unreachable sent back to it
        // would reach every host on the subnet).
        if ip.src_addr.is_broadcast() || ip.src_addr.is_multicast() || ip.src_addr == self.config.subnet_broadcast() {
            self.stats.rx_malformed += 1;
            return;
        }
        let l4_start = offset + pkt.header_len();
        let l4 = pkt.payload();
        match ip.protocol {
            IpProtocol::Icmp if !broadcast => self.receive_icmp(now, &ip, l4),
            IpProtocol::Udp => self.receive_udp(now, &ip, frame, l4_start, l4, broadcast || l2_broadcast),
            IpProtocol::Tcp if !broadcast => self.receive_tcp(now, &ip, frame, l4),
            _ => self.stats.rx_unsupported += 1,
        }
    }

    fn receive_icmp(&mut self, now: Instant, ip: &Ipv4Repr, l4: &[u8]) {
        let Ok(pkt) = Icmpv4Packet::new_checked(l4) else {
            self.stats.rx_malformed += 1;
            return;
        };
        match Icmpv4Repr::parse(&pkt, &self.config.checksums) {
            Ok(Icmpv4Repr::EchoRequest { ident, seq_no, data }) => {
                // RFC 1122 §3.2.2.6: a reply that does not fit the MTU is truncated
                // to it (this stack does not fragment).
                let room = self.config.mtu.saturating_sub(IP_LEN + crate::wire::icmpv4::HEADER_LEN);
                let data = &data[..data.len().min(room)];
                let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
                let caps = self.config.checksums;
                let frame = self.build_ipv4(ip.src_addr, IpProtocol::Icmp, reply.buffer_len(), |buf| {
                    reply.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
                });
                self.stats.icmp_echo_replies += 1;
                let _ = self.route(now, ip.src_addr, frame);
            }
            Ok(Icmpv4Repr::DstUnreachable { reason: DstUnreachable::PortUnreachable, header, data }) => {
                // A datagram of ours hit a closed port: tell its socket (RFC 1122
                // §4.1.3.3). The quote holds the UDP header: source port, then
                // destination port.
                if header.protocol == IpProtocol::Udp && header.src_addr == self.config.ip && data.len() >= 4 {
                    let src_port = u16::from_be_bytes([data[0], data[1]]);
                    let dst_port = u16::from_be_bytes([data[2], data[3]]);
                    if let Some(h) = self.sockets.udp_by_port(src_port) {
                        if let Ok(sock) = self.sockets.udp_mut(h) {
                            sock.refused_by = Some(SocketAddrV4::new(header.dst_addr, dst_port));
                            self.sockets.push_event(Event::UdpReadable(h));
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => self.count_dropped(e),
        }
    }

    /// Counts a transport header that failed to parse.
    fn count_dropped(&mut self, e: crate::wire::Error) {
        match e {
            crate::wire::Error::BadChecksum => self.stats.rx_bad_checksum += 1,
            _ => self.stats.rx_malformed += 1,
        }
    }

    fn receive_udp(&mut self, now: Instant, ip: &Ipv4Repr, frame: &Bytes, l4_start: usize, l4: &[u8], broadcast: bool) {
        let Ok(pkt) = UdpPacket::new_checked(l4) else {
            self.stats.rx_malformed += 1;
            return;
        };
        let repr = match UdpRepr::parse(&pkt, ip.src_addr, ip.dst_addr, &self.config.checksums) {
            Ok(r) => r,
            Err(e) => return self.count_dropped(e),
        };
        let payload_len = pkt.payload().len();
        let src = SocketAddrV4::new(ip.src_addr, repr.src_port);
        match self.sockets.udp_by_port(repr.dst_port) {
            Some(h) => {
                let limit = self.config.udp_queue_len;
                let start = l4_start + UDP_LEN;
                let data = frame.slice(start..start + payload_len);
                let sock = self.sockets.udp_mut(h).expect("found by port");
                if sock.queue.len() >= limit {
                    self.stats.udp_queue_full += 1;
                    return;
                }
                let was_empty = sock.queue.is_empty();
                sock.queue.push_back((data, src));
                if was_empty {
                    self.sockets.push_event(Event::UdpReadable(h));
                }
            }
            None => {
                self.stats.udp_no_socket += 1;
                // RFC 1122 §3.2.2: no ICMP error about a broadcast, or about a
                // datagram whose source names no single host.
                if !broadcast && !ip.src_addr.is_unspecified() {
                    self.send_port_unreachable(now, ip, l4);
                }
            }
        }
    }

    fn send_port_unreachable(&mut self, now: Instant, ip: &Ipv4Repr, l4: &[u8]) {
        let msg = Icmpv4Repr::dst_unreachable(DstUnreachable::PortUnreachable, *ip, l4);
        let caps = self.config.checksums;
        let frame = self.build_ipv4(ip.src_addr, IpProtocol::Icmp, msg.buffer_len(), |buf| {
            msg.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
        });
        let _ = self.route(now, ip.src_addr, frame);
    }

    fn receive_tcp(&mut self, now: Instant, ip: &Ipv4Repr, frame: &Bytes, l4: &[u8]) {
        let Ok(pkt) = TcpPacket::new_checked(l4) else {
            self.stats.rx_malformed += 1;
            return;
        };
        let repr = match TcpRepr::parse(&pkt, ip.src_addr, ip.dst_addr, &self.config.checksums) {
            Ok(r) => r,
            Err(e) => return self.count_dropped(e),
        };
        let local = SocketAddrV4::new(ip.dst_addr, repr.dst_port);
        let remote = SocketAddrV4::new(ip.src_addr, repr.src_port);
        if repr.src_port == 0 || repr.dst_port == 0 || !ip.src_addr.is_unicast_like() {
            self.stats.rx_malformed += 1;
            return;
        }
        let payload = if repr.payload.is_empty() { Bytes::new() } else { frame.slice_ref(repr.payload) };
        let ticks = self.clock.ticks(now);
        if let Some(h) = self.sockets.find_conn(local, remote) {
            self.deliver_tcp(h, |c| c.handle_segment_at(ticks, &repr, payload));
            return;
        }
        let is_syn = repr.flags.contains(TcpFlags::SYN)
            && !repr.flags.intersects(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN);
        if let Some(l) = self.sockets.listener_by_port(repr.dst_port) {
            if is_syn {
                if !self.sockets.listener_has_room(l) {
                    self.stats.tcp_syn_dropped += 1;
                    return;
                }
                let iss = self.isn.generate(local, remote, now);
                let listener_tcp = self.sockets.listener(l).ok().and_then(|l| l.tcp.as_deref().cloned());
                let tcp = listener_tcp.as_ref().unwrap_or(&self.config.tcp);
                let conn = Connection::accept_at(tcp, local, remote, &repr, iss, self.clock.epoch(), ticks);
                match self.sockets.insert_conn(conn, Some(l)) {
                    Ok(h) => self.after_conn_call(h),
                    Err(_) => self.stats.tcp_syn_dropped += 1,
                }
                return;
            }
        }
        self.stats.tcp_no_socket += 1;
        if let Some(rst) = tcp::rst_for(&repr) {
            self.send_tcp_repr(now, local, remote, &rst);
        }
    }

    /// Hands a segment to its connection (`handle` feeds it), then does the
    /// bookkeeping, with one lookup of the connection for both. (The closure is
    /// inlined by request: left alone, the compiler kept it a call per segment.)
    #[inline]
    fn deliver_tcp(&mut self, h: ConnHandle, handle: impl FnOnce(&mut Connection)) {
        self.sockets.call(h, #[inline(always)] |c, released| {
            handle(c);
            if released && c.recv_available() > 0 {
                // New data for a queue the application closed: nobody will ever
                // read it. Reset rather than let the peer fill a window no one
                // drains (RFC 1122 §4.2.2.13). Old duplicates add nothing and
                // change nothing.
                c.abort();
            }
        });
    }

    /// The receive path of nearly every frame, in one pass over the headers: a TCP
    /// segment for an existing connection, in an unfragmented IPv4 datagram without
    /// options sent to our MAC and address, whose TCP options are none or
    /// `NOP, NOP, TS`. It reads exactly what the general path (`receive_ipv4`,
    /// `receive_tcp`) would, and checks the same things; anything else, including
    /// every frame that would be dropped or counted as an error, is handed back
    /// untouched for the general path. A taken frame becomes the payload itself (no
    /// second reference to count up and down).
    fn receive_tcp_fast<F: RxFrame>(&mut self, now: Instant, frame: F) -> Option<F> {
        const TCP_AT: usize = ETH_LEN + IP_LEN;
        let f = &frame[..];
        let Some(hdr) = f.first_chunk::<{ TCP_AT + crate::wire::tcp::HEADER_LEN }>() else {
            return Some(frame);
        };
        let word = |at: usize| u32::from_be_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]]);
        // Our MAC; ethertype IPv4, version 4 and a 20-byte header (any TOS); not a
        // fragment (MF clear, offset 0; DF and TTL any) and protocol TCP.
        if hdr[0..6] != self.config.mac.0 || word(12) & 0xffff_ff00 != 0x0800_4500 || word(20) & 0x3fff_00ff != 6 {
            return Some(frame);
        }
        let total = usize::from(u16::from_be_bytes([hdr[16], hdr[17]]));
        // The datagram within the frame.
        if total < IP_LEN + crate::wire::tcp::HEADER_LEN || ETH_LEN + total > f.len() {
            return Some(frame);
        }
        // To our address (which the general path takes as a broadcast if it is the
        // subnet's: `rx_unicast` is then out of a `u32`'s range), from a unicast one.
        let (src, dst) = (word(26), word(30));
        if u64::from(dst) != self.rx_unicast || src == u32::MAX || src >> 28 == 0xe || src == 0 || src == self.rx_broadcast {
            return Some(frame);
        }
        // The IPv4 header and the TCP pseudo-header share the addresses: their words
        // are read once, for both sums (native-order accumulators, whose fold is
        // `0xffff` exactly when the big-endian one is).
        let addresses = u64::from_ne_bytes(hdr[26..34].try_into().expect("8 bytes"));
        let caps = self.config.checksums;
        if caps.ipv4.rx() {
            // The 12 bytes before the addresses: one 64-bit and one 32-bit word.
            let first = u64::from_ne_bytes(hdr[ETH_LEN..ETH_LEN + 8].try_into().expect("8 bytes"));
            let second = u64::from(u32::from_ne_bytes(hdr[ETH_LEN + 8..ETH_LEN + 12].try_into().expect("4 bytes")));
            let acc = checksum::add_carry(checksum::add_carry(addresses, first), second);
            if !checksum::verified(checksum::fold64(acc) == 0xffff) {
                return Some(frame);
            }
        }
        let l4 = &f[TCP_AT..ETH_LEN + total];
        let pkt = TcpPacket::new_unchecked(l4);
        let header_len = pkt.header_len();
        if header_len > l4.len() {
            return Some(frame);
        }
        let timestamp = match header_len {
            20 => None,
            32 if l4[20..24] == [1, 1, 8, 10] => Some((
                u32::from_be_bytes([l4[24], l4[25], l4[26], l4[27]]),
                u32::from_be_bytes([l4[28], l4[29], l4[30], l4[31]]),
            )),
            _ => return Some(frame),
        };
        let (src_port, dst_port) = (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]));
        if src_port == 0 || dst_port == 0 {
            return Some(frame);
        }
        let key = TupleKey::received(
            u64::from(src) << 32 | u64::from(dst),
            u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]]),
        );
        let Some(h) = self.sockets.find_key(key) else {
            return Some(frame);
        };
        // What `TcpPacket::verify_checksum` computes: the pseudo-header (addresses,
        // then protocol and segment length as big-endian words, byte-swapped into the
        // native order) and the segment.
        if caps.tcp.rx() {
            let rest = u64::from(u16::from(u8::from(IpProtocol::Tcp)).to_be()) + u64::from((l4.len() as u16).to_be());
            let acc = checksum::add(checksum::add_carry(addresses, rest), l4);
            if !checksum::verified(checksum::fold64(acc) == 0xffff) {
                return Some(frame);
            }
        }
        let flags = TcpFlags::from_bits(l4[13]);
        let head = tcp::SegmentHead {
            src_port,
            dst_port,
            seq: SeqNumber(u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])),
            ack: flags
                .contains(TcpFlags::ACK)
                .then(|| SeqNumber(u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]))),
            window: u16::from_be_bytes([l4[14], l4[15]]),
            flags,
            timestamp,
        };
        let (start, end) = (TCP_AT + header_len, ETH_LEN + total);
        let payload = frame.into_payload(start, end);
        #[cfg(test)]
        {
            self.fast_rx_hits += 1;
        }
        let now = self.clock.ticks(now);
        self.deliver_tcp(h, |c| c.handle_head(now, &head, payload));
        None
    }

    // ---- internals: transmit ------------------------------------------------------

    /// A frame with Ethernet (destination filled in by [`route`](Self::route)) and
    /// IPv4 headers, and `l4_len` bytes written by `fill`.
    fn build_ipv4(&mut self, dst: Ipv4Addr, protocol: IpProtocol, l4_len: usize, fill: impl FnOnce(&mut [u8])) -> BytesMut {
        let mut frame = self.alloc_frame(ETH_LEN + IP_LEN + l4_len);
        self.emit_ipv4_headers(&mut frame, dst, protocol, l4_len);
        fill(&mut frame[ETH_LEN + IP_LEN..]);
        frame
    }

    /// Writes the Ethernet and IPv4 headers of a frame carrying `l4_len` bytes.
    fn emit_ipv4_headers(&mut self, frame: &mut [u8], dst: Ipv4Addr, protocol: IpProtocol, l4_len: usize) {
        // What `EthernetRepr::emit` and `Ipv4Repr::emit` write for an unfragmented
        // datagram with DF, TTL 64 and no options, byte by byte (the unit test
        // `ipv4_headers_match_the_wire_emitters` holds them to it).
        self.ip_ident = self.ip_ident.wrapping_add(1);
        frame[0..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
        frame[6..12].copy_from_slice(&self.config.mac.0);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let h = &mut frame[ETH_LEN..ETH_LEN + IP_LEN];
        h[0] = 0x45;
        h[1] = 0;
        h[2..4].copy_from_slice(&((IP_LEN + l4_len) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ip_ident.to_be_bytes());
        h[6..8].copy_from_slice(&[0x40, 0x00]);
        h[8] = DEFAULT_TTL;
        h[9] = u8::from(protocol);
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.config.ip.octets());
        h[16..20].copy_from_slice(&dst.octets());
        if self.config.checksums.ipv4.tx() {
            let value = checksum::checksum(h);
            h[10..12].copy_from_slice(&value.to_be_bytes());
        }
    }

    /// A zeroed frame buffer carved from a shared arena block (one allocation and one
    /// refcount for many frames; `reserve` reuses the block once all its frames are gone).
    fn alloc_frame(&mut self, len: usize) -> BytesMut {
        self.reserve_frame(len);
        self.arena.resize(len, 0);
        self.arena.split_to(len)
    }

    /// Makes room in the arena for a frame of `len` bytes.
    fn reserve_frame(&mut self, len: usize) {
        if self.arena.capacity() < len {
            self.arena.reserve(FRAME_BLOCK.max(len));
        }
    }

    /// Sends a built frame to the next hop, or parks it until ARP resolves.
    fn route(&mut self, now: Instant, dst: Ipv4Addr, frame: BytesMut) -> Result<(), StackError> {
        if let Some(frame) = self.route_inner(now, dst, frame)? {
            self.tx.push_back(frame);
        }
        Ok(())
    }

    /// [`route`](Self::route) for the transmit path: a frame whose next hop is known
    /// comes back, ready for the device, instead of being queued in `tx` (the caller
    /// sends it or queues it). Parked, looped-back and unroutable frames give `None`.
    fn route_direct(&mut self, now: Instant, dst: Ipv4Addr, frame: BytesMut) -> Option<Bytes> {
        self.route_inner(now, dst, frame).ok().flatten()
    }

    fn route_inner(&mut self, now: Instant, dst: Ipv4Addr, mut frame: BytesMut) -> Result<Option<Bytes>, StackError> {
        if dst == self.config.ip {
            // To ourselves: received on the next `poll_transmit`, never on the wire.
            frame[0..6].copy_from_slice(&self.config.mac.0);
            self.loopback.push_back(frame.freeze());
            return Ok(None);
        }
        let next_hop = if dst.is_broadcast() || dst == self.config.subnet_broadcast() {
            frame[0..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
            return Ok(Some(frame.freeze()));
        } else if self.config.on_subnet(dst) {
            dst
        } else if let Some(gw) = self.config.gateway {
            gw
        } else {
            self.stats.tx_no_route += 1;
            return Err(StackError::Unreachable);
        };
        if let Some((hop, mac, expires, generation)) = self.route_cache {
            if hop == next_hop && generation == self.neighbors.generation() && expires.is_none_or(|t| t > now) {
                frame[0..6].copy_from_slice(&mac.0);
                return Ok(Some(frame.freeze()));
            }
        }
        if let Some((mac, expires)) = self.neighbors.lookup_entry(now, next_hop) {
            self.route_cache = Some((next_hop, mac, expires, self.neighbors.generation()));
        }
        match self.neighbors.lookup(now, next_hop) {
            Lookup::Found(mac) => {
                frame[0..6].copy_from_slice(&mac.0);
                Ok(Some(frame.freeze()))
            }
            Lookup::Unknown => {
                self.neighbors.enqueue(now, next_hop, frame.freeze());
                Ok(None)
            }
            Lookup::Failed => {
                // In the hold-down after a failed resolution: `enqueue` drops the
                // packet and counts it in `dropped_unresolved`.
                self.neighbors.enqueue(now, next_hop, frame.freeze());
                Err(StackError::Unreachable)
            }
        }
    }

    fn send_arp(&mut self, dst_mac: EthernetAddress, repr: &ArpRepr) {
        let mut frame = BytesMut::zeroed(ETH_LEN + repr.buffer_len());
        let eth = EthernetRepr { src: self.config.mac, dst: dst_mac, ethertype: EtherType::Arp };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        repr.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH_LEN..]));
        self.tx.push_back(frame.freeze());
    }

    fn send_arp_request(&mut self, ip: Ipv4Addr) {
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.config.mac,
            source_protocol_addr: self.config.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        self.send_arp(EthernetAddress::BROADCAST, &req);
    }

    /// Builds the frame of a connection's segment. Returns it if it can go to the
    /// device now; otherwise it was parked for ARP, or looped back to ourselves.
    fn send_tcp_segment(&mut self, now: Instant, h: ConnHandle, seg: &SegmentHeader, out: Option<&mut [u8]>) -> Option<Built> {
        // The kept headers are read in place (`kept_head`), not copied out.
        let cached = self.tx_head_good(now, h);
        if cached {
            if let Some(built) = self.send_plain_tcp_segment(h, seg, out) {
                return Some(built);
            }
        }
        self.send_tcp_segment_general(now, h, seg, cached).map(Built::Owned)
    }

    /// [`send_tcp_segment`](Self::send_tcp_segment) for a segment the one-pass
    /// path does not build: the header field by field, and the frame routed.
    #[inline(never)]
    fn send_tcp_segment_general(&mut self, now: Instant, h: ConnHandle, seg: &SegmentHeader, cached: bool) -> Option<Bytes> {
        let c = self.sockets.conn_any(h)?;
        let (local, remote) = (c.local(), c.remote());
        let (src, dst, caps) = (*local.ip(), *remote.ip(), self.config.checksums);
        let repr = c.segment_repr(seg);
        let hdr = repr.header_len();
        let total = hdr + seg.payload_len;
        let head = ETH_LEN + IP_LEN + hdr;
        // The payload goes straight from the send queue into the frame, summed on the
        // way; the checksum then needs only the header and the pseudo-header on top.
        if self.arena.capacity() < head + seg.payload_len {
            self.arena.reserve(FRAME_BLOCK.max(head + seg.payload_len));
        }
        self.arena.resize(head, 0);
        let payload_sum = c.copy_payload(seg.payload_seq, seg.payload_len, &mut self.arena, caps.tcp.tx());
        let mut frame = self.arena.split_to(head + seg.payload_len);
        let no_tx = crate::wire::ChecksumCaps { tcp: crate::wire::Checksum::None, ..caps };
        match kept_head(&self.tx_heads, h).filter(|_| cached) {
            Some(t) => write_kept_ipv4_head(t, &mut frame[..ETH_LEN + IP_LEN], total, &mut self.ip_ident, caps.ipv4.tx()),
            None => self.emit_ipv4_headers(&mut frame, dst, IpProtocol::Tcp, total),
        }
        let mut pkt = TcpPacket::new_unchecked(&mut frame[ETH_LEN + IP_LEN..]);
        repr.emit(&mut pkt, src, dst, &no_tx);
        if caps.tcp.tx() {
            pkt.set_checksum(0);
            pkt.set_checksum(tcp_checksum(src, dst, &pkt.as_ref()[..hdr], total, payload_sum));
        }
        if cached {
            return Some(frame.freeze());
        }
        let out = self.route_direct(now, dst, frame);
        if let Some(f) = &out {
            self.keep_tx_head(h, dst, f);
        }
        out
    }

    /// The frame of nearly every segment once a connection is under way: its
    /// Ethernet and IPv4 headers are kept (and still good: the caller checked with
    /// [`tx_head_good`](Self::tx_head_good)), and the segment has no option but
    /// timestamps. All three headers are written in place, and the payload copied
    /// (and summed) after them; only the TCP checksum is written into the frame
    /// afterwards. `None` (nothing done) for any other segment, which
    /// [`send_tcp_segment`](Self::send_tcp_segment) builds field by field. Writes
    /// exactly what that path writes (the test
    /// `the_one_pass_receive_path_and_kept_headers_match_the_general_code` holds
    /// it to that).
    ///
    /// With `out` (a device's buffer) long enough, the frame is written there
    /// ([`write_plain_tcp_segment`](Self::write_plain_tcp_segment)); else into the
    /// arena, and split off ([`Built::Owned`]).
    #[inline(always)]
    fn send_plain_tcp_segment(&mut self, h: ConnHandle, seg: &SegmentHeader, out: Option<&mut [u8]>) -> Option<Built> {
        match out {
            Some(b) if b.len() >= ETH_LEN + IP_LEN + plain_header_len(seg) + seg.payload_len => self.write_plain_tcp_segment(h, seg, b),
            _ => self.build_plain_tcp_segment(h, seg),
        }
    }

    /// [`send_plain_tcp_segment`](Self::send_plain_tcp_segment) into the arena.
    /// (A function of its own, as it was before frames could be written into a
    /// device's buffer: with both in one body the compiler stopped inlining the
    /// arena's appends, a call to `memcpy` per frame.)
    fn build_plain_tcp_segment(&mut self, h: ConnHandle, seg: &SegmentHeader) -> Option<Built> {
        const TCP_AT: usize = ETH_LEN + IP_LEN;
        let Plain { t, c, ports, hdr } = plain_parts(&self.tx_heads, &self.sockets, h, seg)?;
        let caps = self.config.checksums;
        let (head, len) = (TCP_AT + hdr, TCP_AT + hdr + seg.payload_len);
        #[cfg(test)]
        {
            self.plain_tx_hits += 1;
        }
        if self.arena.capacity() < len {
            self.arena.reserve(FRAME_BLOCK.max(len));
        }
        // The headers are written in place, over zeros of a fixed length per header
        // size (a few wide stores, where a copy of `head` bytes is a call to
        // `memcpy`). Built in a local buffer and copied, they were read back with
        // wide loads right after narrow stores: a stalled store forward per load.
        if hdr == 32 {
            self.arena.extend_from_slice(&[0u8; TCP_AT + 32]);
        } else {
            self.arena.extend_from_slice(&[0u8; TCP_AT + 20]);
        }
        let word3 = write_plain_tcp_head(t, ports, seg, &mut self.arena[..head], &mut self.ip_ident, caps.ipv4.tx());
        let payload_sum = c.copy_payload(seg.payload_seq, seg.payload_len, &mut self.arena, caps.tcp.tx());
        if caps.tcp.tx() {
            let value = plain_tcp_checksum(t, seg, hdr, word3, payload_sum);
            self.arena[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&value.to_be_bytes());
        }
        Some(Built::Owned(self.arena.split_to(len).freeze()))
    }

    /// [`send_plain_tcp_segment`](Self::send_plain_tcp_segment) into `b`, which is
    /// long enough.
    fn write_plain_tcp_segment(&mut self, h: ConnHandle, seg: &SegmentHeader, b: &mut [u8]) -> Option<Built> {
        const TCP_AT: usize = ETH_LEN + IP_LEN;
        let Plain { t, c, ports, hdr } = plain_parts(&self.tx_heads, &self.sockets, h, seg)?;
        let caps = self.config.checksums;
        let (head, len) = (TCP_AT + hdr, TCP_AT + hdr + seg.payload_len);
        #[cfg(test)]
        {
            self.plain_tx_hits += 1;
        }
        let b = &mut b[..len];
        if hdr == 32 {
            b[..TCP_AT + 32].copy_from_slice(&[0u8; TCP_AT + 32]);
        } else {
            b[..TCP_AT + 20].copy_from_slice(&[0u8; TCP_AT + 20]);
        }
        let word3 = write_plain_tcp_head(t, ports, seg, &mut b[..head], &mut self.ip_ident, caps.ipv4.tx());
        let mut payload = SliceOut { buf: &mut b[head..], at: 0 };
        let payload_sum = c.copy_payload(seg.payload_seq, seg.payload_len, &mut payload, caps.tcp.tx());
        if caps.tcp.tx() {
            let value = plain_tcp_checksum(t, seg, hdr, word3, payload_sum);
            b[TCP_AT + 16..TCP_AT + 18].copy_from_slice(&value.to_be_bytes());
        }
        Some(Built::Written(len))
    }

    /// Whether headers are kept for connection `h` by
    /// [`keep_tx_head`](Self::keep_tx_head) and still good: the neighbour cache
    /// unchanged and its entry not expired. Then [`kept_head`] gives them.
    fn tx_head_good(&self, now: Instant, h: ConnHandle) -> bool {
        #[cfg(test)]
        if !self.fast_tx {
            return false;
        }
        kept_head(&self.tx_heads, h).is_some_and(|t| t.generation == self.neighbors.generation() && t.expires.is_none_or(|e| e > now))
    }

    /// After `frame` of connection `h` went straight to a resolved unicast next hop:
    /// keeps its Ethernet and IPv4 headers (length, ident and checksum zeroed) for
    /// the connection's next segments.
    fn keep_tx_head(&mut self, h: ConnHandle, dst: Ipv4Addr, frame: &[u8]) {
        let next_hop = if dst == self.config.ip || dst.is_broadcast() || dst == self.config.subnet_broadcast() {
            return;
        } else if self.config.on_subnet(dst) {
            dst
        } else if let Some(gw) = self.config.gateway {
            gw
        } else {
            return;
        };
        let Some((hop, mac, expires, generation)) = self.route_cache else { return };
        if hop != next_hop || generation != self.neighbors.generation() || frame[0..6] != mac.0 {
            return;
        }
        let mut bytes = [0u8; ETH_LEN + IP_LEN];
        bytes.copy_from_slice(&frame[..ETH_LEN + IP_LEN]);
        for at in [ETH_LEN + 2, ETH_LEN + 4, ETH_LEN + 10] {
            bytes[at..at + 2].copy_from_slice(&[0, 0]);
        }
        let ip_sum = checksum::sum(&bytes[ETH_LEN..]);
        // Source and destination addresses and ports lie together, from the IPv4
        // source address on.
        let tcp_sum = checksum::sum(&frame[ETH_LEN + 12..ETH_LEN + IP_LEN + 4]) + u32::from(u8::from(IpProtocol::Tcp));
        let index = h.slot();
        if self.tx_heads.len() <= index {
            self.tx_heads.resize(index + 1, None);
        }
        self.tx_heads[index] = Some((h, TxHead { bytes, ip_sum, tcp_sum, generation, expires }));
    }

    fn send_tcp_repr(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, repr: &TcpRepr<'_>) {
        let (src, dst, caps) = (*local.ip(), *remote.ip(), self.config.checksums);
        let mut repr = *repr;
        repr.src_port = local.port();
        repr.dst_port = remote.port();
        let len = repr.buffer_len();
        let frame = self.build_ipv4(dst, IpProtocol::Tcp, len, |buf| {
            repr.emit(&mut TcpPacket::new_unchecked(buf), src, dst, &caps);
        });
        let _ = self.route(now, dst, frame);
    }
}

/// A connection's Ethernet and IPv4 headers as its segments carry them, with the
/// IPv4 total length, ident and checksum zero, and what they were built under.
#[derive(Clone, Copy, Debug)]
struct TxHead {
    bytes: [u8; ETH_LEN + IP_LEN],
    /// The partial checksum of the IPv4 header in `bytes`.
    ip_sum: u32,
    /// The partial checksum of what every TCP segment of the connection has in
    /// its checksum: the pseudo-header's addresses and protocol, and the ports.
    tcp_sum: u32,
    /// The neighbour cache's generation and the next hop entry's expiry.
    generation: u64,
    expires: Option<Instant>,
}

/// The headers kept for connection `h` in `tx_heads` (the stack's), good or not
/// (see [`Stack::tx_head_good`]). A function of the field rather than a method, so
/// that the headers can be read in place while other fields of the stack change.
fn kept_head(tx_heads: &[Option<(ConnHandle, TxHead)>], h: ConnHandle) -> Option<&TxHead> {
    match tx_heads.get(h.slot()) {
        Some(Some((owner, t))) if *owner == h => Some(t),
        _ => None,
    }
}

/// Writes a connection's kept Ethernet and IPv4 headers (`t`, next hop included)
/// into `out` for a datagram carrying `l4_len` bytes: only the length, the next
/// ident (taken from `ident`) and, if `ipv4_sum`, the header checksum change from
/// segment to segment.
fn write_kept_ipv4_head(t: &TxHead, out: &mut [u8], l4_len: usize, ident: &mut u16, ipv4_sum: bool) {
    out.copy_from_slice(&t.bytes);
    *ident = ident.wrapping_add(1);
    let ip_len = (IP_LEN + l4_len) as u16;
    out[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&ip_len.to_be_bytes());
    out[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&ident.to_be_bytes());
    if ipv4_sum {
        let sum = t.ip_sum + u32::from(ip_len) + u32::from(*ident);
        out[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
    }
}

/// The TCP header length of a plain segment: 32 bytes with timestamps, else 20.
#[inline(always)]
fn plain_header_len(seg: &SegmentHeader) -> usize {
    if seg.timestamp.is_some() {
        32
    } else {
        20
    }
}

/// What a plain segment of a connection is built from.
struct Plain<'a> {
    /// The connection's kept Ethernet and IPv4 headers.
    t: &'a TxHead,
    c: &'a Connection,
    /// Local and remote port.
    ports: (u16, u16),
    /// The TCP header's length.
    hdr: usize,
}

/// What a plain segment of connection `h` is built from. `None` if the segment
/// has other options, or the headers or the connection are gone.
#[inline(always)]
fn plain_parts<'a>(
    tx_heads: &'a [Option<(ConnHandle, TxHead)>],
    sockets: &'a Sockets,
    h: ConnHandle,
    seg: &SegmentHeader,
) -> Option<Plain<'a>> {
    if seg.more_options {
        return None;
    }
    let (t, c) = (kept_head(tx_heads, h)?, sockets.conn_any(h)?);
    Some(Plain { t, c, ports: (c.local().port(), c.remote().port()), hdr: plain_header_len(seg) })
}

/// Writes the headers of a plain segment (no option but timestamps) over the
/// zeros of `b` (its `head` bytes): the kept Ethernet and IPv4 headers, then the
/// TCP header from the connection's `ports` and `seg`. Returns the TCP header's
/// fourth 32-bit word (data offset, flags, window), which the checksum needs.
#[inline(always)]
fn write_plain_tcp_head(t: &TxHead, ports: (u16, u16), seg: &SegmentHeader, b: &mut [u8], ident: &mut u16, ipv4_sum: bool) -> u32 {
    const TCP_AT: usize = ETH_LEN + IP_LEN;
    let hdr = b.len() - TCP_AT;
    write_kept_ipv4_head(t, &mut b[..TCP_AT], hdr + seg.payload_len, ident, ipv4_sum);
    let mut flags = seg.flags;
    flags.set(TcpFlags::ACK, seg.ack_number.is_some());
    // Data offset, flags and window: one 32-bit word of the header.
    let word3 = u32::from(((hdr / 4) as u8) << 4) << 24 | u32::from(flags.bits()) << 16 | u32::from(seg.window_len);
    let tcp = &mut b[TCP_AT..];
    tcp[0..2].copy_from_slice(&ports.0.to_be_bytes());
    tcp[2..4].copy_from_slice(&ports.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&seg.seq_number.0.to_be_bytes());
    tcp[8..12].copy_from_slice(&seg.ack_number.unwrap_or_default().0.to_be_bytes());
    tcp[12..16].copy_from_slice(&word3.to_be_bytes());
    // Checksum and urgent pointer: zero.
    if let Some((tsval, tsecr)) = seg.timestamp {
        tcp[20..24].copy_from_slice(&[1, 1, 8, 10]);
        tcp[24..28].copy_from_slice(&tsval.to_be_bytes());
        tcp[28..32].copy_from_slice(&tsecr.to_be_bytes());
    }
    word3
}

/// The TCP checksum of a plain segment whose header is `hdr` bytes, its fourth
/// word `word3`, and whose payload sums to `payload_sum`: from the header's fields
/// as 32-bit words. The addresses, the protocol and the ports are the
/// connection's (`t.tcp_sum`); the length, the numbers, offset/flags/window and
/// the option change.
#[inline(always)]
fn plain_tcp_checksum(t: &TxHead, seg: &SegmentHeader, hdr: usize, word3: u32, payload_sum: u32) -> u16 {
    let mut acc = u64::from(t.tcp_sum)
        + (hdr + seg.payload_len) as u64
        + u64::from(seg.seq_number.0)
        + u64::from(seg.ack_number.unwrap_or_default().0)
        + u64::from(word3)
        + u64::from(payload_sum);
    if let Some((tsval, tsecr)) = seg.timestamp {
        acc += 0x0101_080a + u64::from(tsval) + u64::from(tsecr);
    }
    !checksum::fold(checksum::fold64(acc))
}

/// The TCP checksum field of a segment `src` → `dst` of `total` bytes whose header
/// (checksum field zero) is `header` and whose payload sums to `payload_sum`.
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, header: &[u8], total: usize, payload_sum: u32) -> u16 {
    let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, total);
    !checksum::fold(checksum::combine(checksum::combine(pseudo, checksum::sum(header)), payload_sum))
}

/// A parked frame, with the destination address now known.
fn with_dst_mac(frame: Bytes, mac: EthernetAddress) -> Bytes {
    let mut f = BytesMut::from(&frame[..]);
    f[0..6].copy_from_slice(&mac.0);
    f.freeze()
}

trait UnicastLike {
    fn is_unicast_like(&self) -> bool;
}

impl UnicastLike for Ipv4Addr {
    /// Not broadcast, multicast or unspecified: a valid source of a TCP segment.
    fn is_unicast_like(&self) -> bool {
        !(self.is_broadcast() || self.is_multicast() || self.is_unspecified())
    }
}
