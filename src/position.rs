//! Source positions: where a reader (a file tailer, a queue consumer) has got to.
//!
//! A position cell is updated lock-free ([`PositionCell::set`] is one atomic pointer
//! swap), cheap enough to call for every record a reader emits. Every checkpoint
//! stores all positions together with the state, and [`Store::open`](crate::Store::open)
//! restores them.
//!
//! **Semantics: at-least-once.** A position read back after a restart is the one the
//! last completed checkpoint saw, which may be older than the last `set` before the
//! crash. A reader resumes from it and may read again what came after.
//!
//! # Invariant kept here (I10)
//!
//! A checkpoint reads the positions *before* it loads the published state, so a saved
//! position is never ahead of the state saved with it: a reader that appends an event
//! and then moves its position either has both in the checkpoint, or the event
//! without the position, never the position without the event. A checkpoint that
//! finds the state unchanged but the positions moved saves them in a *positions
//! record* (`pos/<generation>.snap`, see [`format`](crate::format)), so positions are
//! saved even when no event was appended.

use std::path::Path;
use std::sync::Arc;

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Mutex;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fs::Fs;
use crate::util::lock;
use crate::wal::Nudge;
use crate::{snapshot, Seq};

/// Where a source reader has got to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Byte offset (or any monotonic cursor) in the source.
    pub offset: u64,
    /// Identity of the source file (inode), to notice rotation.
    pub inode: u64,
    /// Timestamp of the last record read (unit of the application's choosing).
    pub timestamp: i64,
}

/// A named position, shared between the reader that updates it and the checkpoints
/// that save it.
#[derive(Debug, Default)]
pub struct PositionCell {
    pos: ArcSwap<Position>,
    /// The store's wake-up for a quiet checkpointer (see [`ChangeWake`]).
    wake: Arc<ChangeWake>,
}

impl PositionCell {
    /// Sets the position. Lock-free: one allocation and one atomic swap (and, once
    /// after the store's checkpointer went quiet, a nudge to wake it).
    pub fn set(&self, pos: Position) {
        sched_point!();
        self.pos.store(Arc::new(pos));
        self.wake.fire();
    }
    /// The current position.
    pub fn get(&self) -> Position {
        **self.pos.load()
    }
}

/// A one-shot wake-up for a quiet checkpointer: armed with a callback when the
/// scheduler parks the store, fired by the next position move.
///
/// Arming and firing pair like a flag and a check on two threads (each side writes,
/// then a `SeqCst` fence, then reads the other side's data): either the mover sees the
/// wake-up armed and fires it, or the parker, reading the positions after arming,
/// sees the move and does not park.
#[derive(Default)]
pub(crate) struct ChangeWake {
    armed: AtomicBool,
    nudge: Mutex<Option<Nudge>>,
}

impl std::fmt::Debug for ChangeWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeWake")
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ChangeWake {
    /// Arms the wake-up; the caller reads the positions afterwards.
    pub(crate) fn arm(&self, nudge: Nudge) {
        *lock(&self.nudge) = Some(nudge);
        self.armed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Runs the armed callback, once; called after a position was stored.
    fn fire(&self) {
        fence(Ordering::SeqCst);
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            let nudge = lock(&self.nudge).take();
            if let Some(nudge) = nudge {
                nudge();
            }
        }
    }
}

/// The registry of named cells: copy-on-write, read without a lock.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    cells: ArcSwap<Vec<(String, Arc<PositionCell>)>>,
    /// Shared by every cell.
    wake: Arc<ChangeWake>,
}

impl Positions {
    pub(crate) fn from_saved(saved: Vec<(String, Position)>) -> Self {
        let wake = Arc::new(ChangeWake::default());
        let cells = saved
            .into_iter()
            .map(|(name, pos)| {
                let cell = PositionCell {
                    pos: ArcSwap::from_pointee(pos),
                    wake: Arc::clone(&wake),
                };
                (name, Arc::new(cell))
            })
            .collect();
        Positions {
            cells: ArcSwap::from_pointee(cells),
            wake,
        }
    }

    /// The wake-up every cell fires when it moves.
    pub(crate) fn wake(&self) -> &ChangeWake {
        &self.wake
    }

    /// The cell named `name`, created at the default position if new.
    pub(crate) fn cell(&self, name: &str) -> Arc<PositionCell> {
        if let Some((_, c)) = self.cells.load().iter().find(|(n, _)| n == name) {
            return Arc::clone(c);
        }
        let mut out = None;
        self.cells.rcu(|cells| {
            let mut cells = Vec::clone(cells);
            match cells.iter().find(|(n, _)| n == name) {
                Some((_, c)) => out = Some(Arc::clone(c)),
                None => {
                    let c = Arc::new(PositionCell {
                        pos: ArcSwap::default(),
                        wake: Arc::clone(&self.wake),
                    });
                    out = Some(Arc::clone(&c));
                    cells.push((name.to_owned(), c));
                }
            }
            cells
        });
        out.unwrap_or_default()
    }

    /// Every position, as of now.
    pub(crate) fn save(&self) -> Vec<(String, Position)> {
        self.cells
            .load()
            .iter()
            .map(|(n, c)| (n.clone(), c.get()))
            .collect()
    }
}

/// Named positions, as saved.
pub(crate) type Saved = Vec<(String, Position)>;

/// Writes positions record `generation` into `dir`: the positions `saved` go with the
/// state after `seq` (which must already be durable). Returns the file's size.
pub(crate) fn write_record(
    fs: &dyn Fs,
    dir: &Path,
    generation: u64,
    store_id: u64,
    seq: Seq,
    saved: &Saved,
    cancel: &AtomicBool,
) -> Result<u64> {
    snapshot::write_cancellable(fs, dir, generation, store_id, &(seq, saved), cancel)
        .map(|w| w.bytes)
}

/// What recovery finds in the positions records of `dir`.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The newest valid record whose state seq lies in the recovered range: its
    /// positions replace the base snapshot's.
    pub(crate) newest: Option<(Seq, Saved)>,
    /// The generation the next record gets.
    pub(crate) next_generation: u64,
    /// Records newer than the one used that did not validate (skipped, with a
    /// warning; older positions are always safe to resume from). Recovery moves them
    /// aside.
    pub(crate) skipped: Vec<std::path::PathBuf>,
    /// The store id of the record used (the only id an empty store has on disk).
    pub(crate) store_id: Option<u64>,
}

/// Finds the newest positions record of `dir` that goes with a state between `base`
/// (the seq of the snapshot recovery started from) and `recovered` (the seq it
/// reached): such positions are newer than the snapshot's and never ahead of the
/// recovered state. `store_id` is `None` when neither a segment nor a snapshot gave
/// one (a store with positions but no event yet).
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    store_id: Option<u64>,
    base: Seq,
    recovered: Seq,
) -> Result<Recovered> {
    let records = snapshot::list(fs, dir)?;
    let mut out = Recovered {
        next_generation: records.last().map_or(1, |(g, _)| g.saturating_add(1)),
        ..Recovered::default()
    };
    for (_, path) in records.iter().rev() {
        match snapshot::load::<(Seq, Saved)>(fs, path, store_id) {
            Ok((header, (seq, saved))) if (base..=recovered).contains(&seq) => {
                out.newest = Some((seq, saved));
                out.store_id = Some(header.store_id);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e,
                    "positions record does not validate; using older positions");
                out.skipped.push(path.clone());
            }
        }
    }
    Ok(out)
}
