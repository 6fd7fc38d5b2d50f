//! Many stores on one machine: disk in proportion to data (segments reserve space
//! in steps), a scheduler that needs no polling (the WAL nudges it past the byte
//! threshold; quiet stores are not checkpointed again), and a close that frees the
//! state in the background while still releasing the lock before it returns.
mod common;
use common::*;
use snapwal::{CheckpointerConfig, CloseOptions, Options, Store, SyncPolicy};
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_new_segment_reserves_a_small_step_and_grows_ahead_of_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .sync(SyncPolicy::Never)
        .segment_bytes(64 << 20)
        .preallocate(true);
    let store: Store<Ledger> = Store::open(dir.path(), opts.clone()).unwrap();
    let mut events = vec![Entry::new(1, 0)];
    store.append(&events[0]).unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    assert_eq!(len, snapwal::wal::RESERVE_START, "first step only");
    // About 1 MiB of records: the reservation grew, in steps, ahead of the writes,
    // and is nowhere near the whole segment.
    for n in 1..8_000 {
        let e = Entry::padded(1, n, 120);
        store.append(&e).unwrap();
        events.push(e);
    }
    store.sync().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!((1 << 20..=4 << 20).contains(&len), "reserved {len} bytes");
    store.close().unwrap();
    let store: Store<Ledger> = Store::open(dir.path(), opts).unwrap();
    assert_eq!(*store.current().state(), replayed(&events));
}

#[test]
fn the_byte_trigger_needs_no_polling() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    let mut cfg = CheckpointerConfig::default().wal_bytes(Some(64 * 1024));
    // No backstop check for an hour: only the writer's nudge can trigger it.
    cfg.poll = Duration::from_secs(3600);
    store.start_checkpointer(cfg).unwrap();
    let mut n = 0;
    while store.current().seq() * 130 < 80 * 1024 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
        n += 1;
    }
    wait_until("a byte-triggered checkpoint", || {
        store.checkpoint_stats().total >= 1
    });
    // Re-armed after it: the next crossing triggers again.
    let before = store.checkpoint_stats().total;
    for _ in 0..1_000 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
        n += 1;
    }
    wait_until("a second byte-triggered checkpoint", || {
        store.checkpoint_stats().total > before
    });
    store.close().unwrap();
}

#[test]
fn a_quiet_store_is_not_checkpointed_again_until_something_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    store.append(&Entry::new(1, 1)).unwrap();
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(2)))
        .unwrap();
    // The first run writes the snapshot, the second finds nothing to do.
    wait_until("two checkpoints", || store.checkpoint_stats().total >= 2);
    std::thread::sleep(Duration::from_millis(200));
    let idle = store.checkpoint_stats().total;
    assert!(idle <= 3, "{idle} checkpoints of an idle store");
    // A position that moves without an append is still saved by the next one.
    store.position("src").set(snapwal::Position {
        offset: 42,
        ..Default::default()
    });
    wait_until("positions saved", || store.checkpoint_stats().total > idle);
    let cell = store.position("src");
    assert_eq!(cell.get().offset, 42);
    // An append makes it due again: a snapshot at its seq appears (a run counted
    // before it may have started before the append, so count snapshots, not runs).
    store.append(&Entry::new(1, 2)).unwrap();
    wait_until("a snapshot of the append", || {
        snapshots(dir.path()).iter().any(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("00000000000000000002")
        })
    });
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.positions()[0].1.offset, 42);
}

#[test]
fn close_with_drop_in_background_still_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    for n in 0..1_000 {
        store.append(&Entry::padded(n, 1, 64)).unwrap();
    }
    let report = store
        .close_with(CloseOptions::default().drop_in_background(true))
        .unwrap();
    assert!(!report.still_closing);
    assert!(report.elapsed > Duration::ZERO);
    // The lock is free the moment close returns.
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.current().seq(), 1_000);
    store.close().unwrap();
}
