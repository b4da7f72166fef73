//! Devices: what the user-level stack sends and receives Ethernet frames through.
//!
//! A device moves frames in bursts and says what it can do. The user-level libOS
//! polls it inline from the runtime's loop (receive a burst, hand the frames to the
//! stack, transmit what the stack produced), so a device must never block.
//!
//! Devices here: [`memory`] (an in-process link between stacks, no copies). The
//! shared-memory, AF_PACKET and DPDK devices come with the kernel-bypass issue.

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod memory;

use bytes::Bytes;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::IdleMode;
use std::collections::VecDeque;

/// What a device can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCaps {
    /// The device's Ethernet address.
    pub mac: EthernetAddress,
    /// IP MTU (the largest IP packet a frame carries).
    pub mtu: usize,
    /// The device verifies IPv4/TCP/UDP checksums of received frames, so software
    /// need not.
    pub rx_checksum_offload: bool,
    /// The device fills IPv4/TCP/UDP checksums of sent frames, so software need not.
    pub tx_checksum_offload: bool,
    /// How the runtime should idle while this device is the only work: spin for
    /// poll-mode hardware, park for devices that make progress on their own.
    pub idle: IdleMode,
}

/// A frame device. See the [module docs](self).
pub trait Device {
    /// Its capabilities.
    fn caps(&self) -> DeviceCaps;

    /// Appends up to `max` received frames to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize;

    /// Sends frames from the front of `frames`, removing those it took; returns how
    /// many. Frames it cannot take now stay queued (back-pressure, not loss).
    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize;
}
