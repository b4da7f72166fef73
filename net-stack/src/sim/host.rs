//! A [`Stack`] as a simulator [`Node`], with a small application on top.

use super::Node;
use crate::iface::Stack;
use bytes::Bytes;
use std::time::Instant;

/// The application half of a simulated host: it runs at every step, after the
/// stack's timers, and talks to the stack through its socket calls and events.
pub trait App {
    /// Application work at `now`: drain `stack.poll_event()`, send, receive.
    fn poll(&mut self, now: Instant, stack: &mut Stack);

    /// When the application next needs `poll` without any input (None: never).
    fn poll_at(&self) -> Option<Instant> {
        None
    }
}

/// A stack and its application, driven by the [`Simulator`](super::Simulator).
pub struct Host<A> {
    /// The host's network stack.
    pub stack: Stack,
    /// What runs on it.
    pub app: A,
}

impl<A: App> Host<A> {
    /// A host running `app` on `stack`.
    pub fn new(stack: Stack, app: A) -> Self {
        Host { stack, app }
    }
}

impl<A: App> Node for Host<A> {
    fn receive(&mut self, now: Instant, frame: Bytes) {
        self.stack.receive(now, frame);
    }

    fn transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.stack.poll_transmit(now)
    }

    fn poll(&mut self, now: Instant) {
        if self.stack.poll_at().is_some_and(|t| t <= now) {
            self.stack.handle_timeout(now);
        }
        self.app.poll(now, &mut self.stack);
    }

    fn poll_at(&self) -> Option<Instant> {
        match (self.stack.poll_at(), self.app.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
