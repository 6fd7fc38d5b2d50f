//! Every metric of `snapwal::metrics` moves, with the `store` label chosen in the
//! options: a recorder is installed, one store goes through appends, rotations, a
//! group commit, back-pressure (an appender waits while another is held inside the
//! creation of a segment), a checkpoint whose cleanup fails once, and a reopen.
mod common;
use common::hooked::{HookedFs, Op};
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use snapwal::{Options, Store, SyncPolicy};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What each metric of one store did, summed over snapshots (the debugging recorder
/// drains counters and histograms at each snapshot).
#[derive(Default)]
struct Seen(HashMap<String, f64>);

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter, store: &str) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if !key
                .labels()
                .any(|l| l.key() == "store" && l.value() == store)
            {
                continue;
            }
            let moved = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(v) => v.into_inner().abs(),
                DebugValue::Histogram(v) => v.len() as f64,
            };
            *self.0.entry(key.name().to_owned()).or_default() += moved;
        }
    }
    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }
}

/// A gate that holds the creation of WAL segments while closed.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    cv: Condvar,
    held: AtomicU32,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.cv.notify_all();
    }
    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        if *closed {
            self.held.fetch_add(1, Ordering::SeqCst);
        }
        while *closed {
            closed = self.cv.wait(closed).unwrap();
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn every_metric_moves_with_the_store_label() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let mut seen = Seen::default();

    let gate = Arc::new(Gate::default());
    let fail_remove = Arc::new(AtomicBool::new(false));
    let fs = {
        let (gate, fail_remove) = (Arc::clone(&gate), Arc::clone(&fail_remove));
        HookedFs::new(move |op, path| {
            let segment = path.extension().is_some_and(|x| x == "wal");
            if op == Op::Create && segment {
                gate.pass();
            }
            if op == Op::Remove && segment && fail_remove.swap(false, Ordering::SeqCst) {
                return Err(std::io::Error::other("injected: unlink failed"));
            }
            Ok(())
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .fs(Arc::new(fs))
        .sync(SyncPolicy::Always)
        .segment_bytes(4096)
        .max_staged_bytes(4096)
        .keep_snapshots(1)
        .metrics_label("orders");
    let store = Arc::new(Store::<Ledger>::open(dir.path(), opts.clone()).unwrap());
    for n in 0..100 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
    }

    // Back-pressure: one appender is held inside the creation of the next segment
    // with more than the staging bound staged; another must wait for room.
    gate.set(true);
    let big = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.append(&Entry::padded(2, 0, 5_000)).unwrap())
    };
    wait_until("the big append held in the segment's creation", || {
        gate.held.load(Ordering::SeqCst) > 0
    });
    // Staged and not yet written: the gauge shows it.
    seen.take(&snapshotter, "orders");
    assert!(seen.get("snapwal_staged_bytes") >= 5_000.0, "{:?}", seen.0);
    let waiter = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.append(&Entry::new(3, 0)).unwrap())
    };
    wait_until("an appender waiting for room", || {
        seen.take(&snapshotter, "orders");
        seen.get("snapwal_backpressure_waits_total") >= 1.0
    });
    gate.set(false);
    big.join().unwrap();
    waiter.join().unwrap();

    // A checkpoint whose cleanup cannot unlink one segment (the next one retries).
    fail_remove.store(true, Ordering::SeqCst);
    store.checkpoint().unwrap();
    store.append(&Entry::new(4, 0)).unwrap();
    store.checkpoint().unwrap();
    Arc::into_inner(store).unwrap().close().unwrap();
    let store = Store::<Ledger>::open(dir.path(), opts).unwrap();
    assert_eq!(store.current().count, 103);
    store.close().unwrap();

    seen.take(&snapshotter, "orders");
    for name in [
        "snapwal_append_duration_seconds",
        "snapwal_group_commit_records",
        "snapwal_fdatasync_duration_seconds",
        "snapwal_checkpoint_duration_seconds",
        "snapwal_checkpoint_bytes",
        "snapwal_recovery_duration_seconds",
        "snapwal_records_total",
        "snapwal_record_bytes_total",
        "snapwal_segment_rotations_total",
        "snapwal_segments_unlinked_total",
        "snapwal_cleanup_failures_total",
        "snapwal_backpressure_waits_total",
        "snapwal_staged_bytes",
        "snapwal_wal_bytes_since_snapshot",
    ] {
        assert!(seen.get(name) > 0.0, "{name} did not move: {:?}", seen.0);
    }
    assert_eq!(seen.get("snapwal_records_total"), 103.0);
    assert_eq!(seen.get("snapwal_cleanup_failures_total"), 1.0);
    // Two opens recovered.
    assert_eq!(seen.get("snapwal_recovery_duration_seconds"), 2.0);
    // Nothing went out under another label.
    let mut other = Seen::default();
    other.take(
        &snapshotter,
        &dir.path().file_name().unwrap().to_string_lossy(),
    );
    assert!(other.0.is_empty(), "{:?}", other.0);
}
