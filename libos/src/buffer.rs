//! Packet buffers from pools.
//!
//! A [`BufferPool`] is one allocation cut into `count` buffers of `size` bytes,
//! each with `headroom` bytes in front reserved for headers a lower layer may
//! prepend. Taking a buffer ([`BufferPool::alloc`]) and giving it back are a
//! lock-protected push/pop on a free list: no allocator call per packet, and memory
//! that stays put (what a device that wants registered memory needs).
//!
//! A [`PoolBuf`] is owned and writable; [`freeze`](PoolBuf::freeze) turns it into
//! [`Bytes`] without a copy, and the buffer returns to its pool when the last
//! `Bytes` pointing into it is dropped, on whatever thread. That is the
//! free-protection of the Demikernel design: an application may drop a buffer
//! while the device still uses it, and it is reused only when both are done.
//!
//! An exhausted pool is back-pressure, never a crash: `alloc` returns `None`, and
//! the caller waits (a device leaves frames in its ring, [`crate::LibOs::alloc`]
//! falls back to the heap).

use bytes::Bytes;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

struct Region {
    base: NonNull<u8>,
    layout: std::alloc::Layout,
    /// Bytes per buffer, headroom included.
    stride: usize,
    headroom: usize,
    free: Mutex<Vec<u32>>,
    in_use: AtomicUsize,
    count: usize,
}

// SAFETY: the region is plain memory; each buffer is accessed only by its single
// owner (a `PoolBuf`, then the `Bytes` made from it, read-only) until it is back on
// the free list, which is behind a mutex.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufferPool::new` with this layout; no buffer is
        // alive (each holds an `Arc` of the region).
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

impl Region {
    fn ptr(&self, index: u32) -> *mut u8 {
        debug_assert!((index as usize) < self.count);
        // SAFETY: index < count, so the buffer is inside the allocation.
        unsafe { self.base.as_ptr().add(index as usize * self.stride) }
    }

    fn give_back(&self, index: u32) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).push(index);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pool of equal packet buffers. Cheap to clone (a handle). See the
/// [module docs](self).
#[derive(Clone)]
pub struct BufferPool {
    region: Arc<Region>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("count", &self.region.count)
            .field("size", &self.size())
            .field("headroom", &self.region.headroom)
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl BufferPool {
    /// `count` buffers of `size` usable bytes, each with `headroom` bytes in front.
    /// Buffers start on 64-byte boundaries.
    ///
    /// # Panics
    /// If `count` is 0 or over 2^32, or the pool would not fit in memory.
    pub fn new(count: usize, size: usize, headroom: usize) -> BufferPool {
        assert!(count > 0 && count <= u32::MAX as usize, "a pool needs 1 to 2^32 buffers");
        let stride = (headroom + size).max(1).div_ceil(64) * 64;
        let layout = std::alloc::Layout::from_size_align(stride.checked_mul(count).expect("pool size overflows"), 64)
            .expect("pool layout");
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { std::alloc::alloc(layout) }).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let free = (0..count as u32).rev().collect();
        BufferPool {
            region: Arc::new(Region {
                base,
                layout,
                stride,
                headroom,
                free: Mutex::new(free),
                in_use: AtomicUsize::new(0),
                count,
            }),
        }
    }

    /// A buffer of `len` bytes (zero-filled is not promised: write before reading),
    /// or `None` if `len` exceeds [`size`](Self::size) or every buffer is in use.
    pub fn alloc(&self, len: usize) -> Option<PoolBuf> {
        if len > self.size() {
            return None;
        }
        let index = self.region.free.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        self.region.in_use.fetch_add(1, Ordering::Relaxed);
        Some(PoolBuf { inner: Inner::Pooled { region: self.region.clone(), index }, len })
    }

    /// A buffer holding a copy of `data`, or `None` as for [`alloc`](Self::alloc).
    pub fn copy_from(&self, data: &[u8]) -> Option<Bytes> {
        let mut b = self.alloc(data.len())?;
        b.copy_from_slice(data);
        Some(b.freeze())
    }

    /// Usable bytes per buffer (after the headroom).
    pub fn size(&self) -> usize {
        self.region.stride - self.region.headroom
    }

    /// Buffers in the pool.
    pub fn count(&self) -> usize {
        self.region.count
    }

    /// Buffers taken and not yet returned.
    pub fn in_use(&self) -> usize {
        self.region.in_use.load(Ordering::Relaxed)
    }

    /// Whether `bytes` points into this pool's memory.
    pub fn contains(&self, bytes: &[u8]) -> bool {
        let start = self.region.base.as_ptr() as usize;
        let p = bytes.as_ptr() as usize;
        p >= start && p < start + self.region.layout.size()
    }
}

enum Inner {
    Pooled { region: Arc<Region>, index: u32 },
    Heap(Box<[u8]>),
}

/// A writable buffer, from a pool or (past a pool's limits) from the heap. See the
/// [module docs](self).
pub struct PoolBuf {
    inner: Inner,
    len: usize,
}

impl PoolBuf {
    /// A heap buffer of `len` zero bytes (what [`crate::LibOs::alloc`] hands out when
    /// its pool cannot).
    pub fn heap(len: usize) -> PoolBuf {
        PoolBuf { inner: Inner::Heap(vec![0; len].into_boxed_slice()), len }
    }

    /// Whether it came from a pool.
    pub fn is_pooled(&self) -> bool {
        matches!(self.inner, Inner::Pooled { .. })
    }

    /// Bytes reserved in front of the data for headers (0 for heap buffers).
    pub fn headroom(&self) -> usize {
        match &self.inner {
            Inner::Pooled { region, .. } => region.headroom,
            Inner::Heap(_) => 0,
        }
    }

    /// Shortens the buffer to `len` bytes (no effect if it is not longer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The buffer as immutable, shareable [`Bytes`], without a copy. A pooled
    /// buffer returns to its pool when the last clone is dropped.
    pub fn freeze(self) -> Bytes {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; its fields move out once.
        let inner = unsafe { std::ptr::read(&this.inner) };
        match inner {
            Inner::Heap(b) => Bytes::from(b).slice(..this.len),
            Inner::Pooled { region, index } => Bytes::from_owner(Frozen { region, index, len: this.len }),
        }
    }

    fn data_ptr(&self) -> *mut u8 {
        match &self.inner {
            // SAFETY: the data starts after the headroom, inside the buffer.
            Inner::Pooled { region, index } => unsafe { region.ptr(*index).add(region.headroom) },
            Inner::Heap(b) => b.as_ptr() as *mut u8,
        }
    }
}

impl Deref for PoolBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes after the data pointer belong to this buffer alone.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len) }
    }
}

impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let ptr = match &mut self.inner {
            Inner::Heap(b) => b.as_mut_ptr(),
            // SAFETY: the data starts after the headroom, inside the buffer.
            Inner::Pooled { region, index } => unsafe { region.ptr(*index).add(region.headroom) },
        };
        // SAFETY: `len` bytes at `ptr` belong to this buffer alone, and `&mut self`
        // makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.len) }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Inner::Pooled { region, index } = &self.inner {
            region.give_back(*index);
        }
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf").field("len", &self.len).field("pooled", &self.is_pooled()).finish()
    }
}

/// A frozen pooled buffer: the owner behind [`PoolBuf::freeze`]'s `Bytes`.
struct Frozen {
    region: Arc<Region>,
    index: u32,
    len: usize,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the buffer is owned by this value until it is dropped, and no
        // longer written.
        unsafe { std::slice::from_raw_parts(self.region.ptr(self.index).add(self.region.headroom), self.len) }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.region.give_back(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_clone_goes_and_exhaustion_is_none() {
        let pool = BufferPool::new(4, 2000, 128);
        assert_eq!(pool.size(), 2048, "strides are rounded up to 64 bytes: 2176 - 128");
        let mut held = Vec::new();
        for i in 0..4u8 {
            let mut b = pool.alloc(100).unwrap();
            assert_eq!(b.headroom(), 128);
            b.fill(i);
            held.push(b.freeze());
        }
        assert!(pool.alloc(1).is_none(), "exhausted");
        assert_eq!(pool.in_use(), 4);
        assert!(pool.alloc(pool.size() + 1).is_none(), "too big");
        let clone = held[2].slice(10..20);
        assert!(pool.contains(&clone));
        held.truncate(2); // drops buffers 2 and 3; a slice of 2 survives
        assert_eq!(pool.in_use(), 3);
        assert!(clone.iter().all(|&b| b == 2), "the surviving slice is intact");
        std::thread::spawn(move || drop(clone)).join().unwrap();
        assert_eq!(pool.in_use(), 2);
        assert!(pool.alloc(10).is_some());
        for (i, b) in held.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8), "buffers in use are never handed out again");
        }
    }

    #[test]
    fn unfrozen_buffers_return_on_drop_and_heap_buffers_work_alike() {
        let pool = BufferPool::new(1, 64, 0);
        let b = pool.alloc(64).unwrap();
        drop(b);
        let copy = pool.copy_from(b"hello").unwrap();
        assert_eq!(&copy[..], b"hello");
        let mut h = PoolBuf::heap(5);
        h.copy_from_slice(b"world");
        h.truncate(3);
        assert!(!h.is_pooled());
        assert_eq!(&h.freeze()[..], b"wor");
    }
}
