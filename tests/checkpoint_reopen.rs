//! Checkpoints truncate the WAL by unlinking exactly the segments the oldest retained
//! snapshot covers (the newest with `keep_snapshots(1)`, all of them at a final
//! checkpoint), and a reopen replays only the tail after the newest snapshot (I5).
mod common;
use common::*;
use snapwal::{CheckpointOutcome, CloseOptions, Options, Seq, Store, SyncPolicy};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn small(keep: usize) -> Options {
    opts(SyncPolicy::Never)
        .segment_bytes(4096)
        .keep_snapshots(keep)
}

fn event(i: u64) -> Entry {
    Entry::padded(3, i, 100 + (i % 50) as usize)
}

fn name_seq(p: &Path) -> Seq {
    p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// The segments on disk whose records are all at or below `through`, given that the
/// newest segment ends at `last_seq`: a segment is covered iff the next one's first seq
/// minus one (or `last_seq` for the newest) is at most `through`.
fn covered(dir: &Path, through: Seq, last_seq: Seq) -> Vec<PathBuf> {
    let segs = segments(dir);
    let firsts: Vec<Seq> = segs.iter().map(|p| name_seq(p)).collect();
    segs.iter()
        .enumerate()
        .filter(|(i, _)| firsts.get(i + 1).map_or(last_seq, |next| next - 1) <= through)
        .map(|(_, p)| p.clone())
        .collect()
}

fn append_range(store: &Store<Ledger>, events: &mut Vec<Entry>, count: u64) {
    for _ in 0..count {
        let e = event(events.len() as u64);
        assert_eq!(store.append(&e).unwrap(), events.len() as u64 + 1);
        events.push(e);
    }
}

#[test]
fn checkpoint_purges_segments_covered_by_oldest_retained_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::<Ledger>::open(dir.path(), small(2)).unwrap();
    let mut events = Vec::new();
    append_range(&store, &mut events, 300);
    let segs_before = segments(dir.path());
    assert!(
        segs_before.len() >= 8,
        "expected many segments, got {}",
        segs_before.len()
    );

    // First snapshot: with one snapshot of the two kept, the WAL stays whole.
    let first = store.checkpoint().unwrap();
    assert_eq!(first.outcome, CheckpointOutcome::Written);
    assert_eq!(first.seq, 300);
    assert_eq!(first.segments_removed, 0);
    assert_eq!(segments(dir.path()), segs_before);

    append_range(&store, &mut events, 300);
    let total = events.len() as u64;
    let expected_gone = covered(dir.path(), first.seq, total);
    assert!(!expected_gone.is_empty());
    let all_before = segments(dir.path());

    // Second snapshot: the oldest retained one is the first, so exactly the segments
    // wholly at or below seq 300 go; the newer ones (and the newest) remain.
    let second = store.checkpoint().unwrap();
    assert_eq!(second.outcome, CheckpointOutcome::Written);
    assert_eq!(second.seq, total);
    assert_eq!(second.snapshots_pruned, 0);
    assert!(second.cleanup_failures.is_empty());
    assert_eq!(second.segments_removed, expected_gone.len());
    let remaining = segments(dir.path());
    let expected_remaining: Vec<PathBuf> = all_before
        .iter()
        .filter(|p| !expected_gone.contains(p))
        .cloned()
        .collect();
    assert_eq!(remaining, expected_remaining);
    // What remains still reaches back to the oldest snapshot: its successor's record
    // is on disk.
    assert!(name_seq(&remaining[0]) <= first.seq + 1);
    assert_eq!(snapshots(dir.path()).len(), 2);

    // Nothing appended since: no new snapshot, nothing more removed.
    let again = store.checkpoint().unwrap();
    assert_eq!(again.outcome, CheckpointOutcome::Unchanged);
    assert_eq!(again.seq, total);
    assert_eq!(again.segments_removed, 0);
    assert_eq!(segments(dir.path()), remaining);

    append_range(&store, &mut events, 40);
    let total = events.len() as u64;
    store.close().unwrap();

    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), small(2)).unwrap();
    assert_eq!(report.snapshot_seq, Some(second.seq));
    assert_eq!(report.records_replayed, total - second.seq);
    assert_eq!(store.seq(), total);
    assert_eq!(*store.current().state(), replayed(&events));
    store.close().unwrap();
}

#[test]
fn keep_one_snapshot_purges_up_to_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::<Ledger>::open(dir.path(), small(1)).unwrap();
    let mut events = Vec::new();
    append_range(&store, &mut events, 250);
    let total = events.len() as u64;
    let expected_gone = covered(dir.path(), total, total);
    let all_before = segments(dir.path());
    // Every segment is covered, but the newest (the writer's) is never removed.
    assert_eq!(expected_gone.len(), all_before.len());

    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert_eq!(rep.segments_removed, all_before.len() - 1);
    assert_eq!(
        segments(dir.path()),
        vec![all_before.last().unwrap().clone()]
    );

    append_range(&store, &mut events, 250);
    let total = events.len() as u64;
    let expected_gone = covered(dir.path(), total, total);
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    assert_eq!(rep.snapshots_pruned, 1);
    assert_eq!(rep.segments_removed, expected_gone.len() - 1);
    assert_eq!(snapshots(dir.path()).len(), 1);
    assert_eq!(segments(dir.path()).len(), 1);

    append_range(&store, &mut events, 10);
    let total = events.len() as u64;
    drop(store);
    let (store, report) = Store::<Ledger>::open_with_report(dir.path(), small(1)).unwrap();
    assert_eq!(report.snapshot_seq, Some(rep.seq));
    assert_eq!(report.records_replayed, total - rep.seq);
    assert_eq!(*store.current().state(), replayed(&events));
    store.close().unwrap();
}

/// Bug 14: the final checkpoint at close truncated the WAL up to the *newest*
/// snapshot while `keep_snapshots(2)` kept the older one on disk, so one flipped bit in
/// the newest snapshot after a clean close made `open` fail. The WAL is kept back to
/// the oldest retained snapshot, after close too.
#[test]
fn bug_final_checkpoint_at_close_removed_the_wal_the_older_snapshot_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::<Ledger>::open(dir.path(), small(2)).unwrap();
    let mut events = Vec::new();
    append_range(&store, &mut events, 200);
    let first = store.checkpoint().unwrap();
    append_range(&store, &mut events, 200);
    let total = events.len() as u64;
    assert!(segments(dir.path()).len() > 1);

    let report = store
        .close_with(CloseOptions::default().final_checkpoint(Some(Duration::from_secs(5))))
        .unwrap();
    let fin = report.final_checkpoint.expect("the final checkpoint ran");
    assert_eq!(fin.outcome, CheckpointOutcome::Written);
    assert_eq!(fin.seq, total);
    assert!(report.cleanup_failures.is_empty());
    assert_eq!(report.durable_seq, total);
    // Segments wholly at or below the older snapshot are gone; the rest stays.
    assert_eq!(covered(dir.path(), first.seq, total), Vec::<PathBuf>::new());
    let first_kept = segments(dir.path()).first().map(|p| name_seq(p)).unwrap();
    assert!(
        first_kept <= first.seq + 1,
        "WAL after the older snapshot was removed"
    );

    // Damage the newest snapshot: the older one plus the WAL give every event back.
    let snaps = snapshots(dir.path());
    assert_eq!(snaps.len(), 2);
    let newest = snaps.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(newest, &bytes).unwrap();
    let (store, open) = Store::<Ledger>::open_with_report(dir.path(), small(2)).unwrap();
    assert_eq!(open.snapshot_seq, Some(first.seq));
    assert_eq!(store.seq(), total);
    assert_eq!(*store.current().state(), replayed(&events));

    append_range(&store, &mut events, 5);
    store.close().unwrap();
    let store = Store::<Ledger>::open(dir.path(), small(2)).unwrap();
    assert_eq!(*store.current().state(), replayed(&events));
    store.close().unwrap();
}
