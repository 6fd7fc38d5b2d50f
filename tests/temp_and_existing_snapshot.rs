//! Snapshot temp files left by a crash are removed at open; installing a snapshot whose seq already exists keeps the existing file and leaves no temp; unrelated files in snap/ and wal/ are left alone.
mod common;

use std::path::Path;

use common::*;
use snapwal::fs::RealFs;
use snapwal::{snapshot, CheckpointOutcome, Store, SyncPolicy};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn temp_files(dir: &Path) -> Vec<String> {
    names(&dir.join("snap"))
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn stray_snapshot_temp_file_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..10).map(|i| Entry::new(1, i)).collect();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append_batch(&events).unwrap();
    store.close().unwrap();
    let temp = dir.path().join("snap/.00000000000000000005.123.0.tmp");
    std::fs::write(&temp, b"half a snapshot").unwrap();

    let (opened, log) =
        logs::capture(|| Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)));
    let (store, report) = opened.unwrap();
    assert_eq!(report.temp_files_removed, 1);
    assert!(!temp.exists());
    assert!(log.contains("removed snapshot temp files"), "{log}");
    assert_eq!(*store.current().state(), replayed(&events));
    store.close().unwrap();

    let (_store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(report.temp_files_removed, 0);
}

#[test]
fn checkpoint_onto_an_existing_snapshot_keeps_it_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..10).map(|i| Entry::new(1, i)).collect();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append_batch(&events).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();
    let snap = dir.path().join("snap/00000000000000000010.snap");
    let original = std::fs::read(&snap).unwrap();

    // Set it aside, reopen from the WAL alone, then put it back under the store.
    std::fs::remove_file(&snap).unwrap();
    let (store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(report.snapshot_seq, None);
    std::fs::write(&snap, &original).unwrap();
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::AlreadyExisted);
    assert_eq!(rep.seq, 10);
    assert_eq!(snapshots(dir.path()), vec![snap.clone()]);
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        names(&dir.path().join("snap"))
    );
    assert_eq!(
        std::fs::read(&snap).unwrap(),
        original,
        "the existing snapshot is kept as it was"
    );
    // Nothing new since: the next checkpoint has nothing to do.
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Unchanged
    );
    store.close().unwrap();

    let (store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(report.snapshot_seq, Some(10));
    assert_eq!(report.records_replayed, 0);
    assert_eq!(*store.current().state(), replayed(&events));
}

#[test]
fn snapshot_write_twice_at_one_seq_installs_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = snapshot::write(&RealFs, dir.path(), 7, 42, &("first", 1u32)).unwrap();
    assert!(first.installed);
    assert_eq!(first.path, dir.path().join("00000000000000000007.snap"));
    let second = snapshot::write(&RealFs, dir.path(), 7, 42, &("second", 2u32)).unwrap();
    assert!(!second.installed);
    assert_eq!(second.path, first.path);
    assert_eq!(
        names(dir.path()),
        vec!["00000000000000000007.snap".to_string()]
    );
    let (header, value): (_, (String, u32)) =
        snapshot::load(&RealFs, &first.path, Some(42)).unwrap();
    assert_eq!(header.seq, 7);
    assert_eq!(
        value,
        ("first".to_string(), 1),
        "the first snapshot is kept"
    );
}

#[test]
fn files_with_unrelated_names_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..20).map(|i| Entry::new(1, i)).collect();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append_batch(&events[..10]).unwrap();
    store.checkpoint().unwrap();
    store.append_batch(&events[10..]).unwrap();
    store.close().unwrap();

    let strays = [
        "snap/notes.txt",
        "snap/7.snap",
        "snap/00000000000000000010.snap.bak",
        "snap/.hidden",
        "snap/0000000000000000001x.snap",
        "wal/README",
        "wal/12.wal",
        "wal/00000000000000000001.wal.old",
        "wal/000000000000000000011.wal",
    ];
    for s in strays {
        std::fs::write(dir.path().join(s), format!("not a snapwal file: {s}")).unwrap();
    }
    std::fs::create_dir(dir.path().join("wal/subdir")).unwrap();
    let before_snap = names(&dir.path().join("snap"));
    let before_wal = names(&dir.path().join("wal"));

    let (store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(report.temp_files_removed, 0);
    assert!(report.snapshots_skipped.is_empty());
    assert_eq!(report.snapshot_seq, Some(10));
    assert_eq!(*store.current().state(), replayed(&events));
    store.append(&Entry::new(2, 0)).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.seq(), 21);
    store.close().unwrap();

    for s in strays {
        let text = std::fs::read_to_string(dir.path().join(s)).unwrap();
        assert_eq!(
            text,
            format!("not a snapwal file: {s}"),
            "{s} must be left alone"
        );
    }
    assert!(dir.path().join("wal/subdir").is_dir());
    for n in &before_snap {
        if !n.ends_with(".snap") {
            assert!(names(&dir.path().join("snap")).contains(n), "{n}");
        }
    }
    for n in &before_wal {
        if !n.ends_with(".wal") {
            assert!(names(&dir.path().join("wal")).contains(n), "{n}");
        }
    }
}
