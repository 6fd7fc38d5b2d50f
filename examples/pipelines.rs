//! A daemon with many pipelines, checkpointed every second: snapwal, with two kinds of
//! state, against the `Mutex<State>` + `Mutex<Wal>` design it replaces.
//!
//! Each pipeline keeps the last `--history` step records (about 100 bytes each). An
//! event loop appends step events at a fixed rate while a second thread checkpoints
//! every second. The same workload runs for `--seconds` on each contender:
//!
//! - **snapwal (imbl)**: a structurally shared state (`imbl::HashMap` of pipelines,
//!   each an `imbl::Vector` of `Arc`'d records): the writer copies only the nodes it
//!   touches while a reader or a checkpoint holds an older version.
//! - **snapwal (plain)**: the baseline's own state (`HashMap<u32, BPipeline>`, each a
//!   `VecDeque` of records), stored in snapwal as it is. The writer applies each event
//!   in place to one of two copies and replays it onto the other at the next append;
//!   it clones the whole state only when a checkpoint still holds the spare copy.
//! - **mutex baseline**: `Mutex<State>` + `Mutex<Wal>` over a plain file of JSON
//!   lines. A checkpoint locks both, deep-clones the state, releases them, writes a
//!   JSON snapshot with `sync_all`, then truncates by rewriting the WAL file (keeping
//!   the records after the snapshot) under the WAL lock.
//!
//! snapwal runs under `SyncPolicy::Never`, so the run measures stalls, not `fdatasync`.
//!
//! Each contender runs in its own process (the example runs itself again with
//! internal flags), so each one's peak RSS (`VmHWM`, read by that process at its end)
//! is its own. The state's size in memory is measured the same way: a fresh process
//! builds the state from the fill events, with no store, and reports how much its
//! RSS grew. The baseline's state is the plain one.
//!
//! It prints a line per second to stderr, then a table (append latency percentiles,
//! the longest append during a checkpoint, checkpoint durations, time the writer was
//! blocked, peak RSS), the issue's targets, and writes an SVG plot of append latency
//! over time.
//!
//! ```text
//! cargo run --release --example pipelines -- [--pipelines N] [--history H] [--rate R]
//!     [--seconds S] [--dir PATH] [--plot PATH] [--compare-n] [--sched]
//!     [--only imbl|plain|baseline[,...]]
//! ```
//!
//! `--compare-n` adds runs of both snapwal states at 100 pipelines, to show that
//! append latency does not grow with the size of the state. `--only snapwal` is
//! `--only imbl`. `--sched` reads the writer thread's run-queue wait
//! (`/proc/thread-self/schedstat`) around each append, outside the timed part, and
//! reports the longest append during a checkpoint without the time the writer was
//! runnable but had no CPU: on a busy machine that separates the writer's own work
//! from preemption.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};

// ---------------------------------------------------------------------------------
// Configuration

/// A contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Imbl,
    Plain,
    Baseline,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Imbl, Kind::Plain, Kind::Baseline];

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "imbl" | "snapwal" => Some(Kind::Imbl),
            "plain" => Some(Kind::Plain),
            "baseline" => Some(Kind::Baseline),
            _ => None,
        }
    }

    /// The name on the command line.
    fn arg(self) -> &'static str {
        match self {
            Kind::Imbl => "imbl",
            Kind::Plain => "plain",
            Kind::Baseline => "baseline",
        }
    }

    /// The name in the table.
    fn name(self) -> &'static str {
        match self {
            Kind::Imbl => "snapwal (imbl)",
            Kind::Plain => "snapwal (plain)",
            Kind::Baseline => "mutex baseline",
        }
    }
}

/// What this process does: the whole comparison, or one part of it for the process
/// that runs the comparison (the internal flags `--run`, `--measure`, `--emit`).
#[derive(Debug, Clone)]
enum Role {
    Compare,
    /// Run one contender and write its [`Run`] as JSON to `emit`.
    Run {
        kind: Kind,
        emit: PathBuf,
    },
    /// Build the contender's state with no store and write the RSS growth to `emit`.
    Measure {
        kind: Kind,
        emit: PathBuf,
    },
}

#[derive(Debug, Clone)]
struct Config {
    pipelines: u32,
    history: usize,
    rate: u64,
    seconds: u64,
    dir: Option<PathBuf>,
    plot: PathBuf,
    compare_n: bool,
    sched: bool,
    only: Vec<Kind>,
    label: Option<String>,
    role: Role,
}

fn usage() -> ! {
    eprintln!(
        "usage: pipelines [--pipelines N] [--history H] [--rate EVENTS_PER_S] [--seconds S]\n\
         \x20                [--dir PATH] [--plot PATH] [--compare-n] [--sched]\n\
         \x20                [--only imbl|plain|baseline[,...]]   (snapwal = imbl)"
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
        sched: false,
        only: Vec::new(),
        label: None,
        role: Role::Compare,
    };
    let (mut run, mut measure, mut emit) = (None, None, None);
    let kind = |s: String| Kind::parse(&s).unwrap_or_else(|| usage());
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
            "--sched" => c.sched = true,
            "--only" => {
                for k in val().split(',') {
                    c.only.push(kind(k.to_string()));
                }
            }
            // Internal: one part of the comparison, in its own process.
            "--run" => run = Some(kind(val())),
            "--measure" => measure = Some(kind(val())),
            "--emit" => emit = Some(PathBuf::from(val())),
            "--label" => c.label = Some(val()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    c.role = match (run, measure, emit) {
        (None, None, None) => Role::Compare,
        (Some(kind), None, Some(emit)) => Role::Run { kind, emit },
        (None, Some(kind), Some(emit)) => Role::Measure { kind, emit },
        _ => usage(),
    };
    if c.pipelines == 0 || c.history == 0 || c.rate == 0 || c.seconds == 0 {
        usage();
    }
    c
}

#[path = "pipelines/model.rs"]
mod model;
use model::*;

#[path = "pipelines/report.rs"]
mod report;
use report::*;

// ---------------------------------------------------------------------------------
// The mutex baseline.

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

impl<S: State<Event = Event>> Target for Store<S> {
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

/// What one run measured (written as JSON by the process that ran it).
#[derive(Serialize, Deserialize)]
struct Run {
    name: String,
    /// (time since start, append latency) per event.
    samples: Vec<(Duration, Duration)>,
    /// (start since run start, duration) per checkpoint.
    checkpoints: Vec<(Duration, Duration)>,
    /// Longest time an event was appended after its scheduled time.
    max_lag: Duration,
    elapsed: Duration,
    /// Peak resident set of the process that ran it (`VmHWM`), bytes.
    peak_rss: u64,
    /// With `--sched`: per event, the time the writer thread spent runnable but
    /// waiting for a CPU during its append (from `/proc/thread-self/schedstat`).
    waits: Vec<Duration>,
}

/// The writer thread's time spent waiting on a run queue so far: the second field of
/// `/proc/thread-self/schedstat`, re-read from offset 0 of the file opened by that
/// thread. `None` if it cannot be read.
fn run_queue_wait(f: &File) -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 64];
    let n = f.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    let ns = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
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

    let schedstat = if cfg.sched {
        File::open("/proc/thread-self/schedstat").ok()
    } else {
        None
    };
    let mut waits = Vec::new();
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
        let w0 = schedstat.as_ref().and_then(run_queue_wait);
        let t0 = Instant::now();
        target.append(event);
        let t1 = Instant::now();
        samples.push((t0 - start, t1 - t0));
        if let (Some(f), Some(w0)) = (&schedstat, w0) {
            waits.push(run_queue_wait(f).unwrap_or(w0).saturating_sub(w0));
        }
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
    if waits.len() != samples.len() {
        waits.clear();
    }
    Run {
        name: name.to_string(),
        samples,
        checkpoints,
        max_lag,
        elapsed,
        peak_rss: 0,
        waits,
    }
}

// ---------------------------------------------------------------------------------
// Setup of each store with the initial state: the same events for all of them.

/// The fill: `history` steps for each pipeline, in order.
fn fill_events(cfg: &Config, pipelines: u32) -> impl Iterator<Item = StepDone> {
    let history = cfg.history;
    let mut gen = Gen(7);
    let mut n = 0;
    (0..pipelines).flat_map(move |p| {
        (0..history)
            .map(|_| {
                n += 1;
                StepDone {
                    pipeline: p,
                    step: gen.step(n),
                }
            })
            .collect::<Vec<_>>()
    })
}

fn fill_snapwal<S: State<Event = Event>>(
    dir: &Path,
    cfg: &Config,
    pipelines: u32,
    name: &str,
) -> Store<S> {
    let t = Instant::now();
    let opts = Options::default().sync(SyncPolicy::Never);
    let store = Store::<S>::open(dir, opts).unwrap_or_else(|e| {
        eprintln!("open failed: {e}");
        std::process::exit(1)
    });
    let mut batch = Vec::with_capacity(cfg.history + 1);
    batch.push(Event::Configure {
        history: cfg.history,
    });
    let mut n = 0;
    for e in fill_events(cfg, pipelines) {
        n += 1;
        batch.push(Event::Step(e));
        if batch.len() > cfg.history {
            if let Err(e) = store.append_batch(&batch) {
                eprintln!("fill failed: {e}");
                std::process::exit(1);
            }
            batch.clear();
        }
    }
    if let Err(e) = store.append_batch(&batch) {
        eprintln!("fill failed: {e}");
        std::process::exit(1);
    }
    let rep = store.checkpoint().unwrap_or_else(|e| {
        eprintln!("checkpoint failed: {e}");
        std::process::exit(1)
    });
    eprintln!(
        "  [{name}] filled {} pipelines x {} steps ({} records, snapshot {:.1} MB) in {:.1} s",
        pipelines,
        cfg.history,
        n,
        rep.snapshot_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    store
}

fn fill_baseline(dir: &Path, cfg: &Config, pipelines: u32, name: &str) -> Baseline {
    let t = Instant::now();
    let b = Baseline::open(dir, cfg.history).unwrap_or_else(|e| {
        eprintln!("open failed: {e}");
        std::process::exit(1)
    });
    {
        let mut st = b.state.lock().unwrap_or_else(|p| p.into_inner());
        for e in fill_events(cfg, pipelines) {
            st.seq += 1;
            st.apply(&e);
        }
    }
    if let Err(e) = b.checkpoint() {
        eprintln!("checkpoint failed: {e}");
        std::process::exit(1);
    }
    let size = std::fs::metadata(dir.join("snapshot.json")).map_or(0, |m| m.len());
    eprintln!(
        "  [{name}] filled {} pipelines x {} steps (snapshot {:.1} MB) in {:.1} s",
        pipelines,
        cfg.history,
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    b
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); 0 where there is none.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Writes `value` as JSON to `path`, or exits.
fn emit<T: Serialize>(path: &Path, value: &T) {
    let written = File::create(path)
        .map_err(serde_json::Error::io)
        .and_then(|f| {
            let mut w = BufWriter::new(f);
            serde_json::to_writer(&mut w, value)?;
            w.flush().map_err(serde_json::Error::io)
        });
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}

/// `--run`: one contender in this process.
fn run_one(kind: Kind, cfg: &Config, out: &Path) {
    let base = temp_dir(cfg);
    let dir = base.path().join(kind.arg());
    let name = cfg.label.as_deref().unwrap_or(kind.name());
    let mut r = match kind {
        Kind::Imbl => run_store(
            fill_snapwal::<Daemon>(&dir, cfg, cfg.pipelines, name),
            cfg,
            name,
        ),
        Kind::Plain => run_store(
            fill_snapwal::<BState>(&dir, cfg, cfg.pipelines, name),
            cfg,
            name,
        ),
        Kind::Baseline => {
            let b = fill_baseline(&dir, cfg, cfg.pipelines, name);
            run(name, Arc::new(b), cfg, cfg.pipelines, 42)
        }
    };
    r.peak_rss = proc_status("VmHWM");
    emit(out, &r);
}

fn run_store<S: State<Event = Event>>(store: Store<S>, cfg: &Config, name: &str) -> Run {
    let store = Arc::new(store);
    let r = run(name, store.clone(), cfg, cfg.pipelines, 42);
    if let Ok(store) = Arc::try_unwrap(store) {
        let t = Instant::now();
        if let Err(e) = store.close() {
            eprintln!("close failed: {e}");
        }
        eprintln!("  [{name}] close() took {}", fmt_d(t.elapsed()));
    }
    r
}

/// `--measure`: the RSS growth of building the contender's state from the fill
/// events, with no store.
fn measure_one(kind: Kind, cfg: &Config, out: &Path) {
    fn build<S: State<Event = Event>>(cfg: &Config) -> u64 {
        let before = proc_status("VmRSS");
        let mut state = S::default();
        state.apply(&Event::Configure {
            history: cfg.history,
        });
        for e in fill_events(cfg, cfg.pipelines) {
            state.apply(&Event::Step(e));
        }
        let grown = proc_status("VmRSS").saturating_sub(before);
        drop(std::hint::black_box(state));
        grown
    }
    let bytes = match kind {
        Kind::Imbl => build::<Daemon>(cfg),
        Kind::Plain | Kind::Baseline => build::<BState>(cfg),
    };
    emit(out, &bytes);
}

fn temp_dir(cfg: &Config) -> tempfile::TempDir {
    match &cfg.dir {
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
    })
}

/// Runs this example again with `role` (plus the workload's flags) and reads what it
/// wrote; `None` (with a message) if it failed.
fn child<T: DeserializeOwned>(
    cfg: &Config,
    dir: &Path,
    role: &[&str],
    pipelines: u32,
) -> Option<T> {
    let out = dir.join(format!("{}.json", role.join("-").replace([' ', '='], "_")));
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new(exe);
    if cfg.sched {
        cmd.arg("--sched");
    }
    let status = cmd
        .args(["--pipelines", &pipelines.to_string()])
        .args(["--history", &cfg.history.to_string()])
        .args(["--rate", &cfg.rate.to_string()])
        .args(["--seconds", &cfg.seconds.to_string()])
        .arg("--dir")
        .arg(dir)
        .args(role)
        .arg("--emit")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("  [{}] failed: {other:?}", role.join(" "));
            return None;
        }
    }
    let bytes = std::fs::read(&out).ok()?;
    serde_json::from_slice(&bytes)
        .map_err(|e| eprintln!("cannot read {}: {e}", out.display()))
        .ok()
}

// ---------------------------------------------------------------------------------

fn main() {
    let cfg = parse_args();
    match &cfg.role {
        Role::Run { kind, emit } => return run_one(*kind, &cfg, emit),
        Role::Measure { kind, emit } => return measure_one(*kind, &cfg, emit),
        Role::Compare => {}
    }
    let base_dir = temp_dir(&cfg);
    let dir = base_dir.path();
    eprintln!(
        "pipelines: {} pipelines x {} steps, {} events/s for {} s, checkpoint every 1 s",
        cfg.pipelines, cfg.history, cfg.rate, cfg.seconds
    );
    let wanted: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| cfg.only.is_empty() || cfg.only.contains(k))
        .collect();

    // The state's size in memory: the plain one is also the baseline's.
    let mut sizes: Vec<(Kind, u64)> = Vec::new();
    for k in [Kind::Imbl, Kind::Plain] {
        let needed = wanted
            .iter()
            .any(|w| *w == k || (k == Kind::Plain && *w == Kind::Baseline));
        if needed {
            if let Some(b) = child::<u64>(&cfg, dir, &["--measure", k.arg()], cfg.pipelines) {
                eprintln!("  [{}] state in memory: {}", k.name(), fmt_mb(b));
                sizes.push((k, b));
            }
        }
    }
    let size_of = |k: Kind| {
        let k = if k == Kind::Baseline { Kind::Plain } else { k };
        sizes.iter().find(|s| s.0 == k).map(|s| s.1)
    };

    let mut runs: Vec<(Run, Option<u64>)> = Vec::new();
    let mut kinds: Vec<(Kind, usize)> = Vec::new();
    for k in &wanted {
        if let Some(r) = child::<Run>(&cfg, dir, &["--run", k.arg()], cfg.pipelines) {
            kinds.push((*k, runs.len()));
            runs.push((r, size_of(*k)));
        }
    }
    let mut small: Vec<(Kind, usize)> = Vec::new();
    if cfg.compare_n {
        let n = 100;
        for k in wanted.iter().filter(|k| **k != Kind::Baseline) {
            let label = format!("{} N={n}", k.arg());
            let role = ["--run", k.arg(), "--label", &label];
            if let Some(r) = child::<Run>(&cfg, dir, &role, n) {
                small.push((*k, runs.len()));
                runs.push((r, None));
            }
        }
    }
    if runs.is_empty() {
        std::process::exit(1);
    }

    let summaries: Vec<(&Run, Summary)> = runs
        .iter()
        .map(|(r, state)| (r, summarize(r, *state)))
        .collect();
    println!();
    println!(
        "{} pipelines x {} steps, {} events/s for {} s, checkpoint every 1 s (blocked = appends over 1 ms)",
        cfg.pipelines, cfg.history, cfg.rate, cfg.seconds
    );
    print_table(&summaries);
    println!();
    print_targets(&summaries, &kinds, &small);
    for (r, _) in &runs {
        let elapsed = r.elapsed.as_secs_f64();
        let rate = r.samples.len() as f64 / elapsed;
        eprintln!("  [{}] achieved {rate:.0} events/s", r.name);
    }
    let refs: Vec<&Run> = runs.iter().map(|r| &r.0).collect();
    match write_svg(&cfg.plot, &refs, cfg.seconds) {
        Ok(()) => println!("plot: {}", cfg.plot.display()),
        Err(e) => eprintln!("cannot write {}: {e}", cfg.plot.display()),
    }
}
