//! The WAL's sync path, for the quick cargo-mutants selection
//! (`.cargo/mutants/purge-sync.toml`): `close` makes every record durable (a power
//! loss right after it loses nothing); a failed fsync of `wal/` makes the log
//! read-only, unless the directory could not even be opened for a transient reason
//! (`EMFILE`), which is a retryable error that leaves the log writable; a segment
//! create failing with EIO makes the log read-only. The last one kills mutants found
//! missed (`is_transient` taken as always true); the others pin, within this
//! selection, what other tests also catch.
#![cfg(feature = "testing")]

mod common;

use std::sync::Arc;

use common::*;
use snapwal::testing::sim::{Fault, FaultError, OpKind, SimFs};
use snapwal::{CloseOptions, Error, Options, Store, SyncPolicy};

const EIO: i32 = 5;
const EMFILE: i32 = 24;

fn options(fs: &Arc<SimFs>) -> Options {
    opts(SyncPolicy::Never).segment_bytes(4096).fs(fs.clone())
}

fn events(n: u64) -> Vec<Entry> {
    (0..n).map(|i| Entry::padded(1, i, 40)).collect()
}

/// Under `Never`, `close` (without a final checkpoint) syncs the WAL: its report says
/// every record is durable, and a power loss right after it keeps them all.
#[test]
fn close_makes_every_record_durable() {
    let fs = Arc::new(SimFs::new(5));
    let store = Store::<Ledger>::open("/s", options(&fs)).unwrap();
    let evs = events(150);
    store.append_batch(&evs).unwrap();
    let report = store
        .close_with(CloseOptions::default().final_checkpoint(None))
        .unwrap();
    assert_eq!(report.durable_seq, 150);
    let image = Arc::new(fs.crash_all_dropped());
    let store = Store::<Ledger>::open("/s", options(&image)).unwrap();
    assert_eq!(store.seq(), 150);
    assert_eq!(*store.current().state(), replayed(&evs));
}

/// An fsync of `wal/` that fails with EIO fails the sync and makes the log read-only:
/// the directory entry of a segment may be lost, so nothing more is acknowledged.
#[test]
fn failed_wal_dir_sync_makes_the_log_read_only() {
    let fs = Arc::new(SimFs::new(6));
    let store = Store::<Ledger>::open("/s", options(&fs)).unwrap();
    store.append_batch(&events(10)).unwrap();
    fs.inject(Fault::on_op(OpKind::SyncDir, FaultError::Eio).path_contains("/s/wal"));
    let err = store.sync().unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert_eq!(err.io_error().and_then(|e| e.raw_os_error()), Some(EIO));
    assert!(!err.is_retryable());
    assert!(matches!(
        store.append(&Entry::new(2, 0)),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(store.sync(), Err(Error::ReadOnly { .. })));
}

/// `wal/` could not be opened to sync it (EMFILE): a retryable error, nothing
/// acknowledged; the log stays writable and the next sync makes everything durable.
#[test]
fn wal_dir_that_cannot_be_opened_is_retried() {
    let fs = Arc::new(SimFs::new(7));
    let store = Store::<Ledger>::open("/s", options(&fs)).unwrap();
    let evs = events(10);
    store.append_batch(&evs).unwrap();
    fs.inject(Fault::on_op(OpKind::SyncDir, FaultError::Os(EMFILE)).path_contains("/s/wal"));
    let err = store.sync().unwrap_err();
    assert!(matches!(err, Error::SegmentUnavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.io_error().and_then(|e| e.raw_os_error()), Some(EMFILE));
    assert_eq!(store.sync().unwrap(), 10);
    store.append(&Entry::new(2, 0)).unwrap();
    assert_eq!(store.sync().unwrap(), 11);
    let image = Arc::new(fs.crash_all_dropped());
    let store = Store::<Ledger>::open("/s", options(&image)).unwrap();
    assert_eq!(store.seq(), 11);
}

/// A segment create that fails for a reason that is not transient (EIO) makes the log
/// read-only: it is not retried as "unavailable".
#[test]
fn segment_create_failing_with_eio_makes_the_log_read_only() {
    let fs = Arc::new(SimFs::new(8));
    let store = Store::<Ledger>::open("/s", options(&fs)).unwrap();
    fs.inject(Fault::on_op(OpKind::CreateNew, FaultError::Eio).path_contains("/s/wal/"));
    // The append's write creates the first segment.
    let err = store.append(&Entry::new(1, 0)).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(err.io_error().and_then(|e| e.raw_os_error()), Some(EIO));
    assert!(matches!(store.sync(), Err(Error::ReadOnly { .. })));
    assert!(matches!(
        store.append(&Entry::new(1, 1)),
        Err(Error::ReadOnly { .. })
    ));
}
