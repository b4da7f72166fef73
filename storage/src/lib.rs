//! # demi-storage
//!
//! demi's storage engine. Layers, bottom up:
//!
//! - [`buf`]: aligned I/O buffers and the pool a device registers ([`DmaBuf`]).
//! - [`device`]: the [`BlockDevice`] trait: submit reads, writes and flushes on
//!   aligned buffers, poll completions; an in-flight request owns its buffer.
//!   Backends: [`uring`] (io_uring over a file or block device opened O_DIRECT,
//!   registered buffers, batched submission, optional SQPOLL) and [`memory`] (for
//!   tests, with crash simulation: unflushed writes lost or torn at any sector).
//! - [`format`](mod@format): the on-device layout (superblock, checksummed and chained records).
//! - [`recovery`]: the scan on open that finds the end of the valid log.
//! - [`engine`]: the [`Log`] itself: durable pushes with group commit, pops in order,
//!   seek, truncate. It knows no runtime: the storage libOS in `demi-libos` drives it
//!   and turns its events into qtoken completions.
//! - [`error`]: [`StorageError`] and [`DeviceError`].
//!
//! ```
//! use demi_storage::{Log, LogConfig, LogOutput, MemDisk, MemDiskConfig};
//! let disk = MemDisk::new(MemDiskConfig::default());
//! let mut log = Log::create(disk.device(), &LogConfig::default()).unwrap();
//! log.push("hello".into(), 1).unwrap();
//! let mut events = Vec::new();
//! log.drain(&mut events).unwrap();
//! assert_eq!(events[0].result, Ok(LogOutput::Pushed { seq: 0 }));
//! // Power fails: only flushed data survives; the record was flushed before it completed.
//! let mut log = Log::open(MemDisk::from_image(disk.crash_image(0), MemDiskConfig::default()).device(),
//!                         &LogConfig::default()).unwrap();
//! assert_eq!(log.len(), 1);
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod buf;
mod crc;
pub mod device;
pub mod engine;
pub mod error;
pub mod format;
pub mod memory;
pub mod recovery;
pub mod uring;

pub use buf::{BufPool, DmaBuf, PoolConfig};
pub use crc::{crc32c, crc32c_append};
pub use device::{BlockDevice, Geometry, IoCompletion, IoKind, IoRequest};
pub use engine::{Log, LogConfig, LogEvent, LogOutput, LogStats};
pub use error::{DeviceError, StorageError};
pub use memory::{MemDevice, MemDisk, MemDiskConfig};
pub use uring::{OpenMode, UringConfig, UringDevice};
