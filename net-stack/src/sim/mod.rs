//! A deterministic network simulator: hosts on a virtual clock, joined by links with
//! seeded faults.
//!
//! The simulator drives any number of [`Node`]s (a host with one Ethernet interface:
//! typically a whole stack plus a small application) and carries the frames they send
//! over simulated links ([`LinkConfig`]) that lose, duplicate, reorder, corrupt, delay
//! and rate-limit them. Everything is a pure function of the seed passed to
//! [`Simulator::new`]: there is no I/O (except pcap output into a caller-supplied
//! writer), no clock read and no hash-map iteration, so a failing seed reproduces
//! exactly, and can be replayed with [`Simulator::capture`] turned on to see every
//! frame in tcpdump or Wireshark. Nodes can draw their own randomness from the same
//! seed with [`Simulator::fork_rng`].
//!
//! Files: `link.rs` (link configuration, faults, statistics), `rng.rs` (the seeded
//! generator), `pcap.rs` (the capture writer), `host.rs` (a [`Stack`](crate::iface::Stack)
//! with an application as a node), `transfer.rs` (a bulk TCP transfer between two
//! stacks: the workload of the simulator tests, examples and benches).
//!
//! Time is virtual. The clock starts at the `Instant` the caller passes in (take
//! `Instant::now()` once) and jumps straight from one event to the next, so a test
//! that spans minutes of simulated retransmission timeouts runs in milliseconds.
//!
//! # The call order
//!
//! One [`Simulator::step`] does, at the current virtual time `now`:
//!
//! 1. for every node, in the order they were added: [`Node::poll`]`(now)`, then
//!    [`Node::transmit`]`(now)` until it returns `None`; each frame goes onto the
//!    node's link (a node without a link drops what it sends) and is scheduled for
//!    delivery (see [`LinkConfig`] for what the link does to it);
//! 2. the next event is the earliest of the next scheduled delivery and every node's
//!    [`Node::poll_at`] (a deadline in the past counts as `now`). If there is none,
//!    the simulation is idle for ever and `step` returns `false`;
//! 3. the clock moves to that event (it never goes back);
//! 4. every frame due by then is handed over with [`Node::receive`]`(now, frame)`,
//!    in arrival order, frames due at the same instant first-scheduled first.
//!
//! So a node sees `receive` for the frames arriving at an instant, then, at the
//! start of the next step and at the same instant, `poll` and `transmit`: a reply
//! leaves at the time its trigger arrived.
//!
//! [`Simulator::run_until`] steps until a condition holds, a virtual-time limit
//! passes or the simulation goes idle; [`Simulator::run_for`] steps through a span of
//! virtual time.
//!
//! # Example
//!
//! Two nodes that echo the frames they receive (up to a point), over a link with a
//! 1 ms delay:
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use demi_net_stack::sim::{LinkConfig, Node, Simulator};
//!
//! struct Echo {
//!     outbox: VecDeque<Bytes>,
//!     received: Vec<Instant>,
//! }
//!
//! impl Node for Echo {
//!     fn receive(&mut self, now: Instant, frame: Bytes) {
//!         self.received.push(now);
//!         if self.received.len() < 3 {
//!             self.outbox.push_back(frame);
//!         }
//!     }
//!     fn transmit(&mut self, _now: Instant) -> Option<Bytes> {
//!         self.outbox.pop_front()
//!     }
//!     fn poll(&mut self, _now: Instant) {}
//!     fn poll_at(&self) -> Option<Instant> {
//!         None
//!     }
//! }
//!
//! let start = Instant::now();
//! let mut sim = Simulator::new(start, 42);
//! let ping = Bytes::from_static(b"ping");
//! let a = sim.add_node(Echo { outbox: VecDeque::from([ping]), received: Vec::new() });
//! let b = sim.add_node(Echo { outbox: VecDeque::new(), received: Vec::new() });
//! let link = sim.add_link(&[a, b], LinkConfig::ideal().with_delay(Duration::from_millis(1)))?;
//!
//! // a → b at 1 ms, b → a at 2 ms, a → b at 3 ms, b → a at 4 ms.
//! sim.run_until(Duration::from_secs(1), |sim| sim.node(a).received.len() == 2)?;
//! assert_eq!(sim.elapsed(), Duration::from_millis(4));
//! assert_eq!(sim.node(b).received.len(), 2);
//! assert_eq!(sim.link_stats(link).delivered, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::time::Duration;
use std::io::{self, Write};
use std::time::Instant;

use bytes::Bytes;

pub mod host;
mod link;
mod pcap;
mod rng;
pub mod transfer;

pub use self::link::{LinkConfig, LinkConfigError, LinkStats, ProbabilityField};
pub use self::pcap::{PcapWriter, LINKTYPE_ETHERNET, PCAP_EPOCH, PCAP_MAGIC, PCAP_SNAPLEN};
pub use self::rng::Rng;

use self::link::{DeliveryQueue, Link};

/// A host the simulator drives: one Ethernet interface, frames in and out, time
/// passed in.
///
/// See the [module documentation](self) for the order of the calls. All of them get
/// the simulator's virtual time; an implementation must not read a clock of its own.
pub trait Node {
    /// A frame arrives at this node's interface at `now`.
    fn receive(&mut self, now: Instant, frame: Bytes);

    /// The next frame this node wants to send at `now`, if any. Called after
    /// [`Node::poll`] until it returns `None` (so it must, eventually).
    fn transmit(&mut self, now: Instant) -> Option<Bytes>;

    /// Runs timers and application work at `now`. Called once for every node at the
    /// start of every step, whether or not anything happened to this node.
    fn poll(&mut self, now: Instant);

    /// The next instant this node needs [`Node::poll`] even if no frame arrives;
    /// `None` if it has no timer.
    ///
    /// Returning an instant at or before the current time asks for another step
    /// without the clock moving; doing that for ever is reported by
    /// [`Simulator::run_until`] as [`SimError::Livelock`].
    fn poll_at(&self) -> Option<Instant>;
}

impl<T: Node + ?Sized> Node for Box<T> {
    fn receive(&mut self, now: Instant, frame: Bytes) {
        (**self).receive(now, frame)
    }
    fn transmit(&mut self, now: Instant) -> Option<Bytes> {
        (**self).transmit(now)
    }
    fn poll(&mut self, now: Instant) {
        (**self).poll(now)
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
}

/// Names a node of a [`Simulator`] (given out by [`Simulator::add_node`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

impl NodeId {
    /// The node's position in the order nodes were added, from 0.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// Names a link of a [`Simulator`] (given out by [`Simulator::add_link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(usize);

impl LinkId {
    /// The link's position in the order links were added, from 0.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link {}", self.0)
    }
}

/// Why [`Simulator::add_link`] refused a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddLinkError {
    /// The list of nodes is empty.
    NoNodes,
    /// The node does not belong to this simulator.
    UnknownNode(NodeId),
    /// The node is already attached to a link (possibly listed twice); a node has
    /// one interface.
    AlreadyAttached(NodeId),
    /// The configuration does not validate.
    InvalidConfig(LinkConfigError),
}

impl fmt::Display for AddLinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddLinkError::NoNodes => f.write_str("a link needs at least one node"),
            AddLinkError::UnknownNode(id) => write!(f, "{id} does not exist"),
            AddLinkError::AlreadyAttached(id) => write!(f, "{id} is already attached to a link"),
            AddLinkError::InvalidConfig(e) => write!(f, "invalid link configuration: {e}"),
        }
    }
}

impl std::error::Error for AddLinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AddLinkError::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LinkConfigError> for AddLinkError {
    fn from(e: LinkConfigError) -> Self {
        AddLinkError::InvalidConfig(e)
    }
}

/// Why [`Simulator::run_until`] (or [`Simulator::run_for`]) stopped without the
/// condition becoming true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimError {
    /// Nothing is scheduled any more (no frame in flight, no node timer), so the
    /// condition can never become true.
    Stalled,
    /// The time limit passed; the clock stops exactly at the limit.
    Timeout,
    /// The clock did not move and no frame was delivered for
    /// [`Simulator::set_livelock_limit`] steps in a row: some node keeps asking to be
    /// polled at the current instant (a `poll_at` in the past that `poll` does not
    /// clear is the usual bug).
    Livelock,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SimError::Stalled => "the simulation went idle before the condition held",
            SimError::Timeout => "the virtual time limit passed before the condition held",
            SimError::Livelock => "the simulation kept stepping without the clock moving",
        })
    }
}

impl std::error::Error for SimError {}

/// The default of [`Simulator::set_livelock_limit`].
pub const DEFAULT_LIVELOCK_LIMIT: u64 = 100_000;

/// A pcap capture in progress.
struct Capture {
    writer: PcapWriter<Box<dyn Write>>,
    /// The first write error; the capture stops at it.
    error: Option<io::Error>,
}

/// What one step did.
enum Step {
    /// Nothing is scheduled: idle for ever.
    Idle,
    /// The clock moved to the next event (possibly the same instant) and delivered
    /// what was due.
    Advanced,
    /// The next event lies past the horizon; the clock moved to the horizon.
    Horizon,
}

/// Stacks on a virtual clock, joined by faulty links. See the [module
/// documentation](self).
pub struct Simulator<N: Node> {
    start: Instant,
    now: Instant,
    /// Seeds each new link's own stream.
    rng: Rng,
    nodes: Vec<N>,
    /// Per node: its link and its port on that link.
    attached: Vec<Option<(usize, usize)>>,
    links: Vec<Link>,
    queue: DeliveryQueue,
    capture: Option<Capture>,
    /// Consecutive steps in which the clock did not move and nothing was delivered.
    stuck_steps: u64,
    livelock_limit: u64,
}

impl<N: Node> Simulator<N> {
    /// An empty simulation whose clock starts at `start` and whose randomness is
    /// all derived from `seed`.
    pub fn new(start: Instant, seed: u64) -> Self {
        Simulator {
            start,
            now: start,
            rng: Rng::new(seed),
            nodes: Vec::new(),
            attached: Vec::new(),
            links: Vec::new(),
            queue: DeliveryQueue::default(),
            capture: None,
            stuck_steps: 0,
            livelock_limit: DEFAULT_LIVELOCK_LIMIT,
        }
    }

    /// Adds a node, not yet attached to any link.
    pub fn add_node(&mut self, node: N) -> NodeId {
        self.nodes.push(node);
        self.attached.push(None);
        NodeId(self.nodes.len() - 1)
    }

    /// Adds a link joining `nodes`: every frame one of them sends reaches each of the
    /// others (two nodes make a point-to-point link). Each node can be on one link.
    ///
    /// The link's random stream is forked from the simulator's seed, so runs are
    /// reproducible as long as nodes and links are added in the same order.
    pub fn add_link(
        &mut self,
        nodes: &[NodeId],
        config: LinkConfig,
    ) -> Result<LinkId, AddLinkError> {
        if nodes.is_empty() {
            return Err(AddLinkError::NoNodes);
        }
        config.validate()?;
        for (i, &id) in nodes.iter().enumerate() {
            match self.attached.get(id.0) {
                None => return Err(AddLinkError::UnknownNode(id)),
                Some(Some(_)) => return Err(AddLinkError::AlreadyAttached(id)),
                Some(None) if nodes[..i].contains(&id) => {
                    return Err(AddLinkError::AlreadyAttached(id))
                }
                Some(None) => {}
            }
        }
        let index = self.links.len();
        for (port, id) in nodes.iter().enumerate() {
            self.attached[id.0] = Some((index, port));
        }
        let members = nodes.iter().map(|id| id.0).collect();
        let rng = self.rng.fork();
        self.links.push(Link::new(config, members, self.now, rng));
        Ok(LinkId(index))
    }

    /// The node `id`.
    ///
    /// # Panics
    ///
    /// If `id` comes from another simulator and names no node of this one.
    pub fn node(&self, id: NodeId) -> &N {
        &self.nodes[id.0]
    }

    /// The node `id`, mutably (to start application work between steps, say).
    ///
    /// # Panics
    ///
    /// If `id` comes from another simulator and names no node of this one.
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        &mut self.nodes[id.0]
    }

    /// A new random generator derived from the simulation's seed, for a node's own
    /// randomness (initial sequence numbers, ephemeral ports, …) so that it too is
    /// reproduced by the seed.
    ///
    /// Every call gives a different stream. The streams depend only on the seed and
    /// on the order of the calls to `fork_rng` and [`Simulator::add_link`] (which
    /// forks one per link).
    pub fn fork_rng(&mut self) -> Rng {
        self.rng.fork()
    }

    /// How many nodes there are.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The link `id`'s configuration.
    ///
    /// # Panics
    ///
    /// If `id` comes from another simulator and names no link of this one.
    pub fn link_config(&self, id: LinkId) -> &LinkConfig {
        self.links[id.0].config()
    }

    /// Changes the link `id`'s configuration from now on (to cut a link and heal
    /// it, say). Frames already in flight keep their schedule.
    ///
    /// # Panics
    ///
    /// If `id` comes from another simulator and names no link of this one.
    pub fn set_link_config(
        &mut self,
        id: LinkId,
        config: LinkConfig,
    ) -> Result<(), LinkConfigError> {
        config.validate()?;
        self.links[id.0].set_config(config);
        Ok(())
    }

    /// What the link `id` has done so far.
    ///
    /// # Panics
    ///
    /// If `id` comes from another simulator and names no link of this one.
    pub fn link_stats(&self, id: LinkId) -> LinkStats {
        self.links[id.0].stats
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant the simulation started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// How many frames are on their way.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Sets after how many consecutive steps without the clock moving or a frame
    /// being delivered [`Simulator::run_until`] and [`Simulator::run_for`] give up
    /// with [`SimError::Livelock`] (default [`DEFAULT_LIVELOCK_LIMIT`];
    /// `u64::MAX` never gives up).
    pub fn set_livelock_limit(&mut self, steps: u64) {
        self.livelock_limit = steps;
    }

    /// Starts writing every delivered frame (after faults: a corrupted frame as
    /// received, a duplicate twice, a frame on a hub once per receiver) to `out` as
    /// a pcap stream, stamped with virtual time counted from [`PCAP_EPOCH`].
    ///
    /// Writes the pcap header now and returns its error, if any. A later write error
    /// stops the capture without disturbing the simulation; [`Simulator::stop_capture`]
    /// reports it. A capture already in progress is flushed and replaced (call
    /// `stop_capture` first to see its errors). `out` is not buffered here: wrap a
    /// file in a [`std::io::BufWriter`].
    pub fn capture<W: Write + 'static>(&mut self, out: W) -> io::Result<()> {
        let _ = self.stop_capture();
        let writer = PcapWriter::new(Box::new(out) as Box<dyn Write>)?;
        self.capture = Some(Capture {
            writer,
            error: None,
        });
        Ok(())
    }

    /// Ends the capture in progress, if any: flushes the writer, drops it, and
    /// returns the first error the capture met.
    pub fn stop_capture(&mut self) -> io::Result<()> {
        let Some(mut capture) = self.capture.take() else {
            return Ok(());
        };
        if let Some(e) = capture.error.take() {
            return Err(e);
        }
        capture.writer.flush()
    }

    /// Runs one step (see the [module documentation](self)): polls every node,
    /// puts their frames onto the links, moves the clock to the next event and
    /// delivers the frames due by then.
    ///
    /// Returns `false` when nothing at all is scheduled, so further steps would do
    /// nothing (unless something outside changes a node).
    pub fn step(&mut self) -> bool {
        !matches!(self.step_before(None), Step::Idle)
    }

    /// Steps until `done` returns `true` (checked before the first step and after
    /// every step).
    ///
    /// Fails with [`SimError::Stalled`] if the simulation goes idle first, with
    /// [`SimError::Timeout`] if the next event lies more than `limit` of virtual
    /// time after the call (the clock is then left exactly at the limit), and with
    /// [`SimError::Livelock`] if steps stop moving the clock.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), SimError> {
        let deadline = self.now.checked_add(limit);
        self.stuck_steps = 0;
        loop {
            if done(self) {
                return Ok(());
            }
            match self.step_before(deadline) {
                Step::Idle => {
                    // The last step still polled every node.
                    return if done(self) {
                        Ok(())
                    } else {
                        Err(SimError::Stalled)
                    };
                }
                Step::Horizon => return Err(SimError::Timeout),
                Step::Advanced => {}
            }
            if self.stuck_steps >= self.livelock_limit {
                return Err(SimError::Livelock);
            }
        }
    }

    /// Steps through `span` of virtual time: every event up to `now + span` happens,
    /// and the clock ends exactly there, even if the simulation went idle.
    ///
    /// Fails only with [`SimError::Livelock`].
    pub fn run_for(&mut self, span: Duration) -> Result<(), SimError> {
        let end = self.now.checked_add(span);
        match self.run_until(span, |_| false) {
            Err(SimError::Timeout) => Ok(()),
            Err(SimError::Stalled) => {
                if let Some(end) = end {
                    self.now = end;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// One step that does not move the clock past `horizon`.
    fn step_before(&mut self, horizon: Option<Instant>) -> Step {
        let now = self.now;
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.poll(now);
            while let Some(frame) = node.transmit(now) {
                if let Some((link, port)) = self.attached[index] {
                    self.links[link].send(link, port, now, frame, &mut self.queue);
                }
            }
        }

        let timers = self.nodes.iter().filter_map(|n| n.poll_at());
        let Some(next) = self.queue.next_at().into_iter().chain(timers).min() else {
            return Step::Idle;
        };
        let next = next.max(now);
        if let Some(horizon) = horizon {
            if next > horizon {
                self.now = horizon.max(now);
                self.stuck_steps = 0;
                return Step::Horizon;
            }
        }
        self.now = next;

        let mut delivered = false;
        while let Some(delivery) = self.queue.pop_due(next) {
            delivered = true;
            let stats = &mut self.links[delivery.link].stats;
            stats.delivered += 1;
            stats.bytes_delivered += delivery.frame.len() as u64;
            if let Some(capture) = &mut self.capture {
                if capture.error.is_none() {
                    let ts = PCAP_EPOCH.saturating_add(next.saturating_duration_since(self.start));
                    if let Err(e) = capture.writer.write_frame(ts, &delivery.frame) {
                        capture.error = Some(e);
                    }
                }
            }
            self.nodes[delivery.to].receive(next, delivery.frame);
        }

        if next == now && !delivered {
            self.stuck_steps = self.stuck_steps.saturating_add(1);
        } else {
            self.stuck_steps = 0;
        }
        Step::Advanced
    }
}

impl<N: Node + fmt::Debug> fmt::Debug for Simulator<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.nodes)
            .field("links", &self.links)
            .field("in_flight", &self.queue.len())
            .field("capturing", &self.capture.is_some())
            .finish_non_exhaustive()
    }
}

/// A configurable node for the simulator's own tests.
#[cfg(test)]
mod testing {
    use std::collections::VecDeque;

    use super::*;

    /// A frame of `len` bytes (at least 4) starting with `seq`, big-endian, then a
    /// pattern.
    pub(crate) fn frame(seq: u32, len: usize) -> Bytes {
        let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7)).collect();
        let n = len.min(4);
        f[..n].copy_from_slice(&seq.to_be_bytes()[..n]);
        Bytes::from(f)
    }

    /// The number [`frame`] put at the start of `f`.
    pub(crate) fn seq_of(f: &Bytes) -> u32 {
        u32::from_be_bytes([f[0], f[1], f[2], f[3]])
    }

    /// Sends scheduled frames, fires scheduled timers, records everything.
    #[derive(Debug, Default)]
    pub(crate) struct TestNode {
        /// Frames to send, each from its instant on (in order).
        pub(crate) outbox: VecDeque<(Instant, Bytes)>,
        /// Timers still to fire (in order).
        pub(crate) timers: VecDeque<Instant>,
        /// Asks to be polled this long after every poll, for ever.
        pub(crate) tick: Option<Duration>,
        /// Asks to be polled at the current instant for ever (a livelock).
        pub(crate) spin: bool,
        /// Sends every received frame back.
        pub(crate) echo: bool,
        pub(crate) last_poll: Option<Instant>,
        /// Every frame received, with its arrival time.
        pub(crate) received: Vec<(Instant, Bytes)>,
        /// When each timer fired.
        pub(crate) fired: Vec<Instant>,
        /// How many times `poll` was called.
        pub(crate) polls: u64,
    }

    impl TestNode {
        /// Sends `frames` at `at`.
        pub(crate) fn sending(at: Instant, frames: impl IntoIterator<Item = Bytes>) -> Self {
            Self::sending_at(frames.into_iter().map(|f| (at, f)))
        }

        /// Sends each frame at its instant.
        pub(crate) fn sending_at(frames: impl IntoIterator<Item = (Instant, Bytes)>) -> Self {
            TestNode {
                outbox: frames.into_iter().collect(),
                ..TestNode::default()
            }
        }

        /// Fires a timer at each instant.
        pub(crate) fn with_timers(mut self, timers: impl IntoIterator<Item = Instant>) -> Self {
            self.timers = timers.into_iter().collect();
            self
        }
    }

    impl Node for TestNode {
        fn receive(&mut self, now: Instant, frame: Bytes) {
            if self.echo {
                self.outbox.push_back((now, frame.clone()));
            }
            self.received.push((now, frame));
        }

        fn transmit(&mut self, now: Instant) -> Option<Bytes> {
            if self.outbox.front()?.0 <= now {
                self.outbox.pop_front().map(|(_, f)| f)
            } else {
                None
            }
        }

        fn poll(&mut self, now: Instant) {
            self.polls += 1;
            self.last_poll = Some(now);
            while self.timers.front().is_some_and(|&t| t <= now) {
                self.timers.pop_front();
                self.fired.push(now);
            }
        }

        fn poll_at(&self) -> Option<Instant> {
            let mut next = [
                self.outbox.front().map(|&(t, _)| t),
                self.timers.front().copied(),
                self.last_poll.and_then(|t| t.checked_add(self.tick?)),
            ]
            .into_iter()
            .flatten()
            .min();
            if self.spin {
                next = next.min(self.last_poll).or(self.last_poll);
            }
            next
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::testing::{frame, seq_of, TestNode};
    use super::*;

    #[derive(Clone, Default)]
    struct SharedBuf(Rc<RefCell<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn step_reports_idle() {
        let start = Instant::now();
        let mut sim: Simulator<TestNode> = Simulator::new(start, 0);
        assert!(!sim.step());
        let a = sim.add_node(TestNode::sending(start, [frame(0, 60)]));
        let b = sim.add_node(TestNode::default());
        sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        assert!(sim.step(), "frame in flight");
        assert_eq!(sim.now(), start + us(10));
        assert_eq!(sim.node(b).received.len(), 1);
        assert!(!sim.step());
        assert_eq!(sim.now(), start + us(10));
        assert_eq!(sim.in_flight(), 0);
    }

    #[test]
    fn poll_at_timers_fire_at_the_right_instants() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let timers = [start + us(1000), start + us(5000), start + us(5003)];
        // Not attached to any link: nodes without a link still get their timers.
        let a = sim.add_node(TestNode::default().with_timers(timers));
        let b = sim.add_node(TestNode::default().with_timers([start + us(2500)]));
        assert_eq!(
            sim.run_until(Duration::from_secs(1), |_| false),
            Err(SimError::Stalled)
        );
        assert_eq!(sim.node(a).fired, timers);
        assert_eq!(sim.node(b).fired, [start + us(2500)]);
        assert_eq!(sim.now(), start + us(5003));
        // One step for the start and one per distinct timer instant, nothing more.
        assert_eq!(sim.node(a).polls, 5);
    }

    #[test]
    fn run_until_stops_when_done() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let a = sim.add_node(TestNode::sending(start, [frame(0, 60)]));
        let b = sim.add_node(TestNode {
            echo: true,
            ..TestNode::default()
        });
        sim.node_mut(a).echo = true;
        sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        // Ping-pong for ever, 10 µs per hop.
        let result = sim.run_until(Duration::from_secs(1), |sim| {
            sim.node(a).received.len() == 5
        });
        assert_eq!(result, Ok(()));
        assert_eq!(sim.elapsed(), us(100));
        assert_eq!(sim.node(b).received.len(), 5);
        // Already done: no step at all.
        let now = sim.now();
        assert_eq!(sim.run_until(Duration::ZERO, |_| true), Ok(()));
        assert_eq!(sim.now(), now);
    }

    #[test]
    fn run_until_times_out_on_a_node_that_polls_for_ever() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let a = sim.add_node(TestNode {
            tick: Some(Duration::from_millis(7)),
            ..TestNode::default()
        });
        let result = sim.run_until(Duration::from_secs(1), |_| false);
        assert_eq!(result, Err(SimError::Timeout));
        assert_eq!(sim.now(), start + Duration::from_secs(1));
        // Polled at 0, 7 ms, …, 994 ms.
        assert_eq!(sim.node(a).polls, 1 + 1000 / 7);
        // The limit counts from the call.
        assert_eq!(
            sim.run_until(Duration::from_millis(10), |_| false),
            Err(SimError::Timeout)
        );
        assert_eq!(sim.elapsed(), Duration::from_millis(1010));
    }

    #[test]
    fn run_until_reports_a_livelock() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let a = sim.add_node(TestNode {
            spin: true,
            ..TestNode::default()
        });
        assert_eq!(
            sim.run_until(Duration::from_secs(1), |_| false),
            Err(SimError::Livelock)
        );
        assert_eq!(sim.now(), start);
        assert_eq!(sim.node(a).polls, DEFAULT_LIVELOCK_LIMIT);
        sim.set_livelock_limit(10);
        assert_eq!(
            sim.run_until(Duration::from_secs(1), |_| false),
            Err(SimError::Livelock)
        );
        assert_eq!(sim.node(a).polls, DEFAULT_LIVELOCK_LIMIT + 10);
    }

    #[test]
    fn a_zero_delay_exchange_is_not_a_livelock() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let a = sim.add_node(TestNode::sending(start, [frame(0, 60)]));
        let b = sim.add_node(TestNode {
            echo: true,
            ..TestNode::default()
        });
        sim.node_mut(a).echo = true;
        sim.add_link(&[a, b], LinkConfig::ideal().with_delay(Duration::ZERO))
            .unwrap();
        sim.set_livelock_limit(3);
        let result = sim.run_until(Duration::from_secs(1), |sim| {
            sim.node(b).received.len() == 1000
        });
        assert_eq!(result, Ok(()));
        assert_eq!(sim.now(), start);
    }

    #[test]
    fn run_for_ends_exactly_at_the_span() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let a = sim.add_node(TestNode::default().with_timers([start + us(30)]));
        assert_eq!(sim.run_for(us(20)), Ok(()));
        assert_eq!(sim.now(), start + us(20));
        assert!(sim.node(a).fired.is_empty());
        assert_eq!(sim.run_for(us(20)), Ok(()));
        assert_eq!(sim.node(a).fired, [start + us(30)]);
        assert_eq!(sim.now(), start + us(40), "idle, but the clock still moves");
    }

    #[test]
    fn add_link_rejects_bad_requests() {
        let start = Instant::now();
        let mut sim: Simulator<TestNode> = Simulator::new(start, 0);
        let a = sim.add_node(TestNode::default());
        let b = sim.add_node(TestNode::default());
        let c = sim.add_node(TestNode::default());
        let ghost = NodeId(17);
        assert_eq!(
            sim.add_link(&[], LinkConfig::ideal()),
            Err(AddLinkError::NoNodes)
        );
        assert_eq!(
            sim.add_link(&[a, ghost], LinkConfig::ideal()),
            Err(AddLinkError::UnknownNode(ghost))
        );
        assert_eq!(
            sim.add_link(&[a, a], LinkConfig::ideal()),
            Err(AddLinkError::AlreadyAttached(a))
        );
        assert_eq!(
            sim.add_link(&[a, b], LinkConfig::ideal().with_loss(2.0)),
            Err(AddLinkError::InvalidConfig(LinkConfigError::Probability(
                ProbabilityField::Loss
            )))
        );
        assert_eq!(
            sim.add_link(&[a, b], LinkConfig::ideal().with_bandwidth_bps(0)),
            Err(AddLinkError::InvalidConfig(LinkConfigError::ZeroBandwidth))
        );
        // Failed attempts attached nothing.
        let l = sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        assert_eq!(l.index(), 0);
        assert_eq!(
            sim.add_link(&[c, b], LinkConfig::ideal()),
            Err(AddLinkError::AlreadyAttached(b))
        );
        assert_eq!(
            sim.add_link(&[c], LinkConfig::ideal()).map(LinkId::index),
            Ok(1)
        );
        let err = AddLinkError::InvalidConfig(LinkConfigError::ZeroBandwidth);
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            AddLinkError::AlreadyAttached(b).to_string(),
            "node 1 is already attached to a link"
        );
    }

    #[test]
    fn link_config_can_change_mid_run() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let frames = (0..10).map(|i| (start + Duration::from_millis(i), frame(i as u32, 60)));
        let a = sim.add_node(TestNode::sending_at(frames));
        let b = sim.add_node(TestNode::default());
        let l = sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        sim.run_for(Duration::from_micros(4500)).unwrap();
        // Cut the link for frames 5 to 7, then heal it.
        sim.set_link_config(l, LinkConfig::ideal().with_loss(1.0))
            .unwrap();
        sim.run_for(Duration::from_millis(3)).unwrap();
        assert_eq!(sim.link_config(l).loss, 1.0);
        assert!(sim
            .set_link_config(l, LinkConfig::ideal().with_loss(-1.0))
            .is_err());
        sim.set_link_config(l, LinkConfig::ideal()).unwrap();
        sim.run_for(Duration::from_millis(5)).unwrap();
        let seqs: Vec<u32> = sim
            .node(b)
            .received
            .iter()
            .map(|(_, f)| seq_of(f))
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 8, 9]);
    }

    #[test]
    fn boxed_nodes_can_be_mixed() {
        struct Silent;
        impl Node for Silent {
            fn receive(&mut self, _: Instant, _: Bytes) {}
            fn transmit(&mut self, _: Instant) -> Option<Bytes> {
                None
            }
            fn poll(&mut self, _: Instant) {}
            fn poll_at(&self) -> Option<Instant> {
                None
            }
        }
        let start = Instant::now();
        let mut sim: Simulator<Box<dyn Node>> = Simulator::new(start, 0);
        let a = sim.add_node(Box::new(TestNode::sending(start, [frame(1, 60)])));
        let b = sim.add_node(Box::new(Silent));
        let l = sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        assert_eq!(
            sim.run_until(Duration::from_secs(1), |_| false),
            Err(SimError::Stalled)
        );
        assert_eq!(sim.link_stats(l).delivered, 1);
    }

    /// A faulty hub scenario, captured: returns the pcap bytes and the stats.
    fn faulty_run(seed: u64) -> (Vec<u8>, LinkStats) {
        let start = Instant::now();
        let mut sim = Simulator::new(start, seed);
        let buf = SharedBuf::default();
        sim.capture(buf.clone()).unwrap();
        let config = LinkConfig::ideal()
            .with_loss(0.1)
            .with_duplicate(0.1)
            .with_reorder(0.1)
            .with_corrupt(0.1)
            .with_jitter(us(20))
            .with_bandwidth_bps(100_000_000);
        let frames =
            |base: u32| (0..200).map(move |i| (start + us(u64::from(i) * 3), frame(base + i, 100)));
        let a = sim.add_node(TestNode::sending_at(frames(0)));
        let b = sim.add_node(TestNode::sending_at(frames(1000)));
        let c = sim.add_node(TestNode::default());
        let l = sim.add_link(&[a, b, c], config).unwrap();
        let _ = sim.run_until(Duration::from_secs(1), |_| false);
        sim.stop_capture().unwrap();
        let bytes = buf.0.borrow().clone();
        (bytes, sim.link_stats(l))
    }

    #[test]
    fn a_seed_reproduces_a_run_exactly() {
        let (pcap1, stats1) = faulty_run(99);
        let (pcap2, stats2) = faulty_run(99);
        assert_eq!(stats1, stats2);
        assert!(pcap1 == pcap2, "captures differ");
        let (pcap3, stats3) = faulty_run(100);
        assert_ne!(stats1, stats3);
        assert!(pcap1 != pcap3);
        assert_eq!(pcap1.len() as u64, 24 + stats1.delivered * (16 + 100));
    }

    #[test]
    fn capture_records_delivered_frames_in_virtual_time() {
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        let buf = SharedBuf::default();
        sim.capture(buf.clone()).unwrap();
        assert_eq!(buf.0.borrow().len(), 24, "header written at once");
        let a = sim.add_node(TestNode::sending_at([
            (start, frame(0, 60)),
            (start + Duration::new(3, 250_000), frame(1, 61)),
        ]));
        let b = sim.add_node(TestNode::default());
        sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        assert_eq!(
            sim.run_until(Duration::from_secs(10), |_| false),
            Err(SimError::Stalled)
        );
        sim.stop_capture().unwrap();
        let bytes = buf.0.borrow().clone();
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 61);
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let epoch = PCAP_EPOCH.as_secs() as u32;
        assert_eq!(
            (word(24), word(28), word(32), word(36)),
            (epoch, 10, 60, 60)
        );
        assert_eq!(&bytes[40..100], &frame(0, 60)[..]);
        assert_eq!((word(100), word(104), word(108)), (epoch + 3, 260, 61));
        // Stopped: nothing more is written.
        sim.node_mut(a).echo = true;
        sim.node_mut(b).echo = true;
        let _ = sim.run_for(Duration::from_millis(1));
        assert_eq!(buf.0.borrow().len(), bytes.len());
        assert!(sim.stop_capture().is_ok());
    }

    #[test]
    fn capture_errors_are_kept_for_stop_capture() {
        /// Accepts `room` bytes, then fails.
        struct Leaky {
            room: usize,
        }
        impl Write for Leaky {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.room == 0 {
                    return Err(io::Error::other("disk full"));
                }
                let n = buf.len().min(self.room);
                self.room -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let start = Instant::now();
        let mut sim = Simulator::new(start, 0);
        assert!(
            sim.capture(Leaky { room: 10 }).is_err(),
            "header does not fit"
        );
        sim.capture(Leaky {
            room: 24 + 16 + 60 + 5,
        })
        .unwrap();
        let a = sim.add_node(TestNode::sending(start, (0..5).map(|i| frame(i, 60))));
        let b = sim.add_node(TestNode::default());
        let l = sim.add_link(&[a, b], LinkConfig::ideal()).unwrap();
        let _ = sim.run_until(Duration::from_secs(1), |_| false);
        assert_eq!(sim.link_stats(l).delivered, 5, "the simulation goes on");
        assert_eq!(sim.stop_capture().unwrap_err().to_string(), "disk full");
        assert!(sim.stop_capture().is_ok(), "nothing left to report");
    }

    #[test]
    fn forked_generators_follow_the_seed() {
        let draw = |seed| {
            let mut sim: Simulator<TestNode> = Simulator::new(Instant::now(), seed);
            let (mut r1, mut r2) = (sim.fork_rng(), sim.fork_rng());
            (r1.next_u64(), r2.next_u64())
        };
        let (x, y) = draw(5);
        assert_ne!(x, y);
        assert_eq!(draw(5), (x, y));
        assert_ne!(draw(6), (x, y));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            SimError::Stalled.to_string(),
            "the simulation went idle before the condition held"
        );
        assert_eq!(NodeId(3).to_string(), "node 3");
        assert_eq!(LinkId(2).to_string(), "link 2");
        let sim: Simulator<TestNode> = Simulator::new(Instant::now(), 0);
        assert!(format!("{sim:?}").starts_with("Simulator"));
    }
}
