//! Read-only open (`Reader`): it follows a live writer in another process that holds
//! the lock, rotates, checkpoints and purges, always showing exactly the events
//! `1..=seq` with `seq` never going backwards; and it changes no byte of the directory,
//! whatever it finds there (a torn tail, a temp file, a damaged snapshot).
//!
//! The writer is this test binary itself, re-executed to run only `child_writer` (an
//! ignored test that does nothing unless `READER_CHILD_DIR` is set).

mod common;
use common::Numbers;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use snapwal::fs::{FileBytes, Fs, FsFile, LockGuard, RealFs};
use snapwal::{Error, Options, Reader, Store, SyncPolicy};

const DIR_VAR: &str = "READER_CHILD_DIR";

fn options() -> Options {
    Options::default()
        .sync(SyncPolicy::Never)
        .segment_bytes(4096)
        .preallocate(true)
        .keep_snapshots(1)
}

/// Asserts the reader's version is exactly events `1..=seq`; returns seq.
fn check_prefix(reader: &Reader<Numbers>) -> u64 {
    let v = reader.current();
    assert_eq!(v.state().0.len() as u64, v.seq(), "state and seq disagree");
    assert!(
        v.state()
            .0
            .iter()
            .enumerate()
            .all(|(i, n)| *n == i as u64 + 1),
        "the state at seq {} is not events 1..={}",
        v.seq(),
        v.seq()
    );
    v.seq()
}

/// Child: open the store (taking its lock), then append numbers forever in small
/// bursts, checkpointing every 300 appends (keep 1 snapshot: each checkpoint purges).
#[test]
#[ignore = "child process of reader_follows_a_live_writer_in_another_process"]
fn child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let store = Store::<Numbers>::open(&dir, options()).expect("child open");
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nopen {}", store.seq()).unwrap();
    out.flush().unwrap();
    loop {
        for _ in 0..50 {
            let next = store.seq() + 1;
            store.append(&next).expect("append");
            if next % 300 == 0 {
                store.checkpoint().expect("checkpoint");
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn reader_follows_a_live_writer_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("open ")));

    let outcome = std::panic::catch_unwind(|| {
        // The writer holds the lock all along.
        assert!(matches!(
            Store::<Numbers>::open(dir.path(), options()),
            Err(Error::Locked { .. })
        ));
        let mut reader = Reader::<Numbers>::open(dir.path()).unwrap();
        let mut last = check_prefix(&reader);
        let (mut refreshes, mut reloads, mut opens) = (0u64, 0u64, 1u64);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let r = reader.refresh().unwrap();
            refreshes += 1;
            reloads += u64::from(r.reloaded);
            let seq = check_prefix(&reader);
            assert!(seq >= last, "seq went back from {last} to {seq}");
            assert_eq!(r.seq, seq);
            last = seq;
            match refreshes % 50 {
                // Now and then a fresh reader, opened mid-write.
                0 => {
                    let fresh = Reader::<Numbers>::open(dir.path()).unwrap();
                    let fresh_seq = check_prefix(&fresh);
                    assert!(
                        fresh_seq >= last,
                        "a new reader is behind: {fresh_seq} < {last}"
                    );
                    reader = fresh;
                    last = fresh_seq;
                    opens += 1;
                }
                // And now and then a pause long enough for checkpoints to purge
                // what the reader had.
                25 => std::thread::sleep(Duration::from_millis(60)),
                _ => {}
            }
        }
        println!(
            "reader: {refreshes} refreshes ({reloads} reloads), {opens} opens, reached seq {last}"
        );
        assert!(last > 1_000, "the writer made progress: {last}");
        (last, reloads)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let (last, _) = outcome.unwrap_or_else(|p| std::panic::resume_unwind(p));

    // After the writer is gone, a reader and a recovery agree, and the reader never
    // saw more than the writer wrote.
    let reader = Reader::<Numbers>::open(dir.path()).unwrap();
    let store = Store::<Numbers>::open(dir.path(), options()).unwrap();
    assert_eq!(reader.seq(), store.seq());
    assert!(store.seq() >= last);
    assert_eq!(reader.current().state(), store.current().state());
    store.close().unwrap();
}

#[test]
fn refresh_reloads_when_the_records_it_needs_were_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::<Numbers>::open(dir.path(), options()).unwrap();
    for n in 1..=100 {
        store.append(&n).unwrap();
    }
    let reader = Reader::<Numbers>::open(dir.path()).unwrap();
    assert_eq!(check_prefix(&reader), 100);

    // Incremental: only the new records are applied.
    for n in 101..=150 {
        store.append(&n).unwrap();
    }
    let r = reader.refresh().unwrap();
    assert_eq!((r.seq, r.records, r.reloaded), (150, 50, false));
    assert_eq!(reader.refresh().unwrap().records, 0);

    // Many segments later, a checkpoint purges every segment the reader read.
    for n in 151..=3_000 {
        store.append(&n).unwrap();
    }
    store.checkpoint().unwrap();
    store.append(&3_001).unwrap();
    let first_segment = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .min()
        .unwrap();
    assert!(
        first_segment.as_str() > "00000000000000000151.wal",
        "purged: {first_segment}"
    );
    let r = reader.refresh().unwrap();
    assert!(r.reloaded);
    assert_eq!(r.seq, 3_001);
    assert_eq!(check_prefix(&reader), 3_001);
    store.close().unwrap();
}

/// Every entry under `dir`: path -> (size, FNV-1a of the contents); directories too.
fn fingerprint(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if entry.file_type().unwrap().is_dir() {
                out.insert(format!("{name}/"), (0, 0));
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                });
                out.insert(name, (bytes.len() as u64, hash));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn read_only_open_changes_no_byte_of_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options().keep_snapshots(2);
    let store = Store::<Numbers>::open(dir.path(), opts.clone()).unwrap();
    for n in 1..=400 {
        store.append(&n).unwrap();
        if n == 150 || n == 300 {
            store.checkpoint().unwrap();
        }
    }
    store.close().unwrap();
    // A damaged newest snapshot (a flipped byte in its body): recovery falls back to
    // the older one and the WAL.
    let snap = dir.path().join("snap/00000000000000000300.snap");
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, bytes).unwrap();
    // A temp file a crash left.
    std::fs::write(
        dir.path().join("snap/.00000000000000000400.77.0.tmp"),
        b"half a snapshot",
    )
    .unwrap();
    // A torn tail: half a record after the last one, inside the preallocated zeros.
    let segment = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut seg = std::fs::read(&segment).unwrap();
    let end = seg.len() - seg.iter().rev().take_while(|b| **b == 0).count();
    let torn = [9u8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x91, 1];
    if seg.len() < end + torn.len() {
        seg.resize(end + torn.len(), 0);
    }
    seg[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&segment, seg).unwrap();

    let before = fingerprint(dir.path());
    let reader = Reader::<Numbers>::open(dir.path()).unwrap();
    assert_eq!(check_prefix(&reader), 400);
    for _ in 0..3 {
        assert_eq!(reader.refresh().unwrap().seq, 400);
    }
    drop(reader);
    assert_eq!(
        fingerprint(dir.path()),
        before,
        "a read-only open changed the directory"
    );

    // The comparison sees what a recovery changes (so it would see a reader do it).
    let store = Store::<Numbers>::open(dir.path(), opts).unwrap();
    assert_eq!(store.seq(), 400);
    store.close().unwrap();
    assert_ne!(fingerprint(dir.path()), before);
}

#[test]
fn reader_refuses_a_directory_that_is_not_a_store_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    assert!(matches!(
        Reader::<Numbers>::open(&missing),
        Err(Error::Io { .. })
    ));
    assert!(!missing.exists());
    assert!(matches!(
        Reader::<Numbers>::open(dir.path()),
        Err(Error::Io { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A file system that lets a reader list and read (into memory) and nothing else:
/// every other call panics. Records each `read_from`.
#[derive(Debug, Default)]
struct ListAndReadOnly {
    reads: Mutex<Vec<(PathBuf, u64)>>,
}

impl Fs for ListAndReadOnly {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        panic!("a reader created {}", path.display())
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        panic!("a reader created {}", path.display())
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        panic!("a reader opened {} for writing", path.display())
    }
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        panic!("a reader mapped {}", path.display())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn rename_noreplace(&self, from: &Path, _: &Path) -> io::Result<()> {
        panic!("a reader renamed {}", from.display())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        panic!("a reader removed {}", path.display())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        panic!("a reader synced {}", dir.display())
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        panic!("a reader locked {}", path.display())
    }
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        self.reads
            .lock()
            .unwrap()
            .push((path.to_path_buf(), offset));
        RealFs.read_from(path, offset)
    }
}

#[test]
fn refresh_lists_and_reads_only_and_continues_past_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::<Numbers>::open(dir.path(), options()).unwrap();
    for n in 1..=100 {
        store.append(&n).unwrap();
    }
    let fs = Arc::new(ListAndReadOnly::default());
    let reader = Reader::<Numbers>::open_with_fs(dir.path(), fs.clone()).unwrap();
    assert_eq!(check_prefix(&reader), 100);
    let (segment, _) = fs.reads.lock().unwrap().last().cloned().unwrap();

    for n in 101..=120 {
        store.append(&n).unwrap();
    }
    fs.reads.lock().unwrap().clear();
    let r = reader.refresh().unwrap();
    assert_eq!((r.seq, r.records, r.reloaded), (120, 20, false));
    let reads = fs.reads.lock().unwrap().clone();
    // The segment it had read is read again only from where its records ended.
    let resumed: Vec<u64> = reads
        .iter()
        .filter(|(p, _)| *p == segment)
        .map(|(_, offset)| *offset)
        .collect();
    assert_eq!(resumed.len(), 1, "{reads:?}");
    assert!(
        resumed[0] > 32 + 100 * 16,
        "read from offset {}",
        resumed[0]
    );

    // Purged under it: the reload goes through the same calls.
    for n in 121..=2_000 {
        store.append(&n).unwrap();
    }
    store.checkpoint().unwrap();
    let r = reader.refresh().unwrap();
    assert!(r.reloaded);
    assert_eq!(check_prefix(&reader), 2_000);
    store.close().unwrap();
}

/// Copies the files of a store directory (not `LOCK`).
fn copy_store(from: &Path, to: &Path) {
    for sub in ["wal", "snap", "pos"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn a_writer_that_lost_records_it_had_written_is_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = tempfile::tempdir().unwrap();
    let live = dir.path().join("store");
    let store = Store::<Numbers>::open(&live, options()).unwrap();
    for n in 1..=50 {
        store.append(&n).unwrap();
    }
    store.sync().unwrap();
    copy_store(&live, earlier.path());
    for n in 51..=100 {
        store.append(&n).unwrap();
    }
    let reader = Reader::<Numbers>::open(&live).unwrap();
    assert_eq!(check_prefix(&reader), 100);
    store.close().unwrap();

    // What a power loss does: the disk goes back to seq 50, and the restarted writer
    // logs other events under seqs 51...
    for sub in ["wal", "snap", "pos"] {
        std::fs::remove_dir_all(live.join(sub)).unwrap();
    }
    copy_store(earlier.path(), &live);
    let store = Store::<Numbers>::open(&live, options()).unwrap();
    assert_eq!(store.seq(), 50);
    for n in 51..=60 {
        store.append(&(1_000 + n)).unwrap();
    }
    let err = reader.refresh().unwrap_err();
    assert!(
        matches!(
            err,
            Error::LogRewound {
                read: 100,
                found: 60,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(check_prefix(&reader), 100, "the reader keeps what it had");

    // Once the new history is longer, a refresh reloads it: a prefix of what is on
    // disk now, never a mix of the two histories.
    for n in 61..=150 {
        store.append(&(1_000 + n)).unwrap();
    }
    let r = reader.refresh().unwrap();
    assert!(r.reloaded);
    assert_eq!(reader.seq(), 150);
    let expected: Vec<u64> = (1..=50).chain((51..=150).map(|n| 1_000 + n)).collect();
    assert_eq!(reader.current().state().0, expected);
    store.close().unwrap();
}
