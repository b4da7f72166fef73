//! The reactor: one epoll instance per runtime, where kernel-backed drivers register
//! their file descriptors and where the loop parks when it is idle. An eventfd in the
//! same set lets wakes from other threads interrupt the park.
//!
//! This is the only module of the runtime that makes system calls.

use crate::driver::{Interest, Readiness};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Epoll user data reserved for the unpark eventfd.
const UNPARK_TOKEN: u64 = u64::MAX;
/// Events fetched per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

/// The thread-safe half: wakes a parked loop from any thread.
#[derive(Debug)]
pub(crate) struct Unparker {
    eventfd: OwnedFd,
}

impl Unparker {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Unparker { eventfd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Makes the next (or current) `epoll_wait` of the loop return.
    pub(crate) fn unpark(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A full counter
        // (EAGAIN) already means "wake", so the result is ignored.
        unsafe {
            libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN is fine (nothing to drain).
        unsafe {
            libc::read(self.eventfd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8);
        }
    }
}

/// The loop-side half: owns the epoll set.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    events: RefCell<Vec<libc::epoll_event>>,
    registered: Cell<usize>,
}

impl Reactor {
    /// A new epoll set containing the unparker's eventfd.
    pub(crate) fn new() -> io::Result<(Reactor, Unparker)> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let unparker = Unparker::new()?;
        let reactor = Reactor {
            epoll,
            events: RefCell::new(Vec::with_capacity(EVENTS_PER_WAIT)),
            registered: Cell::new(0),
        };
        reactor.ctl(
            libc::EPOLL_CTL_ADD,
            unparker.eventfd.as_raw_fd(),
            libc::EPOLLIN as u32,
            UNPARK_TOKEN,
        )?;
        Ok((reactor, unparker))
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a live epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn flags(interest: Interest) -> u32 {
        let mut f = (libc::EPOLLET | libc::EPOLLRDHUP) as u32;
        if interest.readable {
            f |= libc::EPOLLIN as u32;
        }
        if interest.writable {
            f |= libc::EPOLLOUT as u32;
        }
        f
    }

    /// Adds `fd` (edge-triggered) with the given user data.
    pub(crate) fn register(&self, fd: RawFd, data: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, Self::flags(interest), data)?;
        self.registered.set(self.registered.get() + 1);
        Ok(())
    }

    /// Adds `fd` (edge-triggered, readable) as a wake-up source only: it can end a
    /// sleep, but is not worth a zero-timeout look on busy turns (its driver is
    /// polled on every turn anyway). Not counted by [`has_registrations`](Self::has_registrations).
    pub(crate) fn register_wake(&self, fd: RawFd, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, Self::flags(Interest::READABLE), data)
    }

    /// Removes a wake-up source added with [`register_wake`](Self::register_wake).
    pub(crate) fn deregister_wake(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Changes the interest or user data of a registered fd.
    pub(crate) fn reregister(&self, fd: RawFd, data: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, Self::flags(interest), data)
    }

    /// Removes `fd` from the set.
    pub(crate) fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)?;
        self.registered.set(self.registered.get().saturating_sub(1));
        Ok(())
    }

    /// True when some driver has an fd registered (a zero-timeout turn is then worth a
    /// system call).
    pub(crate) fn has_registrations(&self) -> bool {
        self.registered.get() > 0
    }

    /// Waits up to `timeout` (None: forever, zero: just look) and hands every event to
    /// `dispatch(data, readiness)`. Returns the number of driver events (wakes of the
    /// unparker are not counted).
    pub(crate) fn poll(
        &self,
        timeout: Option<Duration>,
        unparker: &Unparker,
        mut dispatch: impl FnMut(u64, Readiness),
    ) -> io::Result<usize> {
        let timeout_ms: i32 = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            // Round up so a 300 µs deadline does not become a busy 0 ms loop.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        let mut events = self.events.take();
        events.clear();
        // A dispatch that panicked may have left an empty Vec behind: make sure the
        // buffer the kernel writes into is really there.
        events.reserve(EVENTS_PER_WAIT);
        // SAFETY: the buffer has capacity EVENTS_PER_WAIT; the kernel writes at most
        // that many entries and we set the length to the count it returns.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS_PER_WAIT as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            self.events.replace(events);
            return if err.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(err) };
        }
        // SAFETY: epoll_wait initialised the first `n` entries.
        unsafe { events.set_len(n as usize) };
        let mut count = 0;
        for ev in events.iter() {
            let (flags, data) = (ev.events, ev.u64);
            if data == UNPARK_TOKEN {
                unparker.drain();
                continue;
            }
            count += 1;
            dispatch(
                data,
                Readiness {
                    readable: flags & (libc::EPOLLIN | libc::EPOLLPRI) as u32 != 0,
                    writable: flags & libc::EPOLLOUT as u32 != 0,
                    hangup: flags & (libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0,
                    error: flags & libc::EPOLLERR as u32 != 0,
                },
            );
        }
        self.events.replace(events);
        Ok(count)
    }
}
