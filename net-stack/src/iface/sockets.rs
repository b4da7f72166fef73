//! The socket tables of a stack: UDP sockets, TCP listeners and TCP connections,
//! each behind a generation-checked handle, plus the bookkeeping that keeps the
//! per-frame and per-timer work proportional to the connections that need it: a
//! queue of connections that may have something to send, an ordered index of
//! connection deadlines, and the stack's event queue, where a connection with events
//! stands for all of them.

use super::{Event, StackConfig, StackError};
use crate::fifo::Fifo;
use crate::tcp::{Connection, SegmentHeader, State, TcpEvent};
use bytes::Bytes;
use slab::Slab;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use crate::time::Ticks;

const EPHEMERAL_FIRST: u16 = 49_152;
const EPHEMERAL_COUNT: u32 = 65_536 - EPHEMERAL_FIRST as u32;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name {
            /// The slot in the high half, its generation in the low half: one
            /// word, written and read whole. (As two 32-bit fields, a handle
            /// built field by field and then moved as one 64-bit word stalled the
            /// load on the two narrower stores, on every event queued.)
            packed: u64,
        }

        impl $name {
            /// The handle of slot `index` in its `generation`.
            #[inline(always)]
            pub(crate) const fn new(index: u32, generation: u32) -> $name {
                $name { packed: (index as u64) << 32 | generation as u64 }
            }

            /// The raw value (for logs and maps).
            pub fn raw(self) -> u64 {
                ((self.generation() as u64) << 32) | self.slot() as u64
            }

            /// The slot of the table it names (reused once the socket is gone).
            #[inline(always)]
            pub(crate) fn slot(self) -> usize {
                (self.packed >> 32) as usize
            }

            /// The generation of the slot it names.
            #[inline(always)]
            pub(crate) fn generation(self) -> u32 {
                self.packed as u32
            }
        }

        /// Hashed as its slot, then its generation (as when they were two fields:
        /// a multiplicative hasher spreads the two words better than one).
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                state.write_u32(self.slot() as u32);
                state.write_u32(self.generation());
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("index", &self.slot())
                    .field("generation", &self.generation())
                    .finish()
            }
        }
    };
}

handle!(
    /// Names a UDP socket of a stack.
    UdpHandle
);
handle!(
    /// Names a TCP listener of a stack.
    ListenHandle
);
handle!(
    /// Names a TCP connection of a stack.
    ConnHandle
);

/// A UDP socket.
#[derive(Debug)]
pub(crate) struct UdpSock {
    generation: u32,
    pub(crate) port: u16,
    pub(crate) queue: VecDeque<(Bytes, SocketAddrV4)>,
    /// A peer that answered one of our datagrams with port unreachable.
    pub(crate) refused_by: Option<SocketAddrV4>,
}

/// A TCP listener.
#[derive(Debug)]
pub(crate) struct Listener {
    generation: u32,
    pub(crate) port: u16,
    backlog: usize,
    /// Established connections waiting for `accept`.
    ready: VecDeque<ConnHandle>,
    /// Connections of this listener not yet accepted (handshaking or ready).
    unaccepted: usize,
    /// TCP settings of the connections it accepts (None: the stack's).
    pub(crate) tcp: Option<Box<crate::tcp::TcpConfig>>,
}

struct ConnEntry {
    generation: u32,
    conn: Connection,
    /// The listener that made it, until the application accepts it.
    listener: Option<ListenHandle>,
    /// The application gave the handle up (close/abort); freed once Closed.
    released: bool,
    /// Its entry in the timer index: never later than `deadline` when that is set
    /// (see [`ConnEntry::settle`]).
    timer: Option<Ticks>,
    /// The connection's own deadline (`Connection::deadline`) as of the last refresh.
    deadline: Option<Ticks>,
    /// Queued in `dirty`.
    dirty: bool,
    /// Queued in `events` (as `Pending::Conn`).
    events_queued: bool,
}

impl ConnEntry {
    /// The bookkeeping after any call into the connection: files its deadline in the
    /// timer index, and queues it in `events` if it has events the application
    /// takes. Returns whether it has events to route elsewhere (it is released, or
    /// not accepted yet): [`Sockets::route_events`].
    ///
    /// The timer index is kept lazily: the entry may be earlier than the deadline (it
    /// moved later) or stand for no deadline at all (it was cleared), and is only
    /// replaced when the deadline moves earlier than it. A connection whose
    /// retransmission timer is armed and stopped on every round trip thus touches
    /// the index about once per RTO instead of twice per segment.
    /// [`Sockets::poll_at`] and [`Sockets::expired`] look through stale entries to
    /// the real deadlines.
    #[inline(always)]
    fn settle(
        &mut self,
        h: ConnHandle,
        timers: &mut BTreeSet<(Ticks, usize)>,
        events: &mut Fifo<Pending>,
    ) -> bool {
        let new = self.conn.deadline();
        self.deadline = new;
        if let Some(n) = new {
            if self.timer.is_none_or(|old| n < old) {
                self.file_timer(h.slot(), n, timers);
            }
        }
        if !self.conn.has_events() || self.events_queued {
            return false;
        }
        if self.released || self.listener.is_some() {
            return true;
        }
        self.events_queued = true;
        events.push_back(Pending::Conn(h));
        false
    }

    /// [`Sockets::after_call`] on the entry: queues it in `dirty` unless it is
    /// there, then [`settle`](Self::settle)s it (and answers as that does).
    #[inline(always)]
    fn after_call(
        &mut self,
        h: ConnHandle,
        dirty: &mut Fifo<usize>,
        timers: &mut BTreeSet<(Ticks, usize)>,
        events: &mut Fifo<Pending>,
    ) -> bool {
        if !self.dirty {
            self.dirty = true;
            dirty.push_back(h.slot());
        }
        self.settle(h, timers, events)
    }

    /// Replaces its entry in the timer index by one at `at` (rare: about once per
    /// RTO, so kept out of the callers' code).
    #[inline(never)]
    fn file_timer(&mut self, index: usize, at: Ticks, timers: &mut BTreeSet<(Ticks, usize)>) {
        if let Some(old) = self.timer.replace(at) {
            timers.remove(&(old, index));
        }
        timers.insert((at, index));
    }
}

/// An entry of the stack's event queue.
enum Pending {
    /// A connection with events: it is queued at most once, and stays at the front
    /// until it has none left (`ConnEntry::events_queued`).
    Conn(ConnHandle),
    /// An event of a UDP socket or a listener.
    Ready(Event),
}

/// A connection's 4-tuple packed into two integers, to compare in two steps, in
/// the order a segment from the peer carries it: the remote address or port in the
/// high half, the local one in the low half.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TupleKey {
    addrs: u64,
    ports: u32,
}

impl TupleKey {
    #[inline]
    pub(crate) fn of(local: SocketAddrV4, remote: SocketAddrV4) -> TupleKey {
        TupleKey {
            addrs: (u64::from(remote.ip().to_bits()) << 32) | u64::from(local.ip().to_bits()),
            ports: (u32::from(remote.port()) << 16) | u32::from(local.port()),
        }
    }

    /// The key of a received segment, from the 8 address bytes of its IPv4 header
    /// (source, destination) and the first 4 bytes of its TCP header (source port,
    /// destination port), each read as one big-endian integer.
    #[inline]
    pub(crate) fn received(addrs: u64, ports: u32) -> TupleKey {
        TupleKey { addrs, ports }
    }

    fn local(self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from_bits(self.addrs as u32), self.ports as u16)
    }

    fn remote(self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from_bits((self.addrs >> 32) as u32), (self.ports >> 16) as u16)
    }
}

/// A handle no connection ever has (generations start at 1 and skip 0).
pub(crate) const NO_CONN: ConnHandle = ConnHandle::new(0, 0);

pub(crate) struct Sockets {
    generation: u32,
    udp: Slab<UdpSock>,
    udp_ports: BTreeMap<u16, usize>,
    listeners: Slab<Listener>,
    listen_ports: BTreeMap<u16, usize>,
    conns: Slab<ConnEntry>,
    by_tuple: HashMap<(SocketAddrV4, SocketAddrV4), usize>,
    /// The connection the last segment went to: a hit skips the (keyed, so
    /// collision-resistant but slower) hash lookup for back-to-back segments. It
    /// always names a live connection with that 4-tuple (`reap_if_done` forgets
    /// it), or none at all: [`NO_CONN`] at first.
    last_hit: Cell<(TupleKey, ConnHandle)>,
    /// Local TCP ports in use by connections, with counts.
    tcp_ports: BTreeMap<u16, u32>,
    timers: BTreeSet<(Ticks, usize)>,
    dirty: Fifo<usize>,
    /// The stack's event queue.
    events: Fifo<Pending>,
    next_ephemeral: u32,
    max_connections: usize,
    /// What the live connections' send and receive buffers may hold together, and
    /// the cap on it.
    buffer_bytes: usize,
    max_buffer_bytes: usize,
}

impl Sockets {
    pub(crate) fn new(config: &StackConfig) -> Self {
        Sockets {
            generation: 1,
            udp: Slab::new(),
            udp_ports: BTreeMap::new(),
            listeners: Slab::new(),
            listen_ports: BTreeMap::new(),
            conns: Slab::new(),
            by_tuple: HashMap::new(),
            last_hit: Cell::new((TupleKey::default(), NO_CONN)),
            tcp_ports: BTreeMap::new(),
            timers: BTreeSet::new(),
            dirty: Fifo::default(),
            events: Fifo::default(),
            next_ephemeral: (config.seed % u64::from(EPHEMERAL_COUNT)) as u32,
            max_connections: config.max_connections,
            buffer_bytes: 0,
            max_buffer_bytes: config.max_buffer_memory,
        }
    }

    fn next_generation(&mut self) -> u32 {
        let g = self.generation;
        self.generation = self.generation.wrapping_add(1).max(1);
        g
    }

    /// The next free port of the ephemeral range after `next` (which moves on), by
    /// lookups in the port maps: no copy of the maps, no scan of them.
    fn ephemeral(next: &mut u32, taken: impl Fn(u16) -> bool) -> Result<u16, StackError> {
        for _ in 0..EPHEMERAL_COUNT {
            let port = EPHEMERAL_FIRST + (*next % EPHEMERAL_COUNT) as u16;
            *next = next.wrapping_add(1);
            if !taken(port) {
                return Ok(port);
            }
        }
        Err(StackError::NoBufferSpace)
    }

    // ---- UDP ----------------------------------------------------------------------

    pub(crate) fn udp_bind(&mut self, port: u16) -> Result<UdpHandle, StackError> {
        let port = if port == 0 {
            let used = &self.udp_ports;
            Self::ephemeral(&mut self.next_ephemeral, |p| used.contains_key(&p))?
        } else if self.udp_ports.contains_key(&port) {
            return Err(StackError::AddressInUse);
        } else {
            port
        };
        let generation = self.next_generation();
        let index = self.udp.insert(UdpSock { generation, port, queue: VecDeque::new(), refused_by: None });
        self.udp_ports.insert(port, index);
        Ok(UdpHandle::new(index as u32, generation))
    }

    pub(crate) fn udp(&self, h: UdpHandle) -> Result<&UdpSock, StackError> {
        match self.udp.get(h.slot()) {
            Some(s) if s.generation == h.generation() => Ok(s),
            _ => Err(StackError::BadHandle),
        }
    }

    pub(crate) fn udp_mut(&mut self, h: UdpHandle) -> Result<&mut UdpSock, StackError> {
        match self.udp.get_mut(h.slot()) {
            Some(s) if s.generation == h.generation() => Ok(s),
            _ => Err(StackError::BadHandle),
        }
    }

    pub(crate) fn udp_by_port(&self, port: u16) -> Option<UdpHandle> {
        let &index = self.udp_ports.get(&port)?;
        Some(UdpHandle::new(index as u32, self.udp[index].generation))
    }

    pub(crate) fn udp_close(&mut self, h: UdpHandle) -> Result<(), StackError> {
        let port = self.udp(h)?.port;
        self.udp.remove(h.slot());
        self.udp_ports.remove(&port);
        Ok(())
    }

    // ---- listeners ----------------------------------------------------------------

    pub(crate) fn listen(&mut self, port: u16, backlog: usize) -> Result<ListenHandle, StackError> {
        let port = if port == 0 {
            self.ephemeral_tcp_port()?
        } else if self.listen_ports.contains_key(&port) {
            return Err(StackError::AddressInUse);
        } else {
            port
        };
        let generation = self.next_generation();
        let index = self.listeners.insert(Listener {
            generation,
            port,
            backlog: backlog.max(1),
            ready: VecDeque::new(),
            unaccepted: 0,
            tcp: None,
        });
        self.listen_ports.insert(port, index);
        Ok(ListenHandle::new(index as u32, generation))
    }

    pub(crate) fn set_listener_tcp(&mut self, h: ListenHandle, tcp: crate::tcp::TcpConfig) -> Result<(), StackError> {
        self.listener_mut(h).ok_or(StackError::BadHandle)?.tcp = Some(Box::new(tcp));
        Ok(())
    }

    pub(crate) fn listener(&self, h: ListenHandle) -> Result<&Listener, StackError> {
        match self.listeners.get(h.slot()) {
            Some(l) if l.generation == h.generation() => Ok(l),
            _ => Err(StackError::BadHandle),
        }
    }

    fn listener_mut(&mut self, h: ListenHandle) -> Option<&mut Listener> {
        match self.listeners.get_mut(h.slot()) {
            Some(l) if l.generation == h.generation() => Some(l),
            _ => None,
        }
    }

    pub(crate) fn listener_by_port(&self, port: u16) -> Option<ListenHandle> {
        let &index = self.listen_ports.get(&port)?;
        Some(ListenHandle::new(index as u32, self.listeners[index].generation))
    }

    pub(crate) fn listener_has_room(&self, h: ListenHandle) -> bool {
        self.listener(h).is_ok_and(|l| l.unaccepted < l.backlog)
    }

    pub(crate) fn accept(&mut self, h: ListenHandle) -> Result<ConnHandle, StackError> {
        let l = self.listener_mut(h).ok_or(StackError::BadHandle)?;
        let c = l.ready.pop_front().ok_or(StackError::WouldBlock)?;
        l.unaccepted -= 1;
        if let Some(e) = self.entry_mut(c) {
            e.listener = None;
        }
        Ok(c)
    }

    /// Closes a listener; returns its connections that were not accepted.
    pub(crate) fn unlisten(&mut self, h: ListenHandle) -> Result<Vec<ConnHandle>, StackError> {
        let port = self.listener(h)?.port;
        self.listeners.remove(h.slot());
        self.listen_ports.remove(&port);
        let orphans: Vec<ConnHandle> = self
            .conns
            .iter()
            .filter(|(_, e)| e.listener == Some(h))
            .map(|(i, e)| ConnHandle::new(i as u32, e.generation))
            .collect();
        for &c in &orphans {
            if let Some(e) = self.entry_mut(c) {
                e.listener = None;
                e.released = true;
            }
        }
        Ok(orphans)
    }

    // ---- connections --------------------------------------------------------------

    /// A local TCP port no listener or connection uses.
    pub(crate) fn ephemeral_tcp_port(&mut self) -> Result<u16, StackError> {
        let (listen, conns) = (&self.listen_ports, &self.tcp_ports);
        Self::ephemeral(&mut self.next_ephemeral, |p| listen.contains_key(&p) || conns.contains_key(&p))
    }

    pub(crate) fn insert_conn(&mut self, conn: Connection, listener: Option<ListenHandle>) -> Result<ConnHandle, StackError> {
        if self.conns.len() >= self.max_connections {
            return Err(StackError::NoBufferSpace);
        }
        let budget = conn.buffer_budget();
        if self.buffer_bytes.saturating_add(budget) > self.max_buffer_bytes {
            return Err(StackError::NoBufferSpace);
        }
        self.buffer_bytes += budget;
        let key = (conn.local(), conn.remote());
        if self.by_tuple.contains_key(&key) {
            return Err(StackError::AddressInUse);
        }
        let generation = self.next_generation();
        let port = conn.local().port();
        let index = self.conns.insert(ConnEntry {
            generation,
            conn,
            listener,
            released: false,
            timer: None,
            deadline: None,
            dirty: false,
            events_queued: false,
        });
        self.by_tuple.insert(key, index);
        *self.tcp_ports.entry(port).or_insert(0) += 1;
        if let Some(l) = listener.and_then(|l| self.listener_mut(l)) {
            l.unaccepted += 1;
        }
        Ok(ConnHandle::new(index as u32, generation))
    }

    fn entry(&self, h: ConnHandle) -> Option<&ConnEntry> {
        self.conns.get(h.slot()).filter(|e| e.generation == h.generation())
    }

    fn entry_mut(&mut self, h: ConnHandle) -> Option<&mut ConnEntry> {
        self.conns.get_mut(h.slot()).filter(|e| e.generation == h.generation())
    }

    /// The connection behind a handle the application holds (not released, accepted).
    pub(crate) fn conn(&self, h: ConnHandle) -> Result<&Connection, StackError> {
        match self.entry(h) {
            Some(e) if !e.released && e.listener.is_none() => Ok(&e.conn),
            _ => Err(StackError::BadHandle),
        }
    }

    /// Read access for the stack's own work, released or not, accepted or not.
    pub(crate) fn conn_any(&self, h: ConnHandle) -> Option<&Connection> {
        self.entry(h).map(|e| &e.conn)
    }

    /// Mutable access for the application's calls.
    pub(crate) fn app_conn_mut(&mut self, h: ConnHandle) -> Option<&mut Connection> {
        match self.entry_mut(h) {
            Some(e) if !e.released && e.listener.is_none() => Some(&mut e.conn),
            _ => None,
        }
    }

    /// Mutable access for the stack's own work (segments, timers), released or not.
    pub(crate) fn conn_mut(&mut self, h: ConnHandle) -> Option<&mut Connection> {
        self.entry_mut(h).map(|e| &mut e.conn)
    }

    pub(crate) fn release(&mut self, h: ConnHandle) {
        if let Some(e) = self.entry_mut(h) {
            e.released = true;
        }
    }

    /// The connection with this 4-tuple, if any.
    pub(crate) fn find_conn(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<ConnHandle> {
        self.find_key(TupleKey::of(local, remote))
    }

    /// The connection with the 4-tuple `key`, if any.
    #[inline(always)]
    pub(crate) fn find_key(&self, key: TupleKey) -> Option<ConnHandle> {
        let (last, h) = self.last_hit.get();
        // The cached handle is live (see `last_hit`): no need to look at its entry.
        if last == key && h != NO_CONN {
            return Some(h);
        }
        self.find_key_uncached(key)
    }

    /// [`find_key`](Self::find_key) past the cache: the hash lookup, whose answer
    /// is cached.
    #[inline(never)]
    fn find_key_uncached(&self, key: TupleKey) -> Option<ConnHandle> {
        let &index = self.by_tuple.get(&(key.local(), key.remote()))?;
        let h = ConnHandle::new(index as u32, self.conns[index].generation);
        self.last_hit.set((key, h));
        Some(h)
    }

    pub(crate) fn tcp_port_in_use(&self, port: u16) -> bool {
        self.listen_ports.contains_key(&port) || self.tcp_ports.contains_key(&port)
    }

    pub(crate) fn conn_count(&self) -> usize {
        self.conns.len()
    }

    // ---- events -------------------------------------------------------------------

    /// Queues an event of a UDP socket or a listener.
    pub(crate) fn push_event(&mut self, ev: Event) {
        self.events.push_back(Pending::Ready(ev));
    }

    /// Whether the event queue is empty (the usual answer, checked inline).
    #[inline]
    pub(crate) fn no_events(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether no connection is queued as maybe having something to send:
    /// [`poll_segment`](Self::poll_segment) then returns `None` and changes nothing.
    #[inline]
    pub(crate) fn nothing_dirty(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The next event for the application (see [`Stack::poll_event`](super::Stack::poll_event)).
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        // The usual case first: a live connection at the front with an event to
        // give. Anything else (no event after all, a released or reaped
        // connection, a ready event) takes the loop below.
        if let Some(&Pending::Conn(h)) = self.events.front() {
            if let Some(e) = self.conns.get_mut(h.slot()).filter(|e| e.generation == h.generation() && !e.released) {
                if let Some(ev) = e.conn.poll_event() {
                    if !e.conn.has_events() {
                        e.events_queued = false;
                        self.events.pop_front();
                    }
                    return Some(Event::Tcp(h, ev));
                }
            }
        }
        self.poll_event_any()
    }

    /// [`poll_event`](Self::poll_event) past its usual case.
    #[inline(never)]
    fn poll_event_any(&mut self) -> Option<Event> {
        loop {
            let h = match self.events.front()? {
                &Pending::Conn(h) => h,
                Pending::Ready(_) => match self.events.pop_front() {
                    Some(Pending::Ready(ev)) => return Some(ev),
                    _ => unreachable!("the front entry was just seen"),
                },
            };
            // A connection leaves the queue once it has no events left. One gone
            // (reaped) since it was queued leaves at once: its slot may hold another
            // connection, queued elsewhere if at all. One released since has no events
            // to give: the handle is void, and so are they.
            let ev = match self.conns.get_mut(h.slot()).filter(|e| e.generation == h.generation()) {
                Some(e) => {
                    let ev = if e.released {
                        e.conn.drop_events();
                        None
                    } else {
                        e.conn.poll_event()
                    };
                    if !e.conn.has_events() {
                        e.events_queued = false;
                        self.events.pop_front();
                    }
                    ev
                }
                None => {
                    self.events.pop_front();
                    None
                }
            };
            if let Some(ev) = ev {
                return Some(Event::Tcp(h, ev));
            }
        }
    }

    /// Queues a connection with events, after the stack raised some itself.
    pub(crate) fn queue_events(&mut self, h: ConnHandle) {
        let Some(e) = self.conns.get_mut(h.slot()).filter(|e| e.generation == h.generation()) else { return };
        if e.conn.has_events() && !e.events_queued {
            if e.released || e.listener.is_some() {
                self.route_events(h);
            } else {
                e.events_queued = true;
                self.events.push_back(Pending::Conn(h));
            }
        }
    }

    /// The events of a connection the application does not hold: one released is
    /// told nothing more; one not accepted yet makes its listener `AcceptReady` when
    /// it connects, and its other events are dropped (`accept` announces data and a
    /// FIN that came before it).
    #[inline(never)]
    fn route_events(&mut self, h: ConnHandle) {
        let Some(e) = self.entry_mut(h) else { return };
        let listener = if e.released { None } else { e.listener };
        let mut connected = false;
        while let Some(ev) = e.conn.poll_event() {
            connected |= ev == TcpEvent::Connected;
        }
        let Some(l) = listener.filter(|_| connected) else { return };
        if let Some(listener) = self.listener_mut(l) {
            listener.ready.push_back(h);
            self.events.push_back(Pending::Ready(Event::AcceptReady(l)));
        }
    }

    // ---- after calls, transmit and timers ----------------------------------------------

    /// After the stack or the application called into a connection: its events are
    /// queued or routed, it may have something to send, and its deadline may have
    /// moved.
    ///
    /// (A connection passed here is queued in `dirty`, so it is never reaped here:
    /// `poll_segment` reaps it once it has nothing left to send.)
    #[inline(always)]
    pub(crate) fn after_call(&mut self, h: ConnHandle) {
        self.call(h, |_, _| {});
    }

    /// Calls `f` on a connection for the stack's own work (released or not: `f` is
    /// told whether it is, as its second argument), then does the bookkeeping of
    /// [`after_call`](Self::after_call): one lookup of the entry for both. A stale
    /// handle does nothing.
    #[inline(always)]
    pub(crate) fn call(&mut self, h: ConnHandle, f: impl FnOnce(&mut Connection, bool)) {
        let Some(e) = self.conns.get_mut(h.slot()).filter(|e| e.generation == h.generation()) else { return };
        f(&mut e.conn, e.released);
        if e.after_call(h, &mut self.dirty, &mut self.timers, &mut self.events) {
            self.route_events(h);
        }
    }

    /// Calls `f` on a connection the application holds (as
    /// [`app_conn_mut`](Self::app_conn_mut) finds it) and returns the first part of
    /// its answer; the second says whether the call may have changed the connection,
    /// and if so the bookkeeping of [`after_call`](Self::after_call) follows. One
    /// lookup for both. `None` (and no call) for a handle the application does not
    /// hold.
    #[inline(always)]
    pub(crate) fn app_call<R>(&mut self, h: ConnHandle, f: impl FnOnce(&mut Connection) -> (R, bool)) -> Option<R> {
        let e = self
            .conns
            .get_mut(h.slot())
            .filter(|e| e.generation == h.generation() && !e.released && e.listener.is_none())?;
        let (r, changed) = f(&mut e.conn);
        if changed && e.after_call(h, &mut self.dirty, &mut self.timers, &mut self.events) {
            self.route_events(h);
        }
        Some(r)
    }

    /// Frees a connection that is Closed and that nobody will use again: released by
    /// the application, or never accepted.
    fn reap_if_done(&mut self, h: ConnHandle) {
        let Some(e) = self.entry(h) else { return };
        if e.conn.state() != State::Closed || e.dirty {
            return;
        }
        let orphan = e.listener;
        if !e.released && orphan.is_none() {
            return;
        }
        let e = self.conns.remove(h.slot());
        if self.last_hit.get().1 == h {
            self.last_hit.set((TupleKey::default(), NO_CONN));
        }
        self.buffer_bytes = self.buffer_bytes.saturating_sub(e.conn.buffer_budget());
        if let Some(t) = e.timer {
            self.timers.remove(&(t, h.slot()));
        }
        self.by_tuple.remove(&(e.conn.local(), e.conn.remote()));
        let port = e.conn.local().port();
        if let Some(n) = self.tcp_ports.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.tcp_ports.remove(&port);
            }
        }
        if let Some(l) = orphan.and_then(|l| self.listener_mut(l)) {
            l.unaccepted = l.unaccepted.saturating_sub(1);
            l.ready.retain(|&c| c != h);
        }
    }

    /// The next segment of a connection that may have something to send, and
    /// (in `handle`) that connection. The handle goes out apart so that the
    /// segment the connection wrote is returned as it lies: moved into a pair,
    /// its narrowly written fields were read back with wider loads (a stalled
    /// store forward, 3% of an echo round trip).
    #[inline(always)]
    pub(crate) fn poll_segment(&mut self, now: Ticks, handle: &mut ConnHandle) -> Option<SegmentHeader> {
        while let Some(&index) = self.dirty.front() {
            let Some(e) = self.conns.get_mut(index) else {
                self.dirty.pop_front();
                continue;
            };
            let h = ConnHandle::new(index as u32, e.generation);
            let seg = e.conn.poll_transmit_header(now);
            // With a segment: when the next call would find nothing, done with this
            // connection already.
            if seg.is_none() || !e.conn.may_transmit_more() {
                e.dirty = false;
                self.dirty.pop_front();
            }
            if e.settle(h, &mut self.timers, &mut self.events) {
                self.route_events(h);
            }
            if seg.is_some() {
                *handle = h;
                return seg;
            }
            self.reap_if_done(h);
        }
        None
    }

    /// The earliest connection deadline (exact: stale index entries are looked
    /// through). Entries are in filing order and each is at or before its
    /// connection's deadline, so the scan stops at the first entry not before the
    /// best deadline found: usually after one entry.
    #[inline]
    pub(crate) fn poll_at(&self) -> Option<Ticks> {
        // The usual cases without an iterator: one connection with a deadline, or a
        // first entry that is exact.
        let &(t, index) = self.timers.first()?;
        let first = self.conns.get(index).and_then(|e| e.deadline);
        if self.timers.len() == 1 || first == Some(t) {
            return first;
        }
        let mut best: Option<Ticks> = None;
        for &(t, index) in &self.timers {
            if best.is_some_and(|b| t >= b) {
                break;
            }
            if let Some(d) = self.conns.get(index).and_then(|e| e.deadline) {
                best = Some(best.map_or(d, |b| b.min(d)));
            }
        }
        best
    }

    /// Takes the connections whose deadline is due.
    pub(crate) fn expired(&mut self, now: Ticks) -> Vec<ConnHandle> {
        let mut out = Vec::new();
        while let Some(&(t, index)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(e) = self.conns.get_mut(index) {
                e.timer = None;
                let real = e.conn.deadline();
                e.deadline = real;
                match real {
                    Some(real) if real > now => {
                        e.timer = Some(real);
                        self.timers.insert((real, index));
                    }
                    None => {}
                    _ => out.push(ConnHandle::new(index as u32, e.generation)),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_segments_key_is_its_connections_key() {
        let local = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80);
        let remote = SocketAddrV4::new(Ipv4Addr::new(192, 168, 7, 9), 50_123);
        // The bytes a segment from `remote` to `local` carries.
        let addrs = [192, 168, 7, 9, 10, 0, 0, 1];
        let ports = [0xc3, 0xcb, 0, 80];
        let key = TupleKey::received(u64::from_be_bytes(addrs), u32::from_be_bytes(ports));
        assert_eq!(key, TupleKey::of(local, remote));
        assert_eq!((key.local(), key.remote()), (local, remote));
    }
}
