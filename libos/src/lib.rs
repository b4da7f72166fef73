//! # demi-libos
//!
//! The Demikernel queue API. A [`LibOs`] maps queue descriptors ([`QDesc`]) to I/O
//! queues and offers, whatever device is underneath:
//!
//! - control path, POSIX-shaped: [`socket`](LibOs::socket), [`bind`](LibOs::bind),
//!   [`listen`](LibOs::listen), [`accept`](LibOs::accept),
//!   [`connect`](LibOs::connect), [`close`](LibOs::close);
//! - data path, never blocking: [`push`](LibOs::push), [`pushto`](LibOs::pushto),
//!   [`pop`](LibOs::pop) return a [`QToken`] at once;
//! - completions: [`wait`](LibOs::wait), [`wait_any`](LibOs::wait_any),
//!   [`wait_all`](LibOs::wait_all) from synchronous code (they drive the runtime), or
//!   `qt.await` and [`demi_runtime::wait_any`] from async code;
//!   [`blocking_push`](LibOs::blocking_push) and [`blocking_pop`](LibOs::blocking_pop)
//!   are a push or pop followed by a wait;
//! - queue calls that build queues from queues: [`queue`](LibOs::queue),
//!   [`merge`](LibOs::merge), [`filter`](LibOs::filter) (with a closure or an
//!   offloadable [`Predicate`]), [`sort`](LibOs::sort), [`map`](LibOs::map), and
//!   [`qconnect`](LibOs::qconnect), over any queue (module [`queues`]).
//!
//! Misuse (a closed descriptor, a call in the wrong state, a bad token) is a typed
//! [`QError`], never a panic. Errors found while starting an operation are returned
//! by the call; errors of the I/O itself arrive in the [`QResult`].
//!
//! Storage queues: [`creat`](LibOs::creat) and [`open`](LibOs::open) give queues over
//! log files (io_uring, O_DIRECT; see [`demi_storage`]): `push` appends a durable
//! record, `pop` reads records in order, [`seek`](LibOs::seek) and
//! [`truncate`](LibOs::truncate) are control-path calls. They work under any libOS.
//!
//! libOSes available: `posix` (the kernel's sockets through epoll), and demi's own
//! TCP/IP stack ([`demi_net_stack`]) over a [`device`]: `memory` (an in-process link
//! between stacks), `shm` (shared-memory rings between processes), `raw` (AF_PACKET
//! mmap rings on an interface) and `dpdk` (cargo feature `dpdk`).
//!
//! ```no_run
//! use demi_libos::{LibOs, Domain, SocketType};
//! let libos = LibOs::posix().unwrap();
//! let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
//! let qt = libos.connect(qd, "127.0.0.1:7".parse().unwrap()).unwrap();
//! libos.wait(qt, None).unwrap().ok().unwrap();
//! libos.blocking_push(qd, "hello".into()).unwrap().ok().unwrap();
//! let reply = libos.blocking_pop(qd).unwrap().into_sga().unwrap();
//! println!("{} bytes back", reply.len());
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod buffer;
mod config;
pub mod device;
pub mod framing;
pub mod launch;
pub mod net;
mod netstack;
mod posix;
pub mod queues;
mod storage;

pub use buffer::{BufferPool, PoolBuf};
pub use config::{Config, ConfigError, LibOsKind, NetConfig};
pub use demi_runtime::{OpCode, QDesc, QError, QResult, QToken, QValue, Sga};
pub use framing::FrameLimits;
pub use queues::{Filter, FilterStats, Predicate, Proto};
pub use storage::StorageOptions;
pub use demi_storage::{OpenMode, StorageError};

use demi_runtime::{Handle, Runtime};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

// ---- descriptor spaces ----------------------------------------------------------
//
// One `LibOs` serves several kinds of queue, each owned by its own part of the libOS
// with its own table. The top two bits of `QDesc::index()` say which part owns a
// descriptor, so routing a call is a bit test, never a lookup:
//
//   00  network queues (the POSIX or user-level-stack backend; their tables never
//       reach 2^30 entries)
//   01  in-memory queues and queue combinators (`queues`: queue, merge, filter,
//       sort, map)
//   10  storage queues (log files, `storage.rs`)
//   11  reserved
//
// A part hands out descriptors with its space's bits set (`SPACE | slot`) and strips
// them to find the slot. To add a space: a constant here, a `Space` variant, a `route`
// arm, and a match arm in the calls that apply to it (push, pop, close, …).

/// Bits of `QDesc::index()` that name the descriptor space.
pub(crate) const SPACE_MASK: u32 = 0b11 << 30;
/// Storage queues' space.
pub(crate) const STORAGE_SPACE: u32 = 0b10 << 30;
/// The space of memory queues and combinators (a single bit: `queues` strips it).
pub(crate) const QUEUES_INDEX_BIT: u32 = 0b01 << 30;

/// Who owns a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    Net,
    Queues,
    Storage,
    Unassigned,
}

/// The part of the libOS a descriptor belongs to.
pub(crate) fn route(qd: QDesc) -> Space {
    match qd.index() & SPACE_MASK {
        0 => Space::Net,
        QUEUES_INDEX_BIT => Space::Queues,
        STORAGE_SPACE => Space::Storage,
        _ => Space::Unassigned,
    }
}

/// Address family of a socket queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// IPv4 (`AF_INET`).
    Ipv4,
    /// IPv6 (`AF_INET6`).
    Ipv6,
}

impl Domain {
    /// The family of an address.
    pub fn of(addr: &SocketAddr) -> Domain {
        if addr.is_ipv4() {
            Domain::Ipv4
        } else {
            Domain::Ipv6
        }
    }
}

/// Kind of socket queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// TCP: a byte stream (or whole elements, with framing on).
    Stream,
    /// UDP: one element is one datagram.
    Datagram,
}

enum Backend {
    Posix(Rc<posix::Posix>),
    Net(Rc<netstack::NetStack>),
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.inner.backend {
            Backend::Posix(b) => b.$method($($arg),*),
            Backend::Net(b) => b.$method($($arg),*),
        }
    };
}

struct Inner {
    kind: LibOsKind,
    backend: Backend,
    /// What `alloc` hands out.
    pool: BufferPool,
    /// Storage queues, made on the first `open`/`creat`.
    storage: RefCell<Option<Rc<storage::Storage>>>,
    rt: Handle,
    /// Memory queues and combinators (descriptors with `QUEUES_INDEX_BIT`).
    queues: queues::Queues,
    /// A runtime this libOS made for itself (created outside any runtime). Declared
    /// last: dropped after the backend has released its sockets.
    _own_rt: Option<Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.queues.shutdown(&self.rt);
        match &self.backend {
            Backend::Posix(p) => p.shutdown(),
            Backend::Net(n) => n.shutdown(),
        }
        if let Some(s) = self.storage.borrow_mut().take() {
            s.shutdown();
        }
    }
}

/// A library OS instance: the queue API over one device. Cheap to clone (a handle);
/// `!Send`, it belongs to its runtime's thread.
#[derive(Clone)]
pub struct LibOs {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for LibOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibOs").field("kind", &self.inner.kind).finish()
    }
}

thread_local! {
    /// The thread's default configuration (set by `#[demi::main]`) and the libOS
    /// made from it, per runtime.
    static DEFAULT_CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
    static CURRENT_LIBOS: RefCell<Vec<(usize, LibOs)>> = const { RefCell::new(Vec::new()) };
}

impl LibOs {
    /// A libOS as `config` says, on the current runtime; outside a runtime it makes
    /// and owns one (its synchronous `wait*` calls drive it).
    pub fn new(config: &Config) -> Result<LibOs, ConfigError> {
        let (rt, own) = match Handle::try_current() {
            Some(h) => (h, None),
            None => {
                let rt = config.runtime_builder().build().map_err(ConfigError::Io)?;
                (rt.handle().clone(), Some(rt))
            }
        };
        let backend = match config.libos {
            LibOsKind::Posix => Backend::Posix(posix::Posix::new(rt.clone(), config.frame_limits)),
            _ => {
                let device = device::open(config)?;
                Backend::Net(netstack::NetStack::new(rt.clone(), &config.net, device, config.frame_limits))
            }
        };
        Ok(LibOs { inner: Rc::new(Inner { kind: config.libos, backend, pool: app_pool(config), storage: RefCell::new(None), rt, queues: Default::default(), _own_rt: own }) })
    }

    /// The user-level stack libOS over a device of your own (or one of
    /// [`device`]'s, opened and wrapped as you like), with `config`'s address,
    /// frame limits and, outside a runtime, runtime settings. `config.libos` only
    /// names it ([`kind`](Self::kind)); it must not be `Posix`.
    pub fn with_device(config: &Config, device: Box<dyn device::Device>) -> Result<LibOs, ConfigError> {
        if config.libos == LibOsKind::Posix {
            return Err(ConfigError::Invalid("LibOs::with_device: a device needs a user-level stack libOS kind, not posix".into()));
        }
        let (rt, own) = match Handle::try_current() {
            Some(h) => (h, None),
            None => {
                let rt = config.runtime_builder().build().map_err(ConfigError::Io)?;
                (rt.handle().clone(), Some(rt))
            }
        };
        let backend = Backend::Net(netstack::NetStack::new(rt.clone(), &config.net, device, config.frame_limits));
        Ok(LibOs { inner: Rc::new(Inner { kind: config.libos, backend, pool: app_pool(config), storage: RefCell::new(None), rt, queues: Default::default(), _own_rt: own }) })
    }

    /// The POSIX libOS with default settings.
    pub fn posix() -> Result<LibOs, ConfigError> {
        Self::new(&Config::new(LibOsKind::Posix))
    }

    /// The thread's default libOS on the current runtime: the one `#[demi::main]`
    /// (or `DEMI_LIBOS`) selected, made on first use and shared afterwards.
    pub fn current() -> Result<LibOs, ConfigError> {
        let rt = Handle::try_current();
        if let Some(rt) = &rt {
            let found = CURRENT_LIBOS.with(|c| {
                c.borrow().iter().find(|(id, _)| *id == rt.id()).map(|(_, l)| l.clone())
            });
            if let Some(l) = found {
                return Ok(l);
            }
        }
        let config = match DEFAULT_CONFIG.with(|c| c.borrow().clone()) {
            Some(c) => c,
            None => Config::from_env()?,
        };
        let libos = LibOs::new(&config)?;
        if let Some(rt) = rt {
            CURRENT_LIBOS.with(|c| c.borrow_mut().push((rt.id(), libos.clone())));
        }
        Ok(libos)
    }

    /// Sets the configuration [`current`](Self::current) uses on this thread.
    pub fn set_default_config(config: Config) {
        DEFAULT_CONFIG.with(|c| *c.borrow_mut() = Some(config));
    }

    /// Which libOS this is.
    pub fn kind(&self) -> LibOsKind {
        self.inner.kind
    }

    /// Its name (`"posix"`, …).
    pub fn name(&self) -> &'static str {
        self.inner.kind.name()
    }

    /// The runtime this libOS runs on.
    pub fn runtime(&self) -> &Handle {
        &self.inner.rt
    }

    // ---- control path -------------------------------------------------------------

    /// Creates a socket queue.
    pub fn socket(&self, domain: Domain, ty: SocketType) -> Result<QDesc, QError> {
        dispatch!(self.socket(domain, ty))
    }

    /// Binds a socket queue to a local address.
    pub fn bind(&self, qd: QDesc, addr: SocketAddr) -> Result<(), QError> {
        dispatch!(self.bind(qd, addr))
    }

    /// Makes a TCP socket queue accept connections, with up to `backlog` waiting.
    pub fn listen(&self, qd: QDesc, backlog: usize) -> Result<(), QError> {
        dispatch!(self.listen(qd, backlog))
    }

    /// Starts accepting one connection; the result carries the new queue and the
    /// peer's address ([`QResult::into_accepted`]).
    pub fn accept(&self, qd: QDesc) -> Result<QToken, QError> {
        dispatch!(self.accept(qd))
    }

    /// Starts connecting to `addr`. On UDP it sets the default destination and
    /// completes at once.
    pub fn connect(&self, qd: QDesc, addr: SocketAddr) -> Result<QToken, QError> {
        dispatch!(self.connect(qd, addr))
    }

    /// Closes a queue. Its pending operations complete with [`QError::Canceled`];
    /// the descriptor is invalid afterwards. On a storage queue, pushes already
    /// started finish first (they complete as durable or failed) and pops complete.
    pub fn close(&self, qd: QDesc) -> Result<(), QError> {
        match route(qd) {
            Space::Net => dispatch!(self.close(qd)),
            Space::Queues => queues::close(self, qd),
            Space::Storage => self.storage_of(qd)?.close(qd),
            Space::Unassigned => Err(QError::BadDescriptor),
        }
    }

    // ---- storage (control path) ---------------------------------------------------

    /// Opens an existing demi log file as a queue: recovers it (every completed push
    /// is there, a torn tail is dropped) and sets the read cursor to its first
    /// record. A file that cannot be written opens read-only (pushes fail). Errors
    /// are typed: [`StorageError::NotALog`], [`StorageError::UnsupportedVersion`], …
    /// Works whichever network libOS this is.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<QDesc, StorageError> {
        self.open_with(path, OpenMode::Existing, &StorageOptions::default())
    }

    /// Creates a new, empty log file (truncating any file at `path`) as a queue.
    pub fn creat(&self, path: impl AsRef<Path>) -> Result<QDesc, StorageError> {
        self.open_with(path, OpenMode::CreateTruncate, &StorageOptions::default())
    }

    /// [`open`](Self::open) or [`creat`](Self::creat) with explicit device and log
    /// settings (ring size, SQPOLL, record limit, group-commit limits).
    pub fn open_with(&self, path: impl AsRef<Path>, mode: OpenMode, options: &StorageOptions) -> Result<QDesc, StorageError> {
        let storage = self
            .inner
            .storage
            .borrow_mut()
            .get_or_insert_with(|| storage::Storage::new(self.inner.rt.clone()))
            .clone();
        storage.open(path.as_ref(), mode, options)
    }

    /// Moves a storage queue's read cursor to record `pos` (0 is the first record,
    /// [`log_len`](Self::log_len) the end). The next pop returns record `pos`.
    pub fn seek(&self, qd: QDesc, pos: u64) -> Result<(), QError> {
        self.storage_of(qd)?.seek(qd, pos)
    }

    /// Keeps the first `len` records of a storage queue and durably drops the rest
    /// (waits for the pushes in flight first). Pushes after it append at `len`.
    pub fn truncate(&self, qd: QDesc, len: u64) -> Result<(), QError> {
        self.storage_of(qd)?.truncate(qd, len)
    }

    /// Durable records in a storage queue.
    pub fn log_len(&self, qd: QDesc) -> Result<u64, QError> {
        self.storage_of(qd)?.len(qd)
    }

    fn storage_of(&self, qd: QDesc) -> Result<Rc<storage::Storage>, QError> {
        if route(qd) != Space::Storage {
            return Err(QError::BadDescriptor);
        }
        self.inner.storage.borrow().clone().ok_or(QError::BadDescriptor)
    }

    /// Turns element framing on or off for a TCP queue (both peers must agree): a
    /// pushed element then pops whole, with its segmentation, at a demi peer. See
    /// [`framing`]. Turning it off with a partial element buffered is
    /// [`QError::InvalidState`].
    pub fn set_framing(&self, qd: QDesc, on: bool) -> Result<(), QError> {
        dispatch!(self.set_framing(qd, on))
    }

    /// Turns Nagle's algorithm off (`true`, the default for demi's TCP queues) or on.
    pub fn set_nodelay(&self, qd: QDesc, on: bool) -> Result<(), QError> {
        dispatch!(self.set_nodelay(qd, on))
    }

    /// Sets `SO_LINGER`; `Some(Duration::ZERO)` makes `close` reset the connection.
    pub fn set_linger(&self, qd: QDesc, linger: Option<Duration>) -> Result<(), QError> {
        dispatch!(self.set_linger(qd, linger))
    }

    /// The POSIX backend, when this is the POSIX libOS (`net::TcpStream` reads and
    /// writes its sockets directly).
    pub(crate) fn posix_backend(&self) -> Option<&Rc<posix::Posix>> {
        match &self.inner.backend {
            Backend::Posix(p) => Some(p),
            Backend::Net(_) => None,
        }
    }

    /// The queue's local address.
    pub fn local_addr(&self, qd: QDesc) -> Result<SocketAddr, QError> {
        dispatch!(self.local_addr(qd))
    }

    /// The connected peer's address.
    pub fn peer_addr(&self, qd: QDesc) -> Result<SocketAddr, QError> {
        dispatch!(self.peer_addr(qd))
    }

    /// Chooses the user-level stack's TCP settings for one queue (congestion control,
    /// SACK, timestamps, buffers, timers, keepalive, …), before it connects or
    /// listens; a listener passes them to the connections it accepts.
    /// [`QError::NotSupported`] on the POSIX libOS (the kernel's TCP has its own
    /// socket options) and for UDP; [`QError::InvalidState`] once connected or
    /// listening.
    pub fn set_tcp_config(&self, qd: QDesc, tcp: demi_net_stack::tcp::TcpConfig) -> Result<(), QError> {
        match &self.inner.backend {
            Backend::Posix(_) => Err(QError::NotSupported),
            Backend::Net(n) => n.set_tcp_config(qd, tcp),
        }
    }

    /// Counters of the user-level stack (frames, drops by reason, ARP, …); `None` on
    /// the POSIX libOS, whose stack is the kernel's (see `/proc/net/snmp`).
    pub fn stack_stats(&self) -> Option<demi_net_stack::iface::StackStats> {
        match &self.inner.backend {
            Backend::Posix(_) => None,
            Backend::Net(n) => Some(n.stack_stats()),
        }
    }

    /// Counters of a TCP connection of the user-level stack (segments, retransmits,
    /// fast retransmits, RTO fires, duplicate ACKs, SACK blocks, cwnd, srtt, …).
    /// [`QError::NotSupported`] on the POSIX libOS; [`QError::InvalidState`] for a
    /// queue that is not a connection.
    pub fn tcp_stats(&self, qd: QDesc) -> Result<demi_net_stack::tcp::ConnStats, QError> {
        match &self.inner.backend {
            Backend::Posix(_) => Err(QError::NotSupported),
            Backend::Net(n) => n.tcp_stats(qd),
        }
    }

    // ---- memory -------------------------------------------------------------------

    /// A buffer of `len` bytes for an element to push: from this libOS's buffer pool
    /// (preallocated, 64-byte aligned, with headroom for headers, recycled when the
    /// last [`Bytes`](bytes::Bytes) made from it by [`PoolBuf::freeze`] is dropped),
    /// or from the heap when `len` exceeds a pool buffer or every pool buffer is in
    /// use. Push accepts any [`Sga`] all the same: pool memory saves the allocator
    /// call, it is never required. (The user-level stack copies payload into frames
    /// once, summing the checksum as it copies; no device here reads pushed memory
    /// directly.)
    pub fn alloc(&self, len: usize) -> PoolBuf {
        self.inner.pool.alloc(len).unwrap_or_else(|| PoolBuf::heap(len))
    }

    /// The pool [`alloc`](Self::alloc) draws from.
    pub fn buffer_pool(&self) -> &BufferPool {
        &self.inner.pool
    }

    // ---- data path ----------------------------------------------------------------

    /// Pushes one element. Completes when the whole element has been handed to the
    /// queue. On UDP the element's address (if set) is the destination.
    ///
    /// On a storage queue the element is one record, appended and completed when it
    /// is durable (concurrent pushes share one flush).
    pub fn push(&self, qd: QDesc, sga: Sga) -> Result<QToken, QError> {
        match route(qd) {
            Space::Net => dispatch!(self.push(qd, sga, None)),
            Space::Queues => queues::push(self, qd, sga),
            Space::Storage => self.storage_of(qd)?.push(qd, sga),
            Space::Unassigned => Err(QError::BadDescriptor),
        }
    }

    /// Pushes one element to `addr` (UDP).
    pub fn pushto(&self, qd: QDesc, sga: Sga, addr: SocketAddr) -> Result<QToken, QError> {
        match route(qd) {
            Space::Net => dispatch!(self.push(qd, sga, Some(addr))),
            Space::Queues => queues::push(self, qd, sga.with_addr(addr)),
            Space::Storage => Err(QError::NotSupported),
            Space::Unassigned => Err(QError::BadDescriptor),
        }
    }

    /// Pops one element. On a storage queue: the record at the read cursor, with
    /// the segments it was pushed with; an empty element at the end of the log.
    pub fn pop(&self, qd: QDesc) -> Result<QToken, QError> {
        match route(qd) {
            Space::Net => dispatch!(self.pop(qd)),
            Space::Queues => queues::pop(self, qd),
            Space::Storage => self.storage_of(qd)?.pop(qd),
            Space::Unassigned => Err(QError::BadDescriptor),
        }
    }

    // ---- queue calls: memory queues and combinators (module `queues`) --------------
    //
    // Semantics: docs/api.md, "Queue combinators". Every call below gives a queue
    // that `push`, `pop`, `close` and the `wait*` calls take like any other, over
    // inputs of any kind (sockets of either libOS, memory queues, combinators,
    // storage queues).

    /// An in-memory queue of atomic elements holding up to
    /// [`queues::DEFAULT_CAPACITY`] elements; a push waits while it is full.
    pub fn queue(&self) -> Result<QDesc, QError> {
        queues::queue(self, queues::DEFAULT_CAPACITY)
    }

    /// An in-memory queue holding up to `capacity` elements (at least one).
    pub fn queue_with_capacity(&self, capacity: usize) -> Result<QDesc, QError> {
        queues::queue(self, capacity)
    }

    /// A queue whose pops come from either input (fairly) and whose pushes go to both.
    pub fn merge(&self, q1: QDesc, q2: QDesc) -> Result<QDesc, QError> {
        queues::merge(self, q1, q2)
    }

    /// A queue that pops only the elements of `qd` for which `pred` holds, and
    /// forwards only such pushes. `pred` is a closure `Fn(&Sga) -> bool` (CPU) or a
    /// declarative [`Predicate`], which a user-level stack's UDP queue also applies
    /// to received frames before queueing them.
    pub fn filter(&self, qd: QDesc, pred: impl Into<Filter>) -> Result<QDesc, QError> {
        queues::filter(self, qd, pred.into())
    }

    /// A filter queue's counters (passed, dropped on the CPU, dropped at the packet
    /// level, whether its predicate is offloaded).
    pub fn filter_stats(&self, qd: QDesc) -> Result<FilterStats, QError> {
        queues::filter_stats(self, qd)
    }

    /// A queue whose pops return the greatest element (by `order`) among those that
    /// have arrived from `qd`; it reads ahead up to [`queues::DEFAULT_CAPACITY`].
    pub fn sort<F>(&self, qd: QDesc, order: F) -> Result<QDesc, QError>
    where
        F: Fn(&Sga, &Sga) -> std::cmp::Ordering + 'static,
    {
        queues::sort(self, qd, queues::order(order), queues::DEFAULT_CAPACITY)
    }

    /// [`sort`](Self::sort) with a read-ahead of `capacity` elements.
    pub fn sort_with_capacity<F>(&self, qd: QDesc, order: F, capacity: usize) -> Result<QDesc, QError>
    where
        F: Fn(&Sga, &Sga) -> std::cmp::Ordering + 'static,
    {
        queues::sort(self, qd, queues::order(order), capacity)
    }

    /// A queue that applies `f` to every element popped from `qd` and pushed to it.
    pub fn map<F: Fn(Sga) -> Sga + 'static>(&self, qd: QDesc, f: F) -> Result<QDesc, QError> {
        queues::map(self, qd, Rc::new(f))
    }

    /// Moves elements from `qin` to `qout` until either side closes or ends. The
    /// token completes then ([`QValue::Closed`], or the error that stopped it).
    pub fn qconnect(&self, qin: QDesc, qout: QDesc) -> Result<QToken, QError> {
        queues::qconnect(self, qin, qout)
    }

    /// Waits for the next completion of a [`WaitSet`](demi_runtime::WaitSet),
    /// driving the runtime; costs the same whatever the number of tokens in the set.
    pub fn wait_next(&self, set: &mut demi_runtime::WaitSet, timeout: Option<Duration>) -> Result<QResult, QError> {
        set.wait_any_blocking(&self.inner.rt, timeout)
    }

    // ---- completions --------------------------------------------------------------

    /// Waits for one token, driving the runtime (`None`: forever). From async code
    /// use `qt.await` instead ([`QError::WouldDeadlock`] otherwise).
    pub fn wait(&self, qt: QToken, timeout: Option<Duration>) -> Result<QResult, QError> {
        self.inner.rt.wait(qt, timeout)
    }

    /// Waits for the first of `qts`; returns its position and result. The others stay
    /// pending and waitable.
    pub fn wait_any(&self, qts: &[QToken], timeout: Option<Duration>) -> Result<(usize, QResult), QError> {
        self.inner.rt.wait_any(qts, timeout)
    }

    /// Waits for all of `qts`; results in the same order.
    pub fn wait_all(&self, qts: &[QToken], timeout: Option<Duration>) -> Result<Vec<QResult>, QError> {
        self.inner.rt.wait_all(qts, timeout)
    }

    /// `push` then `wait`.
    pub fn blocking_push(&self, qd: QDesc, sga: Sga) -> Result<QResult, QError> {
        let qt = self.push(qd, sga)?;
        self.wait(qt, None)
    }

    /// `pop` then `wait`.
    pub fn blocking_pop(&self, qd: QDesc) -> Result<QResult, QError> {
        let qt = self.pop(qd)?;
        self.wait(qt, None)
    }
}

/// The pool behind [`LibOs::alloc`]: `net.buffers` buffers (default 1024) of 2 KiB
/// with 128 bytes of headroom.
fn app_pool(config: &Config) -> BufferPool {
    BufferPool::new(config.net.buffers.unwrap_or(1024).clamp(1, 1 << 20), 2048 - 128, 128)
}

/// Forgets the default libOS made for runtime `rt` (called when its `#[demi::main]`
/// or `#[demi::test]` ends, so its sockets close before the runtime goes).
pub(crate) fn forget_current(rt: &Handle) {
    let _ = CURRENT_LIBOS.try_with(|c| {
        let removed: Vec<_> = {
            let mut v = c.borrow_mut();
            let (gone, keep): (Vec<_>, Vec<_>) = v.drain(..).partition(|(id, _)| *id == rt.id());
            *v = keep;
            gone
        };
        drop(removed);
    });
}
