//! Source positions (I10): never saved ahead of the state saved with them, and saved by
//! the next checkpoint even when no event was appended.
mod common;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{CheckpointOutcome, CloseOptions, Position, Store, SyncPolicy};

fn at(offset: u64) -> Position {
    Position {
        offset,
        inode: 7,
        timestamp: offset as i64,
    }
}

/// The snapshot files' (state seq, saved positions), newest last.
fn saved(dir: &Path) -> Vec<(u64, Vec<(String, Position)>)> {
    snapshots(dir)
        .iter()
        .map(|p| {
            let (h, (_, pos)) = snapwal::snapshot::load::<(Ledger, Vec<(String, Position)>)>(
                &snapwal::fs::RealFs,
                p,
                None,
            )
            .unwrap();
            (h.seq, pos)
        })
        .collect()
}

/// Bug 2: the checkpoint loaded the published `(seq, state)`, synced the WAL, and only
/// then read the positions. A reader that appended event k+1 and moved its position to
/// k+1 in that window got a snapshot of state k with position k+1: under `Never`, a
/// crash then loses event k+1 for good while the reader resumes after it.
///
/// The WAL sync of the checkpoint is parked in a file-system hook while another thread
/// appends one event and moves the position past it; the snapshot must not hold a
/// position ahead of its state.
#[test]
fn bug_checkpoint_saved_positions_ahead_of_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let (to_reader, reader_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let done_rx = Mutex::new(done_rx);
    let armed = Arc::new(Mutex::new(Some(to_reader)));
    let hook_armed = Arc::clone(&armed);
    let fs = HookedFs::new(move |op, path| {
        if op == Op::SyncData && path.to_string_lossy().contains("/wal/") {
            if let Some(tx) = hook_armed.lock().unwrap().take() {
                // Inside the checkpoint's WAL sync: let the reader run, wait for it.
                tx.send(()).unwrap();
                done_rx.lock().unwrap().recv().unwrap();
            }
        }
        Ok(())
    });
    let options = opts(SyncPolicy::Never).fs(Arc::new(fs));
    let store = Arc::new(Store::<Ledger>::open(dir.path(), options).unwrap());
    let cell = store.position("tail");
    let mut events = Vec::new();
    for n in 1..=5 {
        let e = Entry::new(1, n);
        store.append(&e).unwrap();
        events.push(e);
        cell.set(at(n));
    }
    let reader = {
        let store = Arc::clone(&store);
        let cell = Arc::clone(&cell);
        std::thread::spawn(move || {
            reader_rx.recv().unwrap();
            let seq = store.append(&Entry::new(1, 6)).unwrap();
            cell.set(at(seq));
            done_tx.send(()).unwrap();
        })
    };
    let rep = store.checkpoint().unwrap();
    reader.join().unwrap();
    assert!(armed.lock().unwrap().is_none(), "the hook never ran");
    assert_eq!(rep.outcome, CheckpointOutcome::Written);
    for (seq, positions) in saved(dir.path()) {
        for (name, p) in positions {
            assert!(
                p.offset <= seq,
                "snapshot of seq {seq} saved position {name} at {} (ahead of its state)",
                p.offset
            );
        }
    }
    drop(store);
}

/// Bug 8: `set` a position then `checkpoint()` answered `Unchanged` when no event had
/// been appended since the last snapshot, and a final checkpoint at close too, so a
/// tailer that forwards lines without appending never persisted its read position.
#[test]
fn bug_positions_lost_when_no_event_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append(&Entry::new(1, 1)).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );

    // No event since the snapshot; the position moves: the checkpoint saves it.
    store.position("a").set(at(100));
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::PositionsSaved);
    assert!(rep.snapshot_bytes > 0);
    // Nothing moved since: nothing to write.
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Unchanged
    );
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.position("a").get(), at(100));

    // The same through the final checkpoint of close, with no checkpoint by hand.
    store.position("a").set(at(200));
    store.position("b").set(at(5));
    let report = store
        .close_with(CloseOptions::default().final_checkpoint(Some(Duration::from_secs(10))))
        .unwrap();
    assert_eq!(
        report.final_checkpoint.map(|r| r.outcome),
        Some(CheckpointOutcome::PositionsSaved)
    );
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.position("a").get(), at(200));
    assert_eq!(store.position("b").get(), at(5));
    assert_eq!(store.seq(), 1);

    // A later snapshot carries the positions and supersedes the records.
    store.append(&Entry::new(1, 2)).unwrap();
    store.position("a").set(at(300));
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    let records = std::fs::read_dir(dir.path().join("pos")).unwrap().count();
    assert_eq!(
        records, 0,
        "positions records older than a snapshot are pruned"
    );
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.position("a").get(), at(300));
    store.close().unwrap();
}

/// Positions saved with no event appended, on a brand-new store (no snapshot at all).
#[test]
fn positions_of_an_empty_store_are_saved_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.position("only").set(at(42));
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::PositionsSaved
    );
    drop(store);
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.seq(), 0);
    assert_eq!(store.position("only").get(), at(42));
    store.close().unwrap();
}

/// A damaged positions record is skipped with a warning: the positions of the snapshot
/// (older, so safe to resume from) are restored instead, nothing fails, and the
/// damaged record is moved aside as `.corrupt` (kept for inspection, never read again,
/// never deleted by a later cleanup).
#[test]
fn damaged_positions_record_falls_back_to_the_snapshot_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append(&Entry::new(1, 1)).unwrap();
    store.position("a").set(at(1));
    store.checkpoint().unwrap();
    store.position("a").set(at(9));
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::PositionsSaved
    );
    store.close().unwrap();
    let record = std::fs::read_dir(dir.path().join("pos"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&record, &bytes).unwrap();
    let (store, log) = logs::capture(|| open(dir.path(), SyncPolicy::Always));
    assert_eq!(store.position("a").get(), at(1));
    assert!(log.contains("positions record does not validate"), "{log}");
    let aside = record.with_file_name(format!(
        "{}.corrupt",
        record.file_name().unwrap().to_str().unwrap()
    ));
    assert!(!record.exists(), "the damaged record left its name");
    assert_eq!(std::fs::read(&aside).unwrap(), bytes, "its bytes are kept");
    // Later checkpoints and cleanups leave it alone.
    store.position("a").set(at(11));
    store.append(&Entry::new(1, 2)).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    assert_eq!(std::fs::read(&aside).unwrap(), bytes);
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.position("a").get(), at(11));
    store.close().unwrap();
}
