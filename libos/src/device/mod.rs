//! Devices: what the user-level stack sends and receives Ethernet frames through.
//!
//! A device moves frames in bursts and says what it can do. The user-level libOS
//! polls it inline from the runtime's loop (receive a burst, hand the frames to the
//! stack, transmit what the stack produced), so a device must never block.
//!
//! Devices:
//! - [`memory`]: an in-process link between stacks, no copies;
//! - [`shm`]: shared-memory rings between two processes (kernel bypass on any Linux
//!   machine, no root);
//! - [`raw`]: AF_PACKET with TPACKET_V3 mmap rings on a named interface (root);
//! - `dpdk` (cargo feature `dpdk`): DPDK poll-mode drivers.
//!
//! Wrappers that compose over any device: [`pcap`] (capture every frame to a file
//! tcpdump reads) and [`faults`] (the simulator's loss, duplication, reordering and
//! corruption on a real device). [`open`] builds the device a [`Config`] asks for,
//! wrapped as it asks.
//!
//! Buffers: a received frame is a [`Bytes`] that may point straight into device
//! memory (a shared-memory slot, a DPDK mbuf); the stack keeps slices of it as the
//! connection's received data, so a popped element can be device memory, and the
//! slot returns to its device when the last slice is dropped. A device whose buffers
//! run out refuses frames (`tx_burst` takes fewer, `rx_burst` returns fewer): that is
//! back-pressure, never a crash.

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod faults;
pub mod memory;
pub mod pcap;
#[cfg(target_os = "linux")]
pub mod raw;
#[cfg(target_os = "linux")]
pub mod shm;

use crate::config::{Config, ConfigError, LibOsKind};
use bytes::Bytes;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::IdleMode;
use std::collections::VecDeque;
use std::os::fd::RawFd;

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
    /// A burst of one frame costs about what each frame of a larger burst costs (a
    /// shared-memory ring: no system call, no doorbell write): the libOS hands a TCP
    /// push's segments to the device at once, inside the push, instead of at the
    /// loop's next turn. That takes the rest of the task's turn off a request's
    /// round trip. Devices whose bursts have a fixed cost (a `sendto` to kick an
    /// AF_PACKET ring, a NIC doorbell) leave it off and send once per turn.
    pub eager_tx: bool,
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

    /// A file descriptor that becomes readable when frames arrive, if the device has
    /// one: the libOS registers it with the runtime's reactor so the loop can park
    /// instead of spinning. `None` (the default): the device must be polled.
    fn readiness_fd(&self) -> Option<RawFd> {
        None
    }

    /// The loop is about to sleep until [`readiness_fd`](Self::readiness_fd) (or a
    /// timer) wakes it: a device whose fd is a doorbell its peer rings asks to be
    /// rung from now on. `false` if frames arrived meanwhile (the loop does not
    /// sleep then). The default has nothing to arrange.
    fn prepare_park(&mut self) -> bool {
        true
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn caps(&self) -> DeviceCaps {
        (**self).caps()
    }
    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        (**self).rx_burst(out, max)
    }
    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        (**self).tx_burst(frames)
    }
    fn readiness_fd(&self) -> Option<RawFd> {
        (**self).readiness_fd()
    }
    fn prepare_park(&mut self) -> bool {
        (**self).prepare_park()
    }
}

/// The device `config` selects (`config.libos` must be a user-level stack libOS),
/// wrapped in a fault injector and a capture as `config.net` asks (faults inside
/// the capture, so the capture shows what the stack really sent and received).
pub fn open(config: &Config) -> Result<Box<dyn Device>, ConfigError> {
    let net = &config.net;
    let device: Box<dyn Device> = match config.libos {
        LibOsKind::Posix => {
            return Err(ConfigError::Invalid("the POSIX libOS uses the kernel's sockets, not a device".into()))
        }
        LibOsKind::Memory => Box::new(memory::MemoryLink::named(&net.link).attach(net.ethernet(), net.mtu)),
        #[cfg(target_os = "linux")]
        LibOsKind::Shm => Box::new(shm::ShmDevice::open(&shm::ShmConfig::from_net(net)).map_err(|e| ConfigError::Device(e.into()))?),
        #[cfg(target_os = "linux")]
        LibOsKind::Raw => Box::new(raw::RawDevice::open(&raw::RawConfig::from_net(net)?).map_err(ConfigError::Device)?),
        LibOsKind::Dpdk => open_dpdk(config)?,
        #[allow(unreachable_patterns)]
        other => return Err(ConfigError::Invalid(format!("the {other} libOS is not available on this platform"))),
    };
    let device: Box<dyn Device> = match &net.faults {
        Some(f) => Box::new(faults::FaultDevice::new(device, f.clone())),
        None => device,
    };
    Ok(match &net.pcap {
        Some(path) => Box::new(
            pcap::PcapDevice::create(device, path)
                .map_err(|e| ConfigError::Device(format!("cannot create the capture file {}: {e}", path.display())))?,
        ),
        None => device,
    })
}

#[cfg(feature = "dpdk")]
fn open_dpdk(config: &Config) -> Result<Box<dyn Device>, ConfigError> {
    let net = &config.net;
    let eal_args = if !net.dpdk_args.is_empty() {
        net.dpdk_args.clone()
    } else if let Some(iface) = &net.iface {
        // No EAL arguments: DPDK's af_packet driver on the named interface, no
        // hugepages, no PCI scan, one core.
        dpdk::DpdkConfig::parse_eal_args(&format!(
            "--no-huge -m 256 --no-shconf --no-pci -l 0 --vdev=net_af_packet0,iface={iface}"
        ))
    } else {
        return Err(ConfigError::Invalid(
            "the dpdk libOS needs EAL arguments (DEMI_DPDK_ARGS / --dpdk-args, e.g. `--no-huge -m 256 --no-pci -l 0 \
             --vdev=net_tap0,iface=demi0`) or an interface (DEMI_IFACE / --iface) for DPDK's af_packet driver"
                .into(),
        ));
    };
    let mut dc = dpdk::DpdkConfig::new(eal_args);
    dc.mtu = net.mtu;
    if let Some(n) = net.buffers {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        dc.rx_pool_size = n.max(dc.rx_pool_size);
        dc.tx_pool_size = n;
    }
    let device = dpdk::DpdkDevice::open(&dc).map_err(|e| ConfigError::Device(e.to_string()))?;
    Ok(Box::new(device))
}

#[cfg(not(feature = "dpdk"))]
fn open_dpdk(_config: &Config) -> Result<Box<dyn Device>, ConfigError> {
    Err(ConfigError::Device(
        "this build of demi has no DPDK support: rebuild with `--features dpdk` (needs `apt-get install dpdk-dev \
         libdpdk-dev pkg-config libclang-dev clang`; see docs/setup.md)"
            .into(),
    ))
}
