//! Regression: a damaged snapshot skipped at open used to stay under its final name,
//! so the next checkpoint at the same seq found the name taken and kept the damaged
//! file ("already exists"). It is now moved aside to `<name>.corrupt`.
mod common;
use common::*;
use snapwal::{CheckpointOutcome, SyncPolicy};

#[test]
fn damaged_snapshot_is_moved_aside_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..50).map(|n| Entry::padded(1, n, 10)).collect();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append_batch(&events).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();

    let snap = snapshots(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();

    let (store, rep) =
        snapwal::Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(rep.snapshots_skipped.len(), 1);
    assert_eq!(*store.current().state(), replayed(&events));
    let mut aside = snap.clone().into_os_string();
    aside.push(".corrupt");
    assert!(std::path::Path::new(&aside).exists());
    // Same seq as the damaged one: a fresh snapshot is written, not skipped.
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();
    let (store, rep) =
        snapwal::Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert!(rep.snapshots_skipped.is_empty());
    assert_eq!(rep.snapshot_seq, Some(50));
    assert_eq!(*store.current().state(), replayed(&events));
}
