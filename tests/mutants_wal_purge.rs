//! WAL truncation, for the quick cargo-mutants selection
//! (`.cargo/mutants/purge-sync.toml`): `Wal::purge_through` unlinks exactly the
//! segments whose every record is at or below the seq given, never the newest one; a
//! checkpoint's cleanup reports each failed unlink (file, operation, error) without
//! failing, and counts only the segments really removed. The purge mutants were
//! already caught by the selection's other tests; these pin the same behaviour
//! directly (the failed unlink is otherwise only in `tests/checkpointer.rs`, too slow
//! for the selection).
#![cfg(feature = "testing")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use snapwal::format;
use snapwal::fs::Fs;
use snapwal::testing::sim::{Fault, FaultError, OpKind, SimFs};
use snapwal::wal::{Wal, WalOptions};
use snapwal::{CheckpointOutcome, Store, SyncPolicy};

/// A log over `/wal` holding segments named 1, 11 and 21 (purge looks at names only).
fn three_segments() -> (Arc<SimFs>, Wal) {
    let fs = Arc::new(SimFs::new(3));
    fs.create_dir_all(Path::new("/wal")).unwrap();
    for first in [1, 11, 21] {
        fs.create_new(&seg(first)).unwrap();
    }
    let opts = WalOptions {
        segment_bytes: 4096,
        preallocate: false,
    };
    let wal = Wal::new(fs.clone(), PathBuf::from("/wal"), 5, 31, opts);
    (fs, wal)
}

fn seg(first: u64) -> PathBuf {
    Path::new("/wal").join(format::segment_name(first))
}

fn purged(wal: &Wal, through: u64) -> Vec<PathBuf> {
    wal.purge_through(through)
        .unwrap()
        .into_iter()
        .map(|(p, r)| {
            r.unwrap();
            p
        })
        .collect()
}

#[test]
fn purge_removes_exactly_the_segments_wholly_covered() {
    let (fs, wal) = three_segments();
    // Segment 1 holds 1..=10: seq 9 does not cover it.
    assert_eq!(purged(&wal, 9), Vec::<PathBuf>::new());
    assert!(fs.exists(seg(1)));
    assert_eq!(purged(&wal, 10), vec![seg(1)]);
    assert!(!fs.exists(seg(1)));
    assert!(fs.exists(seg(11)));
    // Far past the end: every segment but the newest.
    assert_eq!(purged(&wal, 1_000), vec![seg(11)]);
    assert!(fs.exists(seg(21)), "the newest segment is never removed");
}

/// A failed unlink during a checkpoint's cleanup is reported with the segment, the
/// operation and the error; the checkpoint succeeds, the failed segment stays and is
/// not counted as removed; a later checkpoint removes it.
#[test]
fn failed_segment_unlink_is_reported_and_not_counted() {
    let fs = Arc::new(SimFs::new(4));
    let options = opts(SyncPolicy::Never)
        .segment_bytes(4096)
        .keep_snapshots(1)
        .fs(fs.clone());
    let store = Store::<Ledger>::open("/s", options).unwrap();
    let events: Vec<Entry> = (0..200).map(|i| Entry::padded(1, i, 64)).collect();
    store.append_batch(&events).unwrap();
    let wal_files = |fs: &SimFs| -> Vec<String> {
        let mut v = fs.list(Path::new("/s/wal")).unwrap();
        v.sort();
        v
    };
    let before = wal_files(&fs);
    assert!(before.len() >= 3, "{before:?}");
    fs.inject(
        Fault::on_op(OpKind::Remove, FaultError::Eio)
            .path_contains(".wal")
            .times(1),
    );
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert_eq!(rep.cleanup_failures.len(), 1, "{:?}", rep.cleanup_failures);
    let failure = &rep.cleanup_failures[0];
    assert_eq!(failure.op, "unlink segment");
    let oldest = Path::new("/s/wal").join(&before[0]);
    assert_eq!(failure.path, oldest);
    assert!(!failure.error.is_empty());
    assert!(fs.exists(&oldest), "the failed unlink left it");
    // Every covered segment but the one that failed went; the newest stays.
    assert_eq!(rep.segments_removed, before.len() - 2);
    assert_eq!(wal_files(&fs).len(), 2);
    assert_eq!(store.checkpoint_stats().cleanup_failures, 1);

    store.append(&Entry::new(2, 0)).unwrap();
    let rep = store.checkpoint().unwrap();
    assert!(
        rep.cleanup_failures.is_empty(),
        "{:?}",
        rep.cleanup_failures
    );
    assert!(rep.segments_removed >= 1);
    assert!(!fs.exists(&oldest));
    store.close().unwrap();
}
