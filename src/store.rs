//! The store: open and recover, append, publish, read, sync, close.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::checkpoint::Stats;
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::position::{Position, PositionCell, Positions};
use crate::wal::{self, lock, Wal, WalOptions};
use crate::{snapshot, Options, Seq, State, SyncPolicy};

/// A state together with the seq of the last event applied to it.
///
/// This is what the store publishes: one `Arc` holding both, so a reader or a
/// checkpoint always sees a state that matches its seq exactly.
#[derive(Debug, Clone, Default)]
pub struct Versioned<S> {
    seq: Seq,
    state: S,
}

impl<S> Versioned<S> {
    /// The seq of the last event applied (0 for the empty state).
    pub fn seq(&self) -> Seq {
        self.seq
    }
    /// The state.
    pub fn state(&self) -> &S {
        &self.state
    }
}

impl<S> Deref for Versioned<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.state
    }
}

/// What [`Store::open`] found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// The seq of the recovered state.
    pub seq: Seq,
    /// The snapshot recovery started from (its seq), if any.
    pub snapshot_seq: Option<Seq>,
    /// Snapshots that failed validation and were skipped, with the reason. Once
    /// recovery succeeds they are renamed to `<name>.corrupt`, kept for inspection.
    pub snapshots_skipped: Vec<(PathBuf, String)>,
    /// Records replayed from the WAL.
    pub records_replayed: u64,
    /// Bytes of those records.
    pub bytes_replayed: u64,
    /// A torn tail that was cut: (segment, offset, bytes).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Segments moved aside under [`RecoveryPolicy::SalvagePrefix`](crate::RecoveryPolicy::SalvagePrefix).
    pub quarantined: Vec<PathBuf>,
    /// Snapshot temp files left by a crash and removed.
    pub temp_files_removed: usize,
    /// Time recovery took.
    pub elapsed: Duration,
}

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

/// Everything shared between the store handle and its background threads.
pub(crate) struct Inner<S: State> {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) snap_dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) store_id: u64,
    pub(crate) wal: Wal,
    /// The writer section: the only place appenders serialize. Holds the writer's
    /// current version; never held across a syscall.
    writer: Mutex<Arc<Versioned<S>>>,
    /// The published version: readers and checkpoints load it without a lock.
    pub(crate) published: ArcSwap<Versioned<S>>,
    pub(crate) positions: Positions,
    /// Set while a checkpoint runs: the mechanism that prevents overlap.
    pub(crate) checkpoint_running: AtomicBool,
    /// Set while closing: a running checkpoint gives up at its next buffered write.
    pub(crate) cancel: AtomicBool,
    /// Seq of the newest snapshot on disk (0 if none).
    pub(crate) last_snapshot_seq: AtomicU64,
    /// WAL bytes staged when the last checkpoint started.
    pub(crate) wal_bytes_at_checkpoint: AtomicU64,
    pub(crate) stats: Stats,
    /// Checkpoints slower than this log a WARN (nanoseconds).
    pub(crate) slow_ns: AtomicU64,
    pub(crate) stop: Stop,
    _lock: Box<dyn LockGuard>,
}

/// A crash-safe state store. See the [crate docs](crate) for an overview.
///
/// `Store` is `Send + Sync`: share it (for example in an `Arc`) and append from any
/// number of threads. Appends serialize only in a short in-memory writer section;
/// reads, checkpoints and cleanup take no lock an appender takes.
pub struct Store<S: State> {
    pub(crate) inner: Arc<Inner<S>>,
    pub(crate) threads: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    pub(crate) checkpointer: Mutex<Option<crate::checkpoint::Attached>>,
}

impl<S: State> std::fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("seq", &self.inner.published.load().seq)
            .finish_non_exhaustive()
    }
}

type SnapshotBody<S> = (S, Vec<(String, Position)>);

fn random_id() -> u64 {
    let mut buf = [0u8; 8];
    match rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_le_bytes(buf),
        // Extremely unlikely; the id only guards against mixing files of two stores.
        _ => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 32)
        }
    }
}

impl<S: State> Store<S> {
    /// Opens (creating if needed) the store in `dir`, takes its lock and recovers.
    ///
    /// Recovery: remove snapshot temp files left by a crash → load the newest snapshot
    /// that validates (falling back to older ones, logging why) → replay the WAL
    /// records after it → cut a torn tail (per [`Options::recovery`]) → sync what was
    /// recovered → publish. A second `open` of the same directory, from this process
    /// or another, fails with [`Error::Locked`] while this store is open.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Default, Serialize, Deserialize)]
    /// # struct Counter { total: i64 }
    /// # impl snapwal::State for Counter {
    /// #     type Event = i64;
    /// #     fn apply(&mut self, n: &i64) { self.total += n }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let store = snapwal::Store::<Counter>::open(dir.path(), snapwal::Options::default())?;
    /// store.append(&5)?;
    /// assert_eq!(store.current().total, 5);
    /// assert!(matches!(
    ///     snapwal::Store::<Counter>::open(dir.path(), snapwal::Options::default()),
    ///     Err(snapwal::Error::Locked { .. })
    /// ));
    /// store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        Self::open_with_report(dir, options).map(|(s, _)| s)
    }

    /// Like [`Store::open`], also returning what recovery found.
    pub fn open_with_report(dir: impl AsRef<Path>, options: Options) -> Result<(Self, OpenReport)> {
        let start = Instant::now();
        options.validate()?;
        let fs = Arc::clone(&options.fs);
        let dir = dir.as_ref().to_path_buf();
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        for d in [&dir, &wal_dir, &snap_dir] {
            fs.create_dir_all(d)
                .map_err(|e| Error::io("create dir", d, e))?;
        }
        // A directory just created is durable only once its parent is synced: without
        // this a power loss could drop `wal/` and every acknowledged record in it.
        let parent = match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
            p => p,
        };
        for d in parent.into_iter().chain([dir.as_path()]) {
            fs.sync_dir(d).map_err(|e| Error::io("fsync dir", d, e))?;
        }
        let lock_path = dir.join("LOCK");
        let guard = fs.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked {
                path: lock_path.clone(),
            },
            _ => Error::io("lock", &lock_path, e),
        })?;
        let mut report = OpenReport {
            temp_files_removed: snapshot::remove_temps(fs.as_ref(), &snap_dir)?,
            ..OpenReport::default()
        };

        // Newest valid snapshot, falling back to older ones.
        let mut base: Option<(Seq, u64, SnapshotBody<S>)> = None;
        // The newest snapshot that failed validation: its seq and why.
        let mut first_skip: Option<(Seq, Error)> = None;
        for (seq, path) in snapshot::list(fs.as_ref(), &snap_dir)?.into_iter().rev() {
            match snapshot::load::<SnapshotBody<S>>(fs.as_ref(), &path, None) {
                Ok((h, body)) => {
                    base = Some((seq, h.store_id, body));
                    break;
                }
                Err(e @ (Error::UnsupportedVersion { .. } | Error::Decode { .. })) => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::warn!(snapshot = %path.display(), error = %e,
                        "snapshot does not validate; falling back to an older one");
                    report.snapshots_skipped.push((path, e.to_string()));
                    first_skip.get_or_insert((seq, e));
                }
            }
        }
        let (snap_seq, snap_id, (mut state, saved_positions)) = match base {
            Some((seq, id, body)) => (seq, Some(id), body),
            None => (0, None, (S::default(), Vec::new())),
        };
        report.snapshot_seq = snap_id.map(|_| snap_seq);

        let replayed =
            wal::replay(
                fs.as_ref(),
                &wal_dir,
                snap_seq,
                snap_id,
                options.recovery,
                |rec, path| {
                    let (event, rest) = postcard::take_from_bytes::<S::Event>(rec.payload)
                        .map_err(|source| Error::Decode {
                            path: path.into(),
                            offset: rec.offset,
                            source,
                        })?;
                    if !rest.is_empty() {
                        return Err(Error::corrupt(path, rec.offset, "event has trailing bytes"));
                    }
                    state.apply(&event);
                    Ok(())
                },
            );
        let replayed = match (replayed, first_skip) {
            // A skipped snapshot explains a WAL that does not reach back far enough.
            (Err(Error::MissingRecords { .. }), Some((_, skip))) => return Err(skip),
            // So does a WAL that ends before the newest skipped snapshot (its seq was
            // acknowledged): recovering short of it would lose data in silence.
            (Ok(r), Some((skipped_seq, skip)))
                if options.recovery != crate::RecoveryPolicy::SalvagePrefix
                    && r.next_seq <= skipped_seq =>
            {
                return Err(skip)
            }
            (r, _) => r?,
        };
        let seq = replayed.next_seq - 1;
        let store_id = replayed.store_id.or(snap_id).unwrap_or_else(random_id);
        report.seq = seq;
        report.records_replayed = replayed.records_replayed;
        report.bytes_replayed = replayed.bytes_replayed;
        report.torn_tail = replayed.torn_tail;
        report.quarantined = replayed.quarantined;
        // Recovery succeeded without the damaged snapshots: move them aside, so a
        // checkpoint at the same seq can install a good one (installs never replace).
        for (path, _) in &report.snapshots_skipped {
            match crate::fs::move_aside(fs.as_ref(), path) {
                Ok(aside) => report.quarantined.push(aside),
                Err(e) => tracing::warn!(snapshot = %path.display(), error = %e,
                    "could not move a damaged snapshot aside"),
            }
        }
        if !report.snapshots_skipped.is_empty() {
            fs.sync_dir(&snap_dir)
                .map_err(|e| Error::io("fsync dir", &snap_dir, e))?;
        }

        let wal = Wal::new(
            Arc::clone(&fs),
            wal_dir,
            store_id,
            replayed.next_seq,
            WalOptions {
                segment_bytes: options.segment_bytes,
                preallocate: options.preallocate,
            },
        );
        let current = Arc::new(Versioned { seq, state });
        let inner = Arc::new(Inner {
            fs,
            dir,
            snap_dir,
            store_id,
            wal,
            writer: Mutex::new(Arc::clone(&current)),
            published: ArcSwap::new(current),
            positions: Positions::from_saved(saved_positions),
            checkpoint_running: AtomicBool::new(false),
            cancel: AtomicBool::new(false),
            last_snapshot_seq: AtomicU64::new(snap_seq),
            wal_bytes_at_checkpoint: AtomicU64::new(0),
            stats: Stats::default(),
            slow_ns: AtomicU64::new(crate::checkpoint::SLOW_DEFAULT.as_nanos() as u64),
            stop: Stop::default(),
            _lock: guard,
            options,
        });
        let store = Store {
            inner,
            threads: Mutex::new(Vec::new()),
            checkpointer: Mutex::new(None),
        };
        if let SyncPolicy::Interval(every) = store.inner.options.sync {
            store.spawn("snapwal-sync", move |inner: &Inner<S>| {
                while !inner.stop.wait(every) {
                    if let Err(e) = inner.wal.sync_all() {
                        tracing::error!(error = %e, "interval sync failed");
                    }
                }
            })?;
        }
        report.elapsed = start.elapsed();
        tracing::info!(
            dir = %store.inner.dir.display(),
            seq,
            snapshot_seq = snap_seq,
            records_replayed = report.records_replayed,
            bytes_replayed = report.bytes_replayed,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "store opened"
        );
        Ok((store, report))
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

    /// Stops background threads: signals them and waits up to `bound` in total.
    /// Returns how many did not finish in time (they are left to finish alone; they
    /// hold the store open until they do).
    pub(crate) fn stop_threads(&self, bound: Duration) -> usize {
        self.inner.stop.stop();
        self.inner
            .cancel
            .store(true, std::sync::atomic::Ordering::Release);
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
