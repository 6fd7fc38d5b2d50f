//! Writers, readers and a checkpointer hammer one store at once: every `(seq, state)`
//! anyone sees matches exactly, no reader goes back in time, a writer reads its own
//! append at once, and every snapshot a checkpoint writes is the replay of events
//! `1..=seq`.
//!
//! Why a stress test on the real `Store` and not a loom or shuttle model: the
//! handoff under test is the writer section (a `Mutex` around "clone, apply, stage,
//! `ArcSwap::store`") and lock-free `ArcSwap::load_full` on the read and checkpoint
//! side. `arc_swap` is not loom-instrumented, so a model would check a hand-written
//! replica of that code plus an assumed `ArcSwap`, and could pass while the real code
//! is wrong. The property that matters (one `Arc` carries both seq and state, so no
//! torn pair is observable) is visible from outside, and a test on the real types
//! checks it against the real `arc_swap`, the real WAL staging and the real snapshot
//! files. Its weakness, a schedule it does not happen to hit, is bounded by running
//! many short threads with no sleeps, and by checks that need no luck to fail
//! (a torn pair or a stale read fails the first time it happens).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use snapwal::fs::RealFs;
use snapwal::{CheckpointOutcome, Position, Store, SyncPolicy};

const WRITERS: u32 = 4;
const READERS: usize = 3;
const PER_WRITER: u64 = 1_500;

#[test]
fn published_pairs_stay_exact_under_concurrent_writers_readers_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never).keep_snapshots(2)).unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for n in 1..=PER_WRITER {
                    let e = Entry::padded(w, n, (n % 64) as usize);
                    let seq = if n % 10 == 0 {
                        // A batch of one, through the batch path.
                        store.append_batch(std::slice::from_ref(&e)).unwrap()
                    } else {
                        store.append(&e).unwrap()
                    };
                    // Read-your-writes: the append is visible on this thread at once.
                    let cur = store.current();
                    assert!(
                        cur.seq() >= seq,
                        "writer {w} appended seq {seq} but reads {}",
                        cur.seq()
                    );
                    assert_eq!(cur.state().count, cur.seq(), "torn pair seen by writer {w}");
                    assert!(
                        cur.state().last.get(&w).is_some_and(|&m| m >= n),
                        "writer {w} does not see its event {n}"
                    );
                    mine.push((seq, e));
                }
                mine
            })
        })
        .collect();

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            std::thread::spawn(move || {
                let (mut last, mut loads) = (0u64, 0u64);
                while !done.load(Ordering::Acquire) {
                    let cur = store.current();
                    assert_eq!(
                        cur.state().count,
                        cur.seq(),
                        "reader {r}: state does not match its seq"
                    );
                    assert!(
                        cur.seq() >= last,
                        "reader {r}: seq went back from {last} to {}",
                        cur.seq()
                    );
                    assert!(
                        store.seq() >= cur.seq(),
                        "reader {r}: seq() behind current()"
                    );
                    last = cur.seq();
                    loads += 1;
                }
                loads
            })
        })
        .collect();

    let checkpointer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            // (seq, state loaded back from the snapshot file) for each checkpoint written.
            let mut written = Vec::new();
            let mut last = 0u64;
            store.position("p").set(Position {
                offset: 1,
                inode: 2,
                timestamp: 3,
            });
            while !done.load(Ordering::Acquire) {
                let rep = store.checkpoint().unwrap();
                assert!(rep.seq >= last, "checkpoint seq went back");
                last = rep.seq;
                if rep.outcome == CheckpointOutcome::Written {
                    let path = dir_of(&store)
                        .join("snap")
                        .join(snapwal::format::snapshot_name(rep.seq));
                    // Only this thread checkpoints, so nothing prunes the file before this load.
                    let (h, (state, positions)) = snapwal::snapshot::load::<(
                        Ledger,
                        Vec<(String, Position)>,
                    )>(&RealFs, &path, None)
                    .unwrap();
                    assert_eq!(h.seq, rep.seq);
                    assert_eq!(
                        state.count, rep.seq,
                        "snapshot state does not match its seq"
                    );
                    assert!(positions.iter().any(|(n, _)| n == "p"));
                    written.push((rep.seq, state));
                }
            }
            written
        })
    };

    let mut by_seq = BTreeMap::new();
    for w in writers {
        for (seq, e) in w.join().unwrap() {
            assert!(
                by_seq.insert(seq, e).is_none(),
                "seq {seq} handed out twice"
            );
        }
    }
    done.store(true, Ordering::Release);
    let loads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let snapshots = checkpointer.join().unwrap();

    let total = u64::from(WRITERS) * PER_WRITER;
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "seqs are not 1..=N"
    );
    let log: Vec<Entry> = by_seq.into_values().collect();
    assert!(loads > 0);
    assert!(
        !snapshots.is_empty(),
        "no checkpoint ran while writers were busy"
    );
    for (seq, state) in &snapshots {
        assert_eq!(
            *state,
            replayed(&log[..*seq as usize]),
            "snapshot at {seq} is not events 1..={seq}"
        );
    }
    assert_eq!(*store.current().state(), replayed(&log));

    let store = Arc::into_inner(store).unwrap();
    store.close().unwrap();
    let reopened = open(dir.path(), SyncPolicy::Never);
    assert_eq!(reopened.seq(), total);
    assert_eq!(*reopened.current().state(), replayed(&log));
}

fn dir_of(store: &Store<Ledger>) -> std::path::PathBuf {
    store.dir().to_path_buf()
}
