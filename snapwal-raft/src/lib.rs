//! openraft storage on snapwal: the raft log on snapwal's segment log, the state
//! machine on a [`snapwal::Store`], for openraft 0.9 with its `storage-v2` traits.
//!
//! ```text
//! dir/
//!   LOCK                                   flock of the log store (one process per dir)
//!   log/00000000000000000001.wal           raft log segments (snapwal segment format)
//!   sm/                                    the state machine: a snapwal store directory
//!     LOCK, wal/, snap/<seq>.snap          (its own lock, WAL and snapshots)
//! ```
//!
//! - [`LogStore`] implements `RaftLogStorage` and `RaftLogReader` ([`LogReader`]).
//! - [`StateMachine`] implements `RaftStateMachine`; [`SnapshotBuilder`] implements
//!   `RaftSnapshotBuilder`. Your replicated state implements [`App`] ([`kv::Kv`] is
//!   an example); [`SmReader`] reads it while openraft owns the state machine.
//!
//! The `kv` example (`cargo run --release -p snapwal-raft --example kv`) runs a 3-node
//! key-value service on these stores as three processes over loopback TCP, kills a
//! follower and the leader mid-load and restarts them from their directories; the
//! `cluster` bench measures entries/s through a 3-node cluster, durable and in memory.
//!
//! # Guarantees
//!
//! - `append` calls its `LogFlushed` callback only once the entries are durable (one
//!   `fdatasync` covers every append waiting: group commit), and always calls it: with
//!   the error if the write or sync failed.
//! - `save_vote`, `save_committed`, `truncate` and `purge` return once their record is
//!   durable. Truncation writes a record that supersedes the suffix; no byte of the log
//!   is ever rewritten. Purge records the purged log id (and term), then unlinks the
//!   whole segments nothing live needs, oldest first, syncing the directory after each.
//! - After any crash, reopening gives the log as of some point no earlier than the last
//!   acknowledged operation: no acknowledged entry lost, no truncated entry back, the
//!   vote and the purged id never behind what was acknowledged.
//! - A snapshot is a snapwal snapshot file (unique temp file, `fdatasync`, no-replace
//!   rename). `install_snapshot` is one durable store event followed by a checkpoint: a
//!   crash at any point leaves the old state or the new one.
//!
//! # The raft log records
//!
//! Each WAL record's payload (snapwal frame: `len | crc32c | seq | payload`) is the
//! postcard encoding of a [`log_store::LogRecord`]: a version tag (varint, `0` = V1)
//! followed by one [`log_store::RecordV1`]:
//!
//! | tag | record | effect at replay |
//! |---|---|---|
//! | 0 | `Entry(entry)` | the entry at its log index; drops any entry at that index or above |
//! | 1 | `TruncateFrom(index)` | drops the entries with index `>= index` |
//! | 2 | `Purged(log_id)` | drops the entries with index `<= log_id.index`; keeps the id |
//! | 3 | `Vote(vote)` | the vote |
//! | 4 | `Committed(Option<log_id>)` | the committed log id |
//!
//! The raft log index is *not* the WAL seq: records carry their own index, and
//! recovery folds them in WAL seq order (later records supersede earlier ones). A
//! purge writes the purged id together with fresh copies of the vote and committed id,
//! then unlinks the segments wholly below both these records and the first live
//! entry; recovery replays from the first segment left. A record that passes its
//! checksum but does not decode (an unknown version) is [`Error::Decode`], naming the
//! segment and offset.
//!
//! # Moving to openraft 0.10
//!
//! The storage logic sits in plain methods (`LogStore::write_records`, `purge_durable`,
//! `StateMachine::apply_entries`, `install`); the trait impls are thin. 0.10 renames
//! `LogFlushed` to `IOFlushed` and moves the traits to `openraft::storage` with
//! `C::Entry` accessors instead of `Entry<C>` fields; the change is in the impl blocks
//! and the `Entry<C>` bound, not in the on-disk format.

#![deny(missing_docs)]

pub mod error;
pub mod kv;
pub mod log_store;
pub mod state_machine;

pub use error::{Error, Result};
pub use log_store::{LogOptions, LogReader, LogStore, LogView};
pub use state_machine::{App, SmEvent, SmReader, SmState, SnapshotBuilder, StateMachine};
