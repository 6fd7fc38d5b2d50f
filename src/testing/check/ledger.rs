//! The concurrent checker's workloads: the [`Ledger`] state every run uses, its
//! [`Entry`] events, the actors' numbers, and [`Concurrent`], a workload's
//! description (with the named workloads snapwal's own checks run). The checker
//! itself is [`ConcurrentChecker`](super::ConcurrentChecker).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::testing::sim::SimFs;
use crate::{Options, State, SyncPolicy};

/// The state of concurrent checks: every event id, in seq order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The ids of the events applied, in order.
    pub events: Vec<u64>,
}

/// An event of [`Ledger`]: an id (actor in the high 32 bits, its counter in the low)
/// and padding ([`Concurrent::pad`]), so that 4 KiB segments rotate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `actor << 32 | n`.
    pub id: u64,
    /// Padding.
    pub pad: Vec<u8>,
}

impl State for Ledger {
    type Event = Entry;
    fn apply(&mut self, e: &Entry) {
        self.events.push(e.id);
    }
}

/// The `n`-th event of `actor`, with the default padding (64 to 319 bytes).
pub fn entry(actor: u32, n: u32) -> Entry {
    entry_padded(actor, n, 64)
}

/// The `n`-th event of `actor`, with `pad` to `pad + 255` bytes of padding.
pub fn entry_padded(actor: u32, n: u32, pad: usize) -> Entry {
    let id = u64::from(actor) << 32 | u64::from(n);
    let len = pad + (id.wrapping_mul(0x9E37_79B9) % 256) as usize;
    Entry {
        id,
        pad: vec![(id % 251) as u8; len],
    }
}

/// The actor number of the position updater (appenders are `0..appenders`).
pub const POSITION_ACTOR: u32 = 200;
/// The actor number of the neighbour store's appender.
pub const NEIGHBOUR_ACTOR: u32 = 400;
/// The neighbour store's directory (see [`Concurrent::neighbour_appends`]).
pub const NEIGHBOUR_DIR: &str = "/neighbour";

/// The actor number of the event appended after recovery.
pub const RECOVERY_ACTOR: u32 = 300;
/// The actor number of the checkpointing thread (it appends nothing).
pub const CHECKPOINT_ACTOR: u32 = 100;

/// A concurrent workload: the actors and the store options. See the
/// [module docs](crate::testing::check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrent {
    /// The sync policy (`Interval` runs the store's real sync thread).
    pub sync: SyncPolicy,
    /// Appending threads.
    pub appenders: u32,
    /// Events each appender appends.
    pub appends: u32,
    /// Each appender calls `sync` after every `sync_every`-th append (0: never).
    pub sync_every: u32,
    /// Checkpoints the checkpointing thread takes, back to back (0: no such thread).
    pub checkpoints: u32,
    /// Events the position updater appends (setting the position after each).
    pub position_updates: u32,
    /// A periodic checkpointer on the store's own thread, with this interval.
    pub periodic: Option<Duration>,
    /// Close with a final checkpoint.
    pub final_checkpoint: bool,
    /// [`Options::segment_bytes`] (default 4096).
    pub segment_bytes: u64,
    /// [`Options::keep_snapshots`] (default 2).
    pub keep_snapshots: usize,
    /// Each event carries `pad` to `pad + 255` bytes of padding (default 64): larger
    /// events rotate segments more often.
    pub pad: usize,
    /// [`Options::max_staged_bytes`] (default 4096, its least: the bound a crash of
    /// the process is checked against).
    pub max_staged_bytes: u64,
    /// Events appended to a neighbour store (0: none). With a neighbour, both stores
    /// checkpoint on one shared [`crate::Scheduler`] (every [`Concurrent::periodic`],
    /// or 2 ms), and the neighbour's actor closes it while the store's actors run.
    pub neighbour_appends: u32,
}

impl Default for Concurrent {
    /// Two appenders of 12 events under `Never`, each syncing after every 8th, 4
    /// checkpoints, 6 position updates, a final checkpoint.
    fn default() -> Self {
        Concurrent {
            sync: SyncPolicy::Never,
            appenders: 2,
            appends: 12,
            sync_every: 8,
            checkpoints: 4,
            position_updates: 6,
            periodic: None,
            final_checkpoint: true,
            segment_bytes: 4096,
            keep_snapshots: 2,
            pad: 64,
            max_staged_bytes: 4096,
            neighbour_appends: 0,
        }
    }
}

/// Named workloads: the ones snapwal's own checks and mutation score run.
impl Concurrent {
    /// The default workload under `Always`.
    pub fn always() -> Self {
        Concurrent {
            sync: SyncPolicy::Always,
            ..Concurrent::default()
        }
    }

    /// Large events (600 to 855 bytes) syncing after every second append: a rotation
    /// every few appends, often while a group commit is in flight.
    pub fn rotating() -> Self {
        Concurrent {
            sync_every: 2,
            pad: 600,
            ..Concurrent::default()
        }
    }

    /// Three appenders of 12 events of 1500 to 1755 bytes (two or three to a
    /// segment), each syncing after every append, and nothing else: a rotation in
    /// nearly every write, most of them while another appender's group commit is in
    /// flight (a rotation that does not wait for it creates a segment while an older
    /// one still holds unsynced records).
    pub fn syncing_rotations() -> Self {
        Concurrent {
            appenders: 3,
            sync_every: 1,
            pad: 1500,
            checkpoints: 0,
            position_updates: 0,
            ..Concurrent::default()
        }
    }

    /// Three appenders of 16 large events that never sync: many rotations while the
    /// others append, and only the staging bound keeps a crash of the process from
    /// losing what they queued meanwhile.
    pub fn unsynced_rotations() -> Self {
        Concurrent {
            appenders: 3,
            appends: 16,
            sync_every: 0,
            pad: 600,
            ..Concurrent::default()
        }
    }

    /// One appender, and a reader appending 16 events and moving its position after
    /// each, racing 8 back-to-back checkpoints.
    pub fn position_race() -> Self {
        Concurrent {
            appenders: 1,
            appends: 6,
            sync_every: 3,
            position_updates: 16,
            checkpoints: 8,
            ..Concurrent::default()
        }
    }

    /// A neighbour store of 12 events on one shared checkpoint scheduler with this
    /// one, closed by its actor while the scheduler may be checkpointing either.
    pub fn shared_scheduler() -> Self {
        Concurrent {
            neighbour_appends: 12,
            checkpoints: 0,
            ..Concurrent::default()
        }
    }

    /// Events appended by a complete run.
    pub fn events(&self) -> u64 {
        u64::from(self.appenders) * u64::from(self.appends) + u64::from(self.position_updates)
    }

    pub(super) fn options(&self, fs: Arc<SimFs>, sync: SyncPolicy) -> Options {
        Options::default()
            .sync(sync)
            .segment_bytes(self.segment_bytes)
            .keep_snapshots(self.keep_snapshots)
            .max_staged_bytes(self.max_staged_bytes)
            .fs(fs)
    }
}
