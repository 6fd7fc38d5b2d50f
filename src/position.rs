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

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

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
pub struct PositionCell(ArcSwap<Position>);

impl PositionCell {
    /// Sets the position. Lock-free: one allocation and one atomic swap.
    pub fn set(&self, pos: Position) {
        self.0.store(Arc::new(pos));
    }
    /// The current position.
    pub fn get(&self) -> Position {
        **self.0.load()
    }
}

/// The registry of named cells: copy-on-write, read without a lock.
#[derive(Debug, Default)]
pub(crate) struct Positions(ArcSwap<Vec<(String, Arc<PositionCell>)>>);

impl Positions {
    pub(crate) fn from_saved(saved: Vec<(String, Position)>) -> Self {
        let cells = saved
            .into_iter()
            .map(|(name, pos)| (name, Arc::new(PositionCell(ArcSwap::from_pointee(pos)))))
            .collect();
        Positions(ArcSwap::from_pointee(cells))
    }

    /// The cell named `name`, created at the default position if new.
    pub(crate) fn cell(&self, name: &str) -> Arc<PositionCell> {
        if let Some((_, c)) = self.0.load().iter().find(|(n, _)| n == name) {
            return Arc::clone(c);
        }
        let mut out = None;
        self.0.rcu(|cells| {
            let mut cells = Vec::clone(cells);
            match cells.iter().find(|(n, _)| n == name) {
                Some((_, c)) => out = Some(Arc::clone(c)),
                None => {
                    let c = Arc::new(PositionCell::default());
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
        self.0
            .load()
            .iter()
            .map(|(n, c)| (n.clone(), c.get()))
            .collect()
    }
}
