//! The DPDK device against the Linux kernel as the peer (needs `--features dpdk`,
//! root, `ip`, `python3`; `scripts/dpdk-test` runs it).
//!
//! Each scenario makes a network namespace (names start with `ddk`), starts a DPDK
//! virtual device in it, and runs demi's stack over it in a child process (EAL
//! starts once per process): this test binary again, running only
//! [`child_process_entry`] with the scenario in its environment. The Linux kernel
//! in the namespace is the peer: it pings demi (ARP both ways, ICMP), sends UDP
//! datagrams to demi's echo, and Python clients send 10 MiB on each of 4
//! connections at once to demi's TCP echo server; the SHA-256 of what the kernel
//! sent must equal the SHA-256 demi computed of what it received, and of what came
//! back to the kernel. Then demi is the client: a connection to a closed port of the
//! kernel is refused (the kernel's RST), and 1 MiB sent to a kernel server arrives
//! exactly (the server answers its SHA-256 and closes first).
//!
//! - `net_tap`: the tap PMD makes a tap interface in the namespace; its kernel side
//!   is the peer host.
//! - `net_af_packet`: demi on one end of a veth pair (no IP address there), the
//!   kernel on the other, transmit checksum offload off on the kernel's end.
//! - errors: bad EAL arguments, no port, another EAL configuration, a missing port,
//!   a port opened twice, a port opened again after close (`net_ring`, no namespace).
//! - ring pair: two stacks over two DPDK ports joined back to back in memory.
//!
//! With `DEMI_DPDK_TEST_MEMORY=hugepages` the namespace scenarios run EAL on
//! hugepages (`--in-memory`) instead of `--no-huge`.
//!
//! When something needed is missing, a scenario prints `skipped: <why>` and passes.

use demi_libos::device::dpdk::{DpdkConfig, DpdkDevice, DpdkError};
use demi_libos::device::Device;
use demi_libos::{Config, Domain, LibOs, LibOsKind, QDesc, QError, QToken, QValue, Sga, SocketType};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "DEMI_DPDK_TEST_CHILD";
/// Bytes each way on each of the kernel's connections to demi's echo.
const TCP_BYTES: usize = 10 << 20;
/// The kernel's connections to demi's echo, at once.
const CONNS: usize = 4;
/// Bytes demi's client sends to the kernel's server.
const CLIENT_BYTES: usize = 1 << 20;
const PORT: u16 = 7;
/// A bound on every scenario; never reached when the device works.
const GUARD: Duration = Duration::from_secs(120);

/// Scenarios run one at a time: each child busy-polls a core.
static SERIAL: Mutex<()> = Mutex::new(());

// ---- the parent side ---------------------------------------------------------------

fn skip_reason(needs_tun: bool) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (DPDK virtual devices and network namespaces need root)".into());
    }
    for (cmd, arg) in [("ip", "-V"), ("python3", "-V")] {
        let ok = Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{cmd}` is not installed"));
        }
    }
    if hugepages() {
        let reserved = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
        if reserved.trim().parse::<u32>().unwrap_or(0) == 0 {
            return Some("DEMI_DPDK_TEST_MEMORY=hugepages but no hugepages are reserved (echo 128 > /proc/sys/vm/nr_hugepages)".into());
        }
    }
    if needs_tun && !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (the tap PMD needs it)".into());
    }
    None
}

/// Whether the scenarios run on hugepages (`DEMI_DPDK_TEST_MEMORY=hugepages`).
fn hugepages() -> bool {
    std::env::var("DEMI_DPDK_TEST_MEMORY").is_ok_and(|m| m == "hugepages")
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// EAL's runtime directory for `--file-prefix=NAME` (`/var/run/dpdk/NAME`), removed
/// on drop, and `/var/run/dpdk` with it when nothing else is left there.
struct RunDir(String);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.0));
        let _ = std::fs::remove_dir("/var/run/dpdk");
    }
}

/// A namespace and the DPDK runtime directory of one scenario, removed on drop.
struct Scene {
    ns: String,
    prefix: String,
    _dir: RunDir,
}

impl Scene {
    fn new(tag: &str) -> Scene {
        let pid = std::process::id();
        let name = format!("ddk{pid}{tag}");
        let scene = Scene { ns: name.clone(), prefix: name.clone(), _dir: RunDir(name) };
        let _ = Command::new("ip").args(["netns", "del", &scene.ns]).stderr(Stdio::null()).status();
        run("ip", &["netns", "add", &scene.ns]);
        scene.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
        scene.exec(&["ip", "link", "set", "lo", "up"]);
        scene
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.ns];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// EAL arguments for `vdev`: without hugepages, or on hugepages (`--in-memory`,
    /// no files) when `DEMI_DPDK_TEST_MEMORY=hugepages`.
    fn eal_args(&self, vdev: &str) -> String {
        let memory = if hugepages() { "--in-memory" } else { "--no-huge -m 256 --no-shconf" };
        format!("{memory} --no-pci --no-telemetry -l 0 --file-prefix={} --vdev={vdev}", self.prefix)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The child process, its stdout lines as they come, and a kill on drop.
struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ChildProc {
    fn spawn(ns: Option<&str>, scenario: &str, eal_args: &str, ip: &str) -> ChildProc {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, scenario)
            .env("DEMI_DPDK_TEST_EAL", eal_args)
            .env("DEMI_DPDK_TEST_IP", ip)
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the child");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProc { child, lines, seen: Vec::new() }
    }

    /// The next line with `prefix`, from there (other lines are kept for the report).
    fn expect(&mut self, prefix: &str, deadline: Instant) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // EAL's C stdio may leave a partial line before ours (its usage text).
                Ok(line) if line.contains(prefix) => return line[line.find(prefix).unwrap()..].to_string(),
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("child: no `{prefix}` line in time; it printed: {:#?}", self.seen),
            }
        }
    }

    fn wait(mut self, deadline: Instant) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "child failed ({status}); it printed {:#?}", self.seen);
                return;
            }
            assert!(Instant::now() < deadline, "child did not exit in time; it printed {:#?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `key=` in a `k=v k=v` line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in `{line}`"))
}

/// ICMP echo from the kernel: `count` requests, each reply checked.
const PING: &str = r#"
import os, socket, struct, sys, time
dst, count = sys.argv[1], int(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
ident, ok, rtts = os.getpid() & 0xffff, 0, []
for seq in range(1, count + 1):
    payload = os.urandom(56)
    head = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
    pkt = struct.pack('!BBHHH', 8, 0, csum(head + payload), ident, seq) + payload
    t = time.monotonic()
    s.sendto(pkt, (dst, 0))
    try:
        while True:
            data, addr = s.recvfrom(4096)
            icmp = data[(data[0] & 15) * 4:]
            if addr[0] == dst and icmp[0] == 0 and struct.unpack('!HH', icmp[4:8]) == (ident, seq):
                if icmp[8:] == payload and csum(icmp) == 0:
                    ok += 1
                    rtts.append((time.monotonic() - t) * 1e6)
                break
    except socket.timeout:
        pass
print('ping ok=%d count=%d min_rtt_us=%d' % (ok, count, min(rtts) if rtts else -1))
"#;

/// UDP datagrams to demi's echo; each must come back unchanged.
const UDP: &str = r#"
import os, socket, sys
dst, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
ok = 0
for i in range(count):
    msg = os.urandom(1 + i * 97 % 1400)
    s.sendto(msg, (dst, 7))
    try:
        data, addr = s.recvfrom(2048)
        ok += data == msg
    except socket.timeout:
        pass
print('udp ok=%d count=%d' % (ok, count))
"#;

/// A command to the child: one UDP datagram to its port 7 (`quit`, `client …`).
const SEND: &str = r#"
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), (sys.argv[1], 7))
"#;

/// TCP clients: `k` connections at once, each sending `n` pseudo-random bytes to
/// demi's echo and reading them all back; one line per connection.
const TCP: &str = r#"
import hashlib, random, socket, sys, threading, time
dst, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = [None] * k
def conn(i):
    data = random.Random(i).randbytes(n)
    s = socket.create_connection((dst, 7), timeout=60)
    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    th = threading.Thread(target=send)
    th.start()
    got = bytearray()
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    th.join()
    s.close()
    out[i] = 'tcp conn=%d sent=%d sent_sha=%s got=%d got_sha=%s' % (i, n, hashlib.sha256(data).hexdigest(), len(got),
             hashlib.sha256(bytes(got)).hexdigest())
t0 = time.monotonic()
ths = [threading.Thread(target=conn, args=(i,)) for i in range(k)]
for t in ths: t.start()
for t in ths: t.join()
secs = time.monotonic() - t0
for line in out: print(line)
print('tcp total_mbps=%.1f' % (2 * n * k * 8 / secs / 1e6))
"#;

/// A kernel TCP server for demi's client: reads `n` bytes, answers their SHA-256 in
/// hex, closes.
const SERVER: &str = r#"
import hashlib, socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((ip, port))
l.listen(1)
l.settimeout(60)
print('listening', flush=True)
c, _ = l.accept()
c.settimeout(60)
h, got = hashlib.sha256(), 0
while got < n:
    chunk = c.recv(1 << 16)
    if not chunk:
        break
    h.update(chunk)
    got += len(chunk)
c.sendall(h.hexdigest().encode())
c.close()
print('server got=%d sha=%s' % (got, h.hexdigest()), flush=True)
"#;

fn python(scene: &Scene, script: &str, args: &[&str]) -> String {
    let mut all = vec!["python3", "-c", script];
    all.extend_from_slice(args);
    let out = scene.exec(&all);
    out.lines().last().unwrap_or_default().to_string()
}

/// Ping, UDP echo and a 4 MiB TCP echo from the kernel to demi over `vdev`.
fn kernel_peer_scenario(tag: &str, pmd: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = skip_reason(pmd == "tap") {
        eprintln!("skipped: DPDK {pmd} scenario: {why}");
        return;
    }
    let deadline = Instant::now() + GUARD;
    let scene = Scene::new(tag);
    let (kernel_ip, demi_ip) = match pmd {
        "tap" => ("198.18.100.1", "198.18.100.2"),
        _ => ("198.18.101.1", "198.18.101.2"),
    };
    let pid = std::process::id();
    let (vdev, kernel_if) = match pmd {
        "tap" => {
            let tap = format!("ddkt{pid}");
            (format!("net_tap0,iface={tap}"), tap)
        }
        _ => {
            let (a, b) = (format!("ddka{pid}"), format!("ddkb{pid}"));
            scene.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            scene.exec(&["ip", "link", "set", &a, "up"]);
            (format!("net_af_packet0,iface={a}"), b)
        }
    };
    let mut child = ChildProc::spawn(Some(&scene.ns), "echo", &scene.eal_args(&vdev), &format!("{demi_ip}/24"));
    let ready = child.expect("ready", deadline);
    eprintln!("{pmd}: {ready}");
    // The kernel's side: the tap interface the PMD made, or the veth's other end.
    scene.exec(&["ip", "addr", "add", &format!("{kernel_ip}/24"), "dev", &kernel_if]);
    scene.exec(&["ip", "link", "set", &kernel_if, "up"]);
    if pmd != "tap" {
        // The kernel would otherwise send partial checksums and GSO-sized frames.
        scene.exec(&["ethtool", "-K", &kernel_if, "tx", "off", "tso", "off", "gso", "off"]);
    }

    let ping = python(&scene, PING, &[demi_ip, "5"]);
    eprintln!("{pmd}: {ping}");
    assert_eq!(field(&ping, "ok"), "5", "every ping answered: {ping}");
    let neigh = scene.exec(&["ip", "neigh", "show", demi_ip]);
    assert!(neigh.contains(field(&ready, "mac")), "the kernel resolved demi's MAC by ARP: {neigh}");

    let udp = python(&scene, UDP, &[demi_ip, "20"]);
    eprintln!("{pmd}: {udp}");
    assert_eq!(field(&udp, "ok"), "20", "every datagram echoed: {udp}");

    // The kernel's clients: CONNS connections at once, TCP_BYTES each way each.
    let out = scene.exec(&["python3", "-c", TCP, demi_ip, &TCP_BYTES.to_string(), &CONNS.to_string()]);
    let mut kernel_side: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        eprintln!("{pmd}: {line}");
        if line.starts_with("tcp conn=") {
            assert_eq!(field(line, "got"), TCP_BYTES.to_string(), "all bytes came back: {line}");
            assert_eq!(field(line, "got_sha"), field(line, "sent_sha"), "demi -> kernel byte-exact: {line}");
            kernel_side.push((field(line, "sent_sha").to_string(), field(line, "got_sha").to_string()));
        }
    }
    assert_eq!(kernel_side.len(), CONNS, "every connection reported");
    let mut demi_side: Vec<String> = (0..CONNS)
        .map(|_| {
            let line = child.expect("tcp received", deadline);
            eprintln!("{pmd}: demi {line}");
            assert_eq!(field(&line, "received"), TCP_BYTES.to_string());
            field(&line, "sha").to_string()
        })
        .collect();
    let mut sent: Vec<String> = kernel_side.into_iter().map(|k| k.0).collect();
    demi_side.sort();
    sent.sort();
    assert_eq!(demi_side, sent, "kernel -> demi byte-exact on every connection");

    // demi as the client: the kernel's server, and a port nobody listens on.
    let port = 8000;
    let mut server = Command::new("ip")
        .args(["netns", "exec", &scene.ns, "python3", "-c", SERVER, kernel_ip, &port.to_string(), &CLIENT_BYTES.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    server_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    let command = format!("client {kernel_ip}:{port} {kernel_ip}:{}", port + 1);
    scene.exec(&["python3", "-c", SEND, demi_ip, &command]);
    let refused = child.expect("refused", deadline);
    eprintln!("{pmd}: demi {refused}");
    let client = child.expect("client", deadline);
    eprintln!("{pmd}: demi {client}");
    line.clear();
    server_out.read_line(&mut line).unwrap();
    eprintln!("{pmd}: kernel {}", line.trim());
    assert!(server.wait().unwrap().success());
    assert_eq!(field(&line, "got"), CLIENT_BYTES.to_string());
    assert_eq!(field(&client, "reply"), field(&client, "sha"), "the kernel got demi's bytes exactly");
    assert_eq!(field(&line, "sha"), field(&client, "sha"));

    scene.exec(&["python3", "-c", SEND, demi_ip, "quit"]);
    let stats = child.expect("stats", deadline);
    eprintln!("{pmd}: {stats}");
    child.wait(deadline);
}

#[test]
fn tap_pmd_answers_the_kernels_ping_udp_and_tcp() {
    kernel_peer_scenario("t", "tap");
}

#[test]
fn af_packet_pmd_answers_the_kernels_ping_udp_and_tcp() {
    if Command::new("ethtool").arg("--version").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipped: DPDK af_packet scenario: `ethtool` is not installed (apt-get install ethtool)");
        return;
    }
    kernel_peer_scenario("a", "af_packet");
}

#[test]
fn open_errors_are_typed_and_say_what_to_do() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = skip_reason(false) {
        eprintln!("skipped: DPDK error scenario: {why}");
        return;
    }
    let prefix = format!("ddk{}e", std::process::id());
    let _dir = RunDir(prefix.clone());
    let eal = format!("--no-huge -m 128 --no-shconf --no-pci --no-telemetry -l 0 --file-prefix={prefix}");
    for scenario in ["bad_args", "no_ports", "reopen"] {
        let mut child = ChildProc::spawn(None, scenario, &eal, "198.18.102.2/24");
        let deadline = Instant::now() + GUARD;
        let done = child.expect("errors", deadline);
        eprintln!("{scenario}: {done}");
        child.wait(deadline);
    }
}

#[test]
fn ring_pair_carries_tcp_between_two_stacks() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = skip_reason(false) {
        eprintln!("skipped: DPDK ring scenario: {why}");
        return;
    }
    let prefix = format!("ddk{}r", std::process::id());
    let _dir = RunDir(prefix.clone());
    let eal = format!("--no-huge -m 256 --no-shconf --no-pci --no-telemetry -l 0 --file-prefix={prefix}");
    let mut child = ChildProc::spawn(None, "ring", &eal, "198.18.103.1/24");
    let deadline = Instant::now() + GUARD;
    let ready = child.expect("ready", deadline);
    eprintln!("ring: {ready}");
    let done = child.expect("tcp", deadline);
    eprintln!("ring: {done}");
    assert_eq!(field(&done, "sent_sha"), field(&done, "echoed_sha"), "{done}");
    assert_eq!(field(&done, "sent_sha"), field(&done, "server_sha"), "{done}");
    child.wait(deadline);
}

// ---- the child side ----------------------------------------------------------------

/// The child process of a scenario; does nothing in an ordinary test run.
#[test]
fn child_process_entry() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else { return };
    let eal = DpdkConfig::parse_eal_args(&std::env::var("DEMI_DPDK_TEST_EAL").unwrap());
    let ip = std::env::var("DEMI_DPDK_TEST_IP").unwrap();
    match scenario.as_str() {
        "echo" => child_echo(eal, &ip),
        "bad_args" => child_bad_args(eal),
        "no_ports" => child_no_ports(eal),
        "ring" => child_ring(eal),
        "reopen" => child_reopen(eal),
        other => panic!("unknown scenario {other}"),
    }
}

fn child_bad_args(eal: Vec<String>) {
    // Bad arguments: EAL rejects them, and says so again on every later open.
    let mut bad = eal.clone();
    bad.push("--in-memory".into());
    let e = DpdkDevice::open(&DpdkConfig::new(bad)).unwrap_err();
    assert!(matches!(e, DpdkError::Eal { errno: libc::EINVAL, .. }), "{e:?}");
    assert!(e.to_string().contains("--no-huge` and `--in-memory"), "{e}");
    let again = DpdkDevice::open(&DpdkConfig::new(eal)).unwrap_err();
    assert_eq!(again, e);
    assert!(again.to_string().contains("start a new process"), "{again}");
    println!("errors ok: {e}");
}

fn child_no_ports(eal: Vec<String>) {
    // No device given: no port.
    let e = DpdkDevice::open(&DpdkConfig::new(eal.clone())).unwrap_err();
    assert_eq!(e, DpdkError::NoPorts);
    assert!(e.to_string().contains("--vdev"), "{e}");
    // EAL runs now: other arguments are refused with a reason.
    let mut ring = eal.clone();
    ring.push("--vdev=net_ring0".into());
    let e = DpdkDevice::open(&DpdkConfig::new(ring)).unwrap_err();
    assert!(matches!(e, DpdkError::EalAlreadyInitialized { .. }), "{e:?}");
    let mut cfg = DpdkConfig::new(eal);
    cfg.port = Some(9);
    assert_eq!(DpdkDevice::open(&cfg).unwrap_err(), DpdkError::NoSuchPort(9));
    println!("errors ok: {e}");
}

fn child_reopen(mut eal: Vec<String>) {
    eal.push("--vdev=net_ring0".into());
    let cfg = DpdkConfig::new(eal);
    let dev = DpdkDevice::open(&cfg).unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(DpdkDevice::open(&cfg).unwrap_err(), DpdkError::PortInUse(dev.port()));
    drop(dev);
    // Closed, the port opens again (on the same pools).
    let dev = DpdkDevice::open(&cfg).unwrap_or_else(|e| panic!("open again: {e}"));
    println!("errors ok: reopened port {} ({})", dev.port(), dev.driver());
}

fn child_echo(eal: Vec<String>, ip: &str) {
    let dev = DpdkDevice::open(&DpdkConfig::new(eal.clone())).unwrap_or_else(|e| panic!("open: {e}"));
    // The same port again is refused while open.
    assert_eq!(DpdkDevice::open(&DpdkConfig::new(eal)).unwrap_err(), DpdkError::PortInUse(dev.port()));
    let caps = dev.caps();
    println!(
        "ready driver={} port={} mac={} mtu={} rx_checksum_offload={} tx_checksum_offload={}",
        dev.driver(),
        dev.port(),
        caps.mac,
        caps.mtu,
        caps.rx_checksum_offload,
        caps.tx_checksum_offload
    );
    let (addr, prefix) = ip.split_once('/').unwrap();
    let mut config = Config::new(LibOsKind::Memory);
    config.net.ip = Some(addr.parse::<Ipv4Addr>().unwrap());
    config.net.prefix_len = prefix.parse().unwrap();
    let libos = LibOs::with_device(&config, Box::new(dev)).unwrap();
    let local = SocketAddr::from((config.net.ip.unwrap(), PORT));

    let listener = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    libos.bind(listener, local).unwrap();
    libos.listen(listener, 16).unwrap();
    let udp = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    libos.bind(udp, local).unwrap();

    /// What a pending token is for.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Op {
        Accept,
        Udp,
        UdpPush,
        TcpPop(QDesc),
        TcpPush(QDesc),
        /// demi's client connecting to the kernel's server.
        Connect(QDesc),
        /// demi's client connecting to a closed port.
        Refused(QDesc),
        ClientPush,
        ClientPop(QDesc),
    }
    /// An echoed connection from the kernel.
    #[derive(Default)]
    struct Echo {
        hash: Sha256,
        received: usize,
        pushes: usize,
        eof: bool,
    }
    let mut pending: Vec<(QToken, Op)> = vec![(libos.accept(listener).unwrap(), Op::Accept), (libos.pop(udp).unwrap(), Op::Udp)];
    let mut echoes: HashMap<QDesc, Echo> = HashMap::new();
    let client_data: Vec<u8> = (0..CLIENT_BYTES as u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8).collect();
    let client_sha = format!("{:x}", Sha256::digest(&client_data));
    let mut reply = Vec::new();
    let deadline = Instant::now() + GUARD;
    loop {
        let qts: Vec<QToken> = pending.iter().map(|p| p.0).collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, result) = libos.wait_any(&qts, Some(left)).expect("the kernel's traffic in time");
        let (_, op) = pending.swap_remove(i);
        match (op, result.value) {
            (Op::Accept, Ok(QValue::Accepted { qd, .. })) => {
                echoes.insert(qd, Echo::default());
                pending.push((libos.pop(qd).unwrap(), Op::TcpPop(qd)));
                pending.push((libos.accept(listener).unwrap(), Op::Accept));
            }
            (Op::Udp, Ok(QValue::Popped(sga))) => {
                let text = String::from_utf8(sga.to_vec()).unwrap_or_default();
                let words: Vec<&str> = text.split_whitespace().collect();
                match words.as_slice() {
                    ["quit"] => break,
                    ["client", server, closed] => {
                        let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
                        pending.push((libos.connect(qd, closed.parse().unwrap()).unwrap(), Op::Refused(qd)));
                        let qd = libos.socket(Domain::Ipv4, SocketType::Stream).unwrap();
                        pending.push((libos.connect(qd, server.parse().unwrap()).unwrap(), Op::Connect(qd)));
                    }
                    _ => pending.push((libos.push(udp, sga).unwrap(), Op::UdpPush)),
                }
                pending.push((libos.pop(udp).unwrap(), Op::Udp));
            }
            (Op::TcpPop(qd), Ok(QValue::Popped(sga))) => {
                let echo = echoes.get_mut(&qd).unwrap();
                if sga.is_empty() {
                    println!("tcp received={} sha={:x}", echo.received, echo.hash.finalize_reset());
                    echo.eof = true;
                    if echo.pushes == 0 {
                        libos.close(qd).unwrap();
                    }
                    continue;
                }
                echo.received += sga.len();
                for seg in sga.iter() {
                    echo.hash.update(seg);
                }
                // Echo the received buffers themselves (mbuf-backed, no copy).
                pending.push((libos.push(qd, sga).unwrap(), Op::TcpPush(qd)));
                echo.pushes += 1;
                pending.push((libos.pop(qd).unwrap(), Op::TcpPop(qd)));
            }
            (Op::UdpPush | Op::ClientPush, Ok(QValue::Pushed)) => {}
            (Op::TcpPush(qd), Ok(QValue::Pushed)) => {
                let echo = echoes.get_mut(&qd).unwrap();
                echo.pushes -= 1;
                if echo.eof && echo.pushes == 0 {
                    // Everything echoed is in the send buffer: close (FIN after it).
                    libos.close(qd).unwrap();
                }
            }
            (Op::Refused(qd), Err(e)) => {
                assert_eq!(e, QError::ConnectionRefused, "the kernel's RST for a closed port");
                println!("refused ok");
                libos.close(qd).unwrap();
            }
            (Op::Connect(qd), Ok(QValue::Connected)) => {
                pending.push((libos.push(qd, Sga::from(client_data.clone())).unwrap(), Op::ClientPush));
                pending.push((libos.pop(qd).unwrap(), Op::ClientPop(qd)));
            }
            (Op::ClientPop(qd), Ok(QValue::Popped(sga))) => {
                if sga.is_empty() {
                    // The kernel closed first; now demi does.
                    println!("client sent={CLIENT_BYTES} sha={client_sha} reply={}", String::from_utf8_lossy(&reply));
                    libos.close(qd).unwrap();
                } else {
                    reply.extend_from_slice(&sga.to_vec());
                    pending.push((libos.pop(qd).unwrap(), Op::ClientPop(qd)));
                }
            }
            (op, v) => panic!("unexpected completion of {op:?}: {v:?}"),
        }
    }
    let stats = libos.stack_stats().unwrap();
    println!("stats stack={stats:?}");
    drop(libos);
}

/// Two stacks on the two ends of a DPDK ring pair: 4 MiB from A to B's echo and back.
fn child_ring(eal: Vec<String>) {
    use demi_runtime::Runtime;
    let (a, b) = DpdkDevice::ring_pair(&DpdkConfig::new(eal), "ddkr").unwrap_or_else(|e| panic!("ring pair: {e}"));
    println!("ready a={} b={} driver={}", a.caps().mac, b.caps().mac, a.driver());
    let config = |last: u8| {
        let mut c = Config::new(LibOsKind::Memory);
        c.net.ip = Some(Ipv4Addr::new(198, 18, 103, last));
        c
    };
    let rt = Runtime::new().unwrap();
    let (la, lb) = rt.block_on(async {
        (LibOs::with_device(&config(1), Box::new(a)).unwrap(), LibOs::with_device(&config(2), Box::new(b)).unwrap())
    });
    let server_addr = SocketAddr::from((Ipv4Addr::new(198, 18, 103, 2), PORT));
    let listener = lb.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    lb.bind(listener, server_addr).unwrap();
    lb.listen(listener, 4).unwrap();
    let accept = lb.accept(listener).unwrap();
    let qa = la.socket(Domain::Ipv4, SocketType::Stream).unwrap();
    let connect = la.connect(qa, server_addr).unwrap();
    la.wait(connect, Some(GUARD)).unwrap().ok().unwrap();
    let (qb, _) = lb.wait(accept, Some(GUARD)).unwrap().into_accepted().unwrap();

    let data: Vec<u8> = (0..TCP_BYTES as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let sent_sha = Sha256::digest(&data);
    #[derive(Clone, Copy, Debug)]
    enum Op {
        APush,
        APop,
        BPush,
        BPop,
    }
    let mut pending: Vec<(QToken, Op)> = Vec::new();
    for chunk in data.chunks(64 << 10) {
        pending.push((la.push(qa, bytes::Bytes::copy_from_slice(chunk).into()).unwrap(), Op::APush));
    }
    pending.push((la.pop(qa).unwrap(), Op::APop));
    pending.push((lb.pop(qb).unwrap(), Op::BPop));
    let (mut server_hash, mut echoed_hash) = (Sha256::new(), Sha256::new());
    let (mut server_got, mut echoed) = (0, 0);
    let t0 = Instant::now();
    while echoed < TCP_BYTES {
        let qts: Vec<QToken> = pending.iter().map(|p| p.0).collect();
        let (i, r) = la.wait_any(&qts, Some(GUARD)).expect("progress in time");
        let (_, op) = pending.swap_remove(i);
        match (op, r.value.unwrap_or_else(|e| panic!("{op:?}: {e:?}"))) {
            (Op::APush | Op::BPush, QValue::Pushed) => {}
            (Op::BPop, QValue::Popped(sga)) => {
                server_got += sga.len();
                sga.iter().for_each(|s| server_hash.update(s));
                if server_got < TCP_BYTES {
                    pending.push((lb.pop(qb).unwrap(), Op::BPop));
                }
                pending.push((lb.push(qb, sga).unwrap(), Op::BPush));
            }
            (Op::APop, QValue::Popped(sga)) => {
                assert!(!sga.is_empty(), "no early end of stream");
                echoed += sga.len();
                sga.iter().for_each(|s| echoed_hash.update(s));
                if echoed < TCP_BYTES {
                    pending.push((la.pop(qa).unwrap(), Op::APop));
                }
            }
            (op, v) => panic!("unexpected {op:?} {v:?}"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "tcp bytes={TCP_BYTES} sent_sha={:x} server_sha={:x} echoed_sha={:x} mbps={:.0}",
        sent_sha,
        server_hash.finalize(),
        echoed_hash.finalize(),
        2.0 * TCP_BYTES as f64 * 8.0 / secs / 1e6
    );
    la.close(qa).unwrap();
    lb.close(qb).unwrap();
}
