//! A damaged newest snapshot falls back to the older one plus the WAL and loses nothing; when every snapshot is damaged and the WAL no longer reaches seq 1, open is a typed error.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::SNAPSHOT_HEADER_LEN;
use snapwal::{CheckpointOutcome, Error, Options, Store, SyncPolicy};

fn options() -> Options {
    opts(SyncPolicy::Never).keep_snapshots(2)
}

/// A closed store: events 1..=600, snapshot, 601..=1200, snapshot, 1201..=1300.
/// Returns the events and the two snapshots (older, newer).
fn two_snapshots(dir: &Path) -> (Vec<Entry>, PathBuf, PathBuf) {
    let events: Vec<Entry> = (0..1300)
        .map(|i| Entry::padded(1, i, 150 + (i % 9) as usize))
        .collect();
    let store = Store::<Ledger>::open(dir, options()).unwrap();
    store.append_batch(&events[..600]).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    for e in &events[600..1200] {
        store.append(e).unwrap();
    }
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert!(
        rep.segments_removed >= 1,
        "the WAL before the older snapshot must be unlinked"
    );
    store.append_batch(&events[1200..]).unwrap();
    store.close().unwrap();

    let snaps = snapshots(dir);
    assert_eq!(snaps.len(), 2);
    assert!(
        snaps[0].ends_with("snap/00000000000000000600.snap"),
        "{snaps:?}"
    );
    assert!(
        snaps[1].ends_with("snap/00000000000000001200.snap"),
        "{snaps:?}"
    );
    let first = segments(dir)[0].clone();
    assert!(
        !first.ends_with("00000000000000000001.wal"),
        "the WAL must no longer reach seq 1"
    );
    (events, snaps[0].clone(), snaps[1].clone())
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBody,
    FlipHeader,
    Truncate,
    Zero,
    Empty,
}

const ALL: [Damage; 5] = [
    Damage::FlipBody,
    Damage::FlipHeader,
    Damage::Truncate,
    Damage::Zero,
    Damage::Empty,
];

/// Damages the snapshot; returns the offset the error must name.
fn damage(path: &Path, how: Damage) -> u64 {
    let mut bytes = std::fs::read(path).unwrap();
    let body = SNAPSHOT_HEADER_LEN as u64;
    let offset = match how {
        Damage::FlipBody => {
            bytes[SNAPSHOT_HEADER_LEN + 5] ^= 0x10;
            body
        }
        Damage::FlipHeader => {
            bytes[14] ^= 0x01;
            0
        }
        Damage::Truncate => {
            bytes.truncate(bytes.len() - 7);
            body
        }
        Damage::Zero => {
            bytes.iter_mut().for_each(|b| *b = 0);
            0
        }
        Damage::Empty => {
            bytes.clear();
            0
        }
    };
    std::fs::write(path, bytes).unwrap();
    offset
}

#[test]
fn damaged_newest_snapshot_falls_back_to_the_older_one_and_loses_nothing() {
    for how in ALL {
        let dir = tempfile::tempdir().unwrap();
        let (events, older, newer) = two_snapshots(dir.path());
        damage(&newer, how);

        let (opened, log) =
            logs::capture(|| Store::<Ledger>::open_with_report(dir.path(), options()));
        let (store, report) = opened.unwrap();
        assert_eq!(store.seq(), events.len() as u64, "{how:?}");
        assert_eq!(*store.current().state(), replayed(&events), "{how:?}");
        assert_eq!(report.snapshot_seq, Some(600), "{how:?}");
        assert_eq!(report.records_replayed, 700, "{how:?}");
        assert_eq!(report.snapshots_skipped.len(), 1, "{how:?}");
        let (skipped, reason) = &report.snapshots_skipped[0];
        assert_eq!(skipped, &newer, "{how:?}");
        assert!(reason.contains("corrupt"), "{how:?}: {reason}");
        let warn = log
            .lines()
            .find(|l| l.contains("snapshot does not validate"))
            .unwrap_or_else(|| panic!("{how:?}: no warning in:\n{log}"));
        assert!(warn.contains("WARN"), "{warn}");
        assert!(warn.contains(&newer.display().to_string()), "{warn}");
        assert!(older.exists());
        // The damaged snapshot is moved aside, kept for inspection.
        assert!(!newer.exists(), "{how:?}");
        assert!(
            dir.path()
                .join("snap/00000000000000001200.snap.corrupt")
                .exists(),
            "{how:?}"
        );
        assert_eq!(snapshots(dir.path()), vec![older.clone()]);

        // Appending continues after the last recovered seq.
        assert_eq!(
            store.append(&Entry::new(2, 0)).unwrap(),
            events.len() as u64 + 1
        );
        store.close().unwrap();
    }
}

#[test]
fn every_snapshot_damaged_and_wal_truncated_is_a_typed_error() {
    for how in ALL {
        let dir = tempfile::tempdir().unwrap();
        let (_events, older, newer) = two_snapshots(dir.path());
        let offset = damage(&newer, how);
        damage(&older, how);

        let (opened, log) = logs::capture(|| Store::<Ledger>::open(dir.path(), options()));
        match opened {
            Err(e @ Error::Corrupt { .. }) => {
                let Error::Corrupt {
                    path, offset: o, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(path, &newer, "{how:?}: {e}");
                assert_eq!(*o, offset, "{how:?}: {e}");
                assert!(e.to_string().contains(&newer.display().to_string()), "{e}");
            }
            other => panic!("{how:?}: expected Corrupt naming the newest snapshot, got {other:?}"),
        }
        // Both were tried, and both are logged.
        assert!(log.contains(&newer.display().to_string()), "{log}");
        assert!(log.contains(&older.display().to_string()), "{log}");
        // Nothing was removed: an operator can still look at the files.
        assert!(newer.exists() && older.exists());
        assert!(
            matches!(
                Store::<Ledger>::open(dir.path(), options()),
                Err(Error::Corrupt { .. })
            ),
            "the error must be stable across opens"
        );
    }
}

/// Regression: after open fell back past a damaged snapshot, the damaged file stayed
/// under its name, so a checkpoint at the same seq answered `AlreadyExisted` and kept
/// it: the checkpoint claimed a snapshot that does not validate.
#[test]
fn checkpoint_after_fallback_reported_the_damaged_snapshot_as_already_existing() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..1200).map(|i| Entry::padded(1, i, 150)).collect();
    let store = Store::<Ledger>::open(dir.path(), options()).unwrap();
    store.append_batch(&events[..600]).unwrap();
    store.checkpoint().unwrap();
    store.append_batch(&events[600..]).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let newer = snapshots(dir.path())[1].clone();
    damage(&newer, Damage::FlipBody);

    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options()).unwrap();
    assert_eq!(report.snapshots_skipped.len(), 1);
    assert_eq!(store.seq(), 1200);
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    store.close().unwrap();
    let (_, (state, _)): (_, (Ledger, Vec<(String, snapwal::Position)>)) =
        snapwal::snapshot::load(&snapwal::fs::RealFs, &newer, None)
            .expect("the snapshot at 1200 must validate now");
    assert_eq!(state, replayed(&events));
}

/// Regression: a damaged snapshot left under its name after a fallback counted as one
/// of the `keep_snapshots` retained, so the next checkpoint unlinked the WAL back to
/// it; one more damaged snapshot then lost the store.
#[test]
fn damaged_snapshot_kept_after_fallback_counted_as_retained_and_cost_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut events, _older, newer) = two_snapshots(dir.path());
    damage(&newer, Damage::FlipBody);

    let store = Store::<Ledger>::open(dir.path(), options()).unwrap();
    let more: Vec<Entry> = (0..50).map(|i| Entry::new(3, i)).collect();
    store.append_batch(&more).unwrap();
    events.extend(more);
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();

    // The newest snapshot is damaged now: keep_snapshots = 2 must still lose nothing.
    let newest = snapshots(dir.path()).pop().unwrap();
    assert!(
        newest.ends_with("snap/00000000000000001350.snap"),
        "{newest:?}"
    );
    damage(&newest, Damage::FlipBody);
    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options()).unwrap();
    assert_eq!(
        report.snapshots_skipped.len(),
        1,
        "{:?}",
        report.snapshots_skipped
    );
    assert_eq!(*store.current().state(), replayed(&events));
    store.close().unwrap();
}

/// The "name exists" path with a damaged file: for every kind of damage, a snapshot
/// under the name a checkpoint is about to write must validate before it stands in
/// for the new one; otherwise it is moved aside and the new one installed, and the
/// WAL unlinked behind it (`keep_snapshots(1)`) loses nothing.
#[test]
fn checkpoint_does_not_vouch_for_a_damaged_snapshot_under_its_name() {
    for how in ALL {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Entry> = (0..600).map(|i| Entry::padded(1, i, 150)).collect();
        let keep_one = || opts(SyncPolicy::Never).keep_snapshots(1);
        // A valid snapshot at 600, taken from a twin directory, damaged.
        let twin = tempfile::tempdir().unwrap();
        let store = Store::<Ledger>::open(twin.path(), keep_one()).unwrap();
        store.append_batch(&events).unwrap();
        store.checkpoint().unwrap();
        store.close().unwrap();
        let source = snapshots(twin.path()).pop().unwrap();
        damage(&source, how);

        let store = Store::<Ledger>::open(dir.path(), keep_one()).unwrap();
        store.append_batch(&events).unwrap();
        let snap = dir.path().join("snap/00000000000000000600.snap");
        std::fs::copy(&source, &snap).unwrap();
        let rep = store.checkpoint().unwrap();
        assert_eq!(rep.outcome, CheckpointOutcome::Written, "{how:?}");
        assert!(
            dir.path()
                .join("snap/00000000000000000600.snap.corrupt")
                .exists(),
            "{how:?}"
        );
        store.close().unwrap();

        let (store, report) = Store::<Ledger>::open_with_report(dir.path(), keep_one())
            .unwrap_or_else(|e| panic!("{how:?}: {e}"));
        assert_eq!(report.snapshot_seq, Some(600), "{how:?}");
        assert!(report.snapshots_skipped.is_empty(), "{how:?}");
        assert_eq!(*store.current().state(), replayed(&events), "{how:?}");
        store.close().unwrap();
    }
}
