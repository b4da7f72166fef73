//! The neighbour cache: IPv4 → Ethernet address resolution with ARP (RFC 826).
//!
//! - Entries learnt from ARP expire after `entry_ttl`; static entries never do.
//! - An address with no entry gets an ARP request, retried every `retry_interval` up
//!   to `retries` times; then it is marked failed for `retry_interval` and the packets
//!   waiting for it are dropped (and counted).
//! - Packets waiting for resolution sit in a bounded queue: at most
//!   `max_pending_per_addr` per address and `max_pending` in all; when a queue is full
//!   the oldest packet is dropped. The number of addresses being resolved is bounded
//!   too, so a flood of packets to many addresses cannot grow memory.

use crate::wire::EthernetAddress;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Settings of the neighbour cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// How long a learnt entry lives.
    pub entry_ttl: Duration,
    /// Time between ARP requests for one address.
    pub retry_interval: Duration,
    /// Requests sent before giving up on an address.
    pub retries: u32,
    /// Packets that may wait for one address.
    pub max_pending_per_addr: usize,
    /// Packets that may wait in all.
    pub max_pending: usize,
    /// Learnt entries kept (the oldest-expiring one goes first when full).
    pub max_entries: usize,
    /// Addresses being resolved at once.
    pub max_resolving: usize,
}

impl Default for NeighborConfig {
    fn default() -> Self {
        NeighborConfig {
            entry_ttl: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            retries: 3,
            max_pending_per_addr: 16,
            max_pending: 1024,
            max_entries: 1024,
            max_resolving: 256,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: EthernetAddress,
    /// None for static entries.
    expires: Option<Instant>,
}

#[derive(Debug)]
struct Resolving {
    /// IP packets (no Ethernet header) waiting for the address.
    pending: VecDeque<Bytes>,
    requests_sent: u32,
    /// When the next request is due (or, once failed, when the address may be tried again).
    next_request: Instant,
    failed: bool,
}

/// Counters of the neighbour cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborStats {
    /// ARP requests sent.
    pub requests_sent: u64,
    /// Packets dropped because their queue or the total was full.
    pub dropped_queue_full: u64,
    /// Packets dropped because their address could not be resolved.
    pub dropped_unresolved: u64,
}

/// What [`NeighborCache::lookup`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The address is known.
    Found(EthernetAddress),
    /// Not known: queue the packet with [`NeighborCache::enqueue`].
    Unknown,
    /// Recently failed to resolve: drop the packet.
    Failed,
}

/// The neighbour cache. See the [module docs](self).
#[derive(Debug)]
pub struct NeighborCache {
    config: NeighborConfig,
    entries: BTreeMap<Ipv4Addr, Entry>,
    resolving: BTreeMap<Ipv4Addr, Resolving>,
    pending_total: usize,
    stats: NeighborStats,
    /// Bumped whenever `entries` changes, so that a caller may keep a lookup's
    /// answer (with its expiry) until then.
    generation: u64,
}

impl NeighborCache {
    /// An empty cache.
    pub fn new(config: NeighborConfig) -> Self {
        NeighborCache {
            config,
            entries: BTreeMap::new(),
            resolving: BTreeMap::new(),
            pending_total: 0,
            stats: NeighborStats::default(),
            generation: 0,
        }
    }

    /// Counters.
    pub fn stats(&self) -> NeighborStats {
        self.stats
    }

    /// Adds an entry that never expires and is never replaced by ARP.
    pub fn insert_static(&mut self, ip: Ipv4Addr, mac: EthernetAddress) {
        self.generation += 1;
        self.entries.insert(ip, Entry { mac, expires: None });
    }

    /// A counter that changes whenever an entry is added, replaced or removed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Like [`lookup`](Self::lookup), for a found entry also its expiry.
    pub(crate) fn lookup_entry(&self, now: Instant, ip: Ipv4Addr) -> Option<(EthernetAddress, Option<Instant>)> {
        self.entries.get(&ip).filter(|e| e.expires.is_none_or(|t| t > now)).map(|e| (e.mac, e.expires))
    }

    /// Looks an address up.
    pub fn lookup(&self, now: Instant, ip: Ipv4Addr) -> Lookup {
        if let Some(e) = self.entries.get(&ip) {
            if e.expires.is_none_or(|t| t > now) {
                return Lookup::Found(e.mac);
            }
        }
        match self.resolving.get(&ip) {
            Some(r) if r.failed && r.next_request > now => Lookup::Failed,
            _ => Lookup::Unknown,
        }
    }

    /// Learns (or refreshes) an address from ARP. Returns the packets that were
    /// waiting for it, to be sent now.
    pub fn fill(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) -> VecDeque<Bytes> {
        self.generation += 1;
        match self.entries.get_mut(&ip) {
            Some(e) if e.expires.is_none() => {} // static wins
            Some(e) => *e = Entry { mac, expires: Some(now + self.config.entry_ttl) },
            None => {
                if self.entries.len() >= self.config.max_entries {
                    self.evict(now);
                }
                if self.entries.len() < self.config.max_entries {
                    self.entries.insert(ip, Entry { mac, expires: Some(now + self.config.entry_ttl) });
                }
            }
        }
        match self.resolving.remove(&ip) {
            Some(r) => {
                self.pending_total -= r.pending.len();
                r.pending
            }
            None => VecDeque::new(),
        }
    }

    /// True if `ip` is being resolved (a reply for it is worth learning even when
    /// the request that triggered it was not for us).
    pub fn is_resolving(&self, ip: Ipv4Addr) -> bool {
        self.resolving.get(&ip).is_some_and(|r| !r.failed)
    }

    fn evict(&mut self, now: Instant) {
        // Expired entries first, else the one expiring soonest.
        self.entries.retain(|_, e| e.expires.is_none_or(|t| t > now));
        if self.entries.len() >= self.config.max_entries {
            let victim = self
                .entries
                .iter()
                .filter_map(|(ip, e)| e.expires.map(|t| (t, *ip)))
                .min()
                .map(|(_, ip)| ip);
            if let Some(ip) = victim {
                self.entries.remove(&ip);
            }
        }
    }

    /// Queues an IP packet until `ip` resolves; starts resolution if needed (the
    /// request goes out through [`poll_request`](Self::poll_request)). Returns false
    /// if the packet was dropped.
    pub fn enqueue(&mut self, now: Instant, ip: Ipv4Addr, packet: Bytes) -> bool {
        if !self.resolving.contains_key(&ip) {
            if self.resolving.len() >= self.config.max_resolving {
                self.stats.dropped_queue_full += 1;
                return false;
            }
            self.resolving.insert(
                ip,
                Resolving { pending: VecDeque::new(), requests_sent: 0, next_request: now, failed: false },
            );
        }
        let r = self.resolving.get_mut(&ip).expect("inserted above");
        if r.failed {
            if r.next_request > now {
                self.stats.dropped_unresolved += 1;
                return false;
            }
            // The hold-down is over: try again.
            *r = Resolving { pending: VecDeque::new(), requests_sent: 0, next_request: now, failed: false };
        }
        if self.config.max_pending_per_addr == 0 {
            self.stats.dropped_queue_full += 1;
            return false;
        }
        if r.pending.len() >= self.config.max_pending_per_addr {
            r.pending.pop_front();
            self.pending_total -= 1;
            self.stats.dropped_queue_full += 1;
        }
        if self.pending_total >= self.config.max_pending {
            self.stats.dropped_queue_full += 1;
            return false;
        }
        r.pending.push_back(packet);
        self.pending_total += 1;
        true
    }

    /// Whether no address is being resolved: [`poll_request`](Self::poll_request)
    /// then returns `None` whatever the time.
    #[inline]
    pub(crate) fn nothing_resolving(&self) -> bool {
        self.resolving.is_empty()
    }

    /// The next address to send an ARP request for now, if any. Gives up on
    /// addresses whose retries are spent (their packets are dropped).
    #[inline]
    pub fn poll_request(&mut self, now: Instant) -> Option<Ipv4Addr> {
        // Fast path (every `Stack::poll_transmit` asks): nothing being resolved.
        if self.resolving.is_empty() {
            return None;
        }
        self.poll_request_slow(now)
    }

    fn poll_request_slow(&mut self, now: Instant) -> Option<Ipv4Addr> {
        let retries = self.config.retries;
        let interval = self.config.retry_interval;
        let mut give_up = Vec::new();
        let mut request = None;
        for (ip, r) in self.resolving.iter_mut() {
            if r.failed || r.next_request > now {
                continue;
            }
            if r.requests_sent >= retries {
                give_up.push(*ip);
                continue;
            }
            r.requests_sent += 1;
            r.next_request = now + interval;
            request = Some(*ip);
            break;
        }
        for ip in give_up {
            if let Some(r) = self.resolving.get_mut(&ip) {
                self.stats.dropped_unresolved += r.pending.len() as u64;
                self.pending_total -= r.pending.len();
                r.pending.clear();
                r.failed = true;
                r.next_request = now + interval;
            }
        }
        // Failed addresses whose hold-down ended and have nothing queued are forgotten.
        self.resolving.retain(|_, r| !(r.failed && r.next_request <= now && r.pending.is_empty()));
        if request.is_some() {
            self.stats.requests_sent += 1;
        }
        request
    }

    /// When [`poll_request`](Self::poll_request) next has something to do.
    #[inline]
    pub fn poll_at(&self) -> Option<Instant> {
        if self.resolving.is_empty() {
            return None;
        }
        self.resolving.values().map(|r| r.next_request).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    #[test]
    fn resolution_delivers_queued_packets_in_order() {
        let t0 = Instant::now();
        let mut c = NeighborCache::new(NeighborConfig::default());
        assert_eq!(c.lookup(t0, ip(2)), Lookup::Unknown);
        assert!(c.enqueue(t0, ip(2), Bytes::from_static(b"a")));
        assert!(c.enqueue(t0, ip(2), Bytes::from_static(b"b")));
        assert_eq!(c.poll_request(t0), Some(ip(2)));
        assert_eq!(c.poll_request(t0), None, "one request per interval");
        let out: Vec<_> = c.fill(t0, ip(2), MAC).into_iter().collect();
        assert_eq!(out, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert_eq!(c.lookup(t0, ip(2)), Lookup::Found(MAC));
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn entries_expire_but_static_ones_do_not() {
        let t0 = Instant::now();
        let cfg = NeighborConfig { entry_ttl: Duration::from_secs(5), ..Default::default() };
        let mut c = NeighborCache::new(cfg);
        c.fill(t0, ip(2), MAC);
        c.insert_static(ip(3), MAC);
        let later = t0 + Duration::from_secs(6);
        assert_eq!(c.lookup(later, ip(2)), Lookup::Unknown);
        assert_eq!(c.lookup(later, ip(3)), Lookup::Found(MAC));
        // ARP cannot overwrite a static entry.
        c.fill(later, ip(3), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(c.lookup(later, ip(3)), Lookup::Found(MAC));
    }

    #[test]
    fn retries_then_gives_up_and_drops_the_queue() {
        let t0 = Instant::now();
        let cfg = NeighborConfig { retries: 2, retry_interval: Duration::from_millis(100), ..Default::default() };
        let mut c = NeighborCache::new(cfg);
        c.enqueue(t0, ip(7), Bytes::from_static(b"x"));
        assert_eq!(c.poll_request(t0), Some(ip(7)));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(c.poll_at(), Some(t1));
        assert_eq!(c.poll_request(t1), Some(ip(7)));
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(c.poll_request(t2), None);
        assert_eq!(c.stats().dropped_unresolved, 1);
        assert_eq!(c.lookup(t2, ip(7)), Lookup::Failed);
        assert!(!c.enqueue(t2, ip(7), Bytes::from_static(b"y")));
        // After the hold-down, resolution starts again.
        let t3 = t2 + Duration::from_millis(100);
        assert_eq!(c.lookup(t3, ip(7)), Lookup::Unknown);
        assert!(c.enqueue(t3, ip(7), Bytes::from_static(b"z")));
        assert_eq!(c.poll_request(t3), Some(ip(7)));
    }

    #[test]
    fn queues_are_bounded() {
        let t0 = Instant::now();
        let cfg = NeighborConfig { max_pending_per_addr: 2, max_pending: 3, max_resolving: 2, ..Default::default() };
        let mut c = NeighborCache::new(cfg);
        for i in 0..5u8 {
            c.enqueue(t0, ip(1), Bytes::from(vec![i]));
        }
        assert!(c.enqueue(t0, ip(2), Bytes::from_static(b"q")));
        assert!(!c.enqueue(t0, ip(2), Bytes::from_static(b"r")), "total limit");
        assert!(!c.enqueue(t0, ip(3), Bytes::from_static(b"s")), "resolving limit");
        let got: Vec<_> = c.fill(t0, ip(1), MAC).into_iter().collect();
        assert_eq!(got, vec![Bytes::from(vec![3u8]), Bytes::from(vec![4u8])], "oldest dropped first");
        assert!(c.stats().dropped_queue_full >= 4);
    }
}
