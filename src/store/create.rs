//! Moving in: a new store whose first state is one the application already has.
//!
//! # Invariants kept here
//!
//! - **I4 Atomic files**: the initial state is a snapshot at seq 0, written like any
//!   other (unique temp file, `fdatasync`, no-replace install), after the store's
//!   directories are durable.
//! - **I7 Exclusive**: the import runs under the store's lock, and refuses a
//!   directory that already holds a store, changing nothing in it.

use std::path::Path;

use super::Store;
use crate::error::{Error, Result};
use crate::position::Position;
use crate::{snapshot, wal, Options, State};

impl<S: State> Store<S> {
    /// Creates a store in `dir` whose state starts as `initial` instead of
    /// `S::default()`, and opens it: the way in from a state the application already
    /// keeps (a `Mutex<State>` loaded from its own file, a database export).
    ///
    /// `initial` becomes the state at seq 0, written as the store's first snapshot; the
    /// first append gets seq 1 and applies to it. Reopening the store recovers
    /// `initial` plus every event appended since. A directory that already holds a
    /// store (a snapshot, a WAL segment or a positions record) is refused with
    /// [`Error::StoreExists`], and nothing in it changes; an empty or missing
    /// directory is fine.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use snapwal::{Options, State, Store};
    ///
    /// #[derive(Clone, Default, Serialize, Deserialize)]
    /// struct Wallet { balance: u64 }
    /// impl State for Wallet {
    ///     type Event = u64;
    ///     fn apply(&mut self, deposit: &u64) { self.balance += deposit }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// // The balance the old store had: the starting point, not an event.
    /// let store = Store::create_with(dir.path(), Wallet { balance: 1_000 }, Options::default())?;
    /// store.append(&5)?;
    /// store.close()?;
    ///
    /// let store = Store::<Wallet>::open(dir.path(), Options::default())?;
    /// assert_eq!(store.current().balance, 1_005);
    /// // Importing twice is refused.
    /// store.close()?;
    /// assert!(matches!(
    ///     Store::create_with(dir.path(), Wallet::default(), Options::default()),
    ///     Err(snapwal::Error::StoreExists { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_with(dir: impl AsRef<Path>, initial: S, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        let (store, report) = Self::open_with_report(dir, options.clone())?;
        let inner = &store.inner;
        let fs = inner.fs.as_ref();
        let segments = wal::list_segments(fs, inner.wal.dir())?;
        let holds_a_store = report.seq != 0
            || report.snapshot_seq.is_some()
            || !segments.is_empty()
            || !inner.positions.save().is_empty()
            || !snapshot::list(fs, &inner.pos_dir)?.is_empty();
        if holds_a_store {
            store.close()?;
            return Err(Error::StoreExists { path: dir.into() });
        }
        // The directories of a new store are synced by its first durable write: this
        // snapshot is it.
        inner.wal.sync_pending_dirs()?;
        let positions: Vec<(String, Position)> = Vec::new();
        snapshot::write(
            fs,
            &inner.snap_dir,
            0,
            inner.store_id,
            &(&initial, &positions),
        )?;
        tracing::info!(dir = %dir.display(), "store created from an initial state (snapshot at seq 0)");
        drop(initial);
        // Reopen: recovery loads the snapshot like any other, so the state published,
        // the durable version and the writer's copies all start from it.
        store.close()?;
        Self::open(dir, options)
    }
}
