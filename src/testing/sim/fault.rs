//! Faults: crash points, injected errors, hooks, and the seeded generator behind them.

use std::fmt;
use std::io;
use std::path::Path;

/// A small deterministic pseudo-random generator (SplitMix64), for crash choices and
/// sampling. Not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A random bit.
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// A number in `0..n` (`0` if `n` is `0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The error every call returns once the simulated crash point is reached; see
/// [`is_crash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crashed;

impl fmt::Display for Crashed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("simulated crash: the file system is gone")
    }
}

impl std::error::Error for Crashed {}

/// Is `e` the error of a simulated crash (and not an injected fault)?
pub fn is_crash(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Crashed>())
}

pub(super) fn crash_error() -> io::Error {
    io::Error::other(Crashed)
}

/// The kind of a call, for matching faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// [`Fs::create_dir_all`](crate::fs::Fs::create_dir_all).
    CreateDirAll,
    /// [`Fs::create_new`](crate::fs::Fs::create_new).
    CreateNew,
    /// [`Fs::open_write`](crate::fs::Fs::open_write).
    OpenWrite,
    /// [`Fs::read`](crate::fs::Fs::read).
    Read,
    /// [`Fs::list`](crate::fs::Fs::list).
    List,
    /// [`Fs::rename_noreplace`](crate::fs::Fs::rename_noreplace).
    Rename,
    /// [`Fs::remove_file`](crate::fs::Fs::remove_file).
    Remove,
    /// [`Fs::sync_dir`](crate::fs::Fs::sync_dir).
    SyncDir,
    /// [`Fs::lock`](crate::fs::Fs::lock).
    Lock,
    /// [`FsFile::write_all_at`](crate::fs::FsFile::write_all_at).
    Write,
    /// [`FsFile::sync_data`](crate::fs::FsFile::sync_data).
    SyncData,
    /// [`FsFile::allocate`](crate::fs::FsFile::allocate).
    Allocate,
    /// [`FsFile::set_len`](crate::fs::FsFile::set_len).
    SetLen,
}

/// One call, as a hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The call's number (from 0).
    pub index: u64,
    /// What the call does.
    pub op: OpKind,
    /// The path it concerns (for file calls: the path the file was opened under; for
    /// a rename: the source).
    pub path: &'a Path,
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// `EIO`: an I/O error.
    Eio,
    /// `ENOSPC`: no space left on device.
    Enospc,
    /// Any OS error number.
    Os(i32),
    /// An error of this kind, with no OS error number.
    Kind(io::ErrorKind),
}

impl FaultError {
    /// The `io::Error` it stands for.
    pub fn to_io(self) -> io::Error {
        match self {
            FaultError::Eio => io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()),
            FaultError::Enospc => {
                io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error())
            }
            FaultError::Os(n) => io::Error::from_raw_os_error(n),
            FaultError::Kind(k) => io::Error::from(k),
        }
    }
}

/// A rule that makes matching calls fail. Build it with [`Fault::on_call`] or
/// [`Fault::on_op`] and narrow it with the other methods.
///
/// ```
/// use snapwal::testing::sim::{Fault, FaultError, OpKind};
/// // The second fdatasync of a WAL segment fails with EIO, once.
/// let f = Fault::on_op(OpKind::SyncData, FaultError::Eio).path_contains("/wal/").skip(1);
/// # let _ = f;
/// ```
#[derive(Debug, Clone)]
pub struct Fault {
    call: Option<u64>,
    op: Option<OpKind>,
    path_contains: Option<String>,
    pub(super) skip: u64,
    pub(super) times: u64,
    pub(super) error: FaultError,
}

impl Fault {
    /// Fails call number `n` (from 0).
    pub fn on_call(n: u64, error: FaultError) -> Self {
        Fault {
            call: Some(n),
            op: None,
            path_contains: None,
            skip: 0,
            times: 1,
            error,
        }
    }
    /// Fails the first call of kind `op`.
    pub fn on_op(op: OpKind, error: FaultError) -> Self {
        Fault {
            call: None,
            op: Some(op),
            path_contains: None,
            skip: 0,
            times: 1,
            error,
        }
    }
    /// Only calls whose path contains `s`.
    pub fn path_contains(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }
    /// Lets the first `n` matching calls succeed.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }
    /// Fails `n` matching calls (default 1; `u64::MAX` for every one).
    pub fn times(mut self, n: u64) -> Self {
        self.times = n;
        self
    }

    pub(super) fn matches(&self, call: &Call<'_>) -> bool {
        self.call.is_none_or(|n| n == call.index)
            && self.op.is_none_or(|op| op == call.op)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|s| call.path.to_string_lossy().contains(s))
    }
}

pub(super) type Hook = Box<dyn FnMut(&Call<'_>) -> Option<io::Error> + Send>;
