//! Workloads shared by the benches: the pipelines state of `examples/pipelines.rs`
//! (structurally shared), a plain `Mutex` baseline of the same state, a small-state
//! store for raw log costs, and a reader of criterion's estimates for ratios.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use snapwal::{Options, Store, SyncPolicy};

#[path = "../../examples/pipelines/model.rs"]
mod model;
pub use model::*;

/// Opens a pipelines store in `dir` holding `pipelines` x `history` records, with
/// one snapshot written and the WAL truncated.
pub fn filled_store(dir: &Path, pipelines: u32, history: usize, opts: Options) -> Store<Daemon> {
    filled::<Daemon>(dir, pipelines, history, opts)
}

/// Like [`filled_store`], with the baseline's plain state (`BState`) stored as it is.
pub fn filled_plain_store(
    dir: &Path,
    pipelines: u32,
    history: usize,
    opts: Options,
) -> Store<BState> {
    filled::<BState>(dir, pipelines, history, opts)
}

/// Fills a store of either pipelines state with the same events.
fn filled<S: snapwal::State<Event = Event>>(
    dir: &Path,
    pipelines: u32,
    history: usize,
    opts: Options,
) -> Store<S> {
    let store = Store::<S>::open(dir, opts).expect("open");
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
