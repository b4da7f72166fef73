//! Loss recovery and congestion control through the simulator: a matrix of loss
//! rates with reordering, duplication and corruption under NewReno and CUBIC, and
//! the payoff of SACK and fast retransmit over timeouts alone.
//!
//! CI runs a few seeds; `DEMI_SIM_LONG=1` runs more.

use demi_net_stack::sim::transfer::{run, TransferConfig, TransferReport};
use demi_net_stack::sim::LinkConfig;
use demi_net_stack::tcp::{CongestionControl, TcpConfig};
use std::time::Duration;

fn long() -> bool {
    std::env::var("DEMI_SIM_LONG").is_ok_and(|v| v == "1")
}

/// A 1 ms link with `loss`, and 2% each of reordering, duplication and corruption.
fn faulty(loss: f64) -> LinkConfig {
    LinkConfig::ideal()
        .with_delay(Duration::from_millis(1))
        .with_loss(loss)
        .with_reorder(0.02)
        .with_duplicate(0.02)
        .with_corrupt(0.02)
}

/// Retransmission bounds for a 1 ms link.
fn tcp(congestion: CongestionControl) -> TcpConfig {
    TcpConfig {
        congestion,
        rto_min: Duration::from_millis(10),
        rto_initial: Duration::from_millis(100),
        max_retransmits: 30,
        ..TcpConfig::default()
    }
}

fn transfer(bytes: u64, link: LinkConfig, seed: u64, tcp: TcpConfig) -> TransferReport {
    let mut config = TransferConfig::new(bytes, link, seed);
    config.tcp = tcp;
    config.time_limit = Duration::from_secs(600);
    run(config, |_| {})
}

#[test]
fn loss_matrix_is_byte_exact_under_newreno_and_cubic() {
    let seeds = if long() { 20 } else { 3 };
    for congestion in [CongestionControl::NewReno, CongestionControl::Cubic] {
        for loss in [0.0, 0.01, 0.02, 0.05, 0.10, 0.20] {
            let bytes = if loss >= 0.2 { 256 << 10 } else { 1 << 20 };
            for seed in 0..seeds {
                let report = transfer(bytes, faulty(loss), 500 + seed, tcp(congestion));
                let what = format!("{congestion:?}, loss {loss}, seed {}: {report}", 500 + seed);
                assert_eq!(report.bytes_received, bytes, "{what}");
                assert_eq!(report.corrupt_at, None, "{what}");
                assert!(report.ok, "{what}");
            }
        }
    }
}

#[test]
fn sack_and_fast_retransmit_triple_goodput_at_one_percent_loss() {
    // Default settings (so a 200 ms minimum RTO) over a 1 ms link.
    let link = LinkConfig::ideal()
        .with_delay(Duration::from_millis(1))
        .with_loss(0.01);
    let bytes = 2 << 20;
    let with = transfer(bytes, link.clone(), 42, TcpConfig::default());
    let without = transfer(
        bytes,
        link,
        42,
        TcpConfig {
            sack: false,
            fast_retransmit: false,
            ..TcpConfig::default()
        },
    );
    assert!(with.ok, "{with}");
    assert!(without.ok, "{without}");
    println!(
        "1% loss, 1 ms delay: SACK + fast retransmit {:.1} Mbit/s ({} fast retransmits, {} retransmits, {} RTOs); \
         neither {:.1} Mbit/s ({} retransmits, {} RTOs)",
        with.goodput_mbps(),
        with.sender.fast_retransmits,
        with.sender.retransmits,
        with.sender.rto_fires,
        without.goodput_mbps(),
        without.sender.retransmits,
        without.sender.rto_fires,
    );
    assert!(with.sender.fast_retransmits > 0 && with.sender.sack_blocks_received > 0);
    assert!(
        with.goodput_mbps() >= 3.0 * without.goodput_mbps(),
        "{with} vs {without}"
    );
}

