//! Regression: `SalvagePrefix` moved a damaged segment to the fixed name
//! `<name>.corrupt`; the second time a segment of the same name was damaged, that name
//! existed, the no-replace rename refused, and the store could not be opened at all.
//! Moved-aside names are unique now: `<name>.corrupt`, `<name>.1.corrupt`, ...
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::{Options, RecoveryPolicy, Store, SyncPolicy};

fn salvage() -> Options {
    opts(SyncPolicy::Never).recovery(RecoveryPolicy::SalvagePrefix)
}

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".wal").unwrap().parse().unwrap()
}

fn aside(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    if n == 0 {
        s.push(".corrupt");
    } else {
        s.push(format!(".{n}.corrupt"));
    }
    PathBuf::from(s)
}

/// Damages the header of `segment` (its store id): a sealed segment that no longer
/// validates, so `SalvagePrefix` keeps everything before it and moves it aside.
fn damage_header(segment: &Path) {
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(segment, bytes).unwrap();
}

#[test]
fn bug_salvage_twice_same_segment_name() {
    let dir = tempfile::tempdir().unwrap();
    // Same-sized events, so every round rotates at the same seqs and the segments get
    // the same names again.
    let batch: Vec<Entry> = (0..1200).map(|i| Entry::padded(1, i, 150)).collect();
    let store = open(dir.path(), SyncPolicy::Never);
    store.append_batch(&batch).unwrap();
    store.close().unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let damaged = segs[1].clone();
    let keep = first_seq_of(&damaged) - 1;

    let mut expected_state = batch.clone();
    for round in 0..3 {
        damage_header(&damaged);
        let (store, report) = Store::<Ledger>::open_with_report(dir.path(), salvage())
            .unwrap_or_else(|e| panic!("round {round}: salvage must succeed: {e}"));
        expected_state.truncate(keep as usize);
        assert_eq!(store.seq(), keep, "round {round}");
        assert_eq!(*store.current().state(), replayed(&expected_state));
        // Every segment from the damaged one on went aside, under a name not used yet.
        assert_eq!(report.quarantined.first(), Some(&aside(&damaged, round)));
        for n in 0..=round {
            assert!(aside(&damaged, n).exists(), "round {round}: {n}");
        }
        assert!(!damaged.exists());
        // Write the same seqs again: the damaged segment's name comes back.
        let rest = &batch[keep as usize..];
        store.append_batch(rest).unwrap();
        expected_state.extend_from_slice(rest);
        store.close().unwrap();
        assert!(
            damaged.exists(),
            "round {round}: {:?}",
            segments(dir.path())
        );
    }
    // Nothing moved aside is read again, and the store is whole.
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(*store.current().state(), replayed(&expected_state));
    store.close().unwrap();
}
