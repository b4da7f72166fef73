//! kv benchmark: examples/kv against Debian's `redis-server`, both driven by
//! `redis-benchmark` (SET and GET, 50 clients, one request in flight per client),
//! without persistence and with `appendfsync always`, in one run.
//!
//! Run with `cargo build --release --example kv && cargo bench --bench kv` (about a
//! minute); `DEMI_BENCH_QUICK=1` runs a few thousand requests per case (the CI smoke
//! check; its figures mean little). Case names given as arguments select cases
//! (`cargo bench --bench kv -- always`).
//!
//! Needs `redis-server` and `redis-benchmark` (Debian's redis-server and
//! redis-tools; scripts/test installs them) and the kv binary: `DEMI_KV_BIN`, else
//! `target/release/examples/kv` next to this bench. Missing tools or binary: a
//! message saying what to install or build, then exit status 1 (0 in quick mode,
//! which only smoke-tests).
//!
//! Output: a header line, then one line per case:
//! `<case>: demi <v> req/s, redis <v> req/s, ratio_vs_redis <x>`: the medians of
//! each side's rounds, and the median over rounds of `demi / redis` within a round
//! (> 1: demi faster).
//!
//! Set-up, the same on both sides:
//! - Each server runs alone on CPU 1 and redis-benchmark on CPU 0 (`taskset`, when
//!   present): the machine has two cores, and a server that migrates onto the
//!   benchmark's core measures the scheduler, not the server.
//! - kv: `--libos posix`, `--appendonly no` or `--appendfsync always` with its log
//!   under `CARGO_TARGET_TMPDIR`. Redis: `--save '' --appendonly no`, or
//!   `--appendonly yes --appendfsync always --dir <tmp>`; same file system.
//! - Per mode both servers start once and get a warm-up SET run (which also writes
//!   the key the GET test reads); then, per case, `reps` rounds, each running
//!   `redis-benchmark -q -t set|get -c 50 -n N -p P --csv` against both servers
//!   back to back, alternating which goes first. On a shared machine the load
//!   moves between rounds, so the ratio is taken within each round and the median
//!   of those ratios is reported.
//!
//! Cases: `set_c50`, `get_c50` (no persistence; kv as it comes: the runtime keeps
//! polling for 50 µs after its last work, then sleeps in epoll), `set_c50_park`,
//! `get_c50_park` (the same with `--spin-us 0`: kv sleeps in epoll whenever it has
//! nothing to do, as Redis does), `set_c50_always`, `get_c50_always` (every write
//! durable before its reply; GETs do not write, but run against the durable
//! configuration too).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

struct Config {
    reps: usize,
    quick: bool,
    filters: Vec<String>,
    taskset: bool,
}

impl Config {
    fn selected(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn kv_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DEMI_KV_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("bench binary path");
    exe.parent().and_then(Path::parent).expect("target/release/deps").join("examples").join("kv")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(cfg: &Config, cpu: &str, program: &Path) -> Command {
    if cfg.taskset {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_kv(cfg: &Config, durable: bool, extra: &[&str], dir: &Path) -> Server {
    let port = free_port();
    let mut cmd = pinned(cfg, "1", &kv_bin());
    cmd.args(["--libos", "posix", "--addr", &format!("127.0.0.1:{port}"), "--dir"]).arg(dir);
    if durable {
        cmd.args(["--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    cmd.args(extra);
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawning examples/kv");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("kv: serving on"), "kv printed {line:?}");
    Server { child, port }
}

fn start_redis(cfg: &Config, durable: bool, dir: &Path) -> Server {
    let port = free_port();
    let mut cmd = pinned(cfg, "1", Path::new("redis-server"));
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no", "--dir"]).arg(dir);
    if durable {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    let child = cmd.stdout(Stdio::null()).spawn().expect("spawning redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, port }
}

/// One redis-benchmark run of `test` (`set` or `get`): requests per second.
fn benchmark(cfg: &Config, port: u16, test: &str, n: usize) -> f64 {
    let mut cmd = pinned(cfg, "0", Path::new("redis-benchmark"));
    let out = cmd
        .args(["-q", "-t", test, "-c", "50", "-n", &n.to_string(), "-p", &port.to_string(), "--csv"])
        .output()
        .expect("running redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let name = test.to_ascii_uppercase();
    let line = text.lines().find(|l| l.starts_with(&format!("\"{name}\""))).unwrap_or_else(|| panic!("no {name} in {text}"));
    line.split(',').nth(1).unwrap().trim_matches('"').parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let cfg = Config {
        reps: if quick { 1 } else { 7 },
        quick,
        filters: std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect(),
        taskset: have("taskset", "-V") && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2),
    };
    let fail = |msg: String| {
        eprintln!("kv bench: {msg}");
        if cfg.quick {
            println!("skipped: {msg}");
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    if !have("redis-server", "--version") || !have("redis-benchmark", "--version") {
        return fail("redis-server and redis-benchmark are needed (apt-get install redis-server redis-tools)".into());
    }
    if !kv_bin().exists() {
        return fail(format!("{} not found: run `cargo build --release --example kv` (or set DEMI_KV_BIN)", kv_bin().display()));
    }
    let version = Command::new("redis-server").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    println!(
        "kv bench: examples/kv (posix) vs {version}; redis-benchmark -c 50, {} rounds, median; pinning: {}",
        cfg.reps,
        if cfg.taskset { "servers on CPU 1, redis-benchmark on CPU 0" } else { "none" }
    );
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kv-bench-{}", std::process::id()));
    let (n_mem, n_durable) = if quick { (2_000, 2_000) } else { (100_000, 40_000) };
    let modes: [(bool, &str, &[&str], usize); 3] =
        [(false, "", &[], n_mem), (false, "_park", &["--spin-us", "0"], n_mem), (true, "_always", &[], n_durable)];
    for (durable, suffix, extra, n) in modes {
        let (set_case, get_case) = (format!("set_c50{suffix}"), format!("get_c50{suffix}"));
        if !cfg.selected(&set_case) && !cfg.selected(&get_case) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        let (kv_dir, redis_dir) = (tmp.join("kv"), tmp.join("redis"));
        std::fs::create_dir_all(&redis_dir).unwrap();
        let kv = start_kv(&cfg, durable, extra, &kv_dir);
        let redis = start_redis(&cfg, durable, &redis_dir);
        // Warm-up (connections, page cache, the log's preallocation); the SET also
        // writes the key the GET test reads.
        for port in [kv.port, redis.port] {
            benchmark(&cfg, port, "set", n / 10);
        }
        for (case, test) in [(&set_case, "set"), (&get_case, "get")] {
            if !cfg.selected(case) {
                continue;
            }
            let (mut demi, mut peer, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..cfg.reps {
                // Back to back, alternating who goes first: the two runs of a round
                // see the same machine, so their ratio is the figure to trust.
                let (d, r) = if round % 2 == 0 {
                    let d = benchmark(&cfg, kv.port, test, n);
                    (d, benchmark(&cfg, redis.port, test, n))
                } else {
                    let r = benchmark(&cfg, redis.port, test, n);
                    (benchmark(&cfg, kv.port, test, n), r)
                };
                demi.push(d);
                peer.push(r);
                ratios.push(d / r);
            }
            println!(
                "{case}: demi {:.0} req/s, redis {:.0} req/s, ratio_vs_redis {:.2}",
                median(demi),
                median(peer),
                median(ratios)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    ExitCode::SUCCESS
}
