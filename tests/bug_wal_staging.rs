//! Regression tests for issue 9, bug 6 (a busy writer starves every sync and staged
//! memory grows without bound) and for a bounded sync at close, on the `Wal` alone.
mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::hooked::{HookedFs, Op};
use snapwal::wal::{Wal, WalOptions};

const BOUND: u64 = 16 * 1024;
const PAYLOAD: usize = 100;
const APPENDERS: u64 = 4;

fn wal(dir: &Path, hook: impl Fn(Op, &Path) -> io::Result<()> + Send + Sync + 'static) -> Arc<Wal> {
    let wal_dir = dir.join("wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    let opts = WalOptions {
        segment_bytes: 4096,
        preallocate: false,
    };
    Arc::new(
        Wal::new(Arc::new(HookedFs::new(hook)), wal_dir, 7, 1, opts).with_max_staged_bytes(BOUND),
    )
}

/// Stages and writes one record, as the store does under `Never`.
fn append(wal: &Wal, payload: &[u8]) -> u64 {
    let seq = wal.stage([(payload, crc32c::crc32c(payload))]);
    wal.write_through(seq).unwrap();
    seq
}

/// On a slow disk (slow `fdatasync`, slow create) with tiny segments and several
/// appenders hammering under `Never`, every sync ends in bounded time while the
/// appenders keep going, and the bytes staged but not written stay within the bound
/// (plus one record per appender).
#[test]
fn bug_busy_writer_starves_every_sync_and_staging_grows_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path(), |op, _| {
        if matches!(op, Op::SyncData | Op::Create) {
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let max_unwritten = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|_| {
            let (wal, stop, max_unwritten) = (
                Arc::clone(&wal),
                Arc::clone(&stop),
                Arc::clone(&max_unwritten),
            );
            thread::spawn(move || {
                let payload = [7u8; PAYLOAD];
                // The cap only ends the test on a writer that starves its syncs.
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(15) {
                    let seq = wal.stage([(&payload[..], crc32c::crc32c(&payload))]);
                    max_unwritten.fetch_max(wal.staged_unwritten_bytes(), Ordering::SeqCst);
                    wal.write_through(seq).unwrap();
                }
            })
        })
        .collect();
    // Stops the appenders however the test ends.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop = Stop(Arc::clone(&stop));
    thread::sleep(Duration::from_millis(200));
    // The syncs run on their own thread, so a starved one fails the test at its bound.
    let (tx, rx) = mpsc::channel();
    {
        let wal = Arc::clone(&wal);
        thread::spawn(move || {
            for _ in 0..3 {
                if tx.send(wal.sync_all().unwrap()).is_err() {
                    return;
                }
            }
        });
    }
    for _ in 0..3 {
        let durable = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("a sync did not end within 5 s while appenders kept appending");
        assert!(durable > 0);
        assert!(
            !appenders.iter().any(|a| a.is_finished()),
            "the sync only returned once the appenders stopped"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for a in appenders {
        a.join().unwrap();
    }
    let frame = (PAYLOAD + 16) as u64 + 32;
    let max = max_unwritten.load(Ordering::SeqCst);
    assert!(
        max <= BOUND + APPENDERS * frame,
        "{max} bytes were staged and not written (bound {BOUND})"
    );
    let last = wal.sync_all().unwrap();
    assert_eq!(wal.durable_seq(), last);
    assert_eq!(wal.staged_unwritten_bytes(), 0);
}

/// Parks the next `fdatasync` of a segment (or the next create) once armed.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    on_create: AtomicBool,
    entered: AtomicBool,
    released: AtomicBool,
}

impl Gate {
    fn before(&self, op: Op) -> io::Result<()> {
        let want = if self.on_create.load(Ordering::SeqCst) {
            Op::Create
        } else {
            Op::SyncData
        };
        if op == want && self.armed.swap(false, Ordering::SeqCst) {
            self.entered.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.released.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    fn wait_entered(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.entered.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the gate was never reached");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A sync behind a group commit (or a rotation) stuck on the disk gives up at its
/// deadline instead of waiting for ever, and succeeds once the disk answers.
#[test]
fn bug_close_sync_waits_without_bound_behind_a_stuck_leader() {
    for on_create in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        let wal = {
            let gate = Arc::clone(&gate);
            wal(dir.path(), move |op, _| gate.before(op))
        };
        let payload = [1u8; PAYLOAD];
        for _ in 0..5 {
            append(&wal, &payload);
        }
        gate.on_create.store(on_create, Ordering::SeqCst);
        gate.armed.store(true, Ordering::SeqCst);
        let stuck = {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                if on_create {
                    // Rotates: stuck creating the next segment.
                    let big = [2u8; 4000];
                    append(&wal, &big);
                } else {
                    wal.sync_all().unwrap();
                }
            })
        };
        gate.wait_entered();
        let t = Instant::now();
        let got = wal.sync_all_timeout(Duration::from_millis(200)).unwrap();
        assert_eq!(got, None, "on_create={on_create}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        gate.released.store(true, Ordering::SeqCst);
        stuck.join().unwrap();
        let last = wal.sync_all_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(last, Some(if on_create { 6 } else { 5 }));
        assert_eq!(wal.durable_seq(), last.unwrap());
        // A timeout too long to represent means no deadline.
        assert_eq!(wal.sync_all_timeout(Duration::MAX).unwrap(), last);
    }
}
