//! The log engine on the memory backend: order, segments, seek, truncate, group
//! commit, completions reported out of order, and the typed errors for bad input.

use bytes::Bytes;
use demi_runtime::Sga;
use demi_storage::format::{Superblock, VERSION};
use demi_storage::{BlockDevice, IoRequest, Log, LogConfig, LogEvent, LogOutput, MemDevice, MemDisk, MemDiskConfig, StorageError};

fn rec(i: u32) -> Sga {
    Sga::from_segments([Bytes::from(format!("rec-{i}-")), Bytes::from(vec![i as u8; (i as usize * 97) % 5000 + 1])])
}

fn drain(log: &mut Log<MemDevice>) -> Vec<LogEvent> {
    let mut ev = Vec::new();
    log.drain(&mut ev).unwrap();
    ev
}

fn pop(log: &mut Log<MemDevice>) -> Sga {
    log.pop(9);
    match drain(log).pop().unwrap().result {
        Ok(LogOutput::Popped(s)) => s,
        other => panic!("{other:?}"),
    }
}

fn reopen(disk: &MemDisk) -> Log<MemDevice> {
    Log::open(MemDisk::from_image(disk.crash_image(0), MemDiskConfig::default()).device(), &LogConfig::default()).unwrap()
}

#[test]
fn records_come_back_in_order_with_their_segments() {
    let disk = MemDisk::new(MemDiskConfig::default());
    let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
    for i in 0..50 {
        log.push(rec(i), i as u64).unwrap();
    }
    let ev = drain(&mut log);
    assert_eq!(ev.len(), 50);
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.tag, i as u64);
        assert_eq!(e.result, Ok(LogOutput::Pushed { seq: i as u64 }));
    }
    // One poll saw all 50: group commit made one batch of them.
    assert_eq!(log.stats().batches, 1);
    let mut log = reopen(&disk);
    assert_eq!(log.len(), 50);
    for i in 0..50 {
        let s = pop(&mut log);
        assert_eq!(s, rec(i));
        assert_eq!(s.num_segments(), 2);
    }
    assert!(pop(&mut log).is_empty(), "end of log pops empty");
    log.seek(10).unwrap();
    assert_eq!(pop(&mut log), rec(10));
    assert_eq!(log.seek(51), Err(StorageError::OutOfRange { requested: 51, records: 50 }));
}

#[test]
fn truncate_keeps_a_prefix_durably_and_appends_after_it() {
    let disk = MemDisk::new(MemDiskConfig::default());
    let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
    for i in 0..20 {
        log.push(rec(i), 0).unwrap();
        drain(&mut log); // one batch per record: records start on block boundaries
    }
    for i in 20..30 {
        log.push(rec(i), 0).unwrap();
    }
    drain(&mut log); // and a batch with records mid-block
    log.truncate(25).unwrap();
    assert_eq!(log.len(), 25);
    let mut again = reopen(&disk);
    assert_eq!(again.len(), 25);
    log.truncate(7).unwrap();
    assert_eq!(reopen(&disk).len(), 7);
    log.push(rec(100), 0).unwrap();
    drain(&mut log);
    let mut log2 = reopen(&disk);
    assert_eq!(log2.len(), 8);
    log2.seek(7).unwrap();
    assert_eq!(pop(&mut log2), rec(100));
    assert_eq!(log.truncate(9), Err(StorageError::OutOfRange { requested: 9, records: 8 }));
    log.truncate(0).unwrap();
    assert_eq!(reopen(&disk).len(), 0);
    let _ = pop(&mut again);
}

#[test]
fn bad_input_gives_typed_errors() {
    // Not a log.
    let disk = MemDisk::from_image(b"#!/bin/sh\necho hello\n".to_vec(), MemDiskConfig::default());
    assert_eq!(Log::open(disk.device(), &LogConfig::default()).err(), Some(StorageError::NotALog));
    let empty = MemDisk::new(MemDiskConfig::default());
    assert_eq!(Log::open(empty.device(), &LogConfig::default()).err(), Some(StorageError::NotALog));
    // A newer version.
    let mut img = vec![0u8; 4096];
    let mut sb = Superblock::new(1, 1 << 20);
    sb.version = VERSION + 1;
    sb.encode(&mut img);
    let newer = MemDisk::from_image(img, MemDiskConfig::default());
    assert_eq!(
        Log::open(newer.device(), &LogConfig::default()).err(),
        Some(StorageError::UnsupportedVersion { found: VERSION + 1, supported: VERSION })
    );
    // Too large, empty.
    let disk = MemDisk::new(MemDiskConfig::default());
    let cfg = LogConfig { max_record: 1000, ..LogConfig::default() };
    let mut log = Log::create(disk.device(), &cfg).unwrap();
    assert_eq!(log.push(Sga::from(vec![0u8; 1001]), 0), Err(StorageError::RecordTooLarge { len: 1001, max: 1000 }));
    assert_eq!(log.push(Sga::new(), 0), Err(StorageError::EmptyRecord));
    // The limit is the log's, from its superblock, whatever the opener asks.
    log.push(Sga::from(vec![1u8; 1000]), 0).unwrap();
    drain(&mut log);
    let mut log = reopen(&disk);
    assert_eq!(log.push(Sga::from(vec![0u8; 1001]), 0), Err(StorageError::RecordTooLarge { len: 1001, max: 1000 }));
}

#[test]
fn full_disk_fails_the_batch_and_keeps_the_log() {
    let disk = MemDisk::new(MemDiskConfig { capacity: 64 << 10, ..MemDiskConfig::default() });
    let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
    let mut ok = 0;
    let mut full = 0;
    for i in 0..40 {
        log.push(Sga::from(vec![i as u8; 3000]), i).unwrap();
        for e in drain(&mut log) {
            match e.result {
                Ok(_) => ok += 1,
                Err(StorageError::DiskFull) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(ok > 5 && full > 0, "ok {ok} full {full}");
    let log2 = reopen(&disk);
    assert_eq!(log2.len(), ok);
    // Space freed by a truncate is used again.
    log.truncate(2).unwrap();
    log.push(Sga::from(vec![7u8; 3000]), 0).unwrap();
    assert_eq!(drain(&mut log)[0].result, Ok(LogOutput::Pushed { seq: 2 }));
}

#[test]
fn read_only_disk_opens_read_only_and_refuses_writes() {
    let disk = MemDisk::new(MemDiskConfig::default());
    let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
    log.push(rec(1), 0).unwrap();
    drain(&mut log);
    let ro = MemDisk::from_image(disk.crash_image(0), MemDiskConfig { read_only: true, ..MemDiskConfig::default() });
    let mut log = Log::open(ro.device(), &LogConfig::default()).unwrap();
    assert!(log.read_only());
    assert_eq!(pop(&mut log), rec(1));
    assert_eq!(log.push(rec(2), 0), Err(StorageError::ReadOnly));
    assert_eq!(log.truncate(0), Err(StorageError::ReadOnly));
    // A disk that turns read-only under a writable log fails the batch with ReadOnly.
    let disk = MemDisk::new(MemDiskConfig::default());
    let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
    disk.set_read_only(true);
    log.push(rec(3), 5).unwrap();
    assert_eq!(drain(&mut log)[0].result, Err(StorageError::ReadOnly));
}

#[test]
fn a_corrupted_record_is_never_returned() {
    let disk = MemDisk::new(MemDiskConfig::default());
    let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
    log.push(rec(1), 0).unwrap();
    log.push(rec(2), 0).unwrap();
    drain(&mut log);
    // Flip a payload byte of record 0 behind the log's back (bit rot).
    let mut dev = disk.device();
    let mut buf = dev.alloc(4096);
    buf.as_mut_slice().copy_from_slice(&disk.contents()[4096..8192]);
    buf.as_mut_slice()[60] ^= 0xff;
    dev.submit(IoRequest::write(4096, buf, 1));
    dev.submit(IoRequest::flush(2));
    let mut sink = Vec::new();
    dev.poll(&mut sink);
    log.pop(1);
    assert_eq!(drain(&mut log)[0].result, Err(StorageError::CorruptRecord { seq: 0 }));
    // Recovery stops before it: the log is empty (record 1 follows a bad record).
    assert_eq!(reopen(&disk).len(), 0);
}

#[test]
fn completions_reported_out_of_order_lose_nothing() {
    // The disk executes requests in order but reports their completions shuffled and
    // spread over polls: a batch's flush can be reported before its write, a later
    // read before an earlier one. Several batches per seed; 40 seeds, or 1000 with
    // DEMI_STORAGE_LONG=1 (as tests/crash.rs).
    let seeds = if std::env::var("DEMI_STORAGE_LONG").is_ok_and(|v| v == "1") { 1000 } else { 40 };
    for seed in 0..seeds {
        let disk = MemDisk::new(MemDiskConfig::default());
        disk.scramble_completions(seed);
        let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
        let mut ev = Vec::new();
        let mut pushed = 0u32;
        for _ in 0..12 {
            for _ in 0..=(seed % 4) {
                log.push(rec(pushed), u64::from(pushed)).unwrap();
                pushed += 1;
            }
            log.poll(&mut ev);
        }
        log.drain(&mut ev).unwrap();
        ev.sort_by_key(|e| e.tag);
        assert_eq!(ev.len(), pushed as usize, "seed {seed}: every push completes once");
        for (i, e) in ev.iter().enumerate() {
            assert_eq!(e.tag, i as u64, "seed {seed}");
            assert_eq!(e.result, Ok(LogOutput::Pushed { seq: i as u64 }), "seed {seed}");
        }
        assert!(log.stats().batches > 1, "seed {seed}: more than one batch in flight over the run");
        // Durable: what survives a crash now (unflushed writes lost) holds every
        // record; recovery and reads on a scrambling disk too.
        let image = MemDisk::from_image(disk.crash_image(seed), MemDiskConfig::default());
        image.scramble_completions(seed ^ 0xabcd);
        let mut again = Log::open(image.device(), &LogConfig::default()).unwrap();
        assert_eq!(again.len(), u64::from(pushed), "seed {seed}");
        for i in 0..pushed {
            again.pop(u64::from(i));
        }
        let mut reads = Vec::new();
        again.drain(&mut reads).unwrap();
        reads.sort_by_key(|e| e.tag);
        assert_eq!(reads.len(), pushed as usize, "seed {seed}");
        for e in reads {
            match e.result {
                Ok(LogOutput::Popped(s)) => assert_eq!(s, rec(e.tag as u32), "seed {seed}: record {}", e.tag),
                other => panic!("seed {seed}: pop {} gave {other:?}", e.tag),
            }
        }
    }
}

#[test]
fn a_full_disk_reports_disk_full_whatever_order_completions_come_in() {
    // A failed write cancels its linked flush; when the flush's completion is
    // reported first, the batch must still fail with the write's error.
    for seed in 0..40u64 {
        let disk = MemDisk::new(MemDiskConfig { capacity: 64 << 10, ..MemDiskConfig::default() });
        disk.scramble_completions(seed);
        let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
        let (mut ok, mut full) = (0, 0);
        for i in 0..40 {
            log.push(Sga::from(vec![i as u8; 3000]), i).unwrap();
            for ev in drain(&mut log) {
                match ev.result {
                    Ok(_) => ok += 1,
                    Err(StorageError::DiskFull) => full += 1,
                    Err(e) => panic!("seed {seed}: push {} failed with {e}, not DiskFull", ev.tag),
                }
            }
        }
        assert!(ok > 5 && full > 0, "seed {seed}: ok {ok} full {full}");
        assert_eq!(reopen(&disk).len(), ok, "seed {seed}: every acknowledged push is durable");
    }
}
