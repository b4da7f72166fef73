//! TCP over the memory libOS (demi's own stack on an in-process link): the same
//! semantics as `posix_tcp.rs` checks for the kernel's sockets. Echo with reassembly
//! of byte-stream pops, many concurrent connections, peer reset, orderly close
//! (EOF), refused connections, and what a peer sees when a libOS goes away.
//!
//! The server is host 0 (198.18.0.1) and the client host 1 (198.18.0.2), two
//! `LibOs` instances on one runtime, so each wait drives both stacks. Both faces of
//! the API are used: async (`#[demi::test]`, `qt.await`, `demi::spawn`) and
//! synchronous (a `demi::Runtime` made by the test, both libOSes built inside one
//! `block_on`, then `libos.wait*` from plain code).

mod common;
mod memory_common;

use common::{echo, outcome, pattern, pop_exact, pop_exact_async, w, wait, GUARD};
use demi::{Bytes, Domain, FrameLimits, LibOs, OpCode, QDesc, QError, QToken, QValue, Sga, SocketType};
use memory_common::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Message sizes for the echo tests: one byte, one KiB, one MiB.
const SIZES: [usize; 3] = [1, 1024, 1 << 20];

/// More than the send buffer (256 KiB) and the peer's receive window (256 KiB)
/// together hold: a push of this to a peer that does not read cannot complete.
const STUCK_PUSH: usize = 4 << 20;

// ---- echo -----------------------------------------------------------------------------

#[demi::test]
async fn echo_async_round_trips_every_size_exactly() {
    let (server, client) = hosts("echo_async");
    let (lqd, addr) = listener(&server);
    assert_eq!(addr.ip(), SERVER_IP);
    let echo_task = demi::spawn({
        let server = server.clone();
        async move {
            let (conn, peer) = w(server.accept(lqd).unwrap()).await.into_accepted().unwrap();
            assert_eq!(peer.ip(), CLIENT_IP);
            echo(server, conn).await
        }
    });

    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    assert_eq!(w(client.connect(cqd, addr).unwrap()).await.value, Ok(QValue::Connected));
    assert_eq!(client.peer_addr(cqd).unwrap(), addr);
    assert_eq!(client.local_addr(cqd).unwrap().ip(), CLIENT_IP);
    let mut sent = 0;
    for round in 0..3u32 {
        for (i, &size) in SIZES.iter().enumerate() {
            let msg = pattern(size, round * 10 + i as u32);
            // Pop while the push is in flight: a 1 MiB push needs the echo to drain.
            let pqt = client.push(cqd, Sga::from(msg.clone())).unwrap();
            let back = pop_exact_async(&client, cqd, size).await;
            let pushed = w(pqt).await;
            assert_eq!(pushed.value, Ok(QValue::Pushed), "the {size}-byte push completes whole");
            assert_eq!((pushed.qd, pushed.opcode), (cqd, OpCode::Push));
            assert!(back == msg, "echo of {size} bytes (round {round}) differs");
            sent += size;
        }
    }
    client.close(cqd).unwrap();
    assert_eq!(echo_task.await.unwrap(), sent, "server echoed every byte, then saw EOF");
    server.close(lqd).unwrap();
}

#[test]
fn echo_sync_pipelined_pushes_arrive_in_order() {
    let h = sync_hosts("echo_sync");
    let (lqd, addr) = listener(&h.server);
    // The server is a task on the shared runtime; the client's synchronous waits
    // below drive it (and both stacks).
    let echo_task = h.rt.spawn({
        let server = h.server.clone();
        async move {
            let (conn, _) = w(server.accept(lqd).unwrap()).await.into_accepted().unwrap();
            let n = echo(server.clone(), conn).await;
            server.close(lqd).unwrap();
            n
        }
    });

    let client = &h.client;
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    wait(client, client.connect(cqd, addr).unwrap()).ok().unwrap();
    // Several messages of every size, pushed back to back without waiting.
    let msgs: Vec<Vec<u8>> = (0..9).map(|i| pattern(SIZES[i % 3], 100 + i as u32)).collect();
    let pushes: Vec<QToken> = msgs.iter().map(|m| client.push(cqd, Sga::from(m.clone())).unwrap()).collect();
    let expected: Vec<u8> = msgs.concat();
    let back = pop_exact(client, cqd, expected.len());
    assert!(back == expected, "the echoed stream differs from the pushed one");
    for r in client.wait_all(&pushes, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
    client.close(cqd).unwrap();
    assert_eq!(h.rt.block_on(echo_task).unwrap(), expected.len());
}

#[test]
fn push_of_many_segments_is_sent_whole_and_in_order() {
    let h = sync_hosts("many_segments");
    let (c, s) = tcp_pair(&h);
    let segs: Vec<Vec<u8>> = (0..200).map(|i| pattern(1 + (i * 37) % 5000, i as u32)).collect();
    let sga = Sga::from_segments(segs.iter().map(|s| demi::Bytes::from(s.clone())));
    let pqt = h.client.push(c, sga).unwrap();
    let expected = segs.concat();
    let got = pop_exact(&h.server, s, expected.len());
    assert!(got == expected);
    assert_eq!(wait(&h.client, pqt).value, Ok(QValue::Pushed));
}

#[demi::test]
async fn both_directions_at_once() {
    // Each side pushes 1 MiB to the other and reads what the other sent, at the
    // same time: neither direction's flow control blocks the other.
    let (server, client) = hosts("both_directions");
    let (c, s) = tcp_pair_async(&server, &client).await;
    let to_server = pattern(1 << 20, 1);
    let to_client = pattern(1 << 20, 2);
    let p1 = client.push(c, Sga::from(to_server.clone())).unwrap();
    let p2 = server.push(s, Sga::from(to_client.clone())).unwrap();
    let reader = demi::spawn({
        let server = server.clone();
        async move { pop_exact_async(&server, s, 1 << 20).await }
    });
    assert!(pop_exact_async(&client, c, 1 << 20).await == to_client);
    assert!(reader.await.unwrap() == to_server);
    for r in demi::wait_all(&[p1, p2], Some(GUARD)).await.unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
}

// ---- many connections -----------------------------------------------------------------

#[demi::test]
async fn accepts_100_concurrent_connections_async() {
    const N: usize = 100;
    let (server, client) = hosts("many_async");
    warm_up(&server, &client).await;
    let (lqd, addr) = listener(&server);
    let server_task = demi::spawn({
        let server = server.clone();
        async move {
            let mut conns = Vec::new();
            let mut peers = HashSet::new();
            for _ in 0..N {
                let (qd, peer) = w(server.accept(lqd).unwrap()).await.into_accepted().unwrap();
                assert!(peers.insert(peer), "each accept is a new peer");
                conns.push(demi::spawn(echo(server.clone(), qd)));
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
            let client = client.clone();
            demi::spawn(async move {
                let qd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
                w(client.connect(qd, addr).unwrap()).await.ok().unwrap();
                let msg = format!("hello from client {i}").into_bytes();
                w(client.push(qd, Sga::from(msg.clone())).unwrap()).await.ok().unwrap();
                let back = pop_exact_async(&client, qd, msg.len()).await;
                assert_eq!(back, msg);
                client.close(qd).unwrap();
                msg.len()
            })
        })
        .collect();
    let mut expected = 0;
    for c in clients {
        expected += c.await.unwrap();
    }
    assert_eq!(server_task.await.unwrap(), expected);
    server.close(lqd).unwrap();
}

#[test]
fn accepts_100_concurrent_connections_sync_with_wait_all() {
    const N: usize = 100;
    let h = sync_hosts("many_sync");
    h.rt.block_on(warm_up(&h.server, &h.client));
    let (server, client) = (&h.server, &h.client);
    let (lqd, addr) = listener(server);
    // 100 accepts outstanding on one listener at once, and 100 connects.
    let accepts: Vec<QToken> = (0..N).map(|_| server.accept(lqd).unwrap()).collect();
    let clients: Vec<QDesc> = (0..N).map(|_| client.socket(Domain::Ipv4, SocketType::Stream).unwrap()).collect();
    let connects: Vec<QToken> = clients.iter().map(|&qd| client.connect(qd, addr).unwrap()).collect();
    let all: Vec<QToken> = accepts.iter().chain(&connects).copied().collect();
    let results = client.wait_all(&all, Some(GUARD)).unwrap();
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
        .map(|(i, &c)| (c, server_of[&client.local_addr(c).unwrap()], format!("message {i}").into_bytes()))
        .collect();
    let pushes: Vec<QToken> = pairs.iter().map(|(c, _, m)| client.push(*c, Sga::from(m.clone())).unwrap()).collect();
    for (_, s, m) in &pairs {
        assert_eq!(&pop_exact(server, *s, m.len()), m);
    }
    assert!(client.wait_all(&pushes, Some(GUARD)).unwrap().into_iter().all(|r| r.value == Ok(QValue::Pushed)));
    for (c, s, _) in pairs {
        client.close(c).unwrap();
        expect_eof_sync(server, s);
        server.close(s).unwrap();
    }
    server.close(lqd).unwrap();
}

// ---- peer reset and orderly close -------------------------------------------------------

#[test]
fn peer_reset_fails_pending_pop_then_later_pops_and_pushes() {
    let h = sync_hosts("reset_pop");
    let (c, s) = tcp_pair(&h);
    let server = &h.server;
    let pending = server.pop(s).unwrap();
    h.client.set_linger(c, Some(Duration::ZERO)).unwrap();
    h.client.close(c).unwrap();
    let r = wait(server, pending);
    assert_eq!((r.opcode, r.qd), (OpCode::Pop, s));
    assert_eq!(r.value, Err(QError::ConnectionReset));
    // The stream is dead: later pops and pushes report the reset as well.
    assert_eq!(outcome(server, server.pop(s)), Err(QError::ConnectionReset));
    let pushed = match server.push(s, Sga::from("late")) {
        Ok(qt) => wait(server, qt).value.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(pushed, Err(QError::ConnectionReset));
    server.close(s).unwrap();
}

#[test]
fn pending_pushes_fail_when_the_peer_resets() {
    let h = sync_hosts("reset_push");
    let (c, s) = tcp_pair(&h);
    let client = &h.client;
    // More than the buffers hold, to a peer that does not read: stuck.
    let stuck = client.push(c, Sga::from(vec![3u8; STUCK_PUSH])).unwrap();
    let queued = client.push(c, Sga::from("behind it")).unwrap();
    assert_eq!(client.wait_any(&[stuck, queued], Some(Duration::from_millis(1))), Err(QError::TimedOut));
    h.server.set_linger(s, Some(Duration::ZERO)).unwrap();
    h.server.close(s).unwrap();
    assert_eq!(wait(client, stuck).value, Err(QError::ConnectionReset));
    assert_eq!(wait(client, queued).value, Err(QError::ConnectionReset));
    client.close(c).unwrap();
}

#[demi::test]
async fn peer_reset_async_wakes_the_awaiting_task() {
    let (server, client) = hosts("reset_async");
    let (c, s) = tcp_pair_async(&server, &client).await;
    // Data first (taken before the reset can discard it), then the reset.
    w(client.push(c, Sga::from("before")).unwrap()).await.ok().unwrap();
    assert_eq!(pop_exact_async(&server, s, 6).await, b"before");
    let reader = demi::spawn({
        let server = server.clone();
        async move { server.pop(s).unwrap().await.unwrap().value }
    });
    demi::yield_now().await; // the reader runs and waits on its pop
    assert!(!reader.is_finished());
    client.set_linger(c, Some(Duration::ZERO)).unwrap();
    client.close(c).unwrap();
    assert_eq!(reader.await.unwrap(), Err(QError::ConnectionReset));
    server.close(s).unwrap();
}

#[demi::test]
async fn reset_by_the_server_side_reaches_the_client() {
    // The other direction: the accepted side aborts, the connecting side's pop fails.
    let (server, client) = hosts("reset_from_server");
    let (c, s) = tcp_pair_async(&server, &client).await;
    let pending = client.pop(c).unwrap();
    server.set_linger(s, Some(Duration::ZERO)).unwrap();
    server.close(s).unwrap();
    assert_eq!(w(pending).await.value, Err(QError::ConnectionReset));
    // A later push fails with the reset too (by the call or in its completion).
    let pushed = match client.push(c, Sga::from("x")) {
        Ok(qt) => w(qt).await.value.map(drop),
        Err(e) => Err(e),
    };
    assert_eq!(pushed, Err(QError::ConnectionReset));
    assert_eq!(outcome_async(client.pop(c)).await, Err(QError::ConnectionReset));
    client.close(c).unwrap();
}

#[test]
fn orderly_close_pops_the_data_then_empty_elements_forever() {
    let h = sync_hosts("orderly_close");
    let (c, s) = tcp_pair(&h);
    let server = &h.server;
    let early = server.pop(s).unwrap(); // pending before anything was sent
    wait(&h.client, h.client.push(c, Sga::from("last words")).unwrap()).ok().unwrap();
    h.client.close(c).unwrap();
    let mut got = wait(server, early).into_sga().unwrap().to_vec();
    assert!(!got.is_empty());
    loop {
        let sga = wait(server, server.pop(s).unwrap()).into_sga().unwrap();
        if sga.is_empty() {
            break;
        }
        got.extend_from_slice(&sga.to_vec());
    }
    assert_eq!(got, b"last words");
    // EOF is sticky: every later pop is empty too, including several at once.
    for _ in 0..3 {
        expect_eof_sync(server, s);
    }
    let several: Vec<QToken> = (0..3).map(|_| server.pop(s).unwrap()).collect();
    for r in server.wait_all(&several, Some(GUARD)).unwrap() {
        assert!(r.into_sga().unwrap().is_empty());
    }
    // The server may still push: the client's queue is closed, so its stack answers
    // with a reset, as a kernel does. EOF stays sticky whatever comes after it.
    wait(server, server.push(s, Sga::from("reply")).unwrap()).ok().unwrap();
    expect_eof_sync(server, s);
    // A datagram round trip afterwards: the link is FIFO, so by the time the answer
    // is back, anything the client's stack sent about the data (the reset) is in.
    let (su, saddr) = udp_on(server, SERVER_IP);
    let (cu, caddr) = udp_on(&h.client, CLIENT_IP);
    for _ in 0..2 {
        wait(server, server.pushto(su, Sga::from("ping"), caddr).unwrap()).ok().unwrap();
        wait(&h.client, h.client.pop(cu).unwrap()).into_sga().unwrap();
        wait(&h.client, h.client.pushto(cu, Sga::from("pong"), saddr).unwrap()).ok().unwrap();
        wait(server, server.pop(su).unwrap()).into_sga().unwrap();
    }
    for _ in 0..2 {
        expect_eof_sync(server, s);
    }
    server.close(s).unwrap();
}

#[test]
fn pushes_to_a_peer_that_closed_its_queue_fail_with_reset() {
    // POSIX (checked against Linux loopback): the peer's kernel answers data for a
    // closed socket with a reset, so a large push fails with ConnectionReset. Over
    // the memory libOS the closed side's stack ACKs the data into a buffer nobody
    // reads; once its window is full the push stalls for ever.
    let h = sync_hosts("push_after_close");
    let (c, s) = tcp_pair(&h);
    h.client.close(c).unwrap();
    expect_eof_sync(&h.server, s);
    let qt = h.server.push(s, Sga::from(vec![1u8; STUCK_PUSH])).unwrap();
    let r = h.server.wait(qt, Some(Duration::from_secs(2))).map(|r| r.value.map(drop));
    assert_eq!(r, Ok(Err(QError::ConnectionReset)));
}

#[demi::test]
async fn orderly_close_async_completes_pending_pops_with_eof() {
    let (server, client) = hosts("orderly_close_async");
    let (c, s) = tcp_pair_async(&server, &client).await;
    let pending: Vec<QToken> = (0..2).map(|_| server.pop(s).unwrap()).collect();
    client.close(c).unwrap();
    for qt in pending {
        let sga = w(qt).await.into_sga().unwrap();
        assert!(sga.is_empty());
        assert_eq!(sga.addr(), None);
    }
    expect_eof(&server, s).await;
}

#[demi::test]
async fn close_by_the_server_side_is_eof_at_the_client_after_the_data() {
    // The accepted side sends and closes: the client pops the data, then EOF, and
    // EOF again.
    let (server, client) = hosts("close_by_server");
    let (c, s) = tcp_pair_async(&server, &client).await;
    w(server.push(s, Sga::from("bye")).unwrap()).await.ok().unwrap();
    server.close(s).unwrap();
    assert_eq!(pop_exact_async(&client, c, 3).await, b"bye");
    expect_eof(&client, c).await;
    expect_eof(&client, c).await;
    client.close(c).unwrap();
}

// ---- refused --------------------------------------------------------------------------

/// A port on the server host where nothing listens.
const NO_LISTENER: u16 = 9;

#[test]
fn connect_to_a_port_without_listener_is_refused_sync() {
    let h = sync_hosts("refused_sync");
    let client = &h.client;
    let qd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let r = wait(client, client.connect(qd, at(SERVER_IP, NO_LISTENER)).unwrap());
    assert_eq!((r.opcode, r.qd), (OpCode::Connect, qd));
    assert_eq!(r.value, Err(QError::ConnectionRefused));
    // The queue is unusable now, and says why; closing it is fine.
    assert_eq!(client.push(qd, Sga::from("x")).unwrap_err(), QError::ConnectionRefused);
    assert_eq!(client.pop(qd).unwrap_err(), QError::ConnectionRefused);
    client.close(qd).unwrap();
}

#[demi::test]
async fn connect_to_a_port_without_listener_is_refused_async() {
    let (server, client) = hosts("refused_async");
    let qd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let r = client.connect(qd, at(SERVER_IP, NO_LISTENER)).unwrap().await.unwrap();
    assert_eq!(r.value, Err(QError::ConnectionRefused));
    client.close(qd).unwrap();
    // A refused connect does not poison the libOS: a good one works right after,
    // and so does one to the port that refused, once something listens there.
    let (lqd, _) = listener_on(&server, SERVER_IP, NO_LISTENER);
    let qd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = client.connect(qd, at(SERVER_IP, NO_LISTENER)).unwrap();
    let aqt = server.accept(lqd).unwrap();
    assert_eq!(cqt.await.unwrap().value, Ok(QValue::Connected));
    aqt.await.unwrap().into_accepted().unwrap();
}

#[demi::test]
async fn a_closed_listener_refuses_new_connections() {
    let (server, client) = hosts("closed_listener");
    let (lqd, addr) = listener(&server);
    server.close(lqd).unwrap();
    let qd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    assert_eq!(w(client.connect(qd, addr).unwrap()).await.value, Err(QError::ConnectionRefused));
}

// ---- a libOS going away -------------------------------------------------------------------

#[demi::test]
async fn dropping_a_libos_closes_its_connections() {
    // POSIX: dropping a libOS closes its sockets, and peers see their connection end
    // (EOF). The same with the memory libOS: the client's pending pop completes with
    // an empty element instead of waiting for retransmissions to time out.
    // (A *listener* of a dropped libOS cannot refuse later connections as a closed
    // kernel port does: the whole host is gone and nothing answers the SYN.)
    let (server, client) = hosts("drop_libos");
    let (c, _s) = tcp_pair_async(&server, &client).await;
    let (c2, s2) = tcp_pair_async(&server, &client).await;
    let _ = server.pop(s2).unwrap(); // pending while the libOS goes away
    let pending = [client.pop(c).unwrap(), client.pop(c2).unwrap()];
    drop(server);
    for r in demi::wait_all(&pending, Some(GUARD)).await.unwrap() {
        assert!(r.into_sga().unwrap().is_empty(), "the peer sees EOF");
    }
}

#[test]
fn the_sync_face_with_a_libos_that_owns_its_runtime() {
    // `LibOs::new` outside any runtime makes the libOS a runtime of its own. A second
    // libOS built inside that runtime's `block_on` shares it, so the first one's
    // synchronous waits drive both stacks.
    let server = LibOs::new(&config(0, "own_runtime")).unwrap();
    let client = server.runtime().block_on(async { LibOs::new(&config(1, "own_runtime")).unwrap() });
    assert_eq!(client.runtime().id(), server.runtime().id());
    let (lqd, addr) = listener(&server);
    let aqt = server.accept(lqd).unwrap();
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let cqt = client.connect(cqd, addr).unwrap();
    let (_, r) = server.wait_any(&[cqt], Some(GUARD)).unwrap();
    r.ok().unwrap();
    let (sqd, _) = wait(&server, aqt).into_accepted().unwrap();
    let r = client.blocking_push(cqd, Sga::from("ping")).unwrap();
    assert_eq!((r.opcode, r.qd, r.value), (OpCode::Push, cqd, Ok(QValue::Pushed)));
    assert_eq!(server.blocking_pop(sqd).unwrap().into_sga().unwrap().to_vec(), b"ping");
    server.blocking_push(sqd, Sga::from("pong")).unwrap().ok().unwrap();
    assert_eq!(client.blocking_pop(cqd).unwrap().into_sga().unwrap().to_vec(), b"pong");
    drop(client);
    drop(server);
}

// ---- framing ----------------------------------------------------------------------------

/// A framed connected pair (sync face).
fn framed_pair(h: &SyncHosts) -> (QDesc, QDesc) {
    let (c, s) = tcp_pair(h);
    h.client.set_framing(c, true).unwrap();
    h.server.set_framing(s, true).unwrap();
    (c, s)
}

/// An element of three segments: a small header, 100 KiB, one byte.
fn three_segments(seed: u32) -> Sga {
    Sga::from_segments([
        Bytes::from(pattern(12, seed)),
        Bytes::from(pattern(100 * 1024, seed + 1)),
        Bytes::from(pattern(1, seed + 2)),
    ])
}

/// The wire form of `segments` as the framing module documents it.
fn encode(segments: &[&[u8]]) -> Vec<u8> {
    let mut out = (segments.len() as u32).to_le_bytes().to_vec();
    for s in segments {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    for s in segments {
        out.extend_from_slice(s);
    }
    out
}

#[test]
fn framed_multi_segment_elements_pushed_back_to_back_pop_one_by_one() {
    let h = sync_hosts("framed_back_to_back");
    let (c, s) = framed_pair(&h);
    let elements: Vec<Sga> = (0..6).map(|i| three_segments(i * 10)).collect();
    let pushes: Vec<QToken> = elements.iter().map(|e| h.client.push(c, e.clone()).unwrap()).collect();
    for e in &elements {
        let got = wait(&h.server, h.server.pop(s).unwrap()).into_sga().unwrap();
        assert_eq!(got.num_segments(), 3);
        assert!(got.segments() == e.segments(), "segments differ");
    }
    for r in h.client.wait_all(&pushes, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
}

#[demi::test]
async fn framed_echo_async_keeps_every_shape() {
    let (server, client) = hosts("framed_echo");
    let (c, s) = tcp_pair_async(&server, &client).await;
    client.set_framing(c, true).unwrap();
    server.set_framing(s, true).unwrap();
    let echo_task = demi::spawn(echo(server.clone(), s));
    let shapes: Vec<Sga> = vec![
        Sga::from("x"),
        three_segments(1),
        // An empty segment inside an element is kept.
        Sga::from_segments([Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"c")]),
        // Many segments.
        Sga::from_segments((0..100).map(|i| Bytes::from(pattern(1 + i, i as u32)))),
        // One element larger than the send buffer and the receive window.
        Sga::from_segments([Bytes::from(pattern(1 << 20, 5)), Bytes::from(pattern(17, 6))]),
    ];
    for round in 0..2 {
        for e in &shapes {
            let pqt = client.push(c, e.clone()).unwrap();
            let got = w(client.pop(c).unwrap()).await.into_sga().unwrap();
            w(pqt).await.ok().unwrap();
            assert_eq!(got.len(), e.len(), "round {round}");
            assert!(got.segments() == e.segments(), "round {round}: segments differ");
        }
    }
    client.close(c).unwrap();
    let total: usize = shapes.iter().map(Sga::len).sum();
    assert_eq!(echo_task.await.unwrap(), 2 * total);
}

#[test]
fn many_small_framed_elements_merged_by_tcp_still_pop_one_each() {
    let h = sync_hosts("framed_small");
    let (c, s) = framed_pair(&h);
    // All pops wait before any data: one pop gets one element, in order, even when
    // one segment brings many elements.
    let pops: Vec<QToken> = (0..100).map(|_| h.server.pop(s).unwrap()).collect();
    let pushes: Vec<QToken> =
        (0..100u32).map(|i| h.client.push(c, Sga::from(i.to_le_bytes().to_vec())).unwrap()).collect();
    h.client.wait_all(&pushes, Some(GUARD)).unwrap();
    for (i, r) in h.server.wait_all(&pops, Some(GUARD)).unwrap().into_iter().enumerate() {
        assert_eq!(r.into_sga().unwrap().to_vec(), (i as u32).to_le_bytes());
    }
}

#[test]
fn framed_push_is_the_documented_wire_format() {
    // A framed sender, an unframed receiver: the bytes on the stream are the header
    // and the segments, as documented.
    let h = sync_hosts("framed_wire");
    let (c, s) = tcp_pair(&h);
    h.client.set_framing(c, true).unwrap();
    let sga = Sga::from_segments([Bytes::from_static(b"hello"), Bytes::new(), Bytes::from_static(b"!")]);
    wait(&h.client, h.client.push(c, sga).unwrap()).ok().unwrap();
    let want = encode(&[b"hello", b"", b"!"]);
    assert_eq!(pop_exact(&h.server, s, want.len()), want);
}

#[test]
fn hand_encoded_frames_sent_byte_by_byte_pop_whole() {
    // The documented wire format from an unframed sender, one byte per push (one
    // segment each).
    let h = sync_hosts("framed_bytewise");
    let (c, s) = tcp_pair(&h);
    h.server.set_framing(s, true).unwrap();
    let pending = h.server.pop(s).unwrap();
    let wire = [encode(&[b"seg-one", b"", b"3"]), encode(&[b"second element"])].concat();
    for b in &wire {
        wait(&h.client, h.client.push(c, Sga::from(vec![*b])).unwrap()).ok().unwrap();
    }
    let first = wait(&h.server, pending).into_sga().unwrap();
    let want = [Bytes::from_static(b"seg-one"), Bytes::new(), Bytes::from_static(b"3")];
    assert!(first.segments() == want);
    assert_eq!(wait(&h.server, h.server.pop(s).unwrap()).into_sga().unwrap().to_vec(), b"second element");
}

#[test]
fn framed_push_over_the_limits_is_refused_by_the_call() {
    let rt = demi::Runtime::new().unwrap();
    let (server, client) = rt.block_on(async {
        let mut cfg = config(1, "framed_limits");
        cfg.frame_limits = FrameLimits { max_segments: 4, max_element: 1024 };
        (LibOs::new(&config(0, "framed_limits")).unwrap(), LibOs::new(&cfg).unwrap())
    });
    let h = SyncHosts { server, client, rt };
    let (c, s) = framed_pair(&h);
    let client = &h.client;
    assert_eq!(client.push(c, Sga::from(vec![1u8; 1025])).unwrap_err(), QError::MessageTooLong);
    let five = Sga::from_segments((0..5).map(|_| Bytes::from_static(b"x")));
    assert_eq!(client.push(c, five).unwrap_err(), QError::MessageTooLong);
    assert!(matches!(client.push(c, Sga::new()), Err(QError::InvalidArgument(_))));
    assert!(matches!(client.push(c, Sga::from_segments([Bytes::new()])), Err(QError::InvalidArgument(_))));
    // Refused pushes sent nothing: the stream is still in step.
    wait(client, client.push(c, Sga::from(vec![2u8; 1024])).unwrap()).ok().unwrap();
    assert_eq!(wait(&h.server, h.server.pop(s).unwrap()).into_sga().unwrap().to_vec(), vec![2u8; 1024]);
}

#[test]
fn a_hostile_header_is_invalid_data_and_the_queue_stays_failed() {
    // An unframed peer sends a header announcing more than the limits allow: the
    // framed receiver refuses it from the header alone, and keeps refusing.
    let h = sync_hosts("framed_hostile");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one segment of ~4 GiB", [1u32.to_le_bytes(), 0xFFFF_FFF0u32.to_le_bytes()].concat()),
        ("just over the 16 MiB default", [1u32.to_le_bytes(), ((16u32 << 20) + 1).to_le_bytes()].concat()),
        ("4 billion segments", u32::MAX.to_le_bytes().to_vec()),
        ("zero segments", 0u32.to_le_bytes().to_vec()),
    ];
    for (what, header) in cases {
        let (c, s) = tcp_pair(&h);
        h.server.set_framing(s, true).unwrap();
        let pending = h.server.pop(s).unwrap();
        let mut bytes = header;
        bytes.extend_from_slice(b"some payload that is far too short");
        wait(&h.client, h.client.push(c, Sga::from(bytes)).unwrap()).ok().unwrap();
        assert_eq!(wait(&h.server, pending).into_sga().map(|s| s.len()), Err(QError::InvalidData), "{what}");
        let later = outcome(&h.server, h.server.pop(s)).map(|s| s.len());
        assert_eq!(later, Err(QError::InvalidData), "{what}: the queue stays failed");
        h.server.close(s).unwrap();
        h.client.close(c).unwrap();
    }
}

#[test]
fn eof_in_the_middle_of_an_element_is_invalid_data() {
    let h = sync_hosts("framed_cut");
    let (c, s) = tcp_pair(&h);
    h.server.set_framing(s, true).unwrap();
    let whole = encode(&[b"complete"]);
    let cut = encode(&[b"cut short"]);
    let client = &h.client;
    wait(client, client.push(c, Sga::from(whole)).unwrap()).ok().unwrap();
    wait(client, client.push(c, Sga::from(cut[..cut.len() - 3].to_vec())).unwrap()).ok().unwrap();
    client.close(c).unwrap();
    assert_eq!(wait(&h.server, h.server.pop(s).unwrap()).into_sga().unwrap().to_vec(), b"complete");
    assert_eq!(outcome(&h.server, h.server.pop(s)).map(|s| s.len()), Err(QError::InvalidData));
    // An orderly EOF between elements is an ordinary empty pop.
    let (c2, s2) = framed_pair(&h);
    wait(client, client.push(c2, Sga::from("only")).unwrap()).ok().unwrap();
    client.close(c2).unwrap();
    assert_eq!(wait(&h.server, h.server.pop(s2).unwrap()).into_sga().unwrap().to_vec(), b"only");
    expect_eof_sync(&h.server, s2);
}

#[test]
fn framing_is_a_stream_only_option() {
    let h = sync_hosts("framing_option");
    let (u, _) = udp_on(&h.server, SERVER_IP);
    assert_eq!(h.server.set_framing(u, true).unwrap_err(), QError::NotSupported);
    // Turning it on twice, or off with nothing buffered, is fine.
    let (c, s) = tcp_pair(&h);
    h.client.set_framing(c, true).unwrap();
    h.client.set_framing(c, true).unwrap();
    h.client.set_framing(c, false).unwrap();
    // Off again: plain byte stream.
    wait(&h.client, h.client.push(c, Sga::from("raw")).unwrap()).ok().unwrap();
    assert_eq!(pop_exact(&h.server, s, 3), b"raw");
}

#[demi::test]
async fn applications_can_read_stack_and_connection_statistics() {
    let (server, client) = hosts("stats");
    let (c, s) = tcp_pair_async(&server, &client).await;
    w(client.push(c, Sga::from("counted")).unwrap()).await.ok().unwrap();
    let got = w(server.pop(s).unwrap()).await.into_sga().unwrap();
    assert_eq!(got.to_vec(), b"counted");
    let conn = client.tcp_stats(c).unwrap();
    assert!(conn.segments_sent >= 2, "SYN and data at least: {conn:?}");
    assert!(conn.bytes_sent >= 7, "{conn:?}");
    assert_eq!(server.tcp_stats(s).unwrap().bytes_received, 7);
    let stack = client.stack_stats().expect("the memory libOS has a user-level stack");
    assert!(stack.tx_frames >= 2 && stack.rx_frames >= 1, "{stack:?}");
    // Not a connection, and not a user-level stack: typed errors.
    let (l, _) = listener(&server);
    assert_eq!(server.tcp_stats(l).unwrap_err(), QError::InvalidState);
    let posix = demi::LibOs::new(&demi::Config::new(demi::LibOsKind::Posix)).unwrap();
    assert!(posix.stack_stats().is_none());
    let qd = posix.socket(demi::Domain::Ipv4, demi::SocketType::Stream).unwrap();
    assert_eq!(posix.tcp_stats(qd).unwrap_err(), QError::NotSupported);
}

#[demi::test]
async fn a_queue_can_choose_its_own_tcp_settings() {
    use demi::net_stack::tcp::{CongestionControl, TcpConfig};
    let (server, client) = hosts("per_queue_tcp");
    // No congestion control: ConnStats reports an unlimited window.
    let tcp = TcpConfig { congestion: CongestionControl::None, ..TcpConfig::default() };
    // The listener hands its settings to the connections it accepts.
    let lqd = server.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    server.set_tcp_config(lqd, tcp.clone()).unwrap();
    server.bind(lqd, at(SERVER_IP, 9100)).unwrap();
    server.listen(lqd, 8).unwrap();
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    client.set_tcp_config(cqd, tcp).unwrap();
    let accept = server.accept(lqd).unwrap();
    w(client.connect(cqd, at(SERVER_IP, 9100)).unwrap()).await.ok().unwrap();
    let (sqd, _) = w(accept).await.into_accepted().unwrap();
    w(client.push(cqd, Sga::from("unlimited")).unwrap()).await.ok().unwrap();
    assert_eq!(w(server.pop(sqd).unwrap()).await.into_sga().unwrap().to_vec(), b"unlimited");
    w(server.push(sqd, Sga::from("back")).unwrap()).await.ok().unwrap();
    assert_eq!(w(client.pop(cqd).unwrap()).await.into_sga().unwrap().to_vec(), b"back");
    assert_eq!(client.tcp_stats(cqd).unwrap().cwnd, usize::MAX);
    assert_eq!(server.tcp_stats(sqd).unwrap().cwnd, usize::MAX, "the listener passed its settings on");
    // A queue left with the defaults runs NewReno: a finite window.
    let (c2, s2) = tcp_pair_async(&server, &client).await;
    w(client.push(c2, Sga::from("reno")).unwrap()).await.ok().unwrap();
    w(server.pop(s2).unwrap()).await.into_sga().unwrap();
    w(server.push(s2, Sga::from("ack")).unwrap()).await.ok().unwrap();
    w(client.pop(c2).unwrap()).await.into_sga().unwrap();
    assert!(client.tcp_stats(c2).unwrap().cwnd < usize::MAX);
    // Settings can no longer change once connected.
    assert_eq!(client.set_tcp_config(cqd, TcpConfig::default()).unwrap_err(), QError::InvalidState);
}

#[demi::test]
async fn an_answer_carries_the_ack_even_without_delayed_acks() {
    use demi::net_stack::tcp::TcpConfig;
    let (server, client) = hosts("ack_piggyback");
    // Immediate ACKs on both ends: the stack wants to acknowledge every segment at
    // once. The libOS holds that ACK until the task woken by the data has run, so
    // the task's answer carries it.
    let tcp = TcpConfig { ack_delay: None, ..TcpConfig::default() };
    let lqd = server.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    server.set_tcp_config(lqd, tcp.clone()).unwrap();
    server.bind(lqd, at(SERVER_IP, 9101)).unwrap();
    server.listen(lqd, 8).unwrap();
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    client.set_tcp_config(cqd, tcp).unwrap();
    let accept = server.accept(lqd).unwrap();
    w(client.connect(cqd, at(SERVER_IP, 9101)).unwrap()).await.ok().unwrap();
    let (sqd, _) = w(accept).await.into_accepted().unwrap();
    let echo_task = demi::spawn(echo(server.clone(), sqd));
    // Warm up, then count the frames both stacks send over many exchanges.
    let exchange = |k: u32| {
        let client = client.clone();
        async move {
            let msg = pattern(64, k);
            w(client.push(cqd, Sga::from(msg.clone())).unwrap()).await.ok().unwrap();
            assert_eq!(pop_exact_async(&client, cqd, 64).await, msg);
        }
    };
    exchange(0).await;
    let frames = || client.stack_stats().unwrap().tx_frames + server.stack_stats().unwrap().tx_frames;
    let before = frames();
    const N: u64 = 200;
    for k in 1..=N as u32 {
        exchange(k).await;
    }
    let sent = frames() - before;
    // Each exchange: the request (carrying the ACK of the previous answer) and the
    // answer (carrying the ACK of the request); the last answer's ACK may follow.
    assert!(sent <= 2 * N + 1, "{sent} frames for {N} request/response exchanges (at most {} expected)", 2 * N + 1);
    client.close(cqd).unwrap();
    assert_eq!(echo_task.await.unwrap(), 64 * (N as usize + 1));
}

#[demi::test]
async fn a_push_on_shm_leaves_inside_the_call_and_elsewhere_at_the_next_turn() {
    // The shm device sends a push's segment from within `push` (DeviceCaps::eager_tx);
    // the memory link waits for the loop's next turn, where the peer looks anyway.
    let (server, client) = hosts("eager_tx");
    let (cqd, sqd) = tcp_pair_async(&server, &client).await;
    let eager = std::env::var("DEMI_TEST_LIBOS").as_deref() == Ok("shm");
    let before = client.stack_stats().unwrap().tx_frames;
    let qt = client.push(cqd, Sga::from("now")).unwrap();
    let sent_in_call = client.stack_stats().unwrap().tx_frames - before;
    assert_eq!(sent_in_call, u64::from(eager), "frames sent inside push (eager: {eager})");
    w(qt).await.ok().unwrap();
    assert_eq!(pop_exact_async(&server, sqd, 3).await, b"now");
}

#[demi::test]
async fn nagle_can_be_turned_on_per_queue_and_data_still_flows() {
    let (server, client) = hosts("nagle");
    // Before connecting (part of the queue's settings) and on a live connection.
    let (l, addr) = listener(&server);
    server.set_nodelay(l, false).unwrap();
    let cqd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    client.set_nodelay(cqd, false).unwrap();
    let accept = server.accept(l).unwrap();
    w(client.connect(cqd, addr).unwrap()).await.ok().unwrap();
    let (sqd, _) = w(accept).await.into_accepted().unwrap();
    // Small pushes back to back: with Nagle on, later ones wait for the first ACK,
    // but everything arrives, in order.
    for k in 0..20u8 {
        w(client.push(cqd, Sga::from(vec![k; 10])).unwrap()).await.ok().unwrap();
    }
    let got = pop_exact_async(&server, sqd, 200).await;
    let want: Vec<u8> = (0..20u8).flat_map(|k| [k; 10]).collect();
    assert_eq!(got, want);
    client.set_nodelay(cqd, true).unwrap();
    server.set_nodelay(sqd, false).unwrap();
}
