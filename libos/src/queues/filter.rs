//! `filter(q, pred)`: pops only the elements of `q` for which `pred` holds; a push
//! reaches `q` only if `pred` holds.
//!
//! Elements that fail are dropped: a pop of the filter keeps reading `q` until an
//! element passes (or `q` ends), and a failing push completes at once, successfully,
//! without reaching `q` (a filter is a sieve, not an error). Order is `q`'s order.
//! Counters: [`LibOs::filter_stats`](crate::LibOs::filter_stats).
//!
//! `pred` is a closure (run on the CPU) or a declarative [`Predicate`], which also
//! runs at the packet level when `q` is a bound UDP queue of the user-level stack
//! (see [`super::predicate`]).

use super::predicate::{Meta, Predicate, Proto};
use demi_runtime::Sga;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

/// What a filter tests: a closure (CPU only) or a declarative predicate (CPU, and
/// offloaded where the queue allows). Anything `Fn(&Sga) -> bool` converts.
#[derive(Clone)]
pub enum Filter {
    /// Runs on the CPU over each element.
    Closure(Rc<dyn Fn(&Sga) -> bool>),
    /// Runs where the data is (see the module docs).
    Predicate(Predicate),
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Closure(_) => f.write_str("Filter::Closure(..)"),
            Filter::Predicate(p) => f.debug_tuple("Filter::Predicate").field(p).finish(),
        }
    }
}

impl From<Predicate> for Filter {
    fn from(p: Predicate) -> Self {
        Filter::Predicate(p)
    }
}

impl<F: Fn(&Sga) -> bool + 'static> From<F> for Filter {
    fn from(f: F) -> Self {
        Filter::Closure(Rc::new(f))
    }
}

/// A filter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Elements that passed on the CPU (popped through the filter).
    pub passed: u64,
    /// Elements popped from the input and dropped on the CPU.
    pub dropped: u64,
    /// Pushes dropped (not forwarded to the input).
    pub dropped_push: u64,
    /// Frames dropped at the packet level, before the stack queued them
    /// (user-level stack UDP queues only).
    pub dropped_offload: u64,
    /// True while the predicate is installed at the packet level.
    pub offloaded: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) passed: Cell<u64>,
    pub(crate) dropped: Cell<u64>,
    pub(crate) dropped_push: Cell<u64>,
    /// Shared with the libOS driver that applies the offloaded predicate.
    pub(crate) dropped_offload: Rc<Cell<u64>>,
    pub(crate) offloaded: Cell<bool>,
}

/// A filter as a stage runs it.
pub(crate) struct FilterState {
    pub(crate) test: Filter,
    /// The filtered queue's local address, when it is a socket.
    pub(crate) local: Option<SocketAddr>,
    /// Whether the filtered queue's elements all come from sockets (then an element
    /// with an address is a datagram, one without a stream's).
    pub(crate) socket: bool,
    pub(crate) stats: Rc<Counters>,
}

impl FilterState {
    pub(crate) fn holds(&self, sga: &Sga) -> bool {
        match &self.test {
            Filter::Closure(f) => f(sga),
            Filter::Predicate(p) => {
                let proto = self.socket.then(|| if sga.addr().is_some() { Proto::Udp } else { Proto::Tcp });
                p.matches_with(&Meta { proto, peer: sga.addr(), local: self.local }, sga)
            }
        }
    }

    pub(crate) fn snapshot(&self) -> FilterStats {
        let s = &self.stats;
        FilterStats {
            passed: s.passed.get(),
            dropped: s.dropped.get(),
            dropped_push: s.dropped_push.get(),
            dropped_offload: s.dropped_offload.get(),
            offloaded: s.offloaded.get(),
        }
    }
}
