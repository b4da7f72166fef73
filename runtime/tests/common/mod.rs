//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Sets its flag when dropped: put one in a task's future to see when the future is
/// dropped.
pub struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A flag to move into a future, and the cell that tells whether it was dropped.
pub fn drop_flag() -> (DropFlag, Rc<Cell<bool>>) {
    let dropped = Rc::new(Cell::new(false));
    (DropFlag(dropped.clone()), dropped)
}

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct CountingWaker(AtomicUsize);

impl CountingWaker {
    pub fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    pub fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls a future once with a waker that does nothing.
pub fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let (_, waker) = CountingWaker::new();
    Pin::new(fut).poll(&mut Context::from_waker(&waker))
}

/// A future completed from another thread: its first poll hands its waker to a new
/// std thread, which waits `delay`, sets the flag and wakes it.
pub struct RemoteWake {
    delay: Duration,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoteWake {
    pub fn after(delay: Duration) -> RemoteWake {
        RemoteWake { delay, fired: Arc::new(AtomicBool::new(false)), thread: None }
    }
}

impl Future for RemoteWake {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.take() {
                t.join().expect("waking thread panicked");
            }
            return Poll::Ready(());
        }
        if self.thread.is_none() {
            let (waker, fired, delay) = (cx.waker().clone(), self.fired.clone(), self.delay);
            self.thread = Some(std::thread::spawn(move || {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                fired.store(true, Ordering::SeqCst);
                waker.wake();
            }));
        }
        Poll::Pending
    }
}
