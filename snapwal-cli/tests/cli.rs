//! The `snapwal` binary, run as a user runs it, on stores written by the library,
//! intact and damaged.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use snapwal::{Options, State, Store, SyncPolicy};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Sum(u64);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Op {
    Add(u64, Vec<u8>),
}

impl State for Sum {
    type Event = Op;
    fn apply(&mut self, Op::Add(n, _): &Op) {
        self.0 += n;
    }
}

fn op(i: u64) -> Op {
    Op::Add(i, vec![i as u8; (i % 50) as usize])
}

fn opts() -> Options {
    Options::default()
        .sync(SyncPolicy::Never)
        .segment_bytes(4096)
}

/// A closed store with `n` events, a snapshot after `checkpoint_at` (if any).
fn store(dir: &Path, n: u64, checkpoint_at: Option<u64>) {
    let s = Store::<Sum>::open(dir, opts()).unwrap();
    for i in 1..=n {
        s.append(&op(i)).unwrap();
        if Some(i) == checkpoint_at {
            s.checkpoint().unwrap();
        }
    }
    s.close().unwrap();
}

fn snapwal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapwal"))
        .args(args)
        .output()
        .unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn inspect_json(dir: &Path) -> Value {
    let out = snapwal(&["inspect", path_str(dir), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

fn dump(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["dump", path_str(dir)];
    args.extend_from_slice(extra);
    let out = snapwal(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x40]).unwrap();
}

#[test]
fn inspect_json_describes_snapshot_segments_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 200, Some(120));
    let j = inspect_json(dir.path());
    assert_eq!(j["lock"], "free");
    assert_eq!(j["reads_version"], 1);
    assert_eq!(j["format_versions"], serde_json::json!([1]));
    assert_eq!(j["store_id"].as_str().unwrap().len(), 16);
    let snaps = j["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["seq"], 120);
    assert_eq!(snaps[0]["valid"], true);
    let segs = j["segments"].as_array().unwrap();
    assert!(segs.len() >= 2, "{segs:?}");
    // Segments wholly covered by the snapshot were unlinked; the rest are contiguous.
    assert!(segs[0]["first_seq"].as_u64().unwrap() <= 121);
    for pair in segs.windows(2) {
        assert_eq!(
            pair[1]["first_seq"].as_u64().unwrap(),
            pair[0]["last_seq"].as_u64().unwrap() + 1
        );
    }
    assert_eq!(segs.last().unwrap()["last_seq"], 200);
    assert!(segs.iter().all(|s| s["end"] == "clean"));
    assert_eq!(j["recovery"]["ok"], true);
    assert_eq!(j["recovery"]["seq"], 200);
    assert_eq!(j["recovery"]["from_snapshot"], 120);
    assert_eq!(j["damage"], serde_json::json!([]));
    // Nothing was changed: the store opens at the same seq.
    let s = Store::<Sum>::open(dir.path(), opts()).unwrap();
    assert_eq!(s.seq(), 200);
    assert_eq!(s.current().0, (1..=200).sum::<u64>());
}

#[test]
fn inspect_sees_the_lock_of_a_live_writer_without_disturbing_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::<Sum>::open(dir.path(), opts()).unwrap();
    s.append(&op(1)).unwrap();
    s.sync().unwrap();
    let j = inspect_json(dir.path());
    assert_eq!(j["lock"], "held");
    assert_eq!(j["recovery"]["seq"], 1);
    // The writer keeps its lock and keeps working.
    assert!(matches!(
        Store::<Sum>::open(dir.path(), opts()),
        Err(snapwal::Error::Locked { .. })
    ));
    s.append(&op(2)).unwrap();
    s.close().unwrap();
    assert_eq!(inspect_json(dir.path())["lock"], "free");
}

#[test]
fn inspect_table_lists_temp_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 30, Some(20));
    std::fs::write(
        dir.path().join("snap/.00000000000000000025.1234.0.tmp"),
        b"partial",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("snap/00000000000000000010.snap.corrupt"),
        b"old damage",
    )
    .unwrap();
    let out = snapwal(&["inspect", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("lock       free"), "{text}");
    assert!(
        text.contains("recovery   reaches seq 30 (snapshot 20 + WAL)"),
        "{text}"
    );
    assert!(text.contains("snapshots (1)"), "{text}");
    assert!(
        text.contains("temp files (1)\n  snap/.00000000000000000025.1234.0.tmp"),
        "{text}"
    );
    assert!(
        text.contains("moved aside (.corrupt) (1)\n  snap/00000000000000000010.snap.corrupt"),
        "{text}"
    );
    let j = inspect_json(dir.path());
    assert_eq!(j["temp_files"].as_array().unwrap().len(), 1);
    assert_eq!(j["corrupt_files"].as_array().unwrap().len(), 1);
}

#[test]
fn inspect_lists_positions_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::<Sum>::open(dir.path(), opts()).unwrap();
    s.append(&op(1)).unwrap();
    s.checkpoint().unwrap();
    s.position("tail").set(snapwal::Position {
        offset: 77,
        inode: 3,
        timestamp: 9,
    });
    assert_eq!(
        s.checkpoint().unwrap().outcome,
        snapwal::CheckpointOutcome::PositionsSaved
    );
    s.close().unwrap();
    let j = inspect_json(dir.path());
    let pos = j["positions"].as_array().unwrap();
    assert_eq!(pos.len(), 1);
    assert_eq!(pos[0]["valid"], true);
    assert_eq!(pos[0]["state_seq"], 1);
    assert_eq!(pos[0]["positions"][0]["name"], "tail");
    assert_eq!(pos[0]["positions"][0]["offset"], 77);
}

#[test]
fn verify_clean_store_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 300, Some(150));
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("ok: no damage"), "{text}");
    assert!(text.contains("recovery reaches seq 300"), "{text}");
    // Not a terminal: no progress bar drawn.
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verify_flipped_byte_in_a_middle_segment_exits_1_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 600, None);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    let middle = &segs[segs.len() / 2];
    let rec = dump(dir.path(), &[])
        .into_iter()
        .find(|r| {
            Path::new(r["segment"].as_str().unwrap()) == middle && r["len"].as_u64().unwrap() > 0
        })
        .unwrap();
    let offset = rec["offset"].as_u64().unwrap();
    flip_byte(middle, offset + 16);
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let expected = format!("DAMAGE: {} at offset {offset}: ", middle.display());
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(text.contains("recovery FAILS"), "{text}");
    // The library agrees.
    match Store::<Sum>::open(dir.path(), opts()) {
        Err(snapwal::Error::Corrupt {
            path, offset: o, ..
        }) => {
            assert_eq!((path.as_path(), o), (middle.as_path(), offset))
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.seq())),
    }
}

#[test]
fn verify_torn_tail_exits_0_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 100, None);
    let j = inspect_json(dir.path());
    let last = j["segments"].as_array().unwrap().last().unwrap().clone();
    let path = PathBuf::from(last["file"].as_str().unwrap());
    let end = last["valid_end"].as_u64().unwrap();
    // Half a frame: a length and part of a checksum, as a crash mid-write leaves.
    write_at(&path, end, &[9, 0, 0, 0, 0xab, 0xcd]);
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("note: torn tail in the last segment"),
        "{text}"
    );
    assert!(
        text.contains(&format!("after offset {end} in {}", path.display())),
        "{text}"
    );
    assert!(text.contains("recovery reaches seq 100"), "{text}");
    let j = inspect_json(dir.path());
    assert_eq!(j["torn_tail"]["offset"], end);
    assert_eq!(j["damage"], serde_json::json!([]));
    let s = Store::<Sum>::open(dir.path(), opts()).unwrap();
    assert_eq!(s.seq(), 100);
}

#[test]
fn verify_damaged_snapshot_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 50, Some(40));
    let snap = dir.path().join("snap/00000000000000000040.snap");
    flip_byte(&snap, 45);
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "DAMAGE: {} at offset 44: body checksum mismatch",
            snap.display()
        )),
        "{text}"
    );
}

#[test]
fn verify_missing_middle_segment_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 600, None);
    let segs = segments(dir.path());
    std::fs::remove_file(&segs[1]).unwrap();
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "DAMAGE: {} at offset 0: records",
            segs[2].display()
        )),
        "{text}"
    );
    assert!(text.contains("are missing"), "{text}");
}

#[test]
fn verify_unknown_version_and_garbage_files_exit_1_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 40, Some(20));
    let segs = segments(dir.path());
    // A segment claiming format version 2.
    write_at(&segs[0], 8, &2u32.to_le_bytes());
    // Random bytes under a snapshot name and a positions name; an empty segment name.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let junk: Vec<u8> = (0..500)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.path().join("snap/00000000000000000030.snap"), &junk).unwrap();
    std::fs::write(
        dir.path().join("pos/00000000000000000001.snap"),
        &junk[..10],
    )
    .unwrap();
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("format version 2; this build reads version 1"),
        "{text}"
    );
    assert!(
        text.contains("00000000000000000030.snap at offset 0"),
        "{text}"
    );
    assert!(
        text.contains("00000000000000000001.snap at offset 0"),
        "{text}"
    );
    let out = snapwal(&["inspect", path_str(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn unreadable_store_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for cmd in ["inspect", "verify", "dump"] {
        let out = snapwal(&[cmd, path_str(&missing)]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("snapwal: error:") && err.contains("nope"),
            "{cmd}: {err}"
        );
    }
    // An existing directory that is not a store.
    let out = snapwal(&["verify", path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a snapwal store"));
    // A file, not a directory.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(
        snapwal(&["inspect", path_str(&file)]).status.code(),
        Some(2)
    );
}

#[test]
fn dump_prints_every_record_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 120, None);
    let recs = dump(dir.path(), &[]);
    assert_eq!(recs.len(), 120);
    use base64::Engine;
    for (i, r) in recs.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(r["seq"], seq);
        assert_eq!(r["encoding"], "base64");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(r["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(r["len"].as_u64().unwrap(), payload.len() as u64);
        assert_eq!(postcard::from_bytes::<Op>(&payload).unwrap(), op(seq));
        assert!(r["offset"].as_u64().unwrap() >= 32);
        assert!(r["crc"].as_u64().is_some());
    }
}

#[test]
fn dump_from_to_hex() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 120, Some(60));
    let recs = dump(dir.path(), &["--from", "70", "--to", "74", "--hex"]);
    let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![70, 71, 72, 73, 74]);
    for r in &recs {
        assert_eq!(r["encoding"], "hex");
        let hex = r["payload"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            postcard::from_bytes::<Op>(&bytes).unwrap(),
            op(r["seq"].as_u64().unwrap())
        );
    }
    // Past the end: nothing, successfully.
    assert!(dump(dir.path(), &["--from", "500"]).is_empty());
    let out = snapwal(&["dump", path_str(dir.path()), "--from", "9", "--to", "3"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = snapwal(&["dump", path_str(dir.path()), "--from", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/v1")
        .join(name)
}

#[test]
fn verify_reads_the_golden_v1_stores_as_recovery_does() {
    let out = snapwal(&["verify", path_str(&golden("snapshot-and-tail"))]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("recovery reaches seq 400 (snapshot 250 + WAL)"));

    let out = snapwal(&["verify", path_str(&golden("torn-tail"))]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("note: torn tail in the last segment: 7 bytes after offset 3176"),
        "{text}"
    );
    assert!(
        text.contains("recovery reaches seq 300 (WAL only); cuts a torn tail of 7 bytes"),
        "{text}"
    );

    let dir = golden("damaged-newest-snapshot");
    let out = snapwal(&["verify", path_str(&dir)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let snap = dir.join("snap/00000000000000000280.snap");
    assert!(
        text.contains(&format!(
            "DAMAGE: {} at offset 44: body checksum mismatch",
            snap.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("recovery reaches seq 350 (snapshot 150 + WAL)"),
        "{text}"
    );
    let j = inspect_json(&dir);
    assert_eq!(j["snapshots"][0]["valid"], true);
    assert_eq!(j["snapshots"][1]["valid"], false);
    assert_eq!(j["snapshots"][1]["problem"]["offset"], 44);
    // Read-only: nothing was moved aside.
    assert!(snap.exists());
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 3000, None);
    for args in [
        vec!["dump", path_str(dir.path())],
        vec!["inspect", path_str(dir.path())],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_snapwal"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
