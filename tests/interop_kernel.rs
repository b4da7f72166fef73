//! Interop with the Linux kernel's TCP/IP: demi's stack on the `raw` device
//! (AF_PACKET on one end of a veth pair) — or, with `DEMI_INTEROP_LIBOS=dpdk` and an
//! echo built with `--features dpdk`, on DPDK's af_packet driver on that end —
//! against the kernel on the other end, each in a network namespace this test
//! creates (addresses from 198.18.0.0/15) and deletes.
//!
//! Needs root, `ip`, `ethtool`, `ping`, `tcpdump`, `curl` and `python3`
//! (scripts/test installs them). It runs
//! the release build of `examples/echo` as the demi side, so scripts/test runs it
//! after building that, with `DEMI_INTEROP=1`:
//!
//! ```text
//! cargo build --release --example echo
//! DEMI_INTEROP=1 DEMI_ECHO_BIN=target/release/examples/echo cargo test --test interop_kernel
//! cargo build --release --features dpdk --example echo
//! DEMI_INTEROP=1 DEMI_INTEROP_LIBOS=dpdk DEMI_ECHO_BIN=target/release/examples/echo cargo test --test interop_kernel
//! ```
//!
//! Without `DEMI_INTEROP=1`, or without root, it prints why it skipped.
//!
//! Scenarios (one demi process each, in sequence, since two stacks with one
//! address on one wire would answer for each other):
//! - demi TCP server ↔ kernel clients: ICMP ping and ARP from the kernel, one
//!   connection moving 10 MB each way (echoed, checked by SHA-256) while 16 more
//!   run at once, each closed by the kernel;
//! - `examples/http` (axum on hyper on demi; `DEMI_HTTP_BIN`) ↔ kernel curl: a GET
//!   and a 1 MB POST echoed back;
//! - demi UDP server ↔ kernel client: 200 datagrams echoed, captured to a pcap
//!   file by the device wrapper;
//! - demi client → kernel TCP server: connect (demi resolves the kernel's MAC),
//!   10 MB each way checked by the client, close from demi's side; a short run
//!   captured with `--pcap`, read back by tcpdump, which must show ARP, the
//!   handshake and the FIN;
//! - demi client → a closed port: refused by the kernel's RST;
//! - 5% loss injected on demi's device, both directions: a server transfer (4 MB
//!   each way, plus 4 connections of 64 KiB) and a client ping-pong (200 × 4000 B;
//!   ping-pong loses tails, so it runs on retransmission timeouts and is kept
//!   short) still finish byte-exact.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KERNEL_IP: &str = "198.18.5.1";
const DEMI_IP: &str = "198.18.5.2";

/// Namespaces and a veth pair, deleted on drop.
struct Net {
    demi_ns: String,
    kernel_ns: String,
    demi_if: String,
}

fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let net = Net { demi_ns: format!("dmrd{id}"), kernel_ns: format!("dmrk{id}"), demi_if: format!("dmrd{id}") };
        let kernel_if = format!("dmrk{id}");
        run(&["ip", "netns", "add", &net.demi_ns]);
        run(&["ip", "netns", "add", &net.kernel_ns]);
        run(&["ip", "link", "add", &net.demi_if, "netns", &net.demi_ns, "type", "veth", "peer", "name", &kernel_if, "netns", &net.kernel_ns]);
        for ns in [&net.demi_ns, &net.kernel_ns] {
            run(&["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // The demi side has no address: demi's stack answers ARP itself.
        run(&["ip", "-n", &net.demi_ns, "link", "set", &net.demi_if, "up"]);
        run(&["ip", "-n", &net.kernel_ns, "addr", "add", &format!("{KERNEL_IP}/24"), "dev", &kernel_if]);
        run(&["ip", "-n", &net.kernel_ns, "link", "set", &kernel_if, "up"]);
        // Frames cross the veth as the kernel built them: no partial checksums, no
        // segmentation offload.
        run(&["ip", "netns", "exec", &net.kernel_ns, "ethtool", "-K", &kernel_if, "tx", "off", "tso", "off", "gso", "off"]);
        run(&["ip", "netns", "exec", &net.demi_ns, "ethtool", "-K", &net.demi_if, "tx", "off", "tso", "off", "gso", "off"]);
        net
    }

    /// The demi echo example in the demi namespace on the raw device.
    fn demi(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.demi_ns]).arg(echo_bin()).args(args);
        c.args(["--libos", &libos(), "--iface", &self.demi_if, "--ip", &format!("{DEMI_IP}/24")]);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    /// A command in the kernel's namespace.
    fn kernel(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.kernel_ns]).args(args);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.demi_ns, &self.kernel_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if libos() == "dpdk" {
            // EAL's runtime directory (with --no-shconf it holds little, if anything).
            let _ = std::fs::remove_dir_all("/var/run/dpdk");
        }
    }
}

/// The libOS under test: `raw` (default) or `dpdk`.
fn libos() -> String {
    std::env::var("DEMI_INTEROP_LIBOS").unwrap_or_else(|_| "raw".into())
}

fn echo_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DEMI_ECHO_BIN") {
        return p.into();
    }
    // target/<profile>/deps/this-test → target/<profile>/examples/echo
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("echo")
}

/// A demi server process, killed on drop.
struct Server(Child);

impl Server {
    /// Starts it and waits for its "serving" line.
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn demi server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the server prints a line").unwrap();
        assert!(line.contains("serving"), "unexpected first line: {line}");
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python(net: &Net, script: &str, args: &[&str]) -> String {
    let out = net.kernel(&["python3", "-c", script]).args(args).output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kernel-side script failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Kernel TCP clients: argv = host port big_bytes small_connections. One
/// connection sends `big_bytes` of a pattern while reading the echo, and checks
/// its SHA-256; the small ones each send 64 KiB the same way, all at once.
const TCP_CLIENTS: &str = r#"
import hashlib, socket, sys, threading
host, port, big, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
errors = []
def one(n, seed):
    data = bytes((i * 7 + seed) % 251 for i in range(65536)) * (n // 65536) + bytes(n % 65536)
    s = socket.create_connection((host, port), timeout=30)
    got = bytearray()
    def reader():
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got.extend(b)
            if len(got) >= n:
                break
    t = threading.Thread(target=reader); t.start()
    s.sendall(data)
    t.join()
    s.close()
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        errors.append(f"connection {seed}: {len(got)} of {n} bytes back, hash mismatch")
threads = [threading.Thread(target=one, args=(big, 0))]
threads += [threading.Thread(target=one, args=(65536, i + 1)) for i in range(small)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    print("\n".join(errors)); sys.exit(1)
print(f"ok {1 + small} connections")
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for i in range(n):
    msg = f"datagram {i} ".encode() * (1 + i % 50)
    s.sendto(msg, (host, port))
    got, addr = s.recvfrom(65536)
    assert got == msg and addr == (host, port), (i, got[:40], addr)
print(f"ok {n} datagrams")
"#;

/// A kernel TCP echo server on argv[1]:argv[2]; prints "ready", serves until killed.
const TCP_SERVER: &str = r#"
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(64)
print("ready", flush=True)
def serve(c):
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        c.sendall(b)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn should_run() -> bool {
    if std::env::var("DEMI_INTEROP").as_deref() != Ok("1") {
        eprintln!("interop_kernel skipped: set DEMI_INTEROP=1 (scripts/test does, after building the release echo example)");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("interop_kernel skipped: needs root (network namespaces and AF_PACKET)");
        return false;
    }
    for tool in ["ip", "ethtool", "python3", "ping", "tcpdump", "curl"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("interop_kernel skipped: `{tool}` is not installed (scripts/test installs it)");
            return false;
        }
    }
    assert!(echo_bin().exists(), "{} is missing: build it with `cargo build --release --example echo`", echo_bin().display());
    true
}

fn check_echo_line(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demi client failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.starts_with(&format!("echo: libos={} ", libos())), "unexpected last line: {last}");
}

/// Starts a kernel echo server and waits for it to listen.
fn kernel_server(net: &Net, port: u16) -> Server {
    let mut c = net.kernel(&["python3", "-u", "-c", TCP_SERVER, KERNEL_IP, &port.to_string()]);
    let mut child = c.stdout(Stdio::piped()).spawn().expect("python3 server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Server(child)
}

#[test]
fn demi_interoperates_with_the_kernel() {
    if !should_run() {
        return;
    }
    let started = Instant::now();
    let net = Net::new();

    // -- demi TCP server, kernel clients --------------------------------------------
    {
        let _server = Server::start(net.demi(&["server", "--addr", "0.0.0.0:7000"], &[]));
        let ping = net.kernel(&["ping", "-c", "3", "-i", "0.2", "-W", "2", DEMI_IP]).output().unwrap();
        let text = String::from_utf8_lossy(&ping.stdout);
        assert!(ping.status.success() && text.contains("3 received"), "ping: {text}");
        let out = python(&net, TCP_CLIENTS, &[DEMI_IP, "7000", &(10 << 20).to_string(), "16"]);
        assert!(out.contains("ok 17 connections"), "{out}");
        // The kernel learned demi's MAC by ARP.
        let neigh = net.kernel(&["ip", "neigh", "show", DEMI_IP]).output().unwrap();
        let neigh = String::from_utf8_lossy(&neigh.stdout);
        assert!(neigh.contains("lladdr"), "no ARP entry for demi: {neigh}");
    }

    eprintln!("interop_kernel: tcp server scenario done at {:.1?}", started.elapsed());
    // -- examples/http (axum on hyper on demi), kernel curl ---------------------------
    match std::env::var_os("DEMI_HTTP_BIN") {
        None => eprintln!("interop_kernel: http scenario skipped: DEMI_HTTP_BIN not set (scripts/test sets it)"),
        Some(bin) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &net.demi_ns]).arg(bin);
            c.args(["--libos", &libos(), "--iface", &net.demi_if, "--ip", &format!("{DEMI_IP}/24"), "--addr", "0.0.0.0:8080"]);
            let _server = Server::start(c);
            let url = format!("http://{DEMI_IP}:8080");
            let out = net.kernel(&["curl", "-sf", "--max-time", "10", &format!("{url}/")]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello from demi\n", "curl GET /: {out:?}");
            let body = std::env::temp_dir().join(format!("demi-interop-body-{}", std::process::id()));
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&body, &data).unwrap();
            let out = net
                .kernel(&["curl", "-sf", "--max-time", "20", "-X", "POST", "--data-binary", &format!("@{}", body.display()), &format!("{url}/echo")])
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&body);
            assert!(out.status.success() && out.stdout == data, "curl POST /echo: {} bytes back, status {}", out.stdout.len(), out.status);
            eprintln!("interop_kernel: kernel curl against examples/http on {}: GET and a 1 MB echo", libos());
        }
    }

    // -- demi UDP server --------------------------------------------------------------
    {
        let pcap = std::env::temp_dir().join(format!("demi-interop-{}.pcap", std::process::id()));
        let server = Server::start(net.demi(&["server", "--udp", "--addr", "0.0.0.0:7001", "--pcap", pcap.to_str().unwrap()], &[]));
        let out = python(&net, UDP_CLIENT, &[DEMI_IP, "7001", "200"]);
        assert!(out.contains("ok 200 datagrams"), "{out}");
        drop(server);
        // The capture holds both directions: 200 datagrams each way and ARP.
        let file = std::fs::read(&pcap).unwrap();
        let _ = std::fs::remove_file(&pcap);
        assert_eq!(&file[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
        let (mut off, mut frames) = (24, 0);
        while off + 16 <= file.len() {
            off += 16 + u32::from_le_bytes(file[off + 8..off + 12].try_into().unwrap()) as usize;
            frames += 1;
        }
        assert!(frames >= 400, "{frames} frames captured");
    }

    eprintln!("interop_kernel: udp server scenario done at {:.1?}", started.elapsed());
    // -- demi client, kernel server; and a refused connection ----------------------
    {
        let _server = kernel_server(&net, 9000);
        let out = net
            .demi(&["client", "--addr", &format!("{KERNEL_IP}:9000"), "--size", "10000", "--count", "1000", "--warmup", "48"], &[])
            .output()
            .unwrap();
        check_echo_line(&out);
        // A short run captured to a pcap file: tcpdump must read it and show the
        // handshake and the close.
        let pcap = std::env::temp_dir().join(format!("demi-interop-tcp-{}.pcap", std::process::id()));
        let addr = format!("{KERNEL_IP}:9000");
        let out = net
            .demi(&["client", "--addr", &addr, "--count", "10", "--warmup", "0", "--pcap", pcap.to_str().unwrap()], &[])
            .output()
            .unwrap();
        check_echo_line(&out);
        let dump = Command::new("tcpdump").args(["-nn", "-r"]).arg(&pcap).output().expect("tcpdump");
        let _ = std::fs::remove_file(&pcap);
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(dump.status.success(), "tcpdump could not read demi's capture: {}", String::from_utf8_lossy(&dump.stderr));
        let syn = format!("{DEMI_IP}.");
        let lines: Vec<&str> = text.lines().collect();
        let first_tcp = lines.iter().position(|l| l.contains("Flags [S]") && l.contains(&syn)).expect("a SYN from demi");
        assert!(lines[first_tcp + 1..].iter().any(|l| l.contains("Flags [S.]")), "no SYN-ACK:\n{text}");
        assert!(lines.iter().any(|l| l.contains("Flags [F.]")), "no FIN:\n{text}");
        assert!(lines.iter().any(|l| l.contains("ARP, Request") || l.contains("ARP, Reply")), "no ARP:\n{text}");
        eprintln!("interop_kernel: tcpdump reads demi's capture ({} lines) with the handshake", lines.len());

        let out = net.demi(&["client", "--addr", &format!("{KERNEL_IP}:9001"), "--count", "1"], &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "a closed port must fail the client: {stderr}");
        assert!(stderr.contains("connection refused"), "{stderr}");
    }

    eprintln!("interop_kernel: demi client scenario done at {:.1?}", started.elapsed());
    // -- 5% loss on demi's device ---------------------------------------------------
    {
        let faults = ["--faults", "loss=0.05,seed=11"];
        let mut args = vec!["server", "--addr", "0.0.0.0:7002"];
        args.extend(faults);
        let _server = Server::start(net.demi(&args, &[]));
        let out = python(&net, TCP_CLIENTS, &[DEMI_IP, "7002", &(4 << 20).to_string(), "4"]);
        assert!(out.contains("ok 5 connections"), "{out}");
    }
    eprintln!("interop_kernel: loss, demi server done at {:.1?}", started.elapsed());
    {
        let _server = kernel_server(&net, 9002);
        let addr = format!("{KERNEL_IP}:9002");
        let mut args = vec!["client", "--addr", &addr, "--size", "4000", "--count", "200", "--warmup", "10"];
        args.extend(["--faults", "loss=0.05,seed=12"]);
        let out = net.demi(&args, &[]).output().unwrap();
        check_echo_line(&out);
    }
    eprintln!("interop_kernel: all scenarios passed on {} in {:.1?}", libos(), started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(600));
}
