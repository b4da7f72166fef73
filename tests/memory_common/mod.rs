//! Helpers shared by the queue-API integration tests over the memory libOS: two
//! stacks (server host 0 = 198.18.0.1, client host 1 = 198.18.0.2) on one in-process
//! link, both on the same runtime. The libOS-agnostic helpers (`pattern`, `w`,
//! `wait`, `pop_exact*`, `echo`, `outcome`, `GUARD`) come from `tests/common`.
#![allow(dead_code)] // each test binary uses a different subset

use crate::common::{w, wait, GUARD};
use demi::{Config, Domain, LibOs, QDesc, QError, QToken, Runtime, Sga, SocketType};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The server stack's address (host 0).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The client stack's address (host 1).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// `ip:port`.
pub fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// The memory libOS as host `host` of the link called `link`. Links are per thread
/// and every test runs on its own thread, but a name per test keeps the tests
/// independent even when run on one thread.
///
/// `DEMI_TEST_LIBOS=shm` runs the same tests over the shared-memory device instead
/// (both sides in this process; the link is a file under /dev/shm named after the
/// test and the process), as scripts/test does.
pub fn config(host: u8, link: &str) -> Config {
    let mut c = Config::memory(host);
    c.net.link = link.into();
    if std::env::var("DEMI_TEST_LIBOS").as_deref() == Ok("shm") {
        c.libos = demi::LibOsKind::Shm;
        c.net.link = format!("test-{}-{link}", std::process::id());
    }
    c
}

/// A server (host 0) and a client (host 1) on link `link`, on the current runtime
/// (call from inside `#[demi::test]` or `block_on`).
pub fn hosts(link: &str) -> (LibOs, LibOs) {
    assert!(demi::Handle::try_current().is_some(), "hosts() needs a running runtime");
    let server = LibOs::new(&config(0, link)).unwrap();
    let client = LibOs::new(&config(1, link)).unwrap();
    (server, client)
}

/// Two hosts for the synchronous face: a runtime, and both libOSes made on it (so
/// one `wait` drives both stacks). Fields drop in order: the libOSes before the
/// runtime.
pub struct SyncHosts {
    pub server: LibOs,
    pub client: LibOs,
    pub rt: Runtime,
}

pub fn sync_hosts(link: &str) -> SyncHosts {
    let rt = Runtime::new().unwrap();
    let (server, client) = rt.block_on(async { hosts(link) });
    SyncHosts { server, client, rt }
}

/// A listening TCP queue on `libos` (its own address, port `port`, 0: ephemeral)
/// and the address to connect to.
pub fn listener_on(libos: &LibOs, ip: Ipv4Addr, port: u16) -> (QDesc, SocketAddr) {
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    libos.bind(qd, at(ip, port)).unwrap();
    libos.listen(qd, 1024).unwrap();
    let addr = libos.local_addr(qd).unwrap();
    assert_eq!(addr.ip(), ip);
    assert_ne!(addr.port(), 0, "listening on a real port");
    if port != 0 {
        assert_eq!(addr.port(), port);
    }
    (qd, addr)
}

/// A listener on the server host.
pub fn listener(server: &LibOs) -> (QDesc, SocketAddr) {
    listener_on(server, SERVER_IP, 0)
}

/// A UDP queue bound on `libos`'s address `ip` (ephemeral port) and its address.
pub fn udp_on(libos: &LibOs, ip: Ipv4Addr) -> (QDesc, SocketAddr) {
    let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    libos.bind(qd, at(ip, 0)).unwrap();
    let addr = libos.local_addr(qd).unwrap();
    assert_eq!(addr.ip(), ip);
    assert_ne!(addr.port(), 0, "bound to an ephemeral port");
    (qd, addr)
}

/// A connected TCP pair across the two hosts, made with the async face:
/// `(client side on client, server side on server)`.
pub async fn tcp_pair_async(server: &LibOs, client: &LibOs) -> (QDesc, QDesc) {
    let (lqd, addr) = listener(server);
    let aqt = server.accept(lqd).unwrap();
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = client.connect(cqd, addr).unwrap();
    let mut results = demi::wait_all(&[aqt, cqt], Some(GUARD)).await.unwrap();
    results.pop().unwrap().ok().unwrap();
    let (sqd, peer) = results.pop().unwrap().into_accepted().unwrap();
    assert_eq!(peer, client.local_addr(cqd).unwrap());
    assert_eq!(client.peer_addr(cqd).unwrap(), addr);
    assert_eq!(server.peer_addr(sqd).unwrap(), peer);
    server.close(lqd).unwrap();
    (cqd, sqd)
}

/// A connected TCP pair made with the synchronous face.
pub fn tcp_pair(h: &SyncHosts) -> (QDesc, QDesc) {
    let (server, client) = (&h.server, &h.client);
    let (lqd, addr) = listener(server);
    let aqt = server.accept(lqd).unwrap();
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = client.connect(cqd, addr).unwrap();
    // Either libOS's wait drives the shared runtime, so both stacks.
    let mut results = client.wait_all(&[aqt, cqt], Some(GUARD)).unwrap();
    results.pop().unwrap().ok().unwrap();
    let (sqd, peer) = results.pop().unwrap().into_accepted().unwrap();
    assert_eq!(peer, client.local_addr(cqd).unwrap());
    server.close(lqd).unwrap();
    (cqd, sqd)
}

/// Awaits a pop that must be an end of stream (an empty element).
pub async fn expect_eof(libos: &LibOs, qd: QDesc) {
    let sga = w(libos.pop(qd).unwrap()).await.into_sga().unwrap();
    assert!(sga.is_empty(), "expected EOF, got {} bytes", sga.len());
}

/// [`expect_eof`] for the synchronous face.
pub fn expect_eof_sync(libos: &LibOs, qd: QDesc) {
    let sga = wait(libos, libos.pop(qd).unwrap()).into_sga().unwrap();
    assert!(sga.is_empty(), "expected EOF, got {} bytes", sga.len());
}

/// One connection made and closed, so that each stack knows the other's Ethernet
/// address. Until ARP resolves an address the stack keeps only the last 16 packets
/// for it; a burst of 100 SYNs to a cold neighbour would lose most of them and
/// wait out the 1 s initial retransmission timeout (correct, but slow for a test).
pub async fn warm_up(server: &LibOs, client: &LibOs) {
    let (c, s) = tcp_pair_async(server, client).await;
    client.close(c).unwrap();
    server.close(s).unwrap();
}

/// The outcome of an operation whether it failed at the call or in its completion
/// (`common::outcome` for async code).
pub async fn outcome_async(started: Result<QToken, QError>) -> Result<Sga, QError> {
    match started {
        Ok(qt) => w(qt).await.into_sga(),
        Err(e) => Err(e),
    }
}
