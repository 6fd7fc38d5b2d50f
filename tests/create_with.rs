//! `Store::create_with`: a new store that starts from a state the application already
//! has (a snapshot at seq 0), refusing a directory that holds a store and changing
//! nothing there; a failed import leaves a directory that can be imported into again.
mod common;
use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{Error, Options, Store, SyncPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Every file under `dir`: relative name, length and contents.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn initial() -> Ledger {
    replayed(&(0..50).map(|n| Entry::new(9, n)).collect::<Vec<_>>())
}

#[test]
fn the_initial_state_is_seq_0_and_events_apply_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let start = initial();
    let store = Store::create_with(dir.path(), start.clone(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(store.seq(), 0);
    assert_eq!(*store.current().state(), start);
    let events: Vec<_> = (0..10).map(|n| Entry::new(1, n)).collect();
    for e in &events {
        store.append(e).unwrap();
    }
    assert_eq!(store.seq(), 10);
    store.close().unwrap();
    // The inspection tools read a store that starts from a snapshot at seq 0.
    #[cfg(feature = "inspect")]
    {
        let seen = snapwal::inspect::inspect(dir.path()).unwrap();
        assert!(seen.is_clean(), "{:?}", seen.damage);
        assert!(
            matches!(
                seen.recovery,
                snapwal::inspect::Recovery::Reaches {
                    seq: 10,
                    snapshot: Some(0),
                    ..
                }
            ),
            "{:?}",
            seen.recovery
        );
    }

    let mut expect = start.clone();
    for e in &events {
        snapwal::State::apply(&mut expect, e);
    }
    let store: Store<Ledger> = Store::open(dir.path(), opts(SyncPolicy::Always)).unwrap();
    assert_eq!(*store.current().state(), expect);
    // Checkpoints take over from the initial snapshot; cleanup may remove it.
    store.checkpoint().unwrap();
    store.append(&Entry::new(1, 10)).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    let store: Store<Ledger> = Store::open(dir.path(), opts(SyncPolicy::Always)).unwrap();
    snapwal::State::apply(&mut expect, &Entry::new(1, 10));
    assert_eq!(*store.current().state(), expect);
    store.close().unwrap();
}

#[test]
fn a_directory_holding_a_store_is_refused_and_left_unchanged() {
    // Records only (no snapshot yet).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append(&Entry::new(1, 1)).unwrap();
    store.close().unwrap();
    let before = tree(dir.path());
    let err = Store::create_with(dir.path(), initial(), opts(SyncPolicy::Always)).unwrap_err();
    assert!(matches!(err, Error::StoreExists { .. }), "{err:?}");
    assert_eq!(tree(dir.path()), before, "nothing changed");
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.current().count, 1);
    store.close().unwrap();

    // Only a positions record (no event ever appended).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.position("src").set(snapwal::Position {
        offset: 3,
        ..Default::default()
    });
    store.checkpoint().unwrap();
    store.close().unwrap();
    let before = tree(dir.path());
    let err = Store::create_with(dir.path(), initial(), opts(SyncPolicy::Always)).unwrap_err();
    assert!(matches!(err, Error::StoreExists { .. }), "{err:?}");
    assert_eq!(tree(dir.path()), before);

    // Imported once: a second import is refused.
    let dir = tempfile::tempdir().unwrap();
    Store::create_with(dir.path(), initial(), opts(SyncPolicy::Always))
        .unwrap()
        .close()
        .unwrap();
    let err =
        Store::create_with(dir.path(), Ledger::default(), opts(SyncPolicy::Always)).unwrap_err();
    assert!(matches!(err, Error::StoreExists { .. }), "{err:?}");
}

#[test]
fn a_failed_import_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&fail);
    let fs = HookedFs::new(move |op, _| {
        if op == Op::Rename && flag.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected: rename failed"));
        }
        Ok(())
    });
    let opts_failing = Options::default().fs(Arc::new(fs));
    let err = Store::create_with(dir.path(), initial(), opts_failing.clone()).unwrap_err();
    assert!(err.to_string().contains("rename"), "{err}");
    // Nothing was installed: the directory is still new, and the import can run again.
    fail.store(false, Ordering::SeqCst);
    let store = Store::create_with(dir.path(), initial(), opts_failing).unwrap();
    assert_eq!(*store.current().state(), initial());
    store.close().unwrap();
    let store: Store<Ledger> = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(*store.current().state(), initial());
    store.close().unwrap();
}
