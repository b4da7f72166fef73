//! # http — an axum service on demi
//!
//! An HTTP/1.1 service written with axum, served by hyper on demi's runtime over
//! whichever libOS is chosen. Moving it from tokio took three lines, marked
//! `// demi:` below (see docs/migrating-from-tokio.md): the main attribute, the
//! listener, and the serve call.
//!
//! ```text
//! cargo run --release --features hyper --example http -- --addr 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! ```
//!
//! Flags: `--libos NAME` (default `DEMI_LIBOS`, else posix), `--addr IP:PORT`
//! (default 127.0.0.1:8080; on a user-level stack, 0.0.0.0:8080 on its own
//! address), plus the device flags of examples/echo (`--iface`, `--ip`, `--link`,
//! `--pcap`, `--faults`) as `DEMI_*` variables.
//!
//! Routes: `GET /` (plain text), `GET /hello/{name}`, `POST /echo` (the body
//! back), `GET /json` (a small JSON document), `GET /stats` (requests served).
//! It prints `http: serving on <addr> (libos=<name>)` once it listens.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const USAGE: &str = "usage: http [--libos NAME] [--addr IP:PORT] [--iface NAME] [--ip A.B.C.D/P] [--link NAME] [--pcap PATH] [--faults SPEC]";

#[derive(Clone, Default)]
struct Stats {
    requests: Arc<AtomicU64>,
}

fn app() -> Router {
    let stats = Stats::default();
    Router::new()
        .route("/", get(|State(s): State<Stats>| async move {
            s.requests.fetch_add(1, Ordering::Relaxed);
            "Hello from demi\n"
        }))
        .route("/hello/{name}", get(|Path(name): Path<String>| async move { format!("Hello, {name}!\n") }))
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .route("/json", get(|| async { Json(serde_json_like()) }))
        .route("/stats", get(|State(s): State<Stats>| async move { format!("requests={}\n", s.requests.load(Ordering::Relaxed)) }))
        .with_state(stats)
}

/// A small JSON document (axum serialises it).
fn serde_json_like() -> std::collections::BTreeMap<&'static str, &'static str> {
    [("runtime", "demi"), ("protocol", "HTTP/1.1")].into_iter().collect()
}

struct Options {
    libos: Option<String>,
    addr: Option<SocketAddr>,
    device: Vec<(&'static str, String)>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options { libos: None, addr: None, device: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--libos" => opts.libos = Some(value()?),
            "--addr" => {
                let v = value()?;
                opts.addr = Some(v.parse().map_err(|_| format!("--addr expects IP:PORT, got `{v}`"))?);
            }
            "--iface" => opts.device.push(("DEMI_IFACE", value()?)),
            "--ip" => opts.device.push(("DEMI_IP", value()?)),
            "--link" => opts.device.push(("DEMI_LINK", value()?)),
            "--pcap" => opts.device.push(("DEMI_PCAP", value()?)),
            "--faults" => opts.device.push(("DEMI_FAULTS", value()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(opts)
}

fn open_libos(opts: &Options) -> Result<demi::LibOs, demi::ConfigError> {
    let mut cfg = demi::Config::from_env()?;
    if let Some(name) = &opts.libos {
        cfg.libos = demi::LibOsKind::parse(name)?;
    }
    for (var, value) in &opts.device {
        cfg = cfg.with_var(var, value)?;
    }
    demi::LibOs::new(&cfg)
}

#[demi::main] // demi: was #[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("http: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let libos = match open_libos(&opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http: starting the libOS failed: {e}");
            return ExitCode::from(1);
        }
    };
    let default = if libos.kind() == demi::LibOsKind::Posix { "127.0.0.1:8080" } else { "0.0.0.0:8080" };
    let addr = opts.addr.unwrap_or_else(|| default.parse().expect("constant address parses"));
    // demi: was `tokio::net::TcpListener::bind(addr).await`
    let listener = match demi::net::TcpListener::bind_on(&libos, addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let shown = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string());
    println!("http: serving on {shown} (libos={})", libos.name());
    // demi: was `axum::serve(listener, app()).await`
    match demi::net::serve(listener, app()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http: {e}");
            ExitCode::from(1)
        }
    }
}
