//! Bug: a byte flipped by bit rot in the first record of the last WAL segment made
//! recovery take the segment for one a crash left before its first record and
//! *delete* it, with every later record in it (all of them durable), leaving nothing
//! to inspect or to repair from. Recovery still ends the log there (the last
//! segment is the one a crash may tear), but it now moves the segment aside to
//! `<name>.corrupt`, byte for byte, and reports it.
mod common;

use common::*;
use snapwal::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use snapwal::{Store, SyncPolicy};

#[test]
fn a_rotted_first_record_of_the_last_segment_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..800).map(|i| Entry::padded(1, i, 150)).collect();
    let store = open(dir.path(), SyncPolicy::Never);
    store.append_batch(&events).unwrap();
    store.close().unwrap();
    let segs = segments(dir.path());
    assert!(
        segs.len() >= 2,
        "small segments must have rotated: {segs:?}"
    );
    let last = segs.last().unwrap().clone();
    let first_seq: u64 = last
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_suffix(".wal")
        .unwrap()
        .parse()
        .unwrap();

    // Bit rot in the payload of the segment's first record.
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + 3] ^= 0x20;
    std::fs::write(&last, &bytes).unwrap();

    let (store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    // The log ends before the damaged record, as for a torn write...
    assert_eq!(store.seq(), first_seq - 1);
    assert_eq!(
        *store.current().state(),
        replayed(&events[..(first_seq - 1) as usize])
    );
    // ...and the damaged segment is kept, moved aside and reported.
    let mut aside = last.as_os_str().to_owned();
    aside.push(".corrupt");
    assert_eq!(report.quarantined, vec![std::path::PathBuf::from(&aside)]);
    assert_eq!(std::fs::read(&aside).unwrap(), bytes);
    assert!(!last.exists());
    // The store goes on: the next append gets the damaged segment's first seq.
    assert_eq!(store.append(&Entry::new(2, 0)).unwrap(), first_seq);
    store.close().unwrap();
}
