//! # demi-net-stack
//!
//! demi's user-level TCP/IP stack as pure protocol logic: frames in, frames out, the
//! time passed in by the caller, no I/O, no clock reads, no threads. The same stack
//! runs over every device (memory, shared memory, AF_PACKET, DPDK) and under a
//! deterministic simulator.
//!
//! Status: not built yet. The wire formats, ARP, IPv4, ICMP, UDP and TCP arrive with
//! the user-level stack issue; this crate exists so the workspace has its final shape.

#![forbid(unsafe_code)]
