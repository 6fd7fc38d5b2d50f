//! A segment or snapshot in a format version this build does not know is a typed error naming the file (never skipped, salvaged or guessed at), and bad magic is Error::BadMagic.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::{SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN};
use snapwal::{CheckpointOutcome, Error, Options, RecoveryPolicy, Store, SyncPolicy};

const POLICIES: [RecoveryPolicy; 3] = [
    RecoveryPolicy::Strict,
    RecoveryPolicy::TolerateTornTail,
    RecoveryPolicy::SalvagePrefix,
];

/// Rewrites the version field of the header of `header_len` bytes and recomputes its
/// checksum, so the version is the only thing wrong with the file.
fn set_version(path: &Path, header_len: usize, version: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..header_len - 4]);
    bytes[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

fn set_magic(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[..8].copy_from_slice(b"NOTSNAPW");
    std::fs::write(path, bytes).unwrap();
}

fn store_with_segments(dir: &Path) -> Vec<PathBuf> {
    let store = open(dir, SyncPolicy::Never);
    let events: Vec<Entry> = (0..1000).map(|i| Entry::padded(1, i, 150)).collect();
    store.append_batch(&events).unwrap();
    store.close().unwrap();
    let segs = segments(dir);
    assert!(segs.len() >= 3, "{segs:?}");
    segs
}

fn expect_version(result: snapwal::Result<Store<Ledger>>, path: &Path) {
    match result {
        Err(e @ Error::UnsupportedVersion { .. }) => {
            let Error::UnsupportedVersion {
                path: p,
                found,
                supported,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(p, path, "{e}");
            assert_eq!(*found, 2);
            assert_eq!(*supported, snapwal::format::VERSION);
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("version 2"), "{text}");
        }
        other => panic!(
            "expected UnsupportedVersion naming {}, got {other:?}",
            path.display()
        ),
    }
}

fn expect_magic(result: snapwal::Result<Store<Ledger>>, path: &Path) {
    match result {
        Err(e @ Error::BadMagic { .. }) => {
            let Error::BadMagic { path: p } = &e else {
                unreachable!()
            };
            assert_eq!(p, path, "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        other => panic!("expected BadMagic naming {}, got {other:?}", path.display()),
    }
}

#[test]
fn segment_with_version_2_is_unsupported_under_every_policy() {
    // A sealed segment, then the last one.
    for last in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let segs = store_with_segments(dir.path());
        let target = if last { segs.last().unwrap() } else { &segs[1] };
        set_version(target, SEGMENT_HEADER_LEN, 2);
        for p in POLICIES {
            expect_version(
                Store::open(dir.path(), opts(SyncPolicy::Never).recovery(p)),
                target,
            );
            // Nothing was moved aside or removed, even under SalvagePrefix.
            assert_eq!(segments(dir.path()), segs, "{p:?}");
        }
    }
}

#[test]
fn segment_with_bad_magic_is_bad_magic_under_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let segs = store_with_segments(dir.path());
    set_magic(&segs[1]);
    for p in POLICIES {
        expect_magic(
            Store::open(dir.path(), opts(SyncPolicy::Never).recovery(p)),
            &segs[1],
        );
        assert_eq!(segments(dir.path()), segs, "{p:?}");
    }
}

fn snapshot_options() -> Options {
    opts(SyncPolicy::Never).keep_snapshots(2)
}

/// Two snapshots (600, 1200) and a WAL that no longer reaches seq 1.
fn store_with_snapshots(dir: &Path) -> (PathBuf, PathBuf) {
    let store = Store::<Ledger>::open(dir, snapshot_options()).unwrap();
    let events: Vec<Entry> = (0..1300).map(|i| Entry::padded(1, i, 150)).collect();
    store.append_batch(&events[..600]).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.append_batch(&events[600..1200]).unwrap();
    assert_eq!(
        store.checkpoint().unwrap().outcome,
        CheckpointOutcome::Written
    );
    store.append_batch(&events[1200..]).unwrap();
    store.close().unwrap();
    let snaps = snapshots(dir);
    assert_eq!(snaps.len(), 2);
    assert!(!segments(dir)[0].ends_with("00000000000000000001.wal"));
    (snaps[0].clone(), snaps[1].clone())
}

#[test]
fn snapshot_with_version_2_is_unsupported_with_no_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (older, newer) = store_with_snapshots(dir.path());
    set_version(&newer, SNAPSHOT_HEADER_LEN, 2);
    let before = std::fs::read(&newer).unwrap();
    for p in POLICIES {
        // The older snapshot would validate: a newer format must not be passed over.
        let (result, log) =
            logs::capture(|| Store::<Ledger>::open(dir.path(), snapshot_options().recovery(p)));
        expect_version(result, &newer);
        assert!(!log.contains("falling back"), "{p:?}: {log}");
        assert_eq!(std::fs::read(&newer).unwrap(), before, "{p:?}");
        assert!(older.exists());
    }
}

#[test]
fn snapshots_with_bad_magic_and_no_wal_to_replay_are_bad_magic() {
    let dir = tempfile::tempdir().unwrap();
    let (older, newer) = store_with_snapshots(dir.path());
    set_magic(&older);
    set_magic(&newer);
    expect_magic(Store::open(dir.path(), snapshot_options()), &newer);
    assert!(older.exists() && newer.exists());
}
