//! Append costs: one event under `Never` (snapwal with the structurally shared and
//! with the plain state, and the mutex baseline, each at 100 and 10k pipelines),
//! durable appends under `Always` with 1, 2 and 8 threads, batch appends (per-event
//! cost), and reads while a writer appends.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use criterion::{BatchSize, Criterion, Throughput};
use snapwal::{Options, Store, SyncPolicy};

fn short<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    g
}

/// One `Store::append` of a pipelines event under `Never`, as criterion's routine.
fn bench_store<S: snapwal::State<Event = Event>>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    store: Store<S>,
    n: u32,
) {
    let mut gen = Gen(42);
    let mut i = 0;
    g.bench_function(label, |b| {
        b.iter_batched(
            || {
                i += 1;
                Event::Step(gen.event(n, i))
            },
            |e| store.append(&e).unwrap(),
            BatchSize::SmallInput,
        )
    });
    store.close().unwrap();
}

/// The three contenders of the demo at 100 and 10k pipelines of 100 steps each:
/// snapwal with the structurally shared state (`imbl_*`), snapwal with the
/// baseline's own plain state (`plain_*`), and the mutex baseline (`baseline_*`).
fn append_never(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = short(c, "append_never");
    g.throughput(Throughput::Elements(1));
    for (suffix, n) in [("100", 100u32), ("10k", 10_000)] {
        let label = format!("imbl_{suffix}");
        let store = filled_store(&tmp.path().join(&label), n, 100, never());
        bench_store(&mut g, &label, store, n);

        let label = format!("plain_{suffix}");
        let store = filled_plain_store(&tmp.path().join(&label), n, 100, never());
        bench_store(&mut g, &label, store, n);

        let label = format!("baseline_{suffix}");
        let base = Baseline::filled(&tmp.path().join(&label), n, 100);
        let mut gen = Gen(42);
        let mut i = 0;
        g.bench_function(&label, |b| {
            b.iter_batched(
                || {
                    i += 1;
                    gen.event(n, i)
                },
                |e| base.append(&e),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn append_always(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = short(c, "append_always");
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2, 8] {
        let dir = tmp.path().join(format!("t{threads}"));
        let store = Arc::new(
            Store::<Tally>::open(&dir, Options::default().sync(SyncPolicy::Always)).unwrap(),
        );
        g.bench_function(format!("threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(threads as u64);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let store = &store;
                        s.spawn(move || {
                            let p = payload100();
                            for _ in 0..per {
                                store.append(&p).unwrap();
                            }
                        });
                    }
                });
                // Time per append, all threads together.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * threads as u64) as f64)
            })
        });
        Arc::try_unwrap(store).unwrap().close().unwrap();
    }
    g.finish();
}

fn append_batch(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = short(c, "append_batch");
    let store = filled_store(&tmp.path().join("s"), 10_000, 100, never());
    let mut gen = Gen(43);
    let mut i = 0;
    for size in [1usize, 100] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(format!("batch_{size}"), |b| {
            b.iter_batched(
                || {
                    (0..size)
                        .map(|_| {
                            i += 1;
                            Event::Step(gen.event(10_000, i))
                        })
                        .collect::<Vec<Event>>()
                },
                |batch: Vec<Event>| store.append_batch(&batch).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    // The publish cost alone: a batch of events that change nothing but are logged
    // (Configure with the same history), so apply is trivial.
    g.throughput(Throughput::Elements(100));
    let noop: Vec<Event> = (0..100)
        .map(|_| Event::Configure { history: 100 })
        .collect();
    g.bench_function("batch_100_trivial_apply", |b| {
        b.iter(|| store.append_batch(&noop).unwrap())
    });
    g.finish();
    store.close().unwrap();
}

fn reads_under_load(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut g = short(c, "reads_under_write_load");
    let store = Arc::new(filled_store(&tmp.path().join("s"), 10_000, 100, never()));
    let base = Arc::new(Baseline::filled(&tmp.path().join("b"), 10_000, 100));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut gen = Gen(44);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    store.append(&Event::Step(gen.event(10_000, i))).unwrap();
                }
            })
        },
        {
            let (base, stop) = (Arc::clone(&base), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut gen = Gen(44);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    base.append(&gen.event(10_000, i));
                }
            })
        },
    ];
    let mut k = 0u32;
    g.bench_function("snapwal", |b| {
        b.iter(|| {
            k = (k + 7919) % 10_000;
            let v = store.current();
            black_box(v.pipelines.get(&k).map(|p| p.0.steps_done))
        })
    });
    g.bench_function("snapwal_guard", |b| {
        b.iter(|| {
            k = (k + 7919) % 10_000;
            store.with_current(|v| black_box(v.pipelines.get(&k).map(|p| p.0.steps_done)))
        })
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            k = (k + 7919) % 10_000;
            let st = base.state.lock().unwrap();
            black_box(st.pipelines.get(&k).map(|p| p.steps_done))
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    append_never(&mut c);
    append_always(&mut c);
    append_batch(&mut c);
    reads_under_load(&mut c);
    c.final_summary();
    println!();
    // Issue 11 target: each snapwal state within 1.5x of the baseline's time at 10k.
    for suffix in ["100", "10k"] {
        for state in ["imbl", "plain"] {
            print_ratio(
                &format!("append (Never) snapwal {state} / mutex baseline at {suffix} pipelines"),
                ("append_never", &format!("{state}_{suffix}")),
                ("append_never", &format!("baseline_{suffix}")),
            );
        }
    }
    for who in ["imbl", "plain", "baseline"] {
        print_ratio(
            &format!("append (Never) {who} 10k / 100 pipelines"),
            ("append_never", &format!("{who}_10k")),
            ("append_never", &format!("{who}_100")),
        );
    }
    print_ratio(
        "durable append time per event, 1 thread / 8 threads",
        ("append_always", "threads_1"),
        ("append_always", "threads_8"),
    );
    match (
        mean_ns("append_batch", "batch_1"),
        mean_ns("append_batch", "batch_100"),
    ) {
        (Some(one), Some(hundred)) => println!(
            "RATIO append per event, single / batch of 100: {:.1}x  ({} vs {} per event)",
            one / (hundred / 100.0),
            fmt_ns(one),
            fmt_ns(hundred / 100.0)
        ),
        _ => println!("RATIO batch: not measured in this run"),
    }
    if let Some(t) = mean_ns("append_batch", "batch_100_trivial_apply") {
        println!(
            "publish cost per event in a batch of 100 (trivial apply): {}",
            fmt_ns(t / 100.0)
        );
    }
    print_ratio(
        "read under write load, mutex baseline / snapwal current()",
        ("reads_under_write_load", "baseline"),
        ("reads_under_write_load", "snapwal"),
    );
    print_ratio(
        "read under write load, mutex baseline / snapwal with_current()",
        ("reads_under_write_load", "baseline"),
        ("reads_under_write_load", "snapwal_guard"),
    );
}
