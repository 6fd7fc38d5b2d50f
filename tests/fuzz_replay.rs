//! Every committed fuzz input (seed corpus and minimized crashes) replays through its
//! fuzz target's body without a contract violation, on a plain `cargo test`.
//!
//! The bodies live in `snapwal::testing::fuzz`; `fuzz/fuzz_targets/*.rs` call the same
//! functions under libFuzzer. The counting allocator below makes the harness check
//! its allocation bound here too. `regenerate_seed_corpus` (ignored) rewrites the
//! seed corpora from the real writer.

use std::path::{Path, PathBuf};

use snapwal::testing::fuzz::{self as harness, CountingAlloc, FuzzEvent, FuzzState};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The inputs in `fuzz/<kind>/<target>/` (a README aside), asserting that the
/// directory exists and holds at least one input besides its README (a folder left
/// with only its README would make the replay pass without replaying anything).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!all.is_empty(), "{} is empty", dir.display());
    let mut files: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    files
}

fn replay_all(target: &str, body: fn(&[u8])) {
    for kind in ["corpus", "regressions"] {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{} violates the contract", path.display());
        }
    }
}

#[test]
fn wal_decode_corpus_and_regressions_replay() {
    replay_all("wal_decode", harness::wal_decode);
}

#[test]
fn snapshot_decode_corpus_and_regressions_replay() {
    replay_all("snapshot_decode", harness::snapshot_decode);
}

#[cfg(feature = "testing")]
#[test]
fn crash_recovery_corpus_and_regressions_replay() {
    replay_all("crash_recovery", harness::crash_recovery);
}

// ---------------------------------------------------------------------------------
// Seed corpus generation (run with `cargo test --test fuzz_replay -- --ignored`).

fn event(i: u64) -> FuzzEvent {
    FuzzEvent {
        source: (i % 3) as u32,
        n: i,
        pad: vec![(i % 251) as u8; (i % 40) as usize],
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn sorted(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "rewrites fuzz/corpus from the real writer"]
fn regenerate_seed_corpus() {
    use snapwal::{Options, Position, Store, SyncPolicy};
    let tmp = tempfile::tempdir().unwrap();
    let opts = |pre: bool| {
        Options::default()
            .sync(SyncPolicy::Never)
            .segment_bytes(4096)
            .preallocate(pre)
    };
    // Unpreallocated: two full segments and a short third.
    let a = tmp.path().join("a");
    let store = Store::<FuzzState>::open(&a, opts(false)).unwrap();
    for i in 1..=260 {
        store.append(&event(i)).unwrap();
    }
    store.position("tail").set(Position {
        offset: 4096,
        inode: 12,
        timestamp: -3,
    });
    store.checkpoint().unwrap();
    store.close().unwrap();
    // Preallocated: the short segment ends in zeros.
    let b = tmp.path().join("b");
    let store = Store::<FuzzState>::open(&b, opts(true)).unwrap();
    for i in 1..=5 {
        store.append(&event(i)).unwrap();
    }
    store.close().unwrap();

    let wal_out = fuzz_dir().join("corpus/wal_decode");
    let segs = sorted(&a.join("wal"), "wal");
    let first = std::fs::read(&segs[0]).unwrap();
    let second = std::fs::read(&segs[1]).unwrap();
    let last = std::fs::read(segs.last().unwrap()).unwrap();
    let pre = std::fs::read(&sorted(&b.join("wal"), "wal")[0]).unwrap();
    write(&wal_out, "first-segment", &first);
    write(&wal_out, "later-segment", &second);
    write(&wal_out, "last-segment", &last);
    write(&wal_out, "preallocated", &pre);
    write(&wal_out, "torn-mid-record", &first[..first.len() - 7]);
    write(&wal_out, "header-only", &first[..32]);
    let mut flipped = first.clone();
    flipped[32 + 16 + 2] ^= 0x40;
    write(&wal_out, "flipped-payload-byte", &flipped);
    let mut garbage_tail = last.clone();
    garbage_tail.extend_from_slice(&[0xA5; 23]);
    write(&wal_out, "garbage-tail", &garbage_tail);
    let mut bad_version = first[..200].to_vec();
    bad_version[8] = 2;
    write(&wal_out, "unknown-version", &bad_version);

    let snap_out = fuzz_dir().join("corpus/snapshot_decode");
    let snap = std::fs::read(sorted(&a.join("snap"), "snap").last().unwrap()).unwrap();
    write(&snap_out, "valid", &snap);
    write(&snap_out, "truncated-body", &snap[..snap.len() - 3]);
    write(&snap_out, "header-only", &snap[..44]);
    let mut trailing = snap.clone();
    trailing.push(0);
    write(&snap_out, "trailing-byte", &trailing);
    let mut flipped = snap.clone();
    flipped[50] ^= 1;
    write(&snap_out, "flipped-body-byte", &flipped);
    let body =
        postcard::to_allocvec(&(FuzzState::default(), Vec::<(String, Position)>::new())).unwrap();
    let h = snapwal::format::SnapshotHeader {
        seq: 0,
        store_id: 1,
        body_len: body.len() as u64,
        body_crc: crc32c::crc32c(&body),
    };
    let mut empty_state = h.encode().to_vec();
    empty_state.extend_from_slice(&body);
    write(&snap_out, "empty-state", &empty_state);
}

// ---------------------------------------------------------------------------------
// Regressions found by the fuzz targets, pinned on real files.

/// Found by `snapshot_decode`: a directory whose only snapshot is damaged and whose WAL
/// was truncated away (a close with a final checkpoint once unlinked every segment; the
/// test removes them by hand now) opened as an empty store at seq 0, losing every
/// acknowledged event with only a warning.
#[test]
fn bug_damaged_only_snapshot_with_empty_wal_opened_empty() {
    use snapwal::{CloseOptions, Error, Options, Store, SyncPolicy};
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::default()
            .sync(SyncPolicy::Always)
            .keep_snapshots(1)
            .preallocate(false)
    };
    let store = Store::<FuzzState>::open(dir.path(), opts()).unwrap();
    for i in 1..=20 {
        store.append(&event(i)).unwrap();
    }
    store
        .close_with(
            CloseOptions::default().final_checkpoint(Some(std::time::Duration::from_secs(10))),
        )
        .unwrap();
    for segment in sorted(&dir.path().join("wal"), "wal") {
        std::fs::remove_file(segment).unwrap();
    }
    let snaps = sorted(&dir.path().join("snap"), "snap");
    assert_eq!(snaps.len(), 1);
    let mut bytes = std::fs::read(&snaps[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&snaps[0], &bytes).unwrap();

    match Store::<FuzzState>::open(dir.path(), opts()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, snaps[0]),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(s) => panic!(
            "opened at seq {} though events 1..=20 were acknowledged",
            s.seq()
        ),
    }
    // The damaged snapshot is still there, under its name, for the next attempt.
    assert_eq!(sorted(&dir.path().join("snap"), "snap"), snaps);
}

/// Found by `wal_decode`: a valid record carrying seq `u64::MAX` made the record scan
/// overflow its next seq (a panic in debug builds, a wrap to 0 in release). No writer
/// can reach that seq; the scan now ends the log there, as at any invalid record.
#[test]
fn bug_record_at_last_seq_overflowed_scan() {
    use snapwal::format::{encode_frame, segment_name, SegmentHeader};
    use snapwal::fs::RealFs;
    use snapwal::{Options, Position, Store};
    let dir = tempfile::tempdir().unwrap();
    let (snap, wal) = (dir.path().join("snap"), dir.path().join("wal"));
    std::fs::create_dir_all(&wal).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    let before = FuzzState {
        count: 3,
        ..FuzzState::default()
    };
    let body = (before.clone(), Vec::<(String, Position)>::new());
    snapwal::snapshot::write(&RealFs, &snap, u64::MAX - 1, 9, &body).unwrap();
    let mut seg = SegmentHeader {
        first_seq: u64::MAX,
        store_id: 9,
    }
    .encode()
    .to_vec();
    let payload = postcard::to_allocvec(&event(1)).unwrap();
    encode_frame(&mut seg, u64::MAX, &payload, crc32c::crc32c(&payload));
    std::fs::write(wal.join(segment_name(u64::MAX)), &seg).unwrap();

    let (store, report) =
        Store::<FuzzState>::open_with_report(dir.path(), Options::default()).unwrap();
    assert_eq!(store.seq(), u64::MAX - 1);
    assert_eq!(*store.current().state(), before);
    assert_eq!(report.records_replayed, 0);
    let torn = report.torn_tail.expect("the record is cut as a torn tail");
    assert_eq!((torn.1, torn.2), (32, seg.len() as u64 - 32));
}

/// Found by `snapshot_decode`: a valid snapshot of seq `u64::MAX` made recovery
/// overflow computing the next seq (a panic in debug builds, a wrap to seq 0 in
/// release). No writer reaches that seq; such a snapshot is now refused as corrupt,
/// and with nothing else to recover from, open names it.
#[test]
fn bug_snapshot_at_last_seq_overflowed_recovery() {
    use snapwal::fs::RealFs;
    use snapwal::{Error, Options, Position, Store};
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir_all(&snap).unwrap();
    let body = (FuzzState::default(), Vec::<(String, Position)>::new());
    let w = snapwal::snapshot::write(&RealFs, &snap, u64::MAX, 9, &body).unwrap();
    match snapwal::snapshot::load::<(FuzzState, Vec<(String, Position)>)>(&RealFs, &w.path, None) {
        Err(Error::Corrupt { offset: 12, .. }) => {}
        other => panic!("a snapshot of seq u64::MAX loaded: {other:?}"),
    }
    match Store::<FuzzState>::open(dir.path(), Options::default()) {
        Err(Error::Corrupt {
            path, offset: 12, ..
        }) => assert_eq!(path, w.path),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(s) => panic!("opened at seq {}", s.seq()),
    }
}

/// Found by `crash_recovery`: under `SyncPolicy::Never`, the WAL created segment
/// `17.wal`, filled it, then created `34.wal` and wrote to it without the directory
/// entry of `17.wal` being durable. A crash that kept `34.wal` but lost `17.wal`
/// (allowed: un-synced directory entries may vanish) left a gap, and recovery failed
/// with "WAL record 17 is missing". Before the first write to a new segment the
/// previous segment's entry is now made durable, as its data already was.
#[cfg(feature = "testing")]
#[test]
fn bug_lost_segment_entry_left_a_gap_before_a_later_segment() {
    let input = [
        0xff, 0xff, 0xfa, 0x2d, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x18, 0xfe, 0xfa, 0x00, 0x00,
        0xfa,
    ];
    harness::crash_recovery(&input);
}

/// Regression: a store recovered at the end of the seq space panicked on the next
/// append (`next_seq += 1` overflowed); it now answers `Error::SeqExhausted`.
#[test]
fn bug_append_at_end_of_seq_space_overflowed() {
    let dir = tempfile::tempdir().unwrap();
    let snap_dir = dir.path().join("snap");
    std::fs::create_dir_all(&snap_dir).unwrap();
    let seq = u64::MAX - 1;
    let state = snapwal::testing::fuzz::FuzzState::default();
    let positions: Vec<(String, snapwal::Position)> = Vec::new();
    snapwal::snapshot::write(
        &snapwal::fs::RealFs,
        &snap_dir,
        seq,
        7,
        &(&state, &positions),
    )
    .unwrap();
    let store = snapwal::Store::<snapwal::testing::fuzz::FuzzState>::open(
        dir.path(),
        snapwal::Options::default(),
    )
    .unwrap();
    assert_eq!(store.seq(), seq);
    let event = snapwal::testing::fuzz::FuzzEvent {
        source: 1,
        n: 1,
        pad: Vec::new(),
    };
    assert!(matches!(
        store.append(&event),
        Err(snapwal::Error::SeqExhausted)
    ));
    assert_eq!(store.seq(), seq);
}
