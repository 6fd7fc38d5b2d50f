//! A file-system call that panicked while a thread created the next WAL segment ended
//! the rotation before it marked the log failed. A sync already waiting for that
//! rotation could wake in between, find nothing left to write (the panicking thread
//! had taken the staged records, now lost) and return `Ok` with a durable seq short
//! of the record it was asked to cover; `Store::sync` then panicked on its own
//! assertion (`version.seq <= durable_seq`). Now the log is failed before the
//! rotation ends, so the waiting sync gets `ReadOnly`.
//!
//! The window is a race: before the fix this failed about one run in three.
#![cfg(feature = "testing")]

mod common;

use std::sync::Arc;

use common::*;
use snapwal::testing::sim::{OpKind, SimFs};
use snapwal::{Error, Store, SyncPolicy};

/// A file-system call that panics while a thread creates the next segment ends the
/// rotation: a thread already waiting for that rotation (a sync) wakes up and
/// returns, rather than waiting for ever.
#[test]
fn bug_sync_acknowledged_after_panic_in_rotation() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    let fs = Arc::new(SimFs::new(9));
    let store = Arc::new(
        Store::<Ledger>::open(
            "/s",
            opts(SyncPolicy::Never).segment_bytes(4096).fs(fs.clone()),
        )
        .unwrap(),
    );
    let (in_create, creating) = mpsc::channel();
    let armed = AtomicBool::new(true);
    fs.set_hook(move |call| {
        let segment = call.path.to_string_lossy().ends_with(".wal");
        if call.op == OpKind::CreateNew && segment && armed.swap(false, Ordering::SeqCst) {
            let _ = in_create.send(());
            // Long enough for the sync below to start waiting for this rotation.
            std::thread::sleep(Duration::from_millis(300));
            panic!("planted panic in create_new");
        }
        None
    });
    let appender = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.append(&Entry::new(1, 0)))
    };
    creating.recv_timeout(Duration::from_secs(10)).unwrap();
    let (done, synced) = mpsc::channel();
    let syncer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = done.send(store.sync().map(drop));
        })
    };
    let result = synced
        .recv_timeout(Duration::from_secs(10))
        .expect("the sync waiting for the rotation never returned (or panicked)");
    // It must not succeed: the record it was asked to cover was lost with the panic.
    assert!(matches!(result, Err(Error::ReadOnly { .. })), "{result:?}");
    assert!(
        appender.join().is_err(),
        "the appender's thread saw the panic"
    );
    syncer.join().unwrap();
    // The records taken for the write are lost with the panic: the log is read-only.
    assert!(matches!(store.sync(), Err(Error::ReadOnly { .. })));
}
