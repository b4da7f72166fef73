//! # kv — a Redis-protocol key-value server on demi
//!
//! Speaks RESP2 to any Redis client (`redis-cli`, `redis-benchmark`, client
//! libraries) over demi's queue API on whichever libOS is chosen, and keeps its data
//! in an append-only log on demi's storage engine, replayed on start.
//!
//! ```text
//! cargo run --release --example kv -- --addr 127.0.0.1:6379 --dir /var/tmp/kv
//! redis-cli -p 6379 set greeting hello
//! ```
//!
//! Commands: PING, ECHO, GET, SET (EX/PX/EXAT/PXAT/KEEPTTL, NX/XX, GET), SETNX,
//! SETEX, PSETEX, GETDEL, APPEND, STRLEN, DEL/UNLINK, EXISTS, INCR/DECR/INCRBY/DECRBY,
//! MGET, MSET, EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT (NX/XX/GT/LT), PERSIST, TTL/PTTL,
//! DBSIZE, FLUSHALL/FLUSHDB, SELECT 0, QUIT, and the probes clients send: COMMAND
//! (DOCS/COUNT), CONFIG GET, CLIENT SETNAME/SETINFO/GETNAME/ID, INFO. Unknown
//! commands get Redis's `-ERR unknown command …` and the connection stays open;
//! a malformed frame gets `-ERR Protocol error: …` and the connection is closed, as
//! Redis does.
//!
//! Each connection is one coroutine on a [`demi::net::TcpStream`] over the
//! connection's queue: a read brings whatever bytes arrived (received straight into
//! the parser's buffer: on the POSIX libOS the stream reads and writes the kernel
//! socket directly, elsewhere it pops and pushes), every whole command in them
//! runs, and all their replies go back in one write (pipelining costs one send per
//! read, not one per command).
//!
//! Persistence (`--dir`, file `kv.aof`): every command that changes the keyspace
//! appends its effect (with absolute expiry times, so TTLs survive restarts) to
//! the log; see `aof.rs`. The storage engine makes a push durable before it
//! completes (O_DIRECT write and flush, shared by concurrent pushes), so:
//!
//! - `--appendfsync always`: a connection's replies go out only once the log holds
//!   every write executed before them, its own and other clients' (so no client
//!   is told about a write that a crash could lose). Writes from many clients
//!   share records and flushes.
//! - `--appendfsync everysec` (default) and `no`: the same log, the same durable
//!   writes, but replies do not wait for them: a write is durable a flush later
//!   (well under a second), not when it is acknowledged. The engine has no
//!   "written but not flushed" state, so `no` cannot be cheaper than `everysec`
//!   and means the same.
//! - `--appendonly no`: no log at all (nothing survives a restart), like Redis's
//!   `appendonly no` with `save ""`.
//!
//! Flags:
//!
//! | flag | default | meaning |
//! |---|---|---|
//! | `--libos NAME` | `DEMI_LIBOS`, else `posix` | the libOS to run on |
//! | `--addr IP:PORT` | `127.0.0.1:6379` (on a user-level stack `0.0.0.0:6379`) | where to listen |
//! | `--dir PATH` | `./kv-data` | where `kv.aof` lives (a disk file system: O_DIRECT) |
//! | `--appendonly yes\|no` | `yes` | keep the log at all |
//! | `--appendfsync always\|everysec\|no` | `everysec` | when replies wait for the log |
//! | `--spin-us N` | the runtime's (50) | busy-poll this long after the last work, then sleep in epoll (0: sleep at once) |
//! | `--iface`, `--ip`, `--link`, `--pcap`, `--faults` | | device settings, as in examples/echo |
//!
//! Idle policy: by default the runtime's (`IdlePolicy::Auto`): over kernel sockets
//! it keeps polling for `demi::AUTO_SPIN_WINDOW` (50 µs) after its last
//! piece of work, then sleeps in epoll. A loaded server therefore does not sleep
//! between requests, and a client's send does not have to wake it; under
//! redis-benchmark on the 2-core machine of docs/performance.md that is worth
//! 10–20% more requests per second than sleeping at once. `--spin-us N` sets the
//! window (`IdlePolicy::SpinThenPark`); `--spin-us 0` sleeps whenever nothing is
//! ready, as Redis does. `DEMI_IDLE` (`auto`, `spin`, `park`), if set, wins.
//!
//! Once listening it prints
//! `kv: serving on <addr> (libos=<name>, appendfsync=<mode>, keys=<n recovered>)`.
//! SIGINT or SIGTERM (through `demi::signal`): the log is drained (everything
//! acknowledged is made durable), then the process exits with status 0.

mod aof;
mod resp;
mod store;

use aof::Aof;
use bytes::BytesMut;
use demi::net::TcpStream;
use demi::{Domain, IdlePolicy, LibOs, QDesc, QError, QResult, SocketType};
use resp::{Parser, ProtocolError, Reply};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{Flow, Info, Store};

const USAGE: &str = "\
usage: kv [--libos NAME] [--addr IP:PORT] [--dir PATH] [--appendonly yes|no]
          [--appendfsync always|everysec|no] [--spin-us N] [--iface NAME] [--ip A.B.C.D/P]
          [--link NAME] [--pcap PATH] [--faults SPEC]

A Redis-protocol (RESP2) key-value server on demi with an append-only log.
  --libos NAME        posix (default), memory, shm, raw, dpdk (DEMI_LIBOS)
  --addr IP:PORT      listen address (default 127.0.0.1:6379)
  --dir PATH          directory of the log kv.aof (default ./kv-data)
  --appendonly yes|no keep a log (default yes)
  --appendfsync MODE  always: reply once durable; everysec, no: reply at once,
                      durable a flush later (default everysec)
  --spin-us N         busy-poll N microseconds after the last work before
                      sleeping in the kernel (default: the runtime's 50;
                      0: sleep at once)
";

/// Listen backlog.
const BACKLOG: usize = 1024;
/// How often expired keys are swept, and how many at most per sweep.
const SWEEP_PERIOD: Duration = Duration::from_millis(100);
const SWEEP_BUDGET: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
}

struct Options {
    libos: Option<String>,
    addr: Option<SocketAddr>,
    dir: PathBuf,
    appendonly: bool,
    fsync: Fsync,
    /// Busy-poll this long after the last work before parking in epoll
    /// (`--spin-us`); `None`: the runtime's idle policy.
    spin: Option<Duration>,
    device: Vec<(&'static str, String)>,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options {
        libos: None,
        addr: None,
        dir: PathBuf::from("kv-data"),
        appendonly: true,
        fsync: Fsync::EverySec,
        spin: None,
        device: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--libos" => o.libos = Some(value()?),
            "--addr" => {
                let v = value()?;
                o.addr = Some(v.parse().map_err(|_| format!("--addr expects IP:PORT, got `{v}`"))?);
            }
            "--dir" => o.dir = PathBuf::from(value()?),
            "--appendonly" => {
                o.appendonly = match value()?.as_str() {
                    "yes" => true,
                    "no" => false,
                    v => return Err(format!("--appendonly expects yes or no, got `{v}`")),
                }
            }
            "--appendfsync" => {
                o.fsync = match value()?.as_str() {
                    "always" => Fsync::Always,
                    "everysec" => Fsync::EverySec,
                    "no" => Fsync::No,
                    v => return Err(format!("--appendfsync expects always, everysec or no, got `{v}`")),
                }
            }
            "--spin-us" => {
                let v = value()?;
                let us: u64 = v.parse().map_err(|_| format!("--spin-us expects microseconds, got `{v}`"))?;
                o.spin = Some(Duration::from_micros(us));
            }
            "--iface" => o.device.push(("DEMI_IFACE", value()?)),
            "--ip" => o.device.push(("DEMI_IP", value()?)),
            "--link" => o.device.push(("DEMI_LINK", value()?)),
            "--dpdk-args" => o.device.push(("DEMI_DPDK_ARGS", value()?)),
            "--pcap" => o.device.push(("DEMI_PCAP", value()?)),
            "--faults" => o.device.push(("DEMI_FAULTS", value()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(o))
}

fn open_libos(opts: &Options) -> Result<LibOs, demi::ConfigError> {
    let mut cfg = demi::Config::from_env()?;
    if let Some(name) = &opts.libos {
        cfg.libos = demi::LibOsKind::parse(name)?;
    }
    for (var, value) in &opts.device {
        cfg = cfg.with_var(var, value)?;
    }
    LibOs::new(&cfg)
}

/// Unix time in milliseconds (expiry deadlines are absolute, so they survive a
/// restart).
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What every connection shares.
struct Server {
    libos: LibOs,
    store: RefCell<Store>,
    aof: Option<Rc<Aof>>,
    fsync: Fsync,
}

async fn accept_loop(server: Rc<Server>, lqd: QDesc) -> Result<(), String> {
    loop {
        let accepted = match server.libos.accept(lqd) {
            Ok(qt) => qt.await.and_then(QResult::into_accepted),
            Err(e) => Err(e),
        };
        match accepted {
            Ok((qd, _peer)) => demi::spawn(connection(server.clone(), qd)).detach(),
            Err(e @ (QError::BadDescriptor | QError::Canceled | QError::InvalidState | QError::NoRuntime)) => {
                return Err(format!("accept failed: {e}"));
            }
            Err(e) => eprintln!("kv: accept failed: {e}"),
        }
    }
}

/// Bytes of room the parser's buffer has for each read (Redis reads 16 KiB).
const READ_CHUNK: usize = 16 * 1024;

/// Serves one client until it closes, sends QUIT or breaks the protocol.
async fn connection(server: Rc<Server>, qd: QDesc) {
    let mut stream = TcpStream::from_qd(server.libos.clone(), qd);
    let mut parser = Parser::new();
    let mut reply = Reply::new();
    let mut log = server.aof.as_ref().map(|_| BytesMut::new());
    loop {
        let n = match poll_fn(|cx| stream.poll_read_uninit(cx, parser.spare(READ_CHUNK))).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // SAFETY: the read initialised the first `n` bytes of the parser's spare room.
        unsafe { parser.filled(n) };
        let now = now_ms();
        let mut close = false;
        {
            let mut store = server.store.borrow_mut();
            loop {
                match parser.next() {
                    Ok(Some(cmd)) => {
                        // A record holds this command and what else this read completes
                        // (at most one read's worth): keep 1 MiB of the record for that.
                        if log.is_some() && Store::is_write(&cmd[0]) && command_bytes(&cmd) > aof::MAX_RECORD - (1 << 20) {
                            reply.error("ERR command too large for the append-only log (255 MiB)");
                            continue;
                        }
                        if store.exec(&cmd, now, &mut reply, log.as_mut()) == Flow::Close {
                            close = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        reply_protocol_error(&mut reply, &e);
                        close = true;
                        break;
                    }
                }
            }
        }
        if let Some(aof) = &server.aof {
            let buf = log.as_mut().expect("a log buffer whenever there is a log");
            let end = if buf.is_empty() { aof.appended() } else { aof.append(buf.split().freeze()) };
            if server.fsync == Fsync::Always {
                // Also when this batch only read: what it read may be another
                // client's write that is not durable yet.
                aof.durable(end).await;
            }
        }
        if !reply.is_empty() {
            let sent = write_replies(&mut stream, &reply).await;
            reply.clear();
            if sent.is_err() {
                break;
            }
        }
        if close {
            break;
        }
    }
    // Dropping the stream closes the queue.
}

/// Writes every reply in `reply`: one `sendmsg` when the socket takes them all, a
/// partial write resumed where it stopped.
async fn write_replies(stream: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    let mut done = 0usize;
    let mut slices = Vec::new();
    loop {
        slices.clear();
        let mut skip = done;
        for s in reply.slices() {
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            slices.push(std::io::IoSlice::new(&s[skip..]));
            skip = 0;
        }
        if slices.is_empty() {
            return poll_fn(|cx| stream.poll_flush_pushes(cx)).await;
        }
        let n = poll_fn(|cx| stream.poll_write_vectored_bufs(cx, &slices)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
}

fn reply_protocol_error(reply: &mut Reply, e: &ProtocolError) {
    reply.error(&format!("ERR Protocol error: {e}"));
}

fn command_bytes(cmd: &resp::Command) -> usize {
    cmd.iter().map(|a| a.len() + 16).sum()
}

/// A future that completes on SIGINT or SIGTERM (demi::signal), boxed so it can be
/// polled early: its first poll installs the handlers.
type StopSignal = Pin<Box<dyn Future<Output = ()>>>;

fn stop_signal() -> StopSignal {
    fn one(signo: i32) -> StopSignal {
        Box::pin(async move {
            if let Err(e) = demi::signal::signal(signo).await {
                eprintln!("kv: cannot wait for signal {signo}: {e}");
                std::future::pending::<()>().await;
            }
        })
    }
    let (mut int, mut term) = (one(libc::SIGINT), one(libc::SIGTERM));
    let mut done = false; // ready once, and stays ready (never polls a finished future)
    Box::pin(poll_fn(move |cx| {
        if done || int.as_mut().poll(cx).is_ready() || term.as_mut().poll(cx).is_ready() {
            done = true;
            return Poll::Ready(());
        }
        Poll::Pending
    }))
}

/// Sweeps expired keys every [`SWEEP_PERIOD`] until `stop` completes, then waits
/// for the log to hold everything acknowledged.
async fn housekeeping(server: Rc<Server>, mut stop: StopSignal) {
    let mut interval = demi::time::interval(SWEEP_PERIOD);
    loop {
        let stopped = {
            let mut tick = Box::pin(interval.tick());
            poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                tick.as_mut().poll(cx).map(|_| false)
            })
            .await
        };
        if stopped {
            if let Some(aof) = &server.aof {
                aof.durable(aof.appended()).await;
            }
            return;
        }
        let now = now_ms();
        server.store.borrow_mut().sweep(now, SWEEP_BUDGET);
    }
}

async fn run(opts: Options) -> Result<(), String> {
    let libos = open_libos(&opts).map_err(|e| format!("starting the libOS failed: {e}"))?;
    let default = if libos.kind() == demi::LibOsKind::Posix { "127.0.0.1:6379" } else { "0.0.0.0:6379" };
    let addr = opts.addr.unwrap_or_else(|| default.parse().expect("constant address parses"));
    let info = Info {
        appendonly: opts.appendonly,
        appendfsync: opts.fsync.name(),
        libos: libos.name(),
        port: addr.port(),
    };
    let mut store = Store::new(info);
    let aof = if opts.appendonly {
        let (aof, _records) = Aof::open(&libos, &opts.dir, |cmd| store.apply_logged(cmd)).await?;
        store.drop_expired(now_ms());
        Some(aof)
    } else {
        None
    };
    let keys = store.len();

    let lqd = libos.socket(Domain::of(&addr), SocketType::Stream).map_err(|e| format!("socket: {e}"))?;
    libos.bind(lqd, addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    libos.listen(lqd, BACKLOG).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = libos.local_addr(lqd).unwrap_or(addr);
    let mut server = Server { libos: libos.clone(), store: RefCell::new(store), aof, fsync: opts.fsync };
    server.store.get_mut().set_port(local.port());
    let server = Rc::new(server);
    // Poll the signal future once before announcing the server: that installs the
    // handlers, so a SIGTERM sent right after the `serving on` line is caught.
    let mut stop = stop_signal();
    poll_fn(|cx| {
        let _ = stop.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    println!(
        "kv: serving on {local} (libos={}, appendfsync={}, keys={keys})",
        libos.name(),
        if opts.appendonly { opts.fsync.name() } else { "off" }
    );
    let accepting = demi::spawn(accept_loop(server.clone(), lqd));
    housekeeping(server.clone(), stop).await;
    accepting.abort();
    let _ = libos.close(lqd);
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kv: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The runtime is built here rather than by #[demi::main] to give it
    // `--spin-us`'s spin-then-park idle policy (the attribute offers auto, spin and
    // park).
    let config = match demi::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kv: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = config.runtime_builder();
    if let (Some(spin), None) = (opts.spin, std::env::var_os("DEMI_IDLE")) {
        builder = builder.idle(if spin.is_zero() { IdlePolicy::Park } else { IdlePolicy::SpinThenPark(spin) });
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kv: creating the runtime failed: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: {e}");
            ExitCode::from(1)
        }
    }
}
