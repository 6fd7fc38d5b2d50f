//! The segmented write-ahead log: writer, group commit, rotation, purge and replay.
//!
//! [`Wal`] is usable on its own: it assigns sequence numbers, frames payloads, writes
//! them to segment files and makes them durable. The byte format is in
//! [`crate::format`].
//!
//! # Invariants kept here
//!
//! - **Staging never touches the disk.** [`Wal::stage`] only copies the frame into an
//!   in-memory buffer under a short mutex; callers may hold their own lock around it
//!   (the store's writer section does).
//! - **Writes happen in seq order.** Only the holder of the I/O mutex takes staged
//!   bytes, and it writes them before it releases the mutex.
//! - **Group commit.** [`Wal::sync_through`] runs one `fdatasync` for every record
//!   written so far, so every appender waiting behind it is served by that one call.
//!   No lock that [`Wal::stage`] needs is held during the `fdatasync`.
//! - **A later segment never holds data while an earlier one is torn.** Before the
//!   first write to a new segment, the previous segment is synced. So after any crash,
//!   only the last segment can end in a torn record.
//! - **Rotation never holds the I/O mutex across a disk wait.** The syncs before a
//!   new segment and its creation run with the mutex released (see `write_staged`).
//! - **Truncation is unlink.** [`Wal::purge_through`] removes whole segments; no WAL
//!   byte is rewritten or copied.
//! - **After a failed write or sync the log refuses appends** ([`Error::ReadOnly`]):
//!   the kernel may have dropped the dirty pages, so the log could have a hole the
//!   writer cannot see. Reopening recovers the durable prefix.

use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use crate::error::{Error, Result};
use crate::format::{self, SegmentHeader};
use crate::fs::{Fs, FsFile};
use crate::util::lock;
use crate::Seq;

mod replay;

pub use replay::{list_segments, replay, ReplayReport};

/// Staged bytes for one segment, not yet written.
#[derive(Debug)]
struct Chunk {
    segment: Seq,
    offset: u64,
    bytes: Vec<u8>,
    last_seq: Seq,
}

/// The writer-side view of the log: what has been staged and where it goes.
#[derive(Debug)]
struct Staged {
    next_seq: Seq,
    active_first: Seq,
    active_len: u64,
    active_records: u64,
    chunks: Vec<Chunk>,
}

#[derive(Debug, Default)]
struct Io {
    /// The segment being written (first seq, file).
    active: Option<(Seq, Arc<dyn FsFile>)>,
    /// Files with writes not yet synced.
    dirty: Vec<Arc<dyn FsFile>>,
    /// A segment was created since the directory was last synced.
    dir_dirty: bool,
    /// A thread is rotating to a new segment, with the I/O mutex released.
    rotating: bool,
}

/// Options of a [`Wal`].
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Rotate to a new segment once the active one would pass this many bytes.
    pub segment_bytes: u64,
    /// Reserve `segment_bytes` when a segment is created.
    pub preallocate: bool,
}

/// A segmented write-ahead log opened for appending.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    store_id: u64,
    opts: WalOptions,
    staged: Mutex<Staged>,
    io: Mutex<Io>,
    /// Signalled when a rotation ends.
    rotated: Condvar,
    /// `true` while a group commit runs; followers wait on `sync_done`.
    sync_lock: Mutex<bool>,
    sync_done: Condvar,
    written: AtomicU64,
    durable: AtomicU64,
    staged_bytes: AtomicU64,
    failed: OnceLock<Arc<Error>>,
}

impl Wal {
    /// Opens a log whose next record gets `next_seq`. Records go to a new segment
    /// named `next_seq`, created at the first write; `recover` has already checked
    /// that no segment of that name remains.
    pub fn new(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        store_id: u64,
        next_seq: Seq,
        opts: WalOptions,
    ) -> Self {
        let last = next_seq.saturating_sub(1);
        Wal {
            fs,
            dir,
            store_id,
            opts,
            staged: Mutex::new(Staged {
                next_seq,
                active_first: next_seq,
                active_len: format::SEGMENT_HEADER_LEN as u64,
                active_records: 0,
                chunks: Vec::new(),
            }),
            io: Mutex::new(Io::default()),
            rotated: Condvar::new(),
            sync_lock: Mutex::new(false),
            sync_done: Condvar::new(),
            written: AtomicU64::new(last),
            durable: AtomicU64::new(last),
            staged_bytes: AtomicU64::new(0),
            failed: OnceLock::new(),
        }
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last seq whose record is durable.
    pub fn durable_seq(&self) -> Seq {
        self.durable.load(Ordering::Acquire)
    }

    /// Total bytes staged since this log was opened.
    pub fn staged_bytes(&self) -> u64 {
        self.staged_bytes.load(Ordering::Relaxed)
    }

    /// `Err(ReadOnly)` once a write or sync has failed.
    pub fn check_writable(&self) -> Result<()> {
        match self.failed.get() {
            Some(cause) => Err(Error::ReadOnly {
                cause: Arc::clone(cause),
            }),
            None => Ok(()),
        }
    }

    fn fail(&self, e: Error) -> Error {
        let cause = Arc::clone(self.failed.get_or_init(|| Arc::new(e)));
        tracing::error!(error = %cause, dir = %self.dir.display(), "WAL write failed; store is read-only until reopened");
        Error::ReadOnly { cause }
    }

    /// Stages `payloads` as consecutive records and returns the seq of the first one.
    ///
    /// Each item is `(payload, crc32c(payload))`. This only copies bytes into memory;
    /// nothing is written until [`Wal::write_through`] or [`Wal::sync_through`].
    pub fn stage<'a>(&self, payloads: impl IntoIterator<Item = (&'a [u8], u32)>) -> Seq {
        let mut st = lock(&self.staged);
        let first = st.next_seq;
        let mut added = 0u64;
        for (payload, crc) in payloads {
            let seq = st.next_seq;
            let len = format::frame_len(payload.len()) as u64;
            if st.active_records > 0 && st.active_len + len > self.opts.segment_bytes {
                st.active_first = seq;
                st.active_len = format::SEGMENT_HEADER_LEN as u64;
                st.active_records = 0;
            }
            let segment = st.active_first;
            if st.active_records == 0 {
                let header = SegmentHeader {
                    first_seq: segment,
                    store_id: self.store_id,
                };
                st.chunks.push(Chunk {
                    segment,
                    offset: 0,
                    bytes: header.encode().to_vec(),
                    last_seq: seq,
                });
            }
            let offset = st.active_len;
            let chunk = match st.chunks.last_mut() {
                Some(c) if c.segment == segment => c,
                _ => {
                    st.chunks.push(Chunk {
                        segment,
                        offset,
                        bytes: Vec::new(),
                        last_seq: seq,
                    });
                    // Just pushed, so `last_mut` is `Some`.
                    match st.chunks.last_mut() {
                        Some(c) => c,
                        None => continue,
                    }
                }
            };
            format::encode_frame(&mut chunk.bytes, seq, payload, crc);
            chunk.last_seq = seq;
            st.active_len += len;
            st.active_records += 1;
            // Callers stop before u64::MAX (the store does); never wrap.
            st.next_seq = st.next_seq.saturating_add(1);
            added += len;
        }
        self.staged_bytes.fetch_add(added, Ordering::Relaxed);
        first
    }

    /// Writes every staged record through `seq` to the OS (page cache), without
    /// syncing. Returns once the record `seq` has been written, by this call or
    /// another.
    pub fn write_through(&self, seq: Seq) -> Result<()> {
        if self.written.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.check_writable()?;
        self.write_staged(lock(&self.io), false).map(drop)
    }

    /// Makes every record through `seq` durable (one `fdatasync` per dirty segment,
    /// plus the directory when a segment was created). Concurrent callers share the
    /// sync: whoever holds the sync lock covers everything written before it.
    pub fn sync_through(&self, seq: Seq) -> Result<Seq> {
        let mut leader = lock(&self.sync_lock);
        loop {
            let durable = self.durable.load(Ordering::Acquire);
            if durable >= seq {
                return Ok(durable);
            }
            self.check_writable()?;
            if !*leader {
                break;
            }
            // A sync is running; it may cover `seq`. All followers wake together when
            // it ends (a mutex queue would hand over one waiter at a time).
            leader = self
                .sync_done
                .wait(leader)
                .unwrap_or_else(|e| e.into_inner());
        }
        *leader = true;
        drop(leader);
        // Hands leadership back however `sync_once` ends (even by a panic in an `Fs`).
        struct Handback<'a>(&'a Wal);
        impl Drop for Handback<'_> {
            fn drop(&mut self) {
                *lock(&self.0.sync_lock) = false;
                self.0.sync_done.notify_all();
            }
        }
        let _handback = Handback(self);
        self.sync_once()
    }

    /// One group commit: write everything staged, sync every dirty segment (and the
    /// directory if a segment was created), publish the new durable seq.
    fn sync_once(&self) -> Result<Seq> {
        let (files, dir_dirty, written) = {
            let mut io = self.write_staged(lock(&self.io), true)?;
            (
                mem::take(&mut io.dirty),
                mem::replace(&mut io.dir_dirty, false),
                self.written.load(Ordering::Acquire),
            )
        };
        for f in &files {
            f.sync_data()
                .map_err(|e| self.fail(Error::io("fdatasync", &self.dir, e)))?;
        }
        if dir_dirty {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| self.fail(Error::io("fsync dir", &self.dir, e)))?;
        }
        self.durable.fetch_max(written, Ordering::AcqRel);
        Ok(written)
    }

    /// Makes everything staged so far durable.
    pub fn sync_all(&self) -> Result<Seq> {
        let last = lock(&self.staged).next_seq.saturating_sub(1);
        self.sync_through(last)
    }

    /// Writes the staged chunks in order. A chunk for a new segment rotates: the
    /// previous segment and the directory are synced and the new file is created with
    /// the I/O mutex *released*, so no appender waits on the disk for a rotation.
    /// Meanwhile a caller that only needs its record handed to the OS
    /// (`must_write == false`) returns at once and the rotating thread writes its
    /// chunk right after; a caller that needs durability waits for the rotation.
    fn write_staged<'a>(
        &'a self,
        mut io: MutexGuard<'a, Io>,
        must_write: bool,
    ) -> Result<MutexGuard<'a, Io>> {
        loop {
            self.check_writable()?;
            if io.rotating {
                if !must_write {
                    return Ok(io);
                }
                io = self.rotated.wait(io).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let chunks = mem::take(&mut lock(&self.staged).chunks);
            let mut rotated = false;
            for chunk in chunks {
                let file = match &io.active {
                    Some((seg, f)) if *seg == chunk.segment => Arc::clone(f),
                    _ => {
                        rotated = true;
                        io.rotating = true;
                        let dirty = mem::take(&mut io.dirty);
                        let dir_dirty = mem::replace(&mut io.dir_dirty, false);
                        drop(io);
                        let created = self.create_segment(dirty, dir_dirty, chunk.segment);
                        io = lock(&self.io);
                        io.rotating = false;
                        self.rotated.notify_all();
                        let file = created?;
                        io.dir_dirty = true;
                        io.active = Some((chunk.segment, Arc::clone(&file)));
                        file
                    }
                };
                let path = self.dir.join(format::segment_name(chunk.segment));
                file.write_all_at(&chunk.bytes, chunk.offset)
                    .map_err(|e| self.fail(Error::io("write", &path, e)))?;
                if !io.dirty.iter().any(|f| Arc::ptr_eq(f, &file)) {
                    io.dirty.push(file);
                }
                self.written.fetch_max(chunk.last_seq, Ordering::AcqRel);
            }
            // After a rotation, write what appenders staged while it ran.
            if !rotated {
                return Ok(io);
            }
        }
    }

    /// Syncs the previous segment's data and directory entry (so that a crash can tear
    /// only the last segment, and cannot keep a new segment while losing an older
    /// one), then creates and preallocates segment `first`.
    fn create_segment(
        &self,
        dirty: Vec<Arc<dyn FsFile>>,
        dir_dirty: bool,
        first: Seq,
    ) -> Result<Arc<dyn FsFile>> {
        for f in dirty {
            f.sync_data()
                .map_err(|e| self.fail(Error::io("fdatasync", &self.dir, e)))?;
        }
        if dir_dirty {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| self.fail(Error::io("fsync dir", &self.dir, e)))?;
        }
        let path = self.dir.join(format::segment_name(first));
        let file: Arc<dyn FsFile> = Arc::from(
            self.fs
                .create_new(&path)
                .map_err(|e| self.fail(Error::io("create segment", &path, e)))?,
        );
        if self.opts.preallocate {
            file.allocate(self.opts.segment_bytes)
                .map_err(|e| self.fail(Error::io("fallocate", &path, e)))?;
        }
        tracing::debug!(segment = %path.display(), first_seq = first, "WAL segment created");
        Ok(file)
    }

    /// Removes every segment whose records all have seq `<= through`, never the newest
    /// segment on disk. Returns the outcome for each segment it tried to remove.
    pub fn purge_through(&self, through: Seq) -> Result<Vec<(PathBuf, std::io::Result<()>)>> {
        let segments = list_segments(self.fs.as_ref(), &self.dir)?;
        let mut out = Vec::new();
        for pair in segments.windows(2) {
            if let [(_, path), (next_first, _)] = pair {
                if next_first.saturating_sub(1) <= through {
                    out.push((path.clone(), self.fs.remove_file(path)));
                }
            }
        }
        Ok(out)
    }
}
