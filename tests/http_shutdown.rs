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
