//! Workloads: the operations a check runs, and a ready-made state to run them with.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::testing::sim::{Rng, SimFs};
use crate::{Options, State, SyncPolicy};

/// One step of a [`Workload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `n` calls to [`Store::append`](crate::Store::append).
    Append(u32),
    /// One [`Store::append_batch`](crate::Store::append_batch) of `n` events.
    AppendBatch(u32),
    /// [`Store::sync`](crate::Store::sync).
    Sync,
    /// [`Store::checkpoint`](crate::Store::checkpoint).
    Checkpoint,
    /// [`Store::close`](crate::Store::close), then open again.
    Reopen,
    /// [`Store::close_with`](crate::Store::close_with) a final checkpoint (which unlinks every covered segment),
    /// then open again.
    ReopenWithCheckpoint,
    /// Drop the store without closing it (a process crash: the page cache survives),
    /// then open again.
    DropReopen,
    /// Moves the source position [`POSITION_NAME`] to the seq of the last event
    /// appended (`offset` = that seq, `inode` = [`POSITION_INODE`]), so that the next
    /// checkpoint saves it: with the snapshot, or in a positions record when no event
    /// was appended since the last one.
    MovePosition,
}

/// The name of the position [`Op::MovePosition`] moves.
pub const POSITION_NAME: &str = "source";

/// The `inode` of every position [`Op::MovePosition`] saves: a restored position
/// with another one was never saved.
pub const POSITION_INODE: u64 = 0x5eed;

/// A workload: operations and the store options they run with.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The operations, in order. The store is opened before the first.
    pub ops: Vec<Op>,
    /// [`SyncPolicy::Always`] or [`SyncPolicy::Never`]. `Interval` is run as `Never`
    /// (its background thread would make runs non-deterministic): model it with
    /// explicit [`Op::Sync`] steps.
    pub sync: SyncPolicy,
    /// [`Options::segment_bytes`]. Default 4096, so that segments rotate and cleanup
    /// unlinks them.
    pub segment_bytes: u64,
    /// [`Options::preallocate`]. Default on.
    pub preallocate: bool,
    /// [`Options::keep_snapshots`]. Default 2.
    pub keep_snapshots: usize,
}

impl Workload {
    /// An empty workload with the default options and `sync`.
    pub fn new(sync: SyncPolicy) -> Self {
        Workload {
            ops: Vec::new(),
            sync,
            segment_bytes: 4096,
            preallocate: true,
            keep_snapshots: 2,
        }
    }

    /// Adds `op`.
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// A random workload of `ops` operations, mostly appends, from `seed`.
    pub fn random(seed: u64, ops: usize, sync: SyncPolicy) -> Self {
        let mut rng = Rng::new(seed);
        let mut w = Workload::new(sync);
        for _ in 0..ops {
            let n = 1 + rng.below(6) as u32;
            let op = match rng.below(20) {
                0..=7 => Op::Append(n),
                8..=10 => Op::AppendBatch(n + 2),
                11..=12 => Op::Sync,
                13..=16 => Op::Checkpoint,
                17 => Op::Reopen,
                18 => Op::ReopenWithCheckpoint,
                _ => Op::DropReopen,
            };
            w.ops.push(op);
        }
        w
    }

    /// How many events the workload appends.
    pub fn events(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Append(n) | Op::AppendBatch(n) => u64::from(*n),
                _ => 0,
            })
            .sum()
    }

    /// The store options for a run on `fs`.
    pub fn options(&self, fs: Arc<SimFs>) -> Options {
        let sync = match self.sync {
            SyncPolicy::Always => SyncPolicy::Always,
            _ => SyncPolicy::Never,
        };
        Options::default()
            .sync(sync)
            .segment_bytes(self.segment_bytes)
            .preallocate(self.preallocate)
            .keep_snapshots(self.keep_snapshots)
            .fs(fs)
    }
}

/// A state for the checker's own runs: its digest depends on every event, its
/// padding and their order, so equal states mean equal event sequences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Events applied.
    pub count: u64,
    /// An order-sensitive digest of the events.
    pub digest: u64,
    /// The `n` of the last event.
    pub last: u64,
}

/// The event of [`Tally`]: a number and some padding (to fill segments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// The event's index.
    pub n: u64,
    /// Padding, 64 to 383 bytes.
    pub pad: Vec<u8>,
}

impl State for Tally {
    type Event = Tick;
    fn apply(&mut self, e: &Tick) {
        let pad = e.pad.iter().fold(e.pad.len() as u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(*b))
        });
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_mul(0x0000_0100_0000_01b3)
            .wrapping_add(e.n ^ pad.rotate_left(32));
        self.last = e.n;
    }
}

/// The `n`-th event of the checker's own workloads: deterministic, with 64 to 383
/// bytes of padding so that a 4 KiB segment holds about a dozen.
pub fn tick(n: u64) -> Tick {
    let len = 64 + (n.wrapping_mul(89) % 320) as usize;
    Tick {
        n,
        pad: (0..len)
            .map(|i| (n as usize).wrapping_add(i) as u8)
            .collect(),
    }
}
