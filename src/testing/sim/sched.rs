//! A deterministic scheduler for concurrent workloads on a [`SimFs`](super::SimFs).
//!
//! Threads run for real, but every file-system call of a `SimFs` that has a
//! [`Scheduler`] first waits at a *gate*, and the scheduler admits exactly one
//! thread at a time, chosen with a seeded generator among the threads waiting at a
//! gate. **Only file-system calls are interleaving points**: between two calls a
//! thread runs freely.
//!
//! The scheduler decides who goes next only when no call is in progress and every
//! thread it knows (the actors that [`Scheduler::actor`] registered, and every other
//! thread once it has made a call) is either waiting at a gate, blocked (asleep in
//! the kernel: on a mutex, a condition variable, a sleep — read from
//! `/proc/self/task/<tid>/stat` on Linux, seen asleep twice 200 µs apart with
//! nothing changed in between) or gone. So the choices, and with them the whole
//! interleaving, follow from the seed. Two things can still depend on real time,
//! and [`Scheduler::grace_decisions`] counts the decisions they touched:
//!
//! - a thread that is neither at a gate nor asleep for longer than the *grace*
//!   (50 ms; a thread spinning, or a system without `/proc`) is passed over: the
//!   scheduler decides without it, so nothing can hang on a thread it cannot see;
//! - background threads that sleep for a real duration (the `Interval` sync thread,
//!   a periodic checkpointer) wake when the clock says so.
//!
//! A workload with neither reproduces its interleaving exactly from the seed
//! ([`Scheduler::trace`] is the sequence of admitted threads). Once the file system
//! has crashed, its calls no longer wait at the gate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::fault::Rng;
use crate::util::lock;

/// How long a running thread may go without reaching a gate or sleeping before the
/// scheduler decides without it.
const GRACE: Duration = Duration::from_millis(50);
/// How long a thread must be seen asleep (twice, nothing changed) to count as blocked.
const SETTLE: Duration = Duration::from_micros(200);
/// How often waiting threads look again.
const POLL: Duration = Duration::from_micros(100);

/// Keys of threads that were not registered as actors start here.
const UNREGISTERED: u64 = 1 << 32;

static NEXT_SCHED: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// `(scheduler id, key)` of this thread, per scheduler it has met.
    static KEYS: std::cell::RefCell<Vec<(u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Debug)]
struct Known {
    tid: Option<u32>,
}

#[derive(Debug)]
struct State {
    rng: Rng,
    /// The thread admitted to a call that has not returned yet.
    in_call: Option<u64>,
    waiting: BTreeSet<u64>,
    known: BTreeMap<u64, Known>,
    next_unregistered: u64,
    /// Bumped on every arrival, departure, admission and end of a call.
    version: u64,
    changed: Instant,
    /// Candidate "everyone else is blocked" observation: the version it was made at.
    settle: Option<(u64, Instant)>,
    trace: Vec<u64>,
    grace_decisions: u64,
}

/// The deterministic scheduler. See the [module docs](crate::testing::sim).
#[derive(Debug)]
pub struct Scheduler {
    id: u64,
    state: Mutex<State>,
    cv: Condvar,
}

/// Registration of an actor thread; dropping it tells the scheduler the thread is
/// gone (it no longer waits for it).
#[derive(Debug)]
pub struct ActorGuard {
    sched: Arc<Scheduler>,
    key: u64,
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        let mut st = lock(&self.sched.state);
        st.known.remove(&self.key);
        st.waiting.remove(&self.key);
        bump(&mut st);
        drop(st);
        KEYS.with(|k| k.borrow_mut().retain(|(s, _)| *s != self.sched.id));
        self.sched.cv.notify_all();
    }
}

/// The end of an admitted call; dropping it lets the scheduler choose again.
#[derive(Debug)]
pub(super) struct CallGuard<'a>(Option<&'a Scheduler>);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            let mut st = lock(&s.state);
            st.in_call = None;
            bump(&mut st);
            drop(st);
            s.cv.notify_all();
        }
    }
}

impl CallGuard<'_> {
    pub(super) fn none() -> Self {
        CallGuard(None)
    }
}

fn bump(st: &mut State) {
    st.version += 1;
    st.changed = Instant::now();
    st.settle = None;
}

/// This thread's id in the kernel, if the system says (Linux).
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Is thread `tid` of this process asleep (or gone)? `None` when it cannot tell.
fn asleep(tid: u32) -> Option<bool> {
    let stat = match std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(true),
        Err(_) => return None,
    };
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let state = after.trim_start().chars().next()?;
    Some(matches!(state, 'S' | 'D' | 'Z' | 'X' | 'T' | 't' | 'I'))
}

impl Scheduler {
    /// A scheduler whose choices come from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Scheduler {
            id: NEXT_SCHED.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(State {
                rng: Rng::new(seed ^ 0x5C4E_D01E),
                in_call: None,
                waiting: BTreeSet::new(),
                known: BTreeMap::new(),
                next_unregistered: UNREGISTERED,
                version: 0,
                changed: Instant::now(),
                settle: None,
                trace: Vec::new(),
                grace_decisions: 0,
            }),
            cv: Condvar::new(),
        })
    }

    /// Registers the calling thread as actor `key` (below 2^32; each key once at a
    /// time): the scheduler waits for it to reach a gate or block before each choice,
    /// until the guard is dropped.
    pub fn actor(self: &Arc<Self>, key: u64) -> ActorGuard {
        let key = key.min(UNREGISTERED - 1);
        KEYS.with(|k| {
            let mut k = k.borrow_mut();
            k.retain(|(s, _)| *s != self.id);
            k.push((self.id, key));
        });
        let mut st = lock(&self.state);
        st.known.insert(key, Known { tid: current_tid() });
        bump(&mut st);
        ActorGuard {
            sched: Arc::clone(self),
            key,
        }
    }

    /// Announces actor `key` before its thread starts (call it on the spawning thread):
    /// until the thread registers with [`Scheduler::actor`] (or the grace passes), the
    /// scheduler waits for it as for a running thread, so that the first actor started
    /// does not run alone.
    pub fn expect(&self, key: u64) {
        let key = key.min(UNREGISTERED - 1);
        let mut st = lock(&self.state);
        st.known.entry(key).or_insert(Known { tid: None });
        bump(&mut st);
    }

    /// The keys of the threads admitted, in order (actors by their key, other threads
    /// from 2^32 in the order they first made a call).
    pub fn trace(&self) -> Vec<u64> {
        lock(&self.state).trace.clone()
    }

    /// Choices made while some thread was passed over after the grace period (a
    /// measure of how far the run depended on real time; 0 means none).
    pub fn grace_decisions(&self) -> u64 {
        lock(&self.state).grace_decisions
    }

    fn key(&self, st: &mut State) -> u64 {
        if let Some(k) = KEYS.with(|k| {
            k.borrow()
                .iter()
                .find(|(s, _)| *s == self.id)
                .map(|(_, k)| *k)
        }) {
            return k;
        }
        let key = st.next_unregistered;
        st.next_unregistered += 1;
        KEYS.with(|k| k.borrow_mut().push((self.id, key)));
        st.known.insert(key, Known { tid: current_tid() });
        key
    }

    /// Waits at the gate until this thread is admitted; the guard ends the call.
    pub(super) fn gate(&self) -> CallGuard<'_> {
        let mut st = lock(&self.state);
        let key = self.key(&mut st);
        st.waiting.insert(key);
        bump(&mut st);
        self.cv.notify_all();
        loop {
            if st.in_call == Some(key) {
                st.waiting.remove(&key);
                return CallGuard(Some(self));
            }
            if st.in_call.is_none() && !st.waiting.is_empty() {
                st = self.try_decide(st);
                if st.in_call.is_some() {
                    self.cv.notify_all();
                    continue;
                }
            }
            st = self
                .cv
                .wait_timeout(st, POLL)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Admits a waiting thread if every known thread is waiting, blocked or gone
    /// (or the grace has passed). Reads thread states without the lock held.
    fn try_decide<'a>(
        &'a self,
        mut st: std::sync::MutexGuard<'a, State>,
    ) -> std::sync::MutexGuard<'a, State> {
        let running: Vec<(u64, Option<u32>)> = st
            .known
            .iter()
            .filter(|(k, _)| !st.waiting.contains(*k))
            .map(|(k, t)| (*k, t.tid))
            .collect();
        let mut all_settled = true;
        if !running.is_empty() {
            let version = st.version;
            drop(st);
            let mut gone = Vec::new();
            for (k, tid) in &running {
                match tid.and_then(asleep) {
                    Some(true) => {
                        if tid.is_some_and(|t| {
                            !std::path::Path::new(&format!("/proc/self/task/{t}")).exists()
                        }) {
                            gone.push(*k);
                        }
                    }
                    _ => all_settled = false,
                }
            }
            st = lock(&self.state);
            for k in gone {
                st.known.remove(&k);
            }
            if st.version != version || st.in_call.is_some() {
                return st;
            }
            if all_settled {
                // Asleep: only once seen so twice, `SETTLE` apart, with nothing changed.
                match st.settle {
                    Some((v, at)) if v == version && at.elapsed() >= SETTLE => {}
                    Some((v, _)) if v == version => return st,
                    _ => {
                        st.settle = Some((version, Instant::now()));
                        return st;
                    }
                }
            } else if st.changed.elapsed() < GRACE {
                return st;
            } else {
                st.grace_decisions += 1;
            }
        }
        let n = st.waiting.len() as u64;
        let i = st.rng.below(n) as usize;
        if let Some(&key) = st.waiting.iter().nth(i) {
            st.in_call = Some(key);
            st.trace.push(key);
            bump(&mut st);
        }
        st
    }
}
