//! Workloads shared by the benches: the pipelines state of `examples/pipelines.rs`
//! (structurally shared), a plain `Mutex` baseline of the same state, a small-state
//! store for raw log costs, and a reader of criterion's estimates for ratios.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use snapwal::{Options, Store, SyncPolicy};

/// One step record: about 100 bytes encoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub n: u64,
    pub at_ms: u64,
    pub status: u8,
    pub detail: String,
}

/// The event: pipeline `pipeline` finished `step`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDone {
    pub pipeline: u32,
    pub step: Step,
}

/// Deterministic generator (xorshift64*).
pub struct Gen(pub u64);

impl Gen {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn step(&mut self, n: u64) -> Step {
        let r = self.next();
        let mut detail = String::with_capacity(80);
        let _ = write!(
            detail,
            "build ok in {} ms on worker-{:02}; artifact {:016x}; cache hit ratio 0.{:02}",
            (r >> 8) % 10_000,
            (r >> 24) % 64,
            r,
            (r >> 32) % 100
        );
        Step {
            n,
            at_ms: 1_700_000_000_000 + n * 7,
            status: (r % 3) as u8,
            detail,
        }
    }

    pub fn event(&mut self, pipelines: u32, n: u64) -> StepDone {
        let pipeline = (self.next() % u64::from(pipelines)) as u32;
        StepDone {
            pipeline,
            step: self.step(n),
        }
    }
}

/// An `Arc`'d value, serialized as the value.
#[derive(Debug, Clone, Default)]
pub struct Shared<T>(pub Arc<T>);

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<Se: Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|v| Shared(Arc::new(v)))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pipeline {
    pub steps_done: u64,
    pub steps: imbl::Vector<Shared<Step>>,
}

/// Structurally shared pipelines state (as in `examples/pipelines.rs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Daemon {
    pub history: usize,
    pub pipelines: imbl::HashMap<u32, Shared<Pipeline>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    Configure { history: usize },
    Step(StepDone),
}

impl snapwal::State for Daemon {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Configure { history } => self.history = *history,
            Event::Step(e) => {
                let p = Arc::make_mut(&mut self.pipelines.entry(e.pipeline).or_default().0);
                p.steps_done += 1;
                p.steps.push_back(Shared(Arc::new(e.step.clone())));
                while p.steps.len() > self.history.max(1) {
                    p.steps.pop_front();
                }
            }
        }
    }
}

/// Opens a pipelines store in `dir` holding `pipelines` x `history` records, with
/// one snapshot written and the WAL truncated.
pub fn filled_store(dir: &Path, pipelines: u32, history: usize, opts: Options) -> Store<Daemon> {
    let store = Store::<Daemon>::open(dir, opts).expect("open");
    let mut gen = Gen(7);
    let mut batch = vec![Event::Configure { history }];
    let mut n = 0;
    for p in 0..pipelines {
        for _ in 0..history {
            n += 1;
            batch.push(Event::Step(StepDone {
                pipeline: p,
                step: gen.step(n),
            }));
        }
        store.append_batch(&batch).expect("fill");
        batch.clear();
    }
    store.checkpoint().expect("checkpoint");
    store.checkpoint().expect("checkpoint");
    store
}

/// Options for benches that measure the writer, not the disk.
pub fn never() -> Options {
    Options::default().sync(SyncPolicy::Never)
}

// ---------------------------------------------------------------------------------
// The mutex baseline: Mutex<State> + Mutex<Wal>, JSON lines, JSON snapshots.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BPipeline {
    pub steps_done: u64,
    pub steps: VecDeque<Step>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BState {
    pub seq: u64,
    pub history: usize,
    pub pipelines: HashMap<u32, BPipeline>,
}

impl BState {
    pub fn apply(&mut self, e: &StepDone) {
        let p = self.pipelines.entry(e.pipeline).or_default();
        p.steps_done += 1;
        p.steps.push_back(e.step.clone());
        while p.steps.len() > self.history.max(1) {
            p.steps.pop_front();
        }
    }
}

pub struct Baseline {
    pub dir: PathBuf,
    pub state: Mutex<BState>,
    pub wal: Mutex<File>,
}

impl Baseline {
    pub fn filled(dir: &Path, pipelines: u32, history: usize) -> Baseline {
        std::fs::create_dir_all(dir).expect("mkdir");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("wal.jsonl"))
            .expect("open wal");
        let mut st = BState {
            history,
            ..BState::default()
        };
        let mut gen = Gen(7);
        for p in 0..pipelines {
            for _ in 0..history {
                st.seq += 1;
                let e = StepDone {
                    pipeline: p,
                    step: gen.step(st.seq),
                };
                st.apply(&e);
            }
        }
        Baseline {
            dir: dir.to_path_buf(),
            state: Mutex::new(st),
            wal: Mutex::new(file),
        }
    }

    pub fn append(&self, e: &StepDone) -> u64 {
        let mut st = self.state.lock().unwrap();
        let mut wal = self.wal.lock().unwrap();
        let seq = st.seq + 1;
        let mut line = format!("{seq}\t");
        line.push_str(&serde_json::to_string(e).unwrap());
        line.push('\n');
        wal.write_all(line.as_bytes()).unwrap();
        st.seq = seq;
        st.apply(e);
        seq
    }

    /// Clone under both locks, then a JSON snapshot with `sync_all` and rename.
    /// Returns the snapshot size. (The WAL rewrite is measured separately.)
    pub fn checkpoint_snapshot(&self) -> u64 {
        let copy = {
            let st = self.state.lock().unwrap();
            let _wal = self.wal.lock().unwrap();
            st.clone()
        };
        let tmp = self.dir.join("snapshot.json.tmp");
        let mut w = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).unwrap());
        serde_json::to_writer(&mut w, &copy).unwrap();
        let f = w.into_inner().unwrap();
        f.sync_all().unwrap();
        let len = f.metadata().unwrap().len();
        std::fs::rename(&tmp, self.dir.join("snapshot.json")).unwrap();
        File::open(&self.dir).unwrap().sync_all().unwrap();
        len
    }
}

// ---------------------------------------------------------------------------------
// A small state for raw log costs: 100-byte events.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub events: u64,
    pub bytes: u64,
}

impl snapwal::State for Tally {
    type Event = Vec<u8>;
    fn apply(&mut self, e: &Vec<u8>) {
        self.events += 1;
        self.bytes += e.len() as u64;
    }
}

/// A 100-byte event (postcard adds one length byte).
pub fn payload100() -> Vec<u8> {
    (0..99u8).collect()
}

// ---------------------------------------------------------------------------------
// Ratios from criterion's own estimates (same run).

fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Mean time per iteration in ns of `group/id` from this run, if it ran.
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let p = criterion_dir()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Prints `label: a/b` from two benches' means.
pub fn print_ratio(label: &str, (ga, ia): (&str, &str), (gb, ib): (&str, &str)) {
    match (mean_ns(ga, ia), mean_ns(gb, ib)) {
        (Some(a), Some(b)) if b > 0.0 => {
            println!(
                "RATIO {label}: {:.2}x  ({} / {})",
                a / b,
                fmt_ns(a),
                fmt_ns(b)
            )
        }
        _ => println!("RATIO {label}: not measured in this run"),
    }
}

pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
