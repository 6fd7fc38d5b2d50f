//! Eight threads append while a checkpointer loops and two readers load the state: the
//! seqs handed out are exactly 1..=total, every read is a consistent (seq, state) pair,
//! and the reopened store equals the events replayed in seq order (I2, I3).
mod common;
use common::*;
use snapwal::{CheckpointOutcome, Seq, Store, SyncPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;

const WRITERS: u32 = 8;
const READERS: usize = 2;

/// Checks one reader's view: the count matches the seq, and no source's last `n` goes
/// backwards from the previous read of the same thread. Returns the reads it made.
fn read_loop(store: &Store<Ledger>, done: &AtomicBool) -> u64 {
    let mut prev_seq: Seq = 0;
    let mut prev_last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut reads = 0u64;
    loop {
        let finished = done.load(Ordering::Acquire);
        let v = store.current();
        assert_eq!(v.count, v.seq(), "state and seq of one read disagree");
        assert!(
            v.seq() >= prev_seq,
            "seq went back from {prev_seq} to {}",
            v.seq()
        );
        for (source, n) in &prev_last {
            let now = v.last.get(source).copied();
            assert!(
                now.is_some_and(|m| m >= *n),
                "source {source} went back from n={n} to {now:?} (seq {prev_seq} -> {})",
                v.seq()
            );
        }
        prev_seq = v.seq();
        prev_last = v.last.clone();
        reads += 1;
        if finished {
            return reads;
        }
    }
}

/// Runs the scenario with `per_writer` appends per thread under `policy`.
fn run(policy: SyncPolicy, per_writer: u64) {
    let dir = tempfile::tempdir().unwrap();
    let options = opts(policy).segment_bytes(16 * 1024);
    let store = Store::<Ledger>::open(dir.path(), options.clone()).unwrap();
    let writers_done = AtomicBool::new(false);
    let start = Barrier::new(WRITERS as usize + READERS + 1);

    let (appended, checkpoints, reads) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|source| {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    start.wait();
                    let mut mine = Vec::with_capacity(per_writer as usize);
                    for n in 0..per_writer {
                        let e = Entry::padded(source, n, (n % 40) as usize);
                        let seq = store.append(&e).unwrap();
                        if policy == SyncPolicy::Always {
                            assert!(
                                store.durable_seq() >= seq,
                                "append {seq} returned before it was durable"
                            );
                        }
                        mine.push((seq, e));
                    }
                    mine
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (store, done, start) = (&store, &writers_done, &start);
                s.spawn(move || {
                    start.wait();
                    read_loop(store, done)
                })
            })
            .collect();
        let checkpointer = {
            let (store, done) = (&store, &writers_done);
            s.spawn(move || {
                let (mut written, mut busy, mut removed) = (0u64, 0u64, 0usize);
                loop {
                    // One more checkpoint after the writers finish, so the last one sees
                    // the final state.
                    let finished = done.load(Ordering::Acquire);
                    let rep = store.checkpoint().unwrap();
                    assert!(
                        rep.cleanup_failures.is_empty(),
                        "{:?}",
                        rep.cleanup_failures
                    );
                    match rep.outcome {
                        CheckpointOutcome::Written => written += 1,
                        CheckpointOutcome::Busy => busy += 1,
                        _ => {}
                    }
                    removed += rep.segments_removed;
                    if finished {
                        return (written, busy, removed);
                    }
                }
            })
        };
        start.wait();
        let mut appended: Vec<(Seq, Entry)> = Vec::new();
        for w in writers {
            let mine = w.join().unwrap();
            // Each thread's own appends get increasing seqs.
            assert!(
                mine.windows(2).all(|p| p[0].0 < p[1].0),
                "a thread's seqs went back"
            );
            appended.extend(mine);
        }
        writers_done.store(true, Ordering::Release);
        let reads: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        (appended, checkpointer.join().unwrap(), reads)
    });
    let (written, busy, removed) = checkpoints;
    let total = u64::from(WRITERS) * per_writer;
    eprintln!(
        "{policy:?}: {total} appends, checkpoints written {written} busy {busy}, segments removed {removed}, reads {reads:?}"
    );
    // Only one thread checkpoints, so no request can find another one running.
    assert_eq!(busy, 0);
    assert_eq!(store.checkpoint_stats().busy, 0);
    // The last checkpoint ran after every append returned, so it wrote the final state
    // unless an earlier one already had.
    assert!(written >= 1);

    let mut appended = appended;
    appended.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<Seq> = appended.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "seqs have a gap or a duplicate"
    );
    let events: Vec<Entry> = appended.into_iter().map(|(_, e)| e).collect();
    let expected = replayed(&events);
    assert_eq!(store.seq(), total);
    assert_eq!(*store.current().state(), expected);
    assert_covered_segments_gone(dir.path(), total);
    store.close().unwrap();

    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), options).unwrap();
    assert_eq!(report.seq, total);
    assert!(report.torn_tail.is_none());
    assert_eq!(*store.current().state(), expected);
    store.close().unwrap();
}

/// No segment whose records are all at or below the oldest retained snapshot remains
/// on disk, except the newest segment (the writer's).
fn assert_covered_segments_gone(dir: &Path, last_seq: Seq) {
    let snaps = snapshots(dir);
    if snaps.len() < 2 {
        return; // the WAL is kept whole until two snapshots exist
    }
    let oldest = name_seq(&snaps[0]);
    let segs: Vec<Seq> = segments(dir).iter().map(|p| name_seq(p)).collect();
    for (i, first) in segs.iter().enumerate() {
        let last = segs.get(i + 1).map_or(last_seq, |next| next - 1);
        if i + 1 < segs.len() {
            assert!(
                last > oldest,
                "segment {first} (records ..={last}) is covered by snapshot {oldest} but still on disk"
            );
        }
    }
}

fn name_seq(p: &Path) -> Seq {
    p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn concurrent_appends_with_checkpoints_under_always() {
    run(SyncPolicy::Always, 300);
}

#[test]
fn concurrent_appends_with_checkpoints_under_never() {
    run(SyncPolicy::Never, 5_000);
}
