//! Backup and read-only open of the pipelines demo's store: 10,000 pipelines x 100
//! steps (1M records of about 100 bytes, filled as `examples/pipelines.rs` fills
//! it), one checkpoint, then 10,000 more records after the snapshot.
//!
//! Times `Store::backup_to` into the same file system (hard links) and into another
//! one (copies), `backup::backup_dir` (the CLI's backup, from outside), and
//! `Reader::open`, and prints the size of each copy.
//!
//! ```text
//! cargo run --release --example backup -- [--dir PATH] [--other-fs PATH] [--pipelines N]
//! ```
//!
//! `--dir` (default: a temp directory) holds the store and the linked copy;
//! `--other-fs` (default `/dev/shm`) receives the copies.

use std::path::{Path, PathBuf};
use std::time::Instant;

use snapwal::{backup, BackupReport, Options, Reader, Store, SyncPolicy};

// The demo's workload; this example uses only the structurally shared state.
#[allow(dead_code)]
#[path = "pipelines/model.rs"]
mod model;
use model::{Daemon, Event, Gen, StepDone};

const HISTORY: usize = 100;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

/// Bytes of the files under `dir` (a linked file counts in full: it is what the
/// copy holds, not what it cost).
fn size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += match path.is_dir() {
            true => size(&path),
            false => entry.metadata().map_or(0, |m| m.len()),
        };
    }
    total
}

fn line(what: &str, r: &BackupReport, dest: &Path) {
    println!(
        "{what:<34} {:>8.3} s   seq {:>9}   {:>2} linked  {:>2} copied  {:>9.1} MB written   copy {:>7.1} MB",
        r.elapsed.as_secs_f64(),
        r.seq,
        r.files_linked,
        r.files_copied,
        r.bytes_copied as f64 / 1e6,
        size(dest) as f64 / 1e6,
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipelines: u32 = arg("--pipelines").map_or(Ok(10_000), |s| s.parse())?;
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| ".".into()))?;
    let other = tempfile::tempdir_in(arg("--other-fs").unwrap_or_else(|| "/dev/shm".into()))?;
    let dir = tmp.path().join("store");

    let t = Instant::now();
    let store = Store::<Daemon>::open(&dir, Options::default().sync(SyncPolicy::Never))?;
    let mut gen = Gen(7);
    let mut n = 0;
    let mut batch = vec![Event::Configure { history: HISTORY }];
    for p in 0..pipelines {
        for _ in 0..HISTORY {
            n += 1;
            let step = gen.step(n);
            batch.push(Event::Step(StepDone { pipeline: p, step }));
        }
        store.append_batch(&batch)?;
        batch.clear();
    }
    let snapshot = store.checkpoint()?;
    for i in 0..10_000 {
        batch.push(Event::Step(gen.event(pipelines, n + 1 + i)));
    }
    store.append_batch(&batch)?;
    store.sync()?;
    println!(
        "store: {} records, snapshot {:.1} MB, {:.1} MB on disk, filled in {:.1} s",
        store.seq(),
        snapshot.snapshot_bytes as f64 / 1e6,
        size(&dir) as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let linked = tmp.path().join("linked");
    line(
        "backup_to, same file system",
        &store.backup_to(&linked)?,
        &linked,
    );
    let copied: PathBuf = other.path().join("copied");
    line(
        "backup_to, other file system",
        &store.backup_to(&copied)?,
        &copied,
    );
    let outside = tmp.path().join("outside");
    line(
        "backup_dir (CLI), same fs",
        &backup::backup_dir(&dir, &outside)?,
        &outside,
    );
    let outside_copied = other.path().join("outside");
    line(
        "backup_dir (CLI), other fs",
        &backup::backup_dir(&dir, &outside_copied)?,
        &outside_copied,
    );

    let t = Instant::now();
    let reader = Reader::<Daemon>::open(&dir)?;
    println!(
        "Reader::open (writer holding the lock) {:.3} s, seq {}",
        t.elapsed().as_secs_f64(),
        reader.seq()
    );
    let t = Instant::now();
    let copy = Store::<Daemon>::open(&copied, Options::default())?;
    println!(
        "Store::open of the copied backup       {:.3} s, seq {}",
        t.elapsed().as_secs_f64(),
        copy.seq()
    );
    copy.close()?;
    store.close()?;
    Ok(())
}
