//! Element framing over POSIX TCP: a pushed scatter-gather element pops whole, with
//! its segmentation, at a framed peer; a hostile peer's header cannot make the
//! receiver hang or allocate what the header announces.
//!
//! This binary installs a global allocator that records, per thread, the largest
//! single allocation, so the hostile-header tests can check that nothing near the
//! announced size was ever requested (each test's runtime runs on its own thread).

mod common;

use common::*;
use demi::{Bytes, Config, FrameLimits, LibOs, LibOsKind, QDesc, QError, QToken, QValue, Sga};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;

struct Tracking;

thread_local! {
    /// Largest allocation (or reallocation) requested on this thread since the last
    /// reset. Const-initialised, no destructor: safe to touch from the allocator.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the tracking
// only reads and writes a thread-local integer.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

fn reset_largest() {
    LARGEST.with(|l| l.set(0));
}

fn largest() -> usize {
    LARGEST.with(|l| l.get())
}

/// A framed connected pair (sync face).
fn framed_pair(libos: &LibOs) -> (QDesc, QDesc) {
    let (c, s) = tcp_pair(libos);
    libos.set_framing(c, true).unwrap();
    libos.set_framing(s, true).unwrap();
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

// ---- round trips ----------------------------------------------------------------------

#[test]
fn multi_segment_elements_pushed_back_to_back_pop_one_by_one() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = framed_pair(&libos);
    let elements: Vec<Sga> = (0..6).map(|i| three_segments(i * 10)).collect();
    let pushes: Vec<QToken> = elements.iter().map(|e| libos.push(c, e.clone()).unwrap()).collect();
    for e in &elements {
        let got = wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap();
        assert_eq!(got.num_segments(), 3);
        assert!(got.segments() == e.segments(), "segments differ");
    }
    for r in libos.wait_all(&pushes, Some(GUARD)).unwrap() {
        assert_eq!(r.value, Ok(QValue::Pushed));
    }
}

#[demi::test]
async fn framed_echo_async_keeps_every_shape() {
    let libos = LibOs::current().unwrap();
    let (c, s) = tcp_pair_async(&libos).await;
    libos.set_framing(c, true).unwrap();
    libos.set_framing(s, true).unwrap();
    let server = demi::spawn(echo(libos.clone(), s));
    let shapes: Vec<Sga> = vec![
        Sga::from("x"),
        three_segments(1),
        // An empty segment inside an element is kept.
        Sga::from_segments([Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"c")]),
        // Many segments, more than one sendmsg takes.
        Sga::from_segments((0..100).map(|i| Bytes::from(pattern(1 + i, i as u32)))),
        // One element larger than a socket buffer.
        Sga::from_segments([Bytes::from(pattern(3 << 20, 5)), Bytes::from(pattern(17, 6))]),
    ];
    for round in 0..2 {
        for e in &shapes {
            let pqt = libos.push(c, e.clone()).unwrap();
            let got = w(libos.pop(c).unwrap()).await.into_sga().unwrap();
            w(pqt).await.ok().unwrap();
            assert_eq!(got.len(), e.len(), "round {round}");
            assert!(got.segments() == e.segments(), "round {round}: segments differ");
        }
    }
    libos.close(c).unwrap();
    let total: usize = shapes.iter().map(Sga::len).sum();
    assert_eq!(server.await.unwrap(), 2 * total);
}

#[test]
fn many_small_elements_merged_by_tcp_still_pop_one_each() {
    let libos = LibOs::posix().unwrap();
    let (c, s) = framed_pair(&libos);
    // All pops wait before any data: one pop gets one element, in order, even when
    // one read brings many elements.
    let pops: Vec<QToken> = (0..100).map(|_| libos.pop(s).unwrap()).collect();
    let pushes: Vec<QToken> =
        (0..100u32).map(|i| libos.push(c, Sga::from(i.to_le_bytes().to_vec())).unwrap()).collect();
    libos.wait_all(&pushes, Some(GUARD)).unwrap();
    for (i, r) in libos.wait_all(&pops, Some(GUARD)).unwrap().into_iter().enumerate() {
        assert_eq!(r.into_sga().unwrap().to_vec(), (i as u32).to_le_bytes());
    }
}

#[test]
fn hand_encoded_frames_sent_byte_by_byte_pop_whole() {
    // The documented wire format, from a plain kernel socket, in 1-byte writes.
    let libos = LibOs::posix().unwrap();
    let (lqd, addr) = listener(&libos);
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_nodelay(true).unwrap();
    let (s, _) = wait(&libos, libos.accept(lqd).unwrap()).into_accepted().unwrap();
    libos.set_framing(s, true).unwrap();
    let pending = libos.pop(s).unwrap();
    let wire = [encode(&[b"seg-one", b"", b"3"]), encode(&[b"second element"])].concat();
    for b in &wire {
        raw.write_all(std::slice::from_ref(b)).unwrap();
    }
    let first = wait(&libos, pending).into_sga().unwrap();
    let want = [Bytes::from_static(b"seg-one"), Bytes::new(), Bytes::from_static(b"3")];
    assert!(first.segments() == want);
    assert_eq!(wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap().to_vec(), b"second element");
}

#[test]
fn framed_push_is_the_documented_wire_format() {
    let libos = LibOs::posix().unwrap();
    let server = std::net::TcpListener::bind(lo()).unwrap();
    let qd = libos.socket(demi::Domain::Ipv4, demi::SocketType::Stream).unwrap();
    wait(&libos, libos.connect(qd, server.local_addr().unwrap()).unwrap()).ok().unwrap();
    let (mut raw, _) = server.accept().unwrap();
    libos.set_framing(qd, true).unwrap();
    let sga = Sga::from_segments([Bytes::from_static(b"hello"), Bytes::new(), Bytes::from_static(b"!")]);
    wait(&libos, libos.push(qd, sga).unwrap()).ok().unwrap();
    libos.close(qd).unwrap();
    let mut got = Vec::new();
    raw.set_read_timeout(Some(GUARD)).unwrap();
    raw.read_to_end(&mut got).unwrap();
    assert_eq!(got, encode(&[b"hello", b"", b"!"]));
}

// ---- misuse and hostile peers ----------------------------------------------------------------

#[test]
fn framed_push_over_the_limits_is_refused_by_the_call() {
    let mut config = Config::new(LibOsKind::Posix);
    config.frame_limits = FrameLimits { max_segments: 4, max_element: 1024 };
    let libos = LibOs::new(&config).unwrap();
    let (c, s) = framed_pair(&libos);
    assert_eq!(libos.push(c, Sga::from(vec![1u8; 1025])).unwrap_err(), QError::MessageTooLong);
    let five = Sga::from_segments((0..5).map(|_| Bytes::from_static(b"x")));
    assert_eq!(libos.push(c, five).unwrap_err(), QError::MessageTooLong);
    assert!(matches!(libos.push(c, Sga::new()), Err(QError::InvalidArgument(_))));
    assert!(matches!(libos.push(c, Sga::from_segments([Bytes::new()])), Err(QError::InvalidArgument(_))));
    // Refused pushes sent nothing: the stream is still in step.
    wait(&libos, libos.push(c, Sga::from(vec![2u8; 1024])).unwrap()).ok().unwrap();
    assert_eq!(wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap().to_vec(), vec![2u8; 1024]);
}

/// A raw client sends `bytes` to a framed server (and keeps the connection open);
/// returns what the server's pop says and, if that failed, what a later pop says.
fn hostile(libos: &LibOs, bytes: &[u8]) -> (Result<Sga, QError>, Option<Result<Sga, QError>>, TcpStream) {
    let (lqd, addr) = listener(libos);
    let mut raw = TcpStream::connect(addr).unwrap();
    let (s, _) = wait(libos, libos.accept(lqd).unwrap()).into_accepted().unwrap();
    libos.set_framing(s, true).unwrap();
    let pending = libos.pop(s).unwrap();
    raw.write_all(bytes).unwrap();
    let first = wait(libos, pending).into_sga();
    let later = first.is_err().then(|| outcome(libos, libos.pop(s)));
    libos.close(s).unwrap();
    libos.close(lqd).unwrap();
    (first, later, raw)
}

#[test]
fn huge_announced_length_is_invalid_data_without_allocating_it() {
    let libos = LibOs::posix().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one segment of ~4 GiB", [1u32.to_le_bytes(), 0xFFFF_FFF0u32.to_le_bytes()].concat()),
        ("one segment of 1 GiB", [1u32.to_le_bytes(), (1u32 << 30).to_le_bytes()].concat()),
        ("just over the 16 MiB default", [1u32.to_le_bytes(), ((16u32 << 20) + 1).to_le_bytes()].concat()),
        ("two segments whose sum overflows u32", [2u32, 0x8000_0000, 0x8000_0000].map(u32::to_le_bytes).concat()),
        ("4 billion segments", u32::MAX.to_le_bytes().to_vec()),
        ("zero segments", 0u32.to_le_bytes().to_vec()),
        ("segments that are all empty", [2u32, 0, 0].map(u32::to_le_bytes).concat()),
    ];
    for (what, header) in cases {
        let mut bytes = header;
        bytes.extend_from_slice(b"some payload that is far too short");
        reset_largest();
        let (first, later, _raw) = hostile(&libos, &bytes);
        assert_eq!(first.map(|s| s.len()), Err(QError::InvalidData), "{what}");
        assert_eq!(later.unwrap().map(|s| s.len()), Err(QError::InvalidData), "{what}: the queue stays failed");
        assert!(largest() < 8 << 20, "{what}: allocated {} bytes", largest());
    }
}

#[test]
fn the_allocation_tracker_does_see_a_legitimate_large_element() {
    // Control for the test above: a real 6 MiB element is buffered whole, and the
    // tracker records an allocation at least that large.
    let libos = LibOs::posix().unwrap();
    let (lqd, addr) = listener(&libos);
    let payload = pattern(6 << 20, 3);
    let wire = encode(&[&payload]);
    let writer = std::thread::spawn(move || {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.write_all(&wire).unwrap();
        raw
    });
    let (s, _) = wait(&libos, libos.accept(lqd).unwrap()).into_accepted().unwrap();
    libos.set_framing(s, true).unwrap();
    reset_largest();
    let got = wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap();
    assert!(largest() >= 6 << 20, "largest allocation seen: {}", largest());
    assert!(got.to_vec() == payload);
    drop(writer.join().unwrap());
}

#[test]
fn limits_from_the_config_bound_what_a_peer_may_announce() {
    let mut config = Config::new(LibOsKind::Posix);
    config.frame_limits = FrameLimits { max_segments: 8, max_element: 64 * 1024 };
    let libos = LibOs::new(&config).unwrap();
    // Within the limits: accepted.
    let ok = encode(&[&pattern(64 * 1024, 1)]);
    let (first, _, _raw) = hostile(&libos, &ok);
    assert_eq!(first.unwrap().to_vec(), pattern(64 * 1024, 1));
    // One byte over, or one segment too many: refused from the header alone.
    let (first, _, _raw) = hostile(&libos, &[1u32, 64 * 1024 + 1].map(u32::to_le_bytes).concat());
    assert_eq!(first.map(|s| s.len()), Err(QError::InvalidData));
    let (first, _, _raw) = hostile(&libos, &9u32.to_le_bytes());
    assert_eq!(first.map(|s| s.len()), Err(QError::InvalidData));
}

#[test]
fn eof_in_the_middle_of_an_element_is_invalid_data() {
    let libos = LibOs::posix().unwrap();
    let (lqd, addr) = listener(&libos);
    let mut raw = TcpStream::connect(addr).unwrap();
    let (s, _) = wait(&libos, libos.accept(lqd).unwrap()).into_accepted().unwrap();
    libos.set_framing(s, true).unwrap();
    let whole = encode(&[b"complete"]);
    let cut = encode(&[b"cut short"]);
    raw.write_all(&whole).unwrap();
    raw.write_all(&cut[..cut.len() - 3]).unwrap();
    drop(raw);
    assert_eq!(wait(&libos, libos.pop(s).unwrap()).into_sga().unwrap().to_vec(), b"complete");
    assert_eq!(outcome(&libos, libos.pop(s)).map(|s| s.len()), Err(QError::InvalidData));
    // An orderly EOF between elements is an ordinary empty pop.
    let (c2, s2) = framed_pair(&libos);
    wait(&libos, libos.push(c2, Sga::from("only")).unwrap()).ok().unwrap();
    libos.close(c2).unwrap();
    assert_eq!(wait(&libos, libos.pop(s2).unwrap()).into_sga().unwrap().to_vec(), b"only");
    assert!(wait(&libos, libos.pop(s2).unwrap()).into_sga().unwrap().is_empty());
}

#[test]
fn framing_is_a_stream_only_option() {
    let libos = LibOs::posix().unwrap();
    let (u, _) = udp(&libos);
    assert_eq!(libos.set_framing(u, true).unwrap_err(), QError::NotSupported);
    // Turning it on twice, or off with nothing buffered, is fine.
    let (c, s) = tcp_pair(&libos);
    libos.set_framing(c, true).unwrap();
    libos.set_framing(c, true).unwrap();
    libos.set_framing(c, false).unwrap();
    // Off again: plain byte stream.
    wait(&libos, libos.push(c, Sga::from("raw")).unwrap()).ok().unwrap();
    assert_eq!(pop_exact(&libos, s, 3), b"raw");
}
