//! A WAL whose last record is cut at every byte offset recovers the prefix before it, with a warning and a report naming the bytes cut.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use snapwal::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use snapwal::{Error, RecoveryPolicy, Store, SyncPolicy};

/// Copies `src` into `dst` recursively (the store is closed, so the bytes are stable).
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
    f.sync_all().unwrap();
}

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".wal").unwrap().parse().unwrap()
}

fn frame_len(e: &Entry) -> u64 {
    (FRAME_HEADER_LEN + postcard::to_allocvec(e).unwrap().len()) as u64
}

/// A closed store holding `events` in several segments, and the byte range of the
/// last record in the last segment, computed from the format (not from the reader).
struct Fixture {
    dir: tempfile::TempDir,
    events: Vec<Entry>,
    last_segment: PathBuf,
    last_start: u64,
    last_end: u64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut events: Vec<Entry> = (0..1000)
        .map(|i| Entry::padded(1, i, 150 + (i % 13) as usize))
        .collect();
    // A last record of moderate size whose length byte is not zero.
    events.push(Entry::padded(2, 1000, 97));
    let store = open(dir.path(), SyncPolicy::Never);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(store.append(e).unwrap(), i as u64 + 1);
    }
    store.close().unwrap();

    let segs = segments(dir.path());
    assert!(
        segs.len() >= 3,
        "small segments must have rotated: {segs:?}"
    );
    let last_segment = segs.last().unwrap().clone();
    let first = first_seq_of(&last_segment);
    let in_last = &events[(first - 1) as usize..];
    assert!(
        in_last.len() >= 2,
        "the last segment must hold more than the torn record"
    );
    let mut offset = SEGMENT_HEADER_LEN as u64;
    for e in &in_last[..in_last.len() - 1] {
        offset += frame_len(e);
    }
    let last_end = offset + frame_len(in_last.last().unwrap());
    assert_eq!(std::fs::metadata(&last_segment).unwrap().len(), last_end);
    Fixture {
        dir,
        events,
        last_segment,
        last_start: offset,
        last_end,
    }
}

#[test]
fn every_cut_inside_the_last_record_recovers_the_prefix_and_appends_continue() {
    let fx = fixture();
    let n = fx.events.len() as u64;
    let prefix = &fx.events[..fx.events.len() - 1];
    let seg_name = fx.last_segment.file_name().unwrap().to_owned();
    let segments_before = segments(fx.dir.path()).len();
    let mut cuts = 0;
    for cut in fx.last_start + 1..fx.last_end {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(fx.dir.path(), copy.path());
        let seg = copy.path().join("wal").join(&seg_name);
        truncate(&seg, cut);
        let torn = cut - fx.last_start;

        // Strict refuses the torn record, naming the segment and the offset.
        let strict = opts(SyncPolicy::Never).recovery(RecoveryPolicy::Strict);
        match Store::<Ledger>::open(copy.path(), strict) {
            Err(e @ Error::TornTail { .. }) => {
                let Error::TornTail {
                    path,
                    offset,
                    bytes,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(path, &seg, "cut at {cut}");
                assert_eq!(*offset, fx.last_start, "cut at {cut}");
                assert_eq!(*bytes, torn, "cut at {cut}");
                assert!(e.to_string().contains(&seg.display().to_string()), "{e}");
            }
            other => panic!("cut at {cut}: expected TornTail, got {other:?}"),
        }
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            cut,
            "Strict must not modify the file"
        );

        // The default policy cuts it, warns with the byte count and reports it.
        let (opened, log) = logs::capture(|| {
            Store::<Ledger>::open_with_report(copy.path(), opts(SyncPolicy::Never))
        });
        let (store, report) = opened.unwrap();
        assert_eq!(store.seq(), n - 1, "cut at {cut}");
        assert_eq!(*store.current().state(), replayed(prefix), "cut at {cut}");
        assert_eq!(
            report.torn_tail,
            Some((seg.clone(), fx.last_start, torn)),
            "cut at {cut}"
        );
        let warn = log
            .lines()
            .find(|l| l.contains("cut torn tail"))
            .unwrap_or_else(|| panic!("cut at {cut}: no torn-tail warning in:\n{log}"));
        assert!(warn.contains("WARN"), "{warn}");
        assert!(warn.contains(&format!("{torn} bytes")), "{warn}");
        assert!(warn.contains(&format!("bytes={torn}")), "{warn}");

        let extra = Entry::padded(3, cut, 5);
        assert_eq!(store.append(&extra).unwrap(), n, "cut at {cut}");
        store.close().unwrap();

        // The cut segment is now sealed and followed by a new one; reopening is clean.
        assert_eq!(segments(copy.path()).len(), segments_before + 1);
        let (opened, log) = logs::capture(|| {
            Store::<Ledger>::open_with_report(copy.path(), opts(SyncPolicy::Never))
        });
        let (store, report) = opened.unwrap();
        let mut expected: Vec<Entry> = prefix.to_vec();
        expected.push(extra);
        assert_eq!(store.seq(), n, "cut at {cut}");
        assert_eq!(
            *store.current().state(),
            replayed(&expected),
            "cut at {cut}"
        );
        assert_eq!(report.torn_tail, None, "cut at {cut}");
        assert!(!log.contains("cut torn tail"), "cut at {cut}: {log}");
        assert_eq!(store.append(&Entry::new(4, 0)).unwrap(), n + 1);
        store.close().unwrap();
        cuts += 1;
    }
    assert_eq!(cuts, fx.last_end - fx.last_start - 1);
}

#[test]
fn cut_at_a_record_boundary_is_not_torn() {
    let fx = fixture();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(fx.dir.path(), copy.path());
    let seg = copy
        .path()
        .join("wal")
        .join(fx.last_segment.file_name().unwrap());
    truncate(&seg, fx.last_start);
    let (opened, log) =
        logs::capture(|| Store::<Ledger>::open_with_report(copy.path(), opts(SyncPolicy::Never)));
    let (store, report) = opened.unwrap();
    assert_eq!(report.torn_tail, None);
    assert!(!log.contains("torn"), "{log}");
    assert_eq!(
        *store.current().state(),
        replayed(&fx.events[..fx.events.len() - 1])
    );
    store.close().unwrap();
}

#[test]
fn preallocated_zero_padding_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = || opts(SyncPolicy::Always).preallocate(true);
    let events: Vec<Entry> = (0..40).map(|i| Entry::padded(5, i, 30)).collect();
    let store = Store::<Ledger>::open(dir.path(), options()).unwrap();
    store.append_batch(&events[..20]).unwrap();
    for e in &events[20..] {
        store.append(e).unwrap();
    }
    store.close().unwrap();

    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1);
    let bytes = std::fs::read(&segs[0]).unwrap();
    assert_eq!(
        bytes.len() as u64,
        options().segment_bytes,
        "the segment must be preallocated"
    );
    let used = SEGMENT_HEADER_LEN as u64 + events.iter().map(frame_len).sum::<u64>();
    assert!(
        bytes[used as usize..].iter().all(|&b| b == 0),
        "padding must be zeros"
    );

    for round in 0..2 {
        let (opened, log) =
            logs::capture(|| Store::<Ledger>::open_with_report(dir.path(), options()));
        let (store, report) = opened.unwrap();
        assert_eq!(report.torn_tail, None, "round {round}");
        assert!(!log.contains("torn"), "round {round}: {log}");
        assert!(!log.contains("WARN"), "round {round}: {log}");
        let mut expected = events.clone();
        expected.extend((0..round).map(|r| Entry::new(6, r)));
        assert_eq!(
            *store.current().state(),
            replayed(&expected),
            "round {round}"
        );
        assert_eq!(
            store.append(&Entry::new(6, round)).unwrap(),
            expected.len() as u64 + 1
        );
        store.close().unwrap();
    }
}
