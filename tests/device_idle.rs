//! A parking runtime (`IdlePolicy::Park`, `DEMI_IDLE=park`) over a poll-mode device
//! that cannot wake it (no readiness fd, as a DPDK port): frames that arrive while
//! the loop has nothing else to do must still be received promptly. The device's
//! frames come from another thread, as a NIC's would.

use demi::device::{Device, DeviceCaps};
use demi::net_stack::wire::EthernetAddress;
use demi::{Bytes, Config, Domain, IdleMode, IdlePolicy, LibOs, LibOsKind, SocketType};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const OUR_IP: [u8; 4] = [198, 18, 0, 1];

/// A poll-mode device fed from another thread; no fd to wake a sleeping loop.
struct PolledDevice {
    rx: Arc<Mutex<VecDeque<Bytes>>>,
}

impl Device for PolledDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mac: EthernetAddress(OUR_MAC),
            mtu: 1500,
            rx_checksum_offload: true,
            tx_checksum_offload: true,
            idle: IdleMode::Spin,
            eager_tx: false,
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let mut q = self.rx.lock().unwrap();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        n
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        let n = frames.len();
        frames.clear();
        n
    }
}

/// An Ethernet/IPv4/UDP frame to our address, port `port` (checksums left zero:
/// the device "verified" them).
fn udp_frame(port: u16, payload: &[u8]) -> Bytes {
    let mut f = Vec::new();
    f.extend_from_slice(&OUR_MAC);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + 8 + payload.len();
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 9]);
    f.extend_from_slice(&OUR_IP);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    Bytes::from(f)
}

#[test]
fn a_parking_loop_keeps_polling_a_device_that_cannot_wake_it() {
    let mut config = Config::new(LibOsKind::Memory);
    config.net.ip = Some(OUR_IP.into());
    config.idle = IdlePolicy::Park;
    let rt = config.runtime_builder().build().unwrap();
    let rx = Arc::new(Mutex::new(VecDeque::new()));
    let feeder = {
        let rx = rx.clone();
        std::thread::spawn(move || {
            // Long enough for the loop to have found nothing to do.
            std::thread::sleep(Duration::from_millis(200));
            rx.lock().unwrap().push_back(udp_frame(9000, b"from the wire"));
            Instant::now()
        })
    };
    rt.block_on(async {
        let libos = LibOs::with_device(&config, Box::new(PolledDevice { rx })).unwrap();
        let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
        libos.bind(qd, "198.18.0.1:9000".parse().unwrap()).unwrap();
        // No timer is armed: a loop that slept would sleep until the guard.
        let got = demi::wait(libos.pop(qd).unwrap(), Some(Duration::from_secs(10))).await.unwrap();
        let arrived = Instant::now();
        assert_eq!(got.into_sga().unwrap().to_vec(), b"from the wire");
        let fed = feeder.join().unwrap();
        let late = arrived.saturating_duration_since(fed);
        assert!(late < Duration::from_secs(2), "the frame waited {late:?} for a loop that slept");
    });
}
