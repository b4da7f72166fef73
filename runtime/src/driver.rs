//! Drivers: what the scheduler polls inline on every turn.
//!
//! A driver is the runtime-facing half of a device or libOS: a DPDK port, a
//! shared-memory ring, the POSIX libOS's sockets, an io_uring. The run loop gives every
//! driver a non-blocking turn ([`Driver::poll`]) after each batch of tasks, so I/O can
//! never be starved by busy tasks. Kernel-backed drivers register file descriptors with
//! the runtime's reactor ([`Handle::register_fd`](crate::Handle::register_fd)) and are
//! told of readiness through [`Driver::on_event`]; the loop can then sleep in the kernel
//! until an fd is ready or the next timer is due. Poll-mode drivers (DPDK, shared memory)
//! ask the loop to spin instead ([`IdleMode::Spin`]).
//!
//! Drivers run on the runtime's thread and are called through `&self`: they keep their
//! state in `Cell`/`RefCell` and share it with the libOS that created them. A driver
//! must not block, and may start or complete operations, wake tasks and arm timers from
//! any of its methods.

use std::time::{Duration, Instant};

/// How a driver wants the loop to idle when no task is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleMode {
    /// Sleep in the kernel (epoll) until an fd is ready, a cross-thread wake arrives or
    /// the next deadline passes. Right for kernel-backed drivers.
    Park,
    /// Keep polling: the device only makes progress when polled (poll-mode NICs,
    /// shared-memory rings).
    Spin,
}

/// How long [`IdlePolicy::Auto`] keeps polling after the last work before it parks,
/// when no driver asks to spin. Seastar's reactor, for comparison, polls 200 µs by
/// default before it sleeps; 20 µs already kept a loaded kv server from sleeping
/// between requests in our measurements (docs/performance.md).
pub const AUTO_SPIN_WINDOW: Duration = Duration::from_micros(50);

/// What the loop does when no task is ready. Configured with
/// [`Builder::idle`](crate::Builder::idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdlePolicy {
    /// Spin if any registered driver asks for [`IdleMode::Spin`]. Otherwise keep
    /// polling for [`AUTO_SPIN_WINDOW`] after the last work, then park (with the
    /// clock paused, park at once). A loaded loop thus never sleeps between two
    /// pieces of work, so a peer's send need not wake it (on a VM a wake-up is an
    /// inter-processor interrupt and costs the sender microseconds); an idle loop
    /// spends at most the window's CPU time after each burst.
    #[default]
    Auto,
    /// Always spin (lowest latency, one core at 100%).
    Spin,
    /// Always park in the kernel up to the next deadline. Poll-mode drivers with a
    /// doorbell (the shared-memory link) are woken by their peer; one that cannot be
    /// woken (a DPDK port) vetoes the sleep in [`Driver::prepare_park`], so the loop
    /// keeps polling it.
    Park,
    /// Spin for the given time after the last work, then park.
    SpinThenPark(Duration),
}

/// Readiness reported by the reactor for a registered file descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Readable (or a listening socket has a connection).
    pub readable: bool,
    /// Writable (or a non-blocking connect finished).
    pub writable: bool,
    /// The peer hung up or shut down its write side.
    pub hangup: bool,
    /// An error is pending on the fd.
    pub error: bool,
}

/// Which readiness a registration asks for. Registrations are edge-triggered: a
/// driver must keep going until the fd reports `EAGAIN` before it waits for the next
/// event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Ask for readable events.
    pub readable: bool,
    /// Ask for writable events.
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest { readable: true, writable: false };
    /// Writable only.
    pub const WRITABLE: Interest = Interest { readable: false, writable: true };
    /// Both.
    pub const BOTH: Interest = Interest { readable: true, writable: true };
}

/// Names a driver registered with a runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DriverId(pub(crate) u32);

/// A device or libOS polled inline by the scheduler. See the [module docs](self).
pub trait Driver {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// One non-blocking turn: receive a burst, flush transmissions, reap completions,
    /// handle expired protocol timers. Returns how much work was done; 0 means the
    /// driver is idle and the loop may park.
    fn poll(&self, now: Instant) -> usize;

    /// Readiness of an fd this driver registered, with the token it chose. Returns how
    /// much work was done.
    fn on_event(&self, token: u32, readiness: Readiness) -> usize {
        let _ = (token, readiness);
        0
    }

    /// The next instant at which [`poll`](Self::poll) must run even if nothing else
    /// happens (e.g. a retransmission timeout). The loop never parks past it.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// How this driver wants the loop to idle.
    fn idle_mode(&self) -> IdleMode {
        IdleMode::Park
    }

    /// The loop is about to sleep in the kernel (its policy parks, and no task is
    /// ready). A poll-mode driver that can be woken through an fd it registered (a
    /// shared-memory link's doorbell) asks its peer to ring it from now on, and
    /// returns `false` if work arrived meanwhile: the loop then turns again instead
    /// of sleeping. The default has nothing to arrange.
    fn prepare_park(&self) -> bool {
        true
    }
}
