//! The vocabulary of the queue API: descriptors, operation codes, results and errors.
//!
//! These types are shared by every libOS (POSIX sockets, the user-level stack, the
//! storage engine, in-memory queues), so an application handles completions the same
//! way whatever device sits underneath.

use crate::op::QToken;
use crate::sga::Sga;
use std::fmt;
use std::net::SocketAddr;

/// A queue descriptor: names one I/O queue (a socket, a file, a memory queue) in a
/// libOS. Descriptors are generation-checked, so a closed descriptor that is used
/// again gives [`QError::BadDescriptor`] instead of reaching a newer queue.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QDesc(u64);

impl QDesc {
    /// Builds a descriptor from a slot index and a generation.
    pub fn from_parts(index: u32, generation: u32) -> Self {
        QDesc(((generation as u64) << 32) | index as u64)
    }

    /// The slot index part.
    pub fn index(self) -> u32 {
        self.0 as u32
    }

    /// The generation part.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The raw 64-bit value (for FFI and logs).
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Rebuilds a descriptor from [`raw`](Self::raw).
    pub fn from_raw(raw: u64) -> Self {
        QDesc(raw)
    }
}

impl fmt::Debug for QDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "qd#{}.{}", self.index(), self.generation())
    }
}

impl fmt::Display for QDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which operation a qtoken stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `push` or `pushto`.
    Push,
    /// `pop`.
    Pop,
    /// `accept`.
    Accept,
    /// `connect`.
    Connect,
    /// An asynchronous close.
    Close,
    /// Anything else a libOS defines (e.g. a storage flush).
    Other,
}

/// What a completed operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QValue {
    /// A push completed: the whole element was handed to the queue.
    Pushed,
    /// A pop completed with one element. For TCP byte streams an empty element
    /// means the peer closed its side.
    Popped(Sga),
    /// An accept completed with a new connection.
    Accepted {
        /// The new connection's queue.
        qd: QDesc,
        /// The peer's address.
        addr: SocketAddr,
    },
    /// A connect completed.
    Connected,
    /// A close completed.
    Closed,
}

/// The completion of one operation: what it was, on which queue, through which
/// token, and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResult {
    /// The operation.
    pub opcode: OpCode,
    /// The queue it ran on.
    pub qd: QDesc,
    /// The token it was started with.
    pub qt: QToken,
    /// The outcome.
    pub value: Result<QValue, QError>,
}

impl QResult {
    /// The popped element; errors if the operation failed or was not a pop.
    pub fn into_sga(self) -> Result<Sga, QError> {
        match self.value? {
            QValue::Popped(sga) => Ok(sga),
            _ => Err(QError::InvalidArgument("completion is not a pop")),
        }
    }

    /// The accepted connection and peer address; errors if the operation failed or
    /// was not an accept.
    pub fn into_accepted(self) -> Result<(QDesc, SocketAddr), QError> {
        match self.value? {
            QValue::Accepted { qd, addr } => Ok((qd, addr)),
            _ => Err(QError::InvalidArgument("completion is not an accept")),
        }
    }

    /// `Ok(())` if the operation succeeded, its error otherwise.
    pub fn ok(self) -> Result<(), QError> {
        self.value.map(|_| ())
    }
}

/// Why a queue operation failed. Misuse of the API (a bad descriptor, a call in the
/// wrong state) is reported here, never as a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QError {
    /// The descriptor does not name an open queue (never opened, or closed).
    BadDescriptor,
    /// The token does not name a pending or completed operation: it was never
    /// issued, or its result was already taken by a wait.
    BadToken,
    /// The call is not valid in the queue's current state (e.g. `accept` on a queue
    /// that is not listening, `push` on an unconnected TCP socket).
    InvalidState,
    /// An argument is not acceptable; the text says which.
    InvalidArgument(&'static str),
    /// The operation is not supported by this kind of queue or libOS.
    NotSupported,
    /// The local address is already in use.
    AddressInUse,
    /// The local address cannot be assigned.
    AddressNotAvailable,
    /// The peer refused the connection.
    ConnectionRefused,
    /// The peer reset the connection.
    ConnectionReset,
    /// The connection was aborted locally.
    ConnectionAborted,
    /// The queue is not connected.
    NotConnected,
    /// The queue is already connected.
    AlreadyConnected,
    /// The host or network cannot be reached.
    Unreachable,
    /// A wait or a connection timed out. A timed-out wait leaves its tokens pending.
    TimedOut,
    /// The operation was cancelled because its queue was closed.
    Canceled,
    /// The element is larger than the queue accepts.
    MessageTooLong,
    /// Buffers or descriptors ran out; retry later.
    NoBufferSpace,
    /// A peer sent data that breaks the queue's framing.
    InvalidData,
    /// A synchronous wait was called from inside the runtime it would have to
    /// drive; use the async form (`qt.await`, `wait_async`) there.
    WouldDeadlock,
    /// No demi runtime is running on this thread (a token was awaited outside one).
    NoRuntime,
    /// Any other operating-system error, by errno.
    Os(i32),
}

impl QError {
    /// Maps an `std::io::Error` from the kernel to the typed error.
    pub fn from_io(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::from_errno(errno),
            None => match e.kind() {
                std::io::ErrorKind::TimedOut => QError::TimedOut,
                std::io::ErrorKind::InvalidInput => QError::InvalidArgument("invalid input"),
                std::io::ErrorKind::Unsupported => QError::NotSupported,
                _ => QError::Os(libc::EIO),
            },
        }
    }

    /// Maps an errno value to the typed error.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::EBADF => QError::BadDescriptor,
            libc::EADDRINUSE => QError::AddressInUse,
            libc::EADDRNOTAVAIL => QError::AddressNotAvailable,
            libc::ECONNREFUSED => QError::ConnectionRefused,
            libc::ECONNRESET | libc::EPIPE => QError::ConnectionReset,
            libc::ECONNABORTED => QError::ConnectionAborted,
            libc::ENOTCONN => QError::NotConnected,
            libc::EISCONN => QError::AlreadyConnected,
            libc::ENETUNREACH | libc::EHOSTUNREACH => QError::Unreachable,
            libc::ETIMEDOUT => QError::TimedOut,
            libc::EMSGSIZE => QError::MessageTooLong,
            libc::ENOBUFS | libc::ENOMEM | libc::EMFILE | libc::ENFILE => QError::NoBufferSpace,
            libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => QError::NotSupported,
            libc::EINVAL => QError::InvalidArgument("rejected by the kernel (EINVAL)"),
            libc::ECANCELED => QError::Canceled,
            other => QError::Os(other),
        }
    }

    /// The closest errno, for C and POSIX boundaries.
    pub fn errno(&self) -> i32 {
        match self {
            QError::BadDescriptor => libc::EBADF,
            QError::BadToken => libc::EINVAL,
            QError::InvalidState => libc::EINVAL,
            QError::InvalidArgument(_) => libc::EINVAL,
            QError::NotSupported => libc::EOPNOTSUPP,
            QError::AddressInUse => libc::EADDRINUSE,
            QError::AddressNotAvailable => libc::EADDRNOTAVAIL,
            QError::ConnectionRefused => libc::ECONNREFUSED,
            QError::ConnectionReset => libc::ECONNRESET,
            QError::ConnectionAborted => libc::ECONNABORTED,
            QError::NotConnected => libc::ENOTCONN,
            QError::AlreadyConnected => libc::EISCONN,
            QError::Unreachable => libc::EHOSTUNREACH,
            QError::TimedOut => libc::ETIMEDOUT,
            QError::Canceled => libc::ECANCELED,
            QError::MessageTooLong => libc::EMSGSIZE,
            QError::NoBufferSpace => libc::ENOBUFS,
            QError::InvalidData => libc::EPROTO,
            QError::WouldDeadlock => libc::EDEADLK,
            QError::NoRuntime => libc::EINVAL,
            QError::Os(e) => *e,
        }
    }
}

impl fmt::Display for QError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QError::BadDescriptor => f.write_str("bad queue descriptor"),
            QError::BadToken => f.write_str("unknown or already consumed qtoken"),
            QError::InvalidState => f.write_str("operation not valid in the queue's current state"),
            QError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            QError::NotSupported => f.write_str("operation not supported by this queue"),
            QError::AddressInUse => f.write_str("address already in use"),
            QError::AddressNotAvailable => f.write_str("address not available"),
            QError::ConnectionRefused => f.write_str("connection refused"),
            QError::ConnectionReset => f.write_str("connection reset by peer"),
            QError::ConnectionAborted => f.write_str("connection aborted"),
            QError::NotConnected => f.write_str("queue is not connected"),
            QError::AlreadyConnected => f.write_str("queue is already connected"),
            QError::Unreachable => f.write_str("host or network unreachable"),
            QError::TimedOut => f.write_str("timed out"),
            QError::Canceled => f.write_str("operation cancelled: its queue was closed"),
            QError::MessageTooLong => f.write_str("element too long for this queue"),
            QError::NoBufferSpace => f.write_str("out of buffers or descriptors"),
            QError::InvalidData => f.write_str("peer sent data that breaks the queue's framing"),
            QError::WouldDeadlock => f.write_str(
                "synchronous wait called from inside the runtime; await the token instead",
            ),
            QError::NoRuntime => f.write_str("no demi runtime is running on this thread"),
            QError::Os(errno) => write!(f, "{}", std::io::Error::from_raw_os_error(*errno)),
        }
    }
}

impl std::error::Error for QError {}

impl From<QError> for std::io::Error {
    fn from(e: QError) -> Self {
        std::io::Error::from_raw_os_error(e.errno())
    }
}
