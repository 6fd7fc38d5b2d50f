//! Dropping a store without `close` loses no acknowledged event: a reopen recovers a
//! prefix that holds every append that returned `Ok`, under every sync policy (I1, I2, I8).
mod common;
use common::*;
use snapwal::{Store, SyncPolicy};
use std::time::Duration;

const N: u64 = 2_000;

/// Appends `N` events under `policy`, drops the store without closing it, reopens, and
/// checks that the recovered state is a prefix holding every acknowledged event.
fn drop_then_reopen(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..N)
        .map(|i| Entry::padded(7, i, (i % 97) as usize))
        .collect();
    let store = Store::<Ledger>::open(dir.path(), opts(policy)).unwrap();
    let mut acknowledged = 0u64;
    for (i, e) in events.iter().enumerate() {
        let seq = store.append(e).unwrap();
        assert_eq!(seq, i as u64 + 1);
        if policy == SyncPolicy::Always {
            assert!(
                store.durable_seq() >= seq,
                "append {seq} returned under Always but durable_seq is {}",
                store.durable_seq()
            );
        }
        acknowledged = seq;
    }
    assert_eq!(acknowledged, N);
    assert!(
        segments(dir.path()).len() > 1,
        "small segments must have rotated"
    );
    drop(store);

    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), opts(policy)).unwrap();
    let k = store.seq();
    assert!(k <= N, "recovered seq {k} is past the last append {N}");
    assert_eq!(
        *store.current().state(),
        replayed(&events[..k as usize]),
        "not the prefix 1..={k}"
    );
    // Under `Always` every append was durable when it returned. Under `Never` and
    // `Interval` every append returned once its record was written to the OS: dropping
    // the store ends no process and loses no power, so the page cache still holds every
    // record and the reopen (which reads through that cache) sees all of them.
    assert_eq!(k, N, "an acknowledged event was lost under {policy:?}");
    assert!(
        report.torn_tail.is_none(),
        "a drop must not tear the log: {report:?}"
    );
    assert_eq!(report.records_replayed, N);

    // The reopened store appends after what it recovered.
    assert_eq!(store.append(&Entry::new(8, 0)).unwrap(), N + 1);
    store.close().unwrap();
}

#[test]
fn drop_without_close_keeps_every_append_under_always() {
    drop_then_reopen(SyncPolicy::Always);
}

#[test]
fn drop_without_close_keeps_every_append_under_never() {
    drop_then_reopen(SyncPolicy::Never);
}

#[test]
fn drop_without_close_keeps_every_append_under_interval() {
    drop_then_reopen(SyncPolicy::Interval(Duration::from_millis(10)));
}
