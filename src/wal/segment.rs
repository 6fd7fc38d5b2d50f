//! Segment files: creation off the write path, the reservation that grows ahead of
//! the writes, the byte watch that nudges a scheduler, and closing the file of an
//! idle log.
//!
//! A new segment is created (and its first reservation made) with the I/O mutex
//! released and only after every earlier segment and `wal/` are durable, so only the
//! last segment can be torn (I1, I2). A failed reservation is a warning, never a
//! failure; a transient failure to create a segment keeps the records staged and is
//! retried (see [`is_transient`]).

use super::*;

impl Wal {
    /// Grows the active segment's reservation when the writes have passed half of
    /// it: to twice the reservation (or more, to stay ahead of the writes), at most
    /// `segment_bytes`. The `fallocate` runs with the I/O mutex released, by one
    /// thread at a time; nobody waits for it (a write past the reservation simply
    /// extends the file). A failure is logged at WARN and ends growth for this
    /// segment: the reservation is only an optimisation.
    ///
    /// Durability does not depend on the reservation: `fdatasync` persists a size
    /// change with the data. What the reservation buys is that most syncs find the
    /// blocks already allocated and the size unchanged, so they do not also commit an
    /// allocation and a size update, and a segment is unlikely to hit `ENOSPC` midway.
    pub(super) fn grow_reservation<'a>(&'a self, mut io: MutexGuard<'a, Io>) -> MutexGuard<'a, Io> {
        let max = self.opts.segment_bytes;
        if !self.opts.preallocate
            || io.growing
            || io.reserved >= max
            || io.active_end.saturating_mul(2) <= io.reserved
        {
            return io;
        }
        let Some((segment, file)) = io.active.as_ref().map(|(s, f)| (*s, Arc::clone(f))) else {
            return io;
        };
        let mut target = io.reserved.max(RESERVE_START);
        while target < max && io.active_end.saturating_mul(2) > target {
            target = target.saturating_mul(2);
        }
        let target = target.min(max);
        io.growing = true;
        drop(io);
        let grown = file.allocate(target);
        let mut io = lock(&self.io);
        io.growing = false;
        if io.active.as_ref().is_some_and(|(s, _)| *s == segment) {
            match grown {
                Ok(()) => io.reserved = io.reserved.max(target),
                Err(e) => {
                    tracing::warn!(segment = %self.segment_path(segment).display(), error = %e,
                        bytes = target, "could not grow a WAL segment's reservation; writing without it");
                    io.reserved = max;
                }
            }
        }
        io
    }

    /// Arms the byte watch: `nudge` runs once, from the first write after
    /// [`Wal::staged_bytes`] reaches `at` (at once from this call if it already has).
    /// `None` disarms it.
    ///
    /// Arming and staging pair up: the threshold is stored, then the byte count
    /// read; a stage adds to the byte count, then its write reads the threshold; all
    /// four `SeqCst`. So either the writer sees the threshold or this call sees the
    /// bytes: a nudge is never lost (a scheduler that parks an idle store relies on
    /// it).
    pub(crate) fn watch_bytes(&self, at: u64, nudge: Option<Nudge>) {
        let armed = nudge.is_some();
        *lock(&self.watch.nudge) = nudge;
        self.watch
            .at
            .store(if armed { at } else { u64::MAX }, Ordering::SeqCst);
        if armed {
            self.check_watch();
        }
    }

    /// Runs the byte watch's nudge (once) if its threshold was reached.
    pub(super) fn check_watch(&self) {
        let at = self.watch.at.load(Ordering::SeqCst);
        if at == u64::MAX || self.staged_bytes.load(Ordering::SeqCst) < at {
            return;
        }
        if self
            .watch
            .at
            .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let nudge = lock(&self.watch.nudge).clone();
            if let Some(nudge) = nudge {
                nudge();
            }
        }
    }

    /// Syncs every earlier segment's data and the directory (so that a crash can tear
    /// only the last segment, and cannot keep a new segment while losing an older
    /// one), then creates segment `first` and reserves its first step (see
    /// [`WalOptions::preallocate`]); returns the file and the bytes reserved. Waits
    /// for a group commit in flight: its files were taken from the dirty list and are
    /// synced only when it releases the disk lock.
    ///
    /// A transient failure of the create ([`is_transient`]: too many open files, a
    /// full disk or quota) is [`Error::SegmentUnavailable`] and leaves the log
    /// writable: the segment holds no record yet, so nothing is lost, and a later
    /// call tries again. Any other failure makes the log read-only.
    pub(super) fn create_segment(&self, first: Seq) -> Result<(Arc<dyn FsFile>, u64)> {
        {
            // Without a deadline `lock_disk` always returns `Some`.
            let _disk = if mutant!(RotationRace) {
                None
            } else {
                self.lock_disk(None)?
            };
            let (files, dir_dirty) = {
                let mut io = lock(&self.io);
                (
                    mem::take(&mut io.dirty),
                    mem::replace(&mut io.dir_dirty, false),
                )
            };
            self.sync_files(&files, dir_dirty)?;
        }
        let path = self.segment_path(first);
        let file: Arc<dyn FsFile> = match self.fs.create_new(&path) {
            Ok(f) => Arc::from(f),
            Err(e) if is_transient(&e) => return Err(unavailable("create segment", &path, e)),
            Err(e) => return Err(self.fail(Error::io("create segment", &path, e))),
        };
        let mut reserved = 0;
        if self.opts.preallocate {
            let step = RESERVE_START.min(self.opts.segment_bytes);
            // Only a reservation: the segment is still empty, so nothing is lost.
            match file.allocate(step) {
                Ok(()) => reserved = step,
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e,
                        "could not preallocate a WAL segment; using it without a reservation");
                    reserved = self.opts.segment_bytes;
                }
            }
        }
        tracing::debug!(segment = %path.display(), first_seq = first, "WAL segment created");
        Ok((file, reserved))
    }

    /// Closes the active segment's file if the log is idle: everything staged was
    /// written and synced, and no rotation or reservation is under way. The next write
    /// opens it again ([`Wal::reopen_segment`]). Returns whether a file was closed.
    ///
    /// An idle store then holds no segment descriptor, only its lock: ten thousand
    /// idle stores need ten thousand descriptors, not twenty thousand. Closing a file
    /// whose every write was synced successfully loses no error report (I1).
    pub(crate) fn close_idle_file(&self) -> bool {
        let mut io = lock(&self.io);
        let idle = !io.rotating
            && !io.growing
            && io.dirty.is_empty()
            && self.staged_unwritten_bytes() == 0
            && self.written.load(Ordering::Acquire) == self.durable.load(Ordering::Acquire);
        if !idle {
            return false;
        }
        match io.active.take() {
            Some((segment, file)) => {
                io.closed_active = Some(segment);
                drop(io);
                drop(file);
                tracing::trace!(segment = %self.segment_path(segment).display(),
                    "closed the idle WAL segment's file");
                true
            }
            None => false,
        }
    }

    /// Opens the active segment again after [`Wal::close_idle_file`]. A transient
    /// failure ([`is_transient`]) is [`Error::SegmentUnavailable`], as for a new
    /// segment: nothing was written, the records stay staged. Any other failure makes
    /// the log read-only.
    pub(super) fn reopen_segment(&self, first: Seq) -> Result<Arc<dyn FsFile>> {
        let path = self.segment_path(first);
        match self.fs.open_write(&path) {
            Ok(f) => Ok(Arc::from(f)),
            Err(e) if is_transient(&e) => Err(unavailable("reopen segment", &path, e)),
            Err(e) => Err(self.fail(Error::io("reopen segment", &path, e))),
        }
    }
}

/// The retryable error of a segment or directory that `op` could not create or open
/// for a transient reason: the log stays writable, nothing waiting is acknowledged,
/// and the next write or sync tries again.
pub(super) fn unavailable(op: &'static str, path: &Path, source: io::Error) -> Error {
    tracing::warn!(op, path = %path.display(), error = %source,
        "WAL segment or directory unavailable (transient); records stay staged and the next write or sync retries");
    Error::SegmentUnavailable {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a failure to create a file is worth retrying later: too many open files
/// (`EMFILE`, `ENFILE`), no space or quota left (`ENOSPC`, `EDQUOT`), or no kernel
/// memory (`ENOMEM`).
pub(crate) fn is_transient(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let transient = [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOSPC,
        Errno::DQUOT,
        Errno::NOMEM,
    ];
    match e.raw_os_error() {
        Some(code) => transient.iter().any(|t| t.raw_os_error() == code),
        None => matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::OutOfMemory
        ),
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    //! Reopening the segment an idle log closed: a transient failure (`EMFILE`) is
    //! retryable and leaves the log writable; any other (`EIO`) makes it read-only.
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::fs::Fs;
    use crate::testing::sim::{Fault, FaultError, OpKind, SimFs};
    use crate::wal::{Wal, WalOptions};
    use crate::Error;

    const EIO: i32 = 5;
    const EMFILE: i32 = 24;

    fn idle_log() -> (Arc<SimFs>, Wal) {
        let fs = Arc::new(SimFs::new(1));
        fs.create_dir_all(std::path::Path::new("/wal")).unwrap();
        let opts = WalOptions {
            segment_bytes: 4096,
            preallocate: false,
        };
        let wal = Wal::new(fs.clone(), PathBuf::from("/wal"), 5, 1, opts);
        stage(&wal);
        assert_eq!(wal.sync_all().unwrap(), 1);
        assert!(wal.close_idle_file());
        (fs, wal)
    }

    fn stage(wal: &Wal) {
        wal.stage([(&b"event"[..], crc32c::crc32c(b"event"))]);
    }

    #[test]
    fn reopen_failing_with_emfile_is_retried() {
        let (fs, wal) = idle_log();
        fs.inject(Fault::on_op(OpKind::OpenWrite, FaultError::Os(EMFILE)));
        stage(&wal);
        let err = wal.sync_all().unwrap_err();
        assert!(matches!(err, Error::SegmentUnavailable { .. }), "{err:?}");
        assert_eq!(err.io_error().and_then(|e| e.raw_os_error()), Some(EMFILE));
        assert!(wal.check_writable().is_ok());
        assert_eq!(wal.sync_all().unwrap(), 2);
    }

    #[test]
    fn reopen_failing_with_eio_makes_the_log_read_only() {
        let (fs, wal) = idle_log();
        fs.inject(Fault::on_op(OpKind::OpenWrite, FaultError::Eio));
        stage(&wal);
        let err = wal.sync_all().unwrap_err();
        assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
        assert_eq!(err.io_error().and_then(|e| e.raw_os_error()), Some(EIO));
        assert!(wal.check_writable().is_err());
        assert!(wal.sync_all().is_err());
    }
}
