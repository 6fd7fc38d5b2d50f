//! Async appends, syncs, checkpoints and close (feature `async`): the design and the
//! contract are documented in [`crate::async_api`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Inner, Store};
use crate::checkpoint::{CheckpointMode, CheckpointReport};
use crate::error::{Error, Result};
use crate::metrics::Timer;
use crate::util::lock;
use crate::wal::Target;
use crate::{CloseOptions, CloseReport, Seq, State, SyncPolicy};

impl<S: State> Store<S> {
    /// [`Store::append`] for async code: the future completes when the event is
    /// durable under [`SyncPolicy::Always`] (written to the OS under `Interval` and
    /// `Never`), woken by the group commit that covered it; no worker thread waits on
    /// the disk. Returns the event's seq.
    ///
    /// Dropping the future after its first poll may leave the event appended without
    /// an acknowledgement (see [Cancellation](crate::async_api#cancellation)).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Default, Serialize, Deserialize)]
    /// # struct Counter { total: i64 }
    /// # impl snapwal::State for Counter {
    /// #     type Event = i64;
    /// #     fn apply(&mut self, n: &i64) { self.total += n }
    /// # }
    /// use std::sync::Arc;
    /// use snapwal::{Options, Store, SyncPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    /// let store = Arc::new(Store::<Counter>::open(dir.path(), Options::default().sync(SyncPolicy::Always))?);
    /// rt.block_on(async {
    ///     let tasks: Vec<_> = (0..8)
    ///         .map(|_| {
    ///             let store = Arc::clone(&store);
    ///             tokio::spawn(async move { store.append_async(&1).await })
    ///         })
    ///         .collect();
    ///     for t in tasks {
    ///         let seq = t.await.expect("task")?;
    ///         assert!(seq <= store.durable_seq()); // durable once acknowledged
    ///     }
    ///     Ok::<_, snapwal::Error>(())
    /// })?;
    /// assert_eq!(store.current().total, 8);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append_async(&self, event: &S::Event) -> Result<Seq> {
        self.append_batch_async(std::slice::from_ref(event)).await
    }

    /// [`Store::append_batch`] for async code: consecutive records, one publication,
    /// one wait; see [`Store::append_async`]. Returns the seq of the last event (the
    /// current seq if `events` is empty).
    pub async fn append_batch_async(&self, events: &[S::Event]) -> Result<Seq> {
        let inner = &*self.inner;
        let timer = Timer::sampled(inner.options.sync == SyncPolicy::Always);
        inner.wal.check_writable()?;
        if events.is_empty() {
            return Ok(inner.published.load().seq);
        }
        self.start_syncer()?;
        // Back-pressure (I9) without parking the worker; nothing is staged yet, so a
        // future dropped here appended nothing.
        inner.wal.wait(Target::Room).await?;
        // From here to the end of `stage_async` there is no `.await`: the event is
        // either not staged or staged, applied and published.
        let (version, bytes) = inner.stage_events(events, |_| Ok(()))?;
        let last = version.seq;
        let written = inner.wal.write_nowait(last)?;
        match inner.options.sync {
            SyncPolicy::Always => {
                inner.wal.wait(Target::Durable(last)).await?;
                inner.publish_durable(version);
            }
            _ if written => {}
            _ => {
                drop(version);
                // Queued behind a rotation (or the first segment): the syncer writes
                // it now, and past the bound the task waits for that write.
                inner.wal.request_write();
                if inner.wal.staged_unwritten_bytes() > inner.wal.max_staged_bytes() {
                    inner.wal.wait(Target::Written(last)).await?;
                }
            }
        }
        inner
            .wal
            .metrics()
            .appended(timer, events.len() as u64, bytes, || {
                inner.ck.wal_bytes_since(&inner.wal)
            });
        Ok(last)
    }

    /// [`Store::sync`] for async code: makes everything appended so far durable,
    /// woken by the group commit that covers it; returns the durable seq.
    pub async fn sync_async(&self) -> Result<Seq> {
        let inner = &*self.inner;
        inner.wal.check_writable()?;
        self.start_syncer()?;
        // Load before taking the target: everything published was staged first.
        let version = inner.published.load_full();
        inner
            .wal
            .wait(Target::Durable(inner.wal.last_staged()))
            .await?;
        inner.publish_durable(version);
        Ok(inner.wal.durable_seq())
    }

    /// [`Store::checkpoint`] for async code, run on a thread of its own (named
    /// `snapwal-checkpoint`). Dropping the future does not cancel the checkpoint;
    /// `close` does (as it cancels any running checkpoint) and waits for the thread
    /// within its bound.
    pub async fn checkpoint_async(&self) -> Result<CheckpointReport> {
        let (tx, rx) = oneshot();
        self.spawn("snapwal-checkpoint", move |inner: &Inner<S>| {
            tx.send(inner.checkpoint(CheckpointMode::Manual));
        })?;
        rx.await.unwrap_or_else(|| {
            Err(Error::CheckpointPanicked {
                message: "the checkpoint thread ended without a result".into(),
            })
        })
    }

    /// [`Store::close`] for async code.
    pub async fn close_async(self) -> Result<CloseReport> {
        self.close_with_async(CloseOptions::default()).await
    }

    /// [`Store::close_with`] for async code, run on a thread of its own (named
    /// `snapwal-close`), with the same bounds. Dropping the future does not stop the
    /// close: it finishes on its thread.
    pub async fn close_with_async(self, opts: CloseOptions) -> Result<CloseReport> {
        let dir = self.inner.dir.clone();
        let (tx, rx) = oneshot();
        let spawned = std::thread::Builder::new()
            .name("snapwal-close".into())
            .spawn(move || tx.send(self.close_with(opts)));
        // A failed spawn drops the closure, and the store with it (as `drop` would).
        spawned.map_err(|e| Error::io("spawn thread", &dir, e))?;
        rx.await.unwrap_or_else(|| {
            Err(Error::io(
                "close",
                dir,
                std::io::Error::other("the close thread ended without a result"),
            ))
        })
    }

    /// Starts the syncer (once per store): the thread that drives the group commit
    /// when only tasks wait (see [`crate::async_api`]).
    fn start_syncer(&self) -> Result<()> {
        let wal = &self.inner.wal;
        if !wal.claim_syncer() {
            return Ok(());
        }
        self.spawn("snapwal-async-sync", |inner: &Inner<S>| {
            inner.wal.run_syncer()
        })
        .inspect_err(|_| wal.unclaim_syncer())
    }
}

/// The sending half of [`oneshot`]: sends once; dropped without sending, the receiver
/// gets `None`.
struct Sender<T>(Arc<Mutex<Shot<T>>>);

/// The receiving half: a future of the value (`None` if the sender was dropped
/// without sending, for example by a panic).
struct Receiver<T>(Arc<Mutex<Shot<T>>>);

struct Shot<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

/// A one-shot channel on std: a thread hands one value to a task.
fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let shot = Arc::new(Mutex::new(Shot {
        value: None,
        closed: false,
        waker: None,
    }));
    (Sender(Arc::clone(&shot)), Receiver(shot))
}

impl<T> Sender<T> {
    fn send(self, value: T) {
        lock(&self.0).value = Some(value);
        // `drop` closes and wakes.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut shot = lock(&self.0);
            shot.closed = true;
            shot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut shot = lock(&self.0);
        if let Some(v) = shot.value.take() {
            return Poll::Ready(Some(v));
        }
        if shot.closed {
            return Poll::Ready(None);
        }
        shot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
