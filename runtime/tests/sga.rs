//! Scatter-gather arrays: building, advancing and flattening.

use bytes::Bytes;
use demi_runtime::Sga;
use std::net::SocketAddr;

fn three_segments() -> Sga {
    Sga::from_segments([Bytes::from_static(b"abc"), Bytes::from_static(b"defg"), Bytes::from_static(b"h")])
}

#[test]
fn from_segments_keeps_every_segment_in_order() {
    let sga = three_segments();
    assert_eq!(sga.len(), 8);
    assert_eq!(sga.num_segments(), 3);
    assert!(!sga.is_empty());
    assert_eq!(sga.iter().collect::<Vec<_>>(), [&b"abc"[..], b"defg", b"h"]);
    assert_eq!(sga.to_vec(), b"abcdefgh");
    assert_eq!(sga.addr(), None);

    // Empty segments are kept (framed queues reproduce the segmentation).
    let with_empty = Sga::from_segments([Bytes::new(), Bytes::from_static(b"x"), Bytes::new()]);
    assert_eq!((with_empty.len(), with_empty.num_segments()), (1, 3));

    let empty = Sga::new();
    assert!(empty.is_empty());
    assert_eq!((empty.len(), empty.num_segments()), (0, 0));
    assert!(empty.to_bytes().is_empty());
}

#[test]
fn advance_drops_whole_segments_then_a_prefix() {
    let mut sga = three_segments();
    sga.advance(0);
    assert_eq!((sga.len(), sga.num_segments()), (8, 3));
    sga.advance(3); // exactly the first segment
    assert_eq!((sga.len(), sga.num_segments()), (5, 2));
    assert_eq!(sga.to_vec(), b"defgh");
    sga.advance(1); // into the middle of a segment
    assert_eq!((sga.len(), sga.num_segments()), (4, 2));
    assert_eq!(sga.segments()[0], Bytes::from_static(b"efg"));
    sga.advance(4); // across the rest
    assert!(sga.is_empty());
    assert_eq!(sga.num_segments(), 0);

    let mut sga = three_segments();
    sga.advance(1000); // more than there is
    assert!(sga.is_empty());
    assert_eq!(sga.num_segments(), 0);
    assert!(sga.to_bytes().is_empty());
}

#[test]
fn to_bytes_joins_the_segments() {
    let sga = three_segments();
    assert_eq!(sga.to_bytes(), Bytes::from_static(b"abcdefgh"));
    // One segment: the same buffer, no copy.
    let b = Bytes::from(vec![9u8; 100]);
    let one = Sga::from(b.clone());
    assert_eq!(one.to_bytes().as_ptr(), b.as_ptr());
    // Segments share their buffers with the array (free-protection by refcount).
    let segs = sga.clone().into_segments();
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[1].as_ptr(), sga.segments()[1].as_ptr());
}

#[test]
fn conversions_and_address() {
    let addr: SocketAddr = "198.18.0.1:7".parse().unwrap();
    let a = Sga::from("hi").with_addr(addr);
    assert_eq!(a.addr(), Some(addr));
    assert_eq!(a.to_vec(), b"hi");
    let mut b = Sga::from(b"hi".to_vec());
    assert_ne!(a, b, "the address is part of the element");
    b.set_addr(Some(addr));
    assert_eq!(a, b);
    assert_eq!(Sga::from(&b"hi"[..]).with_addr(addr), a);
    let mut pushed = Sga::new();
    pushed.push_segment(Bytes::from_static(b"h"));
    pushed.push_segment(Bytes::from_static(b"i"));
    assert_eq!(pushed.to_bytes(), Bytes::from_static(b"hi"));
    assert_ne!(pushed, Sga::from("hi"), "segmentation is part of the element");
}
