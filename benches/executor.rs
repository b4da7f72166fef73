//! Executor micro-benchmarks: demi's runtime against tokio's current_thread runtime,
//! measured in the same process, alternating, with a warm-up run and the median of
//! several repetitions.
//!
//! Run with `cargo bench --bench executor`. `DEMI_BENCH_QUICK=1` shrinks the
//! iteration counts so the whole run takes about two seconds (CI smoke check).
//!
//! Output, one line per case:
//! `<case>: demi <value> <unit>, tokio <value> <unit>, ratio <tokio/demi>`
//! (ratio > 1 means demi is faster).
//!
//! Fairness:
//! - tokio is `Builder::new_current_thread().enable_time()` (no I/O driver: a bare
//!   demi runtime has no registered fds either); demi is `Runtime::new()`.
//! - Each runtime is built once and reused by every case; timing happens inside
//!   `block_on`, so building and entering the runtime is not measured.
//! - Per case: one warm-up run of each runtime, then `reps` runs of each, alternating
//!   which runtime goes first, and the median is reported.
//! - `timer_arm_fire` waits on real 1–2 ms timers, so wall time would measure the
//!   wait and each runtime's timer granularity (tokio rounds to 1 ms, demi to 1 µs).
//!   It reports the thread's CPU time instead (`CLOCK_THREAD_CPUTIME_ID`), which
//!   counts the work done to arm, fire and join, including syscalls, but not the
//!   time spent parked. Every other case reports wall time.

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// Which clock a case reads.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    ThreadCpu,
}

impl Clock {
    fn now_ns(self) -> u64 {
        match self {
            Clock::Wall => {
                thread_local!(static BASE: Instant = Instant::now());
                BASE.with(|b| b.elapsed().as_nanos() as u64)
            }
            Clock::ThreadCpu => {
                let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: `ts` is a valid, writable timespec.
                let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
                assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
                ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
            }
        }
    }

    fn unit_prefix(self) -> &'static str {
        match self {
            Clock::Wall => "ns",
            Clock::ThreadCpu => "cpu-ns",
        }
    }
}

struct Config {
    reps: usize,
    quick: bool,
    /// Case-name filters from the command line (`cargo bench --bench executor -- spawn`);
    /// empty runs every case. Flags such as cargo's `--bench` are ignored.
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

    /// Scales a full-run count down for quick mode (never below 1).
    fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick.max(1)
        } else {
            full.max(1)
        }
    }
}

struct Runtimes {
    demi: demi_runtime::Runtime,
    tokio: tokio::runtime::Runtime,
}

/// A workload run inside `block_on`: it returns the elapsed nanoseconds (on the case's
/// clock) and the number of operations performed, so the harness can divide.
type Sample = (u64, u64);

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

/// Runs one case: warm-up, then `reps` alternating measurements; prints its line.
fn run_case<D, T>(cfg: &Config, rts: &Runtimes, name: &str, clock: Clock, op: &str, demi: D, tokio: T)
where
    D: Fn(&demi_runtime::Runtime) -> Sample,
    T: Fn(&tokio::runtime::Runtime) -> Sample,
{
    if !cfg.selected(name) {
        return;
    }
    // Warm-up: caches, allocator pools, the runtimes' internal buffers.
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
    let unit = format!("{}/{}", clock.unit_prefix(), op);
    println!("{name}: demi {d:.1} {unit}, tokio {t:.1} {unit}, ratio {:.2}", t / d);
}

/// Polls a future exactly once from inside an async context.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(move |cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

// ---------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------

// 1. spawn_join: spawn an empty task and await its handle, N times.

fn demi_spawn_join(rt: &demi_runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let start = Clock::Wall.now_ns();
        for _ in 0..n {
            demi_runtime::spawn(async {}).await.unwrap();
        }
        (Clock::Wall.now_ns() - start, n as u64)
    })
}

fn tokio_spawn_join(rt: &tokio::runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let start = Clock::Wall.now_ns();
        for _ in 0..n {
            tokio::spawn(async {}).await.unwrap();
        }
        (Clock::Wall.now_ns() - start, n as u64)
    })
}

// 1b. spawn_join_batch: spawn `batch` tasks, then await every handle; `rounds` times.

fn demi_spawn_join_batch(rt: &demi_runtime::Runtime, rounds: usize, batch: usize) -> Sample {
    rt.block_on(async move {
        let mut handles = Vec::with_capacity(batch);
        let start = Clock::Wall.now_ns();
        for _ in 0..rounds {
            for i in 0..batch {
                handles.push(demi_runtime::spawn(async move { black_box(i) }));
            }
            for h in handles.drain(..) {
                black_box(h.await.unwrap());
            }
        }
        (Clock::Wall.now_ns() - start, (rounds * batch) as u64)
    })
}

fn tokio_spawn_join_batch(rt: &tokio::runtime::Runtime, rounds: usize, batch: usize) -> Sample {
    rt.block_on(async move {
        let mut handles = Vec::with_capacity(batch);
        let start = Clock::Wall.now_ns();
        for _ in 0..rounds {
            for i in 0..batch {
                handles.push(tokio::spawn(async move { black_box(i) }));
            }
            for h in handles.drain(..) {
                black_box(h.await.unwrap());
            }
        }
        (Clock::Wall.now_ns() - start, (rounds * batch) as u64)
    })
}

// 2. yield_pingpong: two tasks, each yielding `n` times; with both ready, every
//    yield switches to the other task. Reported per yield (= per task switch).

fn demi_yield_pingpong(rt: &demi_runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let start = Clock::Wall.now_ns();
        let a = demi_runtime::spawn(async move {
            for _ in 0..n {
                demi_runtime::yield_now().await;
            }
        });
        let b = demi_runtime::spawn(async move {
            for _ in 0..n {
                demi_runtime::yield_now().await;
            }
        });
        a.await.unwrap();
        b.await.unwrap();
        (Clock::Wall.now_ns() - start, 2 * n as u64)
    })
}

fn tokio_yield_pingpong(rt: &tokio::runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let start = Clock::Wall.now_ns();
        let a = tokio::spawn(async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        });
        let b = tokio::spawn(async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        });
        a.await.unwrap();
        b.await.unwrap();
        (Clock::Wall.now_ns() - start, 2 * n as u64)
    })
}

// 3. timer_arm_fire: `batch` tasks each sleep 1–2 ms (spread over the millisecond),
//    then all are joined; `rounds` times. Thread CPU time per timer.

fn sleep_spread(i: usize) -> Duration {
    Duration::from_micros(1000 + (i as u64 * 37) % 1000)
}

fn demi_timer_arm_fire(rt: &demi_runtime::Runtime, rounds: usize, batch: usize) -> Sample {
    rt.block_on(async move {
        let mut handles = Vec::with_capacity(batch);
        let start = Clock::ThreadCpu.now_ns();
        for _ in 0..rounds {
            for i in 0..batch {
                handles.push(demi_runtime::spawn(demi_runtime::time::sleep(sleep_spread(i))));
            }
            for h in handles.drain(..) {
                h.await.unwrap();
            }
        }
        (Clock::ThreadCpu.now_ns() - start, (rounds * batch) as u64)
    })
}

fn tokio_timer_arm_fire(rt: &tokio::runtime::Runtime, rounds: usize, batch: usize) -> Sample {
    rt.block_on(async move {
        let mut handles = Vec::with_capacity(batch);
        let start = Clock::ThreadCpu.now_ns();
        for _ in 0..rounds {
            for i in 0..batch {
                handles.push(tokio::spawn(tokio::time::sleep(sleep_spread(i))));
            }
            for h in handles.drain(..) {
                h.await.unwrap();
            }
        }
        (Clock::ThreadCpu.now_ns() - start, (rounds * batch) as u64)
    })
}

// 3b. timer_arm_cancel: create a 10 s sleep, poll it once (which arms it in both
//     runtimes: timers register lazily on first poll), then drop it (cancel).

fn demi_timer_arm_cancel(rt: &demi_runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let start = Clock::Wall.now_ns();
        for _ in 0..n {
            let mut s = pin!(demi_runtime::time::sleep(Duration::from_secs(10)));
            assert!(poll_once(s.as_mut()).await.is_pending());
        }
        (Clock::Wall.now_ns() - start, n as u64)
    })
}

fn tokio_timer_arm_cancel(rt: &tokio::runtime::Runtime, n: usize) -> Sample {
    rt.block_on(async move {
        let start = Clock::Wall.now_ns();
        for _ in 0..n {
            let mut s = pin!(tokio::time::sleep(Duration::from_secs(10)));
            assert!(poll_once(s.as_mut()).await.is_pending());
        }
        (Clock::Wall.now_ns() - start, n as u64)
    })
}

// ---------------------------------------------------------------------------------

fn main() {
    let cfg = Config::from_env();
    let rts = Runtimes {
        demi: demi_runtime::Runtime::new().expect("demi runtime"),
        tokio: tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime"),
    };

    println!(
        "executor bench: demi Runtime::new() vs tokio current_thread (enable_time); median of {} reps after 1 warm-up{}; ratio = tokio/demi (>1: demi faster)",
        cfg.reps,
        if cfg.quick { " [DEMI_BENCH_QUICK]" } else { "" }
    );

    let n = cfg.n(1_000_000, 100_000);
    run_case(&cfg, &rts, "spawn_join", Clock::Wall, "iter", |rt| demi_spawn_join(rt, n), |rt| tokio_spawn_join(rt, n));

    let rounds = cfg.n(1_000, 100);
    run_case(
        &cfg,
        &rts,
        "spawn_join_batch",
        Clock::Wall,
        "task",
        |rt| demi_spawn_join_batch(rt, rounds, 1000),
        |rt| tokio_spawn_join_batch(rt, rounds, 1000),
    );

    let n = cfg.n(1_000_000, 100_000);
    run_case(
        &cfg,
        &rts,
        "yield_pingpong",
        Clock::Wall,
        "yield",
        |rt| demi_yield_pingpong(rt, n),
        |rt| tokio_yield_pingpong(rt, n),
    );

    let rounds = cfg.n(20, 4);
    run_case(
        &cfg,
        &rts,
        "timer_arm_fire",
        Clock::ThreadCpu,
        "timer",
        |rt| demi_timer_arm_fire(rt, rounds, 10_000),
        |rt| tokio_timer_arm_fire(rt, rounds, 10_000),
    );

    let n = cfg.n(2_000_000, 200_000);
    run_case(
        &cfg,
        &rts,
        "timer_arm_cancel",
        Clock::Wall,
        "timer",
        |rt| demi_timer_arm_cancel(rt, n),
        |rt| tokio_timer_arm_cancel(rt, n),
    );
}
