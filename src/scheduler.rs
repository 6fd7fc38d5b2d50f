//! The periodic checkpointer: one [`Scheduler`] runs the checkpoints of any number of
//! stores on a fixed number of threads, earliest due first.
//!
//! A store registers a job ([`Store::start_checkpointer`](crate::Store::start_checkpointer) on a private one-thread
//! scheduler, [`Store::start_checkpointer_on`](crate::Store::start_checkpointer_on) on a shared one); a worker pops the job
//! that is due, runs its checkpoint with the queue lock released, and puts it back.
//!
//! # Sleeping when nothing is due
//!
//! The workers sleep until the earliest due time (plus a small slack, so that one
//! wake-up serves every job due around then); nothing polls. A byte trigger
//! ([`CheckpointerConfig::wal_bytes`]) is driven by the writers: the store's WAL
//! nudges the scheduler from the write that crosses the threshold, and the job is due
//! at once.
//!
//! A store that is *quiet* (its last checkpoint found nothing to do, and since then
//! nothing was appended and no position moved) is *parked*: it leaves the schedule
//! (but for a once-a-minute backstop) until its next change wakes it — the WAL's
//! byte watch armed one byte ahead, and a one-shot wake-up on its position cells —
//! and closes its segment's file. Ten thousand idle stores cost the workers nothing
//! and hold one descriptor each (their lock).
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
use crate::util::{deadline_after, lock, panic_message, remaining};

/// The default [`CheckpointerConfig::slow_threshold`].
pub(crate) const SLOW_DEFAULT: Duration = Duration::from_millis(200);

/// The shortest interval the checkpointer honours, and the shortest byte-trigger
/// poll: 1 ms. A shorter positive interval is raised to it (a worker of a shared
/// scheduler must not spin on one store).
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

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
/// // A tiny positive interval is raised to the 1 ms minimum, never disabled.
/// assert_eq!(
///     CheckpointerConfig::from_interval_secs(1e-12).interval,
///     Some(snapwal::scheduler::MIN_INTERVAL)
/// );
/// // Infinity means "never": the timer is disabled.
/// assert!(!CheckpointerConfig::from_interval_secs(f64::INFINITY).is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CheckpointerConfig {
    /// Time between periodic checkpoints; `None` disables the timer. The
    /// constructors raise a positive interval below [`MIN_INTERVAL`] (1 ms) to it,
    /// and the scheduler does the same with a value set directly. An interval too
    /// long for the clock (up to [`Duration::MAX`]) is honoured as "about a century":
    /// it never overflows.
    pub interval: Option<Duration>,
    /// Also checkpoint when the WAL has grown by this many bytes since the last
    /// checkpoint (bounds recovery time); `None` disables the trigger.
    pub wal_bytes: Option<u64>,
    /// Checkpoints slower than this also log a WARN "checkpoint slow". Default 200 ms.
    pub slow_threshold: Duration,
    /// The backstop of the byte trigger: the longest time between two checks of the
    /// byte count. The trigger itself needs no polling: the WAL nudges the scheduler
    /// from the write that crosses the threshold. Default 1 s; at least
    /// [`MIN_INTERVAL`].
    pub poll: Duration,
}

impl Default for CheckpointerConfig {
    /// Disabled: no timer, no byte trigger.
    fn default() -> Self {
        CheckpointerConfig {
            interval: None,
            wal_bytes: None,
            slow_threshold: SLOW_DEFAULT,
            poll: Duration::from_secs(1),
        }
    }
}

impl CheckpointerConfig {
    /// A checkpoint every `interval`: a zero interval means disabled, a positive one
    /// below [`MIN_INTERVAL`] is raised to 1 ms.
    pub fn every(interval: Duration) -> Self {
        CheckpointerConfig {
            interval: (!interval.is_zero()).then(|| interval.max(MIN_INTERVAL)),
            ..Self::default()
        }
    }

    /// From a configuration knob in seconds:
    ///
    /// - zero, below zero or NaN: disabled (a negative value also logs a WARN, since
    ///   it is most likely a mistake in the configuration);
    /// - positive infinity: "never", so disabled too;
    /// - a tiny positive value (below 1 ms, down to the smallest `f64`): 1 ms, the
    ///   [`MIN_INTERVAL`]; it is never rounded down to "disabled";
    /// - a finite value too large for a [`Duration`] (such as `1e300`): the longest
    ///   [`Duration`], which the scheduler treats as "about a century".
    ///
    /// Never panics.
    pub fn from_interval_secs(secs: f64) -> Self {
        if secs < 0.0 {
            tracing::warn!(
                interval_secs = secs,
                "negative checkpoint interval; checkpointer disabled"
            );
        }
        if secs.is_nan() || secs <= 0.0 || secs.is_infinite() {
            return Self::default();
        }
        let interval = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
        Self::every(interval.max(MIN_INTERVAL))
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

    /// The interval as the scheduler uses it: at least [`MIN_INTERVAL`].
    fn effective_interval(&self) -> Option<Duration> {
        self.interval.map(|i| i.max(MIN_INTERVAL))
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

/// One store as the scheduler sees it.
pub(crate) trait Watched: Send + Sync {
    /// Runs one checkpoint (logged and counted by the store). Returns `true` when it
    /// was *quiet*: nothing appended, no position moved, no cleanup failed, so that
    /// until [`Watched::fingerprint`] changes, another run would do nothing either.
    fn run_checkpoint(&self, trigger: Trigger) -> bool;
    /// WAL bytes appended since the last checkpoint started.
    fn wal_bytes_since(&self) -> u64;
    /// A cheap digest of what a checkpoint saves (the published seq and the
    /// positions): when it is unchanged since a quiet run, a periodic run is
    /// skipped.
    fn fingerprint(&self) -> u64;
    /// Arms the WAL's byte watch: `nudge` runs once when `more` bytes beyond the
    /// last checkpoint's baseline have been written (`None` disarms it).
    fn watch_wal_bytes(&self, limit: u64, nudge: Option<crate::wal::Nudge>);
    /// Parks a quiet store: arms `wake` to run once at its next change (an append
    /// or a position move) and releases what an idle store need not hold (its
    /// segment's file). Returns `false`, parking nothing, when the store changed
    /// since `fingerprint` was taken.
    fn park(&self, fingerprint: u64, wake: crate::wal::Nudge) -> bool;
}

struct Job {
    target: std::sync::Weak<dyn Watched>,
    cfg: CheckpointerConfig,
    next_periodic: Option<Instant>,
    /// When the job is due; a heap entry with another instant is stale.
    due: Instant,
    in_flight: bool,
    /// Detached while a run was in flight: the worker drops it when the run ends.
    removed: bool,
    /// The WAL crossed the byte threshold while a run was in flight.
    nudged: bool,
    /// The fingerprint before the last run, if that run was quiet.
    quiet: Option<u64>,
    /// Parked: quiet, waiting for the store's next change to wake it (see
    /// [`SchedShared::nudge`]); its heap entry is only the [`PARKED_BACKSTOP`].
    parked: bool,
}

#[derive(Default)]
struct Queue {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    jobs: std::collections::HashMap<u64, Job>,
    next_id: u64,
    stopped: bool,
    /// Threads waiting in [`SchedShared::remove`] for a run to end.
    removers: usize,
}

#[derive(Default)]
pub(crate) struct SchedShared {
    queue: Mutex<Queue>,
    cv: std::sync::Condvar,
}

impl SchedShared {
    /// Removes a job, waiting until `deadline` for a run of it in flight to end.
    /// Returns `false` if it was still running at the deadline (the worker then drops
    /// it when the run ends). The workers keep serving every other job.
    ///
    /// The job is marked removed at once, so no worker starts it again while this
    /// waits: a job due again as soon as its run ends (a short interval) would
    /// otherwise be picked up before this thread gets the lock back, for ever.
    fn remove(&self, id: u64, deadline: Instant) -> bool {
        let mut q = lock(&self.queue);
        loop {
            let left = remaining(deadline);
            match q.jobs.get_mut(&id) {
                Some(job) if job.in_flight => {
                    job.removed = true;
                    if mutant!(CloseLeavesJobRunning) {
                        return true;
                    }
                    if left.is_zero() {
                        return false;
                    }
                    q.removers += 1;
                    q = self
                        .cv
                        .wait_timeout(q, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                    q.removers -= 1;
                }
                Some(_) => {
                    // Its heap entry goes stale and is dropped when it comes up.
                    q.jobs.remove(&id);
                    return true;
                }
                None => return true,
            }
        }
    }

    /// Whether the scheduler was shut down (it runs nothing any more).
    fn is_stopped(&self) -> bool {
        lock(&self.queue).stopped
    }

    /// Adds a job and arms its byte trigger; refused once the scheduler is shut down.
    fn add(self: &Arc<Self>, target: &Arc<dyn Watched>, cfg: CheckpointerConfig) -> Result<u64> {
        let now = Instant::now();
        let next_periodic = cfg.effective_interval().map(|i| deadline_after(now, i));
        let id = {
            let mut q = lock(&self.queue);
            if q.stopped {
                return Err(crate::Error::SchedulerStopped);
            }
            let id = q.next_id;
            q.next_id += 1;
            let due = next_due(now, next_periodic, &cfg);
            q.jobs.insert(
                id,
                Job {
                    target: Arc::downgrade(target),
                    cfg,
                    next_periodic,
                    due,
                    in_flight: false,
                    removed: false,
                    nudged: false,
                    quiet: None,
                    parked: false,
                },
            );
            q.heap.push(std::cmp::Reverse((due, id)));
            id
        };
        // Every waiter: a worker must see the new job (a remover may wait too).
        self.cv.notify_all();
        self.arm(target.as_ref(), id, &cfg);
        Ok(id)
    }

    /// Arms the byte trigger of job `id` (no lock held): the store's WAL nudges the
    /// scheduler when it crosses the threshold, so nobody polls the byte count.
    fn arm(self: &Arc<Self>, target: &dyn Watched, id: u64, cfg: &CheckpointerConfig) {
        if let Some(limit) = cfg.wal_bytes {
            target.watch_wal_bytes(limit, Some(self.nudger(id)));
        }
    }

    /// The callback that nudges job `id` (holding the scheduler weakly).
    fn nudger(self: &Arc<Self>, id: u64) -> crate::wal::Nudge {
        let weak = Arc::downgrade(self);
        Arc::new(move || {
            if let Some(sh) = weak.upgrade() {
                sh.nudge(id);
            }
        })
    }

    /// Job `id`'s store changed: its WAL crossed the byte threshold (the job is due
    /// now), or, when it was parked, something was appended or a position moved
    /// (the job is due one interval later, or now to re-arm a byte trigger). Called
    /// from a writer, outside any lock of the writer section; takes the queue lock
    /// for a moment.
    fn nudge(&self, id: u64) {
        let now = Instant::now();
        let mut q = lock(&self.queue);
        let Some(job) = q.jobs.get_mut(&id) else {
            return;
        };
        if job.removed {
            return;
        }
        if job.in_flight {
            job.nudged = true;
            return;
        }
        if job.parked {
            job.parked = false;
            let interval = job.cfg.effective_interval();
            if job.next_periodic.is_some_and(|t| t <= now) {
                job.next_periodic = interval.map(|i| deadline_after(now, i));
            }
            let due = match (job.cfg.wal_bytes, job.next_periodic) {
                (Some(_), _) | (None, None) => now,
                (None, Some(t)) => t,
            };
            job.due = due;
            q.heap.push(std::cmp::Reverse((due, id)));
            drop(q);
            self.cv.notify_all();
            return;
        }
        if job.due > now {
            job.due = now;
            q.heap.push(std::cmp::Reverse((now, id)));
            drop(q);
            self.cv.notify_all();
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
/// readers, and never held while a checkpoint runs.
///
/// A checkpoint that panics (in a state's `Serialize`, or in a file system) is that
/// store's failed checkpoint: logged at ERROR and counted in its
/// [`CheckpointStats::failures`](crate::CheckpointStats::failures); the worker and
/// every other store carry on.
///
/// Closing a store cancels its running checkpoint (at the snapshot writer's next
/// buffered write) and removes its job, without disturbing the other stores.
/// After [`Scheduler::shutdown`] (or the scheduler's drop) the scheduler runs
/// nothing: registering a store on it fails with
/// [`Error::SchedulerStopped`](crate::Error::SchedulerStopped), and a store that was
/// registered on it may be started on another scheduler.
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
        let sched = Scheduler {
            shared,
            workers: Mutex::new(Vec::new()),
        };
        for i in 0..threads.max(1) {
            let sh = Arc::clone(&sched.shared);
            let h = std::thread::Builder::new()
                .name(format!("snapwal-ckpt-{i}"))
                .spawn(move || worker(&sh))
                // Dropping `sched` stops the workers already started.
                .map_err(|e| crate::Error::io("spawn thread", "snapwal-ckpt", e))?;
            lock(&sched.workers).push(h);
        }
        Ok(sched)
    }

    /// The number of worker threads (zero once shut down).
    pub fn threads(&self) -> usize {
        lock(&self.workers).len()
    }

    /// Whether [`Scheduler::shutdown`] was called: the scheduler runs nothing any
    /// more.
    pub fn is_shut_down(&self) -> bool {
        self.shared.is_stopped()
    }

    pub(crate) fn add(&self, target: &Arc<dyn Watched>, cfg: CheckpointerConfig) -> Result<u64> {
        self.shared.add(target, cfg)
    }

    /// Stops the workers, waiting up to `timeout` in all for them to finish their
    /// current checkpoints (any duration, [`Duration::MAX`] included, is accepted).
    /// Returns how many were left running. Stores still registered stop
    /// checkpointing (a WARN says how many); each can be started on another
    /// scheduler. Later registrations fail with
    /// [`Error::SchedulerStopped`](crate::Error::SchedulerStopped).
    pub fn shutdown(&self, timeout: Duration) -> usize {
        let registered = {
            let mut q = lock(&self.shared.queue);
            q.stopped = true;
            q.jobs.values().filter(|j| !j.removed).count()
        };
        if registered > 0 && self.threads() > 0 {
            tracing::warn!(
                stores = registered,
                "scheduler shut down with stores still registered; they no longer checkpoint"
            );
        }
        self.stop(deadline_after(Instant::now(), timeout))
    }

    /// Stops the workers, waiting until `deadline`; returns how many were left.
    fn stop(&self, deadline: Instant) -> usize {
        lock(&self.shared.queue).stopped = true;
        self.shared.cv.notify_all();
        let mut left = 0;
        let workers: Vec<_> = lock(&self.workers).drain(..).collect();
        for h in workers {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(remaining(deadline).min(Duration::from_millis(1)));
            }
            if h.is_finished() {
                if h.join().is_err() {
                    tracing::error!("checkpointer worker thread panicked");
                }
            } else {
                left += 1;
            }
        }
        left
    }
}

impl Drop for Scheduler {
    /// Shuts down, waiting at most 100 ms: dropping a scheduler never hangs.
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(100));
    }
}

/// When a job is next due: its next periodic run, or the byte trigger's backstop
/// check ([`CheckpointerConfig::poll`]), whichever comes first.
fn next_due(now: Instant, next_periodic: Option<Instant>, cfg: &CheckpointerConfig) -> Instant {
    let poll = cfg
        .wal_bytes
        .map(|_| deadline_after(now, cfg.poll.max(MIN_INTERVAL)));
    match (next_periodic, poll) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        // Not reachable for an enabled config; check again in a while.
        (None, None) => deadline_after(now, Duration::from_secs(3600)),
    }
}

/// How late a periodic run may start so that one wake-up serves every job due
/// around the same time: a sixteenth of the interval, at most [`MAX_SLACK`]. With
/// thousands of stores on one scheduler the workers wake a few times per interval,
/// not once per store.
fn slack(cfg: &CheckpointerConfig) -> Duration {
    cfg.effective_interval()
        .map_or(MAX_SLACK, |i| (i / 16).min(MAX_SLACK))
}

/// The most a periodic checkpoint is delayed to share a wake-up: 50 ms.
const MAX_SLACK: Duration = Duration::from_millis(50);

/// How often a parked job is looked at anyway (the wake-up at the store's next change
/// is what it relies on; this only bounds the cost of a mistake): once a minute, or
/// at its next periodic run if that is later.
const PARKED_BACKSTOP: Duration = Duration::from_secs(60);

/// What a worker does with a job that is due.
enum Due {
    /// A checkpoint, for this reason.
    Run(Trigger),
    /// Nothing: a quiet store whose fingerprint did not change, or a byte
    /// trigger's backstop check below the threshold.
    Skip,
}

fn worker(sh: &Arc<SchedShared>) {
    let mut q = lock(&sh.queue);
    loop {
        if q.stopped {
            return;
        }
        let now = Instant::now();
        let (due, id) = match q.heap.peek() {
            None => {
                q = sh.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            Some(std::cmp::Reverse(top)) => *top,
        };
        // Stale entries (a removed job, a job re-scheduled or nudged since) go.
        let live = q
            .jobs
            .get(&id)
            .filter(|j| j.due == due && !j.in_flight)
            .map(|j| slack(&j.cfg));
        let Some(slack) = live else {
            q.heap.pop();
            continue;
        };
        if due > now {
            let wake = deadline_after(due, slack);
            q = sh
                .cv
                .wait_timeout(q, wake - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            continue;
        }
        q.heap.pop();
        let Some(job) = q.jobs.get_mut(&id) else {
            continue;
        };
        if job.removed {
            q.jobs.remove(&id);
            continue;
        }
        let Some(target) = job.target.upgrade() else {
            q.jobs.remove(&id);
            continue;
        };
        let now = Instant::now();
        let periodic = job.next_periodic.is_some_and(|t| now >= t);
        if periodic {
            job.next_periodic = job.cfg.effective_interval().map(|i| deadline_after(now, i));
        }
        let (cfg, next_periodic, quiet) = (job.cfg, job.next_periodic, job.quiet);
        job.in_flight = true;
        job.nudged = false;
        job.parked = false;
        drop(q);
        // The queue lock is released: the byte count, the fingerprint and the
        // checkpoint run without it. A panic is caught here too (the store's own
        // checkpoint catches its panics first), so the job is never left in flight.
        let mut now_quiet = quiet;
        // The fingerprint to park with: the store was quiet at it.
        let mut park_at = None;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let bytes_due = cfg
                .wal_bytes
                .is_some_and(|limit| target.wal_bytes_since() >= limit);
            if !bytes_due && !periodic {
                return;
            }
            let fingerprint = target.fingerprint();
            let what = if bytes_due {
                Due::Run(Trigger::Bytes)
            } else if quiet != Some(fingerprint) {
                Due::Run(Trigger::Periodic)
            } else {
                Due::Skip
            };
            match what {
                Due::Run(trigger) => {
                    now_quiet = target.run_checkpoint(trigger).then_some(fingerprint);
                    park_at = now_quiet;
                }
                Due::Skip => park_at = Some(fingerprint),
            }
        }));
        if let Err(payload) = ran {
            now_quiet = None;
            park_at = None;
            tracing::error!(
                panic = %panic_message(payload.as_ref()),
                "checkpoint job panicked; the scheduler carries on"
            );
        }
        // A quiet store is parked: nothing runs for it until its next change wakes
        // it. Otherwise re-arm the byte trigger from the current baseline (a
        // checkpoint, this one or a manual one, may have moved it).
        let parked = park_at.is_some_and(|fp| target.park(fp, sh.nudger(id)));
        if !parked {
            sh.arm(target.as_ref(), id, &cfg);
        }
        drop(target);
        let now = Instant::now();
        let next = next_due(now, next_periodic, &cfg);
        let parked_until = next.max(deadline_after(now, PARKED_BACKSTOP));
        q = lock(&sh.queue);
        let mut wake_removers = q.removers > 0;
        if let Some(job) = q.jobs.get_mut(&id) {
            job.in_flight = false;
            job.quiet = now_quiet;
            if !job.removed && job.target.strong_count() > 0 {
                // Nudged during the run: check the byte count again at once.
                let next = match (job.nudged, parked) {
                    (true, _) => Instant::now(),
                    (false, true) => parked_until,
                    (false, false) => next,
                };
                job.parked = parked && !job.nudged;
                job.nudged = false;
                job.due = next;
                q.heap.push(std::cmp::Reverse((next, id)));
            } else {
                q.jobs.remove(&id);
                wake_removers = true;
            }
        }
        if wake_removers {
            sh.cv.notify_all();
        }
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
    /// Whether the scheduler still runs this job (a shared scheduler may have been
    /// shut down under it).
    pub(crate) fn is_alive(&self) -> bool {
        match self {
            Attached::Own(s) => !s.is_shut_down(),
            Attached::Shared(sh, _) => !sh.is_stopped(),
        }
    }

    /// Detaches: stops a private scheduler, or removes the job from a shared one (never
    /// stopping it), waiting until `deadline` for a run in flight. Returns the number
    /// of threads or runs left behind.
    pub(crate) fn detach(self, deadline: Instant) -> usize {
        match self {
            Attached::Own(s) => s.stop(deadline),
            Attached::Shared(sh, id) => usize::from(!sh.remove(id, deadline)),
        }
    }
}
