//! Aligned I/O buffers and the pool of registered buffers.
//!
//! O_DIRECT (and any DMA device) needs buffers whose address, length and file offset
//! are multiples of the device's block size. A [`DmaBuf`] is such a buffer. It is
//! either carved from a [`BufPool`] (one aligned region, split in fixed-size slots,
//! that a device may register with the kernel once: io_uring's fixed buffers, an SPDK
//! DMA pool) and returns to its pool when dropped, or, when the pool has no slot of
//! the size asked for, a plain aligned heap allocation. An empty pool is therefore
//! back-pressure on speed, never an error.
//!
//! Ownership is the safety argument of the whole I/O path: a request moves its
//! `DmaBuf` into the device, and the device gives it back only with the completion,
//! so memory the kernel may still write is never freed or reused early.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

/// Alignment of every buffer (a multiple of any logical block size in use).
pub const BUF_ALIGN: usize = 4096;

/// An aligned, zero-initialised I/O buffer with a length (bytes in use) and a
/// capacity. See the [module docs](self).
pub struct DmaBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    origin: Origin,
}

enum Origin {
    Heap,
    Pool { pool: Rc<PoolShared>, class: usize, slot: usize },
}

impl DmaBuf {
    /// A heap buffer of at least `cap` bytes (rounded up to [`BUF_ALIGN`]), zeroed,
    /// with length `cap`.
    pub fn heap(cap: usize) -> DmaBuf {
        let cap = round_up(cap.max(1), BUF_ALIGN);
        let layout = Layout::from_size_align(cap, BUF_ALIGN).expect("buffer layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        DmaBuf { ptr, cap, len: cap, origin: Origin::Heap }
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no bytes are in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes available.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the bytes in use (at most the capacity).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "DmaBuf::set_len past capacity");
        self.len = len;
    }

    /// The registered-buffer index (io_uring fixed buffer) of a pooled buffer.
    pub fn registered_index(&self) -> Option<u16> {
        match &self.origin {
            Origin::Pool { pool, class, slot } if pool.registered => Some((pool.classes[*class].first_index + *slot) as u16),
            _ => None,
        }
    }

    /// Start address (for submitting to a device).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Start address, mutable (for reads into the buffer).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `cap >= len` initialised bytes that this buffer owns
        // exclusively (pool slots are handed out once until dropped).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes in use, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        match &self.origin {
            Origin::Heap => {
                let layout = Layout::from_size_align(self.cap, BUF_ALIGN).expect("buffer layout");
                // SAFETY: allocated in `heap` with this very layout.
                unsafe { dealloc(self.ptr.as_ptr(), layout) }
            }
            Origin::Pool { pool, class, slot } => pool.classes[*class].free.borrow_mut().push(*slot),
        }
    }
}

impl std::fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuf").field("len", &self.len).field("cap", &self.cap).finish()
    }
}

/// Sizes of a [`BufPool`]: a few size classes of `count` slots of `size` bytes.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// `(slot size, slot count)` per class, smallest first. Sizes are rounded up to
    /// [`BUF_ALIGN`].
    pub classes: Vec<(usize, usize)>,
}

impl Default for PoolConfig {
    /// 128 slots of 16 KiB (record reads) and 8 of 2 MiB (group-commit batches):
    /// 18 MiB per device.
    fn default() -> Self {
        PoolConfig { classes: vec![(16 << 10, 128), (2 << 20, 8)] }
    }
}

struct Class {
    size: usize,
    base: *mut u8,
    count: usize,
    first_index: usize,
    free: RefCell<Vec<usize>>,
}

struct PoolShared {
    region: NonNull<u8>,
    layout: Layout,
    classes: Vec<Class>,
    registered: bool,
}

impl Drop for PoolShared {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufPool::new` with this layout; every slot's `DmaBuf`
        // holds an `Rc` to this, so none is alive any more.
        unsafe { dealloc(self.region.as_ptr(), self.layout) }
    }
}

/// A pool of aligned buffers in one region. See the [module docs](self).
pub struct BufPool {
    shared: Rc<PoolShared>,
}

impl BufPool {
    /// Allocates the region. `registered` says whether a device registered the slots
    /// (as [`iovecs`](Self::iovecs), in order) so buffers report their index.
    pub fn new(config: &PoolConfig, registered: bool) -> BufPool {
        let mut total = 0;
        let mut classes = Vec::new();
        let mut first_index = 0;
        for &(size, count) in &config.classes {
            let size = round_up(size.max(1), BUF_ALIGN);
            classes.push(Class {
                size,
                base: std::ptr::null_mut(),
                count,
                first_index,
                free: RefCell::new((0..count).rev().collect()),
            });
            first_index += count;
            total += size * count;
        }
        let layout = Layout::from_size_align(total.max(BUF_ALIGN), BUF_ALIGN).expect("pool layout");
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let region = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let mut off = 0;
        for c in &mut classes {
            // SAFETY: `off` stays within the `total` bytes just allocated.
            c.base = unsafe { raw.add(off) };
            off += c.size * c.count;
        }
        BufPool { shared: Rc::new(PoolShared { region, layout, classes, registered }) }
    }

    /// One iovec per slot, in registered-index order.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        let mut v = Vec::new();
        for c in &self.shared.classes {
            for i in 0..c.count {
                // SAFETY: slot `i` lies inside the class's part of the region.
                let base = unsafe { c.base.add(i * c.size) };
                v.push(libc::iovec { iov_base: base.cast(), iov_len: c.size });
            }
        }
        v
    }

    /// A buffer of length `len` (capacity rounded up to the alignment): a pool slot
    /// of the smallest class that fits and has one free, else a heap buffer. Pool
    /// slots are not zeroed again on reuse: callers write what they submit.
    pub fn alloc(&self, len: usize) -> DmaBuf {
        for (ci, c) in self.shared.classes.iter().enumerate() {
            if c.size < len {
                continue;
            }
            if let Some(slot) = c.free.borrow_mut().pop() {
                // SAFETY: slot index < count, inside the region.
                let ptr = unsafe { NonNull::new_unchecked(c.base.add(slot * c.size)) };
                return DmaBuf {
                    ptr,
                    cap: c.size,
                    len,
                    origin: Origin::Pool { pool: self.shared.clone(), class: ci, slot },
                };
            }
        }
        let mut b = DmaBuf::heap(len);
        b.set_len(len);
        b
    }
}

/// `n` rounded up to a multiple of `align` (a power of two).
pub fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_slots_return_and_heap_fallback() {
        let pool = BufPool::new(&PoolConfig { classes: vec![(4096, 2), (8192, 1)] }, true);
        let a = pool.alloc(100);
        let b = pool.alloc(4096);
        assert!(a.registered_index().is_some());
        let c = pool.alloc(10); // small class empty: next class
        assert_eq!(c.capacity(), 8192);
        let d = pool.alloc(10); // everything taken: heap
        assert_eq!(d.registered_index(), None);
        assert_eq!(d.as_ptr() as usize % BUF_ALIGN, 0);
        let idx = a.registered_index();
        drop(a);
        let e = pool.alloc(1);
        assert_eq!(e.registered_index(), idx);
        drop((b, c, d, e));
        assert_eq!(pool.iovecs().len(), 3);
    }
}
