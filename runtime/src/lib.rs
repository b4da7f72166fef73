//! # demi-runtime
//!
//! The bottom layer of demi: a single-threaded, run-to-completion polling executor
//! and the pieces of the Demikernel queue API that do not depend on a device.
//!
//! - [`Runtime`] / [`Handle`]: the executor (`block_on`, `spawn`, [`yield_now`]) with
//!   bounded task batches, inline-polled [`Driver`]s and an epoll reactor for
//!   kernel-backed ones.
//! - [`time`]: `sleep`, `timeout`, `interval` on a hierarchical timing wheel, with a
//!   clock that tests can pause and advance.
//! - Operation slots: a libOS starts an operation with [`Handle::op_start`] and gets
//!   a [`QToken`]; it completes it with [`Handle::op_complete`], which wakes exactly
//!   the token's waiter. A token is a future (`qt.await`) and can be collected with
//!   [`wait`], [`wait_any`] and [`wait_all`], or their synchronous forms on
//!   [`Handle`], which drive the runtime until the result is there.
//! - [`Sga`]: scatter-gather arrays of refcounted buffers, the queues' elements.
//! - [`QDesc`], [`QResult`], [`QValue`], [`OpCode`], [`QError`]: the vocabulary
//!   every libOS shares.
//!
//! ```
//! use demi_runtime::{Runtime, OpCode, QDesc, QValue};
//! let rt = Runtime::new().unwrap();
//! let qd = QDesc::from_parts(0, 1);
//! let qt = rt.op_start(OpCode::Push, qd);
//! let h = rt.handle().clone();
//! rt.spawn(async move { h.op_complete(qt, Ok(QValue::Pushed)).unwrap() }).detach();
//! let r = rt.wait(qt, None).unwrap();
//! assert_eq!(r.value, Ok(QValue::Pushed));
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod driver;
mod executor;
mod op;
pub mod queue;
mod reactor;
mod sga;
pub mod signal;
mod task;
pub mod time;
mod wait;

pub use driver::{Driver, DriverId, IdleMode, IdlePolicy, Interest, Readiness, AUTO_SPIN_WINDOW};
pub use executor::{spawn, yield_now, Builder, Handle, Runtime};
pub use op::QToken;
pub use queue::{OpCode, QDesc, QError, QResult, QValue};
pub use sga::Sga;
pub use task::{JoinError, JoinHandle};
pub use wait::{wait, wait_all, wait_any, Completion, WaitSet};
