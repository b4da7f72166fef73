//! A [`Stack`] as a simulator [`Node`], with a small application on top.

use super::Node;
use crate::iface::{Stack, TxFrame};
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
    /// With borrowed frames: the buffer the stack writes frames into.
    tx_buffer: Option<Vec<u8>>,
}

impl<A: App> Host<A> {
    /// A host running `app` on `stack`, frames moved in and out as [`Bytes`]
    /// (`Stack::receive`, `Stack::poll_transmit`).
    pub fn new(stack: Stack, app: A) -> Self {
        Host { stack, app, tx_buffer: None }
    }

    /// A host whose stack takes frames borrowed, as a device with buffers of its
    /// own does: `Stack::receive_slice` for every frame, and
    /// `Stack::poll_transmit_into` a buffer of `tx_buffer` bytes (a frame that
    /// does not fit comes back as `Bytes`).
    pub fn with_borrowed_frames(stack: Stack, app: A, tx_buffer: usize) -> Self {
        Host { stack, app, tx_buffer: Some(vec![0; tx_buffer]) }
    }
}

impl<A: App> Node for Host<A> {
    fn receive(&mut self, now: Instant, frame: Bytes) {
        if self.tx_buffer.is_some() {
            self.stack.receive_slice(now, &frame);
        } else {
            self.stack.receive(now, frame);
        }
    }

    fn transmit(&mut self, now: Instant) -> Option<Bytes> {
        let Some(buf) = &mut self.tx_buffer else {
            return self.stack.poll_transmit(now);
        };
        match self.stack.poll_transmit_into(now, buf)? {
            TxFrame::Written(n) => Some(Bytes::copy_from_slice(&buf[..n])),
            TxFrame::Owned(frame) => Some(frame),
        }
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
