//! Settings of a [`Stack`](super::Stack).

use super::neighbor::NeighborConfig;
use crate::tcp::TcpConfig;
use crate::wire::{ChecksumCaps, EthernetAddress};
use std::net::Ipv4Addr;

/// Everything a stack instance needs to know about its interface and protocols.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The interface's Ethernet address.
    pub mac: EthernetAddress,
    /// The interface's IPv4 address.
    pub ip: Ipv4Addr,
    /// Prefix length of the attached subnet (e.g. 24).
    pub prefix_len: u8,
    /// Where packets off the subnet go; `None`: they are dropped as unroutable.
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU of the device (the TCP MSS follows from it: `mtu - 40`).
    pub mtu: usize,
    /// Which checksums are computed and verified in software.
    pub checksums: ChecksumCaps,
    /// TCP settings (its `mss` is lowered to fit the MTU).
    pub tcp: TcpConfig,
    /// ARP settings.
    pub neighbor: NeighborConfig,
    /// Datagrams queued per UDP socket before new ones are dropped.
    pub udp_queue_len: usize,
    /// Most TCP connections (including those in the handshake and in TIME-WAIT).
    pub max_connections: usize,
    /// Most bytes the TCP connections' send and receive buffers may hold together
    /// (each connection counts its configured capacities from the moment it exists):
    /// a SYN flood or a crowd of slow readers cannot grow memory past it. New
    /// connections beyond it are refused (SYNs dropped, connects fail with
    /// `NoBufferSpace`).
    pub max_buffer_memory: usize,
    /// Seeds the ISN secret and the ephemeral port sequence; two stacks with the same
    /// seed and inputs behave identically (the simulator relies on it).
    pub seed: u64,
}

impl StackConfig {
    /// Defaults for an interface: /24 subnet, no gateway, MTU 1500, software
    /// checksums.
    pub fn new(mac: EthernetAddress, ip: Ipv4Addr) -> Self {
        StackConfig {
            mac,
            ip,
            prefix_len: 24,
            gateway: None,
            mtu: 1500,
            checksums: ChecksumCaps::all(),
            tcp: TcpConfig::default(),
            neighbor: NeighborConfig::default(),
            udp_queue_len: 1024,
            max_connections: 65_536,
            max_buffer_memory: 1 << 30,
            seed: 0x5eed_de31,
        }
    }

    /// True if `addr` is on the attached subnet.
    pub fn on_subnet(&self, addr: Ipv4Addr) -> bool {
        let bits = u32::from(self.prefix_len.min(32));
        if bits == 0 {
            return true;
        }
        let mask = u32::MAX << (32 - bits);
        (u32::from(addr) & mask) == (u32::from(self.ip) & mask)
    }

    /// The subnet's broadcast address.
    pub fn subnet_broadcast(&self) -> Ipv4Addr {
        let bits = u32::from(self.prefix_len.min(32));
        let host_mask = if bits == 0 { u32::MAX } else { !(u32::MAX << (32 - bits)) };
        Ipv4Addr::from(u32::from(self.ip) | host_mask)
    }
}
