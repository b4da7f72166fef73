//! Typed errors of the storage engine and its devices.
//!
//! A device reports the errno of a failed request ([`DeviceError`]); the engine turns
//! the causes a caller acts on into [`StorageError`] variants (a file that is not a
//! log, a newer format, a full or read-only disk, a record over the limit). The queue
//! API maps them to [`QError`] only at its boundary.

use demi_runtime::QError;
use std::fmt;

/// A failed device request: the errno the kernel (or the simulated device) gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceError(pub i32);

impl DeviceError {
    /// The request was cancelled because an earlier request of its chain failed.
    pub const CANCELED: DeviceError = DeviceError(libc::ECANCELED);

    /// From an `std::io::Error` (EIO when it carries no errno).
    pub fn from_io(e: &std::io::Error) -> Self {
        DeviceError(e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The errno.
    pub fn errno(self) -> i32 {
        self.0
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device error: {}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for DeviceError {}

/// Why a storage call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageError {
    /// The file does not start with a demi log superblock (wrong magic, or empty).
    NotALog,
    /// The log was written by a newer format version than this build reads.
    UnsupportedVersion {
        /// Version found in the superblock.
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
    /// The superblock has the magic but fails its checksum or holds impossible values.
    CorruptSuperblock,
    /// The device needs a larger alignment than the log's block size.
    BlockSizeMismatch {
        /// The log's block size.
        log: u32,
        /// The device's logical block size.
        device: u32,
    },
    /// A pushed record is larger than the log accepts.
    RecordTooLarge {
        /// Bytes in the record (or segments, when there are too many of them).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Empty records are not stored (an empty pop means the end of the log).
    EmptyRecord,
    /// A stored record failed its checksum when read back (media corruption).
    CorruptRecord {
        /// The record's sequence number.
        seq: u64,
    },
    /// No space left on the device.
    DiskFull,
    /// The file or device is read-only.
    ReadOnly,
    /// A `seek`/`truncate` position past the last record.
    OutOfRange {
        /// The position asked for.
        requested: u64,
        /// Records in the log.
        records: u64,
    },
    /// An earlier flush failed: the device's state is unknown and the log refuses
    /// further writes until it is reopened (and recovered).
    Poisoned,
    /// The operation was dropped because its log was closed.
    Closed,
    /// Any other device or kernel error, by errno.
    Io(i32),
}

impl StorageError {
    /// Classifies a device errno.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ENOSPC | libc::EDQUOT | libc::EFBIG => StorageError::DiskFull,
            libc::EROFS | libc::EACCES => StorageError::ReadOnly,
            libc::ECANCELED => StorageError::Closed,
            e => StorageError::Io(e),
        }
    }

    /// The closest errno (C/POSIX boundary).
    pub fn errno(&self) -> i32 {
        match self {
            StorageError::NotALog | StorageError::CorruptSuperblock => libc::EINVAL,
            StorageError::UnsupportedVersion { .. } | StorageError::BlockSizeMismatch { .. } => libc::ENOTSUP,
            StorageError::RecordTooLarge { .. } => libc::EMSGSIZE,
            StorageError::EmptyRecord | StorageError::OutOfRange { .. } => libc::EINVAL,
            StorageError::CorruptRecord { .. } | StorageError::Poisoned => libc::EIO,
            StorageError::DiskFull => libc::ENOSPC,
            StorageError::ReadOnly => libc::EROFS,
            StorageError::Closed => libc::ECANCELED,
            StorageError::Io(e) => *e,
        }
    }
}

impl From<DeviceError> for StorageError {
    fn from(e: DeviceError) -> Self {
        StorageError::from_errno(e.0)
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError::from_errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<StorageError> for QError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotALog | StorageError::CorruptSuperblock | StorageError::CorruptRecord { .. } => {
                QError::InvalidData
            }
            StorageError::UnsupportedVersion { .. } | StorageError::BlockSizeMismatch { .. } => QError::NotSupported,
            StorageError::RecordTooLarge { .. } => QError::MessageTooLong,
            StorageError::EmptyRecord => QError::InvalidArgument("empty records are not stored"),
            StorageError::OutOfRange { .. } => QError::InvalidArgument("position past the end of the log"),
            StorageError::Closed => QError::Canceled,
            other => QError::Os(other.errno()),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotALog => f.write_str("not a demi log (no superblock magic)"),
            StorageError::UnsupportedVersion { found, supported } => {
                write!(f, "log format version {found} is newer than this build reads (up to {supported})")
            }
            StorageError::CorruptSuperblock => f.write_str("the log's superblock is corrupt"),
            StorageError::BlockSizeMismatch { log, device } => {
                write!(f, "log block size {log} is not a multiple of the device's block size {device}")
            }
            StorageError::RecordTooLarge { len, max } => write!(f, "record of {len} exceeds the limit of {max}"),
            StorageError::EmptyRecord => f.write_str("empty records are not stored"),
            StorageError::CorruptRecord { seq } => write!(f, "record {seq} failed its checksum on read"),
            StorageError::DiskFull => f.write_str("no space left on the device"),
            StorageError::ReadOnly => f.write_str("the log's file or device is read-only"),
            StorageError::OutOfRange { requested, records } => {
                write!(f, "position {requested} is past the end of the log ({records} records)")
            }
            StorageError::Poisoned => f.write_str("a flush failed earlier; reopen the log to recover"),
            StorageError::Closed => f.write_str("the log was closed"),
            StorageError::Io(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
        }
    }
}

impl std::error::Error for StorageError {}
