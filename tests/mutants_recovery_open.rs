//! What `Store::open` does around recovery: counts the temp files it removes from
//! `snap/` and `pos/`, makes durable the move aside of a damaged snapshot and the
//! directories of a store it recovered data from (and of a new store, at its first
//! sync, up to the parent it was created in, the current directory for a bare
//! relative name), and starts the interval sync. All but the last test kill mutants
//! of `open_with_report` that cargo-mutants found missed by the recovery selection;
//! the interval test pins, within the selection, what slower tests also catch.
//!
//! Re-run with `cargo mutants -j 1 --config .cargo/mutants/recovery.toml`.
#![cfg(feature = "testing")]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use snapwal::fs::Fs;
use snapwal::testing::sim::SimFs;
use snapwal::{Options, Store, SyncPolicy};

fn options(fs: &Arc<SimFs>) -> Options {
    opts(SyncPolicy::Never).segment_bytes(4096).fs(fs.clone())
}

fn events(n: u64) -> Vec<Entry> {
    (0..n).map(|i| Entry::padded(1, i, 40)).collect()
}

#[test]
fn temp_files_in_snap_and_pos_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), SyncPolicy::Always).close().unwrap();
    for (sub, n) in [("snap", 2), ("pos", 1)] {
        for i in 0..n {
            let name = format!(".00000000000000000005.123.{i}.tmp");
            std::fs::write(dir.path().join(sub).join(name), b"half").unwrap();
        }
    }
    let (_store, report) =
        Store::<Ledger>::open_with_report(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(report.temp_files_removed, 3);
}

/// A damaged newest snapshot is moved aside at open, and the move is durable before
/// `open` returns: a power loss right after it leaves the damaged file under its
/// `.corrupt` name, not under the snapshot's.
#[test]
fn damaged_snapshot_move_aside_is_durable() {
    let fs = Arc::new(SimFs::new(8));
    let store = Store::<Ledger>::open("/s", options(&fs).keep_snapshots(2)).unwrap();
    let evs = events(20);
    store.append_batch(&evs[..10]).unwrap();
    store.checkpoint().unwrap();
    store.append_batch(&evs[10..]).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let newest = Path::new("/s/snap/00000000000000000020.snap");
    let mut bytes = fs.contents(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let f = fs.open_write(newest).unwrap();
    f.write_all_at(&bytes, 0).unwrap();
    f.sync_data().unwrap();

    let (store, report) = Store::<Ledger>::open_with_report("/s", options(&fs)).unwrap();
    assert_eq!(report.snapshot_seq, Some(10));
    assert_eq!(report.quarantined.len(), 1, "{:?}", report.quarantined);
    let aside = report.quarantined[0].clone();
    assert!(fs.exists_durably(&aside), "{}", aside.display());
    assert!(!fs.exists_durably(newest));
    drop(store);
    let image = Arc::new(fs.crash_all_dropped());
    assert!(!image.exists(newest));
    let store = Store::<Ledger>::open("/s", options(&image)).unwrap();
    assert_eq!(*store.current().state(), replayed(&evs));
}

/// A store directory whose files are durable but whose own entries are not (copied
/// in, or left by a crash before its directories were synced): once `open` has
/// recovered its records they are durable, with the directories that hold them.
#[test]
fn recovered_store_directories_are_synced_at_open() {
    let source = Arc::new(SimFs::new(9));
    let store = Store::<Ledger>::open("/s", options(&source)).unwrap();
    let evs = events(30);
    store.append_batch(&evs).unwrap();
    store.close().unwrap();

    let fs = Arc::new(SimFs::new(10));
    for name in source.list(Path::new("/s/wal")).unwrap() {
        let path = Path::new("/s/wal").join(&name);
        fs.create_dir_all(Path::new("/s/wal")).unwrap();
        let f = fs.create_new(&path).unwrap();
        f.write_all_at(&source.contents(&path).unwrap(), 0).unwrap();
        f.sync_data().unwrap();
    }
    assert!(!fs.exists_durably("/s"));
    let (store, report) = Store::<Ledger>::open_with_report("/s", options(&fs)).unwrap();
    assert_eq!(report.seq, 30);
    assert!(fs.exists_durably("/s/wal"));
    drop(store);
    let image = Arc::new(fs.crash_all_dropped());
    let store = Store::<Ledger>::open("/s", options(&image)).unwrap();
    assert_eq!(store.seq(), 30);
    assert_eq!(*store.current().state(), replayed(&evs));
}

/// A new store created in an existing directory: its first sync makes its own entry
/// in that parent durable, so a power loss after the sync keeps the store.
#[test]
fn new_store_entry_in_its_parent_is_durable_after_the_first_sync() {
    let fs = Arc::new(SimFs::new(11));
    fs.create_dir_all(Path::new("/a/b")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.sync_dir(Path::new("/a")).unwrap();
    let store = Store::<Ledger>::open("/a/b/store", options(&fs)).unwrap();
    let evs = events(5);
    store.append_batch(&evs).unwrap();
    assert_eq!(store.sync().unwrap(), 5);
    assert!(fs.exists_durably("/a/b/store/wal"));
    drop(store);
    let image = Arc::new(fs.crash_all_dropped());
    let store = Store::<Ledger>::open("/a/b/store", options(&image)).unwrap();
    assert_eq!(store.seq(), 5);
}

/// `SyncPolicy::Interval` starts a thread that syncs in the background: appended
/// records become durable without any call to `sync`.
#[test]
fn interval_policy_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let options = opts(SyncPolicy::Interval(Duration::from_millis(5)));
    let store = Store::<Ledger>::open(dir.path(), options).unwrap();
    store.append_batch(&events(7)).unwrap();
    let start = Instant::now();
    while store.current_durable().seq() < 7 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no background sync"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    store.close().unwrap();
}

/// A store opened by a relative name with no directory part (`"store"`): its parent
/// is the current directory, which its first durable write syncs.
#[test]
fn store_opened_by_a_bare_relative_name_syncs_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    // Every other test of this binary uses absolute paths.
    std::env::set_current_dir(dir.path()).unwrap();
    let result = (|| -> snapwal::Result<u64> {
        let store = Store::<Ledger>::open("store", opts(SyncPolicy::Always))?;
        store.append(&Entry::new(1, 1))?;
        let seq = store.sync()?;
        store.close()?;
        Ok(seq)
    })();
    std::env::set_current_dir(before).unwrap();
    assert_eq!(result.unwrap(), 1);
    assert!(dir.path().join("store/wal").is_dir());
}
