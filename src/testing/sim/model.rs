//! The model: inodes, names visible and durable, pending writes and directory
//! operations, and the [`Fs`] implementation over them.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fault::{crash_error, Call, Fault, FaultError, Hook, OpKind, Rng};
use super::SimFs;
use crate::fs::{FileBytes, Fs, FsFile, LockGuard};
use crate::util::lock_raw as lock;

/// Sector size: the granularity at which an in-flight write can be torn.
pub const SECTOR: u64 = 512;

/// The largest file the simulation holds (1 GiB); writes past it fail with `ENOSPC`.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub(super) enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
pub(super) struct FileData {
    pub(super) durable: Vec<u8>,
    pub(super) visible: Vec<u8>,
    pub(super) pending: Vec<FileOp>,
    /// Sectors (by index) with a latent read error: a read of the file fails with
    /// `EIO` while one of them is within its size (see [`SimFs::latent_read_error`]).
    pub(super) unreadable: std::collections::BTreeSet<u64>,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Dir,
    File(FileData),
}

#[derive(Debug, Clone)]
pub(super) enum DirOpKind {
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
pub(super) struct DirOp {
    dir: PathBuf,
    kind: DirOpKind,
}

impl DirOp {
    pub(super) fn names(&self) -> Vec<&Path> {
        match &self.kind {
            DirOpKind::Link { path, .. } | DirOpKind::Unlink { path } => vec![path],
            DirOpKind::Rename { from, to, .. } => vec![from, to],
        }
    }
    pub(super) fn apply(&self, ns: &mut BTreeMap<PathBuf, u64>) {
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

pub(super) struct Inner {
    pub(super) calls: u64,
    pub(super) crash_at: Option<u64>,
    pub(super) crashed: bool,
    pub(super) faults: Vec<Fault>,
    pub(super) hook: Option<Hook>,
    pub(super) rng: Rng,
    pub(super) next_ino: u64,
    pub(super) nodes: BTreeMap<u64, Node>,
    pub(super) visible: BTreeMap<PathBuf, u64>,
    pub(super) durable: BTreeMap<PathBuf, u64>,
    pub(super) dir_ops: Vec<DirOp>,
    pub(super) locks: BTreeMap<PathBuf, u64>,
    /// Renames run as a link then an unlink, two calls (see
    /// [`SimFs::set_rename_via_link`]).
    pub(super) rename_via_link: bool,
    /// Injected faults that have fired.
    pub(super) faults_fired: u64,
    pub(super) next_lock: u64,
    /// Calls that added a name while another file in its directory held unsynced
    /// data (see [`SimFs::names_ahead_of_data`]).
    pub(super) names_ahead: Vec<u64>,
}

/// A call admitted by the scheduler (if any), with the model locked. The model is
/// unlocked before the scheduler hears that the call ended.
pub(super) struct Entered<'a> {
    pub(super) g: std::sync::MutexGuard<'a, Inner>,
    pub(super) _call: super::sched::CallGuard<'a>,
}

impl std::ops::Deref for Entered<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.g
    }
}

impl std::ops::DerefMut for Entered<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.g
    }
}

const ROOT_INO: u64 = 0;

fn root() -> PathBuf {
    PathBuf::from("/")
}

pub(super) fn norm(p: &Path) -> io::Result<PathBuf> {
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
pub(super) fn apply_op(buf: &mut Vec<u8>, op: &FileOp) -> io::Result<()> {
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

impl FileData {
    fn push(&mut self, op: FileOp) -> io::Result<()> {
        apply_op(&mut self.visible, &op)?;
        if let FileOp::Write { offset, data } = &op {
            // A drive remaps a sector with a latent error when it is written.
            let end = offset.saturating_add(data.len() as u64);
            let (lo, hi) = (offset / SECTOR, end.div_ceil(SECTOR));
            self.unreadable.retain(|s| !(lo..hi).contains(s));
        }
        self.pending.push(op);
        Ok(())
    }

    /// Whether a read of the whole file meets a sector with a latent read error.
    pub(super) fn read_fails(&self) -> bool {
        let sectors = (self.visible.len() as u64).div_ceil(SECTOR);
        self.unreadable.range(..sectors).next().is_some()
    }
}

impl Inner {
    pub(super) fn new(seed: u64) -> Self {
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
            rename_via_link: false,
            faults_fired: 0,
            names_ahead: Vec::new(),
        }
    }

    /// Notes the current call if it adds the name `p` (of inode `ino`) while another
    /// file in the same directory holds unsynced data.
    fn note_name_added(&mut self, p: &Path, ino: u64) {
        let dir = p.parent();
        let behind = self.visible.iter().any(|(q, &other)| {
            other != ino
                && q.parent() == dir
                && matches!(self.nodes.get(&other), Some(Node::File(f)) if !f.pending.is_empty())
        });
        if behind {
            self.names_ahead.push(self.calls.saturating_sub(1));
        }
    }

    /// Counts the call and decides whether it fails (crash, hook, fault).
    pub(super) fn enter(&mut self, op: OpKind, path: &Path) -> io::Result<()> {
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
                    self.faults_fired += 1;
                    tracing::debug!(call = index, ?op, path = %path.display(), error = ?f.error, "injected fault");
                    return Err(f.error.to_io());
                }
            }
        }
        Ok(())
    }

    /// The inode a no-replace rename of `from` to `to` moves: `from` must be a file
    /// and `to` must not exist.
    fn rename_source(&self, from: &Path, to: &Path) -> io::Result<u64> {
        let ino = match self.node(from) {
            Some((ino, Node::File(_))) => ino,
            Some((_, Node::Dir)) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the simulated file system does not rename directories",
                ))
            }
            None => return Err(not_found(from)),
        };
        if self.visible.contains_key(to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", to.display()),
            ));
        }
        Ok(ino)
    }

    pub(super) fn node(&self, p: &Path) -> Option<(u64, &Node)> {
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
        self.note_name_added(p, ino);
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
            sched: self.sched.get().cloned(),
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
                sched: self.sched.get().cloned(),
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
            Some((_, Node::File(f))) if f.read_fails() => {
                tracing::debug!(path = %p.display(), "latent read error");
                Err(FaultError::Eio.to_io())
            }
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
        if lock(&self.inner).rename_via_link {
            return self.rename_by_link(from, to);
        }
        let mut g = self.enter(OpKind::Rename, from)?;
        let (from, to) = (norm(from)?, norm(to)?);
        let from_dir = g.parent_dir(&from)?;
        let to_dir = g.parent_dir(&to)?;
        let ino = g.rename_source(&from, &to)?;
        g.note_name_added(&to, ino);
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
        if crate::testing::mutation::active(crate::testing::mutation::Mutation::SkipDirSync) {
            return Ok(());
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
    sched: Option<Arc<super::Scheduler>>,
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
        let _call = super::gate(self.sched.as_ref(), &self.fs);
        let mut g = lock(&self.fs);
        let entered = g.enter(op, &self.path);
        super::switch_off_if_crashed(self.sched.as_ref(), &g);
        if let Err(e) = entered {
            if op == OpKind::SyncData && !super::is_crash(&e) {
                // Linux: a failed `fdatasync` drops the dirty pages (marks them clean
                // without writing them) and reports the error once; a retried sync
                // then succeeds with the data gone from the disk, though still in the
                // page cache that reads see ("fsyncgate").
                if let Ok(f) = g.file_mut(self.ino) {
                    f.pending.clear();
                }
            }
            return Err(e);
        }
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
            if crate::testing::mutation::active(crate::testing::mutation::Mutation::LyingSync) {
                return Ok(());
            }
            // What the pending writes make of the disk's bytes: after a failed sync
            // dropped some (see `with`), the disk differs from what reads see.
            f.durable = f.crash_image(&mut || true);
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

impl SimFs {
    /// A no-replace rename as a file system without `RENAME_NOREPLACE` makes it (the
    /// `EINVAL` fallback of [`RealFs`](crate::fs::RealFs)): a hard link to the new
    /// name, failing if it exists, then, in a second call, an unlink of the old name.
    /// The two are separate directory operations on different names, so a crash can
    /// leave both names, or (if only the unlink reached the disk) neither.
    fn rename_by_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from)?, norm(to)?);
        {
            let mut g = self.enter(OpKind::Rename, &from)?;
            let to_dir = g.parent_dir(&to)?;
            let ino = g.rename_source(&from, &to)?;
            g.note_name_added(&to, ino);
            g.visible.insert(to.clone(), ino);
            g.dir_ops.push(DirOp {
                dir: to_dir,
                kind: DirOpKind::Link { path: to, ino },
            });
        }
        let mut g = self.enter(OpKind::Remove, &from)?;
        let from_dir = g.parent_dir(&from)?;
        g.visible.remove(&from);
        g.dir_ops.push(DirOp {
            dir: from_dir,
            kind: DirOpKind::Unlink { path: from },
        });
        Ok(())
    }
}
