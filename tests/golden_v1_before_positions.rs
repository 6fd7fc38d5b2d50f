//! Stores written by format v1 before positions records existed (no `pos/`
//! directory) still open, with every event and their saved positions, and keep
//! working. The files in `tests/data/v1/before-positions-records/` were written by that release
//! (30 events, a snapshot at 20 with position `tail` at offset 2000, closed cleanly);
//! they are never regenerated.
mod common;

use std::path::Path;

use common::*;
use snapwal::{CheckpointOutcome, Position, Store, SyncPolicy};

fn event(n: u64) -> Entry {
    Entry::padded((n % 3) as u32, n, (n * 37 % 200) as usize)
}

#[test]
fn a_v1_store_without_positions_records_still_opens() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1/before-positions-records");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden, dir.path());
    assert!(!dir.path().join("pos").exists());

    let (store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always).segment_bytes(4096))
            .unwrap();
    let mut events: Vec<Entry> = (1..=30).map(event).collect();
    assert_eq!(report.snapshot_seq, Some(20));
    assert_eq!(report.records_replayed, 10);
    assert_eq!(store.seq(), 30);
    assert_eq!(*store.current().state(), replayed(&events));
    let tail = Position {
        offset: 2000,
        inode: 7,
        timestamp: 20,
    };
    assert_eq!(store.position("tail").get(), tail);

    // It keeps working under the current format: appends, a positions record, reopen.
    events.push(event(31));
    store.append(&event(31)).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    let moved = Position {
        offset: 3100,
        ..tail
    };
    store.position("tail").set(moved);
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::PositionsSaved
    );
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(*store.current().state(), replayed(&events));
    assert_eq!(store.position("tail").get(), moved);
    store.close().unwrap();
}
