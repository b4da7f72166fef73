//! Queue benchmarks: `wait_any` cost per completion with 1 and with 10,000
//! outstanding tokens, and the cost of memory queues and `qconnect`, against tokio
//! peers measured in the same process, alternating, with a warm-up run and the
//! median of several repetitions.
//!
//! Run with `cargo bench --bench queues`. `DEMI_BENCH_QUICK=1` shrinks the iteration
//! counts so the whole run takes a second or two (CI smoke check). Case-name filters
//! on the command line select cases (`cargo bench --bench queues -- wait_set`).
//!
//! Output, one line per case:
//! `<case>: demi <value> <unit>, tokio <value> <unit>, ratio <tokio/demi>`
//! (ratio > 1 means demi is faster), then one line per waiting method:
//! `flatness <method>: <cost with 10000> / <cost with 1> = <x> (goal <= 2.00)`.
//!
//! What is measured, per completion (wall time, single thread):
//! - `wait_set_N`: N tokens outstanding in a [`WaitSet`]; one iteration completes
//!   one of them, chosen pseudo-randomly (`Handle::op_complete`, what a libOS does
//!   when its device finishes), takes it with `set.wait_any().await`, and starts and
//!   inserts a fresh token in its place, so N stay outstanding.
//! - `wait_any_slice_N`: the same over a slice with `demi::wait_any(&tokens)`. The
//!   slice may change arbitrarily between calls, so each call has to look at every
//!   token: its cost grows with N (like `select(2)`); this case shows by how much.
//! - the tokio peer for both: N `oneshot` receivers in a `FuturesUnordered`; one
//!   iteration sends on one sender, takes the completion with `next().await` and
//!   pushes a fresh receiver.
//! - `memory_queue`: push then pop of one element on a memory queue (both complete
//!   at once); tokio: `try_send` then `recv().await` on a bounded `mpsc` channel.
//! - `qconnect`: elements moved from one memory queue to another by `qconnect`,
//!   pushed and popped in batches of 64; tokio: a task forwarding between two bounded
//!   `mpsc` channels.

use demi_runtime::{Handle, OpCode, QDesc, QToken, QValue, Runtime, WaitSet};
use futures::stream::{FuturesUnordered, StreamExt};
use std::hint::black_box;
use std::time::Instant;

// ---------------------------------------------------------------------------------
// Harness (as benches/executor.rs)
// ---------------------------------------------------------------------------------

struct Config {
    reps: usize,
    quick: bool,
    filters: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let filters = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        Config { reps: if quick { 3 } else { 7 }, quick, filters }
    }

    fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick.max(1)
        } else {
            full.max(1)
        }
    }
}

/// Elapsed nanoseconds and operations performed.
type Sample = (u64, u64);

fn now_ns() -> u64 {
    thread_local!(static BASE: Instant = Instant::now());
    BASE.with(|b| b.elapsed().as_nanos() as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn per_op((ns, ops): Sample) -> f64 {
    ns as f64 / ops.max(1) as f64
}

struct Runtimes {
    demi: Runtime,
    tokio: tokio::runtime::Runtime,
}

/// Runs one case: warm-up, then `reps` alternating measurements; prints its line and
/// returns the medians (demi, tokio) in ns per op.
fn run_case<D, T>(cfg: &Config, rts: &Runtimes, name: &str, op: &str, demi: D, tokio: T) -> Option<(f64, f64)>
where
    D: Fn(&Runtime) -> Sample,
    T: Fn(&tokio::runtime::Runtime) -> Sample,
{
    if !cfg.selected(name) {
        return None;
    }
    black_box(demi(&rts.demi));
    black_box(tokio(&rts.tokio));
    let mut d = Vec::with_capacity(cfg.reps);
    let mut t = Vec::with_capacity(cfg.reps);
    for rep in 0..cfg.reps {
        if rep % 2 == 0 {
            d.push(per_op(demi(&rts.demi)));
            t.push(per_op(tokio(&rts.tokio)));
        } else {
            t.push(per_op(tokio(&rts.tokio)));
            d.push(per_op(demi(&rts.demi)));
        }
    }
    let (d, t) = (median(d), median(t));
    println!("{name}: demi {d:.1} ns/{op}, tokio {t:.1} ns/{op}, ratio {:.2}", t / d);
    Some((d, t))
}

/// A small LCG: which token completes next (the same sequence for every method).
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------
// wait_any with N outstanding tokens
// ---------------------------------------------------------------------------------

fn qd() -> QDesc {
    QDesc::from_parts(0, 1)
}

fn demi_wait_set(rt: &Runtime, outstanding: usize, iters: usize) -> Sample {
    let h: Handle = rt.handle().clone();
    rt.block_on(async move {
        let mut set = WaitSet::new();
        let mut tokens: Vec<QToken> = (0..outstanding).map(|_| h.op_start(OpCode::Pop, qd())).collect();
        for &qt in &tokens {
            set.insert(qt).unwrap();
        }
        let mut pick = Pick(7);
        let start = now_ns();
        for _ in 0..iters {
            let k = pick.next(outstanding);
            h.op_complete(tokens[k], Ok(QValue::Pushed)).unwrap();
            let r = set.wait_any(None).await.unwrap();
            debug_assert_eq!(r.qt, tokens[k]);
            black_box(r);
            tokens[k] = h.op_start(OpCode::Pop, qd());
            set.insert(tokens[k]).unwrap();
        }
        let elapsed = now_ns() - start;
        for qt in tokens {
            h.op_complete(qt, Ok(QValue::Pushed)).unwrap();
            let _ = h.try_take(qt);
        }
        (elapsed, iters as u64)
    })
}

fn demi_wait_any_slice(rt: &Runtime, outstanding: usize, iters: usize) -> Sample {
    let h: Handle = rt.handle().clone();
    rt.block_on(async move {
        let mut tokens: Vec<QToken> = (0..outstanding).map(|_| h.op_start(OpCode::Pop, qd())).collect();
        let mut pick = Pick(7);
        let start = now_ns();
        for _ in 0..iters {
            let k = pick.next(outstanding);
            h.op_complete(tokens[k], Ok(QValue::Pushed)).unwrap();
            let (pos, r) = demi_runtime::wait_any(&tokens, None).await.unwrap();
            debug_assert_eq!(pos, k);
            black_box(r);
            tokens[k] = h.op_start(OpCode::Pop, qd());
        }
        let elapsed = now_ns() - start;
        for qt in tokens {
            h.op_complete(qt, Ok(QValue::Pushed)).unwrap();
            let _ = h.try_take(qt);
        }
        (elapsed, iters as u64)
    })
}

async fn receiver(k: usize, rx: tokio::sync::oneshot::Receiver<()>) -> usize {
    let _ = rx.await;
    k
}

fn tokio_futures_unordered(rt: &tokio::runtime::Runtime, outstanding: usize, iters: usize) -> Sample {
    rt.block_on(async move {
        let mut set = FuturesUnordered::new();
        let mut senders = Vec::with_capacity(outstanding);
        for k in 0..outstanding {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(Some(tx));
            set.push(receiver(k, rx));
        }
        let mut pick = Pick(7);
        let start = now_ns();
        for _ in 0..iters {
            let k = pick.next(outstanding);
            senders[k].take().expect("outstanding").send(()).unwrap();
            let got = set.next().await.unwrap();
            debug_assert_eq!(got, k);
            black_box(got);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders[k] = Some(tx);
            set.push(receiver(k, rx));
        }
        (now_ns() - start, iters as u64)
    })
}

// ---------------------------------------------------------------------------------
// Memory queues and qconnect
// ---------------------------------------------------------------------------------

fn demi_memory_queue(rt: &Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let libos = demi_libos::LibOs::posix().unwrap();
        let q = libos.queue().unwrap();
        let el = demi_runtime::Sga::from(bytes::Bytes::from_static(b"element"));
        let start = now_ns();
        for _ in 0..n {
            libos.push(q, el.clone()).unwrap().await.unwrap();
            black_box(libos.pop(q).unwrap().await.unwrap());
        }
        (now_ns() - start, n as u64)
    })
}

fn tokio_mpsc(rt: &tokio::runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1024);
        let el = bytes::Bytes::from_static(b"element");
        let start = now_ns();
        for _ in 0..n {
            tx.try_send(el.clone()).unwrap();
            black_box(rx.recv().await.unwrap());
        }
        (now_ns() - start, n as u64)
    })
}

const BATCH: usize = 64;

fn demi_qconnect(rt: &Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let libos = demi_libos::LibOs::posix().unwrap();
        let (src, dst) = (libos.queue().unwrap(), libos.queue().unwrap());
        let conn = libos.qconnect(src, dst).unwrap();
        let el = demi_runtime::Sga::from(bytes::Bytes::from_static(b"element"));
        let mut pops = Vec::with_capacity(BATCH);
        let start = now_ns();
        for _ in 0..n / BATCH {
            for _ in 0..BATCH {
                libos.push(src, el.clone()).unwrap().await.unwrap();
            }
            pops.extend((0..BATCH).map(|_| libos.pop(dst).unwrap()));
            for qt in pops.drain(..) {
                black_box(qt.await.unwrap());
            }
        }
        let elapsed = now_ns() - start;
        libos.close(src).unwrap();
        conn.await.unwrap();
        (elapsed, (n / BATCH * BATCH) as u64)
    })
}

fn tokio_forward(rt: &tokio::runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let (tx_in, mut rx_in) = tokio::sync::mpsc::channel::<bytes::Bytes>(1024);
        let (tx_out, mut rx_out) = tokio::sync::mpsc::channel::<bytes::Bytes>(1024);
        let fwd = tokio::spawn(async move {
            while let Some(b) = rx_in.recv().await {
                if tx_out.send(b).await.is_err() {
                    break;
                }
            }
        });
        let el = bytes::Bytes::from_static(b"element");
        let start = now_ns();
        for _ in 0..n / BATCH {
            for _ in 0..BATCH {
                tx_in.send(el.clone()).await.unwrap();
            }
            for _ in 0..BATCH {
                black_box(rx_out.recv().await.unwrap());
            }
        }
        let elapsed = now_ns() - start;
        drop(tx_in);
        fwd.await.unwrap();
        (elapsed, (n / BATCH * BATCH) as u64)
    })
}

fn main() {
    let cfg = Config::from_env();
    let rts = Runtimes {
        demi: Runtime::new().expect("demi runtime"),
        tokio: tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime"),
    };
    println!(
        "queues bench: demi Runtime::new() vs tokio current_thread; median of {} reps after 1 warm-up{}; ratio = tokio/demi (>1: demi faster)",
        cfg.reps,
        if cfg.quick { " [DEMI_BENCH_QUICK]" } else { "" }
    );

    let iters = cfg.n(200_000, 20_000);
    let slice_iters_big = cfg.n(2_000, 200);
    let set1 = run_case(&cfg, &rts, "wait_set_1", "completion", |rt| demi_wait_set(rt, 1, iters), |rt| {
        tokio_futures_unordered(rt, 1, iters)
    });
    let set10k = run_case(&cfg, &rts, "wait_set_10000", "completion", |rt| demi_wait_set(rt, 10_000, iters), |rt| {
        tokio_futures_unordered(rt, 10_000, iters)
    });
    let slice1 = run_case(&cfg, &rts, "wait_any_slice_1", "completion", |rt| demi_wait_any_slice(rt, 1, iters), |rt| {
        tokio_futures_unordered(rt, 1, iters)
    });
    let slice10k = run_case(
        &cfg,
        &rts,
        "wait_any_slice_10000",
        "completion",
        |rt| demi_wait_any_slice(rt, 10_000, slice_iters_big),
        |rt| tokio_futures_unordered(rt, 10_000, slice_iters_big),
    );
    if let (Some((d1, t1)), Some((d10k, t10k))) = (set1, set10k) {
        println!("flatness demi WaitSet::wait_any: {d10k:.1} / {d1:.1} = {:.2} (goal <= 2.00)", d10k / d1);
        println!("flatness tokio FuturesUnordered: {t10k:.1} / {t1:.1} = {:.2}", t10k / t1);
    }
    if let (Some((d1, _)), Some((d10k, _))) = (slice1, slice10k) {
        println!("flatness demi wait_any(&[QToken]): {d10k:.1} / {d1:.1} = {:.2} (grows with the slice)", d10k / d1);
    }

    let n = cfg.n(1_000_000, 50_000);
    run_case(&cfg, &rts, "memory_queue", "element", |rt| demi_memory_queue(rt, n), |rt| tokio_mpsc(rt, n));
    let n = cfg.n(1_000_000, 50_000);
    run_case(&cfg, &rts, "qconnect", "element", |rt| demi_qconnect(rt, n), |rt| tokio_forward(rt, n));
}
