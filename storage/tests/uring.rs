//! The io_uring backend on a real file (in the target directory: O_DIRECT needs a
//! real file system): raw device requests, the log over it with each ring option
//! (registered buffers or not, requests per submission call, SQPOLL), reopen and
//! recovery, and a file that is not a log.

use demi_runtime::Sga;
use demi_storage::{
    BlockDevice, IoRequest, Log, LogConfig, LogOutput, OpenMode, PoolConfig, StorageError, UringConfig, UringDevice,
};
use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage_uring");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}", std::process::id()))
}

#[test]
fn device_writes_flushes_and_reads_back() {
    let p = path("device");
    let mut dev = UringDevice::open(&p, OpenMode::CreateTruncate, &UringConfig::default()).unwrap();
    assert_eq!(dev.geometry().block_size, 4096);
    let mut out = Vec::new();
    for i in 0..8u64 {
        let mut b = dev.alloc(8192);
        b.as_mut_slice().fill(i as u8 + 1);
        dev.submit_chain(vec![IoRequest::write(i * 8192, b, i), IoRequest::flush(100 + i)]);
    }
    while out.len() < 16 {
        dev.wait(&mut out);
    }
    assert!(out.iter().all(|c| c.result.is_ok()));
    let b = dev.alloc(4096);
    dev.submit(IoRequest::read(3 * 8192 + 4096, b, 7));
    out.clear();
    while out.is_empty() {
        dev.wait(&mut out);
    }
    let c = out.pop().unwrap();
    assert_eq!(c.result, Ok(4096));
    assert!(c.buf.unwrap().as_slice().iter().all(|&x| x == 4));
    // A read past the end is short, not an error.
    let b = dev.alloc(4096);
    dev.submit(IoRequest::read(1 << 20, b, 8));
    while out.is_empty() {
        dev.wait(&mut out);
    }
    assert_eq!(out.pop().unwrap().result, Ok(0));
    drop(dev);
    std::fs::remove_file(&p).unwrap();
}

fn log_round_trip(name: &str, config: UringConfig) {
    let p = path(name);
    let dev = UringDevice::open(&p, OpenMode::CreateTruncate, &config).unwrap();
    let mut log = Log::create(dev, &LogConfig::default()).unwrap();
    let rec = |i: usize| Sga::from(vec![i as u8; 1 + i * 331 % 20000]);
    // Every event is kept: with SQPOLL a push can complete during one of the
    // intermediate polls.
    let mut ev = Vec::new();
    for i in 0..200 {
        log.push(rec(i), i as u64).unwrap();
        if i % 7 == 0 {
            log.poll(&mut ev);
        }
    }
    log.drain(&mut ev).unwrap();
    assert_eq!(ev.len(), 200);
    assert!(ev.iter().all(|e| matches!(e.result, Ok(LogOutput::Pushed { .. }))));
    assert!(log.stats().batches < 200, "group commit batched nothing");
    drop(log);
    let dev = UringDevice::open(&p, OpenMode::Existing, &config).unwrap();
    let mut log = Log::open(dev, &LogConfig::default()).unwrap();
    assert_eq!(log.len(), 200);
    for i in 0..200 {
        log.pop(i);
    }
    let mut ev = Vec::new();
    log.drain(&mut ev).unwrap();
    ev.sort_by_key(|e| e.tag);
    for (i, e) in ev.into_iter().enumerate() {
        assert_eq!(e.result, Ok(LogOutput::Popped(rec(i))));
    }
    drop(log);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn log_over_uring_with_registered_buffers() {
    log_round_trip("registered", UringConfig::default());
}

#[test]
fn log_over_uring_without_registered_buffers_and_a_tiny_pool() {
    let config = UringConfig {
        register_buffers: false,
        pool: PoolConfig { classes: vec![(4096, 2)] },
        entries: 8,
        ..UringConfig::default()
    };
    log_round_trip("unregistered", config);
}

#[test]
fn log_over_uring_submitting_in_batches() {
    // Several requests per io_uring_enter; with 3, two write+flush chains never fit
    // in one call and a chain is never split across calls.
    log_round_trip("batch64", UringConfig { submit_batch: 64, ..UringConfig::default() });
    log_round_trip("batch3", UringConfig { submit_batch: 3, ..UringConfig::default() });
}

#[test]
fn log_over_uring_with_sqpoll() {
    log_round_trip("sqpoll", UringConfig { sqpoll: Some(10), ..UringConfig::default() });
}

#[test]
fn a_file_that_is_not_a_log() {
    let p = path("text");
    std::fs::write(&p, "hello, world\n".repeat(1000)).unwrap();
    let dev = UringDevice::open(&p, OpenMode::Existing, &UringConfig::default()).unwrap();
    assert_eq!(Log::open(dev, &LogConfig::default()).err(), Some(StorageError::NotALog));
    std::fs::remove_file(&p).unwrap();
}
