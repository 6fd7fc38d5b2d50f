//! Opening a store: take the lock, recover the newest valid snapshot and the WAL
//! after it, publish.
//!
//! # Invariants kept here
//!
//! - **I7 Exclusive**: the directory lock is taken before anything is read.
//! - **I2 Prefix / I6 Bad input**: a snapshot that does not validate is skipped (and
//!   moved aside once recovery succeeds); the WAL replay checks every record's CRC
//!   and seq ([`wal::replay`]); damage that recovery cannot call a torn tail is a
//!   typed error naming the file and offset.
//! - **I1 Durability**: what recovery read is synced before new appends are
//!   acknowledged after it. The directories of a store that holds data are synced
//!   before `open` returns; a new store's are synced by its first durable write.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{Inner, Stop, Store};
use crate::checkpoint::Checkpoints;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::position::{self, Position, Positions};
use crate::wal::{self, Access, LogCursor, ReplayReport, Wal, WalOptions};
use crate::{snapshot, Options, RecoveryPolicy, Seq, State, SyncPolicy, Versioned};

/// What [`Store::open`] found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// The seq of the recovered state.
    pub seq: Seq,
    /// The snapshot recovery started from (its seq), if any.
    pub snapshot_seq: Option<Seq>,
    /// Snapshots that failed validation and were skipped, with the reason. Once
    /// recovery succeeds they are renamed to `<name>.corrupt` (or `<name>.<n>.corrupt`
    /// when that name is taken), kept for inspection; their new names are in
    /// [`quarantined`](Self::quarantined).
    pub snapshots_skipped: Vec<(PathBuf, String)>,
    /// Records replayed from the WAL.
    pub records_replayed: u64,
    /// Bytes of those records.
    pub bytes_replayed: u64,
    /// A torn tail that was cut: (segment, offset, bytes).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// The new names of the files moved aside: segments under
    /// [`RecoveryPolicy::SalvagePrefix`](crate::RecoveryPolicy::SalvagePrefix), a last
    /// segment that holds no valid record but holds bytes (a torn first record, or
    /// damage; under every policy), the damaged snapshots of
    /// [`snapshots_skipped`](Self::snapshots_skipped), and damaged positions records
    /// newer than the one recovery used.
    pub quarantined: Vec<PathBuf>,
    /// Snapshot temp files left by a crash and removed.
    pub temp_files_removed: usize,
    /// Time recovery took.
    pub elapsed: Duration,
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

/// The `store` label of a store's metrics: the option, or the directory's last
/// component.
fn metrics_label(options: &Options, dir: &Path) -> String {
    match &options.metrics_label {
        Some(label) => label.clone(),
        None => dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
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
        let pos_dir = dir.join("pos");
        // The directories this open creates above the store's: each one's entry is
        // durable only once its parent is synced (see below).
        let to_sync = dirs_to_sync(fs.as_ref(), &dir)?;
        for d in [&dir, &wal_dir, &snap_dir, &pos_dir] {
            fs.create_dir_all(d)
                .map_err(|e| Error::io("create dir", d, e))?;
        }
        let lock_path = dir.join("LOCK");
        let guard = fs.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked {
                path: lock_path.clone(),
            },
            _ => Error::io("lock", &lock_path, e),
        })?;
        let mut report = OpenReport {
            temp_files_removed: snapshot::remove_temps(fs.as_ref(), &snap_dir)?
                + snapshot::remove_temps(fs.as_ref(), &pos_dir)?,
            ..OpenReport::default()
        };

        let recovered = recover::<S>(
            fs.as_ref(),
            &snap_dir,
            &wal_dir,
            options.recovery,
            Access::Recover,
        )?;
        let (snap_seq, snap_id, replayed) =
            (recovered.snap_seq, recovered.snap_id, recovered.replayed);
        let (state, mut saved_positions) = (recovered.state, recovered.positions);
        report.snapshot_seq = snap_id.map(|_| snap_seq);
        report.snapshots_skipped = recovered.skipped;
        let seq = replayed.next_seq - 1;
        let known_id = replayed.store_id.or(snap_id);
        report.seq = seq;
        report.records_replayed = replayed.records_replayed;
        report.bytes_replayed = replayed.bytes_replayed;
        report.torn_tail = replayed.torn_tail;
        report.quarantined = replayed.quarantined;
        // Recovery succeeded without the damaged snapshots: move them aside, so a
        // checkpoint at the same seq can install a good one (installs never replace).
        // A damaged file left under its final name could later be taken for a snapshot
        // that exists, so a failure here fails the open rather than only warning.
        let damaged: Vec<&Path> = report
            .snapshots_skipped
            .iter()
            .map(|(p, _)| p.as_path())
            .collect();
        move_damaged_aside(fs.as_ref(), &snap_dir, &damaged, &mut report.quarantined)?;

        // Positions saved after the base snapshot, with a state recovery reached (I10).
        // Damaged records newer than the one used are moved aside too (kept for
        // inspection, never read again), not left for cleanup to delete.
        let records = position::recover(fs.as_ref(), &pos_dir, known_id, snap_seq, seq)?;
        let damaged: Vec<&Path> = records.skipped.iter().map(PathBuf::as_path).collect();
        move_damaged_aside(fs.as_ref(), &pos_dir, &damaged, &mut report.quarantined)?;
        if let Some((_, newer)) = records.newest {
            saved_positions = newer;
        }
        // A directory just created is durable only once its parent is synced: without
        // that a power loss could drop `wal/` and every acknowledged record in it. A
        // store that holds data syncs them now (what it recovered counts as durable);
        // a new one leaves it to its first durable write (see `PendingDirs`), so that
        // opening thousands of new stores costs no `fsync` at all.
        let ancestors = crate::fs::PendingDirs::new(to_sync);
        let is_new = known_id.or(records.store_id).is_none();
        if !is_new {
            ancestors
                .sync(fs.as_ref())
                .map_err(|(d, e)| Error::io("fsync dir", d, e))?;
        }
        let store_id = known_id.or(records.store_id).unwrap_or_else(random_id);

        let wal = Wal::new(
            Arc::clone(&fs),
            wal_dir,
            store_id,
            replayed.next_seq,
            WalOptions {
                segment_bytes: options.segment_bytes,
                preallocate: options.preallocate,
            },
        )
        .with_max_staged_bytes(options.max_staged_bytes)
        .with_pending_dirs(ancestors)
        .with_metrics(Arc::new(crate::metrics::Metrics::new(&metrics_label(
            &options, &dir,
        ))));
        let current = Arc::new(Versioned { seq, state });
        let inner = Arc::new(Inner {
            fs,
            dir,
            snap_dir,
            pos_dir,
            store_id,
            wal,
            writer: Mutex::new(super::Writer::new(Arc::clone(&current))),
            durable_version: ArcSwap::new(Arc::clone(&current)),
            durable_waiters: Default::default(),
            published: ArcSwap::new(current),
            positions: Positions::from_saved(saved_positions.clone()),
            ck: Checkpoints::new(snap_seq, saved_positions, records.next_generation),
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
                    if let Err(e) = inner.sync_all() {
                        tracing::error!(error = %e, "interval sync failed");
                    }
                }
            })?;
        }
        report.elapsed = start.elapsed();
        store.inner.wal.metrics().recovered(report.elapsed);
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
}

/// What [`recover`] read: the newest snapshot that validates and the WAL after it.
pub(crate) struct Recovered<S> {
    /// The state after `replayed.next_seq - 1`.
    pub(crate) state: S,
    /// The positions saved with the base snapshot.
    pub(crate) positions: Vec<(String, Position)>,
    /// The base snapshot's seq (0 without one) and store id.
    pub(crate) snap_seq: Seq,
    pub(crate) snap_id: Option<u64>,
    pub(crate) replayed: ReplayReport,
    /// Where the WAL read stopped.
    pub(crate) cursor: Option<LogCursor>,
    /// Snapshots that did not validate (newest first), with the reason.
    pub(crate) skipped: Vec<(PathBuf, String)>,
}

/// The directories whose entries make the store directory `dir` durable, top down:
/// its parent and itself if it exists; otherwise the nearest ancestor that exists
/// and every directory below it that `create_dir_all` is about to create (the entry
/// of each lives in the one above it).
fn dirs_to_sync(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>> {
    let as_dir = |p: &Path| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    };
    let mut missing = Vec::new();
    let mut probe = Some(dir);
    let top = loop {
        match probe {
            None => break None,
            Some(p) if p.as_os_str().is_empty() => break Some(PathBuf::from(".")),
            Some(p) => {
                if fs.exists(p).map_err(|e| Error::io("stat", p, e))? {
                    break Some(p.to_path_buf());
                }
                missing.push(p.to_path_buf());
                probe = p.parent();
            }
        }
    };
    if missing.is_empty() {
        let parent = dir.parent().map_or_else(|| dir.to_path_buf(), as_dir);
        return Ok(vec![parent, dir.to_path_buf()]);
    }
    Ok(top.into_iter().chain(missing.into_iter().rev()).collect())
}

/// Moves damaged files of `dir` aside (`<name>.corrupt`, or a unique variant; see
/// [`crate::fs::move_all_aside`]), warning for each and adding the new names to
/// `quarantined`. A failure fails the open: a damaged file left under its final name
/// could later be taken for one that validates.
fn move_damaged_aside(
    fs: &dyn Fs,
    dir: &Path,
    damaged: &[&Path],
    quarantined: &mut Vec<PathBuf>,
) -> Result<()> {
    let moved = crate::fs::move_all_aside(fs, dir, damaged)?;
    for (path, aside) in damaged.iter().zip(&moved) {
        tracing::warn!(file = %path.display(), moved_to = %aside.display(),
            "moved a damaged file aside");
    }
    quarantined.extend(moved);
    Ok(())
}

/// Recovery's reading half, shared by [`Store::open`] and [`Reader`](crate::Reader):
/// loads the newest snapshot that validates (falling back to older ones, logging why)
/// and replays the WAL records after it (see [`wal::replay`]).
///
/// Under [`Access::ReadOnly`] nothing in the directory changes, and a snapshot that
/// vanished between the listing and the read (pruned by a live writer) is an error,
/// not a damaged snapshot: the caller lists again.
pub(crate) fn recover<S: State>(
    fs: &dyn Fs,
    snap_dir: &Path,
    wal_dir: &Path,
    policy: RecoveryPolicy,
    access: Access,
) -> Result<Recovered<S>> {
    let mut skipped = Vec::new();
    // Newest valid snapshot, falling back to older ones.
    let mut base: Option<(Seq, u64, SnapshotBody<S>)> = None;
    // The newest snapshot that failed validation: its seq and why.
    let mut first_skip: Option<(Seq, Error)> = None;
    for (seq, path) in snapshot::list(fs, snap_dir)?.into_iter().rev() {
        let loaded = match access {
            Access::Recover => snapshot::load::<SnapshotBody<S>>(fs, &path, None),
            // Without the lock, read into memory rather than map (see `Fs::read_from`).
            Access::ReadOnly { .. } => fs
                .read_from(&path, 0)
                .map_err(|e| Error::io("read", &path, e))
                .and_then(|bytes| snapshot::decode::<SnapshotBody<S>>(&bytes, &path, None)),
        };
        match loaded {
            Ok((h, body)) => {
                base = Some((seq, h.store_id, body));
                break;
            }
            Err(e @ (Error::UnsupportedVersion { .. } | Error::Decode { .. })) => return Err(e),
            Err(e) if access != Access::Recover && is_not_found(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(snapshot = %path.display(), error = %e,
                    "snapshot does not validate; falling back to an older one");
                skipped.push((path, e.to_string()));
                first_skip.get_or_insert((seq, e));
            }
        }
    }
    let (snap_seq, snap_id, (mut state, positions)) = match base {
        Some((seq, id, body)) => (seq, Some(id), body),
        None => (0, None, (S::default(), Vec::new())),
    };

    let replayed = wal::replay_with(
        fs,
        wal_dir,
        snap_seq,
        snap_id,
        policy,
        access,
        |rec, path| apply_record(&mut state, rec, path),
    );
    let (replayed, cursor) = match (replayed, first_skip) {
        // A skipped snapshot explains a WAL that does not reach back far enough.
        (Err(Error::MissingRecords { .. }), Some((_, skip))) => return Err(skip),
        // So does a WAL that ends before the newest skipped snapshot (its seq was
        // acknowledged): recovering short of it would lose data in silence.
        (Ok((r, _)), Some((skipped_seq, skip)))
            if policy != RecoveryPolicy::SalvagePrefix && r.next_seq <= skipped_seq =>
        {
            return Err(skip)
        }
        (r, _) => r?,
    };
    Ok(Recovered {
        state,
        positions,
        snap_seq,
        snap_id,
        replayed,
        cursor,
        skipped,
    })
}

/// Decodes a record's event and applies it to `state`.
pub(crate) fn apply_record<S: State>(
    state: &mut S,
    rec: crate::format::Record<'_>,
    path: &Path,
) -> Result<()> {
    let (event, rest) =
        postcard::take_from_bytes::<S::Event>(rec.payload).map_err(|source| Error::Decode {
            path: path.into(),
            offset: rec.offset,
            source,
        })?;
    if !rest.is_empty() {
        return Err(Error::corrupt(path, rec.offset, "event has trailing bytes: it no longer decodes as the event type (see the `format` docs, \"Evolving your events\")"));
    }
    state.apply(&event);
    Ok(())
}

/// Whether `e` says a file or directory is not there (removed by a live writer).
pub(crate) fn is_not_found(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}
