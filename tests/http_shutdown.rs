//! `demi::net::serve_with_shutdown` (feature `hyper`): an axum service stops
//! accepting when its shutdown future completes, finishes the request in flight, and
//! returns once its connections are closed.

use axum::routing::get;
use axum::Router;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn graceful_shutdown_finishes_the_request_in_flight_then_stops() {
    let rt = demi::Runtime::new().unwrap();
    let libos = rt.block_on(async { demi::LibOs::posix().unwrap() });
    let listener = rt.block_on(async { demi::net::TcpListener::bind_on(&libos, "127.0.0.1:0").unwrap() });
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "fast\n" }))
        .route("/slow", get(|| async {
            demi::time::sleep(Duration::from_millis(300)).await;
            "slow but complete\n"
        }));

    // A client thread: one request that is in flight when the shutdown starts.
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap(); // the server closes after answering
        reply
    });
    let served = rt.block_on(async move {
        let shutdown = async {
            demi::time::sleep(Duration::from_millis(100)).await;
        };
        demi::time::timeout(Duration::from_secs(10), demi::net::serve_with_shutdown(listener, app, shutdown)).await
    });
    served.expect("serve_with_shutdown did not return").unwrap();
    let reply = client.join().unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("slow but complete\n"), "{reply}");
    // The listener is closed: new connections are refused.
    let e = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// Responses on demi's POSIX streams: pipelined requests on one connection are all
/// answered, in order; a 4 MiB body (far more than the socket buffers) arrives
/// whole; a client that leaves in the middle of one costs only its connection.
#[test]
fn pipelined_requests_large_bodies_and_a_client_that_leaves() {
    let rt = demi::Runtime::new().unwrap();
    let libos = rt.block_on(async { demi::LibOs::posix().unwrap() });
    let listener = rt.block_on(async { demi::net::TcpListener::bind_on(&libos, "127.0.0.1:0").unwrap() });
    let addr = listener.local_addr().unwrap();
    let big: Vec<u8> = (0..(4u32 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    let body = big.clone();
    let app = Router::new()
        .route("/n/{i}", get(|axum::extract::Path(i): axum::extract::Path<u32>| async move { format!("reply {i}\n") }))
        .route("/big", get(move || {
            let body = body.clone();
            async move { body }
        }));
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = finished.clone();
    let client = std::thread::spawn(move || {
        // Leaves after the first bytes of a 4 MiB response.
        let mut gone = std::net::TcpStream::connect(addr).unwrap();
        gone.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut some = [0u8; 100];
        gone.read_exact(&mut some).unwrap();
        drop(gone);
        // 50 pipelined requests in one write, then the big body; the last request
        // asks the server to close, so the reply ends at end of stream.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut reqs = String::new();
        for i in 0..50 {
            reqs.push_str(&format!("GET /n/{i} HTTP/1.1\r\nHost: x\r\n\r\n"));
        }
        reqs.push_str("GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(reqs.as_bytes()).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        all
    });
    let served = rt.block_on(async move {
        // Stop once the client has everything (however slow the machine).
        let shutdown = async {
            while !finished.load(std::sync::atomic::Ordering::SeqCst) {
                demi::time::sleep(Duration::from_millis(10)).await;
            }
        };
        demi::time::timeout(Duration::from_secs(60), demi::net::serve_with_shutdown(listener, app, shutdown)).await
    });
    served.expect("serve_with_shutdown did not return").unwrap();
    let all = client.join().unwrap();
    let text = String::from_utf8_lossy(&all);
    let mut at = 0;
    for i in 0..50 {
        let want = format!("reply {i}\n");
        let found = text[at..].find(&want).unwrap_or_else(|| panic!("reply {i} missing or out of order"));
        at += found + want.len();
    }
    assert!(all.ends_with(&big), "the 4 MiB body did not arrive whole at the end");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 51);
}
