//! UDP over the memory libOS: the semantics `posix_udp.rs` checks for the kernel's
//! sockets. One element is one datagram, in both directions, with the source address
//! on every popped element; `connect` sets a default destination; a datagram larger
//! than the MTU allows is refused, never truncated.
//!
//! The memory libOS does not fragment IP packets, so the largest datagram is the
//! MTU (1500) less the IPv4 and UDP headers: 1472 bytes (POSIX loopback: 65,507).

mod common;
mod memory_common;

use common::{pattern, w, wait, GUARD};
use demi::{Bytes, Domain, LibOs, OpCode, QError, QToken, QValue, Sga, SocketType};
use memory_common::*;

/// The largest UDP payload in one unfragmented packet of MTU 1500.
const MAX_PAYLOAD: usize = 1500 - 20 - 8;

/// Datagram sizes: one byte, something in between, the largest that fits.
const SIZES: [usize; 3] = [1, 1000, MAX_PAYLOAD];

#[test]
fn echo_sync_keeps_datagram_boundaries_and_source_addresses() {
    let h = sync_hosts("udp_echo_sync");
    let (server, client) = (&h.server, &h.client);
    let (sq, saddr) = udp_on(server, SERVER_IP);
    let (cq, caddr) = udp_on(client, CLIENT_IP);
    // The server's pops are waiting before anything is sent.
    let server_pops: Vec<QToken> = (0..3).map(|_| server.pop(sq).unwrap()).collect();
    let msgs: Vec<Vec<u8>> = SIZES.iter().enumerate().map(|(i, &n)| pattern(n, i as u32)).collect();
    // pushto, and push of an element that carries its destination.
    let pushes = vec![
        client.pushto(cq, Sga::from(msgs[0].clone()), saddr).unwrap(),
        client.push(cq, Sga::from(msgs[1].clone()).with_addr(saddr)).unwrap(),
        client.pushto(cq, Sga::from(msgs[2].clone()), saddr).unwrap(),
    ];
    for r in client.wait_all(&pushes, Some(GUARD)).unwrap() {
        assert_eq!((r.opcode, r.qd, r.value), (OpCode::Push, cq, Ok(QValue::Pushed)));
    }
    let got = server.wait_all(&server_pops, Some(GUARD)).unwrap();
    let mut echoes = Vec::new();
    for (r, msg) in got.into_iter().zip(&msgs) {
        assert_eq!((r.opcode, r.qd), (OpCode::Pop, sq));
        let sga = r.into_sga().unwrap();
        assert_eq!(sga.len(), msg.len(), "one pop is exactly one datagram");
        assert!(sga.to_vec() == *msg);
        assert_eq!(sga.addr(), Some(caddr), "the source address comes with the element");
        // Pushing the popped element sends it back where it came from.
        echoes.push(server.push(sq, sga).unwrap());
    }
    server.wait_all(&echoes, Some(GUARD)).unwrap();
    for msg in &msgs {
        let sga = wait(client, client.pop(cq).unwrap()).into_sga().unwrap();
        assert_eq!(sga.len(), msg.len());
        assert!(sga.to_vec() == *msg);
        assert_eq!(sga.addr(), Some(saddr));
    }
}

#[demi::test]
async fn echo_async_with_a_server_task() {
    let (server, client) = hosts("udp_echo_async");
    let (sq, saddr) = udp_on(&server, SERVER_IP);
    let (cq, caddr) = udp_on(&client, CLIENT_IP);
    let echo_task = demi::spawn({
        let server = server.clone();
        async move {
            let mut sizes = Vec::new();
            for _ in 0..SIZES.len() {
                let sga = w(server.pop(sq).unwrap()).await.into_sga().unwrap();
                let from = sga.addr().expect("source address");
                assert_eq!(from, caddr);
                sizes.push(sga.len());
                w(server.pushto(sq, sga, from).unwrap()).await.ok().unwrap();
            }
            sizes
        }
    });
    let msgs: Vec<Vec<u8>> = SIZES.iter().enumerate().map(|(i, &n)| pattern(n, 10 + i as u32)).collect();
    for msg in &msgs {
        // A multi-segment element is still one datagram.
        let (a, b) = msg.split_at(msg.len() / 2);
        let sga = Sga::from_segments([Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]);
        w(client.pushto(cq, sga, saddr).unwrap()).await.ok().unwrap();
    }
    for msg in &msgs {
        let sga = w(client.pop(cq).unwrap()).await.into_sga().unwrap();
        assert_eq!((sga.len(), sga.addr()), (msg.len(), Some(saddr)));
        assert!(sga.to_vec() == *msg);
    }
    assert_eq!(echo_task.await.unwrap(), SIZES);
}

#[demi::test]
async fn many_datagrams_pushed_back_to_back_pop_one_each_in_order() {
    // 200 datagrams of different sizes in flight at once: one pop, one datagram,
    // none merged, split, lost or reordered on the lossless link.
    let (server, client) = hosts("udp_many");
    let (sq, saddr) = udp_on(&server, SERVER_IP);
    let (cq, caddr) = udp_on(&client, CLIENT_IP);
    // One round trip first: until ARP has resolved the server's address, the stack
    // keeps only the last 16 datagrams for it (as a kernel keeps a bounded queue),
    // and UDP may drop.
    w(client.pushto(cq, Sga::from("warm up"), saddr).unwrap()).await.ok().unwrap();
    assert_eq!(w(server.pop(sq).unwrap()).await.into_sga().unwrap().to_vec(), b"warm up");
    let msgs: Vec<Vec<u8>> = (0..200).map(|i| pattern(1 + (i * 97) % MAX_PAYLOAD, i as u32)).collect();
    let pops: Vec<QToken> = (0..msgs.len()).map(|_| server.pop(sq).unwrap()).collect();
    let pushes: Vec<QToken> = msgs.iter().map(|m| client.pushto(cq, Sga::from(m.clone()), saddr).unwrap()).collect();
    for r in demi::wait_all(&pushes, Some(GUARD)).await.unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
    for (r, msg) in demi::wait_all(&pops, Some(GUARD)).await.unwrap().into_iter().zip(&msgs) {
        let sga = r.into_sga().unwrap();
        assert_eq!(sga.addr(), Some(caddr));
        assert!(sga.to_vec() == *msg);
    }
}

#[test]
fn connect_sets_the_default_destination() {
    let h = sync_hosts("udp_connect");
    let (server, client) = (&h.server, &h.client);
    let (sq, saddr) = udp_on(server, SERVER_IP);
    // An unbound client: connect binds it implicitly.
    let cq = client.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    let r = wait(client, client.connect(cq, saddr).unwrap());
    assert_eq!((r.opcode, r.value), (OpCode::Connect, Ok(QValue::Connected)));
    let caddr = client.local_addr(cq).unwrap();
    assert_eq!(caddr.ip(), CLIENT_IP);
    assert_ne!(caddr.port(), 0);
    assert_eq!(client.peer_addr(cq).unwrap(), saddr);

    wait(client, client.push(cq, Sga::from("no address needed")).unwrap()).ok().unwrap();
    let sga = wait(server, server.pop(sq).unwrap()).into_sga().unwrap();
    assert_eq!(sga.to_vec(), b"no address needed");
    assert_eq!(sga.addr(), Some(caddr));

    wait(server, server.pushto(sq, Sga::from("reply"), caddr).unwrap()).ok().unwrap();
    let sga = wait(client, client.pop(cq).unwrap()).into_sga().unwrap();
    assert_eq!((sga.to_vec(), sga.addr()), (b"reply".to_vec(), Some(saddr)));
}

#[test]
fn unbound_client_can_pop_the_reply_to_its_pushto() {
    // The usual UDP client: no bind, pushto a request, pop the answer. The first
    // send binds the queue to an ephemeral port.
    let h = sync_hosts("udp_unbound");
    let (server, client) = (&h.server, &h.client);
    let (sq, saddr) = udp_on(server, SERVER_IP);
    let cq = client.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    wait(client, client.pushto(cq, Sga::from("ping"), saddr).unwrap()).ok().unwrap();
    let req = wait(server, server.pop(sq).unwrap()).into_sga().unwrap();
    let caddr = req.addr().unwrap();
    assert_eq!(caddr.ip(), CLIENT_IP);
    assert_eq!(client.local_addr(cq).unwrap().port(), caddr.port());
    wait(server, server.push(sq, Sga::from("pong").with_addr(caddr)).unwrap()).ok().unwrap();
    let reply = wait(client, client.pop(cq).unwrap()).into_sga().unwrap();
    assert_eq!((reply.to_vec(), reply.addr()), (b"pong".to_vec(), Some(saddr)));
}

#[test]
fn empty_datagram_pops_as_an_empty_element_with_its_source() {
    let h = sync_hosts("udp_empty");
    let (server, client) = (&h.server, &h.client);
    let (sq, saddr) = udp_on(server, SERVER_IP);
    let (cq, caddr) = udp_on(client, CLIENT_IP);
    wait(client, client.pushto(cq, Sga::new(), saddr).unwrap()).ok().unwrap();
    wait(client, client.pushto(cq, Sga::from("after"), saddr).unwrap()).ok().unwrap();
    let first = wait(server, server.pop(sq).unwrap()).into_sga().unwrap();
    assert!(first.is_empty());
    assert_eq!(first.addr(), Some(caddr));
    let second = wait(server, server.pop(sq).unwrap()).into_sga().unwrap();
    assert_eq!(second.to_vec(), b"after");
}

#[test]
fn oversized_datagrams_are_refused_not_truncated() {
    let h = sync_hosts("udp_oversized");
    let (server, client) = (&h.server, &h.client);
    let (sq, saddr) = udp_on(server, SERVER_IP);
    let (cq, _) = udp_on(client, CLIENT_IP);
    // One byte over what the MTU carries: refused (by the call or in the completion).
    for size in [MAX_PAYLOAD + 1, 1500, 9000, 65_507] {
        let r = match client.pushto(cq, Sga::from(vec![0u8; size]), saddr) {
            Ok(qt) => wait(client, qt).value.map(|_| ()),
            Err(e) => Err(e),
        };
        assert_eq!(r, Err(QError::MessageTooLong), "{size} bytes");
    }
    // Beyond any UDP payload: refused by the call.
    assert_eq!(client.pushto(cq, Sga::from(vec![0u8; 65_536]), saddr).unwrap_err(), QError::MessageTooLong);
    // Nothing arrived; the queue still works, up to the limit.
    let max = pattern(MAX_PAYLOAD, 1);
    wait(client, client.pushto(cq, Sga::from(max.clone()), saddr).unwrap()).ok().unwrap();
    assert!(wait(server, server.pop(sq).unwrap()).into_sga().unwrap().to_vec() == max);
}

#[test]
fn close_cancels_pending_datagram_pops() {
    let h = sync_hosts("udp_close");
    let server = &h.server;
    let (qd, addr) = udp_on(server, SERVER_IP);
    let pops: Vec<QToken> = (0..3).map(|_| server.pop(qd).unwrap()).collect();
    server.close(qd).unwrap();
    for r in server.wait_all(&pops, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Err(QError::Canceled));
    }
    assert_eq!(server.pop(qd).unwrap_err(), QError::BadDescriptor);
    assert_eq!(server.push(qd, Sga::from("x")).unwrap_err(), QError::BadDescriptor);
    // The port is free again.
    let again = server.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    server.bind(again, addr).unwrap();
}

#[test]
fn datagrams_to_a_port_nobody_bound_are_dropped_and_the_queue_keeps_working() {
    // Nothing listens on the server's port 9: the datagram is sent (a push completes
    // when the datagram leaves) and dropped there.
    let h = sync_hosts("udp_no_port");
    let (server, client) = (&h.server, &h.client);
    let (cq, caddr) = udp_on(client, CLIENT_IP);
    wait(client, client.pushto(cq, Sga::from("anyone?"), at(SERVER_IP, 9)).unwrap()).ok().unwrap();
    let (sq, saddr) = udp_on(server, SERVER_IP);
    wait(client, client.pushto(cq, Sga::from("hello"), saddr).unwrap()).ok().unwrap();
    let sga = wait(server, server.pop(sq).unwrap()).into_sga().unwrap();
    assert_eq!((sga.to_vec(), sga.addr()), (b"hello".to_vec(), Some(caddr)));
}

#[test]
fn connected_socket_learns_the_port_is_closed() {
    // POSIX: ICMP port unreachable surfaces as a refused pop, not a hang. The memory
    // libOS's stack sends the ICMP error but ignores it on receipt.
    let h = sync_hosts("udp_refused");
    let client = &h.client;
    let (qd, _) = udp_on(client, CLIENT_IP);
    wait(client, client.connect(qd, at(SERVER_IP, 9)).unwrap()).ok().unwrap();
    let pop = client.pop(qd).unwrap();
    wait(client, client.push(qd, Sga::from("anyone?")).unwrap()).ok().unwrap();
    let r = client.wait(pop, Some(std::time::Duration::from_secs(1))).map(|r| r.value);
    assert_eq!(r, Ok(Err(QError::ConnectionRefused)));
}

#[test]
fn the_sync_face_with_one_libos_talking_to_itself() {
    // One libOS made outside any runtime (it owns one), sending to its own address:
    // POSIX delivers that over loopback; so must the memory libOS.
    let libos = LibOs::new(&config(0, "udp_self")).unwrap();
    let (a, aaddr) = udp_on(&libos, SERVER_IP);
    let (b, baddr) = udp_on(&libos, SERVER_IP);
    wait(&libos, libos.pushto(a, Sga::from("to myself"), baddr).unwrap()).ok().unwrap();
    let got = libos.wait(libos.pop(b).unwrap(), Some(std::time::Duration::from_secs(2)));
    let sga = got.expect("a datagram to the libOS's own address arrives").into_sga().unwrap();
    assert_eq!((sga.to_vec(), sga.addr()), (b"to myself".to_vec(), Some(aaddr)));
}
