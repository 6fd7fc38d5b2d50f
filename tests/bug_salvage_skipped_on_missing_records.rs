//! Regression (bug 1, recovery side): when the segments that should hold the records
//! right after the snapshot are missing (a power loss took a segment that was never
//! made durable, while a later one was), `replay` returned `MissingRecords` before
//! trying salvage, so `SalvagePrefix` refused the store too. It now keeps the valid
//! prefix (the snapshot) and moves the later segments aside.
mod common;

use std::path::Path;

use common::*;
use snapwal::{CheckpointOutcome, Error, RecoveryPolicy, Store, SyncPolicy};

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".wal").unwrap().parse().unwrap()
}

#[test]
fn bug_salvage_prefix_skipped_on_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..1500).map(|i| Entry::padded(1, i, 150)).collect();
    let store = open(dir.path(), SyncPolicy::Never);
    store.append_batch(&events[..700]).unwrap();
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    let snap_seq = rep.seq;
    store.append_batch(&events[700..]).unwrap();
    store.close().unwrap();

    // Lose every segment up to the one holding seq snap_seq + 1.
    let segs = segments(dir.path());
    let lost: Vec<_> = segs
        .iter()
        .filter(|s| first_seq_of(s) <= snap_seq + 1)
        .cloned()
        .collect();
    let left: Vec<_> = segs[lost.len()..].to_vec();
    assert!(!left.is_empty(), "{segs:?}");
    for s in &lost {
        std::fs::remove_file(s).unwrap();
    }

    // Without salvage: refused, nothing touched.
    match Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never)) {
        Err(Error::MissingRecords { needed, .. }) => assert_eq!(needed, snap_seq + 1),
        other => panic!("expected MissingRecords, got {other:?}"),
    }
    assert_eq!(segments(dir.path()), left);

    let (opened, log) = logs::capture(|| {
        Store::<Ledger>::open_with_report(
            dir.path(),
            opts(SyncPolicy::Never).recovery(RecoveryPolicy::SalvagePrefix),
        )
    });
    let (store, report) = opened.expect("SalvagePrefix keeps the snapshot's prefix");
    assert_eq!(store.seq(), snap_seq);
    assert_eq!(
        *store.current().state(),
        replayed(&events[..snap_seq as usize])
    );
    assert_eq!(
        report.quarantined.len(),
        left.len(),
        "{:?}",
        report.quarantined
    );
    assert!(segments(dir.path()).is_empty(), "later segments go aside");
    assert!(
        log.contains("ERROR") && log.contains("WAL damaged"),
        "{log}"
    );
    assert_eq!(store.append(&Entry::new(2, 0)).unwrap(), snap_seq + 1);
    store.close().unwrap();

    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.seq(), snap_seq + 1);
    store.close().unwrap();
}
