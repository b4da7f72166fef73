//! Join handles of spawned tasks.

use async_task::FallibleTask;
use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a task's future produced: its output, or the payload of its panic.
pub(crate) type TaskOutput<T> = Result<T, Box<dyn Any + Send + 'static>>;

/// Why a task did not produce its output.
pub enum JoinError {
    /// The task was aborted (or the runtime shut down) before it finished.
    Cancelled,
    /// The task panicked; the payload is the panic's value. The runtime caught the
    /// panic and kept running.
    Panicked(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// True for [`JoinError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// True for [`JoinError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic message, when the payload is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            JoinError::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinError::Panicked(_) => {
                write!(f, "JoinError::Panicked({:?})", self.panic_message().unwrap_or("<non-string payload>"))
            }
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

/// An owned permission to await a spawned task's output.
///
/// Awaiting gives `Ok(output)`, or a [`JoinError`] if the task panicked or was
/// aborted. Dropping the handle detaches the task (it keeps running), as in tokio.
pub struct JoinHandle<T> {
    task: Cell<Option<FallibleTask<TaskOutput<T>, crate::executor::TaskMeta>>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: FallibleTask<TaskOutput<T>, crate::executor::TaskMeta>) -> Self {
        JoinHandle { task: Cell::new(Some(task)) }
    }

    /// Cancels the task: its future is dropped without being polled again. Awaiting
    /// the handle then gives [`JoinError::Cancelled`], unless the task had already
    /// finished, in which case its output is kept.
    pub fn abort(&self) {
        if let Some(task) = self.task.take() {
            if task.is_finished() {
                self.task.set(Some(task));
            }
            // Otherwise dropping the task cancels it.
        }
    }

    /// Lets the task run to completion on its own; its output is discarded.
    pub fn detach(self) {
        // Drop does it.
    }

    /// True once the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        match self.task.take() {
            None => true,
            Some(task) => {
                let done = task.is_finished();
                self.task.set(Some(task));
                done
            }
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(mut task) = self.task.take() else {
            return Poll::Ready(Err(JoinError::Cancelled));
        };
        match Pin::new(&mut task).poll(cx) {
            Poll::Pending => {
                self.task.set(Some(task));
                Poll::Pending
            }
            Poll::Ready(None) => Poll::Ready(Err(JoinError::Cancelled)),
            Poll::Ready(Some(Ok(v))) => Poll::Ready(Ok(v)),
            Poll::Ready(Some(Err(payload))) => Poll::Ready(Err(JoinError::Panicked(payload))),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}
