//! Helpers shared by the queue-API integration tests over the POSIX libOS.
#![allow(dead_code)] // each test binary uses a different subset

use demi::{Domain, LibOs, QDesc, QError, QResult, QToken, Sga, SocketType};
use std::net::SocketAddr;
use std::time::Duration;

/// A guard against hangs: every wait in these tests is bounded by this. It is never
/// reached when the code under test works (no test sleeps to synchronise).
pub const GUARD: Duration = Duration::from_secs(10);

/// Loopback, ephemeral port.
pub fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `len` bytes of a pattern that does not repeat with any short period, so a
/// reordered, duplicated or dropped chunk shows up in a comparison.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..len)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A listening TCP queue on loopback and its address.
pub fn listener(libos: &LibOs) -> (QDesc, SocketAddr) {
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    libos.bind(qd, lo()).unwrap();
    libos.listen(qd, 1024).unwrap();
    let addr = libos.local_addr(qd).unwrap();
    assert_ne!(addr.port(), 0, "bound to an ephemeral port");
    (qd, addr)
}

/// A UDP queue bound to loopback and its address.
pub fn udp(libos: &LibOs) -> (QDesc, SocketAddr) {
    let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    libos.bind(qd, lo()).unwrap();
    let addr = libos.local_addr(qd).unwrap();
    (qd, addr)
}

// ---- synchronous face ---------------------------------------------------------------

/// Waits for one token (bounded by [`GUARD`]) and returns its completion.
pub fn wait(libos: &LibOs, qt: QToken) -> QResult {
    libos.wait(qt, Some(GUARD)).expect("wait failed or hit the hang guard")
}

/// A connected TCP pair on one libOS, made with the synchronous face:
/// `(client, server side)`.
pub fn tcp_pair(libos: &LibOs) -> (QDesc, QDesc) {
    let (lqd, addr) = listener(libos);
    let aqt = libos.accept(lqd).unwrap();
    let cqd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = libos.connect(cqd, addr).unwrap();
    let mut results = libos.wait_all(&[aqt, cqt], Some(GUARD)).unwrap();
    results.pop().unwrap().ok().unwrap();
    let (sqd, peer) = results.pop().unwrap().into_accepted().unwrap();
    assert_eq!(peer, libos.local_addr(cqd).unwrap());
    libos.close(lqd).unwrap();
    (cqd, sqd)
}

/// Pops until `want` bytes have arrived (a TCP pop returns whatever arrived) and
/// returns them. An empty element (EOF) or an error before that fails the test.
pub fn pop_exact(libos: &LibOs, qd: QDesc, want: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        let sga = wait(libos, libos.pop(qd).unwrap()).into_sga().unwrap();
        assert!(!sga.is_empty(), "EOF after {} of {want} bytes", got.len());
        got.extend_from_slice(&sga.to_vec());
    }
    assert_eq!(got.len(), want, "more bytes than were sent");
    got
}

/// The outcome of an operation whether it failed at the call or in its completion.
pub fn outcome(libos: &LibOs, started: Result<QToken, QError>) -> Result<Sga, QError> {
    match started {
        Ok(qt) => wait(libos, qt).into_sga(),
        Err(e) => Err(e),
    }
}

// ---- async face ---------------------------------------------------------------------

/// Awaits one token (bounded by [`GUARD`]) and returns its completion.
pub async fn w(qt: QToken) -> QResult {
    demi::wait(qt, Some(GUARD)).await.expect("await failed or hit the hang guard")
}

/// A connected TCP pair on one libOS, made with the async face.
pub async fn tcp_pair_async(libos: &LibOs) -> (QDesc, QDesc) {
    let (lqd, addr) = listener(libos);
    let aqt = libos.accept(lqd).unwrap();
    let cqd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = libos.connect(cqd, addr).unwrap();
    let mut results = demi::wait_all(&[aqt, cqt], Some(GUARD)).await.unwrap();
    results.pop().unwrap().ok().unwrap();
    let (sqd, _) = results.pop().unwrap().into_accepted().unwrap();
    libos.close(lqd).unwrap();
    (cqd, sqd)
}

/// [`pop_exact`] for async code.
pub async fn pop_exact_async(libos: &LibOs, qd: QDesc, want: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        let sga = w(libos.pop(qd).unwrap()).await.into_sga().unwrap();
        assert!(!sga.is_empty(), "EOF after {} of {want} bytes", got.len());
        got.extend_from_slice(&sga.to_vec());
    }
    assert_eq!(got.len(), want, "more bytes than were sent");
    got
}

/// An echo loop on one connection: pops and pushes back until EOF or an error;
/// returns the number of bytes echoed.
pub async fn echo(libos: LibOs, qd: QDesc) -> usize {
    let mut echoed = 0;
    while let Ok(qt) = libos.pop(qd) {
        let sga = match w(qt).await.into_sga() {
            Ok(sga) if !sga.is_empty() => sga,
            _ => break,
        };
        echoed += sga.len();
        let Ok(qt) = libos.push(qd, sga) else { break };
        if w(qt).await.ok().is_err() {
            break;
        }
    }
    let _ = libos.close(qd);
    echoed
}
