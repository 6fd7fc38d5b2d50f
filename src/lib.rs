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

/// A scheduling point of the deterministic scheduler (`crate::testing::sim`'s
/// `Scheduler`): a window where another thread's step decides the outcome though
/// no file-system call lies in it. Nothing without the `testing` feature.
macro_rules! sched_point {
    () => {{
        #[cfg(feature = "testing")]
        $crate::testing::sim::point();
    }};
}

/// A marked moment for the deterministic scheduler (`crate::testing::sim`'s
/// `Mark`): `(label, path)`. Nothing without the `testing` feature.
macro_rules! sched_mark {
    ($label:expr, $path:expr) => {{
        #[cfg(feature = "testing")]
        $crate::testing::sim::mark($label, $path);
    }};
}

#[cfg(feature = "async")]
pub mod async_api;
pub mod backup;
pub mod checkpoint;
pub mod error;
pub mod format;
pub mod fs;
#[cfg(feature = "inspect")]
pub mod inspect;
pub mod metrics;
pub mod migrating;
mod options;
pub mod position;
pub mod reader;
pub mod scheduler;
pub mod snapshot;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod util;
mod versioned;
pub mod wal;

pub use backup::BackupReport;
pub use checkpoint::{
    CheckpointMode, CheckpointOutcome, CheckpointReport, CheckpointStats, CleanupFailure,
};
pub use error::{Error, Result};
pub use options::{CloseOptions, Options, RecoveryPolicy, SyncPolicy};
pub use position::{Position, PositionCell};
pub use reader::{Reader, Refreshed};
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
/// The store keeps two copies of the state and applies each event in place to the one
/// no reader holds, then replays it onto the other (see the `store` module docs), so a
/// plain state of std collections costs about two in-place applies per append, not a
/// clone, and about twice its size in memory. `clone` runs only when a reader or a
/// checkpoint still holds the spare copy at the next append (once per checkpoint, for
/// example): a state of persistent collections (`imbl` with its `serde` feature,
/// `rpds`) makes that clone copy pointers, and keeps the two copies' memory shared
/// except for what changed.
///
/// `apply` must be deterministic: recovery replays events through it, and the store
/// applies each event to two copies that must stay equal. Events must decode back to
/// an equal event (the store keeps decoded copies of the events it logged to replay
/// them).
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
