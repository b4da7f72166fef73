//! The user-level stack libOS: the queue API over demi's own TCP/IP stack
//! ([`demi_net_stack::iface::Stack`]) on a [`Device`].
//!
//! This libOS is a [`Driver`]: on every turn of the runtime's loop it receives a
//! burst of frames from the device, feeds them to the stack, runs the stack's timers,
//! turns the stack's events into completed operations, and transmits what the stack
//! produced. Its operations follow the POSIX libOS's semantics exactly (see
//! [`crate::posix`]): a push completes when the whole element is in the connection's
//! send buffer, a TCP pop returns the bytes that arrived (an empty element at end of
//! stream), a UDP pop one datagram with its source, framing makes elements pop whole,
//! and close cancels pending operations.

use crate::device::Device;
use crate::framing::{encode_header, FrameDecoder, FrameLimits};
use crate::queues::predicate::{Predicate, UdpOffload};
use crate::{Domain, NetConfig, SocketType};
use bytes::Bytes;
use demi_net_stack::iface::{ConnHandle, Event, ListenHandle, Stack, StackError, UdpHandle};
use demi_net_stack::tcp::{TcpConfig, TcpError, TcpEvent};
use demi_runtime::{Driver, DriverId, Handle, IdleMode, Interest, OpCode, QDesc, QError, QToken, QValue, Sga};
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Instant;

/// Frames taken from the device per turn.
const RX_BURST: usize = 64;
/// Frames waiting for the device beyond which UDP pushes wait (TCP has its own
/// flow control: its send buffer).
const TX_QUEUE_LIMIT: usize = 1024;
/// Largest UDP element (the stack checks the MTU too).
const MAX_DATAGRAM: usize = 65_507;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A TCP socket not listening or connected yet; the port it is bound to (0: none).
    TcpIdle { port: u16 },
    Listener(ListenHandle),
    Conn(ConnHandle),
    /// A UDP socket, bound or not, with its default destination.
    Udp { handle: Option<UdpHandle>, peer: Option<SocketAddrV4> },
}

struct Queue {
    generation: u32,
    kind: Kind,
    pops: VecDeque<QToken>,
    pushes: VecDeque<(QToken, Sga, Option<SocketAddrV4>)>,
    accepts: VecDeque<QToken>,
    connect: Option<QToken>,
    connected: bool,
    framing: Option<FrameDecoder>,
    /// End of stream reached: pops complete empty.
    eof: bool,
    /// The connection failed: operations complete with this.
    error: Option<QError>,
    /// `SO_LINGER` 0: close resets the connection.
    reset_on_close: bool,
    /// `bind` succeeded (a TCP queue bound to port 0 shows no port until it listens
    /// or connects).
    bound: bool,
    /// TCP settings chosen for this queue before it connected or listened.
    tcp: Option<Box<TcpConfig>>,
}

impl Queue {
    fn new(generation: u32, kind: Kind) -> Self {
        Queue {
            generation,
            kind,
            pops: VecDeque::new(),
            pushes: VecDeque::new(),
            accepts: VecDeque::new(),
            connect: None,
            connected: false,
            framing: None,
            eof: false,
            error: None,
            reset_on_close: false,
            bound: false,
            tcp: None,
        }
    }
}

type Completion = (QToken, Result<QValue, QError>);

/// Stack handle → queue index. Handles are small integers the stack hands out, not
/// attacker-chosen keys, so a multiply-and-fold hash replaces SipHash (one lookup per
/// stack event, on the data path).
type HandleMap<K> = HashMap<K, usize, BuildHasherDefault<HandleHasher>>;

#[derive(Default)]
struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which hashbrown uses, depend on every bit.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct Inner {
    stack: Stack,
    device: Box<dyn Device>,
    rx: Vec<Bytes>,
    tx: VecDeque<Bytes>,
    queues: Slab<Queue>,
    next_generation: u32,
    by_conn: HandleMap<ConnHandle>,
    by_listener: HandleMap<ListenHandle>,
    by_udp: HandleMap<UdpHandle>,
    limits: FrameLimits,
    /// UDP queues whose pushes wait for room in `tx` (back-pressure: a datagram
    /// push completes only once the device can take its frame soon).
    udp_blocked: Vec<usize>,
    /// Declarative filter predicates applied to received UDP frames before the
    /// stack queues them (installed by `LibOs::filter`; see `queues::predicate`).
    udp_offload: UdpOffload,
}

/// The libOS state, shared by the [`crate::LibOs`] handle and the runtime (as a driver).
pub(crate) struct NetStack {
    rt: Handle,
    driver: Cell<Option<DriverId>>,
    idle: Cell<IdleMode>,
    /// The device's [`DeviceCaps::eager_tx`](crate::device::DeviceCaps::eager_tx).
    eager_tx: bool,
    /// The device's readiness descriptor, registered with the runtime's reactor.
    readiness_fd: Cell<Option<std::os::fd::RawFd>>,
    inner: RefCell<Inner>,
    done: RefCell<Vec<Completion>>,
    /// An empty list with capacity that [`flush`](Self::flush) swaps with `done`.
    spare: RefCell<Vec<Completion>>,
}

fn map_stack(e: StackError) -> QError {
    match e {
        StackError::BadHandle => QError::BadDescriptor,
        StackError::AddressInUse => QError::AddressInUse,
        StackError::AddressNotAvailable => QError::AddressNotAvailable,
        StackError::Unreachable => QError::Unreachable,
        StackError::MessageTooLong => QError::MessageTooLong,
        StackError::NoBufferSpace => QError::NoBufferSpace,
        StackError::WouldBlock => QError::InvalidState,
        StackError::Tcp(t) => map_tcp(t),
        _ => QError::InvalidState,
    }
}

fn map_tcp(e: TcpError) -> QError {
    match e {
        TcpError::Reset => QError::ConnectionReset,
        TcpError::Refused => QError::ConnectionRefused,
        TcpError::TimedOut => QError::TimedOut,
        TcpError::Aborted => QError::ConnectionAborted,
        TcpError::Finished | TcpError::InvalidState | TcpError::WouldBlock => QError::InvalidState,
    }
}

fn v4(addr: SocketAddr) -> Result<SocketAddrV4, QError> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(QError::NotSupported),
    }
}

impl NetStack {
    pub(crate) fn new(rt: Handle, net: &NetConfig, device: Box<dyn Device>, limits: FrameLimits) -> Rc<NetStack> {
        let stack = stack_for(net, &*device, rt.now());
        let (idle, eager_tx) = (device.caps().idle, device.caps().eager_tx);
        let readiness_fd = device.readiness_fd();
        let ns = Rc::new(NetStack {
            rt: rt.clone(),
            driver: Cell::new(None),
            idle: Cell::new(idle),
            eager_tx,
            readiness_fd: Cell::new(None),
            inner: RefCell::new(Inner {
                stack,
                device,
                rx: Vec::with_capacity(RX_BURST),
                tx: VecDeque::new(),
                queues: Slab::new(),
                next_generation: 1,
                by_conn: HandleMap::default(),
                by_listener: HandleMap::default(),
                by_udp: HandleMap::default(),
                limits,
                udp_blocked: Vec::new(),
                udp_offload: UdpOffload::default(),
            }),
            done: RefCell::new(Vec::with_capacity(16)),
            spare: RefCell::new(Vec::with_capacity(16)),
        });
        let id = rt.add_driver(ns.clone());
        ns.driver.set(Some(id));
        if let Some(fd) = readiness_fd {
            // A poll-mode device's fd is a doorbell that only matters when the loop
            // sleeps: registered as a wake-up source, so spinning turns make no
            // system call for it. Without it the loop cannot park on this device;
            // with `IdleMode::Park` it would then only wake for timers, so fall back
            // to spinning.
            let registered = if idle == IdleMode::Spin {
                rt.register_wake_fd(fd, id, 0)
            } else {
                rt.register_fd(fd, id, 0, Interest::READABLE)
            };
            if registered.is_err() {
                ns.idle.set(IdleMode::Spin);
            } else {
                ns.readiness_fd.set(Some(fd));
            }
        }
        ns
    }

    pub(crate) fn shutdown(&self) {
        let queues = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let queues = std::mem::take(&mut inner.queues);
            // Close every queue as `close` would, so peers see their connections end,
            // and hand the stack's last frames (FINs, resets) to the device: nothing
            // polls this stack again.
            for (_, q) in &queues {
                match q.kind {
                    Kind::Conn(c) if q.reset_on_close => drop(inner.stack.tcp_abort(c)),
                    Kind::Conn(c) => drop(inner.stack.tcp_close(c)),
                    Kind::Listener(l) => drop(inner.stack.tcp_unlisten(l)),
                    Kind::Udp { handle: Some(u), .. } => drop(inner.stack.udp_close(u)),
                    _ => {}
                }
            }
            let now = self.rt.now();
            while let Some(frame) = inner.stack.poll_transmit(now) {
                inner.tx.push_back(frame);
            }
            let Inner { device, tx, .. } = inner;
            device.tx_burst(tx);
            queues
        };
        {
            let mut done = self.done.borrow_mut();
            for (_, q) in queues {
                let tokens = q.pops.into_iter().chain(q.accepts).chain(q.pushes.into_iter().map(|p| p.0)).chain(q.connect);
                done.extend(tokens.map(|qt| (qt, Err(QError::Canceled))));
            }
        }
        self.flush();
        if let Some(fd) = self.readiness_fd.take() {
            let _ = if self.idle.get() == IdleMode::Spin { self.rt.deregister_wake_fd(fd) } else { self.rt.deregister_fd(fd) };
        }
        if let Some(id) = self.driver.take() {
            self.rt.remove_driver(id);
        }
    }

    /// Hands the runtime every completion in `done`, in order. Inlined down to the
    /// emptiness check: every poll and every operation call ends here, and most
    /// have nothing to complete.
    #[inline]
    fn flush(&self) {
        if !self.done.borrow().is_empty() {
            self.flush_done();
        }
    }

    #[inline(never)]
    fn flush_done(&self) {
        loop {
            // Fast path: one completion (the usual case) is taken out alone, without
            // the swap below. `done` is not borrowed while it completes, as there.
            let one = {
                let mut done = self.done.borrow_mut();
                if done.len() == 1 {
                    done.pop()
                } else {
                    None
                }
            };
            if let Some((qt, v)) = one {
                let _ = self.rt.op_complete(qt, v);
                if self.done.borrow().is_empty() {
                    return;
                }
                continue;
            }
            // Swap in the spare buffer, so neither list is reallocated turn after turn
            // and completing (which wakes waiters) runs with neither list borrowed.
            let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
            std::mem::swap(&mut batch, &mut *self.done.borrow_mut());
            // In order, popped from the back of the reversed list: cheaper than a
            // drain for the one or two completions a turn usually has.
            batch.reverse();
            while let Some((qt, v)) = batch.pop() {
                let _ = self.rt.op_complete(qt, v);
            }
            *self.spare.borrow_mut() = batch;
            if self.done.borrow().is_empty() {
                return;
            }
        }
    }

    fn with_queue<R>(&self, qd: QDesc, f: impl FnOnce(&mut Inner, usize, &mut Vec<Completion>) -> Result<R, QError>) -> Result<R, QError> {
        let r = {
            let mut inner = self.inner.borrow_mut();
            match inner.queues.get(qd.index() as usize) {
                Some(q) if q.generation == qd.generation() => {}
                _ => return Err(QError::BadDescriptor),
            }
            let mut done = self.done.borrow_mut();
            f(&mut inner, qd.index() as usize, &mut done)
        };
        self.flush();
        r
    }

    fn insert(inner: &mut Inner, kind: Kind) -> QDesc {
        let generation = inner.next_generation;
        inner.next_generation = inner.next_generation.wrapping_add(1).max(1);
        let index = inner.queues.insert(Queue::new(generation, kind));
        match kind {
            Kind::Conn(c) => {
                inner.by_conn.insert(c, index);
            }
            Kind::Listener(l) => {
                inner.by_listener.insert(l, index);
            }
            Kind::Udp { handle: Some(u), .. } => {
                inner.by_udp.insert(u, index);
            }
            _ => {}
        }
        QDesc::from_parts(index as u32, generation)
    }

    // ---- control path -------------------------------------------------------------

    pub(crate) fn socket(&self, domain: Domain, ty: SocketType) -> Result<QDesc, QError> {
        if domain != Domain::Ipv4 {
            return Err(QError::NotSupported);
        }
        let mut inner = self.inner.borrow_mut();
        let kind = match ty {
            SocketType::Stream => Kind::TcpIdle { port: 0 },
            SocketType::Datagram => Kind::Udp { handle: None, peer: None },
        };
        Ok(Self::insert(&mut inner, kind))
    }

    fn check_local(inner: &Inner, addr: SocketAddrV4) -> Result<(), QError> {
        let ip = *addr.ip();
        if ip.is_unspecified() || ip == inner.stack.config().ip {
            Ok(())
        } else {
            Err(QError::AddressNotAvailable)
        }
    }

    pub(crate) fn bind(&self, qd: QDesc, addr: SocketAddr) -> Result<(), QError> {
        let addr = v4(addr)?;
        self.with_queue(qd, |inner, i, _| {
            Self::check_local(inner, addr)?;
            match inner.queues[i].kind {
                // (Bound to port 0 already counts as bound: a second bind is refused.)
                Kind::TcpIdle { port: 0 } if !inner.queues[i].bound => {
                    if addr.port() != 0 && inner.stack.tcp_port_in_use(addr.port()) {
                        return Err(QError::AddressInUse);
                    }
                    inner.queues[i].kind = Kind::TcpIdle { port: addr.port() };
                    inner.queues[i].bound = true;
                    Ok(())
                }
                Kind::Udp { handle: None, peer } => {
                    let h = inner.stack.udp_bind(addr.port()).map_err(map_stack)?;
                    inner.queues[i].kind = Kind::Udp { handle: Some(h), peer };
                    inner.by_udp.insert(h, i);
                    Ok(())
                }
                _ => Err(QError::InvalidState),
            }
        })
    }

    pub(crate) fn listen(&self, qd: QDesc, backlog: usize) -> Result<(), QError> {
        self.with_queue(qd, |inner, i, _| match inner.queues[i].kind {
            Kind::TcpIdle { port } => {
                let l = inner.stack.tcp_listen(port, backlog).map_err(map_stack)?;
                if let Some(tcp) = inner.queues[i].tcp.take() {
                    inner.stack.tcp_listen_config(l, &tcp).map_err(map_stack)?;
                }
                inner.queues[i].kind = Kind::Listener(l);
                inner.by_listener.insert(l, i);
                Ok(())
            }
            Kind::Udp { .. } => Err(QError::NotSupported),
            _ => Err(QError::InvalidState),
        })
    }

    pub(crate) fn accept(&self, qd: QDesc) -> Result<QToken, QError> {
        self.with_queue(qd, |inner, i, done| {
            if !matches!(inner.queues[i].kind, Kind::Listener(_)) {
                return Err(QError::InvalidState);
            }
            let qt = self.rt.op_start(OpCode::Accept, qd);
            inner.queues[i].accepts.push_back(qt);
            Self::progress(&self.rt, inner, i, done);
            Ok(qt)
        })
    }

    pub(crate) fn connect(&self, qd: QDesc, addr: SocketAddr) -> Result<QToken, QError> {
        let remote = v4(addr)?;
        let now = self.rt.now();
        self.with_queue(qd, |inner, i, done| match inner.queues[i].kind {
            Kind::TcpIdle { port } => {
                let c = match inner.queues[i].tcp.take() {
                    Some(tcp) => inner.stack.tcp_connect_with(now, port, remote, &tcp),
                    None => inner.stack.tcp_connect(now, port, remote),
                }
                .map_err(map_stack)?;
                inner.queues[i].kind = Kind::Conn(c);
                inner.by_conn.insert(c, i);
                let qt = self.rt.op_start(OpCode::Connect, qd);
                inner.queues[i].connect = Some(qt);
                Self::progress(&self.rt, inner, i, done);
                Ok(qt)
            }
            Kind::Udp { handle, .. } => {
                let handle = match handle {
                    Some(h) => h,
                    None => {
                        let h = inner.stack.udp_bind(0).map_err(map_stack)?;
                        inner.by_udp.insert(h, i);
                        h
                    }
                };
                inner.queues[i].kind = Kind::Udp { handle: Some(handle), peer: Some(remote) };
                Ok(self.rt.op_start_completed(OpCode::Connect, qd, Ok(QValue::Connected)))
            }
            Kind::Conn(_) => Err(QError::AlreadyConnected),
            Kind::Listener(_) => Err(QError::InvalidState),
        })
    }

    pub(crate) fn close(&self, qd: QDesc) -> Result<(), QError> {
        self.with_queue(qd, |inner, i, done| {
            let q = inner.queues.remove(i);
            match q.kind {
                Kind::Conn(c) => {
                    inner.by_conn.remove(&c);
                    let _ = if q.reset_on_close { inner.stack.tcp_abort(c) } else { inner.stack.tcp_close(c) };
                }
                Kind::Listener(l) => {
                    inner.by_listener.remove(&l);
                    let _ = inner.stack.tcp_unlisten(l);
                }
                Kind::Udp { handle: Some(u), .. } => {
                    inner.by_udp.remove(&u);
                    if let Ok(port) = inner.stack.udp_local_port(u) {
                        inner.udp_offload.remove_port(port);
                    }
                    let _ = inner.stack.udp_close(u);
                }
                _ => {}
            }
            let tokens = q.pops.into_iter().chain(q.accepts).chain(q.pushes.into_iter().map(|p| p.0)).chain(q.connect);
            done.extend(tokens.map(|qt| (qt, Err(QError::Canceled))));
            Ok(())
        })
    }

    pub(crate) fn set_framing(&self, qd: QDesc, on: bool) -> Result<(), QError> {
        self.with_queue(qd, |inner, i, _| {
            let limits = inner.limits;
            let q = &mut inner.queues[i];
            if matches!(q.kind, Kind::Udp { .. }) {
                return Err(QError::NotSupported);
            }
            match (on, &q.framing) {
                (true, None) => q.framing = Some(FrameDecoder::new(limits)),
                (false, Some(d)) if !d.is_empty() => return Err(QError::InvalidState),
                (false, _) => q.framing = None,
                (true, Some(_)) => {}
            }
            Ok(())
        })
    }

    /// Chooses the TCP settings of a queue that has not connected or listened yet.
    pub(crate) fn set_tcp_config(&self, qd: QDesc, tcp: TcpConfig) -> Result<(), QError> {
        self.with_queue(qd, |inner, i, _| match inner.queues[i].kind {
            Kind::TcpIdle { .. } => {
                inner.queues[i].tcp = Some(Box::new(tcp));
                Ok(())
            }
            Kind::Udp { .. } => Err(QError::NotSupported),
            _ => Err(QError::InvalidState),
        })
    }

    /// The stack's counters.
    pub(crate) fn stack_stats(&self) -> demi_net_stack::iface::StackStats {
        self.inner.borrow().stack.stats()
    }

    /// A TCP queue's connection counters.
    pub(crate) fn tcp_stats(&self, qd: QDesc) -> Result<demi_net_stack::tcp::ConnStats, QError> {
        self.with_queue(qd, |inner, i, _| match inner.queues[i].kind {
            Kind::Conn(c) => Ok(inner.stack.tcp(c).map_err(map_stack)?.stats()),
            _ => Err(QError::InvalidState),
        })
    }

    pub(crate) fn set_linger(&self, qd: QDesc, linger: Option<std::time::Duration>) -> Result<(), QError> {
        self.with_queue(qd, |inner, i, _| {
            let q = &mut inner.queues[i];
            if matches!(q.kind, Kind::Udp { .. }) {
                return Err(QError::NotSupported);
            }
            q.reset_on_close = linger.is_some_and(|d| d.is_zero());
            Ok(())
        })
    }

    pub(crate) fn set_nodelay(&self, qd: QDesc, on: bool) -> Result<(), QError> {
        self.with_queue(qd, |inner, i, _| match inner.queues[i].kind {
            Kind::Udp { .. } => Err(QError::NotSupported),
            Kind::Conn(c) => inner.stack.tcp_set_nagle(c, !on).map_err(map_stack),
            Kind::TcpIdle { .. } | Kind::Listener(_) => {
                // Before the connection exists: part of the queue's TCP settings.
                let q = &mut inner.queues[i];
                let base = q.tcp.take().map(|b| *b).unwrap_or_else(|| inner.stack.config().tcp.clone());
                q.tcp = Some(Box::new(TcpConfig { nagle: !on, ..base }));
                if let Kind::Listener(l) = q.kind {
                    let tcp = q.tcp.as_deref().cloned().expect("set just above");
                    inner.stack.tcp_listen_config(l, &tcp).map_err(map_stack)?;
                }
                Ok(())
            }
        })
    }

    pub(crate) fn local_addr(&self, qd: QDesc) -> Result<SocketAddr, QError> {
        self.with_queue(qd, |inner, i, _| {
            let ip = inner.stack.config().ip;
            let port = match inner.queues[i].kind {
                Kind::TcpIdle { port } => port,
                Kind::Listener(l) => inner.stack.tcp_listen_port(l).map_err(map_stack)?,
                Kind::Conn(c) => inner.stack.tcp(c).map_err(map_stack)?.local().port(),
                Kind::Udp { handle: Some(u), .. } => inner.stack.udp_local_port(u).map_err(map_stack)?,
                Kind::Udp { handle: None, .. } => 0,
            };
            Ok(SocketAddr::new(IpAddr::V4(ip), port))
        })
    }

    pub(crate) fn peer_addr(&self, qd: QDesc) -> Result<SocketAddr, QError> {
        self.with_queue(qd, |inner, i, _| match inner.queues[i].kind {
            Kind::Conn(c) => Ok(SocketAddr::V4(inner.stack.tcp(c).map_err(map_stack)?.remote())),
            Kind::Udp { peer: Some(p), .. } => Ok(SocketAddr::V4(p)),
            _ => Err(QError::NotConnected),
        })
    }

    /// Installs a filter's declarative predicate on a bound UDP queue: received
    /// frames for its port that fail it are dropped before the stack (counted in
    /// `dropped`). `Ok(false)`: not a bound UDP queue, or its port has one already.
    pub(crate) fn install_udp_filter(
        &self,
        qd: QDesc,
        owner: QDesc,
        pred: Rc<Predicate>,
        dropped: Rc<Cell<u64>>,
    ) -> Result<bool, QError> {
        self.with_queue(qd, |inner, i, _| match inner.queues[i].kind {
            Kind::Udp { handle: Some(h), .. } => {
                let port = inner.stack.udp_local_port(h).map_err(map_stack)?;
                Ok(inner.udp_offload.install(port, owner, pred, dropped))
            }
            _ => Ok(false),
        })
    }

    /// Removes the predicate the filter `owner` installed, if any.
    pub(crate) fn remove_udp_filter(&self, owner: QDesc) {
        self.inner.borrow_mut().udp_offload.remove_owner(owner);
    }

    /// Whether the predicate of the filter `owner` is still installed (closing its
    /// socket removes it).
    pub(crate) fn has_udp_filter(&self, owner: QDesc) -> bool {
        self.inner.borrow().udp_offload.has_owner(owner)
    }

    // ---- data path ----------------------------------------------------------------

    pub(crate) fn push(&self, qd: QDesc, mut sga: Sga, dest: Option<SocketAddr>) -> Result<QToken, QError> {
        let dest = dest.map(v4).transpose()?;
        // The element is moved as little as possible (an `Sga` is a few hundred bytes):
        // checked and sent in place (the closure borrows it), and moved into the queue
        // only if it must wait.
        let sga = &mut sga;
        self.with_queue(qd, |inner, i, done| {
            let limits = inner.limits;
            let q = &mut inner.queues[i];
            let dest = match q.kind {
                Kind::Conn(c) => {
                    if dest.is_some() {
                        return Err(QError::NotSupported);
                    }
                    if let Some(e) = q.error {
                        return Err(e);
                    }
                    if !q.connected {
                        return Err(QError::NotConnected);
                    }
                    if sga.is_empty() {
                        return Err(QError::InvalidArgument("cannot push an empty element"));
                    }
                    if q.framing.is_some() {
                        let mut framed = Sga::from(encode_header(sga, limits)?);
                        for s in sga.segments().iter().filter(|s| !s.is_empty()) {
                            framed.push_segment(s.clone());
                        }
                        *sga = framed;
                    }
                    if q.pushes.is_empty() {
                        // Fast path: nothing queued ahead, so the element goes straight
                        // to the send buffer, and a push it takes whole is born complete.
                        match Self::send_sga(&mut inner.stack, c, sga) {
                            Ok(true) => {
                                if self.eager_tx {
                                    Self::transmit(inner, self.rt.now());
                                }
                                return Ok(self.rt.op_start_completed(OpCode::Push, qd, Ok(QValue::Pushed)));
                            }
                            Ok(false) => {}
                            Err(e) => {
                                let q = &mut inner.queues[i];
                                q.error = Some(e);
                                Self::fail_all(q, e, done);
                                return Ok(self.rt.op_start_completed(OpCode::Push, qd, Err(e)));
                            }
                        }
                    }
                    None
                }
                Kind::Udp { peer, .. } => {
                    if sga.len() > MAX_DATAGRAM {
                        return Err(QError::MessageTooLong);
                    }
                    match dest.or(sga.addr().map(v4).transpose()?).or(peer) {
                        Some(a) => Some(a),
                        None => return Err(QError::NotConnected),
                    }
                }
                // A listener has no peer (POSIX: ENOTCONN).
                Kind::TcpIdle { .. } | Kind::Listener(_) => return Err(QError::NotConnected),
            };
            let qt = self.rt.op_start(OpCode::Push, qd);
            inner.queues[i].pushes.push_back((qt, std::mem::take(sga), dest));
            Self::progress(&self.rt, inner, i, done);
            Ok(qt)
        })
    }

    pub(crate) fn pop(&self, qd: QDesc) -> Result<QToken, QError> {
        self.with_queue(qd, |inner, i, done| {
            let q = &inner.queues[i];
            match q.kind {
                // A connect that failed: the call says why, as POSIX does.
                Kind::Conn(_) if !q.connected && q.error.is_some() => return Err(q.error.expect("checked")),
                Kind::Conn(_) if q.connected || q.eof => {}
                Kind::Conn(_) | Kind::TcpIdle { .. } | Kind::Listener(_) => return Err(QError::NotConnected),
                Kind::Udp { handle: None, .. } => return Err(QError::InvalidState),
                Kind::Udp { .. } => {}
            }
            let qt = self.rt.op_start(OpCode::Pop, qd);
            inner.queues[i].pops.push_back(qt);
            Self::progress(&self.rt, inner, i, done);
            Ok(qt)
        })
    }

    // ---- progress -----------------------------------------------------------------

    /// Moves queue `i`'s pending operations as far as the stack allows.
    fn progress(rt: &Handle, inner: &mut Inner, i: usize, done: &mut Vec<Completion>) {
        let kind = inner.queues[i].kind;
        match kind {
            Kind::Listener(l) => Self::progress_accept(inner, i, l, done),
            Kind::Conn(c) => Self::progress_conn(inner, i, c, done),
            Kind::Udp { handle, .. } => Self::progress_udp(rt, inner, i, handle, done),
            Kind::TcpIdle { .. } => {}
        }
    }

    fn progress_accept(inner: &mut Inner, i: usize, l: ListenHandle, done: &mut Vec<Completion>) {
        while !inner.queues[i].accepts.is_empty() {
            match inner.stack.tcp_accept(l) {
                Ok((c, remote)) => {
                    let framing = inner.queues[i].framing.is_some();
                    let qd = Self::insert(inner, Kind::Conn(c));
                    let idx = qd.index() as usize;
                    inner.queues[idx].connected = true;
                    if framing {
                        inner.queues[idx].framing = Some(FrameDecoder::new(inner.limits));
                    }
                    let qt = inner.queues[i].accepts.pop_front().expect("non-empty");
                    done.push((qt, Ok(QValue::Accepted { qd, addr: SocketAddr::V4(remote) })));
                }
                Err(_) => return,
            }
        }
    }

    /// Hands `sga`'s segments to the connection's send buffer, advancing past what
    /// it took: `Ok(true)` when all of it went in, `Ok(false)` when the buffer filled.
    fn send_sga(stack: &mut Stack, c: ConnHandle, sga: &mut Sga) -> Result<bool, QError> {
        // The usual element, one segment that the send buffer takes whole: the segment
        // itself is moved into the buffer. (A clone counts a reference up, and
        // dropping the element's own one counts it down again: two atomic operations,
        // and for a buffer made from a `Vec`, the allocation that lets it be shared.)
        // `send_capacity` is, by its contract, what `tcp_send` takes now.
        let len = sga.len();
        if sga.num_segments() == 1 && len > 0 && stack.tcp(c).is_ok_and(|conn| len <= conn.send_capacity()) {
            let seg = sga.pop_segment().expect("one segment");
            return match stack.tcp_send(c, seg) {
                Ok(n) => {
                    debug_assert_eq!(n, len, "send_capacity said the whole segment fits");
                    Ok(true)
                }
                Err(e) => Err(map_stack(e)),
            };
        }
        while let Some(seg) = sga.segments().first() {
            if seg.is_empty() {
                sga.advance(0); // drops the empty segment
                continue;
            }
            match stack.tcp_send(c, seg.clone()) {
                Ok(0) | Err(StackError::Tcp(TcpError::WouldBlock)) => return Ok(false),
                Ok(n) => sga.advance(n),
                Err(e) => return Err(map_stack(e)),
            }
        }
        Ok(true)
    }

    fn fail_all(q: &mut Queue, e: QError, done: &mut Vec<Completion>) {
        if let Some(qt) = q.connect.take() {
            done.push((qt, Err(e)));
        }
        done.extend(q.pushes.drain(..).map(|p| (p.0, Err(e))));
        // The end of the stream, once seen, stays: what fails afterwards (a reset in
        // answer to a late push) does not turn it into an error.
        let pop_result = if q.eof { Ok(QValue::Popped(Sga::new())) } else { Err(e) };
        done.extend(q.pops.drain(..).map(|qt| (qt, pop_result.clone())));
    }

    fn progress_conn(inner: &mut Inner, i: usize, c: ConnHandle, done: &mut Vec<Completion>) {
        let Inner { stack, queues, .. } = inner;
        let q = &mut queues[i];
        if let Some(e) = q.error {
            Self::fail_all(q, e, done);
            return;
        }
        // Pushes: as much as the send buffer takes, in order.
        while let Some((_, sga, _)) = q.pushes.front_mut() {
            match Self::send_sga(stack, c, sga) {
                Ok(true) => {
                    let (qt, _, _) = q.pushes.pop_front().expect("front exists");
                    done.push((qt, Ok(QValue::Pushed)));
                }
                Ok(false) => break,
                Err(e) => {
                    q.error = Some(e);
                    Self::fail_all(q, e, done);
                    return;
                }
            }
        }
        // Pops.
        while !q.pops.is_empty() {
            if let Some(dec) = &mut q.framing {
                match dec.decode() {
                    Ok(Some(sga)) => {
                        let qt = q.pops.pop_front().expect("non-empty");
                        done.push((qt, Ok(QValue::Popped(sga))));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        q.error = Some(e);
                        Self::fail_all(q, e, done);
                        return;
                    }
                }
            }
            if q.eof {
                let partial = q.framing.as_ref().is_some_and(|d| !d.is_empty());
                let v = if partial { Err(QError::InvalidData) } else { Ok(QValue::Popped(Sga::new())) };
                done.extend(q.pops.drain(..).map(|qt| (qt, v.clone())));
                return;
            }
            // Everything that is already here, in one call and without copying
            // (framing copies into its decoder).
            let mut sga = Sga::new();
            let r = match &mut q.framing {
                Some(dec) => stack.tcp_recv_all(c, |data| dec.buffer().extend_from_slice(&data)),
                None => stack.tcp_recv_all(c, |data| sga.push_segment(data)),
            };
            match r {
                Ok(_) => {
                    if q.framing.is_none() {
                        let qt = q.pops.pop_front().expect("non-empty");
                        done.push((qt, Ok(QValue::Popped(sga))));
                    }
                }
                Err(StackError::Tcp(TcpError::Finished)) => q.eof = true,
                Err(StackError::Tcp(TcpError::WouldBlock)) => return,
                Err(e) => {
                    let e = map_stack(e);
                    q.error = Some(e);
                    Self::fail_all(q, e, done);
                    return;
                }
            }
        }
    }

    fn progress_udp(rt: &Handle, inner: &mut Inner, i: usize, handle: Option<UdpHandle>, done: &mut Vec<Completion>) {
        let now = rt.now();
        let Inner { stack, queues, by_udp, tx, udp_blocked, .. } = inner;
        let q = &mut queues[i];
        while let Some((_, sga, dest)) = q.pushes.front() {
            if tx.len() >= TX_QUEUE_LIMIT {
                if !udp_blocked.contains(&i) {
                    udp_blocked.push(i);
                }
                break;
            }
            let handle = match q.kind {
                Kind::Udp { handle: Some(h), .. } => h,
                Kind::Udp { handle: None, peer } => match stack.udp_bind(0) {
                    Ok(h) => {
                        by_udp.insert(h, i);
                        q.kind = Kind::Udp { handle: Some(h), peer };
                        h
                    }
                    Err(e) => {
                        let (qt, _, _) = q.pushes.pop_front().expect("front exists");
                        done.push((qt, Err(map_stack(e))));
                        continue;
                    }
                },
                _ => return,
            };
            let to = dest.expect("UDP pushes carry a destination");
            let data = sga.to_bytes();
            let r = stack.udp_send_to(now, handle, to, &data).map_err(map_stack);
            // Count the frame against the device queue at once, so a burst of pushes
            // in one turn is bounded too.
            while let Some(frame) = stack.poll_transmit(now) {
                tx.push_back(frame);
            }
            let (qt, _, _) = q.pushes.pop_front().expect("front exists");
            done.push((qt, r.map(|()| QValue::Pushed)));
        }
        let Some(h) = handle.or(match q.kind {
            Kind::Udp { handle, .. } => handle,
            _ => None,
        }) else {
            return;
        };
        if let Ok(Some(refuser)) = stack.udp_take_refusal(h) {
            // As a connected POSIX socket does: the next pop reports that the peer's
            // port is closed. Unconnected sockets are not told.
            let connected_to = match q.kind {
                Kind::Udp { peer, .. } => peer,
                _ => None,
            };
            if connected_to == Some(refuser) {
                if let Some(qt) = q.pops.pop_front() {
                    done.push((qt, Err(QError::ConnectionRefused)));
                }
            }
        }
        while !q.pops.is_empty() {
            match stack.udp_recv_from(h) {
                Ok((data, from)) => {
                    let sga = Sga::from(data).with_addr(SocketAddr::V4(from));
                    let qt = q.pops.pop_front().expect("non-empty");
                    done.push((qt, Ok(QValue::Popped(sga))));
                }
                Err(_) => return,
            }
        }
    }

    /// Hands the device every frame the stack has ready; the number taken.
    #[inline]
    fn transmit(inner: &mut Inner, now: Instant) -> usize {
        while let Some(frame) = inner.stack.poll_transmit(now) {
            inner.tx.push_back(frame);
        }
        if inner.tx.is_empty() {
            return 0;
        }
        let Inner { device, tx, .. } = inner;
        device.tx_burst(tx)
    }

    /// Applies one stack event to the queue it concerns.
    fn on_stack_event(rt: &Handle, inner: &mut Inner, ev: Event, done: &mut Vec<Completion>) {
        match ev {
            Event::UdpReadable(u) => {
                if let Some(&i) = inner.by_udp.get(&u) {
                    Self::progress(rt, inner, i, done);
                }
            }
            Event::AcceptReady(l) => {
                if let Some(&i) = inner.by_listener.get(&l) {
                    Self::progress(rt, inner, i, done);
                }
            }
            Event::Tcp(c, ev) => {
                let Some(&i) = inner.by_conn.get(&c) else { return };
                let q = &mut inner.queues[i];
                match ev {
                    TcpEvent::Connected => {
                        q.connected = true;
                        if let Some(qt) = q.connect.take() {
                            done.push((qt, Ok(QValue::Connected)));
                        }
                    }
                    TcpEvent::Error(e) => q.error = Some(map_tcp(e)),
                    _ => {}
                }
                Self::progress(rt, inner, i, done);
            }
        }
    }
}

impl Driver for NetStack {
    fn name(&self) -> &'static str {
        "net-stack"
    }

    fn poll(&self, now: Instant) -> usize {
        let mut work = 0;
        {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            // First what the tasks produced since the last turn (their pushes, and the
            // ACKs held back below), so an answer leaves before more input arrives.
            work += Self::transmit(inner, now);
            let Inner { device, rx, stack, udp_offload, .. } = inner;
            let received = device.rx_burst(rx, RX_BURST);
            work += received;
            // Whether the stack may have new frames to send after this poll's input.
            let mut stirred = received > 0;
            if !rx.is_empty() {
                // In arrival order, popped from the back of the reversed burst
                // (cheaper than a drain for the frame or two a turn usually brings).
                rx.reverse();
                while let Some(frame) = rx.pop() {
                    // Offloaded filter predicates: a UDP frame that fails its port's
                    // predicate is dropped here, read in place, before the stack.
                    if !udp_offload.is_empty() && udp_offload.rejects(&frame) {
                        continue;
                    }
                    stack.receive(now, frame);
                }
            }
            if inner.stack.timeout_due(now) {
                inner.stack.handle_timeout(now);
                stirred = true;
            }
            let mut done = self.done.borrow_mut();
            while let Some(ev) = inner.stack.poll_event() {
                work += 1;
                stirred = true;
                Self::on_stack_event(&self.rt, inner, ev, &mut done);
            }
            // When operations completed, the tasks they wake run before this driver's
            // next poll (the loop's next turn), and that poll transmits first. Holding
            // the stack's frames until then lets an answer carry the ACK of what it
            // answers: a request/response exchange costs two frames, not four. With
            // nothing completed no task is about to answer, so send now. (A poll that
            // completed something reports work, so the loop turns again before it
            // could park: the held frames cannot be forgotten.)
            if stirred && done.is_empty() {
                work += Self::transmit(inner, now);
            }
            if !inner.udp_blocked.is_empty() && inner.tx.len() < TX_QUEUE_LIMIT / 2 {
                for i in std::mem::take(&mut inner.udp_blocked) {
                    if inner.queues.contains(i) {
                        work += 1;
                        Self::progress(&self.rt, inner, i, &mut done);
                    }
                }
                while let Some(frame) = inner.stack.poll_transmit(now) {
                    inner.tx.push_back(frame);
                }
            }
        }
        self.flush();
        work
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.inner.borrow().stack.poll_at()
    }

    fn idle_mode(&self) -> IdleMode {
        self.idle.get()
    }

    fn prepare_park(&self) -> bool {
        // A poll-mode device without a doorbell (DPDK) cannot wake a sleeping loop:
        // under a parking policy the loop keeps polling it rather than sleep through
        // its frames.
        if self.idle.get() == IdleMode::Spin && self.readiness_fd.get().is_none() {
            return false;
        }
        self.inner.borrow_mut().device.prepare_park()
    }

    fn on_event(&self, _token: u32, _readiness: demi_runtime::Readiness) -> usize {
        // Frames arrived on the device: the next `poll` (this same loop turn)
        // receives them.
        1
    }
}

/// A stack for `net` on `device`: checksums left to the device where it offers to
/// do them, the ISN key and port sequence seeded at random.
fn stack_for(net: &NetConfig, device: &dyn Device, now: Instant) -> Stack {
    use demi_net_stack::iface::StackConfig;
    use demi_net_stack::wire::{Checksum, ChecksumCaps};
    let caps = device.caps();
    let mut sc = StackConfig::new(caps.mac, net.address());
    sc.prefix_len = net.prefix_len;
    sc.mtu = caps.mtu;
    let c = match (!caps.rx_checksum_offload, !caps.tx_checksum_offload) {
        (true, true) => Checksum::Both,
        (true, false) => Checksum::Rx,
        (false, true) => Checksum::Tx,
        (false, false) => Checksum::None,
    };
    sc.checksums = ChecksumCaps { ipv4: c, udp: c, tcp: c, icmp: c };
    sc.seed = random_seed() ^ u64::from(u32::from(net.address()));
    Stack::new(sc, now)
}

/// A seed no other process guesses: the stack's ISN key (RFC 6528) and the start
/// of its ephemeral port sequence. A fixed seed would make a restarted process pick
/// the same ports and similar sequence numbers as its predecessor, whose
/// connections the peer may still remember.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

#[cfg(test)]
mod tests {
    use crate::{Config, Domain, LibOs, SocketType};
    use demi_runtime::{QError, QToken, Runtime, Sga, WaitSet};
    use std::net::SocketAddr;
    use std::time::Duration;

    /// A completion alone reaches its token; operations that complete together
    /// (here: the pops a close cancels) complete in the order they were started, as
    /// a `WaitSet` (which reports completions in the order they happened) shows.
    #[test]
    fn completions_reach_their_tokens_alone_or_together_in_start_order() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let host = |h: u8| {
                let mut c = Config::memory(h);
                c.net.link = "netstack-completion-order".into();
                LibOs::new(&c).unwrap()
            };
            let (server, client) = (host(0), host(1));
            let lqd = server.socket(Domain::Ipv4, SocketType::Stream).unwrap();
            server.bind(lqd, "198.18.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
            server.listen(lqd, 8).unwrap();
            let addr = server.local_addr(lqd).unwrap();
            let aqt = server.accept(lqd).unwrap();
            let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
            let cqt = client.connect(cqd, addr).unwrap();
            let guard = Some(Duration::from_secs(10));
            let mut connected = demi_runtime::wait_all(&[aqt, cqt], guard).await.unwrap();
            assert!(connected.pop().unwrap().value.is_ok());
            let (sqd, _) = connected.pop().unwrap().into_accepted().unwrap();
            // One completion at a time (flush_done's fast path).
            for msg in [&b"ping"[..], b"pong"] {
                let pop = client.pop(cqd).unwrap();
                server.push(sqd, Sga::from(msg)).unwrap().await.unwrap().ok().unwrap();
                let r = demi_runtime::wait(pop, guard).await.unwrap();
                assert_eq!((r.qt, r.opcode, r.qd), (pop, demi_runtime::OpCode::Pop, cqd));
                assert_eq!(r.into_sga().unwrap().to_vec(), msg);
            }
            // Several at once (the general path).
            let pops: Vec<QToken> = (0..4).map(|_| client.pop(cqd).unwrap()).collect();
            let mut set = WaitSet::new();
            for &qt in &pops {
                set.insert(qt).unwrap();
            }
            client.close(cqd).unwrap();
            for &qt in &pops {
                let r = set.wait_any(guard).await.unwrap();
                assert_eq!((r.qt, r.value), (qt, Err(QError::Canceled)));
            }
        });
    }
}
