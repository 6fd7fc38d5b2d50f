//! A quiet store is parked: the scheduler stops looking at it and it closes its
//! segment's file, until its next append or position move wakes it. These tests fail
//! by timing out (the 60 s backstop is far past their 20 s deadlines) if a wake-up is
//! lost, and count the store's descriptors in `/proc/self/fd`.
mod common;
use common::*;
use snapwal::{CheckpointerConfig, Options, Position, Scheduler, Store, SyncPolicy};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn has_snapshot_at(dir: &Path, seq: u64) -> bool {
    let name = format!("{seq:020}.snap");
    snapshots(dir)
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
}

#[test]
fn an_idle_store_closes_its_segment_and_its_next_append_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append(&Entry::new(1, 1)).unwrap();
    assert_eq!(
        fds_under(&dir.path().join("wal")),
        1,
        "the active segment is open"
    );
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(2)))
        .unwrap();
    // A snapshot, then a quiet run: parked, the segment's file closed. Only the lock
    // stays open.
    wait_until("the idle store closes its segment", || {
        fds_under(&dir.path().join("wal")) == 0
    });
    assert_eq!(fds_under(dir.path()), 1, "only LOCK stays open");
    assert!(has_snapshot_at(dir.path(), 1));

    // The next append reopens the segment (same file, no new segment) and wakes the
    // checkpointer.
    let segments_before = segments(dir.path());
    store.append(&Entry::new(1, 2)).unwrap();
    assert_eq!(
        segments(dir.path()),
        segments_before,
        "the segment was reopened"
    );
    wait_until("a snapshot of the append", || {
        has_snapshot_at(dir.path(), 2)
    });
    wait_until("parked again", || fds_under(&dir.path().join("wal")) == 0);
    store.append(&Entry::new(1, 3)).unwrap();
    store.close().unwrap();

    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.current().count, 3);
    assert_eq!(store.current().last[&1], 3);
    store.close().unwrap();
}

#[test]
fn a_position_move_wakes_a_parked_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append(&Entry::new(1, 1)).unwrap();
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(2)))
        .unwrap();
    wait_until("parked", || fds_under(&dir.path().join("wal")) == 0);
    let cell = store.position("input");
    cell.set(Position {
        offset: 7,
        ..Default::default()
    });
    wait_until("the position saved", || {
        std::fs::read_dir(dir.path().join("pos"))
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".snap"))
    });
    drop(store);
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.position("input").get().offset, 7);
    store.close().unwrap();
}

/// Appends and position moves land at random moments around the parking decision of
/// many stores on one shared scheduler; every change must end up checkpointed long
/// before the backstop would catch a lost wake-up.
#[test]
fn no_wake_up_is_lost_when_changes_race_with_parking() {
    let scheduler = Arc::new(Scheduler::new(2).unwrap());
    let dirs: Vec<_> = (0..12).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<Arc<Store<Ledger>>> = dirs
        .iter()
        .map(|d| {
            let s = Store::open(d.path(), Options::default().sync(SyncPolicy::Never)).unwrap();
            s.start_checkpointer_on(
                &scheduler,
                CheckpointerConfig::every(Duration::from_millis(1)),
            )
            .unwrap();
            Arc::new(s)
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40u64 {
        let i = (next() % stores.len() as u64) as usize;
        let store = &stores[i];
        // Sleep 0–3 ms, so the change lands before, during or after a park.
        std::thread::sleep(Duration::from_micros(next() % 3_000));
        if next() % 2 == 0 {
            store.append(&Entry::new(i as u32, round)).unwrap();
        } else {
            store.position("p").set(Position {
                offset: round + 1,
                ..Default::default()
            });
        }
    }
    for (store, dir) in stores.iter().zip(&dirs) {
        let seq = store.seq();
        let offset = store.position("p").get().offset;
        wait_until("every change checkpointed", || {
            let snap_ok = seq == 0 || has_snapshot_at(dir.path(), seq);
            // The newest checkpoint holds the newest position: reopen a copy to see.
            snap_ok && {
                let copy = tempfile::tempdir().unwrap();
                copy_dir(dir.path(), copy.path());
                let _ = std::fs::remove_file(copy.path().join("LOCK"));
                let reopened: Store<Ledger> = Store::open(copy.path(), Options::default()).unwrap();
                let got = reopened.position("p").get().offset;
                reopened.close().unwrap();
                got == offset
            }
        });
    }
    for store in stores {
        Arc::into_inner(store).unwrap().close().unwrap();
    }
}
