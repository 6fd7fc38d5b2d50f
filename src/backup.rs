//! Backups: a consistent copy of a store directory that opens as a store.
//!
//! Two ways in:
//!
//! - [`Store::backup_to`]: the process that owns the store copies it while appends,
//!   checkpoints and rotations go on.
//! - [`backup_dir`]: a store this process does not own (another process's live store,
//!   or a closed one), without its lock and without changing a byte of it: what
//!   `snapwal backup DIR DEST` runs.
//!
//! Both put in `dest` (which must not exist, or be an empty directory) the store's
//! snapshots, positions records and WAL segments, and a fresh, unlocked `LOCK`; they
//! never copy temp files, `.corrupt` files or anything else. Files that never change
//! once written (snapshots, positions records, sealed segments: every segment but the
//! last) are hard-linked when `dest` is on the same file system, and copied otherwise
//! (or when a link fails for any reason). The last segment, which the writer may still
//! be appending to, is never linked: its valid records are copied, up to a bound (see
//! each function), so the copy ends on a whole record. Everything written is synced:
//! the copied files, the directories of `dest`, `dest` and its parent.
//!
//! A linked backup shares its files' bytes with the store (the link is a second name
//! for the same inode): it survives the store deleting them (a checkpoint's cleanup, a
//! mistaken `rm`), not a failing disk. Back up to another file system for that.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{self, HeaderError, RecordScan, SegmentHeader};
use crate::fs::{FileBytes, Fs, RealFs};
use crate::store::is_not_found;
use crate::{snapshot, wal, Seq, State, Store};

/// How many times [`backup_dir`] starts again after a file vanished under it.
pub const RETRIES: u32 = 16;

/// How many more times a backup reads a last segment whose header does not validate.
const HEADER_READS: u32 = 3;

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// The seq the copy recovers to when opened (the last record copied, or the newest
    /// snapshot's seq if that is later).
    pub seq: Seq,
    /// Files hard-linked into the copy.
    pub files_linked: usize,
    /// Files copied.
    pub files_copied: usize,
    /// Bytes written by the copies (linked files cost none).
    pub bytes_copied: u64,
    /// Time the backup took.
    pub elapsed: Duration,
}

impl<S: State> Store<S> {
    /// Writes a consistent copy of this store to `dest` while appends continue, and
    /// returns what it did. `dest` must not exist or be an empty directory
    /// ([`Error::DestinationNotEmpty`] otherwise); only its parent is synced, so
    /// create it in a directory that exists. The copy
    /// opens with [`Store::open`] (or [`Reader::open`](crate::Reader::open)) at
    /// [`BackupReport::seq`], at least the durable seq when the backup started, with
    /// the state after exactly the events `1..=seq`.
    ///
    /// See the [module docs](crate::backup) for what is linked and what is copied. On
    /// an error, `dest` may hold part of a copy: remove it before trying again.
    ///
    /// # Why the copy is consistent
    ///
    /// 1. The backup first *pins* the store's files: until it returns, a checkpoint's
    ///    cleanup removes no snapshot, positions record or segment (it skips its
    ///    removals; the next checkpoint after the backup catches up). Pinning waits
    ///    only for a cleanup already running. Checkpoints still write snapshots, and
    ///    appends never wait for the backup (it takes no lock an appender takes).
    /// 2. It syncs the log ([`Store::sync`]): every record appended before the backup
    ///    started is durable and written to a segment.
    /// 3. It lists `wal/`, `snap/` and `pos/`. Nothing listed is removed before the
    ///    backup ends (1), and the listing holds what a recovery at that moment would
    ///    read: snapshots appear only complete (renamed into place after a sync), and
    ///    the WAL reaches back to the oldest snapshot, since cleanup unlinks only
    ///    segments that a retained snapshot covers, and never runs while pinned.
    /// 4. Every segment but the last listed is sealed: the writer creates a segment
    ///    only after every write to the earlier ones and their sync, and never writes
    ///    to them again. Sealed segments, snapshots and positions records are immutable,
    ///    so linking or copying them at any later moment gives the bytes listed.
    /// 5. The last listed segment may still grow (or be sealed by a rotation during the
    ///    copy: it is then complete, which changes nothing). Its records are copied up
    ///    to the durable seq read after the listing, which is at least the sync's (2):
    ///    only records the store itself could not lose, ending on a whole record.
    ///    Records appended later, in this segment or in segments created after the
    ///    listing, are not in the copy.
    ///
    /// So the copy is the directory a crash right after the listing would have left,
    /// cut at a durable record: recovery gives events `1..=seq`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Default, Serialize, Deserialize)]
    /// # struct Counter { total: i64 }
    /// # impl snapwal::State for Counter {
    /// #     type Event = i64;
    /// #     fn apply(&mut self, n: &i64) { self.total += n }
    /// # }
    /// use snapwal::{Options, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::<Counter>::open(dir.path().join("live"), Options::default())?;
    /// store.append(&40)?;
    /// store.checkpoint()?;
    /// store.append(&2)?;
    ///
    /// let report = store.backup_to(dir.path().join("copy"))?;
    /// assert_eq!(report.seq, 2);
    ///
    /// let copy = Store::<Counter>::open(dir.path().join("copy"), Options::default())?;
    /// assert_eq!(copy.current().total, 42);
    /// # copy.close()?;
    /// # store.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let start = Instant::now();
        let inner = &*self.inner;
        let fs = inner.fs.as_ref();
        let mut copy = Copy::new(fs, dest.as_ref(), false)?;
        let pin = inner.ck.pin_files();
        let synced = inner.sync_all()?;
        let listing = Listing::read(fs, &inner.dir)?;
        let cap = inner.wal.durable_seq();
        let mut seq = copy.wal(&listing.segments, Some(cap))?;
        for (sub, files) in [("snap", &listing.snapshots), ("pos", &listing.positions)] {
            for (n, path) in files {
                match copy.immutable(path, sub) {
                    Ok(()) if sub == "snap" => seq = seq.max(*n),
                    Ok(()) => {}
                    // Only a damaged snapshot moved aside by an install leaves while
                    // pinned: the copy's recovery would have skipped it anyway.
                    Err(e) if is_not_found(&e) => {
                        tracing::debug!(file = %path.display(), "left the store during the backup; not copied");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        drop(pin);
        copy.finish()?;
        copy.report.seq = seq;
        copy.report.elapsed = start.elapsed();
        debug_assert!(seq >= synced, "backup reached {seq}, synced {synced}");
        copy.log(&inner.dir);
        Ok(copy.report)
    }
}

/// Backs up the store in `dir`, which this process does not own, to `dest`: without
/// its lock (the writer keeps running) and without changing a byte of it.
///
/// `dest` must not exist or be an empty directory ([`Error::DestinationNotEmpty`]
/// otherwise). The copy opens as a store at [`BackupReport::seq`].
///
/// # Consistency
///
/// Without the lock this process cannot hold back the writer's cleanup, so it relies
/// on the order of the listings and starts again when a file vanishes:
///
/// - It lists `wal/` *before* `snap/`. A segment missing from the first listing was
///   unlinked because a snapshot covered it, and that snapshot (or a newer one, never
///   pruned before a newer one is installed) is in the second listing.
/// - Every listed file but the last segment is immutable (see [`Store::backup_to`]);
///   a file that vanished before it was linked or copied (a cleanup ran) makes it
///   start again, up to [`RETRIES`] times.
/// - The last segment is copied up to its last valid record when it was read. So the
///   copy is consistent to the prefix of records on disk (written by the writer,
///   which includes everything it had acknowledged as durable) when it read that
///   segment, cut at a whole record: nothing is left for recovery to cut.
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
/// let live = dir.path().join("live");
/// let store = snapwal::Store::<Counter>::open(&live, snapwal::Options::default())?;
/// store.append(&7)?;
///
/// // The store stays open: its lock is not needed.
/// let report = snapwal::backup::backup_dir(&live, dir.path().join("copy"))?;
/// assert_eq!(report.seq, 1);
/// # store.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn backup_dir(dir: impl AsRef<Path>, dest: impl AsRef<Path>) -> Result<BackupReport> {
    let start = Instant::now();
    let (fs, dir) = (&RealFs, dir.as_ref());
    let names = fs.list(dir).map_err(|e| Error::io("open store", dir, e))?;
    if !["wal", "snap"].iter().all(|d| names.iter().any(|n| n == d)) {
        return Err(Error::io(
            "open store",
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "not a snapwal store (no wal/ or snap/)",
            ),
        ));
    }
    let mut copy = Copy::new(fs, dest.as_ref(), true)?;
    let mut attempt = 0;
    loop {
        match copy_listed(&mut copy, fs, dir) {
            Ok(seq) => {
                copy.finish()?;
                copy.report.seq = seq;
                copy.report.elapsed = start.elapsed();
                copy.log(dir);
                return Ok(copy.report);
            }
            Err(e) if is_not_found(&e) && attempt < RETRIES => {
                attempt += 1;
                tracing::debug!(dir = %dir.display(), error = %e, attempt,
                    "a file vanished during the backup (a checkpoint's cleanup); starting again");
                copy.clear()?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One pass of [`backup_dir`]: list, then link or copy everything listed.
fn copy_listed(copy: &mut Copy<'_>, fs: &dyn Fs, dir: &Path) -> Result<Seq> {
    let listing = Listing::read(fs, dir)?;
    let mut seq = copy.wal(&listing.segments, None)?;
    for (n, path) in &listing.snapshots {
        copy.immutable(path, "snap")?;
        seq = seq.max(*n);
    }
    for (_, path) in &listing.positions {
        copy.immutable(path, "pos")?;
    }
    Ok(seq)
}

/// The files of a store directory, listed `wal/` first (see [`backup_dir`]).
struct Listing {
    segments: Vec<(Seq, PathBuf)>,
    snapshots: Vec<(Seq, PathBuf)>,
    positions: Vec<(Seq, PathBuf)>,
}

impl Listing {
    fn read(fs: &dyn Fs, dir: &Path) -> Result<Listing> {
        let segments = wal::list_segments(fs, &dir.join("wal"))?;
        let snapshots = snapshot::list(fs, &dir.join("snap"))?;
        // A store written before positions records has no `pos/`.
        let positions = match snapshot::list(fs, &dir.join("pos")) {
            Err(e) if is_not_found(&e) => Vec::new(),
            r => r?,
        };
        Ok(Listing {
            segments,
            snapshots,
            positions,
        })
    }
}

/// The destination of one backup and what has been put there.
struct Copy<'a> {
    fs: &'a dyn Fs,
    dest: PathBuf,
    /// Read without the store's lock: into memory, never mapped.
    unlocked: bool,
    /// Hard links are still worth trying (none has failed yet).
    links: bool,
    created: Vec<PathBuf>,
    report: BackupReport,
}

impl<'a> Copy<'a> {
    /// Checks that `dest` is missing or empty, and creates it with `wal/`, `snap/`
    /// and `pos/`.
    fn new(fs: &'a dyn Fs, dest: &Path, unlocked: bool) -> Result<Self> {
        match fs.list(dest) {
            Ok(names) if names.is_empty() => {}
            Ok(_) => return Err(Error::DestinationNotEmpty { path: dest.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(Error::DestinationNotEmpty { path: dest.into() })
            }
            Err(e) => return Err(Error::io("list", dest, e)),
        }
        for sub in ["wal", "snap", "pos"] {
            let d = dest.join(sub);
            fs.create_dir_all(&d)
                .map_err(|e| Error::io("create dir", &d, e))?;
        }
        Ok(Copy {
            fs,
            dest: dest.to_path_buf(),
            unlocked,
            links: true,
            created: Vec::new(),
            report: BackupReport::default(),
        })
    }

    fn target(&self, from: &Path, sub: &str) -> PathBuf {
        let name = from.file_name().unwrap_or(from.as_os_str());
        self.dest.join(sub).join(name)
    }

    fn read(&self, from: &Path) -> Result<FileBytes> {
        let bytes = match self.unlocked {
            true => self.fs.read_from(from, 0).map(FileBytes::from_vec),
            false => self.fs.read(from),
        };
        bytes.map_err(|e| Error::io("read", from, e))
    }

    /// Links (or, failing that, copies) a file that never changes once written.
    fn immutable(&mut self, from: &Path, sub: &str) -> Result<()> {
        let to = self.target(from, sub);
        if self.links {
            match self.fs.hard_link(from, &to) {
                Ok(()) => {
                    self.created.push(to);
                    self.report.files_linked += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::io("link", from, e))
                }
                Err(e) => {
                    tracing::debug!(file = %from.display(), dest = %self.dest.display(), error = %e,
                        "cannot hard-link into the backup (another file system?); copying instead");
                    self.links = false;
                }
            }
        }
        let bytes = self.read(from)?;
        self.write(&to, &bytes)
    }

    /// Writes `bytes` to a new file `to` and syncs it.
    fn write(&mut self, to: &Path, bytes: &[u8]) -> Result<()> {
        let file = self
            .fs
            .create_new(to)
            .map_err(|e| Error::io("create", to, e))?;
        self.created.push(to.to_path_buf());
        file.write_all_at(bytes, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("write", to, e))?;
        self.report.files_copied += 1;
        self.report.bytes_copied += bytes.len() as u64;
        Ok(())
    }

    /// Links or copies the sealed segments and copies the valid records of the last
    /// one, those at or below `cap` if given. Returns the seq the copied log reaches.
    fn wal(&mut self, segments: &[(Seq, PathBuf)], cap: Option<Seq>) -> Result<Seq> {
        let Some(((first, last), sealed)) = segments.split_last() else {
            return Ok(0);
        };
        for (_, path) in sealed {
            self.immutable(path, "wal")?;
        }
        let to = self.target(last, "wal");
        // Every record before `first` is in the sealed segments.
        let before = match sealed.is_empty() {
            true => 0,
            false => first.saturating_sub(1),
        };
        // The writer may be writing the header right now (a read is not atomic with a
        // write): read again a few times before calling it damage.
        let mut attempt = 0;
        let bytes = loop {
            let bytes = self.read(last)?;
            match SegmentHeader::decode(&bytes) {
                Ok(h) if h.first_seq == *first => break bytes,
                // Created by a rotation, header not written yet: it holds no record.
                Err(HeaderError::Short | HeaderError::Zeroed) => return Ok(before),
                _ if attempt < HEADER_READS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                // Damaged: copied as it is, for the copy's recovery to judge like the
                // store's own would.
                _ => {
                    self.write(&to, &bytes)?;
                    return Ok(before);
                }
            }
        };
        let mut end = None;
        for rec in RecordScan::new(&bytes, *first) {
            if cap.is_some_and(|cap| rec.seq > cap) {
                break;
            }
            end = Some((
                rec.seq,
                rec.offset + format::frame_len(rec.payload.len()) as u64,
            ));
        }
        let Some((seq, len)) = end else {
            // No record (to copy): the copy's log ends with the sealed segments.
            return Ok(before);
        };
        let prefix = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(..len))
            .ok_or_else(|| Error::corrupt(last, len, "record runs past the end of the file"))?;
        self.write(&to, prefix)?;
        Ok(seq)
    }

    /// Adds a fresh `LOCK` and syncs the directories of the copy, the copy and its
    /// parent.
    fn finish(&mut self) -> Result<()> {
        let lock = self.dest.join("LOCK");
        self.fs
            .create_new(&lock)
            .map_err(|e| Error::io("create", &lock, e))?;
        self.created.push(lock);
        let parent = match self.dest.parent() {
            Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
            p => p,
        };
        let subs = ["wal", "snap", "pos"].map(|s| self.dest.join(s));
        for d in subs
            .iter()
            .map(PathBuf::as_path)
            .chain([self.dest.as_path()])
            .chain(parent)
        {
            self.fs
                .sync_dir(d)
                .map_err(|e| Error::io("fsync dir", d, e))?;
        }
        Ok(())
    }

    /// Removes what this backup put in `dest`, to start again.
    fn clear(&mut self) -> Result<()> {
        for path in self.created.drain(..) {
            self.fs
                .remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
        }
        self.report = BackupReport::default();
        Ok(())
    }

    fn log(&self, dir: &Path) {
        let r = &self.report;
        tracing::info!(
            dir = %dir.display(),
            dest = %self.dest.display(),
            seq = r.seq,
            files_linked = r.files_linked,
            files_copied = r.files_copied,
            bytes_copied = r.bytes_copied,
            elapsed_ms = crate::util::millis(r.elapsed),
            "backup written"
        );
    }
}
