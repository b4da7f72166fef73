//! `demi::net` (TcpListener, TcpStream, UdpSocket) over the POSIX libOS and over
//! demi's own stack (memory libOS: two hosts in one process): byte streams through
//! futures-io's traits, end of stream, errors as `io::ErrorKind`s, datagrams.

mod common;

use demi::net::{TcpListener, TcpStream, UdpSocket};
use demi::{Config, LibOs};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use std::io::ErrorKind;

/// The server's and the client's libOS, and an address for the server to bind.
fn libos_pair(kind: &str, link: &str) -> (LibOs, LibOs, &'static str) {
    match kind {
        "posix" => {
            let l = LibOs::posix().unwrap();
            (l.clone(), l, "127.0.0.1:0")
        }
        _ => {
            let mut a = Config::memory(0);
            a.net.link = link.into();
            let mut b = Config::memory(1);
            b.net.link = link.into();
            (LibOs::new(&a).unwrap(), LibOs::new(&b).unwrap(), "198.18.0.1:0")
        }
    }
}

async fn stream_round_trip(kind: &str) {
    let (server_os, client_os, bind) = libos_pair(kind, "net_stream");
    let mut listener = TcpListener::bind_on(&server_os, bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let server = demi::spawn(async move {
        let (mut s, _peer) = listener.accept().await.unwrap();
        // Echo with small reads and writes, until end of stream.
        let mut buf = [0u8; 1000];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await.unwrap();
            total += n;
        }
        s.close().await.unwrap();
        total
    });
    let mut c = TcpStream::connect_on(&client_os, addr).await.unwrap();
    assert_eq!(c.peer_addr().unwrap(), addr);
    let writer_data = data.clone();
    let mut got = Vec::new();
    // Write everything in uneven pieces, reading the echo as it comes so that no
    // more than about 64 KB are in flight.
    let mut sent = 0;
    for chunk in writer_data.chunks(7777) {
        AsyncWriteExt::write_all(&mut c, chunk).await.unwrap();
        sent += chunk.len();
        while got.len() + 65_536 < sent {
            let mut buf = vec![0u8; 65536];
            let n = AsyncReadExt::read(&mut c, &mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    }
    c.flush().await.unwrap();
    while got.len() < data.len() {
        let mut buf = vec![0u8; 65536];
        let n = AsyncReadExt::read(&mut c, &mut buf).await.unwrap();
        assert!(n > 0, "end of stream after {} of {} bytes", got.len(), data.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "echoed bytes differ");
    c.close().await.unwrap();
    assert_eq!(server.await.unwrap(), data.len());
    assert_eq!(AsyncReadExt::read(&mut c, &mut [0u8; 10]).await.unwrap(), 0, "reads after close see end of stream");
    let e = AsyncWriteExt::write(&mut c, b"late").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected);
}

#[demi::test]
async fn tcp_stream_round_trip_posix() {
    stream_round_trip("posix").await;
}

#[demi::test]
async fn tcp_stream_round_trip_user_level_stack() {
    stream_round_trip("memory").await;
}

#[demi::test]
async fn read_to_end_sees_the_peers_close() {
    let (server_os, client_os, bind) = libos_pair("memory", "net_eof");
    let mut listener = TcpListener::bind_on(&server_os, bind).unwrap();
    let addr = listener.local_addr().unwrap();
    demi::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hello, ").await.unwrap();
        s.write_all(b"world").await.unwrap();
        // Dropping the stream closes it.
    })
    .detach();
    let mut c = TcpStream::connect_on(&client_os, addr).await.unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"hello, world");
}

#[demi::test]
async fn errors_map_to_io_error_kinds() {
    let os = LibOs::posix().unwrap();
    // A port nobody listens on (bind one, then drop it).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = TcpStream::connect_on(&os, port).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    let taken = TcpListener::bind_on(&os, "127.0.0.1:0").unwrap();
    let e = TcpListener::bind_on(&os, taken.local_addr().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    let (_server_os, client_os, _) = libos_pair("memory", "net_refused");
    let e = TcpStream::connect_on(&client_os, "198.18.0.1:9").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "the peer stack resets a SYN to a closed port");
}

#[demi::test]
async fn udp_sockets_keep_datagram_boundaries() {
    for kind in ["posix", "memory"] {
        let (a_os, b_os, bind) = libos_pair(kind, "net_udp");
        let a = UdpSocket::bind_on(&a_os, bind).unwrap();
        let b_bind = if kind == "posix" { "127.0.0.1:0" } else { "198.18.0.2:0" };
        let b = UdpSocket::bind_on(&b_os, b_bind).unwrap();
        let a_addr = a.local_addr().unwrap();
        for size in [0usize, 1, 100, 1400] {
            let msg = vec![size as u8; size];
            assert_eq!(b.send_to(&msg, a_addr).await.unwrap(), size);
            let mut buf = [0u8; 2000];
            let (n, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &msg[..], "{kind}: {size}-byte datagram");
            assert_eq!(from, b.local_addr().unwrap());
        }
        // Truncated to the buffer, as std does; the whole datagram with recv_bytes_from.
        b.send_to(&[9u8; 50], a_addr).await.unwrap();
        let mut small = [0u8; 10];
        assert_eq!(a.recv_from(&mut small).await.unwrap().0, 10);
        b.send_to(&[8u8; 50], a_addr).await.unwrap();
        assert_eq!(a.recv_bytes_from().await.unwrap().0.len(), 50);
        b.connect(a_addr).await.unwrap();
        b.send(b"connected").await.unwrap();
        let mut buf = [0u8; 20];
        let (n, _) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"connected");
    }
}

/// On the POSIX libOS a stream writes straight into the kernel socket: a write that
/// does not fit the send buffer is partial, and the rest goes out once the peer
/// reads (the writer parks until the socket is writable again). Every byte arrives,
/// in order, at a peer that is a plain std socket reading slowly on another thread.
#[demi::test]
async fn posix_stream_resumes_partial_writes() {
    let os = LibOs::posix().unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let total = 8 << 20;
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = std_listener.accept().unwrap();
        // Let the writer fill both socket buffers first.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let data: Vec<u8> = (0..total as u32).map(|i| (i % 253) as u8).collect();
    let mut c = TcpStream::connect_on(&os, addr).await.unwrap();
    let mut partial = 0;
    let mut at = 0;
    while at < data.len() {
        let n = AsyncWriteExt::write(&mut c, &data[at..]).await.unwrap();
        assert!(n > 0);
        if at + n < data.len() {
            partial += 1;
        }
        at += n;
    }
    AsyncWriteExt::close(&mut c).await.unwrap();
    drop(c);
    let got = join(reader).await;
    assert!(partial > 0, "an 8 MiB write should not fit a loopback socket's buffers at once");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes arrived out of order or changed");
}

/// Pipelined requests on one POSIX stream: the server reads whatever arrived (one
/// read may hold several requests) and answers every request in order.
#[demi::test]
async fn posix_stream_answers_pipelined_requests_in_order() {
    let os = LibOs::posix().unwrap();
    let mut listener = TcpListener::bind_on(&os, "127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = demi::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut pending = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            let mut out = Vec::new();
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                out.extend_from_slice(b"re:");
                out.extend_from_slice(&line);
            }
            if !out.is_empty() {
                s.write_all(&out).await.unwrap();
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let mut expect = Vec::new();
    let mut all = Vec::new();
    for i in 0..500 {
        let line = format!("request {i}\n");
        all.extend_from_slice(line.as_bytes());
        expect.extend_from_slice(format!("re:request {i}\n").as_bytes());
    }
    let got = std::thread::spawn(move || {
        use std::io::{Read, Write};
        c.write_all(&all).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got
    });
    server.await.expect("the server task failed");
    assert_eq!(String::from_utf8(join(got).await).unwrap(), String::from_utf8(expect).unwrap());
}

/// The peer resets the connection while the server is writing a long response: the
/// write fails with an error (no panic, no hang), and a read reports the end.
#[demi::test]
async fn posix_stream_peer_gone_mid_response() {
    let os = LibOs::posix().unwrap();
    let mut listener = TcpListener::bind_on(&os, "127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET\n").unwrap();
        let mut buf = [0u8; 1000];
        c.read_exact(&mut buf).unwrap();
        // Close with unread data: the kernel answers with a reset.
        drop(c);
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut result = Ok(());
    for _ in 0..4096 {
        if let Err(e) = AsyncWriteExt::write_all(&mut s, &chunk).await {
            result = Err(e);
            break;
        }
    }
    let e = result.expect_err("writing 256 MiB to a peer that went away must fail");
    assert!(
        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "unexpected error kind {:?}: {e}",
        e.kind()
    );
    let mut rest = [0u8; 16];
    let r = s.read(&mut rest).await;
    assert!(matches!(r, Ok(0)) || r.is_err(), "a read after the reset: {r:?}");
    join(client).await;
}

/// Waits for a std thread without blocking the runtime (its peer runs on it).
async fn join<T>(h: std::thread::JoinHandle<T>) -> T {
    while !h.is_finished() {
        demi::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    h.join().unwrap()
}
