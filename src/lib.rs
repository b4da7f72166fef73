//! # demi
//!
//! A Demikernel-style async runtime for kernel-bypass I/O. Applications see one
//! device-agnostic abstraction, the **I/O queue**: `push` and `pop` of atomic
//! scatter-gather elements ([`Sga`]) return qtokens ([`QToken`]) at once; completions
//! are collected with `wait`, `wait_any` and `wait_all`, or by awaiting the token.
//! A single-threaded, run-to-completion polling executor drives the coroutines and
//! polls the device drivers inline.
//!
//! ```no_run
//! use demi::{LibOs, Domain, SocketType};
//!
//! #[demi::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let libos = LibOs::current()?;
//!     let qd = libos.socket(Domain::Ipv4, SocketType::Stream)?;
//!     libos.bind(qd, "127.0.0.1:9000".parse()?)?;
//!     libos.listen(qd, 128)?;
//!     loop {
//!         let (conn, _peer) = libos.accept(qd)?.await?.into_accepted()?;
//!         let libos = libos.clone();
//!         demi::spawn(async move {
//!             // Echo until the peer closes (an empty element) or an error.
//!             while let Ok(qt) = libos.pop(conn) {
//!                 let sga = match qt.await.and_then(|r| r.into_sga()) {
//!                     Ok(sga) if !sga.is_empty() => sga,
//!                     _ => break,
//!                 };
//!                 let Ok(qt) = libos.push(conn, sga) else { break };
//!                 if qt.await.and_then(|r| r.ok()).is_err() {
//!                     break;
//!                 }
//!             }
//!             let _ = libos.close(conn);
//!         });
//!     }
//! }
//! ```
//!
//! This crate re-exports the layers (no logic of its own): [`demi_runtime`] (executor,
//! timers, qtokens), [`demi_libos`] (the queue API and libOSes), and the
//! `#[demi::main]` / `#[demi::test]` attributes.

pub use demi_libos::{
    device, framing, net, queues, Config, ConfigError, Domain, Filter, FilterStats, FrameLimits, LibOs, LibOsKind,
    NetConfig, Predicate, Proto, SocketType,
};
pub use demi_macros::{main, test};
pub use demi_runtime::{
    signal, spawn, time, wait, wait_all, wait_any, yield_now, Builder, Completion, Driver, DriverId, Handle,
    IdleMode, IdlePolicy, Interest, JoinError, JoinHandle, OpCode, QDesc, QError, QResult, QToken,
    QValue, Readiness, Runtime, Sga, WaitSet, AUTO_SPIN_WINDOW,
};
/// Waits for the first of two futures: `Either::Left((a_output, b))` or
/// `Either::Right((b_output, a))` (the other future, to keep or drop). Futures must
/// be `Unpin` (pin them with `std::pin::pin!`). For many qtokens use
/// [`wait_any`] or a [`WaitSet`].
pub use futures::future::{select, Either};
/// demi's sans-IO TCP/IP stack and its simulator.
pub use demi_net_stack as net_stack;
pub use demi_libos::{OpenMode, StorageError, StorageOptions};
pub use demi_storage as storage;
/// Re-exported for building elements.
pub use bytes::{self, Bytes};

#[doc(hidden)]
pub mod __private {
    pub use demi_libos::launch::{run_main, run_test, LaunchOptions};
}
