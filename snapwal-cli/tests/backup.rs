//! `snapwal backup DIR DEST`: a copy of a store whose writer holds the lock, taken
//! without the lock and without changing the store, opens as the store's prefix.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};

/// Every event appended, in order: the state after seq `k` is exactly `[1, ..., k]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Numbers(Vec<u64>);

impl State for Numbers {
    type Event = u64;
    fn apply(&mut self, n: &u64) {
        self.0.push(*n);
    }
}

fn opts() -> Options {
    Options::default()
        .sync(SyncPolicy::Never)
        .segment_bytes(4096)
}

fn snapwal(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapwal"))
        .arg("backup")
        .args(args)
        .output()
        .unwrap()
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["", "wal", "snap", "pos"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn backup_of_a_live_store_opens_as_its_prefix_and_leaves_it_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let store = Store::<Numbers>::open(&live, opts()).unwrap();
    for n in 1..=1_000 {
        store.append(&n).unwrap();
        if n == 600 {
            store.checkpoint().unwrap();
        }
    }
    store.sync().unwrap();
    let before = files(&live);

    let dest = tmp.path().join("copy");
    let out = snapwal(&[&live, &dest]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("seq 1000;"), "{stdout}");
    assert!(stdout.contains(" linked, "), "{stdout}");
    assert_eq!(files(&live), before, "the backup changed the store");

    // The writer still holds its lock; the copy has a lock of its own.
    let copy = Store::<Numbers>::open(&dest, opts()).unwrap();
    assert_eq!(copy.seq(), 1_000);
    assert_eq!(copy.current().state().0, (1..=1_000).collect::<Vec<u64>>());
    copy.close().unwrap();
    store.close().unwrap();
}

#[test]
fn backup_cuts_a_torn_tail_at_the_last_whole_record() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let store = Store::<Numbers>::open(&live, opts()).unwrap();
    for n in 1..=300 {
        store.append(&n).unwrap();
    }
    store.close().unwrap();
    let last = std::fs::read_dir(live.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let end = bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count();
    bytes.truncate(end);
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2, 3]); // half a frame header
    std::fs::write(&last, bytes).unwrap();

    let dest = tmp.path().join("copy");
    assert!(snapwal(&[&live, &dest]).status.success());
    let (copy, report) = Store::<Numbers>::open_with_report(&dest, opts()).unwrap();
    assert_eq!(copy.seq(), 300);
    assert_eq!(report.torn_tail, None, "the copy ends on a whole record");
    copy.close().unwrap();
}

#[test]
fn backup_to_a_non_empty_destination_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let store = Store::<Numbers>::open(&live, opts()).unwrap();
    store.append(&1).unwrap();
    store.close().unwrap();
    let dest = tmp.path().join("taken");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("x"), b"x").unwrap();
    let out = snapwal(&[&live, &dest]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not an empty directory"), "{stderr}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);

    let out = snapwal(&[&tmp.path().join("no-store"), &tmp.path().join("d")]);
    assert_eq!(out.status.code(), Some(2));
}
