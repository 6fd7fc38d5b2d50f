//! Async appends (feature `async`, on by default): futures that complete when the
//! group commit covers them, woken by whoever makes the log durable. Runtime-agnostic:
//! only [`std::task::Waker`], no dependency, no `spawn_blocking` per append, and no
//! runtime worker ever waits for an `fdatasync`.
//!
//! The API: [`Store::append_async`](crate::Store::append_async),
//! [`Store::append_batch_async`](crate::Store::append_batch_async),
//! [`Store::sync_async`](crate::Store::sync_async),
//! [`Store::checkpoint_async`](crate::Store::checkpoint_async),
//! [`Store::close_async`](crate::Store::close_async) and
//! [`Store::close_with_async`](crate::Store::close_with_async).
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Default, Serialize, Deserialize)]
//! # struct Counter { total: i64 }
//! # impl snapwal::State for Counter {
//! #     type Event = i64;
//! #     fn apply(&mut self, n: &i64) { self.total += n }
//! # }
//! use std::sync::Arc;
//! use snapwal::{Options, Store, SyncPolicy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
//! let store = Arc::new(Store::<Counter>::open(dir.path(), Options::default().sync(SyncPolicy::Always))?);
//! let total = rt.block_on(async {
//!     let tasks: Vec<_> = (1..=8)
//!         .map(|n| {
//!             let store = Arc::clone(&store);
//!             tokio::spawn(async move { store.append_async(&n).await })
//!         })
//!         .collect();
//!     for t in tasks {
//!         let seq = t.await.expect("task")?;
//!         assert!(seq <= store.durable_seq()); // durable once acknowledged
//!     }
//!     store.checkpoint_async().await?;
//!     Ok::<_, snapwal::Error>(store.current().total)
//! })?;
//! assert_eq!(total, 36);
//! let store = Arc::try_unwrap(store).expect("the tasks ended");
//! rt.block_on(store.close_async())?;
//! # Ok(())
//! # }
//! ```
//!
//! # Who wakes whom
//!
//! An async append runs on the calling task without any disk wait: it encodes, stages
//! and publishes the event in the writer section exactly like
//! [`Store::append`](crate::Store::append), then hands the record to the OS (a
//! page-cache write; a write that needs a new segment, which waits on the disk, is
//! left to a thread that may wait). Under [`SyncPolicy::Always`](crate::SyncPolicy::Always)
//! it then registers its waker, keyed by its seq, in the log's waiter list and
//! returns `Pending`.
//!
//! One thread per store, the *syncer* (named `snapwal-async-sync`, started by the
//! store's first async call), sleeps until a task waits for more than is durable,
//! then runs one group commit covering everything written so far; the commit wakes
//! every task whose seq it covered. Tasks that register while an `fdatasync` runs
//! share the next one, so the more tasks, the more records per sync. Before the next
//! commit, when fewer tasks wait than it just woke, the syncer gives those it woke a
//! moment (a quarter of the last commit's time, at most 250 µs, and only until they
//! have all registered again) to append again and join it: without that, a few tasks
//! can split into uneven groups that take turns, the commits of the small group
//! costing as much as those of the large one. After a commit with nothing left
//! to do, it spins (yielding the CPU) for at most the last commit's time and 300 µs
//! before it sleeps, so that a task appending again right away does not also pay
//! for waking it: one commit's worth of CPU at most, and only when it would idle.
//!
//! The other paths that make the log durable wake covered tasks the same way: a
//! blocking appender's group commit, the interval sync of
//! [`SyncPolicy::Interval`](crate::SyncPolicy::Interval), [`Store::sync`](crate::Store::sync),
//! and the final sync of `close`.
//!
//! # Durability per sync policy
//!
//! The same as the blocking API's: under [`SyncPolicy::Always`](crate::SyncPolicy::Always)
//! the future completes once the record is durable; under
//! [`SyncPolicy::Interval`](crate::SyncPolicy::Interval) and
//! [`SyncPolicy::Never`](crate::SyncPolicy::Never) once it is written to the OS, or
//! queued in memory while the staged bytes are within
//! [`Options::max_staged_bytes`](crate::Options::max_staged_bytes) (the syncer writes
//! it at once, rotating to a new segment if needed).
//!
//! # Back-pressure
//!
//! Past [`Options::max_staged_bytes`](crate::Options::max_staged_bytes) (records
//! staged while a new segment is being created), an async append does not park its
//! worker as the blocking one does: it returns `Pending` *before* staging anything,
//! and is woken when a write brings the staged bytes back within the bound. The bound
//! can be passed by at most one batch per appending task.
//!
//! # Cancellation
//!
//! The futures are lazy: nothing happens before the first poll. Then:
//!
//! - dropped **before** the event was staged (never polled, or dropped while waiting
//!   for room): nothing was appended;
//! - dropped **after** the event was staged (while waiting for durability): the event
//!   **is** appended, exactly once. It has its seq, it is applied to the state and
//!   visible in [`Store::current`](crate::Store::current), and it is in the log: the
//!   next sync makes it durable (the syncer runs that sync whether the future is
//!   polled again or not). Dropping the future gives up only the acknowledgement.
//!   Do not append the event again: it would be logged twice.
//!   [`Store::seq`](crate::Store::seq) and [`Store::durable_seq`](crate::Store::durable_seq)
//!   say where the log is.
//!
//! The staging happens within one poll, with no `.await` inside, so there is no third
//! case.
//!
//! # Errors and close
//!
//! A failed write or sync reaches every waiting task as
//! [`Error::ReadOnly`](crate::Error::ReadOnly), and the store turns read-only, as with
//! the blocking API. A segment that cannot be created yet
//! ([`Error::SegmentUnavailable`](crate::Error::SegmentUnavailable)) reaches the tasks
//! waiting then; the store stays writable and the syncer retries for later tasks.
//!
//! The append and sync futures borrow the store, so `close`, which takes the store by
//! value, cannot run while one of them is alive. A waker still registered when the
//! store is closed or dropped (its future leaked with `mem::forget`) is woken then:
//! `Ok` if the final sync covered its record, otherwise the log's error or
//! [`Error::Closed`](crate::Error::Closed). No task waits for ever.
//!
//! # Checkpoints and close
//!
//! [`Store::checkpoint_async`](crate::Store::checkpoint_async) and
//! [`Store::close_async`](crate::Store::close_async) run the blocking call on a thread
//! they spawn and await its result through a one-shot built on std. These calls write
//! whole snapshots and join threads; they are rare, so a thread each costs nothing
//! that matters, and it keeps them off the runtime's workers and off a blocking pool
//! whose size the library cannot know. Dropping their future does not cancel them:
//! the checkpoint or close finishes on its thread (`close` cancels a running
//! checkpoint and waits for its thread within its bound, as for the periodic
//! checkpointer).
