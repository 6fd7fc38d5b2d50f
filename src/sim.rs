//! A simulated file system for crash testing: in memory, deterministic, with
//! page-cache semantics, fault injection and crash images.
//!
//! [`SimFs`] implements [`Fs`] entirely in memory. Give it to a store through
//! [`Options::fs`](crate::Options::fs), run a workload, stop it at a chosen call (a
//! *crash point*), then build the file system a power loss at that moment could
//! leave behind ([`SimFs::crash_with`] and friends) and open the store again on it.
//! [`check`](crate::check) does exactly that for every crash point of a workload.
//!
//! ```
//! use std::sync::Arc;
//! use snapwal::sim::SimFs;
//! use snapwal::check::{Tally, tick};
//!
//! let fs = Arc::new(SimFs::new(7));
//! let opts = snapwal::Options::default()
//!     .sync(snapwal::SyncPolicy::Never)
//!     .segment_bytes(4096) // files live in memory: keep preallocation small
//!     .fs(fs.clone());
//! let store = snapwal::Store::<Tally>::open("/store", opts.clone())?;
//! store.append(&tick(1))?;
//! store.sync()?;
//! store.append(&tick(2))?; // in the page cache only
//! drop(store);
//!
//! // Power loss: the synced event survives, the other one is lost.
//! let image = Arc::new(fs.crash_all_dropped());
//! let store = snapwal::Store::<Tally>::open("/store", opts.fs(image))?;
//! assert_eq!(store.seq(), 1);
//! # Ok::<(), snapwal::Error>(())
//! ```
//!
//! # The model
//!
//! Paths are absolute (a relative path is taken relative to `/`); `..` is refused. The
//! root directory `/` always exists. Every file and directory is an *inode*; a *name*
//! (a full path) points to an inode. There are two namespaces: the **visible** one,
//! which every call sees, and the **durable** one, which survives a crash.
//!
//! **File data.** Each file has durable contents and a list of pending operations
//! (writes, and size changes by [`FsFile::set_len`] and [`FsFile::allocate`]) since
//! the last [`FsFile::sync_data`]. Calls see the contents with every pending operation
//! applied. `sync_data` makes the contents and the size durable (and clears the list);
//! it does not make the file's name durable. A file that is removed stays writable
//! through handles already open, as on Unix.
//!
//! **Directory entries.** [`Fs::create_dir_all`], [`Fs::create_new`], [`Fs::lock`]
//! (when it creates the lock file), [`Fs::rename_noreplace`] and [`Fs::remove_file`]
//! change the visible namespace at once and append a *directory operation* to a pending
//! list. [`Fs::sync_dir`] on a directory makes every pending operation in that directory
//! durable, in order. A rename within one directory is one operation (atomic: after a
//! crash exactly one of the two names holds the file). A rename between directories is
//! two operations (link the new name, then unlink the old one), each pending in its
//! own directory; after a crash the file may then have both names or neither.
//! Directories cannot be renamed or removed.
//!
//! **A crash** builds a new `SimFs` from the durable state and a choice for each
//! pending item. Choices are asked, in this order, from a `FnMut() -> bool` (`true`
//! keeps):
//!
//! 1. Each pending directory operation, oldest first: kept or dropped. Operations on
//!    the same name happen in order: once one is dropped, every later operation on a
//!    name it touches is dropped without asking. Entries whose parent directory did
//!    not survive are then removed (a file whose data was synced but whose name, or
//!    whose directory's name, was never made durable vanishes).
//! 2. For each surviving file (by inode number), its **size**: for each pending size
//!    change in order (a write that extends the file, `set_len`, `allocate`), is it
//!    kept? The first `false` stops; the size is the one after the last kept change.
//! 3. Then its **data**, per 512-byte sector (by offset): for each pending operation
//!    that touched that sector, in order, is it kept? The first `false` stops; the
//!    sector holds its contents as of the last kept operation. So every sector is, on
//!    its own, in a state it had at some moment since the last sync: a write that was
//!    in flight may be torn at any sector boundary, and writes may reach the disk out
//!    of order. Bytes beyond the chosen size are cut; bytes never written read as zero.
//!
//! Nothing else is asked: durable state is kept as is, and an item with no pending
//! change asks nothing. Always answering `true` gives the visible state
//! ([`SimFs::crash_all_kept`]), always `false` the durable one
//! ([`SimFs::crash_all_dropped`]). The image has every byte durable, no pending
//! operation, no lock held, no fault and no crash point, and its own call counter.
//!
//! **What is not modeled:** bit rot and sector corruption (bytes are never changed to
//! values nobody wrote), and metadata other than names and sizes. A failed
//! `sync_data` leaves the pending operations pending (unlike Linux, which may drop the
//! dirty pages: snapwal never trusts a file after a failed sync). Files are limited
//! to 1 GiB (`ENOSPC` past it). Every byte lives in memory, preallocated ones too: give
//! the store small [`Options::segment_bytes`](crate::Options::segment_bytes).
//!
//! # Calls, crash points and faults
//!
//! Every method of [`Fs`] and [`FsFile`] is one *call*; calls are numbered from 0 in
//! the order they reach the `SimFs` ([`SimFs::calls`] counts them). Dropping a lock
//! guard is not a call.
//!
//! - [`SimFs::crash_at`]`(n)` makes call `n` and every later call fail with an error
//!   for which [`is_crash`] is true, without effect: "crash before call `n`" (and
//!   `crash_at(n + 1)` is "crash after call `n`"). When the crash point is reached every
//!   lock is released. [`SimFs::crash_now`] crashes at the next call.
//! - [`SimFs::inject`] adds a [`Fault`]: calls that match it (by call number, kind of
//!   operation, path substring; skipping the first few) fail with a chosen error
//!   (`EIO`, `ENOSPC`, ...) and have no effect.
//! - [`SimFs::set_hook`] installs a function that sees every call ([`Call`]) and may
//!   fail it: the way to drive faults from a fuzzer's input.
//!
//! Given the same calls, a `SimFs` behaves the same; the seed given to
//! [`SimFs::new`] drives [`SimFs::crash`], the only random choice it makes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fs::{FileBytes, Fs, FsFile, LockGuard};
use crate::wal::lock;

/// Sector size: the granularity at which an in-flight write can be torn.
pub const SECTOR: u64 = 512;

/// The largest file the simulation holds (1 GiB); writes past it fail with `ENOSPC`.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

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

fn crash_error() -> io::Error {
    io::Error::other(Crashed)
}

/// The kind of a call, for matching faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// [`Fs::create_dir_all`].
    CreateDirAll,
    /// [`Fs::create_new`].
    CreateNew,
    /// [`Fs::open_write`].
    OpenWrite,
    /// [`Fs::read`].
    Read,
    /// [`Fs::list`].
    List,
    /// [`Fs::rename_noreplace`].
    Rename,
    /// [`Fs::remove_file`].
    Remove,
    /// [`Fs::sync_dir`].
    SyncDir,
    /// [`Fs::lock`].
    Lock,
    /// [`FsFile::write_all_at`].
    Write,
    /// [`FsFile::sync_data`].
    SyncData,
    /// [`FsFile::allocate`].
    Allocate,
    /// [`FsFile::set_len`].
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
/// use snapwal::sim::{Fault, FaultError, OpKind};
/// // The second fdatasync of a WAL segment fails with EIO, once.
/// let f = Fault::on_op(OpKind::SyncData, FaultError::Eio).path_contains("/wal/").skip(1);
/// # let _ = f;
/// ```
#[derive(Debug, Clone)]
pub struct Fault {
    call: Option<u64>,
    op: Option<OpKind>,
    path_contains: Option<String>,
    skip: u64,
    times: u64,
    error: FaultError,
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

    fn matches(&self, call: &Call<'_>) -> bool {
        self.call.is_none_or(|n| n == call.index)
            && self.op.is_none_or(|op| op == call.op)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|s| call.path.to_string_lossy().contains(s))
    }
}

type Hook = Box<dyn FnMut(&Call<'_>) -> Option<io::Error> + Send>;

/// How to build a crash image: the choices of the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choices {
    /// Every pending item dropped: only what was durable.
    AllDropped,
    /// Every pending item kept: what was visible.
    AllKept,
    /// Each choice a fair coin from [`Rng`] seeded with this.
    Random(u64),
    /// These answers in order; `false` once they run out.
    Bits(Vec<bool>),
}

impl fmt::Display for Choices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choices::AllDropped => f.write_str("all dropped"),
            Choices::AllKept => f.write_str("all kept"),
            Choices::Random(seed) => write!(f, "random (seed {seed:#x})"),
            Choices::Bits(bits) => {
                f.write_str("bits ")?;
                for b in bits {
                    f.write_str(if *b { "1" } else { "0" })?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct FileData {
    durable: Vec<u8>,
    visible: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(FileData),
}

#[derive(Debug, Clone)]
enum DirOpKind {
    Link {
        path: PathBuf,
        ino: u64,
    },
    Unlink {
        path: PathBuf,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        ino: u64,
    },
}

#[derive(Debug, Clone)]
struct DirOp {
    dir: PathBuf,
    kind: DirOpKind,
}

impl DirOp {
    fn names(&self) -> Vec<&Path> {
        match &self.kind {
            DirOpKind::Link { path, .. } | DirOpKind::Unlink { path } => vec![path],
            DirOpKind::Rename { from, to, .. } => vec![from, to],
        }
    }
    fn apply(&self, ns: &mut BTreeMap<PathBuf, u64>) {
        match &self.kind {
            DirOpKind::Link { path, ino } => {
                ns.insert(path.clone(), *ino);
            }
            DirOpKind::Unlink { path } => {
                ns.remove(path);
            }
            DirOpKind::Rename { from, to, ino } => {
                ns.remove(from);
                ns.insert(to.clone(), *ino);
            }
        }
    }
}

struct Inner {
    calls: u64,
    crash_at: Option<u64>,
    crashed: bool,
    faults: Vec<Fault>,
    hook: Option<Hook>,
    rng: Rng,
    next_ino: u64,
    nodes: BTreeMap<u64, Node>,
    visible: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dir_ops: Vec<DirOp>,
    locks: BTreeMap<PathBuf, u64>,
    next_lock: u64,
}

const ROOT_INO: u64 = 0;

fn root() -> PathBuf {
    PathBuf::from("/")
}

fn norm(p: &Path) -> io::Result<PathBuf> {
    let mut out = root();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the simulated file system does not resolve `..`",
                ))
            }
        }
    }
    Ok(out)
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", p.display()),
    )
}

fn to_usize(n: u64) -> io::Result<usize> {
    if n > MAX_FILE_BYTES {
        return Err(FaultError::Enospc.to_io());
    }
    usize::try_from(n).map_err(|_| FaultError::Enospc.to_io())
}

/// Applies one file operation to `buf`.
fn apply_op(buf: &mut Vec<u8>, op: &FileOp) -> io::Result<()> {
    match op {
        FileOp::Write { offset, data } => {
            let start = to_usize(*offset)?;
            let end = to_usize(offset.saturating_add(data.len() as u64))?;
            if buf.len() < end {
                buf.resize(end, 0);
            }
            if let Some(dst) = buf.get_mut(start..end) {
                dst.copy_from_slice(data);
            }
        }
        FileOp::SetLen(len) => buf.resize(to_usize(*len)?, 0),
    }
    Ok(())
}

/// Applies the part of `op` that falls in the sector starting at `start`.
fn apply_to_sector(buf: &mut [u8; SECTOR as usize], start: u64, op: &FileOp) {
    let end = start + SECTOR;
    match op {
        FileOp::Write { offset, data } => {
            let lo = (*offset).max(start);
            let hi = offset.saturating_add(data.len() as u64).min(end);
            if lo < hi {
                let src = data.get((lo - offset) as usize..(hi - offset) as usize);
                let dst = buf.get_mut((lo - start) as usize..(hi - start) as usize);
                if let (Some(dst), Some(src)) = (dst, src) {
                    dst.copy_from_slice(src);
                }
            }
        }
        FileOp::SetLen(len) => {
            let from = (*len).clamp(start, end) - start;
            for b in buf.iter_mut().skip(from as usize) {
                *b = 0;
            }
        }
    }
}

impl FileData {
    fn push(&mut self, op: FileOp) -> io::Result<()> {
        apply_op(&mut self.visible, &op)?;
        self.pending.push(op);
        Ok(())
    }

    /// The contents a crash leaves, asking `choose` as the module docs say.
    fn crash_image(&self, choose: &mut dyn FnMut() -> bool) -> Vec<u8> {
        // Sizes: the size after each pending op that changed it.
        let mut len = self.durable.len() as u64;
        let mut max_len = len;
        let mut size_changes = Vec::new();
        // Sectors touched: sector -> indexes of the ops that touched it, in order.
        let mut touched: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.pending.iter().enumerate() {
            let (new_len, range) = match op {
                FileOp::Write { offset, data } if data.is_empty() => (len, None),
                FileOp::Write { offset, data } => {
                    let end = offset.saturating_add(data.len() as u64);
                    (len.max(end), Some((*offset, end)))
                }
                FileOp::SetLen(l) if *l < len => (*l, Some((*l, len))),
                FileOp::SetLen(l) => (*l, None),
            };
            if let Some((start, end)) = range {
                for s in start / SECTOR..end.div_ceil(SECTOR) {
                    touched.entry(s).or_default().push(i);
                }
            }
            if new_len != len {
                size_changes.push(new_len);
                len = new_len;
                max_len = max_len.max(len);
            }
        }
        let mut size = self.durable.len() as u64;
        for l in size_changes {
            if !choose() {
                break;
            }
            size = l;
        }
        let mut out = self.durable.clone();
        out.resize(usize::try_from(max_len).unwrap_or(0), 0);
        for (sector, ops) in touched {
            let mut kept = 0;
            while kept < ops.len() && choose() {
                kept += 1;
            }
            if kept == 0 {
                continue;
            }
            // The sector as it was durably, then the kept prefix of its ops.
            let start = sector * SECTOR;
            let mut buf = [0u8; SECTOR as usize];
            let durable = usize::try_from(start)
                .ok()
                .and_then(|s| self.durable.get(s..))
                .unwrap_or(&[]);
            for (d, s) in buf.iter_mut().zip(durable) {
                *d = *s;
            }
            for op in ops.iter().take(kept).filter_map(|&i| self.pending.get(i)) {
                apply_to_sector(&mut buf, start, op);
            }
            let lo = usize::try_from(start).unwrap_or(usize::MAX).min(out.len());
            if let Some(dst) = out.get_mut(lo..) {
                for (d, s) in dst.iter_mut().zip(buf) {
                    *d = s;
                }
            }
        }
        out.truncate(usize::try_from(size).unwrap_or(0));
        out
    }
}

impl Inner {
    fn new(seed: u64) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT_INO, Node::Dir);
        let mut ns = BTreeMap::new();
        ns.insert(root(), ROOT_INO);
        Inner {
            calls: 0,
            crash_at: None,
            crashed: false,
            faults: Vec::new(),
            hook: None,
            rng: Rng::new(seed),
            next_ino: ROOT_INO + 1,
            nodes,
            visible: ns.clone(),
            durable: ns,
            dir_ops: Vec::new(),
            locks: BTreeMap::new(),
            next_lock: 0,
        }
    }

    /// Counts the call and decides whether it fails (crash, hook, fault).
    fn enter(&mut self, op: OpKind, path: &Path) -> io::Result<()> {
        let index = self.calls;
        self.calls += 1;
        if self.crash_at.is_some_and(|n| index >= n) && !self.crashed {
            self.crashed = true;
            self.locks.clear();
            tracing::debug!(call = index, ?op, path = %path.display(), "simulated crash");
        }
        if self.crashed {
            return Err(crash_error());
        }
        let call = Call { index, op, path };
        if let Some(hook) = self.hook.as_mut() {
            if let Some(e) = hook(&call) {
                return Err(e);
            }
        }
        for f in &mut self.faults {
            if f.times > 0 && f.matches(&call) {
                if f.skip > 0 {
                    f.skip -= 1;
                } else {
                    f.times -= 1;
                    tracing::debug!(call = index, ?op, path = %path.display(), error = ?f.error, "injected fault");
                    return Err(f.error.to_io());
                }
            }
        }
        Ok(())
    }

    fn node(&self, p: &Path) -> Option<(u64, &Node)> {
        let ino = *self.visible.get(p)?;
        self.nodes.get(&ino).map(|n| (ino, n))
    }

    fn is_dir(&self, p: &Path) -> bool {
        matches!(self.node(p), Some((_, Node::Dir)))
    }

    /// The parent of `p`, which must be a visible directory.
    fn parent_dir(&self, p: &Path) -> io::Result<PathBuf> {
        let parent = p
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        match self.node(parent) {
            Some((_, Node::Dir)) => Ok(parent.to_path_buf()),
            Some((_, Node::File(_))) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", parent.display()),
            )),
            None => Err(not_found(parent)),
        }
    }

    fn link_new(&mut self, p: &Path, node: Node) -> io::Result<u64> {
        let dir = self.parent_dir(p)?;
        if self.visible.contains_key(p) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", p.display()),
            ));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.visible.insert(p.to_path_buf(), ino);
        self.dir_ops.push(DirOp {
            dir,
            kind: DirOpKind::Link {
                path: p.to_path_buf(),
                ino,
            },
        });
        Ok(ino)
    }

    fn file_mut(&mut self, ino: u64) -> io::Result<&mut FileData> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(io::Error::other("simulated file handle lost its inode")),
        }
    }

    fn image(&self, choose: &mut dyn FnMut() -> bool) -> Inner {
        let mut ns = self.durable.clone();
        let mut tainted: BTreeSet<&Path> = BTreeSet::new();
        for op in &self.dir_ops {
            let names = op.names();
            let keep = !names.iter().any(|n| tainted.contains(n)) && choose();
            if keep {
                op.apply(&mut ns);
            } else {
                tainted.extend(names);
            }
        }
        // Drop entries whose parent directory did not survive. Parents sort before
        // their children, so one pass in order sees every parent first.
        let mut kept: BTreeMap<PathBuf, u64> = BTreeMap::new();
        for (p, ino) in ns {
            let parent_ok = match p.parent() {
                None => true,
                Some(parent) => kept
                    .get(parent)
                    .is_some_and(|pi| matches!(self.nodes.get(pi), Some(Node::Dir))),
            };
            if parent_ok {
                kept.insert(p, ino);
            }
        }
        let inos: BTreeSet<u64> = kept.values().copied().collect();
        let mut nodes = BTreeMap::new();
        for ino in inos {
            let node = match self.nodes.get(&ino) {
                Some(Node::File(f)) => {
                    let bytes = f.crash_image(choose);
                    Node::File(FileData {
                        durable: bytes.clone(),
                        visible: bytes,
                        pending: Vec::new(),
                    })
                }
                Some(Node::Dir) | None => Node::Dir,
            };
            nodes.insert(ino, node);
        }
        let mut out = Inner::new(self.rng.clone().next_u64());
        out.next_ino = self.next_ino;
        out.nodes = nodes;
        out.visible = kept.clone();
        out.durable = kept;
        out
    }
}

/// The simulated file system. See the [module docs](self) for the model.
///
/// Share it with a store as `Arc<SimFs>` (keep a clone of the `Arc` to crash it and to
/// build images).
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = lock(&self.inner);
        f.debug_struct("SimFs")
            .field("calls", &g.calls)
            .field("crash_at", &g.crash_at)
            .field("crashed", &g.crashed)
            .field("entries", &g.visible.len())
            .field("pending_dir_ops", &g.dir_ops.len())
            .finish_non_exhaustive()
    }
}

impl SimFs {
    /// An empty file system (only `/`); `seed` drives [`SimFs::crash`].
    pub fn new(seed: u64) -> Self {
        SimFs {
            inner: Arc::new(Mutex::new(Inner::new(seed))),
        }
    }

    fn from_inner(inner: Inner) -> Self {
        SimFs {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// Calls made so far (including failed ones).
    pub fn calls(&self) -> u64 {
        lock(&self.inner).calls
    }

    /// Makes call `n` (from 0) and every later call fail as a crash; see the
    /// [module docs](self#calls-crash-points-and-faults).
    pub fn crash_at(&self, n: u64) {
        lock(&self.inner).crash_at = Some(n);
    }

    /// Crashes now: every further call fails, every lock is released.
    pub fn crash_now(&self) {
        let mut g = lock(&self.inner);
        g.crashed = true;
        g.locks.clear();
    }

    /// Has the crash point been reached?
    pub fn crashed(&self) -> bool {
        lock(&self.inner).crashed
    }

    /// Adds a fault rule.
    pub fn inject(&self, fault: Fault) {
        lock(&self.inner).faults.push(fault);
    }

    /// Installs a hook that sees every call (before faults are checked) and fails it
    /// by returning an error. It runs with the file system locked: it must not call
    /// back into this `SimFs`.
    pub fn set_hook(&self, hook: impl FnMut(&Call<'_>) -> Option<io::Error> + Send + 'static) {
        lock(&self.inner).hook = Some(Box::new(hook));
    }

    /// Does `path` exist (visible)?
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        norm(path.as_ref()).is_ok_and(|p| lock(&self.inner).visible.contains_key(&p))
    }

    /// Does `path` exist in the durable namespace (would its name survive any crash)?
    pub fn exists_durably(&self, path: impl AsRef<Path>) -> bool {
        norm(path.as_ref()).is_ok_and(|p| lock(&self.inner).durable.contains_key(&p))
    }

    /// Directory operations not yet made durable.
    pub fn pending_dir_ops(&self) -> usize {
        lock(&self.inner).dir_ops.len()
    }

    /// Every visible file (not directory) with its size, sorted by path.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let g = lock(&self.inner);
        g.visible
            .iter()
            .filter_map(|(p, ino)| match g.nodes.get(ino) {
                Some(Node::File(f)) => Some((p.clone(), f.visible.len() as u64)),
                _ => None,
            })
            .collect()
    }

    /// The file system a power loss now could leave, with each choice made by
    /// `choose` (`true` keeps) in the order the [module docs](self#the-model) give.
    pub fn crash_with(&self, mut choose: impl FnMut() -> bool) -> SimFs {
        SimFs::from_inner(lock(&self.inner).image(&mut choose))
    }

    /// A crash image whose choices are fair coins from the generator this `SimFs` was
    /// seeded with (each call advances it).
    pub fn crash(&self) -> SimFs {
        let seed = lock(&self.inner).rng.next_u64();
        self.crash_random(seed)
    }

    /// A crash image whose choices are fair coins from an [`Rng`] seeded with `seed`.
    pub fn crash_random(&self, seed: u64) -> SimFs {
        let mut rng = Rng::new(seed);
        self.crash_with(move || rng.bool())
    }

    /// The crash image that keeps only what was durable.
    pub fn crash_all_dropped(&self) -> SimFs {
        self.crash_with(|| false)
    }

    /// The crash image that keeps everything (the visible state, made durable).
    pub fn crash_all_kept(&self) -> SimFs {
        self.crash_with(|| true)
    }

    /// A crash image built as `choices` says; also returns every answer given, so
    /// that the same image can be rebuilt with [`Choices::Bits`].
    pub fn crash_image(&self, choices: &Choices) -> (SimFs, Vec<bool>) {
        let mut asked = Vec::new();
        let mut rng = Rng::new(match choices {
            Choices::Random(seed) => *seed,
            _ => 0,
        });
        let mut bits = match choices {
            Choices::Bits(b) => b.as_slice(),
            _ => &[],
        }
        .iter();
        let image = self.crash_with(|| {
            let b = match choices {
                Choices::AllDropped => false,
                Choices::AllKept => true,
                Choices::Random(_) => rng.bool(),
                Choices::Bits(_) => bits.next().copied().unwrap_or(false),
            };
            asked.push(b);
            b
        });
        (image, asked)
    }

    fn enter(&self, op: OpKind, path: &Path) -> io::Result<std::sync::MutexGuard<'_, Inner>> {
        let mut g = lock(&self.inner);
        g.enter(op, path)?;
        Ok(g)
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut g = self.enter(OpKind::CreateDirAll, path)?;
        let target = norm(path)?;
        let mut p = root();
        for c in target.components().skip(1) {
            p.push(c);
            match g.node(&p) {
                Some((_, Node::Dir)) => {}
                Some((_, Node::File(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is a file", p.display()),
                    ))
                }
                None => {
                    g.link_new(&p, Node::Dir)?;
                }
            }
        }
        Ok(())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut g = self.enter(OpKind::CreateNew, path)?;
        let p = norm(path)?;
        let ino = g.link_new(&p, Node::File(FileData::default()))?;
        Ok(Box::new(SimFile {
            fs: Arc::clone(&self.inner),
            ino,
            path: p,
        }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let g = self.enter(OpKind::OpenWrite, path)?;
        let p = norm(path)?;
        match g.node(&p) {
            Some((ino, Node::File(_))) => Ok(Box::new(SimFile {
                fs: Arc::clone(&self.inner),
                ino,
                path: p,
            })),
            Some((_, Node::Dir)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", p.display()),
            )),
            None => Err(not_found(&p)),
        }
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let g = self.enter(OpKind::Read, path)?;
        let p = norm(path)?;
        match g.node(&p) {
            Some((_, Node::File(f))) => Ok(FileBytes::from_vec(f.visible.clone())),
            Some((_, Node::Dir)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", p.display()),
            )),
            None => Err(not_found(&p)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let g = self.enter(OpKind::List, dir)?;
        let d = norm(dir)?;
        match g.node(&d) {
            Some((_, Node::Dir)) => {}
            Some((_, Node::File(_))) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", d.display()),
                ))
            }
            None => return Err(not_found(&d)),
        }
        Ok(g.visible
            .keys()
            .filter(|p| p.parent() == Some(d.as_path()))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut g = self.enter(OpKind::Rename, from)?;
        let (from, to) = (norm(from)?, norm(to)?);
        let from_dir = g.parent_dir(&from)?;
        let to_dir = g.parent_dir(&to)?;
        let ino = match g.node(&from) {
            Some((ino, Node::File(_))) => ino,
            Some((_, Node::Dir)) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the simulated file system does not rename directories",
                ))
            }
            None => return Err(not_found(&from)),
        };
        if g.visible.contains_key(&to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", to.display()),
            ));
        }
        g.visible.remove(&from);
        g.visible.insert(to.clone(), ino);
        if from_dir == to_dir {
            g.dir_ops.push(DirOp {
                dir: from_dir,
                kind: DirOpKind::Rename { from, to, ino },
            });
        } else {
            g.dir_ops.push(DirOp {
                dir: to_dir,
                kind: DirOpKind::Link { path: to, ino },
            });
            g.dir_ops.push(DirOp {
                dir: from_dir,
                kind: DirOpKind::Unlink { path: from },
            });
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut g = self.enter(OpKind::Remove, path)?;
        let p = norm(path)?;
        let dir = g.parent_dir(&p)?;
        match g.node(&p) {
            Some((_, Node::File(_))) => {}
            Some((_, Node::Dir)) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", p.display()),
                ))
            }
            None => return Err(not_found(&p)),
        }
        g.visible.remove(&p);
        g.dir_ops.push(DirOp {
            dir,
            kind: DirOpKind::Unlink { path: p },
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut g = self.enter(OpKind::SyncDir, dir)?;
        let d = norm(dir)?;
        if !g.is_dir(&d) {
            return Err(not_found(&d));
        }
        let ops = std::mem::take(&mut g.dir_ops);
        let (now, later): (Vec<DirOp>, Vec<DirOp>) = ops.into_iter().partition(|op| op.dir == d);
        for op in &now {
            op.apply(&mut g.durable);
        }
        g.dir_ops = later;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut g = self.enter(OpKind::Lock, path)?;
        let p = norm(path)?;
        match g.node(&p) {
            Some((_, Node::File(_))) => {}
            Some((_, Node::Dir)) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", p.display()),
                ))
            }
            None => {
                g.link_new(&p, Node::File(FileData::default()))?;
            }
        }
        if g.locks.contains_key(&p) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let token = g.next_lock;
        g.next_lock += 1;
        g.locks.insert(p.clone(), token);
        Ok(Box::new(SimLock {
            fs: Arc::clone(&self.inner),
            path: p,
            token,
        }))
    }
}

struct SimFile {
    fs: Arc<Mutex<Inner>>,
    ino: u64,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("ino", &self.ino)
            .finish()
    }
}

impl SimFile {
    fn with(
        &self,
        op: OpKind,
        body: impl FnOnce(&mut FileData) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut g = lock(&self.fs);
        g.enter(op, &self.path)?;
        body(g.file_mut(self.ino)?)
    }
}

impl FsFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(OpKind::Write, |f| {
            if offset.saturating_add(buf.len() as u64) > MAX_FILE_BYTES {
                return Err(FaultError::Enospc.to_io());
            }
            if buf.is_empty() {
                return Ok(());
            }
            f.push(FileOp::Write {
                offset,
                data: buf.to_vec(),
            })
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(OpKind::SyncData, |f| {
            f.durable = f.visible.clone();
            f.pending.clear();
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.with(OpKind::Allocate, |f| {
            if len > MAX_FILE_BYTES {
                return Err(FaultError::Enospc.to_io());
            }
            if (f.visible.len() as u64) < len {
                f.push(FileOp::SetLen(len))?;
            }
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(OpKind::SetLen, |f| {
            if len > MAX_FILE_BYTES {
                return Err(FaultError::Enospc.to_io());
            }
            if f.visible.len() as u64 != len {
                f.push(FileOp::SetLen(len))?;
            }
            Ok(())
        })
    }
}

struct SimLock {
    fs: Arc<Mutex<Inner>>,
    path: PathBuf,
    token: u64,
}

impl fmt::Debug for SimLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimLock").field("path", &self.path).finish()
    }
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut g = lock(&self.fs);
        // A crash released every lock; a newer lock on the path is not ours to drop.
        if g.locks.get(&self.path) == Some(&self.token) {
            g.locks.remove(&self.path);
        }
    }
}
