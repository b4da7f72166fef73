//! The shared-memory device: two processes joined by rings of Ethernet frames in a
//! shared file (by default `/dev/shm/demi-<link>`), busy-polled. Kernel bypass
//! between processes on any Linux machine: no system call on the data path, no
//! root, no device set-up.
//!
//! # Layout
//! The file holds a header and one *direction* per side (side 0 sends on direction
//! 0, side 1 on direction 1). A direction is the sender's pool of frame slots and two
//! single-producer single-consumer rings:
//! - the **data ring** (sender → receiver): descriptors `slot << 32 | length` of
//!   filled slots, each with the sequence number of its position, which the sender
//!   publishes last (the receiver polls the next entry, not a shared index);
//! - the **free ring** (receiver → sender): indices of slots the receiver is done
//!   with. It starts full (every slot free), and it is the sender's only free list,
//!   so a sender that restarts carries on where its predecessor left.
//!
//! Ring positions are free-running counters; each ring has room for every slot, so
//! neither can overflow. Indices are published with release stores and read with
//! acquire loads; each index sits on its own cache line.
//!
//! # Zero copy and back-pressure
//! A sent frame is copied once, from the stack's frame into a slot. A received frame
//! longer than [`ShmConfig::copy_below`] (256 bytes by default) is not copied:
//! [`rx_burst`](Device::rx_burst) hands out a [`Bytes`] that points into the slot,
//! the stack keeps slices of it as a connection's received data, and the slot goes
//! back to the sender when the last slice is dropped (on any thread). A short frame
//! (an ACK, a small request) is copied out and its slot freed in the same burst:
//! cheaper than sharing the slot. A receiver holding more than half of the sender's
//! slots copies every frame, so an application that keeps popped buffers cannot
//! starve the link.
//! A sender with no free slot refuses frames: back-pressure, not loss.
//!
//! # Sleeping
//! Both sides busy-poll by default. A runtime whose idle policy parks (`DEMI_IDLE=park`,
//! or spin-then-park) sleeps in epoll on this side's *doorbell*, a FIFO next to the
//! file (`<file>.bell0`, `.bell1`): before sleeping the side raises its asleep flag
//! in the header and looks at its ring once more; a peer that has ever parked is
//! checked after every burst that published frames or returned slots, and rung
//! (one byte into its FIFO) while its flag is up. A fence on each side orders the
//! flag against the ring, so a frame is never left unseen by a sleeping side. A
//! side that never parks costs its peer nothing.
//!
//! # Attaching
//! [`ShmDevice::open`] creates or opens the file under an exclusive `flock`, and
//! claims its side by writing its process id. A side held by a live process is
//! refused with [`ShmError`]; a side whose process died is taken over. When no live
//! process holds the other side, the file is laid out afresh; otherwise the new
//! process keeps the layout (it must ask for the same geometry) and reclaims the
//! slots its dead predecessor still held. The last side to detach removes the file.
//!
//! The two processes trust each other: a peer can write any bytes into its frames,
//! but malformed descriptors are dropped and counted, never followed.

use super::{Device, DeviceCaps};
use crate::config::NetConfig;
use bytes::Bytes;
use demi_net_stack::wire::EthernetAddress;
use demi_runtime::IdleMode;
use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const MAGIC: u64 = u64::from_le_bytes(*b"demishm\0");
const VERSION: u32 = 3;
const CACHE_LINE: usize = 64;
/// Default slots per direction.
pub const DEFAULT_SLOTS: usize = 1024;
/// Default [`ShmConfig::copy_below`]: frames up to 256 bytes (TCP ACKs, small
/// requests and answers) are copied on receive.
pub const DEFAULT_COPY_BELOW: usize = 256;

/// How to open a shared-memory link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmConfig {
    /// The shared file.
    pub path: PathBuf,
    /// Which side of the link this process is: 0 or 1.
    pub side: u8,
    /// This side's Ethernet address.
    pub mac: EthernetAddress,
    /// IP MTU; frames are up to `mtu + 14` bytes.
    pub mtu: usize,
    /// Frame slots per direction (a power of two; rounded up).
    pub slots: usize,
    /// Received frames of at most this many bytes are copied out and their slot
    /// freed at once; longer ones are handed out zero-copy. For a small frame the
    /// copy is cheaper than sharing the slot (an owner allocation, reference counts,
    /// and a return through a lock when the last slice goes). Default
    /// [`DEFAULT_COPY_BELOW`]; 0 makes every frame zero-copy.
    pub copy_below: usize,
}

impl ShmConfig {
    /// The link `net` names: `net.link` is a name under `/dev/shm` (or a path when
    /// it contains a `/`), `net.host` the side.
    pub fn from_net(net: &NetConfig) -> ShmConfig {
        let path = if net.link.contains('/') {
            PathBuf::from(&net.link)
        } else {
            PathBuf::from(format!("/dev/shm/demi-{}", net.link))
        };
        ShmConfig {
            path,
            side: net.host,
            mac: net.ethernet(),
            mtu: net.mtu,
            slots: net.buffers.unwrap_or(DEFAULT_SLOTS),
            copy_below: DEFAULT_COPY_BELOW,
        }
    }
}

/// Why a shared-memory link could not be opened.
#[derive(Debug)]
pub struct ShmError(String);

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShmError {}

impl From<ShmError> for String {
    fn from(e: ShmError) -> String {
        e.0
    }
}

/// Where things are in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    slots: u32,
    slot_size: u32,
}

// Header fields (each on its own cache line where it is written concurrently).
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_SLOTS: usize = 12;
const H_SLOT_SIZE: usize = 16;
const H_PIDS: usize = CACHE_LINE; // two u32s, written under the flock only
/// Two u32s: side N has parked at least once, so its peer checks its asleep flag
/// after publishing (written once per process, read by the peer).
const H_PARKS: usize = 2 * CACHE_LINE;
/// Side N's asleep flag, on a line of its own at `H_ASLEEP + N * CACHE_LINE`:
/// written by side N around its sleeps, read by its peer after each burst.
const H_ASLEEP: usize = 3 * CACHE_LINE;
const HEADER: usize = 5 * CACHE_LINE;

// Direction fields, relative to the direction's start.
const D_DATA_TAIL: usize = 0; // u64, written (and read) by the sender only
const D_DATA_HEAD: usize = CACHE_LINE; // u64, written (and read) by the receiver only
const D_FREE_TAIL: usize = 2 * CACHE_LINE; // written by the receiver
const D_FREE_HEAD: usize = 3 * CACHE_LINE; // written by the sender
const D_RINGS: usize = 4 * CACHE_LINE;
/// A data ring entry: the position it was written at plus one (u64, published
/// last), then the descriptor `slot << 32 | length` (u64).
const DATA_ENTRY: usize = 16;

impl Geometry {
    fn align(n: usize) -> usize {
        n.div_ceil(CACHE_LINE) * CACHE_LINE
    }
    fn data_ring(&self) -> usize {
        D_RINGS
    }
    fn free_ring(&self) -> usize {
        self.data_ring() + Self::align(DATA_ENTRY * self.slots as usize)
    }
    fn held(&self) -> usize {
        self.free_ring() + Self::align(4 * self.slots as usize)
    }
    fn frames(&self) -> usize {
        self.held() + Self::align(self.slots as usize)
    }
    fn direction_len(&self) -> usize {
        self.frames() + self.slots as usize * self.slot_size as usize
    }
    fn direction(&self, d: usize) -> usize {
        HEADER + d * self.direction_len()
    }
    fn file_len(&self) -> usize {
        HEADER + 2 * self.direction_len()
    }
}

/// The mapped file. Shared by the device and every received frame still alive.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
    geometry: Geometry,
}

// SAFETY: the mapping is plain shared memory; every concurrently written location
// is accessed through atomics, and frame bytes are only read while the slot is owned
// (see the module docs), so sharing the pointer across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// An atomic at byte offset `off` (aligned, inside the file).
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: in bounds and aligned (checked above; the base is page-aligned);
        // the memory lives as long as `self`, and is only accessed atomically.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU32) }
    }
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: as in `u32_at`.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU64) }
    }
    fn u8_at(&self, off: usize) -> &AtomicU8 {
        assert!(off < self.len);
        // SAFETY: as in `u32_at`.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU8) }
    }
    /// The bytes of slot `slot` of direction `d`.
    fn slot_ptr(&self, d: usize, slot: u32) -> *mut u8 {
        let g = self.geometry;
        let off = g.direction(d) + g.frames() + slot as usize * g.slot_size as usize;
        assert!(slot < g.slots && off + g.slot_size as usize <= self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.base.as_ptr().add(off) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing borrows the
        // mapping any more (this is the last reference).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Slots a receiver has finished with, waiting to go back on the free ring.
/// Frames may be dropped on any thread; the device moves them to the ring on its
/// own thread (the free ring has one producer).
struct Returns {
    slots: Mutex<Vec<u32>>,
    /// How many slots `slots` holds: checked without the lock on every burst.
    pending: AtomicUsize,
    /// Slots handed out as received frames and not yet returned.
    held: AtomicUsize,
    /// This side's doorbell and number: a frame dropped on another thread while this
    /// side sleeps rings it, so its slot reaches the free ring (the peer may be
    /// waiting for it).
    bell: Arc<File>,
    side: usize,
}

impl Returns {
    fn push(&self, slot: u32) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
        // SeqCst (a locked add either way on x86): ordered against this side's
        // "parks" flag, see `SlotFrame::drop`.
        self.pending.fetch_add(1, Ordering::SeqCst);
    }
}

/// The owner of a received frame's slot: gives the slot back when dropped.
struct SlotFrame {
    map: Arc<Mapping>,
    returns: Arc<Returns>,
    slot: u32,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the slot is owned by this frame until it is dropped (the sender does not
// touch it before it is back on the free ring); `Mapping` is Send + Sync.
unsafe impl Send for SlotFrame {}

impl AsRef<[u8]> for SlotFrame {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is inside the slot (checked when the frame was
        // made), the mapping is alive (`self.map`), and the slot's bytes do not
        // change while this frame owns it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for SlotFrame {
    fn drop(&mut self) {
        self.returns.push(self.slot);
        self.returns.held.fetch_sub(1, Ordering::Relaxed);
        // A side that never parks needs no wake-up: one load, no fence. (If this
        // reads "parks" unset, the side's later sleep sees this return pending:
        // both are SeqCst operations.) Otherwise pair with the fence in
        // `prepare_park`: either the sleeper sees the return pending, or this sees
        // its flag up and rings.
        let side = self.returns.side;
        if self.map.u32_at(H_PARKS + 4 * side).load(Ordering::SeqCst) != 0 {
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.map.u32_at(H_ASLEEP + side * CACHE_LINE).load(Ordering::Relaxed) != 0 {
                use std::io::Write;
                let _ = (&*self.returns.bell).write(&[1]);
            }
        }
    }
}

/// Counters of a shared-memory device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShmStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Received frames copied out: short ones (see [`ShmConfig::copy_below`]), and
    /// any while this side held more than half the slots.
    pub rx_copied: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// `tx_burst` calls that stopped for lack of a free slot.
    pub tx_full: u64,
    /// Frames dropped: longer than a slot, or descriptors that made no sense.
    pub dropped: u64,
}

/// One side of a shared-memory link. See the [module docs](self).
pub struct ShmDevice {
    map: Arc<Mapping>,
    file: File,
    path: PathBuf,
    side: usize,
    mac: EthernetAddress,
    mtu: usize,
    returns: Arc<Returns>,
    copy_below: usize,
    /// Slots of frames copied out in this `rx_burst`, freed at its end.
    copied: Vec<u32>,
    /// This side's doorbell (a FIFO, opened read-write and non-blocking: the fd the
    /// runtime sleeps on) and the peer's, opened when first rung.
    bell: Arc<File>,
    peer_bell: Option<File>,
    bell_path: [PathBuf; 2],
    /// This side's asleep flag is up (cleared by the next `rx_burst`).
    asleep: bool,
    /// This side announced in the header that it parks.
    parks: bool,
    /// The peer announced that it parks: check its flag after each burst.
    peer_parks: bool,
    /// The last `tx_burst` stopped for lack of free slots.
    tx_blocked: bool,
    /// The sender's last view of its free ring's tail (re-read only when the slots
    /// it knew of are used up: the line is written by the other process).
    free_tail: u32,
    stats: ShmStats,
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Holds an exclusive `flock` on a file until dropped.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn new(f: &'a File) -> io::Result<Self> {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl ShmDevice {
    /// Opens side `config.side` of the link at `config.path`. See the
    /// [module docs](self) for what happens to a link in use or left by a dead
    /// process.
    pub fn open(config: &ShmConfig) -> Result<ShmDevice, ShmError> {
        let path = &config.path;
        let err = |what: String| ShmError(format!("shm link {}: {what}", path.display()));
        if config.side > 1 {
            return Err(err(format!(
                "a shared-memory link joins two hosts: the side (DEMI_HOST / host) must be 0 or 1, not {}",
                config.side
            )));
        }
        if !(68..=65_535).contains(&config.mtu) {
            return Err(err(format!("MTU {} is out of range", config.mtu)));
        }
        let slots = config.slots.clamp(64, 1 << 20).next_power_of_two() as u32;
        let slot_size = Geometry::align(config.mtu + 14) as u32;
        let want = Geometry { slots, slot_size };
        let side = config.side as usize;

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(format!("cannot open or create it: {e} (is /dev/shm mounted and writable?)")))?;
        let lock = FileLock::new(&file).map_err(|e| err(format!("cannot lock it: {e}")))?;
        let len = file.metadata().map_err(|e| err(e.to_string()))?.len() as usize;

        // Read what is there (if anything) through a temporary mapping of the header.
        let existing = if len >= HEADER { read_header(&file).map_err(|e| err(e.to_string()))? } else { None };
        let me = std::process::id();
        let (fresh, geometry) = match existing {
            Some((g, pids)) => {
                let other = pids[1 - side];
                let other_alive = pid_alive(other);
                let mine = pids[side];
                if mine != 0 && pid_alive(mine) {
                    return Err(err(format!(
                        "side {side} is in use by process {mine}{}; use the other side (DEMI_HOST={}) or another link \
                         name (DEMI_LINK)",
                        if mine == me { " (this process)" } else { "" },
                        1 - side
                    )));
                }
                if other_alive {
                    if g != want || len != g.file_len() {
                        return Err(err(format!(
                            "process {other} on side {} uses {} slots of {} bytes; this process asks for {} slots of \
                             {} bytes: give both the same MTU and DEMI_BUFFERS",
                            1 - side,
                            g.slots,
                            g.slot_size,
                            want.slots,
                            want.slot_size
                        )));
                    }
                    (false, g)
                } else {
                    (true, want)
                }
            }
            None => (true, want),
        };
        if fresh {
            file.set_len(0).and_then(|_| file.set_len(geometry.file_len() as u64)).map_err(|e| {
                err(format!("cannot size it to {} bytes: {e} (is /dev/shm full?)", geometry.file_len()))
            })?;
        }
        let map = Arc::new(map_file(&file, geometry).map_err(|e| err(format!("cannot map it: {e}")))?);
        let bell_path = [bell_path(path, 0), bell_path(path, 1)];
        let bell = Arc::new(
            open_bell(&bell_path[side]).map_err(|e| err(format!("doorbell {}: {e}", bell_path[side].display())))?,
        );
        if fresh {
            init(&map);
        }
        map.u32_at(H_PIDS + 4 * side).store(me, Ordering::Release);
        // A predecessor on this side may have died asleep: this process starts awake
        // and not parking, so its peer neither rings nor fences for nothing.
        map.u32_at(H_ASLEEP + side * CACHE_LINE).store(0, Ordering::Relaxed);
        map.u32_at(H_PARKS + 4 * side).store(0, Ordering::Relaxed);
        let dev = ShmDevice {
            map,
            file: file.try_clone().map_err(|e| err(e.to_string()))?,
            path: path.clone(),
            side,
            mac: config.mac,
            mtu: config.mtu,
            returns: Arc::new(Returns {
                slots: Mutex::new(Vec::new()),
                pending: AtomicUsize::new(0),
                held: AtomicUsize::new(0),
                bell: bell.clone(),
                side,
            }),
            copy_below: config.copy_below,
            copied: Vec::new(),
            bell,
            peer_bell: None,
            bell_path,
            asleep: false,
            parks: false,
            peer_parks: false,
            tx_blocked: false,
            free_tail: 0,
            stats: ShmStats::default(),
        };
        if !fresh {
            dev.reclaim_held();
        }
        let mut dev = dev;
        let g = dev.map.geometry;
        dev.free_tail = dev.map.u32_at(g.direction(side) + D_FREE_TAIL).load(Ordering::Acquire);
        drop(lock);
        Ok(dev)
    }

    /// Whether a live process holds the other side.
    pub fn peer_attached(&self) -> bool {
        let pid = self.map.u32_at(H_PIDS + 4 * (1 - self.side)).load(Ordering::Acquire);
        pid_alive(pid)
    }

    /// The shared file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this side has done so far.
    pub fn stats(&self) -> ShmStats {
        self.stats
    }

    /// The direction this side receives on.
    fn rx_dir(&self) -> usize {
        1 - self.side
    }

    /// Gives back the slots a dead predecessor on this side was holding.
    fn reclaim_held(&self) {
        let g = self.map.geometry;
        let base = g.direction(self.rx_dir());
        let mut reclaimed = Vec::new();
        for s in 0..g.slots {
            if self.map.u8_at(base + g.held() + s as usize).load(Ordering::Acquire) != 0 {
                reclaimed.push(s);
            }
        }
        for s in reclaimed {
            self.returns.push(s);
        }
        self.return_slots();
    }

    /// Moves returned slots onto the free ring of the direction this side receives
    /// on; whether there were any.
    fn return_slots(&self) -> bool {
        if self.returns.pending.load(Ordering::Acquire) == 0 {
            return false;
        }
        let slots = {
            let mut v = self.returns.slots.lock().unwrap_or_else(|p| p.into_inner());
            self.returns.pending.fetch_sub(v.len(), Ordering::Relaxed);
            std::mem::take(&mut *v)
        };
        self.free_slots(&slots);
        true
    }

    /// Puts `slots` (received frames this side is done with) on the free ring.
    fn free_slots(&self, slots: &[u32]) {
        let g = self.map.geometry;
        let base = g.direction(self.rx_dir());
        let mask = g.slots - 1;
        let tail_at = self.map.u32_at(base + D_FREE_TAIL);
        let mut tail = tail_at.load(Ordering::Relaxed);
        for &s in slots {
            self.map.u8_at(base + g.held() + s as usize).store(0, Ordering::Relaxed);
            self.map.u32_at(base + g.free_ring() + 4 * (tail & mask) as usize).store(s, Ordering::Relaxed);
            tail = tail.wrapping_add(1);
        }
        tail_at.store(tail, Ordering::Release);
    }

    /// After publishing frames or returning slots: rings the peer's doorbell if it
    /// is asleep. Costs a load of a line the peer wrote once, until the peer has
    /// parked; then a fence too.
    fn wake_peer(&mut self) {
        let peer = 1 - self.side;
        if !self.peer_parks {
            if self.map.u32_at(H_PARKS + 4 * peer).load(Ordering::Relaxed) == 0 {
                return;
            }
            self.peer_parks = true;
        }
        // Orders what was just published before the flag's load (the peer fences
        // between raising its flag and looking at the ring).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.map.u32_at(H_ASLEEP + peer * CACHE_LINE).load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.peer_bell.is_none() {
            // Write end, non-blocking: ENXIO if no process holds the read end (the
            // peer is gone); a full FIFO means a ring is pending already.
            self.peer_bell = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&self.bell_path[peer])
                .ok();
        }
        if let Some(b) = &self.peer_bell {
            use std::io::Write;
            if let Err(e) = (&*b).write(&[1]) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.peer_bell = None;
                }
            }
        }
    }

    /// Empties this side's doorbell FIFO.
    fn drain_bell(&self) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while let Ok(n) = (&*self.bell).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }

    /// Lowers this side's asleep flag (the loop is awake again).
    fn wake_up(&mut self) {
        self.asleep = false;
        self.map.u32_at(H_ASLEEP + self.side * CACHE_LINE).store(0, Ordering::Relaxed);
        self.drain_bell();
    }

    /// Whether a frame waits on the ring this side receives on.
    fn frame_waiting(&self) -> bool {
        let g = self.map.geometry;
        let base = g.direction(self.rx_dir());
        let head = self.map.u64_at(base + D_DATA_HEAD).load(Ordering::Relaxed);
        let entry = base + g.data_ring() + DATA_ENTRY * (head & u64::from(g.slots - 1)) as usize;
        self.map.u64_at(entry).load(Ordering::Acquire) == head + 1
    }

    /// Whether the peer has returned slots this side was waiting for.
    fn slots_returned(&self) -> bool {
        let g = self.map.geometry;
        let base = g.direction(self.side);
        let free_head = self.map.u32_at(base + D_FREE_HEAD).load(Ordering::Relaxed);
        self.map.u32_at(base + D_FREE_TAIL).load(Ordering::Acquire) != free_head
    }
}

/// The doorbell FIFO of side `side` of the link at `path`.
fn bell_path(path: &Path, side: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".bell{side}"));
    PathBuf::from(p)
}

/// Creates (if needed) and opens a doorbell FIFO read-write and non-blocking: the
/// read end never sees end-of-file, and its holder keeps writers from `ENXIO`.
fn open_bell(path: &Path) -> io::Result<File> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path has a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.file_type().is_fifo() {
        return Err(io::Error::other("exists and is not a FIFO"));
    }
    Ok(f)
}

/// Reads the header of an existing file: `None` if it is not a current-version
/// link (then it is laid out afresh, or refused if a live peer holds it).
fn read_header(file: &File) -> io::Result<Option<(Geometry, [u32; 2])>> {
    let mut buf = [0u8; HEADER];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut buf, 0)?;
    let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
    let magic = u64::from_ne_bytes(buf[H_MAGIC..H_MAGIC + 8].try_into().unwrap());
    let g = Geometry { slots: u32_at(H_SLOTS), slot_size: u32_at(H_SLOT_SIZE) };
    let pids = [u32_at(H_PIDS), u32_at(H_PIDS + 4)];
    if magic != MAGIC || u32_at(H_VERSION) != VERSION || !g.slots.is_power_of_two() || g.slot_size == 0 {
        // Not a link we can use; its pids still say whether someone is on it.
        return Ok(Some((Geometry { slots: 0, slot_size: 0 }, pids)).filter(|_| pids.iter().any(|&p| pid_alive(p))));
    }
    Ok(Some((g, pids)))
}

fn map_file(file: &File, geometry: Geometry) -> io::Result<Mapping> {
    let len = geometry.file_len();
    // SAFETY: a fresh shared mapping of a file we opened read-write and sized to at
    // least `len` bytes; failure is checked.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(Mapping { base, len, geometry })
}

/// Lays out a fresh (zeroed) file: header, and both free rings full.
fn init(map: &Mapping) {
    let g = map.geometry;
    map.u32_at(H_VERSION).store(VERSION, Ordering::Relaxed);
    map.u32_at(H_SLOTS).store(g.slots, Ordering::Relaxed);
    map.u32_at(H_SLOT_SIZE).store(g.slot_size, Ordering::Relaxed);
    for d in 0..2 {
        let base = g.direction(d);
        for s in 0..g.slots {
            map.u32_at(base + g.free_ring() + 4 * s as usize).store(s, Ordering::Relaxed);
        }
        map.u32_at(base + D_FREE_TAIL).store(g.slots, Ordering::Relaxed);
    }
    // The magic last: a reader that sees it sees the rest (we also hold the flock).
    map.u64_at(H_MAGIC).store(MAGIC, Ordering::Release);
}

impl Device for ShmDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            mac: self.mac,
            mtu: self.mtu,
            // Memory does not corrupt frames: checksums would prove nothing.
            rx_checksum_offload: true,
            tx_checksum_offload: true,
            idle: IdleMode::Spin,
            // A burst is a copy and a release store: send a push at once.
            eager_tx: true,
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        if self.asleep {
            self.wake_up();
        }
        // Slots the application let go of (a sleeping sender may wait for them).
        let mut freed = self.return_slots();
        let map = &self.map;
        let g = map.geometry;
        let d = self.rx_dir();
        let base = g.direction(d);
        let mask = g.slots - 1;
        let head_at = map.u64_at(base + D_DATA_HEAD);
        let head = head_at.load(Ordering::Relaxed);
        let copy_above = g.slots as usize / 2;
        let mut got = 0;
        let mut n = 0u64;
        // No shared tail index to read: each entry says itself whether it is the
        // next one (its sequence number), so a frame costs the receiver one cache
        // line of ring plus the frame's own lines.
        while (n as usize) < max.min(g.slots as usize) {
            let entry = base + g.data_ring() + DATA_ENTRY * ((head + n) & u64::from(mask)) as usize;
            if map.u64_at(entry).load(Ordering::Acquire) != head + n + 1 {
                break;
            }
            let desc = map.u64_at(entry + 8).load(Ordering::Relaxed);
            n += 1;
            let (slot, len) = ((desc >> 32) as u32, desc as u32 as usize);
            if slot >= g.slots {
                // Not a slot: nothing to give back.
                self.stats.dropped += 1;
                continue;
            }
            if len > g.slot_size as usize {
                self.stats.dropped += 1;
                map.u8_at(base + g.held() + slot as usize).store(1, Ordering::Relaxed);
                self.copied.push(slot);
                continue;
            }
            let ptr = map.slot_ptr(d, slot);
            // Marked held before the head moves past it, copied or not: if this
            // process dies before the slot is freed, its successor reclaims it.
            map.u8_at(base + g.held() + slot as usize).store(1, Ordering::Relaxed);
            if len <= self.copy_below || self.returns.held.load(Ordering::Relaxed) >= copy_above {
                // SAFETY: the slot is ours until it is freed below; `len` fits in it.
                let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
                out.push(Bytes::copy_from_slice(bytes));
                self.copied.push(slot);
                self.stats.rx_copied += 1;
            } else {
                self.returns.held.fetch_add(1, Ordering::Relaxed);
                out.push(Bytes::from_owner(SlotFrame {
                    map: map.clone(),
                    returns: self.returns.clone(),
                    slot,
                    ptr,
                    len,
                }));
            }
            got += 1;
        }
        if n > 0 {
            head_at.store(head + n, Ordering::Release);
        }
        if !self.copied.is_empty() {
            self.free_slots(&self.copied);
            self.copied.clear();
            freed = true;
        }
        if freed {
            self.wake_peer();
        }
        self.stats.rx_frames += got as u64;
        got
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Bytes>) -> usize {
        let freed = self.return_slots();
        let map = &self.map;
        let g = map.geometry;
        let d = self.side;
        let base = g.direction(d);
        let mask = g.slots - 1;
        let free_head_at = map.u32_at(base + D_FREE_HEAD);
        let mut free_head = free_head_at.load(Ordering::Relaxed);
        let mut free_tail = self.free_tail;
        let tail_at = map.u64_at(base + D_DATA_TAIL);
        let mut tail = tail_at.load(Ordering::Relaxed);
        let mut taken = 0;
        while let Some(frame) = frames.front() {
            if frame.len() > g.slot_size as usize || frame.len() > self.mtu + 14 {
                self.stats.dropped += 1;
                frames.pop_front();
                taken += 1;
                continue;
            }
            if free_head == free_tail {
                free_tail = map.u32_at(base + D_FREE_TAIL).load(Ordering::Acquire);
                if free_head == free_tail {
                    self.stats.tx_full += 1;
                    self.tx_blocked = true;
                    break;
                }
            }
            let slot = map.u32_at(base + g.free_ring() + 4 * (free_head & mask) as usize).load(Ordering::Relaxed);
            free_head = free_head.wrapping_add(1);
            if slot >= g.slots {
                // A corrupt free ring entry: skip it rather than write out of bounds.
                self.stats.dropped += 1;
                continue;
            }
            let ptr = map.slot_ptr(d, slot);
            // SAFETY: the slot came off the free ring, so the receiver no longer reads
            // it; the frame fits in it (checked above).
            unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), ptr, frame.len()) };
            let desc = (u64::from(slot) << 32) | frame.len() as u64;
            let entry = base + g.data_ring() + DATA_ENTRY * (tail & u64::from(mask)) as usize;
            map.u64_at(entry + 8).store(desc, Ordering::Relaxed);
            map.u64_at(entry).store(tail + 1, Ordering::Release);
            tail += 1;
            frames.pop_front();
            taken += 1;
        }
        self.free_tail = free_tail;
        free_head_at.store(free_head, Ordering::Release);
        tail_at.store(tail, Ordering::Release);
        self.stats.tx_frames += taken as u64;
        if frames.is_empty() {
            self.tx_blocked = false;
        }
        // One look at the peer's flag for both: slots given back, frames published.
        if freed || taken > 0 {
            self.wake_peer();
        }
        taken
    }

    fn readiness_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.bell.as_raw_fd())
    }

    fn prepare_park(&mut self) -> bool {
        // Slots the application let go of go back first: the peer may be waiting.
        if self.return_slots() {
            self.wake_peer();
        }
        if !self.parks {
            self.parks = true;
            self.map.u32_at(H_PARKS + 4 * self.side).store(1, Ordering::SeqCst);
        }
        self.drain_bell();
        self.map.u32_at(H_ASLEEP + self.side * CACHE_LINE).store(1, Ordering::Relaxed);
        self.asleep = true;
        // Orders the flag before the look at the rings (the peer fences between
        // publishing and reading the flag): either it sees the flag and rings, or
        // this look sees what it published.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.frame_waiting()
            || (self.tx_blocked && self.slots_returned())
            || self.returns.pending.load(Ordering::SeqCst) > 0
        {
            self.wake_up();
            return false;
        }
        true
    }
}

impl Drop for ShmDevice {
    /// Detaches: returns what can be returned, clears this side's claim, and removes
    /// the file when the other side is gone too. Frames still held by the
    /// application keep the mapping alive; a later process on this side reclaims
    /// their slots.
    fn drop(&mut self) {
        self.return_slots();
        let Ok(_lock) = FileLock::new(&self.file) else { return };
        self.map.u32_at(H_PIDS + 4 * self.side).store(0, Ordering::Release);
        let other = self.map.u32_at(H_PIDS + 4 * (1 - self.side)).load(Ordering::Acquire);
        if !pid_alive(other) {
            let _ = std::fs::remove_file(&self.path);
            for p in &self.bell_path {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, side: u8) -> ShmConfig {
        ShmConfig {
            path: std::env::temp_dir().join(format!("demi-shm-test-{name}-{}", std::process::id())),
            side,
            mac: EthernetAddress([2, 0, 0, 0, 0, side + 1]),
            mtu: 1500,
            slots: 64,
            // The tests' 64-byte frames take the zero-copy path unless a test says.
            copy_below: 0,
        }
    }

    fn frame(i: u32, len: usize) -> Bytes {
        let mut v = vec![(i % 251) as u8; len];
        v[..4].copy_from_slice(&i.to_le_bytes());
        Bytes::from(v)
    }

    #[test]
    fn frames_cross_in_order_both_ways_and_slots_come_back() {
        let mut a = ShmDevice::open(&config("order", 0)).unwrap();
        let mut b = ShmDevice::open(&config("order", 1)).unwrap();
        assert!(a.peer_attached() && b.peer_attached());
        let mut got = Vec::new();
        for round in 0..10u32 {
            let mut q: VecDeque<Bytes> = (0..30).map(|i| frame(round * 30 + i, 60 + i as usize * 40)).collect();
            assert_eq!(a.tx_burst(&mut q), 30);
            got.clear();
            assert_eq!(b.rx_burst(&mut got, 64), 30);
            for (i, f) in got.iter().enumerate() {
                assert_eq!(f[..], frame(round * 30 + i as u32, 60 + i * 40)[..]);
            }
            got.clear(); // the slots go back on the next burst
            let mut back = VecDeque::from([frame(round, 100)]);
            assert_eq!(b.tx_burst(&mut back), 1);
            assert_eq!(a.rx_burst(&mut got, 8), 1);
            assert_eq!(got[0][..], frame(round, 100)[..]);
        }
        assert_eq!(b.stats().rx_copied, 0, "never more than half the slots held");
    }

    #[test]
    fn received_frames_are_zero_copy_and_held_frames_apply_back_pressure() {
        let mut a = ShmDevice::open(&config("pressure", 0)).unwrap();
        let mut b = ShmDevice::open(&config("pressure", 1)).unwrap();
        let mut q: VecDeque<Bytes> = (0..100).map(|i| frame(i, 64)).collect();
        assert_eq!(a.tx_burst(&mut q), 64, "64 slots");
        assert_eq!(q.len(), 36, "the rest stays queued");
        assert_eq!(a.stats().tx_full, 1);
        let mut held = Vec::new();
        assert_eq!(b.rx_burst(&mut held, 100), 64);
        // The first half points into the shared file; past half the slots, copies.
        assert_eq!(b.stats().rx_copied, 32);
        let map_range = b.map.base.as_ptr() as usize..b.map.base.as_ptr() as usize + b.map.len;
        assert!(map_range.contains(&(held[0].as_ptr() as usize)));
        assert!(!map_range.contains(&(held[63].as_ptr() as usize)));
        // The copied frames' slots are already free again; held ones come back when
        // dropped (here, on another thread).
        let mut probe = VecDeque::from([frame(1000, 64)]);
        b.rx_burst(&mut Vec::new(), 1); // returns the copied slots
        assert_eq!(a.tx_burst(&mut q), 32);
        std::thread::spawn(move || drop(held)).join().unwrap();
        b.rx_burst(&mut Vec::new(), 0);
        assert_eq!(a.tx_burst(&mut q), 4);
        assert_eq!(a.tx_burst(&mut probe), 1);
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 100), 37);
        assert_eq!(&got[36][..4], &1000u32.to_le_bytes());
    }

    #[test]
    fn short_frames_are_copied_and_their_slots_freed_in_the_same_burst() {
        let mut a = ShmDevice::open(&config("copybreak", 0)).unwrap();
        let mut b = ShmDevice::open(&ShmConfig { copy_below: 128, ..config("copybreak", 1) }).unwrap();
        // Round after round of a full ring of short frames, nothing dropped by the
        // receiver's caller: every slot must come back without any frame's drop.
        let mut kept = Vec::new();
        for round in 0..4u32 {
            let mut q: VecDeque<Bytes> = (0..64).map(|i| frame(round * 64 + i, 100)).collect();
            assert_eq!(a.tx_burst(&mut q), 64, "round {round}: all 64 slots free again");
            assert_eq!(b.rx_burst(&mut kept, 100), 64);
        }
        assert_eq!(b.stats().rx_copied, 256);
        let map_range = b.map.base.as_ptr() as usize..b.map.base.as_ptr() as usize + b.map.len;
        assert!(kept.iter().all(|f| !map_range.contains(&(f.as_ptr() as usize))), "copies, not slots");
        for (i, f) in kept.iter().enumerate() {
            assert_eq!((f.len(), &f[..4]), (100, &(i as u32).to_le_bytes()[..]), "frame {i} intact");
        }
        // A frame longer than the limit is still zero-copy.
        let mut q = VecDeque::from([frame(7, 129)]);
        assert_eq!(a.tx_burst(&mut q), 1);
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 1), 1);
        assert!(map_range.contains(&(got[0].as_ptr() as usize)));
        assert_eq!(b.stats().rx_copied, 256);
    }

    /// Whether `fd` is readable right now.
    fn readable(fd: std::os::fd::RawFd) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
    }

    #[test]
    fn a_sleeping_side_is_rung_and_a_spinning_one_is_not() {
        let mut a = ShmDevice::open(&config("bell", 0)).unwrap();
        let mut b = ShmDevice::open(&config("bell", 1)).unwrap();
        let (bell_a, bell_b) = (a.readiness_fd().unwrap(), b.readiness_fd().unwrap());
        // b goes to sleep with nothing waiting; a's next burst rings it, once.
        assert!(b.prepare_park());
        assert!(!readable(bell_b));
        a.tx_burst(&mut VecDeque::from([frame(1, 64)]));
        assert!(readable(bell_b), "the sleeping side was rung");
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 8), 1);
        assert!(!readable(bell_b), "waking drains the bell");
        // Awake now: more frames ring nothing.
        a.tx_burst(&mut VecDeque::from([frame(2, 64)]));
        assert!(!readable(bell_b));
        // With a frame already waiting, b does not go to sleep.
        assert!(!b.prepare_park());
        assert_eq!(b.rx_burst(&mut got, 8), 1);
        // b sleeps while holding a frame; another thread drops it: that rings b, so
        // the slot can go back to a.
        assert_eq!(got.len(), 2);
        assert!(b.prepare_park());
        let dropped = got.pop().unwrap();
        std::thread::spawn(move || drop(dropped)).join().unwrap();
        assert!(readable(bell_b), "a frame dropped while its side slept rang it");
        assert_eq!(b.rx_burst(&mut got, 8), 0);
        assert!(!readable(bell_b));
        // A return pending when b goes to sleep goes to the free ring first.
        drop(got.pop().unwrap());
        assert!(b.prepare_park());
        assert_eq!(b.returns.pending.load(Ordering::Relaxed), 0);
        assert_eq!(b.rx_burst(&mut got, 8), 0);
        // a never parked: b's bursts never ring it.
        b.tx_burst(&mut VecDeque::from([frame(3, 64)]));
        assert!(!readable(bell_a));
        assert_eq!(a.rx_burst(&mut Vec::new(), 8), 1);
        // The bells go with the link.
        let paths = b.bell_path.clone();
        assert!(paths.iter().all(|p| p.exists()));
        drop((got, a, b));
        assert!(paths.iter().all(|p| !p.exists()));
    }

    #[test]
    fn a_sender_waiting_for_slots_is_rung_when_they_come_back() {
        let mut a = ShmDevice::open(&config("bell-slots", 0)).unwrap();
        let mut b = ShmDevice::open(&config("bell-slots", 1)).unwrap();
        let bell_a = a.readiness_fd().unwrap();
        let mut q: VecDeque<Bytes> = (0..200).map(|i| frame(i, 64)).collect();
        assert_eq!(a.tx_burst(&mut q), 64);
        assert!(a.prepare_park(), "nothing returned yet: a may sleep");
        // b takes all 64: the first 32 zero-copy (held), the rest copied (more than
        // half the slots held) and their slots freed at once, which rings a.
        let mut held = Vec::new();
        assert_eq!(b.rx_burst(&mut held, 100), 64);
        assert_eq!(b.stats().rx_copied, 32);
        assert!(readable(bell_a), "freed slots rang the blocked sender");
        assert_eq!(a.rx_burst(&mut Vec::new(), 8), 0, "a wakes (and drains its bell)");
        assert!(!readable(bell_a));
        assert_eq!(a.tx_burst(&mut q), 32);
        assert!(a.prepare_park(), "blocked again, nothing back: a may sleep");
        // The held frames are dropped (on another thread); b's next burst returns
        // their slots, which rings a again.
        std::thread::spawn(move || drop(held)).join().unwrap();
        b.rx_burst(&mut Vec::new(), 100);
        assert!(readable(bell_a), "slots returned after a drop rang the blocked sender");
        assert_eq!(a.rx_burst(&mut Vec::new(), 8), 0);
        // Slots already back before it tries to sleep: it does not.
        assert!(a.tx_burst(&mut q) > 0);
        b.rx_burst(&mut Vec::new(), 100);
        b.rx_burst(&mut Vec::new(), 100);
        assert!(!a.prepare_park());
    }

    #[test]
    fn a_live_side_is_refused_and_a_dead_ones_slots_are_reclaimed() {
        let a = ShmDevice::open(&config("claim", 0)).unwrap();
        let e = ShmDevice::open(&config("claim", 0)).err().unwrap().to_string();
        assert!(e.contains("side 0 is in use by process") && e.contains("DEMI_HOST=1"), "{e}");
        let e = ShmDevice::open(&ShmConfig { side: 2, ..config("claim", 0) }).err().unwrap().to_string();
        assert!(e.contains("must be 0 or 1"), "{e}");
        let mut b = ShmDevice::open(&config("claim", 1)).unwrap();
        let mut a = a;
        // b takes frames and "dies" without returning them: forget its returns.
        let mut q: VecDeque<Bytes> = (0..64).map(|i| frame(i, 64)).collect();
        a.tx_burst(&mut q);
        let mut held = Vec::new();
        b.rx_burst(&mut held, 64);
        b.return_slots(); // the copied frames' slots
        std::mem::forget(held); // the zero-copy ones are never dropped
        drop(b);
        let mut q: VecDeque<Bytes> = (0..64).map(|i| frame(i, 64)).collect();
        assert_eq!(a.tx_burst(&mut q), 32, "32 slots copied-and-freed, 32 lost with b");
        // A new process on side 1 gets the lost ones back.
        let mut b2 = ShmDevice::open(&config("claim", 1)).unwrap();
        assert_eq!(a.tx_burst(&mut q), 32);
        let mut got = Vec::new();
        assert_eq!(b2.rx_burst(&mut got, 100), 64);
    }

    #[test]
    fn geometry_must_match_a_live_peer_and_the_file_goes_with_the_last_side() {
        let a = ShmDevice::open(&config("geom", 0)).unwrap();
        let e = ShmDevice::open(&ShmConfig { mtu: 9000, ..config("geom", 1) }).err().unwrap().to_string();
        assert!(e.contains("same MTU"), "{e}");
        let path = a.path().to_path_buf();
        let b = ShmDevice::open(&config("geom", 1)).unwrap();
        drop(a);
        assert!(path.exists(), "b is still there");
        drop(b);
        assert!(!path.exists(), "removed by the last side");
        // A file with junk in it and nobody on it is laid out afresh.
        std::fs::write(&path, vec![0xabu8; 4096]).unwrap();
        let a = ShmDevice::open(&config("geom", 0)).unwrap();
        drop(a);
    }

    #[test]
    fn oversize_frames_are_dropped_not_sent() {
        let mut a = ShmDevice::open(&config("oversize", 0)).unwrap();
        let mut b = ShmDevice::open(&config("oversize", 1)).unwrap();
        let mut q = VecDeque::from([Bytes::from(vec![0u8; 1515]), frame(7, 1514)]);
        assert_eq!(a.tx_burst(&mut q), 2);
        assert_eq!(a.stats().dropped, 1);
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 8), 1);
        assert_eq!(got[0].len(), 1514);
    }
}
