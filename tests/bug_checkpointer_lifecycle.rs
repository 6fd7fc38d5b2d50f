//! Regressions where the checkpointer meets `close`, a shared scheduler, panics and
//! odd durations. Each test is named after the bug it pins.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::hooked::{HookedFs, Op};
use common::*;
use serde::{Deserialize, Serialize, Serializer};
use snapwal::{
    CheckpointOutcome, CheckpointerConfig, CloseOptions, Error, FinalCheckpointMissed, Scheduler,
    Store, SyncPolicy,
};

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn is_temp(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".tmp")
}

/// A state whose snapshot spans many 1 MiB write buffers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Blobs(Vec<Vec<u8>>);

impl snapwal::State for Blobs {
    type Event = Vec<u8>;
    fn apply(&mut self, e: &Vec<u8>) {
        self.0.push(e.clone());
    }
}

/// `n` blobs of 100 KiB: a snapshot of about `n / 10` buffered writes.
fn blobs(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; 100 * 1024]).collect()
}

fn hooked_opts(
    hook: impl Fn(Op, &Path) -> io::Result<()> + Send + Sync + 'static,
) -> snapwal::Options {
    opts(SyncPolicy::Never).fs(Arc::new(HookedFs::new(hook)))
}

/// Options whose file system parks the first `op` on a snapshot temp file until the
/// returned sender sends (or 60 s pass); the flag says when it is parked.
fn park_first_on_a_temp_file(
    parked_op: Op,
) -> (
    snapwal::Options,
    Arc<AtomicBool>,
    std::sync::mpsc::Sender<()>,
) {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let parked = Arc::new(AtomicBool::new(false));
    let o = {
        let parked = Arc::clone(&parked);
        hooked_opts(move |op, path| {
            if op == parked_op && is_temp(path) && !parked.swap(true, Ordering::SeqCst) {
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(60));
            }
            Ok(())
        })
    };
    (o, parked, release_tx)
}

/// Bug 9: `close` on a store attached to a shared scheduler must cancel that store's
/// running checkpoint (not wait for it to finish) and leave the other stores alone.
#[test]
fn bug_shared_scheduler_close_does_not_cancel() {
    let root = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(2).unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicBool::new(false));
    let a_opts = {
        let (writes, slow) = (Arc::clone(&writes), Arc::clone(&slow));
        hooked_opts(move |op, path| {
            if op == Op::Write && is_temp(path) && slow.load(Ordering::SeqCst) {
                writes.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(40));
            }
            Ok(())
        })
    };
    let a: Store<Blobs> = Store::open(root.path().join("a"), a_opts).unwrap();
    // About 40 buffered writes of 40 ms: 1.6 s if nothing cancels it.
    let batch = blobs(400);
    a.append_batch(&batch).unwrap();
    let b: Store<Ledger> = Store::open(root.path().join("b"), opts(SyncPolicy::Never)).unwrap();
    b.append(&Entry::new(1, 1)).unwrap();
    b.start_checkpointer_on(
        &scheduler,
        CheckpointerConfig::every(Duration::from_millis(5)),
    )
    .unwrap();
    slow.store(true, Ordering::SeqCst);
    a.start_checkpointer_on(
        &scheduler,
        CheckpointerConfig::every(Duration::from_millis(1)),
    )
    .unwrap();
    wait_until(
        "a's checkpoint to start writing",
        Duration::from_secs(60),
        || writes.load(Ordering::SeqCst) >= 1,
    );
    let started = Instant::now();
    let report = a
        .close_with(CloseOptions::default().thread_timeout(Duration::from_secs(60)))
        .unwrap();
    let took = started.elapsed();
    let done = writes.load(Ordering::SeqCst);
    assert_eq!(report.threads_abandoned, 0);
    assert!(!report.still_closing);
    assert!(
        done <= 10,
        "close waited for the checkpoint: {done} of about 40 buffered writes done, {took:?}"
    );
    assert!(snapshots(&root.path().join("a")).is_empty());
    // The other store was not disturbed: it keeps checkpointing, with no failure.
    let before = b.checkpoint_stats().total;
    b.append(&Entry::new(1, 2)).unwrap();
    wait_until("b to checkpoint again", Duration::from_secs(60), || {
        b.checkpoint_stats().total > before
    });
    assert_eq!(b.checkpoint_stats().failures, 0);
    b.close().unwrap();
    assert_eq!(scheduler.shutdown(Duration::from_secs(10)), 0);
    let a: Store<Blobs> = Store::open(root.path().join("a"), opts(SyncPolicy::Never)).unwrap();
    assert_eq!(a.current().state().0, batch);
}

/// Records every hooked call made after `closed` is set.
#[derive(Default)]
struct AfterClose {
    closed: AtomicBool,
    calls: Mutex<Vec<String>>,
}

impl AfterClose {
    fn note(&self, op: Op, path: &Path) {
        if self.closed.load(Ordering::SeqCst) {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{op:?} {}", path.display()));
        }
    }
}

/// Bug 10: a final checkpoint past its deadline made `close_with` return `Ok` with
/// the lock still held, and the abandoned checkpoint unlinked segments afterwards.
#[test]
fn bug_close_returns_while_checkpoint_still_unlinks() {
    let dir = tempfile::tempdir().unwrap();
    let after = Arc::new(AfterClose::default());
    let slow_unlink = Arc::new(AtomicBool::new(false));
    let o = {
        let (after, slow_unlink) = (Arc::clone(&after), Arc::clone(&slow_unlink));
        hooked_opts(move |op, path| {
            after.note(op, path);
            if op == Op::Remove
                && path.extension().is_some_and(|e| e == "wal")
                && slow_unlink.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })
    };
    let store: Store<Ledger> = Store::open(dir.path(), o).unwrap();
    let events: Vec<Entry> = (0..10_000).map(|n| Entry::padded(1, n, 64)).collect();
    for e in &events {
        store.append(e).unwrap();
    }
    assert!(segments(dir.path()).len() >= 10);
    slow_unlink.store(true, Ordering::SeqCst);
    let report = store
        .close_with(
            CloseOptions::default()
                .thread_timeout(Duration::from_secs(30))
                .final_checkpoint(Some(Duration::from_millis(100))),
        )
        .unwrap();
    after.closed.store(true, Ordering::SeqCst);
    assert!(!report.still_closing, "{report:?}");
    // The lock is free the moment close returns.
    let reopened = Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never))
        .expect("the directory must be unlocked when close returns");
    let left = segments(dir.path());
    // Longer than the slow cleanup would take (10 x 100 ms) had it been left running.
    std::thread::sleep(Duration::from_millis(1_500));
    let calls = after.calls.lock().unwrap().clone();
    assert!(
        calls.is_empty(),
        "the closed store touched its directory: {calls:#?}"
    );
    assert_eq!(segments(dir.path()), left);
    assert_eq!(*reopened.current().state(), replayed(&events));
}

/// Bug 10, the other half: a checkpoint stuck in a file-system call past every bound
/// is reported as still closing, and (cancelled) changes nothing when it returns.
#[test]
fn close_reports_a_stuck_checkpoint_as_still_closing() {
    let dir = tempfile::tempdir().unwrap();
    let (o, parked, release_tx) = park_first_on_a_temp_file(Op::SyncData);
    let store: Store<Ledger> = Store::open(dir.path(), o.keep_snapshots(1)).unwrap();
    let events: Vec<Entry> = (0..5_000).map(|n| Entry::padded(1, n, 64)).collect();
    for e in &events {
        store.append(e).unwrap();
    }
    let before = segments(dir.path());
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
        .unwrap();
    wait_until("the snapshot sync to park", Duration::from_secs(60), || {
        parked.load(Ordering::SeqCst)
    });
    let (report, logs) = logs::capture(|| {
        store
            .close_with(CloseOptions::default().thread_timeout(Duration::from_millis(50)))
            .unwrap()
    });
    assert!(report.still_closing, "{report:?}");
    assert_eq!(report.threads_abandoned, 1);
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("still closing")),
        "{logs}"
    );
    assert!(matches!(
        Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never)),
        Err(Error::Locked { .. })
    ));
    release_tx.send(()).unwrap();
    let reopened = loop {
        match Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never)) {
            Ok(s) => break s,
            Err(Error::Locked { .. }) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    };
    // Cancelled: nothing installed, nothing unlinked.
    assert!(snapshots(dir.path()).is_empty());
    assert_eq!(segments(dir.path()), before);
    assert_eq!(*reopened.current().state(), replayed(&events));
}

/// Serializing panics when the state holds `u64::MAX`.
#[derive(Debug, Clone, Default, Deserialize)]
struct Boom(Vec<u64>);

impl Serialize for Boom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(
            !self.0.contains(&u64::MAX),
            "boom: this state cannot be saved"
        );
        self.0.serialize(s)
    }
}

impl snapwal::State for Boom {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        self.0.push(*e);
    }
}

/// Bug 15: a panicking checkpoint killed the shared scheduler's worker with its job
/// in flight: no other store checkpointed again, and that store's close hung.
#[test]
fn bug_panicking_checkpoint_kills_shared_worker() {
    logs::install();
    let root = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::new(1).unwrap();
    let boom: Store<Boom> = Store::open(root.path().join("boom"), opts(SyncPolicy::Never)).unwrap();
    boom.append(&u64::MAX).unwrap();
    let fine = open(&root.path().join("fine"), SyncPolicy::Never);
    let every = CheckpointerConfig::every(Duration::from_millis(5));
    boom.start_checkpointer_on(&scheduler, every).unwrap();
    fine.start_checkpointer_on(&scheduler, every).unwrap();
    wait_until("two failed checkpoints", Duration::from_secs(30), || {
        boom.checkpoint_stats().failures >= 2
    });
    // The one worker still serves the other store.
    let before = fine.checkpoint_stats().total;
    fine.append(&Entry::new(1, 1)).unwrap();
    wait_until(
        "the other store to checkpoint",
        Duration::from_secs(30),
        || fine.checkpoint_stats().total > before,
    );
    // A manual checkpoint of the panicking store is an error, not a panic.
    let manual = loop {
        match boom.checkpoint() {
            Ok(r) if r.outcome == CheckpointOutcome::Busy => std::thread::yield_now(),
            other => break other,
        }
    };
    assert!(
        matches!(manual, Err(Error::CheckpointPanicked { .. })),
        "{manual:?}"
    );
    let key = root.path().join("boom").display().to_string();
    assert!(
        logs::all().lines().any(|l| l.contains("ERROR")
            && l.contains(&key)
            && l.contains("checkpoint failed")
            && l.contains("panicked")),
        "no ERROR for the panic"
    );
    let started = Instant::now();
    let report = boom
        .close_with(CloseOptions::default().thread_timeout(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(report.threads_abandoned, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "close was not prompt"
    );
    fine.close().unwrap();
    assert_eq!(scheduler.shutdown(Duration::from_secs(10)), 0);

    // A panic in the file system is the same: that checkpoint's failure, and the
    // next one runs (the running flag was released).
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let o = {
        let armed = Arc::clone(&armed);
        hooked_opts(move |op, path| {
            assert!(
                !(op == Op::Write && is_temp(path) && armed.load(Ordering::SeqCst)),
                "boom: the disk exploded"
            );
            Ok(())
        })
    };
    let store: Store<Ledger> = Store::open(dir.path(), o).unwrap();
    store.append(&Entry::new(1, 1)).unwrap();
    assert!(matches!(
        store.checkpoint(),
        Err(Error::CheckpointPanicked { .. })
    ));
    assert_eq!(store.checkpoint_stats().failures, 1);
    armed.store(false, Ordering::SeqCst);
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.close().unwrap();
}

/// Bug 16: durations overflowed into panics, and a tiny interval disabled the
/// checkpointer.
#[test]
fn bug_duration_overflow_panics() {
    let root = tempfile::tempdir().unwrap();
    let huge = CheckpointerConfig::from_interval_secs(1e300);
    assert!(huge.is_enabled());
    assert!(!CheckpointerConfig::from_interval_secs(f64::INFINITY).is_enabled());
    let tiny = CheckpointerConfig::from_interval_secs(1e-12);
    assert_eq!(tiny.interval, Some(Duration::from_millis(1)));
    assert_eq!(
        CheckpointerConfig::every(Duration::from_nanos(1)).interval,
        Some(Duration::from_millis(1))
    );

    let a = open(&root.path().join("a"), SyncPolicy::Never);
    assert!(a.start_checkpointer(huge).unwrap());
    a.append(&Entry::new(1, 1)).unwrap();

    let scheduler = Scheduler::new(1).unwrap();
    let b = open(&root.path().join("b"), SyncPolicy::Never);
    assert!(b
        .start_checkpointer_on(
            &scheduler,
            CheckpointerConfig::every(Duration::from_secs(10_000_000_000_000_000_000))
        )
        .unwrap());
    let c = open(&root.path().join("c"), SyncPolicy::Never);
    assert!(c.start_checkpointer_on(&scheduler, tiny).unwrap());
    c.append(&Entry::new(1, 1)).unwrap();
    wait_until(
        "the 1 ms checkpointer to run",
        Duration::from_secs(30),
        || c.checkpoint_stats().total >= 1,
    );

    let forever = CloseOptions::default()
        .thread_timeout(Duration::MAX)
        .final_checkpoint(Some(Duration::MAX));
    let report = a.close_with(forever).unwrap();
    assert_eq!(
        report.final_checkpoint.map(|r| r.outcome),
        Some(CheckpointOutcome::Written)
    );
    b.close_with(forever).unwrap();
    c.close_with(CloseOptions::default().thread_timeout(Duration::MAX))
        .unwrap();
    assert_eq!(scheduler.shutdown(Duration::MAX), 0);
}

/// Bug 17: registering on a shut-down scheduler returned `Ok(true)` and nothing
/// ran; the store then refused a live one; and two concurrent starts could both
/// succeed, orphaning a job.
#[test]
fn bug_register_on_dead_scheduler() {
    let root = tempfile::tempdir().unwrap();
    let every = CheckpointerConfig::every(Duration::from_millis(2));
    let store = open(&root.path().join("a"), SyncPolicy::Never);

    let dead = Scheduler::new(1).unwrap();
    assert_eq!(dead.shutdown(Duration::from_secs(5)), 0);
    assert!(dead.is_shut_down());
    assert!(matches!(
        store.start_checkpointer_on(&dead, every),
        Err(Error::SchedulerStopped)
    ));

    // Registered on a scheduler that then dies: the store may move to a live one.
    let dying = Scheduler::new(1).unwrap();
    assert!(store.start_checkpointer_on(&dying, every).unwrap());
    drop(dying);
    let live = Scheduler::new(1).unwrap();
    assert!(store.start_checkpointer_on(&live, every).unwrap());
    store.append(&Entry::new(1, 1)).unwrap();
    wait_until(
        "a checkpoint on the live scheduler",
        Duration::from_secs(30),
        || store.checkpoint_stats().total >= 1,
    );
    // A live one still counts.
    assert!(matches!(
        store.start_checkpointer(every),
        Err(Error::InvalidOptions(_))
    ));
    assert_eq!(store.close().unwrap().threads_abandoned, 0);
    assert_eq!(live.shutdown(Duration::from_secs(5)), 0);

    // Concurrent starts: exactly one wins, on a private or a shared scheduler.
    let shared = Scheduler::new(1).unwrap();
    for round in 0..20 {
        let store = open(
            &root.path().join(format!("race-{round}")),
            SyncPolicy::Never,
        );
        let barrier = Barrier::new(8);
        let won = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (store, barrier, shared) = (&store, &barrier, &shared);
                    s.spawn(move || {
                        barrier.wait();
                        let r = if t % 2 == 0 {
                            store.start_checkpointer(every)
                        } else {
                            store.start_checkpointer_on(shared, every)
                        };
                        match r {
                            Ok(started) => started,
                            Err(Error::InvalidOptions(_)) => false,
                            Err(e) => panic!("{e}"),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&w| w)
                .count()
        });
        assert_eq!(won, 1, "round {round}: {won} checkpointers started");
        assert_eq!(store.close().unwrap().threads_abandoned, 0);
    }
    assert_eq!(shared.shutdown(Duration::from_secs(5)), 0);
}

/// Bug 18: with a periodic checkpoint abandoned at `thread_timeout`, the final
/// checkpoint answered `Busy` at once and was reported as if it had run.
#[test]
fn bug_final_checkpoint_busy_reported_as_ran() {
    // One buffered write of the periodic checkpoint is slow; `close` abandons it at
    // its 20 ms thread timeout. The final checkpoint must wait for it to end
    // (cancelled at its next write) and then run.
    let dir = tempfile::tempdir().unwrap();
    let slow_once = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    let o = {
        let (slow_once, entered) = (Arc::clone(&slow_once), Arc::clone(&entered));
        hooked_opts(move |op, path| {
            if op == Op::Write && is_temp(path) && slow_once.swap(false, Ordering::SeqCst) {
                entered.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400));
            }
            Ok(())
        })
    };
    let store: Store<Blobs> = Store::open(dir.path(), o).unwrap();
    let batch = blobs(50);
    store.append_batch(&batch).unwrap();
    slow_once.store(true, Ordering::SeqCst);
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
        .unwrap();
    wait_until("the slow write", Duration::from_secs(60), || {
        entered.load(Ordering::SeqCst)
    });
    let report = store
        .close_with(
            CloseOptions::default()
                .thread_timeout(Duration::from_millis(20))
                .final_checkpoint(Some(Duration::from_secs(30))),
        )
        .unwrap();
    assert_eq!(report.threads_abandoned, 1);
    assert_eq!(report.final_checkpoint_missed, None);
    let fin = report.final_checkpoint.expect("the final checkpoint ran");
    assert_eq!(fin.outcome, CheckpointOutcome::Written);
    assert_eq!(fin.seq, batch.len() as u64);
    assert!(!report.still_closing);

    // Stuck past the final checkpoint's deadline: reported as not run, with a WARN.
    let dir = tempfile::tempdir().unwrap();
    let (o, parked, release_tx) = park_first_on_a_temp_file(Op::Write);
    let store: Store<Blobs> = Store::open(dir.path(), o).unwrap();
    store.append_batch(&batch).unwrap();
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
        .unwrap();
    wait_until("the parked write", Duration::from_secs(60), || {
        parked.load(Ordering::SeqCst)
    });
    let (report, logs) = logs::capture(|| {
        store
            .close_with(
                CloseOptions::default()
                    .thread_timeout(Duration::from_millis(20))
                    .final_checkpoint(Some(Duration::from_millis(100))),
            )
            .unwrap()
    });
    release_tx.send(()).unwrap();
    assert!(report.final_checkpoint.is_none(), "{report:?}");
    assert_eq!(
        report.final_checkpoint_missed,
        Some(FinalCheckpointMissed::Busy)
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("final checkpoint did not run")),
        "{logs}"
    );
}
