//! Cross-process benchmark: demi's stack over the shared-memory device against the
//! kernel's loopback, two processes each.
//!
//! Run with `cargo bench --bench shm`; `DEMI_BENCH_QUICK=1` shrinks the counts (the
//! CI smoke check; its figures mean little). The bench re-executes itself as the
//! server process (`DEMI_SHM_BENCH_SERVER=<case>`).
//!
//! Cases, one line each:
//! - `tcp_echo_rtt_64B_xproc`: one TCP connection, 64-byte messages, one in
//!   flight; median round trip. demi: `LibOs` on `shm` in both processes (server
//!   host 0, client host 1), the server echoes each element it pops. tokio:
//!   `current_thread` runtimes, `TcpStream` on 127.0.0.1 with `TCP_NODELAY`.
//!   kernel_busypoll: std `TcpStream`s in non-blocking mode, both sides spinning on
//!   `read` (no epoll, no sleeping). Line:
//!   `<case>: demi <p50> ns, tokio <p50> ns, kernel_busypoll <p50> ns, ratio_vs_tokio <x>, ratio_vs_busypoll <x>`
//! - `udp_64B_pps_xproc`: one sender process pushes 64-byte datagrams as fast as
//!   its queue takes them for a fixed time; the receiver counts what arrives; the
//!   figure is datagrams received per second. demi over `shm` against std
//!   `UdpSocket`s on kernel loopback (blocking `send_to` / `recv_from`). Line:
//!   `<case>: demi <v> pps, kernel <v> pps, ratio_vs_kernel <x>`.
//!
//! Both processes spin (demi's shm device is poll-mode). With two or more CPUs the
//! client process is pinned to CPU 0 and the server process to CPU 1, for every
//! side alike, so a run does not depend on where the scheduler puts them; other
//! load on the machine still skews every side alike.
//! Ratios > 1 mean demi is better.

use demi::{Config, Domain, LibOs, LibOsKind, Sga, SocketType};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: usize = 64;
const ROLE: &str = "DEMI_SHM_BENCH_SERVER";

fn quick() -> bool {
    std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn link_name() -> String {
    format!("bench-{}", std::process::id())
}

fn shm_config(host: u8, link: &str) -> Config {
    let mut c = Config::new(LibOsKind::Shm);
    c.net.host = host;
    c.net.link = link.to_string();
    c
}

/// A server process running `case`; prints "ready <port>" when it listens.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(case: &str, link: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, case)
            .env("DEMI_SHM_BENCH_LINK", link)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("server said {line:?}"));
        Server { child, port }
    }

    /// Waits for the server to finish and returns what it printed after "ready".
    fn finish(mut self) -> String {
        let mut rest = String::new();
        self.child.stdout.as_mut().unwrap().read_to_string(&mut rest).unwrap();
        self.child.wait().unwrap();
        rest
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- servers -------------------------------------------------------------------

fn serve(case: &str) {
    let link = std::env::var("DEMI_SHM_BENCH_LINK").unwrap();
    match case {
        "demi_tcp" => {
            let rt = demi::Runtime::new().unwrap();
            rt.block_on(async {
                let libos = LibOs::new(&shm_config(0, &link)).unwrap();
                let l = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
                libos.bind(l, "0.0.0.0:7000".parse().unwrap()).unwrap();
                libos.listen(l, 8).unwrap();
                println!("ready 7000");
                let (qd, _) = libos.accept(l).unwrap().await.unwrap().into_accepted().unwrap();
                loop {
                    let sga = match libos.pop(qd).unwrap().await.unwrap().into_sga() {
                        Ok(s) if !s.is_empty() => s,
                        _ => break,
                    };
                    if libos.push(qd, sga).unwrap().await.unwrap().ok().is_err() {
                        break;
                    }
                }
            });
        }
        "demi_udp" => {
            let rt = demi::Runtime::new().unwrap();
            rt.block_on(async {
                let libos = LibOs::new(&shm_config(0, &link)).unwrap();
                let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
                libos.bind(qd, "0.0.0.0:7001".parse().unwrap()).unwrap();
                println!("ready 7001");
                count_datagrams(|| async { libos.pop(qd).unwrap().await.unwrap().into_sga().map(|s| s.len()).unwrap_or(0) }).await;
            });
        }
        "tokio_tcp" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("ready {}", l.local_addr().unwrap().port());
                let (mut s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
        "busypoll_tcp" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            println!("ready {}", l.local_addr().unwrap().port());
            let (mut s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            s.set_nonblocking(true).unwrap();
            let mut buf = vec![0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => write_all_spinning(&mut s, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(_) => break,
                }
            }
        }
        "kernel_udp" => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            println!("ready {}", s.local_addr().unwrap().port());
            let mut buf = [0u8; 2048];
            let (n0, _) = s.recv_from(&mut buf).unwrap();
            let start = Instant::now();
            let mut count = 0u64;
            let mut last = start;
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = n0;
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                if n == 1 {
                    break;
                }
                count += 1;
                last = Instant::now();
            }
            println!("{count} {}", (last - start).as_nanos());
        }
        other => panic!("unknown server case {other}"),
    }
}

/// Counts datagrams from the first until a 1-byte end marker (or 2 s of silence);
/// prints "<count> <ns>".
async fn count_datagrams<F, Fut>(mut next: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    next().await;
    let start = Instant::now();
    let mut count = 0u64;
    let mut last = start;
    loop {
        match demi::time::timeout(Duration::from_secs(2), next()).await {
            Ok(1) | Err(_) => break,
            Ok(_) => {
                count += 1;
                last = Instant::now();
            }
        }
    }
    println!("{count} {}", (last - start).as_nanos());
}

fn write_all_spinning(s: &mut TcpStream, mut data: &[u8]) {
    while !data.is_empty() {
        match s.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

// ---- clients -------------------------------------------------------------------

fn demi_tcp_rtt(count: usize) -> f64 {
    let link = link_name();
    let server = Server::start("demi_tcp", &link);
    let rt = demi::Runtime::new().unwrap();
    let p50 = rt.block_on(async {
        let libos = LibOs::new(&shm_config(1, &link)).unwrap();
        let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
        let addr: SocketAddr = format!("198.18.0.1:{}", server.port).parse().unwrap();
        libos.connect(qd, addr).unwrap().await.unwrap().ok().unwrap();
        let msg = demi::Bytes::from(vec![7u8; SIZE]);
        let mut rtts = Vec::with_capacity(count);
        for i in 0..count + count / 10 {
            let t = Instant::now();
            libos.push(qd, Sga::from(msg.clone())).unwrap().await.unwrap().ok().unwrap();
            let mut got = 0;
            while got < SIZE {
                got += libos.pop(qd).unwrap().await.unwrap().into_sga().unwrap().len();
            }
            if i >= count / 10 {
                rtts.push(t.elapsed().as_nanos() as f64);
            }
        }
        libos.close(qd).unwrap();
        // Let the FIN reach the server before this process goes.
        demi::time::sleep(Duration::from_millis(20)).await;
        median(rtts)
    });
    drop(rt);
    server.finish();
    let _ = std::fs::remove_file(format!("/dev/shm/demi-{link}"));
    p50
}

fn tokio_tcp_rtt(count: usize) -> f64 {
    let server = Server::start("tokio_tcp", "");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let p50 = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
        s.set_nodelay(true).unwrap();
        let msg = [7u8; SIZE];
        let mut buf = [0u8; SIZE];
        let mut rtts = Vec::with_capacity(count);
        for i in 0..count + count / 10 {
            let t = Instant::now();
            s.write_all(&msg).await.unwrap();
            s.read_exact(&mut buf).await.unwrap();
            if i >= count / 10 {
                rtts.push(t.elapsed().as_nanos() as f64);
            }
        }
        median(rtts)
    });
    drop(rt);
    server.finish();
    p50
}

fn busypoll_tcp_rtt(count: usize) -> f64 {
    let server = Server::start("busypoll_tcp", "");
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(true).unwrap();
    let msg = [7u8; SIZE];
    let mut buf = [0u8; SIZE];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        write_all_spinning(&mut s, &msg);
        let mut got = 0;
        while got < SIZE {
            match s.read(&mut buf[got..]) {
                Ok(0) => panic!("server closed"),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => panic!("read: {e}"),
            }
        }
        if i >= count / 10 {
            rtts.push(t.elapsed().as_nanos() as f64);
        }
    }
    drop(s);
    server.finish();
    median(rtts)
}

/// Parses a receiver's "<count> <ns>" into datagrams per second.
fn pps(report: &str) -> f64 {
    let mut it = report.split_whitespace().map(|v| v.parse::<f64>().unwrap());
    let (count, ns) = (it.next().unwrap(), it.next().unwrap());
    count / (ns / 1e9).max(1e-9)
}

fn demi_udp_pps(secs: f64) -> f64 {
    let link = link_name();
    let server = Server::start("demi_udp", &link);
    let rt = demi::Runtime::new().unwrap();
    rt.block_on(async {
        let libos = LibOs::new(&shm_config(1, &link)).unwrap();
        let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
        let to: SocketAddr = format!("198.18.0.1:{}", server.port).parse().unwrap();
        let msg = demi::Bytes::from(vec![7u8; SIZE]);
        // Resolve the server's MAC first (the first datagram waits for ARP).
        libos.pushto(qd, Sga::from(msg.clone()), to).unwrap().await.unwrap().ok().unwrap();
        demi::time::sleep(Duration::from_millis(20)).await;
        let end = Instant::now() + Duration::from_secs_f64(secs);
        // Keep a window of pushes outstanding; a push completes when the device
        // has room for its frame (back-pressure), so the window paces the sender.
        let mut window = std::collections::VecDeque::new();
        while Instant::now() < end {
            while window.len() < 64 {
                window.push_back(libos.pushto(qd, Sga::from(msg.clone()), to).unwrap());
            }
            window.pop_front().unwrap().await.unwrap().ok().unwrap();
        }
        for qt in window {
            qt.await.ok().unwrap();
        }
        for _ in 0..3 {
            libos.pushto(qd, Sga::from(demi::Bytes::from_static(b"!")), to).unwrap().await.unwrap().ok().unwrap();
            demi::time::sleep(Duration::from_millis(5)).await;
        }
    });
    drop(rt);
    let report = server.finish();
    let _ = std::fs::remove_file(format!("/dev/shm/demi-{link}"));
    pps(&report)
}

fn kernel_udp_pps(secs: f64) -> f64 {
    let server = Server::start("kernel_udp", "");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", server.port);
    let msg = [7u8; SIZE];
    s.send_to(&msg, to).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        for _ in 0..64 {
            let _ = s.send_to(&msg, to);
        }
    }
    for _ in 0..3 {
        s.send_to(b"!", to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    pps(&server.finish())
}

/// Pins the calling process to `cpu` when the machine has two or more CPUs online
/// (counted with sysconf: the affinity a child inherits would say one).
fn pin_to(cpu: usize) {
    // SAFETY: sysconf takes no pointers.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity
    // get a pointer to it for the duration of the calls.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    if let Ok(case) = std::env::var(ROLE) {
        pin_to(1);
        serve(&case);
        return;
    }
    pin_to(0);
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let (count, secs, reps) = if quick() { (2_000, 0.2, 1) } else { (50_000, 1.0, 5) };
    println!(
        "shm bench: two processes; demi over the shm device vs the kernel's loopback; {reps} rep(s), median{}",
        if quick() { " [DEMI_BENCH_QUICK]" } else { "" }
    );
    if selected("tcp_echo_rtt_64B_xproc") {
        let (mut d, mut t, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            d.push(demi_tcp_rtt(count));
            t.push(tokio_tcp_rtt(count));
            b.push(busypoll_tcp_rtt(count));
        }
        let (d, t, b) = (median(d), median(t), median(b));
        println!(
            "tcp_echo_rtt_64B_xproc: demi {d:.0} ns, tokio {t:.0} ns, kernel_busypoll {b:.0} ns, ratio_vs_tokio {:.2}, ratio_vs_busypoll {:.2}",
            t / d,
            b / d
        );
    }
    if selected("udp_64B_pps_xproc") {
        let (mut d, mut k) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            d.push(demi_udp_pps(secs));
            k.push(kernel_udp_pps(secs));
        }
        let (d, k) = (median(d), median(k));
        println!("udp_64B_pps_xproc: demi {d:.0} pps, kernel {k:.0} pps, ratio_vs_kernel {:.2}", d / k);
    }
    let _ = std::io::stdout().flush();
}
