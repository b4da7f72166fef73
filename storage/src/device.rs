//! The block-device trait: what the log engine needs from a device.
//!
//! A device takes **requests** (read, write, flush) on block-aligned [`DmaBuf`]s and
//! reports **completions** when polled; nothing blocks except [`BlockDevice::wait`],
//! which the engine uses only on the control path (open, recovery, truncate, close).
//! The runtime polls devices inline through the storage libOS's driver.
//!
//! Rules every backend keeps:
//! - A request owns its buffer from `submit` until its completion hands it back, even
//!   if whoever asked for it has gone: memory the device may still touch is never
//!   freed early. Dropping a device first waits for everything in flight.
//! - Offsets, lengths and buffer addresses are multiples of
//!   [`Geometry::block_size`]. A read past the end of the data returns a short count.
//! - A flush makes durable every write that **completed** before the flush was
//!   submitted. Writes that did not complete before a crash may be lost or torn at
//!   any sector.
//! - A chain ([`BlockDevice::submit_chain`]) runs its requests one after the other;
//!   after a failure the rest complete with [`DeviceError::CANCELED`].
//!
//! Backends: [`UringDevice`](crate::UringDevice) (a file or block device through
//! io_uring with O_DIRECT) and [`MemDevice`](crate::MemDevice) (memory, with crash
//! simulation). An SPDK NVMe backend would fit the same shape (`alloc` from
//! `spdk_dma_malloc`ed memory, `submit` as `spdk_nvme_ns_cmd_{read,write,flush}`,
//! `poll` as `spdk_nvme_qpair_process_completions`, chains kept in software); it is
//! not built here because SPDK is not packaged for this environment and needs a
//! dedicated NVMe device bound to vfio.

use crate::buf::DmaBuf;
use crate::error::DeviceError;
use std::os::fd::RawFd;

/// Shape of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Alignment of offsets, lengths and buffer addresses (the logical block size).
    pub block_size: u32,
    /// Bytes the device holds; `None` for a file that grows.
    pub capacity: Option<u64>,
}

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Read `buf.len()` bytes at `offset` into the buffer.
    Read,
    /// Write the buffer's bytes at `offset`.
    Write,
    /// Make completed writes durable.
    Flush,
    /// Reserve `len` bytes at `offset` (a file's `fallocate`; a no-op on devices
    /// with fixed capacity beyond a bounds check). Later writes there do not extend
    /// the file.
    Allocate {
        /// Bytes to reserve.
        len: u64,
    },
}

/// One request. `tag` comes back in the completion.
#[derive(Debug)]
pub struct IoRequest {
    /// What to do.
    pub kind: IoKind,
    /// Byte offset (reads and writes).
    pub offset: u64,
    /// The data buffer (reads and writes).
    pub buf: Option<DmaBuf>,
    /// The submitter's tag.
    pub tag: u64,
}

impl IoRequest {
    /// A read into `buf` (its length says how much).
    pub fn read(offset: u64, buf: DmaBuf, tag: u64) -> Self {
        IoRequest { kind: IoKind::Read, offset, buf: Some(buf), tag }
    }

    /// A write of `buf`.
    pub fn write(offset: u64, buf: DmaBuf, tag: u64) -> Self {
        IoRequest { kind: IoKind::Write, offset, buf: Some(buf), tag }
    }

    /// An allocation of `len` bytes at `offset`.
    pub fn allocate(offset: u64, len: u64, tag: u64) -> Self {
        IoRequest { kind: IoKind::Allocate { len }, offset, buf: None, tag }
    }

    /// A flush.
    pub fn flush(tag: u64) -> Self {
        IoRequest { kind: IoKind::Flush, offset: 0, buf: None, tag }
    }
}

/// A finished request: its tag, bytes transferred or the error, and its buffer back.
#[derive(Debug)]
pub struct IoCompletion {
    /// The request's tag.
    pub tag: u64,
    /// Bytes read or written (0 for a flush), or the error.
    pub result: Result<usize, DeviceError>,
    /// The request's buffer.
    pub buf: Option<DmaBuf>,
}

/// A block device. See the [module docs](self).
pub trait BlockDevice {
    /// The device's shape.
    fn geometry(&self) -> Geometry;

    /// A buffer of `len` bytes (a multiple of the block size) suited to this device
    /// (registered with it when it can be).
    fn alloc(&mut self, len: usize) -> DmaBuf;

    /// Queues one request. It reaches the device at the latest on the next
    /// [`poll`](Self::poll).
    fn submit(&mut self, req: IoRequest) {
        self.submit_chain(vec![req]);
    }

    /// Queues requests that run in order, each after the previous one succeeded.
    fn submit_chain(&mut self, chain: Vec<IoRequest>);

    /// Hands queued requests to the device and collects finished ones into `out`,
    /// without blocking. Returns how many completions were added.
    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize;

    /// Like [`poll`](Self::poll) but blocks until at least one completion arrives,
    /// unless nothing is queued or in flight (then it returns 0).
    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize;

    /// Requests queued or in flight.
    fn pending(&self) -> usize;

    /// A file descriptor that becomes readable when completions arrive (an eventfd),
    /// for runtimes that sleep in epoll; `None` if the device must be polled.
    fn notify_fd(&self) -> Option<RawFd> {
        None
    }

    /// Resets the notification fd after it was reported readable.
    fn clear_notify(&self) {}

    /// Hands what is queued to the device now rather than at the next
    /// [`poll`](Self::poll) (completions still wait for `poll`): for a caller that
    /// just queued a request nothing else will follow soon. The default does nothing.
    fn kick(&mut self) {}
}

impl<D: BlockDevice + ?Sized> BlockDevice for Box<D> {
    fn geometry(&self) -> Geometry {
        (**self).geometry()
    }
    fn alloc(&mut self, len: usize) -> DmaBuf {
        (**self).alloc(len)
    }
    fn submit(&mut self, req: IoRequest) {
        (**self).submit(req)
    }
    fn submit_chain(&mut self, chain: Vec<IoRequest>) {
        (**self).submit_chain(chain)
    }
    fn poll(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        (**self).poll(out)
    }
    fn wait(&mut self, out: &mut Vec<IoCompletion>) -> usize {
        (**self).wait(out)
    }
    fn pending(&self) -> usize {
        (**self).pending()
    }
    fn notify_fd(&self) -> Option<RawFd> {
        (**self).notify_fd()
    }
    fn clear_notify(&self) {
        (**self).clear_notify()
    }
    fn kick(&mut self) {
        (**self).kick()
    }
}
