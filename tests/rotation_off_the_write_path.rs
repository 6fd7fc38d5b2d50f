//! A segment rotation syncs the previous segment and creates the next one without
//! holding the lock appenders take: while one appender is stuck in the rotation's
//! `fdatasync`, other appenders under `SyncPolicy::Never` keep returning.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{Store, SyncPolicy};

/// Holds a segment's `fdatasync` until released, once armed.
#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    released: AtomicBool,
}

impl Gate {
    fn before(&self, op: Op, path: &Path) -> io::Result<()> {
        let segment = path.extension().is_some_and(|e| e == "wal");
        if op == Op::SyncData && segment && self.armed.load(Ordering::SeqCst) {
            self.entered.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.released.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

#[test]
fn appenders_keep_going_while_a_rotation_waits_for_the_disk() {
    let gate = Arc::new(Gate::default());
    let dir = tempfile::tempdir().unwrap();
    let options = opts(SyncPolicy::Never).segment_bytes(4096).fs({
        let gate = Arc::clone(&gate);
        Arc::new(HookedFs::new(move |op, path| gate.before(op, path)))
    });
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
