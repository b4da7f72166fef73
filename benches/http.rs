//! HTTP benchmark: the same axum service served by hyper on demi (POSIX libOS) and by
//! hyper on tokio's `current_thread` runtime, each in its own process, loaded by `wrk`
//! in the same run.
//!
//! Run with `cargo bench --features hyper --bench http` (needs `wrk`; scripts/test
//! installs it); `DEMI_BENCH_QUICK=1` shortens each load to one second (the CI
//! smoke check; its figures mean little). The bench re-executes itself as the server
//! (`DEMI_HTTP_BENCH_SERVER=demi|tokio`).
//!
//! Set-up: one server thread each (demi's runtime, or tokio `current_thread` with
//! `hyper_util::rt::TokioIo` and `hyper::server::conn::http1`), keep-alive on, the
//! route `GET /` answering 16 bytes of text; `wrk -t1 -c50 -d<secs>s`. Each server
//! runs on CPU 1 and wrk on CPU 0 (`taskset`, when present and the machine has two
//! cores or more): on two cores a server that lands on wrk's core measures the
//! scheduler. Both runtimes idle as they come by default (demi polls 50 µs after its
//! last work before it sleeps; tokio sleeps at once). Each round loads both servers
//! back to back, alternating which goes first. One line per case:
//! `http_get_keepalive_c50: demi <v> req/s, tokio <v> req/s, ratio_vs_tokio <x>`:
//! each side's median, and the median over rounds of `demi / tokio` within a round
//! (> 1: demi serves more); the load moves between rounds on a shared machine.

use axum::routing::get;
use axum::Router;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const ROLE: &str = "DEMI_HTTP_BENCH_SERVER";

fn app() -> Router {
    Router::new().route("/", get(|| async { "Hello from demi\n" }))
}

fn serve(role: &str) {
    match role {
        "demi" => {
            let rt = demi::Runtime::new().unwrap();
            rt.block_on(async {
                let libos = demi::LibOs::posix().unwrap();
                let listener = demi::net::TcpListener::bind_on(&libos, "127.0.0.1:0").unwrap();
                println!("ready {}", listener.local_addr().unwrap().port());
                demi::net::serve(listener, app()).await.unwrap();
            });
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("ready {}", listener.local_addr().unwrap().port());
                let local = tokio::task::LocalSet::new();
                local
                    .run_until(async move {
                        loop {
                            let (stream, _) = listener.accept().await.unwrap();
                            let svc = hyper_util::service::TowerToHyperService::new(app());
                            tokio::task::spawn_local(async move {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .timer(hyper_util::rt::TokioTimer::new())
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    })
                    .await;
            });
        }
        other => panic!("unknown server {other}"),
    }
}

struct Server(Child, u16);

/// Whether servers go on CPU 1 and wrk on CPU 0.
fn pinning() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `program` on `cpu` if pinning, else as it is.
fn on_cpu(pin: bool, cpu: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Server {
    fn start(role: &str, pin: bool) -> Server {
        let mut child = on_cpu(pin, "1", std::env::current_exe().unwrap())
            .env(ROLE, role)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("server said {line:?}"));
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Requests per second `wrk` measured against `role`'s server.
fn load(role: &str, secs: f64, pin: bool) -> f64 {
    let server = Server::start(role, pin);
    let url = format!("http://127.0.0.1:{}/", server.1);
    let duration = format!("{}s", secs.max(1.0) as u64);
    let out = on_cpu(pin, "0", "wrk").args(["-t1", "-c50", "-d", &duration, &url]).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(!text.contains("Non-2xx"), "{role}: errors under load:\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        serve(&role);
        return;
    }
    let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("http bench skipped: `wrk` is not installed (apt-get install wrk; scripts/test installs it)");
        return;
    }
    let (secs, reps) = if quick { (1.0, 1) } else { (3.0, 7) };
    let pin = pinning();
    println!(
        "http bench: axum on hyper, demi (POSIX libOS) vs tokio current_thread, wrk -t1 -c50, {secs} s x {reps} rounds; pinning: {}{}",
        if pin { "servers on CPU 1, wrk on CPU 0" } else { "none" },
        if quick { " [DEMI_BENCH_QUICK]" } else { "" }
    );
    let (mut d, mut t, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        let (a, b) = if i % 2 == 0 {
            let a = load("demi", secs, pin);
            (a, load("tokio", secs, pin))
        } else {
            let b = load("tokio", secs, pin);
            (load("demi", secs, pin), b)
        };
        d.push(a);
        t.push(b);
        ratios.push(a / b);
    }
    let (d, t, r) = (median(d), median(t), median(ratios));
    println!("http_get_keepalive_c50: demi {d:.0} req/s, tokio {t:.0} req/s, ratio_vs_tokio {r:.2}");
}
