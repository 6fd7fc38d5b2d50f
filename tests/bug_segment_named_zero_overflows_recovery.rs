//! Regression: a segment named 0 with a valid header and garbage after it, followed by
//! a later segment, made recovery compute `expected - 1` with `expected == 0` (a panic
//! with overflow checks, a nonsense seq in the error without). Seq 0 is never a segment
//! name: it is a typed error naming the file, or moved aside under `SalvagePrefix`.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::{encode_frame, segment_name, SegmentHeader};
use snapwal::{Error, RecoveryPolicy, Store, SyncPolicy};

const STORE_ID: u64 = 0x5eed;

fn write_segment(
    dir: &Path,
    first_seq: u64,
    records: &[(u64, Vec<u8>)],
    garbage: &[u8],
) -> PathBuf {
    let mut bytes = SegmentHeader {
        first_seq,
        store_id: STORE_ID,
    }
    .encode()
    .to_vec();
    for (seq, payload) in records {
        encode_frame(&mut bytes, *seq, payload, crc32c::crc32c(payload));
    }
    bytes.extend_from_slice(garbage);
    let path = dir.join("wal").join(segment_name(first_seq));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn payload(e: &Entry) -> Vec<u8> {
    postcard::to_allocvec(e).unwrap()
}

fn expect_seq_zero_error(result: snapwal::Result<Store<Ledger>>, zero: &Path) {
    match result {
        Err(e @ Error::Corrupt { .. }) => {
            let Error::Corrupt {
                path,
                offset,
                reason,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(path, zero, "{e}");
            assert_eq!(*offset, 0, "{e}");
            assert!(reason.contains("seq 0"), "{e}");
        }
        other => panic!("expected Corrupt naming {}, got {other:?}", zero.display()),
    }
}

#[test]
fn bug_segment_named_zero_overflows_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let zero = write_segment(dir.path(), 0, &[], &[0xab; 40]);
    let later = write_segment(dir.path(), 5, &[(5, payload(&Entry::new(1, 5)))], &[]);
    for p in [RecoveryPolicy::Strict, RecoveryPolicy::TolerateTornTail] {
        let opened = std::panic::catch_unwind(|| {
            Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never).recovery(p))
        })
        .unwrap_or_else(|_| panic!("{p:?}: recovery panicked"));
        expect_seq_zero_error(opened, &zero);
        assert!(zero.exists() && later.exists(), "refusing touches nothing");
    }
    // SalvagePrefix moves the segment named 0 aside; what is left does not reach back
    // to seq 1, and there is no snapshot to keep: still a typed error, no panic.
    let opened = std::panic::catch_unwind(|| {
        Store::<Ledger>::open(
            dir.path(),
            opts(SyncPolicy::Never).recovery(RecoveryPolicy::SalvagePrefix),
        )
    })
    .expect("recovery must not panic");
    match opened {
        Err(Error::MissingRecords { needed: 1, path }) => assert_eq!(path, later),
        other => panic!("expected MissingRecords(1), got {other:?}"),
    }
    assert!(!zero.exists());
}

#[test]
fn segment_named_zero_before_a_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Entry> = (1..=4).map(|n| Entry::new(1, n)).collect();
    let records: Vec<(u64, Vec<u8>)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, payload(e)))
        .collect();
    // Records carrying seq 0 pass their checksum but no writer makes them.
    let zero = write_segment(dir.path(), 0, &[(0, payload(&Entry::new(9, 0)))], &[]);
    write_segment(dir.path(), 1, &records, &[]);

    expect_seq_zero_error(
        Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Never)),
        &zero,
    );
    let (store, report) = Store::<Ledger>::open_with_report(
        dir.path(),
        opts(SyncPolicy::Never).recovery(RecoveryPolicy::SalvagePrefix),
    )
    .unwrap();
    assert_eq!(*store.current().state(), replayed(&events));
    let mut aside = zero.clone().into_os_string();
    aside.push(".corrupt");
    assert_eq!(report.quarantined, vec![PathBuf::from(aside)]);
    assert_eq!(store.append(&Entry::new(1, 5)).unwrap(), 5);
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(store.seq(), 5);
}
