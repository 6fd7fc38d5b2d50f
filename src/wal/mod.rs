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
//! - **Staging is bounded.** Bytes staged but not yet handed to the OS
//!   ([`Wal::staged_unwritten_bytes`]) stay below [`Wal::max_staged_bytes`] plus one
//!   batch per appending thread: past the bound, [`Wal::write_through`] (and
//!   [`Wal::wait_for_room`], which a caller runs before its own lock) waits for the
//!   rotation in progress and writes the staged bytes itself instead of returning.
//! - **Writes happen in seq order.** Only the holder of the I/O mutex takes staged
//!   bytes, and it writes them before it releases the mutex (except across a rotation,
//!   which keeps every other thread from taking staged bytes until it ends).
//! - **Group commit.** [`Wal::sync_through`] runs one `fdatasync` for every segment
//!   written so far, so every appender waiting behind it is served by that one call.
//!   No lock that [`Wal::stage`] needs is held during the `fdatasync`.
//! - **No chasing.** A group commit (and a rotation) writes what was staged when it
//!   took the staged bytes, once; it never loops while appenders keep staging, so it
//!   ends in bounded time under any load.
//! - **One WAL sync at a time.** Every `fdatasync` of a segment and of the directory
//!   runs under the disk lock, which no appender's staging and no reader needs. The
//!   files to sync are taken from the dirty list only while holding it, and the holder
//!   marks the log failed before releasing it if a sync failed or panicked. So a thread
//!   that holds the disk lock knows that every earlier write was synced by an earlier
//!   holder, is in the dirty list, or the log is failed; and two `fdatasync`s of one
//!   segment never run at once (on Linux only one of them would see a writeback
//!   error). Every holder checks the failed flag after acquiring it and again before
//!   it advances the durable seq.
//! - **A later segment never holds data while an earlier one is torn.** Before the
//!   first write to a new segment, the rotating thread takes the disk lock (waiting for
//!   a group commit in flight) and syncs every dirty segment and the directory. So
//!   after any crash, only the last segment can end in a torn record.
//! - **Rotation never holds the I/O mutex across a disk wait.** The syncs before a
//!   new segment and its creation run with the mutex released (see `write_staged`).
//! - **A failed `fallocate` is not fatal.** Preallocation only reserves space: when it
//!   fails (for example `ENOSPC`) for a new, still empty segment, nothing is lost, so
//!   the failure is logged at WARN with the file and the error and the segment is used
//!   without a reservation. A failed write or sync makes the log read-only.
//! - **A transient failure to create a segment is not fatal.** `EMFILE`, `ENFILE`,
//!   `ENOSPC`, `EDQUOT` or `ENOMEM` from the create of a segment that holds no record
//!   yet is [`Error::SegmentUnavailable`]: the chunks go back to the front of the
//!   staging list, in order, and the next write or sync tries again. Nothing is
//!   acknowledged as durable until it is written and synced. Any other failed create
//!   makes the log read-only. The same holds for a directory that cannot be opened
//!   to sync it (`EMFILE`, `ENFILE`, `ENOMEM`: `fsync` never reports these), and
//!   for reopening the segment an idle log closed.
//! - **Async tasks never wait on the disk** (feature `async`, see `waiters`): a task
//!   writes only to the open segment (`Mode::NoWait`: no rotation, no wait for one,
//!   no reservation growth) and registers a waker; the syncer thread and every group
//!   commit wake the tasks whose records became durable, and a failure wakes all of
//!   them with the error.
//! - **Truncation is unlink.** [`Wal::purge_through`] removes whole segments; no WAL
//!   byte is rewritten or copied.
//! - **After a failed write or sync the log refuses appends** ([`Error::ReadOnly`]):
//!   the kernel may have dropped the dirty pages, so the log could have a hole the
//!   writer cannot see. Reopening recovers the durable prefix. A panic inside a
//!   file-system call made while staged bytes or dirty files were taken out of their
//!   lists marks the log failed the same way, so nothing is acknowledged without them.

use std::io;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::{self, SegmentHeader};
use crate::fs::{Fs, FsFile, PendingDirs};
use crate::metrics::{Metrics, Timer};
use crate::util::lock;
use crate::Seq;

mod replay;
mod segment;
mod sync;
#[cfg(feature = "async")]
mod waiters;

#[cfg(feature = "async")]
pub(crate) use waiters::Target;

pub use replay::{list_segments, replay, ReplayReport};
pub(crate) use replay::{read_only, replay_with, Access, LogCursor};

/// The default of [`Wal::max_staged_bytes`]: 1 MiB.
pub const DEFAULT_MAX_STAGED_BYTES: u64 = 1 << 20;

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

/// A segment (its first seq) and its open file.
type Segment = (Seq, Arc<dyn FsFile>);

#[derive(Debug, Default)]
struct Io {
    /// The segment being written.
    active: Option<Segment>,
    /// Segments with writes not yet synced. Taken only under the disk lock.
    dirty: Vec<Segment>,
    /// A segment was created since the directory was last synced. Taken only under
    /// the disk lock.
    dir_dirty: bool,
    /// A thread is rotating to a new segment, with the I/O mutex released.
    rotating: bool,
    /// Bytes reserved (`fallocate`) in the active segment.
    reserved: u64,
    /// End of the bytes written to the active segment.
    active_end: u64,
    /// A thread is growing the active segment's reservation, with the I/O mutex
    /// released.
    growing: bool,
    /// The active segment when its file was closed because the log was idle
    /// ([`Wal::close_idle_file`]); the next write opens it again.
    closed_active: Option<Seq>,
}

/// Options of a [`Wal`].
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Rotate to a new segment once the active one would pass this many bytes.
    pub segment_bytes: u64,
    /// Reserve space for each segment ahead of its writes, in steps: the first
    /// [`RESERVE_START`] bytes when it is created, then twice what is reserved
    /// whenever writes pass half of it, up to `segment_bytes`. A failed reservation
    /// is logged at WARN and the segment is used without it (see the module docs).
    pub preallocate: bool,
}

/// The first reservation of a new segment when [`WalOptions::preallocate`] is on:
/// 64 KiB (or `segment_bytes`, if smaller). The reservation then doubles ahead of the
/// writes, up to `segment_bytes`, so an idle store costs kilobytes of disk, not a
/// whole segment.
pub const RESERVE_START: u64 = 64 << 10;

/// A segmented write-ahead log opened for appending.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    store_id: u64,
    opts: WalOptions,
    max_staged: u64,
    staged: Mutex<Staged>,
    io: Mutex<Io>,
    /// Signalled when a rotation ends.
    rotated: Condvar,
    /// `true` while a group commit runs; followers wait on `sync_done`.
    sync_lock: Mutex<bool>,
    sync_done: Condvar,
    /// The disk lock: `true` while a thread syncs WAL files; waiters on `disk_free`.
    disk: Mutex<bool>,
    disk_free: Condvar,
    written: AtomicU64,
    durable: AtomicU64,
    staged_bytes: AtomicU64,
    /// Bytes staged and not yet written to the OS.
    unwritten: AtomicU64,
    failed: OnceLock<Arc<Error>>,
    /// The checkpointer's byte trigger: a nudge when [`Wal::staged_bytes`] reaches a
    /// threshold.
    watch: ByteWatch,
    /// Directories above `dir` (and `dir` itself) still to sync before the first
    /// record is acknowledged as durable (see [`PendingDirs`]).
    pending_dirs: PendingDirs,
    /// The store's metrics (no-op handles for a log on its own).
    metrics: Arc<Metrics>,
    /// Tasks waiting for this log (see `waiters`).
    #[cfg(feature = "async")]
    waiters: waiters::Waiters,
}

/// How [`Wal::write_staged`] treats a rotation (a chunk for a new segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The caller needs its record only queued: while another thread rotates and the
    /// staged bytes are within the bound, return at once; otherwise write, rotating
    /// if needed.
    Queue,
    /// Write everything staged now, waiting for a rotation in progress and rotating
    /// if needed.
    Write,
    /// Never wait on the disk (an async task on a runtime worker): write only what
    /// goes to the open segment; leave a chunk for a new segment (and everything while
    /// another thread rotates) staged for a thread that may wait, and do not grow the
    /// reservation.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    NoWait,
}

/// A callback the log runs when its staged bytes reach a threshold.
pub(crate) type Nudge = Arc<dyn Fn() + Send + Sync>;

/// The byte watch of a [`Wal`]: armed with a threshold of [`Wal::staged_bytes`] and
/// a callback, it runs the callback once, from the first write that sees the
/// threshold reached (so a scheduler need not poll the byte count).
#[derive(Default)]
struct ByteWatch {
    /// `u64::MAX` when disarmed.
    at: AtomicU64,
    nudge: Mutex<Option<Nudge>>,
}

impl std::fmt::Debug for ByteWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteWatch")
            .field("at", &self.at.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens a log whose next record gets `next_seq`. Records go to a new segment
    /// named `next_seq`, created at the first write; `recover` has already checked
    /// that no segment of that name remains. Staging is bounded by
    /// [`DEFAULT_MAX_STAGED_BYTES`]; see [`Wal::with_max_staged_bytes`].
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
            max_staged: DEFAULT_MAX_STAGED_BYTES,
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
            disk: Mutex::new(false),
            disk_free: Condvar::new(),
            written: AtomicU64::new(last),
            durable: AtomicU64::new(last),
            staged_bytes: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            failed: OnceLock::new(),
            watch: ByteWatch {
                at: AtomicU64::new(u64::MAX),
                nudge: Mutex::new(None),
            },
            pending_dirs: PendingDirs::none(),
            metrics: Arc::new(Metrics::noop()),
            #[cfg(feature = "async")]
            waiters: waiters::Waiters::default(),
        }
    }

    /// Reports to the store's metrics (see [`crate::metrics`]).
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The store's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Directories to sync (once, in this order) before the first record is
    /// acknowledged as durable: a new store's own directory and its parent, whose
    /// entries `open` created without syncing them. See [`Wal::sync_pending_dirs`].
    pub(crate) fn with_pending_dirs(mut self, dirs: PendingDirs) -> Self {
        self.pending_dirs = dirs;
        self
    }

    /// Syncs the directories of [`Wal::with_pending_dirs`] if that was not done yet.
    /// Every group commit calls it before it advances the durable seq, and a
    /// checkpoint before it installs a file; afterwards it costs one atomic load.
    pub(crate) fn sync_pending_dirs(&self) -> Result<()> {
        self.pending_dirs
            .sync(self.fs.as_ref())
            .map_err(|(dir, e)| Error::io("fsync dir", dir, e))
    }

    /// Sets the bound on bytes staged but not yet written to the OS (see
    /// [`Wal::max_staged_bytes`]).
    pub fn with_max_staged_bytes(mut self, bytes: u64) -> Self {
        self.max_staged = bytes;
        self
    }

    /// The bound on bytes staged but not yet written to the OS. Past it, appenders
    /// wait ([`Wal::write_through`], [`Wal::wait_for_room`]) instead of returning while
    /// a rotation waits on the disk; the bytes staged can pass it by at most one batch
    /// per appending thread.
    pub fn max_staged_bytes(&self) -> u64 {
        self.max_staged
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

    /// Bytes staged and not yet written to the OS: what a process crash would lose.
    pub fn staged_unwritten_bytes(&self) -> u64 {
        self.unwritten.load(Ordering::Acquire)
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
        // Every waiting task gets the error.
        #[cfg(feature = "async")]
        self.wake_waiters(false);
        Error::ReadOnly { cause }
    }

    fn segment_path(&self, first: Seq) -> PathBuf {
        self.dir.join(format::segment_name(first))
    }

    /// Stages `payloads` as consecutive records and returns the seq of the first one.
    ///
    /// Each item is `(payload, crc32c(payload))`. This only copies bytes into memory;
    /// nothing is written until [`Wal::write_through`] or [`Wal::sync_through`].
    pub fn stage<'a>(&self, payloads: impl IntoIterator<Item = (&'a [u8], u32)>) -> Seq {
        let mut st = lock(&self.staged);
        let first = st.next_seq;
        let mut added = 0u64;
        let mut buffered = 0u64;
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
                let bytes = header.encode().to_vec();
                buffered += bytes.len() as u64;
                st.chunks.push(Chunk {
                    segment,
                    offset: 0,
                    bytes,
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
            let before = chunk.bytes.len();
            format::encode_frame(&mut chunk.bytes, seq, payload, crc);
            buffered += (chunk.bytes.len() - before) as u64;
            chunk.last_seq = seq;
            st.active_len += len;
            st.active_records += 1;
            // Callers stop before u64::MAX (the store does); never wrap.
            st.next_seq = st.next_seq.saturating_add(1);
            added += len;
        }
        self.unwritten.fetch_add(buffered, Ordering::AcqRel);
        // SeqCst: pairs with the byte watch's arming (see `Wal::watch_bytes`).
        self.staged_bytes.fetch_add(added, Ordering::SeqCst);
        first
    }

    /// Are the bytes staged and not yet written within [`Wal::max_staged_bytes`]?
    fn within_staging_bound(&self) -> bool {
        self.staged_unwritten_bytes() <= self.max_staged || mutant!(StagingUnbounded)
    }

    /// Waits until `bytes` more can be staged within [`Wal::max_staged_bytes`]: when
    /// the bound would be passed, waits for the rotation in progress (if any) and
    /// writes what is staged. Call it *before* any lock of your own that other
    /// appenders or readers need (the store calls it before its writer section), then
    /// [`Wal::stage`].
    pub fn wait_for_room(&self, bytes: u64) -> Result<()> {
        let unwritten = self.staged_unwritten_bytes();
        if unwritten == 0
            || unwritten.saturating_add(bytes) <= self.max_staged
            || mutant!(StagingUnbounded)
        {
            return Ok(());
        }
        self.check_writable()?;
        self.metrics.backpressure_wait();
        self.write(Mode::Write, None).map(drop)
    }

    /// Writes every staged record through `seq` to the OS (page cache), without
    /// syncing. Returns once the record `seq` has been written, by this call or
    /// another, or, while another thread rotates to a new segment and the staged bytes
    /// are within [`Wal::max_staged_bytes`], once it is queued (the next write or sync
    /// writes it).
    pub fn write_through(&self, seq: Seq) -> Result<()> {
        if self.written.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.check_writable()?;
        self.write(Mode::Queue, None).map(drop)
    }

    /// Writes the chunks staged now, in order, once. A chunk for a new segment rotates:
    /// the earlier segments and the directory are synced and the new file is created
    /// with the I/O mutex *released*, so no appender waits on the disk for a rotation.
    /// Meanwhile a caller that only needs its record queued ([`Mode::Queue`]) returns
    /// at once while the staged bytes are within the bound, and the next writer writes
    /// its chunk; a caller that needs its record written ([`Mode::Write`]) waits for
    /// the rotation (until `deadline`: `None` when it passed). A [`Mode::NoWait`]
    /// caller never rotates and never waits: it returns at once during a rotation, and
    /// puts back, in order, the chunks from the first one that needs a new segment.
    ///
    /// A transient failure to create the new segment (see [`is_transient`]) puts the
    /// chunks back, in order, and is returned as [`Error::SegmentUnavailable`] to a
    /// caller that needed the write; the log stays writable and the next write or sync
    /// tries again. A caller that only queues its record gets `Ok` while the staged
    /// bytes are within the bound.
    ///
    /// After the writes, the active segment's reservation grows ahead of them (see
    /// [`WalOptions::preallocate`]; not for [`Mode::NoWait`]), with the I/O mutex
    /// released, and the byte watch runs its nudge if its threshold was reached.
    fn write_staged<'a>(
        &'a self,
        mut io: MutexGuard<'a, Io>,
        mode: Mode,
        deadline: Option<Instant>,
    ) -> Result<Option<MutexGuard<'a, Io>>> {
        let must_write = mode == Mode::Write;
        loop {
            self.check_writable()?;
            if !io.rotating {
                break;
            }
            if mode == Mode::NoWait || (!must_write && self.within_staging_bound()) {
                return Ok(Some(io));
            }
            let (guard, timed_out) = wait_until(&self.rotated, &self.io, io, deadline);
            io = guard;
            if timed_out {
                return Ok(None);
            }
        }
        let chunks = mem::take(&mut lock(&self.staged).chunks);
        self.metrics.staged(self.staged_unwritten_bytes());
        // The chunks are out of the staging list: if anything below panics, they are
        // lost, so the log must not acknowledge anything any more.
        let fail_on_panic = FailOnPanic(self, "write");
        let mut chunks = chunks.into_iter();
        while let Some(chunk) = chunks.next() {
            let file = match &io.active {
                Some((seg, f)) if *seg == chunk.segment => Arc::clone(f),
                _ if mode == Mode::NoWait => {
                    // The rotation is for a thread that may wait on the disk: this
                    // chunk and the ones after it go back, in order.
                    self.put_back(chunk, chunks);
                    break;
                }
                _ => {
                    let reopen = io.closed_active == Some(chunk.segment);
                    let opened = if reopen {
                        // An idle log closed its segment ([`Wal::close_idle_file`]):
                        // open it again. Opening an existing file is no disk wait, so
                        // the I/O mutex stays held.
                        self.reopen_segment(chunk.segment).map(|f| (f, io.reserved))
                    } else {
                        io.rotating = true;
                        drop(io);
                        let rotation = EndRotationOnPanic(self);
                        let created = self.create_segment(chunk.segment);
                        io = lock(&self.io);
                        io.rotating = false;
                        self.rotated.notify_all();
                        mem::forget(rotation);
                        created
                    };
                    let (file, reserved) = match opened {
                        Ok(c) => c,
                        Err(e @ Error::SegmentUnavailable { .. }) => {
                            // Nothing of this chunk or the ones after it was written.
                            self.put_back(chunk, chunks);
                            mem::forget(fail_on_panic);
                            if !must_write && self.within_staging_bound() {
                                return Ok(Some(io));
                            }
                            return Err(e);
                        }
                        Err(e) => return Err(e),
                    };
                    if !reopen {
                        io.dir_dirty = true;
                        io.active_end = 0;
                        self.metrics.rotation();
                    }
                    io.closed_active = None;
                    io.active = Some((chunk.segment, Arc::clone(&file)));
                    io.reserved = reserved;
                    file
                }
            };
            file.write_all_at(&chunk.bytes, chunk.offset)
                .map_err(|e| self.fail(Error::io("write", self.segment_path(chunk.segment), e)))?;
            if !io.dirty.iter().any(|(_, f)| Arc::ptr_eq(f, &file)) {
                io.dirty.push((chunk.segment, file));
            }
            io.active_end = io
                .active_end
                .max(chunk.offset.saturating_add(chunk.bytes.len() as u64));
            self.unwritten
                .fetch_sub(chunk.bytes.len() as u64, Ordering::AcqRel);
            self.written.fetch_max(chunk.last_seq, Ordering::AcqRel);
        }
        drop(fail_on_panic);
        self.metrics.staged(self.staged_unwritten_bytes());
        let io = if mode == Mode::NoWait {
            io
        } else {
            self.grow_reservation(io)
        };
        self.check_watch();
        Ok(Some(io))
    }

    /// [`Wal::write_staged`] with the I/O mutex taken here and released before the
    /// tasks waiting for a write or for room are woken (a waker runs foreign code,
    /// which must not find the mutex held). `false` when the deadline passed.
    fn write(&self, mode: Mode, deadline: Option<Instant>) -> Result<bool> {
        let written = self
            .write_staged(lock(&self.io), mode, deadline)
            .map(|io| io.is_some());
        #[cfg(feature = "async")]
        self.wake_waiters(true);
        written
    }

    /// Puts chunks taken from the staging list and not written back at its front, in
    /// order, before the chunks staged since.
    fn put_back(&self, first: Chunk, rest: impl Iterator<Item = Chunk>) {
        let mut st = lock(&self.staged);
        let later = mem::take(&mut st.chunks);
        st.chunks = std::iter::once(first).chain(rest).collect();
        st.chunks.extend(later);
    }

    /// Removes every segment whose records all have seq `<= through`, never the newest
    /// segment on disk. Returns the outcome for each segment it tried to remove.
    pub fn purge_through(&self, through: Seq) -> Result<Vec<(PathBuf, std::io::Result<()>)>> {
        let segments = list_segments(self.fs.as_ref(), &self.dir)?;
        let mut out = Vec::new();
        for pair in segments.windows(2) {
            if let [(first, path), (next_first, _)] = pair {
                if next_first.saturating_sub(1) <= through
                    || (mutant!(PurgeOneTooMany) && *first <= through.saturating_add(1))
                {
                    out.push((path.clone(), self.fs.remove_file(path)));
                }
            }
        }
        self.metrics
            .unlinked(out.iter().filter(|(_, r)| r.is_ok()).count() as u64);
        Ok(out)
    }
}

/// Releases the disk lock when dropped.
struct DiskGuard<'a>(&'a Wal);

impl Drop for DiskGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.disk) = false;
        self.0.disk_free.notify_all();
    }
}

/// Marks the log failed if dropped during a panic (something was taken out of the
/// staging or dirty list and is lost).
struct FailOnPanic<'a>(&'a Wal, &'static str);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() && !mutant!(PanicUnguarded) {
            let wal = self.0;
            wal.fail(Error::io(
                self.1,
                &wal.dir,
                io::Error::other("a file-system call panicked"),
            ));
        }
    }
}

/// Ends a rotation if the rotating thread panics, so that no thread waits for it for
/// ever. (`write_staged` ends a rotation itself otherwise, and forgets this guard.)
///
/// The log is failed first: the rotating thread took the staged chunks, now lost, and
/// a thread waiting for the rotation must find the log failed when it wakes, not go
/// on to a sync that covers nothing and acknowledges the lost records.
struct EndRotationOnPanic<'a>(&'a Wal);

impl Drop for EndRotationOnPanic<'_> {
    fn drop(&mut self) {
        if mutant!(PanicUnguarded) {
            return;
        }
        let wal = self.0;
        if std::thread::panicking() {
            // Fail first: a sync waiting for this rotation must not wake to a
            // writable log whose records were lost.
            wal.fail(Error::io(
                "write",
                &wal.dir,
                io::Error::other("a file-system call panicked"),
            ));
        }
        lock(&wal.io).rotating = false;
        wal.rotated.notify_all();
    }
}

/// Waits on `cv` (its mutex `m` held as `guard`) until notified or `deadline`; `true`
/// when the deadline has passed.
fn wait_until<'a, T>(
    cv: &Condvar,
    m: &'a Mutex<T>,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (crate::util::wait_on(cv, m, guard, None), false),
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return (guard, true);
            }
            (
                crate::util::wait_on(cv, m, guard, Some(deadline - now)),
                false,
            )
        }
    }
}
