//! A WAL segment copied in from another store (another store id) is Error::ForeignFile naming it, under every recovery policy.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::SegmentHeader;
use snapwal::{Error, RecoveryPolicy, Store, SyncPolicy};

fn store_id(segment: &Path) -> u64 {
    SegmentHeader::decode(&std::fs::read(segment).unwrap())
        .unwrap()
        .store_id
}

fn events() -> Vec<Entry> {
    (0..1000).map(|i| Entry::padded(1, i, 150)).collect()
}

fn store_with(dir: &Path, events: &[Entry]) -> Vec<PathBuf> {
    let store = open(dir, SyncPolicy::Never);
    store.append_batch(events).unwrap();
    store.close().unwrap();
    segments(dir)
}

fn expect_foreign(result: snapwal::Result<Store<Ledger>>, path: &Path, expected: u64, found: u64) {
    match result {
        Err(e @ Error::ForeignFile { .. }) => {
            let Error::ForeignFile {
                path: p,
                expected: x,
                found: f,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(p, path, "{e}");
            assert_eq!(*x, expected, "{e}");
            assert_eq!(*f, found, "{e}");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("{found:016x}")), "{text}");
        }
        other => panic!(
            "expected ForeignFile naming {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn segment_replaced_by_another_stores_segment_is_foreign() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    // Same events, so the segments have the same names and records: only the id differs.
    let our_segs = store_with(ours.path(), &events());
    let their_segs = store_with(theirs.path(), &events());
    assert!(our_segs.len() >= 3);
    assert_eq!(our_segs[1].file_name(), their_segs[1].file_name());
    let (our_id, their_id) = (store_id(&our_segs[0]), store_id(&their_segs[1]));
    assert_ne!(our_id, their_id);

    std::fs::copy(&their_segs[1], &our_segs[1]).unwrap();
    for p in [
        RecoveryPolicy::Strict,
        RecoveryPolicy::TolerateTornTail,
        RecoveryPolicy::SalvagePrefix,
    ] {
        expect_foreign(
            Store::open(ours.path(), opts(SyncPolicy::Never).recovery(p)),
            &our_segs[1],
            our_id,
            their_id,
        );
        // Not salvaged away: the operator decides.
        assert_eq!(segments(ours.path()), our_segs, "{p:?}");
    }
}

#[test]
fn segment_from_another_store_continuing_our_seqs_is_foreign() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let evs = events();
    let our_segs = store_with(ours.path(), &evs);
    store_with(theirs.path(), &evs);
    // Their next segment starts where ours would: named 1001.
    let store = open(theirs.path(), SyncPolicy::Never);
    store
        .append_batch(&[Entry::new(9, 0), Entry::new(9, 1)])
        .unwrap();
    store.close().unwrap();
    let theirs_next = theirs.path().join("wal/00000000000000001001.wal");
    assert!(theirs_next.exists());

    let copied = ours.path().join("wal/00000000000000001001.wal");
    std::fs::copy(&theirs_next, &copied).unwrap();
    expect_foreign(
        Store::open(ours.path(), opts(SyncPolicy::Never)),
        &copied,
        store_id(&our_segs[0]),
        store_id(&theirs_next),
    );
    // Without it, our store is whole.
    std::fs::remove_file(&copied).unwrap();
    let store = open(ours.path(), SyncPolicy::Never);
    assert_eq!(*store.current().state(), replayed(&evs));
    store.close().unwrap();
}
