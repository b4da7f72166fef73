//! DPDK benchmark: 64-byte UDP datagrams per second through demi's stack over DPDK,
//! against the kernel's UDP over loopback, measured in the same run.
//!
//! Run with `cargo bench --features dpdk --bench dpdk` as root (a few seconds);
//! `DEMI_BENCH_QUICK=1` shortens every phase (the CI smoke check: its figures mean
//! little). Without root, or when EAL cannot start, it prints `skipped: <why>`.
//!
//! Output: a header line describing the set-up, then
//! `udp_64B_pps: demi_dpdk_ring <pps>, kernel_udp_loopback <pps>, ratio_vs_kernel <x>`
//! where the ratio reads "how many times more datagrams per second demi moved"
//! (`demi / kernel`, > 1: demi better), and a line with the losses seen.
//!
//! Set-up:
//! - demi: two `LibOs` on one runtime thread, each on one port of a DPDK ring pair
//!   (`DpdkDevice::ring_pair`: the ring PMD joins the two ports back to back in
//!   memory, no NIC and no kernel; EAL without hugepages, `-l 0`). Every frame goes
//!   the whole device path: the stack's frame copied into a transmit mbuf,
//!   `rte_eth_tx_burst`, `rte_eth_rx_burst`, the mbuf handed to the other stack.
//!   Software checksums (the ring PMD offers no offload).
//! - kernel: two `std::net::UdpSocket`s on 127.0.0.1 in one thread, blocking.
//! - Both do the same loop: send up to 32 datagrams while fewer than 256 are in
//!   flight (sent and not yet received), then receive one; datagrams received during
//!   the measured phase are counted. demi uses the queue API synchronously:
//!   `pushto` + `wait`, `pop` + `wait`; the kernel side `send` and `recv` syscalls.
//! - Per run: a warm-up phase, then the measured phase, fresh sockets per run. Runs
//!   alternate which side goes first; the median over runs is reported. Losses: the
//!   kernel drops when the receiving socket's buffer fills; demi's first run loses
//!   the datagrams sent while ARP resolves beyond what the stack holds for it.

use demi_libos::device::dpdk::{DpdkConfig, DpdkDevice};
use demi_libos::{Config, Domain, LibOs, LibOsKind, QDesc, QValue, Sga, SocketType};
use demi_runtime::Runtime;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 64;
const WINDOW: u64 = 256;
const BURST: u64 = 32;
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 110, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 110, 2);

struct Phase {
    warmup: Duration,
    measure: Duration,
}

/// Counts of one run: datagrams received while measuring, over how long; losses.
struct Run {
    pps: f64,
    lost: u64,
}

fn main() {
    let quick = std::env::var("DEMI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let phase = if quick {
        Phase { warmup: Duration::from_millis(50), measure: Duration::from_millis(250) }
    } else {
        Phase { warmup: Duration::from_millis(300), measure: Duration::from_secs(2) }
    };
    let reps = if quick { 1 } else { 3 };

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: udp_64B_pps over DPDK: not root (EAL without hugepages needs root here)");
        return;
    }
    let prefix = format!("ddkbench{}", std::process::id());
    let _cleanup = RunDir(prefix.clone());
    let eal = format!("--no-huge -m 512 --no-shconf --no-pci --no-telemetry -l 0 --file-prefix={prefix} --log-level=lib.eal:warning");
    let (a, b) = match DpdkDevice::ring_pair(&DpdkConfig::new(DpdkConfig::parse_eal_args(&eal)), "ddkb") {
        Ok(pair) => pair,
        Err(e) => {
            println!("skipped: udp_64B_pps over DPDK: {e}");
            return;
        }
    };
    let rt = Runtime::new().expect("runtime");
    let host = |ip: Ipv4Addr| {
        let mut c = Config::new(LibOsKind::Memory);
        c.net.ip = Some(ip);
        c
    };
    let (la, lb) = rt.block_on(async {
        (
            LibOs::with_device(&host(A_IP), Box::new(a)).expect("libOS A"),
            LibOs::with_device(&host(B_IP), Box::new(b)).expect("libOS B"),
        )
    });

    println!(
        "dpdk bench: {PAYLOAD}-byte UDP payloads, window {WINDOW}, {} ms measured per run, {reps} run(s); demi over a DPDK ring pair (net_ring, one thread, software checksums) vs kernel UDP over loopback (one thread)",
        phase.measure.as_millis()
    );
    let (mut demi, mut kernel) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let port = 9000 + rep as u16;
        if rep % 2 == 0 {
            demi.push(run_demi(&la, &lb, port, &phase));
            kernel.push(run_kernel(&phase));
        } else {
            kernel.push(run_kernel(&phase));
            demi.push(run_demi(&la, &lb, port, &phase));
        }
    }
    let (d, k) = (median(&demi), median(&kernel));
    println!("udp_64B_pps: demi_dpdk_ring {:.0}, kernel_udp_loopback {:.0}, ratio_vs_kernel {:.2}", d, k, d / k);
    println!(
        "udp_64B_lost: demi_dpdk_ring {}, kernel_udp_loopback {}",
        demi.iter().map(|r| r.lost).sum::<u64>(),
        kernel.iter().map(|r| r.lost).sum::<u64>()
    );
    drop((la, lb));
    drop(rt);
}

fn median(runs: &[Run]) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(|r| r.pps).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The shared loop: `send` one datagram, `recv` one (false: nothing came in time).
fn drive(phase: &Phase, mut send: impl FnMut(), mut recv: impl FnMut() -> bool) -> Run {
    let (mut sent, mut received, mut lost) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut measuring: Option<(Instant, u64)> = None;
    loop {
        let now = Instant::now();
        if measuring.is_none() && now - start >= phase.warmup {
            measuring = Some((now, received));
        }
        if let Some((t0, r0)) = measuring {
            if now - t0 >= phase.measure {
                let pps = (received - r0) as f64 / (now - t0).as_secs_f64();
                // Let the datagrams in flight arrive (or count them lost).
                while received + lost < sent {
                    if recv() {
                        received += 1;
                    } else {
                        lost = sent - received;
                    }
                }
                return Run { pps, lost };
            }
        }
        let mut burst = 0;
        while sent - received - lost < WINDOW && burst < BURST {
            send();
            sent += 1;
            burst += 1;
        }
        if recv() {
            received += 1;
        } else {
            // Nothing within the timeout: whatever is in flight is lost.
            lost = sent - received;
        }
    }
}

fn run_demi(la: &LibOs, lb: &LibOs, port: u16, phase: &Phase) -> Run {
    let wait = Some(Duration::from_millis(200));
    let ua = udp(la, SocketAddr::from((A_IP, port)));
    let ub = udp(lb, SocketAddr::from((B_IP, port)));
    let dst = SocketAddr::from((B_IP, port));
    let payload = Sga::from(vec![0x5au8; PAYLOAD]);
    let run = drive(
        phase,
        || {
            let qt = la.pushto(ua, payload.clone(), dst).expect("pushto");
            la.wait(qt, wait).expect("push completes").ok().expect("push");
        },
        || {
            let qt = lb.pop(ub).expect("pop");
            match lb.wait(qt, wait) {
                Ok(r) => matches!(r.value, Ok(QValue::Popped(ref sga)) if sga.len() == PAYLOAD),
                Err(_) => false, // timed out; the pop is cancelled by close below
            }
        },
    );
    la.close(ua).expect("close");
    lb.close(ub).expect("close");
    run
}

fn udp(libos: &LibOs, addr: SocketAddr) -> QDesc {
    let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).expect("socket");
    libos.bind(qd, addr).expect("bind");
    qd
}

fn run_kernel(phase: &Phase) -> Run {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    a.connect(b.local_addr().unwrap()).expect("connect");
    b.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let payload = [0x5au8; PAYLOAD];
    let mut buf = [0u8; 2048];
    drive(
        phase,
        || {
            a.send(&payload).expect("send");
        },
        || b.recv(&mut buf).is_ok_and(|n| n == PAYLOAD),
    )
}

/// EAL's runtime directory (`/var/run/dpdk/NAME`), removed at the end.
struct RunDir(String);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.0));
        let _ = std::fs::remove_dir("/var/run/dpdk");
    }
}
