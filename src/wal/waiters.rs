//! Async waiters: tasks wait for the log without parking a thread.
//!
//! A task that needs a record durable (or written, or room in the staging bound)
//! registers a [`Slot`] holding its [`Waker`] under the [`Target`] it waits for, and
//! returns `Pending`. Whoever moves the log forward wakes the slots it satisfied:
//!
//! - a group commit, after it advanced the durable seq (`sync_once`), wakes every
//!   `Durable(seq)` slot at or below it: the async syncer's, a blocking appender's under
//!   [`SyncPolicy::Always`](crate::SyncPolicy::Always), the interval sync's or `close`'s;
//! - a write to the OS (`Wal::write`) wakes `Written` and `Room` slots it satisfied;
//! - a failed write or sync (`Wal::fail`) completes every slot with the error.
//!
//! Someone must drive the `fdatasync` when only tasks wait: the *syncer*, one thread
//! per log ([`Wal::run_syncer`], started by the store on its first async call). It
//! sleeps until a slot asks for more than the log has done, then runs one group
//! commit for everything written so far (or, for `Written`/`Room` slots, one write
//! of everything staged), so all the tasks that registered while the previous sync
//! ran share the next one.
//!
//! A slot outlives its future: a future dropped after it registered leaves the slot
//! in the list until the log satisfies it (its waker is woken and nobody listens).
//! So the log never depends on a future being polled again.
//!
//! # No lost wake-up
//!
//! A registering task bumps the pending count, then (under the list mutex) checks its
//! target; a notifier advances `durable`/`written`/`unwritten`, then reads the pending
//! count. A `SeqCst` fence on each side, between its store and its load, makes at least
//! one of them see the other's store: either the task sees its target met and does not
//! wait, or the notifier sees the count and takes the list mutex, where the slot is.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::*;

/// What an async waiter waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The record `seq` durable.
    Durable(Seq),
    /// The record `seq` handed to the OS.
    Written(Seq),
    /// The bytes staged and not yet written within [`Wal::max_staged_bytes`].
    Room,
}

/// The async waiters of a [`Wal`] and the state of its syncer.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    list: Mutex<List>,
    /// Slots in the list: lets the blocking paths skip the mutex when no task waits.
    pending: AtomicUsize,
    /// `Written` and `Room` slots in the list (checked after every write).
    pending_writes: AtomicUsize,
    /// Wakes the syncer.
    kick: Condvar,
    /// The syncer thread was claimed (started, or being started).
    started: AtomicBool,
}

#[derive(Debug, Default)]
struct List {
    slots: Vec<(Target, Arc<Slot>)>,
    /// The highest seq a `Durable` slot asked for.
    sync_to: Seq,
    /// A slot (or an async append that left its record queued) needs the staged bytes
    /// written.
    write: bool,
    /// The syncer is waiting on `kick`.
    idle: bool,
    /// Tasks the last group commit woke, and how many of them have registered again
    /// since (see `Wal::run_syncer`).
    woken: usize,
    rejoined: usize,
    /// The store is closing: no new slot; the syncer returns.
    stopped: bool,
}

/// One waiting task: its waker, then its outcome.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<SlotState>);

#[derive(Debug, Default)]
struct SlotState {
    waker: Option<Waker>,
    outcome: Option<Result<()>>,
}

impl Slot {
    fn complete(&self, outcome: Result<()>) {
        let waker = {
            let mut st = lock(&self.0);
            if st.outcome.is_some() {
                return;
            }
            st.outcome = Some(outcome);
            st.waker.take()
        };
        // Woken outside the mutex: a waker may run arbitrary code.
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll(&self, cx: &Context<'_>) -> Poll<Result<()>> {
        let mut st = lock(&self.0);
        if let Some(outcome) = st.outcome.take() {
            return Poll::Ready(outcome);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A future that completes when the log meets a [`Target`] (or fails, or closes).
/// Registers its slot on the first poll. Dropping it is always safe: see the module
/// docs.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Wait<'a> {
    wal: &'a Wal,
    target: Target,
    slot: Option<Arc<Slot>>,
}

impl Future for Wait<'_> {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(slot) = &self.slot {
            return slot.poll(cx);
        }
        match self.wal.register(self.target, cx.waker()) {
            Ok(Some(slot)) => {
                self.slot = Some(slot);
                Poll::Pending
            }
            Ok(None) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Wal {
    /// The seq of the last record staged.
    pub(crate) fn last_staged(&self) -> Seq {
        lock(&self.staged).next_seq.saturating_sub(1)
    }

    /// Writes staged records to the OS without waiting on the disk (for an async task
    /// on a runtime worker): never rotates, never waits for a rotation, never grows
    /// the reservation (see `Mode::NoWait`). Returns whether record `seq` is written;
    /// when it is not, it stays staged for the next write or sync.
    pub(crate) fn write_nowait(&self, seq: Seq) -> Result<bool> {
        if self.written.load(Ordering::Acquire) >= seq {
            return Ok(true);
        }
        self.check_writable()?;
        self.write(Mode::NoWait, None)?;
        Ok(self.written.load(Ordering::Acquire) >= seq)
    }

    /// A future that completes once the log meets `target`, with the log's error if a
    /// write or sync fails first, or [`Error::Closed`] if the store closes first.
    pub(crate) fn wait(&self, target: Target) -> Wait<'_> {
        Wait {
            wal: self,
            target,
            slot: None,
        }
    }

    fn met(&self, target: Target) -> bool {
        match target {
            Target::Durable(seq) => self.durable.load(Ordering::SeqCst) >= seq,
            Target::Written(seq) => self.written.load(Ordering::SeqCst) >= seq,
            Target::Room => self.unwritten.load(Ordering::SeqCst) <= self.max_staged,
        }
    }

    /// Registers a slot for `target`; `None` when it is met already.
    fn register(&self, target: Target, waker: &Waker) -> Result<Option<Arc<Slot>>> {
        let w = &self.waiters;
        let mut l = lock(&w.list);
        w.pending.fetch_add(1, Ordering::SeqCst);
        let writes = !matches!(target, Target::Durable(_));
        if writes {
            w.pending_writes.fetch_add(1, Ordering::SeqCst);
        }
        // Pairs with the fence in `wake_waiters` (see "No lost wake-up").
        fence(Ordering::SeqCst);
        let refused = if self.met(target) {
            Ok(None)
        } else if let Err(e) = self.check_writable() {
            Err(e)
        } else if l.stopped {
            Err(Error::Closed)
        } else {
            Ok(Some(()))
        };
        if !matches!(refused, Ok(Some(()))) {
            w.pending.fetch_sub(1, Ordering::SeqCst);
            if writes {
                w.pending_writes.fetch_sub(1, Ordering::SeqCst);
            }
            return refused.map(|_| None);
        }
        let slot = Arc::new(Slot(Mutex::new(SlotState {
            waker: Some(waker.clone()),
            outcome: None,
        })));
        match target {
            Target::Durable(seq) => {
                l.sync_to = l.sync_to.max(seq);
                l.rejoined += 1;
            }
            Target::Written(_) | Target::Room => l.write = true,
        }
        l.slots.push((target, Arc::clone(&slot)));
        if l.idle {
            w.kick.notify_one();
        }
        Ok(Some(slot))
    }

    /// Asks the syncer to write what is staged (an async append left its record
    /// queued: it must not wait in memory for the next append).
    pub(crate) fn request_write(&self) {
        let mut l = lock(&self.waiters.list);
        l.write = true;
        if l.idle {
            self.waiters.kick.notify_one();
        }
    }

    /// Wakes every slot the log now satisfies (all of them, with the error, once the
    /// log failed). `writes_only`: called after a write, which can satisfy only
    /// `Written` and `Room` slots (or fail the log).
    pub(super) fn wake_waiters(&self, writes_only: bool) {
        let w = &self.waiters;
        // Pairs with the fence in `register`.
        fence(Ordering::SeqCst);
        let count = if writes_only && self.failed.get().is_none() {
            &w.pending_writes
        } else {
            &w.pending
        };
        if count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let done = self.take_slots(|wal, target| {
            if wal.met(target) {
                Some(Ok(()))
            } else {
                wal.check_writable().err().map(Err)
            }
        });
        for (slot, outcome) in done {
            slot.complete(outcome);
        }
    }

    /// Removes the slots for which `decide` returns an outcome, keeping the counts
    /// and the syncer's targets in step; returns them with their outcomes.
    fn take_slots(
        &self,
        mut decide: impl FnMut(&Wal, Target) -> Option<Result<()>>,
    ) -> Vec<(Arc<Slot>, Result<()>)> {
        let w = &self.waiters;
        let mut l = lock(&w.list);
        let mut done = Vec::new();
        let (mut sync_to, mut write, mut woken) = (0, false, 0);
        l.slots
            .retain(|(target, slot)| match decide(self, *target) {
                Some(outcome) => {
                    if matches!(target, Target::Durable(_)) && outcome.is_ok() {
                        woken += 1;
                    }
                    done.push((Arc::clone(slot), outcome));
                    false
                }
                None => {
                    match *target {
                        Target::Durable(seq) => sync_to = sync_to.max(seq),
                        Target::Written(_) | Target::Room => write = true,
                    }
                    true
                }
            });
        let writes = l
            .slots
            .iter()
            .filter(|(t, _)| !matches!(t, Target::Durable(_)))
            .count();
        w.pending.store(l.slots.len(), Ordering::SeqCst);
        w.pending_writes.store(writes, Ordering::SeqCst);
        l.sync_to = sync_to;
        l.write |= write;
        if woken > 0 {
            l.woken = woken;
            l.rejoined = 0;
        }
        done
    }

    /// Completes every slot the log has not satisfied with a copy of `e` (a failed
    /// sync or write that left the log writable, such as
    /// [`Error::SegmentUnavailable`]).
    fn fail_waiters(&self, e: &Error) {
        let done = self.take_slots(|wal, target| {
            Some(if wal.met(target) {
                Ok(())
            } else {
                Err(duplicate(e))
            })
        });
        for (slot, outcome) in done {
            slot.complete(outcome);
        }
    }

    /// Claims the syncer: `true` for the one caller that must start it.
    pub(crate) fn claim_syncer(&self) -> bool {
        !self.waiters.started.load(Ordering::Acquire)
            && !self.waiters.started.swap(true, Ordering::AcqRel)
    }

    /// Gives the claim back (the thread could not be started).
    pub(crate) fn unclaim_syncer(&self) {
        self.waiters.started.store(false, Ordering::Release);
    }

    /// Stops the syncer (it returns after the sync it is running, if any) and
    /// refuses new slots. Slots already registered stay: the final sync of `close`
    /// wakes those it covers, and [`Wal::close_waiters`] the rest.
    pub(crate) fn stop_syncer(&self) {
        let mut l = lock(&self.waiters.list);
        l.stopped = true;
        self.waiters.kick.notify_all();
    }

    /// Completes every slot: `Ok` if the log met its target, else the log's error or
    /// [`Error::Closed`]. The store calls it when it is dropped or closed, after its
    /// final sync, so that no task waits for ever.
    pub(crate) fn close_waiters(&self) {
        self.stop_syncer();
        let done = self.take_slots(|wal, target| {
            Some(if wal.met(target) {
                Ok(())
            } else {
                wal.check_writable().and(Err(Error::Closed))
            })
        });
        for (slot, outcome) in done {
            slot.complete(outcome);
        }
    }

    /// The syncer's loop: sleeps until a slot asks for more than the log has done,
    /// then runs one group commit covering everything written so far (or one write of
    /// everything staged), which wakes the slots it satisfied. Returns once
    /// [`Wal::stop_syncer`] ran. A failure that leaves the log writable (a segment
    /// that could not be created yet) completes the waiting slots with the error and
    /// is retried, after a pause, for slots registered later. Between commits it
    /// gathers the tasks it woke ([`GATHER_MAX`]) and spins before sleeping
    /// ([`SPIN_MAX`]).
    pub(crate) fn run_syncer(&self) {
        let w = &self.waiters;
        let mut pause = Duration::ZERO;
        let mut gather_until: Option<Instant> = None;
        let mut spin_until: Option<Instant> = None;
        let mut l = lock(&w.list);
        loop {
            if l.stopped {
                return;
            }
            if !pause.is_zero() {
                l.idle = true;
                let (guard, _) = w
                    .kick
                    .wait_timeout(l, pause)
                    .unwrap_or_else(|e| e.into_inner());
                l = guard;
                l.idle = false;
                pause = Duration::ZERO;
                continue;
            }
            let sync_to = l.sync_to;
            let sync = sync_to > self.durable_seq();
            let waiting = l.slots.len();
            if let Some(until) =
                gather_until.filter(|_| sync && l.rejoined < l.woken && waiting < l.woken)
            {
                // Gather: the tasks the last commit woke are likely appending again,
                // and fewer tasks wait now than it woke; give them a moment (see
                // `GATHER_MAX`) to join this commit rather than the next one.
                gather_until = None;
                l = self.spin(l, until, |l| l.stopped || l.rejoined >= l.woken);
                continue;
            }
            gather_until = None;
            if !sync && !l.write {
                if let Some(until) = spin_until.take() {
                    // Just after a commit a task usually appends again within
                    // microseconds: spin briefly rather than pay a sleep and a wake-up.
                    l = self.spin(l, until, |l| {
                        l.stopped || l.write || l.sync_to > self.durable_seq()
                    });
                    continue;
                }
                l.idle = true;
                l = w.kick.wait(l).unwrap_or_else(|e| e.into_inner());
                l.idle = false;
                continue;
            }
            l.write = false;
            drop(l);
            let done = if sync {
                // The group commit wakes the `Durable` slots it covers (`sync_once`).
                let start = Instant::now();
                let done = self.sync_through(sync_to).map(drop);
                let took = start.elapsed();
                let now = Instant::now();
                gather_until = Some(now + (took / 4).min(GATHER_MAX));
                spin_until = Some(now + took.min(SPIN_MAX));
                done
            } else {
                self.write(Mode::Write, None).map(drop)
            };
            match done {
                Ok(()) => self.wake_waiters(false),
                Err(e) => {
                    // A failed log has completed every slot already (`fail`); a
                    // transient failure is handed to the slots waiting now.
                    tracing::warn!(error = %e, dir = %self.dir.display(),
                        "async sync failed; waiting tasks get the error");
                    self.fail_waiters(&e);
                    pause = Duration::from_millis(10);
                }
            }
            l = lock(&w.list);
        }
    }
}

/// The longest the syncer waits for the tasks it woke to join the next commit (and
/// at most a quarter of the last commit's time), when fewer tasks wait than it woke:
/// a moment that lets a few tasks share each commit instead of splitting into uneven
/// groups that take turns.
const GATHER_MAX: Duration = Duration::from_micros(250);

/// The longest the syncer spins after a commit for a task to append again (and at
/// most the last commit's time), instead of sleeping on its condvar.
const SPIN_MAX: Duration = Duration::from_micros(300);

impl Wal {
    /// Releases the list and yields the CPU until `done` holds for it or `until`;
    /// returns the list locked again.
    fn spin<'a>(
        &'a self,
        mut l: MutexGuard<'a, List>,
        until: Instant,
        done: impl Fn(&List) -> bool,
    ) -> MutexGuard<'a, List> {
        while !done(&l) && Instant::now() < until {
            drop(l);
            std::thread::yield_now();
            l = lock(&self.waiters.list);
        }
        l
    }
}

/// A copy of `e` for each waiting task (`Error` is not `Clone`): a read-only log
/// shares its cause; a transient segment failure keeps its OS error code.
fn duplicate(e: &Error) -> Error {
    match e {
        Error::ReadOnly { cause } => Error::ReadOnly {
            cause: Arc::clone(cause),
        },
        Error::Closed => Error::Closed,
        Error::SegmentUnavailable { path, source } => Error::SegmentUnavailable {
            path: path.clone(),
            source: copy_io(source),
        },
        Error::Io { op, path, source } => Error::Io {
            op,
            path: path.clone(),
            source: copy_io(source),
        },
        other => Error::Io {
            op: "sync",
            path: PathBuf::new(),
            source: io::Error::other(other.to_string()),
        },
    }
}

fn copy_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
