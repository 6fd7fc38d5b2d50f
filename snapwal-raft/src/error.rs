//! The adapter's error type and its mapping to openraft's [`StorageError`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use openraft::{AnyError, ErrorSubject, ErrorVerb, NodeId, StorageError, StorageIOError};

/// Everything that can go wrong in the adapter.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The snapwal layer failed (I/O, a damaged file, a read-only log, a lock held).
    Store(snapwal::Error),
    /// An OS call of the adapter's own failed.
    Io {
        /// What the adapter was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A record or state could not be encoded.
    Encode(postcard::Error),
    /// A log record passed its checksum but does not decode as a record this build
    /// knows (an unknown record version, or a foreign payload).
    Decode {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the record's frame in the segment.
        offset: u64,
        /// The record's WAL seq.
        seq: u64,
        /// The decoder's error.
        source: postcard::Error,
    },
    /// Snapshot bytes received from a peer are not a valid snapshot, or do not match
    /// the metadata they came with.
    BadSnapshot(String),
    /// The log was closed while an operation waited on it.
    Closed,
    /// The state machine could not do what was asked (a checkpoint that stayed busy,
    /// a response count that does not match the entries).
    StateMachine(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "{e}"),
            Error::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            Error::Encode(e) => write!(f, "encode: {e}"),
            Error::Decode {
                path,
                offset,
                seq,
                source,
            } => write!(
                f,
                "{} at offset {offset}: raft record seq {seq} does not decode: {source}",
                path.display()
            ),
            Error::BadSnapshot(why) => write!(f, "bad snapshot: {why}"),
            Error::Closed => f.write_str("the log store is closed"),
            Error::StateMachine(why) => write!(f, "state machine: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            Error::Encode(e) | Error::Decode { source: e, .. } => Some(e),
            Error::BadSnapshot(_) | Error::Closed | Error::StateMachine(_) => None,
        }
    }
}

impl From<snapwal::Error> for Error {
    fn from(e: snapwal::Error) -> Self {
        Error::Store(e)
    }
}

impl Error {
    /// This error as openraft's [`StorageError`] about `subject`, while doing `verb`.
    pub fn into_storage<NID: NodeId>(
        self,
        subject: ErrorSubject<NID>,
        verb: ErrorVerb,
    ) -> StorageError<NID> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }

    /// This error as an `io::Error` (for openraft's `LogFlushed` callback).
    pub fn to_io(&self) -> io::Error {
        match self {
            Error::Io { source, .. } => io::Error::new(source.kind(), self.to_string()),
            Error::Store(e) => match e.io_error() {
                Some(source) => io::Error::new(source.kind(), self.to_string()),
                None => io::Error::other(self.to_string()),
            },
            _ => io::Error::other(self.to_string()),
        }
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
