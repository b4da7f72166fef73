//! Queue-API semantics over the memory libOS, as `queue_api.rs` checks them for
//! POSIX: closing and cancellation, misuse as typed errors (never panics), tokens,
//! `wait_any` / `wait_all` / timeouts across connections, and tearing down a libOS
//! with operations pending.

mod common;
mod memory_common;

use common::{pop_exact, w, wait, GUARD};
use demi::{Domain, LibOs, OpCode, QDesc, QError, QToken, QValue, Sga, SocketType};
use memory_common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A push that cannot complete: more than the send buffer and the peer's receive
/// window hold (256 KiB each), to a peer that does not read.
const STUCK_PUSH: usize = 4 << 20;

fn is_done(libos: &LibOs, qt: QToken) -> bool {
    libos.runtime().op_is_done(qt).unwrap()
}

// ---- close ----------------------------------------------------------------------------

#[test]
fn close_cancels_pending_pops_accepts_and_pushes() {
    let h = sync_hosts("close_cancels");
    let (server, client) = (&h.server, &h.client);
    let (c, s) = tcp_pair(&h);
    let pops: Vec<QToken> = (0..2).map(|_| server.pop(s).unwrap()).collect();
    let (lqd, _) = listener(server);
    let accepts: Vec<QToken> = (0..2).map(|_| server.accept(lqd).unwrap()).collect();
    let (c2, _s2) = tcp_pair(&h);
    let push = client.push(c2, Sga::from(vec![0u8; STUCK_PUSH])).unwrap();
    let queued_push = client.push(c2, Sga::from("behind it")).unwrap();
    // Give the runtime some turns: nothing of this can complete.
    assert_eq!(client.wait_any(&[pops[0], accepts[0], push], Some(Duration::from_millis(5))), Err(QError::TimedOut));

    server.close(s).unwrap();
    server.close(lqd).unwrap();
    client.close(c2).unwrap();
    // Cancelled at once, by close itself.
    for &qt in pops.iter().chain(&accepts).chain(&[push, queued_push]) {
        assert!(is_done(server, qt), "{qt:?} completed by close");
    }
    for (qt, op, qd) in [
        (pops[0], OpCode::Pop, s),
        (pops[1], OpCode::Pop, s),
        (accepts[0], OpCode::Accept, lqd),
        (accepts[1], OpCode::Accept, lqd),
        (push, OpCode::Push, c2),
        (queued_push, OpCode::Push, c2),
    ] {
        let r = wait(server, qt);
        assert_eq!((r.qt, r.opcode, r.qd, r.value), (qt, op, qd, Err(QError::Canceled)));
    }
    // The untouched end of the first pair sees the close as EOF.
    expect_eof_sync(client, c);
}

#[test]
fn close_during_connect_completes_the_connect_token() {
    let h = sync_hosts("close_connecting");
    let (l, laddr) = listener(&h.server);
    let client = &h.client;
    let qd = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let connect = client.connect(qd, laddr).unwrap();
    client.close(qd).unwrap();
    // Either it had already connected, or close cancelled it; it never hangs.
    let r = wait(client, connect).value;
    assert!(matches!(r, Ok(QValue::Connected) | Err(QError::Canceled)), "{r:?}");
    h.server.close(l).unwrap();
}

#[test]
fn a_closed_descriptor_is_bad_for_every_call() {
    let h = sync_hosts("closed_qd");
    let (server, client) = (&h.server, &h.client);
    let (c, s) = tcp_pair(&h);
    let (u, uaddr) = udp_on(server, SERVER_IP);
    let (l, _) = listener(server);
    client.close(c).unwrap();
    for qd in [s, u, l] {
        server.close(qd).unwrap();
    }
    let any = at(SERVER_IP, 9);
    for (libos, qd) in [(client, c), (server, s), (server, u), (server, l)] {
        let bad = Err(QError::BadDescriptor);
        assert_eq!(libos.push(qd, Sga::from("x")).map(drop), bad, "push {qd}");
        assert_eq!(libos.pushto(qd, Sga::from("x"), uaddr).map(drop), bad, "pushto {qd}");
        assert_eq!(libos.pop(qd).map(drop), bad, "pop {qd}");
        assert_eq!(libos.accept(qd).map(drop), bad, "accept {qd}");
        assert_eq!(libos.connect(qd, any).map(drop), bad, "connect {qd}");
        assert_eq!(libos.close(qd), bad, "close {qd}");
        assert_eq!(libos.bind(qd, at(Ipv4Addr::UNSPECIFIED, 0)), bad, "bind {qd}");
        assert_eq!(libos.listen(qd, 1), bad, "listen {qd}");
        assert_eq!(libos.set_framing(qd, true), bad, "set_framing {qd}");
        assert_eq!(libos.set_linger(qd, None), bad, "set_linger {qd}");
        assert_eq!(libos.set_nodelay(qd, true), bad, "set_nodelay {qd}");
        assert_eq!(libos.local_addr(qd).map(drop), bad, "local_addr {qd}");
        assert_eq!(libos.peer_addr(qd).map(drop), bad, "peer_addr {qd}");
        assert_eq!(libos.blocking_pop(qd).map(drop), bad, "blocking_pop {qd}");
    }
    // New queues may reuse the slots; the old descriptors still name nothing.
    let fresh: Vec<QDesc> = (0..4).map(|_| server.socket(Domain::Ipv4, SocketType::Stream).unwrap()).collect();
    for qd in [s, u, l] {
        assert!(!fresh.contains(&qd));
        assert_eq!(server.pop(qd).map(drop), Err(QError::BadDescriptor));
    }
    // A made-up descriptor too.
    assert_eq!(server.close(QDesc::from_raw(0xdead_0000_0007)), Err(QError::BadDescriptor));
}

#[demi::test]
async fn close_wakes_a_task_awaiting_a_pop_with_canceled() {
    let (server, client) = hosts("close_wakes");
    let (_c, s) = tcp_pair_async(&server, &client).await;
    let (l, _) = listener(&server);
    let pop = server.pop(s).unwrap();
    let accept = server.accept(l).unwrap();
    let waiter = demi::spawn(async move { (pop.await.unwrap().value, accept.await.unwrap().value) });
    demi::yield_now().await; // the waiter is now parked on its tokens
    assert!(!waiter.is_finished());
    server.close(s).unwrap();
    server.close(l).unwrap();
    assert_eq!(waiter.await.unwrap(), (Err(QError::Canceled), Err(QError::Canceled)));
}

// ---- misuse -----------------------------------------------------------------------------

#[test]
fn misuse_is_a_typed_error_never_a_panic() {
    let h = sync_hosts("misuse");
    let libos = &h.server;
    let mine = |port| at(SERVER_IP, port);
    let stream = || libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let dgram = || libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();

    // accept on a queue that is not listening.
    let fresh = stream();
    assert_eq!(libos.accept(fresh).unwrap_err(), QError::InvalidState);
    let bound = stream();
    libos.bind(bound, mine(0)).unwrap();
    assert_eq!(libos.accept(bound).unwrap_err(), QError::InvalidState);
    let (u, uaddr) = udp_on(libos, SERVER_IP);
    assert_eq!(libos.accept(u).unwrap_err(), QError::InvalidState);
    let (c, s) = tcp_pair(&h);
    assert_eq!(libos.accept(s).unwrap_err(), QError::InvalidState);
    assert_eq!(h.client.accept(c).unwrap_err(), QError::InvalidState);

    // Data on an unconnected stream.
    assert_eq!(libos.push(fresh, Sga::from("x")).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.pop(fresh).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.peer_addr(fresh).unwrap_err(), QError::NotConnected);
    let (l, laddr) = listener(libos);
    assert_eq!(libos.push(l, Sga::from("x")).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.pop(l).unwrap_err(), QError::NotConnected);

    // listen: not on UDP, not twice, not on a connection.
    assert_eq!(libos.listen(u, 16).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.listen(dgram(), 16).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.listen(l, 16).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.listen(s, 16).unwrap_err(), QError::InvalidState);

    // bind: not twice; not to an address in use; not to an address that is not ours.
    assert_eq!(libos.bind(bound, mine(0)).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.bind(u, mine(0)).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.bind(s, mine(0)).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.bind(l, mine(0)).unwrap_err(), QError::InvalidState);
    let other = stream();
    assert_eq!(libos.bind(other, laddr).unwrap_err(), QError::AddressInUse);
    let other_udp = dgram();
    assert_eq!(libos.bind(other_udp, uaddr).unwrap_err(), QError::AddressInUse);
    assert_eq!(libos.bind(other, "192.0.2.1:0".parse().unwrap()).unwrap_err(), QError::AddressNotAvailable);
    // The other host's address is not this stack's either.
    assert_eq!(libos.bind(other, at(CLIENT_IP, 0)).unwrap_err(), QError::AddressNotAvailable);
    assert_eq!(libos.bind(other_udp, at(CLIENT_IP, 0)).unwrap_err(), QError::AddressNotAvailable);
    // A failed bind leaves the queue unbound: a good bind still works (the wildcard
    // address is this stack's too).
    libos.bind(other, at(Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    libos.bind(other_udp, at(Ipv4Addr::UNSPECIFIED, 0)).unwrap();

    // connect: not on a listener, not twice.
    assert_eq!(libos.connect(l, laddr).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.connect(s, laddr).unwrap_err(), QError::AlreadyConnected);

    // Elements a stream cannot take.
    assert!(matches!(libos.push(s, Sga::new()), Err(QError::InvalidArgument(_))));
    assert!(matches!(libos.push(s, Sga::from_segments([demi::Bytes::new()])), Err(QError::InvalidArgument(_))));
    assert_eq!(libos.pushto(s, Sga::from("x"), laddr).unwrap_err(), QError::NotSupported);

    // UDP without a destination or a bound address.
    let lonely = dgram();
    assert_eq!(libos.push(lonely, Sga::from("x")).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.pop(lonely).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.peer_addr(lonely).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.set_framing(lonely, true).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.set_nodelay(lonely, true).unwrap_err(), QError::NotSupported);

    // Through all of that, the queues that were fine still are.
    wait(&h.client, h.client.push(c, Sga::from("still fine")).unwrap()).ok().unwrap();
    assert_eq!(pop_exact(libos, s, 10), b"still fine");
}

#[test]
fn a_tcp_port_is_taken_by_a_bound_queue_before_it_listens() {
    // POSIX: a port bound (not yet listening) is in use for a second bind-and-listen.
    let h = sync_hosts("bound_port");
    let libos = &h.server;
    let a = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    libos.bind(a, at(SERVER_IP, 7000)).unwrap();
    assert_eq!(libos.local_addr(a).unwrap(), at(SERVER_IP, 7000));
    let b = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    libos.bind(b, at(SERVER_IP, 7001)).unwrap();
    libos.listen(b, 8).unwrap();
    // The first one listens on its port; the port stays its own.
    libos.listen(a, 8).unwrap();
    let c = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    assert_eq!(libos.bind(c, at(SERVER_IP, 7000)).unwrap_err(), QError::AddressInUse);
    assert_eq!(libos.bind(c, at(SERVER_IP, 7001)).unwrap_err(), QError::AddressInUse);
    // Closing the listener frees the port.
    libos.close(a).unwrap();
    libos.bind(c, at(SERVER_IP, 7000)).unwrap();
    libos.listen(c, 8).unwrap();
}

#[test]
fn ipv6_is_not_supported() {
    let h = sync_hosts("ipv6");
    let libos = &h.server;
    assert_eq!(libos.socket(Domain::Ipv6, SocketType::Stream).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.socket(Domain::Ipv6, SocketType::Datagram).unwrap_err(), QError::NotSupported);
    // IPv6 addresses given to an IPv4 queue.
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    let t = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let u = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    assert_eq!(libos.bind(t, v6).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.connect(t, v6).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.bind(u, v6).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.connect(u, v6).unwrap_err(), QError::NotSupported);
    libos.bind(u, at(SERVER_IP, 0)).unwrap();
    assert_eq!(libos.pushto(u, Sga::from("x"), v6).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.push(u, Sga::from("x").with_addr(v6)).unwrap_err(), QError::NotSupported);
    // The queues are still usable after the refusals.
    libos.bind(t, at(SERVER_IP, 0)).unwrap();
    libos.listen(t, 1).unwrap();
}

#[test]
fn connect_off_the_subnet_or_to_a_bad_address_fails_at_the_call() {
    let h = sync_hosts("bad_dest");
    let libos = &h.client;
    let t = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    // No gateway: another subnet is unreachable.
    assert_eq!(libos.connect(t, "192.0.2.1:80".parse().unwrap()).unwrap_err(), QError::Unreachable);
    // Port 0 is no destination.
    assert_eq!(libos.connect(t, at(SERVER_IP, 0)).unwrap_err(), QError::AddressNotAvailable);
    // The queue is still unconnected and usable.
    assert_eq!(libos.pop(t).unwrap_err(), QError::NotConnected);
    let (l, laddr) = listener(&h.server);
    let aqt = h.server.accept(l).unwrap();
    wait(libos, libos.connect(t, laddr).unwrap()).ok().unwrap();
    wait(libos, aqt).into_accepted().unwrap();
}

// ---- tokens ---------------------------------------------------------------------------

#[test]
fn tokens_bad_and_consumed() {
    let h = sync_hosts("tokens");
    let (server, client) = (&h.server, &h.client);
    let (c, s) = tcp_pair(&h);
    let qt = client.push(c, Sga::from("once")).unwrap();
    assert_eq!(wait(client, qt).value, Ok(QValue::Pushed));
    // The result was taken: the token is gone, whatever the wait.
    assert_eq!(client.wait(qt, None), Err(QError::BadToken));
    assert_eq!(client.wait_any(&[qt], Some(GUARD)), Err(QError::BadToken));
    assert_eq!(client.wait_all(&[qt], Some(GUARD)), Err(QError::BadToken));
    let pop = server.pop(s).unwrap();
    assert_eq!(server.wait_any(&[pop, qt], Some(GUARD)), Err(QError::BadToken));
    assert_eq!(wait(server, pop).into_sga().unwrap().to_vec(), b"once");
    let made_up = QToken::from_raw(0x7777_0000_1234);
    assert_eq!(server.wait(made_up, Some(GUARD)), Err(QError::BadToken));
}

#[demi::test]
async fn sync_waits_inside_the_runtime_are_would_deadlock() {
    let (server, client) = hosts("would_deadlock");
    let (c, s) = tcp_pair_async(&server, &client).await;
    let pop = server.pop(s).unwrap();
    assert_eq!(server.wait(pop, None), Err(QError::WouldDeadlock));
    assert_eq!(client.wait_any(&[pop], None), Err(QError::WouldDeadlock));
    assert_eq!(client.blocking_push(c, Sga::from("data")).map(drop), Err(QError::WouldDeadlock));
    // The refused waits took nothing (the push inside blocking_push was started).
    assert_eq!(w(pop).await.into_sga().unwrap().to_vec(), b"data");
}

// ---- wait_any, wait_all, timeouts across connections -------------------------------------

#[test]
fn wait_any_returns_the_queue_with_data_and_leaves_the_others_pending() {
    let h = sync_hosts("wait_any");
    let (server, client) = (&h.server, &h.client);
    let pairs: Vec<(QDesc, QDesc)> = (0..3).map(|_| tcp_pair(&h)).collect();
    let pops: Vec<QToken> = pairs.iter().map(|&(_, s)| server.pop(s).unwrap()).collect();
    wait(client, client.push(pairs[1].0, Sga::from("for one")).unwrap()).ok().unwrap();

    let (i, r) = server.wait_any(&pops, Some(GUARD)).unwrap();
    assert_eq!(i, 1);
    assert_eq!((r.qt, r.qd, r.opcode), (pops[1], pairs[1].1, OpCode::Pop));
    assert_eq!(r.into_sga().unwrap().to_vec(), b"for one");
    assert!(!is_done(server, pops[0]) && !is_done(server, pops[2]), "the others are still pending");

    // The others stay waitable, individually and as a group.
    let rest = [pops[0], pops[2]];
    assert_eq!(server.wait_any(&rest, Some(Duration::from_millis(5))), Err(QError::TimedOut));
    wait(client, client.push(pairs[2].0, Sga::from("for two")).unwrap()).ok().unwrap();
    let (i, r) = server.wait_any(&rest, Some(GUARD)).unwrap();
    assert_eq!((i, r.into_sga().unwrap().to_vec()), (1, b"for two".to_vec()));
    wait(client, client.push(pairs[0].0, Sga::from("for zero")).unwrap()).ok().unwrap();
    assert_eq!(wait(server, pops[0]).into_sga().unwrap().to_vec(), b"for zero");
}

#[test]
fn wait_any_across_tcp_and_udp_queues_of_both_hosts() {
    // Tokens of different queues, kinds and libOSes (one runtime) in one wait_any.
    let h = sync_hosts("wait_any_mixed");
    let (server, client) = (&h.server, &h.client);
    let (c, s) = tcp_pair(&h);
    let (su, saddr) = udp_on(server, SERVER_IP);
    let (cu, _) = udp_on(client, CLIENT_IP);
    let (l, laddr) = listener(server);
    let tokens = [server.pop(s).unwrap(), client.pop(c).unwrap(), server.pop(su).unwrap(), server.accept(l).unwrap()];
    assert_eq!(server.wait_any(&tokens, Some(Duration::from_millis(5))), Err(QError::TimedOut));

    wait(client, client.pushto(cu, Sga::from("datagram"), saddr).unwrap()).ok().unwrap();
    let (i, r) = client.wait_any(&tokens, Some(GUARD)).unwrap();
    assert_eq!((i, r.qd, r.into_sga().unwrap().to_vec()), (2, su, b"datagram".to_vec()));

    let t = client.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let connect = client.connect(t, laddr).unwrap();
    let left = [tokens[0], tokens[1], tokens[3]];
    let (i, r) = client.wait_any(&left, Some(GUARD)).unwrap();
    assert_eq!((i, r.opcode), (2, OpCode::Accept));
    wait(client, connect).ok().unwrap();

    wait(server, server.push(s, Sga::from("to client")).unwrap()).ok().unwrap();
    let (i, r) = server.wait_any(&left[..2], Some(GUARD)).unwrap();
    assert_eq!((i, r.into_sga().unwrap().to_vec()), (1, b"to client".to_vec()));
    assert!(!is_done(server, tokens[0]));
}

#[test]
fn a_timed_out_wait_all_takes_no_result() {
    let h = sync_hosts("wait_all_timeout");
    let (server, client) = (&h.server, &h.client);
    let (c1, s1) = tcp_pair(&h);
    let (c2, s2) = tcp_pair(&h);
    let (p1, p2) = (server.pop(s1).unwrap(), server.pop(s2).unwrap());
    wait(client, client.push(c1, Sga::from("one")).unwrap()).ok().unwrap();
    assert_eq!(server.wait_all(&[p1, p2], Some(Duration::from_millis(10))), Err(QError::TimedOut));
    assert!(!is_done(server, p2));
    wait(client, client.push(c2, Sga::from("two")).unwrap()).ok().unwrap();
    let all = server.wait_all(&[p1, p2], Some(GUARD)).unwrap();
    assert_eq!(all[0].clone().into_sga().unwrap().to_vec(), b"one");
    assert_eq!(all[1].clone().into_sga().unwrap().to_vec(), b"two");
}

#[test]
fn a_timed_out_wait_leaves_the_token_to_complete_later() {
    let h = sync_hosts("wait_timeout");
    let (c, s) = tcp_pair(&h);
    let server = &h.server;
    let pop = server.pop(s).unwrap();
    let t0 = Instant::now();
    assert_eq!(server.wait(pop, Some(Duration::from_millis(20))), Err(QError::TimedOut));
    assert!(t0.elapsed() >= Duration::from_millis(20), "not before the deadline");
    assert!(!is_done(server, pop));
    wait(&h.client, h.client.push(c, Sga::from("late")).unwrap()).ok().unwrap();
    assert_eq!(wait(server, pop).into_sga().unwrap().to_vec(), b"late");
}

#[demi::test]
async fn async_wait_any_and_timeouts() {
    let (server, client) = hosts("async_wait_any");
    let (c1, s1) = tcp_pair_async(&server, &client).await;
    let (c2, s2) = tcp_pair_async(&server, &client).await;
    let pops = [server.pop(s1).unwrap(), server.pop(s2).unwrap()];
    assert_eq!(demi::wait_any(&pops, Some(Duration::from_millis(10))).await, Err(QError::TimedOut));
    let pusher = demi::spawn({
        let client = client.clone();
        async move { w(client.push(c2, Sga::from("second")).unwrap()).await.ok() }
    });
    let (i, r) = demi::wait_any(&pops, Some(GUARD)).await.unwrap();
    assert_eq!((i, r.into_sga().unwrap().to_vec()), (1, b"second".to_vec()));
    pusher.await.unwrap().unwrap();
    assert!(!server.runtime().op_is_done(pops[0]).unwrap());
    w(client.push(c1, Sga::from("first")).unwrap()).await.ok().unwrap();
    assert_eq!(w(pops[0]).await.into_sga().unwrap().to_vec(), b"first");
}

// ---- teardown with pending operations ---------------------------------------------------

#[demi::test]
async fn dropping_a_libos_inside_a_runtime_cancels_what_tasks_await() {
    let (server, client) = hosts("drop_cancels");
    let (_c, s) = tcp_pair_async(&server, &client).await;
    let pop = server.pop(s).unwrap();
    let waiter = demi::spawn(async move { pop.await.map(|r| r.value) });
    demi::yield_now().await;
    drop(server);
    assert_eq!(waiter.await.unwrap(), Ok(Err(QError::Canceled)));
}

#[demi::test]
async fn a_test_may_end_with_operations_and_tasks_pending() {
    let (server, client) = hosts("end_pending");
    let (c, s) = tcp_pair_async(&server, &client).await;
    let _ = server.pop(s).unwrap();
    let _ = client.push(c, Sga::from(vec![1u8; STUCK_PUSH])).unwrap();
    let (l, _) = listener(&server);
    let _ = server.accept(l).unwrap();
    let (u, _) = udp_on(&client, CLIENT_IP);
    let _ = client.pop(u).unwrap();
    demi::spawn(async move {
        let _ = client.pop(c).unwrap().await;
    })
    .detach();
    demi::yield_now().await;
    // Returning now drops the runtime with all of that pending: no panic, no hang.
}

// ---- buffers --------------------------------------------------------------------------

#[test]
fn pool_buffers_from_alloc_push_like_any_other_and_go_back_to_the_pool() {
    let h = sync_hosts("alloc_pool");
    let (server, client) = (&h.server, &h.client);
    let (c, s) = tcp_pair(&h);
    let pool = client.buffer_pool().clone();
    let mut sent = Vec::new();
    for i in 0..64u8 {
        let mut b = client.alloc(1000);
        assert!(b.is_pooled() && b.headroom() > 0);
        b.fill(i);
        let bytes = b.freeze();
        assert!(pool.contains(&bytes));
        sent.extend_from_slice(&bytes);
        wait(client, client.push(c, Sga::from(bytes)).unwrap()).ok().unwrap();
    }
    let big = client.alloc(pool.size() + 1);
    assert!(!big.is_pooled(), "larger than a pool buffer: from the heap");
    let got = pop_exact(server, s, sent.len());
    assert_eq!(got, sent);
    // Once the stack has sent and the peer acknowledged every byte, nothing holds
    // the pool buffers any more (the stack copied them into frames).
    let deadline = Instant::now() + Duration::from_secs(2);
    while pool.in_use() > 0 && Instant::now() < deadline {
        h.rt.block_on(async { demi::time::sleep(Duration::from_millis(5)).await });
    }
    assert_eq!(pool.in_use(), 0);
}
