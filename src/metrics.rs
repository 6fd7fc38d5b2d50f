//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): what operators graph and alert on, exported by whichever recorder the
//! application installs (Prometheus, StatsD, ...).
//!
//! Every metric carries a `store` label: [`Options::metrics_label`](crate::Options::metrics_label),
//! or the store directory's last component. Names follow the Prometheus conventions
//! (a `snapwal_` prefix, base units, `_total` for counters):
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `snapwal_append_duration_seconds` | histogram | one `append`/`append_batch`/`append_with`, entry to return: every one under `Always` (durable), one in [`APPEND_SAMPLE`] per thread otherwise |
//! | `snapwal_group_commit_records` | histogram | records made durable by one group commit |
//! | `snapwal_fdatasync_duration_seconds` | histogram | one `fdatasync` of a WAL segment |
//! | `snapwal_checkpoint_duration_seconds` | histogram | one checkpoint, whatever its outcome |
//! | `snapwal_checkpoint_bytes` | histogram | bytes written by one checkpoint (snapshot or positions record) |
//! | `snapwal_recovery_duration_seconds` | histogram | one `open`'s recovery |
//! | `snapwal_records_total` | counter | records appended |
//! | `snapwal_record_bytes_total` | counter | bytes of those records, framing included |
//! | `snapwal_segment_rotations_total` | counter | WAL segments created |
//! | `snapwal_segments_unlinked_total` | counter | WAL segments removed by cleanup |
//! | `snapwal_cleanup_failures_total` | counter | files cleanup could not remove |
//! | `snapwal_backpressure_waits_total` | counter | appends that waited for the staging bound |
//! | `snapwal_staged_bytes` | gauge | bytes staged, not yet handed to the OS |
//! | `snapwal_wal_bytes_since_snapshot` | gauge | WAL bytes appended since the last checkpoint started |
//!
//! A store takes its handles from the recorder installed when it opens: install the
//! recorder first. Without a recorder every handle is a no-op; without the feature
//! this module compiles to nothing.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! let opts = snapwal::Options::default().metrics_label("orders");
//! assert_eq!(opts.metrics_label.as_deref(), Some("orders"));
//! # }
//! ```

use std::time::Duration;

/// A start time, kept only when metrics are compiled in (and, for a sampled timer,
/// only for the appends in the sample).
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer(Option<std::time::Instant>);

/// A start time, kept only when metrics are compiled in.
#[cfg(not(feature = "metrics"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer;

/// One append in this many per thread is timed when the append does not wait for the
/// disk: a clock read and a histogram record would otherwise be a tenth of a
/// microsecond-long append.
pub const APPEND_SAMPLE: u32 = 16;

impl Timer {
    /// Always timed.
    #[inline(always)]
    pub(crate) fn start() -> Self {
        #[cfg(feature = "metrics")]
        return Timer(Some(std::time::Instant::now()));
        #[cfg(not(feature = "metrics"))]
        Timer
    }

    /// Timed for one call in [`APPEND_SAMPLE`] on this thread, unless `always`.
    #[inline(always)]
    pub(crate) fn sampled(always: bool) -> Self {
        #[cfg(feature = "metrics")]
        {
            thread_local!(static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
            let due = always
                || CALLS.with(|c| {
                    let n = c.get().wrapping_add(1);
                    c.set(n);
                    n % APPEND_SAMPLE == 0
                });
            Timer(due.then(std::time::Instant::now))
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = always;
            Timer
        }
    }
}

#[cfg(feature = "metrics")]
pub(crate) use enabled::Metrics;

#[cfg(feature = "metrics")]
mod enabled {
    use super::{Duration, Timer};
    use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

    /// The handles of one store, resolved once at open.
    pub(crate) struct Metrics {
        append_seconds: Histogram,
        group_commit_records: Histogram,
        fdatasync_seconds: Histogram,
        checkpoint_seconds: Histogram,
        checkpoint_bytes: Histogram,
        recovery_seconds: Histogram,
        records: Counter,
        record_bytes: Counter,
        rotations: Counter,
        unlinked: Counter,
        cleanup_failures: Counter,
        backpressure_waits: Counter,
        staged_bytes: Gauge,
        wal_since_snapshot: Gauge,
    }

    impl std::fmt::Debug for Metrics {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Metrics").finish_non_exhaustive()
        }
    }

    impl Metrics {
        /// Handles that record nothing (a log used on its own).
        pub(crate) fn noop() -> Self {
            Metrics {
                append_seconds: Histogram::noop(),
                group_commit_records: Histogram::noop(),
                fdatasync_seconds: Histogram::noop(),
                checkpoint_seconds: Histogram::noop(),
                checkpoint_bytes: Histogram::noop(),
                recovery_seconds: Histogram::noop(),
                records: Counter::noop(),
                record_bytes: Counter::noop(),
                rotations: Counter::noop(),
                unlinked: Counter::noop(),
                cleanup_failures: Counter::noop(),
                backpressure_waits: Counter::noop(),
                staged_bytes: Gauge::noop(),
                wal_since_snapshot: Gauge::noop(),
            }
        }

        pub(crate) fn new(store: &str) -> Self {
            let l = [("store", store.to_owned())];
            Metrics {
                append_seconds: histogram!("snapwal_append_duration_seconds", &l),
                group_commit_records: histogram!("snapwal_group_commit_records", &l),
                fdatasync_seconds: histogram!("snapwal_fdatasync_duration_seconds", &l),
                checkpoint_seconds: histogram!("snapwal_checkpoint_duration_seconds", &l),
                checkpoint_bytes: histogram!("snapwal_checkpoint_bytes", &l),
                recovery_seconds: histogram!("snapwal_recovery_duration_seconds", &l),
                records: counter!("snapwal_records_total", &l),
                record_bytes: counter!("snapwal_record_bytes_total", &l),
                rotations: counter!("snapwal_segment_rotations_total", &l),
                unlinked: counter!("snapwal_segments_unlinked_total", &l),
                cleanup_failures: counter!("snapwal_cleanup_failures_total", &l),
                backpressure_waits: counter!("snapwal_backpressure_waits_total", &l),
                staged_bytes: gauge!("snapwal_staged_bytes", &l),
                wal_since_snapshot: gauge!("snapwal_wal_bytes_since_snapshot", &l),
            }
        }

        pub(crate) fn appended(
            &self,
            t: Timer,
            records: u64,
            bytes: u64,
            wal_since: impl FnOnce() -> u64,
        ) {
            self.records.increment(records);
            self.record_bytes.increment(bytes);
            // The gauge is a level: the timed appends are enough to keep it current.
            if let Some(t) = t.0 {
                self.append_seconds.record(t.elapsed());
                self.wal_since_snapshot.set(wal_since() as f64);
            }
        }
        pub(crate) fn group_commit(&self, records: u64) {
            self.group_commit_records.record(records as f64);
        }
        pub(crate) fn fdatasync(&self, t: Timer) {
            if let Some(t) = t.0 {
                self.fdatasync_seconds.record(t.elapsed());
            }
        }
        pub(crate) fn checkpoint(&self, t: Timer, bytes: u64, wal_since: impl FnOnce() -> u64) {
            if let Some(t) = t.0 {
                self.checkpoint_seconds.record(t.elapsed());
            }
            self.checkpoint_bytes.record(bytes as f64);
            self.wal_since_snapshot.set(wal_since() as f64);
        }
        pub(crate) fn recovered(&self, elapsed: Duration) {
            self.recovery_seconds.record(elapsed);
        }
        pub(crate) fn rotation(&self) {
            self.rotations.increment(1);
        }
        pub(crate) fn unlinked(&self, n: u64) {
            self.unlinked.increment(n);
        }
        pub(crate) fn cleanup_failures(&self, n: u64) {
            self.cleanup_failures.increment(n);
        }
        pub(crate) fn backpressure_wait(&self) {
            self.backpressure_waits.increment(1);
        }
        pub(crate) fn staged(&self, bytes: u64) {
            self.staged_bytes.set(bytes as f64);
        }
    }
}

/// Without the `metrics` feature: every call compiles to nothing.
#[cfg(not(feature = "metrics"))]
#[derive(Debug)]
pub(crate) struct Metrics;

#[cfg(not(feature = "metrics"))]
#[allow(clippy::unused_self)]
impl Metrics {
    pub(crate) fn noop() -> Self {
        Metrics
    }
    pub(crate) fn new(_store: &str) -> Self {
        Metrics
    }
    #[inline(always)]
    pub(crate) fn appended(&self, _: Timer, _: u64, _: u64, _: impl FnOnce() -> u64) {}
    #[inline(always)]
    pub(crate) fn group_commit(&self, _: u64) {}
    #[inline(always)]
    pub(crate) fn fdatasync(&self, _: Timer) {}
    #[inline(always)]
    pub(crate) fn checkpoint(&self, _: Timer, _: u64, _: impl FnOnce() -> u64) {}
    #[inline(always)]
    pub(crate) fn recovered(&self, _: Duration) {}
    #[inline(always)]
    pub(crate) fn rotation(&self) {}
    #[inline(always)]
    pub(crate) fn unlinked(&self, _: u64) {}
    #[inline(always)]
    pub(crate) fn cleanup_failures(&self, _: u64) {}
    #[inline(always)]
    pub(crate) fn backpressure_wait(&self) {}
    #[inline(always)]
    pub(crate) fn staged(&self, _: u64) {}
}
