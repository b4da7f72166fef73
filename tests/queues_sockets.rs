//! Queue combinators over sockets: UDP and TCP on the POSIX libOS and on the
//! user-level stack (memory libOS, two stacks in one process), including the
//! declarative filter predicate applied at the packet level by the user-level stack.

mod common;
mod memory_common;

use common::{lo, pattern, udp, w, wait, GUARD};
use demi::{Domain, LibOs, Predicate, Proto, QError, QValue, Sga, SocketType};
use memory_common::*;
use std::time::Duration;

fn text(sga: Sga) -> String {
    String::from_utf8(sga.to_vec()).unwrap()
}

// ---- POSIX libOS ----------------------------------------------------------------------

#[test]
fn posix_filter_over_a_merge_of_two_udp_sockets() {
    let l = LibOs::posix().unwrap();
    let (s1, a1) = udp(&l);
    let (s2, a2) = udp(&l);
    let (tx, txaddr) = udp(&l);
    let merged = l.merge(s1, s2).unwrap();
    let only_tx = l.filter(merged, Predicate::peer(txaddr).and(Predicate::proto(Proto::Udp))).unwrap();
    let (other, _) = udp(&l);
    for (i, to) in [a1, a2, a1, a2].into_iter().enumerate() {
        wait(&l, l.pushto(other, Sga::from(format!("noise{i}").into_bytes()), to).unwrap()).ok().unwrap();
        wait(&l, l.pushto(tx, Sga::from(format!("msg{i}").into_bytes()), to).unwrap()).ok().unwrap();
    }
    let mut got: Vec<String> = (0..4)
        .map(|_| {
            let sga = wait(&l, l.pop(only_tx).unwrap()).into_sga().unwrap();
            assert_eq!(sga.addr(), Some(txaddr), "the source address comes through");
            text(sga)
        })
        .collect();
    got.sort();
    assert_eq!(got, ["msg0", "msg1", "msg2", "msg3"]);
    let st = l.filter_stats(only_tx).unwrap();
    assert_eq!((st.passed, st.offloaded), (4, false), "the POSIX libOS filters on the CPU");
    // A push to the merge goes out of both sockets.
    wait(&l, l.push(merged, Sga::from(&b"to tx"[..]).with_addr(txaddr)).unwrap()).ok().unwrap();
    let froms: Vec<_> = (0..2).map(|_| wait(&l, l.pop(tx).unwrap()).into_sga().unwrap().addr().unwrap()).collect();
    assert!(froms.contains(&a1) && froms.contains(&a2));
}

#[test]
fn posix_qconnect_relays_tcp_into_a_memory_queue_and_ends_at_eof() {
    let l = LibOs::posix().unwrap();
    let (c, s) = common::tcp_pair(&l);
    let inbox = l.queue().unwrap();
    let upper = l.map(s, |sga: Sga| Sga::from(sga.to_vec().to_ascii_uppercase())).unwrap();
    let qt = l.qconnect(upper, inbox).unwrap();
    let data = pattern(100_000, 3).iter().map(|b| b'a' + b % 26).collect::<Vec<u8>>();
    wait(&l, l.push(c, Sga::from(data.clone())).unwrap()).ok().unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        got.extend(wait(&l, l.pop(inbox).unwrap()).into_sga().unwrap().to_vec());
    }
    assert_eq!(got, data.to_ascii_uppercase());
    // The peer's FIN ends the map (an empty element) and so the connection.
    l.close(c).unwrap();
    assert_eq!(wait(&l, qt).value, Ok(QValue::Closed));
    let eof = wait(&l, l.pop(upper).unwrap()).into_sga().unwrap();
    assert!(eof.is_empty(), "a map ends with its input's end of stream");
    l.close(upper).unwrap();
    l.close(s).unwrap();
}

#[test]
fn posix_qconnect_between_two_tcp_connections_and_closed_inputs() {
    let l = LibOs::posix().unwrap();
    let (c1, s1) = common::tcp_pair(&l);
    let (c2, s2) = common::tcp_pair(&l);
    // c1 → s1 ⇒ s2 → c2: a TCP relay.
    let qt = l.qconnect(s1, s2).unwrap();
    let data = pattern(300_000, 9);
    wait(&l, l.push(c1, Sga::from(data.clone())).unwrap()).ok().unwrap();
    assert_eq!(common::pop_exact(&l, c2, data.len()), data);
    // Closing qin (locally) ends the relay.
    l.close(s1).unwrap();
    assert_eq!(wait(&l, qt).value, Ok(QValue::Closed));
    // A combinator over a closed socket reports it as a closed input.
    let f = l.filter(s1, |_: &Sga| true).unwrap();
    assert_eq!(wait(&l, l.pop(f).unwrap()).value, Err(QError::Canceled));
    for qd in [f, c1, c2, s2] {
        l.close(qd).unwrap();
    }
}

// ---- user-level stack (memory libOS) --------------------------------------------------

#[demi::test]
async fn netstack_udp_filter_is_applied_to_frames_before_the_stack() {
    let (server, client) = hosts("queues_offload");
    warm_up(&server, &client).await;
    let (sq, saddr) = udp_on(&server, SERVER_IP);
    let (good, gaddr) = udp_on(&client, CLIENT_IP);
    let (bad, _) = udp_on(&client, CLIENT_IP);
    let pred = Predicate::peer(gaddr).and(Predicate::bytes_at(0, *b"OK"));
    let f = server.filter(sq, pred).unwrap();
    assert!(server.filter_stats(f).unwrap().offloaded, "installed in the stack's driver");
    for i in 0..10u32 {
        let body = if i % 2 == 0 { format!("OK {i}") } else { format!("NO {i}") };
        w(client.pushto(good, Sga::from(body.into_bytes()), saddr).unwrap()).await.ok().unwrap();
        w(client.pushto(bad, Sga::from(format!("OK bad {i}").into_bytes()), saddr).unwrap()).await.ok().unwrap();
    }
    for i in (0..10).step_by(2) {
        let sga = w(server.pop(f).unwrap()).await.into_sga().unwrap();
        assert_eq!(sga.addr(), Some(gaddr));
        assert_eq!(text(sga), format!("OK {i}"));
    }
    let st = server.filter_stats(f).unwrap();
    assert_eq!(st.passed, 5);
    assert_eq!(st.dropped_offload, 15, "failing datagrams never reached the queue");
    assert_eq!(st.dropped, 0, "so the CPU had nothing to drop");
    // The socket itself now delivers only what the predicate lets through.
    let direct = server.pop(sq).unwrap();
    w(client.pushto(bad, Sga::from(&b"OK but from bad"[..]), saddr).unwrap()).await.ok().unwrap();
    w(client.pushto(good, Sga::from(&b"OK direct"[..]), saddr).unwrap()).await.ok().unwrap();
    assert_eq!(text(w(direct).await.into_sga().unwrap()), "OK direct");
    // Closing the filter removes the predicate from the driver.
    server.close(f).unwrap();
    w(client.pushto(bad, Sga::from(&b"from bad, unfiltered"[..]), saddr).unwrap()).await.ok().unwrap();
    assert_eq!(text(w(server.pop(sq).unwrap()).await.into_sga().unwrap()), "from bad, unfiltered");
    // A second filter on a socket that already has one runs on the CPU only.
    let f1 = server.filter(sq, Predicate::len_between(0, 100)).unwrap();
    let f2 = server.filter(sq, Predicate::len_between(0, 10)).unwrap();
    assert!(server.filter_stats(f1).unwrap().offloaded);
    assert!(!server.filter_stats(f2).unwrap().offloaded);
    // Closing the socket removes it too; the filter ends.
    let ended = server.pop(f1).unwrap();
    server.close(sq).unwrap();
    assert_eq!(demi::wait(ended, Some(GUARD)).await.unwrap().value, Err(QError::Canceled));
    assert!(!server.filter_stats(f1).unwrap().offloaded, "removed with its socket");
    server.close(f1).unwrap();
    server.close(f2).unwrap();
}

#[demi::test]
async fn netstack_merge_of_tcp_and_udp_and_a_memory_queue() {
    let (server, client) = hosts("queues_merge_kinds");
    warm_up(&server, &client).await;
    let (cq, sq) = tcp_pair_async(&server, &client).await;
    let (uq, uaddr) = udp_on(&server, SERVER_IP);
    let (cu, _) = udp_on(&client, CLIENT_IP);
    let mem = server.queue().unwrap();
    let m1 = server.merge(sq, uq).unwrap();
    let all = server.merge(m1, mem).unwrap();
    w(client.push(cq, Sga::from(&b"tcp"[..])).unwrap()).await.ok().unwrap();
    w(client.pushto(cu, Sga::from(&b"udp"[..]), uaddr).unwrap()).await.ok().unwrap();
    w(server.push(mem, Sga::from(&b"mem"[..])).unwrap()).await.ok().unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(text(w(server.pop(all).unwrap()).await.into_sga().unwrap()));
    }
    got.sort();
    assert_eq!(got, ["mem", "tcp", "udp"]);
    // The TCP peer's close ends only that input of the merge.
    client.close(cq).unwrap();
    w(server.push(mem, Sga::from(&b"after eof"[..])).unwrap()).await.ok().unwrap();
    assert_eq!(text(w(server.pop(all).unwrap()).await.into_sga().unwrap()), "after eof");
    for qd in [all, m1, mem, uq, sq] {
        server.close(qd).unwrap();
    }
    client.close(cu).unwrap();
}

#[test]
fn combinators_refuse_socket_calls_and_bad_inputs() {
    let l = LibOs::posix().unwrap();
    let q = l.queue().unwrap();
    let m = l.map(q, |s: Sga| s).unwrap();
    assert_eq!(l.bind(m, lo()), Err(QError::BadDescriptor));
    assert_eq!(l.accept(q), Err(QError::BadDescriptor));
    assert!(matches!(l.filter_stats(m), Err(QError::InvalidArgument(_))));
    let tcp = l.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    // An unconnected TCP socket as input: its pop fails, which ends the map.
    let mt = l.map(tcp, |s: Sga| s).unwrap();
    assert_eq!(l.wait(l.pop(mt).unwrap(), Some(GUARD)).unwrap().value, Err(QError::NotConnected));
    // A push through to it fails the same way, in the completion.
    let r = l.wait(l.push(mt, Sga::from(&b"x"[..])).unwrap(), Some(Duration::from_secs(5))).unwrap();
    assert_eq!(r.value, Err(QError::NotConnected));
}

#[test]
fn merge_reports_an_inputs_error_once_and_goes_on() {
    let l = LibOs::posix().unwrap();
    let mem = l.queue().unwrap();
    let unconnected = l.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let m = l.merge(unconnected, mem).unwrap();
    // The TCP input's pop fails: one pop of the merge reports it …
    assert_eq!(wait(&l, l.pop(m).unwrap()).value, Err(QError::NotConnected));
    // … and the merge goes on with the other input.
    wait(&l, l.push(mem, Sga::from(&b"fine"[..])).unwrap()).ok().unwrap();
    assert_eq!(text(wait(&l, l.pop(m).unwrap()).into_sga().unwrap()), "fine");
    l.close(mem).unwrap();
    assert_eq!(wait(&l, l.pop(m).unwrap()).value, Err(QError::Canceled), "then the last input's end");
}

#[test]
fn qconnect_reports_a_failed_push() {
    let l = LibOs::posix().unwrap();
    let src = l.queue().unwrap();
    let unconnected = l.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let qt = l.qconnect(src, unconnected).unwrap();
    wait(&l, l.push(src, Sga::from(&b"x"[..])).unwrap()).ok().unwrap();
    assert_eq!(wait(&l, qt).value, Err(QError::NotConnected));
}

#[test]
fn closing_a_filter_over_a_socket_drops_at_most_its_one_read() {
    let l = LibOs::posix().unwrap();
    let (rx, rxaddr) = udp(&l);
    let (tx, _) = udp(&l);
    let f = l.filter(rx, |_: &Sga| true).unwrap();
    let waiting = l.pop(f).unwrap();
    assert_eq!(l.wait(waiting, Some(Duration::from_millis(20))).err(), Some(QError::TimedOut));
    l.close(f).unwrap();
    assert_eq!(wait(&l, waiting).value, Err(QError::Canceled));
    for m in ["taken by the closed filter's read", "second"] {
        wait(&l, l.pushto(tx, Sga::from(m.as_bytes().to_vec()), rxaddr).unwrap()).ok().unwrap();
    }
    // The socket's own pops see what the abandoned read did not take.
    assert_eq!(text(wait(&l, l.pop(rx).unwrap()).into_sga().unwrap()), "second");
}

#[test]
fn posix_sort_over_a_udp_socket_pops_urgent_datagrams_first() {
    let l = LibOs::posix().unwrap();
    let (rx, rxaddr) = udp(&l);
    let (tx, _) = udp(&l);
    let s = l.sort(rx, |a: &Sga, b: &Sga| a.to_vec()[0].cmp(&b.to_vec()[0])).unwrap();
    for m in ["1 bulk", "9 urgent", "5 normal", "1 bulk again"] {
        wait(&l, l.pushto(tx, Sga::from(m.as_bytes().to_vec()), rxaddr).unwrap()).ok().unwrap();
    }
    // Let the sort take in what has arrived (it reads ahead on its own).
    let idle = l.queue().unwrap();
    let _ = l.wait(l.pop(idle).unwrap(), Some(Duration::from_millis(50)));
    let got: Vec<String> = (0..4).map(|_| text(wait(&l, l.pop(s).unwrap()).into_sga().unwrap())).collect();
    assert_eq!(got, ["9 urgent", "5 normal", "1 bulk", "1 bulk again"]);
}
