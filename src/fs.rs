//! Every OS call snapwal makes, behind one small trait.
//!
//! [`Fs`] and [`FsFile`] are the whole surface between snapwal and the operating
//! system. [`RealFs`] implements them with `rustix` and `memmap2`. Tests, fuzz targets
//! and users' own crash harnesses swap in another implementation (a wrapper that fails
//! or delays chosen calls, or a simulated file system) through
//! [`Options::fs`](crate::Options::fs).
//!
//! # What snapwal relies on
//!
//! - [`FsFile::write_all_at`] puts bytes in the page cache; they are durable only
//!   after [`FsFile::sync_data`] returns `Ok`.
//! - A created, renamed or removed directory entry is durable only after
//!   [`Fs::sync_dir`] on its directory returns `Ok`.
//! - [`Fs::rename_noreplace`] never replaces an existing file: it fails with
//!   [`io::ErrorKind::AlreadyExists`] instead.
//! - [`Fs::lock`] fails with [`io::ErrorKind::WouldBlock`] while another lock on the
//!   same path is held, by this process or another one.
//!
//! # Invariants kept here
//!
//! - **I4 Atomic files**: [`RealFs::rename_noreplace`] is `renameat2(RENAME_NOREPLACE)`,
//!   and where the file system answers `EINVAL`/`ENOSYS`, `linkat` + `unlinkat`, which
//!   fails with `EEXIST` just the same.
//! - **I7 Exclusive**: [`RealFs::lock`] is a non-blocking `flock` on `LOCK`, released
//!   explicitly on drop.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{FlockOperation, RenameFlags, CWD};

/// The file-system operations snapwal uses. See the [module docs](self) for the
/// semantics an implementation must provide.
pub trait Fs: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` and its parents; succeeds if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a new file for writing; fails with `AlreadyExists` if `path` exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens an existing file for writing (used to cut a torn tail).
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Reads a whole file. The real implementation maps it into memory.
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Lists the names of the entries in `dir` (entries whose names are not UTF-8
    /// are left out; snapwal never creates them).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames `from` to `to`, failing with `AlreadyExists` if `to` exists.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing), held until the returned
    /// guard is dropped. Fails with `WouldBlock` if it is held elsewhere.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;

    /// Does `path` exist? `open` asks, before it creates a store's directory, which
    /// ancestors it is about to create (their entries must be made durable too). The
    /// default lists `path`: a directory that lists, or a path that is not a
    /// directory, exists.
    fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.list(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Reads `path` from byte `offset` to its end into memory, never mapping it: for
    /// files another process may be writing, read without the store's lock (a
    /// [`Reader`](crate::Reader), a backup of a store this process does not hold). An
    /// `offset` past the end gives no bytes.
    ///
    /// The default reads the whole file with [`Fs::read`] and copies the part from
    /// `offset`; [`RealFs`] reads only that part.
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let bytes = self.read(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(bytes.get(start..).unwrap_or(&[]).to_vec())
    }

    /// Creates `to` as a hard link to the file `from` (used by backups for files that
    /// never change once written). Fails with `AlreadyExists` if `to` exists; any
    /// failure makes the caller copy the file instead.
    ///
    /// The default fails with [`io::ErrorKind::Unsupported`], so a file system that
    /// does not implement it gets copies.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// An open file, written at explicit offsets.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at `offset` (into the page cache; not yet durable).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data (and the size, if it changed) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// Reserves space for the first `len` bytes, extending the file with zeros.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The bytes of a file, either mapped or owned.
pub struct FileBytes(Bytes);

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Wraps bytes held in memory (for simulated file systems).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        FileBytes(Bytes::Owned(bytes))
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes")
            .field("len", &self.len())
            .finish()
    }
}

/// The operating system's file system, through `rustix` and `memmap2`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

#[derive(Debug)]
struct RealLock(File);

impl Drop for RealLock {
    /// Unlocks explicitly rather than only closing the descriptor: a child process
    /// forked by another thread holds a copy of the descriptor until it execs, and an
    /// `flock` lives as long as any copy, so a plain close could leave the store
    /// locked for a moment after it was dropped.
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, FlockOperation::Unlock);
    }
}

impl LockGuard for RealLock {}

impl FsFile for RealFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.0).map_err(io::Error::from)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // Filesystems without fallocate: extend with a sparse size instead.
            Err(rustix::io::Errno::OPNOTSUPP) => {
                let cur = self.0.metadata()?.len();
                if cur < len {
                    self.0.set_len(len)?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let f = File::open(path)?;
        if f.metadata()?.len() == 0 {
            return Ok(FileBytes::from_vec(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this process. The file lives in
        // a store directory that this process holds the `flock` on, and snapwal never
        // writes to or truncates a file while a map of it is alive (recovery drops every
        // map before it cuts a torn tail, and appends go to segments created after
        // recovery). Another process writing to the directory while we hold the lock
        // breaks the store's documented contract; it could change the bytes we read
        // (which the checksums then reject) or fault on truncation, but it cannot make
        // this process read memory outside the mapping.
        let map = unsafe { memmap2::Mmap::map(&f)? };
        Ok(FileBytes(Bytes::Mapped(map)))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            // The filesystem (or kernel) does not support RENAME_NOREPLACE: a hard link
            // fails with EEXIST just the same, so link + unlink keeps the meaning.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                rustix::fs::linkat(CWD, from, CWD, to, rustix::fs::AtFlags::empty())?;
                rustix::fs::unlinkat(CWD, from, rustix::fs::AtFlags::empty())?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = File::open(dir)?;
        rustix::fs::fsync(&d).map_err(io::Error::from)
    }

    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let mut out = Vec::with_capacity(usize::try_from(len.saturating_sub(offset)).unwrap_or(0));
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)?;
        match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Box::new(RealLock(f))),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// How many names [`move_aside`] tries before it gives up.
const ASIDE_ATTEMPTS: u32 = 10_000;

/// Moves a damaged file aside (never replacing), so recovery stops reading it while it
/// stays on disk for inspection. Returns the new path. The caller syncs the directory.
///
/// The first name tried is `<name>.corrupt`; if it is taken (the same name was damaged
/// and moved aside before), `<name>.1.corrupt`, `<name>.2.corrupt` and so on. None of
/// them matches `<20 digits>.wal` or `<20 digits>.snap`, the only names recovery reads,
/// nor the `.<...>.tmp` names removed at open.
pub(crate) fn move_aside(fs: &dyn Fs, path: &Path) -> io::Result<std::path::PathBuf> {
    let mut last = None;
    for n in 0..ASIDE_ATTEMPTS {
        let mut aside = path.as_os_str().to_owned();
        if n == 0 {
            aside.push(".corrupt");
        } else {
            aside.push(format!(".{n}.corrupt"));
        }
        let aside = std::path::PathBuf::from(aside);
        match fs.rename_noreplace(path, &aside) {
            Ok(()) => return Ok(aside),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
}

/// Moves each of `paths` (files of `dir`) aside with [`move_aside`], then, if any
/// moved, syncs `dir` so that the new names are durable. Returns the new names, in
/// order. A failure is an error naming the file (or `dir`).
pub(crate) fn move_all_aside(
    fs: &dyn Fs,
    dir: &Path,
    paths: &[&Path],
) -> crate::Result<Vec<std::path::PathBuf>> {
    let moved = paths
        .iter()
        .map(|p| move_aside(fs, p).map_err(|e| crate::Error::io("rename aside", p, e)))
        .collect::<crate::Result<Vec<_>>>()?;
    if !moved.is_empty() {
        fs.sync_dir(dir)
            .map_err(|e| crate::Error::io("fsync dir", dir, e))?;
    }
    Ok(moved)
}

/// Directories whose own entries (and those of the directories made in them) must be
/// durable before anything written under them is acknowledged as durable, synced
/// once, by the first durable write that needs them.
///
/// Opening a new store creates its directories but syncs nothing: until a record is
/// acknowledged as durable or a snapshot is installed there is nothing a power loss
/// could take away that was promised. The first group commit that makes a record
/// durable, and every checkpoint before it installs a file, call
/// [`PendingDirs::sync`] first. Until then a crash may drop the whole new directory,
/// which loses nothing acknowledged.
#[derive(Debug, Default)]
pub(crate) struct PendingDirs {
    /// Still to sync, in order. Empty once every one was synced.
    dirs: std::sync::Mutex<Vec<std::path::PathBuf>>,
    /// Set once `dirs` is empty: the common case costs one atomic load.
    done: std::sync::atomic::AtomicBool,
}

impl PendingDirs {
    /// Nothing pending.
    pub(crate) fn none() -> Self {
        let p = PendingDirs::default();
        p.done.store(true, std::sync::atomic::Ordering::Release);
        p
    }

    /// `dirs` pending, synced in this order.
    pub(crate) fn new(dirs: Vec<std::path::PathBuf>) -> Self {
        let done = dirs.is_empty();
        PendingDirs {
            dirs: std::sync::Mutex::new(dirs),
            done: std::sync::atomic::AtomicBool::new(done),
        }
    }

    /// Syncs every pending directory, once. A failure leaves that directory and the
    /// ones after it pending (the next call tries again) and returns the path.
    pub(crate) fn sync(&self, fs: &dyn Fs) -> Result<(), (std::path::PathBuf, io::Error)> {
        use std::sync::atomic::Ordering;
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut dirs = crate::util::lock(&self.dirs);
        while let Some(dir) = dirs.first() {
            fs.sync_dir(dir).map_err(|e| (dir.clone(), e))?;
            dirs.remove(0);
        }
        self.done.store(true, Ordering::Release);
        Ok(())
    }
}
