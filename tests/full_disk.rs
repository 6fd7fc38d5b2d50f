//! A full disk (a small tmpfs) makes an append fail with a typed ENOSPC error and the
//! store read-only; reads go on, and once space is freed a reopen recovers a prefix
//! holding every acknowledged event.
//!
//! Needs root to mount the tmpfs. A skipped scenario must not pass in silence: as
//! root a failed mount fails the test; without root the test fails too, unless
//! `SNAPWAL_SKIP_ROOT_TESTS=1` says to skip it (then it prints that it skipped).
mod common;
use common::*;
use snapwal::{Error, Store, SyncPolicy};
use std::path::{Path, PathBuf};
use std::process::Command;

const ENOSPC: i32 = 28;

/// A tmpfs mounted on a directory, unmounted when dropped (also when a test fails).
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` on `dir`, or says why it cannot.
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root".into());
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a test failed holding a file open): detach it lazily.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Serializes the tests of this file: each spawns `mount` and `umount`, and a process
/// forked while another test holds a store keeps copies of its descriptors until it
/// execs (the `LOCK` flock among them, so a reopen at that moment would see `Locked`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fills a 2 MiB tmpfs (a little more than 1 MiB of it with a filler file) with ~1 KiB
/// events until an append fails, checks the failure, frees the filler and reopens.
///
/// The filler leaves free space that is not a whole number of 64 KiB segments, so
/// without preallocation the disk fills in the middle of a segment: the failing write
/// stores part of its record (a torn tail for recovery to cut). With preallocation the
/// `fallocate` of the next segment fails first: that is only a warning (the segment is
/// still empty, nothing is lost), the segment is used without a reservation, and the
/// store fails at the write that finds the disk full, as without preallocation.
fn fill_then_recover(preallocate: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _mount = match Mount::tmpfs(dir.path(), "2m") {
        Ok(m) => m,
        Err(why)
            if !rustix::process::geteuid().is_root()
                && std::env::var_os("SNAPWAL_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") =>
        {
            eprintln!("SKIPPED full_disk (preallocate={preallocate}): {why}");
            return;
        }
        Err(why) => panic!(
            "full_disk (preallocate={preallocate}) cannot run: {why}; run as root, or set \
             SNAPWAL_SKIP_ROOT_TESTS=1 to skip it on purpose"
        ),
    };
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0xa5u8; (1 << 20) + 10 * 1024]).unwrap();
    let options = opts(SyncPolicy::Always)
        .segment_bytes(64 * 1024)
        .preallocate(preallocate);
    let store = Store::<Ledger>::open(dir.path(), options.clone()).unwrap();

    let events: Vec<Entry> = (0..10_000).map(|i| Entry::padded(5, i, 1000)).collect();
    let mut acknowledged = 0u64;
    let mut failure = None;
    for e in &events {
        match store.append(e) {
            Ok(seq) => {
                assert_eq!(seq, acknowledged + 1);
                assert!(store.durable_seq() >= seq);
                acknowledged = seq;
            }
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    let err = failure.expect("a 2 MiB tmpfs must fill up");
    eprintln!("preallocate={preallocate}: {acknowledged} appends acknowledged, then: {err}");
    assert!(
        acknowledged > 100,
        "the store failed long before the disk was full"
    );
    // The error is typed: the OS error is ENOSPC, and the store is now read-only.
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(ENOSPC),
        "{err:?}"
    );
    let Error::ReadOnly { cause } = &err else {
        panic!("the failed append should make the store read-only: {err:?}");
    };
    assert!(
        matches!(&**cause, Error::Io { op, .. } if *op == "write"),
        "{cause:?}"
    );

    // Later appends are refused with the same cause, without touching the disk.
    for i in 0..3 {
        match store.append(&Entry::new(6, i)) {
            Err(Error::ReadOnly { cause }) => {
                assert_eq!(
                    cause.io_error().and_then(|e| e.raw_os_error()),
                    Some(ENOSPC)
                );
            }
            other => panic!("append after the failure: {other:?}"),
        }
    }
    // Reads still work. The failed event was applied and published in the writer
    // section before its write failed, so the in-memory state shows it (not
    // acknowledged: the append returned an error); the refused ones never got a seq.
    let v = store.current();
    assert_eq!(v.seq(), acknowledged + 1);
    assert_eq!(*v.state(), replayed(&events[..=acknowledged as usize]));
    assert_eq!(store.durable_seq(), acknowledged);
    drop(store);

    // Free the space and reopen: every acknowledged event is there, and nothing past
    // the failed one.
    std::fs::remove_file(&filler).unwrap();
    let (opened, log) = logs::capture(|| Store::<Ledger>::open_with_report(dir.path(), options));
    let (store, report) = opened.unwrap();
    let k = store.seq();
    eprintln!(
        "preallocate={preallocate}: reopened at seq {k}, torn tail {:?}",
        report.torn_tail
    );
    if preallocate && report.torn_tail.is_none() {
        // The write that failed was the new segment's first: it holds no record and
        // is removed, with a warning.
        assert!(
            log.contains("holds no valid record"),
            "no warning about the empty segment:\n{log}"
        );
    } else {
        // The partial record is cut, with a warning that says how many bytes.
        let (_, offset, bytes) = report
            .torn_tail
            .clone()
            .expect("the partial write leaves a torn tail");
        assert!(bytes > 0);
        assert!(
            log.contains("cut torn tail"),
            "no torn-tail warning:\n{log}"
        );
        assert!(log.contains(&format!("offset={offset}")), "{log}");
        assert!(log.contains(&format!("{bytes} bytes")), "{log}");
    }
    assert!(
        k >= acknowledged,
        "acknowledged event lost: recovered {k} < {acknowledged}"
    );
    assert!(
        k <= acknowledged + 1,
        "recovered {k} events, more than were appended"
    );
    assert_eq!(*store.current().state(), replayed(&events[..k as usize]));
    // Writable again, and the log stays readable past the cut tail (or the removed
    // empty segment) on the next open.
    let more = Entry::new(9, 0);
    assert_eq!(store.append(&more).unwrap(), k + 1);
    store.close().unwrap();
    let store = Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Always)).unwrap();
    let mut expected = replayed(&events[..k as usize]);
    snapwal::State::apply(&mut expected, &more);
    assert_eq!(store.seq(), k + 1);
    assert_eq!(*store.current().state(), expected);
    store.close().unwrap();
}

#[test]
fn full_disk_without_preallocation_fails_typed_and_recovers() {
    fill_then_recover(false);
}

#[test]
fn full_disk_with_preallocation_fails_typed_and_recovers() {
    fill_then_recover(true);
}
