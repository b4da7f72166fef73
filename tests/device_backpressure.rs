//! The user-level libOS over a device that refuses frames: UDP pushes wait for room
//! (bounded memory, no loss), and every datagram goes out, in order, once the
//! device takes frames again. Uses `LibOs::with_device` with a device of the
//! test's own that answers ARP like a peer would.

use demi::device::{Device, DeviceCaps};
use demi::net_stack::wire::EthernetAddress;
use demi::{Bytes, Config, Domain, IdleMode, LibOs, LibOsKind, Runtime, Sga, SocketType};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
const PEER_IP: [u8; 4] = [198, 18, 0, 9];

/// What the test sees of the device.
#[derive(Default)]
struct Wire {
    /// Whether the device takes frames.
    open: Cell<bool>,
    /// UDP payloads sent, in order.
    sent: RefCell<Vec<Bytes>>,
}

struct GatedDevice {
    wire: Rc<Wire>,
    rx: VecDeque<Bytes>,
}

impl Device for GatedDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mac: EthernetAddress(OUR_MAC),
            mtu: 1500,
            rx_checksum_offload: true,
            tx_checksum_offload: true,
            idle: IdleMode::Park,
            eager_tx: false,
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let n = self.rx.len().min(max);
        out.extend(self.rx.drain(..n));
        n
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        let mut taken = 0;
        while let Some(f) = frames.front() {
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            if ethertype == 0x0806 {
                // An ARP request: answer for the peer (even while closed to data).
                let mut reply = vec![0u8; 42];
                reply[0..6].copy_from_slice(&f[6..12]);
                reply[6..12].copy_from_slice(&PEER_MAC);
                reply[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
                reply[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
                reply[22..28].copy_from_slice(&PEER_MAC);
                reply[28..32].copy_from_slice(&PEER_IP);
                reply[32..38].copy_from_slice(&f[22..28]);
                reply[38..42].copy_from_slice(&f[28..32]);
                self.rx.push_back(Bytes::from(reply));
            } else if !self.wire.open.get() {
                break;
            } else if ethertype == 0x0800 && f[23] == 17 {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                self.wire.sent.borrow_mut().push(f.slice(14 + ihl + 8..));
            }
            frames.pop_front();
            taken += 1;
        }
        taken
    }
}

#[test]
fn udp_pushes_wait_for_a_full_device_and_nothing_is_lost() {
    let rt = Runtime::new().unwrap();
    let wire = Rc::new(Wire::default());
    let mut config = Config::new(LibOsKind::Memory);
    config.net.ip = Some("198.18.0.1".parse().unwrap());
    let libos = rt.block_on(async {
        LibOs::with_device(&config, Box::new(GatedDevice { wire: wire.clone(), rx: VecDeque::new() })).unwrap()
    });
    let qd = libos.socket(Domain::Ipv4, SocketType::Datagram).unwrap();
    let to: SocketAddr = "198.18.0.9:9".parse().unwrap();
    // Resolve the peer first (datagrams waiting for ARP sit in a small queue of
    // their own), then close the device.
    wire.open.set(true);
    libos.wait(libos.pushto(qd, Sga::from(Bytes::from_static(b"first")), to).unwrap(), None).unwrap().ok().unwrap();
    rt.block_on(async { demi::time::sleep(Duration::from_millis(10)).await });
    assert_eq!(wire.sent.borrow().len(), 1);
    wire.sent.borrow_mut().clear();
    wire.open.set(false);
    const N: usize = 5000;
    let qts: Vec<_> = (0..N).map(|i| libos.pushto(qd, Sga::from(Bytes::from(format!("d{i}"))), to).unwrap()).collect();

    // Let the loop run with the device closed: some pushes complete (the queue in
    // front of the device has room), most wait.
    let r = libos.wait_all(&qts, Some(Duration::from_millis(100)));
    assert!(r.is_err(), "all {N} pushes completed against a device that took nothing");
    let completed = qts.iter().filter(|qt| rt.handle().op_is_done(**qt).unwrap_or(true)).count();
    assert!(completed < N / 2, "{completed} of {N} pushes completed with the device closed");
    assert!(wire.sent.borrow().is_empty());

    // Open it: everything completes and goes out once, in order.
    wire.open.set(true);
    for r in libos.wait_all(&qts, Some(Duration::from_secs(10))).unwrap() {
        r.ok().unwrap();
    }
    // A push completes when its frame is queued for the device; let the last ones
    // leave.
    rt.block_on(async { demi::time::sleep(Duration::from_millis(20)).await });
    let sent = wire.sent.borrow();
    let first_missing = (0..N).find(|i| sent.get(*i).map(|d| &d[..] != format!("d{i}").as_bytes()).unwrap_or(true));
    assert_eq!(sent.len(), N, "first missing or out of order: {first_missing:?}");
    for (i, d) in sent.iter().enumerate() {
        assert_eq!(&d[..], format!("d{i}").as_bytes());
    }
}

#[test]
fn with_device_refuses_the_posix_kind() {
    let wire = Rc::new(Wire::default());
    let e = LibOs::with_device(&Config::new(LibOsKind::Posix), Box::new(GatedDevice { wire, rx: VecDeque::new() }))
        .unwrap_err();
    assert!(e.to_string().contains("not posix"), "{e}");
}
