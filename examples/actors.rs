//! Ten thousand actors on one machine: every actor has its own store, and one shared
//! `Scheduler` (2 threads) runs all their checkpoints.
//!
//! ```text
//! cargo run --release --example actors [-- N]          # N actors, default 10,000
//! cargo run --release --example actors -- --append-bench
//! cargo run --release --example actors -- --large-close
//! ```
//!
//! The default run opens N stores with the default options, appends one event to
//! each, leaves them idle, then closes them all with checkpoints in flight. It prints
//! the open time, the disk and descriptors used, the scheduler's CPU while idle, the
//! shutdown time and the per-store close latency.
//!
//! `--append-bench` measures durable appends (`SyncPolicy::Always`, 1 and 8 threads)
//! with the stepped reservation against a full reservation of every segment, and
//! 1,000 stores x 8 threads against one store x 8 threads. `--large-close` closes an
//! actor with a 19 MB state, freeing it on the closing thread or in the background.
//!
//! Each open store holds its `LOCK` descriptor, plus its active segment's while it
//! is busy (an idle store closes it); the example raises the soft `RLIMIT_NOFILE` to
//! the hard limit.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use snapwal::fs::{FileBytes, Fs, FsFile, LockGuard, RealFs};
use snapwal::{CheckpointerConfig, CloseOptions, Options, Scheduler, State, Store};

/// An actor's state: a counter and its recent history.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Actor {
    count: u64,
    recent: Vec<u64>,
}

impl State for Actor {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        self.count += 1;
        self.recent.push(*e);
        if self.recent.len() > 16 {
            self.recent.remove(0);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit = raise_fd_limit();
    let root = tempfile::tempdir()?;
    if args.iter().any(|a| a == "--append-bench") {
        return append_bench(root.path());
    }
    if args.iter().any(|a| a == "--large-close") {
        return large_close(root.path());
    }
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    println!("actors: {n} stores on one 2-thread scheduler, checkpoint every 1 s, default options");
    println!("descriptor limit (soft RLIMIT_NOFILE): {limit}");
    let fds_before = open_fds();
    let scheduler = Scheduler::new(2)?;
    let cfg = CheckpointerConfig::every(Duration::from_secs(1));

    let start = Instant::now();
    let mut stores = Vec::with_capacity(n);
    for i in 0..n {
        let store: Store<Actor> =
            Store::open(root.path().join(format!("actor-{i}")), Options::default())?;
        store.start_checkpointer_on(&scheduler, cfg)?;
        stores.push(store);
    }
    let opened = start.elapsed();
    println!(
        "open:        {:>8.2} s for {n} stores ({:.0} us each)",
        opened.as_secs_f64(),
        opened.as_secs_f64() * 1e6 / n as f64
    );
    let disk = disk_used(root.path());
    println!(
        "disk:        {:>8} KiB before any append ({:.1} KiB per store)",
        disk / 1024,
        disk as f64 / 1024.0 / n as f64
    );
    println!(
        "descriptors: {:>8} before any append ({:.2} per store)",
        open_fds() - fds_before,
        (open_fds() - fds_before) as f64 / n as f64
    );

    let start = Instant::now();
    for (i, store) in stores.iter().enumerate() {
        store.append(&(i as u64))?;
    }
    let appended = start.elapsed();
    let disk = disk_used(root.path());
    println!(
        "append:      {:>8.2} s for one durable append each",
        appended.as_secs_f64()
    );
    println!(
        "disk:        {:>8} KiB after one append each ({:.1} KiB per store)",
        disk / 1024,
        disk as f64 / 1024.0 / n as f64
    );
    let fds = open_fds() - fds_before;
    println!(
        "descriptors: {:>8} after one append each ({:.2} per store)",
        fds,
        fds as f64 / n as f64
    );

    // Let every store take its first checkpoint (a snapshot each), then measure the
    // idle scheduler.
    let start = Instant::now();
    while !stores.iter().all(|s| s.checkpoint_stats().total >= 2) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "checkpoints: {:>8.2} s until every store had checkpointed twice",
        start.elapsed().as_secs_f64()
    );
    // Quiet now: each store is parked and closes its segment's file.
    let start = Instant::now();
    let mut fds = open_fds() - fds_before;
    while fds > n + 16 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        fds = open_fds() - fds_before;
    }
    println!(
        "descriptors: {:>8} once idle ({:.2} per store: the lock; segments closed)",
        fds,
        fds as f64 / n as f64
    );
    let window = Duration::from_secs(5);
    let cpu0 = process_cpu();
    std::thread::sleep(window);
    let cpu = process_cpu().saturating_sub(cpu0);
    println!(
        "idle CPU:    {:>8.2} % of one core over {} s (whole process, {n} idle stores)",
        cpu.as_secs_f64() * 100.0 / window.as_secs_f64(),
        window.as_secs()
    );

    // One more event each, so the next periodic checkpoints write snapshots, and close
    // while they run.
    for (i, store) in stores.iter().enumerate() {
        store.append(&(i as u64 + 1))?;
    }
    std::thread::sleep(Duration::from_millis(900));
    let start = Instant::now();
    let mut close_us = Vec::with_capacity(n);
    let mut reported_us = Vec::with_capacity(n);
    for store in stores {
        let t = Instant::now();
        let report = store.close_with(CloseOptions::default().drop_in_background(true))?;
        close_us.push(t.elapsed().as_micros() as u64);
        reported_us.push(report.elapsed.as_micros() as u64);
    }
    let closed = start.elapsed();
    let left = scheduler.shutdown(Duration::from_secs(1));
    let total = start.elapsed();
    println!(
        "shutdown:    {:>8.3} s to close {n} stores with checkpoints in flight, {:.3} s with Scheduler::shutdown ({left} workers left)",
        closed.as_secs_f64(),
        total.as_secs_f64()
    );
    close_us.sort_unstable();
    reported_us.sort_unstable();
    println!(
        "close:       p50 {} us, p99 {} us, max {} us (CloseReport.elapsed: p50 {} us, p99 {} us, max {} us)",
        pct(&close_us, 50),
        pct(&close_us, 99),
        close_us.last().copied().unwrap_or(0),
        pct(&reported_us, 50),
        pct(&reported_us, 99),
        reported_us.last().copied().unwrap_or(0),
    );
    Ok(())
}

/// An actor with a large state (about 19 MB in 200,000 small heap blocks), closed
/// with the default options and with `drop_in_background`: what the closing thread
/// waits for, and what `CloseReport.elapsed` says.
fn large_close(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    #[derive(Clone, Default, Serialize, Deserialize)]
    struct Big(std::collections::BTreeMap<u64, Vec<u8>>);
    impl State for Big {
        type Event = (u64, u16);
        fn apply(&mut self, (k, len): &(u64, u16)) {
            self.0.insert(*k, vec![0xab; usize::from(*len)]);
        }
    }
    println!("large-state close: 200,000 entries of 64 B, a checkpoint in flight, 5 rounds each");
    for background in [false, true] {
        let mut waited = Vec::new();
        let mut reported = Vec::new();
        for round in 0..5 {
            let dir = root.join(format!("big-{background}-{round}"));
            // Always: every record is durable before close, so close has no WAL to sync.
            let opts = Options::default().sync(snapwal::SyncPolicy::Always);
            let store: Store<Big> = Store::open(&dir, opts)?;
            let events: Vec<(u64, u16)> = (0..200_000u64).map(|k| (k, 64)).collect();
            for batch in events.chunks(10_000) {
                store.append_batch(batch)?;
            }
            store.start_checkpointer(CheckpointerConfig::every(Duration::from_millis(1)))?;
            std::thread::sleep(Duration::from_millis(20));
            let t = Instant::now();
            let report =
                store.close_with(CloseOptions::default().drop_in_background(background))?;
            waited.push(t.elapsed().as_micros() as u64);
            reported.push(report.elapsed.as_micros() as u64);
        }
        waited.sort_unstable();
        reported.sort_unstable();
        println!(
            "drop_in_background({background}): close took median {} us, max {} us (CloseReport.elapsed median {} us, max {} us)",
            pct(&waited, 50),
            waited.last().copied().unwrap_or(0),
            pct(&reported, 50),
            reported.last().copied().unwrap_or(0),
        );
    }
    Ok(())
}

fn pct(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Raises the soft descriptor limit to the hard one; returns the new soft limit.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Descriptors open in this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// CPU time of every thread of this process (on-CPU nanoseconds from schedstat).
fn process_cpu() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

/// Bytes of disk allocated under `dir` (files and directories).
fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// The real file system, except that every reservation is the whole segment: what
/// `preallocate` did before reservations grew in steps.
#[derive(Debug)]
struct FullReservation(u64);

#[derive(Debug)]
struct FullFile(Box<dyn FsFile>, u64);

impl FsFile for FullFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        self.0.allocate(len.max(self.1))
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for FullReservation {
    fn create_dir_all(&self, p: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(p)
    }
    fn create_new(&self, p: &Path) -> std::io::Result<Box<dyn FsFile>> {
        Ok(Box::new(FullFile(RealFs.create_new(p)?, self.0)))
    }
    fn open_write(&self, p: &Path) -> std::io::Result<Box<dyn FsFile>> {
        RealFs.open_write(p)
    }
    fn read(&self, p: &Path) -> std::io::Result<FileBytes> {
        RealFs.read(p)
    }
    fn list(&self, p: &Path) -> std::io::Result<Vec<String>> {
        RealFs.list(p)
    }
    fn rename_noreplace(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        RealFs.rename_noreplace(a, b)
    }
    fn remove_file(&self, p: &Path) -> std::io::Result<()> {
        RealFs.remove_file(p)
    }
    fn sync_dir(&self, p: &Path) -> std::io::Result<()> {
        RealFs.sync_dir(p)
    }
    fn lock(&self, p: &Path) -> std::io::Result<Box<dyn LockGuard>> {
        RealFs.lock(p)
    }
}

/// Durable appends from `threads` threads spread over `stores` for `dur`: (appends
/// per second, p50, p99, max latency in microseconds).
fn durable_appends(
    root: &Path,
    opts: &Options,
    stores: usize,
    threads: usize,
    dur: Duration,
) -> Result<(f64, u64, u64, u64), Box<dyn std::error::Error>> {
    let list: Vec<Arc<Store<Actor>>> = (0..stores)
        .map(|i| Store::open(root.join(format!("s{i}")), opts.clone()).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let list = Arc::new(list);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let list = Arc::clone(&list);
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = t;
                while start.elapsed() < dur {
                    let s = &list[i % list.len()];
                    let a = Instant::now();
                    s.append(&(i as u64)).expect("append");
                    lat.push(a.elapsed().as_micros() as u64);
                    i += threads;
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    for s in Arc::try_unwrap(list).map_err(|_| "stores still shared")? {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.close()?;
        }
    }
    Ok((
        lat.len() as f64 / secs,
        pct(&lat, 50),
        pct(&lat, 99),
        lat.last().copied().unwrap_or(0),
    ))
}

fn append_bench(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let dur = Duration::from_secs(3);
    let stepped = Options::default();
    let full = Options::default().fs(Arc::new(FullReservation(stepped.segment_bytes)));
    println!(
        "durable appends (SyncPolicy::Always), {} s each",
        dur.as_secs()
    );
    let mut run = 0;
    for (stores, threads) in [(1, 1), (1, 8), (1_000, 8)] {
        for (name, opts) in [("stepped", &stepped), ("full", &full)] {
            if stores > 1 && name == "full" {
                continue;
            }
            run += 1;
            let (rate, p50, p99, max) =
                durable_appends(&root.join(format!("run{run}")), opts, stores, threads, dur)?;
            println!(
                "{stores:>5} store(s) x {threads} thread(s), {name:>7} reservation: {rate:>8.0} appends/s, p50 {p50} us, p99 {p99} us, max {max} us"
            );
        }
    }
    Ok(())
}
