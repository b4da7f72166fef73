//! Queue combinators over storage queues: a log file is an input like any other
//! queue (filter and map over a log; a memory queue qconnect'ed into a log, read
//! back after reopening).

use demi::{LibOs, Predicate, QError, QValue, Sga};
use std::time::Duration;

const GUARD: Option<Duration> = Some(Duration::from_secs(10));

fn dir(name: &str) -> std::path::PathBuf {
    // Not tmpfs: the storage engine opens files O_DIRECT.
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("queues-storage-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pop_text(l: &LibOs, qd: demi::QDesc) -> String {
    String::from_utf8(l.wait(l.pop(qd).unwrap(), GUARD).unwrap().into_sga().unwrap().to_vec()).unwrap()
}

#[test]
fn filter_and_map_over_a_log_and_qconnect_in_and_out_of_logs() {
    let l = LibOs::posix().unwrap();
    let d = dir("combo");
    let log = l.creat(d.join("a.log")).unwrap();
    for r in ["keep 1", "drop 2", "keep 3"] {
        l.wait(l.push(log, Sga::from(r)).unwrap(), GUARD).unwrap().ok().unwrap();
    }
    let kept = l.filter(log, Predicate::bytes_at(0, "keep")).unwrap();
    let upper = l.map(kept, |sga: Sga| Sga::from(sga.to_vec().to_ascii_uppercase())).unwrap();
    assert_eq!(pop_text(&l, upper), "KEEP 1");
    assert_eq!(pop_text(&l, upper), "KEEP 3");
    // The log's end is an empty element: the filter passes it on as end of stream.
    assert_eq!(pop_text(&l, upper), "");
    l.close(upper).unwrap();
    l.close(kept).unwrap();
    l.close(log).unwrap();

    // A memory queue drained into a new log by qconnect; then the log read back
    // into another memory queue.
    let q = l.queue().unwrap();
    let out = l.creat(d.join("b.log")).unwrap();
    let link = l.qconnect(q, out).unwrap();
    for i in 0..20 {
        l.wait(l.push(q, Sga::from(format!("record {i}").into_bytes())).unwrap(), GUARD).unwrap().ok().unwrap();
    }
    // Closing a memory queue drops what it still holds: wait until qconnect has
    // made every element a durable record first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while l.log_len(out).unwrap() < 20 {
        assert!(std::time::Instant::now() < deadline, "qconnect stalled at {} records", l.log_len(out).unwrap());
        assert!(matches!(l.wait(link, Some(Duration::from_millis(1))), Err(QError::TimedOut)), "qconnect ended early");
    }
    l.close(q).unwrap();
    let r = l.wait(link, GUARD).unwrap();
    assert!(matches!(r.value, Ok(QValue::Closed) | Err(QError::Canceled)), "{:?}", r.value);
    l.close(out).unwrap();
    let back = l.open(d.join("b.log")).unwrap();
    for i in 0..20 {
        assert_eq!(pop_text(&l, back), format!("record {i}"), "every element reached the log, in order");
    }
    l.close(back).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}
