//! Unix signals as futures: [`ctrl_c`] (SIGINT) and [`signal`] (any catchable
//! signal), for graceful shutdown.
//!
//! The first wait for a signal installs a process-wide handler (`sigaction`) that
//! does one async-signal-safe thing: it adds 1 to an eventfd. Each runtime that waits
//! registers that eventfd with its reactor; when it becomes readable the runtime
//! wakes every task waiting for the signal. A signal that arrives while nobody waits
//! is remembered until the next wait (counts are not kept: several signals before a
//! wait complete it once). Once installed, the handler stays: the signal no longer
//! terminates the process, which is the point.

use crate::driver::{Driver, Interest, Readiness};
use crate::executor::Handle;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Highest signal number handled (Linux: 64 real-time signals included).
const MAX_SIGNAL: usize = 65;

/// The eventfd of each signal with a handler installed (-1: none).
static EVENTFDS: [AtomicI32; MAX_SIGNAL] = [const { AtomicI32::new(-1) }; MAX_SIGNAL];
/// Serialises installing handlers.
static INSTALL: Mutex<()> = Mutex::new(());

extern "C" fn on_signal(signo: libc::c_int) {
    let fd = EVENTFDS.get(signo as usize).map_or(-1, |f| f.load(Ordering::Relaxed));
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) on an eventfd is async-signal-safe; errno is saved and
        // restored so the interrupted code does not see it change.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, (&one as *const u64).cast(), 8);
            *libc::__errno_location() = errno;
        }
    }
}

/// The eventfd of `signo`, installing the handler on first use.
fn eventfd_for(signo: i32) -> io::Result<i32> {
    let slot = usize::try_from(signo)
        .ok()
        .filter(|&s| s > 0 && s < MAX_SIGNAL)
        .and_then(|s| EVENTFDS.get(s))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("signal {signo} is out of range")))?;
    if matches!(signo, libc::SIGKILL | libc::SIGSTOP | libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("signal {signo} cannot be waited for")));
    }
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let fd = slot.load(Ordering::Acquire);
    if fd >= 0 {
        return Ok(fd);
    }
    // SAFETY: plain eventfd creation.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    slot.store(fd, Ordering::Release);
    // SAFETY: a zeroed sigaction with our handler; the handler only touches atomics
    // and write(2).
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(signo, &sa, std::ptr::null_mut())
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        slot.store(-1, Ordering::Release);
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// Per runtime and signal: the eventfd's registration and the tasks waiting.
struct Watch {
    fd: i32,
    /// Incremented each time the eventfd fires.
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Driver for Watch {
    fn name(&self) -> &'static str {
        "signal"
    }

    fn poll(&self, _now: Instant) -> usize {
        0
    }

    fn on_event(&self, _token: u32, _readiness: Readiness) -> usize {
        let mut count = [0u8; 8];
        // SAFETY: reading our eventfd's counter (resets it); EAGAIN is fine.
        let n = unsafe { libc::read(self.fd, count.as_mut_ptr().cast(), 8) };
        if n != 8 {
            return 0;
        }
        self.generation.set(self.generation.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        let woken = waiters.len();
        waiters.into_iter().for_each(Waker::wake);
        woken.max(1)
    }
}

thread_local! {
    /// Watches by (runtime id, signal).
    static WATCHES: RefCell<HashMap<(usize, i32), Rc<Watch>>> = RefCell::new(HashMap::new());
}

fn watch(rt: &Handle, signo: i32) -> io::Result<Rc<Watch>> {
    let key = (rt.id(), signo);
    if let Some(w) = WATCHES.with(|w| w.borrow().get(&key).cloned()) {
        return Ok(w);
    }
    let fd = eventfd_for(signo)?;
    let w = Rc::new(Watch { fd, generation: Cell::new(0), waiters: RefCell::new(Vec::new()) });
    let id = rt.add_driver(w.clone());
    rt.register_fd(fd, id, 0, Interest::READABLE)?;
    WATCHES.with(|m| m.borrow_mut().insert(key, w.clone()));
    Ok(w)
}

/// Completes when the process receives signal `signo` (e.g. `libc::SIGTERM`) after
/// this call — or received it before, while nobody waited. Errors for signals that
/// cannot be caught or are out of range, and outside a runtime.
pub async fn signal(signo: i32) -> io::Result<()> {
    let rt = Handle::try_current()
        .ok_or_else(|| io::Error::other("demi::signal needs a running demi runtime"))?;
    let w = watch(&rt, signo)?;
    // A signal delivered before the first registration (or between waits) is still
    // counted in the eventfd: the reactor reports it as readable.
    let start = w.generation.get();
    SignalWait { watch: w, start }.await;
    Ok(())
}

/// Completes on the next Ctrl-C (SIGINT). See [`signal`].
pub async fn ctrl_c() -> io::Result<()> {
    signal(libc::SIGINT).await
}

struct SignalWait {
    watch: Rc<Watch>,
    start: u64,
}

impl Future for SignalWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.watch.generation.get() > self.start {
            return Poll::Ready(());
        }
        let mut w = self.watch.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
