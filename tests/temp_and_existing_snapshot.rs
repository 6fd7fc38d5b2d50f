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

/// The "name exists" path with a damaged file under the name: it must not stand in
/// for the new snapshot. It is moved aside, the new snapshot installed, and with
/// `keep_snapshots(1)` the WAL unlinked behind the new one loses nothing.
#[test]
fn checkpoint_onto_a_damaged_existing_snapshot_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..10).map(|i| Entry::new(1, i)).collect();
    let options = || opts(SyncPolicy::Always).keep_snapshots(1);
    let store = Store::<Ledger>::open(dir.path(), options()).unwrap();
    store.append_batch(&events).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();
    let snap = dir.path().join("snap/00000000000000000010.snap");
    let mut damaged = std::fs::read(&snap).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;

    std::fs::remove_file(&snap).unwrap();
    let store = Store::<Ledger>::open(dir.path(), options()).unwrap();
    std::fs::write(&snap, &damaged).unwrap();
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written, "{rep:?}");
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        names(&dir.path().join("snap"))
    );
    assert_eq!(
        std::fs::read(dir.path().join("snap/00000000000000000010.snap.corrupt")).unwrap(),
        damaged,
        "the damaged file is kept aside for inspection"
    );
    store.close().unwrap();

    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options()).unwrap();
    assert_eq!(report.snapshot_seq, Some(10));
    assert!(report.snapshots_skipped.is_empty());
    assert_eq!(*store.current().state(), replayed(&events));
}

/// The install's rename failing with anything but "already exists" (here EIO) fails
/// the checkpoint: it must not be taken as "the snapshot exists", or cleanup would
/// unlink the WAL behind a snapshot that was never installed.
#[test]
fn snapshot_install_rename_error_fails_the_checkpoint_and_keeps_the_wal() {
    use common::hooked::{HookedFs, Op};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const EIO: i32 = 5;
    let fail = Arc::new(AtomicBool::new(false));
    let hook = {
        let fail = Arc::clone(&fail);
        HookedFs::new(move |op, path| {
            let temp = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".tmp"));
            if op == Op::Rename && temp && fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(EIO));
            }
            Ok(())
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let options = opts(SyncPolicy::Never).keep_snapshots(1).fs(Arc::new(hook));
    let events: Vec<Entry> = (0..1200).map(|i| Entry::padded(1, i, 150)).collect();
    let store = Store::<Ledger>::open(dir.path(), options).unwrap();
    store.append_batch(&events[..600]).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.append_batch(&events[600..]).unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 2, "{segs:?}");
    let snaps = snapshots(dir.path());

    fail.store(true, Ordering::SeqCst);
    let err = store
        .checkpoint()
        .expect_err("a failed install must fail the checkpoint");
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(EIO),
        "{err}"
    );
    assert!(
        err.to_string().contains("00000000000000001200.snap"),
        "{err}"
    );
    assert_eq!(segments(dir.path()), segs, "no WAL segment may be unlinked");
    assert_eq!(snapshots(dir.path()), snaps);
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        names(&dir.path().join("snap"))
    );
    store.close().unwrap();
    fail.store(false, Ordering::SeqCst);

    let (store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Never)).unwrap();
    assert_eq!(report.snapshot_seq, Some(600));
    assert_eq!(*store.current().state(), replayed(&events), "nothing lost");
}
