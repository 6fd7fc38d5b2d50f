//! Regression (bug 13, and bug 4's twin for snapshots): a checkpoint whose snapshot
//! name was already taken answered `AlreadyExisted` without looking at the file. A
//! damaged snapshot that stayed under its final name (its move aside at open failed
//! because `<name>.corrupt` existed) then stood in for the new one, cleanup unlinked
//! the WAL behind it, and the events it claimed were lost at the next open. An
//! existing file now stands in only after it validates; otherwise it is moved aside
//! under a unique name and the new snapshot installed.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::SNAPSHOT_HEADER_LEN;
use snapwal::fs::RealFs;
use snapwal::{snapshot, CheckpointOutcome, Options, Position, Store, SyncPolicy};

type Body = (Ledger, Vec<(String, Position)>);

fn flip_body(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[SNAPSHOT_HEADER_LEN + 3] ^= 0x08;
    std::fs::write(path, bytes).unwrap();
}

fn aside(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    if n == 0 {
        s.push(".corrupt");
    } else {
        s.push(format!(".{n}.corrupt"));
    }
    PathBuf::from(s)
}

fn options(keep: usize) -> Options {
    opts(SyncPolicy::Never).keep_snapshots(keep)
}

/// The scenario of the issue, end to end: snapshot N damaged, reopen (moved aside),
/// checkpoint N again, damaged again, reopen, checkpoint at N with
/// `keep_snapshots(1)`, reopen: no event lost.
#[test]
fn bug_checkpoint_vouches_for_damaged_existing_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..600).map(|i| Entry::padded(1, i, 150)).collect();
    let n = events.len() as u64;
    let store = Store::<Ledger>::open(dir.path(), options(2)).unwrap();
    store.append_batch(&events).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();
    let snap = dir.path().join(format!("snap/{n:020}.snap"));
    assert!(snap.exists());

    for round in 0..2 {
        flip_body(&snap);
        let keep = if round == 0 { 2 } else { 1 };
        let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options(keep))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(report.snapshots_skipped.len(), 1, "round {round}");
        assert_eq!(*store.current().state(), replayed(&events), "round {round}");
        // Moved aside under a name not used before: never left under its final name.
        assert!(!snap.exists(), "round {round}: the damaged file stayed");
        assert!(aside(&snap, round).exists(), "round {round}");
        assert!(report.quarantined.contains(&aside(&snap, round)));
        // The same seq again: a new snapshot is written, not vouched for.
        assert_eq!(
            store.checkpoint().unwrap().outcome,
            CheckpointOutcome::Written,
            "round {round}"
        );
        store.close().unwrap();
        let _: (_, Body) = snapshot::load(&RealFs, &snap, None)
            .unwrap_or_else(|e| panic!("round {round}: the snapshot must validate: {e}"));
    }

    // With keep_snapshots(1) the last checkpoint unlinked the WAL up to N.
    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options(1)).unwrap();
    assert_eq!(report.snapshot_seq, Some(n));
    assert_eq!(*store.current().state(), replayed(&events), "no event lost");
    store.close().unwrap();
}

/// The same hole without bug 4: a damaged file appears under the name of the snapshot
/// the next checkpoint writes, while the store is open. The checkpoint must not take
/// it for that snapshot (and then unlink the WAL behind it).
#[test]
fn checkpoint_replaces_a_damaged_file_that_appeared_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..600).map(|i| Entry::padded(1, i, 150)).collect();
    let n = events.len() as u64;

    // A valid snapshot of the same seq from another directory, damaged.
    let other = tempfile::tempdir().unwrap();
    let store = Store::<Ledger>::open(other.path(), options(1)).unwrap();
    store.append_batch(&events).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let foreign = other.path().join(format!("snap/{n:020}.snap"));

    let store = Store::<Ledger>::open(dir.path(), options(1)).unwrap();
    store.append_batch(&events).unwrap();
    let snap = dir.path().join(format!("snap/{n:020}.snap"));
    // First a file of another store (valid, but not ours), then a damaged one.
    std::fs::copy(&foreign, &snap).unwrap();
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert!(aside(&snap, 0).exists());
    store.append(&Entry::new(2, 0)).unwrap();
    let snap2 = dir.path().join(format!("snap/{:020}.snap", n + 1));
    std::fs::copy(&foreign, &snap2).unwrap();
    flip_body(&snap2);
    let (rep, log) = logs::capture(|| store.checkpoint().unwrap());
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert!(aside(&snap2, 0).exists());
    assert!(log.contains("does not validate"), "{log}");
    store.close().unwrap();

    let mut all = events.clone();
    all.push(Entry::new(2, 0));
    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options(1)).unwrap();
    assert_eq!(report.snapshot_seq, Some(n + 1));
    assert!(report.snapshots_skipped.is_empty());
    assert_eq!(*store.current().state(), replayed(&all));
    store.close().unwrap();
}

/// A valid snapshot of this store under the name still stands in (and is kept as is).
#[test]
fn snapshot_write_keeps_a_valid_existing_file_and_replaces_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = snapshot::write(&RealFs, dir.path(), 7, 42, &("first", 1u32)).unwrap();
    assert!(first.installed);
    let kept = snapshot::write(&RealFs, dir.path(), 7, 42, &("second", 2u32)).unwrap();
    assert!(!kept.installed);

    flip_body(&first.path);
    let replaced = snapshot::write(&RealFs, dir.path(), 7, 42, &("third", 3u32)).unwrap();
    assert!(replaced.installed);
    let (_, value): (_, (String, u32)) = snapshot::load(&RealFs, &first.path, Some(42)).unwrap();
    assert_eq!(value, ("third".to_string(), 3));
    assert!(aside(&first.path, 0).exists());

    // Another store's valid snapshot under the name does not vouch for this one.
    let theirs = snapshot::write(&RealFs, dir.path(), 8, 1, &("theirs", 0u32)).unwrap();
    assert!(theirs.installed);
    let ours = snapshot::write(&RealFs, dir.path(), 8, 42, &("ours", 8u32)).unwrap();
    assert!(ours.installed);
    let (h, value): (_, (String, u32)) = snapshot::load(&RealFs, &ours.path, Some(42)).unwrap();
    assert_eq!((h.store_id, value), (42, ("ours".to_string(), 8)));
    assert!(aside(&ours.path, 0).exists());

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// At open, a damaged snapshot that cannot be moved aside must not stay under its final
/// name with only a warning (a later checkpoint could take it for a snapshot that
/// exists): the open fails with the error, naming the file.
#[test]
fn open_fails_when_a_damaged_snapshot_cannot_be_moved_aside() {
    use common::hooked::{HookedFs, Op};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..100).map(|i| Entry::new(1, i)).collect();
    let store = Store::<Ledger>::open(dir.path(), options(2)).unwrap();
    store.append_batch(&events).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let snap = snapshots(dir.path()).pop().unwrap();
    flip_body(&snap);

    let refuse = HookedFs::new(|op, path| {
        if op == Op::Rename && path.extension().is_some_and(|e| e == "snap") {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        Ok(())
    });
    match Store::<Ledger>::open(dir.path(), options(2).fs(Arc::new(refuse))) {
        Err(e @ snapwal::Error::Io { .. }) => {
            assert_eq!(e.io_error().and_then(|e| e.raw_os_error()), Some(5), "{e}");
            assert!(e.to_string().contains(&snap.display().to_string()), "{e}");
        }
        Err(other) => panic!("expected the rename error, got {other}"),
        Ok(_) => panic!("open succeeded with a damaged snapshot under its final name"),
    }
    // Once the rename works, the damaged file goes aside and nothing is lost.
    let store = Store::<Ledger>::open(dir.path(), options(2)).unwrap();
    assert_eq!(*store.current().state(), replayed(&events));
    assert!(aside(&snap, 0).exists());
}
