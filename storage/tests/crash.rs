//! Crash tests on the memory backend.
//!
//! A deterministic workload (pushes in groups of varying size, multi-segment records
//! of varying length, pops, a truncate now and then) runs against a simulated disk
//! that loses power after `k` requests, for every `k` the workload reaches, each with
//! several seeds that choose which unflushed writes are lost, kept or torn sector by
//! sector. After every crash the log must reopen, hold every push that completed (in
//! order, byte for byte), return no record that is not exactly something that was
//! pushed, and accept new pushes that survive another reopen.
//!
//! `DEMI_STORAGE_LONG=1` runs a longer workload with more seeds.

use bytes::Bytes;
use demi_runtime::Sga;
use demi_storage::{Log, LogConfig, LogEvent, LogOutput, MemDevice, MemDisk, MemDiskConfig, StorageError};

const POP_TAG: u64 = 1 << 40;

/// Small blocks and sectors keep the images small (the matrix replays the workload
/// at every point) and make torn writes finer than a block.
fn disk_config() -> MemDiskConfig {
    MemDiskConfig { block_size: 512, sector_size: 128, ..MemDiskConfig::default() }
}

fn log_config() -> LogConfig {
    LogConfig { block_size: 512, preallocate: 4096, ..LogConfig::default() }
}

fn long() -> bool {
    std::env::var("DEMI_STORAGE_LONG").map(|v| v == "1").unwrap_or(false)
}

/// The record pushed with id `id`: self-describing, so any record read back can be
/// checked on its own.
fn payload(id: u64) -> Sga {
    let len = 8 + (id * 131 % 200) as usize + if id.is_multiple_of(41) { 6000 } else { 0 };
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&id.to_le_bytes());
    for (j, b) in v.iter_mut().enumerate().skip(8) {
        *b = (id as usize * 7 + j * 13) as u8;
    }
    let b = Bytes::from(v);
    match id % 3 {
        0 => Sga::from_segments([b]),
        1 => Sga::from_segments([b.slice(..len / 2), b.slice(len / 2..)]),
        _ => Sga::from_segments([b.slice(..3), Bytes::new(), b.slice(3..)]),
    }
}

/// The id of a record that is exactly one of the pushed payloads.
fn check_payload(sga: &Sga) -> u64 {
    let all = sga.to_bytes();
    assert!(all.len() >= 8, "record too short to be a pushed payload");
    let id = u64::from_le_bytes(all[..8].try_into().unwrap());
    assert_eq!(*sga, payload(id), "record is not exactly the payload pushed as id {id}");
    id
}

struct Model {
    /// Ids of the records known durable, by sequence number.
    acked: Vec<u64>,
    next_id: u64,
    /// A truncate to this length was started and did not return.
    truncate_in_flight: Option<usize>,
}

fn apply(model: &mut Model, events: &mut Vec<LogEvent>) {
    for e in events.drain(..) {
        match e.result {
            Ok(LogOutput::Pushed { seq }) => {
                assert_eq!(seq as usize, model.acked.len(), "acks arrive in sequence order");
                model.acked.push(e.tag);
            }
            Ok(LogOutput::Popped(sga)) => {
                assert!(e.tag & POP_TAG != 0);
                if !sga.is_empty() {
                    check_payload(&sga);
                }
            }
            Err(err) => panic!("operation {} failed before the crash: {err}", e.tag),
        }
    }
}

/// Runs the workload until it ends or the disk crashes; returns the model.
fn workload(disk: &MemDisk, log: &mut Log<MemDevice>, rounds: usize) -> Model {
    let mut model = Model { acked: Vec::new(), next_id: 0, truncate_in_flight: None };
    let mut events = Vec::new();
    const GROUPS: [u64; 8] = [1, 1, 2, 5, 8, 3, 1, 13];
    for r in 0..rounds {
        for _ in 0..GROUPS[r % GROUPS.len()] {
            let id = model.next_id;
            model.next_id += 1;
            log.push(payload(id), id).unwrap();
        }
        if r % 5 == 3 {
            log.pop(POP_TAG | r as u64);
        }
        if r % 7 == 6 {
            let p = log.position();
            log.seek(p / 2).unwrap();
        }
        log.poll(&mut events);
        apply(&mut model, &mut events);
        if disk.crashed() {
            return model;
        }
        if r % 40 == 39 && log.len() >= 2 {
            let target = log.len() as usize - 2;
            model.truncate_in_flight = Some(target);
            let r = log.truncate(target as u64);
            // truncate drains the batch in flight first: its acks come with the next poll.
            log.poll(&mut events);
            apply(&mut model, &mut events);
            match r {
                Ok(()) => {
                    model.acked.truncate(target);
                    model.truncate_in_flight = None;
                }
                Err(StorageError::Io(_)) if disk.crashed() => return model,
                Err(e) => panic!("truncate failed: {e}"),
            }
        }
    }
    if log.drain(&mut events).is_ok() {
        apply(&mut model, &mut events);
    }
    model
}

fn read_all(log: &mut Log<MemDevice>) -> Vec<Sga> {
    let mut out = Vec::new();
    let mut events = Vec::new();
    log.seek(0).unwrap();
    loop {
        for _ in 0..64 {
            log.pop(0);
        }
        log.drain(&mut events).unwrap();
        let mut end = false;
        for e in events.drain(..) {
            match e.result {
                Ok(LogOutput::Popped(sga)) if sga.is_empty() => end = true,
                Ok(LogOutput::Popped(sga)) => out.push(sga),
                other => panic!("pop after recovery: {other:?}"),
            }
        }
        if end {
            return out;
        }
    }
}

fn verify_after_crash(image: Vec<u8>, model: &Model, what: &str) {
    let cfg = disk_config();
    let disk = MemDisk::from_image(image, cfg.clone());
    let mut log = Log::open(disk.device(), &log_config()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let records = read_all(&mut log);
    let guaranteed = match model.truncate_in_flight {
        Some(t) => t.min(model.acked.len()),
        None => model.acked.len(),
    };
    assert!(records.len() >= guaranteed, "{what}: {} records recovered, {} were acknowledged", records.len(), guaranteed);
    for (seq, sga) in records.iter().enumerate() {
        let id = check_payload(sga);
        if seq < guaranteed {
            assert_eq!(id, model.acked[seq], "{what}: record {seq} is not the acknowledged one");
        }
        assert!(id < model.next_id, "{what}: record {seq} was never pushed");
    }
    // The recovered log takes new records, and they survive a clean reopen.
    let n = records.len();
    let mut events = Vec::new();
    for i in 0..3 {
        log.push(payload(1_000_000 + i), i).unwrap();
    }
    log.drain(&mut events).unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.result, Ok(LogOutput::Pushed { seq: (n + i) as u64 }), "{what}");
    }
    let image = disk.crash_image(0);
    let mut log = Log::open(MemDisk::from_image(image, cfg).device(), &log_config()).unwrap();
    let again = read_all(&mut log);
    assert_eq!(again.len(), n + 3, "{what}: appends after recovery were lost");
    assert_eq!(&again[..n], &records[..], "{what}: recovered records changed");
}

#[test]
fn every_crash_point_recovers_every_completed_push() {
    let (rounds, seeds) = if long() { (1200, 6) } else { (450, 2) };
    // A clean run tells how many device requests the workload makes.
    let disk = MemDisk::new(disk_config());
    let mut log = Log::create(disk.device(), &log_config()).unwrap();
    let base = disk.ops();
    let clean = workload(&disk, &mut log, rounds);
    let total = disk.ops() - base;
    assert!(clean.acked.len() > 300, "workload too small: {}", clean.acked.len());
    verify_after_crash(disk.crash_image(0), &clean, "clean run");

    let mut scenarios = 0;
    for k in 0..total {
        for seed in 0..seeds {
            let disk = MemDisk::new(disk_config());
            let mut log = Log::create(disk.device(), &log_config()).unwrap();
            disk.crash_after(disk.ops() + k);
            let model = workload(&disk, &mut log, rounds);
            assert!(disk.crashed(), "crash point {k} not reached");
            let what = format!("crash after {k} requests, seed {seed}");
            verify_after_crash(disk.crash_image(seed * 7919 + k), &model, &what);
            scenarios += 1;
        }
    }
    println!("{scenarios} crash scenarios over {total} crash points");
    assert!(total >= 1000, "only {total} crash points ({scenarios} scenarios)");
}

#[test]
fn crash_during_create_leaves_no_log_or_an_empty_one() {
    for k in 0..2 {
        for seed in 0..4 {
            let disk = MemDisk::new(disk_config());
            disk.crash_after(k);
            assert!(Log::create(disk.device(), &log_config()).is_err());
            let image = disk.crash_image(seed);
            match Log::open(MemDisk::from_image(image, disk_config()).device(), &log_config()) {
                Ok(log) => assert_eq!(log.len(), 0),
                Err(e) => assert!(matches!(e, StorageError::NotALog | StorageError::CorruptSuperblock), "{e}"),
            }
        }
    }
}

#[test]
fn crash_during_reopen_keeps_the_log() {
    // Reopening rewrites the superblock (epoch); a crash there must not lose anything.
    let disk = MemDisk::new(disk_config());
    let mut log = Log::create(disk.device(), &log_config()).unwrap();
    let model = workload(&disk, &mut log, 30);
    let image = disk.crash_image(0);
    for k in 0..8 {
        for seed in 0..4 {
            let d = MemDisk::from_image(image.clone(), disk_config());
            d.crash_after(k);
            let _ = Log::open(d.device(), &log_config());
            verify_after_crash(d.crash_image(seed + 1), &model, &format!("reopen crash {k}/{seed}"));
        }
    }
}
