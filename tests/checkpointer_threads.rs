//! Checkpointer threads: a disabled checkpointer starts no thread, and a shared
//! scheduler runs the checkpoints of 1,000 stores on a bounded number of threads.
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use snapwal::{CheckpointerConfig, Scheduler, Store, SyncPolicy};

/// Tests here count this process's threads, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn checkpoint_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("snapwal-ckpt"))
        .count()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn zero_and_negative_intervals_start_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    for cfg in [
        CheckpointerConfig::every(Duration::ZERO),
        CheckpointerConfig::from_interval_secs(0.0),
        CheckpointerConfig::from_interval_secs(-3.0),
        CheckpointerConfig::from_interval_secs(f64::NAN),
    ] {
        assert!(!cfg.is_enabled());
        assert!(!store.start_checkpointer(cfg).unwrap());
    }
    assert_eq!(
        checkpoint_threads(),
        0,
        "a disabled checkpointer started a thread"
    );
    // Nothing was started, so a real one can still be started.
    assert!(store
        .start_checkpointer(CheckpointerConfig::from_interval_secs(0.001))
        .unwrap());
    // A new thread names itself once it runs.
    wait_until("the checkpointer thread", || checkpoint_threads() == 1);
    assert!(store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_secs(1)))
        .is_err());
}

#[test]
fn shared_scheduler_runs_1000_stores_on_bounded_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(2).unwrap();
    assert_eq!(scheduler.threads(), 2);
    let mut stores = Vec::new();
    for i in 0..1_000u32 {
        let dir = root.path().join(format!("store-{i}"));
        let store: Store<Ledger> = Store::open(&dir, opts(SyncPolicy::Never)).unwrap();
        store.append(&Entry::new(i, 0)).unwrap();
        assert!(store
            .start_checkpointer_on(
                &scheduler,
                CheckpointerConfig::every(Duration::from_millis(20))
            )
            .unwrap());
        stores.push((dir, store));
    }
    wait_until("every store to checkpoint", || {
        stores.iter().all(|(_, s)| s.checkpoint_stats().total >= 1)
    });
    assert_eq!(
        checkpoint_threads(),
        2,
        "1,000 stores must share the 2 workers"
    );
    for (dir, store) in stores {
        store.close().unwrap();
        assert_eq!(snapshots(&dir).len(), 1, "{}", dir.display());
    }
    assert_eq!(scheduler.shutdown(Duration::from_secs(5)), 0);
}

/// Regression: detaching one store from a shared scheduler (its `close`) built a
/// temporary scheduler handle whose `Drop` shut the shared scheduler down, so every
/// other store registered on it stopped checkpointing.
#[test]
fn bug_closing_one_store_stopped_the_shared_scheduler() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(1).unwrap();
    let open_on = |name: &str| {
        let store: Store<Ledger> =
            Store::open(root.path().join(name), opts(SyncPolicy::Never)).unwrap();
        store
            .start_checkpointer_on(
                &scheduler,
                CheckpointerConfig::every(Duration::from_millis(5)),
            )
            .unwrap();
        store
    };
    let first = open_on("first");
    let second = open_on("second");
    first.close().unwrap();
    second.append(&Entry::new(1, 1)).unwrap();
    wait_until("the remaining store to checkpoint", || {
        second.checkpoint_stats().total >= 1
    });
    second.close().unwrap();
    assert_eq!(scheduler.shutdown(Duration::from_secs(5)), 0);
}
