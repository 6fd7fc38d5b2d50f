//! Async appends (feature `async`, on by default): futures that complete when the
//! group commit covers them, woken by whoever makes the log durable. Runtime-agnostic:
//! only [`std::task::Waker`], no dependency, no `spawn_blocking`.
//!
//! # Who wakes whom
//!
//! [`Store::append_async`] runs on the calling task, with no disk wait: it encodes,
//! stages and publishes the event in the writer section exactly like
//! [`Store::append`], then hands the record to the OS (a page-cache write; a write
//! that would need a new segment is left to a thread that may wait). Under
//! [`SyncPolicy::Always`] it then registers its waker under its seq in the log's waiter
//! list and returns `Pending`. One background thread per store, the *syncer* (named
//! `snapwal-async-sync`, started on the first async call), sleeps until a task
//! waits for more than is durable, then runs one group commit covering everything
//! written so far, and the commit wakes every task whose seq it covered. Tasks that
//! registered while an `fdatasync` ran share the next one: the more tasks, the more
//! records per sync. A blocking appender's group commit, the interval sync and the
//! final sync of `close` wake covered tasks the same way. No runtime worker ever
//! waits for an `fdatasync`, a rotation or a reservation.
//!
//! # Durability per sync policy
//!
//! The same as the blocking API's: under [`SyncPolicy::Always`] the future completes
//! once the record is durable; under [`SyncPolicy::Interval`] and
//! [`SyncPolicy::Never`] once it is written to the OS, or queued in memory while the
//! staged bytes are within [`Options::max_staged_bytes`](crate::Options::max_staged_bytes)
//! (the syncer writes it at once).
//!
//! # Back-pressure
//!
//! Past [`Options::max_staged_bytes`](crate::Options::max_staged_bytes) (records
//! staged while a new segment is being created), an async append does not park the
//! worker as the blocking one does: it returns `Pending` before staging anything and
//! is woken when a write brings the staged bytes back within the bound. The bound can
//! be passed by at most one batch per appending task.
//!
//! # Cancellation
//!
//! The futures are lazy: nothing happens before the first poll. Then:
//!
//! - dropped **before** the event was staged (before the first poll, or while waiting
//!   for room): nothing was appended;
//! - dropped **after** the event was staged (while waiting for durability): the event
//!   **is** appended, exactly once. It has its seq, it is applied to the state and
//!   visible in [`Store::current`], and it is in the log: the next sync makes it
//!   durable (the syncer runs that sync anyway, whether the future is polled again or
//!   not). Dropping the future only gives up the acknowledgement. Do not append the
//!   event again: that would log it twice. [`Store::seq`] and [`Store::durable_seq`]
//!   say where the log is.
//!
//! The staging happens inside one poll with no `.await` in between, so there is no
//! third case.
//!
//! # Errors
//!
//! A failed write or sync reaches every waiting task as [`Error::ReadOnly`], and the
//! store turns read-only, as with the blocking API. A segment that cannot be created
//! yet ([`Error::SegmentUnavailable`]) reaches the tasks waiting then; the store stays
//! writable. The futures borrow the store, so `close` (which takes the store by value)
//! cannot run while one is pending; a future leaked with `mem::forget` is completed by
//! `close` with the result of its final sync, or [`Error::Closed`].
//!
//! # Checkpoints and close
//!
//! [`Store::checkpoint_async`] and [`Store::close_async`] run the blocking call on a
//! thread they spawn and await its result through a one-shot built on std: these
//! calls write whole snapshots and join threads, they are rare, and a thread of their
//! own keeps them off the runtime's workers and off its blocking pool (whose size the
//! library cannot know). Dropping their future does not cancel them.
