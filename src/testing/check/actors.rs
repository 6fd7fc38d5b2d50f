//! The actors of a [`Concurrent`] workload, each on its own thread: appenders, a
//! checkpointing thread, a position updater, then `close` on the first thread.
//!
//! Every store operation runs under `catch_unwind`: a panic injected into a
//! file-system call ([`ConcurrentChecker::panics`](super::ConcurrentChecker::panics))
//! reaches the caller of the operation that made the call, and that actor stops as it
//! would on an error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::concurrent::InjectedPanic;
use super::ledger::{entry_padded, Concurrent, Ledger};
use super::ledger::{CHECKPOINT_ACTOR, NEIGHBOUR_ACTOR, NEIGHBOUR_DIR, POSITION_ACTOR};
use super::{stopped, STORE_DIR};
use crate::testing::sim::{Call, Scheduler, SimFs};
use crate::util::{lock_raw as lock, panic_message};
use crate::{
    CheckpointOutcome, CheckpointerConfig, CloseOptions, Error, Position, Store, SyncPolicy,
};

/// What the actors of one run share, and what the checker reads afterwards.
#[derive(Default)]
pub(super) struct Outcome {
    /// The highest seq the store promised durable.
    pub(super) acked: AtomicU64,
    /// Contract violations seen while running.
    pub(super) problems: Mutex<Vec<String>>,
    /// The events in seq order as the store held them before `close`.
    pub(super) truth: Mutex<Vec<u64>>,
    /// An injected panic reached an operation (later errors are its consequences).
    pub(super) panicked: AtomicBool,
    /// The neighbour store's highest acknowledged seq.
    pub(super) neighbour_acked: AtomicU64,
    /// Directories of stores whose `close` has returned: nothing may touch them (I8).
    closed: Mutex<Vec<&'static str>>,
}

impl Outcome {
    fn ack(&self, seq: u64) {
        self.acked.fetch_max(seq, Ordering::SeqCst);
    }

    /// Notes a file-system call under the directory of a store whose `close` has
    /// returned (the file system's hook calls it for every call).
    pub(super) fn touched_after_close(&self, call: &Call<'_>) {
        let closed = lock(&self.closed);
        if let Some(dir) = closed.iter().find(|d| call.path.starts_with(d)) {
            let what = format!(
                "{:?} of {} after the close of {dir} returned (I8)",
                call.op,
                call.path.display()
            );
            drop(closed);
            self.note(Err(what));
        }
    }

    fn closed(&self, dir: &'static str) {
        lock(&self.closed).push(dir);
    }

    fn note(&self, r: Result<(), String>) {
        if let Err(e) = r {
            lock(&self.problems).push(e);
        }
    }

    /// Runs one store operation; `Err(())` when the actor must stop (an error, which
    /// is noted unless a crash or an injected panic explains it, or a panic).
    fn op<T>(&self, fs: &SimFs, what: &str, f: impl FnOnce() -> crate::Result<T>) -> Result<T, ()> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.stop(fs, what, e);
                Err(())
            }
            Err(panic) => {
                // The injected panic is expected; any other is a bug.
                if !panic.is::<InjectedPanic>() {
                    self.note(Err(format!(
                        "{what} panicked: {}",
                        panic_message(panic.as_ref())
                    )));
                }
                Err(())
            }
        }
    }

    fn stop(&self, fs: &SimFs, what: &str, e: Error) {
        if !self.panicked.load(Ordering::SeqCst) {
            self.note(stopped(fs, what, e));
        }
    }
}

/// Runs the workload's actors against a store on `fs`.
pub(super) fn drive(w: &Concurrent, fs: &Arc<SimFs>, sched: &Arc<Scheduler>, out: &Outcome) {
    let main = sched.actor(0);
    let Ok(store) = out.op(fs, "open", || {
        Store::<Ledger>::open(STORE_DIR, w.options(Arc::clone(fs), w.sync))
    }) else {
        return;
    };
    // With a neighbour, both stores checkpoint on one shared scheduler.
    let shared = if w.neighbour_appends > 0 {
        let Ok(shared) = out.op(fs, "Scheduler::new", || crate::Scheduler::new(1)) else {
            return;
        };
        Some(shared)
    } else {
        None
    };
    let every = |d: Option<Duration>| CheckpointerConfig::every(d.unwrap_or(NEIGHBOUR_EVERY));
    let started = match (&shared, w.periodic) {
        (Some(sh), d) => out.op(fs, "start_checkpointer_on", || {
            store.start_checkpointer_on(sh, every(d))
        }),
        (None, Some(d)) => out.op(fs, "start_checkpointer", || {
            store.start_checkpointer(CheckpointerConfig::every(d))
        }),
        (None, None) => Ok(true),
    };
    if started.is_err() {
        return;
    }
    let neighbour = match &shared {
        None => None,
        Some(sh) => {
            let Ok(n) = out.op(fs, "open the neighbour", || {
                Store::<Ledger>::open(NEIGHBOUR_DIR, w.options(Arc::clone(fs), w.sync))
            }) else {
                return;
            };
            if out
                .op(fs, "start_checkpointer_on", || {
                    n.start_checkpointer_on(sh, every(None))
                })
                .is_err()
            {
                return;
            }
            sched.expect(u64::from(NEIGHBOUR_ACTOR));
            Some(n)
        }
    };
    for a in 0..w.appenders {
        sched.expect(1 + u64::from(a));
    }
    if w.checkpoints > 0 {
        sched.expect(u64::from(CHECKPOINT_ACTOR));
    }
    if w.position_updates > 0 {
        sched.expect(u64::from(POSITION_ACTOR));
    }
    drop(main);
    let always = w.sync == SyncPolicy::Always;
    let owned = store;
    let store = &owned;
    std::thread::scope(|s| {
        for a in 0..w.appenders {
            s.spawn(move || {
                let _g = sched.actor(1 + u64::from(a));
                for n in 0..w.appends {
                    let Ok(seq) = out.op(fs, "append", || store.append(&entry_padded(a, n, w.pad)))
                    else {
                        return;
                    };
                    if always {
                        out.ack(seq);
                    }
                    out.ack(store.durable_seq());
                    if w.sync_every > 0 && n % w.sync_every == w.sync_every - 1 {
                        let Ok(seq) = out.op(fs, "sync", || store.sync()) else {
                            return;
                        };
                        out.ack(seq);
                    }
                }
            });
        }
        if w.checkpoints > 0 {
            s.spawn(move || {
                let _g = sched.actor(u64::from(CHECKPOINT_ACTOR));
                for _ in 0..w.checkpoints {
                    let Ok(rep) = out.op(fs, "checkpoint", || store.checkpoint()) else {
                        return;
                    };
                    if rep.outcome != CheckpointOutcome::Busy {
                        out.ack(rep.seq);
                    }
                    out.ack(store.durable_seq());
                }
            });
        }
        if let Some(n) = neighbour {
            s.spawn(move || {
                let _g = sched.actor(u64::from(NEIGHBOUR_ACTOR));
                neighbour_actor(w, fs, out, n);
            });
        }
        if w.position_updates > 0 {
            s.spawn(move || {
                let _g = sched.actor(u64::from(POSITION_ACTOR));
                let cell = store.position("src");
                for n in 0..w.position_updates {
                    let Ok(seq) = out.op(fs, "append", || {
                        store.append(&entry_padded(POSITION_ACTOR, n, w.pad))
                    }) else {
                        return;
                    };
                    if always {
                        out.ack(seq);
                    }
                    cell.set(Position {
                        offset: seq,
                        inode: 1,
                        timestamp: i64::from(n),
                    });
                }
            });
        }
    });
    let _main = sched.actor(0);
    *lock(&out.truth) = store.current().state().events.clone();
    let closing = CloseOptions::default();
    let closing = if w.final_checkpoint {
        closing.final_checkpoint(Some(Duration::from_secs(600)))
    } else {
        closing
    };
    if let Ok(rep) = out.op(fs, "close", move || owned.close_with(closing)) {
        out.ack(rep.durable_seq);
        out.closed(STORE_DIR);
    }
    if let Some(sh) = shared {
        sh.shutdown(Duration::from_secs(60));
    }
}

/// How often the stores on a shared scheduler checkpoint, unless
/// [`Concurrent::periodic`] says.
const NEIGHBOUR_EVERY: Duration = Duration::from_millis(2);

/// The neighbour's actor: appends, syncing after every fourth, then closes it while
/// the shared scheduler may be checkpointing either store.
fn neighbour_actor(w: &Concurrent, fs: &SimFs, out: &Outcome, n: Store<Ledger>) {
    let ack = |seq: u64| {
        out.neighbour_acked.fetch_max(seq, Ordering::SeqCst);
    };
    for i in 0..w.neighbour_appends {
        let Ok(seq) = out.op(fs, "append to the neighbour", || {
            n.append(&entry_padded(NEIGHBOUR_ACTOR, i, w.pad))
        }) else {
            return;
        };
        if w.sync == SyncPolicy::Always {
            ack(seq);
        }
        if i % 4 == 3 {
            let Ok(seq) = out.op(fs, "sync the neighbour", || n.sync()) else {
                return;
            };
            ack(seq);
        }
    }
    if let Ok(rep) = out.op(fs, "close the neighbour", move || n.close()) {
        ack(rep.durable_seq);
        out.closed(NEIGHBOUR_DIR);
    }
}
