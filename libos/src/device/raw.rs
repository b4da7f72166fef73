//! The raw device: Ethernet frames through an AF_PACKET socket on a named interface
//! (a veth, a tap, a NIC), with TPACKET_V3 memory-mapped rings in both directions.
//!
//! - Receive: a ring of blocks the kernel fills with frames; a block is handed to
//!   us when it is full or when it has waited `RX_BLOCK_TIMEOUT_MS` (1 ms), and
//!   handed back once read. Frames are copied out of the block into buffers of the
//!   device's receive pool ([`BufferPool`]) that the stack can keep (holding them
//!   in the ring would pin whole blocks). No system call, no allocation per frame
//!   while the pool lasts; when the application holds every buffer (a receive
//!   window of tiny segments pins many), frames are copied to the heap instead, so
//!   unread data can never stall the ring.
//! - Send: a ring of frame slots we fill and mark, then one `send` per burst tells
//!   the kernel to transmit every marked slot (`PACKET_QDISC_BYPASS` skips the
//!   queueing discipline). A full ring refuses frames: back-pressure.
//! - `PACKET_IGNORE_OUTGOING`: our own frames are not looped back to us.
//! - The socket is the device's readiness descriptor: the runtime parks on it
//!   when nothing else is due (a lone frame is seen within the 1 ms block timeout;
//!   under load blocks fill and go at once).
//!
//! The stack's MAC is the interface's unless configured otherwise (then the
//! interface is put in promiscuous mode for this socket). Give the interface no IP
//! address of its own, or the kernel will answer ARP and reset TCP connections for
//! it too. The kernel's offloads on the *peer* side (TSO/GSO, partial checksums)
//! must be off, since frames cross the wire as the kernel built them: see
//! docs/setup.md.

use super::{Device, DeviceCaps};
use crate::buffer::BufferPool;
use crate::config::{ConfigError, NetConfig};
use bytes::Bytes;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::IdleMode;
use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// How long the kernel keeps a partly filled receive block before handing it over.
pub const RX_BLOCK_TIMEOUT_MS: u32 = 1;
const RX_BLOCK_SIZE: usize = 1 << 18;
const RX_BLOCKS: usize = 8;
/// Default slots of the send ring.
pub const DEFAULT_TX_FRAMES: usize = 512;
/// Default buffers of the receive pool.
pub const DEFAULT_RX_BUFFERS: usize = 4096;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where a send slot's frame starts.
const TX_DATA_OFFSET: usize = 48;

/// How to open a raw device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawConfig {
    /// The interface.
    pub iface: String,
    /// The stack's Ethernet address; `None`: the interface's.
    pub mac: Option<EthernetAddress>,
    /// IP MTU; must not exceed the interface's.
    pub mtu: usize,
    /// Slots of the send ring.
    pub tx_frames: usize,
    /// Buffers of the receive pool.
    pub rx_buffers: usize,
}

impl RawConfig {
    /// The raw device `net` describes (`net.iface` is required).
    pub fn from_net(net: &NetConfig) -> Result<RawConfig, ConfigError> {
        let iface = net.iface.clone().ok_or_else(|| {
            ConfigError::Invalid("the raw libOS needs an interface: set DEMI_IFACE (or --iface) to e.g. a veth's name".into())
        })?;
        Ok(RawConfig {
            iface,
            mac: net.mac,
            mtu: net.mtu,
            tx_frames: net.buffers.unwrap_or(DEFAULT_TX_FRAMES),
            rx_buffers: net.buffers.unwrap_or(DEFAULT_RX_BUFFERS),
        })
    }
}

/// Counters of a raw device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// `tx_burst` calls that stopped on a full send ring.
    pub tx_full: u64,
    /// Frames the kernel refused (`TP_STATUS_WRONG_FORMAT`) or too long to send.
    pub tx_errors: u64,
}

/// The rings' mapping.
struct Rings {
    base: NonNull<u8>,
    len: usize,
}

impl Drop for Rings {
    fn drop(&mut self) {
        // SAFETY: exactly what mmap returned.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// An AF_PACKET device. See the [module docs](self).
pub struct RawDevice {
    // Declared before `fd`: unmapped before the socket closes.
    rings: Rings,
    fd: OwnedFd,
    mac: EthernetAddress,
    mtu: usize,
    /// The receive block being read, and where in it.
    rx_block: usize,
    rx_left: u32,
    rx_offset: usize,
    tx_frame_size: usize,
    tx_frames: usize,
    tx_next: usize,
    rx_pool: BufferPool,
    stats: RawStats,
}

fn os_err(what: &str) -> String {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{what}: {e}; AF_PACKET needs root (or CAP_NET_RAW)")
        }
        _ => format!("{what}: {e}"),
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid `T` for the duration of the call.
    let r = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ifreq` with the interface name filled in.
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req
}

fn ioctl(fd: RawFd, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq for the requests used here (SIOCGIF*).
    if unsafe { libc::ioctl(fd, request, req as *mut libc::ifreq) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl RawDevice {
    /// Opens a raw device on `config.iface`.
    pub fn open(config: &RawConfig) -> Result<RawDevice, String> {
        let name = &config.iface;
        let err = |what: String| format!("raw device on {name}: {what}");
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(err("not a valid interface name".into()));
        }
        let cname = CString::new(name.as_str()).map_err(|_| err("not a valid interface name".into()))?;
        // SAFETY: a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(err(
                "no such interface in this network namespace (see `ip link`; create one with e.g. `ip link add NAME type veth peer name PEER`)"
                    .into(),
            ));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto as i32) };
        if raw < 0 {
            return Err(err(os_err("cannot open an AF_PACKET socket")));
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();

        let mut req = ifreq(name);
        ioctl(s, libc::SIOCGIFFLAGS, &mut req).map_err(|e| err(format!("cannot read its flags: {e}")))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
        if flags & libc::IFF_UP == 0 {
            return Err(err(format!("the interface is down: bring it up with `ip link set {name} up`")));
        }
        let mut req = ifreq(name);
        ioctl(s, libc::SIOCGIFMTU, &mut req).map_err(|e| err(format!("cannot read its MTU: {e}")))?;
        // SAFETY: SIOCGIFMTU filled the mtu member.
        let if_mtu = unsafe { req.ifr_ifru.ifru_mtu } as usize;
        if config.mtu > if_mtu {
            return Err(err(format!("MTU {} is larger than the interface's ({if_mtu}): lower DEMI_MTU or raise the interface's", config.mtu)));
        }
        let mut req = ifreq(name);
        ioctl(s, libc::SIOCGIFHWADDR, &mut req).map_err(|e| err(format!("cannot read its Ethernet address: {e}")))?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        let if_mac = EthernetAddress(std::array::from_fn(|i| hw.sa_data[i] as u8));
        let mac = config.mac.unwrap_or(if_mac);

        setsockopt(s, libc::SOL_PACKET, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V3 as libc::c_int))
            .map_err(|e| err(format!("TPACKET_V3 not available: {e}")))?;
        let rx_req = libc::tpacket_req3 {
            tp_block_size: RX_BLOCK_SIZE as u32,
            tp_block_nr: RX_BLOCKS as u32,
            tp_frame_size: 2048,
            tp_frame_nr: (RX_BLOCK_SIZE * RX_BLOCKS / 2048) as u32,
            tp_retire_blk_tov: RX_BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx_req).map_err(|e| err(format!("cannot set up the receive ring: {e}")))?;
        let tx_frame_size = (TX_DATA_OFFSET + config.mtu + 14).next_power_of_two().max(2048);
        let per_block = (1usize << 16) / tx_frame_size;
        let per_block = per_block.max(1);
        let tx_blocks = config.tx_frames.clamp(64, 1 << 16).div_ceil(per_block);
        let tx_block_size = (per_block * tx_frame_size).max(4096);
        let tx_frames = tx_blocks * (tx_block_size / tx_frame_size);
        let tx_req = libc::tpacket_req3 {
            tp_block_size: tx_block_size as u32,
            tp_block_nr: tx_blocks as u32,
            tp_frame_size: tx_frame_size as u32,
            tp_frame_nr: tx_frames as u32,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req).map_err(|e| err(format!("cannot set up the send ring: {e}")))?;
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &(1 as libc::c_int))
            .map_err(|e| err(format!("PACKET_IGNORE_OUTGOING: {e}")))?;
        // Best effort: only a speed-up.
        let _ = setsockopt(s, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &(1 as libc::c_int));

        let len = RX_BLOCK_SIZE * RX_BLOCKS + tx_block_size * tx_blocks;
        // SAFETY: mapping the rings the kernel just set up on this socket.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, s, 0) };
        if p == libc::MAP_FAILED {
            return Err(err(os_err("cannot map the rings")));
        }
        let rings = Rings { base: NonNull::new(p.cast()).ok_or_else(|| err("mmap returned null".into()))?, len };

        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of the right length.
        let r = unsafe {
            libc::bind(s, (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        };
        if r != 0 {
            return Err(err(os_err("cannot bind to the interface")));
        }
        if mac != if_mac {
            // Frames for a MAC that is not the interface's: promiscuous mode for this socket.
            // SAFETY: packet_mreq is plain data.
            let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mr.mr_ifindex = ifindex as i32;
            mr.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)
                .map_err(|e| err(format!("cannot turn on promiscuous mode for MAC {mac}: {e}")))?;
        }
        Ok(RawDevice {
            rings,
            fd,
            mac,
            mtu: config.mtu,
            rx_block: 0,
            rx_left: 0,
            rx_offset: 0,
            tx_frame_size,
            tx_frames,
            tx_next: 0,
            rx_pool: BufferPool::new(config.rx_buffers.clamp(1, 1 << 20), config.mtu + 14, 0),
            stats: RawStats::default(),
        })
    }

    /// What the device has done so far.
    pub fn stats(&self) -> RawStats {
        self.stats
    }

    /// The pool received frames are copied into.
    pub fn rx_pool(&self) -> &BufferPool {
        &self.rx_pool
    }

    fn rx_block_ptr(&self, i: usize) -> *mut u8 {
        // SAFETY: block `i < RX_BLOCKS` is inside the mapping.
        unsafe { self.rings.base.as_ptr().add(i * RX_BLOCK_SIZE) }
    }

    /// The status word of receive block `i` (`block_status` of its descriptor).
    fn rx_status(&self, i: usize) -> &AtomicU32 {
        let off = std::mem::offset_of!(libc::tpacket_block_desc, hdr);
        // SAFETY: the block descriptor starts the block; `block_status` is its first
        // header field, 4-byte aligned; the kernel writes it concurrently, so it is
        // only read and written atomically.
        unsafe { &*(self.rx_block_ptr(i).add(off) as *const AtomicU32) }
    }

    fn tx_slot(&self, i: usize) -> *mut u8 {
        let block_frames = self.tx_frames_per_block();
        let block_size = block_frames * self.tx_frame_size;
        let off = RX_BLOCK_SIZE * RX_BLOCKS + (i / block_frames) * block_size + (i % block_frames) * self.tx_frame_size;
        debug_assert!(off + self.tx_frame_size <= self.rings.len);
        // SAFETY: slot `i < tx_frames` is inside the send ring.
        unsafe { self.rings.base.as_ptr().add(off) }
    }

    fn tx_frames_per_block(&self) -> usize {
        ((1usize << 16) / self.tx_frame_size).max(1)
    }

    fn tx_status(&self, i: usize) -> &AtomicU32 {
        let off = std::mem::offset_of!(libc::tpacket3_hdr, tp_status);
        // SAFETY: the slot starts with its tpacket3_hdr; tp_status is 4-byte aligned
        // and shared with the kernel, so accessed atomically.
        unsafe { &*(self.tx_slot(i).add(off) as *const AtomicU32) }
    }
}

impl Device for RawDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mac: self.mac,
            mtu: self.mtu,
            // A wire: checksums are ours to fill and check.
            rx_checksum_offload: false,
            tx_checksum_offload: false,
            idle: IdleMode::Park,
            eager_tx: false,
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let mut got = 0;
        while got < max {
            if self.rx_left == 0 {
                let status = self.rx_status(self.rx_block).load(Ordering::Acquire);
                if status & libc::TP_STATUS_USER == 0 {
                    break;
                }
                let block = self.rx_block_ptr(self.rx_block);
                // SAFETY: the block is ours (TP_STATUS_USER); its descriptor is plain data.
                let desc = unsafe { &*(block as *const libc::tpacket_block_desc) };
                // SAFETY: bh1 is the member used by TPACKET_V3.
                let bh1 = unsafe { desc.hdr.bh1 };
                self.rx_left = bh1.num_pkts;
                self.rx_offset = bh1.offset_to_first_pkt as usize;
                if self.rx_left == 0 {
                    self.release_rx_block();
                    continue;
                }
            }
            let block = self.rx_block_ptr(self.rx_block);
            if self.rx_offset + std::mem::size_of::<libc::tpacket3_hdr>() > RX_BLOCK_SIZE {
                // A header that would run past the block: the block is garbage.
                self.release_rx_block();
                continue;
            }
            // SAFETY: in bounds (checked); the block is ours until released.
            let hdr = unsafe { &*(block.add(self.rx_offset) as *const libc::tpacket3_hdr) };
            let start = self.rx_offset + hdr.tp_mac as usize;
            let len = hdr.tp_snaplen as usize;
            if start + len <= RX_BLOCK_SIZE {
                // SAFETY: in bounds (checked), ours until released.
                let frame = unsafe { std::slice::from_raw_parts(block.add(start), len) };
                // From the pool; from the heap once it runs low, so that data an
                // application has not read yet (a receive window of tiny segments
                // can pin many buffers) never stops the ring.
                out.push(self.rx_pool.copy_from(frame).unwrap_or_else(|| Bytes::copy_from_slice(frame)));
                got += 1;
            }
            self.rx_left -= 1;
            if self.rx_left == 0 || hdr.tp_next_offset == 0 {
                self.release_rx_block();
            } else {
                self.rx_offset += hdr.tp_next_offset as usize;
            }
        }
        self.stats.rx_frames += got as u64;
        got
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        let mut taken = 0;
        while let Some(frame) = frames.front() {
            if frame.len() > self.tx_frame_size - TX_DATA_OFFSET || frame.len() > self.mtu + 14 {
                frames.pop_front();
                self.stats.tx_errors += 1;
                taken += 1;
                continue;
            }
            let i = self.tx_next;
            let status = self.tx_status(i).load(Ordering::Acquire);
            if status == libc::TP_STATUS_WRONG_FORMAT {
                self.stats.tx_errors += 1;
            } else if status != libc::TP_STATUS_AVAILABLE {
                self.stats.tx_full += 1;
                break;
            }
            let slot = self.tx_slot(i);
            // SAFETY: the slot is ours (status AVAILABLE or WRONG_FORMAT); the frame
            // fits after the header (checked above).
            unsafe {
                let hdr = &mut *(slot as *mut libc::tpacket3_hdr);
                hdr.tp_next_offset = 0;
                hdr.tp_len = frame.len() as u32;
                hdr.tp_snaplen = frame.len() as u32;
                std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(TX_DATA_OFFSET), frame.len());
            }
            self.tx_status(i).store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_next = (i + 1) % self.tx_frames;
            frames.pop_front();
            taken += 1;
        }
        if taken > 0 {
            // SAFETY: a zero-length send on our socket: transmit the marked slots.
            let r = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
            if r < 0 {
                let e = io::Error::last_os_error();
                // EAGAIN/ENOBUFS: the slots stay marked and go with the next send.
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)) {
                    self.stats.tx_errors += 1;
                }
            }
            self.stats.tx_frames += taken as u64;
        }
        taken
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

impl RawDevice {
    fn release_rx_block(&mut self) {
        fence(Ordering::Release);
        self.rx_status(self.rx_block).store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.rx_block = (self.rx_block + 1) % RX_BLOCKS;
        self.rx_left = 0;
        self.rx_offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_says_what_to_do() {
        let e = RawDevice::open(&RawConfig { iface: "demi-nope0".into(), mac: None, mtu: 1500, tx_frames: 64, rx_buffers: 64 })
            .err()
            .unwrap();
        assert!(e.contains("no such interface"), "{e}");
        let e = RawDevice::open(&RawConfig { iface: "x".repeat(40), mac: None, mtu: 1500, tx_frames: 64, rx_buffers: 64 }).err().unwrap();
        assert!(e.contains("not a valid interface name"), "{e}");
    }
}
