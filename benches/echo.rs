//! Echo benchmark: TCP echo over demi's POSIX libOS against tokio, both over the
//! kernel's loopback, measured in the same process.
//!
//! Run with `cargo bench --bench echo` (under a minute); `DEMI_BENCH_QUICK=1` shrinks
//! every count so the run takes a few seconds (the CI smoke check; its figures mean
//! little). Case names given as arguments select cases
//! (`cargo bench --bench echo -- c16`).
//!
//! Output: a header line describing the set-up, then one line per case:
//! `<case>: demi <value> <unit>, tokio <value> <unit>, ratio <r>`, where the ratio
//! always reads "how many times better demi is" (> 1: demi better):
//! `ratio = demi / tokio` for throughputs (msgs/s) and `ratio = tokio / demi` for
//! latencies (ns).
//!
//! Set-up, the same on both sides:
//! - Server and clients run in one process, on one single-threaded runtime: demi's
//!   `Runtime` with the POSIX libOS through the queue API; tokio's `current_thread`
//!   runtime with `tokio::net::TcpListener` / `TcpStream`.
//! - Nagle is off on both ends (demi's TCP queues default to `TCP_NODELAY`; the tokio
//!   streams get `set_nodelay(true)`).
//! - The server runs one task per connection that echoes whatever arrives, reading
//!   up to 64 KiB at a time (demi: pop, push back; tokio: `read`, `write_all`).
//! - Each client connection is a task doing ping-pong: send one message, receive
//!   until the whole message is back, compare every byte with what was sent, record
//!   the round-trip time. One message is in flight per connection.
//! - A run first does a warm-up phase (every connection, unmeasured), then the
//!   measured phase, timed from its start until the last connection finishes.
//! - Per case: one warm-up run of each runtime, then `reps` runs of each, alternating
//!   which goes first; the median over the runs is reported.
//!
//! Cases:
//! - `echo_rtt_64B`: one connection, 64-byte messages, median (p50) round trip.
//! - `echo_msgs_64B_c1`: one connection, 64-byte messages, round trips per second.
//! - `echo_msgs_64B_c16`: 16 connections at once, 64-byte messages, round trips per
//!   second over all connections.
//! - `echo_msgs_16KiB_c1`: one connection, 16 KiB messages, round trips per second.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

struct Config {
    reps: usize,
    quick: bool,
    /// Case-name filters from the command line; empty runs every case. Flags such as
    /// cargo's `--bench` are ignored.
    filters: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let filters = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        Config { reps: if quick { 3 } else { 5 }, quick, filters }
    }

    fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// A full-run count, or the quick-mode one.
    fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick.max(1)
        } else {
            full.max(1)
        }
    }
}

/// What one run does.
#[derive(Clone, Copy, Debug)]
struct Workload {
    connections: usize,
    size: usize,
    /// Unmeasured round trips per connection.
    warmup: usize,
    /// Measured round trips per connection.
    count: usize,
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    p50_ns: f64,
    msgs_per_s: f64,
}

/// Which figure of an [`Outcome`] a case reports.
#[derive(Clone, Copy)]
enum Metric {
    /// Median round trip, ns (lower is better).
    P50,
    /// Round trips per second (higher is better).
    Throughput,
}

impl Metric {
    fn of(self, o: &Outcome) -> f64 {
        match self {
            Metric::P50 => o.p50_ns,
            Metric::Throughput => o.msgs_per_s,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::P50 => "ns",
            Metric::Throughput => "msgs/s",
        }
    }

    /// How many times better demi is.
    fn ratio(self, demi: f64, tokio: f64) -> f64 {
        match self {
            Metric::P50 => tokio / demi,
            Metric::Throughput => demi / tokio,
        }
    }
}

struct Runtimes {
    demi: demi::Runtime,
    tokio: tokio::runtime::Runtime,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run_case(cfg: &Config, rts: &Runtimes, name: &str, metric: Metric, w: Workload) {
    if !cfg.selected(name) {
        return;
    }
    // Warm-up runs: allocator, page cache of the binary, the kernel's socket caches.
    std::hint::black_box(demi_echo(&rts.demi, w));
    std::hint::black_box(tokio_echo(&rts.tokio, w));
    let mut d = Vec::with_capacity(cfg.reps);
    let mut t = Vec::with_capacity(cfg.reps);
    for rep in 0..cfg.reps {
        if rep % 2 == 0 {
            d.push(metric.of(&demi_echo(&rts.demi, w)));
            t.push(metric.of(&tokio_echo(&rts.tokio, w)));
        } else {
            t.push(metric.of(&tokio_echo(&rts.tokio, w)));
            d.push(metric.of(&demi_echo(&rts.demi, w)));
        }
    }
    let (d, t) = (median(d), median(t));
    let unit = metric.unit();
    println!("{name}: demi {d:.0} {unit}, tokio {t:.0} {unit}, ratio {:.2}", metric.ratio(d, t));
}

/// Message `i` of connection `c` is `pattern[o..o + size]` with
/// `o = (c * 17 + i) % PERIOD`, so consecutive messages differ.
const PERIOD: usize = 251;

fn pattern(size: usize) -> Vec<u8> {
    (0..size + PERIOD).map(|k| (k % PERIOD) as u8).collect()
}

fn offset(conn: usize, i: usize) -> usize {
    (conn * 17 + i) % PERIOD
}

/// Latency percentile and throughput from the per-connection samples and the
/// measured phase's wall time.
fn outcome(per_conn: Vec<Vec<u64>>, wall_ns: u64) -> Outcome {
    let mut all: Vec<u64> = per_conn.into_iter().flatten().collect();
    all.sort_unstable();
    let p50 = all.get(all.len().saturating_sub(1) / 2).copied().unwrap_or(0);
    Outcome { p50_ns: p50 as f64, msgs_per_s: all.len() as f64 * 1e9 / wall_ns.max(1) as f64 }
}

// ---------------------------------------------------------------------------------
// demi: the POSIX libOS through the queue API
// ---------------------------------------------------------------------------------

mod demi_side {
    use super::*;
    use demi::{Bytes, Domain, LibOs, QDesc, QResult, Sga, SocketType};

    /// Echoes every element until the peer closes or an error.
    pub async fn serve(libos: LibOs, qd: QDesc) {
        let _ = async {
            let mut pop = libos.pop(qd)?;
            loop {
                let sga = pop.await?.into_sga()?;
                if sga.is_empty() {
                    return Ok::<(), demi::QError>(());
                }
                let push = libos.push(qd, sga)?;
                pop = libos.pop(qd)?;
                push.await?.ok()?;
            }
        }
        .await;
        let _ = libos.close(qd);
    }

    /// One client connection.
    pub struct Conn {
        pub libos: LibOs,
        pub qd: QDesc,
        /// Its number (chooses the message patterns).
        pub id: usize,
        pub pattern: Bytes,
        pub size: usize,
    }

    /// `n` ping-pong round trips from message index `first` on; returns the round-trip
    /// times if `record`.
    pub async fn ping_pong(c: Conn, first: usize, n: usize, record: bool) -> Vec<u64> {
        let Conn { libos, qd, id: conn, pattern, size } = c;
        let mut samples = Vec::with_capacity(if record { n } else { 0 });
        for i in first..first + n {
            let o = offset(conn, i);
            let expected = &pattern[o..o + size];
            let t0 = Instant::now();
            let push = libos.push(qd, Sga::from(pattern.slice(o..o + size))).expect("demi push");
            let mut pop = libos.pop(qd).expect("demi pop");
            push.await.and_then(QResult::ok).expect("demi push completion");
            let mut got = 0;
            loop {
                let sga = pop.await.and_then(QResult::into_sga).expect("demi pop completion");
                assert!(!sga.is_empty(), "demi: server closed the connection");
                for seg in sga.segments() {
                    assert!(got + seg.len() <= size, "demi: more bytes echoed than sent");
                    assert!(seg[..] == expected[got..got + seg.len()], "demi: echoed bytes differ");
                    got += seg.len();
                }
                if got == size {
                    break;
                }
                pop = libos.pop(qd).expect("demi pop");
            }
            if record {
                samples.push(t0.elapsed().as_nanos() as u64);
            }
        }
        samples
    }

    pub fn run(rt: &demi::Runtime, w: Workload) -> Outcome {
        rt.block_on(async move {
            let libos = LibOs::posix().expect("demi: POSIX libOS");
            let lqd = libos.socket(Domain::Ipv4, SocketType::Stream).expect("demi socket");
            libos.bind(lqd, SocketAddr::from(([127, 0, 0, 1], 0))).expect("demi bind");
            libos.listen(lqd, 1024).expect("demi listen");
            let addr = libos.local_addr(lqd).expect("demi local_addr");

            let server = {
                let libos = libos.clone();
                demi::spawn(async move {
                    let mut conns = Vec::with_capacity(w.connections);
                    for _ in 0..w.connections {
                        let (qd, _) = libos.accept(lqd).expect("demi accept").await.and_then(QResult::into_accepted).expect("demi accept completion");
                        conns.push(demi::spawn(serve(libos.clone(), qd)));
                    }
                    for c in conns {
                        c.await.expect("demi server task");
                    }
                })
            };

            let mut qds = Vec::with_capacity(w.connections);
            for _ in 0..w.connections {
                let qd = libos.socket(Domain::Ipv4, SocketType::Stream).expect("demi socket");
                libos.connect(qd, addr).expect("demi connect").await.and_then(QResult::ok).expect("demi connect completion");
                qds.push(qd);
            }
            let pattern = Bytes::from(pattern(w.size));
            let phase = |first: usize, n: usize, record: bool| {
                let tasks: Vec<_> = qds
                    .iter()
                    .enumerate()
                    .map(|(id, &qd)| {
                        let c = Conn { libos: libos.clone(), qd, id, pattern: pattern.clone(), size: w.size };
                        demi::spawn(ping_pong(c, first, n, record))
                    })
                    .collect();
                async move {
                    let mut out = Vec::with_capacity(tasks.len());
                    for t in tasks {
                        out.push(t.await.expect("demi client task"));
                    }
                    out
                }
            };
            phase(0, w.warmup, false).await;
            let start = Instant::now();
            let samples = phase(w.warmup, w.count, true).await;
            let wall = start.elapsed().as_nanos() as u64;

            for qd in qds {
                libos.close(qd).expect("demi close");
            }
            server.await.expect("demi server");
            libos.close(lqd).expect("demi close listener");
            outcome(samples, wall)
        })
    }
}

fn demi_echo(rt: &demi::Runtime, w: Workload) -> Outcome {
    demi_side::run(rt, w)
}

// ---------------------------------------------------------------------------------
// tokio: TcpListener / TcpStream on a current_thread runtime
// ---------------------------------------------------------------------------------

mod tokio_side {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Echoes whatever arrives until the peer closes or an error.
    pub async fn serve(mut s: TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    pub async fn ping_pong(
        mut s: TcpStream,
        conn: usize,
        pattern: Rc<Vec<u8>>,
        size: usize,
        first: usize,
        n: usize,
        record: bool,
    ) -> (TcpStream, Vec<u64>) {
        let mut samples = Vec::with_capacity(if record { n } else { 0 });
        let mut buf = vec![0u8; size];
        for i in first..first + n {
            let o = offset(conn, i);
            let msg = &pattern[o..o + size];
            let t0 = Instant::now();
            s.write_all(msg).await.expect("tokio write");
            s.read_exact(&mut buf).await.expect("tokio read");
            assert!(buf[..] == msg[..], "tokio: echoed bytes differ");
            if record {
                samples.push(t0.elapsed().as_nanos() as u64);
            }
        }
        (s, samples)
    }

    pub fn run(rt: &tokio::runtime::Runtime, w: Workload) -> Outcome {
        // A LocalSet, so the client tasks can share the pattern through an `Rc` like
        // demi's tasks do (demi's tasks need not be `Send`).
        let local = tokio::task::LocalSet::new();
        local.block_on(rt, async move {
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("tokio bind");
            let addr = listener.local_addr().expect("tokio local_addr");
            let server = tokio::task::spawn_local(async move {
                let mut conns = Vec::with_capacity(w.connections);
                for _ in 0..w.connections {
                    let (s, _) = listener.accept().await.expect("tokio accept");
                    s.set_nodelay(true).expect("tokio nodelay");
                    conns.push(tokio::task::spawn_local(serve(s)));
                }
                for c in conns {
                    c.await.expect("tokio server task");
                }
            });

            let mut streams = Vec::with_capacity(w.connections);
            for _ in 0..w.connections {
                let s = TcpStream::connect(addr).await.expect("tokio connect");
                s.set_nodelay(true).expect("tokio nodelay");
                streams.push(s);
            }
            let pattern = Rc::new(pattern(w.size));
            async fn phase(
                streams: Vec<TcpStream>,
                pattern: &Rc<Vec<u8>>,
                size: usize,
                first: usize,
                n: usize,
                record: bool,
            ) -> (Vec<TcpStream>, Vec<Vec<u64>>) {
                let tasks: Vec<_> = streams
                    .into_iter()
                    .enumerate()
                    .map(|(c, s)| tokio::task::spawn_local(ping_pong(s, c, pattern.clone(), size, first, n, record)))
                    .collect();
                let mut back = Vec::with_capacity(tasks.len());
                let mut out = Vec::with_capacity(tasks.len());
                for t in tasks {
                    let (s, samples) = t.await.expect("tokio client task");
                    back.push(s);
                    out.push(samples);
                }
                (back, out)
            }
            let (streams, _) = phase(streams, &pattern, w.size, 0, w.warmup, false).await;
            let start = Instant::now();
            let (streams, samples) = phase(streams, &pattern, w.size, w.warmup, w.count, true).await;
            let wall = start.elapsed().as_nanos() as u64;

            drop(streams);
            server.await.expect("tokio server");
            outcome(samples, wall)
        })
    }
}

fn tokio_echo(rt: &tokio::runtime::Runtime, w: Workload) -> Outcome {
    tokio_side::run(rt, w)
}

// ---------------------------------------------------------------------------------

fn main() {
    let cfg = Config::from_env();
    let rts = Runtimes {
        demi: demi::Runtime::new().expect("demi runtime"),
        tokio: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"),
    };

    println!(
        "echo bench: TCP echo over 127.0.0.1, server and clients on one single-threaded runtime \
         (demi Runtime + POSIX libOS queue API vs tokio current_thread + TcpStream), TCP_NODELAY, \
         one message in flight per connection; median of {} reps after 1 warm-up, alternating{}; \
         ratio > 1 means demi is better: demi/tokio for msgs/s, tokio/demi for latency",
        cfg.reps,
        if cfg.quick { " [DEMI_BENCH_QUICK]" } else { "" }
    );

    let warmup = cfg.n(1_000, 200);
    let c1 = Workload { connections: 1, size: 64, warmup, count: cfg.n(30_000, 2_000) };
    run_case(&cfg, &rts, "echo_rtt_64B", Metric::P50, c1);
    run_case(&cfg, &rts, "echo_msgs_64B_c1", Metric::Throughput, c1);

    let c16 = Workload { connections: 16, size: 64, warmup: warmup / 4, count: cfg.n(4_000, 300) };
    run_case(&cfg, &rts, "echo_msgs_64B_c16", Metric::Throughput, c16);

    let big = Workload { connections: 1, size: 16 * 1024, warmup, count: cfg.n(20_000, 1_000) };
    run_case(&cfg, &rts, "echo_msgs_16KiB_c1", Metric::Throughput, big);
}
