//! Capture wrapper: every frame a device receives or sends, written to a pcap file
//! (link type Ethernet, microsecond timestamps) that tcpdump and tshark open.
//!
//! Turned on by `DEMI_PCAP=path` or [`NetConfig::pcap`](crate::NetConfig::pcap).
//! Frames are written as they cross the device boundary: received frames when
//! `rx_burst` returns them, sent frames when `tx_burst` takes them, and written out
//! at the end of each burst. A write error stops the capture (reported once on
//! stderr) and never the traffic.

use super::{Device, DeviceCaps};
use bytes::Bytes;
use demi_net_stack::sim::PcapWriter;
use std::collections::VecDeque;
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A device whose frames are captured. See the [module docs](self).
pub struct PcapDevice<D> {
    inner: D,
    writer: Option<PcapWriter<BufWriter<File>>>,
    /// Frames written since the last flush.
    unflushed: usize,
}

impl<D: Device> PcapDevice<D> {
    /// Wraps `inner`, capturing to a new file at `path` (truncated if it exists).
    pub fn create(inner: D, path: &Path) -> std::io::Result<Self> {
        let writer = PcapWriter::new(BufWriter::new(File::create(path)?))?;
        Ok(PcapDevice { inner, writer: Some(writer), unflushed: 0 })
    }

    /// The wrapped device.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    fn record<'a>(&mut self, frames: impl Iterator<Item = &'a Bytes>) {
        let Some(w) = self.writer.as_mut() else { return };
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut result = Ok(());
        for f in frames {
            result = w.write_frame(ts, f);
            if result.is_err() {
                break;
            }
            self.unflushed += 1;
        }
        // One write per burst: a busy device pays one system call per burst, and
        // the file is complete even if the process is killed (Ctrl-C runs no
        // destructors).
        if result.is_ok() && self.unflushed > 0 {
            self.unflushed = 0;
            result = w.flush();
        }
        if let Err(e) = result {
            eprintln!("demi: pcap capture stopped: {e}");
            self.writer = None;
        }
    }
}

impl<D: Device> Device for PcapDevice<D> {
    fn caps(&self) -> DeviceCaps {
        self.inner.caps()
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.rx_burst(out, max);
        if n > 0 {
            self.record(out[start..].iter());
        }
        n
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        if self.writer.is_none() {
            return self.inner.tx_burst(frames);
        }
        // Keep handles (not copies) of the frames offered, then record those taken.
        let offered: Vec<Bytes> = frames.iter().cloned().collect();
        let n = self.inner.tx_burst(frames);
        self.record(offered[..n].iter());
        n
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        self.inner.readiness_fd()
    }

    fn prepare_park(&mut self) -> bool {
        self.inner.prepare_park()
    }
}

impl<D> Drop for PcapDevice<D> {
    fn drop(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::memory::MemoryLink;
    use demi_net_stack::wire::EthernetAddress;

    #[test]
    fn both_directions_are_captured_in_order() {
        let dir = std::env::temp_dir().join(format!("demi-pcap-test-{}", std::process::id()));
        let link = MemoryLink::new();
        let a = link.attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500);
        let mut b = link.attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500);
        let mut a = PcapDevice::create(a, &dir).unwrap();
        a.tx_burst(&mut VecDeque::from([Bytes::from(vec![1u8; 60]), Bytes::from(vec![2u8; 70])]));
        b.tx_burst(&mut VecDeque::from([Bytes::from(vec![3u8; 80])]));
        let mut got = Vec::new();
        assert_eq!(a.rx_burst(&mut got, 8), 1);
        drop(a);
        let file = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(&file[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
        // Records: 16-byte header, then the frame; lengths 60, 70, 80 in order.
        let mut off = 24;
        for (len, byte) in [(60usize, 1u8), (70, 2), (80, 3)] {
            let incl = u32::from_le_bytes(file[off + 8..off + 12].try_into().unwrap()) as usize;
            assert_eq!(incl, len);
            assert!(file[off + 16..off + 16 + len].iter().all(|&b| b == byte));
            off += 16 + len;
        }
        assert_eq!(off, file.len());
    }
}
