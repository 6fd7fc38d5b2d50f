//! Checkpoints: a zero-lock snapshot of the published state, then isolated cleanup.
//!
//! # One checkpoint
//!
//! 1. Load the published `(seq, state)`: one atomic load, no lock. If a snapshot of
//!    that seq exists already, stop ([`CheckpointOutcome::Unchanged`]).
//! 2. Make the WAL durable through that seq (so the WAL always reaches every snapshot,
//!    and an older snapshot plus the WAL can stand in for a damaged newer one).
//! 3. Stream the state and the source positions into a unique temp file, `fdatasync`,
//!    install with a no-replace rename, `fsync` the snapshot directory.
//! 4. Cleanup, best-effort: prune snapshots beyond [`Options::keep_snapshots`], then
//!    unlink the WAL segments whose every record is at or below the oldest retained
//!    snapshot. Each failure is logged at ERROR with the file, the operation and the
//!    error, counted, and returned in the report; it never fails the checkpoint.
//!
//! # No overlap
//!
//! An atomic flag (`compare_exchange` from `false` to `true`) admits one checkpoint at
//! a time; a second request while one runs returns [`CheckpointOutcome::Busy`] at once
//! and never waits. Appenders never look at the flag.
//!
//! [`Options::keep_snapshots`]: crate::Options::keep_snapshots

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::Inner;
use crate::wal::lock;
use crate::{snapshot, CloseReport, Seq, State, Store};

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// A new snapshot was written and installed.
    Written,
    /// A snapshot of this seq was already on disk (installed by an earlier run); kept.
    AlreadyExisted,
    /// Nothing was appended since the last snapshot; nothing written.
    Unchanged,
    /// Another checkpoint is running; this one did nothing.
    Busy,
}

/// What triggered a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// [`Store::checkpoint`].
    Manual,
    /// The periodic checkpointer's timer.
    Periodic,
    /// The WAL grew past the byte threshold.
    Bytes,
    /// The final checkpoint of [`Store::close`].
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

const WINDOW: usize = 512;

/// Checkpoint statistics: the last 512 durations in a ring buffer, and counters.
#[derive(Debug)]
pub(crate) struct Stats {
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    durations: [Duration; WINDOW],
    next: usize,
    len: usize,
    total: u64,
    failures: u64,
    cleanup_failures: u64,
    busy: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ring: Mutex::new(Ring {
                durations: [Duration::ZERO; WINDOW],
                next: 0,
                len: 0,
                total: 0,
                failures: 0,
                cleanup_failures: 0,
                busy: 0,
            }),
        }
    }
}

/// Aggregate checkpoint statistics over the last 512 checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints in the window.
    pub n: usize,
    /// Median duration in the window.
    pub p50: Duration,
    /// 95th percentile duration in the window.
    pub p95: Duration,
    /// Longest duration in the window.
    pub max: Duration,
    /// Checkpoints completed since open (all time).
    pub total: u64,
    /// Checkpoints that failed since open.
    pub failures: u64,
    /// Cleanup steps that failed since open.
    pub cleanup_failures: u64,
    /// Requests answered "busy" since open.
    pub busy: u64,
}

impl Stats {
    fn record(&self, r: &Result<CheckpointReport>) {
        let mut g = lock(&self.ring);
        match r {
            Ok(rep) if rep.outcome == CheckpointOutcome::Busy => g.busy += 1,
            Ok(rep) => {
                let i = g.next;
                if let Some(slot) = g.durations.get_mut(i) {
                    *slot = rep.elapsed;
                }
                g.next = (i + 1) % WINDOW;
                g.len = (g.len + 1).min(WINDOW);
                g.total += 1;
                g.cleanup_failures += rep.cleanup_failures.len() as u64;
            }
            Err(_) => g.failures += 1,
        }
    }

    pub(crate) fn snapshot(&self) -> CheckpointStats {
        let g = lock(&self.ring);
        let mut d: Vec<Duration> = g.durations.iter().take(g.len).copied().collect();
        d.sort_unstable();
        let pick = |q: f64| -> Duration {
            let idx = ((d.len() as f64 - 1.0) * q).round() as usize;
            d.get(idx).copied().unwrap_or_default()
        };
        CheckpointStats {
            n: d.len(),
            p50: pick(0.50),
            p95: pick(0.95),
            max: d.last().copied().unwrap_or_default(),
            total: g.total,
            failures: g.failures,
            cleanup_failures: g.cleanup_failures,
            busy: g.busy,
        }
    }
}

/// Resets the running flag when the checkpoint ends, however it ends.
struct Running<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(crate) const SLOW_DEFAULT: Duration = Duration::from_millis(200);

impl<S: State> Inner<S> {
    /// Runs one checkpoint (see the [module docs](self)), logs it, and records it in
    /// the statistics.
    pub(crate) fn checkpoint(
        &self,
        mode: CheckpointMode,
        truncate_all: bool,
    ) -> Result<CheckpointReport> {
        if self
            .checkpoint_running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let rep =
                CheckpointReport::new(mode, CheckpointOutcome::Busy, self.published.load().seq());
            self.stats.record(&Ok(rep.clone()));
            tracing::info!(dir = %self.dir.display(), mode = mode.as_str(), busy = true, seq = rep.seq, "checkpoint busy");
            return Ok(rep);
        }
        let _running = Running(&self.checkpoint_running);
        let start = Instant::now();
        let result = self.checkpoint_inner(mode, truncate_all).map(|mut rep| {
            rep.elapsed = start.elapsed();
            rep
        });
        match &result {
            Err(crate::Error::Cancelled) => tracing::info!(
                dir = %self.dir.display(),
                mode = mode.as_str(),
                elapsed_ms = start.elapsed().as_millis() as u64,
                "checkpoint cancelled: store closing"
            ),
            Ok(rep) => {
                self.stats.record(&result);
                self.log(rep);
            }
            Err(e) => {
                self.stats.record(&result);
                tracing::error!(dir = %self.dir.display(), mode = mode.as_str(), error = %e,
                    elapsed_ms = start.elapsed().as_millis() as u64, "checkpoint failed");
            }
        }
        result
    }

    fn log(&self, rep: &CheckpointReport) {
        let elapsed_ms = rep.elapsed.as_millis() as u64;
        macro_rules! emit {
            ($lvl:ident, $msg:literal) => {
                tracing::$lvl!(
                    dir = %self.dir.display(),
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

    fn checkpoint_inner(
        &self,
        mode: CheckpointMode,
        truncate_all: bool,
    ) -> Result<CheckpointReport> {
        let v = self.published.load_full();
        let prev = self.last_snapshot_seq.load(Ordering::Acquire);
        let mut rep = CheckpointReport::new(mode, CheckpointOutcome::Unchanged, v.seq());
        rep.log_records = v.seq().saturating_sub(prev);
        self.wal_bytes_at_checkpoint
            .store(self.wal.staged_bytes(), Ordering::Relaxed);
        if v.seq() > prev {
            self.wal.sync_through(v.seq())?;
            let positions = self.positions.save();
            let written = snapshot::write_cancellable(
                self.fs.as_ref(),
                &self.snap_dir,
                v.seq(),
                self.store_id,
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
        }
        self.cleanup(&mut rep, truncate_all);
        Ok(rep)
    }

    /// Prunes old snapshots and unlinks covered segments; failures go in the report.
    fn cleanup(&self, rep: &mut CheckpointReport, truncate_all: bool) {
        let fail = |rep: &mut CheckpointReport, path: PathBuf, op: &'static str, e: String| {
            tracing::error!(dir = %self.dir.display(), file = %path.display(), op, error = %e, "checkpoint cleanup failed");
            rep.cleanup_failures
                .push(CleanupFailure { path, op, error: e });
        };
        let keep = self.options.keep_snapshots;
        let snaps = match snapshot::list(self.fs.as_ref(), &self.snap_dir) {
            Ok(s) => s,
            Err(e) => return fail(rep, self.snap_dir.clone(), "list", e.to_string()),
        };
        let excess = snaps.len().saturating_sub(keep);
        let (old, kept) = snaps.split_at(excess);
        for (_, path) in old {
            match self.fs.remove_file(path) {
                Ok(()) => rep.snapshots_pruned += 1,
                Err(e) => fail(rep, path.clone(), "prune snapshot", e.to_string()),
            }
        }
        // Keep the WAL back to the oldest retained snapshot, and all of it until
        // `keep` snapshots exist, so a damaged newest snapshot loses nothing.
        let through = if truncate_all {
            kept.last().map(|(s, _)| *s)
        } else if kept.len() >= keep {
            kept.first().map(|(s, _)| *s)
        } else {
            None
        };
        let Some(through) = through else { return };
        let purged = if truncate_all {
            self.wal.purge_all_through(through)
        } else {
            self.wal.purge_through(through)
        };
        match purged {
            Ok(results) => {
                for (path, r) in results {
                    match r {
                        Ok(()) => rep.segments_removed += 1,
                        Err(e) => fail(rep, path, "unlink segment", e.to_string()),
                    }
                }
            }
            Err(e) => fail(rep, self.wal.dir().to_path_buf(), "list", e.to_string()),
        }
    }
}

/// How [`Store::close_with`] shuts down.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CloseOptions {
    /// How long to wait for background threads (the checkpointer) to stop. Default 5 s.
    pub thread_timeout: Duration,
    /// Run a final checkpoint, waiting at most this long for it; `None` (the default)
    /// for none. With a final checkpoint, every WAL segment it covers is unlinked.
    pub final_checkpoint: Option<Duration>,
}

impl Default for CloseOptions {
    fn default() -> Self {
        CloseOptions {
            thread_timeout: Duration::from_secs(5),
            final_checkpoint: None,
        }
    }
}

impl CloseOptions {
    /// Sets [`CloseOptions::thread_timeout`].
    pub fn thread_timeout(mut self, d: Duration) -> Self {
        self.thread_timeout = d;
        self
    }
    /// Sets [`CloseOptions::final_checkpoint`].
    pub fn final_checkpoint(mut self, deadline: Option<Duration>) -> Self {
        self.final_checkpoint = deadline;
        self
    }
}

impl<S: State> Store<S> {
    /// Takes a checkpoint now: a snapshot of the current state without any lock, then
    /// cleanup. Returns at once with [`CheckpointOutcome::Busy`] if a checkpoint is
    /// already running. Cleanup failures are in the report, never an error; an error
    /// means the snapshot could not be made durable.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(CheckpointMode::Manual, false)
    }

    /// Checkpoint statistics: durations over the last 512 checkpoints and counters.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.inner.stats.snapshot()
    }

    /// Closes the store with [`CloseOptions::default`]: no final checkpoint.
    pub fn close(self) -> Result<CloseReport> {
        self.close_with(CloseOptions::default())
    }

    /// Closes the store, in this order:
    ///
    /// 1. set the stop flag;
    /// 2. wake and join background threads, waiting at most
    ///    [`CloseOptions::thread_timeout`] (a thread still running is left to finish);
    /// 3. log the checkpoint statistics (one INFO event);
    /// 4. the final checkpoint, if [`CloseOptions::final_checkpoint`] asks for one,
    ///    bounded by its deadline;
    /// 5. cleanup: unlink every segment the final snapshot covers;
    /// 6. the final WAL sync;
    /// 7. release the directory lock.
    ///
    /// Never panics. Cleanup failures are logged and returned in the report. The only
    /// error is a failure to make appended data durable (step 6).
    pub fn close_with(self, opts: CloseOptions) -> Result<CloseReport> {
        let start = Instant::now();
        let mut report = CloseReport {
            threads_abandoned: self.stop_threads(opts.thread_timeout),
            ..CloseReport::default()
        };
        let stats = self.checkpoint_stats();
        tracing::info!(
            dir = %self.inner.dir.display(),
            n = stats.n,
            p50_ms = stats.p50.as_millis() as u64,
            p95_ms = stats.p95.as_millis() as u64,
            max_ms = stats.max.as_millis() as u64,
            total = stats.total,
            failures = stats.failures,
            cleanup_failures = stats.cleanup_failures,
            busy = stats.busy,
            "checkpoint statistics at close"
        );
        if let Some(deadline) = opts.final_checkpoint {
            self.inner.cancel.store(false, Ordering::Release);
            let inner = Arc::clone(&self.inner);
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("snapwal-final-checkpoint".into())
                .spawn(move || {
                    let result = inner.checkpoint(CheckpointMode::Shutdown, true);
                    // Release the store before reporting, so that `close` returning
                    // means the directory lock is released too.
                    drop(inner);
                    let _ = tx.send(result);
                });
            match spawned {
                Ok(_) => match rx.recv_timeout(deadline) {
                    Ok(Ok(rep)) => {
                        report
                            .cleanup_failures
                            .extend(rep.cleanup_failures.iter().cloned());
                        report.final_checkpoint = Some(rep);
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "final checkpoint failed"),
                    Err(_) => {
                        self.inner.cancel.store(true, Ordering::Release);
                        tracing::warn!(
                            deadline_ms = deadline.as_millis() as u64,
                            "final checkpoint did not finish before its deadline; cancelled"
                        );
                        report.threads_abandoned += 1;
                    }
                },
                Err(e) => tracing::error!(error = %e, "could not start the final checkpoint"),
            }
        }
        let synced = self.inner.wal.sync_all();
        report.durable_seq = self.inner.wal.durable_seq();
        report.elapsed = start.elapsed();
        tracing::info!(
            durable_seq = report.durable_seq,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "store closed"
        );
        drop(self);
        synced.map(|_| report)
    }
}

/// Configuration of the periodic checkpointer ([`Store::start_checkpointer`]).
///
/// ```
/// use std::time::Duration;
/// use snapwal::checkpoint::CheckpointerConfig;
/// let cfg = CheckpointerConfig::every(Duration::from_secs(1))
///     .wal_bytes(Some(256 << 20))
///     .slow_threshold(Duration::from_millis(100));
/// assert!(cfg.is_enabled());
/// // A knob read from a configuration file: zero or negative means disabled.
/// assert!(!CheckpointerConfig::from_interval_secs(-5.0).is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CheckpointerConfig {
    /// Time between periodic checkpoints; `None` disables the timer. Any positive
    /// duration is honoured (there is no minimum).
    pub interval: Option<Duration>,
    /// Also checkpoint when the WAL has grown by this many bytes since the last
    /// checkpoint (bounds recovery time); `None` disables the trigger.
    pub wal_bytes: Option<u64>,
    /// Checkpoints slower than this also log a WARN "checkpoint slow". Default 200 ms.
    pub slow_threshold: Duration,
    /// How often the byte trigger is checked. Default 10 ms.
    pub poll: Duration,
}

impl Default for CheckpointerConfig {
    /// Disabled: no timer, no byte trigger.
    fn default() -> Self {
        CheckpointerConfig {
            interval: None,
            wal_bytes: None,
            slow_threshold: SLOW_DEFAULT,
            poll: Duration::from_millis(10),
        }
    }
}

impl CheckpointerConfig {
    /// A checkpoint every `interval`; a zero interval means disabled.
    pub fn every(interval: Duration) -> Self {
        CheckpointerConfig {
            interval: (!interval.is_zero()).then_some(interval),
            ..Self::default()
        }
    }

    /// From a configuration knob in seconds: zero or below (or NaN) means disabled;
    /// a negative value is coerced to disabled with a WARN, since it is most likely a
    /// mistake in the configuration.
    pub fn from_interval_secs(secs: f64) -> Self {
        if secs < 0.0 {
            tracing::warn!(
                interval_secs = secs,
                "negative checkpoint interval; checkpointer disabled"
            );
        }
        if secs > 0.0 && secs.is_finite() {
            Self::every(Duration::from_secs_f64(secs))
        } else {
            Self::default()
        }
    }

    /// Sets [`CheckpointerConfig::wal_bytes`] (`Some(0)` counts as `None`).
    pub fn wal_bytes(mut self, bytes: Option<u64>) -> Self {
        self.wal_bytes = bytes.filter(|&b| b > 0);
        self
    }

    /// Sets [`CheckpointerConfig::slow_threshold`].
    pub fn slow_threshold(mut self, d: Duration) -> Self {
        self.slow_threshold = d;
        self
    }

    /// Whether this configuration starts anything.
    pub fn is_enabled(&self) -> bool {
        self.interval.is_some() || self.wal_bytes.is_some()
    }
}

/// What a scheduler runs: one store's checkpoints.
pub(crate) trait Target: Send + Sync {
    fn run(&self, mode: CheckpointMode);
    fn wal_bytes_since_checkpoint(&self) -> u64;
}

impl<S: State> Target for Inner<S> {
    fn run(&self, mode: CheckpointMode) {
        // The outcome is logged and counted by `checkpoint`.
        let _ = self.checkpoint(mode, false);
    }
    fn wal_bytes_since_checkpoint(&self) -> u64 {
        self.wal
            .staged_bytes()
            .saturating_sub(self.wal_bytes_at_checkpoint.load(Ordering::Relaxed))
    }
}

struct Job {
    target: std::sync::Weak<dyn Target>,
    cfg: CheckpointerConfig,
    next_periodic: Option<Instant>,
    in_flight: bool,
    /// Detached while a run was in flight: the worker drops it when the run ends.
    removed: bool,
}

#[derive(Default)]
struct Queue {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    jobs: std::collections::HashMap<u64, Job>,
    next_id: u64,
    stopped: bool,
}

#[derive(Default)]
pub(crate) struct SchedShared {
    queue: Mutex<Queue>,
    cv: std::sync::Condvar,
}

impl SchedShared {
    /// Removes a job, waiting up to `timeout` for a run of it in flight to end.
    /// Returns `false` if it was still running at the timeout (the worker then drops
    /// it when the run ends). The workers keep serving every other job.
    fn remove(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = lock(&self.queue);
        loop {
            let now = Instant::now();
            match q.jobs.get_mut(&id) {
                Some(job) if job.in_flight && now >= deadline => {
                    job.removed = true;
                    return false;
                }
                Some(job) if job.in_flight => {
                    q = self
                        .cv
                        .wait_timeout(q, deadline - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                Some(_) => {
                    q.jobs.remove(&id);
                    return true;
                }
                None => return true,
            }
        }
    }
}

/// Runs the periodic checkpoints of any number of stores on a fixed number of
/// threads.
///
/// An application with thousands of stores (one per actor, say) creates one
/// `Scheduler` and registers each store with
/// [`Store::start_checkpointer_on`]; checkpoints then run on at most `threads`
/// threads, earliest due first. [`Store::start_checkpointer`] uses a private
/// one-thread scheduler. The scheduler's queue lock is never taken by appenders or
/// readers.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Default, Serialize, Deserialize)]
/// # struct Counter(i64);
/// # impl snapwal::State for Counter { type Event = i64; fn apply(&mut self, n: &i64) { self.0 += n } }
/// use std::time::Duration;
/// use snapwal::checkpoint::{CheckpointerConfig, Scheduler};
///
/// let scheduler = Scheduler::new(2)?;
/// let dirs: Vec<_> = (0..10).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
/// for dir in &dirs {
///     let store = snapwal::Store::<Counter>::open(dir.path(), snapwal::Options::default())?;
///     store.start_checkpointer_on(&scheduler, CheckpointerConfig::every(Duration::from_secs(1)))?;
///     store.append(&1)?;
///     store.close()?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scheduler {
    shared: Arc<SchedShared>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("threads", &lock(&self.workers).len())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts a scheduler with `threads` worker threads (at least 1), named
    /// `snapwal-ckpt-<i>`.
    pub fn new(threads: usize) -> Result<Self> {
        let shared = Arc::new(SchedShared::default());
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let sh = Arc::clone(&shared);
            let h = std::thread::Builder::new()
                .name(format!("snapwal-ckpt-{i}"))
                .spawn(move || worker(&sh))
                .map_err(|e| crate::Error::io("spawn thread", "snapwal-ckpt", e))?;
            workers.push(h);
        }
        Ok(Scheduler {
            shared,
            workers: Mutex::new(workers),
        })
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        lock(&self.workers).len()
    }

    pub(crate) fn add(&self, target: std::sync::Weak<dyn Target>, cfg: CheckpointerConfig) -> u64 {
        let now = Instant::now();
        let next_periodic = cfg.interval.map(|i| now + i);
        let mut q = lock(&self.shared.queue);
        let id = q.next_id;
        q.next_id += 1;
        let due = next_due(now, next_periodic, &cfg);
        q.jobs.insert(
            id,
            Job {
                target,
                cfg,
                next_periodic,
                in_flight: false,
                removed: false,
            },
        );
        q.heap.push(std::cmp::Reverse((due, id)));
        self.shared.cv.notify_all();
        id
    }

    /// Stops the workers, waiting up to `timeout` for each to finish its current
    /// checkpoint. Returns how many were left running.
    pub fn shutdown(&self, timeout: Duration) -> usize {
        lock(&self.shared.queue).stopped = true;
        self.shared.cv.notify_all();
        let deadline = Instant::now() + timeout;
        let mut left = 0;
        for h in lock(&self.workers).drain(..) {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                left += 1;
            }
        }
        left
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(100));
    }
}

fn next_due(now: Instant, next_periodic: Option<Instant>, cfg: &CheckpointerConfig) -> Instant {
    let poll = cfg.wal_bytes.map(|_| now + cfg.poll);
    match (next_periodic, poll) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        // Not reachable for an enabled config; check again in a while.
        (None, None) => now + Duration::from_secs(3600),
    }
}

fn worker(sh: &SchedShared) {
    let mut q = lock(&sh.queue);
    loop {
        if q.stopped {
            return;
        }
        let now = Instant::now();
        let due = match q.heap.peek() {
            None => {
                q = sh.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            Some(std::cmp::Reverse((due, _))) => *due,
        };
        if due > now {
            q = sh
                .cv
                .wait_timeout(q, due - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            continue;
        }
        let Some(std::cmp::Reverse((_, id))) = q.heap.pop() else {
            continue;
        };
        let Some(job) = q.jobs.get_mut(&id) else {
            continue;
        };
        let Some(target) = job.target.upgrade() else {
            q.jobs.remove(&id);
            continue;
        };
        let mode = if job.next_periodic.is_some_and(|t| now >= t) {
            job.next_periodic = job.cfg.interval.map(|i| now + i);
            Some(CheckpointMode::Periodic)
        } else if job
            .cfg
            .wal_bytes
            .is_some_and(|limit| target.wal_bytes_since_checkpoint() >= limit)
        {
            Some(CheckpointMode::Bytes)
        } else {
            None
        };
        let next = next_due(now, job.next_periodic, &job.cfg);
        job.in_flight = true;
        drop(q);
        if let Some(mode) = mode {
            target.run(mode);
        }
        drop(target);
        q = lock(&sh.queue);
        if let Some(job) = q.jobs.get_mut(&id) {
            job.in_flight = false;
            if !job.removed && job.target.strong_count() > 0 {
                q.heap.push(std::cmp::Reverse((next, id)));
            } else {
                q.jobs.remove(&id);
            }
        }
        sh.cv.notify_all();
    }
}

/// The checkpointer attached to a store.
pub(crate) enum Attached {
    /// A private one-thread scheduler.
    Own(Scheduler),
    /// A job on a shared scheduler's queue.
    Shared(Arc<SchedShared>, u64),
}

impl Attached {
    /// Detaches: stops a private scheduler, or removes the job from a shared one (never
    /// stopping it), waiting up to `timeout` for a run in flight. Returns the number
    /// of threads or runs left behind.
    pub(crate) fn detach(self, timeout: Duration) -> usize {
        match self {
            Attached::Own(s) => s.shutdown(timeout),
            Attached::Shared(sh, id) => usize::from(!sh.remove(id, timeout)),
        }
    }
}

impl<S: State> Store<S> {
    /// Starts the periodic checkpointer on a thread of its own (named
    /// `snapwal-ckpt-0`). Returns `Ok(false)` and starts nothing when `cfg` is
    /// disabled (no interval and no byte trigger). `open` never starts it, so one-shot
    /// tools and tests are unaffected.
    ///
    /// Checkpoints never overlap (see [`Store::checkpoint`]); each logs one INFO event
    /// with `mode`, `busy`, `seq`, `log_records`, `checkpointed_records`,
    /// `snapshot_bytes`, `segments_removed`, `snapshots_pruned`, `elapsed_ms`, and a
    /// WARN "checkpoint slow" past [`CheckpointerConfig::slow_threshold`].
    pub fn start_checkpointer(&self, cfg: CheckpointerConfig) -> Result<bool> {
        if !self.prepare_checkpointer(&cfg)? {
            return Ok(false);
        }
        let sched = Scheduler::new(1)?;
        sched.add(self.weak_target(), cfg);
        *lock(&self.checkpointer) = Some(Attached::Own(sched));
        Ok(true)
    }

    /// Registers this store's checkpoints on a shared [`Scheduler`]. Returns
    /// `Ok(false)` when `cfg` is disabled.
    pub fn start_checkpointer_on(
        &self,
        scheduler: &Scheduler,
        cfg: CheckpointerConfig,
    ) -> Result<bool> {
        if !self.prepare_checkpointer(&cfg)? {
            return Ok(false);
        }
        let id = scheduler.add(self.weak_target(), cfg);
        *lock(&self.checkpointer) = Some(Attached::Shared(Arc::clone(&scheduler.shared), id));
        Ok(true)
    }

    fn prepare_checkpointer(&self, cfg: &CheckpointerConfig) -> Result<bool> {
        if lock(&self.checkpointer).is_some() {
            return Err(crate::Error::InvalidOptions(
                "a checkpointer is already running",
            ));
        }
        if !cfg.is_enabled() {
            tracing::info!(
                "checkpointer disabled (no interval, no byte trigger); no thread started"
            );
            return Ok(false);
        }
        self.inner
            .slow_ns
            .store(cfg.slow_threshold.as_nanos() as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn weak_target(&self) -> std::sync::Weak<dyn Target> {
        let strong: Arc<dyn Target> = Arc::clone(&self.inner) as Arc<dyn Target>;
        Arc::downgrade(&strong)
    }
}
