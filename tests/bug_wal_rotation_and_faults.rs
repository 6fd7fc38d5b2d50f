//! Regression tests for the WAL writer where a rotation meets a group commit, and where
//! the file system fails or panics: issue 9, bugs 1, 3 and 7, and two concurrent
//! `fdatasync`s of one segment.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{Error, Store, SyncPolicy};

const SEG1: &str = "00000000000000000001.wal";

/// Records every file-system call the hook sees, parks the next `fdatasync` of one
/// segment until released, and counts WAL `fdatasync`s in flight.
#[derive(Default)]
struct Probe {
    events: Mutex<Vec<String>>,
    park: Mutex<Option<String>>,
    parked: AtomicBool,
    released: AtomicBool,
    syncs_in_flight: AtomicUsize,
    max_syncs_in_flight: AtomicUsize,
    /// Fail every WAL `fdatasync` after the parked one (with EIO) once set.
    fail_later_syncs: AtomicBool,
}

impl Probe {
    fn record(&self, what: String) {
        self.events.lock().unwrap().push(what);
    }

    fn before(&self, op: Op, path: &Path) -> io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.record(format!("{op:?} {name}"));
        if op != Op::SyncData || !name.ends_with(".wal") {
            return Ok(());
        }
        let n = self.syncs_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_syncs_in_flight.fetch_max(n, Ordering::SeqCst);
        let park = {
            let mut p = self.park.lock().unwrap();
            if p.as_deref() == Some(name.as_str()) {
                p.take().is_some()
            } else {
                false
            }
        };
        let mut out = Ok(());
        if park {
            self.parked.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.released.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
        } else if self.fail_later_syncs.load(Ordering::SeqCst) {
            out = Err(io::Error::from_raw_os_error(5));
        }
        self.syncs_in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn wait_parked(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.parked.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the group commit never synced segment 1"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

fn probed_store(dir: &Path, probe: &Arc<Probe>) -> Arc<Store<Ledger>> {
    let options = opts(SyncPolicy::Never).segment_bytes(4096).fs({
        let probe = Arc::clone(probe);
        Arc::new(HookedFs::new(move |op, path| probe.before(op, path)))
    });
    Arc::new(Store::<Ledger>::open(dir, options).unwrap())
}

/// Waits up to `d` for `t` to finish (it must not, with the fix).
fn wait_a_while(t: &thread::JoinHandle<()>, d: Duration) {
    let deadline = Instant::now() + d;
    while !t.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
}

/// A group commit takes segment 1 out of the dirty list and parks in its
/// `fdatasync`; an appender under `Never` rotates meanwhile. The appender must not
/// write segment 2 before segment 1's data and the directory entry are durable, or a
/// power loss at that moment leaves a torn segment 1 followed by segment 2.
#[test]
fn bug_rotation_during_group_commit_leaves_damaged_middle_segment() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let store = probed_store(dir.path(), &probe);
    let mut events = Vec::new();
    for n in 0..20 {
        let e = Entry::padded(1, n, 100);
        store.append(&e).unwrap();
        events.push(e);
    }
    *probe.park.lock().unwrap() = Some(SEG1.to_string());
    let leader = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            store.sync().unwrap();
        })
    };
    probe.wait_parked();
    // One record too big for what is left of segment 1: this append rotates at once.
    let big: Vec<Entry> = (20..25).map(|n| Entry::padded(2, n, 2000)).collect();
    events.extend(big.iter().cloned());
    let rotator = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for e in &big {
                store.append(e).unwrap();
            }
        })
    };
    wait_a_while(&rotator, Duration::from_secs(2));
    probe.record("released".into());
    probe.released.store(true, Ordering::SeqCst);
    leader.join().unwrap();
    rotator.join().unwrap();

    let log = probe.events();
    let released = log.iter().position(|e| e == "released").unwrap();
    let first_seg2_write = log
        .iter()
        .position(|e| e.starts_with("Write ") && !e.ends_with(SEG1))
        .expect("segment 2 was written");
    assert!(
        first_seg2_write > released,
        "segment 2 was written while segment 1's fdatasync was in flight: {log:?}"
    );
    assert!(
        log[released..first_seg2_write]
            .iter()
            .any(|e| e.starts_with("SyncDir")),
        "segment 2 was written before wal/ was synced after segment 1's creation: {log:?}"
    );

    store.sync().unwrap();
    drop(store);
    let reopened = open(dir.path(), SyncPolicy::Never);
    assert_eq!(reopened.current().state(), &replayed(&events));
}

/// Two `fdatasync`s of one segment (a group commit's and a rotating appender's) must
/// not run at once: on Linux only one of them sees a writeback error, and the other
/// would advance the durable seq over lost data. Here the group commit parks in its
/// sync of segment 1 while an appender dirties segment 1 again and rotates.
#[test]
fn bug_concurrent_fdatasyncs_of_one_segment_can_hide_a_writeback_error() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let store = probed_store(dir.path(), &probe);
    for n in 0..10 {
        store.append(&Entry::padded(1, n, 100)).unwrap();
    }
    *probe.park.lock().unwrap() = Some(SEG1.to_string());
    probe.fail_later_syncs.store(true, Ordering::SeqCst);
    let leader = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.sync().map(drop))
    };
    probe.wait_parked();
    let appender = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            // Dirties segment 1 again, then rotates: the rotation syncs segment 1.
            for n in 10..15 {
                store.append(&Entry::padded(2, n, 100)).unwrap();
            }
            let _ = store.append(&Entry::padded(2, 15, 3000));
        })
    };
    wait_a_while(&appender, Duration::from_secs(2));
    probe.released.store(true, Ordering::SeqCst);
    // The parked sync itself succeeded: it covered what was written before it began.
    leader.join().unwrap().unwrap();
    appender.join().unwrap();
    assert_eq!(
        probe.max_syncs_in_flight.load(Ordering::SeqCst),
        1,
        "two WAL fdatasyncs ran at once: {:?}",
        probe.events()
    );
    // The rotation's sync failed: nothing after it may be acknowledged.
    let err = store.sync().unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
}

/// Fails (or panics in) chosen operations once armed.
#[derive(Default)]
struct Trap {
    panic_on: Mutex<Option<Op>>,
    fail_on: Mutex<Option<(Op, i32)>>,
}

impl Trap {
    fn before(&self, op: Op, path: &Path) -> io::Result<()> {
        let wal = path.extension().is_some_and(|e| e == "wal");
        if wal {
            let mut p = self.panic_on.lock().unwrap();
            if *p == Some(op) {
                *p = None;
                drop(p);
                panic!("planted panic in {op:?} of {}", path.display());
            }
        }
        match *self.fail_on.lock().unwrap() {
            Some((o, errno)) if o == op && wal => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

fn trapped_store(dir: &Path, trap: &Arc<Trap>, preallocate: bool) -> Arc<Store<Ledger>> {
    let options = opts(SyncPolicy::Always)
        .segment_bytes(4096)
        .preallocate(preallocate)
        .fs({
            let trap = Arc::clone(trap);
            Arc::new(HookedFs::new(move |op, path| trap.before(op, path)))
        });
    Arc::new(Store::<Ledger>::open(dir, options).unwrap())
}

/// A group-commit leader panics inside `fdatasync`. The files it took out of the
/// dirty list were never synced, so the next sync must not call them durable: the log
/// is failed (read-only) and the durable seq did not move.
#[test]
fn bug_panic_in_group_commit_sync_acknowledges_what_is_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let trap = Arc::new(Trap::default());
    let store = trapped_store(dir.path(), &trap, false);
    for n in 0..5 {
        store.append(&Entry::new(1, n)).unwrap();
    }
    let durable = store.durable_seq();
    *trap.panic_on.lock().unwrap() = Some(Op::SyncData);
    let panicked = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.append(&Entry::new(1, 5)))
    }
    .join();
    assert!(panicked.is_err(), "the planted panic did not happen");
    let next = store.append(&Entry::new(1, 6));
    assert!(
        matches!(next, Err(Error::ReadOnly { .. })),
        "an append was acknowledged after the leader's sync panicked: {next:?}"
    );
    assert!(matches!(store.sync(), Err(Error::ReadOnly { .. })));
    assert_eq!(store.durable_seq(), durable);
}

/// A panic inside segment creation must not leave the log rotating for ever: the
/// next durable append returns (with an error), it does not hang.
#[test]
fn bug_panic_in_segment_creation_leaves_the_log_rotating_forever() {
    let dir = tempfile::tempdir().unwrap();
    let trap = Arc::new(Trap::default());
    let store = trapped_store(dir.path(), &trap, false);
    store.append(&Entry::padded(1, 0, 100)).unwrap();
    *trap.panic_on.lock().unwrap() = Some(Op::Create);
    let panicked = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for n in 1..100 {
                store.append(&Entry::padded(1, n, 100)).unwrap();
            }
        })
    }
    .join();
    assert!(panicked.is_err(), "the planted panic did not happen");
    let (tx, rx) = mpsc::channel();
    {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            let _ = tx.send(store.append(&Entry::new(2, 0)));
        });
    }
    let next = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a durable append hangs after a panic in segment creation");
    assert!(matches!(next, Err(Error::ReadOnly { .. })), "{next:?}");
}

/// A failed `fdatasync` of a segment names the segment, not `wal/`.
#[test]
fn bug_wal_fdatasync_error_names_the_directory_not_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let trap = Arc::new(Trap::default());
    let store = trapped_store(dir.path(), &trap, false);
    store.append(&Entry::new(1, 0)).unwrap();
    *trap.fail_on.lock().unwrap() = Some((Op::SyncData, 5));
    let err = store.append(&Entry::new(1, 1)).unwrap_err();
    let Error::ReadOnly { cause } = &err else {
        panic!("expected ReadOnly, got {err}");
    };
    match &**cause {
        Error::Io { op, path, .. } => {
            assert_eq!(*op, "fdatasync");
            assert_eq!(path.file_name().unwrap(), SEG1, "{cause}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
}

/// A failed `fallocate` (ENOSPC) of a new, still empty segment loses nothing: it is a
/// warning naming the segment, and appends keep working without the reservation.
#[test]
fn bug_failed_fallocate_of_a_new_segment_makes_the_store_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let trap = Arc::new(Trap::default());
    *trap.fail_on.lock().unwrap() = Some((Op::Allocate, 28));
    let store = trapped_store(dir.path(), &trap, true);
    let events: Vec<Entry> = (0..100).map(|n| Entry::padded(1, n, 100)).collect();
    let ((), logs) = logs::capture(|| {
        for e in &events {
            store.append(e).unwrap();
        }
    });
    assert!(
        logs.contains("WARN") && logs.contains("could not preallocate") && logs.contains(SEG1),
        "no warning naming the segment in: {logs}"
    );
    assert!(segments(dir.path()).len() > 2, "the test never rotated");
    drop(store);
    let reopened = open(dir.path(), SyncPolicy::Always);
    assert_eq!(reopened.current().state(), &replayed(&events));
}
