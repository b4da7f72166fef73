//! The events a connection holds for the application, as a set rather than a queue.
//!
//! Each kind of event is either repeatable and merged while one waits (`Readable`,
//! `Writable`) or happens at most once in a connection's life (`Connected`,
//! `PeerClosed`, `Error`, `Closed`). So a queue of them never holds two of a kind,
//! and one bit per kind says as much, apart from the order. The order handed out is
//! fixed instead: the order of a connection's life.
//!
//! ```text
//! Connected, Readable, Writable, PeerClosed, Error, Closed
//! ```
//!
//! For the one-shot kinds this is the order they happen in (`Error` comes from the
//! same call that closes, `PeerClosed` after the last byte was made readable,
//! `Connected` before any data). Only `Writable` can be raised after `PeerClosed` (an
//! ACK in CLOSE-WAIT frees send space); waiting together, it comes first.

use super::{TcpError, TcpEvent};

const CONNECTED: u8 = 1 << 0;
const READABLE: u8 = 1 << 1;
const WRITABLE: u8 = 1 << 2;
const PEER_CLOSED: u8 = 1 << 3;
const ERROR: u8 = 1 << 4;
const CLOSED: u8 = 1 << 5;

/// The events waiting for the application: at most one of each kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct EventSet {
    bits: u8,
    /// The cause carried by the waiting `Error`.
    error: Option<TcpError>,
}

impl EventSet {
    /// Adds `event`; one of the same kind already waiting absorbs it.
    #[inline]
    pub(super) fn insert(&mut self, event: TcpEvent) {
        self.bits |= match event {
            TcpEvent::Connected => CONNECTED,
            TcpEvent::Readable => READABLE,
            TcpEvent::Writable => WRITABLE,
            TcpEvent::PeerClosed => PEER_CLOSED,
            TcpEvent::Error(e) => {
                self.error = Some(e);
                ERROR
            }
            TcpEvent::Closed => CLOSED,
        };
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Takes the first waiting event in the order of the module docs.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<TcpEvent> {
        /// By bit number; `Error` takes its cause from the set.
        const ORDER: [TcpEvent; 8] = [
            TcpEvent::Connected,
            TcpEvent::Readable,
            TcpEvent::Writable,
            TcpEvent::PeerClosed,
            TcpEvent::Error(TcpError::Reset),
            TcpEvent::Closed,
            TcpEvent::Closed,
            TcpEvent::Closed,
        ];
        if self.bits == 0 {
            return None;
        }
        let first = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        if first == ERROR.trailing_zeros() as usize {
            // `insert` sets the bit and the cause together: the fallback is never
            // taken.
            return Some(TcpEvent::Error(self.error.take().unwrap_or(TcpError::Reset)));
        }
        Some(ORDER[first])
    }

    /// Forgets every waiting event.
    #[inline]
    pub(super) fn clear(&mut self) {
        *self = EventSet::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(set: &mut EventSet) -> Vec<TcpEvent> {
        std::iter::from_fn(|| set.pop()).collect()
    }

    #[test]
    fn events_come_out_in_the_order_of_a_connection_life_whatever_the_order_in() {
        let all = [
            TcpEvent::Closed,
            TcpEvent::Error(TcpError::TimedOut),
            TcpEvent::PeerClosed,
            TcpEvent::Writable,
            TcpEvent::Readable,
            TcpEvent::Connected,
        ];
        let mut set = EventSet::default();
        for e in all {
            set.insert(e);
        }
        let mut expected = all.to_vec();
        expected.reverse();
        assert_eq!(drain(&mut set), expected);
        assert!(set.is_empty());
    }

    #[test]
    fn a_waiting_event_absorbs_one_of_its_kind_until_taken() {
        let mut set = EventSet::default();
        set.insert(TcpEvent::Readable);
        set.insert(TcpEvent::Writable);
        set.insert(TcpEvent::Readable);
        set.insert(TcpEvent::Writable);
        assert_eq!(set.pop(), Some(TcpEvent::Readable));
        // Taken: the next one waits again, still ahead of `Writable`.
        set.insert(TcpEvent::Readable);
        assert_eq!(drain(&mut set), [TcpEvent::Readable, TcpEvent::Writable]);
    }

    #[test]
    fn the_error_keeps_its_cause_and_clear_forgets_everything() {
        let mut set = EventSet::default();
        set.insert(TcpEvent::Error(TcpError::Refused));
        set.insert(TcpEvent::Closed);
        assert_eq!(drain(&mut set), [TcpEvent::Error(TcpError::Refused), TcpEvent::Closed]);
        set.insert(TcpEvent::Readable);
        set.insert(TcpEvent::Error(TcpError::Reset));
        set.clear();
        assert!(set.is_empty());
        assert_eq!(set.pop(), None);
    }
}
