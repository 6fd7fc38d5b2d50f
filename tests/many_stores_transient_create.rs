//! A transient failure to create a WAL segment, or to open a directory to sync it
//! (too many open files), is a retryable error for the appends that needed the write
//! or the sync, not a read-only store: the records stay staged, in order, and are
//! written and synced once descriptors are free.
mod common;
use common::hooked::{HookedFs, Op};
use common::*;
use snapwal::{Error, Store, SyncPolicy};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const EMFILE: i32 = 24;

/// A file system whose next `n` segment creations fail with `EMFILE`.
fn emfile_fs(failures: &Arc<AtomicU32>) -> HookedFs {
    let failures = Arc::clone(failures);
    HookedFs::new(move |op, path| {
        let segment = path.extension().is_some_and(|x| x == "wal");
        if op == Op::Create
            && segment
            && failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        Ok(())
    })
}

fn assert_retryable(e: &Error) {
    assert!(
        matches!(e, Error::SegmentUnavailable { .. }),
        "expected SegmentUnavailable, got {e:?}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.io_error().and_then(io::Error::raw_os_error), Some(EMFILE));
}

#[test]
fn emfile_on_the_first_segment_is_retryable_under_always() {
    let dir = tempfile::tempdir().unwrap();
    let failures = Arc::new(AtomicU32::new(3));
    let store: Store<Ledger> = Store::open(
        dir.path(),
        opts(SyncPolicy::Always).fs(Arc::new(emfile_fs(&failures))),
    )
    .unwrap();
    let first = Entry::new(1, 1);
    // The append needed its record durable: it gets the typed error. The event is
    // staged and visible, never acknowledged as durable.
    let e = store.append(&first).unwrap_err();
    assert_retryable(&e);
    assert_eq!(store.current().seq(), 1);
    assert_eq!(store.durable_seq(), 0);
    // Still failing: a sync says so, and the store is still writable.
    assert_retryable(&store.sync().unwrap_err());
    assert_retryable(&store.sync().unwrap_err());
    // Descriptors are free again: the staged record is written and synced, once.
    assert_eq!(store.sync().unwrap(), 1);
    let mut events = vec![first];
    for n in 2..=50 {
        let e = Entry::new(1, n);
        store.append(&e).unwrap();
        events.push(e);
    }
    assert_eq!(store.durable_seq(), 50);
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(*store.current().state(), replayed(&events));
    assert_eq!(failures.load(Ordering::SeqCst), 0);
}

#[test]
fn emfile_at_rotation_keeps_every_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let failures = Arc::new(AtomicU32::new(0));
    let store: Store<Ledger> = Store::open(
        dir.path(),
        opts(SyncPolicy::Always).fs(Arc::new(emfile_fs(&failures))),
    )
    .unwrap();
    let mut events = Vec::new();
    // Fill most of the first 64 KiB segment.
    for n in 0..400 {
        let e = Entry::padded(1, n, 100);
        store.append(&e).unwrap();
        events.push(e);
    }
    assert_eq!(segments(dir.path()).len(), 1);
    failures.store(2, Ordering::SeqCst);
    let mut errors = 0;
    for n in 400..1_000 {
        let e = Entry::padded(1, n, 100);
        match store.append(&e) {
            Ok(_) => {}
            Err(err) => {
                assert_retryable(&err);
                errors += 1;
            }
        }
        // Failed or not, the event is in the log: never append it twice.
        events.push(e);
    }
    assert_eq!(errors, 2, "one error per failed creation");
    assert!(segments(dir.path()).len() >= 2);
    assert_eq!(store.durable_seq(), 1_000);
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    assert_eq!(store.current().seq(), 1_000);
    assert_eq!(*store.current().state(), replayed(&events));
}

#[test]
fn emfile_under_never_queues_within_the_bound_then_pushes_back() {
    let dir = tempfile::tempdir().unwrap();
    let failures = Arc::new(AtomicU32::new(u32::MAX));
    let store: Store<Ledger> = Store::open(
        dir.path(),
        opts(SyncPolicy::Never)
            .max_staged_bytes(8 * 1024)
            .fs(Arc::new(emfile_fs(&failures))),
    )
    .unwrap();
    let mut events = Vec::new();
    // Queued while within the staging bound: the appends only need their records
    // handed on, and they stay staged.
    let mut refused = None;
    for n in 0..1_000 {
        let e = Entry::padded(1, n, 100);
        match store.append(&e) {
            Ok(_) => events.push(e),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    // Past the bound, back-pressure: the append is refused before it is staged.
    let refused = refused.expect("the staging bound pushes back");
    assert_retryable(&refused);
    assert_eq!(store.current().seq(), events.len() as u64);
    assert!(events.len() < 100, "{} appends staged", events.len());
    failures.store(0, Ordering::SeqCst);
    let e = Entry::padded(1, 5_000, 100);
    store.append(&e).unwrap();
    events.push(e);
    assert_eq!(store.sync().unwrap(), events.len() as u64);
    store.close().unwrap();
    let store = open(dir.path(), SyncPolicy::Never);
    assert_eq!(*store.current().state(), replayed(&events));
}

/// A file system whose `k`-th directory sync (counting from 1) fails to open the
/// directory (`EMFILE`).
fn emfile_on_dir_sync(k: u32) -> HookedFs {
    let calls = AtomicU32::new(0);
    HookedFs::new(move |op, _| {
        if op == Op::SyncDir && calls.fetch_add(1, Ordering::SeqCst) + 1 == k {
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        Ok(())
    })
}

#[test]
fn emfile_on_a_directory_sync_is_retryable_and_acknowledges_nothing() {
    // The first durable append of a new store syncs wal/, then the parent, then the
    // store's own directory (synced late, see `many_stores_lazy_dir_sync`): each
    // fails in turn.
    for k in 1..=3u32 {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("s");
        let fs = Arc::new(emfile_on_dir_sync(k));
        let store: Store<Ledger> = Store::open(&dir, opts(SyncPolicy::Always).fs(fs)).unwrap();
        let e = store.append(&Entry::new(1, 1)).unwrap_err();
        assert_retryable(&e);
        assert_eq!(store.durable_seq(), 0, "nothing acknowledged (k = {k})");
        // Descriptors free again: the sync completes, the store was never read-only.
        assert_eq!(store.sync().unwrap(), 1);
        store.append(&Entry::new(1, 2)).unwrap();
        assert_eq!(store.durable_seq(), 2);
        store.close().unwrap();
        let store: Store<Ledger> = Store::open(&dir, opts(SyncPolicy::Always)).unwrap();
        assert_eq!(store.current().count, 2);
        store.close().unwrap();
    }
}
