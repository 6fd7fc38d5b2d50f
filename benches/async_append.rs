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
//! SNAPWAL_BENCH_FSYNC_US=500 cargo bench --bench async_append   # a steady 500 µs fdatasync
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
    let mut opts = Options::default().sync(SyncPolicy::Always);
    if let Some(us) = std::env::var("SNAPWAL_BENCH_FSYNC_US")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts = opts.fs(Arc::new(steady::SteadyFs(Duration::from_micros(us))));
    }
    Arc::new(Store::open(dir, opts).expect("open"))
}

/// A disk whose `fdatasync` always takes the same time: the real file system, with
/// each WAL `sync_data` replaced by a sleep. It measures the group commit's own
/// overhead, free of a shared disk's noise (`SNAPWAL_BENCH_FSYNC_US=500`).
mod steady {
    use std::io;
    use std::path::Path;
    use std::time::Duration;

    use snapwal::fs::{FileBytes, Fs, FsFile, LockGuard, RealFs};

    #[derive(Debug)]
    pub struct SteadyFs(pub Duration);

    #[derive(Debug)]
    struct SteadyFile(Box<dyn FsFile>, Duration);

    impl FsFile for SteadyFile {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            std::thread::sleep(self.1);
            Ok(())
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            self.0.allocate(len)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
    }

    impl Fs for SteadyFs {
        fn create_dir_all(&self, p: &Path) -> io::Result<()> {
            RealFs.create_dir_all(p)
        }
        fn create_new(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
            Ok(Box::new(SteadyFile(RealFs.create_new(p)?, self.0)))
        }
        fn open_write(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
            RealFs.open_write(p)
        }
        fn read(&self, p: &Path) -> io::Result<FileBytes> {
            RealFs.read(p)
        }
        fn list(&self, p: &Path) -> io::Result<Vec<String>> {
            RealFs.list(p)
        }
        fn rename_noreplace(&self, a: &Path, b: &Path) -> io::Result<()> {
            RealFs.rename_noreplace(a, b)
        }
        fn remove_file(&self, p: &Path) -> io::Result<()> {
            RealFs.remove_file(p)
        }
        fn sync_dir(&self, _: &Path) -> io::Result<()> {
            Ok(())
        }
        fn lock(&self, p: &Path) -> io::Result<Box<dyn LockGuard>> {
            RealFs.lock(p)
        }
    }
}

fn close(store: Arc<Store<Tally>>) {
    Arc::try_unwrap(store)
        .expect("no other holder")
        .close()
        .expect("close");
}

/// One measured configuration: appends done and time spent over all its slices, and
/// the ticker's lateness samples.
#[derive(Default)]
struct Measured {
    appends: u64,
    time: Duration,
    late: Vec<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.appends as f64 / self.time.as_secs_f64()
    }
    /// The ticker's lateness at quantile `q` (1.0: the largest).
    fn late(&self, q: f64) -> Duration {
        let mut v = self.late.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
        v.get(i).copied().unwrap_or_default()
    }
}

/// Runs `f` while a ticker task on `rt` ticks every 1 ms, and adds how late each
/// tick ran to `out`. The ticker runs in every configuration, blocking ones included,
/// so that all of them see the same machine (timer interrupts keep an idle virtual
/// CPU from sleeping deeply, which changes how fast an `fdatasync` completion wakes a
/// thread).
fn with_ticker(rt: &tokio::runtime::Runtime, out: &mut Measured, f: impl FnOnce(&mut Measured)) {
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let stop = Arc::clone(&stop);
        rt.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut late = Vec::new();
            every.tick().await;
            while !stop.load(Ordering::Relaxed) {
                let due = every.tick().await;
                late.push(tokio::time::Instant::now() - due);
            }
            late
        })
    };
    // Let the ticker settle first.
    std::thread::sleep(Duration::from_millis(10));
    f(out);
    stop.store(true, Ordering::Relaxed);
    out.late.extend(rt.block_on(ticker).expect("ticker"));
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

/// One slice of durable appends from `tasks` tasks calling `append_async` on `rt`.
fn asynchronous(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Store<Tally>>,
    tasks: usize,
    slice: Duration,
    out: &mut Measured,
) {
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
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
            with_ticker(&rt, &mut tallies[i], |out| {
                if is_async {
                    asynchronous(&rt, &stores[i], n, slice, out);
                } else {
                    blocking(&stores[i], n, slice, out);
                }
            });
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
        "durable appends/s (SyncPolicy::Always), {rounds} interleaved rounds of {:.2} s;",
        slice.as_secs_f64()
    );
    println!("a 1 ms ticker task runs on the 2-worker runtime throughout (lateness p50/p99/max)");
    let row = |name: &str, t: &Measured| {
        let rate = if t.appends > 0 {
            format!("{:>9.0}", t.rate())
        } else {
            format!("{:>9}", "-")
        };
        println!(
            "  {name:<20} {rate}   ticker {:>8.2?} {:>8.2?} {:>8.2?}",
            t.late(0.5),
            t.late(0.99),
            t.late(1.0)
        );
    };
    row("ticker alone", idle);
    row("blocking  1 thread", b1);
    row("blocking  8 threads", b8);
    row("async     1 task", a1);
    row("async     8 tasks", a8);
    row("async    64 tasks", a64);
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
    let worst = a1.late(1.0).max(a8.late(1.0)).max(a64.late(1.0));
    let p99 = a1.late(0.99).max(a8.late(0.99)).max(a64.late(0.99));
    println!(
        "  ticker lateness, async = p99 {p99:.2?}, max {worst:.2?} (<= 2 ms; ticker alone p99 {:.2?}, max {:.2?})",
        idle.late(0.99),
        idle.late(1.0)
    );
}
