//! Group commit: one `fdatasync` per dirty segment for every waiting appender, under
//! the disk lock.
//!
//! Every WAL `fdatasync` and every fsync of the directory runs under one disk lock
//! that no appender's writer section needs (I3), so two syncs of one segment never
//! race: on Linux only one of them would see a writeback error. The failed flag is
//! checked on taking the lock and before `durable` advances (I1). A leader first lets
//! appenders staging right now join (a few yields, [`Wal::gather`]), then covers what
//! was staged when it wrote, never what keeps arriving (I9).

use std::time::{Duration, Instant};

use super::*;

/// The most times a new group commit's leader yields to let other appenders stage
/// ([`Wal::gather`]).
const GATHER_YIELDS: u32 = 8;

impl Wal {
    /// Makes every record through `seq` durable (one `fdatasync` per dirty segment,
    /// plus the directory when a segment was created). Concurrent callers share the
    /// sync: whoever holds the sync lock covers everything written before it.
    pub fn sync_through(&self, seq: Seq) -> Result<Seq> {
        self.sync_until(seq, None)
            .map(|done| done.unwrap_or_else(|| self.durable_seq()))
    }

    /// Makes everything staged so far durable.
    pub fn sync_all(&self) -> Result<Seq> {
        let last = lock(&self.staged).next_seq.saturating_sub(1);
        self.sync_through(last)
    }

    /// Like [`Wal::sync_all`], but gives up waiting after `timeout`: returns
    /// `Ok(None)` when another thread's group commit or rotation, stuck on the disk,
    /// did not finish in time (that thread keeps going; nothing is lost or marked
    /// failed). Waits on other threads are bounded; an `fdatasync` this call itself
    /// started cannot be interrupted and is waited for.
    pub fn sync_all_timeout(&self, timeout: Duration) -> Result<Option<Seq>> {
        let last = lock(&self.staged).next_seq.saturating_sub(1);
        // A timeout too long to represent is no deadline.
        self.sync_until(last, Instant::now().checked_add(timeout))
    }

    /// [`Wal::sync_through`] with an optional deadline for the waits on other threads;
    /// `Ok(None)` when it passed.
    pub(super) fn sync_until(&self, seq: Seq, deadline: Option<Instant>) -> Result<Option<Seq>> {
        let mut leader = lock(&self.sync_lock);
        loop {
            let durable = self.durable.load(Ordering::Acquire);
            if durable >= seq {
                return Ok(Some(durable));
            }
            self.check_writable()?;
            if !*leader {
                break;
            }
            // A sync is running; it may cover `seq`. All followers wake together when
            // it ends (a mutex queue would hand over one waiter at a time).
            let (guard, timed_out) = wait_until(&self.sync_done, &self.sync_lock, leader, deadline);
            leader = guard;
            if timed_out {
                return Ok(None);
            }
        }
        *leader = true;
        drop(leader);
        // Hands leadership back however the group commit ends (even by a panic in an
        // `Fs`, or while gathering).
        struct Handback<'a>(&'a Wal);
        impl Drop for Handback<'_> {
            fn drop(&mut self) {
                *lock(&self.0.sync_lock) = false;
                self.0.sync_done.notify_all();
            }
        }
        let _handback = Handback(self);
        self.gather();
        self.sync_once(deadline)
    }

    /// Lets appenders that are staging right now join the group commit about to
    /// start: yields while new records keep arriving, at most [`GATHER_YIELDS`]
    /// times, so the leader still covers a bounded batch (I9).
    ///
    /// Without it the first appender woken by the last group commit leads the next
    /// one alone: the others stage a moment later and wait a whole `fdatasync` more.
    /// With two appenders on two cores, gathering made one `fdatasync` cover both,
    /// 1.5× the durable appends per second (1.1× with eight; one appender: no
    /// change), measured with the peer comparison in `peers/`.
    fn gather(&self) {
        let mut last = lock(&self.staged).next_seq;
        for _ in 0..GATHER_YIELDS {
            std::thread::yield_now();
            let now = lock(&self.staged).next_seq;
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// One group commit: write what is staged now, sync every dirty segment (and the
    /// directory if a segment was created), publish the new durable seq.
    pub(super) fn sync_once(&self, deadline: Option<Instant>) -> Result<Option<Seq>> {
        if !self.write(Mode::Write, deadline)? {
            return Ok(None);
        }
        let Some(disk) = self.lock_disk(deadline)? else {
            return Ok(None);
        };
        let (files, dir_dirty, written) = {
            let mut io = lock(&self.io);
            (
                mem::take(&mut io.dirty),
                mem::replace(&mut io.dir_dirty, false),
                self.written.load(Ordering::Acquire),
            )
        };
        if mutant!(AckBeforeSync) {
            self.durable.fetch_max(written, Ordering::AcqRel);
        }
        self.sync_files(&files, dir_dirty)?;
        // A new store's directories, created without a sync at open: durable before
        // its first record is (a no-op afterwards). A failure fails the log, as a
        // failed sync of `wal/` does, unless the directory could not be opened.
        if let Err((dir, e)) = self.pending_dirs.sync(self.fs.as_ref()) {
            if is_transient_open(&e) {
                return Err(segment::unavailable("fsync dir", &dir, e));
            }
            return Err(self.fail(Error::io("fsync dir", dir, e)));
        }
        // Another thread's failure may have been reported by the OS to it alone.
        self.check_writable()?;
        let before = self.durable.fetch_max(written, Ordering::AcqRel);
        if written > before {
            self.metrics.group_commit(written - before);
        }
        drop(disk);
        // Tasks whose records this sync covered (`waiters`).
        #[cfg(feature = "async")]
        self.wake_waiters(false);
        Ok(Some(written))
    }

    /// Takes the disk lock (waiting until `deadline`), then checks that no earlier
    /// holder failed. Without a deadline the result is always `Some`.
    pub(super) fn lock_disk(&self, deadline: Option<Instant>) -> Result<Option<DiskGuard<'_>>> {
        let mut busy = lock(&self.disk);
        while *busy {
            let (guard, timed_out) = wait_until(&self.disk_free, &self.disk, busy, deadline);
            busy = guard;
            if timed_out {
                return Ok(None);
            }
        }
        *busy = true;
        drop(busy);
        let guard = DiskGuard(self);
        self.check_writable()?;
        Ok(Some(guard))
    }

    /// Syncs `files` and, if `dir`, the directory. Runs under the disk lock; the files
    /// were taken from the dirty list, so any failure (or panic) fails the log before
    /// the disk lock is released.
    pub(super) fn sync_files(&self, files: &[Segment], dir: bool) -> Result<()> {
        let _fail = FailOnPanic(self, "fdatasync");
        for (first, f) in files {
            let timer = Timer::start();
            f.sync_data().map_err(|e| {
                let e = Error::io("fdatasync", self.segment_path(*first), e);
                if mutant!(FailedSyncForgotten) {
                    e
                } else {
                    self.fail(e)
                }
            })?;
            self.metrics.fdatasync(timer);
        }
        if dir {
            if let Err(e) = self.fs.sync_dir(&self.dir) {
                if is_transient_open(&e) {
                    // The directory could not even be opened: nothing was synced and
                    // nothing failed. Sync it next time; acknowledge nothing now.
                    lock(&self.io).dir_dirty = true;
                    return Err(segment::unavailable("fsync dir", &self.dir, e));
                }
                return Err(self.fail(Error::io("fsync dir", &self.dir, e)));
            }
        }
        Ok(())
    }
}

/// Whether a failed directory sync failed to *open* the directory for a transient
/// reason (too many open files, no kernel memory): `fsync` itself never reports
/// these, so nothing was synced and no writeback error was consumed. (`ENOSPC` is not
/// among them: `fsync` reports a failed writeback that way.)
fn is_transient_open(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOMEM]
        .iter()
        .any(|t| e.raw_os_error() == Some(t.raw_os_error()))
}
