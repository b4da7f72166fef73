//! Storage benchmark: demi's log engine (through the queue API, io_uring with
//! O_DIRECT) against fio and `std::fs`, on the same file system, in one run.
//!
//! Run with `cargo bench --bench storage` (about a minute); `DEMI_BENCH_QUICK=1`
//! shrinks every count so the run takes a few seconds (the CI smoke check; its
//! figures mean little). Case names given as arguments select cases
//! (`cargo bench --bench storage -- randread`). fio must be installed
//! (`scripts/test` installs it); without it the fio columns are skipped.
//!
//! Output: a header line (directory, file-system type, mode), then one line per case:
//! `<case>: demi <v> <unit>, fio <v> <unit>[, std_fs <v> <unit>], ratio_vs_fio <r>[, ratio_vs_std_fs <r>]`,
//! where a ratio reads "how many times better demi is" (`demi / other`, both
//! throughputs), then a line per acceptance bar saying whether it is met.
//!
//! Files live in a directory under cargo's target directory (`CARGO_TARGET_TMPDIR`),
//! a real file system: O_DIRECT needs ext4, xfs or similar (not tmpfs). The header
//! prints the file system's type.
//!
//! Cases:
//! - `append_4KiB_p1`, `append_4KiB_p32`: durable appends of 4 KiB records by 1 and
//!   by 32 concurrent pushers. demi: `push` on a log queue (completes when durable;
//!   concurrent pushes share flushes: group commit); one task per pusher on one
//!   runtime. fio: `--rw=write --bs=4k --fdatasync=1 --ioengine=sync` with
//!   `--numjobs` = pushers (a file each). std::fs: one file opened with `O_APPEND`,
//!   `write_all` of the record then `sync_data` (fdatasync), one thread per pusher.
//!   Unit: records (4 KiB writes) per second.
//! - `randread_4KiB_d1`, `randread_4KiB_d32`: random reads at queue depth 1 and 32
//!   over a prefilled log file. demi: `seek` to a random record then `pop`, by 1 and
//!   32 tasks; records carry 4052 payload bytes so that, with the 44-byte header,
//!   each fills exactly one 4 KiB block and a pop reads 4 KiB, like fio. fio:
//!   `--rw=randread --bs=4k --direct=1 --ioengine=io_uring --iodepth=<depth>` over
//!   the same file. Unit: reads per second.
//!
//! Per case: `reps` runs of each side, rotating the order; the median is reported,
//! and for the read cases a line with each side's spread (min..max) and the ratio of
//! demi to fio within each rep. `DEMI_BENCH_CPU=1` also prints the CPU share of
//! demi's runs (and of the device's), and for reads the CPU time per read;
//! `DEMI_BENCH_SIDES=demi` (or `device`, `fio`, comma-separated) runs only those
//! sides of the read cases, e.g. under `perf stat` or `strace -c`;
//! `DEMI_BENCH_SUBMIT_BATCH=<n>` makes demi's reads go up to n per `io_uring_enter`
//! (default 1).

use demi::{Bytes, LibOs, Runtime, Sga};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

struct Config {
    quick: bool,
    reps: usize,
    filters: Vec<String>,
    dir: PathBuf,
    fio: bool,
    /// Sides of the read cases to run (`DEMI_BENCH_SIDES=demi,device,fio`; all by
    /// default): for profiling one side under `perf` or `strace`.
    sides: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let filters = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage-bench");
        std::fs::create_dir_all(&dir).expect("bench directory");
        let fio = Command::new("fio").arg("--version").output().is_ok_and(|o| o.status.success());
        let sides = std::env::var("DEMI_BENCH_SIDES")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Config { quick, reps: if quick { 1 } else { 7 }, filters, dir, fio, sides }
    }

    fn runs_side(&self, side: &str) -> bool {
        self.sides.is_empty() || self.sides.iter().any(|s| s == side)
    }

    fn wants(&self, case: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| case.contains(f.as_str()))
    }

    /// Records appended per run.
    fn appends(&self, pushers: usize) -> usize {
        match (self.quick, pushers) {
            (true, 1) => 100,
            (true, _) => 1600,
            (false, 1) => 1500,
            (false, _) => 24000,
        }
    }

    fn read_secs(&self) -> f64 {
        if self.quick {
            0.5
        } else {
            1.5
        }
    }

    fn read_records(&self) -> usize {
        if self.quick {
            4096
        } else {
            32768
        }
    }
}

fn fs_type(dir: &Path) -> &'static str {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statfs fills the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown";
    }
    match st.f_type as i64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs (O_DIRECT unsupported: results invalid)",
        0x794C_7630 => "overlayfs",
        _ => "other",
    }
}

/// `min..max` of the runs (`-` if none ran).
fn range(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "-".into()
    } else {
        format!("{min:.0}..{max:.0}")
    }
}

fn median_or_nan(v: Vec<f64>) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        median(v)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time (user + system) this process used, minus `since`.
fn cpu_secs_since(since: f64) -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime) - since
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---------------------------------------------------------------------------------
// demi
// ---------------------------------------------------------------------------------

fn demi_append(path: &Path, pushers: usize, records: usize) -> f64 {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let libos = LibOs::posix().unwrap();
        let qd = libos.creat(path).unwrap();
        let payload = Bytes::from(vec![0xA5u8; 4096]);
        let per = records / pushers;
        let cpu0 = cpu_secs_since(0.0);
        let start = Instant::now();
        let tasks: Vec<_> = (0..pushers)
            .map(|_| {
                let l = libos.clone();
                let p = payload.clone();
                demi::spawn(async move {
                    for _ in 0..per {
                        l.push(qd, Sga::from_segments([p.clone()])).unwrap().await.unwrap().ok().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(libos.log_len(qd).unwrap(), (per * pushers) as u64);
        if std::env::var("DEMI_BENCH_CPU").is_ok() {
            eprintln!("demi append p{pushers}: cpu {:.0}% of one core", cpu_secs_since(cpu0) / secs * 100.0);
        }
        libos.close(qd).unwrap();
        (per * pushers) as f64 / secs
    })
}

/// Payload that makes a record fill exactly one 4 KiB block.
const READ_PAYLOAD: usize = 4096 - demi::storage::format::RECORD_HEADER - 4;

fn demi_prefill(path: &Path, records: usize) {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let libos = LibOs::posix().unwrap();
        let qd = libos.creat(path).unwrap();
        let mut qts = Vec::new();
        for i in 0..records {
            qts.push(libos.push(qd, Sga::from(vec![i as u8; READ_PAYLOAD])).unwrap());
            if qts.len() == 256 {
                for qt in qts.drain(..) {
                    qt.await.unwrap().ok().unwrap();
                }
            }
        }
        for qt in qts {
            qt.await.unwrap().ok().unwrap();
        }
        libos.close(qd).unwrap();
    });
}

/// The io_uring settings of the read cases: the defaults, except that
/// `DEMI_BENCH_SUBMIT_BATCH=<n>` sets how many requests go per `io_uring_enter` (to
/// compare with the default of one).
fn uring_config() -> demi::storage::UringConfig {
    let mut c = demi::storage::UringConfig::default();
    if let Some(n) = std::env::var("DEMI_BENCH_SUBMIT_BATCH").ok().and_then(|v| v.parse().ok()) {
        c.submit_batch = n;
    }
    c
}

fn demi_randread(path: &Path, depth: usize, secs: f64) -> f64 {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let libos = LibOs::posix().unwrap();
        let opts = demi::StorageOptions { uring: uring_config(), ..Default::default() };
        let qd = libos.open_with(path, demi::OpenMode::Existing, &opts).unwrap();
        let n = libos.log_len(qd).unwrap();
        let count = Rc::new(std::cell::Cell::new(0u64));
        let cpu0 = cpu_secs_since(0.0);
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..depth)
            .map(|t| {
                let l = libos.clone();
                let count = count.clone();
                demi::spawn(async move {
                    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x2545_F491));
                    while Instant::now() < until {
                        let r = rng.next() % n;
                        l.seek(qd, r).unwrap();
                        let s = l.pop(qd).unwrap().await.unwrap().into_sga().unwrap();
                        debug_assert_eq!(s.len(), READ_PAYLOAD);
                        count.set(count.get() + 1);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        libos.close(qd).unwrap();
        if std::env::var("DEMI_BENCH_CPU").is_ok() {
            let cpu = cpu_secs_since(cpu0);
            eprintln!(
                "demi randread d{depth}: cpu {:.0}% of one core, {:.2} us per read",
                cpu / secs * 100.0,
                cpu * 1e6 / count.get() as f64
            );
        }
        count.get() as f64 / secs
    })
}

/// The device layer alone: `UringDevice` reads at `depth`, reaped with `wait` in a
/// plain loop (no runtime, no log). Shows what the queue API adds on top.
fn device_randread(path: &Path, depth: usize, secs: f64) -> f64 {
    use demi::storage::{BlockDevice, IoRequest, OpenMode, UringDevice};
    let mut dev = UringDevice::open(path, OpenMode::Existing, &uring_config()).unwrap();
    let blocks = std::fs::metadata(path).unwrap().len() / 4096;
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for t in 0..depth {
        let b = dev.alloc(4096);
        dev.submit(IoRequest::read(rng.next() % blocks * 4096, b, t as u64));
    }
    let cpu0 = cpu_secs_since(0.0);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut done = 0u64;
    let mut out = Vec::new();
    while Instant::now() < until {
        dev.wait(&mut out);
        for c in out.drain(..) {
            c.result.unwrap();
            done += 1;
            dev.submit(IoRequest::read(rng.next() % blocks * 4096, c.buf.unwrap(), c.tag));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if std::env::var("DEMI_BENCH_CPU").is_ok() {
        let cpu = cpu_secs_since(cpu0);
        eprintln!(
            "device randread d{depth}: cpu {:.0}% of one core, {:.2} us per read",
            cpu / secs * 100.0,
            cpu * 1e6 / done as f64
        );
    }
    while dev.pending() > 0 {
        dev.wait(&mut out);
        out.clear();
    }
    done as f64 / secs
}

// ---------------------------------------------------------------------------------
// std::fs and fio
// ---------------------------------------------------------------------------------

fn std_append(path: &Path, pushers: usize, records: usize) -> f64 {
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new().create(true).append(true).mode(0o644).open(path).unwrap();
    let payload = vec![0xA5u8; 4096];
    let per = records / pushers;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..pushers {
            s.spawn(|| {
                let mut f = &file;
                for _ in 0..per {
                    f.write_all(&payload).unwrap();
                    file.sync_data().unwrap();
                }
            });
        }
    });
    (per * pushers) as f64 / start.elapsed().as_secs_f64()
}

/// Runs fio with `args`; returns (read IOPS, write IOPS) from its terse output.
fn fio(args: &[String]) -> Option<(f64, f64)> {
    let out = Command::new("fio")
        .args(["--output-format=terse", "--terse-version=3", "--group_reporting"])
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("3;"))?;
    let f: Vec<&str> = line.split(';').collect();
    Some((f.get(7)?.parse().ok()?, f.get(48)?.parse().ok()?))
}

fn fio_append(dir: &Path, pushers: usize, records: usize) -> Option<f64> {
    let per = records / pushers;
    let sub = dir.join("fio-append");
    let _ = std::fs::remove_dir_all(&sub);
    std::fs::create_dir_all(&sub).ok()?;
    let args = vec![
        "--name=append".to_string(),
        format!("--directory={}", sub.display()),
        "--rw=write".into(),
        "--bs=4k".into(),
        "--fdatasync=1".into(),
        "--ioengine=sync".into(),
        format!("--numjobs={pushers}"),
        format!("--size={}", per * 4096),
    ];
    let r = fio(&args).map(|(_, w)| w);
    let _ = std::fs::remove_dir_all(&sub);
    r
}

fn fio_randread(path: &Path, depth: usize, secs: f64) -> Option<f64> {
    let size = std::fs::metadata(path).ok()?.len() / 4096 * 4096;
    let args = vec![
        "--name=randread".to_string(),
        format!("--filename={}", path.display()),
        "--rw=randread".into(),
        "--bs=4k".into(),
        "--direct=1".into(),
        "--ioengine=io_uring".into(),
        format!("--iodepth={depth}"),
        format!("--size={size}"),
        format!("--runtime={secs}"),
        "--time_based".into(),
        "--norandommap".into(),
    ];
    fio(&args).map(|(r, _)| r)
}

// ---------------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------------

fn fmt_ratio(demi: f64, other: Option<f64>) -> String {
    match other {
        Some(o) if o > 0.0 => format!("{:.2}", demi / o),
        _ => "n/a".into(),
    }
}

fn fmt_val(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) => format!("{v:.0} {unit}"),
        None => "n/a".into(),
    }
}

fn main() {
    let cfg = Config::from_env();
    println!(
        "storage bench: dir={} fs={} fio={} reps={}{}; ratio = demi/other (> 1: demi better)",
        cfg.dir.display(),
        fs_type(&cfg.dir),
        if cfg.fio { "yes" } else { "missing" },
        cfg.reps,
        if cfg.quick { " [DEMI_BENCH_QUICK]" } else { "" }
    );
    let mut bars = Vec::new();

    for pushers in [1usize, 32] {
        let case = format!("append_4KiB_p{pushers}");
        if !cfg.wants(&case) {
            continue;
        }
        let records = cfg.appends(pushers);
        let (mut d, mut f, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..cfg.reps {
            let demi_path = cfg.dir.join("demi-append.log");
            let std_path = cfg.dir.join("std-append.dat");
            let run_demi = |d: &mut Vec<f64>| d.push(demi_append(&demi_path, pushers, records));
            if rep % 2 == 0 {
                run_demi(&mut d);
                s.push(std_append(&std_path, pushers, records));
            } else {
                s.push(std_append(&std_path, pushers, records));
                run_demi(&mut d);
            }
            if cfg.fio {
                if let Some(v) = fio_append(&cfg.dir, pushers, records) {
                    f.push(v);
                }
            }
            let _ = std::fs::remove_file(&demi_path);
            let _ = std::fs::remove_file(&std_path);
        }
        let d = median(d);
        let f = (!f.is_empty()).then(|| median(f));
        let s = median(s);
        println!(
            "{case}: demi {d:.0} rec/s, fio {}, std_fs {s:.0} rec/s, ratio_vs_fio {}, ratio_vs_std_fs {:.2}",
            fmt_val(f, "rec/s"),
            fmt_ratio(d, f),
            d / s
        );
        if pushers == 32 {
            bars.push(("append_4KiB_p32 >= 2x std_fs", d / s >= 2.0, format!("{:.2}", d / s)));
        }
    }

    let read_path = cfg.dir.join("demi-read.log");
    // Prefill when any read case runs (a filter naming one case must still get its file).
    if [1, 32].iter().any(|d| cfg.wants(&format!("randread_4KiB_d{d}"))) {
        demi_prefill(&read_path, cfg.read_records());
    }
    for depth in [1usize, 32] {
        let case = format!("randread_4KiB_d{depth}");
        if !cfg.wants(&case) {
            continue;
        }
        let (mut d, mut f, mut dv) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..cfg.reps {
            // Rotate the order of the three sides from one rep to the next.
            for side in 0..3 {
                match (side + rep) % 3 {
                    0 if cfg.runs_side("demi") => d.push(demi_randread(&read_path, depth, cfg.read_secs())),
                    1 if cfg.runs_side("device") => dv.push(device_randread(&read_path, depth, cfg.read_secs())),
                    0 | 1 => {}
                    _ if cfg.fio && cfg.runs_side("fio") => {
                        if let Some(v) = fio_randread(&read_path, depth, cfg.read_secs()) {
                            f.push(v);
                        }
                    }
                    _ => {}
                }
            }
        }
        // The same rep's demi and fio runs are seconds apart: their ratio is less
        // exposed to the machine's drift than the ratio of the medians.
        let paired: Vec<f64> = if d.len() == f.len() { d.iter().zip(&f).map(|(a, b)| a / b).collect() } else { Vec::new() };
        let spread = format!(
            "spread demi {}, device {}, fio {}; per-rep demi/fio {}",
            range(&d),
            range(&dv),
            range(&f),
            if paired.is_empty() {
                "-".to_string()
            } else {
                let mut p = paired.clone();
                p.sort_by(|a, b| a.partial_cmp(b).unwrap());
                format!("{:.2} (median) in {:.2}..{:.2}", median(paired), p[0], p[p.len() - 1])
            }
        );
        let d = median_or_nan(d);
        let dv = median_or_nan(dv);
        let f = (!f.is_empty()).then(|| median(f));
        println!("{case}: demi {d:.0} IOPS, fio {}, ratio_vs_fio {}", fmt_val(f, "IOPS"), fmt_ratio(d, f));
        println!("{case}_device: demi_device {dv:.0} IOPS, fio {}, ratio_vs_fio {}", fmt_val(f, "IOPS"), fmt_ratio(dv, f));
        println!("{case} {spread}");
        if depth == 32 && !d.is_nan() {
            if let Some(f) = f {
                bars.push(("randread_4KiB_d32 >= 0.9x fio", d / f >= 0.9, format!("{:.2}", d / f)));
            }
        }
    }
    let _ = std::fs::remove_file(&read_path);
    for (bar, met, ratio) in bars {
        println!("bar {bar}: {} (ratio {ratio})", if met { "met" } else { "NOT met" });
    }
}
