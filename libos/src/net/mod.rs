//! An async networking API in the shape of `std::net` and tokio's `net` module,
//! over the queue API of whichever libOS is configured ([`LibOs::current`] unless
//! given one): [`TcpListener`], [`TcpStream`], [`UdpSocket`].
//!
//! [`TcpStream`] implements futures-io's `AsyncRead`/`AsyncWrite`, and with the
//! `tokio-compat` feature tokio's `AsyncRead`/`AsyncWrite`, so code written against
//! either ecosystem's I/O traits (codecs, `copy`, …) runs on demi unchanged. With
//! the `hyper` feature it also implements hyper 1.x's `rt::Read`/`rt::Write`, and
//! `HyperExecutor` / `HyperTimer` give hyper demi's tasks and timers.
//!
//! On the POSIX libOS a [`TcpStream`] skips the queues: a read is one `recv` into
//! the caller's buffer, a write one `send`/`sendmsg` from the caller's slices (it
//! may be partial, as a std or tokio socket's), and a stream that finds its socket
//! drained or full parks a waker on it until the reactor reports the next edge.
//! Nothing is copied or allocated per call and no queue operation is made (see
//! `posix.rs`). On the other libOSes, the byte-stream traits map onto queues:
//! - a read takes from the element the last pop returned, and starts one pop when
//!   that is used up (the rest of a popped element is kept for the next read: no
//!   byte is lost or copied twice);
//! - a write copies the caller's bytes into one element and pushes it; it returns
//!   at once, with one push in flight at a time (the next write, `flush` or `close`
//!   waits for it), so a writer is paced by the connection's send buffer;
//! - `close` (tokio: `shutdown`) waits for the pushes, then closes the queue (the
//!   peer reads end of stream). Dropping a stream closes it too.
//!
//! Errors are `std::io::Error`s converted from [`QError`] (so `ErrorKind`s match
//! what a std or tokio socket reports: `ConnectionRefused`, `ConnectionReset`, …).

#[cfg(feature = "hyper")]
mod hyper_rt;
mod tcp;
mod udp;

#[cfg(feature = "hyper")]
pub use hyper_rt::{serve, serve_with_shutdown, Executor as HyperExecutor, Timer as HyperTimer};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

use crate::{LibOs, QDesc, QError};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The libOS to use: the given one, or the thread's default.
fn libos_or_current(libos: Option<&LibOs>) -> io::Result<LibOs> {
    match libos {
        Some(l) => Ok(l.clone()),
        None => LibOs::current().map_err(|e| io::Error::other(e.to_string())),
    }
}

/// Resolves `addr` (no DNS on a user-level stack: literal addresses resolve
/// without the kernel; names go through `std`'s resolver).
fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address to use"));
    }
    Ok(addrs)
}

/// A socket of type `ty` bound to the first of `addr`'s addresses that `bind` and
/// then `setup` (e.g. `listen`) accept; the last error if none does.
fn bind_first<A: ToSocketAddrs>(
    libos: &LibOs,
    addr: A,
    ty: crate::SocketType,
    setup: impl Fn(QDesc) -> Result<(), QError>,
) -> io::Result<QDesc> {
    let mut last = None;
    for addr in resolve(addr)? {
        let qd = libos.socket(crate::Domain::of(&addr), ty).map_err(io_err)?;
        match libos.bind(qd, addr).and_then(|()| setup(qd)) {
            Ok(()) => return Ok(qd),
            Err(e) => {
                let _ = libos.close(qd);
                last = Some(e);
            }
        }
    }
    Err(io_err(last.unwrap_or(QError::AddressNotAvailable)))
}

fn io_err(e: QError) -> io::Error {
    io::Error::from(e)
}
