//! Format v1, held forever: the directories in `tests/data/v1/` were written once by
//! the release that introduced them (by `generate_golden_v1_stores`, run by hand with
//! `--ignored`) and are committed. Every later release must open them to exactly the
//! state asserted here. Never regenerate them; add a new set for a new version.
//!
//! - `snapshot-and-tail`: 400 events, a snapshot after 250 (position `tail` at 3000),
//!   three preallocated 4 KiB segments (a checkpoint unlinks segments only once two
//!   snapshots exist, so the WAL still holds every event).
//! - `torn-tail`: 300 events, then half a record after the last one (a crash during a
//!   write).
//! - `damaged-newest-snapshot`: 350 events, snapshots after 150 and 280; one byte of
//!   the newest snapshot's body flipped.
//!
//! The same file shows what the "Evolving your events" section of the format docs
//! says: an event type with a new variant at the end still opens these stores, and
//! one with a new field fails with an error that says so.
mod common;
use common::copy_dir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snapwal::{CloseOptions, Options, Position, State, Store, SyncPolicy};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Accounts {
    balances: BTreeMap<String, i64>,
    applied: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Ev {
    Move { account: String, delta: i64 },
}

impl State for Accounts {
    type Event = Ev;
    fn apply(&mut self, Ev::Move { account, delta }: &Ev) {
        *self.balances.entry(account.clone()).or_default() += delta;
        self.applied += 1;
    }
}

fn event(i: u64) -> Ev {
    Ev::Move {
        account: format!("acct{}", i % 5),
        delta: (i * 7 % 23) as i64 - 11,
    }
}

/// The state after events `1..=n`, written out (not computed by `apply`, so that a
/// change to `apply` or `event` cannot move the expectation along with it).
fn expected(n: u64) -> Accounts {
    let balances: &[(&str, i64)] = match n {
        300 => &[
            ("acct0", -21),
            ("acct1", 1),
            ("acct2", 7),
            ("acct3", -10),
            ("acct4", 19),
        ],
        350 => &[
            ("acct0", 1),
            ("acct1", -4),
            ("acct2", 3),
            ("acct3", 10),
            ("acct4", -6),
        ],
        400 => &[
            ("acct0", -19),
            ("acct1", 18),
            ("acct2", 3),
            ("acct3", -12),
            ("acct4", 19),
        ],
        _ => unreachable!("no golden state after {n}"),
    };
    Accounts {
        balances: balances.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
        applied: n,
    }
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/v1")
        .join(name)
}

/// A copy of a golden store (opening changes a directory: it cuts, moves aside).
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&golden(name), dir.path());
    dir
}

fn opts() -> Options {
    Options::default()
        .sync(SyncPolicy::Always)
        .segment_bytes(4096)
}

#[test]
fn the_expected_states_are_what_apply_gives() {
    for n in [300, 350, 400] {
        let mut s = Accounts::default();
        (1..=n).for_each(|i| s.apply(&event(i)));
        assert_eq!(s, expected(n), "after {n}");
    }
}

#[test]
fn v1_snapshot_and_tail_opens_to_the_exact_state() {
    let dir = copy_of("snapshot-and-tail");
    let (store, report) = Store::<Accounts>::open_with_report(dir.path(), opts()).unwrap();
    assert_eq!(report.snapshot_seq, Some(250));
    assert_eq!(report.records_replayed, 150);
    assert_eq!(report.torn_tail, None);
    assert!(report.snapshots_skipped.is_empty());
    assert_eq!(store.seq(), 400);
    assert_eq!(*store.current().state(), expected(400));
    assert_eq!(
        store.position("tail").get(),
        Position {
            offset: 3000,
            inode: 11,
            timestamp: 250
        }
    );
    // It keeps working: append, checkpoint, reopen.
    store.append(&event(401)).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let store = Store::<Accounts>::open(dir.path(), opts()).unwrap();
    assert_eq!(store.seq(), 401);
    assert_eq!(store.current().applied, 401);
    store.close().unwrap();
}

#[test]
fn v1_torn_tail_is_cut_and_the_rest_opens() {
    let dir = copy_of("torn-tail");
    let (store, report) = Store::<Accounts>::open_with_report(dir.path(), opts()).unwrap();
    let (segment, offset, bytes) = report.torn_tail.clone().expect("a torn tail");
    assert_eq!(
        segment.file_name().unwrap(),
        "00000000000000000170.wal",
        "{segment:?}"
    );
    assert_eq!((offset, bytes), (3176, 7));
    assert_eq!(report.snapshot_seq, None);
    assert_eq!(store.seq(), 300);
    assert_eq!(*store.current().state(), expected(300));
    store.close().unwrap();
    // Strict recovery refuses the same directory, naming the segment and offset.
    let dir = copy_of("torn-tail");
    match Store::<Accounts>::open(dir.path(), opts().recovery(snapwal::RecoveryPolicy::Strict)) {
        Err(snapwal::Error::TornTail {
            path,
            offset: o,
            bytes: b,
        }) => {
            assert_eq!(path.file_name(), segment.file_name());
            assert_eq!((o, b), (offset, bytes));
        }
        other => panic!("expected TornTail, got {:?}", other.map(|s| s.seq())),
    }
}

#[test]
fn v1_damaged_newest_snapshot_falls_back_to_the_older_one() {
    let dir = copy_of("damaged-newest-snapshot");
    let (store, report) = Store::<Accounts>::open_with_report(dir.path(), opts()).unwrap();
    assert_eq!(report.snapshot_seq, Some(150));
    assert_eq!(report.snapshots_skipped.len(), 1);
    let (skipped, why) = &report.snapshots_skipped[0];
    assert_eq!(skipped.file_name().unwrap(), "00000000000000000280.snap");
    assert!(why.contains("body checksum mismatch"), "{why}");
    assert_eq!(report.records_replayed, 200);
    assert_eq!(store.seq(), 350);
    assert_eq!(*store.current().state(), expected(350));
    assert!(dir
        .path()
        .join("snap/00000000000000000280.snap.corrupt")
        .exists());
    store.close().unwrap();
}

#[test]
fn the_golden_files_are_committed_unchanged() {
    // Opening copies must never have touched the originals.
    for name in ["snapshot-and-tail", "torn-tail", "damaged-newest-snapshot"] {
        let dir = golden(name);
        assert!(dir.join("wal").is_dir(), "{name}");
        // Git keeps no empty directory: a store without a snapshot has no `snap/` here.
        let Ok(snaps) = std::fs::read_dir(dir.join("snap")) else {
            continue;
        };
        let corrupt = snaps
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".corrupt")
            })
            .count();
        assert_eq!(corrupt, 0, "{name}");
    }
}

// "Evolving your events", against a real v1 log.

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct AccountsNewVariant {
    balances: BTreeMap<String, i64>,
    applied: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum EvNewVariant {
    Move { account: String, delta: i64 },
    Close { account: String }, // added at the end
}

impl State for AccountsNewVariant {
    type Event = EvNewVariant;
    fn apply(&mut self, event: &EvNewVariant) {
        match event {
            EvNewVariant::Move { account, delta } => {
                *self.balances.entry(account.clone()).or_default() += delta;
            }
            EvNewVariant::Close { account } => {
                self.balances.remove(account);
            }
        }
        self.applied += 1;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct AccountsNewField {
    balances: BTreeMap<String, i64>,
    applied: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum EvNewField {
    Move {
        account: String,
        delta: i64,
        #[serde(default)]
        memo: String, // a new field: old payloads end before it
    },
}

impl State for AccountsNewField {
    type Event = EvNewField;
    fn apply(&mut self, EvNewField::Move { account, delta, .. }: &EvNewField) {
        *self.balances.entry(account.clone()).or_default() += delta;
        self.applied += 1;
    }
}

#[test]
fn a_new_variant_at_the_end_still_reads_the_v1_log() {
    let dir = copy_of("snapshot-and-tail");
    let store = Store::<AccountsNewVariant>::open(dir.path(), opts()).unwrap();
    assert_eq!(store.seq(), 400);
    assert_eq!(store.current().balances, expected(400).balances);
    store
        .append(&EvNewVariant::Close {
            account: "acct0".into(),
        })
        .unwrap();
    assert!(!store.current().balances.contains_key("acct0"));
    store.close().unwrap();
}

#[test]
fn a_new_field_fails_with_an_error_that_points_to_the_docs() {
    let dir = copy_of("snapshot-and-tail");
    let err = match Store::<AccountsNewField>::open(dir.path(), opts()) {
        Err(e) => e,
        Ok(s) => panic!("opened at seq {} with an incompatible event type", s.seq()),
    };
    let snapwal::Error::Decode { path, offset, .. } = &err else {
        panic!("expected Decode, got {err:?}");
    };
    assert!(path.starts_with(dir.path().join("wal")), "{path:?}");
    assert!(*offset >= 32);
    let text = err.to_string();
    assert!(text.contains(&format!("at offset {offset}")), "{text}");
    assert!(
        text.contains("no longer decodes as the state's event or state type"),
        "{text}"
    );
    assert!(text.contains("Evolving your events"), "{text}");
}

/// Writes `tests/data/v1/`. Run once, by hand, by the release that introduced format
/// v1: `cargo test --test golden_data_v1 -- --ignored`. Refuses to overwrite.
#[test]
#[ignore = "writes the committed golden stores; never rerun once they exist"]
fn generate_golden_v1_stores() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1");
    for name in ["snapshot-and-tail", "torn-tail", "damaged-newest-snapshot"] {
        assert!(
            !root.join(name).exists(),
            "{name} exists: golden stores are never regenerated"
        );
    }
    let no_final = CloseOptions::default().final_checkpoint(None);

    let dir = root.join("snapshot-and-tail");
    let store = Store::<Accounts>::open(&dir, opts()).unwrap();
    for i in 1..=400 {
        store.append(&event(i)).unwrap();
        if i == 250 {
            store.position("tail").set(Position {
                offset: 3000,
                inode: 11,
                timestamp: 250,
            });
            store.checkpoint().unwrap();
        }
    }
    store.close_with(no_final).unwrap();

    let dir = root.join("torn-tail");
    let store = Store::<Accounts>::open(&dir, opts().preallocate(false)).unwrap();
    for i in 1..=300 {
        store.append(&event(i)).unwrap();
    }
    store.close_with(no_final).unwrap();
    // Half a record after the last one: a length, a checksum and three seq bytes.
    let mut last: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    last.sort();
    let last = last.pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[20, 0, 0, 0, 0xde, 0xad]);
    bytes.push(41);
    std::fs::write(&last, bytes).unwrap();

    let dir = root.join("damaged-newest-snapshot");
    let store = Store::<Accounts>::open(&dir, opts()).unwrap();
    for i in 1..=350 {
        store.append(&event(i)).unwrap();
        if i == 150 || i == 280 {
            store.checkpoint().unwrap();
        }
    }
    store.close_with(no_final).unwrap();
    let snap = dir.join("snap/00000000000000000280.snap");
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes[50] ^= 0x10;
    std::fs::write(&snap, bytes).unwrap();
}
