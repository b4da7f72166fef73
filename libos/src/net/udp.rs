//! UDP: [`UdpSocket`]. See the [module docs](super).

use super::{bind_first, io_err, libos_or_current, resolve};
use crate::{LibOs, QDesc, SocketType};
use bytes::Bytes;
use demi_runtime::Sga;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// A UDP socket. Every datagram is one element: boundaries are kept, a datagram
/// larger than the buffer given to `recv_from` is truncated to it (as with std)
/// — use [`recv_bytes_from`](Self::recv_bytes_from) to get it whole, without a
/// copy. Dropping it closes the queue.
pub struct UdpSocket {
    libos: LibOs,
    qd: QDesc,
}

impl UdpSocket {
    /// Binds to `addr` on the thread's default libOS.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        Self::bind_on(&libos_or_current(None)?, addr)
    }

    /// [`bind`](Self::bind) on a libOS of your choice.
    pub fn bind_on<A: ToSocketAddrs>(libos: &LibOs, addr: A) -> io::Result<UdpSocket> {
        let qd = bind_first(libos, addr, SocketType::Datagram, |_| Ok(()))?;
        Ok(UdpSocket { libos: libos.clone(), qd })
    }

    /// Sets the default destination of [`send`](Self::send) and the only source
    /// [`recv`](Self::recv) accepts.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let addr = resolve(addr)?[0];
        self.libos.connect(self.qd, addr).map_err(io_err)?.await.and_then(|r| r.ok()).map_err(io_err)
    }

    /// Sends one datagram to `addr`; returns its length.
    pub async fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addr = resolve(addr)?[0];
        self.send_bytes_to(Bytes::copy_from_slice(buf), addr).await
    }

    /// Sends `data` as one datagram to `addr` without copying it.
    pub async fn send_bytes_to(&self, data: Bytes, addr: SocketAddr) -> io::Result<usize> {
        let n = data.len();
        let qt = self.libos.pushto(self.qd, Sga::from(data), addr).map_err(io_err)?;
        qt.await.and_then(|r| r.ok()).map_err(io_err)?;
        Ok(n)
    }

    /// Sends one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        let qt = self.libos.push(self.qd, Sga::from(Bytes::copy_from_slice(buf))).map_err(io_err)?;
        qt.await.and_then(|r| r.ok()).map_err(io_err)?;
        Ok(n)
    }

    /// Receives one datagram into `buf` (truncated to its length) and its source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (data, from) = self.recv_bytes_from().await?;
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, from))
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    /// Receives one whole datagram as it arrived (no copy) and its source.
    pub async fn recv_bytes_from(&self) -> io::Result<(Bytes, SocketAddr)> {
        let sga = self.libos.pop(self.qd).map_err(io_err)?.await.and_then(|r| r.into_sga()).map_err(io_err)?;
        let from = sga
            .addr()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a datagram without a source address"))?;
        Ok((sga.to_bytes(), from))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.libos.local_addr(self.qd).map_err(io_err)
    }

    /// Its queue descriptor (for the queue API).
    pub fn qd(&self) -> QDesc {
        self.qd
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let _ = self.libos.close(self.qd);
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket").field("qd", &self.qd).field("libos", &self.libos.name()).finish()
    }
}
