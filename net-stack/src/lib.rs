//! # demi-net-stack
//!
//! demi's user-level TCP/IP stack as pure protocol logic: frames in, frames out, the
//! time passed in by the caller, no I/O, no clock reads, no threads. The same stack
//! runs over every device (memory, shared memory, AF_PACKET, DPDK) and under a
//! deterministic simulator.
//!
//! Status: the [`wire`] layer is in place (zero-copy views and validated header
//! structs for Ethernet, ARP, IPv4, ICMPv4, UDP and TCP, with the internet checksum).
//! Neighbour resolution, the IPv4/ICMP/UDP/TCP state machines and the simulator are
//! built on it next.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod iface;
pub mod sim;
pub mod tcp;
pub mod wire;
