//! TCP over the POSIX libOS: echo with reassembly of byte-stream pops, many concurrent
//! connections, peer reset, orderly close (EOF), refused connections, and interop
//! with plain kernel sockets (`std::net`). Both faces of the API are used: the
//! synchronous one (`LibOs::posix()` outside a runtime, then `libos.wait*`) and the
//! async one (`#[demi::test]`, `qt.await`, `demi::spawn`).

mod common;

use common::*;
use demi::{Domain, LibOs, QDesc, QError, QToken, QValue, Sga, SocketType};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// Message sizes for the echo tests: one byte, one KiB, one MiB.
const SIZES: [usize; 3] = [1, 1024, 1 << 20];

/// An address on loopback where nothing listens (a port that was just bound and
/// released).
fn unused_tcp_addr(libos: &LibOs) -> SocketAddr {
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    libos.bind(qd, lo()).unwrap();
    let addr = libos.local_addr(qd).unwrap();
    libos.close(qd).unwrap();
    addr
}

// ---- echo -----------------------------------------------------------------------------

#[demi::test]
async fn echo_async_round_trips_every_size_exactly() {
    let libos = LibOs::current().unwrap();
    let (lqd, addr) = listener(&libos);
    let server = demi::spawn({
        let libos = libos.clone();
        async move {
            let (conn, _) = w(libos.accept(lqd).unwrap()).await.into_accepted().unwrap();
            echo(libos, conn).await
        }
    });

    let cqd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    assert_eq!(w(libos.connect(cqd, addr).unwrap()).await.value, Ok(QValue::Connected));
    let mut sent = 0;
    for round in 0..3u32 {
        for (i, &size) in SIZES.iter().enumerate() {
            let msg = pattern(size, round * 10 + i as u32);
            // Pop while the push is in flight: a 1 MiB push needs the echo to drain.
            let pqt = libos.push(cqd, Sga::from(msg.clone())).unwrap();
            let back = pop_exact_async(&libos, cqd, size).await;
            let pushed = w(pqt).await;
            assert_eq!(pushed.value, Ok(QValue::Pushed), "the {size}-byte push completes whole");
            assert_eq!(pushed.qd, cqd);
            assert!(back == msg, "echo of {size} bytes (round {round}) differs");
            sent += size;
        }
    }
    libos.close(cqd).unwrap();
    assert_eq!(server.await.unwrap(), sent, "server echoed every byte, then saw EOF");
}

#[test]
fn echo_sync_pipelined_pushes_arrive_in_order() {
    let libos = LibOs::posix().unwrap();
    let (lqd, addr) = listener(&libos);
    // The server is a task on the libOS's own runtime; the synchronous waits below
    // drive it.
    let server = libos.runtime().spawn({
        let libos = libos.clone();
        async move {
            let (conn, _) = w(libos.accept(lqd).unwrap()).await.into_accepted().unwrap();
            let n = echo(libos.clone(), conn).await;
            libos.close(lqd).unwrap();
            n
        }
    });

    let cqd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    wait(&libos, libos.connect(cqd, addr).unwrap()).ok().unwrap();
    // Several messages of every size, pushed back to back without waiting.
    let msgs: Vec<Vec<u8>> = (0..9).map(|i| pattern(SIZES[i % 3], 100 + i as u32)).collect();
    let pushes: Vec<QToken> = msgs.iter().map(|m| libos.push(cqd, Sga::from(m.clone())).unwrap()).collect();
    let expected: Vec<u8> = msgs.concat();
    let back = pop_exact(&libos, cqd, expected.len());
    assert!(back == expected, "the echoed stream differs from the pushed one");
    for r in libos.wait_all(&pushes, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
    libos.close(cqd).unwrap();
    assert_eq!(libos.runtime().block_on(server).unwrap(), expected.len());
}

#[test]
fn echo_sync_against_a_kernel_socket_peer() {
    // A plain std::net echo server on another thread: demi's stream queues talk to
    // any TCP peer.
    let server = std::net::TcpListener::bind(lo()).unwrap();
    let addr = server.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            s.write_all(&buf[..n]).unwrap();
            total += n;
        }
    });

    let libos = LibOs::posix().unwrap();
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    wait(&libos, libos.connect(qd, addr).unwrap()).ok().unwrap();
    assert_eq!(libos.peer_addr(qd).unwrap(), addr);
    let mut sent = 0;
    for (i, &size) in SIZES.iter().enumerate() {
        let msg = pattern(size, 7 + i as u32);
        let pqt = libos.push(qd, Sga::from(msg.clone())).unwrap();
        let back = pop_exact(&libos, qd, size);
        assert_eq!(wait(&libos, pqt).value, Ok(QValue::Pushed));
        assert!(back == msg, "echo of {size} bytes differs");
        sent += size;
    }
    libos.close(qd).unwrap();
    assert_eq!(peer.join().unwrap(), sent);
}

#[test]
fn push_of_many_segments_is_written_whole_and_in_order() {
    // More segments than one sendmsg takes (64): the push resumes where it stopped.
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let segs: Vec<Vec<u8>> = (0..200).map(|i| pattern(1 + (i * 37) % 5000, i as u32)).collect();
    let sga = Sga::from_segments(segs.iter().map(|s| demi::Bytes::from(s.clone())));
    let pqt = libos.push(c, sga).unwrap();
    let expected = segs.concat();
    let got = pop_exact(&libos, s, expected.len());
    assert!(got == expected);
    assert_eq!(wait(&libos, pqt).value, Ok(QValue::Pushed));
}

// ---- many connections -----------------------------------------------------------------

#[demi::test]
async fn accepts_200_concurrent_connections_async() {
    const N: usize = 200;
    let libos = LibOs::current().unwrap();
    let (lqd, addr) = listener(&libos);
    let server = demi::spawn({
        let libos = libos.clone();
        async move {
            let mut conns = Vec::new();
            let mut peers = std::collections::HashSet::new();
            for _ in 0..N {
                let (qd, peer) = w(libos.accept(lqd).unwrap()).await.into_accepted().unwrap();
                assert!(peers.insert(peer), "each accept is a new peer");
                conns.push(demi::spawn(echo(libos.clone(), qd)));
            }
            let mut total = 0;
            for c in conns {
                total += c.await.unwrap();
            }
            total
        }
    });
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let libos = libos.clone();
            demi::spawn(async move {
                let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
                w(libos.connect(qd, addr).unwrap()).await.ok().unwrap();
                let msg = format!("hello from client {i}").into_bytes();
                w(libos.push(qd, Sga::from(msg.clone())).unwrap()).await.ok().unwrap();
                let back = pop_exact_async(&libos, qd, msg.len()).await;
                assert_eq!(back, msg);
                libos.close(qd).unwrap();
                msg.len()
            })
        })
        .collect();
    let mut expected = 0;
    for c in clients {
        expected += c.await.unwrap();
    }
    assert_eq!(server.await.unwrap(), expected);
    libos.close(lqd).unwrap();
}

#[test]
fn accepts_200_concurrent_connections_sync_with_wait_all() {
    const N: usize = 200;
    let libos = LibOs::posix().unwrap();
    let (lqd, addr) = listener(&libos);
    // 200 accepts outstanding on one listener at once, and 200 connects.
    let accepts: Vec<QToken> = (0..N).map(|_| libos.accept(lqd).unwrap()).collect();
    let clients: Vec<QDesc> = (0..N).map(|_| libos.socket(Domain::Ipv4, SocketType::Stream).unwrap()).collect();
    let connects: Vec<QToken> = clients.iter().map(|&qd| libos.connect(qd, addr).unwrap()).collect();
    let all: Vec<QToken> = accepts.iter().chain(&connects).copied().collect();
    let results = libos.wait_all(&all, Some(GUARD)).unwrap();
    assert_eq!(results.len(), 2 * N);
    let mut server_of: HashMap<SocketAddr, QDesc> = HashMap::new();
    for (r, qt) in results.into_iter().zip(&all) {
        assert_eq!(r.qt, *qt, "results come in the order of the tokens");
        match r.value.unwrap() {
            QValue::Accepted { qd, addr } => assert!(server_of.insert(addr, qd).is_none()),
            QValue::Connected => {}
            other => panic!("unexpected completion {other:?}"),
        }
    }
    assert_eq!(server_of.len(), N);

    // Every client talks to its own server side.
    let pairs: Vec<(QDesc, QDesc, Vec<u8>)> = clients
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, server_of[&libos.local_addr(c).unwrap()], format!("message {i}").into_bytes()))
        .collect();
    let pushes: Vec<QToken> = pairs.iter().map(|(c, _, m)| libos.push(*c, Sga::from(m.clone())).unwrap()).collect();
    for (_, s, m) in &pairs {
        assert_eq!(&pop_exact(&libos, *s, m.len()), m);
    }
    assert!(libos.wait_all(&pushes, Some(GUARD)).unwrap().into_iter().all(|r| r.value == Ok(QValue::Pushed)));
    for (c, s, _) in pairs {
        libos.close(c).unwrap();
        assert!(wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap().is_empty(), "EOF after close");
        libos.close(s).unwrap();
    }
}

// ---- peer reset and orderly close -------------------------------------------------------

#[test]
fn peer_reset_fails_pending_pop_then_later_pops_and_pushes() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let pending = libos.pop(s).unwrap();
    libos.set_linger(c, Some(Duration::ZERO)).unwrap();
    libos.close(c).unwrap();
    let r = wait(&libos, pending);
    assert_eq!((r.opcode, r.qd), (demi::OpCode::Pop, s));
    assert_eq!(r.value, Err(QError::ConnectionReset));
    // The stream is dead: later pops and pushes report the reset as well.
    assert_eq!(outcome(&libos, libos.pop(s)), Err(QError::ConnectionReset));
    let pushed = match libos.push(s, Sga::from("late")) {
        Ok(qt) => wait(&libos, qt).value.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(pushed, Err(QError::ConnectionReset));
    libos.close(s).unwrap();
}

#[test]
fn pending_pushes_fail_when_the_peer_resets() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    // More than the loopback buffers hold, to a peer that does not read: stuck.
    let stuck = libos.push(c, Sga::from(vec![3u8; 64 << 20])).unwrap();
    let queued = libos.push(c, Sga::from("behind it")).unwrap();
    assert_eq!(libos.wait_any(&[stuck, queued], Some(Duration::from_millis(1))), Err(QError::TimedOut));
    libos.set_linger(s, Some(Duration::ZERO)).unwrap();
    libos.close(s).unwrap();
    assert_eq!(wait(&libos, stuck).value, Err(QError::ConnectionReset));
    assert_eq!(wait(&libos, queued).value, Err(QError::ConnectionReset));
    libos.close(c).unwrap();
}

#[demi::test]
async fn peer_reset_async_wakes_the_awaiting_task() {
    let libos = LibOs::current().unwrap();
    let (c, s) = tcp_pair_async(&libos).await;
    // Data first (taken before the reset can discard it), then the reset.
    w(libos.push(c, Sga::from("before")).unwrap()).await.ok().unwrap();
    assert_eq!(pop_exact_async(&libos, s, 6).await, b"before");
    let reader = demi::spawn({
        let libos = libos.clone();
        async move { libos.pop(s).unwrap().await.unwrap().value }
    });
    demi::yield_now().await; // the reader runs and waits on its pop
    assert!(!reader.is_finished());
    libos.set_linger(c, Some(Duration::ZERO)).unwrap();
    libos.close(c).unwrap();
    assert_eq!(reader.await.unwrap(), Err(QError::ConnectionReset));
    libos.close(s).unwrap();
}

#[test]
fn orderly_close_pops_the_data_then_empty_elements_forever() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let early = libos.pop(s).unwrap(); // pending before anything was sent
    wait(&libos, libos.push(c, Sga::from("last words")).unwrap()).ok().unwrap();
    libos.close(c).unwrap();
    let mut got = wait(&libos, early).into_sga().unwrap().to_vec();
    assert!(!got.is_empty());
    loop {
        let sga = wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap();
        if sga.is_empty() {
            break;
        }
        got.extend_from_slice(&sga.to_vec());
    }
    assert_eq!(got, b"last words");
    // EOF is sticky: every later pop is empty too, including several at once.
    for _ in 0..3 {
        assert!(wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap().is_empty());
    }
    let several: Vec<QToken> = (0..3).map(|_| libos.pop(s).unwrap()).collect();
    for r in libos.wait_all(&several, Some(GUARD)).unwrap() {
        assert!(r.into_sga().unwrap().is_empty());
    }
    libos.close(s).unwrap();
}

#[demi::test]
async fn orderly_close_async_completes_pending_pops_with_eof() {
    let libos = LibOs::current().unwrap();
    let (c, s) = tcp_pair_async(&libos).await;
    let pending: Vec<QToken> = (0..2).map(|_| libos.pop(s).unwrap()).collect();
    libos.close(c).unwrap();
    for qt in pending {
        let sga = w(qt).await.into_sga().unwrap();
        assert!(sga.is_empty());
        assert_eq!(sga.addr(), None);
    }
    assert!(w(libos.pop(s).unwrap()).await.into_sga().unwrap().is_empty());
}

#[test]
fn eof_from_a_kernel_socket_peer() {
    let libos = LibOs::posix().unwrap();
    let (lqd, addr) = listener(&libos);
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    let (s, peer) = wait(&libos, libos.accept(lqd).unwrap()).into_accepted().unwrap();
    assert_eq!(peer, raw.local_addr().unwrap());
    raw.write_all(b"from std").unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(pop_exact(&libos, s, 8), b"from std");
    assert!(wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap().is_empty());
    // Half-closed: the other direction still works.
    wait(&libos, libos.push(s, Sga::from("reply")).unwrap()).ok().unwrap();
    libos.close(s).unwrap();
    let mut reply = Vec::new();
    raw.set_read_timeout(Some(GUARD)).unwrap();
    raw.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply");
}

// ---- refused --------------------------------------------------------------------------

#[test]
fn connect_to_a_port_without_listener_is_refused_sync() {
    let libos = LibOs::posix().unwrap();
    let addr = unused_tcp_addr(&libos);
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let r = wait(&libos, libos.connect(qd, addr).unwrap());
    assert_eq!((r.opcode, r.qd), (demi::OpCode::Connect, qd));
    assert_eq!(r.value, Err(QError::ConnectionRefused));
    // The queue is unusable now, and says why; closing it is fine.
    assert_eq!(libos.push(qd, Sga::from("x")).unwrap_err(), QError::ConnectionRefused);
    assert_eq!(libos.pop(qd).unwrap_err(), QError::ConnectionRefused);
    libos.close(qd).unwrap();
}

#[demi::test]
async fn connect_to_a_port_without_listener_is_refused_async() {
    let libos = LibOs::current().unwrap();
    let addr = unused_tcp_addr(&libos);
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let r = libos.connect(qd, addr).unwrap().await.unwrap();
    assert_eq!(r.value, Err(QError::ConnectionRefused));
    libos.close(qd).unwrap();
    // A refused connect does not poison the libOS: a good one works right after.
    let (lqd, addr) = listener(&libos);
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = libos.connect(qd, addr).unwrap();
    let aqt = libos.accept(lqd).unwrap();
    assert_eq!(cqt.await.unwrap().value, Ok(QValue::Connected));
    aqt.await.unwrap().into_accepted().unwrap();
}
