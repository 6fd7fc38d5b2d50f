//! One case of the concurrent checker as a line of text, so that a failure can be
//! replayed with one command:
//!
//! ```text
//! SNAPWAL_REPLAY='<case>' cargo test --features testing --test checker_concurrent replay_one_case -- --nocapture
//! ```
//!
//! A case is `key=value` pairs separated by `;`: the workload's fields, then `seed`,
//! `crash` (the call index, or `-` for the crash-free run), `panic` (`1`: the call
//! panics instead, as with [`ConcurrentChecker::panics`]) and `bits` (the image's
//! choices, `0`/`1`). Durations are in microseconds; the sync policy is `always`,
//! `never` or `interval:<µs>`.
//!
//! ```
//! use snapwal::testing::check::{Case, Concurrent};
//! let case = Case {
//!     workload: Concurrent::default(),
//!     seed: 3,
//!     crash_point: Some(40),
//!     panics: false,
//!     bits: vec![true, false],
//! };
//! let line = case.to_string();
//! assert_eq!(line.parse::<Case>(), Ok(case));
//! ```
//!
//! [`ConcurrentChecker::panics`]: super::ConcurrentChecker::panics

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ledger::Concurrent;
use crate::SyncPolicy;

/// One case: a workload, an interleaving, a crash point and an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The workload.
    pub workload: Concurrent,
    /// The interleaving's seed.
    pub seed: u64,
    /// The crash (or panic) point; `None`: the crash-free run.
    pub crash_point: Option<u64>,
    /// The point panics instead of crashing.
    pub panics: bool,
    /// The image's choices.
    pub bits: Vec<bool>,
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.workload;
        let sync = match w.sync {
            SyncPolicy::Always => "always".to_owned(),
            SyncPolicy::Never => "never".to_owned(),
            SyncPolicy::Interval(d) => format!("interval:{}", micros(d)),
        };
        let periodic = w.periodic.map_or("-".to_owned(), |d| micros(d).to_string());
        let crash = self.crash_point.map_or("-".to_owned(), |n| n.to_string());
        let bits: String = self
            .bits
            .iter()
            .map(|b| if *b { '1' } else { '0' })
            .collect();
        write!(
            f,
            "sync={sync};appenders={};appends={};sync_every={};checkpoints={};position_updates={};periodic={periodic};final_checkpoint={};segment_bytes={};keep_snapshots={};pad={};max_staged_bytes={};neighbour_appends={};seed={};crash={crash};panic={};bits={bits}",
            w.appenders,
            w.appends,
            w.sync_every,
            w.checkpoints,
            w.position_updates,
            u8::from(w.final_checkpoint),
            w.segment_bytes,
            w.keep_snapshots,
            w.pad,
            w.max_staged_bytes,
            w.neighbour_appends,
            self.seed,
            u8::from(self.panics),
        )
    }
}

fn num<T: FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{key}: not a number: {v:?}"))
}

fn opt_num(key: &str, v: &str) -> Result<Option<u64>, String> {
    if v == "-" {
        Ok(None)
    } else {
        num(key, v).map(Some)
    }
}

impl FromStr for Case {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut case = Case {
            workload: Concurrent::default(),
            seed: 0,
            crash_point: None,
            panics: false,
            bits: Vec::new(),
        };
        let w = &mut case.workload;
        for pair in s.trim().split(';').filter(|p| !p.is_empty()) {
            let (key, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("not key=value: {pair:?}"))?;
            match key {
                "sync" => {
                    w.sync = match v {
                        "always" => SyncPolicy::Always,
                        "never" => SyncPolicy::Never,
                        _ => match v.strip_prefix("interval:") {
                            Some(us) => SyncPolicy::Interval(Duration::from_micros(num(key, us)?)),
                            None => return Err(format!("sync: unknown policy {v:?}")),
                        },
                    }
                }
                "appenders" => w.appenders = num(key, v)?,
                "appends" => w.appends = num(key, v)?,
                "sync_every" => w.sync_every = num(key, v)?,
                "checkpoints" => w.checkpoints = num(key, v)?,
                "position_updates" => w.position_updates = num(key, v)?,
                "periodic" => w.periodic = opt_num(key, v)?.map(Duration::from_micros),
                "final_checkpoint" => w.final_checkpoint = v == "1",
                "segment_bytes" => w.segment_bytes = num(key, v)?,
                "keep_snapshots" => w.keep_snapshots = num(key, v)?,
                "pad" => w.pad = num(key, v)?,
                "max_staged_bytes" => w.max_staged_bytes = num(key, v)?,
                "neighbour_appends" => w.neighbour_appends = num(key, v)?,
                "seed" => case.seed = num(key, v)?,
                "crash" => case.crash_point = opt_num(key, v)?,
                "panic" => case.panics = v == "1",
                "bits" => {
                    case.bits = v
                        .chars()
                        .map(|c| match c {
                            '0' => Ok(false),
                            '1' => Ok(true),
                            _ => Err(format!("bits: not 0 or 1: {c:?}")),
                        })
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(format!("unknown key {key:?}")),
            }
        }
        Ok(case)
    }
}
