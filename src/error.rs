//! The one error type of snapwal.
//!
//! Every variant that concerns a file names it, and every variant that concerns a
//! position inside a file names the byte offset, so that an operator can open the
//! file and look.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Seq;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in snapwal.
///
/// The enum is `#[non_exhaustive]`: match the variants you handle and keep a `_` arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed.
    Io {
        /// What snapwal was doing (`"open"`, `"fdatasync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another `Store` (in this process or another one) holds the directory lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file does not start with the magic bytes snapwal writes.
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A file was written in a format version this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Bytes that fail their checksum, a header that contradicts the file name, or
    /// records that are out of sequence, where recovery cannot call them a torn tail.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first bad byte (of the bad header or record).
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The last segment ends in a torn record, and the recovery policy is
    /// [`RecoveryPolicy::Strict`](crate::RecoveryPolicy::Strict).
    TornTail {
        /// The segment.
        path: PathBuf,
        /// Offset of the first byte past the last valid record.
        offset: u64,
        /// How many bytes follow that offset.
        bytes: u64,
    },
    /// A file belongs to another store (its store id differs).
    ForeignFile {
        /// The file.
        path: PathBuf,
        /// The id of this store.
        expected: u64,
        /// The id found in the file.
        found: u64,
    },
    /// The WAL does not contain the records recovery needs: a segment is missing.
    MissingRecords {
        /// The first seq recovery needed and could not find.
        needed: Seq,
        /// Where recovery looked (the WAL directory or the segment after the gap).
        path: PathBuf,
    },
    /// A record or snapshot passed its checksum but its payload does not decode as
    /// the state's types (usually a changed `Event` or state type). See
    /// [Evolving your events](crate::format#evolving-your-events) for the changes
    /// that old logs survive.
    Decode {
        /// The file.
        path: PathBuf,
        /// Offset of the record (or of the snapshot body).
        offset: u64,
        /// The decoder's error.
        source: postcard::Error,
    },
    /// An event or a state could not be encoded.
    Encode(postcard::Error),
    /// A record is larger than the format allows (`u32::MAX` bytes of payload).
    TooLarge {
        /// Size of the encoded record payload.
        bytes: usize,
    },
    /// An earlier write or sync of the WAL failed, so the store no longer accepts
    /// appends (the on-disk log may have a hole the store cannot see). Reads still
    /// work; reopen the store to recover the durable prefix.
    ReadOnly {
        /// The failure that made the store read-only.
        cause: Arc<Error>,
    },
    /// The options are inconsistent (for example a zero segment size).
    InvalidOptions(&'static str),
    /// The store was closed.
    Closed,
    /// A checkpoint was cancelled because the store is closing.
    Cancelled,
    /// A checkpoint panicked (in the state's `Serialize`, or in the file system). The
    /// panic was caught: it is that store's failed checkpoint, logged at ERROR and
    /// counted in [`CheckpointStats::failures`](crate::CheckpointStats::failures);
    /// nothing else is affected.
    CheckpointPanicked {
        /// The panic's message.
        message: String,
    },
    /// The [`Scheduler`](crate::Scheduler) was shut down (or dropped): it runs
    /// nothing any more, so a store cannot be registered on it.
    SchedulerStopped,
    /// The store has used every sequence number (`u64::MAX - 1` events).
    SeqExhausted,
    /// A new WAL segment could not be created (or the segment an idle store had
    /// closed could not be opened again, or a directory could not be opened to sync
    /// it) for a transient reason: too many open files (`EMFILE`, `ENFILE`), a full
    /// disk or quota (`ENOSPC`, `EDQUOT`; creating only), or no kernel memory. Retryable ([`Error::is_retryable`]): the store stays writable,
    /// records already acknowledged are unaffected, and the records waiting for the
    /// segment stay staged, in order, and are written by the next write or sync that
    /// creates it.
    ///
    /// For the append that returned it: under [`SyncPolicy::Always`](crate::SyncPolicy::Always)
    /// its event was logged and applied (it is visible in
    /// [`Store::current`](crate::Store::current)) but is *not durable yet*: do not
    /// append it again; [`Store::sync`](crate::Store::sync) retries and says when it
    /// is durable. The exception is an append that found the staging bound
    /// ([`Options::max_staged_bytes`](crate::Options::max_staged_bytes)) full of
    /// records waiting for the segment: it was refused before its event was logged,
    /// and [`Store::seq`](crate::Store::seq) did not move. Under `Never` and
    /// `Interval`, appends keep succeeding while their records fit in the staging
    /// bound, and past it are refused that way.
    SegmentUnavailable {
        /// The segment (or directory) that could not be created or opened.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A backup's destination exists and is not an empty directory
    /// ([`Store::backup_to`](crate::Store::backup_to),
    /// [`backup::backup_dir`](crate::backup::backup_dir)). Nothing was written.
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// [`Store::create_with`](crate::Store::create_with) found a store in the
    /// directory (a snapshot, a WAL segment or a positions record): it imports into a
    /// new directory only, and changed nothing.
    StoreExists {
        /// The store directory.
        path: PathBuf,
    },
    /// The log on disk ends before a seq a [`Reader`](crate::Reader) has already read:
    /// the writer lost records it had written (a power loss before they were durable,
    /// or a reopen under [`RecoveryPolicy::SalvagePrefix`](crate::RecoveryPolicy::SalvagePrefix))
    /// and gives their seqs to other events. The reader keeps its state; a later
    /// refresh that finds the log past the reader's seq again reloads it (the new
    /// history, from scratch), or open a new `Reader`.
    LogRewound {
        /// The store directory.
        path: PathBuf,
        /// The seq the reader had reached.
        read: Seq,
        /// The seq the store on disk reaches now.
        found: Seq,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Whether retrying later can succeed without reopening the store: `true` for
    /// [`Error::SegmentUnavailable`] (descriptors or disk space ran out for a
    /// moment).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::SegmentUnavailable { .. })
    }

    /// The OS error behind this error, if it is one (also through [`Error::ReadOnly`]).
    ///
    /// Useful to tell a full disk (`ENOSPC`) from other failures.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::SegmentUnavailable { source, .. } => Some(source),
            Error::ReadOnly { cause } => cause.io_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Locked { path } => write!(
                f,
                "store is locked by another open Store (lock file {})",
                path.display()
            ),
            Error::BadMagic { path } => {
                write!(f, "{} is not a snapwal file (bad magic)", path.display())
            }
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads version {supported}",
                path.display()
            ),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{} is corrupt at offset {offset}: {reason}",
                path.display()
            ),
            Error::TornTail {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "{} ends in a torn record: {bytes} bytes after offset {offset}",
                path.display()
            ),
            Error::ForeignFile {
                path,
                expected,
                found,
            } => write!(
                f,
                "{} belongs to store {found:016x}, not {expected:016x}",
                path.display()
            ),
            Error::MissingRecords { needed, path } => write!(
                f,
                "WAL record {needed} is missing (looked in {}); a segment was removed or lost",
                path.display()
            ),
            Error::Decode {
                path,
                offset,
                source,
            } => write!(
                f,
                "{} at offset {offset}: the payload passed its checksum but no longer decodes \
                 as the state's event or state type ({source}); the type changed in a way \
                 postcard cannot read back: see \"Evolving your events\" in the \
                 snapwal::format docs",
                path.display()
            ),
            Error::Encode(e) => write!(f, "encoding failed: {e}"),
            Error::TooLarge { bytes } => write!(f, "record of {bytes} bytes is too large"),
            Error::ReadOnly { cause } => {
                write!(f, "store is read-only after an earlier failure: {cause}")
            }
            Error::InvalidOptions(what) => write!(f, "invalid options: {what}"),
            Error::Closed => write!(f, "store is closed"),
            Error::Cancelled => write!(f, "cancelled because the store is closing"),
            Error::CheckpointPanicked { message } => {
                write!(f, "the checkpoint panicked: {message}")
            }
            Error::SchedulerStopped => write!(f, "the scheduler was shut down"),
            Error::SeqExhausted => write!(f, "every sequence number has been used"),
            Error::StoreExists { path } => write!(
                f,
                "{} already holds a store; create_with imports into a new directory only",
                path.display()
            ),
            Error::DestinationNotEmpty { path } => write!(
                f,
                "backup destination {} exists and is not an empty directory",
                path.display()
            ),
            Error::LogRewound { path, read, found } => write!(
                f,
                "the log of {} now ends at seq {found}, before seq {read} this reader already \
                 read (the writer lost records it had written); open a new reader",
                path.display()
            ),
            Error::SegmentUnavailable { path, source } => write!(
                f,
                "WAL segment or directory {} unavailable ({source}); nothing is lost and the store \
                 stays writable: the next write or sync retries",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::SegmentUnavailable { source, .. } => Some(source),
            Error::Decode { source, .. } => Some(source),
            Error::Encode(e) => Some(e),
            Error::ReadOnly { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
