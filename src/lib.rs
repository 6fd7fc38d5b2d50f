#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)
)]

#[cfg(feature = "sim")]
pub mod check;
pub mod checkpoint;
pub mod error;
pub mod format;
pub mod fs;
pub mod harness;
mod options;
pub mod position;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snapshot;
mod store;
pub mod wal;

pub use checkpoint::{
    CheckpointMode, CheckpointOutcome, CheckpointReport, CheckpointStats, CheckpointerConfig,
    CleanupFailure, CloseOptions, Scheduler,
};
pub use error::{Error, Result};
pub use options::{Options, RecoveryPolicy, SyncPolicy};
pub use position::{Position, PositionCell};
pub use store::{CloseReport, OpenReport, Store, Versioned};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A sequence number: the position of an event in the log. The first event is 1; a
/// store with no event is at seq 0.
pub type Seq = u64;

/// The application's state, changed only by applying events.
///
/// snapwal clones the state once per published append (or once per
/// [`Store::append_batch`]) and applies the events to the clone, so that readers and
/// checkpoints keep the version they hold. Make `Clone` cheap by sharing structure:
/// persistent collections (`imbl`, `rpds`) or an `Arc` per entry mean a clone copies
/// only pointers and the writer copies only what it touches. A state that deep-copies
/// on `clone` costs O(size) per append; batch appends amortize it.
///
/// `apply` must be deterministic: recovery replays events through it and must reach
/// the same state.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Counter { total: i64 }
///
/// #[derive(Serialize, Deserialize)]
/// enum Op { Add(i64) }
///
/// impl snapwal::State for Counter {
///     type Event = Op;
///     fn apply(&mut self, event: &Op) {
///         match event { Op::Add(n) => self.total += n }
///     }
/// }
/// ```
pub trait State: Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The events that change the state; logged with `postcard`.
    type Event: Serialize + DeserializeOwned + Send + Sync;
    /// Applies one event. Must be deterministic and must not fail: validate events
    /// before appending them.
    fn apply(&mut self, event: &Self::Event);
}
