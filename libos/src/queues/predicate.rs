//! Declarative filter predicates: a small language (protocol, addresses, ports,
//! length, byte ranges, and/or/not) that can be evaluated wherever the data is —
//! over a received frame before any queue sees it, or over an element on the CPU.
//!
//! Where a predicate runs (see `docs/api.md`, "Queue combinators"):
//! - **On the CPU, for every queue**: [`filter`](crate::LibOs::filter) evaluates it
//!   over each element: the element's bytes across its segments (no copy), its
//!   address as the peer, the filtered queue's local address when it is a socket,
//!   and the protocol when every element comes from a socket (the queue is one, or
//!   a combinator over sockets only): UDP for an element with an address, TCP
//!   otherwise. Of a memory queue's elements no protocol is known.
//! - **At the packet level, on the user-level stack**: a filter whose input is a
//!   bound UDP queue of the user-level stack also installs the predicate in that
//!   libOS's driver, which evaluates it over each received IPv4/UDP frame addressed
//!   to the queue's port ([`Predicate::matches_frame`]), on the frame's own bytes,
//!   before the stack queues the datagram. A frame that fails is dropped there
//!   (counted in [`FilterStats::dropped_offload`](crate::FilterStats)).
//!
//! Closures ([`filter`](crate::LibOs::filter) with a `Fn(&Sga) -> bool`) always run
//! on the CPU.

use bytes::Bytes;
use demi_runtime::QDesc;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use demi_net_stack::wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket};
use demi_runtime::Sga;
use std::net::{IpAddr, SocketAddr};

/// A transport protocol, as a predicate matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A declarative filter predicate. Build one with the constructors and combine with
/// [`and`](Self::and), [`or`](Self::or) and [`not`](Self::not).
///
/// "Peer" is the other end of the element: the source of a received datagram (a
/// popped element's address), the destination of a pushed one. "Local" is the
/// filtered socket's own address. A test of something the element does not carry
/// (the peer of an element of a memory queue, say) is false.
///
/// ```
/// use demi_libos::{Predicate, Proto};
/// // DNS queries from 198.18.0.0/15 whose first two bytes are not zero.
/// let p = Predicate::proto(Proto::Udp)
///     .and(Predicate::peer_net("198.18.0.0".parse().unwrap(), 15))
///     .and(Predicate::local_port(53))
///     .and(Predicate::bytes_at(0, [0, 0]).not());
/// # let _ = p;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Predicate {
    /// Always holds.
    True,
    /// The transport protocol.
    Proto(Proto),
    /// The peer's IP address is in `addr/prefix_len`.
    PeerNet {
        /// Network address.
        addr: IpAddr,
        /// Prefix length in bits.
        prefix_len: u8,
    },
    /// The peer's port is in `lo..=hi`.
    PeerPort {
        /// Lowest port.
        lo: u16,
        /// Highest port.
        hi: u16,
    },
    /// The local port is in `lo..=hi`.
    LocalPort {
        /// Lowest port.
        lo: u16,
        /// Highest port.
        hi: u16,
    },
    /// The payload's length is in `min..=max`.
    Len {
        /// Shortest.
        min: usize,
        /// Longest.
        max: usize,
    },
    /// The payload bytes at `offset`, masked with `mask` (all ones when empty), equal
    /// `value` (masked the same way). False when the payload is too short.
    Bytes {
        /// Offset into the payload.
        offset: usize,
        /// Expected bytes.
        value: Bytes,
        /// Mask, as long as `value`, or empty for an exact match.
        mask: Bytes,
    },
    /// All hold (true when empty).
    All(Vec<Predicate>),
    /// One holds (false when empty).
    Any(Vec<Predicate>),
    /// Does not hold.
    Not(Box<Predicate>),
}

/// What a predicate can see of an element besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) proto: Option<Proto>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
}

/// Byte access over a payload without copying it.
trait Payload {
    fn len(&self) -> usize;
    /// Calls `f` on consecutive slices covering `offset..offset + len`.
    fn for_range(&self, offset: usize, len: usize, f: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

impl Payload for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn for_range(&self, offset: usize, len: usize, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        f(&self[offset..offset + len])
    }
}

impl Payload for Sga {
    fn len(&self) -> usize {
        Sga::len(self)
    }

    fn for_range(&self, mut offset: usize, mut len: usize, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        for seg in self.segments() {
            if len == 0 {
                break;
            }
            if offset >= seg.len() {
                offset -= seg.len();
                continue;
            }
            let n = (seg.len() - offset).min(len);
            if !f(&seg[offset..offset + n]) {
                return false;
            }
            offset = 0;
            len -= n;
        }
        true
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix_len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let p = u32::from(prefix_len.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let p = u32::from(prefix_len.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Predicate {
    /// Matches the protocol.
    pub fn proto(p: Proto) -> Self {
        Predicate::Proto(p)
    }

    /// Matches peers in `addr/prefix_len`.
    pub fn peer_net(addr: IpAddr, prefix_len: u8) -> Self {
        Predicate::PeerNet { addr, prefix_len }
    }

    /// Matches one peer IP address.
    pub fn peer_ip(addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Predicate::PeerNet { addr, prefix_len }
    }

    /// Matches one peer port.
    pub fn peer_port(port: u16) -> Self {
        Predicate::PeerPort { lo: port, hi: port }
    }

    /// Matches one peer address (IP and port).
    pub fn peer(addr: SocketAddr) -> Self {
        Self::peer_ip(addr.ip()).and(Self::peer_port(addr.port()))
    }

    /// Matches one local port.
    pub fn local_port(port: u16) -> Self {
        Predicate::LocalPort { lo: port, hi: port }
    }

    /// Matches payload lengths in `min..=max`.
    pub fn len_between(min: usize, max: usize) -> Self {
        Predicate::Len { min, max }
    }

    /// Matches `value` at `offset` of the payload.
    pub fn bytes_at(offset: usize, value: impl Into<Vec<u8>>) -> Self {
        Predicate::Bytes { offset, value: Bytes::from(value.into()), mask: Bytes::new() }
    }

    /// Matches `value` at `offset` under `mask` (`(payload & mask) == (value & mask)`).
    /// A mask of another length than `value` never matches.
    pub fn masked_bytes_at(offset: usize, value: impl Into<Vec<u8>>, mask: impl Into<Vec<u8>>) -> Self {
        Predicate::Bytes { offset, value: Bytes::from(value.into()), mask: Bytes::from(mask.into()) }
    }

    /// Both hold.
    pub fn and(self, other: Predicate) -> Self {
        match self {
            Predicate::All(mut v) => {
                v.push(other);
                Predicate::All(v)
            }
            p => Predicate::All(vec![p, other]),
        }
    }

    /// Either holds.
    pub fn or(self, other: Predicate) -> Self {
        match self {
            Predicate::Any(mut v) => {
                v.push(other);
                Predicate::Any(v)
            }
            p => Predicate::Any(vec![p, other]),
        }
    }

    /// Negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Predicate::Not(Box::new(self))
    }

    /// Evaluates over an element as a filter on the CPU sees it: its bytes (across
    /// segments, no copy) and its address as the peer; no protocol or local address
    /// (those come from the filtered queue, see [`LibOs::filter`](crate::LibOs::filter)).
    pub fn matches(&self, sga: &Sga) -> bool {
        self.eval(&Meta { peer: sga.addr(), ..Meta::default() }, sga)
    }

    pub(crate) fn matches_with(&self, meta: &Meta, sga: &Sga) -> bool {
        self.eval(meta, sga)
    }

    /// Evaluates over a received Ethernet frame carrying IPv4/UDP, as the
    /// user-level stack's driver does: the peer is the frame's source, the local
    /// address its destination, the payload the datagram's, read in place.
    /// `None` when the frame is not an unfragmented IPv4/UDP datagram (the caller lets
    /// it through to the stack, which handles or drops it).
    pub fn matches_frame(&self, frame: &[u8]) -> Option<bool> {
        let (meta, payload) = udp_frame_view(frame)?;
        Some(self.eval(&meta, payload))
    }

    fn eval<P: Payload + ?Sized>(&self, m: &Meta, payload: &P) -> bool {
        match self {
            Predicate::True => true,
            Predicate::Proto(p) => m.proto == Some(*p),
            Predicate::PeerNet { addr, prefix_len } => m.peer.is_some_and(|a| in_net(a.ip(), *addr, *prefix_len)),
            Predicate::PeerPort { lo, hi } => m.peer.is_some_and(|a| (*lo..=*hi).contains(&a.port())),
            Predicate::LocalPort { lo, hi } => m.local.is_some_and(|a| (*lo..=*hi).contains(&a.port())),
            Predicate::Len { min, max } => (*min..=*max).contains(&payload.len()),
            Predicate::Bytes { offset, value, mask } => {
                if !mask.is_empty() && mask.len() != value.len() {
                    return false;
                }
                let Some(end) = offset.checked_add(value.len()) else { return false };
                if end > payload.len() {
                    return false;
                }
                let mut at = 0;
                payload.for_range(*offset, value.len(), &mut |chunk| {
                    let ok = chunk.iter().enumerate().all(|(k, b)| {
                        let i = at + k;
                        let m = if mask.is_empty() { 0xff } else { mask[i] };
                        b & m == value[i] & m
                    });
                    at += chunk.len();
                    ok
                })
            }
            Predicate::All(v) => v.iter().all(|p| p.eval(m, payload)),
            Predicate::Any(v) => v.iter().any(|p| p.eval(m, payload)),
            Predicate::Not(p) => !p.eval(m, payload),
        }
    }
}

/// The metadata and payload of an unfragmented IPv4/UDP frame, as views into it.
pub(crate) fn udp_frame_view(frame: &[u8]) -> Option<(Meta, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::Udp || ip.is_fragment() {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    let meta = Meta {
        proto: Some(Proto::Udp),
        peer: Some(SocketAddr::new(IpAddr::V4(ip.src_addr()), udp.src_port())),
        local: Some(SocketAddr::new(IpAddr::V4(ip.dst_addr()), udp.dst_port())),
    };
    Some((meta, udp.payload()))
}

/// The predicates a user-level stack applies to received UDP frames, by local port
/// (one per port: the first filter with a declarative predicate over a bound UDP
/// queue installs it; later ones over the same queue run on the CPU only).
#[derive(Default)]
pub(crate) struct UdpOffload {
    by_port: HashMap<u16, Installed>,
}

struct Installed {
    /// The filter queue that installed it.
    owner: QDesc,
    pred: Rc<Predicate>,
    dropped: Rc<Cell<u64>>,
}

impl UdpOffload {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }

    pub(crate) fn install(&mut self, port: u16, owner: QDesc, pred: Rc<Predicate>, dropped: Rc<Cell<u64>>) -> bool {
        if self.by_port.contains_key(&port) {
            return false;
        }
        self.by_port.insert(port, Installed { owner, pred, dropped });
        true
    }

    pub(crate) fn remove_owner(&mut self, owner: QDesc) {
        self.by_port.retain(|_, i| i.owner != owner);
    }

    pub(crate) fn has_owner(&self, owner: QDesc) -> bool {
        self.by_port.values().any(|i| i.owner == owner)
    }

    pub(crate) fn remove_port(&mut self, port: u16) {
        self.by_port.remove(&port);
    }

    /// True if `frame` is a UDP datagram to a port with a predicate that it fails:
    /// the caller drops it instead of handing it to the stack. Reads the frame in
    /// place; anything that is not an unfragmented IPv4/UDP frame passes.
    pub(crate) fn rejects(&self, frame: &[u8]) -> bool {
        let Some((meta, payload)) = udp_frame_view(frame) else { return false };
        let Some(i) = meta.local.and_then(|l| self.by_port.get(&l.port())) else { return false };
        if i.pred.eval(&meta, payload) {
            return false;
        }
        i.dropped.set(i.dropped.get() + 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sga(parts: &[&'static [u8]]) -> Sga {
        Sga::from_segments(parts.iter().map(|p| Bytes::from_static(p)))
    }

    #[test]
    fn bytes_match_across_segments_without_copying() {
        let e = sga(&[b"GE", b"T /", b"index"]);
        assert!(Predicate::bytes_at(0, *b"GET ").matches(&e));
        assert!(Predicate::bytes_at(3, *b" /i").matches(&e));
        assert!(!Predicate::bytes_at(3, *b" /x").matches(&e));
        assert!(!Predicate::bytes_at(8, *b"xyz").matches(&e), "past the end");
        assert!(Predicate::masked_bytes_at(0, [b'g'], [0xdf]).matches(&e), "case-insensitive via mask");
        assert!(!Predicate::masked_bytes_at(0, [b'G'], [0xdf, 0xff]).matches(&e), "mask length mismatch");
    }

    #[test]
    fn addresses_ports_len_and_logic() {
        let from: SocketAddr = "198.18.3.4:5000".parse().unwrap();
        let e = Sga::from(&b"hello"[..]).with_addr(from);
        assert!(Predicate::peer_net("198.18.0.0".parse().unwrap(), 15).matches(&e));
        assert!(!Predicate::peer_net("10.0.0.0".parse().unwrap(), 8).matches(&e));
        assert!(Predicate::peer(from).matches(&e));
        assert!(Predicate::PeerPort { lo: 4000, hi: 6000 }.matches(&e));
        assert!(Predicate::len_between(5, 5).matches(&e));
        assert!(!Predicate::proto(Proto::Udp).matches(&e), "no protocol known for a bare element");
        assert!(!Predicate::local_port(1).matches(&e));
        let p = Predicate::peer_port(1).or(Predicate::bytes_at(0, *b"he")).and(Predicate::len_between(0, 4).not());
        assert!(p.matches(&e));
        assert!(!Predicate::peer_port(5000).matches(&Sga::from(&b"x"[..])), "no peer: false");
        assert!(Predicate::All(vec![]).matches(&e) && !Predicate::Any(vec![]).matches(&e));
    }

    /// Ethernet + IPv4 + UDP, checksums left zero (the predicate does not check them).
    fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8], frag: bool) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, if frag { 0x20 } else { 0x40 }, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_read_in_place() {
        let f = frame([198, 18, 0, 2], 4000, [198, 18, 0, 1], 53, b"OK hello", false);
        let p = Predicate::proto(Proto::Udp)
            .and(Predicate::peer("198.18.0.2:4000".parse().unwrap()))
            .and(Predicate::local_port(53))
            .and(Predicate::bytes_at(0, *b"OK"))
            .and(Predicate::len_between(8, 8));
        assert_eq!(p.matches_frame(&f), Some(true));
        assert_eq!(Predicate::bytes_at(0, *b"NO").matches_frame(&f), Some(false));
        assert_eq!(Predicate::True.matches_frame(&f[..20]), None, "truncated: not judged");
        let fragment = frame([198, 18, 0, 2], 4000, [198, 18, 0, 1], 53, b"OK", true);
        assert_eq!(Predicate::True.matches_frame(&fragment), None, "fragments go to the stack");
    }

    #[test]
    fn offload_table_drops_only_failing_frames_for_its_ports() {
        let mut t = UdpOffload::default();
        let dropped = Rc::new(Cell::new(0));
        let owner = QDesc::from_parts(1 << 30, 1);
        assert!(t.install(53, owner, Rc::new(Predicate::bytes_at(0, *b"OK")), dropped.clone()));
        assert!(!t.install(53, owner, Rc::new(Predicate::True), dropped.clone()), "one per port");
        let to = |port, body: &[u8]| frame([198, 18, 0, 2], 4000, [198, 18, 0, 1], port, body, false);
        assert!(!t.rejects(&to(53, b"OK x")));
        assert!(t.rejects(&to(53, b"NO x")));
        assert!(!t.rejects(&to(54, b"NO x")), "other ports pass");
        assert_eq!(dropped.get(), 1);
        t.remove_owner(owner);
        assert!(t.is_empty());
    }
}
