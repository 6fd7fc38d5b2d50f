//! A simulated file system for crash testing: in memory, deterministic, with
//! page-cache semantics, fault injection and crash images.
//!
//! [`SimFs`] implements [`Fs`] entirely in memory. Give it to a store through
//! [`Options::fs`](crate::Options::fs), run a workload, stop it at a chosen call (a
//! *crash point*), then build the file system a power loss at that moment could
//! leave behind ([`SimFs::crash_with`] and friends) and open the store again on it.
//! [`check`](crate::testing::check) does exactly that for every crash point of a workload.
//!
//! ```
//! use std::sync::Arc;
//! use snapwal::testing::sim::SimFs;
//! use snapwal::testing::check::{Tally, tick};
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
//! (writes, and size changes by [`FsFile::set_len`](crate::fs::FsFile::set_len) and [`FsFile::allocate`](crate::fs::FsFile::allocate)) since
//! the last [`FsFile::sync_data`](crate::fs::FsFile::sync_data). Calls see the contents with every pending operation
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
//! ([`SimFs::crash_all_dropped`]); `true` for the directory operations and `false`
//! after them ([`Choices::NamesKept`]) keeps every name and loses every unsynced
//! byte. The image has every byte durable, no pending
//! operation, no lock held, no fault and no crash point, and its own call counter.
//!
//! **Damage to durable data** is not a crash choice: a test applies it on purpose
//! ([`SimFs::flip_byte`], [`SimFs::misdirect_write`], [`SimFs::latent_read_error`], or
//! [`SimFs::damage`] with a [`Damage`]), usually to a crash image before opening a
//! store on it. A latent read error makes every [`Fs::read`] of the file fail with
//! `EIO`, like a `read(2)`; on a real file system a store that maps the file would get
//! `SIGBUS` instead.
//!
//! A failed `sync_data` behaves as on Linux: the file's pending operations are
//! dropped (marked clean without reaching the disk, though reads still see them) and
//! the error is reported once; a retried sync then succeeds with that data gone.
//!
//! **What is not modeled:** metadata other than names and sizes. Files are limited
//! to 1 GiB (`ENOSPC` past it). Every byte lives in memory, preallocated ones too: give
//! the store small [`Options::segment_bytes`](crate::Options::segment_bytes).
//!
//! # Calls, crash points and faults
//!
//! Every method of [`Fs`] and [`FsFile`](crate::fs::FsFile) is one *call*; calls are numbered from 0 in
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

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod crash;
mod fault;
mod model;
mod rot;
mod sched;

pub use crash::Choices;
pub use fault::{is_crash, Call, Crashed, Fault, FaultError, OpKind, Rng};
pub use model::{MAX_FILE_BYTES, SECTOR};
pub use rot::Damage;
pub(crate) use sched::{blocked, mark, point, scheduled};
pub use sched::{ActorGuard, Mark, Scheduler};

use crate::fs::Fs;
use crate::util::lock_raw as lock;
use model::{norm, Inner, Node};

/// The simulated file system. See the [module docs](self) for the model.
///
/// Share it with a store as `Arc<SimFs>` (keep a clone of the `Arc` to crash it and to
/// build images).
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
    sched: std::sync::OnceLock<Arc<Scheduler>>,
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
            sched: std::sync::OnceLock::new(),
        }
    }

    fn from_inner(inner: Inner) -> Self {
        SimFs {
            inner: Arc::new(Mutex::new(inner)),
            sched: std::sync::OnceLock::new(),
        }
    }

    /// A file system holding `files` (absolute paths, parents created) durably, with
    /// its call counter at 0: the way to start a check from bytes on disk.
    pub fn with_files(
        seed: u64,
        files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>,
    ) -> io::Result<SimFs> {
        let fs = SimFs::new(seed);
        for (path, bytes) in files {
            if let Some(parent) = path.parent() {
                fs.create_dir_all(parent)?;
            }
            fs.create_new(&path)?.write_all_at(&bytes, 0)?;
        }
        // Everything visible, made durable; a fresh counter.
        Ok(fs.crash_all_kept())
    }

    /// The visible contents of the file at `path`, if it is one (not a call).
    pub fn contents(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        let p = norm(path.as_ref()).ok()?;
        match lock(&self.inner).node(&p) {
            Some((_, Node::File(f))) => Some(f.visible.clone()),
            _ => None,
        }
    }

    /// Calls made so far (including failed ones).
    pub fn calls(&self) -> u64 {
        lock(&self.inner).calls
    }

    /// The calls (by index) that added a name (a create, a rename's new name) while
    /// another file in the same directory held unsynced data. A crash just after one
    /// can keep the new name and lose the other file's data ([`Choices::NamesKept`]):
    /// where a write ordered ahead of a sync it should have waited for shows.
    pub fn names_ahead_of_data(&self) -> Vec<u64> {
        lock(&self.inner).names_ahead.clone()
    }

    /// How many injected faults have fired.
    pub fn faults_fired(&self) -> u64 {
        lock(&self.inner).faults_fired
    }

    /// Makes [`Fs::rename_noreplace`] behave as on a file system that answers
    /// `EINVAL` to `renameat2(RENAME_NOREPLACE)`: a hard link, then an unlink of the
    /// old name, as two calls and two independent directory operations, so crash
    /// images can hold the file under both names or under neither. Crash images keep
    /// the setting.
    pub fn set_rename_via_link(&self, on: bool) {
        lock(&self.inner).rename_via_link = on;
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
        switch_off_if_crashed(self.sched.get(), &g);
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

    /// Makes every later call wait for its turn at `sched` (see [`Scheduler`]). Set it
    /// before the first call; a second scheduler is ignored (returns `false`). Files
    /// opened before keep running unscheduled. Crash images have no scheduler.
    pub fn set_scheduler(&self, sched: Arc<Scheduler>) -> bool {
        self.sched.set(sched).is_ok()
    }

    fn enter(&self, op: OpKind, path: &Path) -> io::Result<model::Entered<'_>> {
        let call = gate(self.sched.get(), &self.inner);
        let mut g = lock(&self.inner);
        let entered = g.enter(op, path);
        switch_off_if_crashed(self.sched.get(), &g);
        entered?;
        Ok(model::Entered { g, _call: call })
    }
}

/// Once the file system has crashed, scheduling points no longer wait.
fn switch_off_if_crashed(sched: Option<&Arc<Scheduler>>, g: &Inner) {
    if let (Some(s), true) = (sched, g.crashed) {
        s.switch_off();
    }
}

/// Waits for this thread's turn at `sched`, unless the file system has crashed.
fn gate<'a>(sched: Option<&'a Arc<Scheduler>>, inner: &Mutex<Inner>) -> sched::CallGuard<'a> {
    match sched {
        Some(s) if !lock(inner).crashed => s.gate(false),
        _ => sched::CallGuard::none(),
    }
}
