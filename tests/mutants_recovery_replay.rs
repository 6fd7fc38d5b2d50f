//! What `wal::replay` reports and refuses: the segments it read (only those holding
//! records after the snapshot's seq), the records it applied and their frame bytes,
//! the next seq; the store id it is given, checked against every segment; a zeroed
//! header before the last segment taken as damage, not as an empty last segment.
//! Each test kills mutants of `replay_with` that cargo-mutants found missed.
//!
//! Re-run with `cargo mutants -j 1 --config .cargo/mutants/recovery.toml`.
#![cfg(feature = "testing")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use snapwal::format::SEGMENT_HEADER_LEN;
use snapwal::fs::Fs;
use snapwal::testing::sim::SimFs;
use snapwal::{wal, Error, RecoveryPolicy, Store, SyncPolicy};

/// A closed store at `/s` on a fresh `SimFs` seeded with `seed`, holding `events`
/// padded events in 4 KiB segments; returns the file system and its WAL segments.
fn closed_store(seed: u64, events: u64) -> (Arc<SimFs>, Vec<(u64, PathBuf)>) {
    let fs = Arc::new(SimFs::new(seed));
    let options = opts(SyncPolicy::Never)
        .segment_bytes(4096)
        .preallocate(false)
        .fs(fs.clone());
    let store = Store::<Ledger>::open("/s", options).unwrap();
    let events: Vec<Entry> = (0..events).map(|i| Entry::padded(1, i, 40)).collect();
    store.append_batch(&events).unwrap();
    store.close().unwrap();
    let segments = wal::list_segments(fs.as_ref(), Path::new("/s/wal")).unwrap();
    (fs, segments)
}

#[test]
fn replay_report_counts_segments_records_and_bytes() {
    let (fs, segments) = closed_store(12, 300);
    let dir = Path::new("/s/wal");
    assert!(segments.len() >= 4, "{segments:?}");
    // Every byte after the headers is a frame.
    let frames: u64 = segments
        .iter()
        .map(|(_, p)| fs.contents(p).unwrap().len() as u64 - SEGMENT_HEADER_LEN as u64)
        .sum();

    let mut applied = 0u64;
    let all = wal::replay(fs.as_ref(), dir, 0, None, RecoveryPolicy::Strict, |_, _| {
        applied += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(applied, 300);
    assert_eq!(all.records_replayed, 300);
    assert_eq!(all.bytes_replayed, frames);
    assert_eq!(all.segments_read, segments.len());
    assert_eq!(all.next_seq, 301);
    assert!(all.store_id.is_some());
    assert!(all.torn_tail.is_none());

    // After the first record of the third segment: the first two are not read.
    let after = segments[2].0;
    let mut first = None;
    let tail = wal::replay(
        fs.as_ref(),
        dir,
        after,
        all.store_id,
        RecoveryPolicy::Strict,
        |r, _| {
            first.get_or_insert(r.seq);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(first, Some(after + 1));
    assert_eq!(tail.records_replayed, 300 - after);
    assert_eq!(tail.segments_read, segments.len() - 2);
    assert_eq!(tail.next_seq, 301);
    assert!(tail.bytes_replayed < frames);
}

/// The store id the caller knows (its snapshot's) is checked against every segment
/// from the first one: a log written by another store is `ForeignFile`, and a replay
/// that reads no segment reports the id it was given.
#[test]
fn replay_checks_segments_against_the_store_id_given() {
    let fs = Arc::new(SimFs::new(13));
    let options = opts(SyncPolicy::Never).segment_bytes(4096).fs(fs.clone());
    let store = Store::<Ledger>::open("/s", options).unwrap();
    store.append(&Entry::new(1, 0)).unwrap();
    store.close().unwrap();
    let dir = Path::new("/s/wal");
    let own = wal::replay(fs.as_ref(), dir, 0, None, RecoveryPolicy::Strict, |_, _| {
        Ok(())
    })
    .unwrap()
    .store_id
    .unwrap();
    let other = own.wrapping_add(1);
    let err = wal::replay(
        fs.as_ref(),
        dir,
        0,
        Some(other),
        RecoveryPolicy::Strict,
        |_, _| Ok(()),
    )
    .unwrap_err();
    match err {
        Error::ForeignFile {
            path,
            expected,
            found,
        } => {
            assert_eq!(path, wal::list_segments(fs.as_ref(), dir).unwrap()[0].1);
            assert_eq!((expected, found), (other, own));
        }
        e => panic!("expected ForeignFile, got {e:?}"),
    }
    // No segment at all: the id given is the id reported.
    let empty = wal::replay(
        fs.as_ref(),
        Path::new("/s/snap"),
        0,
        Some(other),
        RecoveryPolicy::Strict,
        |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(empty.store_id, Some(other));
}

/// A segment whose header is zeroed is "created but never written" only when it is
/// the last one; before the last it is damage: `Corrupt` at offset 0 naming it, and
/// nothing is removed.
#[test]
fn zeroed_header_before_the_last_segment_is_corruption() {
    let (fs, segments) = closed_store(14, 200);
    let dir = Path::new("/s/wal");
    assert!(segments.len() >= 3, "{segments:?}");
    let middle = &segments[1].1;
    let f = fs.open_write(middle).unwrap();
    f.write_all_at(&[0u8; SEGMENT_HEADER_LEN], 0).unwrap();
    f.sync_data().unwrap();
    let err = wal::replay(
        fs.as_ref(),
        dir,
        0,
        None,
        RecoveryPolicy::TolerateTornTail,
        |_, _| Ok(()),
    )
    .unwrap_err();
    match err {
        Error::Corrupt { path, offset, .. } => {
            assert_eq!(&path, middle);
            assert_eq!(offset, 0);
        }
        e => panic!("expected Corrupt, got {e:?}"),
    }
    assert_eq!(wal::list_segments(fs.as_ref(), dir).unwrap(), segments);
}
