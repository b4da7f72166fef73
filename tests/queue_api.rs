//! Queue-API semantics over the POSIX libOS: closing and cancellation, misuse as
//! typed errors (never panics), tokens (bad, consumed, waited from the wrong place),
//! `wait_any` / `wait_all` / timeouts, and tearing down a libOS or runtime with
//! operations still pending.

mod common;

use common::*;
use demi::{Domain, LibOs, OpCode, QDesc, QError, QToken, QValue, Sga, SocketType};
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A push that cannot complete: far more than the socket buffers of a loopback
/// connection hold, to a peer that does not read.
const STUCK_PUSH: usize = 64 << 20;

fn is_done(libos: &LibOs, qt: QToken) -> bool {
    libos.runtime().op_is_done(qt).unwrap()
}

/// Drives the runtime, taking no result, until `qt` is complete.
fn drive_until_done(libos: &LibOs, qt: QToken) {
    let deadline = Instant::now() + GUARD;
    libos.runtime().block_on(async {
        while !is_done(libos, qt) {
            assert!(Instant::now() < deadline, "{qt:?} never completed");
            demi::yield_now().await;
        }
    });
}

// ---- close ----------------------------------------------------------------------------

#[test]
fn close_cancels_pending_pops_accepts_and_pushes() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let pops: Vec<QToken> = (0..2).map(|_| libos.pop(s).unwrap()).collect();
    let (lqd, _) = listener(&libos);
    let accepts: Vec<QToken> = (0..2).map(|_| libos.accept(lqd).unwrap()).collect();
    let (c2, _s2) = tcp_pair(&libos);
    let push = libos.push(c2, Sga::from(vec![0u8; STUCK_PUSH])).unwrap();
    let queued_push = libos.push(c2, Sga::from("behind it")).unwrap();
    // Give the runtime a turn: nothing of this can complete.
    assert_eq!(libos.wait_any(&[pops[0], accepts[0], push], Some(Duration::from_millis(1))), Err(QError::TimedOut));

    libos.close(s).unwrap();
    libos.close(lqd).unwrap();
    libos.close(c2).unwrap();
    // Cancelled at once, by close itself.
    for &qt in pops.iter().chain(&accepts).chain(&[push, queued_push]) {
        assert!(is_done(&libos, qt), "{qt:?} completed by close");
    }
    for (qt, op, qd) in [
        (pops[0], OpCode::Pop, s),
        (pops[1], OpCode::Pop, s),
        (accepts[0], OpCode::Accept, lqd),
        (accepts[1], OpCode::Accept, lqd),
        (push, OpCode::Push, c2),
        (queued_push, OpCode::Push, c2),
    ] {
        let r = wait(&libos, qt);
        assert_eq!((r.qt, r.opcode, r.qd, r.value), (qt, op, qd, Err(QError::Canceled)));
    }
    // The untouched end of the first pair sees the close as EOF.
    assert!(wait(&libos, libos.pop(c).unwrap()).into_sga().unwrap().is_empty());
}

#[test]
fn close_during_connect_completes_the_connect_token() {
    let libos = LibOs::posix().unwrap();
    let (l, laddr) = listener(&libos);
    let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let connect = libos.connect(qd, laddr).unwrap();
    libos.close(qd).unwrap();
    // Either it had already connected, or close cancelled it; it never hangs.
    let r = wait(&libos, connect).value;
    assert!(matches!(r, Ok(QValue::Connected) | Err(QError::Canceled)), "{r:?}");
    libos.close(l).unwrap();
}

#[test]
fn a_closed_descriptor_is_bad_for_every_call() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let (u, uaddr) = udp(&libos);
    let (l, _) = listener(&libos);
    for qd in [c, s, u, l] {
        libos.close(qd).unwrap();
    }
    let any: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for qd in [c, s, u, l] {
        let bad = Err(QError::BadDescriptor);
        assert_eq!(libos.push(qd, Sga::from("x")).map(drop), bad, "push {qd}");
        assert_eq!(libos.pushto(qd, Sga::from("x"), uaddr).map(drop), bad, "pushto {qd}");
        assert_eq!(libos.pop(qd).map(drop), bad, "pop {qd}");
        assert_eq!(libos.accept(qd).map(drop), bad, "accept {qd}");
        assert_eq!(libos.connect(qd, any).map(drop), bad, "connect {qd}");
        assert_eq!(libos.close(qd), bad, "close {qd}");
        assert_eq!(libos.bind(qd, lo()), bad, "bind {qd}");
        assert_eq!(libos.listen(qd, 1), bad, "listen {qd}");
        assert_eq!(libos.set_framing(qd, true), bad, "set_framing {qd}");
        assert_eq!(libos.set_linger(qd, None), bad, "set_linger {qd}");
        assert_eq!(libos.set_nodelay(qd, true), bad, "set_nodelay {qd}");
        assert_eq!(libos.local_addr(qd).map(drop), bad, "local_addr {qd}");
        assert_eq!(libos.peer_addr(qd).map(drop), bad, "peer_addr {qd}");
    }
    // New queues may reuse the slots; the old descriptors still name nothing.
    let fresh: Vec<QDesc> = (0..4).map(|_| libos.socket(Domain::Ipv4, SocketType::Stream).unwrap()).collect();
    for qd in [c, s, u, l] {
        assert!(!fresh.contains(&qd));
        assert_eq!(libos.pop(qd).map(drop), Err(QError::BadDescriptor));
    }
    // A made-up descriptor too.
    assert_eq!(libos.close(QDesc::from_raw(0xdead_0000_0007)), Err(QError::BadDescriptor));
}

#[demi::test]
async fn close_wakes_a_task_awaiting_a_pop_with_canceled() {
    let libos = LibOs::current().unwrap();
    let (_c, s) = tcp_pair_async(&libos).await;
    let (l, _) = listener(&libos);
    let pop = libos.pop(s).unwrap();
    let accept = libos.accept(l).unwrap();
    let waiter = demi::spawn(async move { (pop.await.unwrap().value, accept.await.unwrap().value) });
    demi::yield_now().await; // the waiter is now parked on its tokens
    assert!(!waiter.is_finished());
    libos.close(s).unwrap();
    libos.close(l).unwrap();
    assert_eq!(waiter.await.unwrap(), (Err(QError::Canceled), Err(QError::Canceled)));
}

// ---- misuse -----------------------------------------------------------------------------

#[test]
fn misuse_is_a_typed_error_never_a_panic() {
    let libos = LibOs::posix().unwrap();
    let stream = || libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let dgram = || libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();

    // accept on a queue that is not listening.
    let fresh = stream();
    assert_eq!(libos.accept(fresh).unwrap_err(), QError::InvalidState);
    let bound = stream();
    libos.bind(bound, lo()).unwrap();
    assert_eq!(libos.accept(bound).unwrap_err(), QError::InvalidState);
    let (u, uaddr) = udp(&libos);
    assert_eq!(libos.accept(u).unwrap_err(), QError::InvalidState);
    let (c, s) = tcp_pair(&libos);
    assert_eq!(libos.accept(s).unwrap_err(), QError::InvalidState);

    // Data on an unconnected stream.
    assert_eq!(libos.push(fresh, Sga::from("x")).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.pop(fresh).unwrap_err(), QError::NotConnected);
    let (l, laddr) = listener(&libos);
    assert_eq!(libos.push(l, Sga::from("x")).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.pop(l).unwrap_err(), QError::NotConnected);

    // listen: not on UDP, not twice, not on a connection.
    assert_eq!(libos.listen(u, 16).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.listen(dgram(), 16).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.listen(l, 16).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.listen(c, 16).unwrap_err(), QError::InvalidState);

    // bind: not twice; not to an address in use; not to an address that is not ours.
    assert_eq!(libos.bind(bound, lo()).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.bind(u, lo()).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.bind(c, lo()).unwrap_err(), QError::InvalidState);
    let other = stream();
    assert_eq!(libos.bind(other, laddr).unwrap_err(), QError::AddressInUse);
    let other_udp = dgram();
    assert_eq!(libos.bind(other_udp, uaddr).unwrap_err(), QError::AddressInUse);
    assert_eq!(libos.bind(other, "192.0.2.1:0".parse().unwrap()).unwrap_err(), QError::AddressNotAvailable);
    // A failed bind leaves the queue unbound: a good bind still works.
    libos.bind(other, lo()).unwrap();

    // connect: not on a listener, not twice.
    assert_eq!(libos.connect(l, laddr).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.connect(c, laddr).unwrap_err(), QError::AlreadyConnected);

    // Elements a stream cannot take.
    assert!(matches!(libos.push(c, Sga::new()), Err(QError::InvalidArgument(_))));
    assert!(matches!(libos.push(c, Sga::from_segments([demi::Bytes::new()])), Err(QError::InvalidArgument(_))));
    assert_eq!(libos.pushto(c, Sga::from("x"), laddr).unwrap_err(), QError::NotSupported);

    // UDP without a destination or a bound address.
    let lonely = dgram();
    assert_eq!(libos.push(lonely, Sga::from("x")).unwrap_err(), QError::NotConnected);
    assert_eq!(libos.pop(lonely).unwrap_err(), QError::InvalidState);
    assert_eq!(libos.set_framing(lonely, true).unwrap_err(), QError::NotSupported);
    assert_eq!(libos.set_nodelay(lonely, true).unwrap_err(), QError::NotSupported);

    // Through all of that, the queues that were fine still are.
    wait(&libos, libos.push(c, Sga::from("still fine")).unwrap()).ok().unwrap();
    assert_eq!(pop_exact(&libos, s, 10), b"still fine");
}

#[test]
fn tokens_bad_and_consumed() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let qt = libos.push(c, Sga::from("once")).unwrap();
    assert_eq!(wait(&libos, qt).value, Ok(QValue::Pushed));
    // The result was taken: the token is gone, whatever the wait.
    assert_eq!(libos.wait(qt, None), Err(QError::BadToken));
    assert_eq!(libos.wait(qt, Some(Duration::ZERO)), Err(QError::BadToken));
    assert_eq!(libos.wait_any(&[qt], Some(GUARD)), Err(QError::BadToken));
    assert_eq!(libos.wait_all(&[qt], Some(GUARD)), Err(QError::BadToken));
    // A bad token anywhere in a group fails the group, and leaves the others alone,
    // even one that is complete already.
    let pop = libos.pop(s).unwrap();
    drive_until_done(&libos, pop);
    assert_eq!(libos.wait_any(&[pop, qt], Some(GUARD)), Err(QError::BadToken));
    assert_eq!(libos.wait_all(&[pop, qt], Some(GUARD)), Err(QError::BadToken));
    assert_eq!(wait(&libos, pop).into_sga().unwrap().to_vec(), b"once");
    // A token that was never issued.
    let made_up = QToken::from_raw(0x7777_0000_1234);
    assert_eq!(libos.wait(made_up, Some(GUARD)), Err(QError::BadToken));
    assert_eq!(libos.runtime().op_is_done(made_up), Err(QError::BadToken));
    // Empty groups.
    assert!(matches!(libos.wait_any(&[], Some(GUARD)), Err(QError::InvalidArgument(_))));
    assert_eq!(libos.wait_all(&[], Some(GUARD)), Ok(vec![]));
}

#[demi::test]
async fn awaiting_a_consumed_token_is_bad_token() {
    let libos = LibOs::current().unwrap();
    let (c, _s) = tcp_pair_async(&libos).await;
    let qt = libos.push(c, Sga::from("x")).unwrap();
    qt.await.unwrap().ok().unwrap();
    assert_eq!(qt.await, Err(QError::BadToken));
    assert_eq!(demi::wait_any(&[qt], None).await, Err(QError::BadToken));
}

#[demi::test]
async fn sync_waits_inside_the_runtime_are_would_deadlock() {
    let libos = LibOs::current().unwrap();
    let (c, s) = tcp_pair_async(&libos).await;
    let pop = libos.pop(s).unwrap();
    // From the main future of #[demi::test]: refused at once, nothing blocks.
    assert_eq!(libos.wait(pop, None), Err(QError::WouldDeadlock));
    assert_eq!(libos.wait_any(&[pop], None), Err(QError::WouldDeadlock));
    assert_eq!(libos.wait_all(&[pop], None), Err(QError::WouldDeadlock));
    // From a spawned task as well.
    let in_task = demi::spawn({
        let libos = libos.clone();
        async move { (libos.wait(pop, None), libos.blocking_push(c, Sga::from("data"))) }
    });
    let (w1, w2) = in_task.await.unwrap();
    assert_eq!(w1, Err(QError::WouldDeadlock));
    assert_eq!(w2, Err(QError::WouldDeadlock));
    // The refused waits took nothing: the token still completes when awaited (the
    // push inside blocking_push was started and delivers its data).
    assert_eq!(w(pop).await.into_sga().unwrap().to_vec(), b"data");
}

#[test]
fn sync_wait_from_a_task_on_the_libos_own_runtime_is_would_deadlock() {
    let libos = LibOs::posix().unwrap(); // owns its runtime
    let (c, s) = tcp_pair(&libos);
    let pop = libos.pop(s).unwrap();
    let task = libos.runtime().spawn({
        let libos = libos.clone();
        async move {
            let refused = (libos.wait(pop, None), libos.blocking_pop(s).map(|r| r.qt));
            // The async face works here.
            let sga = pop.await.unwrap().into_sga().unwrap();
            (refused, sga.to_vec())
        }
    });
    assert!(libos.blocking_push(c, Sga::from("hi")).unwrap().ok().is_ok());
    let ((w1, w2), got) = libos.runtime().block_on(task).unwrap();
    assert_eq!(w1, Err(QError::WouldDeadlock));
    assert_eq!(w2, Err(QError::WouldDeadlock));
    assert_eq!(got, b"hi");
}

#[test]
fn blocking_push_and_blocking_pop_from_sync_code() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let r = libos.blocking_push(c, Sga::from("ping")).unwrap();
    assert_eq!((r.opcode, r.qd, r.value), (OpCode::Push, c, Ok(QValue::Pushed)));
    let r = libos.blocking_pop(s).unwrap();
    assert_eq!((r.opcode, r.qd), (OpCode::Pop, s));
    assert_eq!(r.into_sga().unwrap().to_vec(), b"ping");
    libos.blocking_push(s, Sga::from("pong")).unwrap().ok().unwrap();
    assert_eq!(libos.blocking_pop(c).unwrap().into_sga().unwrap().to_vec(), b"pong");
    assert_eq!(libos.blocking_pop(QDesc::from_raw(u64::MAX)).unwrap_err(), QError::BadDescriptor);
}

// ---- wait_any, wait_all, timeouts -----------------------------------------------------

#[test]
fn wait_any_returns_the_queue_with_data_and_leaves_the_others_pending() {
    let libos = LibOs::posix().unwrap();
    let pairs: Vec<(QDesc, QDesc)> = (0..3).map(|_| tcp_pair(&libos)).collect();
    let pops: Vec<QToken> = pairs.iter().map(|&(_, s)| libos.pop(s).unwrap()).collect();
    wait(&libos, libos.push(pairs[1].0, Sga::from("for one")).unwrap()).ok().unwrap();

    let (i, r) = libos.wait_any(&pops, Some(GUARD)).unwrap();
    assert_eq!(i, 1);
    assert_eq!((r.qt, r.qd, r.opcode), (pops[1], pairs[1].1, OpCode::Pop));
    assert_eq!(r.into_sga().unwrap().to_vec(), b"for one");
    assert!(!is_done(&libos, pops[0]) && !is_done(&libos, pops[2]), "the others are still pending");

    // The others stay waitable, individually and as a group.
    let rest = [pops[0], pops[2]];
    assert_eq!(libos.wait_any(&rest, Some(Duration::from_millis(5))), Err(QError::TimedOut));
    wait(&libos, libos.push(pairs[2].0, Sga::from("for two")).unwrap()).ok().unwrap();
    let (i, r) = libos.wait_any(&rest, Some(GUARD)).unwrap();
    assert_eq!((i, r.into_sga().unwrap().to_vec()), (1, b"for two".to_vec()));
    wait(&libos, libos.push(pairs[0].0, Sga::from("for zero")).unwrap()).ok().unwrap();
    assert_eq!(wait(&libos, pops[0]).into_sga().unwrap().to_vec(), b"for zero");
}

#[test]
fn wait_any_with_several_complete_returns_one_and_keeps_the_rest() {
    let libos = LibOs::posix().unwrap();
    let pairs: Vec<(QDesc, QDesc)> = (0..3).map(|_| tcp_pair(&libos)).collect();
    let pops: Vec<QToken> = pairs.iter().map(|&(_, s)| libos.pop(s).unwrap()).collect();
    for (i, &(c, _)) in pairs.iter().enumerate() {
        wait(&libos, libos.push(c, Sga::from(vec![i as u8; 3])).unwrap()).ok().unwrap();
    }
    let mut seen = Vec::new();
    let mut left: Vec<QToken> = pops.clone();
    while !left.is_empty() {
        let (i, r) = libos.wait_any(&left, Some(GUARD)).unwrap();
        let k = pops.iter().position(|&p| p == left[i]).unwrap();
        assert_eq!(r.into_sga().unwrap().to_vec(), vec![k as u8; 3]);
        seen.push(k);
        left.remove(i);
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
}

#[test]
fn a_timed_out_wait_leaves_the_token_to_complete_later() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = tcp_pair(&libos);
    let pop = libos.pop(s).unwrap();
    let t0 = Instant::now();
    assert_eq!(libos.wait(pop, Some(Duration::from_millis(30))), Err(QError::TimedOut));
    assert!(t0.elapsed() >= Duration::from_millis(30), "not before the deadline");
    assert!(!is_done(&libos, pop));
    assert_eq!(libos.wait(pop, Some(Duration::ZERO)), Err(QError::TimedOut));
    wait(&libos, libos.push(c, Sga::from("late")).unwrap()).ok().unwrap();
    assert_eq!(wait(&libos, pop).into_sga().unwrap().to_vec(), b"late");
}

#[test]
fn a_timed_out_wait_all_takes_no_result() {
    let libos = LibOs::posix().unwrap();
    let (c1, s1) = tcp_pair(&libos);
    let (c2, s2) = tcp_pair(&libos);
    let (p1, p2) = (libos.pop(s1).unwrap(), libos.pop(s2).unwrap());
    wait(&libos, libos.push(c1, Sga::from("one")).unwrap()).ok().unwrap();
    assert_eq!(libos.wait_all(&[p1, p2], Some(Duration::from_millis(10))), Err(QError::TimedOut));
    assert!(!is_done(&libos, p2));
    wait(&libos, libos.push(c2, Sga::from("two")).unwrap()).ok().unwrap();
    // Had the timed-out call taken p1's result, this would be BadToken.
    let all = libos.wait_all(&[p1, p2], Some(GUARD)).unwrap();
    assert_eq!(all[0].clone().into_sga().unwrap().to_vec(), b"one");
    assert_eq!(all[1].clone().into_sga().unwrap().to_vec(), b"two");
}

#[demi::test]
async fn async_wait_any_and_timeouts() {
    let libos = LibOs::current().unwrap();
    let (c1, s1) = tcp_pair_async(&libos).await;
    let (c2, s2) = tcp_pair_async(&libos).await;
    let pops = [libos.pop(s1).unwrap(), libos.pop(s2).unwrap()];
    assert_eq!(demi::wait_any(&pops, Some(Duration::from_millis(10))).await, Err(QError::TimedOut));
    assert_eq!(demi::wait(pops[0], Some(Duration::from_millis(10))).await, Err(QError::TimedOut));
    // A task supplies the data while we wait.
    let pusher = demi::spawn({
        let libos = libos.clone();
        async move { w(libos.push(c2, Sga::from("second")).unwrap()).await.ok() }
    });
    let (i, r) = demi::wait_any(&pops, Some(GUARD)).await.unwrap();
    assert_eq!((i, r.into_sga().unwrap().to_vec()), (1, b"second".to_vec()));
    pusher.await.unwrap().unwrap();
    assert!(!libos.runtime().op_is_done(pops[0]).unwrap());
    w(libos.push(c1, Sga::from("first")).unwrap()).await.ok().unwrap();
    assert_eq!(w(pops[0]).await.into_sga().unwrap().to_vec(), b"first");
}

// ---- teardown with pending operations ---------------------------------------------------

/// A kernel-socket peer that reports how its connection ended: the bytes read
/// before EOF, or the error.
fn kernel_peer() -> (SocketAddr, std::thread::JoinHandle<std::io::Result<usize>>) {
    let l = std::net::TcpListener::bind(lo()).unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(GUARD))?;
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).map(|_| sink.len())
    });
    (addr, t)
}

#[test]
fn dropping_a_libos_with_pending_operations_closes_everything() {
    let (peer_a, a) = kernel_peer();
    let (peer_b, b) = kernel_peer();
    let libos = LibOs::posix().unwrap();
    let qa = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let qb = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let connects = [libos.connect(qa, peer_a).unwrap(), libos.connect(qb, peer_b).unwrap()];
    libos.wait_all(&connects, Some(GUARD)).unwrap();
    let (l, laddr) = listener(&libos);
    let (u, _) = udp(&libos);
    let pending = [
        libos.pop(qa).unwrap(),
        libos.push(qb, Sga::from(vec![7u8; STUCK_PUSH])).unwrap(),
        libos.accept(l).unwrap(),
        libos.pop(u).unwrap(),
    ];
    assert!(pending.iter().all(|&qt| !is_done(&libos, qt)));
    drop(libos);
    // Both kernel peers see their connection end (the stuck push's tail is never
    // sent), and nothing listens on the listener's port any more.
    assert_eq!(a.join().unwrap().unwrap(), 0);
    let got = b.join().unwrap().unwrap();
    assert!(got < STUCK_PUSH, "read {got}");
    assert_eq!(std::net::TcpStream::connect(laddr).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn dropping_a_runtime_with_tasks_waiting_on_io_closes_their_sockets() {
    let (peer, done) = kernel_peer();
    let rt = demi::Runtime::new().unwrap();
    let laddr = rt.block_on(async {
        let libos = LibOs::posix().unwrap(); // on this runtime
        let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
        w(libos.connect(qd, peer).unwrap()).await.ok().unwrap();
        let (l, laddr) = listener(&libos);
        for _ in 0..3 {
            let libos = libos.clone();
            demi::spawn(async move {
                // Nobody sends: this waits until the runtime goes away.
                let _ = libos.pop(qd).unwrap().await;
            })
            .detach();
        }
        let libos2 = libos.clone();
        demi::spawn(async move {
            let _ = libos2.accept(l).unwrap().await;
        })
        .detach();
        demi::yield_now().await;
        laddr
    });
    drop(rt);
    assert_eq!(done.join().unwrap().unwrap(), 0, "the peer sees EOF");
    assert_eq!(std::net::TcpStream::connect(laddr).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
}

#[demi::test]
async fn dropping_a_libos_inside_a_runtime_cancels_what_tasks_await() {
    let libos = LibOs::posix().unwrap(); // a second libOS on the test's runtime
    let (_c, s) = tcp_pair_async(&libos).await;
    let pop = libos.pop(s).unwrap();
    let waiter = demi::spawn(async move { pop.await.map(|r| r.value) });
    demi::yield_now().await;
    drop(libos);
    assert_eq!(waiter.await.unwrap(), Ok(Err(QError::Canceled)));
}

#[demi::test]
async fn a_test_may_end_with_operations_and_tasks_pending() {
    let libos = LibOs::current().unwrap();
    let (c, s) = tcp_pair_async(&libos).await;
    let _ = libos.pop(s).unwrap();
    let _ = libos.push(c, Sga::from(vec![1u8; STUCK_PUSH])).unwrap();
    let (l, _) = listener(&libos);
    let _ = libos.accept(l).unwrap();
    let libos2 = libos.clone();
    demi::spawn(async move {
        let _ = libos2.pop(c).unwrap().await;
    })
    .detach();
    demi::yield_now().await;
    // Returning now drops the runtime with all of that pending: no panic, no hang.
}
