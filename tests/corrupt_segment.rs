//! Damage inside a sealed (non-tail) WAL segment is a typed error naming the segment and the damaged frame's offset, and SalvagePrefix recovers exactly the prefix before it.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::{SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use snapwal::{Error, Options, RecoveryPolicy, Store, SyncPolicy};

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".wal").unwrap().parse().unwrap()
}

fn frame_len(e: &Entry) -> u64 {
    (FRAME_HEADER_LEN + postcard::to_allocvec(e).unwrap().len()) as u64
}

fn flip(path: &Path, at: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

fn policy(p: RecoveryPolicy) -> Options {
    opts(SyncPolicy::Never).recovery(p)
}

fn with_corrupt_suffix(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".corrupt");
    PathBuf::from(s)
}

/// A closed store with `events` spread over at least three segments.
fn store_with_segments() -> (tempfile::TempDir, Vec<Entry>, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (0..1000)
        .map(|i| Entry::padded(1, i, 150 + (i % 11) as usize))
        .collect();
    let store = open(dir.path(), SyncPolicy::Never);
    store.append_batch(&events[..400]).unwrap();
    for e in &events[400..] {
        store.append(e).unwrap();
    }
    store.close().unwrap();
    let segs = segments(dir.path());
    assert!(
        segs.len() >= 3,
        "small segments must have rotated: {segs:?}"
    );
    (dir, events, segs)
}

/// The frame offset of the record `seq` inside `segment`, from the format alone.
fn frame_offset(events: &[Entry], segment: &Path, seq: u64) -> u64 {
    let first = first_seq_of(segment);
    assert!(seq >= first);
    SEGMENT_HEADER_LEN as u64
        + events[(first - 1) as usize..(seq - 1) as usize]
            .iter()
            .map(frame_len)
            .sum::<u64>()
}

fn expect_corrupt(result: snapwal::Result<Store<Ledger>>, path: &Path, offset: u64) -> String {
    match result {
        Err(e @ Error::Corrupt { .. }) => {
            let Error::Corrupt {
                path: p,
                offset: o,
                reason,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(p, path, "{e}");
            assert_eq!(*o, offset, "{e}");
            assert!(!reason.is_empty());
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("offset {offset}")), "{text}");
            reason.clone()
        }
        other => panic!(
            "expected Corrupt at {} offset {offset}, got {other:?}",
            path.display()
        ),
    }
}

/// Salvages, checks the recovered prefix and the quarantined segments, appends, and
/// reopens twice with the default policy.
fn salvage_and_continue(dir: &Path, events: &[Entry], keep: u64, quarantined: &[PathBuf]) {
    let (opened, log) = logs::capture(|| {
        Store::<Ledger>::open_with_report(dir, policy(RecoveryPolicy::SalvagePrefix))
    });
    let (store, report) = opened.unwrap();
    assert_eq!(store.seq(), keep);
    assert_eq!(*store.current().state(), replayed(&events[..keep as usize]));
    let expected: Vec<PathBuf> = quarantined.iter().map(|p| with_corrupt_suffix(p)).collect();
    assert_eq!(report.quarantined, expected);
    for (orig, aside) in quarantined.iter().zip(&expected) {
        assert!(!orig.exists(), "{} must be moved aside", orig.display());
        assert!(
            aside.exists(),
            "{} must be kept for inspection",
            aside.display()
        );
    }
    assert!(
        log.contains("ERROR") && log.contains("WAL damaged"),
        "{log}"
    );

    let mut all: Vec<Entry> = events[..keep as usize].to_vec();
    let more: Vec<Entry> = (0..50).map(|i| Entry::padded(7, i, 20)).collect();
    for (i, e) in more.iter().enumerate() {
        assert_eq!(store.append(e).unwrap(), keep + 1 + i as u64);
    }
    all.extend(more);
    store.close().unwrap();

    for round in 0..2u64 {
        let (store, report) =
            Store::<Ledger>::open_with_report(dir, policy(RecoveryPolicy::TolerateTornTail))
                .unwrap();
        assert_eq!(store.seq(), all.len() as u64, "round {round}");
        assert_eq!(*store.current().state(), replayed(&all), "round {round}");
        assert!(report.quarantined.is_empty());
        assert!(report.torn_tail.is_none());
        let e = Entry::new(8, round);
        assert_eq!(store.append(&e).unwrap(), all.len() as u64 + 1);
        all.push(e);
        store.close().unwrap();
    }
    for aside in &expected {
        assert!(aside.exists(), "{} must still be there", aside.display());
    }
}

#[test]
fn flipped_byte_in_a_sealed_segment_is_corrupt_at_the_frame_offset() {
    // Each field of the frame: len, crc, seq, payload.
    for field_byte in [0u64, 5, 9, FRAME_HEADER_LEN as u64 + 3] {
        let (dir, events, segs) = store_with_segments();
        let damaged = &segs[1];
        let seq = first_seq_of(damaged) + 17;
        let offset = frame_offset(&events, damaged, seq);
        flip(damaged, offset + field_byte, 0x40);

        expect_corrupt(
            Store::open(dir.path(), policy(RecoveryPolicy::TolerateTornTail)),
            damaged,
            offset,
        );
        expect_corrupt(
            Store::open(dir.path(), policy(RecoveryPolicy::Strict)),
            damaged,
            offset,
        );
        // Refusing changed nothing on disk.
        assert_eq!(segments(dir.path()), segs);

        salvage_and_continue(dir.path(), &events, seq - 1, &segs[2..]);
    }
}

/// Regression: under SalvagePrefix, a sealed segment whose first record is damaged
/// kept its name, which is the next seq; the first append then failed to create its
/// segment (`File exists`) and left the store read-only.
#[test]
fn salvage_of_a_segment_damaged_at_its_first_record_clashed_with_the_next_segment() {
    let (dir, events, segs) = store_with_segments();
    let damaged = &segs[1];
    let seq = first_seq_of(damaged);
    assert_eq!(
        frame_offset(&events, damaged, seq),
        SEGMENT_HEADER_LEN as u64
    );
    flip(
        damaged,
        SEGMENT_HEADER_LEN as u64 + FRAME_HEADER_LEN as u64,
        0xff,
    );
    expect_corrupt(
        Store::open(dir.path(), policy(RecoveryPolicy::default())),
        damaged,
        SEGMENT_HEADER_LEN as u64,
    );
    // The damaged segment holds no valid record: it goes aside with the later ones.
    salvage_and_continue(dir.path(), &events, seq - 1, &segs[1..]);
}

#[test]
fn damaged_segment_header_checksum_is_corrupt_at_offset_zero() {
    let (dir, events, segs) = store_with_segments();
    let damaged = &segs[1];
    // A byte of first_seq, without fixing the header checksum.
    flip(damaged, 13, 0x01);
    let reason = expect_corrupt(
        Store::open(dir.path(), policy(RecoveryPolicy::default())),
        damaged,
        0,
    );
    assert!(reason.contains("checksum"), "{reason}");
    expect_corrupt(
        Store::open(dir.path(), policy(RecoveryPolicy::Strict)),
        damaged,
        0,
    );
    salvage_and_continue(dir.path(), &events, first_seq_of(damaged) - 1, &segs[1..]);
}

#[test]
fn segment_header_first_seq_disagreeing_with_its_name_is_corrupt() {
    let (dir, events, segs) = store_with_segments();
    let damaged = &segs[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    assert_eq!(header.first_seq, first_seq_of(damaged));
    // A valid header (checksum recomputed) whose first seq is not the name's.
    let lying = SegmentHeader {
        first_seq: header.first_seq + 1,
        store_id: header.store_id,
    };
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&lying.encode());
    std::fs::write(damaged, bytes).unwrap();

    let reason = expect_corrupt(
        Store::open(dir.path(), policy(RecoveryPolicy::default())),
        damaged,
        12,
    );
    assert!(reason.contains("first seq"), "{reason}");
    expect_corrupt(
        Store::open(dir.path(), policy(RecoveryPolicy::Strict)),
        damaged,
        12,
    );
    salvage_and_continue(dir.path(), &events, first_seq_of(damaged) - 1, &segs[1..]);
}
