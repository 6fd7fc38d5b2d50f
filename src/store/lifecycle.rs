//! The store's lifecycle after open: background threads, the periodic checkpointer,
//! and `close` with its shutdown order.
//!
//! # Invariants kept here
//!
//! - **I8 Bounded shutdown**: every wait in [`Store::close_with`] and in `Drop` is
//!   bounded; cleanup failures are reported, never raised; only a failure to make
//!   appended data durable is an error.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Inner, Store};
use crate::checkpoint::CheckpointMode;
use crate::error::{Error, Result};
use crate::scheduler::{Attached, CheckpointerConfig, Scheduler, Target};
use crate::util::lock;
use crate::{CloseOptions, Seq, State};

/// What [`Store::close`] did.
#[derive(Debug, Clone, Default)]
pub struct CloseReport {
    /// The seq that is durable on disk.
    pub durable_seq: Seq,
    /// The final checkpoint, if one ran.
    pub final_checkpoint: Option<crate::CheckpointReport>,
    /// Cleanup failures (logged at ERROR; never raised).
    pub cleanup_failures: Vec<crate::CleanupFailure>,
    /// Background threads that did not stop within their bound and were left to
    /// finish on their own.
    pub threads_abandoned: usize,
    /// Time `close` took.
    pub elapsed: Duration,
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
            self.inner.ck.cancel.store(false, Ordering::Release);
            let inner = Arc::clone(&self.inner);
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("snapwal-final-checkpoint".into())
                .spawn(move || {
                    let result = inner.checkpoint(CheckpointMode::Shutdown);
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
                        self.inner.ck.cancel.store(true, Ordering::Release);
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
        lock(&self.threads).push((name, handle));
        Ok(())
    }

    /// Stops background threads: signals them and waits up to `bound` in total.
    /// Returns how many did not finish in time (they are left to finish alone; they
    /// hold the store open until they do).
    pub(crate) fn stop_threads(&self, bound: Duration) -> usize {
        self.inner.stop.stop();
        self.inner.ck.cancel.store(true, Ordering::Release);
        let deadline = Instant::now() + bound;
        let mut abandoned = lock(&self.checkpointer)
            .take()
            .map_or(0, |c| c.detach(bound));
        for (name, handle) in lock(&self.threads).drain(..) {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if handle.is_finished() {
                if handle.join().is_err() {
                    tracing::error!(thread = name, "background thread panicked");
                }
            } else {
                tracing::warn!(
                    thread = name,
                    bound_ms = bound.as_millis() as u64,
                    "background thread did not stop in time; leaving it to finish"
                );
                abandoned += 1;
            }
        }
        abandoned
    }
}

impl<S: State> Drop for Store<S> {
    /// Stops background threads (waiting at most a moment for each) without syncing:
    /// dropping a store never hangs. Appends already returned under `Always` are
    /// durable; others are in the OS page cache.
    fn drop(&mut self) {
        self.stop_threads(Duration::from_millis(100));
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
            return Err(Error::InvalidOptions("a checkpointer is already running"));
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

    fn weak_target(&self) -> std::sync::Weak<dyn Target> {
        let strong: Arc<dyn Target> = Arc::clone(&self.inner) as Arc<dyn Target>;
        Arc::downgrade(&strong)
    }
}
