//! A WAL with a segment missing (in the middle, or the first with no snapshot) is Error::MissingRecords naming the first seq it needed.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::{Error, RecoveryPolicy, Store, SyncPolicy};

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".wal").unwrap().parse().unwrap()
}

fn store_with_segments(dir: &Path) -> (Vec<Entry>, Vec<PathBuf>) {
    let store = open(dir, SyncPolicy::Never);
    let events: Vec<Entry> = (0..1500)
        .map(|i| Entry::padded(1, i, 150 + (i % 5) as usize))
        .collect();
    for e in &events {
        store.append(e).unwrap();
    }
    store.close().unwrap();
    let segs = segments(dir);
    assert!(segs.len() >= 4, "{segs:?}");
    assert!(snapshots(dir).is_empty());
    (events, segs)
}

fn expect_missing(result: snapwal::Result<Store<Ledger>>, needed: u64, path: &Path) {
    match result {
        Err(e @ Error::MissingRecords { .. }) => {
            let Error::MissingRecords { needed: n, path: p } = &e else {
                unreachable!()
            };
            assert_eq!(*n, needed, "{e}");
            assert_eq!(p, path, "{e}");
            let text = e.to_string();
            assert!(
                text.contains(&format!("record {needed} is missing")),
                "{text}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        other => panic!("expected MissingRecords({needed}), got {other:?}"),
    }
}

#[test]
fn deleted_middle_segment_is_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let (_events, segs) = store_with_segments(dir.path());
    std::fs::remove_file(&segs[1]).unwrap();
    let needed = first_seq_of(&segs[1]);
    for p in [RecoveryPolicy::TolerateTornTail, RecoveryPolicy::Strict] {
        expect_missing(
            Store::open(dir.path(), opts(SyncPolicy::Never).recovery(p)),
            needed,
            &segs[2],
        );
        assert_eq!(
            segments(dir.path()).len(),
            segs.len() - 1,
            "refusing must not touch the files"
        );
    }
}

#[test]
fn deleted_middle_segment_salvages_the_prefix_before_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (events, segs) = store_with_segments(dir.path());
    std::fs::remove_file(&segs[1]).unwrap();
    let keep = first_seq_of(&segs[1]) - 1;
    let salvage = opts(SyncPolicy::Never).recovery(RecoveryPolicy::SalvagePrefix);
    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), salvage).unwrap();
    assert_eq!(store.seq(), keep);
    assert_eq!(*store.current().state(), replayed(&events[..keep as usize]));
    assert_eq!(report.quarantined.len(), segs.len() - 2);
    assert_eq!(store.append(&Entry::new(2, 0)).unwrap(), keep + 1);
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.seq(), keep + 1);
    store.close().unwrap();
}

#[test]
fn deleted_first_segment_without_a_snapshot_is_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let (_events, segs) = store_with_segments(dir.path());
    std::fs::remove_file(&segs[0]).unwrap();
    for p in [
        RecoveryPolicy::TolerateTornTail,
        RecoveryPolicy::Strict,
        RecoveryPolicy::SalvagePrefix,
    ] {
        // Even SalvagePrefix has no prefix to keep: seq 1 is gone.
        expect_missing(
            Store::open(dir.path(), opts(SyncPolicy::Never).recovery(p)),
            1,
            &segs[1],
        );
        assert_eq!(segments(dir.path()), segs[1..].to_vec(), "{p:?}");
    }
}
