//! UDP over the POSIX libOS: one element is one datagram, in both directions, with
//! the source address on every popped element; `connect` sets a default destination.

mod common;

use common::*;
use demi::{Bytes, Domain, LibOs, QError, QToken, QValue, Sga, SocketType};
use std::net::SocketAddr;

/// Datagram sizes: one byte, one Ethernet-sized payload, the largest IPv4 payload.
const SIZES: [usize; 3] = [1, 1472, 65_507];

/// A loopback UDP address where nothing listens.
fn unused_udp_addr(libos: &LibOs) -> SocketAddr {
    let (qd, addr) = udp(libos);
    libos.close(qd).unwrap();
    addr
}

#[test]
fn echo_sync_keeps_datagram_boundaries_and_source_addresses() {
    let libos = LibOs::posix().unwrap();
    let (server, saddr) = udp(&libos);
    let (client, caddr) = udp(&libos);
    // The server's pops are waiting before anything is sent.
    let server_pops: Vec<QToken> = (0..3).map(|_| libos.pop(server).unwrap()).collect();
    let msgs: Vec<Vec<u8>> = SIZES.iter().enumerate().map(|(i, &n)| pattern(n, i as u32)).collect();
    // pushto, and push of an element that carries its destination.
    let pushes = vec![
        libos.pushto(client, Sga::from(msgs[0].clone()), saddr).unwrap(),
        libos.push(client, Sga::from(msgs[1].clone()).with_addr(saddr)).unwrap(),
        libos.pushto(client, Sga::from(msgs[2].clone()), saddr).unwrap(),
    ];
    for r in libos.wait_all(&pushes, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
    let got = libos.wait_all(&server_pops, Some(GUARD)).unwrap();
    let mut echoes = Vec::new();
    for (r, msg) in got.into_iter().zip(&msgs) {
        let sga = r.into_sga().unwrap();
        assert_eq!(sga.len(), msg.len(), "one pop is exactly one datagram");
        assert!(sga.to_vec() == *msg);
        assert_eq!(sga.addr(), Some(caddr), "the source address comes with the element");
        // Pushing the popped element sends it back where it came from.
        echoes.push(libos.push(server, sga).unwrap());
    }
    libos.wait_all(&echoes, Some(GUARD)).unwrap();
    for msg in &msgs {
        let sga = wait(&libos, libos.pop(client).unwrap()).into_sga().unwrap();
        assert_eq!(sga.len(), msg.len());
        assert!(sga.to_vec() == *msg);
        assert_eq!(sga.addr(), Some(saddr));
    }
}

#[demi::test]
async fn echo_async_with_a_server_task() {
    let libos = LibOs::current().unwrap();
    let (server, saddr) = udp(&libos);
    let (client, caddr) = udp(&libos);
    let echo_task = demi::spawn({
        let libos = libos.clone();
        async move {
            let mut sizes = Vec::new();
            for _ in 0..SIZES.len() {
                let sga = w(libos.pop(server).unwrap()).await.into_sga().unwrap();
                let from = sga.addr().expect("source address");
                assert_eq!(from, caddr);
                sizes.push(sga.len());
                w(libos.pushto(server, sga, from).unwrap()).await.ok().unwrap();
            }
            sizes
        }
    });
    let msgs: Vec<Vec<u8>> = SIZES.iter().enumerate().map(|(i, &n)| pattern(n, 10 + i as u32)).collect();
    for msg in &msgs {
        // A multi-segment element is still one datagram.
        let (a, b) = msg.split_at(msg.len() / 2);
        let sga = Sga::from_segments([Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]);
        w(libos.pushto(client, sga, saddr).unwrap()).await.ok().unwrap();
    }
    for msg in &msgs {
        let sga = w(libos.pop(client).unwrap()).await.into_sga().unwrap();
        assert_eq!((sga.len(), sga.addr()), (msg.len(), Some(saddr)));
        assert!(sga.to_vec() == *msg);
    }
    assert_eq!(echo_task.await.unwrap(), SIZES);
}

#[test]
fn connect_sets_the_default_destination() {
    let libos = LibOs::posix().unwrap();
    let (server, saddr) = udp(&libos);
    // An unbound client: connect binds it implicitly.
    let client = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    let r = wait(&libos, libos.connect(client, saddr).unwrap());
    assert_eq!((r.opcode, r.value), (demi::OpCode::Connect, Ok(QValue::Connected)));
    let caddr = libos.local_addr(client).unwrap();
    assert_ne!(caddr.port(), 0);
    assert_eq!(libos.peer_addr(client).unwrap(), saddr);

    wait(&libos, libos.push(client, Sga::from("no address needed")).unwrap()).ok().unwrap();
    let sga = wait(&libos, libos.pop(server).unwrap()).into_sga().unwrap();
    assert_eq!(sga.to_vec(), b"no address needed");
    assert_eq!(sga.addr(), Some(caddr));

    wait(&libos, libos.pushto(server, Sga::from("reply"), caddr).unwrap()).ok().unwrap();
    let sga = wait(&libos, libos.pop(client).unwrap()).into_sga().unwrap();
    assert_eq!((sga.to_vec(), sga.addr()), (b"reply".to_vec(), Some(saddr)));
}

#[test]
fn unbound_client_can_pop_the_reply_to_its_pushto() {
    // The usual UDP client: no bind, pushto a request, pop the answer. The kernel
    // binds the socket on the first send.
    let libos = LibOs::posix().unwrap();
    let (server, saddr) = udp(&libos);
    let client = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    wait(&libos, libos.pushto(client, Sga::from("ping"), saddr).unwrap()).ok().unwrap();
    let req = wait(&libos, libos.pop(server).unwrap()).into_sga().unwrap();
    let caddr = req.addr().unwrap();
    assert_eq!(libos.local_addr(client).unwrap().port(), caddr.port());
    wait(&libos, libos.push(server, Sga::from("pong").with_addr(caddr)).unwrap()).ok().unwrap();
    let reply = wait(&libos, libos.pop(client).unwrap()).into_sga().unwrap();
    assert_eq!((reply.to_vec(), reply.addr()), (b"pong".to_vec(), Some(saddr)));
}

#[test]
fn empty_datagram_pops_as_an_empty_element_with_its_source() {
    let libos = LibOs::posix().unwrap();
    let (server, saddr) = udp(&libos);
    let (client, caddr) = udp(&libos);
    wait(&libos, libos.pushto(client, Sga::new(), saddr).unwrap()).ok().unwrap();
    wait(&libos, libos.pushto(client, Sga::from("after"), saddr).unwrap()).ok().unwrap();
    let first = wait(&libos, libos.pop(server).unwrap()).into_sga().unwrap();
    assert!(first.is_empty());
    assert_eq!(first.addr(), Some(caddr));
    let second = wait(&libos, libos.pop(server).unwrap()).into_sga().unwrap();
    assert_eq!(second.to_vec(), b"after");
}

#[test]
fn connected_socket_learns_the_port_is_closed() {
    // ICMP port unreachable on loopback surfaces as a refused pop, not a hang.
    let libos = LibOs::posix().unwrap();
    let dead = unused_udp_addr(&libos);
    let (qd, _) = udp(&libos);
    wait(&libos, libos.connect(qd, dead).unwrap()).ok().unwrap();
    let pop = libos.pop(qd).unwrap();
    wait(&libos, libos.push(qd, Sga::from("anyone?")).unwrap()).ok().unwrap();
    assert_eq!(wait(&libos, pop).value, Err(QError::ConnectionRefused));
}

#[test]
fn oversized_datagrams_are_refused_not_truncated() {
    let libos = LibOs::posix().unwrap();
    let (server, saddr) = udp(&libos);
    let (client, _) = udp(&libos);
    // Beyond any UDP payload: refused by the call.
    assert_eq!(libos.pushto(client, Sga::from(vec![0u8; 65_536]), saddr).unwrap_err(), QError::MessageTooLong);
    // Beyond the IPv4 payload limit: the kernel refuses it (call or completion).
    let r = match libos.pushto(client, Sga::from(vec![0u8; 65_508]), saddr) {
        Ok(qt) => wait(&libos, qt).value.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(r, Err(QError::MessageTooLong));
    // Nothing arrived; the socket still works.
    wait(&libos, libos.pushto(client, Sga::from("ok"), saddr).unwrap()).ok().unwrap();
    assert_eq!(wait(&libos, libos.pop(server).unwrap()).into_sga().unwrap().to_vec(), b"ok");
}

#[test]
fn close_cancels_pending_datagram_pops() {
    let libos = LibOs::posix().unwrap();
    let (qd, _) = udp(&libos);
    let pops: Vec<QToken> = (0..3).map(|_| libos.pop(qd).unwrap()).collect();
    libos.close(qd).unwrap();
    for r in libos.wait_all(&pops, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Err(QError::Canceled));
    }
    assert_eq!(libos.pop(qd).unwrap_err(), QError::BadDescriptor);
}
