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

use super::concurrent::{entry_padded, Concurrent, InjectedPanic, Ledger};
use super::concurrent::{CHECKPOINT_ACTOR, POSITION_ACTOR};
use super::{stopped, STORE_DIR};
use crate::testing::sim::{Scheduler, SimFs};
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
}

impl Outcome {
    fn ack(&self, seq: u64) {
        self.acked.fetch_max(seq, Ordering::SeqCst);
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
    if let Some(d) = w.periodic {
        if out
            .op(fs, "start_checkpointer", || {
                store.start_checkpointer(CheckpointerConfig::every(d))
            })
            .is_err()
        {
            return;
        }
    }
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
    }
}
