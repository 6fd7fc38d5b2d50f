//! The store's lifecycle after open: background threads, the periodic checkpointer,
//! and `close` with its shutdown order.
//!
//! # Invariants kept here
//!
//! - **I8 Bounded shutdown**: every wait in [`Store::close_with`] and in `Drop` is
//!   bounded; cleanup failures are reported, never raised; only a failure to make
//!   appended data durable is an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Inner as StoreInner;
use super::{Inner, Store};
use crate::checkpoint::{CheckpointMode, CheckpointOutcome};
use crate::error::{Error, Result};
use crate::scheduler::{Attached, CheckpointerConfig, Scheduler, Trigger, Watched};
use crate::util::{deadline_after, lock, millis, remaining};
use crate::{CloseOptions, Seq, State};

/// What [`Store::close`] did.
#[derive(Debug, Clone, Default)]
pub struct CloseReport {
    /// The seq that is durable on disk.
    pub durable_seq: Seq,
    /// The final checkpoint, if one ran (it may have finished after its deadline,
    /// within [`CloseOptions::thread_timeout`], if it was past its last cancellation
    /// point). `None` when none was asked for, or when it did not run: then
    /// [`CloseReport::final_checkpoint_missed`] says why.
    pub final_checkpoint: Option<crate::CheckpointReport>,
    /// Why a requested final checkpoint produced no report (also logged at WARN, or
    /// at ERROR for a failure). `None` when it ran or none was asked for.
    pub final_checkpoint_missed: Option<FinalCheckpointMissed>,
    /// Cleanup failures (logged at ERROR; never raised).
    pub cleanup_failures: Vec<crate::CleanupFailure>,
    /// Background threads or checkpoint runs that did not stop within their bound and
    /// were left to finish on their own (each was cancelled first).
    pub threads_abandoned: usize,
    /// `true` when `close` returned while something of this store (an abandoned
    /// checkpoint stuck in a file-system call, or a background thread) still held
    /// it: the directory lock stays held until that call returns, so an immediate
    /// [`Store::open`] may fail with [`Error::Locked`](crate::Error::Locked); retry
    /// it. The checkpoint it runs is cancelled: it installs no snapshot, and it
    /// unlinks nothing but its own temp file. Logged at WARN. `false` means that
    /// when `close` returned, nothing of this store touched the directory any more
    /// and the lock was free.
    pub still_closing: bool,
    /// Time `close` took: everything it did, the drop of the store's internals (its
    /// state, unless [`CloseOptions::drop_in_background`] handed it to the
    /// reclaimer thread; its files; its lock) included.
    pub elapsed: Duration,
}

/// Why a final checkpoint asked of [`Store::close_with`] did not run
/// ([`CloseReport::final_checkpoint_missed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinalCheckpointMissed {
    /// A checkpoint that `close` had cancelled was still running at the final
    /// checkpoint's deadline (for example stuck in a slow `fdatasync`), so the final
    /// one never started.
    Busy,
    /// It started but had not finished at its deadline; it was cancelled.
    Deadline,
    /// It failed (the error is logged at ERROR).
    Failed,
    /// Its thread could not be started.
    NotStarted,
}

/// A stop flag that background threads wait on.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    pub(crate) fn stop(&self) {
        *lock(&self.stopped) = true;
        self.cv.notify_all();
    }
    /// Waits up to `d`; returns `true` if stopped.
    pub(crate) fn wait(&self, d: Duration) -> bool {
        let g = lock(&self.stopped);
        if *g {
            return true;
        }
        let (g, _) = self
            .cv
            .wait_timeout(g, d)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

impl<S: State> Store<S> {
    /// Closes the store with [`CloseOptions::default`]: no final checkpoint.
    pub fn close(self) -> Result<CloseReport> {
        self.close_with(CloseOptions::default())
    }

    /// Closes the store, in this order:
    ///
    /// 1. set the stop flag and cancel a running checkpoint (the snapshot writer
    ///    gives up at its next buffered write; on a shared [`Scheduler`] only this
    ///    store's checkpoint is cancelled);
    /// 2. detach the checkpointer and join background threads, waiting at most
    ///    [`CloseOptions::thread_timeout`] (a thread still running is left to finish
    ///    and counted in [`CloseReport::threads_abandoned`]);
    /// 3. log the checkpoint statistics (one INFO event);
    /// 4. the final checkpoint, if [`CloseOptions::final_checkpoint`] asks for one:
    ///    it first waits, within its deadline, for a cancelled checkpoint still
    ///    running to end, then runs. At the deadline it is cancelled, and `close`
    ///    waits at most [`CloseOptions::thread_timeout`] more for it to stop. One that
    ///    did not run is reported in [`CloseReport::final_checkpoint_missed`] with a
    ///    WARN, never as if it had run;
    /// 5. cleanup (part of the final checkpoint);
    /// 6. the final WAL sync;
    /// 7. release the directory lock.
    ///
    /// So `close` waits at most `thread_timeout` + `final_checkpoint` +
    /// `thread_timeout`, plus the final WAL sync. When it returns with
    /// [`CloseReport::still_closing`] `false`, nothing of this store touches the
    /// directory any more and the lock is free; otherwise the report says so (see
    /// there). Every duration is accepted, [`Duration::MAX`] included.
    ///
    /// Never panics. Cleanup failures are logged and returned in the report. The only
    /// error is a failure to make appended data durable (step 6).
    pub fn close_with(self, opts: CloseOptions) -> Result<CloseReport> {
        let start = Instant::now();
        let mut report = CloseReport {
            threads_abandoned: self.stop_threads(deadline_after(start, opts.thread_timeout)),
            ..CloseReport::default()
        };
        let stats = self.checkpoint_stats();
        tracing::info!(
            dir = %self.inner.dir.display(),
            n = stats.n,
            p50_ms = millis(stats.p50),
            p95_ms = millis(stats.p95),
            max_ms = millis(stats.max),
            total = stats.total,
            failures = stats.failures,
            cleanup_failures = stats.cleanup_failures,
            busy = stats.busy,
            "checkpoint statistics at close"
        );
        if let Some(deadline) = opts.final_checkpoint {
            self.final_checkpoint(deadline, opts.thread_timeout, &mut report);
        }
        // Bounded too: behind a group commit stuck on the disk (an abandoned thread's),
        // close stops waiting after `thread_timeout` and says so.
        let synced = self.inner.wal.sync_all_timeout(opts.thread_timeout);
        if let Ok(None) = synced {
            tracing::warn!(
                dir = %self.inner.dir.display(),
                bound_ms = millis(opts.thread_timeout),
                "final WAL sync waited its bound behind a sync stuck on the disk"
            );
        }
        report.durable_seq = self.inner.wal.durable_seq();
        // Anyone else still holding the store (an abandoned checkpoint or thread)
        // keeps the directory lock. Nobody can take a new hold once every job is
        // detached, so a count of one means the lock goes with `self`.
        report.still_closing = Arc::strong_count(&self.inner) > 1;
        if report.still_closing {
            tracing::warn!(
                dir = %self.inner.dir.display(),
                threads_abandoned = report.threads_abandoned,
                "store still closing: a cancelled checkpoint or thread is stuck in a \
                 file-system call and holds the directory lock until it returns"
            );
        }
        let dir = self.inner.dir.clone();
        // The store's internals go now, inside `elapsed`: the state (unless handed to
        // the reclaimer), the segment files, and the directory lock last.
        let inner = Arc::clone(&self.inner);
        drop(self);
        match Arc::try_unwrap(inner) {
            Ok(inner) if opts.drop_in_background => reclaim(inner),
            Ok(inner) => drop(inner),
            // Held by an abandoned thread (`still_closing`): it goes with that.
            Err(shared) => drop(shared),
        }
        report.elapsed = start.elapsed();
        tracing::info!(
            dir = %dir.display(),
            durable_seq = report.durable_seq,
            elapsed_ms = millis(report.elapsed),
            still_closing = report.still_closing,
            "store closed"
        );
        synced.map(|_| report)
    }

    /// Step 4 of [`Store::close_with`]: the final checkpoint on a thread of its own,
    /// bounded by `deadline`, then cancelled and waited for at most `cancel_wait`.
    fn final_checkpoint(
        &self,
        deadline: Duration,
        cancel_wait: Duration,
        report: &mut CloseReport,
    ) {
        let dir = self.inner.dir.display().to_string();
        let until = deadline_after(Instant::now(), deadline);
        let abort = Arc::new(AtomicBool::new(false));
        let inner = Arc::clone(&self.inner);
        let thread_abort = Arc::clone(&abort);
        let (tx, rx) = std::sync::mpsc::channel();
        sched_mark!("final", &self.inner.dir);
        let spawned = std::thread::Builder::new()
            .name("snapwal-final-checkpoint".into())
            .spawn(move || {
                let result = inner.ck.run_final(&inner.source(), until, &thread_abort);
                // Release the store before reporting, so that `close` returning
                // means the directory lock is released too.
                drop(inner);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            tracing::error!(dir, error = %e, "could not start the final checkpoint");
            report.final_checkpoint_missed = Some(FinalCheckpointMissed::NotStarted);
            return;
        }
        let mut received = rx.recv_timeout(remaining(until));
        let mut cancelled = false;
        if received.is_err() {
            // Abort first, then cancel: the run either sees the abort before it
            // starts, or the cancel flag during its writes (see `run_final`).
            abort.store(true, Ordering::SeqCst);
            self.inner.ck.cancel.store(true, Ordering::SeqCst);
            cancelled = true;
            received = rx.recv_timeout(remaining(deadline_after(Instant::now(), cancel_wait)));
        }
        let missed = match received {
            Ok(Ok(Some(rep))) => {
                report
                    .cleanup_failures
                    .extend(rep.cleanup_failures.iter().cloned());
                report.final_checkpoint = Some(rep);
                None
            }
            Ok(Ok(None)) => Some(FinalCheckpointMissed::Busy),
            Ok(Err(crate::Error::Cancelled)) => Some(FinalCheckpointMissed::Deadline),
            Ok(Err(e)) => {
                tracing::error!(dir, error = %e, "final checkpoint failed");
                Some(FinalCheckpointMissed::Failed)
            }
            Err(_) => {
                report.threads_abandoned += 1;
                Some(FinalCheckpointMissed::Deadline)
            }
        };
        match missed {
            Some(FinalCheckpointMissed::Busy) => tracing::warn!(
                dir,
                deadline_ms = millis(deadline),
                "final checkpoint did not run: a cancelled checkpoint was still running at its deadline"
            ),
            Some(FinalCheckpointMissed::Deadline) => tracing::warn!(
                dir,
                deadline_ms = millis(deadline),
                "final checkpoint did not finish before its deadline; cancelled"
            ),
            _ if cancelled => tracing::warn!(
                dir,
                deadline_ms = millis(deadline),
                "final checkpoint finished after its deadline, past its last cancellation point"
            ),
            _ => {}
        }
        report.final_checkpoint_missed = missed;
    }

    pub(crate) fn spawn(
        &self,
        name: &'static str,
        body: impl FnOnce(&Inner<S>) + Send + 'static,
    ) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&inner))
            .map_err(|e| Error::io("spawn thread", &self.inner.dir, e))?;
        let mut threads = lock(&self.threads);
        // Threads that ended (an async checkpoint's) are joined here, so the list
        // stays as long as what runs.
        let (done, running): (Vec<_>, Vec<_>) =
            threads.drain(..).partition(|(_, h)| h.is_finished());
        *threads = running;
        threads.push((name, handle));
        drop(threads);
        for (name, handle) in done {
            if handle.join().is_err() {
                tracing::error!(thread = name, "background thread panicked");
            }
        }
        Ok(())
    }

    /// Stops background threads: signals them, cancels a running checkpoint, and
    /// waits until `deadline` in total. Returns how many did not finish in time (they
    /// are left to finish alone; they hold the store open until they do).
    pub(crate) fn stop_threads(&self, deadline: Instant) -> usize {
        self.inner.stop.stop();
        #[cfg(feature = "async")]
        self.inner.wal.stop_syncer();
        if !mutant!(CloseWithoutCancel) {
            self.inner.ck.cancel.store(true, Ordering::SeqCst);
        }
        sched_mark!("cancel", &self.inner.dir);
        // Take the checkpointer out first: its lock is not held while waiting.
        let attached = lock(&self.checkpointer).take();
        let mut abandoned = attached.map_or(0, |c| c.detach(deadline));
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for (name, handle) in threads {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(remaining(deadline).min(Duration::from_millis(1)));
            }
            if handle.is_finished() {
                if handle.join().is_err() {
                    tracing::error!(thread = name, "background thread panicked");
                }
            } else {
                tracing::warn!(
                    thread = name,
                    "background thread did not stop in time; leaving it to finish"
                );
                abandoned += 1;
            }
        }
        abandoned
    }
}

/// Drops a closed store's internals, handing its versions of the state to the
/// reclaimer thread: the segment files are closed and the directory lock released
/// here, before `close` returns; only the memory is freed in the background.
fn reclaim<S: State>(inner: StoreInner<S>) {
    let StoreInner {
        published,
        writer,
        wal,
        _lock,
        ..
    } = inner;
    drop(wal);
    drop(_lock);
    reclaimer::free(Box::new((published, writer)));
}

/// Frees versions the writer let go of on the reclaimer thread (freeing a large state
/// takes as long as copying it). A version someone else still holds (a reader, an
/// appender waiting for its sync) is only let go of here, which costs one atomic
/// decrement: its last holder frees it. So the reclaimer is woken only for versions
/// this call frees; under `Always` with many appenders nearly every released version
/// is still held, and waking it for each cost two context switches per append.
pub(super) fn free_in_background<S: State>(released: Vec<Arc<crate::Versioned<S>>>) {
    // `Arc::into_inner` is atomic: it returns the value only to the last holder, so a
    // holder letting go at the same moment cannot make both sides skip the free.
    let last: Vec<crate::Versioned<S>> = released.into_iter().filter_map(Arc::into_inner).collect();
    if !last.is_empty() {
        reclaimer::free(Box::new(last));
    }
}

/// One thread per process that frees large values handed to it, so that a caller
/// (`close` with [`CloseOptions::drop_in_background`], an appender whose writer let
/// go of a version) does not pay for it.
mod reclaimer {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Mutex, OnceLock};

    type Garbage = Box<dyn Send>;

    fn sender() -> Option<&'static Mutex<Sender<Garbage>>> {
        static TX: OnceLock<Option<Mutex<Sender<Garbage>>>> = OnceLock::new();
        TX.get_or_init(|| {
            let (tx, rx) = channel::<Garbage>();
            std::thread::Builder::new()
                .name("snapwal-reclaim".into())
                .spawn(move || {
                    for garbage in rx {
                        drop(garbage);
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
    }

    /// Frees `garbage` on the reclaimer thread, or here if it cannot be started.
    pub(super) fn free(garbage: Garbage) {
        match sender() {
            Some(tx) => {
                if let Err(back) = crate::util::lock(tx).send(garbage) {
                    drop(back.0);
                }
            }
            None => drop(garbage),
        }
    }
}

impl<S: State> Drop for Store<S> {
    /// Stops background threads (waiting at most a moment for each) without syncing:
    /// dropping a store never hangs. Appends already returned under `Always` are
    /// durable; others are in the OS page cache.
    fn drop(&mut self) {
        self.stop_threads(deadline_after(Instant::now(), Duration::from_millis(100)));
        // No task waits for ever: a future leaked with a registered waker gets `Ok`
        // if its target was met (by `close`'s final sync, for one), else `Closed`.
        #[cfg(feature = "async")]
        self.inner.wal.close_waiters();
    }
}

impl<S: State> Store<S> {
    /// Starts the periodic checkpointer on a thread of its own (named
    /// `snapwal-ckpt-0`). Returns `Ok(false)` and starts nothing when `cfg` is
    /// disabled (no interval and no byte trigger). `open` never starts it, so one-shot
    /// tools and tests are unaffected.
    ///
    /// Fails with [`Error::InvalidOptions`] if a checkpointer is already running:
    /// of concurrent calls, exactly one succeeds (the check and the attach are one
    /// step). A checkpointer whose shared [`Scheduler`] was shut down does not count:
    /// it is replaced.
    ///
    /// Checkpoints never overlap (see [`Store::checkpoint`]); each logs one INFO event
    /// with `mode`, `busy`, `seq`, `log_records`, `checkpointed_records`,
    /// `snapshot_bytes`, `segments_removed`, `snapshots_pruned`, `elapsed_ms`, and a
    /// WARN "checkpoint slow" past [`CheckpointerConfig::slow_threshold`].
    pub fn start_checkpointer(&self, cfg: CheckpointerConfig) -> Result<bool> {
        let mut slot = lock(&self.checkpointer);
        if !self.prepare_checkpointer(&mut slot, &cfg)? {
            return Ok(false);
        }
        let sched = Scheduler::new(1)?;
        sched.add(&self.watched(), cfg)?;
        *slot = Some(Attached::Own(sched));
        Ok(true)
    }

    /// Registers this store's checkpoints on a shared [`Scheduler`]. Returns
    /// `Ok(false)` when `cfg` is disabled.
    ///
    /// Fails with [`Error::SchedulerStopped`] if `scheduler` was shut down, and with
    /// [`Error::InvalidOptions`] if a checkpointer is already running (as
    /// [`Store::start_checkpointer`]; of concurrent calls exactly one succeeds).
    pub fn start_checkpointer_on(
        &self,
        scheduler: &Scheduler,
        cfg: CheckpointerConfig,
    ) -> Result<bool> {
        let mut slot = lock(&self.checkpointer);
        if !self.prepare_checkpointer(&mut slot, &cfg)? {
            return Ok(false);
        }
        let id = scheduler.add(&self.watched(), cfg)?;
        *slot = Some(Attached::Shared(Arc::clone(&scheduler.shared), id));
        Ok(true)
    }

    /// Checks, under the caller's hold of the checkpointer slot, that none is
    /// running (dropping one whose scheduler was shut down) and that `cfg` is enabled.
    fn prepare_checkpointer(
        &self,
        slot: &mut Option<Attached>,
        cfg: &CheckpointerConfig,
    ) -> Result<bool> {
        if slot.as_ref().is_some_and(Attached::is_alive) {
            return Err(Error::InvalidOptions("a checkpointer is already running"));
        }
        if let Some(dead) = slot.take() {
            tracing::info!(
                dir = %self.inner.dir.display(),
                "the previous checkpointer's scheduler was shut down; replacing it"
            );
            // Its workers are gone: nothing is in flight, so this does not wait.
            dead.detach(Instant::now());
        }
        if !cfg.is_enabled() {
            tracing::info!(
                "checkpointer disabled (no interval, no byte trigger); no thread started"
            );
            return Ok(false);
        }
        self.inner.ck.set_slow_threshold(cfg.slow_threshold);
        Ok(true)
    }

    /// The store as a scheduler job (the scheduler keeps only a weak reference).
    fn watched(&self) -> Arc<dyn Watched> {
        Arc::clone(&self.inner) as Arc<dyn Watched>
    }
}

impl<S: State> Watched for StoreInner<S> {
    fn run_checkpoint(&self, trigger: Trigger) -> bool {
        let mode = match trigger {
            Trigger::Periodic => CheckpointMode::Periodic,
            Trigger::Bytes => CheckpointMode::Bytes,
        };
        // The outcome is logged and counted by `checkpoint`.
        matches!(
            self.checkpoint(mode),
            Ok(rep) if rep.outcome == CheckpointOutcome::Unchanged && rep.cleanup_failures.is_empty()
        )
    }

    fn wal_bytes_since(&self) -> u64 {
        self.ck.wal_bytes_since(&self.wal)
    }

    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.published.load().seq.hash(&mut h);
        for (name, p) in self.positions.save() {
            name.hash(&mut h);
            (p.offset, p.inode, p.timestamp).hash(&mut h);
        }
        h.finish()
    }

    fn watch_wal_bytes(&self, limit: u64, nudge: Option<crate::wal::Nudge>) {
        let left = limit.saturating_sub(self.ck.wal_bytes_since(&self.wal));
        self.wal
            .watch_bytes(self.wal.staged_bytes().saturating_add(left), nudge);
    }

    fn park(&self, fingerprint: u64, wake: crate::wal::Nudge) -> bool {
        // Arm both wake-ups first, then look: a change after this point fires one of
        // them; a change before it shows in the fingerprint (see `ChangeWake` and
        // `Wal::watch_bytes` for the pairing).
        self.positions.wake().arm(Arc::clone(&wake));
        self.wal
            .watch_bytes(self.wal.staged_bytes().saturating_add(1), Some(wake));
        if self.fingerprint() != fingerprint {
            return false;
        }
        self.wal.close_idle_file();
        true
    }
}

#[cfg(test)]
mod tests {
    //! The parking contract, called directly: a change before `park` looks keeps the
    //! store unparked; a change after it runs the wake-up, once. (The many-stores
    //! tests check the same through a running scheduler.)
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::scheduler::Watched;
    use crate::{Options, Position, Store, SyncPolicy};

    #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    struct Sum(u64);
    impl crate::State for Sum {
        type Event = u64;
        fn apply(&mut self, n: &u64) {
            self.0 += n;
        }
    }

    fn counting() -> (crate::wal::Nudge, Arc<AtomicUsize>) {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&woken);
        let nudge: crate::wal::Nudge = Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        (nudge, woken)
    }

    fn store(dir: &std::path::Path) -> Store<Sum> {
        Store::open(dir, Options::default().sync(SyncPolicy::Always)).expect("open")
    }

    #[test]
    fn a_change_after_the_fingerprint_keeps_the_store_unparked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        s.append(&1).expect("append");
        let fp = s.inner.fingerprint();
        s.append(&2).expect("append");
        let (nudge, _) = counting();
        assert!(!s.inner.park(fp, nudge), "an append since the fingerprint");

        let fp = s.inner.fingerprint();
        s.position("p").set(Position {
            offset: 1,
            ..Position::default()
        });
        let (nudge, _) = counting();
        assert!(
            !s.inner.park(fp, nudge),
            "a position move since the fingerprint"
        );
        s.close().expect("close");
    }

    #[test]
    fn a_change_after_parking_wakes_once_and_the_segment_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        s.append(&1).expect("append");
        let (nudge, woken) = counting();
        assert!(s.inner.park(s.inner.fingerprint(), nudge));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        s.append(&2).expect("append");
        s.append(&3).expect("append");
        assert_eq!(woken.load(Ordering::SeqCst), 1, "one wake-up per park");

        let (nudge, woken) = counting();
        assert!(s.inner.park(s.inner.fingerprint(), nudge));
        let cell = s.position("p");
        cell.set(Position::default());
        cell.set(Position::default());
        assert_eq!(woken.load(Ordering::SeqCst), 1, "one wake-up per park");
        s.close().expect("close");
        let s = store(dir.path());
        assert_eq!(s.current().0, 6);
        s.close().expect("close");
    }
}
