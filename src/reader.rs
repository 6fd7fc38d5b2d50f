//! Read-only open: follow a store that another process (or another `Store` in this
//! process) owns, without its lock and without changing a byte in its directory.
//!
//! A [`Reader`] recovers the state the way [`Store::open`](crate::Store::open) does,
//! with the same code (the store's recovery and [`wal::replay`]) but every
//! change to the directory switched off: no torn tail is cut, no temp file removed, no
//! damaged file moved aside, no directory created, nothing synced, no lock taken.
//! Files are read into memory ([`Fs::read_from`]), never mapped, so a writer that
//! changes a file meanwhile cannot fault this process.
//!
//! # What a reader sees
//!
//! The state after exactly the records `1..=seq` that the writer had handed to the
//! operating system when the reader read them (every record acknowledged as durable,
//! and what a restart of the writer would recover): never a gap, a partial record or
//! a record applied twice. [`Reader::refresh`] moves it forward; `seq` never goes
//! backwards.
//!
//! # Racing a live writer
//!
//! The writer keeps rotating, checkpointing and purging while a reader reads:
//!
//! - A record (or a new segment's header) being written at the end of the log fails
//!   its checksum: the log ends there for now (not an error); the next refresh reads
//!   it. So damage at the end of the last segment, which `Store::open` would report
//!   or cut, is where a reader stops.
//! - A segment or snapshot removed between the listing and the read (a checkpoint's
//!   cleanup): the reader lists again.
//! - The records after the reader's seq purged (a newer snapshot covers them), or the
//!   log no longer continuing the segment the reader read (the writer lost records it
//!   had written, as after a power loss, and rewrote their seqs): the refresh reloads
//!   from the newest snapshot, and refuses with [`Error::LogRewound`] a log that now
//!   ends before the reader's seq. Otherwise a refresh is incremental: it
//!   continues in the segment where the last read stopped, past the bytes it read,
//!   and applies only the records after its seq.
//!
//! Retries are bounded ([`RETRIES`]): a directory that keeps changing faster than a
//! reload can read it gives the last error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::store::{apply_record, is_not_found, recover};
use crate::util::lock;
use crate::wal::{self, Access, LogCursor};
use crate::{RecoveryPolicy, Seq, State, Versioned};

/// How many times a load or a refresh lists the directory again after a file it
/// needed vanished (a live writer purged or pruned it) before it gives up.
pub const RETRIES: u32 = 32;

/// What one [`Reader::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The reader's seq after the refresh.
    pub seq: Seq,
    /// How far the seq moved: the records this refresh applied (after a reload, the
    /// difference from the seq before it).
    pub records: u64,
    /// `true` when the records after the reader's seq had been purged and the state
    /// was reloaded from the newest snapshot.
    pub reloaded: bool,
}

/// Where a reader's last read of the log stopped.
#[derive(Debug, Default)]
struct Progress {
    store_id: Option<u64>,
    cursor: Option<LogCursor>,
}

/// A read-only view of a store directory that follows its writer (see the
/// [module docs](self)).
///
/// `Reader` is `Send + Sync`: [`Reader::current`] loads the published version without
/// a lock, as [`Store::current`](crate::Store::current) does, while another thread
/// refreshes. Refreshes serialize on a lock of the reader's own, which no writer or
/// `current` takes.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Default, Serialize, Deserialize)]
/// # struct Counter { total: i64 }
/// # impl snapwal::State for Counter {
/// #     type Event = i64;
/// #     fn apply(&mut self, n: &i64) { self.total += n }
/// # }
/// use snapwal::{Options, Reader, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::<Counter>::open(dir.path(), Options::default())?;
/// store.append(&5)?;
///
/// // The writer keeps its lock; the reader needs none.
/// let reader = Reader::<Counter>::open(dir.path())?;
/// assert_eq!((reader.seq(), reader.current().total), (1, 5));
///
/// store.append(&2)?;
/// let refreshed = reader.refresh()?;
/// assert_eq!((refreshed.seq, refreshed.records), (2, 1));
/// assert_eq!(reader.current().total, 7);
/// store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Reader<S: State> {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    published: ArcSwap<Versioned<S>>,
    progress: Mutex<Progress>,
}

impl<S: State> std::fmt::Debug for Reader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("dir", &self.dir)
            .field("seq", &self.published.load().seq)
            .finish_non_exhaustive()
    }
}

/// A state loaded from the newest snapshot and the WAL after it.
struct Loaded<S> {
    version: Versioned<S>,
    progress: Progress,
}

impl<S: State> Reader<S> {
    /// Opens the store in `dir` read-only and recovers what its writer has written.
    ///
    /// `dir` must be a store directory (a `Store` opened it at least once: it has
    /// `wal/` and `snap/`). Damage that [`Store::open`](crate::Store::open) would
    /// report is an error here too (a torn or half-written end of the last segment is
    /// not damage: the reader stops there); a damaged snapshot is skipped for an older
    /// one, with a warning, and left where it is.
    ///
    /// See the [type docs](Reader) for an example.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_fs(dir, Arc::new(RealFs))
    }

    /// Like [`Reader::open`], through the file system `fs` (as
    /// [`Options::fs`](crate::Options::fs) is for a store).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Default, Serialize, Deserialize)]
    /// # struct Counter { total: i64 }
    /// # impl snapwal::State for Counter {
    /// #     type Event = i64;
    /// #     fn apply(&mut self, n: &i64) { self.total += n }
    /// # }
    /// use std::sync::Arc;
    /// use snapwal::fs::RealFs;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = snapwal::Store::<Counter>::open(dir.path(), snapwal::Options::default())?;
    /// store.append(&3)?;
    /// let reader = snapwal::Reader::<Counter>::open_with_fs(dir.path(), Arc::new(RealFs))?;
    /// assert_eq!(reader.current().total, 3);
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with_fs(dir: impl AsRef<Path>, fs: Arc<dyn Fs>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let names = fs
            .list(&dir)
            .map_err(|e| Error::io("open store", &dir, e))?;
        if !["wal", "snap"].iter().all(|d| names.iter().any(|n| n == d)) {
            return Err(Error::io(
                "open store",
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a snapwal store (no wal/ or snap/): open it with Store::open first",
                ),
            ));
        }
        let reader = Reader {
            wal_dir: dir.join("wal"),
            snap_dir: dir.join("snap"),
            dir,
            fs,
            published: ArcSwap::from_pointee(Versioned::default()),
            progress: Mutex::new(Progress::default()),
        };
        let loaded = reader.load()?;
        tracing::info!(dir = %reader.dir.display(), seq = loaded.version.seq, "reader opened");
        reader.published.store(Arc::new(loaded.version));
        *lock(&reader.progress) = loaded.progress;
        Ok(reader)
    }

    /// The state the reader has read and its seq, without taking any lock.
    pub fn current(&self) -> Arc<Versioned<S>> {
        self.published.load_full()
    }

    /// The seq of [`Reader::current`].
    pub fn seq(&self) -> Seq {
        self.published.load().seq
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads what the writer has written since the last read, and publishes it.
    ///
    /// Incremental when it can be: it continues where the last read stopped and
    /// applies only the records after [`Reader::seq`], to a copy of the current state
    /// (one `clone` of the state per refresh that finds records, never one per record:
    /// cheap for persistent collections, O(size) for plain ones). When those records
    /// have been purged (a checkpoint's snapshot covers them) it reloads from the
    /// newest snapshot ([`Refreshed::reloaded`]).
    ///
    /// On an error the reader keeps the version it had. [`Error::LogRewound`] means
    /// the log on disk no longer reaches the reader's seq.
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
    /// let reader = snapwal::Reader::<Counter>::open(dir.path())?;
    /// for n in 1..=3 {
    ///     store.append(&n)?;
    /// }
    /// store.checkpoint()?;
    /// let refreshed = reader.refresh()?;
    /// assert_eq!(refreshed.seq, 3);
    /// assert_eq!(reader.current().total, 6);
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh(&self) -> Result<Refreshed> {
        let mut progress = lock(&self.progress);
        let current = self.published.load_full();
        let mut attempt = 0;
        loop {
            let mut next: Option<S> = None;
            let mut records = 0u64;
            let read = wal::read_only(
                self.fs.as_ref(),
                &self.wal_dir,
                current.seq,
                progress.store_id,
                progress.cursor,
                |rec, path| {
                    let state = next.get_or_insert_with(|| current.state.clone());
                    records += 1;
                    apply_record(state, rec, path)
                },
            );
            match read {
                Ok((report, cursor)) => {
                    progress.cursor = cursor;
                    progress.store_id = progress.store_id.or(report.store_id);
                    let seq = report.next_seq.saturating_sub(1);
                    if let Some(state) = next {
                        self.published.store(Arc::new(Versioned { seq, state }));
                    }
                    return Ok(Refreshed {
                        seq: self.seq(),
                        records,
                        reloaded: false,
                    });
                }
                // The records after our seq were purged (a newer snapshot covers them),
                // or the log no longer continues the segment we read: reload.
                Err(Error::MissingRecords { .. }) => return self.reload(&mut progress, &current),
                Err(e) if is_not_found(&e) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(dir = %self.dir.display(), error = %e, attempt,
                        "a file vanished while the reader read it; listing again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reloads from the newest snapshot; never publishes a version older than
    /// `current`.
    fn reload(&self, progress: &mut Progress, current: &Versioned<S>) -> Result<Refreshed> {
        let loaded = self.load()?;
        let seq = loaded.version.seq;
        if seq < current.seq {
            return Err(Error::LogRewound {
                path: self.dir.clone(),
                read: current.seq,
                found: seq,
            });
        }
        tracing::debug!(dir = %self.dir.display(), from = current.seq, seq,
            "reader reloaded from the newest snapshot");
        *progress = loaded.progress;
        self.published.store(Arc::new(loaded.version));
        Ok(Refreshed {
            seq,
            records: seq - current.seq,
            reloaded: true,
        })
    }

    /// Loads the newest snapshot and the WAL after it, listing again when a file
    /// vanished or the WAL was purged past the snapshot meanwhile.
    fn load(&self) -> Result<Loaded<S>> {
        let mut attempt = 0;
        loop {
            let access = Access::ReadOnly { resume: None };
            let policy = RecoveryPolicy::TolerateTornTail;
            let fs = self.fs.as_ref();
            match recover::<S>(fs, &self.snap_dir, &self.wal_dir, policy, access) {
                Ok(r) => {
                    let store_id = r.replayed.store_id.or(r.snap_id);
                    return Ok(Loaded {
                        version: Versioned {
                            seq: r.replayed.next_seq.saturating_sub(1),
                            state: r.state,
                        },
                        progress: Progress {
                            store_id,
                            cursor: r.cursor,
                        },
                    });
                }
                Err(e)
                    if (is_not_found(&e) || matches!(e, Error::MissingRecords { .. }))
                        && attempt < RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(dir = %self.dir.display(), error = %e, attempt,
                        "the store changed while the reader loaded it; listing again");
                }
                Err(e) => return Err(e),
            }
        }
    }
}
