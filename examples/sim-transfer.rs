//! # sim-transfer — demi's TCP through the deterministic network simulator
//!
//! Sends `--bytes` bytes over TCP between two instances of demi's user-level stack,
//! joined by a simulated link that loses, reorders, duplicates, corrupts and delays
//! frames with the given probabilities, all on a virtual clock and driven by one
//! seed: the same flags always give the same run, byte for byte.
//!
//! ```text
//! cargo run --release --example sim-transfer -- --bytes 10000000 --loss 0.05 --reorder 0.01 --seed 7
//! ```
//!
//! The last line is
//! `transfer: bytes=<n> ok=<true|false> sha256_match=<true|false> retransmits=<n> virtual_ms=<n> goodput_mbps=<x>`;
//! the exit status is 1 if the transfer failed or stalled, 2 for bad flags.

use demi::net_stack::sim::transfer::{self, pattern, TransferConfig};
use demi::net_stack::sim::LinkConfig;
use demi::net_stack::tcp::{CongestionControl, TcpConfig};
use sha2::{Digest, Sha256};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: sim-transfer [flags]

  --bytes N          bytes to send (default 10000000)
  --loss P           probability a frame is lost (0..1, default 0)
  --reorder P        probability a frame is delayed past later ones (default 0)
  --dup P            probability a frame is delivered twice (default 0)
  --corrupt P        probability one bit of a frame is flipped (default 0)
  --delay-us D       one-way link delay in microseconds (default 100)
  --jitter-us J      extra random delay up to J microseconds (default 0)
  --bandwidth-mbps B link rate (default: unlimited)
  --mtu M            IP MTU (default 1500)
  --seed S           seed of the whole run (default 1)
  --cc ALG           congestion control: newreno (default), cubic, none
  --sack on|off      selective acknowledgements (default on)
  --timestamps on|off
                     TCP timestamps, RFC 7323 (default on)
  --fast-retransmit on|off
                     fast retransmit and recovery on duplicate ACKs (default on)
  --borrowed         both hosts take frames borrowed (receive_slice,
                     poll_transmit_into) and the applications write and read
                     through their own buffers (tcp_send_slice, tcp_recv_slice)
  --pcap FILE        write every delivered frame to FILE (pcap)
  -h, --help         this text
";

struct Options {
    bytes: u64,
    link: LinkConfig,
    seed: u64,
    pcap: Option<String>,
    tcp: TcpConfig,
    borrowed: bool,
}

fn on_off(flag: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{flag} expects on or off, got `{v}`")),
    }
}

fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        bytes: 10_000_000,
        link: LinkConfig::ideal().with_delay(Duration::from_micros(100)),
        seed: 1,
        pcap: None,
        tcp: TcpConfig::default(),
        borrowed: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--borrowed" {
            o.borrowed = true;
            continue;
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let prob = |v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("{flag} expects a probability from 0 to 1, got `{v}`"))
        };
        let num = |v: String| -> Result<u64, String> { v.parse::<u64>().map_err(|_| format!("{flag} expects a number, got `{v}`")) };
        match flag.as_str() {
            "--bytes" => o.bytes = num(value()?)?,
            "--loss" => o.link.loss = prob(value()?)?,
            "--reorder" => o.link.reorder = prob(value()?)?,
            "--dup" => o.link.duplicate = prob(value()?)?,
            "--corrupt" => o.link.corrupt = prob(value()?)?,
            "--delay-us" => o.link.delay = Duration::from_micros(num(value()?)?),
            "--jitter-us" => o.link.jitter = Duration::from_micros(num(value()?)?),
            "--bandwidth-mbps" => {
                let b = num(value()?)?;
                if b == 0 {
                    return Err("--bandwidth-mbps must be positive".into());
                }
                o.link.bandwidth_bps = Some(b * 1_000_000);
            }
            "--mtu" => {
                let m = num(value()?)?;
                if !(576..=9000).contains(&m) {
                    return Err(format!("--mtu {m}: expected 576 to 9000"));
                }
                o.link.mtu = m as usize;
            }
            "--seed" => o.seed = num(value()?)?,
            "--pcap" => o.pcap = Some(value()?),
            "--cc" => {
                o.tcp.congestion = match value()?.as_str() {
                    "newreno" => CongestionControl::NewReno,
                    "cubic" => CongestionControl::Cubic,
                    "none" => CongestionControl::None,
                    other => return Err(format!("--cc expects newreno, cubic or none, got `{other}`")),
                }
            }
            "--sack" => o.tcp.sack = on_off("--sack", &value()?)?,
            "--fast-retransmit" => o.tcp.fast_retransmit = on_off("--fast-retransmit", &value()?)?,
            "--timestamps" => o.tcp.timestamps = on_off("--timestamps", &value()?)?,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    o.link.validate().map_err(|e| e.to_string())?;
    Ok(Some(o))
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sim-transfer: {e}\n(see `sim-transfer --help`)");
            return ExitCode::from(2);
        }
    };
    // What was sent, hashed independently of the transfer.
    let mut sent = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0;
    while off < o.bytes {
        let n = buf.len().min((o.bytes - off) as usize);
        pattern(o.seed, off, &mut buf[..n]);
        sent.update(&buf[..n]);
        off += n as u64;
    }
    let mut received = Sha256::new();
    let pcap = match &o.pcap {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("sim-transfer: cannot create {path}: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let mut config = TransferConfig::new(o.bytes, o.link.clone(), o.seed);
    config.tcp = o.tcp.clone();
    config.borrowed = o.borrowed;
    config.capture = pcap.map(|w| Box::new(w) as Box<dyn std::io::Write>);
    let report = transfer::run(config, |d| received.update(d));
    let sha_match = sent.finalize() == received.finalize();
    println!("sim-transfer: {report}");
    println!(
        "sim-transfer: link: {} sent, {} delivered, {} lost, {} duplicated, {} reordered, {} corrupted",
        report.link.sent, report.link.delivered, report.link.lost, report.link.duplicated, report.link.reordered, report.link.corrupted
    );
    let st = &report.sender;
    let window = |w: usize| if w == usize::MAX { "unlimited".to_string() } else { w.to_string() };
    println!(
        "sim-transfer: tcp: cc={:?} sack={} fast_retransmit={}; {} segments sent, {} retransmits ({} fast), {} RTO fires, {} duplicate ACKs, {} SACK blocks received, cwnd {}, ssthresh {}, srtt {:?}, rto {:?}",
        o.tcp.congestion,
        o.tcp.sack,
        o.tcp.fast_retransmit,
        st.segments_sent,
        st.retransmits,
        st.fast_retransmits,
        st.rto_fires,
        st.dup_acks,
        st.sack_blocks_received,
        window(st.cwnd),
        window(st.ssthresh),
        st.srtt,
        st.rto
    );
    println!(
        "transfer: bytes={} ok={} sha256_match={} retransmits={} virtual_ms={} goodput_mbps={:.2}",
        report.bytes_received,
        report.ok,
        sha_match,
        report.sender.retransmits,
        report.virtual_time.as_millis(),
        report.goodput_mbps()
    );
    if report.ok && sha_match {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
