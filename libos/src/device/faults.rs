//! Fault-injection wrapper: the simulator's link faults (loss, duplication,
//! reordering, corruption) applied to the frames of a real device, in both
//! directions, from a seeded generator (the same seed makes the same decisions for
//! the same sequence of frames).
//!
//! Turned on by `DEMI_FAULTS=loss=0.05,dup=0.01,reorder=0.01,corrupt=0.001,seed=7`
//! or [`NetConfig::faults`](crate::NetConfig::faults). Each probability is applied
//! to every frame independently, on receive and on send:
//! - loss: the frame is dropped (a sent frame counts as sent: the stack must
//!   retransmit, as after a loss on the wire);
//! - dup: the frame is delivered twice;
//! - reorder: the frame is held back and delivered after the next one;
//! - corrupt: one bit of the frame is flipped (checksums must catch it).
//!
//! Delay and bandwidth limits are not modelled here (the device has no clock of
//! its own); the simulator has them.

use super::{Device, DeviceCaps};
use bytes::{Bytes, BytesMut};
use demi_net_stack::sim::Rng;
use std::collections::VecDeque;
use std::os::fd::RawFd;

/// Which faults to inject. See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back behind the next one.
    pub reorder: f64,
    /// Probability that one bit of a frame is flipped.
    pub corrupt: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig { loss: 0.0, duplicate: 0.0, reorder: 0.0, corrupt: 0.0, seed: 1 }
    }
}

impl FaultConfig {
    /// Parses `key=value` pairs separated by commas: `loss`, `dup`, `reorder`,
    /// `corrupt` (probabilities from 0 to 1) and `seed`.
    pub fn parse(spec: &str) -> Result<FaultConfig, String> {
        let mut c = FaultConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault `{part}`: expected key=value (e.g. loss=0.05)"))?;
            let prob = || {
                value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("fault `{part}`: expected a probability from 0 to 1"))
            };
            match key.trim() {
                "loss" => c.loss = prob()?,
                "dup" | "duplicate" => c.duplicate = prob()?,
                "reorder" => c.reorder = prob()?,
                "corrupt" => c.corrupt = prob()?,
                "seed" => c.seed = value.trim().parse().map_err(|_| format!("fault `{part}`: expected a number"))?,
                other => return Err(format!("unknown fault `{other}`: expected loss, dup, reorder, corrupt or seed")),
            }
        }
        Ok(c)
    }
}

/// Counters of what a [`FaultDevice`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames dropped.
    pub lost: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames held back behind a later one.
    pub reordered: u64,
    /// Frames with a bit flipped.
    pub corrupted: u64,
}

/// One direction's state: a frame held back for reordering.
#[derive(Default)]
struct Direction {
    held: Option<Bytes>,
}

/// A device with faults. See the [module docs](self).
pub struct FaultDevice<D> {
    inner: D,
    config: FaultConfig,
    rng: Rng,
    rx: Direction,
    tx: Direction,
    /// Frames the faults produced for sending, waiting for the inner device.
    tx_out: VecDeque<Bytes>,
    /// The inner device's received burst (kept: no allocation per poll).
    rx_scratch: Vec<Bytes>,
    stats: FaultStats,
}

impl<D: Device> FaultDevice<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, config: FaultConfig) -> Self {
        let rng = Rng::new(config.seed);
        FaultDevice { inner, config, rng, rx: Direction::default(), tx: Direction::default(), tx_out: VecDeque::new(), rx_scratch: Vec::new(), stats: FaultStats::default() }
    }

    /// What the faults did so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Applies the faults to one frame, appending what comes out to `out`.
    fn apply(rng: &mut Rng, c: &FaultConfig, stats: &mut FaultStats, dir: &mut Direction, frame: Bytes, out: &mut impl Extend<Bytes>) {
        if c.loss > 0.0 && rng.gen_bool(c.loss) {
            stats.lost += 1;
            return;
        }
        let frame = if c.corrupt > 0.0 && !frame.is_empty() && rng.gen_bool(c.corrupt) {
            stats.corrupted += 1;
            let mut m = BytesMut::from(&frame[..]);
            let bit = rng.gen_range(0..(m.len() as u64 * 8));
            m[(bit / 8) as usize] ^= 1 << (bit % 8);
            m.freeze()
        } else {
            frame
        };
        let copies = if c.duplicate > 0.0 && rng.gen_bool(c.duplicate) {
            stats.duplicated += 1;
            2
        } else {
            1
        };
        if dir.held.is_none() && c.reorder > 0.0 && rng.gen_bool(c.reorder) {
            stats.reordered += 1;
            dir.held = Some(frame.clone());
            if copies == 2 {
                out.extend([frame]);
            }
            return;
        }
        for _ in 0..copies {
            out.extend([frame.clone()]);
        }
        if let Some(h) = dir.held.take() {
            out.extend([h]);
        }
    }
}

impl<D: Device> Device for FaultDevice<D> {
    fn caps(&self) -> DeviceCaps {
        let mut caps = self.inner.caps();
        if self.config.corrupt > 0.0 {
            // Corruption is pointless if nobody verifies checksums.
            caps.rx_checksum_offload = false;
            caps.tx_checksum_offload = false;
        }
        caps
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let mut got = std::mem::take(&mut self.rx_scratch);
        self.inner.rx_burst(&mut got, max);
        let start = out.len();
        for frame in got.drain(..) {
            Self::apply(&mut self.rng, &self.config, &mut self.stats, &mut self.rx, frame, out);
        }
        self.rx_scratch = got;
        out.len() - start
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        // Room for a burst's worth: the faults never make the queue grow unbounded.
        let mut taken = 0;
        while self.tx_out.len() < 64 {
            let Some(frame) = frames.pop_front() else { break };
            Self::apply(&mut self.rng, &self.config, &mut self.stats, &mut self.tx, frame, &mut self.tx_out);
            taken += 1;
        }
        if !self.tx_out.is_empty() {
            self.inner.tx_burst(&mut self.tx_out);
        }
        taken
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        self.inner.readiness_fd()
    }

    fn prepare_park(&mut self) -> bool {
        self.inner.prepare_park()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use demi_net_stack::wire::EthernetAddress;

    fn frames(n: u8) -> VecDeque<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i; 60])).collect()
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let c = FaultConfig::parse("loss=0.05, dup=0.01,reorder=0.5,corrupt=0,seed=9").unwrap();
        assert_eq!(c, FaultConfig { loss: 0.05, duplicate: 0.01, reorder: 0.5, corrupt: 0.0, seed: 9 });
        assert!(FaultConfig::parse("loss=5").unwrap_err().contains("probability"));
        assert!(FaultConfig::parse("jitter=1").unwrap_err().contains("unknown fault"));
        assert!(FaultConfig::parse("loss").unwrap_err().contains("key=value"));
    }

    #[test]
    fn loss_drops_about_the_asked_share_and_nothing_else_changes() {
        let link = MemoryLink::new();
        let a = link.attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500);
        let mut b = link.attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500);
        let mut a = FaultDevice::new(a, FaultConfig { loss: 0.25, ..FaultConfig::default() });
        let mut sent = 0;
        let mut got = Vec::new();
        for _ in 0..40 {
            let mut q = frames(64);
            while !q.is_empty() {
                sent += a.tx_burst(&mut q);
                b.rx_burst(&mut got, 1000);
            }
        }
        let lost = a.stats().lost as usize;
        assert_eq!(got.len() + lost, sent);
        assert!((500..780).contains(&lost), "{lost} of {sent} lost at p=0.25");
    }

    #[test]
    fn reorder_dup_and_corrupt_do_what_they_say() {
        let link = MemoryLink::new();
        let a = link.attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500);
        let mut b = link.attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500);
        let cfg = FaultConfig { reorder: 1.0, ..FaultConfig::default() };
        let mut a = FaultDevice::new(a, cfg);
        a.tx_burst(&mut frames(4));
        let mut got = Vec::new();
        b.rx_burst(&mut got, 10);
        let order: Vec<u8> = got.iter().map(|f| f[0]).collect();
        assert_eq!(order, [1, 0, 3, 2], "each held frame leaves after the next one");

        let link = MemoryLink::new();
        let mut a = link.attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500);
        let b = link.attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500);
        let mut b = FaultDevice::new(b, FaultConfig { duplicate: 1.0, corrupt: 1.0, ..FaultConfig::default() });
        a.tx_burst(&mut frames(3));
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 10), 6);
        for pair in got.chunks(2) {
            assert_eq!(pair[0], pair[1]);
            let flipped: u32 = pair[0].iter().map(|&x| (x ^ pair[0][59]).count_ones()).sum();
            assert!(flipped >= 1, "one bit differs from the original pattern");
        }
        assert!(!b.caps().rx_checksum_offload, "corruption turns checksum verification on");
    }
}
