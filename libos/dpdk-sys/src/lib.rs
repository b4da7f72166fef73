//! # demi-dpdk-sys
//!
//! demi's own raw bindings to the system's DPDK (22.11, found with pkg-config):
//! the EAL, ethdev, mempool and mbuf APIs as bindgen declares them, and `demi_*`
//! functions from a small C shim that wraps DPDK's static-inline fast path
//! (`rte_eth_rx_burst`, `rte_eth_tx_burst`, `rte_pktmbuf_alloc`, …; see
//! `csrc/shim.h`). Everything here is `unsafe` FFI: the safe device is
//! `demi_libos::device::dpdk`.
//!
//! Building this crate needs DPDK's development files, pkg-config and libclang
//! (`apt-get install dpdk-dev libdpdk-dev pkg-config libclang-dev clang`); without
//! them the build fails and says so when the `link` feature is on (as demi's `dpdk`
//! feature does); with it off, this crate is empty on a machine without DPDK.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all, rustdoc::all, missing_docs)]

#[cfg(not(demi_dpdk_missing))]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// mbuf and ethdev flags that DPDK defines with function-like macros (which bindgen
/// cannot evaluate). The shim checks at build time that each equals DPDK's.
pub mod flags {
    /// `RTE_MBUF_F_RX_IP_CKSUM_MASK`.
    pub const RX_IP_CKSUM_MASK: u64 = (1 << 4) | (1 << 7);
    /// `RTE_MBUF_F_RX_IP_CKSUM_BAD`.
    pub const RX_IP_CKSUM_BAD: u64 = 1 << 4;
    /// `RTE_MBUF_F_RX_IP_CKSUM_GOOD`.
    pub const RX_IP_CKSUM_GOOD: u64 = 1 << 7;
    /// `RTE_MBUF_F_RX_L4_CKSUM_MASK`.
    pub const RX_L4_CKSUM_MASK: u64 = (1 << 3) | (1 << 8);
    /// `RTE_MBUF_F_RX_L4_CKSUM_BAD`.
    pub const RX_L4_CKSUM_BAD: u64 = 1 << 3;
    /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`.
    pub const RX_L4_CKSUM_GOOD: u64 = 1 << 8;
    /// `RTE_MBUF_F_TX_TCP_CKSUM`.
    pub const TX_TCP_CKSUM: u64 = 1 << 52;
    /// `RTE_MBUF_F_TX_UDP_CKSUM`.
    pub const TX_UDP_CKSUM: u64 = 3 << 52;
    /// `RTE_MBUF_F_TX_IP_CKSUM`.
    pub const TX_IP_CKSUM: u64 = 1 << 54;
    /// `RTE_MBUF_F_TX_IPV4`.
    pub const TX_IPV4: u64 = 1 << 55;
    /// `RTE_ETH_RX_OFFLOAD_IPV4_CKSUM`.
    pub const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
    /// `RTE_ETH_RX_OFFLOAD_UDP_CKSUM`.
    pub const RX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
    /// `RTE_ETH_RX_OFFLOAD_TCP_CKSUM`.
    pub const RX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
    /// `RTE_ETH_TX_OFFLOAD_IPV4_CKSUM`.
    pub const TX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
    /// `RTE_ETH_TX_OFFLOAD_UDP_CKSUM`.
    pub const TX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
    /// `RTE_ETH_TX_OFFLOAD_TCP_CKSUM`.
    pub const TX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
    /// `RTE_ETH_TX_OFFLOAD_MULTI_SEGS`.
    pub const TX_OFFLOAD_MULTI_SEGS: u64 = 1 << 15;
    /// `RTE_MBUF_DEFAULT_BUF_SIZE`: 2048 bytes of data room plus the headroom.
    pub const MBUF_DEFAULT_BUF_SIZE: u16 = 2048 + 128;
}
