//! TCP: [`TcpListener`] and [`TcpStream`]. See the [module docs](super).

use super::{bind_first, io_err, libos_or_current, resolve};
use crate::posix::Posix;
use crate::{Domain, LibOs, QDesc, QError, SocketType};
use bytes::{Buf, Bytes};
use demi_runtime::{Completion, Sga};
use std::future::{Future, IntoFuture};
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

/// A listening TCP queue. Dropping it closes the queue.
pub struct TcpListener {
    libos: LibOs,
    qd: QDesc,
    pending: Option<Completion>,
}

impl TcpListener {
    /// Binds to `addr` and listens (backlog 1024) on the thread's default libOS.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        Self::bind_on(&libos_or_current(None)?, addr)
    }

    /// [`bind`](Self::bind) on a libOS of your choice (synchronous: binding and
    /// listening complete at once on every libOS).
    pub fn bind_on<A: ToSocketAddrs>(libos: &LibOs, addr: A) -> io::Result<TcpListener> {
        let qd = bind_first(libos, addr, SocketType::Stream, |qd| libos.listen(qd, 1024))?;
        Ok(TcpListener { libos: libos.clone(), qd, pending: None })
    }

    /// Waits for a connection.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection; at most one accept is outstanding per listener.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        if self.pending.is_none() {
            self.pending = Some(self.libos.accept(self.qd).map_err(io_err)?.into_future());
        }
        let fut = self.pending.as_mut().expect("set above");
        let r = ready!(Pin::new(fut).poll(cx));
        self.pending = None;
        let (qd, addr) = r.and_then(|r| r.into_accepted()).map_err(io_err)?;
        Ok((TcpStream::from_qd(self.libos.clone(), qd), addr)).into()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.libos.local_addr(self.qd).map_err(io_err)
    }

    /// Its queue descriptor (for the queue API).
    pub fn qd(&self) -> QDesc {
        self.qd
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let _ = self.libos.close(self.qd);
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("qd", &self.qd).field("libos", &self.libos.name()).finish()
    }
}

/// A TCP connection as a byte stream. Dropping it closes the connection.
///
/// On the POSIX libOS it reads and writes the kernel socket directly, from and into
/// the caller's buffers (no queue operation, no copy; see `posix.rs`); on the other
/// libOSes it goes through pop and push as the module docs describe.
pub struct TcpStream {
    libos: LibOs,
    qd: QDesc,
    /// The POSIX backend, when the stream uses the direct path.
    direct: Option<Rc<Posix>>,
    /// Bytes popped and not read yet.
    read_buf: Bytes,
    /// Further segments of the last popped element.
    read_rest: Vec<Bytes>,
    pop: Option<Completion>,
    eof: bool,
    push: Option<Completion>,
    closed: bool,
}

impl TcpStream {
    /// Connects to `addr` on the thread's default libOS (each address in turn).
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        Self::connect_on(&libos_or_current(None)?, addr).await
    }

    /// [`connect`](Self::connect) on a libOS of your choice.
    pub async fn connect_on<A: ToSocketAddrs>(libos: &LibOs, addr: A) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in resolve(addr)? {
            let qd = libos.socket(Domain::of(&addr), SocketType::Stream).map_err(io_err)?;
            let r = match libos.connect(qd, addr) {
                Ok(qt) => qt.await.and_then(|r| r.ok()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return Ok(TcpStream::from_qd(libos.clone(), qd)),
                Err(e) => {
                    let _ = libos.close(qd);
                    last = Some(e);
                }
            }
        }
        Err(io_err(last.unwrap_or(QError::AddressNotAvailable)))
    }

    /// A stream over an already connected TCP queue of `libos`; it owns the queue
    /// from now on.
    pub fn from_qd(libos: LibOs, qd: QDesc) -> TcpStream {
        let direct = libos.posix_backend().filter(|p| p.direct_ok(qd)).cloned();
        TcpStream {
            libos,
            qd,
            direct,
            read_buf: Bytes::new(),
            read_rest: Vec::new(),
            pop: None,
            eof: false,
            push: None,
            closed: false,
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.libos.local_addr(self.qd).map_err(io_err)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.libos.peer_addr(self.qd).map_err(io_err)
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.libos.set_nodelay(self.qd, on).map_err(io_err)
    }

    /// Its queue descriptor (for the queue API).
    pub fn qd(&self) -> QDesc {
        self.qd
    }

    /// Reads into `buf`: what is buffered, else one pop's worth. `Ok(0)` at end of
    /// stream (or for an empty `buf`).
    pub fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.direct.is_some() {
            // SAFETY: the kernel only writes initialised bytes into the slice and
            // nothing uninitialised is ever written through it.
            let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
            return self.poll_read_uninit(cx, uninit);
        }
        self.poll_read_into(cx, |src| {
            let n = buf.len().min(src.len());
            buf[..n].copy_from_slice(&src[..n]);
            n
        })
    }

    /// Reads into possibly uninitialised memory (e.g. the spare capacity of a
    /// `Vec` or `BytesMut`): on the POSIX libOS the kernel writes straight into
    /// it. Returns how many bytes at the start of `buf` are now initialised
    /// (`Ok(0)` at end of stream or for an empty `buf`).
    pub fn poll_read_uninit(&mut self, cx: &mut Context<'_>, buf: &mut [MaybeUninit<u8>]) -> Poll<io::Result<usize>> {
        if buf.is_empty() || self.closed {
            return Poll::Ready(Ok(0));
        }
        if let Some(p) = &self.direct {
            return p.poll_recv(self.qd, cx, buf).map_err(io_err);
        }
        self.poll_read_into(cx, |src| {
            let n = src.len().min(buf.len());
            for (d, s) in buf[..n].iter_mut().zip(src) {
                d.write(*s);
            }
            n
        })
    }

    /// Hands the next buffered bytes to `take`, which copies what it can and says
    /// how many it took (at least one unless at end of stream).
    pub(crate) fn poll_read_into(&mut self, cx: &mut Context<'_>, mut take: impl FnMut(&[u8]) -> usize) -> Poll<io::Result<usize>> {
        loop {
            if !self.read_buf.is_empty() {
                let n = take(&self.read_buf).min(self.read_buf.len());
                self.read_buf.advance(n);
                return Poll::Ready(Ok(n));
            }
            if let Some(next) = self.read_rest.pop() {
                self.read_buf = next;
                continue;
            }
            if self.eof || self.closed {
                return Poll::Ready(Ok(0));
            }
            if self.pop.is_none() {
                self.pop = Some(self.libos.pop(self.qd).map_err(io_err)?.into_future());
            }
            let r = ready!(Pin::new(self.pop.as_mut().expect("set above")).poll(cx));
            self.pop = None;
            let sga = r.and_then(|r| r.into_sga()).map_err(io_err)?;
            if sga.is_empty() {
                self.eof = true;
                continue;
            }
            let mut segs: Vec<Bytes> = sga.into_segments().into_iter().collect();
            segs.reverse();
            self.read_buf = segs.pop().unwrap_or_default();
            self.read_rest = segs;
        }
    }

    /// Writes `buf`: directly into the socket as far as its send buffer takes it
    /// (POSIX), else as one pushed element (after the previous push completed).
    pub fn poll_write_buf(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "the stream is closed")));
        }
        if let Some(p) = &self.direct {
            return p.poll_send(self.qd, cx, &[io::IoSlice::new(buf)]).map_err(io_err);
        }
        ready!(self.poll_flush_pushes(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let qt = self.libos.push(self.qd, Sga::from(self.copy_in(&[buf]))).map_err(io_err)?;
        self.push = Some(qt.into_future());
        Poll::Ready(Ok(buf.len()))
    }

    /// Writes `bufs`: with one `sendmsg` as far as the send buffer takes them
    /// (POSIX), else as one pushed element (one copy into one buffer).
    pub fn poll_write_vectored_bufs(&mut self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "the stream is closed")));
        }
        if let Some(p) = &self.direct {
            return p.poll_send(self.qd, cx, bufs).map_err(io_err);
        }
        ready!(self.poll_flush_pushes(cx))?;
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        let n: usize = slices.iter().map(|b| b.len()).sum();
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        let qt = self.libos.push(self.qd, Sga::from(self.copy_in(&slices))).map_err(io_err)?;
        self.push = Some(qt.into_future());
        Poll::Ready(Ok(n))
    }

    /// One buffer holding `parts` back to back: from the libOS's pool (no allocator
    /// call) when it fits in a pool buffer, else from the heap.
    fn copy_in(&self, parts: &[&[u8]]) -> Bytes {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut buf = self.libos.alloc(len);
        let mut at = 0;
        for p in parts {
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        buf.freeze()
    }

    /// Waits for the push in flight.
    pub fn poll_flush_pushes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(p) = self.push.as_mut() {
            let r = ready!(Pin::new(p).poll(cx));
            self.push = None;
            r.and_then(|r| r.ok()).map_err(io_err)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes, then closes the queue: the peer reads end of stream.
    pub fn poll_close_stream(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        let flushed = ready!(self.poll_flush_pushes(cx));
        self.closed = true;
        let closed = self.libos.close(self.qd).map_err(io_err);
        Poll::Ready(flushed.and(closed))
    }

    /// Reads some bytes (`Ok(0)` at end of stream).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_buf(cx, buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write_buf(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        std::future::poll_fn(|cx| self.poll_flush_pushes(cx)).await
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.libos.close(self.qd);
        }
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("qd", &self.qd).field("libos", &self.libos.name()).finish()
    }
}

impl futures_io::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_buf(cx, buf)
    }
}

impl futures_io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_buf(cx, buf)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_vectored_bufs(cx, bufs)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_pushes(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close_stream(cx)
    }
}

#[cfg(feature = "tokio-compat")]
impl tokio::io::AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = ready!(this.poll_read_buf(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-compat")]
impl tokio::io::AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_buf(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_pushes(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close_stream(cx)
    }
}
