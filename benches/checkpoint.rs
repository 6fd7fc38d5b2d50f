//! Checkpoint costs: snapshot throughput for 10k- and 1M-record states (against the
//! mutex baseline's clone + JSON snapshot), truncation as the WAL grows (unlinking K
//! segments against rewriting the WAL file), and `close()` with a checkpoint in
//! flight.

mod common;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use criterion::{BatchSize, Criterion, Throughput};
use snapwal::wal::{Wal, WalOptions};
use snapwal::CheckpointerConfig;
use snapwal::{CloseOptions, Options, Store, SyncPolicy};

fn checkpoint_throughput(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("checkpoint");
    g.warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for (label, pipelines) in [("10k_records", 100u32), ("1M_records", 10_000)] {
        let store = filled_store(&tmp.path().join(label), pipelines, 100, never());
        // One event makes the next checkpoint write a new snapshot.
        let mut gen = Gen(45);
        let mut i = 0;
        let probe = {
            i += 1;
            store.append(&Event::Step(gen.event(pipelines, i))).unwrap();
            store.checkpoint().unwrap().snapshot_bytes
        };
        g.throughput(Throughput::Bytes(probe));
        g.bench_function(format!("snapwal_{label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    store.append(&Event::Step(gen.event(pipelines, i))).unwrap();
                    let t = Instant::now();
                    let r = store.checkpoint().unwrap();
                    total += t.elapsed();
                    assert_eq!(r.outcome, snapwal::CheckpointOutcome::Written);
                }
                total
            })
        });
        store.close().unwrap();
        let base = Baseline::filled(&tmp.path().join(format!("b{label}")), pipelines, 100);
        let size = base.checkpoint_snapshot();
        g.throughput(Throughput::Bytes(size));
        g.bench_function(format!("baseline_{label}"), |b| {
            b.iter(|| base.checkpoint_snapshot())
        });
    }
    g.finish();
}

const SEG: u64 = 64 << 10;

/// Writes `k + 1` segments of `SEG` bytes of 100-byte records; returns the last seq
/// of the `k`-th segment.
fn wal_with_segments(dir: &std::path::Path, k: u64) -> (Wal, u64) {
    let fs: Arc<dyn snapwal::fs::Fs> = Arc::new(snapwal::fs::RealFs);
    std::fs::create_dir_all(dir).unwrap();
    let wal = Wal::new(
        fs,
        dir.to_path_buf(),
        1,
        1,
        WalOptions {
            segment_bytes: SEG,
            preallocate: false,
        },
    );
    let p = payload100();
    let crc = crc32c_of(&p);
    let per_seg = (SEG - 64) / (p.len() as u64 + 16);
    let n = per_seg * (k + 1);
    let mut last = 0;
    for _ in 0..n {
        last = wal.stage([(p.as_slice(), crc)]);
    }
    // Synced, like a real WAL by the time a checkpoint covers it.
    wal.sync_through(last).unwrap();
    let segs = snapwal::wal::list_segments(&snapwal::fs::RealFs, dir).unwrap();
    let through = segs.get(k as usize).map_or(0, |(first, _)| first - 1);
    (wal, through)
}

fn crc32c_of(b: &[u8]) -> u32 {
    // The same CRC the store computes (crc32c, Castagnoli), done by hand to avoid a
    // dev-dependency: bitwise, only called once per setup.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn truncation(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("truncation");
    g.warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    let mut run = 0;
    for k in [1u64, 16, 256] {
        g.bench_function(format!("snapwal_unlink_{k}_segments"), |b| {
            b.iter_batched(
                || {
                    run += 1;
                    wal_with_segments(&tmp.path().join(format!("w{run}")), k)
                },
                |(wal, through)| {
                    let removed = wal.purge_through(through).unwrap();
                    assert_eq!(removed.len() as u64, k);
                    wal
                },
                BatchSize::PerIteration,
            )
        });
        // The baseline: the same bytes in one file, rewritten to keep the last
        // segment's worth of records, synced and renamed over.
        g.bench_function(format!("baseline_rewrite_{k}_segments"), |b| {
            b.iter_batched(
                || {
                    run += 1;
                    let dir = tmp.path().join(format!("b{run}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    let path = dir.join("wal.jsonl");
                    let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
                    let per_seg = SEG / 128;
                    let line = "x".repeat(120);
                    for seq in 0..per_seg * (k + 1) {
                        writeln!(w, "{seq}\t{line}").unwrap();
                    }
                    w.into_inner().unwrap().sync_all().unwrap();
                    (dir, per_seg * k)
                },
                |(dir, keep_after)| {
                    let path = dir.join("wal.jsonl");
                    let new = dir.join("wal.tmp");
                    let mut out = BufWriter::new(std::fs::File::create(&new).unwrap());
                    for line in BufReader::new(std::fs::File::open(&path).unwrap()).lines() {
                        let line = line.unwrap();
                        let s: u64 = line.split('\t').next().unwrap().parse().unwrap();
                        if s >= keep_after {
                            out.write_all(line.as_bytes()).unwrap();
                            out.write_all(b"\n").unwrap();
                        }
                    }
                    out.into_inner().unwrap().sync_all().unwrap();
                    std::fs::rename(&new, &path).unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// A state with one big blob, so a checkpoint takes long enough to be caught in flight.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Blob {
    chunks: Vec<Shared<String>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Add(u32);

impl snapwal::State for Blob {
    type Event = Add;
    fn apply(&mut self, e: &Add) {
        // 1 MiB of deterministic bytes per event.
        self.chunks.push(Shared(Arc::new(
            char::from(b'a' + (e.0 % 26) as u8)
                .to_string()
                .repeat(1 << 20),
        )));
    }
}

fn close_in_flight(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("close");
    g.warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let mut run = 0;
    let mut caught = 0u64;
    let mut tries = 0u64;
    g.bench_function("close_with_checkpoint_in_flight", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let dir = tmp.path().join(format!("c{run}"));
                let store =
                    Store::<Blob>::open(&dir, Options::default().sync(SyncPolicy::Never)).unwrap();
                // 256 MiB of state: its checkpoint takes far longer than close should.
                let events: Vec<Add> = (0..256).map(Add).collect();
                store.append_batch(&events).unwrap();
                store
                    .start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))
                    .unwrap();
                // Wait until the snapshot temp file exists: the checkpoint is in flight.
                let t0 = Instant::now();
                let snap = dir.join("snap");
                while t0.elapsed() < Duration::from_secs(5)
                    && !std::fs::read_dir(&snap)
                        .map(|d| {
                            d.flatten()
                                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                        })
                        .unwrap_or(false)
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let in_flight = store.checkpoint_stats().total == 0;
                let t = Instant::now();
                let rep = store.close_with(CloseOptions::default()).unwrap();
                total += t.elapsed();
                tries += 1;
                if in_flight && rep.final_checkpoint.is_none() {
                    caught += 1;
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
            total
        })
    });
    g.finish();
    println!("close: checkpoint was in flight at close in {caught} of {tries} iterations");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    checkpoint_throughput(&mut c);
    truncation(&mut c);
    close_in_flight(&mut c);
    c.final_summary();
    println!();
    for label in ["10k_records", "1M_records"] {
        print_ratio(
            &format!("checkpoint time, mutex baseline (clone + JSON) / snapwal, {label}"),
            ("checkpoint", &format!("baseline_{label}")),
            ("checkpoint", &format!("snapwal_{label}")),
        );
    }
    for k in [1, 16, 256] {
        print_ratio(
            &format!("truncation, baseline rewrite / snapwal unlink, {k} segments"),
            ("truncation", &format!("baseline_rewrite_{k}_segments")),
            ("truncation", &format!("snapwal_unlink_{k}_segments")),
        );
    }
}
