//! Recovery replay: `Store::open` over a WAL of 100-byte events (warm page cache),
//! against the mutex baseline's replay of the same events from JSON lines.
//!
//! Cold-cache numbers need `echo 3 > /proc/sys/vm/drop_caches`; when that is not
//! permitted (containers), only warm numbers are reported.

mod common;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Duration;

use common::*;
use criterion::{Criterion, Throughput};
use snapwal::{Options, Store, SyncPolicy};

const EVENTS: u64 = 500_000;

fn drop_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn replay(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    // A store with EVENTS pipeline events and no snapshot: open replays them all.
    let bytes = {
        let store = Store::<Daemon>::open(
            &dir,
            Options::default()
                .sync(SyncPolicy::Never)
                .segment_bytes(64 << 20),
        )
        .unwrap();
        let mut gen = Gen(46);
        let mut batch = vec![Event::Configure { history: 100 }];
        for i in 0..EVENTS {
            batch.push(Event::Step(gen.event(10_000, i)));
            if batch.len() == 1000 {
                store.append_batch(&batch).unwrap();
                batch.clear();
            }
        }
        store.append_batch(&batch).unwrap();
        store.close().unwrap();
        std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum::<u64>()
    };
    let base = tmp.path().join("wal.jsonl");
    let base_bytes = {
        let mut w = BufWriter::new(std::fs::File::create(&base).unwrap());
        let mut gen = Gen(46);
        for i in 0..EVENTS {
            let e = gen.event(10_000, i);
            writeln!(w, "{}\t{}", i + 1, serde_json::to_string(&e).unwrap()).unwrap();
        }
        w.into_inner().unwrap().sync_all().unwrap();
        std::fs::metadata(&base).unwrap().len()
    };
    let mut g = c.benchmark_group("recovery");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("snapwal_warm", |b| {
        b.iter(|| {
            let (store, rep) = Store::<Daemon>::open_with_report(&dir, Options::default()).unwrap();
            assert_eq!(rep.records_replayed, EVENTS + 1);
            // Drop without close: nothing to sync, nothing to checkpoint.
            drop(store);
        })
    });
    g.throughput(Throughput::Bytes(base_bytes));
    g.bench_function("baseline_warm", |b| {
        b.iter(|| {
            let mut st = BState {
                history: 100,
                ..BState::default()
            };
            for line in BufReader::new(std::fs::File::open(&base).unwrap()).lines() {
                let line = line.unwrap();
                let (seq, json) = line.split_once('\t').unwrap();
                let e: StepDone = serde_json::from_str(json).unwrap();
                st.seq = seq.parse().unwrap();
                st.apply(&e);
            }
            assert_eq!(st.seq, EVENTS);
        })
    });
    if drop_caches() {
        g.bench_function("snapwal_cold", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    drop_caches();
                    let t = std::time::Instant::now();
                    drop(Store::<Daemon>::open(&dir, Options::default()).unwrap());
                    total += t.elapsed();
                }
                total
            })
        });
    } else {
        println!("recovery: cannot drop the page cache here; cold replay not measured");
    }
    g.finish();
    println!(
        "recovery: snapwal WAL {:.1} MB, baseline JSON lines {:.1} MB, {EVENTS} events",
        bytes as f64 / 1e6,
        base_bytes as f64 / 1e6
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    replay(&mut c);
    c.final_summary();
    println!();
    print_ratio(
        "recovery of the same events, baseline (JSON lines) / snapwal",
        ("recovery", "baseline_warm"),
        ("recovery", "snapwal_warm"),
    );
}
