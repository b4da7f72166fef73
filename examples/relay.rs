//! # relay — a UDP request router built from queue combinators
//!
//! A relay with two front UDP ports routes each request to one of two backends by
//! its key and sends the backend's reply back to the client that asked. The relay's
//! whole data path is queue calls; it has no loop of its own:
//!
//! ```text
//!  front_a ─ filter(REQ…) ─┐
//!                           merge ─ sort(priority) ─ map(route) ══qconnect══▶ back
//!  front_b ─ filter(REQ…) ─┘                                                   │
//!  front_a ◀══qconnect══ map(unwrap) ◀────────────────────────────────────────┘
//! ```
//!
//! - `filter` with a declarative [`Predicate`] (the datagram starts with `REQ` and is
//!   not too long) drops junk. On a user-level stack (`--libos memory`) it runs in
//!   the libOS's driver over each received frame, before the stack queues the
//!   datagram; on `posix` it runs on the CPU.
//! - `merge` takes requests from both front ports, fairly.
//! - `sort` pops urgent requests (priority digit `9` first) ahead of others when a
//!   backlog forms.
//! - `map(route)` puts the client's address in front of the request (a new 6-byte
//!   segment: the request's own bytes are not copied) and addresses it to the
//!   backend that owns its key; `qconnect` pushes it out of `back`.
//! - `map(unwrap)` reads the client's address off each reply, strips it (a slice of
//!   the same buffer) and addresses the reply to the client; `qconnect` pushes it out
//!   of `front_a`.
//!
//! The backends (one per key class) and the clients are ordinary coroutines on
//! the same runtime; on `memory` they run on a second stack (198.18.0.2) joined to
//! the relay's (198.18.0.1) by an in-process link, on `posix` over loopback.
//!
//! ```text
//! cargo run --release --example relay -- --libos memory --count 20000 --clients 4
//! ```
//!
//! Every reply is checked (it comes from the backend that owns the key and carries
//! the request's bytes). The last line printed is
//!
//! ```text
//! relay: libos=<name> requests=<n> replies=<n> junk_dropped=<n> offloaded=<bool> p50_ns=<n> p99_ns=<n> reqs_per_s=<n>
//! ```

use demi::{Bytes, Config, Domain, LibOs, LibOsKind, Predicate, QDesc, Sga, SocketType};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: relay [--libos memory|posix] [--count N] [--clients N]\n";
/// How long a client waits for a reply before it gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

struct Opts {
    libos: LibOsKind,
    count: usize,
    clients: usize,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts { libos: LibOsKind::Memory, count: 20_000, clients: 4 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--libos" => o.libos = LibOsKind::parse(&val()?).map_err(|e| e.to_string())?,
            "--count" => o.count = val()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--clients" => o.clients = val()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if !matches!(o.libos, LibOsKind::Memory | LibOsKind::Posix) || o.clients == 0 {
        return Err("--libos must be memory or posix, --clients at least 1".into());
    }
    Ok(o)
}

fn err(what: &str) -> impl Fn(demi::QError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A UDP queue bound to `ip` on an ephemeral port, and its address.
fn udp(l: &LibOs, ip: Ipv4Addr) -> Result<(QDesc, SocketAddr), String> {
    let qd = l.socket(Domain::Ipv4, SocketType::Datagram).map_err(err("socket"))?;
    l.bind(qd, SocketAddr::new(IpAddr::V4(ip), 0)).map_err(err("bind"))?;
    Ok((qd, l.local_addr(qd).map_err(err("local_addr"))?))
}

/// 6 bytes: IPv4 address and port.
fn encode_addr(a: SocketAddr) -> Bytes {
    let mut v = Vec::with_capacity(6);
    if let IpAddr::V4(ip) = a.ip() {
        v.extend_from_slice(&ip.octets());
    }
    v.extend_from_slice(&a.port().to_be_bytes());
    Bytes::from(v)
}

fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let ip = Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?);
    Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([*b.get(4)?, *b.get(5)?])))
}

/// Requests: `REQ` + priority digit + key byte + body. Key < 128: backend 0.
fn request(priority: u8, key: u8, body: &[u8]) -> Sga {
    let mut v = b"REQ".to_vec();
    v.push(b'0' + priority);
    v.push(key);
    v.extend_from_slice(body);
    Sga::from(v)
}

/// The relay: every stage is a queue call. Returns the two request filters (for
/// their counters) and the front ports' addresses.
fn build_relay(l: &LibOs, ip: Ipv4Addr, backends: [SocketAddr; 2]) -> Result<([QDesc; 2], SocketAddr, SocketAddr), String> {
    let (front_a, addr_a) = udp(l, ip)?;
    let (front_b, addr_b) = udp(l, ip)?;
    let (back, _) = udp(l, ip)?;
    let is_request = || Predicate::bytes_at(0, *b"REQ").and(Predicate::len_between(5, 1400));
    let req_a = l.filter(front_a, is_request()).map_err(err("filter"))?;
    let req_b = l.filter(front_b, is_request()).map_err(err("filter"))?;
    let requests = l.merge(req_a, req_b).map_err(err("merge"))?;
    let urgent_first = l.sort(requests, |x: &Sga, y: &Sga| priority(x).cmp(&priority(y))).map_err(err("sort"))?;
    let routed = l
        .map(urgent_first, move |req: Sga| {
            let client = req.addr().expect("a datagram has its source");
            let key = byte_at(&req, 4);
            let mut out = Sga::from(encode_addr(client));
            for seg in req.segments() {
                out.push_segment(seg.clone());
            }
            out.with_addr(backends[usize::from(key >= 128)])
        })
        .map_err(err("map"))?;
    let replies = l
        .map(back, |rep: Sga| {
            let whole = rep.to_bytes(); // one segment from the network: no copy
            match decode_addr(&whole) {
                Some(client) => Sga::from(whole.slice(6..)).with_addr(client),
                // Not ours: sent back where it came from, marked.
                None => Sga::from(&b"bad reply"[..]).with_addr(rep.addr().expect("source")),
            }
        })
        .map_err(err("map"))?;
    let _up = l.qconnect(routed, back).map_err(err("qconnect"))?;
    let _down = l.qconnect(replies, front_a).map_err(err("qconnect"))?;
    Ok(([req_a, req_b], addr_a, addr_b))
}

fn byte_at(sga: &Sga, i: usize) -> u8 {
    let mut i = i;
    for s in sga.segments() {
        if i < s.len() {
            return s[i];
        }
        i -= s.len();
    }
    0
}

fn priority(sga: &Sga) -> u8 {
    byte_at(sga, 3)
}

/// A backend: echoes each request back with its name appended (a second segment).
async fn backend(l: LibOs, qd: QDesc, name: &'static [u8]) {
    while let Ok(qt) = l.pop(qd) {
        let Ok(sga) = qt.await.and_then(|r| r.into_sga()) else { break };
        let from = sga.addr().expect("source");
        let mut reply = Sga::from(sga.to_bytes());
        reply.push_segment(Bytes::from_static(name));
        let Ok(qt) = l.pushto(qd, reply, from) else { break };
        if qt.await.and_then(|r| r.ok()).is_err() {
            break;
        }
    }
}

/// A client: `n` requests in ping-pong, alternating front ports, a junk datagram
/// every 10 requests. Returns the round-trip times.
async fn client(l: LibOs, ip: Ipv4Addr, fronts: [SocketAddr; 2], id: usize, n: usize) -> Result<Vec<u64>, String> {
    let (qd, _) = udp(&l, ip)?;
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        if i % 10 == 0 {
            l.pushto(qd, Sga::from(&b"junk: not a request"[..]), fronts[i % 2]).map_err(err("pushto"))?.await.map_err(err("push"))?;
        }
        let key = ((i * 37 + id * 11) % 256) as u8;
        let body = format!("client {id} request {i}");
        let start = Instant::now();
        let qt = l.pushto(qd, request((i % 10) as u8, key, body.as_bytes()), fronts[i % 2]).map_err(err("pushto"))?;
        qt.await.and_then(|r| r.ok()).map_err(err("push"))?;
        let reply = demi::wait(l.pop(qd).map_err(err("pop"))?, Some(REPLY_TIMEOUT))
            .await
            .and_then(|r| r.into_sga())
            .map_err(err(&format!("client {id}: reply to request {i}")))?
            .to_vec();
        rtts.push(start.elapsed().as_nanos() as u64);
        let want_backend: &[u8] = if key >= 128 { b"@backend-1" } else { b"@backend-0" };
        let ok = reply.len() == 5 + body.len() + want_backend.len()
            && reply.starts_with(b"REQ")
            && reply[4] == key
            && &reply[5..5 + body.len()] == body.as_bytes()
            && reply.ends_with(want_backend);
        if !ok {
            return Err(format!("client {id}: request {i}: wrong reply {:?}", String::from_utf8_lossy(&reply)));
        }
    }
    l.close(qd).map_err(err("close"))?;
    Ok(rtts)
}

async fn run(o: &Opts) -> Result<(), String> {
    let (relay_os, peers_os, relay_ip, peers_ip) = match o.libos {
        LibOsKind::Posix => {
            let l = LibOs::posix().map_err(|e| e.to_string())?;
            (l.clone(), l, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)
        }
        _ => {
            let cfg = |host| {
                let mut c = Config::memory(host);
                c.net.link = "relay-example".into();
                c
            };
            let relay = LibOs::new(&cfg(0)).map_err(|e| e.to_string())?;
            let peers = LibOs::new(&cfg(1)).map_err(|e| e.to_string())?;
            (relay, peers, Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
        }
    };
    let (b0, b0addr) = udp(&peers_os, peers_ip)?;
    let (b1, b1addr) = udp(&peers_os, peers_ip)?;
    demi::spawn(backend(peers_os.clone(), b0, b"@backend-0"));
    demi::spawn(backend(peers_os.clone(), b1, b"@backend-1"));
    let (req_filters, fa, fb) = build_relay(&relay_os, relay_ip, [b0addr, b1addr])?;

    let per_client = o.count.div_ceil(o.clients);
    let start = Instant::now();
    let handles: Vec<_> = (0..o.clients)
        .map(|id| demi::spawn(client(peers_os.clone(), peers_ip, [fa, fb], id, per_client)))
        .collect();
    let mut rtts = Vec::new();
    for h in handles {
        rtts.extend(h.await.map_err(|e| format!("client task: {e}"))??);
    }
    let secs = start.elapsed().as_secs_f64();
    rtts.sort_unstable();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    let mut junk_dropped = 0;
    let mut offloaded = true;
    for f in req_filters {
        let st = relay_os.filter_stats(f).map_err(err("filter_stats"))?;
        junk_dropped += st.dropped + st.dropped_offload;
        offloaded &= st.offloaded;
    }
    println!(
        "relay: libos={} requests={} replies={} junk_dropped={} offloaded={} p50_ns={} p99_ns={} reqs_per_s={}",
        o.libos.name(),
        o.clients * per_client,
        rtts.len(),
        junk_dropped,
        offloaded,
        pct(0.50),
        pct(0.99),
        (rtts.len() as f64 / secs) as u64
    );
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("relay: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match demi::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let r = rt.block_on(run(&o));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e}");
            ExitCode::from(1)
        }
    }
}
