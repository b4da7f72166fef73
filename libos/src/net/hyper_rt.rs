//! hyper 1.x on demi (feature `hyper`): hyper's I/O traits for [`TcpStream`], an
//! [`Executor`] that spawns on the demi runtime, and a [`Timer`] on demi's timing
//! wheel. With them, `hyper::server::conn::http1::Builder::new().timer(Timer)`
//! serves a connection accepted from a demi [`TcpListener`](super::TcpListener)
//! (any tower/axum service through `hyper-util`'s `TowerToHyperService`), and a
//! hyper client runs over a demi [`TcpStream::connect`].

use super::{TcpListener, TcpStream};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

impl hyper::rt::Read for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: only initialised bytes are reported as filled (`advance(n)` after
        // `n` bytes were written by the read); nothing is read from the
        // uninitialised part.
        let dst = unsafe { buf.as_mut() };
        let n = ready!(this.poll_read_uninit(cx, dst))?;
        // SAFETY: the first `n` bytes were just written.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_buf(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_pushes(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close_stream(cx)
    }
    /// `false`: hyper then gathers a response's head and (small) body into one
    /// buffer and hands it over in one write, which the POSIX libOS sends with
    /// `send` (no `sendmsg` header and iovec import in the kernel); a body
    /// larger than hyper's buffer still goes out in pieces without being copied
    /// whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_vectored_bufs(cx, bufs)
    }
}

/// Spawns hyper's background futures (HTTP/2 streams, client connections) as demi
/// tasks on the current runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        demi_runtime::spawn(fut).detach();
    }
}

/// hyper's timer (header-read timeouts, keep-alive) on demi's timing wheel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

/// A demi sleep as hyper wants it (`Send + Sync`).
struct HyperSleep(demi_runtime::time::Sleep);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(demi_runtime::time::sleep(duration)))
    }
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(demi_runtime::time::sleep_until(deadline)))
    }
}

/// Serves HTTP/1.1 on `listener` with `service` (an axum `Router`, any tower
/// service of `http::Request`s), one demi task per connection, until accepting
/// fails: demi's counterpart of `axum::serve(listener, app)`. Connections that
/// fail are logged to stderr and do not stop the server.
pub async fn serve<S, B>(listener: TcpListener, service: S) -> io::Result<()>
where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with_shutdown(listener, service, std::future::pending::<()>()).await
}

/// [`serve`] until `shutdown` completes (e.g. `async { demi::signal::ctrl_c().await.ok(); }`), then
/// shuts down gracefully: stops accepting and closes the listener, lets every open
/// connection finish the request it is serving (hyper's graceful shutdown: no new
/// requests on kept-alive connections), and returns once all of them are closed —
/// like `axum::serve(..).with_graceful_shutdown(signal)`.
pub async fn serve_with_shutdown<S, B, F>(mut listener: TcpListener, service: S, shutdown: F) -> io::Result<()>
where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    let stop = Rc::new(Stop::default());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accept = std::future::poll_fn(|cx| listener.poll_accept(cx));
        let accepted = match futures::future::select(std::pin::pin!(accept), shutdown.as_mut()).await {
            futures::future::Either::Left((r, _)) => r,
            futures::future::Either::Right(((), _)) => break,
        };
        let (stream, peer) = accepted?;
        let svc = hyper_util::service::TowerToHyperService::new(service.clone());
        let stop = stop.clone();
        stop.open.set(stop.open.get() + 1);
        demi_runtime::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new().timer(Timer).serve_connection(stream, svc);
            let mut conn = std::pin::pin!(conn);
            let r = match futures::future::select(conn.as_mut(), stop.stopped()).await {
                futures::future::Either::Left((r, _)) => r,
                futures::future::Either::Right(((), _)) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                if !e.is_incomplete_message() {
                    eprintln!("demi::net::serve: connection from {peer}: {e}");
                }
            }
            stop.open.set(stop.open.get() - 1);
            if stop.open.get() == 0 {
                if let Some(w) = stop.drained.borrow_mut().take() {
                    w.wake();
                }
            }
        })
        .detach();
    }
    drop(listener);
    stop.stopping.set(true);
    for (_, w) in stop.conns.borrow().iter() {
        w.wake_by_ref();
    }
    std::future::poll_fn(|cx| {
        if stop.open.get() == 0 {
            Poll::Ready(())
        } else {
            *stop.drained.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
    Ok(())
}

/// Shared by a server and its connections: the shutdown flag, the count of open
/// connections, the connections waiting for the shutdown and the server waiting
/// for the last connection to close.
#[derive(Default)]
struct Stop {
    stopping: std::cell::Cell<bool>,
    open: std::cell::Cell<usize>,
    /// One waker per connection, registered on its first poll and updated only
    /// when the task's waker changes (a connection is polled at least twice per
    /// request: registering anew on every poll would grow without bound).
    conns: std::cell::RefCell<slab::Slab<std::task::Waker>>,
    drained: std::cell::RefCell<Option<std::task::Waker>>,
}

impl Stop {
    /// Completes once the server stops.
    fn stopped(&self) -> Stopped<'_> {
        Stopped { stop: self, key: None }
    }
}

/// A connection's wait for the server to stop; leaves [`Stop::conns`] when it
/// completes or is dropped.
struct Stopped<'a> {
    stop: &'a Stop,
    key: Option<usize>,
}

impl Future for Stopped<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.stopping.get() {
            if let Some(k) = self.key.take() {
                self.stop.conns.borrow_mut().try_remove(k);
            }
            return Poll::Ready(());
        }
        let mut conns = self.stop.conns.borrow_mut();
        match self.key {
            Some(k) => {
                if let Some(w) = conns.get_mut(k) {
                    if !w.will_wake(cx.waker()) {
                        w.clone_from(cx.waker());
                    }
                }
            }
            None => {
                let k = conns.insert(cx.waker().clone());
                drop(conns);
                self.key = Some(k);
            }
        }
        Poll::Pending
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.stop.conns.borrow_mut().try_remove(k);
        }
    }
}
