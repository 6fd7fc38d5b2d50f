//! A daemon with many pipelines, checkpointed every second: snapwal against the
//! `Mutex<State>` + `Mutex<Wal>` design it replaces.
//!
//! Each pipeline keeps the last `--history` step records (about 100 bytes each). An
//! event loop appends step events at a fixed rate while a second thread checkpoints
//! every second. The same workload runs twice, for `--seconds` each:
//!
//! - **snapwal**: the state is structurally shared (`imbl::HashMap` of pipelines, each
//!   an `imbl::Vector` of `Arc`'d records), so the store's per-append clone is O(1)
//!   and the writer copies only the nodes it touches. `SyncPolicy::Never`, so the run
//!   measures stalls, not `fdatasync`.
//! - **mutex baseline**: `Mutex<State>` + `Mutex<Wal>` over a plain file of JSON
//!   lines. A checkpoint locks both, deep-clones the state, releases them, writes a
//!   JSON snapshot with `sync_all`, then truncates by rewriting the WAL file (keeping
//!   the records after the snapshot) under the WAL lock.
//!
//! It prints a line per second to stderr, then a table (append latency percentiles,
//! checkpoint durations, time the writer was blocked) and writes an SVG plot of append
//! latency over time.
//!
//! ```text
//! cargo run --release --example pipelines -- [--pipelines N] [--history H] [--rate R]
//!     [--seconds S] [--dir PATH] [--plot PATH] [--compare-n] [--only snapwal|baseline]
//! ```
//!
//! `--compare-n` adds a snapwal run at 100 pipelines to show that append latency does
//! not grow with the size of the state.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use snapwal::{Options, Store, SyncPolicy};

// ---------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone)]
struct Config {
    pipelines: u32,
    history: usize,
    rate: u64,
    seconds: u64,
    dir: Option<PathBuf>,
    plot: PathBuf,
    compare_n: bool,
    only: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: pipelines [--pipelines N] [--history H] [--rate EVENTS_PER_S] [--seconds S]\n\
         \x20                [--dir PATH] [--plot PATH] [--compare-n] [--only snapwal|baseline]"
    );
    std::process::exit(2)
}

fn parse_args() -> Config {
    let mut c = Config {
        pipelines: 10_000,
        history: 100,
        rate: 2_000,
        seconds: 10,
        dir: None,
        plot: PathBuf::from("pipelines.svg"),
        compare_n: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        fn num<T: std::str::FromStr>(s: String) -> T {
            s.parse().unwrap_or_else(|_| usage())
        }
        match a.as_str() {
            "--pipelines" => c.pipelines = num(val()),
            "--history" => c.history = num(val()),
            "--rate" => c.rate = num(val()),
            "--seconds" => c.seconds = num(val()),
            "--dir" => c.dir = Some(PathBuf::from(val())),
            "--plot" => c.plot = PathBuf::from(val()),
            "--compare-n" => c.compare_n = true,
            "--only" => c.only = Some(val()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if c.pipelines == 0 || c.history == 0 || c.rate == 0 || c.seconds == 0 {
        usage();
    }
    c
}

#[path = "pipelines/model.rs"]
mod model;
use model::*;

struct BWal {
    file: File,
    path: PathBuf,
}

struct Baseline {
    dir: PathBuf,
    state: Mutex<BState>,
    wal: Mutex<BWal>,
}

impl Baseline {
    fn open(dir: &Path, history: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wal.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Baseline {
            dir: dir.to_path_buf(),
            state: Mutex::new(BState {
                history,
                ..BState::default()
            }),
            wal: Mutex::new(BWal { file, path }),
        })
    }

    /// Logs the event (one `write` of a JSON line) and applies it, under both locks.
    fn append(&self, e: &StepDone) -> std::io::Result<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        let seq = st.seq + 1;
        let mut line = format!("{seq}\t");
        // Writing JSON into a String cannot fail for these types.
        line.push_str(&serde_json::to_string(e).unwrap_or_default());
        line.push('\n');
        wal.file.write_all(line.as_bytes())?;
        st.seq = seq;
        st.apply(e);
        Ok(seq)
    }

    /// Lock both, clone, unlock; write the JSON snapshot and `sync_all`; rewrite the
    /// WAL without the records the snapshot covers, under the WAL lock.
    fn checkpoint(&self) -> std::io::Result<u64> {
        let copy = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let _wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
            st.clone()
        };
        let seq = copy.seq;
        let tmp = self.dir.join("snapshot.json.tmp");
        {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
            serde_json::to_writer(&mut w, &copy).map_err(std::io::Error::other)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join("snapshot.json"))?;
        File::open(&self.dir)?.sync_all()?;
        drop(copy);

        let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        let new_path = self.dir.join("wal.jsonl.tmp");
        {
            let mut out = BufWriter::new(File::create(&new_path)?);
            for line in BufReader::new(File::open(&wal.path)?).lines() {
                let line = line?;
                let s: u64 = line
                    .split('\t')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if s > seq {
                    out.write_all(line.as_bytes())?;
                    out.write_all(b"\n")?;
                }
            }
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        std::fs::rename(&new_path, &wal.path)?;
        wal.file = OpenOptions::new().append(true).open(&wal.path)?;
        Ok(seq)
    }
}

// ---------------------------------------------------------------------------------
// The run: an event loop at a fixed rate, a checkpoint every second.

trait Target: Send + Sync {
    fn append(&self, e: StepDone);
    /// Runs one checkpoint; returns its duration.
    fn checkpoint(&self) -> Duration;
}

impl Target for Store<Daemon> {
    fn append(&self, e: StepDone) {
        if let Err(err) = Store::append(self, &Event::Step(e)) {
            eprintln!("append failed: {err}");
            std::process::exit(1);
        }
    }
    fn checkpoint(&self) -> Duration {
        match Store::checkpoint(self) {
            Ok(r) => r.elapsed,
            Err(err) => {
                eprintln!("checkpoint failed: {err}");
                std::process::exit(1);
            }
        }
    }
}

impl Target for Baseline {
    fn append(&self, e: StepDone) {
        if let Err(err) = Baseline::append(self, &e) {
            eprintln!("append failed: {err}");
            std::process::exit(1);
        }
    }
    fn checkpoint(&self) -> Duration {
        let t = Instant::now();
        if let Err(err) = Baseline::checkpoint(self) {
            eprintln!("checkpoint failed: {err}");
            std::process::exit(1);
        }
        t.elapsed()
    }
}

/// What one run measured.
struct Run {
    name: String,
    /// (time since start, append latency) per event.
    samples: Vec<(Duration, Duration)>,
    /// (start since run start, duration) per checkpoint.
    checkpoints: Vec<(Duration, Duration)>,
    /// Longest time an event was appended after its scheduled time.
    max_lag: Duration,
    elapsed: Duration,
}

const BLOCKED: Duration = Duration::from_millis(1);

fn run(name: &str, target: Arc<dyn Target>, cfg: &Config, pipelines: u32, seed: u64) -> Run {
    let total = cfg.rate * cfg.seconds;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let checkpointer = {
        let target = Arc::clone(&target);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut out = Vec::new();
            let mut next = start + Duration::from_secs(1);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    thread::sleep((next - now).min(Duration::from_millis(20)));
                    continue;
                }
                let t = start.elapsed();
                out.push((t, target.checkpoint()));
                next += Duration::from_secs(1);
                if next < Instant::now() {
                    next = Instant::now();
                }
            }
            out
        })
    };

    let mut gen = Gen(seed);
    let mut samples = Vec::with_capacity(total as usize);
    let mut max_lag = Duration::ZERO;
    let mut second = 1;
    let mut since = 0usize;
    for i in 0..total {
        let event = gen.event(pipelines, 1_000_000 + i);
        let due = start + Duration::from_nanos(i * 1_000_000_000 / cfg.rate);
        let now = Instant::now();
        if now < due {
            thread::sleep(due - now);
        }
        let t0 = Instant::now();
        target.append(event);
        let t1 = Instant::now();
        samples.push((t0 - start, t1 - t0));
        max_lag = max_lag.max(t1.saturating_duration_since(due));
        if (t1 - start).as_secs() >= second {
            let mut last: Vec<Duration> = samples[since..].iter().map(|s| s.1).collect();
            last.sort_unstable();
            eprintln!(
                "  [{name}] {second:>3}s  {:>6} events  p50 {:>9}  max {:>9}",
                samples.len(),
                fmt_d(pct(&last, 0.5)),
                fmt_d(last.last().copied().unwrap_or_default()),
            );
            since = samples.len();
            second += 1;
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let checkpoints = checkpointer.join().unwrap_or_default();
    Run {
        name: name.to_string(),
        samples,
        checkpoints,
        max_lag,
        elapsed,
    }
}

// ---------------------------------------------------------------------------------
// Setup of each store with the initial state.

fn fill_snapwal(dir: &Path, cfg: &Config, pipelines: u32) -> Store<Daemon> {
    let t = Instant::now();
    let opts = Options::default().sync(SyncPolicy::Never);
    let store = Store::<Daemon>::open(dir, opts).unwrap_or_else(|e| {
        eprintln!("open failed: {e}");
        std::process::exit(1)
    });
    let mut gen = Gen(7);
    let mut batch = Vec::with_capacity(cfg.history + 1);
    batch.push(Event::Configure {
        history: cfg.history,
    });
    let mut n = 0;
    for p in 0..pipelines {
        for _ in 0..cfg.history {
            n += 1;
            batch.push(Event::Step(StepDone {
                pipeline: p,
                step: gen.step(n),
            }));
        }
        if let Err(e) = store.append_batch(&batch) {
            eprintln!("fill failed: {e}");
            std::process::exit(1);
        }
        batch.clear();
    }
    let rep = store.checkpoint().unwrap_or_else(|e| {
        eprintln!("checkpoint failed: {e}");
        std::process::exit(1)
    });
    eprintln!(
        "  [snapwal] filled {} pipelines x {} steps ({} records, snapshot {:.1} MB) in {:.1} s",
        pipelines,
        cfg.history,
        n,
        rep.snapshot_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    store
}

fn fill_baseline(dir: &Path, cfg: &Config, pipelines: u32) -> Baseline {
    let t = Instant::now();
    let b = Baseline::open(dir, cfg.history).unwrap_or_else(|e| {
        eprintln!("open failed: {e}");
        std::process::exit(1)
    });
    {
        let mut st = b.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut gen = Gen(7);
        let mut n = 0;
        for p in 0..pipelines {
            for _ in 0..cfg.history {
                n += 1;
                let e = StepDone {
                    pipeline: p,
                    step: gen.step(n),
                };
                st.apply(&e);
            }
        }
        st.seq = n;
    }
    if let Err(e) = b.checkpoint() {
        eprintln!("checkpoint failed: {e}");
        std::process::exit(1);
    }
    let size = std::fs::metadata(dir.join("snapshot.json")).map_or(0, |m| m.len());
    eprintln!(
        "  [baseline] filled {} pipelines x {} steps (snapshot {:.1} MB) in {:.1} s",
        pipelines,
        cfg.history,
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    b
}

// ---------------------------------------------------------------------------------
// Reporting.

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn fmt_d(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

struct Summary {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    cp_mean: Duration,
    cp_max: Duration,
    cp_n: usize,
    blocked: Duration,
    blocked_n: usize,
    max_lag: Duration,
}

fn summarize(r: &Run) -> Summary {
    let mut l: Vec<Duration> = r.samples.iter().map(|s| s.1).collect();
    l.sort_unstable();
    let blocked: Vec<Duration> = l.iter().copied().filter(|d| *d > BLOCKED).collect();
    let cp: Vec<Duration> = r.checkpoints.iter().map(|c| c.1).collect();
    Summary {
        p50: pct(&l, 0.5),
        p99: pct(&l, 0.99),
        p999: pct(&l, 0.999),
        max: l.last().copied().unwrap_or_default(),
        cp_mean: if cp.is_empty() {
            Duration::ZERO
        } else {
            cp.iter().sum::<Duration>() / cp.len() as u32
        },
        cp_max: cp.iter().max().copied().unwrap_or_default(),
        cp_n: cp.len(),
        blocked: blocked.iter().sum(),
        blocked_n: blocked.len(),
        max_lag: r.max_lag,
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "-".into();
    }
    format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64())
}

/// A table cell: a duration (with a ratio column) or a count.
enum Cell {
    D(Duration),
    N(usize),
}

type Row = (&'static str, fn(&Summary) -> Cell);

const ROWS: [Row; 10] = [
    ("append p50", |s| Cell::D(s.p50)),
    ("append p99", |s| Cell::D(s.p99)),
    ("append p99.9", |s| Cell::D(s.p999)),
    ("append max", |s| Cell::D(s.max)),
    ("max lag behind schedule", |s| Cell::D(s.max_lag)),
    ("checkpoints", |s| Cell::N(s.cp_n)),
    ("checkpoint mean", |s| Cell::D(s.cp_mean)),
    ("checkpoint max", |s| Cell::D(s.cp_max)),
    ("appends > 1 ms", |s| Cell::N(s.blocked_n)),
    ("writer blocked (sum > 1 ms)", |s| Cell::D(s.blocked)),
];

fn print_table(runs: &[(&Run, Summary)], base: Option<usize>, snap: Option<usize>) {
    let mut head = format!("{:<30}", "");
    for (r, _) in runs {
        let _ = write!(head, "{:>16}", r.name);
    }
    let both = base.zip(snap);
    if both.is_some() {
        let _ = write!(head, "{:>18}", "baseline/snapwal");
    }
    println!("{head}");
    for (label, f) in ROWS {
        let mut line = format!("{label:<30}");
        for (_, s) in runs {
            let text = match f(s) {
                Cell::D(d) => fmt_d(d),
                Cell::N(n) => n.to_string(),
            };
            let _ = write!(line, "{text:>16}");
        }
        if let Some((b, s)) = both {
            if let (Cell::D(x), Cell::D(y)) = (f(&runs[b].1), f(&runs[s].1)) {
                let _ = write!(line, "{:>18}", ratio(x, y));
            }
        }
        println!("{line}");
    }
}

/// Hand-written SVG: append latency over time (log y), the maximum per 20 ms bucket
/// as a line and each checkpoint as a band along the bottom.
fn write_svg(path: &Path, runs: &[&Run], seconds: u64) -> std::io::Result<()> {
    const W: f64 = 960.0;
    const H: f64 = 480.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    let (lo, hi) = (1e-6f64.log10(), 10f64.log10());
    let x = |t: f64| L + (W - L - R) * (t / seconds as f64).clamp(0.0, 1.0);
    let y = |d: f64| {
        let v = d.max(1e-6).log10().clamp(lo, hi);
        T + (H - T - B) * (1.0 - (v - lo) / (hi - lo))
    };
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{L}" y="22" font-size="15">Append latency over time (max per 20 ms, log scale); checkpoints every second</text>"#
    );
    let labels = [
        "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "10 s",
    ];
    for (k, label) in labels.iter().enumerate() {
        let v = 10f64.powi(k as i32 - 6);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - R,
            L - 6.0,
            yy + 4.0
        );
    }
    for sec in 0..=seconds {
        let xx = x(sec as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{T}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{sec}</text>"##,
            H - B,
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#,
        (L + W - R) / 2.0,
        H - 12.0
    );
    for (i, r) in runs.iter().enumerate() {
        let color = colors[i % colors.len()];
        let bucket = 0.02;
        let n = (seconds as f64 / bucket).ceil() as usize + 1;
        let mut max = vec![0f64; n];
        for (t, d) in &r.samples {
            let b = ((t.as_secs_f64() / bucket) as usize).min(n - 1);
            max[b] = max[b].max(d.as_secs_f64());
        }
        let mut pts = String::new();
        for (b, m) in max.iter().enumerate() {
            if *m > 0.0 {
                let _ = write!(pts, "{:.1},{:.1} ", x(b as f64 * bucket), y(*m));
            }
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{pts}"/>"#
        );
        let band = H - B - 6.0 - 5.0 * i as f64;
        for (start, d) in &r.checkpoints {
            let x0 = x(start.as_secs_f64());
            let x1 = x(start.as_secs_f64() + d.as_secs_f64()).max(x0 + 1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{band:.1}" width="{:.1}" height="4" fill="{color}" opacity="0.5"/>"#,
                x1 - x0
            );
        }
        let ly = T + 18.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            W - R - 230.0,
            W - R - 210.0,
            W - R - 204.0,
            ly + 4.0,
            r.name
        );
    }
    let _ = writeln!(s, "</svg>");
    std::fs::write(path, s)
}

// ---------------------------------------------------------------------------------

fn main() {
    let cfg = parse_args();
    let base_dir = match &cfg.dir {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap_or_else(|e| {
                eprintln!("cannot create {}: {e}", d.display());
                std::process::exit(1)
            });
            tempfile::Builder::new().prefix("pipelines-").tempdir_in(d)
        }
        None => tempfile::Builder::new().prefix("pipelines-").tempdir(),
    }
    .unwrap_or_else(|e| {
        eprintln!("cannot create a temporary directory: {e}");
        std::process::exit(1)
    });
    eprintln!(
        "pipelines: {} pipelines x {} steps, {} events/s for {} s, checkpoint every 1 s",
        cfg.pipelines, cfg.history, cfg.rate, cfg.seconds
    );

    let want = |n: &str| cfg.only.as_deref().is_none_or(|o| o == n);
    let mut runs: Vec<Run> = Vec::new();
    let (mut snap_i, mut base_i) = (None, None);

    if want("snapwal") {
        let store = Arc::new(fill_snapwal(
            &base_dir.path().join("snapwal"),
            &cfg,
            cfg.pipelines,
        ));
        let r = run("snapwal", store.clone(), &cfg, cfg.pipelines, 42);
        if let Ok(store) = Arc::try_unwrap(store) {
            let t = Instant::now();
            if let Err(e) = store.close() {
                eprintln!("close failed: {e}");
            }
            eprintln!("  [snapwal] close() took {}", fmt_d(t.elapsed()));
        }
        snap_i = Some(runs.len());
        runs.push(r);
    }
    if want("baseline") {
        let b = Arc::new(fill_baseline(
            &base_dir.path().join("baseline"),
            &cfg,
            cfg.pipelines,
        ));
        let r = run("mutex baseline", b, &cfg, cfg.pipelines, 42);
        base_i = Some(runs.len());
        runs.push(r);
    }
    let mut small_i = None;
    if cfg.compare_n && want("snapwal") {
        let n = 100;
        let store = Arc::new(fill_snapwal(
            &base_dir.path().join("snapwal-small"),
            &cfg,
            n,
        ));
        let mut r = run("snapwal N=100", store.clone(), &cfg, n, 42);
        r.name = format!("snapwal N={n}");
        if let Ok(store) = Arc::try_unwrap(store) {
            let _ = store.close();
        }
        small_i = Some(runs.len());
        runs.push(r);
    }

    let summaries: Vec<(&Run, Summary)> = runs.iter().map(|r| (r, summarize(r))).collect();
    println!();
    println!(
        "{} pipelines x {} steps, {} events/s for {} s, checkpoint every 1 s (blocked = appends over 1 ms)",
        cfg.pipelines, cfg.history, cfg.rate, cfg.seconds
    );
    print_table(&summaries, base_i, snap_i);
    if let (Some(s), Some(b)) = (snap_i, base_i) {
        let (ss, bs) = (&summaries[s].1, &summaries[b].1);
        println!();
        println!(
            "writer max append latency: baseline/snapwal = {} (target >= 20x)",
            ratio(bs.max, ss.max)
        );
    }
    if let (Some(s), Some(m)) = (snap_i, small_i) {
        let (big, small) = (&summaries[s].1, &summaries[m].1);
        println!(
            "snapwal p99.9 at N={} vs N=100: {} vs {} = {} (target within 1.5x)",
            cfg.pipelines,
            fmt_d(big.p999),
            fmt_d(small.p999),
            ratio(big.p999, small.p999)
        );
    }
    for r in &runs {
        let elapsed = r.elapsed.as_secs_f64();
        let rate = r.samples.len() as f64 / elapsed;
        eprintln!("  [{}] achieved {rate:.0} events/s", r.name);
    }
    let refs: Vec<&Run> = runs.iter().collect();
    match write_svg(&cfg.plot, &refs, cfg.seconds) {
        Ok(()) => println!("plot: {}", cfg.plot.display()),
        Err(e) => eprintln!("cannot write {}: {e}", cfg.plot.display()),
    }
}
