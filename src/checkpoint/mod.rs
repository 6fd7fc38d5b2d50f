//! Checkpoints: a zero-lock snapshot of the published state, then isolated cleanup.
//!
//! # One checkpoint
//!
//! 1. Read the source positions, *then* load the published `(seq, state)`: one atomic
//!    load, no lock. In that order a saved position is never ahead of the state saved
//!    with it (I10).
//! 2. If the seq is the newest snapshot's: when the positions moved since the last
//!    checkpoint, save them in a positions record ([`CheckpointOutcome::PositionsSaved`],
//!    see [`position`]); otherwise stop
//!    ([`CheckpointOutcome::Unchanged`]).
//! 3. Make the WAL durable through that seq (so the WAL always reaches every snapshot,
//!    and an older snapshot plus the WAL can stand in for a damaged newer one).
//! 4. Stream the state and the positions into a unique temp file, `fdatasync`,
//!    install with a no-replace rename, `fsync` the snapshot directory.
//! 5. Cleanup, best-effort: prune snapshots beyond [`Options::keep_snapshots`] and the
//!    positions records a newer snapshot or record supersedes, then unlink the WAL
//!    segments whose every record is at or below the *oldest retained* snapshot (also
//!    for the final checkpoint of `close`: a damaged newest snapshot loses nothing).
//!    Each failure is logged at ERROR with the file, the operation and the error,
//!    counted, and returned in the report; it never fails the checkpoint. Once the store
//!    is closing (cancelled), cleanup removes nothing; while a backup reads the store's
//!    files ([`Store::backup_to`](crate::Store::backup_to) pins them), cleanup removes
//!    nothing either and the next checkpoint catches up.

//! # No overlap
//!
//! An atomic flag (`compare_exchange` from `false` to `true`) admits one checkpoint at
//! a time; a second request while one runs returns [`CheckpointOutcome::Busy`] at once
//! and never waits. Appenders never look at the flag.
//!
//! # Invariants kept here
//!
//! - **I3 No shared locks**: the state comes from one `load_full` of the published
//!   pointer; nothing here takes a lock an appender takes.
//! - **I4 Atomic files**: through [`snapshot::write_cancellable`].
//! - **I5 Truncation is unlink**: cleanup calls [`Wal::purge_through`].
//! - **I10 Positions never run ahead**: positions are read before the state, and saved
//!   when they moved even if the state did not.
//!
//! [`Options::keep_snapshots`]: crate::Options::keep_snapshots

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::error::Result;
use crate::fs::Fs;
use crate::position::{self, Positions, Saved};
use crate::scheduler::SLOW_DEFAULT;
use crate::util::{lock, panic_message, remaining};
use crate::wal::Wal;
use crate::{snapshot, Seq, State, Versioned};

mod stats;

pub use stats::CheckpointStats;
pub(crate) use stats::Stats;

pub use crate::options::CloseOptions;
pub use crate::scheduler::{CheckpointerConfig, Scheduler};

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// A new snapshot was written and installed.
    Written,
    /// A snapshot of this seq was already on disk (installed by an earlier run); kept.
    AlreadyExisted,
    /// Nothing was appended since the last snapshot, but source positions moved: they
    /// were saved in a positions record (see [`position`]).
    PositionsSaved,
    /// Nothing was appended and no position moved since the last checkpoint; nothing
    /// written.
    Unchanged,
    /// Another checkpoint is running; this one did nothing.
    Busy,
}

/// What triggered a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// [`Store::checkpoint`](crate::Store::checkpoint).
    Manual,
    /// The periodic checkpointer's timer.
    Periodic,
    /// The WAL grew past the byte threshold.
    Bytes,
    /// The final checkpoint of [`Store::close`](crate::Store::close).
    Shutdown,
}

impl CheckpointMode {
    /// The name used in log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointMode::Manual => "manual",
            CheckpointMode::Periodic => "periodic",
            CheckpointMode::Bytes => "bytes",
            CheckpointMode::Shutdown => "shutdown",
        }
    }
}

/// A cleanup step that failed (logged at ERROR, never raised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupFailure {
    /// The file.
    pub path: PathBuf,
    /// The operation (`"unlink segment"`, `"prune snapshot"`, `"list"`).
    pub op: &'static str,
    /// The error, as text.
    pub error: String,
}

/// What a checkpoint did and what it cost.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    /// What happened.
    pub outcome: CheckpointOutcome,
    /// What triggered it.
    pub mode: CheckpointMode,
    /// The seq of the state checkpointed.
    pub seq: Seq,
    /// WAL records since the previous snapshot.
    pub log_records: u64,
    /// Records the snapshot covers (its seq).
    pub checkpointed_records: u64,
    /// Size of the snapshot file.
    pub snapshot_bytes: u64,
    /// WAL segments unlinked.
    pub segments_removed: usize,
    /// Old snapshots removed.
    pub snapshots_pruned: usize,
    /// Cleanup steps that failed.
    pub cleanup_failures: Vec<CleanupFailure>,
    /// Time the checkpoint took.
    pub elapsed: Duration,
}

impl CheckpointReport {
    fn new(mode: CheckpointMode, outcome: CheckpointOutcome, seq: Seq) -> Self {
        CheckpointReport {
            outcome,
            mode,
            seq,
            log_records: 0,
            checkpointed_records: seq,
            snapshot_bytes: 0,
            segments_removed: 0,
            snapshots_pruned: 0,
            cleanup_failures: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// Holds the running flag for one checkpoint and resets it when the checkpoint ends,
/// however it ends (a panic included), waking whoever waits for it
/// ([`Checkpoints::run_final`]).
struct Running<'a>(&'a Checkpoints);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
        // Taking the mutex orders this wake-up after a waiter's check of the flag.
        let _g = lock(&self.0.idle);
        self.0.idle_cv.notify_all();
    }
}

/// What a checkpoint reads and writes, borrowed from its store.
pub(crate) struct Source<'a, S> {
    pub(crate) fs: &'a dyn Fs,
    pub(crate) dir: &'a Path,
    pub(crate) snap_dir: &'a Path,
    pub(crate) pos_dir: &'a Path,
    pub(crate) store_id: u64,
    pub(crate) keep_snapshots: usize,
    pub(crate) wal: &'a Wal,
    pub(crate) published: &'a ArcSwap<Versioned<S>>,
    pub(crate) positions: &'a Positions,
}

/// A store's checkpoint bookkeeping: the no-overlap flag, the cancel flag, the newest
/// snapshot's seq, the byte trigger's baseline and the statistics.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    /// Set while a checkpoint runs: the mechanism that prevents overlap.
    running: AtomicBool,
    /// Notified (under `idle`) when a checkpoint ends; only
    /// [`Checkpoints::run_final`] waits on it. No appender or reader takes it.
    idle: Mutex<()>,
    idle_cv: Condvar,
    /// Set while closing: a running checkpoint gives up at its next buffered write.
    pub(crate) cancel: AtomicBool,
    /// Seq of the newest snapshot on disk (0 if none).
    last_snapshot_seq: AtomicU64,
    /// WAL bytes staged when the last checkpoint started.
    wal_bytes_at_checkpoint: AtomicU64,
    pub(crate) stats: Stats,
    /// Checkpoints slower than this log a WARN (nanoseconds).
    slow_ns: AtomicU64,
    /// The positions the newest snapshot or positions record holds.
    saved: Mutex<Saved>,
    /// The generation of the next positions record.
    next_generation: AtomicU64,
    /// Held shared by a backup while it reads the store's files
    /// ([`Checkpoints::pin_files`]); a checkpoint's removals take it exclusively
    /// without waiting, and are skipped (left to the next checkpoint) while a backup
    /// holds it. No appender or reader takes it.
    files: RwLock<()>,
}

impl Checkpoints {
    /// Bookkeeping for a store whose newest snapshot is of `last_snapshot_seq`, whose
    /// saved positions are `saved`, and whose next positions record is `next_generation`.
    pub(crate) fn new(last_snapshot_seq: Seq, saved: Saved, next_generation: u64) -> Self {
        Checkpoints {
            running: AtomicBool::new(false),
            idle: Mutex::new(()),
            idle_cv: Condvar::new(),
            cancel: AtomicBool::new(false),
            last_snapshot_seq: AtomicU64::new(last_snapshot_seq),
            wal_bytes_at_checkpoint: AtomicU64::new(0),
            stats: Stats::default(),
            slow_ns: AtomicU64::new(SLOW_DEFAULT.as_nanos() as u64),
            saved: Mutex::new(saved),
            next_generation: AtomicU64::new(next_generation),
            files: RwLock::new(()),
        }
    }

    /// Keeps every snapshot, positions record and WAL segment of the store on disk
    /// until the guard is dropped: cleanup removes nothing meanwhile (it skips its
    /// removals and the next checkpoint catches up). Waits for a cleanup in progress
    /// (a few unlinks) to end. Backups use it.
    pub(crate) fn pin_files(&self) -> RwLockReadGuard<'_, ()> {
        self.files.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The right to remove files, unless a backup has pinned them; never waits.
    fn unpinned(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        match self.files.try_write() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// WAL bytes staged since the last checkpoint started (the byte trigger).
    pub(crate) fn wal_bytes_since(&self, wal: &Wal) -> u64 {
        wal.staged_bytes()
            .saturating_sub(self.wal_bytes_at_checkpoint.load(Ordering::Relaxed))
    }

    /// Sets the "checkpoint slow" WARN threshold.
    pub(crate) fn set_slow_threshold(&self, d: Duration) {
        self.slow_ns.store(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Runs one checkpoint (see the [module docs](self)), logs it, and records it in
    /// the statistics. Answers [`CheckpointOutcome::Busy`] at once if one is running.
    ///
    /// A panic inside the checkpoint (the state's `Serialize`, the file system) is
    /// caught: it is this checkpoint's failure ([`Error::CheckpointPanicked`]),
    /// logged at ERROR and counted, and the running flag is released.
    ///
    /// [`Error::CheckpointPanicked`]: crate::Error::CheckpointPanicked
    pub(crate) fn run<S: State>(
        &self,
        src: &Source<'_, S>,
        mode: CheckpointMode,
    ) -> Result<CheckpointReport> {
        if !self.try_acquire() {
            let rep =
                CheckpointReport::new(mode, CheckpointOutcome::Busy, src.published.load().seq());
            self.stats.record(&Ok(rep.clone()));
            tracing::info!(dir = %src.dir.display(), mode = mode.as_str(), busy = true, seq = rep.seq, "checkpoint busy");
            return Ok(rep);
        }
        let running = Running(self);
        self.run_acquired(running, src, mode)
    }

    /// The final checkpoint of `close`: waits until `deadline` for a running
    /// checkpoint (one cancelled by `close`) to end, then runs with the cancel flag
    /// cleared for this run only. Returns `Ok(None)` when it never got to run: a
    /// checkpoint was still running at the deadline, or `abort` was set.
    ///
    /// Cancel semantics: the cancel flag is cleared only while this run holds the
    /// running flag, so a checkpoint cancelled earlier can never be un-cancelled (it
    /// has ended by then). `close` cancels this run by setting `abort` and then the
    /// cancel flag; with both orders of the two threads, the run either sees `abort`
    /// before it starts or sees the cancel flag set during its writes.
    pub(crate) fn run_final<S: State>(
        &self,
        src: &Source<'_, S>,
        deadline: Instant,
        abort: &AtomicBool,
    ) -> Result<Option<CheckpointReport>> {
        let mut g = lock(&self.idle);
        loop {
            if abort.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if self.try_acquire() {
                break;
            }
            let left = remaining(deadline);
            if left.is_zero() {
                return Ok(None);
            }
            // Re-check `abort` now and then: it is set without the mutex.
            g = crate::util::wait_on(
                &self.idle_cv,
                &self.idle,
                g,
                Some(left.min(Duration::from_millis(20))),
            );
        }
        drop(g);
        let running = Running(self);
        self.cancel.store(false, Ordering::SeqCst);
        if abort.load(Ordering::SeqCst) {
            self.cancel.store(true, Ordering::SeqCst);
            return Ok(None);
        }
        self.run_acquired(running, src, CheckpointMode::Shutdown)
            .map(Some)
    }

    fn try_acquire(&self) -> bool {
        self.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Runs one checkpoint while holding the running flag (released on return or
    /// unwind by `running`), catching a panic.
    fn run_acquired<S: State>(
        &self,
        running: Running<'_>,
        src: &Source<'_, S>,
        mode: CheckpointMode,
    ) -> Result<CheckpointReport> {
        let start = Instant::now();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.checkpoint_inner(src, mode)
        }));
        drop(running);
        let result = match caught {
            Ok(r) => r.map(|mut rep| {
                rep.elapsed = start.elapsed();
                rep
            }),
            Err(payload) => Err(crate::Error::CheckpointPanicked {
                message: panic_message(payload.as_ref()),
            }),
        };
        match &result {
            Err(crate::Error::Cancelled) => tracing::info!(
                dir = %src.dir.display(),
                mode = mode.as_str(),
                elapsed_ms = start.elapsed().as_millis() as u64,
                "checkpoint cancelled: store closing"
            ),
            Ok(rep) => {
                self.stats.record(&result);
                self.log(src.dir, rep);
            }
            Err(e) => {
                self.stats.record(&result);
                tracing::error!(dir = %src.dir.display(), mode = mode.as_str(), error = %e,
                    elapsed_ms = start.elapsed().as_millis() as u64, "checkpoint failed");
            }
        }
        result
    }

    fn log(&self, dir: &Path, rep: &CheckpointReport) {
        let elapsed_ms = rep.elapsed.as_millis() as u64;
        macro_rules! emit {
            ($lvl:ident, $msg:literal) => {
                tracing::$lvl!(
                    dir = %dir.display(),
                    mode = rep.mode.as_str(),
                    busy = false,
                    outcome = ?rep.outcome,
                    seq = rep.seq,
                    log_records = rep.log_records,
                    checkpointed_records = rep.checkpointed_records,
                    snapshot_bytes = rep.snapshot_bytes,
                    segments_removed = rep.segments_removed,
                    snapshots_pruned = rep.snapshots_pruned,
                    elapsed_ms,
                    $msg
                )
            };
        }
        emit!(info, "checkpoint");
        if rep.elapsed > self.slow_threshold() {
            emit!(warn, "checkpoint slow");
        }
    }

    pub(crate) fn slow_threshold(&self) -> Duration {
        Duration::from_nanos(self.slow_ns.load(Ordering::Relaxed))
    }

    fn checkpoint_inner<S: State>(
        &self,
        src: &Source<'_, S>,
        mode: CheckpointMode,
    ) -> Result<CheckpointReport> {
        // Positions first, then the state: a saved position is never ahead of the state
        // saved with it (I10). The other order lets a reader append event k+1 and move
        // its position between the two reads.
        let positions = src.positions.save();
        sched_point!();
        let v = src.published.load_full();
        sched_point!();
        let prev = self.last_snapshot_seq.load(Ordering::Acquire);
        let mut rep = CheckpointReport::new(mode, CheckpointOutcome::Unchanged, v.seq());
        rep.log_records = v.seq().saturating_sub(prev);
        self.wal_bytes_at_checkpoint
            .store(src.wal.staged_bytes(), Ordering::Relaxed);
        let moved = *lock(&self.saved) != positions;
        if v.seq() > prev || moved {
            // A file is installed below: the state it goes with, and the store's
            // directories (a new store's are synced by its first durable write), are
            // durable first.
            src.wal.sync_through(v.seq())?;
            src.wal.sync_pending_dirs()?;
        }
        if v.seq() > prev {
            sched_point!();
            let positions = if mutant!(PositionsAfterLoad) {
                src.positions.save()
            } else {
                positions
            };
            let written = snapshot::write_cancellable(
                src.fs,
                src.snap_dir,
                v.seq(),
                src.store_id,
                &(v.state(), &positions),
                &self.cancel,
            )?;
            rep.outcome = if written.installed {
                CheckpointOutcome::Written
            } else {
                CheckpointOutcome::AlreadyExisted
            };
            rep.snapshot_bytes = written.bytes;
            self.last_snapshot_seq.fetch_max(v.seq(), Ordering::AcqRel);
            *lock(&self.saved) = positions;
            // Every positions record is older than this snapshot now.
            self.prune_position_records(src, &mut rep, None);
        } else if moved {
            // The state is the newest snapshot's (so durable); only positions moved.
            let generation = self.next_generation.fetch_add(1, Ordering::AcqRel);
            rep.snapshot_bytes = position::write_record(
                src.fs,
                src.pos_dir,
                generation,
                src.store_id,
                v.seq(),
                &positions,
                &self.cancel,
            )?;
            rep.outcome = CheckpointOutcome::PositionsSaved;
            *lock(&self.saved) = positions;
            self.prune_position_records(src, &mut rep, Some(generation));
        }
        self.cleanup(src, &mut rep);
        Ok(rep)
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// Removes every positions record but `keep` (best-effort, like all cleanup).
    fn prune_position_records<S>(
        &self,
        src: &Source<'_, S>,
        rep: &mut CheckpointReport,
        keep: Option<u64>,
    ) {
        let Some(_unpinned) = self.unpinned() else {
            tracing::debug!(dir = %src.dir.display(), "a backup is reading the store: positions records are pruned by a later checkpoint");
            return;
        };
        let records = match snapshot::list(src.fs, src.pos_dir) {
            Ok(r) => r,
            Err(e) => return cleanup_failed(src, rep, src.pos_dir.to_path_buf(), "list", e),
        };
        for (generation, path) in records {
            if Some(generation) == keep || self.cancelled() {
                continue;
            }
            match src.fs.remove_file(&path) {
                Ok(()) => rep.snapshots_pruned += 1,
                Err(e) => cleanup_failed(src, rep, path, "prune positions record", e),
            }
        }
    }

    /// Prunes snapshots beyond `keep_snapshots`, then unlinks the WAL segments the
    /// oldest retained snapshot covers; failures go in the report. Nothing is removed
    /// once the store is closing (`cancel`): when `close` returns, nothing of the store
    /// touches the directory.
    fn cleanup<S>(&self, src: &Source<'_, S>, rep: &mut CheckpointReport) {
        if self.cancelled() {
            return;
        }
        let Some(_unpinned) = self.unpinned() else {
            tracing::debug!(dir = %src.dir.display(), "a backup is reading the store: snapshots and segments are removed by a later checkpoint");
            return;
        };
        let keep = src.keep_snapshots;
        let snaps = match snapshot::list(src.fs, src.snap_dir) {
            Ok(s) => s,
            Err(e) => return cleanup_failed(src, rep, src.snap_dir.to_path_buf(), "list", e),
        };
        let excess = snaps.len().saturating_sub(keep);
        let (old, kept) = snaps.split_at(excess);
        for (_, path) in old {
            if self.cancelled() {
                return;
            }
            match src.fs.remove_file(path) {
                Ok(()) => rep.snapshots_pruned += 1,
                Err(e) => cleanup_failed(src, rep, path.clone(), "prune snapshot", e),
            }
        }
        // Keep the WAL back to the oldest retained snapshot, and all of it until `keep`
        // snapshots exist, so a damaged newest snapshot loses nothing — also after the
        // final checkpoint of `close`.
        let through = match kept.first() {
            Some((seq, _)) if kept.len() >= keep => *seq,
            _ => return,
        };
        if self.cancelled() {
            return;
        }
        match src.wal.purge_through(through) {
            Ok(results) => {
                for (path, r) in results {
                    match r {
                        Ok(()) => rep.segments_removed += 1,
                        Err(e) => cleanup_failed(src, rep, path, "unlink segment", e),
                    }
                }
            }
            Err(e) => cleanup_failed(src, rep, src.wal.dir().to_path_buf(), "list", e),
        }
    }
}

/// Logs a failed cleanup step at ERROR and adds it to the report.
fn cleanup_failed<S>(
    src: &Source<'_, S>,
    rep: &mut CheckpointReport,
    path: PathBuf,
    op: &'static str,
    error: impl std::fmt::Display,
) {
    let error = error.to_string();
    tracing::error!(dir = %src.dir.display(), file = %path.display(), op, error = %error,
        "checkpoint cleanup failed");
    rep.cleanup_failures
        .push(CleanupFailure { path, op, error });
}
