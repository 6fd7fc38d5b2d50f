//! The store: append, publish, read, sync. Opening and recovery are in `open`, the
//! lifecycle after it (checkpointer, close) in `lifecycle`.
//!
//! # Invariants kept here
//!
//! - **I3 No shared locks**: the writer section in [`Store::append_batch`] is the only
//!   place appenders serialize; it stages bytes and publishes, and never waits on the
//!   disk. Reads ([`Store::current`]) and checkpoints load the published pointer
//!   without a lock.
//! - **I1 Durability**: under [`SyncPolicy::Always`] an append returns after the group
//!   commit that covers it ([`Wal::sync_through`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;

use crate::checkpoint::{CheckpointMode, CheckpointReport, CheckpointStats, Checkpoints, Source};
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::position::{Position, PositionCell, Positions};
use crate::scheduler::{Attached, Target, Trigger};
use crate::util::lock;
use crate::wal::Wal;
use crate::{Options, Seq, State, SyncPolicy, Versioned};

mod lifecycle;
mod open;

pub(crate) use lifecycle::Stop;
pub use lifecycle::{CloseReport, FinalCheckpointMissed};
pub use open::OpenReport;

/// Everything shared between the store handle and its background threads.
pub(crate) struct Inner<S: State> {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) snap_dir: PathBuf,
    /// Positions records (`dir/pos`).
    pub(crate) pos_dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) store_id: u64,
    pub(crate) wal: Wal,
    /// The writer section: the only place appenders serialize. Holds the writer's
    /// current version; never held across a syscall.
    pub(crate) writer: Mutex<Arc<Versioned<S>>>,
    /// The published version: readers and checkpoints load it without a lock.
    pub(crate) published: ArcSwap<Versioned<S>>,
    pub(crate) positions: Positions,
    /// Checkpoint bookkeeping (no-overlap flag, cancel flag, statistics).
    pub(crate) ck: Checkpoints,
    pub(crate) stop: Stop,
    pub(crate) _lock: Box<dyn LockGuard>,
}

/// A crash-safe state store. See the [crate docs](crate) for an overview.
///
/// `Store` is `Send + Sync`: share it (for example in an `Arc`) and append from any
/// number of threads. Appends serialize only in a short in-memory writer section;
/// reads, checkpoints and cleanup take no lock an appender takes.
pub struct Store<S: State> {
    pub(crate) inner: Arc<Inner<S>>,
    pub(crate) threads: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    pub(crate) checkpointer: Mutex<Option<Attached>>,
}

impl<S: State> std::fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("seq", &self.inner.published.load().seq)
            .finish_non_exhaustive()
    }
}

impl<S: State> Store<S> {
    /// Appends one event: logs it, applies it, publishes the new state. Returns its
    /// seq. When it returns, [`Store::current`] on this thread shows the event, and
    /// under [`SyncPolicy::Always`] the event is durable.
    ///
    /// An error from the log (a full disk, a failed sync) makes the store read-only
    /// ([`Error::ReadOnly`]): the event may be visible in memory but is not
    /// acknowledged; reopen to recover the durable prefix.
    pub fn append(&self, event: &S::Event) -> Result<Seq> {
        self.append_batch(std::slice::from_ref(event))
    }

    /// Appends events as consecutive records and publishes once, after the last.
    /// Returns the seq of the last event (the current seq if `events` is empty).
    /// Cheaper per event than [`Store::append`]: one state clone, one publication and
    /// (under `Always`) one sync for the whole batch.
    pub fn append_batch(&self, events: &[S::Event]) -> Result<Seq> {
        let inner = &*self.inner;
        inner.wal.check_writable()?;
        if events.is_empty() {
            return Ok(inner.published.load().seq);
        }
        // Encode outside the writer section.
        let mut payloads = Vec::with_capacity(events.len());
        for e in events {
            let p = postcard::to_allocvec(e).map_err(Error::Encode)?;
            if p.len() > u32::MAX as usize - crate::format::FRAME_HEADER_LEN {
                return Err(Error::TooLarge { bytes: p.len() });
            }
            let crc = crc32c::crc32c(&p);
            payloads.push((p, crc));
        }
        // Back-pressure (I9): wait for room in the WAL's staging bound before the
        // writer section, so no appender waits on the disk while holding it.
        let bytes = payloads
            .iter()
            .map(|(p, _)| crate::format::frame_len(p.len()) as u64)
            .sum();
        inner.wal.wait_for_room(bytes)?;
        let last = {
            let mut w = lock(&inner.writer);
            // Seq u64::MAX is never used (the format reserves it), so the log cannot wrap.
            if w.seq.checked_add(events.len() as u64 + 1).is_none() {
                return Err(Error::SeqExhausted);
            }
            // Apply first: if `apply` panics, nothing has been logged or published.
            let mut state = w.state.clone();
            for e in events {
                state.apply(e);
            }
            let first = inner
                .wal
                .stage(payloads.iter().map(|(p, c)| (p.as_slice(), *c)));
            let last = first + events.len() as u64 - 1;
            let next = Arc::new(Versioned { seq: last, state });
            inner.published.store(Arc::clone(&next));
            let previous = std::mem::replace(&mut *w, next);
            drop(w);
            // Freeing the previous version (if nobody else holds it) happens outside
            // the writer section.
            drop(previous);
            last
        };
        match inner.options.sync {
            SyncPolicy::Always => inner.wal.sync_through(last).map(|_| last),
            _ => inner.wal.write_through(last).map(|()| last),
        }
    }

    /// The current state and its seq, without taking any lock.
    ///
    /// A thread sees its own appends; a checkpoint taken from this value is exactly
    /// the state after `seq`.
    pub fn current(&self) -> Arc<Versioned<S>> {
        self.inner.published.load_full()
    }

    /// The seq of the current state.
    pub fn seq(&self) -> Seq {
        self.inner.published.load().seq
    }

    /// The last seq that is durable on disk.
    pub fn durable_seq(&self) -> Seq {
        self.inner.wal.durable_seq()
    }

    /// Makes everything appended so far durable; returns the durable seq.
    pub fn sync(&self) -> Result<Seq> {
        self.inner.wal.sync_all()
    }

    /// The position cell named `name` (created at the default position if new).
    /// See [`position`](crate::position) for the at-least-once semantics.
    pub fn position(&self, name: &str) -> Arc<PositionCell> {
        self.inner.positions.cell(name)
    }

    /// Every saved position, as of now.
    pub fn positions(&self) -> Vec<(String, Position)> {
        self.inner.positions.save()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Takes a checkpoint now: a snapshot of the current state without any lock, then
    /// cleanup. Returns at once with [`CheckpointOutcome::Busy`](crate::CheckpointOutcome::Busy) if a checkpoint is
    /// already running. Cleanup failures are in the report, never an error; an error
    /// means the snapshot could not be made durable.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(CheckpointMode::Manual)
    }

    /// Checkpoint statistics: durations over the last 512 checkpoints and counters.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.inner.ck.stats.snapshot()
    }
}

impl<S: State> Inner<S> {
    /// What a checkpoint of this store reads and writes.
    fn source(&self) -> Source<'_, S> {
        Source {
            fs: self.fs.as_ref(),
            dir: &self.dir,
            snap_dir: &self.snap_dir,
            pos_dir: &self.pos_dir,
            store_id: self.store_id,
            keep_snapshots: self.options.keep_snapshots,
            wal: &self.wal,
            published: &self.published,
            positions: &self.positions,
        }
    }

    /// Runs one checkpoint of this store.
    pub(crate) fn checkpoint(&self, mode: CheckpointMode) -> Result<CheckpointReport> {
        self.ck.run(&self.source(), mode)
    }
}

impl<S: State> Target for Inner<S> {
    fn run(&self, trigger: Trigger) {
        let mode = match trigger {
            Trigger::Periodic => CheckpointMode::Periodic,
            Trigger::Bytes => CheckpointMode::Bytes,
        };
        // The outcome is logged and counted by `checkpoint`.
        let _ = self.checkpoint(mode);
    }
    fn wal_bytes_since_checkpoint(&self) -> u64 {
        self.ck.wal_bytes_since(&self.wal)
    }
}
