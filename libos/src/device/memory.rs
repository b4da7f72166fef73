//! The memory device: stacks in one process joined by an in-process link.
//!
//! A [`MemoryLink`] is a hub with numbered ports; a frame sent by one port is
//! delivered to every other port (the stacks filter by Ethernet address, as on a
//! shared segment). Frames are `Bytes` moved between queues: no copy, no system
//! call. Links live per thread, by name, so two libOS instances on one runtime find
//! the same link (see [`MemoryLink::named`]).

use super::{Device, DeviceCaps};
use bytes::Bytes;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::IdleMode;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// Frames a port's receive queue holds before the link drops new ones (a slow
/// receiver looks like a congested wire, not like unbounded memory).
const QUEUE_LIMIT: usize = 16 * 1024;

#[derive(Default)]
struct Hub {
    /// Receive queues by port; `None`: the port's device was dropped (the slot is
    /// reused by the next attach).
    ports: Vec<Option<VecDeque<Bytes>>>,
    dropped: u64,
}

/// An in-process Ethernet segment. Cheap to clone (a handle).
#[derive(Clone, Default)]
pub struct MemoryLink {
    hub: Rc<RefCell<Hub>>,
}

thread_local! {
    static LINKS: RefCell<BTreeMap<String, MemoryLink>> = const { RefCell::new(BTreeMap::new()) };
}

impl MemoryLink {
    /// A new, private link.
    pub fn new() -> Self {
        Self::default()
    }

    /// The link called `name` on this thread, made on first use.
    pub fn named(name: &str) -> Self {
        LINKS.with(|l| l.borrow_mut().entry(name.to_string()).or_default().clone())
    }

    /// Attaches a new port with the given address and MTU.
    pub fn attach(&self, mac: EthernetAddress, mtu: usize) -> MemoryDevice {
        let mut hub = self.hub.borrow_mut();
        let port = match hub.ports.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                hub.ports.push(None);
                hub.ports.len() - 1
            }
        };
        hub.ports[port] = Some(VecDeque::new());
        MemoryDevice { link: self.clone(), port, mac, mtu }
    }

    /// Frames dropped because a receiver's queue was full.
    pub fn dropped(&self) -> u64 {
        self.hub.borrow().dropped
    }
}

/// One port of a [`MemoryLink`].
pub struct MemoryDevice {
    link: MemoryLink,
    port: usize,
    mac: EthernetAddress,
    mtu: usize,
}

impl Device for MemoryDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mac: self.mac,
            mtu: self.mtu,
            // Frames cannot be corrupted in memory: checksums would prove nothing.
            rx_checksum_offload: true,
            tx_checksum_offload: true,
            idle: IdleMode::Park,
            // The peer stack only looks at the next turn: nothing to gain.
            eager_tx: false,
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let mut hub = self.link.hub.borrow_mut();
        let q = hub.ports[self.port].as_mut().expect("a live device's port is attached");
        // Most bursts find nothing (the loop polls every turn).
        if q.is_empty() {
            return 0;
        }
        let n = q.len().min(max);
        // Popped one by one: a `VecDeque` drain costs more to set up and drop than
        // the one or two frames a turn usually finds.
        for _ in 0..n {
            out.push(q.pop_front().expect("counted above"));
        }
        n
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        let mut hub = self.link.hub.borrow_mut();
        let hub = &mut *hub;
        let n = frames.len();
        // The last port a frame goes to gets the frame itself, the others clones
        // (on a link of two ports: no clone, no drop of the sender's reference).
        let last = hub.ports.iter().enumerate().rposition(|(p, q)| q.is_some() && p != self.port);
        while let Some(frame) = frames.pop_front() {
            if frame.len() > self.mtu + 14 {
                hub.dropped += 1;
                continue;
            }
            let Some(last) = last else { continue };
            for (p, q) in hub.ports[..last].iter_mut().enumerate() {
                let Some(q) = q.as_mut().filter(|_| p != self.port) else { continue };
                if q.len() >= QUEUE_LIMIT {
                    hub.dropped += 1;
                } else {
                    q.push_back(frame.clone());
                }
            }
            let q = hub.ports[last].as_mut().expect("found attached above");
            if q.len() >= QUEUE_LIMIT {
                hub.dropped += 1;
            } else {
                q.push_back(frame);
            }
        }
        n
    }
}

impl Drop for MemoryDevice {
    /// Detaches the port: frames are no longer queued for a device that is gone.
    fn drop(&mut self) {
        if let Ok(mut hub) = self.link.hub.try_borrow_mut() {
            hub.ports[self.port] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reach_every_other_port_without_copies() {
        let link = MemoryLink::new();
        let mut a = link.attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500);
        let mut b = link.attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500);
        let mut c = link.attach(EthernetAddress([2, 0, 0, 0, 0, 3]), 1500);
        let frame = Bytes::from(vec![7u8; 100]);
        let mut q = VecDeque::from([frame.clone()]);
        assert_eq!(a.tx_burst(&mut q), 1);
        assert!(q.is_empty());
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 32), 1);
        assert_eq!(got[0].as_ptr(), frame.as_ptr(), "same buffer, no copy");
        assert_eq!(c.rx_burst(&mut got, 32), 1);
        assert_eq!(a.rx_burst(&mut got, 32), 0, "no echo to the sender");
    }

    #[test]
    fn every_other_port_gets_every_frame_in_order_whichever_port_sends() {
        let link = MemoryLink::new();
        let mut devs: Vec<MemoryDevice> = (1..=3).map(|i| link.attach(EthernetAddress([2, 0, 0, 0, 0, i]), 1500)).collect();
        for sender in 0..devs.len() {
            let frames: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![sender as u8 * 10 + i; 60])).collect();
            assert_eq!(devs[sender].tx_burst(&mut frames.iter().cloned().collect()), 3);
            for (p, dev) in devs.iter_mut().enumerate() {
                let mut got = Vec::new();
                dev.rx_burst(&mut got, 32);
                let want = if p == sender { Vec::new() } else { frames.clone() };
                assert_eq!(got, want, "port {p}, sender {sender}");
            }
        }
        // A full queue at the port that gets the frame itself counts a drop, as at any
        // other port.
        let mut q: VecDeque<Bytes> = (0..QUEUE_LIMIT + 2).map(|_| Bytes::from_static(&[1; 60])).collect();
        devs[0].tx_burst(&mut q);
        assert_eq!(link.dropped(), 4, "two frames over the limit at each of two ports");
        let mut got = Vec::new();
        assert_eq!(devs[2].rx_burst(&mut got, usize::MAX), QUEUE_LIMIT);
    }

    #[test]
    fn named_links_are_shared_per_thread_and_oversize_frames_dropped() {
        let mut a = MemoryLink::named("t").attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 100);
        let mut b = MemoryLink::named("t").attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 100);
        let mut q = VecDeque::from([Bytes::from(vec![0u8; 114]), Bytes::from(vec![0u8; 115])]);
        a.tx_burst(&mut q);
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 32), 1);
        assert_eq!(MemoryLink::named("t").dropped(), 1);
    }

    #[test]
    fn a_dropped_device_is_detached_and_its_port_reused() {
        let link = MemoryLink::new();
        let mut a = link.attach(EthernetAddress([2, 0, 0, 0, 0, 1]), 1500);
        let b = link.attach(EthernetAddress([2, 0, 0, 0, 0, 2]), 1500);
        drop(b);
        // More frames than a receive queue holds: nobody is there to queue them for.
        let frame = Bytes::from(vec![7u8; 100]);
        let mut q: VecDeque<Bytes> = (0..QUEUE_LIMIT + 1).map(|_| frame.clone()).collect();
        a.tx_burst(&mut q);
        assert_eq!(link.dropped(), 0, "no frames kept or counted for a dropped device");
        let mut c = link.attach(EthernetAddress([2, 0, 0, 0, 0, 3]), 1500);
        assert_eq!(c.port, 1, "the free slot is reused");
        let mut got = Vec::new();
        assert_eq!(c.rx_burst(&mut got, 32), 0, "a new port starts empty");
        a.tx_burst(&mut VecDeque::from([frame]));
        assert_eq!(c.rx_burst(&mut got, 32), 1);
    }
}
