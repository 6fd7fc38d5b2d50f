#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)
)]

/// A planted bug's switch (`crate::testing::mutation`); always `false` without the
/// `testing` feature.
macro_rules! mutant {
    ($m:ident) => {{
        #[cfg(feature = "testing")]
        let on = $crate::testing::mutation::active($crate::testing::mutation::Mutation::$m);
        #[cfg(not(feature = "testing"))]
        let on = false;
        on
    }};
}

pub mod checkpoint;
pub mod error;
pub mod format;
pub mod fs;
#[cfg(feature = "inspect")]
pub mod inspect;
mod options;
pub mod position;
pub mod scheduler;
pub mod snapshot;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod util;
mod versioned;
pub mod wal;

pub use checkpoint::{
    CheckpointMode, CheckpointOutcome, CheckpointReport, CheckpointStats, CleanupFailure,
};
pub use error::{Error, Result};
pub use options::{CloseOptions, Options, RecoveryPolicy, SyncPolicy};
pub use position::{Position, PositionCell};
pub use scheduler::{CheckpointerConfig, Scheduler};
pub use store::{CloseReport, FinalCheckpointMissed, OpenReport, Store};
pub use versioned::Versioned;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A sequence number: the position of an event in the log. The first event is 1; a
/// store with no event is at seq 0.
pub type Seq = u64;

/// The application's state, changed only by applying events.
///
/// snapwal clones the state once per published append (or once per
/// [`Store::append_batch`](crate::Store::append_batch)) and applies the events to the clone, so that readers and
/// checkpoints keep the version they hold. Make `Clone` cheap by sharing structure:
/// persistent collections (`imbl` with its `serde` feature, `rpds`) or an `Arc` per
/// entry mean a clone copies only pointers and the writer copies only what it touches
/// (serde serializes an `Arc<T>` only with its `rc` feature: `serde = { version = "1",
/// features = ["derive", "rc"] }`). A state that deep-copies
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
