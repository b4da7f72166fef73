//! A bulk TCP transfer between two stacks through the simulator: the workload of
//! the simulator tests, `examples/sim-transfer` and the benchmarks.
//!
//! Host A (198.18.0.1) connects to host B (198.18.0.2) and sends `bytes` bytes of a
//! deterministic pattern ([`pattern`]), then closes. B checks every byte against the
//! pattern as it arrives, hands it to the caller's `on_data`, and closes when it sees
//! the end of the stream. The transfer is `ok` when B received exactly the bytes
//! sent, in order, and both connections closed cleanly.

use super::host::{App, Host};
use super::{LinkConfig, LinkStats, SimError, Simulator};
use crate::iface::{ConnHandle, Event, ListenHandle, Stack, StackConfig, StackError};
use crate::tcp::{ConnStats, State, TcpConfig, TcpError, TcpEvent};
use crate::wire::EthernetAddress;
use bytes::Bytes;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const PORT: u16 = 5001;
const CHUNK: usize = 64 * 1024;

/// The byte at `offset` of the stream for `seed`, written for a whole range:
/// `out[i]` = byte `offset + i`.
pub fn pattern(seed: u64, offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let pos = offset + i as u64;
        let mut z = seed ^ (pos / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        *b = (z >> ((pos % 8) * 8)) as u8;
    }
}

/// What to transfer and over what.
pub struct TransferConfig {
    /// Bytes to send.
    pub bytes: u64,
    /// The link between the hosts.
    pub link: LinkConfig,
    /// Seeds the simulator, the stacks and the data.
    pub seed: u64,
    /// TCP settings of both hosts (the MSS follows the link's MTU).
    pub tcp: TcpConfig,
    /// Give up after this much virtual time.
    pub time_limit: Duration,
    /// Where to write a pcap of every delivered frame, if anywhere.
    pub capture: Option<Box<dyn std::io::Write>>,
    /// Run both ends on the borrowed-data calls: the hosts take frames borrowed
    /// ([`Host::with_borrowed_frames`], 256-byte transmit buffers), the sender
    /// writes with `tcp_send_slice` in pieces of 1 to 300 bytes (copied into the
    /// send queue's store), and the receiver reads with `tcp_recv_slice` and
    /// `tcp_recv_borrowed` by turns.
    pub borrowed: bool,
}

impl TransferConfig {
    /// `bytes` over `link`, default TCP settings, a 10-minute virtual limit.
    pub fn new(bytes: u64, link: LinkConfig, seed: u64) -> Self {
        TransferConfig {
            bytes,
            link,
            seed,
            tcp: TcpConfig::default(),
            time_limit: Duration::from_secs(600),
            capture: None,
            borrowed: false,
        }
    }
}

/// How a transfer went.
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// Bytes the sender's stack accepted.
    pub bytes_sent: u64,
    /// Bytes the receiver got, all checked.
    pub bytes_received: u64,
    /// Everything arrived intact and both sides closed.
    pub ok: bool,
    /// The first received offset whose byte was wrong, if any.
    pub corrupt_at: Option<u64>,
    /// Why the transfer did not finish, if it did not.
    pub failure: Option<String>,
    /// Virtual time from the first SYN to the end.
    pub virtual_time: Duration,
    /// The sending connection's counters.
    pub sender: ConnStats,
    /// What the link did.
    pub link: LinkStats,
}

impl TransferReport {
    /// Received bits per second of virtual time, in Mbit/s.
    pub fn goodput_mbps(&self) -> f64 {
        let s = self.virtual_time.as_secs_f64();
        if s == 0.0 {
            0.0
        } else {
            self.bytes_received as f64 * 8.0 / s / 1e6
        }
    }
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} B, received {} B, ok={}, {} retransmits, {:.3} ms virtual, {:.1} Mbit/s",
            self.bytes_sent,
            self.bytes_received,
            self.ok,
            self.sender.retransmits,
            self.virtual_time.as_secs_f64() * 1e3,
            self.goodput_mbps()
        )?;
        if let Some(why) = &self.failure {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

struct Sender {
    seed: u64,
    total: u64,
    remote: SocketAddrV4,
    conn: Option<ConnHandle>,
    offset: u64,
    pending: Bytes,
    closed_write: bool,
    done: bool,
    failure: Option<String>,
    stats: Option<ConnStats>,
    /// Writes with `tcp_send_slice`, in pieces of 1 to 300 bytes.
    lend: bool,
}

struct Receiver<'a> {
    seed: u64,
    listener: Option<ListenHandle>,
    conn: Option<ConnHandle>,
    received: u64,
    corrupt_at: Option<u64>,
    done: bool,
    failure: Option<String>,
    on_data: DataSink<'a>,
    scratch: Vec<u8>,
    /// Reads with `tcp_recv_slice` and `tcp_recv_borrowed` by turns.
    borrow: bool,
    /// The buffer `tcp_recv_slice` copies into.
    copy: Vec<u8>,
    reads: u64,
}

/// Where the receiver hands each checked chunk.
type DataSink<'a> = Box<dyn FnMut(&[u8]) + 'a>;

enum Peer<'a> {
    Sender(Sender),
    Receiver(Receiver<'a>),
}

impl Sender {
    fn poll(&mut self, now: Instant, stack: &mut Stack) {
        if self.conn.is_none() && !self.done {
            match stack.tcp_connect(now, 0, self.remote) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.failure = Some(format!("connect: {e}"));
                    self.done = true;
                }
            }
        }
        while let Some(ev) = stack.poll_event() {
            if let Event::Tcp(_, TcpEvent::Error(e)) = ev {
                self.failure = Some(format!("sender: {e}"));
                self.done = true;
            }
        }
        let Some(c) = self.conn else { return };
        if let Ok(conn) = stack.tcp(c) {
            self.stats = Some(conn.stats());
            // Done once our FIN (so all the data) has been acknowledged.
            if self.closed_write && matches!(conn.state(), State::FinWait2 | State::TimeWait | State::Closed) {
                self.done = true;
            }
        }
        if self.done {
            return;
        }
        loop {
            if self.pending.is_empty() {
                if self.offset >= self.total {
                    break;
                }
                let n = CHUNK.min((self.total - self.offset) as usize);
                let mut buf = vec![0u8; n];
                pattern(self.seed, self.offset, &mut buf);
                self.pending = Bytes::from(buf);
            }
            let sent = if self.lend {
                // Piece sizes from the offset: 1 to 300 bytes.
                let piece = (1 + (self.offset * 7 + 3) % 300) as usize;
                stack.tcp_send_slice(c, &self.pending[..piece.min(self.pending.len())])
            } else {
                stack.tcp_send(c, self.pending.clone())
            };
            match sent {
                Ok(0) | Err(StackError::Tcp(TcpError::WouldBlock)) => return,
                Ok(n) => {
                    let _ = self.pending.split_to(n);
                    self.offset += n as u64;
                }
                Err(e) => {
                    self.failure = Some(format!("send: {e}"));
                    self.done = true;
                    return;
                }
            }
        }
        // Closing in SYN-SENT would abandon the connection (RFC 9293 §3.10.4): the FIN
        // waits for the handshake.
        let established = stack.tcp(c).is_ok_and(|conn| conn.state().is_synchronized());
        if !self.closed_write && established {
            self.closed_write = true;
            let _ = stack.tcp_shutdown(c);
        }
    }
}

impl Receiver<'_> {
    fn poll(&mut self, _now: Instant, stack: &mut Stack) {
        if self.listener.is_none() {
            match stack.tcp_listen(PORT, 16) {
                Ok(l) => self.listener = Some(l),
                Err(e) => {
                    self.failure = Some(format!("listen: {e}"));
                    self.done = true;
                    return;
                }
            }
        }
        while let Some(ev) = stack.poll_event() {
            match ev {
                Event::AcceptReady(l) if self.conn.is_none() => {
                    if let Ok((c, _)) = stack.tcp_accept(l) {
                        self.conn = Some(c);
                    }
                }
                Event::Tcp(_, TcpEvent::Error(e)) => {
                    self.failure = Some(format!("receiver: {e}"));
                    self.done = true;
                }
                _ => {}
            }
        }
        let Some(c) = self.conn else { return };
        if self.done {
            return;
        }
        loop {
            self.reads += 1;
            let read = match (self.borrow, self.reads % 2) {
                (false, _) => stack.tcp_recv(c, usize::MAX).map(|data| self.check(&data)),
                (true, 0) => {
                    let mut copy = std::mem::take(&mut self.copy);
                    let r = stack.tcp_recv_slice(c, &mut copy).map(|n| self.check(&copy[..n]));
                    self.copy = copy;
                    r
                }
                (true, _) => stack.tcp_recv_borrowed(c, |d| self.check(d)).map(|_| ()),
            };
            match read {
                Ok(()) => {}
                Err(StackError::Tcp(TcpError::Finished)) => {
                    let _ = stack.tcp_close(c);
                    self.done = true;
                    return;
                }
                Err(StackError::Tcp(TcpError::WouldBlock)) => return,
                Err(e) => {
                    self.failure = Some(format!("recv: {e}"));
                    self.done = true;
                    return;
                }
            }
        }
    }
}

impl Receiver<'_> {
    /// Checks the next received bytes against the pattern, and hands them on.
    fn check(&mut self, data: &[u8]) {
        self.scratch.resize(data.len(), 0);
        pattern(self.seed, self.received, &mut self.scratch);
        if self.corrupt_at.is_none() && self.scratch[..] != data[..] {
            let at = self.scratch.iter().zip(data.iter()).position(|(a, b)| a != b).unwrap_or(0);
            self.corrupt_at = Some(self.received + at as u64);
        }
        (self.on_data)(data);
        self.received += data.len() as u64;
    }
}

impl App for Peer<'_> {
    fn poll(&mut self, now: Instant, stack: &mut Stack) {
        match self {
            Peer::Sender(s) => s.poll(now, stack),
            Peer::Receiver(r) => r.poll(now, stack),
        }
    }
}

fn host_stack(n: u8, config: &TransferConfig, now: Instant) -> Stack {
    let mut sc = StackConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, n]), Ipv4Addr::new(198, 18, 0, n));
    sc.mtu = config.link.mtu;
    sc.tcp = config.tcp.clone();
    sc.seed = config.seed.wrapping_mul(31).wrapping_add(u64::from(n));
    Stack::new(sc, now)
}

/// Runs a transfer to the end (or the time limit). `on_data` sees every received
/// chunk in order.
pub fn run<'a>(mut config: TransferConfig, on_data: impl FnMut(&[u8]) + 'a) -> TransferReport {
    let start = Instant::now();
    let mut sim = Simulator::new(start, config.seed);
    let sender = Sender {
        seed: config.seed,
        total: config.bytes,
        remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), PORT),
        conn: None,
        offset: 0,
        pending: Bytes::new(),
        closed_write: false,
        done: false,
        failure: None,
        stats: None,
        lend: config.borrowed,
    };
    let receiver = Receiver {
        seed: config.seed,
        listener: None,
        conn: None,
        received: 0,
        corrupt_at: None,
        done: false,
        failure: None,
        on_data: Box::new(on_data),
        scratch: Vec::new(),
        borrow: config.borrowed,
        copy: vec![0; 777],
        reads: 0,
    };
    let host = |stack, peer| match config.borrowed {
        true => Host::with_borrowed_frames(stack, peer, 256),
        false => Host::new(stack, peer),
    };
    // The receiver is added first so that it listens before the SYN arrives.
    let b = sim.add_node(host(host_stack(2, &config, start), Peer::Receiver(receiver)));
    let a = sim.add_node(host(host_stack(1, &config, start), Peer::Sender(sender)));
    let mut failure = None;
    let link = match sim.add_link(&[a, b], config.link.clone()) {
        Ok(l) => Some(l),
        Err(e) => {
            failure = Some(format!("link: {e}"));
            None
        }
    };
    if let Some(w) = config.capture.take() {
        if let Err(e) = sim.capture(w) {
            failure = Some(format!("pcap: {e}"));
        }
    }
    let finished = |sim: &mut Simulator<Host<Peer<'_>>>| {
        let s = matches!(&sim.node(a).app, Peer::Sender(s) if s.done);
        let r = matches!(&sim.node(b).app, Peer::Receiver(r) if r.done);
        s && r
    };
    if link.is_some() {
        match sim.run_until(config.time_limit, finished) {
            Ok(()) => {}
            Err(SimError::Stalled) => failure = Some("stalled: nothing left to do before the transfer finished".into()),
            Err(SimError::Timeout) => failure = Some(format!("not finished after {:?} of virtual time", config.time_limit)),
            Err(e) => failure = Some(format!("{e}")),
        }
    }
    let virtual_time = sim.elapsed();
    let link_stats = link.map(|l| sim.link_stats(l)).unwrap_or_default();
    let (Peer::Sender(s), Peer::Receiver(r)) = (&sim.node(a).app, &sim.node(b).app) else {
        unreachable!("nodes were added as sender and receiver");
    };
    // The hosts' own reasons are more precise than "stalled" or "timed out".
    let failure = s.failure.clone().or_else(|| r.failure.clone()).or(failure);
    let ok = failure.is_none() && r.corrupt_at.is_none() && r.received == config.bytes && s.offset == config.bytes;
    TransferReport {
        bytes_sent: s.offset,
        bytes_received: r.received,
        ok,
        corrupt_at: r.corrupt_at,
        failure,
        virtual_time,
        sender: s.stats.clone().unwrap_or_default(),
        link: link_stats,
    }
}
