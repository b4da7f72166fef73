//! Simulated links: configuration, fault injection and statistics.
//!
//! A link is a shared segment (a hub): a frame one attached node sends is delivered
//! to every other attached node, each delivery with its own, independently drawn
//! faults. A point-to-point link is a link with two nodes.
//!
//! The fault model is documented on [`LinkConfig`].

use core::cmp::{Ordering, Reverse};
use core::fmt;
use core::time::Duration;
use std::collections::BinaryHeap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::rng::Rng;

/// The length of an Ethernet II header, which the MTU does not include.
const ETHERNET_HEADER_LEN: usize = 14;

/// The smallest extra delay of a reordered frame.
const MIN_REORDER_DELAY: Duration = Duration::from_micros(10);

/// How a link behaves: its faults, timing and size limit.
///
/// Build one from [`LinkConfig::ideal`] with the `with_*` setters:
///
/// ```
/// use std::time::Duration;
/// use demi_net_stack::sim::LinkConfig;
///
/// let lossy = LinkConfig::ideal()
///     .with_loss(0.01)
///     .with_delay(Duration::from_millis(5))
///     .with_jitter(Duration::from_micros(200))
///     .with_bandwidth_bps(100_000_000);
/// assert!(lossy.validate().is_ok());
/// assert!(LinkConfig::ideal().with_loss(1.5).validate().is_err());
/// ```
///
/// The fields are public for inspection and quick tweaks; [`LinkConfig::validate`]
/// (which [`Simulator::add_link`](super::Simulator::add_link) calls) rejects
/// nonsense values.
///
/// # What happens to a frame
///
/// When a node transmits a frame at `now`:
///
/// 1. **MTU.** A frame longer than `mtu + 14` bytes (the IP MTU plus the Ethernet
///    header) is dropped and counted in [`LinkStats::too_big`].
/// 2. **Bandwidth.** With [`LinkConfig::bandwidth_bps`] set, every node has its own
///    transmit queue onto the link (a full-duplex switch port, no collisions): the
///    frame starts serialising at `max(now, end of the previous frame)` and takes
///    `len * 8 / bandwidth` seconds (the frame's own bytes only: no preamble,
///    inter-frame gap or FCS). With [`LinkConfig::queue_bytes`] set, a frame that
///    would make the backlog exceed it is tail-dropped and counted in
///    [`LinkStats::queue_dropped`]. Without a bandwidth the frame leaves at once.
///
/// Then, for every receiver separately:
///
/// 3. **Loss** with probability `loss` (counted in [`LinkStats::lost`]).
/// 4. **Corruption** with probability `corrupt`: the receiver gets a copy with
///    exactly one bit flipped, at a random bit of a random byte (counted).
/// 5. **Transit**: the frame arrives at `end of serialisation + delay + j`, with `j`
///    uniform in `[0, jitter]`. Jitter is drawn per frame, so frames sent closer
///    together than `jitter` can arrive out of order even without `reorder`.
/// 6. **Reordering** with probability `reorder`: the frame is held back by an extra
///    delay uniform in `[b, 3b]` where `b = max(serialisation + delay + jitter,
///    10 µs)`, so it lands after frames sent up to `b` later (counted in
///    [`LinkStats::reordered`]).
/// 7. **Duplication** with probability `duplicate`: a second copy of the (possibly
///    corrupted) frame arrives at `end of serialisation + delay + j'` with its own
///    jitter `j'` (counted in [`LinkStats::duplicated`]).
///
/// Frames due at the same instant are delivered in the order they were scheduled.
/// All randomness comes from the link's own [`Rng`] stream, forked from the
/// simulator's seed when the link is added, so a run is a pure function of the seed
/// and of the order in which nodes and links are added. A link that can never fault
/// (all probabilities 0, no jitter) draws no random numbers at all.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Probability that a delivery is lost, in `[0, 1]`.
    pub loss: f64,
    /// Probability that a delivery arrives twice, in `[0, 1]`.
    pub duplicate: f64,
    /// Probability that a delivery is held back behind later frames, in `[0, 1]`.
    pub reorder: f64,
    /// Probability that a delivery has one bit flipped, in `[0, 1]`.
    pub corrupt: f64,
    /// Fixed propagation delay added to every delivery.
    pub delay: Duration,
    /// Upper bound of the uniformly distributed extra delay of each delivery.
    pub jitter: Duration,
    /// Bits per second each node can put onto the link; `None` for unlimited.
    /// `Some(0)` is invalid.
    pub bandwidth_bps: Option<u64>,
    /// Most bytes that may wait in a node's transmit queue (including the frame
    /// being serialised) before new frames are tail-dropped; `None` for an unbounded
    /// queue. Only meaningful with a bandwidth.
    pub queue_bytes: Option<usize>,
    /// The IP MTU: frames longer than `mtu + 14` bytes are dropped.
    pub mtu: usize,
}

impl LinkConfig {
    /// A perfect link: no faults, 10 µs delay, no jitter, unlimited bandwidth,
    /// MTU 1500.
    pub fn ideal() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay: Duration::from_micros(10),
            jitter: Duration::ZERO,
            bandwidth_bps: None,
            queue_bytes: None,
            mtu: 1500,
        }
    }

    /// Sets the loss probability.
    #[must_use]
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Sets the duplication probability.
    #[must_use]
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Sets the reordering probability.
    #[must_use]
    pub fn with_reorder(mut self, p: f64) -> Self {
        self.reorder = p;
        self
    }

    /// Sets the corruption probability.
    #[must_use]
    pub fn with_corrupt(mut self, p: f64) -> Self {
        self.corrupt = p;
        self
    }

    /// Sets the propagation delay.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the jitter bound.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Limits each node's transmit rate to `bps` bits per second.
    #[must_use]
    pub fn with_bandwidth_bps(mut self, bps: u64) -> Self {
        self.bandwidth_bps = Some(bps);
        self
    }

    /// Bounds each node's transmit queue to `bytes` (see [`LinkConfig::queue_bytes`]).
    #[must_use]
    pub fn with_queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = Some(bytes);
        self
    }

    /// Sets the IP MTU.
    #[must_use]
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Checks that every probability is a number in `[0, 1]` and that the bandwidth,
    /// if any, is not zero.
    pub fn validate(&self) -> Result<(), LinkConfigError> {
        for (field, p) in [
            (ProbabilityField::Loss, self.loss),
            (ProbabilityField::Duplicate, self.duplicate),
            (ProbabilityField::Reorder, self.reorder),
            (ProbabilityField::Corrupt, self.corrupt),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(LinkConfigError::Probability(field));
            }
        }
        if self.bandwidth_bps == Some(0) {
            return Err(LinkConfigError::ZeroBandwidth);
        }
        Ok(())
    }
}

impl Default for LinkConfig {
    /// [`LinkConfig::ideal`].
    fn default() -> Self {
        LinkConfig::ideal()
    }
}

/// Which probability of a [`LinkConfig`] is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbabilityField {
    /// [`LinkConfig::loss`].
    Loss,
    /// [`LinkConfig::duplicate`].
    Duplicate,
    /// [`LinkConfig::reorder`].
    Reorder,
    /// [`LinkConfig::corrupt`].
    Corrupt,
}

impl fmt::Display for ProbabilityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbabilityField::Loss => "loss",
            ProbabilityField::Duplicate => "duplicate",
            ProbabilityField::Reorder => "reorder",
            ProbabilityField::Corrupt => "corrupt",
        })
    }
}

/// Why a [`LinkConfig`] is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkConfigError {
    /// A probability is NaN or outside `[0, 1]`.
    Probability(ProbabilityField),
    /// The bandwidth is zero bits per second (use `None` for unlimited).
    ZeroBandwidth,
}

impl fmt::Display for LinkConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkConfigError::Probability(field) => {
                write!(f, "link {field} probability is not in [0, 1]")
            }
            LinkConfigError::ZeroBandwidth => f.write_str("link bandwidth is zero"),
        }
    }
}

impl std::error::Error for LinkConfigError {}

/// What a link did with the frames it carried.
///
/// `sent` and `too_big` and `queue_dropped` count transmissions; the others count
/// deliveries (one per receiver, so a frame on a hub of three nodes can be
/// delivered twice). Once nothing is in flight, on a link with `n` nodes:
/// `delivered + lost == (n - 1) * (sent - too_big - queue_dropped) + duplicated`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LinkStats {
    /// Frames nodes put onto the link.
    pub sent: u64,
    /// Frames handed to receiving nodes (duplicates included).
    pub delivered: u64,
    /// Deliveries dropped by random loss.
    pub lost: u64,
    /// Frames dropped for exceeding the MTU.
    pub too_big: u64,
    /// Frames tail-dropped because the sender's transmit queue was full.
    pub queue_dropped: u64,
    /// Deliveries that got an extra copy.
    pub duplicated: u64,
    /// Deliveries held back behind later frames.
    pub reordered: u64,
    /// Deliveries with a flipped bit.
    pub corrupted: u64,
    /// Bytes handed to receiving nodes (duplicates included).
    pub bytes_delivered: u64,
}

/// A frame on its way to a node.
#[derive(Debug)]
pub(super) struct Delivery {
    /// When it arrives.
    pub(super) at: Instant,
    /// Tie-breaker: the order in which deliveries were scheduled.
    seq: u64,
    /// The link it travels on (an index into the simulator's links).
    pub(super) link: usize,
    /// The receiving node (an index into the simulator's nodes).
    pub(super) to: usize,
    /// The frame as it will be received.
    pub(super) frame: Bytes,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Delivery {}

impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delivery {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The frames in flight on every link, earliest first; equal times in FIFO order.
#[derive(Debug, Default)]
pub(super) struct DeliveryQueue {
    heap: BinaryHeap<Reverse<Delivery>>,
    next_seq: u64,
}

impl DeliveryQueue {
    fn push(&mut self, at: Instant, link: usize, to: usize, frame: Bytes) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Delivery {
            at,
            seq,
            link,
            to,
            frame,
        }));
    }

    /// When the earliest frame arrives.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// Takes the earliest frame if it arrives at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Delivery> {
        if self.next_at()? <= now {
            self.heap.pop().map(|Reverse(d)| d)
        } else {
            None
        }
    }

    /// How many frames are in flight.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// One simulated link: its nodes, faults, per-sender queues and counters.
#[derive(Debug)]
pub(super) struct Link {
    config: LinkConfig,
    /// The attached nodes (indices into the simulator's nodes); a node's position
    /// here is its port.
    nodes: Vec<usize>,
    /// Per port: when the frame being serialised finishes.
    busy_until: Vec<Instant>,
    rng: Rng,
    pub(super) stats: LinkStats,
}

impl Link {
    /// A link between `nodes`, created at `now`. `config` must be valid.
    pub(super) fn new(config: LinkConfig, nodes: Vec<usize>, now: Instant, rng: Rng) -> Self {
        let busy_until = vec![now; nodes.len()];
        Link {
            config,
            nodes,
            busy_until,
            rng,
            stats: LinkStats::default(),
        }
    }

    pub(super) fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the configuration (which must be valid); frames in flight keep their
    /// schedule.
    pub(super) fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Puts `frame`, sent by the node on `port` at `now`, onto the link: applies the
    /// MTU, bandwidth and faults and schedules its deliveries on `queue`.
    /// `link` is this link's own index, recorded in the deliveries.
    pub(super) fn send(
        &mut self,
        link: usize,
        port: usize,
        now: Instant,
        frame: Bytes,
        queue: &mut DeliveryQueue,
    ) {
        self.stats.sent += 1;
        let len = frame.len();
        if len > self.config.mtu.saturating_add(ETHERNET_HEADER_LEN) {
            self.stats.too_big += 1;
            return;
        }

        let (departed, serialisation) = match self.config.bandwidth_bps {
            None => (now, Duration::ZERO),
            Some(bps) => {
                let start = self.busy_until[port].max(now);
                if let Some(limit) = self.config.queue_bytes {
                    let backlog = bytes_in(start.saturating_duration_since(now), bps);
                    if backlog.saturating_add(len as u128) > limit as u128 {
                        self.stats.queue_dropped += 1;
                        return;
                    }
                }
                let serialisation = serialisation_time(len, bps);
                let Some(end) = start.checked_add(serialisation) else {
                    // Only reachable with absurd parameters: the end of time.
                    self.stats.queue_dropped += 1;
                    return;
                };
                self.busy_until[port] = end;
                (end, serialisation)
            }
        };

        let config = &self.config;
        let rng = &mut self.rng;
        for (to_port, &to) in self.nodes.iter().enumerate() {
            if to_port == port {
                continue;
            }
            if rng.gen_bool(config.loss) {
                self.stats.lost += 1;
                continue;
            }
            let mut frame = frame.clone();
            if rng.gen_bool(config.corrupt) && !frame.is_empty() {
                frame = flip_random_bit(&frame, rng);
                self.stats.corrupted += 1;
            }
            let mut transit = config.delay.saturating_add(rng.gen_duration(config.jitter));
            if rng.gen_bool(config.reorder) {
                let base = serialisation
                    .saturating_add(config.delay)
                    .saturating_add(config.jitter)
                    .max(MIN_REORDER_DELAY);
                let extra = base.saturating_add(rng.gen_duration(base.saturating_mul(2)));
                transit = transit.saturating_add(extra);
                self.stats.reordered += 1;
            }
            let Some(at) = departed.checked_add(transit) else {
                // Past the end of representable time: it never arrives.
                self.stats.lost += 1;
                continue;
            };
            queue.push(at, link, to, frame.clone());
            if rng.gen_bool(config.duplicate) {
                let transit = config.delay.saturating_add(rng.gen_duration(config.jitter));
                if let Some(at) = departed.checked_add(transit) {
                    queue.push(at, link, to, frame);
                    self.stats.duplicated += 1;
                }
            }
        }
    }
}

/// How long `len` bytes take at `bps` bits per second (rounded up to a whole
/// nanosecond; saturating at `u64::MAX` ns).
fn serialisation_time(len: usize, bps: u64) -> Duration {
    let bits = len as u128 * 8;
    let nanos = (bits * 1_000_000_000).div_ceil(u128::from(bps.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many bytes `bps` bits per second carry in `d` (rounded down).
fn bytes_in(d: Duration, bps: u64) -> u128 {
    d.as_nanos() * u128::from(bps) / 8_000_000_000
}

/// A copy of `frame` (not empty) with one random bit flipped.
fn flip_random_bit(frame: &Bytes, rng: &mut Rng) -> Bytes {
    let mut copy = BytesMut::from(&frame[..]);
    let byte = rng.gen_range(0..copy.len() as u64) as usize;
    let bit = rng.gen_range(0..8);
    copy[byte] ^= 1 << bit;
    copy.freeze()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{frame, seq_of, TestNode};
    use super::super::{NodeId, SimError, Simulator};
    use super::*;

    /// Node 0 sends `count` frames of `len` bytes at the start to node 1 over a link
    /// configured by `config`; runs to idle.
    fn one_way(seed: u64, config: LinkConfig, count: u32, len: usize) -> Simulator<TestNode> {
        let start = Instant::now();
        let mut sim = Simulator::new(start, seed);
        let a = sim.add_node(TestNode::sending(start, (0..count).map(|i| frame(i, len))));
        let b = sim.add_node(TestNode::default());
        sim.add_link(&[a, b], config).unwrap();
        let result = sim.run_until(Duration::from_secs(3600), |_| false);
        assert_eq!(result, Err(SimError::Stalled));
        sim
    }

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);
    const L: super::super::LinkId = super::super::LinkId(0);

    #[test]
    fn ideal_link_delivers_everything_in_order_after_the_delay() {
        let sim = one_way(1, LinkConfig::ideal(), 100, 100);
        let rx = &sim.node(B).received;
        assert_eq!(rx.len(), 100);
        let start = sim.start();
        for (i, (at, f)) in rx.iter().enumerate() {
            assert_eq!(seq_of(f), i as u32);
            assert_eq!(*f, frame(i as u32, 100));
            assert_eq!(*at, start + Duration::from_micros(10));
        }
        assert!(sim.node(A).received.is_empty());
        let stats = sim.link_stats(L);
        assert_eq!(
            stats,
            LinkStats {
                sent: 100,
                delivered: 100,
                bytes_delivered: 10_000,
                ..LinkStats::default()
            }
        );
        assert_eq!(sim.now(), start + Duration::from_micros(10));
    }

    #[test]
    fn total_loss_delivers_nothing() {
        let sim = one_way(1, LinkConfig::ideal().with_loss(1.0), 50, 64);
        assert!(sim.node(B).received.is_empty());
        let stats = sim.link_stats(L);
        assert_eq!((stats.sent, stats.lost, stats.delivered), (50, 50, 0));
    }

    #[test]
    fn ten_percent_loss_is_about_ten_percent_and_reproducible() {
        let config = LinkConfig::ideal().with_loss(0.1);
        let run = |seed| one_way(seed, config.clone(), 10_000, 64);
        let first = run(7);
        let stats = first.link_stats(L);
        // Binomial(10_000, 0.1): standard deviation 30.
        assert!((850..=1150).contains(&stats.lost), "lost {}", stats.lost);
        assert_eq!(stats.lost + stats.delivered, 10_000);
        let seqs = |sim: &Simulator<TestNode>| -> Vec<u32> {
            sim.node(B)
                .received
                .iter()
                .map(|(_, f)| seq_of(f))
                .collect()
        };
        let again = run(7);
        assert_eq!(seqs(&first), seqs(&again));
        assert_eq!(again.link_stats(L), stats);
        let other = run(8);
        assert_ne!(seqs(&first), seqs(&other));
    }

    #[test]
    fn duplication_delivers_extra_copies() {
        let sim = one_way(3, LinkConfig::ideal().with_duplicate(0.2), 1000, 64);
        let stats = sim.link_stats(L);
        assert!((140..=260).contains(&stats.duplicated), "{stats:?}");
        assert_eq!(stats.delivered, 1000 + stats.duplicated);
        let rx = &sim.node(B).received;
        assert_eq!(rx.len() as u64, stats.delivered);
        let mut counts = vec![0u32; 1000];
        for (_, f) in rx {
            counts[seq_of(f) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c == 1 || c == 2));
        assert_eq!(
            counts.iter().filter(|&&c| c == 2).count() as u64,
            stats.duplicated
        );
    }

    #[test]
    fn reordering_holds_frames_back_behind_later_ones() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 4);
        // One frame every 5 µs: a reordered frame (held back by at least 10 µs)
        // lands behind at least one later frame.
        let frames = (0..1000).map(|i| (start + Duration::from_micros(5 * i), frame(i as u32, 64)));
        let a = sim.add_node(TestNode::sending_at(frames));
        let b = sim.add_node(TestNode::default());
        let l = sim
            .add_link(&[a, b], LinkConfig::ideal().with_reorder(0.1))
            .unwrap();
        assert_eq!(
            sim.run_until(Duration::from_secs(1), |_| false),
            Err(SimError::Stalled)
        );
        let stats = sim.link_stats(l);
        assert!((60..=140).contains(&stats.reordered), "{stats:?}");
        assert_eq!(stats.delivered, 1000);
        let seqs: Vec<u32> = sim
            .node(b)
            .received
            .iter()
            .map(|(_, f)| seq_of(f))
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..1000).collect::<Vec<_>>(),
            "nothing lost or added"
        );
        // Every held-back frame shows up as a descent in the received order.
        let descents = seqs.windows(2).filter(|w| w[0] > w[1]).count() as u64;
        assert!(descents > 0 && descents <= stats.reordered, "{descents}");
        // A frame that was not reordered arrives exactly after the delay.
        let on_time = sim
            .node(b)
            .received
            .iter()
            .filter(|(at, f)| *at == start + Duration::from_micros(5 * u64::from(seq_of(f)) + 10))
            .count() as u64;
        assert_eq!(on_time, 1000 - stats.reordered);
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let sim = one_way(5, LinkConfig::ideal().with_corrupt(1.0), 500, 100);
        let stats = sim.link_stats(L);
        assert_eq!(stats.corrupted, 500);
        let mut flipped_bits = std::collections::BTreeSet::new();
        for (i, (_, got)) in sim.node(B).received.iter().enumerate() {
            let sent = frame(i as u32, 100);
            assert_eq!(got.len(), sent.len());
            let mut diff_bits = 0;
            for (pos, (x, y)) in got.iter().zip(sent.iter()).enumerate() {
                let d = x ^ y;
                diff_bits += d.count_ones();
                if d != 0 {
                    flipped_bits.insert(pos * 8 + d.trailing_zeros() as usize);
                }
            }
            assert_eq!(diff_bits, 1, "frame {i}");
        }
        // The flipped bit is spread over the frame, not always the same one.
        assert!(flipped_bits.len() > 200, "{}", flipped_bits.len());
    }

    #[test]
    fn bandwidth_serialises_frames() {
        let config = LinkConfig::ideal().with_bandwidth_bps(10_000_000);
        let sim = one_way(6, config, 100, 1250);
        let rx = &sim.node(B).received;
        assert_eq!(rx.len(), 100);
        let start = sim.start();
        // 1250 bytes = 10,000 bits = 1 ms at 10 Mbit/s, then the 10 µs delay.
        for (i, (at, f)) in rx.iter().enumerate() {
            assert_eq!(seq_of(f), i as u32);
            let expected = start + Duration::from_millis(i as u64 + 1) + Duration::from_micros(10);
            assert_eq!(*at, expected);
        }
        assert_eq!(sim.elapsed(), Duration::from_micros(100_010));
    }

    #[test]
    fn a_full_transmit_queue_tail_drops() {
        // Room for 10 frames of 1250 bytes queued at once.
        let config = LinkConfig::ideal()
            .with_bandwidth_bps(10_000_000)
            .with_queue_bytes(12_500);
        let sim = one_way(6, config, 100, 1250);
        let stats = sim.link_stats(L);
        assert_eq!((stats.delivered, stats.queue_dropped), (10, 90));
        let seqs: Vec<u32> = sim
            .node(B)
            .received
            .iter()
            .map(|(_, f)| seq_of(f))
            .collect();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn frames_over_the_mtu_are_dropped() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 1);
        let frames = [frame(0, 1514), frame(1, 1515), frame(2, 60), frame(3, 9000)];
        let a = sim.add_node(TestNode::sending(start, frames));
        let b = sim.add_node(TestNode::default());
        let l = sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        let _ = sim.run_until(Duration::from_secs(1), |_| false);
        let seqs: Vec<u32> = sim
            .node(b)
            .received
            .iter()
            .map(|(_, f)| seq_of(f))
            .collect();
        assert_eq!(seqs, [0, 2]);
        assert_eq!(sim.link_stats(l).too_big, 2);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let config = LinkConfig::ideal()
            .with_delay(Duration::from_micros(100))
            .with_jitter(Duration::from_micros(50));
        let sim = one_way(9, config, 1000, 64);
        let start = sim.start();
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for (at, _) in &sim.node(B).received {
            let transit = *at - start;
            min = min.min(transit);
            max = max.max(transit);
        }
        assert!(min >= Duration::from_micros(100) && min < Duration::from_micros(105));
        assert!(max <= Duration::from_micros(150) && max > Duration::from_micros(145));
    }

    #[test]
    fn stats_balance_under_every_fault_at_once() {
        let config = LinkConfig::ideal()
            .with_loss(0.2)
            .with_duplicate(0.2)
            .with_reorder(0.2)
            .with_corrupt(0.2)
            .with_jitter(Duration::from_micros(30))
            .with_bandwidth_bps(1_000_000_000)
            .with_mtu(1000);
        let sizes = [60usize, 1014, 1015, 500];
        let start = Instant::now();
        let mut sim = Simulator::new(start, 11);
        let frames = (0..2000u32).map(|i| frame(i, sizes[i as usize % 4]));
        let a = sim.add_node(TestNode::sending(start, frames));
        let b = sim.add_node(TestNode::default());
        let l = sim.add_link(&[a, b], config).unwrap();
        let _ = sim.run_until(Duration::from_secs(1), |_| false);
        let s = sim.link_stats(l);
        assert_eq!(s.too_big, 500);
        assert_eq!(s.delivered + s.lost, s.sent - s.too_big + s.duplicated);
        assert_eq!(s.delivered, sim.node(b).received.len() as u64);
        let bytes: usize = sim.node(b).received.iter().map(|(_, f)| f.len()).sum();
        assert_eq!(s.bytes_delivered, bytes as u64);
        for n in [s.lost, s.duplicated, s.reordered, s.corrupted] {
            assert!(n > 150, "{s:?}");
        }
    }

    #[test]
    fn hub_delivers_to_every_other_node() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 1);
        let a = sim.add_node(TestNode::sending(start, (0..5).map(|i| frame(i, 60))));
        let b = sim.add_node(TestNode::sending(start, [frame(100, 60)]));
        let c = sim.add_node(TestNode::default());
        let l = sim.add_link(&[a, b, c], LinkConfig::ideal()).unwrap();
        let _ = sim.run_until(Duration::from_secs(1), |_| false);
        let seqs = |n| -> Vec<u32> {
            sim.node(n)
                .received
                .iter()
                .map(|(_, f)| seq_of(f))
                .collect()
        };
        assert_eq!(seqs(a), [100]);
        assert_eq!(seqs(b), [0, 1, 2, 3, 4]);
        assert_eq!(seqs(c), [0, 1, 2, 3, 4, 100]);
        let s = sim.link_stats(l);
        assert_eq!((s.sent, s.delivered), (6, 12));
    }

    #[test]
    fn validate_rejects_nonsense() {
        use LinkConfigError::*;
        use ProbabilityField::*;
        let ideal = LinkConfig::ideal();
        assert_eq!(ideal.validate(), Ok(()));
        assert_eq!(LinkConfig::default(), ideal);
        let all_ones = ideal
            .clone()
            .with_loss(1.0)
            .with_duplicate(1.0)
            .with_reorder(1.0)
            .with_corrupt(1.0);
        assert_eq!(all_ones.validate(), Ok(()));
        assert_eq!(
            ideal.clone().with_loss(-0.1).validate(),
            Err(Probability(Loss))
        );
        assert_eq!(
            ideal.clone().with_duplicate(1.1).validate(),
            Err(Probability(Duplicate))
        );
        assert_eq!(
            ideal.clone().with_reorder(f64::NAN).validate(),
            Err(Probability(Reorder))
        );
        assert_eq!(
            ideal.clone().with_corrupt(f64::INFINITY).validate(),
            Err(Probability(Corrupt))
        );
        assert_eq!(
            ideal.clone().with_bandwidth_bps(0).validate(),
            Err(ZeroBandwidth)
        );
        assert_eq!(
            Probability(Loss).to_string(),
            "link loss probability is not in [0, 1]"
        );
    }

    #[test]
    fn extreme_parameters_do_not_panic() {
        let config = LinkConfig::ideal()
            .with_delay(Duration::MAX)
            .with_jitter(Duration::MAX)
            .with_reorder(1.0)
            .with_duplicate(1.0)
            .with_bandwidth_bps(1)
            .with_mtu(usize::MAX);
        let sim = one_way(1, config, 3, 64);
        assert!(sim.node(B).received.is_empty());
        // An empty frame cannot be corrupted, but is otherwise delivered.
        let sim = one_way(1, LinkConfig::ideal().with_corrupt(1.0), 1, 0);
        assert_eq!(sim.node(B).received.len(), 1);
        assert_eq!(sim.link_stats(L).corrupted, 0);
    }

    #[test]
    fn serialisation_time_rounds_up() {
        assert_eq!(
            serialisation_time(1250, 10_000_000),
            Duration::from_millis(1)
        );
        assert_eq!(
            serialisation_time(1, 3),
            Duration::from_nanos(2_666_666_667)
        );
        assert_eq!(serialisation_time(0, 1), Duration::ZERO);
        assert_eq!(bytes_in(Duration::from_millis(1), 10_000_000), 1250);
    }
}
