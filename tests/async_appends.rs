//! Async appends: acknowledged events survive a reopen, a future dropped after it
//! staged its event appends it exactly once, a failed sync reaches every waiting task,
//! `close` completes a waiter it finds, and back-pressure never parks the runtime.
#![cfg(feature = "async")]

mod common;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{CloseOptions, Error, Store, SyncPolicy};

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .unwrap()
}

/// A gate a file-system hook can wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    arrived: AtomicUsize,
}

impl Gate {
    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn many_tasks_on_two_workers_every_acknowledged_event_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), SyncPolicy::Always));
    const TASKS: u32 = 64;
    const EACH: u64 = 30;
    let acked = runtime(2).block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|source| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for n in 1..=EACH {
                        // Every third append is a batch of two.
                        let seq = if n % 3 == 0 {
                            let e = [Entry::padded(source, n, 40), Entry::new(source, n)];
                            store.append_batch_async(&e).await.unwrap()
                        } else {
                            store.append_async(&Entry::new(source, n)).await.unwrap()
                        };
                        assert!(store.durable_seq() >= seq, "acknowledged before durable");
                        acked.push(seq);
                    }
                    acked
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let expected = u64::from(TASKS) * (EACH + EACH / 3);
    assert_eq!(store.seq(), expected);
    let mut sorted = acked.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), acked.len(), "every ack has its own seq");
    Arc::try_unwrap(store).unwrap().close().unwrap();

    let store = open(dir.path(), SyncPolicy::Always);
    let state = store.current();
    assert_eq!(state.count, expected);
    for source in 0..TASKS {
        assert_eq!(state.last[&source], EACH, "source {source}");
    }
    store.close().unwrap();
}

#[test]
fn a_future_dropped_after_staging_appends_its_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    let mut cx = Context::from_waker(Waker::noop());
    {
        // Never polled: nothing happens.
        let e = Entry::new(1, 0);
        let _lazy = store.append_async(&e);
    }
    assert_eq!(store.seq(), 0);
    {
        let e = Entry::new(1, 1);
        let mut fut = pin!(store.append_async(&e));
        // One poll stages the event and waits for the group commit; then it is dropped.
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(store.seq(), 1, "staged, applied and published");
    }
    assert_eq!(store.current().count, 1);
    // The syncer makes it durable without anyone polling the dropped future.
    wait_until("the dropped append becomes durable", || {
        store.durable_seq() == 1
    });
    assert_eq!(store.sync().unwrap(), 1);
    store.close().unwrap();

    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.seq(), 1);
    assert_eq!(store.current().count, 1, "exactly once");
    assert_eq!(store.current().last[&1], 1);
    store.close().unwrap();
}

#[test]
fn a_failed_sync_reaches_every_waiting_task_and_the_store_turns_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let armed = Arc::new(AtomicBool::new(false));
    let fs = {
        let (gate, armed) = (Arc::clone(&gate), Arc::clone(&armed));
        HookedFs::new(move |op, _| {
            if op == Op::SyncData && armed.load(Ordering::SeqCst) {
                gate.wait();
                return Err(io::Error::from_raw_os_error(5));
            }
            Ok(())
        })
    };
    let store = Arc::new(
        Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Always).fs(Arc::new(fs))).unwrap(),
    );
    store.append(&Entry::new(0, 0)).unwrap();
    armed.store(true, Ordering::SeqCst);
    const TASKS: u32 = 16;
    let rt = runtime(2);
    let tasks: Vec<_> = (1..=TASKS)
        .map(|source| {
            let store = Arc::clone(&store);
            rt.spawn(async move { store.append_async(&Entry::new(source, 1)).await })
        })
        .collect();
    // Every task has staged its event; the first sync is held at the gate.
    wait_until("all staged", || store.seq() == u64::from(TASKS) + 1);
    wait_until("a sync at the gate", || {
        gate.arrived.load(Ordering::SeqCst) > 0
    });
    std::thread::sleep(Duration::from_millis(50));
    gate.open();
    for t in tasks {
        match rt.block_on(t).unwrap() {
            Err(Error::ReadOnly { .. }) => {}
            other => panic!("a waiting task got {other:?}"),
        }
    }
    assert_eq!(
        store.durable_seq(),
        1,
        "nothing after the failure is durable"
    );
    let late = rt.block_on(store.append_async(&Entry::new(99, 1)));
    assert!(matches!(late, Err(Error::ReadOnly { .. })), "{late:?}");
    assert!(matches!(
        store.append(&Entry::new(99, 1)),
        Err(Error::ReadOnly { .. })
    ));
}

#[test]
fn close_completes_a_waiter_whose_sync_is_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let armed = Arc::new(AtomicBool::new(false));
    let fs = {
        let (gate, armed) = (Arc::clone(&gate), Arc::clone(&armed));
        HookedFs::new(move |op, _| {
            if op == Op::SyncData && armed.load(Ordering::SeqCst) {
                gate.wait();
            }
            Ok(())
        })
    };
    let store =
        Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Always).fs(Arc::new(fs))).unwrap();
    store.append(&Entry::new(0, 0)).unwrap();
    armed.store(true, Ordering::SeqCst);
    let waker = Arc::new(Counting::default());
    let cx_waker = Waker::from(Arc::clone(&waker));
    let mut cx = Context::from_waker(&cx_waker);
    let e = Entry::new(1, 1);
    let mut fut = Box::pin(store.append_async(&e));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    // The future is leaked with its waker registered (a live future would borrow the
    // store, and `close` takes it by value).
    std::mem::forget(fut);
    wait_until("the syncer stuck at the gate", || {
        gate.arrived.load(Ordering::SeqCst) > 0
    });
    let start = Instant::now();
    let report = store
        .close_with(CloseOptions::default().thread_timeout(Duration::from_millis(200)))
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3), "close is bounded");
    assert!(
        report.still_closing,
        "the stuck syncer still holds the store"
    );
    assert_eq!(report.durable_seq, 1);
    assert!(
        waker.0.load(Ordering::SeqCst) >= 1,
        "the waiting task was woken"
    );
    gate.open();
}

#[test]
fn under_never_an_async_append_completes_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    let rt = runtime(2);
    for n in 1..=200 {
        let seq = rt
            .block_on(store.append_async(&Entry::padded(1, n, 500)))
            .unwrap();
        assert_eq!(seq, n);
    }
    assert_eq!(rt.block_on(store.sync_async()).unwrap(), 200);
    assert_eq!(store.durable_seq(), 200);
    let report = rt.block_on(store.checkpoint_async()).unwrap();
    assert_eq!(report.seq, 200);
    rt.block_on(store.close_async()).unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.current().count, 200);
    store.close().unwrap();
}

/// Past `max_staged_bytes` (records queued while a new segment cannot be created yet)
/// an async append waits without parking its worker: on a one-thread runtime, a
/// ticker task keeps ticking while the appender waits.
#[test]
fn back_pressure_does_not_park_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let armed = Arc::new(AtomicBool::new(false));
    let fs = {
        let (gate, armed) = (Arc::clone(&gate), Arc::clone(&armed));
        HookedFs::new(move |op, path| {
            if op == Op::Create
                && path.extension().is_some_and(|e| e == "wal")
                && armed.load(Ordering::SeqCst)
            {
                gate.wait();
            }
            Ok(())
        })
    };
    let options = opts(SyncPolicy::Never)
        .fs(Arc::new(fs))
        .segment_bytes(4096)
        .max_staged_bytes(4096);
    let store = Arc::new(Store::<Ledger>::open(dir.path(), options).unwrap());
    store.append(&Entry::new(0, 0)).unwrap();
    armed.store(true, Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let appended = rt.block_on(async {
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let appender = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for n in 1..=100 {
                    store.append_async(&Entry::padded(1, n, 500)).await.unwrap();
                }
            })
        };
        // The second segment's creation is held: the appender fills the bound, then
        // waits, while the ticker keeps running on the only worker.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stuck_at = store.seq();
        let ticked = ticks.load(Ordering::SeqCst);
        assert!(
            stuck_at < 101,
            "the appender waits at the bound ({stuck_at})"
        );
        assert!(ticked >= 20, "the runtime kept running ({ticked} ticks)");
        gate.open();
        appender.await.unwrap();
        ticker.abort();
        stuck_at
    });
    assert!(appended > 1);
    assert_eq!(store.seq(), 101);
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

/// Async tasks and blocking threads append together across many rotations (4 KiB
/// segments, so the syncer and the blocking leaders create segments while tasks
/// write), while checkpoints purge segments behind them; every acknowledged event is
/// there after reopen, in a state equal to the replay of the log.
#[test]
fn async_and_blocking_appends_rotations_and_checkpoints_mix() {
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let options = opts(sync).segment_bytes(4096).preallocate(true);
        let store = Arc::new(Store::<Ledger>::open(dir.path(), options.clone()).unwrap());
        const EACH: u64 = 60;
        let rt = runtime(2);
        let blocking: Vec<_> = (100..102)
            .map(|source| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for n in 1..=EACH {
                        store.append(&Entry::padded(source, n, 100)).unwrap();
                    }
                })
            })
            .collect();
        rt.block_on(async {
            let tasks: Vec<_> = (0..16)
                .map(|source| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        for n in 1..=EACH {
                            store
                                .append_async(&Entry::padded(source, n, 100))
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            let checkpoints = {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..5 {
                        store.checkpoint_async().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            };
            for t in tasks {
                t.await.unwrap();
            }
            checkpoints.await.unwrap();
            store.sync_async().await.unwrap();
        });
        for b in blocking {
            b.join().unwrap();
        }
        let total = 18 * EACH;
        assert_eq!(store.durable_seq(), total, "{sync:?}");
        let before = store.current();
        Arc::try_unwrap(store).unwrap().close().unwrap();
        let newest = segments(dir.path()).pop().unwrap();
        assert_ne!(
            newest.file_name().unwrap(),
            "00000000000000000001.wal",
            "{sync:?}: rotated"
        );

        let store = Store::<Ledger>::open(dir.path(), options).unwrap();
        let after = store.current();
        assert_eq!(after.count, total, "{sync:?}");
        assert_eq!(**after, **before, "{sync:?}: the same state after reopen");
        for source in (0..16).chain(100..102) {
            assert_eq!(after.last[&source], EACH, "{sync:?}: source {source}");
        }
        store.close().unwrap();
    }
}
