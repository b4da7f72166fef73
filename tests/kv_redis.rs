//! examples/kv against real Redis clients: `redis-cli` and `redis-benchmark` from
//! Debian's redis-tools (scripts/test installs them), plus raw RESP over a std
//! TcpStream for malformed frames, pipelining and the restart checks.
//!
//! The server binary is `DEMI_KV_BIN` if set (scripts/test points it at the release
//! build), else the example cargo built next to this test (`target/<profile>/
//! examples/kv`; `cargo test` builds examples, `cargo test --test kv_redis` alone
//! does not: then `cargo build --example kv` first). Every server listens on a free
//! port and keeps its log under `CARGO_TARGET_TMPDIR` (a disk file system: the log
//! uses O_DIRECT, which tmpfs refuses).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn kv_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DEMI_KV_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").join("examples").join("kv");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --example kv` (or set DEMI_KV_BIN)",
        bin.display()
    );
    bin
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// True (after saying so) if redis-tools is missing.
fn skip_without_redis_tools() -> bool {
    if have("redis-cli") && have("redis-benchmark") {
        return false;
    }
    println!("skipped: redis-cli/redis-benchmark not installed (scripts/test installs redis-tools)");
    true
}

/// A fresh data directory under `CARGO_TARGET_TMPDIR`, removed on drop.
struct DataDir(PathBuf);

impl std::ops::Deref for DataDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data_dir(name: &str) -> DataDir {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kv-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    DataDir(dir)
}

struct Server {
    child: Child,
    port: u16,
    /// Keys recovered at start (from the `serving on` line).
    keys: usize,
}

impl Server {
    /// Starts kv on a free port with `args`, waits for its `serving on` line.
    fn start(dir: &Path, args: &[&str]) -> Server {
        // kv binds an ephemeral port itself and prints it: probing for a free port
        // first would race with the client connections of tests running alongside.
        let mut child = Command::new(kv_bin())
            .args(["--libos", "posix", "--addr", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning examples/kv");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("kv: serving on 127.0.0.1:"), "kv printed {line:?}");
        let port = line["kv: serving on 127.0.0.1:".len()..]
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let keys = line.trim().rsplit_once("keys=").and_then(|(_, n)| n.strip_suffix(')')).unwrap().parse().unwrap();
        Server { child, port, keys }
    }

    fn signal(&mut self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status = self.child.wait().unwrap();
        if sig == libc::SIGTERM {
            assert!(status.success(), "kv exited with {status} on SIGTERM");
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim_end_matches('\n').to_string()
    }

    fn connect(&self) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw RESP connection.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn send(&mut self, args: &[&str]) {
        self.w.write_all(&encode(args)).unwrap();
    }

    /// One reply, rendered as text: `+OK`, `-ERR …`, `:1`, `$-1`, the bulk's
    /// contents, `*n` then the elements on their own lines.
    fn reply(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        match line.as_bytes().first() {
            Some(b'$') if line != "$-1" => {
                let n: usize = line[1..].parse().unwrap();
                let mut buf = vec![0; n + 2];
                self.r.read_exact(&mut buf)?;
                buf.truncate(n);
                Ok(String::from_utf8(buf).unwrap())
            }
            Some(b'*') => {
                let n: usize = line[1..].parse().unwrap();
                let mut out = line.clone();
                for _ in 0..n {
                    out.push('\n');
                    out.push_str(&self.reply()?);
                }
                Ok(out)
            }
            _ => Ok(line),
        }
    }

    fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply().unwrap()
    }

    /// True once the server closed the connection (reads EOF or a reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

#[test]
fn redis_cli_commands() {
    if skip_without_redis_tools() {
        return;
    }
    let dir = data_dir("cli");
    let s = Server::start(&dir, &[]);
    assert_eq!(s.keys, 0);
    assert_eq!(s.cli(&["PING"]), "PONG");
    assert_eq!(s.cli(&["ECHO", "hello world"]), "hello world");
    assert_eq!(s.cli(&["SET", "k", "v1"]), "OK");
    assert_eq!(s.cli(&["GET", "k"]), "v1");
    assert_eq!(s.cli(&["SET", "k", "v2", "NX"]), "");
    assert_eq!(s.cli(&["SET", "k", "v2", "XX", "GET"]), "v1");
    assert_eq!(s.cli(&["SET", "counter", "41"]), "OK");
    assert_eq!(s.cli(&["INCR", "counter"]), "42");
    assert_eq!(s.cli(&["DECR", "counter"]), "41");
    assert_eq!(s.cli(&["INCR", "k"]), "ERR value is not an integer or out of range");
    assert_eq!(s.cli(&["SET", "big", "9223372036854775807"]), "OK");
    assert_eq!(s.cli(&["INCR", "big"]), "ERR increment or decrement would overflow");
    assert_eq!(s.cli(&["EXPIRE", "k", "100"]), "1");
    let ttl: i64 = s.cli(&["TTL", "k"]).parse().unwrap();
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    assert_eq!(s.cli(&["TTL", "counter"]), "-1");
    assert_eq!(s.cli(&["TTL", "missing"]), "-2");
    assert_eq!(s.cli(&["SET", "short", "x", "PX", "50"]), "OK");
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(s.cli(&["GET", "short"]), "");
    assert_eq!(s.cli(&["EXISTS", "short"]), "0");
    assert_eq!(s.cli(&["MSET", "a", "1", "b", "2", "c", "3"]), "OK");
    assert_eq!(s.cli(&["MGET", "a", "missing", "c"]), "1\n\n3");
    assert_eq!(s.cli(&["EXISTS", "a", "b", "missing", "a"]), "3");
    assert_eq!(s.cli(&["DEL", "a", "b", "missing"]), "2");
    assert_eq!(s.cli(&["DBSIZE"]), "4"); // k, counter, big, c
    assert_eq!(
        s.cli(&["NOSUCHCMD", "x", "y"]),
        "ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' 'y' "
    );
    assert_eq!(s.cli(&["GET"]), "ERR wrong number of arguments for 'get' command");
    assert_eq!(s.cli(&["CONFIG", "GET", "appendonly"]), "appendonly\nyes");
    assert_eq!(s.cli(&["SELECT", "0"]), "OK");
    assert!(s.cli(&["INFO"]).contains("redis_version:"));
    assert_eq!(s.cli(&["FLUSHALL"]), "OK");
    assert_eq!(s.cli(&["DBSIZE"]), "0");
    // Several commands on one connection, read from stdin.
    let mut child = Command::new("redis-cli")
        .args(["-p", &s.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"SET x 1\nINCRBY x 9\nGET x\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "OK\n10\n10");
}

#[test]
fn redis_benchmark_runs_without_errors() {
    if skip_without_redis_tools() {
        return;
    }
    let dir = data_dir("bench");
    let s = Server::start(&dir, &[]);
    let out = Command::new("redis-benchmark")
        .args(["-p", &s.port.to_string(), "-q", "-n", "2000", "-t", "set,get", "-P", "16", "--csv"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed: {stdout}{stderr}");
    assert!(!stdout.contains("rror") && !stderr.contains("rror"), "redis-benchmark reported errors: {stdout}{stderr}");
    for test in ["SET", "GET"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("\"{test}\""))).unwrap_or_else(|| panic!("no {test} line in {stdout}"));
        let rps: f64 = line.split(',').nth(1).unwrap().trim_matches('"').parse().unwrap();
        assert!(rps > 0.0, "{line}");
    }
    assert_eq!(s.cli(&["DBSIZE"]), "1"); // redis-benchmark's key:__rand_int__
    assert_eq!(s.cli(&["STRLEN", "key:__rand_int__"]), "3"); // -d 3, the default
}

#[test]
fn malformed_frames_get_an_error_then_close() {
    let dir = data_dir("proto");
    let s = Server::start(&dir, &["--appendonly", "no"]);
    for bad in [&b"*1\r\n$abc\r\n"[..], b"*99999999999\r\n", b"*1\r\n$3\r\nGETxx", b"*2\r\n:1\r\n", b"*1\r\n$536870913\r\n"] {
        let mut c = s.connect();
        c.w.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        c.w.write_all(bad).unwrap();
        assert_eq!(c.reply().unwrap(), "+PONG");
        let err = c.reply().unwrap();
        assert!(err.starts_with("-ERR Protocol error: "), "{:?} got {err:?}", String::from_utf8_lossy(bad));
        assert!(c.closed(), "connection stays open after {:?}", String::from_utf8_lossy(bad));
    }
    // Unknown commands and wrong arities keep the connection.
    let mut c = s.connect();
    assert_eq!(c.call(&["FOO", "bar"]), "-ERR unknown command 'FOO', with args beginning with: 'bar' ");
    assert_eq!(c.call(&["SET", "k"]), "-ERR wrong number of arguments for 'set' command");
    assert_eq!(c.call(&["PING"]), "+PONG");
    // Inline commands, blank lines and quoting.
    c.w.write_all(b"PING\r\n\r\nSET \"a key\" 'v 1'\nGET \"a key\"\r\n").unwrap();
    assert_eq!(c.reply().unwrap(), "+PONG");
    assert_eq!(c.reply().unwrap(), "+OK");
    assert_eq!(c.reply().unwrap(), "v 1");
    // 300 pipelined commands written in odd-sized pieces: every reply, in order.
    let mut stream = Vec::new();
    for i in 0..300 {
        stream.extend(encode(&["SET", &format!("k{i}"), &"v".repeat(i)]));
        stream.extend(encode(&["GET", &format!("k{i}")]));
    }
    for piece in stream.chunks(7) {
        c.w.write_all(piece).unwrap();
    }
    for i in 0..300 {
        assert_eq!(c.reply().unwrap(), "+OK");
        assert_eq!(c.reply().unwrap(), "v".repeat(i));
    }
    // A 4 MB value (more than one read, a reply over the zero-copy threshold).
    let big = "x".repeat(4 << 20);
    assert_eq!(c.call(&["SET", "big", &big]), "+OK");
    assert!(c.call(&["GET", "big"]) == big);
    assert_eq!(c.call(&["QUIT"]), "+OK");
    assert!(c.closed());
}

/// Replies larger than the socket buffers: written in parts as the client reads
/// (partial writes resumed, in order), and a client that leaves in the middle of
/// them costs the server nothing but that connection.
#[test]
fn large_replies_partial_writes_and_a_client_that_leaves() {
    let dir = data_dir("bigreplies");
    let s = Server::start(&dir, &["--appendonly", "no"]);
    let mut c = s.connect();
    let big: String = (0..(2 << 20)).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    assert_eq!(c.call(&["SET", "big", &big]), "+OK");
    // 16 pipelined GETs (32 MB of replies) sent before reading any: the server
    // fills the socket, waits for it to drain, and resumes where it stopped.
    let mut stream = Vec::new();
    for i in 0..16 {
        stream.extend(encode(&["GET", "big"]));
        stream.extend(encode(&["ECHO", &format!("after {i}")]));
    }
    c.w.write_all(&stream).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..16 {
        assert!(c.reply().unwrap() == big, "reply {i} differs");
        assert_eq!(c.reply().unwrap(), format!("after {i}"));
    }
    // A client asks for 32 MB and leaves after reading a little.
    let mut gone = s.connect();
    let mut stream = Vec::new();
    for _ in 0..16 {
        stream.extend(encode(&["GET", "big"]));
    }
    gone.w.write_all(&stream).unwrap();
    let mut some = [0u8; 1000];
    gone.r.read_exact(&mut some).unwrap();
    drop(gone);
    // The server still serves the other connection and new ones.
    assert_eq!(c.call(&["PING"]), "+PONG");
    assert_eq!(s.connect().call(&["STRLEN", "big"]), format!(":{}", 2 << 20));
}

#[test]
fn restart_keeps_the_data() {
    let dir = data_dir("restart");
    let mut s = Server::start(&dir, &[]);
    let mut c = s.connect();
    for i in 0..500 {
        assert_eq!(c.call(&["SET", &format!("key{i}"), &format!("value{i}")]), "+OK");
    }
    assert_eq!(c.call(&["INCRBY", "n", "7"]), ":7");
    assert_eq!(c.call(&["SET", "ttl", "t", "EX", "1000"]), "+OK");
    assert_eq!(c.call(&["SET", "brief", "b", "PX", "300"]), "+OK");
    assert_eq!(c.call(&["DEL", "key0"]), ":1");
    assert_eq!(c.call(&["APPEND", "key1", "-more"]), ":11");
    assert_eq!(c.call(&["MSET", "m1", "x", "m2", "y"]), "+OK");
    drop(c);
    s.signal(libc::SIGTERM);

    std::thread::sleep(Duration::from_millis(400)); // `brief` expires while kv is down
    let mut s = Server::start(&dir, &[]);
    assert_eq!(s.keys, 499 + 4, "keys recovered");
    let mut c = s.connect();
    assert_eq!(c.call(&["GET", "key0"]), "$-1");
    assert_eq!(c.call(&["GET", "key499"]), "value499");
    assert_eq!(c.call(&["GET", "key1"]), "value1-more");
    assert_eq!(c.call(&["GET", "n"]), "7");
    assert_eq!(c.call(&["MGET", "m1", "m2", "brief"]), "*3\nx\ny\n$-1");
    let ttl: i64 = c.call(&["TTL", "ttl"])[1..].parse().unwrap();
    assert!((995..=1000).contains(&ttl), "TTL after restart {ttl}");
    assert_eq!(c.call(&["FLUSHALL"]), "+OK");
    assert_eq!(c.call(&["SET", "after", "flush"]), "+OK");
    drop(c);
    s.signal(libc::SIGTERM);

    let mut s = Server::start(&dir, &[]);
    assert_eq!(s.keys, 1);
    assert_eq!(s.connect().call(&["GET", "after"]), "flush");
    s.signal(libc::SIGTERM);
}

/// With `--appendfsync always`, every SET that was acknowledged before a SIGKILL is
/// there after the restart.
#[test]
fn sigkill_keeps_every_acknowledged_write() {
    let dir = data_dir("sigkill");
    let mut s = Server::start(&dir, &["--appendfsync", "always"]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = s.connect();
            let acked = acked.clone();
            std::thread::spawn(move || {
                // Eight SETs in flight per connection.
                let depth = 8;
                let mut sent = 0usize;
                let mut done = 0usize;
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(20) {
                    while sent - done < depth {
                        let key = format!("w{w}-{sent}");
                        if c.w.write_all(&encode(&["SET", &key, &format!("v{sent}")])).is_err() {
                            return;
                        }
                        sent += 1;
                    }
                    match c.reply() {
                        Ok(r) if r == "+OK" => {
                            acked.lock().unwrap().push(format!("w{w}-{done}"));
                            done += 1;
                        }
                        Ok(r) => panic!("SET got {r}"),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 2000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.signal(libc::SIGKILL);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let s = Server::start(&dir, &["--appendfsync", "always"]);
    assert!(s.keys >= acked.len(), "{} keys recovered, {} SETs acknowledged", s.keys, acked.len());
    let mut c = s.connect();
    for key in &acked {
        let n = key.rsplit('-').next().unwrap();
        assert_eq!(c.call(&["GET", key]), format!("v{n}"), "acknowledged {key} lost");
    }
}
