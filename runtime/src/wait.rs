//! Collecting completions: `wait`, `wait_any`, `wait_all`, and the future behind
//! `qt.await`.
//!
//! `wait_any` registers one shared group as the waiter of every pending token, once
//! per call; each completion then appends its position to the group's ready list and
//! wakes the waiting task, which takes the first entry. No completion causes a rescan
//! of the other tokens. Tokens that are not returned keep their state: still pending,
//! or complete with their result waiting to be taken.
//!
//! Each call still visits every token of its slice once (the slice may differ from
//! the last call's in any position), so a call costs O(slice length), like
//! `select(2)`. [`WaitSet`] is the `epoll` form: a token joins once, and each
//! completion costs the same whatever the number of members (`benches/queues.rs`:
//! within 2× between 1 and 10,000 outstanding tokens).

use crate::executor::Handle;
use crate::op::{QToken, SetGroup, SlotStatus, WaitGroup};
use crate::queue::{QError, QResult};
use crate::time::{sleep, Sleep};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

fn current() -> Result<Handle, QError> {
    Handle::try_current().ok_or(QError::NoRuntime)
}

/// The future of one token: `qt.await` gives its [`QResult`], or
/// [`QError::BadToken`] if the token is unknown or its result was already taken.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Completion {
    qt: QToken,
}

impl Future for Completion {
    type Output = Result<QResult, QError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let h = match current() {
            Ok(h) => h,
            Err(e) => return Poll::Ready(Err(e)),
        };
        h.core.ops.take_or_wait(self.qt, cx.waker())
    }
}

impl IntoFuture for QToken {
    type Output = Result<QResult, QError>;
    type IntoFuture = Completion;

    fn into_future(self) -> Completion {
        Completion { qt: self }
    }
}

/// Runs a wait with an optional deadline; `None` waits forever.
struct WithTimeout<F> {
    inner: F,
    sleep: Option<Sleep>,
}

fn with_timeout<F>(inner: F, timeout: Option<Duration>) -> WithTimeout<F> {
    WithTimeout { inner, sleep: timeout.map(sleep) }
}

impl<T, F: Future<Output = Result<T, QError>> + Unpin> Future for WithTimeout<F> {
    type Output = Result<T, QError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = Pin::new(&mut self.inner).poll(cx) {
            return Poll::Ready(v);
        }
        match &mut self.sleep {
            Some(s) => Pin::new(s).poll(cx).map(|()| Err(QError::TimedOut)),
            None => Poll::Pending,
        }
    }
}

/// Waits for one token. On timeout the token stays pending and can be waited again.
pub async fn wait(qt: QToken, timeout: Option<Duration>) -> Result<QResult, QError> {
    if timeout.is_some() {
        current()?;
    }
    with_timeout(qt.into_future(), timeout).await
}

struct WaitAny<'a> {
    qts: &'a [QToken],
    group: Option<Rc<WaitGroup>>,
}

impl Future for WaitAny<'_> {
    type Output = Result<(usize, QResult), QError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let h = match current() {
            Ok(h) => h,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let ops = &h.core.ops;
        let qts = self.qts;
        if let Some(group) = &self.group {
            group.set_waker(cx.waker());
            while let Some(pos) = group.next_ready() {
                // The result may have been taken through another wait meanwhile.
                if let Ok(Some(r)) = ops.take(qts[pos]) {
                    return Poll::Ready(Ok((pos, r)));
                }
            }
            return Poll::Pending;
        }
        if qts.is_empty() {
            return Poll::Ready(Err(QError::InvalidArgument("wait_any needs at least one token")));
        }
        // First poll: one pass that validates every token and joins the group; then
        // the first already complete token, if any, is taken (only once all are
        // known to be valid, so a bad token never costs another token its result).
        let group = Rc::new(WaitGroup::default());
        group.set_waker(cx.waker());
        let first_done = match ops.join_group_all(qts, &group) {
            Ok(d) => d,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Some(pos) = first_done {
            return Poll::Ready(ops.take(qts[pos]).and_then(|r| r.ok_or(QError::BadToken)).map(|r| (pos, r)));
        }
        self.group = Some(group);
        Poll::Pending
    }
}

/// Waits for the first of `qts` to complete and returns its position and result.
/// The other tokens are left as they are (pending, or complete and waitable).
/// A bad token anywhere in `qts` fails the call with [`QError::BadToken`].
pub async fn wait_any(qts: &[QToken], timeout: Option<Duration>) -> Result<(usize, QResult), QError> {
    with_timeout(WaitAny { qts, group: None }, timeout).await
}

struct WaitAll<'a> {
    qts: &'a [QToken],
    group: Option<Rc<WaitGroup>>,
    remaining: usize,
}

impl Future for WaitAll<'_> {
    type Output = Result<Vec<QResult>, QError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let h = match current() {
            Ok(h) => h,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let ops = &h.core.ops;
        let qts = self.qts;
        match &self.group {
            Some(group) => {
                group.set_waker(cx.waker());
                let mut completed = 0;
                while group.next_ready().is_some() {
                    completed += 1;
                }
                self.remaining = self.remaining.saturating_sub(completed);
            }
            None => {
                if qts.len() > 1 {
                    let mut seen = std::collections::HashSet::with_capacity(qts.len());
                    if !qts.iter().all(|qt| seen.insert(qt.raw())) {
                        return Poll::Ready(Err(QError::InvalidArgument("wait_all got the same token twice")));
                    }
                }
                let group = Rc::new(WaitGroup::default());
                group.set_waker(cx.waker());
                let mut remaining = 0;
                for (pos, &qt) in qts.iter().enumerate() {
                    match ops.join_group(qt, &group, pos) {
                        Err(e) => return Poll::Ready(Err(e)),
                        Ok(SlotStatus::Pending) => remaining += 1,
                        Ok(SlotStatus::Done) => {}
                    }
                }
                self.group = Some(group);
                self.remaining = remaining;
            }
        }
        if self.remaining > 0 {
            return Poll::Pending;
        }
        // Everything is complete: check that every result is still there (one may
        // have been taken through another wait meanwhile), then take them all, in the
        // order of `qts`. A failed check takes nothing.
        for &qt in qts {
            match ops.status(qt) {
                Ok(SlotStatus::Done) => {}
                Ok(SlotStatus::Pending) => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let mut out = Vec::with_capacity(qts.len());
        for &qt in qts {
            match ops.take(qt) {
                Ok(Some(r)) => out.push(r),
                Ok(None) | Err(_) => unreachable!("every token was checked complete just above"),
            }
        }
        Poll::Ready(Ok(out))
    }
}

/// Waits until every token in `qts` is complete and returns their results in order.
/// On timeout no result is taken: every token stays waitable.
pub async fn wait_all(qts: &[QToken], timeout: Option<Duration>) -> Result<Vec<QResult>, QError> {
    with_timeout(WaitAll { qts, group: None, remaining: 0 }, timeout).await
}

/// A set of tokens waited on together, in the manner of `epoll`: each token joins
/// the set once ([`insert`](Self::insert), O(1)) and every completion appends it to
/// the set's ready list, so [`wait_any`](Self::wait_any) costs the same with one
/// outstanding token or with ten thousand.
///
/// The slice form [`wait_any`](fn@wait_any) has to look at every token it is given
/// on each call (the slice may have changed arbitrarily since the last call), so
/// its cost grows with the slice, like `select(2)`. Use a `WaitSet` when many
/// tokens stay outstanding across many waits (a server with thousands of pending
/// pops).
///
/// A token leaves the set when `wait_any` returns its result, or through
/// [`remove`](Self::remove). A token whose result is taken by another wait (its own
/// `qt.await`, say) stops counting once the set notices it.
///
/// ```
/// use demi_runtime::{Runtime, OpCode, QDesc, QValue, WaitSet};
/// let rt = Runtime::new().unwrap();
/// let h = rt.handle().clone();
/// let tokens: Vec<_> = (0..100).map(|_| rt.op_start(OpCode::Pop, QDesc::from_parts(0, 1))).collect();
/// let got = rt.block_on(async move {
///     let mut set = WaitSet::new();
///     for &qt in &tokens {
///         set.insert(qt).unwrap();
///     }
///     h.op_complete(tokens[42], Ok(QValue::Pushed)).unwrap();
///     set.wait_any(None).await.unwrap().qt == tokens[42]
/// });
/// assert!(got);
/// ```
pub struct WaitSet {
    set: Rc<SetGroup>,
    /// Members: joined, and not yet returned, removed, or found taken elsewhere.
    /// Membership itself is kept in the slots (their waiter is this set) and, for
    /// tokens that are complete, in the set's ready list.
    len: usize,
}

impl Default for WaitSet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WaitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet").field("len", &self.len).finish()
    }
}

impl WaitSet {
    /// An empty set.
    pub fn new() -> Self {
        WaitSet { set: Rc::new(SetGroup::default()), len: 0 }
    }

    fn is_ready(&self, qt: QToken) -> bool {
        self.set.ready.borrow().contains(&qt)
    }

    /// Adds a token (pending, or complete and not yet taken). Adding a member again
    /// changes nothing. Fails with [`QError::BadToken`] for an unknown or consumed
    /// token, [`QError::NoRuntime`] outside a runtime.
    pub fn insert(&mut self, qt: QToken) -> Result<(), QError> {
        let h = current()?;
        match h.core.ops.join_set(qt, &self.set)? {
            None => {}
            Some(SlotStatus::Pending) => self.len += 1,
            Some(SlotStatus::Done) if !self.is_ready(qt) => {
                self.len += 1;
                self.set.notify(qt);
            }
            Some(SlotStatus::Done) => {}
        }
        Ok(())
    }

    /// Removes a token; true if it was a member. Its operation is not affected.
    pub fn remove(&mut self, qt: QToken) -> bool {
        let Ok(h) = current() else { return false };
        if h.core.ops.in_set(qt, &self.set, true) {
            self.len -= 1;
            return true;
        }
        let mut ready = self.set.ready.borrow_mut();
        match ready.iter().position(|&r| r == qt) {
            Some(i) => {
                ready.remove(i);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// True if `qt` is a member.
    pub fn contains(&self, qt: QToken) -> bool {
        current().is_ok_and(|h| h.core.ops.in_set(qt, &self.set, false)) || self.is_ready(qt)
    }

    /// Members (tokens not yet returned or removed).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for the next member to complete, takes its result and removes it from
    /// the set ([`QResult::qt`] says which token it was). An empty set is
    /// [`QError::InvalidArgument`]; on timeout ([`QError::TimedOut`]) nothing is taken.
    pub async fn wait_any(&mut self, timeout: Option<Duration>) -> Result<QResult, QError> {
        if self.len == 0 {
            return Err(QError::InvalidArgument("wait_any on an empty WaitSet"));
        }
        with_timeout(SetNext { set: self }, timeout).await
    }

    /// [`wait_any`](Self::wait_any) from synchronous code: drives the runtime `h`.
    pub fn wait_any_blocking(&mut self, h: &Handle, timeout: Option<Duration>) -> Result<QResult, QError> {
        h.try_block_on(self.wait_any(timeout))?
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<QResult, QError>> {
        let h = match current() {
            Ok(h) => h,
            Err(e) => return Poll::Ready(Err(e)),
        };
        self.set.set_waker(cx.waker());
        while let Some(qt) = self.set.next_ready() {
            match h.core.ops.take(qt) {
                Ok(Some(r)) => {
                    self.len -= 1;
                    return Poll::Ready(Ok(r));
                }
                // Cannot happen for a token that notified; keep it a member.
                Ok(None) => {}
                // Taken through another wait meanwhile: no longer a member.
                Err(_) => self.len -= 1,
            }
        }
        if self.len == 0 {
            return Poll::Ready(Err(QError::InvalidArgument("wait_any on an empty WaitSet")));
        }
        Poll::Pending
    }
}

struct SetNext<'a> {
    set: &'a mut WaitSet,
}

impl Future for SetNext<'_> {
    type Output = Result<QResult, QError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.set.poll_next(cx)
    }
}

impl Handle {
    /// Takes a token's result if it is there, without waiting and without becoming
    /// its waiter: `Ok(None)` while it is pending. Works inside and outside the
    /// runtime (a combinator uses it to complete an operation at once when
    /// everything it forwarded to already has).
    pub fn try_take(&self, qt: QToken) -> Result<Option<QResult>, QError> {
        self.core.ops.take(qt)
    }
}
