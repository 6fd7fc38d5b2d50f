//! Append N events, close, reopen: the same state at the same seq.
mod common;
use common::*;
use snapwal::SyncPolicy;

#[test]
fn round_trip_preserves_state_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..5_000)
        .map(|i| Entry::padded(1, i, (i % 300) as usize))
        .collect();
    let store = open(dir.path(), SyncPolicy::Never);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(store.append(e).unwrap(), i as u64 + 1);
    }
    let before = store.current();
    assert_eq!(before.seq(), 5_000);
    assert_eq!(*before.state(), replayed(&events));
    let report = store.close().unwrap();
    assert_eq!(report.durable_seq, 5_000);
    assert!(
        segments(dir.path()).len() > 1,
        "small segments must have rotated"
    );

    let (store, rep) =
        snapwal::Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Never)).unwrap();
    assert_eq!(rep.records_replayed, 5_000);
    assert!(rep.torn_tail.is_none());
    let after = store.current();
    assert_eq!(after.seq(), 5_000);
    assert_eq!(*after.state(), replayed(&events));
    // Appends continue from the next seq.
    assert_eq!(store.append(&Entry::new(2, 0)).unwrap(), 5_001);
    store.close().unwrap();
}

#[test]
fn batch_append_publishes_once_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    let batch: Vec<Entry> = (0..100).map(|i| Entry::new(3, i)).collect();
    assert_eq!(store.append_batch(&batch).unwrap(), 100);
    assert_eq!(store.append_batch(&[]).unwrap(), 100);
    assert_eq!(store.durable_seq(), 100);
    drop(store);
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(*store.current().state(), replayed(&batch));
}
