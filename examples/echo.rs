//! # echo — demi's main demo
//!
//! A TCP (or UDP) echo service and a latency/throughput client on demi's queue API.
//! The server spawns one coroutine per connection; each client connection is a
//! coroutine that plays ping-pong: it pushes one message, pops until the whole
//! message came back, checks the bytes, and records the round-trip time.
//!
//! ```text
//! cargo run --release --example echo                      # server + clients, one process
//! cargo run --release --example echo -- --udp --connections 8
//! cargo run --release --example echo -- server --addr 127.0.0.1:7878
//! cargo run --release --example echo -- client --addr 127.0.0.1:7878 --count 50000
//! ```
//!
//! Modes (positional, default `both`):
//! - `server`: echo until killed. TCP: every element popped from a connection is
//!   pushed back until the peer closes (an empty pop); UDP: every datagram is pushed
//!   back to its source address.
//! - `client`: connect `--connections` times and ping-pong `--count` measured
//!   messages on each, after `--warmup` unmeasured ones.
//! - `both`: the server and the clients in one process, on one runtime. On the
//!   `memory` libOS (the default) they are two instances of demi's own TCP/IP stack,
//!   198.18.0.1 and 198.18.0.2, joined by an in-process link; on `posix` they talk
//!   over kernel loopback (an ephemeral port unless `--addr` says otherwise).
//!
//! Flags:
//!
//! | flag | default | meaning |
//! |---|---|---|
//! | `--libos NAME` | `DEMI_LIBOS`, else `memory` (`both`) or `posix` (`server`, `client`) | the libOS to run on |
//! | `--addr IP:PORT` | `127.0.0.1:0` (both), `127.0.0.1:7878` | server address |
//! | `--size BYTES` | 64 | message size |
//! | `--count N` | 100000 | measured round trips per connection |
//! | `--connections N` | 1 | concurrent client connections |
//! | `--warmup N` | 1000 | unmeasured round trips per connection first |
//! | `--udp` | off | UDP datagrams instead of TCP |
//! | `--framing` | off | TCP element framing on both ends (a message pops whole) |
//! | `--iface NAME` | `DEMI_IFACE` | interface of the `raw` device (and of DPDK's tap / af_packet PMDs) |
//! | `--ip A.B.C.D/P` | `DEMI_IP`, else `198.18.0.1/24` (server) / `.2` (client) | the user-level stack's address |
//! | `--link NAME` | `DEMI_LINK`, else `default` | the `shm` link (`/dev/shm/demi-NAME`) |
//! | `--dpdk-args ARGS` | `DEMI_DPDK_ARGS` | DPDK EAL arguments, space-separated |
//! | `--pcap PATH` | `DEMI_PCAP` | capture the device's frames to a pcap file |
//! | `--faults SPEC` | `DEMI_FAULTS` | inject faults on the device, e.g. `loss=0.05,seed=3` |
//!
//! On a user-level stack (every libOS but `posix`) the server is host 0 (198.18.0.1)
//! and listens on all of its addresses, port 7878 unless `--addr` says otherwise;
//! a client is host 1 (198.18.0.2) and connects to 198.18.0.1:7878 unless `--addr`
//! says otherwise. Across processes over shared memory:
//!
//! ```text
//! echo server --libos shm &
//! echo client --libos shm --count 100000
//! ```
//!
//! Every message has its own byte pattern, and every echoed byte is compared with
//! what was sent. The client prints a summary and, as its last line,
//!
//! ```text
//! echo: libos=<name> size=<n> count=<n> p50_ns=<n> p99_ns=<n> p999_ns=<n> msgs_per_s=<n>
//! ```
//!
//! where `count` is the number of measured round trips over all connections and
//! `msgs_per_s` is that count divided by the wall time of the measured phase (from
//! the moment every connection finished its warm-up to the moment the last one
//! finished). Errors are reported with their context and exit status 1; bad flags
//! exit with status 2.

use demi::{Bytes, Config, ConfigError, Domain, LibOs, LibOsKind, QDesc, QError, QResult, QToken, Sga, SocketType};
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: echo [server|client|both] [flags]

A TCP (or UDP) echo on demi's queue API that measures round-trip latency and
throughput. `both` (the default) runs server and clients in one process.

flags:
  --libos NAME        libOS to run on: memory (demi's own TCP/IP stack over an
                      in-process link; both mode only), shm (demi's stack over
                      shared memory between two processes), raw (AF_PACKET on
                      --iface), dpdk (DPDK; --features dpdk) or posix (kernel
                      sockets) (default: DEMI_LIBOS, else memory in both
                      mode and posix for a separate server or client)
  --addr IP:PORT      server address (default: 127.0.0.1:0 in both mode,
                      127.0.0.1:7878 otherwise)
  --size BYTES        message size (default 64)
  --count N           measured round trips per connection (default 100000)
  --connections N     concurrent client connections (default 1)
  --warmup N          unmeasured round trips per connection first (default 1000)
  --udp               UDP datagrams instead of TCP
  --framing           TCP element framing on both ends
  --iface NAME        interface of the raw / dpdk device (DEMI_IFACE)
  --ip A.B.C.D/P      the user-level stack's address (DEMI_IP)
  --link NAME         the shm link's name (DEMI_LINK, default `default`)
  --dpdk-args ARGS    DPDK EAL arguments (DEMI_DPDK_ARGS)
  --pcap PATH         capture the device's frames (DEMI_PCAP)
  --faults SPEC       inject faults, e.g. loss=0.05,seed=3 (DEMI_FAULTS)
  -h, --help          this text

The last line printed by a client run is
  echo: libos=NAME size=N count=N p50_ns=N p99_ns=N p999_ns=N msgs_per_s=N
";

/// Default server address when server and clients share the process.
const BOTH_ADDR: &str = "127.0.0.1:0";
/// Default server address for separate server and client processes.
const SPLIT_ADDR: &str = "127.0.0.1:7878";
/// Where a server on a user-level stack listens by default (all its addresses).
const USER_LEVEL_LISTEN: &str = "0.0.0.0:7878";
/// Where a client on a user-level stack connects by default (host 0's address).
const USER_LEVEL_SERVER: &str = "198.18.0.1:7878";
/// Largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// Largest message (the default frame limit of framed TCP queues).
const MAX_SIZE: usize = 16 << 20;
/// Message patterns repeat after this many messages (a prime, so that neighbouring
/// messages and neighbouring connections never share a pattern).
const PATTERN_PERIOD: usize = 251;
/// How long a UDP client waits for an echo before it calls the datagram lost.
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Listen backlog of the TCP server.
const BACKLOG: usize = 1024;

// ---------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Server,
    Client,
    Both,
}

#[derive(Clone, Debug)]
struct Options {
    mode: Mode,
    libos: Option<String>,
    addr: SocketAddr,
    size: usize,
    count: usize,
    connections: usize,
    warmup: usize,
    udp: bool,
    framing: bool,
    /// `--addr` was given (otherwise the address depends on the libOS).
    addr_given: bool,
    /// Device settings (`--iface`, `--ip`, …) as `DEMI_*` variable/value pairs.
    device: Vec<(&'static str, String)>,
}

enum Parsed {
    Run(Options),
    Help,
}

fn parse_number(flag: &str, value: &str, min: usize) -> Result<usize, String> {
    let n: usize = value
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag} expects a non-negative integer, got `{value}`"))?;
    if n < min {
        return Err(format!("{flag} must be at least {min}, got {n}"));
    }
    Ok(n)
}

fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut mode = None;
    let mut libos = None;
    let mut addr = None;
    let mut size = 64;
    let mut count = 100_000;
    let mut connections = 1;
    let mut warmup = 1_000;
    let mut udp = false;
    let mut framing = false;
    let mut device = Vec::new();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--flag=value` and `--flag value` are both accepted.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--libos" => libos = Some(value("--libos")?),
            "--addr" => {
                let v = value("--addr")?;
                addr = Some(v.parse::<SocketAddr>().map_err(|_| format!("--addr expects IP:PORT, got `{v}`"))?);
            }
            "--size" => size = parse_number("--size", &value("--size")?, 1)?,
            "--count" => count = parse_number("--count", &value("--count")?, 1)?,
            "--connections" => connections = parse_number("--connections", &value("--connections")?, 1)?,
            "--warmup" => warmup = parse_number("--warmup", &value("--warmup")?, 0)?,
            "--iface" => device.push(("DEMI_IFACE", value("--iface")?)),
            "--ip" => device.push(("DEMI_IP", value("--ip")?)),
            "--link" => device.push(("DEMI_LINK", value("--link")?)),
            "--dpdk-args" => device.push(("DEMI_DPDK_ARGS", value("--dpdk-args")?)),
            "--pcap" => device.push(("DEMI_PCAP", value("--pcap")?)),
            "--faults" => device.push(("DEMI_FAULTS", value("--faults")?)),
            "--udp" | "--framing" if inline.is_some() => return Err(format!("{flag} takes no value")),
            "--udp" => udp = true,
            "--framing" => framing = true,
            "server" | "client" | "both" => {
                if mode.is_some() {
                    return Err(format!("more than one mode given (`{arg}`)"));
                }
                mode = Some(match flag.as_str() {
                    "server" => Mode::Server,
                    "client" => Mode::Client,
                    _ => Mode::Both,
                });
            }
            other if other.starts_with('-') => return Err(format!("unknown flag `{other}`")),
            other => return Err(format!("unknown mode `{other}`: expected server, client or both")),
        }
    }

    let mode = mode.unwrap_or(Mode::Both);
    if udp && framing {
        return Err("--framing applies to TCP only; drop it or --udp".into());
    }
    if udp && size > MAX_UDP_PAYLOAD {
        return Err(format!("--size {size} does not fit in one UDP datagram (at most {MAX_UDP_PAYLOAD})"));
    }
    if size > MAX_SIZE {
        return Err(format!("--size {size} is larger than the {MAX_SIZE}-byte maximum"));
    }
    let addr_given = addr.is_some();
    let addr = addr.unwrap_or_else(|| {
        let default = if mode == Mode::Both { BOTH_ADDR } else { SPLIT_ADDR };
        default.parse().expect("constant address parses")
    });
    if mode == Mode::Client && addr.port() == 0 {
        return Err("client mode needs the server's port in --addr".into());
    }
    Ok(Parsed::Run(Options { mode, libos, addr, size, count, connections, warmup, udp, framing, addr_given, device }))
}

// ---------------------------------------------------------------------------------
// Errors with context
// ---------------------------------------------------------------------------------

/// A failure and what was being done when it happened.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

trait Context<T> {
    fn context<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, QError> {
    fn context<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T, Failure> {
        self.map_err(|e| Failure(format!("{} failed: {e}", what())))
    }
}

/// Completes an operation that may already have failed to start.
async fn complete(qt: Result<QToken, QError>) -> Result<QResult, QError> {
    qt?.await
}

/// Errors after which a queue is unusable (rather than one operation failing).
fn is_fatal(e: QError) -> bool {
    matches!(e, QError::BadDescriptor | QError::Canceled | QError::InvalidState | QError::BadToken | QError::NoRuntime)
}

// ---------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------

/// Binds the server's queue and spawns the coroutine that serves it. Returns the
/// address it listens on and the coroutine's handle (it ends only on a fatal error).
fn start_server(libos: &LibOs, opts: &Options) -> Result<(SocketAddr, demi::JoinHandle<Result<(), Failure>>), Failure> {
    let proto = if opts.udp { "udp" } else { "tcp" };
    let ty = if opts.udp { SocketType::Datagram } else { SocketType::Stream };
    let qd = libos.socket(Domain::of(&opts.addr), ty).context(|| format!("creating a {proto} socket"))?;
    let setup = || -> Result<SocketAddr, Failure> {
        libos.bind(qd, opts.addr).context(|| format!("bind to {}", opts.addr))?;
        if !opts.udp {
            libos.listen(qd, BACKLOG).context(|| format!("listen on {}", opts.addr))?;
        }
        libos.local_addr(qd).context(|| "reading the server's address")
    };
    let local = match setup() {
        Ok(a) => a,
        Err(e) => {
            let _ = libos.close(qd);
            return Err(e);
        }
    };
    let log = opts.mode == Mode::Server;
    let task = if opts.udp {
        demi::spawn(udp_server(libos.clone(), qd, local))
    } else {
        demi::spawn(tcp_accept_loop(libos.clone(), qd, local, opts.framing, log))
    };
    Ok((local, task))
}

async fn tcp_accept_loop(libos: LibOs, lqd: QDesc, local: SocketAddr, framing: bool, log: bool) -> Result<(), Failure> {
    loop {
        match complete(libos.accept(lqd)).await.and_then(QResult::into_accepted) {
            Ok((qd, peer)) => {
                if framing {
                    if let Err(e) = libos.set_framing(qd, true) {
                        eprintln!("echo: turning framing on for {peer} failed: {e}");
                        let _ = libos.close(qd);
                        continue;
                    }
                }
                if log {
                    println!("echo: {peer} connected");
                }
                demi::spawn(serve_connection(libos.clone(), qd, peer, log)).detach();
            }
            Err(e) if is_fatal(e) => {
                let _ = libos.close(lqd);
                return Err(Failure(format!("accept on {local} failed: {e}")));
            }
            Err(e) => {
                // Out of descriptors, an aborted handshake: report and keep serving.
                eprintln!("echo: accept on {local} failed: {e}");
                if e == QError::NoBufferSpace {
                    demi::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn serve_connection(libos: LibOs, qd: QDesc, peer: SocketAddr, log: bool) {
    let result = echo_stream(&libos, qd).await;
    let _ = libos.close(qd);
    match result {
        Ok(n) if log => println!("echo: {peer} closed after {n} elements"),
        Err(e) if log => println!("echo: {peer} ended: {e}"),
        _ => {}
    }
}

/// Pushes back every element popped from `qd` until the peer closes. The next pop is
/// started before the push is awaited, so the queue always has one posted.
async fn echo_stream(libos: &LibOs, qd: QDesc) -> Result<u64, QError> {
    let mut elements = 0;
    let mut pop = libos.pop(qd)?;
    loop {
        let sga = pop.await?.into_sga()?;
        if sga.is_empty() {
            return Ok(elements);
        }
        let push = libos.push(qd, sga)?;
        pop = libos.pop(qd)?;
        push.await?.ok()?;
        elements += 1;
    }
}

async fn udp_server(libos: LibOs, qd: QDesc, local: SocketAddr) -> Result<(), Failure> {
    let result = udp_echo(&libos, qd, local).await;
    let _ = libos.close(qd);
    result
}

async fn udp_echo(libos: &LibOs, qd: QDesc, local: SocketAddr) -> Result<(), Failure> {
    let mut pop = libos.pop(qd).context(|| format!("pop on {local}"))?;
    loop {
        let popped = pop.await.and_then(QResult::into_sga);
        pop = libos.pop(qd).context(|| format!("pop on {local}"))?;
        let sga = match popped {
            Ok(sga) => sga,
            Err(e) if is_fatal(e) => return Err(Failure(format!("pop on {local} failed: {e}"))),
            // An ICMP error for an earlier reply (the client went away): keep serving.
            Err(_) => continue,
        };
        let Some(from) = sga.addr() else { continue };
        if let Err(e) = complete(libos.pushto(qd, sga, from)).await.and_then(QResult::ok) {
            if is_fatal(e) {
                return Err(Failure(format!("pushto {from} failed: {e}")));
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------

/// Releases every connection into the measured phase at once, when the last one has
/// finished its warm-up (or failed).
struct Barrier {
    state: RefCell<BarrierState>,
}

struct BarrierState {
    remaining: usize,
    released: Option<Instant>,
    wakers: Vec<Waker>,
}

impl Barrier {
    fn new(parties: usize) -> Rc<Barrier> {
        Rc::new(Barrier { state: RefCell::new(BarrierState { remaining: parties, released: None, wakers: Vec::new() }) })
    }

    fn arrive(&self) {
        let wakers = {
            let mut s = self.state.borrow_mut();
            s.remaining = s.remaining.saturating_sub(1);
            if s.remaining > 0 || s.released.is_some() {
                return;
            }
            s.released = Some(Instant::now());
            std::mem::take(&mut s.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Waits for the release; returns its instant.
    async fn released(&self) -> Instant {
        std::future::poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            match s.released {
                Some(t) => Poll::Ready(t),
                None => {
                    if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        s.wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// A connection's place at the barrier: it arrives when told, or when dropped (a
/// failed connection must not hold the others back).
struct Arrival {
    barrier: Rc<Barrier>,
    arrived: bool,
}

impl Arrival {
    async fn arrive_and_wait(&mut self) -> Instant {
        if !self.arrived {
            self.arrived = true;
            self.barrier.arrive();
        }
        self.barrier.released().await
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if !self.arrived {
            self.barrier.arrive();
        }
    }
}

/// What the client connections share.
struct Plan {
    libos: LibOs,
    addr: SocketAddr,
    size: usize,
    warmup: usize,
    count: usize,
    udp: bool,
    framing: bool,
    /// Message `i` of connection `c` is `pattern[o..o + size]`, with
    /// `o = (c * 17 + i) % PATTERN_PERIOD`.
    pattern: Bytes,
}

/// One connection's measurements.
struct ConnStats {
    /// Round-trip times of the measured messages, in nanoseconds.
    samples: Vec<u64>,
    /// When the measured phase started (the barrier's release).
    start: Instant,
    /// When this connection's last round trip ended.
    end: Instant,
}

async fn client_connection(plan: Rc<Plan>, id: usize, barrier: Rc<Barrier>) -> Result<ConnStats, Failure> {
    let arrival = Arrival { barrier, arrived: false };
    let libos = &plan.libos;
    let (ty, proto) = if plan.udp { (SocketType::Datagram, "udp") } else { (SocketType::Stream, "tcp") };
    let qd = libos.socket(Domain::of(&plan.addr), ty).context(|| format!("creating a {proto} socket"))?;
    let result = async {
        complete(libos.connect(qd, plan.addr))
            .await
            .and_then(QResult::ok)
            .context(|| format!("connect to {}", plan.addr))?;
        if plan.framing {
            libos.set_framing(qd, true).context(|| "turning framing on")?;
        }
        ping_pong(&plan, qd, id, arrival).await
    }
    .await;
    let _ = libos.close(qd);
    result
}

async fn ping_pong(plan: &Plan, qd: QDesc, id: usize, mut arrival: Arrival) -> Result<ConnStats, Failure> {
    let libos = &plan.libos;
    let size = plan.size;
    let total = plan.warmup + plan.count;
    let mut samples = Vec::with_capacity(plan.count);
    let mut start = Instant::now();
    let whole = plan.udp || plan.framing;
    for i in 0..total {
        if i == plan.warmup {
            start = arrival.arrive_and_wait().await;
        }
        let offset = (id * 17 + i) % PATTERN_PERIOD;
        let expected = &plan.pattern[offset..offset + size];
        let t0 = Instant::now();
        // Post the pop before waiting for the push: the echo can never find the
        // queue without a pop waiting for it.
        let push = libos.push(qd, Sga::from(plan.pattern.slice(offset..offset + size)));
        let mut pop = libos.pop(qd).context(|| format!("connection {id}: pop"))?;
        complete(push).await.and_then(QResult::ok).context(|| format!("connection {id}: push of message {i}"))?;
        let mut got = 0;
        loop {
            let popped = if plan.udp {
                match demi::wait(pop, Some(UDP_REPLY_TIMEOUT)).await {
                    Err(QError::TimedOut) => {
                        return Err(Failure(format!(
                            "connection {id}: no echo of message {i} within {UDP_REPLY_TIMEOUT:?} (datagram lost?)"
                        )))
                    }
                    r => r,
                }
            } else {
                pop.await
            };
            let sga = popped.and_then(QResult::into_sga).context(|| format!("connection {id}: pop of message {i}"))?;
            if sga.is_empty() {
                return Err(Failure(format!("connection {id}: the server closed the connection at message {i}")));
            }
            if whole && sga.len() != size {
                return Err(Failure(format!(
                    "connection {id}: message {i} came back as an element of {} bytes, not {size}",
                    sga.len()
                )));
            }
            if got + sga.len() > size {
                return Err(Failure(format!(
                    "connection {id}: {} bytes came back for the {size}-byte message {i}",
                    got + sga.len()
                )));
            }
            for seg in sga.segments() {
                if seg[..] != expected[got..got + seg.len()] {
                    let at = seg.iter().zip(&expected[got..]).position(|(a, b)| a != b).unwrap_or(0);
                    return Err(Failure(format!(
                        "connection {id}: echoed bytes differ from those sent (message {i}, byte {})",
                        got + at
                    )));
                }
                got += seg.len();
            }
            if got == size {
                break;
            }
            pop = libos.pop(qd).context(|| format!("connection {id}: pop"))?;
        }
        if i >= plan.warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    Ok(ConnStats { samples, start, end: Instant::now() })
}

/// The nearest-rank percentile `q` (0..1) of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

async fn run_clients(libos: &LibOs, opts: &Options, addr: SocketAddr) -> Result<(), Failure> {
    let pattern: Vec<u8> = (0..opts.size + PATTERN_PERIOD).map(|k| (k % PATTERN_PERIOD) as u8).collect();
    let plan = Rc::new(Plan {
        libos: libos.clone(),
        addr,
        size: opts.size,
        warmup: opts.warmup,
        count: opts.count,
        udp: opts.udp,
        framing: opts.framing,
        pattern: Bytes::from(pattern),
    });
    let barrier = Barrier::new(opts.connections);
    let handles: Vec<_> = (0..opts.connections)
        .map(|id| demi::spawn(client_connection(plan.clone(), id, barrier.clone())))
        .collect();

    let mut samples = Vec::with_capacity(opts.connections * opts.count);
    let mut start: Option<Instant> = None;
    let mut end: Option<Instant> = None;
    for (id, h) in handles.into_iter().enumerate() {
        let stats = match h.await {
            Ok(r) => r?,
            Err(e) => return Err(Failure(format!("connection {id}: {e}"))),
        };
        samples.extend_from_slice(&stats.samples);
        start = Some(start.map_or(stats.start, |s| s.min(stats.start)));
        end = Some(end.map_or(stats.end, |e| e.max(stats.end)));
    }
    let wall = match (start, end) {
        (Some(s), Some(e)) => e.saturating_duration_since(s),
        _ => Duration::ZERO,
    };
    samples.sort_unstable();
    let total = samples.len() as u64;
    let (p50, p99, p999) = (percentile(&samples, 0.50), percentile(&samples, 0.99), percentile(&samples, 0.999));
    let max = samples.last().copied().unwrap_or(0);
    let mean = samples.iter().sum::<u64>().checked_div(total).unwrap_or(0);
    let msgs_per_s = if wall.is_zero() { 0 } else { (total as f64 / wall.as_secs_f64()).round() as u64 };
    let mib_per_s = msgs_per_s as f64 * opts.size as f64 / (1024.0 * 1024.0);

    println!(
        "echo: {} to {addr}, {} connection(s) x {} round trips of {} B (+{} warm-up each), libos={}, framing={}",
        if opts.udp { "udp" } else { "tcp" },
        opts.connections,
        opts.count,
        opts.size,
        opts.warmup,
        libos.name(),
        if opts.framing { "on" } else { "off" },
    );
    println!(
        "echo: round trip p50 {}, p99 {}, p99.9 {}, mean {}, max {}; {msgs_per_s} msgs/s ({mib_per_s:.1} MiB/s each way) over {:.3} s",
        fmt_ns(p50),
        fmt_ns(p99),
        fmt_ns(p999),
        fmt_ns(mean),
        fmt_ns(max),
        wall.as_secs_f64(),
    );
    println!(
        "echo: libos={} size={} count={total} p50_ns={p50} p99_ns={p99} p999_ns={p999} msgs_per_s={msgs_per_s}",
        libos.name(),
        opts.size,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------

/// The client side's libOS in `both` mode: the same one over kernel loopback, or a
/// second host on the same link (memory or shm) for demi's own stack.
fn client_libos(server: &LibOs, opts: &Options) -> Result<LibOs, Failure> {
    if !matches!(server.kind(), LibOsKind::Memory | LibOsKind::Shm) {
        return Ok(server.clone());
    }
    let mut cfg = libos_config(server.kind(), opts, 1).map_err(|e| Failure(format!("client libOS: {e}")))?;
    cfg.net.ip = None;
    LibOs::new(&cfg).map_err(|e| Failure(format!("client libOS: {e}")))
}

/// The configuration of `kind` for this run: the environment's `DEMI_*` settings,
/// then the command line's device flags; on a user-level stack, host 0 for a
/// server and host 1 for a client unless `DEMI_HOST` says otherwise.
fn libos_config(kind: LibOsKind, opts: &Options, host: u8) -> Result<Config, ConfigError> {
    let mut cfg = Config::new(kind).with_env()?;
    cfg.libos = kind;
    if std::env::var_os("DEMI_HOST").is_none() {
        cfg.net.host = host;
    }
    // The flags win over the environment: applied after it, as if they were variables.
    for (var, value) in &opts.device {
        cfg = cfg.with_var(var, value)?;
    }
    Ok(cfg)
}

async fn run(libos: &LibOs, opts: &Options) -> Result<(), Failure> {
    if libos.kind() == LibOsKind::Memory && opts.mode != Mode::Both {
        return Err(Failure(
            "the memory libOS joins stacks inside one process: use `both`, or --libos shm (or posix) across processes"
                .into(),
        ));
    }
    let user_level = libos.kind() != LibOsKind::Posix;
    match opts.mode {
        Mode::Both => {
            let mut opts = opts.clone();
            if user_level && !opts.addr_given {
                // Listen on the server stack's own address.
                opts.addr = "0.0.0.0:0".parse().expect("constant address parses");
            }
            let (addr, server) = start_server(libos, &opts)?;
            let client = client_libos(libos, &opts)?;
            let result = run_clients(&client, &opts, addr).await;
            server.abort();
            result
        }
        Mode::Client => {
            let addr = if user_level && !opts.addr_given { USER_LEVEL_SERVER.parse().expect("constant address parses") } else { opts.addr };
            run_clients(libos, opts, addr).await
        }
        Mode::Server => {
            let mut opts = opts.clone();
            if user_level && !opts.addr_given {
                opts.addr = USER_LEVEL_LISTEN.parse().expect("constant address parses");
            }
            let opts = &opts;
            let (addr, server) = start_server(libos, opts)?;
            println!(
                "echo: serving {} on {addr} (libos={}, framing={}); stop with Ctrl-C",
                if opts.udp { "udp" } else { "tcp" },
                libos.name(),
                if opts.framing { "on" } else { "off" },
            );
            match server.await {
                Ok(r) => r,
                Err(e) => Err(Failure(format!("server: {e}"))),
            }
        }
    }
}

/// The libOS named on the command line, else the thread's default (`DEMI_LIBOS`),
/// with the device flags applied.
fn open_libos(opts: &Options) -> Result<LibOs, ConfigError> {
    let kind = match opts.libos.as_deref() {
        Some(name) => LibOsKind::parse(name)?,
        None if opts.device.is_empty() && opts.mode == Mode::Both => return LibOs::current(),
        None => match std::env::var("DEMI_LIBOS") {
            Ok(v) if !v.trim().is_empty() => LibOsKind::parse(&v)?,
            // Separate server and client processes: the memory link cannot join
            // them, the kernel's sockets can.
            _ if opts.mode != Mode::Both => LibOsKind::Posix,
            _ => LibOsKind::Memory,
        },
    };
    let host = if opts.mode == Mode::Client { 1 } else { 0 };
    LibOs::new(&libos_config(kind, opts, host)?)
}

#[demi::main(libos = "memory")]
async fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("echo: {e}\n(see `echo --help`)");
            return ExitCode::from(2);
        }
    };
    let libos = match open_libos(&opts) {
        Ok(l) => l,
        Err(e @ ConfigError::UnknownLibOs(_)) => {
            eprintln!("echo: --libos: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("echo: starting the libOS failed: {e}");
            return ExitCode::from(1);
        }
    };
    match run(&libos, &opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::from(1)
        }
    }
}
