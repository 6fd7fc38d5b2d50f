//! Async durable appends against the blocking API, in the same run, and the
//! runtime's responsiveness while tasks append.
//!
//! Under `SyncPolicy::Always`, for each concurrency: blocking appends from 1 and 8
//! threads; async appends from 1, 8 and 64 tasks on a 2-worker tokio runtime. Each
//! async run also has a ticker task on a `tokio::time::interval` of 1 ms, and reports
//! its largest lateness (how late a tick ran after its deadline): a worker parked on
//! the disk would show there. Prints appends per second and the ratios.
//!
//! Configurations are measured in interleaved slices (8 rounds of 0.25 s each by
//! default), so a noisy disk's slow phases fall on all of them alike:
//!
//! ```sh
//! cargo bench --bench async_append
//! SNAPWAL_BENCH_ROUNDS=20 SNAPWAL_BENCH_SLICE=0.5 cargo bench --bench async_append
//! ```

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{payload100, Tally};
use snapwal::{Options, Store, SyncPolicy};

/// Rounds of measurement, and the length of each slice within a round.
fn plan() -> (usize, Duration) {
    let get = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(default)
    };
    (
        get("SNAPWAL_BENCH_ROUNDS", 8.0) as usize,
        Duration::from_secs_f64(get("SNAPWAL_BENCH_SLICE", 0.25)),
    )
}

fn open(dir: &std::path::Path) -> Arc<Store<Tally>> {
    Arc::new(Store::open(dir, Options::default().sync(SyncPolicy::Always)).expect("open"))
}

fn close(store: Arc<Store<Tally>>) {
    Arc::try_unwrap(store)
        .expect("no other holder")
        .close()
        .expect("close");
}

/// One measured configuration: appends done and time spent over all its slices, and
/// the ticker's largest lateness (async runs).
#[derive(Default)]
struct Measured {
    appends: u64,
    time: Duration,
    late: Duration,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.appends as f64 / self.time.as_secs_f64()
    }
}

/// One slice of durable appends from `threads` threads calling `append`.
fn blocking(store: &Store<Tally>, threads: usize, slice: Duration, out: &mut Measured) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let p = payload100();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    store.append(&p).expect("append");
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(slice);
        stop.store(true, Ordering::Relaxed);
    });
    out.time += start.elapsed();
    out.appends += done.load(Ordering::Relaxed);
}

/// One slice of durable appends from `tasks` tasks calling `append_async` on `rt`,
/// with the ticker running.
fn asynchronous(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Store<Tally>>,
    tasks: usize,
    slice: Duration,
    out: &mut Measured,
) {
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let ticker = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut worst = Duration::ZERO;
                every.tick().await;
                while !stop.load(Ordering::Relaxed) {
                    let due = every.tick().await;
                    worst = worst.max(tokio::time::Instant::now() - due);
                }
                worst
            })
        };
        // Let the ticker settle before the appenders start.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let start = Instant::now();
        let appenders: Vec<_> = (0..tasks)
            .map(|_| {
                let (store, stop) = (Arc::clone(store), Arc::clone(&stop));
                tokio::spawn(async move {
                    let p = payload100();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        store.append_async(&p).await.expect("append");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        tokio::time::sleep(slice).await;
        stop.store(true, Ordering::Relaxed);
        for a in appenders {
            out.appends += a.await.expect("appender");
        }
        out.time += start.elapsed();
        out.late = out.late.max(ticker.await.expect("ticker"));
    });
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: one short round.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, slice) = if quick {
        (1, Duration::from_millis(50))
    } else {
        plan()
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    // Blocking 1 and 8 threads, async 0 (the ticker alone), 1, 8 and 64 tasks: each
    // on its own store, measured in interleaved slices so that the disk's slow and
    // fast phases fall on every configuration alike.
    let configs: [(bool, usize); 6] = [
        (false, 1),
        (false, 8),
        (true, 0),
        (true, 1),
        (true, 8),
        (true, 64),
    ];
    let stores: Vec<_> = (0..configs.len())
        .map(|i| open(&tmp.path().join(i.to_string())))
        .collect();
    let mut tallies: Vec<Measured> = configs.iter().map(|_| Measured::default()).collect();
    for round in 0..rounds {
        for k in 0..configs.len() {
            // Rotate the order each round.
            let i = (k + round) % configs.len();
            let (is_async, n) = configs[i];
            if is_async {
                asynchronous(&rt, &stores[i], n, slice, &mut tallies[i]);
            } else {
                blocking(&stores[i], n, slice, &mut tallies[i]);
            }
        }
    }
    drop(rt);
    for store in stores {
        close(store);
    }
    let [b1, b8, idle, a1, a8, a64] = &tallies[..] else {
        unreachable!("six configurations")
    };
    println!(
        "durable appends/s (SyncPolicy::Always), {rounds} interleaved rounds of {:.2} s",
        slice.as_secs_f64()
    );
    println!("  blocking  1 thread : {:>9.0}", b1.rate());
    println!("  blocking  8 threads: {:>9.0}", b8.rate());
    println!(
        "  ticker alone       :              ticker max lateness {:.2?} (the machine's own noise)",
        idle.late
    );
    for (name, t) in [("1 task  ", a1), ("8 tasks ", a8), ("64 tasks", a64)] {
        println!(
            "  async    {name} : {:>9.0}   ticker max lateness {:.2?}",
            t.rate(),
            t.late
        );
    }
    println!("ratios (targets):");
    println!(
        "  async 1 / blocking 1   = {:.2} (>= 0.9)",
        a1.rate() / b1.rate()
    );
    println!(
        "  async 8 / blocking 8   = {:.2} (>= 0.9)",
        a8.rate() / b8.rate()
    );
    println!(
        "  async 64 / blocking 8  = {:.2} (>= 1.0)",
        a64.rate() / b8.rate()
    );
    let worst = a1.late.max(a8.late).max(a64.late);
    println!(
        "  ticker max lateness    = {worst:.2?} (<= 2 ms; ticker alone {:.2?})",
        idle.late
    );
}
