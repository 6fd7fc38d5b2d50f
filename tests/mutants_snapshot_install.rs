//! What `snapshot::write` reports and how its install treats each error of the
//! rename and of the read of a file already under the final name; the offsets of the
//! "bytes left over" and "trailing bytes" errors; the temp files' removal and its
//! logging. Each test kills mutants of `src/snapshot.rs` that cargo-mutants found
//! missed.
//!
//! Re-run with `cargo mutants -j 1 --config .cargo/mutants/install.toml`.
#![cfg(feature = "testing")]

mod common;

use std::path::Path;
use std::sync::Arc;

use snapwal::fs::{Fs, RealFs};
use snapwal::snapshot;
use snapwal::testing::sim::{Fault, FaultError, OpKind, SimFs};
use snapwal::Error;

const EIO: i32 = 5;

fn sim() -> Arc<SimFs> {
    let fs = Arc::new(SimFs::new(1));
    fs.create_dir_all(Path::new("/snap")).unwrap();
    fs
}

fn temps(fs: &SimFs) -> Vec<String> {
    fs.list(Path::new("/snap"))
        .unwrap()
        .into_iter()
        .filter(|n| snapshot::is_temp_name(n))
        .collect()
}

/// `Written::bytes` is the size of the file installed: the header plus the body, for a
/// body written through the buffer and for one larger than the buffer.
#[test]
fn written_bytes_is_the_size_of_the_installed_file() {
    let dir = tempfile::tempdir().unwrap();
    let small = (7u32, "seven".to_string());
    // A string is one write of its bytes: larger than the buffer, it bypasses it.
    let big = "x".repeat(3 << 20);
    let w = snapshot::write(&RealFs, dir.path(), 1, 9, &small).unwrap();
    assert!(w.installed);
    assert_eq!(w.bytes, std::fs::metadata(&w.path).unwrap().len());
    let w = snapshot::write(&RealFs, dir.path(), 2, 9, &big).unwrap();
    assert_eq!(w.bytes, std::fs::metadata(&w.path).unwrap().len());
    assert!(w.bytes > 3 << 20, "{}", w.bytes);
    let (header, back): (_, String) = snapshot::load(&RealFs, &w.path, Some(9)).unwrap();
    assert_eq!(header.seq, 2);
    assert_eq!(back, big);
}

/// A body that decodes with bytes left over is `Corrupt` at the offset of the first
/// byte left over (header length plus the bytes the decoder consumed).
#[test]
fn bytes_left_over_error_names_the_first_extra_byte() {
    let dir = tempfile::tempdir().unwrap();
    // 300 encodes as two varint bytes, 7 as one: a `u32` consumes two of three.
    let w = snapshot::write(&RealFs, dir.path(), 3, 9, &(300u32, 7u8)).unwrap();
    let err = snapshot::load::<u32>(&RealFs, &w.path, Some(9)).unwrap_err();
    match err {
        Error::Corrupt {
            path,
            offset,
            reason,
        } => {
            assert_eq!(path, w.path);
            assert_eq!(offset, 44 + 2, "{reason}");
            assert!(reason.contains("left over"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A rename that fails with anything but "already exists" is an error naming the
/// final path, even when a valid snapshot holds that name: it is never taken for "the
/// snapshot exists", and the existing file is neither kept as ours nor removed.
#[test]
fn rename_error_other_than_already_exists_is_returned() {
    let fs = sim();
    let first = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &1u32).unwrap();
    assert!(first.installed);
    let before = fs.contents(&first.path).unwrap();
    fs.inject(Fault::on_op(OpKind::Rename, FaultError::Eio));
    let err = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &2u32).unwrap_err();
    match &err {
        Error::Io { op, path, source } => {
            assert_eq!(*op, "rename snapshot");
            assert_eq!(path, &first.path);
            assert_eq!(source.raw_os_error(), Some(EIO));
        }
        other => panic!("expected the rename's EIO, got {other:?}"),
    }
    assert_eq!(
        fs.contents(&first.path),
        Some(before),
        "existing file untouched"
    );
    assert!(temps(&fs).is_empty(), "{:?}", temps(&fs));
}

/// The same with no file under the final name: the error is the rename's own, not
/// "the name kept being taken" after retries.
#[test]
fn rename_error_with_a_free_name_is_the_rename_error() {
    let fs = sim();
    fs.inject(Fault::on_op(OpKind::Rename, FaultError::Eio).times(u64::MAX));
    let err = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &2u32).unwrap_err();
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(EIO),
        "{err}"
    );
    assert!(!fs.exists("/snap/00000000000000000007.snap"));
    assert!(temps(&fs).is_empty(), "{:?}", temps(&fs));
}

/// Reading the file already under the final name fails with `NotFound` (it vanished
/// between the rename and the read): the install tries again instead of failing.
#[test]
fn existing_snapshot_not_found_on_read_is_retried() {
    let fs = sim();
    let first = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &1u32).unwrap();
    fs.inject(
        Fault::on_op(OpKind::Read, FaultError::Kind(std::io::ErrorKind::NotFound))
            .path_contains(".snap"),
    );
    let w = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &2u32).unwrap();
    assert!(!w.installed, "the valid existing snapshot stands in");
    assert_eq!(w.path, first.path);
    assert_eq!(fs.faults_fired(), 1);
    let (_, v): (_, u32) = snapshot::load(fs.as_ref(), &w.path, Some(9)).unwrap();
    assert_eq!(v, 1);
    assert!(temps(&fs).is_empty(), "{:?}", temps(&fs));
}

/// Reading the file already under the final name fails with another error (EIO): the
/// install fails with that error at once; the file is not moved aside (nothing can be
/// said of it) and the temp file is removed.
#[test]
fn existing_snapshot_read_error_fails_the_install() {
    let fs = sim();
    let first = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &1u32).unwrap();
    fs.inject(
        Fault::on_op(OpKind::Read, FaultError::Eio)
            .path_contains(".snap")
            .times(u64::MAX),
    );
    let err = snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &2u32).unwrap_err();
    match &err {
        Error::Io { op, path, source } => {
            assert_eq!(*op, "read");
            assert_eq!(path, &first.path);
            assert_eq!(source.raw_os_error(), Some(EIO));
        }
        other => panic!("expected the read's EIO, got {other:?}"),
    }
    assert_eq!(fs.faults_fired(), 1, "no retry after a read error");
    assert!(fs.exists(&first.path));
    assert_eq!(fs.list(Path::new("/snap")).unwrap().len(), 1);
}

/// A temp file that cannot be removed is logged at WARN naming it; a temp file
/// already gone is not.
#[test]
fn temp_file_that_cannot_be_removed_is_logged() {
    let fs = sim();
    snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &1u32).unwrap();
    // Kept: the guard removes the temp file, and that remove fails.
    fs.inject(Fault::on_op(OpKind::Remove, FaultError::Eio).path_contains(".tmp"));
    let (w, log) = common::logs::capture(|| {
        snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &2u32).unwrap()
    });
    assert!(!w.installed);
    assert!(log.contains("could not remove snapshot temp file"), "{log}");
    assert_eq!(temps(&fs).len(), 1);
    // Installed: nothing to remove, nothing logged.
    let (w, log) = common::logs::capture(|| {
        snapshot::write(fs.as_ref(), Path::new("/snap"), 8, 9, &2u32).unwrap()
    });
    assert!(w.installed);
    assert!(!log.contains("could not remove"), "{log}");
}

/// A file longer than its header says is `Corrupt` at the first byte past the body.
#[test]
fn trailing_bytes_error_names_the_end_of_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let w = snapshot::write(&RealFs, dir.path(), 4, 9, &(300u32, 7u8)).unwrap();
    let mut bytes = std::fs::read(&w.path).unwrap();
    let body_len = bytes.len() as u64 - 44;
    bytes.extend_from_slice(b"extra");
    match snapshot::decode::<(u32, u8)>(&bytes, &w.path, Some(9)).unwrap_err() {
        Error::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, 44 + body_len, "{reason}");
            assert!(reason.contains("trailing"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// `remove_temps` removes only temp files, returns how many, and logs once when it
/// removed any (never for a directory without temp files).
#[test]
fn remove_temps_counts_and_logs_only_what_it_removed() {
    let fs = sim();
    snapshot::write(fs.as_ref(), Path::new("/snap"), 7, 9, &1u32).unwrap();
    let (n, log) =
        common::logs::capture(|| snapshot::remove_temps(fs.as_ref(), Path::new("/snap")));
    assert_eq!(n.unwrap(), 0);
    assert!(!log.contains("removed snapshot temp files"), "{log}");
    for i in 0..2 {
        fs.create_new(&Path::new("/snap").join(format!(".00000000000000000009.1.{i}.tmp")))
            .unwrap();
    }
    let (n, log) =
        common::logs::capture(|| snapshot::remove_temps(fs.as_ref(), Path::new("/snap")));
    assert_eq!(n.unwrap(), 2);
    assert_eq!(
        log.matches("removed snapshot temp files").count(),
        1,
        "{log}"
    );
    assert!(temps(&fs).is_empty());
    assert_eq!(fs.list(Path::new("/snap")).unwrap().len(), 1);
}
