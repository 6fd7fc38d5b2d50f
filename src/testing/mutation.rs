//! Planted bugs for the mutation score: each [`Mutation`] switches one known-wrong
//! behaviour on, so a test can show that the crash checker finds it.
//!
//! The switch is process-wide ([`set`]) and read by the library at a handful of
//! marked lines (only with the `testing` feature; without it every switch is off and
//! compiled out). Run mutants in a test binary of their own, one at a time
//! (`tests/checker_mutations.rs` does): a mutant active while other tests of the same
//! process run would make them fail too.

use std::sync::atomic::{AtomicU32, Ordering};

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mutation {
    /// The simulated file system's `sync_dir` returns `Ok` and makes nothing durable
    /// (a planted bug at the `Fs` boundary: a missing directory fsync after a create
    /// or rename).
    SkipDirSync,
    /// The simulated file system's `sync_data` returns `Ok` and makes nothing durable
    /// (a lying `fdatasync`).
    LyingSync,
    /// A group commit publishes its durable seq before its `fdatasync`, so a waiting
    /// appender is acknowledged before its record is durable.
    AckBeforeSync,
    /// WAL cleanup also unlinks the segment that holds the first record after the
    /// oldest retained snapshot.
    PurgeOneTooMany,
    /// A checkpoint saves the positions read after it loaded the state and synced the
    /// WAL (bug 2 of the concurrency review, reverted).
    PositionsAfterLoad,
    /// A rotation creates and writes the next segment without waiting for a group
    /// commit in flight (bug 1 of the concurrency review, reverted).
    RotationRace,
    /// A snapshot install that finds its name taken removes the existing file and
    /// renames over it, instead of keeping the no-replace meaning.
    ReplaceOnInstall,
    /// A failed WAL `fdatasync` is returned to the caller but does not make the log
    /// read-only: a later sync "succeeds" and acknowledges records whose pages the
    /// kernel dropped ("fsyncgate"). Found by [`Checker::faults`](crate::testing::check::Checker::faults).
    FailedSyncForgotten,
    /// A panic inside the WAL's file-system calls is not guarded: the log does not
    /// turn read-only after a panic that took the staged chunks or the unsynced-file
    /// list (so the next leader acknowledges records whose write or sync never
    /// happened), and a panic inside segment creation leaves the log "rotating" for
    /// ever (so every later write waits for ever). Bug 3 of the concurrency review,
    /// reverted. Found by [`ConcurrentChecker::panics`](crate::testing::check::ConcurrentChecker::panics).
    PanicUnguarded,
    /// Appenders never wait at the staging bound ([`Options::max_staged_bytes`](crate::Options::max_staged_bytes)):
    /// while a rotation waits on the disk they queue records in memory without limit,
    /// so a crash of the process loses them all (bug 6 of the concurrency review,
    /// reverted).
    StagingUnbounded,
    /// Closing a store on a shared [`Scheduler`](crate::Scheduler) removes its job
    /// without waiting for a run in flight, and reports it stopped: the checkpoint
    /// goes on changing the directory after `close` returned (I8; bug 10 of the
    /// concurrency review, on a shared scheduler).
    CloseLeavesJobRunning,
    /// `close` does not cancel the store's running checkpoint: it waits for it to
    /// finish, which installs its snapshot (bug 9 of the concurrency review, where a
    /// store on a shared scheduler closed in `thread_timeout` instead of 6 ms).
    CloseWithoutCancel,
}

impl Mutation {
    /// Every planted bug.
    pub const ALL: [Mutation; 12] = [
        Mutation::SkipDirSync,
        Mutation::LyingSync,
        Mutation::AckBeforeSync,
        Mutation::PurgeOneTooMany,
        Mutation::PositionsAfterLoad,
        Mutation::RotationRace,
        Mutation::ReplaceOnInstall,
        Mutation::FailedSyncForgotten,
        Mutation::PanicUnguarded,
        Mutation::StagingUnbounded,
        Mutation::CloseLeavesJobRunning,
        Mutation::CloseWithoutCancel,
    ];

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

static ACTIVE: AtomicU32 = AtomicU32::new(0);

/// Switches `m` on (or every mutation off with `None`), for the whole process.
pub fn set(m: Option<Mutation>) {
    ACTIVE.store(m.map_or(0, Mutation::bit), Ordering::SeqCst);
}

/// Is `m` switched on?
pub fn active(m: Mutation) -> bool {
    ACTIVE.load(Ordering::Relaxed) & m.bit() != 0
}
