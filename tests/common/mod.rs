//! Shared test fixtures: a small state whose digest depends on every event and on
//! their order, so "the reopened state equals applying events 1..k" is one comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};

/// One event: `n`-th event of `source`, with padding to make records bigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub source: u32,
    pub n: u64,
    pub pad: Vec<u8>,
}

impl Entry {
    pub fn new(source: u32, n: u64) -> Self {
        Entry {
            source,
            n,
            pad: Vec::new(),
        }
    }
    pub fn padded(source: u32, n: u64, pad: usize) -> Self {
        Entry {
            source,
            n,
            pad: vec![(n % 251) as u8; pad],
        }
    }
}

/// Applies every event it is given; `digest` is order-sensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub count: u64,
    pub digest: u64,
    pub last: BTreeMap<u32, u64>,
}

impl State for Ledger {
    type Event = Entry;
    fn apply(&mut self, e: &Entry) {
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_mul(0x100000001b3)
            .wrapping_add(u64::from(e.source) << 40 ^ e.n ^ e.pad.len() as u64);
        self.last.insert(e.source, e.n);
    }
}

/// The state after applying `events` in order.
pub fn replayed<'a>(events: impl IntoIterator<Item = &'a Entry>) -> Ledger {
    let mut s = Ledger::default();
    for e in events {
        s.apply(e);
    }
    s
}

/// Options for tests: small segments, no preallocation unless asked.
pub fn opts(sync: SyncPolicy) -> Options {
    Options::default()
        .sync(sync)
        .segment_bytes(64 * 1024)
        .preallocate(false)
}

pub fn open(dir: &Path, sync: SyncPolicy) -> Store<Ledger> {
    Store::open(dir, opts(sync)).expect("open")
}

/// Segment files in `dir/wal`, sorted.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Copies the directory tree `from` into `to` (a committed golden store into a
/// temporary directory, so that opening it never changes the original).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Snapshot files in `dir/snap`, sorted.
pub fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("snap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    v.sort();
    v
}

/// Log capture: one global subscriber, installed once per test binary, that writes
/// every event to a buffer of all lines and to the buffer of the capturing thread.
///
/// A per-thread subscriber (`tracing::subscriber::with_default`) misses events when
/// tests run in parallel threads (callsite interest is cached across threads), so the
/// one subscriber routes by thread instead.
pub mod logs {
    use std::cell::RefCell;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    thread_local! {
        static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }

    fn all_lines() -> &'static Mutex<Vec<u8>> {
        static ALL: Mutex<Vec<u8>> = Mutex::new(Vec::new());
        &ALL
    }

    struct Router;

    impl Write for Router {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            CAPTURE.with(|c| {
                if let Some(buf) = c.borrow_mut().as_mut() {
                    buf.extend_from_slice(b);
                }
            });
            all_lines()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Installs the global subscriber (once; later calls do nothing).
    pub fn install() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            let sub = tracing_subscriber::fmt()
                .with_writer(|| Router)
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .finish();
            tracing::subscriber::set_global_default(sub).expect("the only global subscriber");
        });
    }

    /// Runs `f`, returning what it logged on this thread.
    pub fn capture<T>(f: impl FnOnce() -> T) -> (T, String) {
        install();
        let previous = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
        let out = f();
        let got = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
        (
            out,
            String::from_utf8_lossy(&got.unwrap_or_default()).into_owned(),
        )
    }

    /// Every line logged so far in this test binary, from every thread.
    pub fn all() -> String {
        install();
        String::from_utf8_lossy(&all_lines().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The real file system with a hook called before chosen operations, so that a test
/// can delay them or make them fail.
pub mod hooked {
    use std::fmt;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use snapwal::fs::{FileBytes, Fs, FsFile, LockGuard, RealFs};

    /// The operations the hook sees.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        /// `FsFile::write_all_at` on a file created through this file system.
        Write,
        /// `FsFile::sync_data` on such a file.
        SyncData,
        /// `Fs::remove_file`.
        Remove,
        /// `Fs::create_new` (the hook runs before the file is created).
        Create,
        /// `Fs::rename_noreplace` (the path is the source).
        Rename,
        /// `Fs::sync_dir`.
        SyncDir,
        /// `FsFile::allocate`.
        Allocate,
    }

    type Hook = dyn Fn(Op, &Path) -> io::Result<()> + Send + Sync;

    /// Calls the hook with the operation and the path first; an error from the hook
    /// is returned instead of doing the operation.
    #[derive(Clone)]
    pub struct HookedFs(Arc<Hook>);

    impl HookedFs {
        pub fn new(hook: impl Fn(Op, &Path) -> io::Result<()> + Send + Sync + 'static) -> Self {
            HookedFs(Arc::new(hook))
        }
    }

    impl fmt::Debug for HookedFs {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("HookedFs")
        }
    }

    struct HookedFile {
        inner: Box<dyn FsFile>,
        path: PathBuf,
        hook: Arc<Hook>,
    }

    impl fmt::Debug for HookedFile {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HookedFile")
                .field("path", &self.path)
                .finish()
        }
    }

    impl FsFile for HookedFile {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            (self.hook)(Op::Write, &self.path)?;
            self.inner.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            (self.hook)(Op::SyncData, &self.path)?;
            self.inner.sync_data()
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            (self.hook)(Op::Allocate, &self.path)?;
            self.inner.allocate(len)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
    }

    impl Fs for HookedFs {
        fn create_dir_all(&self, p: &Path) -> io::Result<()> {
            RealFs.create_dir_all(p)
        }
        fn create_new(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
            (self.0)(Op::Create, p)?;
            Ok(Box::new(HookedFile {
                inner: RealFs.create_new(p)?,
                path: p.to_path_buf(),
                hook: Arc::clone(&self.0),
            }))
        }
        fn open_write(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
            RealFs.open_write(p)
        }
        fn read(&self, p: &Path) -> io::Result<FileBytes> {
            RealFs.read(p)
        }
        fn list(&self, p: &Path) -> io::Result<Vec<String>> {
            RealFs.list(p)
        }
        fn rename_noreplace(&self, a: &Path, b: &Path) -> io::Result<()> {
            (self.0)(Op::Rename, a)?;
            RealFs.rename_noreplace(a, b)
        }
        fn remove_file(&self, p: &Path) -> io::Result<()> {
            (self.0)(Op::Remove, p)?;
            RealFs.remove_file(p)
        }
        fn sync_dir(&self, p: &Path) -> io::Result<()> {
            (self.0)(Op::SyncDir, p)?;
            RealFs.sync_dir(p)
        }
        fn lock(&self, p: &Path) -> io::Result<Box<dyn LockGuard>> {
            RealFs.lock(p)
        }
    }
}

/// Descriptors of this process open on files under `dir` (from `/proc/self/fd`).
pub fn fds_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// Every event appended, in order: the state after seq `k` is exactly `[1, ..., k]`,
/// so "a prefix, nothing missing, nothing twice" is one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numbers(pub Vec<u64>);

impl State for Numbers {
    type Event = u64;
    fn apply(&mut self, n: &u64) {
        self.0.push(*n);
    }
}

/// Clones of [`Counted`] made in this test binary.
pub static CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A plain state that counts its clones in [`CLONES`].
#[derive(Default, Serialize, Deserialize, PartialEq, Debug)]
pub struct Counted {
    pub items: Vec<u64>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Counted {
            items: self.items.clone(),
        }
    }
}

impl State for Counted {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        self.items.push(*e);
    }
}
