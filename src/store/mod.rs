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
//!   commit that covers it ([`Wal::sync_through`]). [`Store::current_durable`] returns
//!   only versions whose seq was durable when they were stored in `durable_version`
//!   (after a group commit or a sync covered them); `durable` only grows.
//!
//! # How the writer gets a mutable state without a clone per append
//!
//! The writer keeps two versions ([`Writer`]): `current`, the one published, and
//! `spare`, the one published before it, together with the events `current` has and
//! `spare` has not (`missed`, owned copies decoded from the encoded payloads). An
//! append takes a spare, checks with `Arc::get_mut` that nothing else holds it,
//! replays onto it the events it missed (kept in the writer's log), applies the new
//! events in place, publishes it with `ArcSwap::swap`, and keeps the old `current`
//! as a spare. Each event is thus applied to every copy; this is sound because
//! `apply` is deterministic (the same rule recovery relies on), and
//! `write_path_in_place_stress` checks that every version readers saw equals the
//! replay of events `1..seq`.
//!
//! Why `Arc::get_mut` proves nobody reads the spare: readers get either an `Arc` (a
//! real strong count) or an arc-swap `Guard`, which may hold a *debt* instead of a
//! count. `ArcSwap::swap` returns only after `HybridStrategy::wait_for_readers` ran
//! `Debt::pay_all` on the old pointer, which turns every debt on it (including loads
//! in progress, through the helping slot) into a strong count. The spare is always a
//! value `swap` returned, so by the time the writer calls `Arc::get_mut` on it every
//! guard still alive counts, and `get_mut` succeeds only when there is none.
//!
//! The writer keeps a pool of two spares with the events they missed (at most
//! 65,536), and keeps it full: while copying the state is cheap it copies `current`
//! at once; once a copy took longer than 1 ms, the next one is made on a background
//! thread (see `writer`). So the version a checkpoint holds is never the only spare.
//! The writer uses the free spare least behind (normally one batch behind) and
//! catches a spare up by at most 256 events on its own thread: the version a
//! checkpoint held through its write comes back with every event of that time, so it
//! is handed to a background thread with the log's batches it missed (each
//! publication's events are one shared batch, so handing them over copies no event)
//! and rejoins the pool when caught up. Only when every spare is held and none is
//! being made does the writer clone `current` on its own thread (a large state
//! recovered at open pays this once, at its first append). No O(state) work, copy,
//! catch-up or free, runs on an appender's thread after that: versions the writer
//! lets go of are freed on the reclaimer thread (a version a reader still holds is
//! freed by that reader when it lets go).
//!
//! Memory: up to three full copies for a plain state (`current` and two spares);
//! for a structurally shared state one copy plus the paths each copy touched since
//! they diverged (about 1x); plus the logged events (at most 65,536). Under
//! `SyncPolicy::Always` each appender holds the version it published until its group
//! commit ends, so the pool also keeps room for one version per appender waiting at
//! once (the peak, given back one per 1,024 publications with fewer waiting): with
//! `N` concurrent durable appenders a plain state is held up to `3 + N` times. Those
//! copies existed before the pool kept them too; without the room, every append
//! found each spare held and cloned the state (8 appenders of a 100,000-entry
//! `HashMap`: 6.0k durable appends/s, 27k–34k/s with it; the peer comparison in
//! `peers/` measures it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;

use crate::checkpoint::{CheckpointMode, CheckpointReport, CheckpointStats, Checkpoints, Source};
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::metrics::Timer;
use crate::position::{Position, PositionCell, Positions};
use crate::scheduler::Attached;
use crate::util::lock;
use crate::wal::Wal;
use crate::{Options, Seq, State, SyncPolicy, Versioned};

#[cfg(feature = "async")]
mod asynch;
mod create;
mod lifecycle;
mod open;
mod scratch;
mod writer;

use scratch::Scratch;
pub(crate) use writer::Writer;

pub(crate) use lifecycle::Stop;
pub use lifecycle::{CloseReport, FinalCheckpointMissed};
pub use open::OpenReport;
pub(crate) use open::{apply_record, is_not_found, recover};

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
    /// versions (see [`Writer`]); never held across a syscall.
    pub(crate) writer: Mutex<Writer<S>>,
    /// The published version: readers and checkpoints load it without a lock.
    pub(crate) published: ArcSwap<Versioned<S>>,
    /// The newest version known durable ([`Store::current_durable`]): set after a
    /// group commit or a sync covers it, never ahead of [`Wal::durable_seq`].
    pub(crate) durable_version: ArcSwap<Versioned<S>>,
    /// Appenders waiting for a sync under `Always`, each holding the version it
    /// published.
    pub(crate) durable_waiters: AtomicUsize,
    pub(crate) positions: Positions,
    /// Checkpoint bookkeeping (no-overlap flag, cancel flag, statistics).
    pub(crate) ck: Checkpoints,
    pub(crate) stop: Stop,
    pub(crate) _lock: Box<dyn LockGuard>,
}

/// The version an append published, and versions the writer let go of (to drop
/// after leaving the writer section).
type Published<S> = (Arc<Versioned<S>>, Vec<Arc<Versioned<S>>>);

/// The events of one append, owned (the writer keeps them to replay onto its spare):
/// decoded copies of a batch borrowed from the caller, or the one event `append_with`
/// was given.
enum Events<E> {
    Owned(Vec<E>),
    One(E),
}

impl<E> Events<E> {
    fn len(&self) -> usize {
        match self {
            Events::Owned(v) => v.len(),
            Events::One(_) => 1,
        }
    }
    fn iter(&self) -> std::slice::Iter<'_, E> {
        match self {
            Events::Owned(v) => v.iter(),
            Events::One(e) => std::slice::from_ref(e).iter(),
        }
    }
    fn into_owned(self) -> Vec<E> {
        match self {
            Events::Owned(v) => v,
            Events::One(e) => vec![e],
        }
    }
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
    /// Cheaper per event than [`Store::append`]: one publication and (under `Always`)
    /// one sync for the whole batch.
    pub fn append_batch(&self, events: &[S::Event]) -> Result<Seq> {
        let inner = &*self.inner;
        let timer = Timer::sampled(inner.options.sync == SyncPolicy::Always);
        inner.wal.check_writable()?;
        if events.is_empty() {
            return Ok(inner.published.load().seq);
        }
        // Back-pressure (I9): wait for room in the WAL's staging bound before the
        // writer section, so no appender waits on the disk while holding it.
        let (version, bytes) = inner.stage_events(events, |b| inner.wal.wait_for_room(b))?;
        let last = version.seq;
        // The version is dropped here, outside the writer section: if it was the last
        // reference to the previous state, freeing it costs no other appender anything.
        inner
            .finish(version, (timer, events.len() as u64, bytes))
            .map(|_| last)
    }

    /// Decides the event from the current state and appends it, atomically: no other
    /// append lands between the state `decide` sees and the event it returns. This is
    /// the check-then-act a `Mutex<State>` gave (a balance check, then a withdrawal),
    /// without a lock of the user's own.
    ///
    /// `decide` runs **inside the writer section**, where every appender serializes:
    /// keep it short by contract (read the state, return an event; no I/O, no waiting,
    /// no call back into this store, which would deadlock). It returns:
    ///
    /// - `Ok(Some(event))`: the event is logged, applied and published; the call returns
    ///   `Ok(Ok(version))`, the version that event produced (so "the new balance" is not
    ///   a second, racy read);
    /// - `Ok(None)`: nothing is appended; the call returns `Ok(Ok(version))` with the
    ///   current version, the one `decide` saw;
    /// - `Err(e)`: nothing is appended; the call returns `Ok(Err(e))`.
    ///
    /// The outer `Result` carries the store's own errors (a failed log, an event too
    /// large to frame). Durability is the same as [`Store::append`]'s: under
    /// [`SyncPolicy::Always`] the event is durable when this returns.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use snapwal::{Options, State, Store};
    ///
    /// #[derive(Clone, Default, Serialize, Deserialize)]
    /// struct Wallet { balance: u64 }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Op { Deposit(u64), Withdraw(u64) }
    ///
    /// impl State for Wallet {
    ///     type Event = Op;
    ///     fn apply(&mut self, op: &Op) {
    ///         match op {
    ///             Op::Deposit(n) => self.balance += n,
    ///             Op::Withdraw(n) => self.balance -= n,
    ///         }
    ///     }
    /// }
    ///
    /// # fn main() -> snapwal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::<Wallet>::open(dir.path(), Options::default())?;
    /// store.append(&Op::Deposit(10))?;
    /// let withdraw = |amount: u64| {
    ///     store.append_with(|w: &Wallet| {
    ///         if w.balance >= amount { Ok(Some(Op::Withdraw(amount))) } else { Err("insufficient funds") }
    ///     })
    /// };
    /// assert_eq!(withdraw(7)?.map(|v| v.balance), Ok(3));
    /// assert_eq!(withdraw(7)?.map(|v| v.balance), Err("insufficient funds"));
    /// # store.close()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_with<E>(
        &self,
        decide: impl FnOnce(&S) -> std::result::Result<Option<S::Event>, E>,
    ) -> Result<std::result::Result<Arc<Versioned<S>>, E>> {
        let inner = &*self.inner;
        let timer = Timer::sampled(inner.options.sync == SyncPolicy::Always);
        inner.wal.check_writable()?;
        // The event is not known yet: wait only if staging is already past its bound.
        inner.wal.wait_for_room(0)?;
        let mut scratch = Scratch::take();
        let produced = {
            let mut w = lock(&inner.writer);
            match decide(&w.current.state) {
                Err(e) => Ok(Err(e)),
                Ok(None) => Ok(Ok((Arc::clone(&w.current), Vec::new()))),
                Ok(Some(event)) => scratch
                    .encode(&event)
                    .and_then(|()| inner.publish_locked(&mut w, Events::One(event), &scratch))
                    .map(Ok),
            }
        };
        let bytes = scratch.frame_bytes();
        scratch.put_back();
        match produced? {
            Err(e) => Ok(Err(e)),
            Ok((version, released)) => {
                lifecycle::free_in_background(released);
                inner.finish(Arc::clone(&version), (timer, 1, bytes))?;
                Ok(Ok(version))
            }
        }
    }

    /// Runs `f` on the current version without taking any lock and without touching
    /// the version's reference count: the fastest read, for short reads under a heavy
    /// write load (a field, a lookup, a sum), where [`Store::current`]'s shared
    /// reference count is what the readers and the writer would contend on.
    ///
    /// The guard lives only while `f` runs. Keep `f` short: no I/O, no waiting, no
    /// call back into this store's writes. While a guard holds the version the writer
    /// wants to reuse as its next spare, that append copies the state instead (one
    /// clone, O(state) for plain collections); a long read belongs in
    /// [`Store::current`], which owns its version.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Default, Serialize, Deserialize)]
    /// # struct Counter { total: i64 }
    /// # impl snapwal::State for Counter {
    /// #     type Event = i64;
    /// #     fn apply(&mut self, n: &i64) { self.total += n }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// let store = snapwal::Store::<Counter>::open(dir.path(), snapwal::Options::default())?;
    /// store.append(&5)?;
    /// let (seq, total) = store.with_current(|v| (v.seq(), v.total));
    /// assert_eq!((seq, total), (1, 5));
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_current<R>(&self, f: impl FnOnce(&Versioned<S>) -> R) -> R {
        f(&self.inner.published.load())
    }

    /// The current state and its seq, without taking any lock.
    ///
    /// A thread sees its own appends; a checkpoint taken from this value is exactly
    /// the state after `seq`. The version may not be durable yet (under
    /// [`SyncPolicy::Always`] another thread's append is visible here before its
    /// `fdatasync` returns): use [`Store::current_durable`] for a state that a crash
    /// cannot take back.
    pub fn current(&self) -> Arc<Versioned<S>> {
        self.inner.published.load_full()
    }

    /// The newest version whose seq is durable (at most [`Store::durable_seq`]), without
    /// taking any lock: a state that a crash cannot take back.
    ///
    /// It is the current version when that is durable; otherwise the version the last
    /// group commit (or [`Store::sync`], or the interval sync) made durable. Under
    /// [`SyncPolicy::Always`] a thread sees its own appends here once they return.
    /// Under [`SyncPolicy::Never`] it advances only with [`Store::sync`].
    ///
    /// Two calls are not ordered with each other: while a group commit's appenders
    /// are storing their versions, a call may return an older durable version than a
    /// call just before it (both at most [`Store::durable_seq`]).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Default, Serialize, Deserialize)]
    /// # struct Counter { total: i64 }
    /// # impl snapwal::State for Counter {
    /// #     type Event = i64;
    /// #     fn apply(&mut self, n: &i64) { self.total += n }
    /// # }
    /// use snapwal::{Options, Store, SyncPolicy};
    /// # fn main() -> snapwal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::<Counter>::open(dir.path(), Options::default().sync(SyncPolicy::Always))?;
    /// store.append(&5)?;
    /// let v = store.current_durable();
    /// assert!(v.seq() <= store.durable_seq());
    /// assert_eq!(v.total, 5);
    /// # store.close()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn current_durable(&self) -> Arc<Versioned<S>> {
        let inner = &*self.inner;
        let v = inner.published.load();
        // `durable` only grows, so a seq durable now stays durable.
        if v.seq <= inner.wal.durable_seq() {
            return arc_swap::Guard::into_inner(v);
        }
        drop(v);
        inner.durable_version.load_full()
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
        self.inner.sync_all()
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
    /// The writer section's work once the events are encoded in `scratch`: assign
    /// seqs, stage the frames, apply, publish. Returns the version published and what
    /// the caller must drop *after* leaving the writer section (a version the writer
    /// let go of, so that freeing it never runs inside the section).
    fn publish_locked(
        &self,
        w: &mut Writer<S>,
        events: Events<S::Event>,
        scratch: &Scratch,
    ) -> Result<Published<S>> {
        let n = events.len() as u64;
        // Seq u64::MAX is never used (the format reserves it), so the log cannot wrap.
        if w.current.seq.checked_add(n + 1).is_none() {
            return Err(Error::SeqExhausted);
        }
        w.set_holders(self.durable_waiters.load(Ordering::Relaxed));
        let (mut next, mut released) = w.take_free_version();
        // `take_free_version` returns a version only this thread holds, so this never
        // clones.
        let v = Arc::make_mut(&mut next);
        // Apply first: if `apply` panics, nothing has been logged or published (the
        // version being built is dropped; the current one is untouched).
        for e in events.iter() {
            v.state.apply(e);
        }
        let first = self.wal.stage(scratch.frames());
        v.seq = first + n - 1;
        // `swap` returns only once arc-swap has paid every debt on the old pointer
        // (`HybridStrategy::wait_for_readers` -> `Debt::pay_all`): from then on every
        // outstanding `Guard` of the old version holds a real strong count, so the
        // `Arc::get_mut` in `take_free_version` succeeds only when nobody reads it.
        let old = self.published.swap(Arc::clone(&next));
        drop(std::mem::replace(&mut w.current, next));
        released.extend(w.published(old, first, events.into_owned()));
        Ok((Arc::clone(&w.current), released))
    }

    /// Encodes `events` into this thread's reused buffer (outside the writer
    /// section), runs `before_lock` with their framed size, then logs, applies and
    /// publishes them in the writer section. A version the writer let go of is dropped
    /// after the section. Returns the version published and the bytes staged.
    pub(crate) fn stage_events(
        &self,
        events: &[S::Event],
        before_lock: impl FnOnce(u64) -> Result<()>,
    ) -> Result<(Arc<Versioned<S>>, u64)> {
        let mut scratch = Scratch::take();
        let staged = events
            .iter()
            .try_for_each(|e| scratch.encode(e))
            .and_then(|()| scratch.decode::<S::Event>())
            .and_then(|owned| {
                before_lock(scratch.frame_bytes())?;
                let mut w = lock(&self.writer);
                let done = self.publish_locked(&mut w, Events::Owned(owned), &scratch);
                drop(w);
                done
            });
        let bytes = scratch.frame_bytes();
        scratch.put_back();
        let (version, released) = staged?;
        lifecycle::free_in_background(released);
        Ok((version, bytes))
    }

    /// Durability per the sync policy for `version`, just published; under `Always`
    /// also makes it the durable version.
    ///
    /// `appended` is what the metrics count: the append's start, its records and
    /// their bytes.
    fn finish(&self, version: Arc<Versioned<S>>, appended: (Timer, u64, u64)) -> Result<Seq> {
        let last = version.seq;
        let done = match self.options.sync {
            SyncPolicy::Always => {
                // Counted while this thread holds `version`, so that the writer keeps
                // room in its pool for it (`Writer::set_holders`).
                struct Waiting<'a>(&'a AtomicUsize);
                impl Drop for Waiting<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                self.durable_waiters.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&self.durable_waiters);
                let durable = self.wal.sync_through(last)?;
                self.publish_durable(version);
                Ok(durable)
            }
            _ => self.wal.write_through(last).map(|()| last),
        };
        let (timer, records, bytes) = appended;
        self.wal
            .metrics()
            .appended(timer, records, bytes, || self.ck.wal_bytes_since(&self.wal));
        done
    }

    /// Makes everything published so far durable and publishes it as the durable
    /// version.
    pub(crate) fn sync_all(&self) -> Result<Seq> {
        // Load before syncing: everything published was staged first, so the sync
        // covers this version's seq.
        let version = self.published.load_full();
        let durable = self.wal.sync_all()?;
        self.publish_durable(version);
        Ok(durable)
    }

    /// Publishes `version` (whose seq is durable) as the durable version unless a newer
    /// one is already there. O(1): one pointer swap, never a state copy.
    fn publish_durable(&self, version: Arc<Versioned<S>>) {
        debug_assert!(version.seq <= self.wal.durable_seq());
        let mut version = Some(version);
        self.durable_version.rcu(|old| match &version {
            Some(v) if v.seq > old.seq => Arc::clone(v),
            _ => Arc::clone(old),
        });
        version.take();
    }

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
        let timer = Timer::start();
        let done = self.ck.run(&self.source(), mode);
        let metrics = self.wal.metrics();
        let bytes = done.as_ref().map_or(0, |rep| rep.snapshot_bytes);
        metrics.checkpoint(timer, bytes, || self.ck.wal_bytes_since(&self.wal));
        if let Ok(rep) = &done {
            metrics.cleanup_failures(rep.cleanup_failures.len() as u64);
        }
        done
    }
}
