//! # Migrating from `Mutex<State>` + a WAL file
//!
//! A store built on a mutex looks like this: the state behind a `Mutex`, each change
//! written to a log file (and synced) before it is applied, and a checkpoint that
//! locks the state, copies it, writes it out and truncates the log — stopping every
//! writer while it runs. snapwal keeps the parts that were right (the state type,
//! check-then-act, durable changes) and removes the stall. What changes, line by line:
//!
//! | with the mutex | with snapwal |
//! |---|---|
//! | `Mutex<Wallet>` | `Store<Wallet>`, `Wallet: State` (the same plain type; `apply` is the code that changed it under the lock) |
//! | load the state from your own file at start | [`Store::create_with`](crate::Store::create_with) once (imports it as the state at seq 0), then [`Store::open`](crate::Store::open) |
//! | `let mut w = m.lock(); if w.balance >= x { log(x); w.balance -= x }` | [`Store::append_with`](crate::Store::append_with): decide the event from the current state, atomically |
//! | log, `fsync`, apply | [`SyncPolicy::Always`](crate::SyncPolicy::Always): `append` returns once durable (concurrent appends share one `fdatasync`) |
//! | `m.lock().balance` | [`Store::current`](crate::Store::current) (newest, maybe not yet durable), [`Store::current_durable`](crate::Store::current_durable) (what a crash cannot take back), [`Store::with_current`](crate::Store::with_current) (shortest reads) |
//! | checkpoint under the lock, truncate by rewriting | a checkpointer ([`Store::start_checkpointer`](crate::Store::start_checkpointer)): one atomic load of the state, a snapshot, truncation by `unlink` — writers never wait |
//!
//! `apply` must be deterministic: snapwal applies each event to two copies of the
//! state (the one readers see and a spare it reuses) and again at recovery.
//!
//! ## The wallet, moved in
//!
//! The old store kept a balance; eight threads withdraw 100 times each from 10,000,
//! and a withdrawal that would overdraw is refused. With a plain `append` after a
//! separate read, two threads could both see enough money and both withdraw; with
//! `append_with` the check and the event are one step, as they were under the lock.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use snapwal::{Options, State, Store, SyncPolicy};
//!
//! #[derive(Clone, Default, Serialize, Deserialize)]
//! struct Wallet {
//!     balance: u64,
//!     withdrawals: u64,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Op {
//!     Deposit(u64),
//!     Withdraw(u64),
//! }
//!
//! impl State for Wallet {
//!     type Event = Op;
//!     // What the old code did under the lock, after logging the change.
//!     fn apply(&mut self, op: &Op) {
//!         match op {
//!             Op::Deposit(n) => self.balance += n,
//!             Op::Withdraw(n) => {
//!                 self.balance -= n;
//!                 self.withdrawals += 1;
//!             }
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let opts = Options::default().sync(SyncPolicy::Always);
//! // Once: the balance the old store had on disk becomes the starting state.
//! let loaded = Wallet { balance: 10_000, withdrawals: 0 };
//! let store = Store::create_with(dir.path(), loaded, opts.clone())?;
//!
//! std::thread::scope(|s| {
//!     for _ in 0..8 {
//!         s.spawn(|| {
//!             for _ in 0..100 {
//!                 // Check and withdraw in one step; a refusal appends nothing.
//!                 let _ = store.append_with(|w: &Wallet| {
//!                     if w.balance >= 100 { Ok(Some(Op::Withdraw(100))) } else { Err("insufficient funds") }
//!                 });
//!             }
//!         });
//!     }
//! });
//! // 800 attempts, exactly 100 allowed: never overdrawn.
//! let w = store.current_durable();
//! assert_eq!((w.balance, w.withdrawals), (0, 100));
//! store.close()?;
//!
//! // From now on the service opens the store; the import is never repeated.
//! let store = Store::<Wallet>::open(dir.path(), opts)?;
//! assert_eq!(store.current().withdrawals, 100);
//! store.close()?;
//! # Ok(())
//! # }
//! ```
