//! Online backup (`Store::backup_to`) and the backup of a store owned elsewhere
//! (`backup::backup_dir`): under a writer thread and a periodic checkpointer that
//! rotates, snapshots and purges, every copy opens at a seq at least the durable seq
//! when its backup started, with exactly the events `1..=seq`.

mod common;
use common::Numbers;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use snapwal::{backup, CheckpointerConfig, Error, Options, Store, SyncPolicy};

fn options() -> Options {
    Options::default()
        .sync(SyncPolicy::Interval(Duration::from_millis(2)))
        .segment_bytes(4096)
        .preallocate(true)
        .keep_snapshots(1)
}

/// Opens the copy in `dir` and checks it holds exactly events `1..=seq`; returns seq.
fn check_copy(dir: &Path, expected_seq: u64) -> u64 {
    let copy = Store::<Numbers>::open(dir, options()).expect("the copy opens as a store");
    let v = copy.current();
    let prefix: Vec<u64> = (1..=v.seq()).collect();
    assert_eq!(
        v.state().0,
        prefix,
        "the copy is not exactly events 1..={}",
        v.seq()
    );
    assert_eq!(
        v.seq(),
        expected_seq,
        "the copy opens at the seq its report gives"
    );
    copy.close().unwrap();
    v.seq()
}

/// A writer thread appending the next number as fast as it can.
fn spawn_writer(store: Arc<Store<Numbers>>, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut appended = 0;
        while !stop.load(Ordering::Relaxed) {
            let next = store.seq() + 1;
            assert_eq!(store.append(&next).unwrap(), next);
            appended += 1;
        }
        appended
    })
}

#[test]
fn online_backup_under_writer_and_checkpointer_is_an_exact_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let store = Arc::new(Store::<Numbers>::open(&live, options()).unwrap());
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(3)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(Arc::clone(&store), Arc::clone(&stop));
    while store.seq() < 2_000 {
        thread::sleep(Duration::from_millis(1));
    }
    let mut linked = 0;
    for round in 0..12 {
        let durable = store.durable_seq();
        let dest = tmp.path().join(format!("copy-{round}"));
        let report = store.backup_to(&dest).unwrap();
        assert!(
            report.seq >= durable,
            "round {round}: copy at {} < durable {durable} at start",
            report.seq
        );
        assert!(report.files_copied + report.files_linked >= 1, "{report:?}");
        linked += report.files_linked;
        check_copy(&dest, report.seq);
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let appended = writer.join().unwrap();
    let stats = store.checkpoint_stats();
    let store = Arc::into_inner(store).unwrap();
    store.close().unwrap();
    assert!(appended > 2_000);
    assert!(
        stats.total > 3,
        "checkpoints ran during the backups: {stats:?}"
    );
    assert!(linked > 0, "same file system: sealed files are linked");
    // Cleanup caught up after the backups: the old segments were purged.
    let reopened = Store::<Numbers>::open(&live, options()).unwrap();
    reopened.checkpoint().unwrap();
    assert!(std::fs::read_dir(live.join("wal")).unwrap().count() <= 2);
    reopened.close().unwrap();
}

#[test]
fn backup_dir_of_a_store_owned_elsewhere_is_an_exact_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let store = Arc::new(Store::<Numbers>::open(&live, options()).unwrap());
    store
        .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(3)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(Arc::clone(&store), Arc::clone(&stop));
    while store.seq() < 2_000 {
        thread::sleep(Duration::from_millis(1));
    }
    for round in 0..12 {
        let durable = store.durable_seq();
        let dest = tmp.path().join(format!("copy-{round}"));
        // The store holds its lock throughout: the backup never asks for it.
        let report = backup::backup_dir(&live, &dest).unwrap();
        assert!(report.seq >= durable, "round {round}");
        check_copy(&dest, report.seq);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    Arc::into_inner(store).unwrap().close().unwrap();
}

#[test]
fn backup_to_a_non_empty_destination_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::<Numbers>::open(tmp.path().join("live"), options()).unwrap();
    store.append(&1).unwrap();

    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"mine").unwrap();
    let err = store.backup_to(&full).unwrap_err();
    assert!(
        matches!(&err, Error::DestinationNotEmpty { path } if path == &full),
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(&full).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing was written next to keep.txt");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        store.backup_to(&file),
        Err(Error::DestinationNotEmpty { .. })
    ));
    assert!(matches!(
        backup::backup_dir(tmp.path().join("live"), &full),
        Err(Error::DestinationNotEmpty { .. })
    ));

    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let report = store.backup_to(&empty).unwrap();
    assert_eq!(report.seq, 1);
    store.close().unwrap();
    check_copy(&empty, 1);
}

#[test]
fn backup_to_another_file_system_copies() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        println!("note: no /dev/shm here; cross-file-system backup not tested");
        return;
    };
    let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
    if dev(tmp.path()) == dev(shm.path()) {
        println!("note: the temp dir and /dev/shm are one file system; cross-file-system backup not tested");
        return;
    }
    let store = Store::<Numbers>::open(tmp.path().join("live"), options()).unwrap();
    for n in 1..=3_000 {
        store.append(&n).unwrap();
    }
    store.checkpoint().unwrap();
    for n in 3_001..=3_500 {
        store.append(&n).unwrap();
    }
    let dest = shm.path().join("copy");
    let report = store.backup_to(&dest).unwrap();
    assert_eq!(report.files_linked, 0, "no hard link crosses file systems");
    assert!(report.files_copied >= 2, "{report:?}");
    assert!(report.bytes_copied > 0);
    assert_eq!(report.seq, 3_500);
    check_copy(&dest, 3_500);

    let dest = shm.path().join("copy-outside");
    let report = backup::backup_dir(tmp.path().join("live"), &dest).unwrap();
    assert_eq!((report.files_linked, report.seq), (0, 3_500));
    check_copy(&dest, 3_500);
    store.close().unwrap();
}

#[test]
fn backup_holds_no_lock_and_skips_temp_and_corrupt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let store = Store::<Numbers>::open(&live, options()).unwrap();
    for n in 1..=500 {
        store.append(&n).unwrap();
    }
    store.checkpoint().unwrap();
    std::fs::write(live.join("snap/.00000000000000000999.1.0.tmp"), b"half").unwrap();
    std::fs::write(live.join("wal/00000000000000000001.wal.corrupt"), b"old").unwrap();
    let dest = tmp.path().join("copy");
    let report = store.backup_to(&dest).unwrap();
    let mut names: Vec<String> = ["snap", "wal"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dest.join(d)).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".snap") || n.ends_with(".wal")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with('.')));
    // The copy opens while the original is still open: its LOCK is fresh.
    check_copy(&dest, report.seq);
    store.close().unwrap();
}
