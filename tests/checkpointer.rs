//! The periodic checkpointer: structured logs, statistics, slow warning, isolated
//! cleanup, bounded close, positions, and the shared scheduler.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{CheckpointOutcome, CheckpointerConfig, CloseOptions, Position, Store, SyncPolicy};

/// Log lines that mention `dir`, from every thread.
fn lines_for(dir: &Path) -> Vec<String> {
    let key = dir.display().to_string();
    logs::all()
        .lines()
        .filter(|l| l.contains(&key))
        .map(str::to_owned)
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A real file system with injected faults: slow snapshot syncs, failing unlinks.
#[derive(Debug, Default)]
struct FaultFs {
    /// Sleep this long in `sync_data` of snapshot temp files.
    slow_snapshot_sync: Mutex<Duration>,
    /// Sleep this long in each write to a snapshot temp file.
    slow_snapshot_write: Mutex<Duration>,
    /// Set when a slow sync or write has started.
    slow_entered: AtomicBool,
    /// Fail `remove_file` of WAL segments.
    fail_segment_unlink: AtomicBool,
    /// Fail writes to snapshot temp files with ENOSPC.
    full_snapshot_disk: AtomicBool,
    unlink_failures: AtomicUsize,
}

impl FaultFs {
    /// The hook: delays snapshot temp-file writes and syncs, fails segment unlinks.
    fn before(&self, op: Op, path: &Path) -> io::Result<()> {
        let snapshot_temp = path.to_string_lossy().ends_with(".tmp");
        if op == Op::Write && snapshot_temp && self.full_snapshot_disk.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        let delay = match op {
            Op::Write if snapshot_temp => *self.slow_snapshot_write.lock().unwrap(),
            Op::SyncData if snapshot_temp => *self.slow_snapshot_sync.lock().unwrap(),
            Op::Remove
                if self.fail_segment_unlink.load(Ordering::SeqCst)
                    && path.extension().is_some_and(|e| e == "wal") =>
            {
                self.unlink_failures.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(EIO));
            }
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            self.slow_entered.store(true, Ordering::SeqCst);
            std::thread::sleep(delay);
        }
        Ok(())
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

fn faulty_opts(f: &Arc<FaultFs>) -> snapwal::Options {
    opts(SyncPolicy::Never).keep_snapshots(1).fs({
        let f = Arc::clone(f);
        Arc::new(HookedFs::new(move |op, path| f.before(op, path)))
    })
}

#[test]
fn periodic_checkpointer_runs_and_logs_every_field() {
    logs::install();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert!(store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(20)))
        .unwrap());
    let mut n = 0;
    wait_until("two periodic checkpoints", || {
        store.append(&Entry::new(1, n)).unwrap();
        n += 1;
        store.checkpoint_stats().total >= 2
    });
    store.close().unwrap();

    let lines = lines_for(dir.path());
    let periodic: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" INFO ") && l.contains("mode=\"periodic\""))
        // A periodic checkpoint that `close` cancels logs its own, shorter event.
        .filter(|l| !l.contains("checkpoint cancelled"))
        .collect();
    assert!(periodic.len() >= 2, "periodic checkpoint lines: {lines:#?}");
    for field in [
        "busy=false",
        "seq=",
        "log_records=",
        "checkpointed_records=",
        "snapshot_bytes=",
        "segments_removed=",
        "snapshots_pruned=",
        "elapsed_ms=",
    ] {
        assert!(
            periodic.iter().all(|l| l.contains(field)),
            "{field} missing in {periodic:#?}"
        );
    }
    let agg = lines
        .iter()
        .find(|l| l.contains("checkpoint statistics at close"))
        .expect("aggregate line at close");
    for field in ["p50_ms=", "p95_ms=", "max_ms=", "total="] {
        assert!(agg.contains(field), "{field} missing in {agg}");
    }
    assert!(!agg.contains(" n=0"), "aggregate has no checkpoints: {agg}");
}

/// 552 checkpoints: 512 fast, then 40 slowed to at least 100 ms. The window holds the
/// last 512, so 40 of its 512 (7.8%) are slow: the 95th percentile (index 485 of
/// 512, sorted) and the maximum are slow, the median is fast. A percentile that
/// returned the minimum, or a ring that stopped at its first 512, would show no slow
/// one. The exact arithmetic is pinned by a unit test next to the ring.
#[test]
fn stats_window_reports_percentiles() {
    let f = Arc::new(FaultFs::default());
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Ledger> = Store::open(dir.path(), faulty_opts(&f)).unwrap();
    let slow = Duration::from_millis(100);
    for i in 0..552u64 {
        if i == 512 {
            *f.slow_snapshot_sync.lock().unwrap() = slow;
        }
        store.append(&Entry::new(1, i)).unwrap();
        assert_eq!(
            store.checkpoint().unwrap().outcome,
            CheckpointOutcome::Written
        );
    }
    let s = store.checkpoint_stats();
    assert_eq!(s.n, 512);
    assert_eq!(s.total, 552);
    assert!(s.max >= slow, "{s:?}");
    assert!(
        s.p95 >= slow,
        "the 95th percentile missed the slow tail: {s:?}"
    );
    assert!(s.p50 < slow, "the median is a fast checkpoint: {s:?}");
}

#[test]
fn eight_writers_with_10ms_checkpoints_reopen_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), SyncPolicy::Never));
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(10)))
        .unwrap();
    let per_thread = 10_000u64;
    let handles: Vec<_> = (0..8u32)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|n| {
                        let e = Entry::new(t, n);
                        (store.append(&e).unwrap(), e)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(u64, Entry)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by_key(|(s, _)| *s);
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=8 * per_thread).collect::<Vec<_>>());
    // In a release build the appends can all end before the first 10 ms tick: wait
    // for one periodic checkpoint (it has work to do: nothing is checkpointed yet).
    wait_until("a periodic checkpoint", || {
        store.checkpoint_stats().total >= 1
    });
    let store = Arc::into_inner(store).unwrap();
    store.close().unwrap();

    let store = open(dir.path(), SyncPolicy::Never);
    let expected = replayed(all.iter().map(|(_, e)| e));
    assert_eq!(store.current().seq(), 8 * per_thread);
    assert_eq!(*store.current().state(), expected);
}

#[test]
fn slow_checkpoint_warns_with_elapsed_ms() {
    let f = Arc::new(FaultFs::default());
    *f.slow_snapshot_sync.lock().unwrap() = Duration::from_millis(60);
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Ledger> = Store::open(dir.path(), faulty_opts(&f)).unwrap();
    store
        .start_checkpointer(
            CheckpointerConfig::every(Duration::from_secs(3600))
                .slow_threshold(Duration::from_millis(20)),
        )
        .unwrap();
    store.append(&Entry::new(1, 1)).unwrap();
    let (rep, logs) = logs::capture(|| store.checkpoint().unwrap());
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    let warn = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("checkpoint slow"))
        .unwrap_or_else(|| panic!("no slow warning in {logs}"));
    assert!(warn.contains("elapsed_ms="), "{warn}");
    assert!(logs
        .lines()
        .any(|l| l.contains("INFO") && l.contains("checkpoint")));
}

#[test]
fn failing_unlink_is_logged_counted_and_never_fails_the_checkpoint() {
    let f = Arc::new(FaultFs::default());
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Ledger> = Store::open(dir.path(), faulty_opts(&f)).unwrap();
    let mut events = Vec::new();
    for n in 0..2_000 {
        let e = Entry::padded(1, n, 64);
        store.append(&e).unwrap();
        events.push(e);
    }
    assert!(segments(dir.path()).len() > 2);
    f.fail_segment_unlink.store(true, Ordering::SeqCst);
    let (rep, logs) = logs::capture(|| store.checkpoint().unwrap());
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert!(!rep.cleanup_failures.is_empty());
    assert_eq!(rep.segments_removed, 0);
    assert!(f.unlink_failures.load(Ordering::SeqCst) > 0);
    let err = logs
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("checkpoint cleanup failed"))
        .unwrap_or_else(|| panic!("no ERROR in {logs}"));
    assert!(
        err.contains("op=\"unlink segment\"") || err.contains("op=unlink segment"),
        "{err}"
    );
    assert!(err.contains(".wal"), "{err}");
    assert!(store.checkpoint_stats().cleanup_failures > 0);
    // Appends continue, and a later checkpoint cleans up once unlink works again.
    let e = Entry::new(2, 0);
    store.append(&e).unwrap();
    events.push(e);
    f.fail_segment_unlink.store(false, Ordering::SeqCst);
    let rep = store.checkpoint().unwrap();
    assert!(rep.segments_removed > 0 && rep.cleanup_failures.is_empty());
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(*store.current().state(), replayed(&events));
}

#[test]
fn byte_threshold_triggers_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    let threshold = 256 * 1024;
    store
        .start_checkpointer(CheckpointerConfig::default().wal_bytes(Some(threshold)))
        .unwrap();
    // About 60 KiB, a quarter of the threshold: 30 polls of 10 ms see it, and none
    // may checkpoint.
    let mut n = 0;
    while store.current().seq() * 130 < threshold / 4 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
        n += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.checkpoint_stats().total,
        0,
        "a checkpoint ran below the byte threshold"
    );
    assert!(snapshots(dir.path()).is_empty());
    // Past the threshold: one runs.
    for _ in 0..2_500 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
        n += 1;
    }
    wait_until("a byte-triggered checkpoint", || {
        store.checkpoint_stats().total >= 1
    });
    store.close().unwrap();
    assert!(!snapshots(dir.path()).is_empty());
}

#[test]
fn positions_survive_a_crash_as_of_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    let a = store.position("source-a");
    let b = store.position("source-b");
    let saved_a = Position {
        offset: 4096,
        inode: 77,
        timestamp: 1_700_000_000,
    };
    let saved_b = Position {
        offset: 12,
        inode: 78,
        timestamp: 1_700_000_100,
    };
    a.set(saved_a);
    b.set(saved_b);
    store.append(&Entry::new(1, 1)).unwrap();
    store.checkpoint().unwrap();
    // Moves after the checkpoint are lost at a crash: at-least-once.
    a.set(Position {
        offset: 9999,
        ..saved_a
    });
    store.append(&Entry::new(1, 2)).unwrap();
    drop(store);

    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.position("source-a").get(), saved_a);
    assert_eq!(store.position("source-b").get(), saved_b);
    assert_eq!(store.position("source-new").get(), Position::default());
    assert_eq!(store.current().seq(), 2);
}

#[test]
fn close_with_a_slow_checkpoint_in_flight_returns_within_its_bound() {
    // The snapshot's fdatasync parks until released (at most a minute): without a
    // bound, close would wait that long.
    let (release, parked_rx) = std::sync::mpsc::channel::<()>();
    let parked_rx = Mutex::new(parked_rx);
    let entered = Arc::new(AtomicBool::new(false));
    let fs = {
        let entered = Arc::clone(&entered);
        HookedFs::new(move |op, path| {
            if op == Op::SyncData
                && path.to_string_lossy().ends_with(".tmp")
                && !entered.swap(true, Ordering::SeqCst)
            {
                let _ = parked_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(60));
            }
            Ok(())
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Ledger> =
        Store::open(dir.path(), opts(SyncPolicy::Never).fs(Arc::new(fs))).unwrap();
    store.append(&Entry::new(1, 1)).unwrap();
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
        .unwrap();
    wait_until("the slow sync to start", || entered.load(Ordering::SeqCst));
    let bound = Duration::from_millis(100);
    let started = Instant::now();
    let report = store
        .close_with(CloseOptions::default().thread_timeout(bound))
        .unwrap();
    let took = started.elapsed();
    // Generous (10x the bound, for a noisy machine), and far below the parked sync.
    assert!(
        took < bound * 10,
        "close took {took:?} for a {bound:?} bound"
    );
    assert_eq!(report.threads_abandoned, 1);
    assert!(report.still_closing);
    assert_eq!(report.durable_seq, 1);
    release.send(()).unwrap();
    // The store reopens once the abandoned checkpoint has finished and let go.
    wait_until("the store to be released", || {
        Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never)).is_ok()
    });
}

#[test]
fn close_cancels_a_checkpoint_between_writes() {
    // Each buffered snapshot write takes 30 ms and the snapshot needs about 40:
    // close must stop it after a few, not wait for all of them.
    let writes = Arc::new(AtomicUsize::new(0));
    let fs = {
        let writes = Arc::clone(&writes);
        HookedFs::new(move |op, path| {
            if op == Op::Write && path.to_string_lossy().ends_with(".tmp") {
                writes.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
            }
            Ok(())
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Blobs> =
        Store::open(dir.path(), opts(SyncPolicy::Never).fs(Arc::new(fs))).unwrap();
    let batch: Vec<Vec<u8>> = (0..400u32).map(|n| vec![n as u8; 100 * 1024]).collect();
    store.append_batch(&batch).unwrap();
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
        .unwrap();
    wait_until("the snapshot writes to start", || {
        writes.load(Ordering::SeqCst) >= 1
    });
    let report = store
        .close_with(CloseOptions::default().thread_timeout(Duration::from_secs(60)))
        .unwrap();
    let done = writes.load(Ordering::SeqCst);
    assert_eq!(report.threads_abandoned, 0);
    assert!(
        done <= 10,
        "close waited for {done} of about 40 buffered writes"
    );
    // The cancelled checkpoint installed nothing and left no temp file behind.
    assert!(snapshots(dir.path()).is_empty());
    let temps = std::fs::read_dir(dir.path().join("snap"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(temps, 0);
    let store: Store<Blobs> = Store::open(dir.path(), opts(SyncPolicy::Never)).unwrap();
    assert_eq!(store.current().state().0, batch);
}

/// A state whose snapshot spans several write buffers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Blobs(Vec<Vec<u8>>);

impl snapwal::State for Blobs {
    type Event = Vec<u8>;
    fn apply(&mut self, e: &Vec<u8>) {
        self.0.push(e.clone());
    }
}

/// Regression: cancelling a snapshot write returned `ErrorKind::Interrupted`, which
/// `write_all` retries forever, so `close` spun until its thread timeout and left the
/// checkpoint running.
#[test]
fn bug_cancelled_snapshot_write_retried_forever() {
    let f = Arc::new(FaultFs::default());
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Blobs> = Store::open(dir.path(), faulty_opts(&f)).unwrap();
    let batch: Vec<Vec<u8>> = (0..5_000u32).map(|n| vec![n as u8; 1_000]).collect();
    store.append_batch(&batch).unwrap();
    *f.slow_snapshot_write.lock().unwrap() = Duration::from_millis(50);
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
        .unwrap();
    wait_until("a snapshot write to start", || {
        f.slow_entered.load(Ordering::SeqCst)
    });
    let report = store
        .close_with(CloseOptions::default().thread_timeout(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(report.threads_abandoned, 0);
    assert!(
        snapshots(dir.path()).is_empty(),
        "the cancelled snapshot was installed"
    );
    let store: Store<Blobs> = Store::open(dir.path(), opts(SyncPolicy::Never)).unwrap();
    assert_eq!(store.current().state().0, batch);
}

/// Regression: an I/O error while the serializer streamed a snapshot body reached the
/// caller as an encoding error (postcard reports a failed writer as "buffer full"),
/// losing the OS error and the file. It is now `Error::Io` naming the temp file.
#[test]
fn bug_snapshot_write_error_reported_as_encode_error() {
    let f = Arc::new(FaultFs::default());
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Blobs> = Store::open(dir.path(), faulty_opts(&f)).unwrap();
    let batch: Vec<Vec<u8>> = (0..3_000u32).map(|n| vec![n as u8; 1_000]).collect();
    store.append_batch(&batch).unwrap();
    f.full_snapshot_disk.store(true, Ordering::SeqCst);
    match store.checkpoint() {
        Err(snapwal::Error::Io { op, path, source }) => {
            assert_eq!(op, "write snapshot");
            assert_eq!(source.raw_os_error(), Some(ENOSPC));
            assert!(
                path.to_string_lossy().ends_with(".tmp"),
                "{}",
                path.display()
            );
        }
        other => panic!("expected an I/O error naming the temp file, got {other:?}"),
    }
    assert!(snapshots(dir.path()).is_empty());
    // The store keeps working, and a later checkpoint succeeds.
    store.append(&vec![1; 10]).unwrap();
    f.full_snapshot_disk.store(false, Ordering::SeqCst);
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
}
