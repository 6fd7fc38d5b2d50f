//! The periodic checkpointer: one [`Scheduler`] runs the checkpoints of any number of
//! stores on a fixed number of threads, earliest due first.
//!
//! A store registers a job ([`Store::start_checkpointer`](crate::Store::start_checkpointer) on a private one-thread
//! scheduler, [`Store::start_checkpointer_on`](crate::Store::start_checkpointer_on) on a shared one); a worker pops the job
//! that is due, runs its checkpoint with the queue lock released, and puts it back.
//!
//! # Invariants kept here
//!
//! - **I3 No shared locks**: the queue lock is never taken by appenders or readers,
//!   and never held while a checkpoint runs.
//! - **I8 Bounded shutdown**: detaching a job and
//!   [`Scheduler::shutdown`] wait at most their bound.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::util::lock;

/// The default [`CheckpointerConfig::slow_threshold`].
pub(crate) const SLOW_DEFAULT: Duration = Duration::from_millis(200);

/// Configuration of the periodic checkpointer ([`Store::start_checkpointer`](crate::Store::start_checkpointer)).
///
/// ```
/// use std::time::Duration;
/// use snapwal::CheckpointerConfig;
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

/// Why the scheduler runs a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The interval elapsed.
    Periodic,
    /// The WAL grew past the byte threshold.
    Bytes,
}

/// What a scheduler runs: one store's checkpoints.
pub(crate) trait Target: Send + Sync {
    /// Runs one checkpoint; its outcome is the target's to log and count.
    fn run(&self, trigger: Trigger);
    /// WAL bytes appended since the last checkpoint started.
    fn wal_bytes_since_checkpoint(&self) -> u64;
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
/// [`Store::start_checkpointer_on`](crate::Store::start_checkpointer_on); checkpoints then run on at most `threads`
/// threads, earliest due first. [`Store::start_checkpointer`](crate::Store::start_checkpointer) uses a private
/// one-thread scheduler. The scheduler's queue lock is never taken by appenders or
/// readers.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Default, Serialize, Deserialize)]
/// # struct Counter(i64);
/// # impl snapwal::State for Counter { type Event = i64; fn apply(&mut self, n: &i64) { self.0 += n } }
/// use std::time::Duration;
/// use snapwal::{CheckpointerConfig, Scheduler};
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
    pub(crate) shared: Arc<SchedShared>,
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
            Some(Trigger::Periodic)
        } else if job
            .cfg
            .wal_bytes
            .is_some_and(|limit| target.wal_bytes_since_checkpoint() >= limit)
        {
            Some(Trigger::Bytes)
        } else {
            None
        };
        let next = next_due(now, job.next_periodic, &job.cfg);
        job.in_flight = true;
        drop(q);
        if let Some(trigger) = mode {
            target.run(trigger);
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
