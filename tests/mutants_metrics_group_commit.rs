//! The group-commit histogram records, for each group commit that made records
//! durable, how many it made durable, and nothing for a sync that had nothing new.
//! Pins mutants of `sync_once`'s metrics found missed by cargo-mutants (run with
//! `.cargo/mutants/purge-sync.toml`, which turns `metrics` on). A binary of its own:
//! the recorder is process-wide.
#![cfg(feature = "metrics")]

mod common;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use snapwal::{Store, SyncPolicy};

#[test]
fn group_commit_histogram_records_the_records_each_sync_made_durable() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    let dir = tempfile::tempdir().unwrap();
    let options = opts(SyncPolicy::Never).metrics_label("gc");
    let store = Store::<Ledger>::open(dir.path(), options).unwrap();
    // Three group commits: of 1, 4 and 2 records; then two with nothing new.
    store.append(&Entry::new(1, 0)).unwrap();
    store.sync().unwrap();
    let four: Vec<Entry> = (1..5).map(|i| Entry::new(1, i)).collect();
    store.append_batch(&four).unwrap();
    store.sync().unwrap();
    store
        .append_batch(&[Entry::new(1, 5), Entry::new(1, 6)])
        .unwrap();
    store.sync().unwrap();
    store.sync().unwrap();
    store.sync().unwrap();

    let mut recorded = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "snapwal_group_commit_records"
            || !key
                .labels()
                .any(|l| l.key() == "store" && l.value() == "gc")
        {
            continue;
        }
        if let DebugValue::Histogram(v) = value {
            recorded.extend(v.into_iter().map(|x| x.into_inner()));
        }
    }
    assert_eq!(recorded, vec![1.0, 4.0, 2.0]);
    store.close().unwrap();
}
