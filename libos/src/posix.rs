//! The POSIX libOS: the queue API over the kernel's own TCP and UDP sockets.
//!
//! Sockets are non-blocking and registered, edge-triggered, with the runtime's epoll
//! reactor; this libOS is the [`Driver`] that receives their readiness. Operations
//! are attempted at once when the socket is known to be ready (a push to a writable
//! socket completes before `push` returns) and otherwise queued per socket, in
//! order, until readiness arrives:
//!
//! - `push` completes when the whole element has been written (partial writes are
//!   resumed where they stopped); on UDP one element is one datagram.
//! - `pop` returns the bytes that arrived (TCP; an empty element means the peer
//!   closed), one datagram with its source address (UDP), or, with framing on, one
//!   whole element as it was pushed ([`crate::framing`]).
//! - `close` cancels the queue's pending operations with [`QError::Canceled`].
//!
//! [`crate::net::TcpStream`] does not go through queue operations on this libOS:
//! it reads and writes the kernel socket directly from its caller's buffers
//! ([`Posix::poll_recv`], [`Posix::poll_send`]) and parks a waker on the socket
//! until the reactor reports the next edge, the way tokio's streams do. That saves,
//! per read and per write, a queue operation (token, completion, wake), a copy into
//! or out of a libOS buffer and an allocation, which under hyper was a tenth of the
//! server's CPU per request. The two paths are not mixed on one socket: a stream
//! uses the direct one only while no pop or push is queued and framing is off.

use crate::framing::{encode_header, FrameDecoder, FrameLimits};
use crate::{Domain, SocketType};
use bytes::BytesMut;
use demi_runtime::{
    Driver, DriverId, Handle, Interest, OpCode, QDesc, QError, QToken, QValue, Readiness, Sga,
};
use slab::Slab;
use smallvec::SmallVec;
use socket2::{SockAddr, Socket, Type};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Bytes read per `recv` on a stream socket.
const RECV_CHUNK: usize = 64 * 1024;
/// Size of the shared receive arena popped buffers are cut from.
const RX_ARENA: usize = 1024 * 1024;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Segments handed to one `sendmsg`.
const MAX_IOV: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unbound,
    Bound,
    Listening,
    Connecting,
    Connected,
    /// A connect failed or the framing broke: only close is useful now.
    Failed(QError),
}

struct PendingPush {
    qt: QToken,
    /// What is left to write (framing header included).
    sga: Sga,
    dest: Option<SockAddr>,
}

struct Sock {
    generation: u32,
    socket: Socket,
    ty: SocketType,
    state: State,
    readable: bool,
    writable: bool,
    /// The peer closed its side: further pops complete with an empty element.
    eof: bool,
    /// The reactor reported a hangup or an error on the stream: its end (EOF or an
    /// error) may be queued behind the data, and no further edge will announce it, so
    /// a short read does not mean the socket is drained.
    end_queued: bool,
    /// A receive error that ends the stream (reported to every later pop).
    rx_error: Option<QError>,
    framing: Option<FrameDecoder>,
    pops: VecDeque<QToken>,
    pushes: VecDeque<PendingPush>,
    accepts: VecDeque<QToken>,
    connect: Option<QToken>,
    /// The task that found the socket drained on the direct path
    /// ([`Posix::poll_recv`]), woken by the next readable edge.
    read_waker: Option<Waker>,
    /// The task that found the send buffer full on the direct path
    /// ([`Posix::poll_send`]), woken by the next writable edge.
    write_waker: Option<Waker>,
}

impl Sock {
    fn new(socket: Socket, ty: SocketType, generation: u32, state: State) -> Self {
        Sock {
            generation,
            socket,
            ty,
            state,
            readable: true,
            writable: true,
            eof: false,
            end_queued: false,
            rx_error: None,
            framing: None,
            pops: VecDeque::new(),
            pushes: VecDeque::new(),
            accepts: VecDeque::new(),
            connect: None,
            read_waker: None,
            write_waker: None,
        }
    }

    /// A send on an unbound UDP socket makes the kernel bind it to an ephemeral
    /// port: from then on it is bound (it can pop replies, and cannot be bound again).
    fn note_implicit_bind(&mut self) {
        if self.ty == SocketType::Datagram
            && self.state == State::Unbound
            && self.socket.local_addr().ok().and_then(|a| a.as_socket()).is_some_and(|a| a.port() != 0)
        {
            self.state = State::Bound;
        }
    }
}

type Completion = (QToken, Result<QValue, QError>);

struct Inner {
    sockets: Slab<Sock>,
    next_generation: u32,
    rx_arena: BytesMut,
    limits: FrameLimits,
    nodelay: bool,
}

/// The POSIX libOS state, shared by the [`crate::LibOs`] handle and the runtime (as a
/// driver).
pub(crate) struct Posix {
    rt: Handle,
    driver: Cell<Option<DriverId>>,
    inner: RefCell<Inner>,
    /// Completions gathered under the state borrow, delivered after it is released.
    done: RefCell<Vec<Completion>>,
}

fn sockaddr_of(addr: &SockAddr) -> Result<SocketAddr, QError> {
    addr.as_socket().ok_or(QError::NotSupported)
}

fn io_err(e: io::Error) -> QError {
    QError::from_io(&e)
}

fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Posix {
    pub(crate) fn new(rt: Handle, limits: FrameLimits) -> std::rc::Rc<Posix> {
        let posix = std::rc::Rc::new(Posix {
            rt: rt.clone(),
            driver: Cell::new(None),
            inner: RefCell::new(Inner {
                sockets: Slab::new(),
                next_generation: 1,
                rx_arena: BytesMut::new(),
                limits,
                nodelay: true,
            }),
            done: RefCell::new(Vec::new()),
        });
        let id = rt.add_driver(posix.clone());
        posix.driver.set(Some(id));
        posix
    }

    fn driver_id(&self) -> DriverId {
        self.driver.get().expect("registered in new()")
    }

    /// Deregisters and closes everything (the libOS is going away).
    pub(crate) fn shutdown(&self) {
        let sockets = std::mem::take(&mut self.inner.borrow_mut().sockets);
        for (_, s) in sockets {
            let _ = self.rt.deregister_fd(s.socket.as_raw_fd());
            self.cancel_all(s);
        }
        self.flush_completions();
        if let Some(id) = self.driver.take() {
            self.rt.remove_driver(id);
        }
    }

    fn cancel_all(&self, s: Sock) {
        // A task parked on the direct path polls again and finds the queue gone.
        s.read_waker.into_iter().chain(s.write_waker).for_each(Waker::wake);
        let mut done = self.done.borrow_mut();
        let tokens = s
            .pops
            .into_iter()
            .chain(s.accepts)
            .chain(s.pushes.into_iter().map(|p| p.qt))
            .chain(s.connect);
        done.extend(tokens.map(|qt| (qt, Err(QError::Canceled))));
    }

    fn flush_completions(&self) {
        loop {
            let batch = std::mem::take(&mut *self.done.borrow_mut());
            if batch.is_empty() {
                return;
            }
            for (qt, value) in batch {
                // A token can only be unknown here if the application made it up;
                // nothing to deliver then.
                let _ = self.rt.op_complete(qt, value);
            }
        }
    }

    fn with_sock<R>(&self, qd: QDesc, f: impl FnOnce(&mut Inner, usize) -> Result<R, QError>) -> Result<R, QError> {
        let r = {
            let mut inner = self.inner.borrow_mut();
            match inner.sockets.get(qd.index() as usize) {
                Some(s) if s.generation == qd.generation() => {}
                _ => return Err(QError::BadDescriptor),
            }
            f(&mut inner, qd.index() as usize)
        };
        self.flush_completions();
        r
    }

    fn insert(&self, inner: &mut Inner, socket: Socket, ty: SocketType, state: State) -> Result<QDesc, QError> {
        let generation = inner.next_generation;
        inner.next_generation = inner.next_generation.wrapping_add(1).max(1);
        let entry = inner.sockets.vacant_entry();
        let index = entry.key();
        if index > u32::MAX as usize {
            return Err(QError::NoBufferSpace);
        }
        self.rt
            .register_fd(socket.as_raw_fd(), self.driver_id(), index as u32, Interest::BOTH)
            .map_err(io_err)?;
        entry.insert(Sock::new(socket, ty, generation, state));
        Ok(QDesc::from_parts(index as u32, generation))
    }

    // ---- control path -------------------------------------------------------------

    pub(crate) fn socket(&self, domain: Domain, ty: SocketType) -> Result<QDesc, QError> {
        let d = match domain {
            Domain::Ipv4 => socket2::Domain::IPV4,
            Domain::Ipv6 => socket2::Domain::IPV6,
        };
        let t = match ty {
            SocketType::Stream => Type::STREAM,
            SocketType::Datagram => Type::DGRAM,
        };
        let socket = Socket::new(d, t.nonblocking().cloexec(), None).map_err(io_err)?;
        if ty == SocketType::Stream {
            socket.set_reuse_address(true).map_err(io_err)?;
        }
        let mut inner = self.inner.borrow_mut();
        self.insert(&mut inner, socket, ty, State::Unbound)
    }

    pub(crate) fn bind(&self, qd: QDesc, addr: SocketAddr) -> Result<(), QError> {
        self.with_sock(qd, |inner, i| {
            let s = &mut inner.sockets[i];
            s.note_implicit_bind();
            if s.state != State::Unbound {
                return Err(QError::InvalidState);
            }
            s.socket.bind(&addr.into()).map_err(io_err)?;
            s.state = State::Bound;
            Ok(())
        })
    }

    pub(crate) fn listen(&self, qd: QDesc, backlog: usize) -> Result<(), QError> {
        self.with_sock(qd, |inner, i| {
            let s = &mut inner.sockets[i];
            if s.ty != SocketType::Stream {
                return Err(QError::NotSupported);
            }
            if !matches!(s.state, State::Unbound | State::Bound) {
                return Err(QError::InvalidState);
            }
            s.socket.listen(backlog.clamp(1, i32::MAX as usize) as i32).map_err(io_err)?;
            s.state = State::Listening;
            Ok(())
        })
    }

    pub(crate) fn accept(&self, qd: QDesc) -> Result<QToken, QError> {
        self.with_sock(qd, |inner, i| {
            if inner.sockets[i].state != State::Listening {
                return Err(QError::InvalidState);
            }
            let qt = self.rt.op_start(OpCode::Accept, qd);
            inner.sockets[i].accepts.push_back(qt);
            self.progress(inner, i);
            Ok(qt)
        })
    }

    pub(crate) fn connect(&self, qd: QDesc, addr: SocketAddr) -> Result<QToken, QError> {
        self.with_sock(qd, |inner, i| {
            let nodelay = inner.nodelay;
            let s = &mut inner.sockets[i];
            match s.state {
                State::Unbound | State::Bound => {}
                State::Connected | State::Connecting if s.ty == SocketType::Stream => {
                    return Err(QError::AlreadyConnected)
                }
                State::Connected => {}
                _ => return Err(QError::InvalidState),
            }
            match s.socket.connect(&addr.into()) {
                Ok(()) => {
                    s.state = State::Connected;
                    if s.ty == SocketType::Stream && nodelay {
                        let _ = s.socket.set_tcp_nodelay(true);
                    }
                    Ok(self.rt.op_start_completed(OpCode::Connect, qd, Ok(QValue::Connected)))
                }
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    s.state = State::Connecting;
                    let qt = self.rt.op_start(OpCode::Connect, qd);
                    s.connect = Some(qt);
                    Ok(qt)
                }
                Err(e) => {
                    let err = io_err(e);
                    if let QError::InvalidArgument(_) = err {
                        return Err(err);
                    }
                    Ok(self.rt.op_start_completed(OpCode::Connect, qd, Err(err)))
                }
            }
        })
    }

    pub(crate) fn close(&self, qd: QDesc) -> Result<(), QError> {
        let sock = {
            let mut inner = self.inner.borrow_mut();
            match inner.sockets.get(qd.index() as usize) {
                Some(s) if s.generation == qd.generation() => {}
                _ => return Err(QError::BadDescriptor),
            }
            inner.sockets.remove(qd.index() as usize)
        };
        let _ = self.rt.deregister_fd(sock.socket.as_raw_fd());
        self.cancel_all(sock);
        self.flush_completions();
        Ok(())
    }

    pub(crate) fn set_framing(&self, qd: QDesc, on: bool) -> Result<(), QError> {
        self.with_sock(qd, |inner, i| {
            let limits = inner.limits;
            let s = &mut inner.sockets[i];
            if s.ty != SocketType::Stream {
                return Err(QError::NotSupported);
            }
            match (on, &s.framing) {
                (true, None) => s.framing = Some(FrameDecoder::new(limits)),
                (false, Some(d)) if !d.is_empty() => return Err(QError::InvalidState),
                (false, _) => s.framing = None,
                (true, Some(_)) => {}
            }
            Ok(())
        })
    }

    pub(crate) fn set_nodelay(&self, qd: QDesc, on: bool) -> Result<(), QError> {
        self.with_sock(qd, |inner, i| {
            let s = &inner.sockets[i];
            if s.ty != SocketType::Stream {
                return Err(QError::NotSupported);
            }
            s.socket.set_tcp_nodelay(on).map_err(io_err)
        })
    }

    pub(crate) fn set_linger(&self, qd: QDesc, linger: Option<std::time::Duration>) -> Result<(), QError> {
        self.with_sock(qd, |inner, i| inner.sockets[i].socket.set_linger(linger).map_err(io_err))
    }

    pub(crate) fn local_addr(&self, qd: QDesc) -> Result<SocketAddr, QError> {
        self.with_sock(qd, |inner, i| sockaddr_of(&inner.sockets[i].socket.local_addr().map_err(io_err)?))
    }

    pub(crate) fn peer_addr(&self, qd: QDesc) -> Result<SocketAddr, QError> {
        self.with_sock(qd, |inner, i| sockaddr_of(&inner.sockets[i].socket.peer_addr().map_err(io_err)?))
    }

    // ---- data path ----------------------------------------------------------------

    pub(crate) fn push(&self, qd: QDesc, sga: Sga, dest: Option<SocketAddr>) -> Result<QToken, QError> {
        self.with_sock(qd, |inner, i| {
            let limits = inner.limits;
            let s = &mut inner.sockets[i];
            let (sga, dest) = match s.ty {
                SocketType::Stream => {
                    if dest.is_some() {
                        return Err(QError::NotSupported);
                    }
                    match s.state {
                        State::Connected => {}
                        State::Failed(e) => return Err(e),
                        _ => return Err(QError::NotConnected),
                    }
                    if sga.is_empty() {
                        return Err(QError::InvalidArgument("cannot push an empty element"));
                    }
                    match s.framing {
                        Some(_) => {
                            let hdr = encode_header(&sga, limits)?;
                            let mut framed = Sga::from(hdr);
                            for seg in sga.segments() {
                                if !seg.is_empty() {
                                    framed.push_segment(seg.clone());
                                }
                            }
                            (framed, None)
                        }
                        None => (sga, None),
                    }
                }
                SocketType::Datagram => {
                    if sga.len() > MAX_DATAGRAM {
                        return Err(QError::MessageTooLong);
                    }
                    match dest.or(sga.addr()) {
                        Some(a) => (sga, Some(SockAddr::from(a))),
                        None if s.state == State::Connected => (sga, None),
                        None => return Err(QError::NotConnected),
                    }
                }
            };
            let qt = self.rt.op_start(OpCode::Push, qd);
            s.pushes.push_back(PendingPush { qt, sga, dest });
            self.progress(inner, i);
            Ok(qt)
        })
    }

    pub(crate) fn pop(&self, qd: QDesc) -> Result<QToken, QError> {
        self.with_sock(qd, |inner, i| {
            let s = &mut inner.sockets[i];
            s.note_implicit_bind();
            match (s.ty, s.state) {
                (SocketType::Stream, State::Connected) => {}
                (SocketType::Stream, State::Failed(e)) => return Err(e),
                (SocketType::Stream, _) => return Err(QError::NotConnected),
                (SocketType::Datagram, State::Unbound) => return Err(QError::InvalidState),
                (SocketType::Datagram, _) => {}
            }
            let qt = self.rt.op_start(OpCode::Pop, qd);
            s.pops.push_back(qt);
            self.progress(inner, i);
            Ok(qt)
        })
    }

    // ---- direct byte-stream path (net::TcpStream) -----------------------------------

    /// True when `qd` is a connected TCP socket with framing off and no queued pop
    /// or push: [`crate::net::TcpStream`] may then use [`poll_recv`](Self::poll_recv)
    /// and [`poll_send`](Self::poll_send) on it.
    pub(crate) fn direct_ok(&self, qd: QDesc) -> bool {
        let inner = self.inner.borrow();
        match inner.sockets.get(qd.index() as usize) {
            Some(s) if s.generation == qd.generation() => {
                s.ty == SocketType::Stream
                    && s.state == State::Connected
                    && s.framing.is_none()
                    && s.pops.is_empty()
                    && s.pushes.is_empty()
            }
            _ => false,
        }
    }

    /// Reads what the socket holds into `buf` (`Ok(0)`: the peer closed, or `buf` is
    /// empty); when it holds nothing, remembers `cx`'s waker for the next readable
    /// edge and returns `Pending`. After an error the stream stays failed.
    pub(crate) fn poll_recv(&self, qd: QDesc, cx: &mut Context<'_>, buf: &mut [MaybeUninit<u8>]) -> Poll<Result<usize, QError>> {
        let mut inner = self.inner.borrow_mut();
        let s = match inner.sockets.get_mut(qd.index() as usize) {
            Some(s) if s.generation == qd.generation() => s,
            _ => return Poll::Ready(Err(QError::BadDescriptor)),
        };
        if let Some(e) = s.rx_error {
            return Poll::Ready(Err(e));
        }
        match s.state {
            State::Connected => {}
            State::Failed(e) => return Poll::Ready(Err(e)),
            _ => return Poll::Ready(Err(QError::NotConnected)),
        }
        if s.eof || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if !s.readable {
                s.read_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            match s.socket.recv(buf) {
                Ok(0) => {
                    s.eof = true;
                    return Poll::Ready(Ok(0));
                }
                Ok(n) => {
                    if n < buf.len() && !s.end_queued {
                        // Drained: the next arrival raises a new edge.
                        s.readable = false;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if is_would_block(&e) => s.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let e = io_err(e);
                    s.rx_error = Some(e);
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// Writes as much of `bufs` as the send buffer takes (at least one byte unless
    /// `bufs` is empty); when it takes nothing, remembers `cx`'s waker for the next
    /// writable edge and returns `Pending`.
    pub(crate) fn poll_send(&self, qd: QDesc, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<Result<usize, QError>> {
        let mut inner = self.inner.borrow_mut();
        let s = match inner.sockets.get_mut(qd.index() as usize) {
            Some(s) if s.generation == qd.generation() => s,
            _ => return Poll::Ready(Err(QError::BadDescriptor)),
        };
        match s.state {
            State::Connected => {}
            State::Failed(e) => return Poll::Ready(Err(e)),
            _ => return Poll::Ready(Err(QError::NotConnected)),
        }
        let bufs = &bufs[..bufs.len().min(MAX_IOV)];
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            if !s.writable || !s.pushes.is_empty() {
                s.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // One slice (the usual reply): `send`, which spares the kernel the
            // message header and iovec import of `sendmsg`.
            let res = match bufs {
                [one] => s.socket.send_with_flags(one, libc::MSG_NOSIGNAL),
                _ => s.socket.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            };
            match res {
                Ok(n) => {
                    if n < total {
                        // The send buffer is full: the next write waits for EPOLLOUT.
                        s.writable = false;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if is_would_block(&e) => s.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }

    // ---- progress -----------------------------------------------------------------

    /// Moves every queued operation of socket `i` as far as readiness allows.
    fn progress(&self, inner: &mut Inner, i: usize) -> usize {
        let mut done = self.done.borrow_mut();
        let before = done.len();
        let state = inner.sockets[i].state;
        match state {
            State::Connecting => self.progress_connect(inner, i, &mut done),
            State::Listening => self.progress_accept(inner, i, &mut done),
            _ => {}
        }
        let s = &mut inner.sockets[i];
        if !s.pushes.is_empty() && s.writable {
            Self::progress_push(s, &mut done);
        }
        if !s.pops.is_empty() {
            match s.ty {
                SocketType::Stream if s.state == State::Connected || s.eof || s.rx_error.is_some() => {
                    Self::progress_stream_pop(&mut inner.rx_arena, &mut inner.sockets[i], &mut done)
                }
                SocketType::Datagram => Self::progress_datagram_pop(s, &mut done),
                _ => {}
            }
        }
        done.len() - before
    }

    fn progress_connect(&self, inner: &mut Inner, i: usize, done: &mut Vec<Completion>) {
        let nodelay = inner.nodelay;
        let s = &mut inner.sockets[i];
        if !s.writable {
            return;
        }
        let result = match s.socket.take_error() {
            Ok(None) => {
                // Writable without an error: connected (confirm; a spurious early event
                // would show ENOTCONN here).
                match s.socket.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                        s.writable = false;
                        return;
                    }
                    Err(e) => Err(io_err(e)),
                }
            }
            Ok(Some(e)) => Err(io_err(e)),
            Err(e) => Err(io_err(e)),
        };
        let qt = s.connect.take();
        match result {
            Ok(()) => {
                s.state = State::Connected;
                if s.ty == SocketType::Stream && nodelay {
                    let _ = s.socket.set_tcp_nodelay(true);
                }
                if let Some(qt) = qt {
                    done.push((qt, Ok(QValue::Connected)));
                }
            }
            Err(e) => {
                s.state = State::Failed(e);
                if let Some(qt) = qt {
                    done.push((qt, Err(e)));
                }
            }
        }
    }

    fn progress_accept(&self, inner: &mut Inner, i: usize, done: &mut Vec<Completion>) {
        let nodelay = inner.nodelay;
        while !inner.sockets[i].accepts.is_empty() && inner.sockets[i].readable {
            let res = inner.sockets[i].socket.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            match res {
                Ok((conn, addr)) => {
                    let addr = match sockaddr_of(&addr) {
                        Ok(a) => a,
                        Err(_) => continue,
                    };
                    if nodelay {
                        let _ = conn.set_tcp_nodelay(true);
                    }
                    let ty = inner.sockets[i].ty;
                    let result = self.insert(inner, conn, ty, State::Connected);
                    let qt = inner.sockets[i].accepts.pop_front().expect("checked non-empty");
                    done.push((qt, result.map(|qd| QValue::Accepted { qd, addr })));
                }
                Err(e) if is_would_block(&e) => inner.sockets[i].readable = false,
                // The connection died in the backlog; try the next one.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    let errno = e.raw_os_error();
                    let qt = inner.sockets[i].accepts.pop_front().expect("checked non-empty");
                    done.push((qt, Err(io_err(e))));
                    if matches!(errno, Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
                        // Out of descriptors: the backlog stays readable; retry on the
                        // next accept rather than spinning here.
                        break;
                    }
                }
            }
        }
    }

    fn progress_push(s: &mut Sock, done: &mut Vec<Completion>) {
        while let Some(p) = s.pushes.front_mut() {
            let mut iov: SmallVec<[IoSlice<'_>; 8]> = SmallVec::new();
            for seg in p.sga.segments().iter().take(MAX_IOV) {
                iov.push(IoSlice::new(seg));
            }
            let res = match (&p.dest, &iov[..]) {
                (Some(a), _) => s.socket.send_to_vectored_with_flags(&iov, a, libc::MSG_NOSIGNAL),
                // One segment: `send` (no `sendmsg` header and iovec import).
                (None, [one]) => s.socket.send_with_flags(one, libc::MSG_NOSIGNAL),
                (None, _) => s.socket.send_vectored_with_flags(&iov, libc::MSG_NOSIGNAL),
            };
            drop(iov);
            match res {
                Ok(n) => {
                    if s.ty == SocketType::Datagram || n >= p.sga.len() {
                        let p = s.pushes.pop_front().expect("front exists");
                        done.push((p.qt, Ok(QValue::Pushed)));
                    } else {
                        let wrote_all_iov: usize = p.sga.segments().iter().take(MAX_IOV).map(|b| b.len()).sum();
                        p.sga.advance(n);
                        if n < wrote_all_iov {
                            // The socket buffer is full: wait for EPOLLOUT.
                            s.writable = false;
                            return;
                        }
                    }
                }
                Err(e) if is_would_block(&e) => {
                    s.writable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let p = s.pushes.pop_front().expect("front exists");
                    done.push((p.qt, Err(io_err(e))));
                }
            }
        }
    }

    fn recv_into(socket: &Socket, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        buf.reserve(want);
        let spare = &mut buf.spare_capacity_mut()[..want];
        let n = socket.recv(spare)?;
        // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    fn progress_stream_pop(arena: &mut BytesMut, s: &mut Sock, done: &mut Vec<Completion>) {
        loop {
            if s.pops.is_empty() {
                return;
            }
            // Whole elements already buffered (framing) go first.
            if let Some(dec) = &mut s.framing {
                match dec.decode() {
                    Ok(Some(sga)) => {
                        let qt = s.pops.pop_front().expect("checked non-empty");
                        done.push((qt, Ok(QValue::Popped(sga))));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        s.rx_error = Some(e);
                        s.state = State::Failed(e);
                    }
                }
            }
            if let Some(e) = s.rx_error {
                done.extend(s.pops.drain(..).map(|qt| (qt, Err(e))));
                return;
            }
            if s.eof {
                let partial = s.framing.as_ref().is_some_and(|d| !d.is_empty());
                let value = if partial { Err(QError::InvalidData) } else { Ok(QValue::Popped(Sga::new())) };
                done.extend(s.pops.drain(..).map(|qt| (qt, value.clone())));
                return;
            }
            if !s.readable {
                return;
            }
            let res = match &mut s.framing {
                Some(dec) => Self::recv_into(&s.socket, dec.buffer(), RECV_CHUNK),
                None => {
                    if arena.capacity() - arena.len() < RECV_CHUNK {
                        *arena = BytesMut::with_capacity(RX_ARENA);
                    }
                    Self::recv_into(&s.socket, arena, RECV_CHUNK)
                }
            };
            match res {
                Ok(0) => s.eof = true,
                Ok(n) => {
                    if n < RECV_CHUNK && !s.end_queued {
                        // Drained: the next arrival raises a new edge.
                        s.readable = false;
                    }
                    if s.framing.is_none() {
                        let data = arena.split().freeze();
                        let qt = s.pops.pop_front().expect("checked non-empty");
                        done.push((qt, Ok(QValue::Popped(Sga::from(data)))));
                    }
                }
                Err(e) if is_would_block(&e) => s.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => s.rx_error = Some(io_err(e)),
            }
        }
    }

    fn progress_datagram_pop(s: &mut Sock, done: &mut Vec<Completion>) {
        while !s.pops.is_empty() && s.readable {
            let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
            let spare = &mut buf.spare_capacity_mut()[..MAX_DATAGRAM];
            match s.socket.recv_from(spare) {
                Ok((n, from)) => {
                    // SAFETY: `recv_from` initialised the first `n` bytes.
                    unsafe { buf.set_len(n) };
                    let data = if n < 4096 { bytes::Bytes::copy_from_slice(&buf) } else { buf.freeze() };
                    let mut sga = Sga::from(data);
                    sga.set_addr(from.as_socket());
                    let qt = s.pops.pop_front().expect("checked non-empty");
                    done.push((qt, Ok(QValue::Popped(sga))));
                }
                Err(e) if is_would_block(&e) => s.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors (e.g. port unreachable) surface on the next receive.
                Err(e) => {
                    let qt = s.pops.pop_front().expect("checked non-empty");
                    done.push((qt, Err(io_err(e))));
                }
            }
        }
    }
}

impl Driver for Posix {
    fn name(&self) -> &'static str {
        "posix"
    }

    fn poll(&self, _now: Instant) -> usize {
        0
    }

    fn on_event(&self, token: u32, r: Readiness) -> usize {
        let n = {
            let mut inner = self.inner.borrow_mut();
            let i = token as usize;
            let Some(s) = inner.sockets.get_mut(i) else { return 0 };
            if r.readable || r.hangup || r.error {
                s.readable = true;
            }
            // (A fresh, unconnected socket reports a hangup too: only count it once
            // a connection exists or is being made.)
            if (r.hangup || r.error) && matches!(s.state, State::Connecting | State::Connected) {
                s.end_queued = true;
            }
            if r.writable || r.error {
                s.writable = true;
            }
            if r.hangup && s.state == State::Connecting {
                s.writable = true;
            }
            let mut woken = 0;
            if s.readable {
                if let Some(w) = s.read_waker.take() {
                    w.wake();
                    woken += 1;
                }
            }
            if s.writable {
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                    woken += 1;
                }
            }
            woken + self.progress(&mut inner, i)
        };
        self.flush_completions();
        n
    }
}
