//! Opening a new store syncs no directory: its directories are made durable by its
//! first durable write (a record acknowledged under `Always`, a `sync`, or a
//! checkpoint that installs a file), before anything is acknowledged. A store that
//! holds data syncs them at open. The crash checker (`checker_concurrent`) proves the
//! crash side; these tests pin down when the syncs happen on the real file system.
mod common;
use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{CheckpointOutcome, Options, Store, SyncPolicy};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A real file system that records every directory it syncs.
fn recording() -> (Options, Arc<Mutex<Vec<PathBuf>>>) {
    let synced = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&synced);
    let fs = HookedFs::new(move |op, path| {
        if op == Op::SyncDir {
            seen.lock().unwrap().push(path.to_path_buf());
        }
        Ok(())
    });
    (Options::default().fs(Arc::new(fs)), synced)
}

fn took(synced: &Mutex<Vec<PathBuf>>) -> Vec<PathBuf> {
    std::mem::take(&mut *synced.lock().unwrap())
}

fn canon(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

#[test]
fn a_new_store_syncs_its_directories_at_the_first_durable_append_not_at_open() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("actor-1");
    let (opts, synced) = recording();
    let store: Store<Ledger> = Store::open(&dir, opts.clone().sync(SyncPolicy::Always)).unwrap();
    assert_eq!(
        took(&synced),
        Vec::<PathBuf>::new(),
        "open of a new store syncs nothing"
    );

    store.append(&Entry::new(1, 0)).unwrap();
    let first = took(&synced);
    let synced_canon: Vec<_> = first.iter().map(|p| canon(p)).collect();
    for want in [parent.path(), dir.as_path(), &dir.join("wal")] {
        assert!(
            synced_canon.contains(&canon(want)),
            "the first durable append syncs {}: {first:?}",
            want.display()
        );
    }
    // Once only: later appends to the same segment sync no directory.
    store.append(&Entry::new(1, 1)).unwrap();
    assert_eq!(took(&synced), Vec::<PathBuf>::new());
    store.close().unwrap();

    // A store that holds data syncs its parent and itself at open.
    took(&synced);
    let store: Store<Ledger> = Store::open(&dir, opts.sync(SyncPolicy::Always)).unwrap();
    let at_open: Vec<_> = took(&synced).iter().map(|p| canon(p)).collect();
    assert!(at_open.contains(&canon(parent.path())), "{at_open:?}");
    assert!(at_open.contains(&canon(&dir)), "{at_open:?}");
    assert_eq!(store.current().count, 2);
    store.close().unwrap();
}

#[test]
fn a_checkpoint_of_a_new_store_syncs_its_directories_before_it_installs_a_file() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("tailer");
    let (opts, synced) = recording();
    // Never: no append syncs anything; the checkpoint is the first durable write.
    let store: Store<Ledger> = Store::open(&dir, opts.sync(SyncPolicy::Never)).unwrap();
    // Only a position: the WAL has nothing to sync, the positions record is the first
    // file installed.
    store.position("input").set(snapwal::Position {
        offset: 42,
        ..Default::default()
    });
    assert_eq!(took(&synced), Vec::<PathBuf>::new());
    let rep = store.checkpoint().unwrap();
    assert_eq!(rep.outcome, CheckpointOutcome::PositionsSaved);
    let all = took(&synced);
    let pos = |p: &PathBuf| all.iter().position(|q| canon(q) == canon(p));
    let parent_at = pos(&parent.path().to_path_buf()).expect("parent synced");
    let dir_at = pos(&dir).expect("store directory synced");
    let pos_at = pos(&dir.join("pos")).expect("pos/ synced");
    assert!(
        parent_at < pos_at && dir_at < pos_at,
        "the directories are durable before the record is installed: {all:?}"
    );
    store.close().unwrap();
    let store: Store<Ledger> = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(store.position("input").get().offset, 42);
    store.close().unwrap();
}

#[test]
fn a_failed_sync_of_a_new_stores_directories_acknowledges_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("s");
    let fail_parent = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&fail_parent);
    let parent_path = canon(parent.path());
    let fs = HookedFs::new(move |op, path| {
        if op == Op::SyncDir
            && flag.load(std::sync::atomic::Ordering::SeqCst)
            && path.canonicalize().ok().as_deref() == Some(parent_path.as_path())
        {
            return Err(std::io::Error::other(
                "injected: fsync of the parent failed",
            ));
        }
        Ok(())
    });
    let opts = Options::default().fs(Arc::new(fs)).sync(SyncPolicy::Never);
    let store: Store<Ledger> = Store::open(&dir, opts).unwrap();
    store.append(&Entry::new(1, 0)).unwrap();
    // The sync that would make the first record durable cannot: nothing is
    // acknowledged as durable.
    let err = store.sync().unwrap_err();
    assert!(
        matches!(&err, snapwal::Error::ReadOnly { cause } if cause.to_string().contains("fsync dir")),
        "{err:?}"
    );
    assert_eq!(store.durable_seq(), 0);
    drop(store);
    // Reopened on a healthy file system, the record written to the OS is there.
    fail_parent.store(false, std::sync::atomic::Ordering::SeqCst);
    let store: Store<Ledger> = Store::open(&dir, Options::default()).unwrap();
    assert_eq!(store.current().count, 1);
    store.close().unwrap();
}
