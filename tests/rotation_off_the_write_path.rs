//! A segment rotation syncs the previous segment and creates the next one without
//! holding the lock appenders take: while one appender is stuck in the rotation's
//! `fdatasync`, other appenders under `SyncPolicy::Never` keep returning.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use snapwal::fs::{FileBytes, Fs, FsFile, LockGuard, RealFs};
use snapwal::{Store, SyncPolicy};

/// Real files whose segment `fdatasync` blocks until released.
#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    released: AtomicBool,
}

#[derive(Debug)]
struct GatedFile(Box<dyn FsFile>, Arc<Gate>, bool);

impl FsFile for GatedFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.2 && self.1.armed.load(Ordering::SeqCst) {
            self.1.entered.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.1.released.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.0.sync_data()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.0.allocate(len)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[derive(Debug)]
struct GatedFs(Arc<Gate>);

impl Fs for GatedFs {
    fn create_dir_all(&self, p: &Path) -> io::Result<()> {
        RealFs.create_dir_all(p)
    }
    fn create_new(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
        let is_segment = p.extension().is_some_and(|e| e == "wal");
        Ok(Box::new(GatedFile(
            RealFs.create_new(p)?,
            Arc::clone(&self.0),
            is_segment,
        )))
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
        RealFs.rename_noreplace(a, b)
    }
    fn remove_file(&self, p: &Path) -> io::Result<()> {
        RealFs.remove_file(p)
    }
    fn sync_dir(&self, p: &Path) -> io::Result<()> {
        RealFs.sync_dir(p)
    }
    fn lock(&self, p: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.lock(p)
    }
}

#[test]
fn appenders_keep_going_while_a_rotation_waits_for_the_disk() {
    let gate = Arc::new(Gate::default());
    let dir = tempfile::tempdir().unwrap();
    let options = opts(SyncPolicy::Never)
        .segment_bytes(4096)
        .fs(Arc::new(GatedFs(Arc::clone(&gate))));
    let store = Arc::new(Store::<Ledger>::open(dir.path(), options).unwrap());
    // Fill most of the first segment.
    for n in 0..30 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
    }
    gate.armed.store(true, Ordering::SeqCst);
    // This thread's appends cross into the next segment and get stuck in the sync.
    let rotator = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for n in 30..60 {
                store.append(&Entry::padded(1, n, 100)).unwrap();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gate.entered.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "no rotation happened");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The rotation is blocked on the disk; other appends must not be.
    for n in 0..100 {
        store.append(&Entry::padded(2, n, 100)).unwrap();
    }
    assert!(
        !rotator.is_finished(),
        "the rotating appender finished early: the gate did not hold it"
    );
    assert!(!gate.released.load(Ordering::SeqCst));
    gate.released.store(true, Ordering::SeqCst);
    rotator.join().unwrap();

    // Everything is on disk after a reopen: every event of both sources, in order.
    let current = store.current();
    assert_eq!(current.seq(), 160);
    drop(current);
    let store = Arc::into_inner(store).unwrap();
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.current().seq(), 160);
    assert_eq!(store.current().state().count, 160);
    assert_eq!(store.current().state().last.get(&1), Some(&59));
    assert_eq!(store.current().state().last.get(&2), Some(&99));
}
