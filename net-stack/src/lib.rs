//! # demi-net-stack
//!
//! demi's user-level TCP/IP stack as pure protocol logic: frames in, frames out, the
//! time passed in by the caller, no I/O, no clock reads, no threads. The same stack
//! runs over every device (memory, shared memory, AF_PACKET, DPDK) and under a
//! deterministic simulator.
//!
//! Modules: [`wire`] (zero-copy views and validated header structs for Ethernet,
//! ARP, IPv4, ICMPv4, UDP and TCP, with the internet checksum), [`iface`] (the
//! [`iface::Stack`]: neighbour resolution, IPv4, ICMP, UDP, sockets, and the call
//! order: feed frames and `now`, take frames to send, ask `poll_at`, read events),
//! [`tcp`] (RFC 9293 connections: send/receive buffers, timers, RTO, congestion
//! control, SACK, timestamps, RFC 5961 hardening) and [`sim`] (the deterministic
//! simulator with a faulty link and pcap output).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chunk;
mod fifo;
pub mod iface;
pub mod sim;
pub mod tcp;
mod time;
pub mod wire;
