//! A real crash: a child process appends to a log through io_uring and reports each
//! completed push through a pipe; the parent kills it with SIGKILL while it runs,
//! reopens the log, and finds every reported record, intact and in order.
//!
//! The child is this test binary again, started with `DEMI_STORAGE_CHILD` set (the
//! `child_appender` entry does nothing otherwise).

use demi::{Bytes, LibOs, QValue, Sga};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "DEMI_STORAGE_CHILD";

fn record(id: u64) -> Sga {
    let len = 16 + (id as usize * 193) % 6000;
    let body: Vec<u8> = (0..len).map(|j| (id as usize * 31 + j) as u8).collect();
    Sga::from_segments([Bytes::copy_from_slice(&id.to_le_bytes()), Bytes::from(body)])
}

/// Child side: keeps 16 pushes in flight forever, writing "acked <id>\n" to fd 1
/// after each completes.
#[test]
fn child_appender() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let libos = LibOs::posix().unwrap();
    let qd = libos.creat(&path).unwrap();
    let say = |s: &str| {
        // SAFETY: writes a short buffer to stdout (a pipe); one write of < PIPE_BUF
        // bytes is atomic, so the parent never sees half a line.
        unsafe { libc::write(1, s.as_ptr().cast(), s.len()) };
    };
    say("ready\n");
    let mut next = 0u64;
    let mut inflight = Vec::new();
    loop {
        while inflight.len() < 16 {
            inflight.push((next, libos.push(qd, record(next)).unwrap()));
            next += 1;
        }
        let qts: Vec<_> = inflight.iter().map(|(_, qt)| *qt).collect();
        let (i, r) = libos.wait_any(&qts, None).unwrap();
        assert_eq!(r.value, Ok(QValue::Pushed));
        let (id, _) = inflight.swap_remove(i);
        say(&format!("acked {id}\n"));
    }
}

#[test]
fn sigkill_while_appending_loses_no_completed_push() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage_sigkill");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("log-{}", std::process::id()));
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_appender", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        // Read until the child has acknowledged a good number of pushes, then kill it
        // mid-stream (a different moment each round).
        let want = 300 + round * 500;
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(60);
        while text.matches("acked ").count() < want {
            assert!(Instant::now() < deadline, "child too slow: {text}");
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "child exited early: {text}");
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        // Whatever it reported before dying is in the pipe still.
        out.read_to_string(&mut text).unwrap();
        let acked: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("acked "))
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(acked.len() >= want);

        let libos = LibOs::posix().unwrap();
        let qd = libos.open(&path).unwrap();
        let len = libos.log_len(qd).unwrap();
        let mut ids = Vec::new();
        for _ in 0..len {
            let s = libos.blocking_pop(qd).unwrap().into_sga().unwrap();
            let id = u64::from_le_bytes(s.segments()[0][..].try_into().unwrap());
            assert_eq!(s, record(id), "record {id} came back different");
            ids.push(id);
        }
        assert_eq!(ids, (0..len).collect::<Vec<_>>(), "records are the pushes, in push order");
        let max_acked = *acked.iter().max().unwrap();
        assert!(len > max_acked, "round {round}: acked push {max_acked} missing ({len} records recovered)");
        eprintln!("round {round}: {} pushes acknowledged before SIGKILL, {len} records recovered", acked.len());
        libos.close(qd).unwrap();
    }
    std::fs::remove_file(&path).unwrap();
}
