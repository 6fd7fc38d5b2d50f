//! `current_durable()` never returns a version a crash could take back: under
//! `Always`, with appenders running, every version it returns has a seq at most
//! `durable_seq()` read right after the call, and a thread sees its own appends there
//! once they return.

mod common;
use common::*;
use snapwal::SyncPolicy;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn current_durable_is_never_ahead_of_the_durable_seq() {
    const WRITERS: u32 = 4;
    const PER_WRITER: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    let done = AtomicBool::new(false);
    let (polls, ahead) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|source| {
                let store = &store;
                s.spawn(move || {
                    for n in 0..PER_WRITER {
                        let seq = store.append(&Entry::new(source, n)).unwrap();
                        // Read-your-durable-writes.
                        let v = store.current_durable();
                        assert!(v.seq() >= seq, "own append {seq} missing: {}", v.seq());
                        assert!(v.seq() <= store.durable_seq());
                    }
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let (mut polls, mut ahead) = (0u64, 0u64);
            while !done.load(Ordering::Acquire) {
                let v = store.current_durable();
                let durable = store.durable_seq();
                assert!(v.seq() <= durable, "seq {} > durable {durable}", v.seq());
                assert_eq!(v.count, v.seq(), "state and seq disagree");
                ahead += u64::from(store.current().seq() > durable);
                polls += 1;
            }
            (polls, ahead)
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap()
    });
    assert!(polls > 0);
    // Not a timing claim: only that the reader ran while appends were in flight.
    let _ = ahead;
    let total = u64::from(WRITERS) * PER_WRITER;
    assert_eq!(store.current_durable().seq(), total);
    store.close().unwrap();
}

#[test]
fn current_durable_under_never_advances_with_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    store.append(&Entry::new(1, 1)).unwrap();
    store.append(&Entry::new(1, 2)).unwrap();
    let before = store.current_durable();
    assert!(before.seq() <= store.durable_seq());
    store.sync().unwrap();
    let after = store.current_durable();
    assert_eq!(after.seq(), 2);
    assert_eq!(
        after.state(),
        &replayed(&[Entry::new(1, 1), Entry::new(1, 2)])
    );
    store.close().unwrap();
}
