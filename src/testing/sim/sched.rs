//! The deterministic scheduler ([`Scheduler`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::fault::Rng;
use crate::util::lock_raw as lock;

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
    /// The scheduler this thread met last (its scheduling points wait there).
    static CURRENT: std::cell::RefCell<Option<Weak<Scheduler>>> = const { std::cell::RefCell::new(None) };
}

/// The scheduler this thread is under, if it is still on.
fn current() -> Option<Arc<Scheduler>> {
    CURRENT
        .with(|c| c.borrow().as_ref().and_then(Weak::upgrade))
        .filter(|s| !s.off.load(Ordering::Acquire))
}

/// A scheduling point (see [`Scheduler`'s docs](Scheduler#interleaving-points-besides-file-system-calls)):
/// waits for this thread's turn if it has met a scheduler that is still on.
pub(crate) fn point() {
    if let Some(s) = current() {
        drop(s.gate(false));
    }
}

/// Records a marked moment of this thread's run (see [`Scheduler::marks`]), if it
/// is under a scheduler that is still on.
pub(crate) fn mark(label: &'static str, path: &std::path::Path) {
    if let Some(s) = current() {
        let mut st = lock(&s.state);
        let turn = st.admissions;
        st.marks.push(Mark {
            label,
            path: path.to_path_buf(),
            turn,
        });
    }
}

/// A moment the library marked (with the `testing` feature) on a scheduled thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// What happened: `"cancel"`, when `close` has cancelled the store's checkpoint
    /// (a checkpoint that reaches its next cancellation check after it installs
    /// nothing); `"final"`, when `close` starts its final checkpoint (after which the
    /// store checkpoints again).
    pub label: &'static str,
    /// The store's directory.
    pub path: std::path::PathBuf,
    /// The turns given before it ([`Scheduler::turns`] at that moment).
    pub turn: u64,
}

/// Is this thread under a scheduler that is still on? Its contended locks and
/// condition-variable waits then go through [`blocked`].
pub(crate) fn scheduled() -> bool {
    current().is_some()
}

/// This thread cannot go on until another thread acts (a lock it wants is held, a
/// condition it waits for does not hold): it waits for its turn, which comes only
/// after another thread has had one (unless no other thread can have one).
pub(crate) fn blocked() {
    if let Some(s) = current() {
        drop(s.gate(true));
    }
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
    /// With priorities: each thread's, and the chance (one in this) that a choice
    /// lowers the chosen thread below every other.
    priorities: Option<(BTreeMap<u64, u64>, u64)>,
    /// The next priority a lowered thread gets (below every random one).
    next_low: u64,
    /// Admissions so far.
    admissions: u64,
    /// Threads waiting because they are blocked, with the admissions count when they
    /// blocked: not chosen again until another thread has been admitted.
    blocked: BTreeMap<u64, u64>,
    marks: Vec<Mark>,
}

/// A deterministic scheduler for concurrent workloads on a [`SimFs`](super::SimFs).
///
/// Threads run for real, but every file-system call of a `SimFs` that has a
/// [`Scheduler`] first waits at a *gate*, and the scheduler admits exactly one
/// thread at a time, chosen with a seeded generator among the threads waiting at a
/// gate. The interleaving points are file-system calls, the library's locks and
/// condition-variable waits, and a few marked points (below); between two of them a
/// thread runs alone.
///
/// The scheduler decides who goes next only when no call is in progress and every
/// thread it knows (the actors that [`Scheduler::actor`] registered, and every other
/// thread once it has made a call) is either waiting at a gate, blocked (asleep in
/// the kernel: a join, a sleep — read from `/proc/self/task/<tid>/stat` on Linux,
/// seen asleep twice 200 µs apart with nothing changed in between) or gone. So the
/// choices, and with them the whole interleaving, follow from the seed. Two things
/// can still depend on real time, and [`Scheduler::grace_decisions`] counts the
/// decisions they touched:
///
/// - a thread that is neither at a gate nor asleep for longer than the *grace*
///   (50 ms; a thread spinning, or a system without `/proc`) is passed over: the
///   scheduler decides without it, so nothing can hang on a thread it cannot see;
/// - background threads that sleep for a real duration (the `Interval` sync thread,
///   a periodic checkpointer) wake when the clock says so, and run unscheduled until
///   their first file-system call.
///
/// A workload with neither reproduces its interleaving exactly from the seed
/// ([`Scheduler::trace`] is the sequence of admitted threads), as long as no thread
/// outside the scheduler holds a process-wide lock a scheduled thread waits for (the
/// allocator's, stdio's: other tests running in the same process): such a thread
/// looks asleep, and the scheduler decides without it. Run checks that rely on exact
/// reruns in a process of their own. Once the file system has crashed, nothing waits
/// at a gate any more.
///
/// ## Interleaving points besides file-system calls
///
/// A race between two threads that make no file-system call in its window cannot be
/// scheduled at file-system calls alone: a checkpoint reads the source positions and
/// then loads the state, with no call in between, and a reader moves its position with
/// no call at all. So the library marks a few such windows with a *scheduling point*
/// (compiled only with the `testing` feature): a thread that has already met a
/// scheduler (as an actor, or at a file-system call) waits there for its turn as at a
/// call. The points: a position's `set`, and a checkpoint after it read the positions,
/// after it loaded the state, and before it writes what it loaded. Points are not
/// file-system calls: they are in [`Scheduler::trace`] but are no crash points.
///
/// The library's own locks and condition-variable waits are points too, for such a
/// thread: a free lock is taken at once; a contended one (its holder waits at a gate)
/// makes the thread wait for its turn, which comes only after another thread has had
/// one, and try again; a wait on a condition variable is a turn given away (the
/// caller re-checks its condition). So which thread gets a contended lock follows the
/// schedule rather than the kernel. Without this, a lock released by a thread leaving
/// a call woke a sleeper that then raced it to the next gate, and a rerun of the same
/// seed followed the same schedule for only 10 to 60 calls.
///
/// ## Two ways to choose
///
/// [`Scheduler::new`] chooses uniformly among the waiting threads, which interleaves
/// finely but rarely keeps one thread waiting through several calls of another.
/// [`Scheduler::with_priorities`] gives each thread a random priority and always
/// admits the highest one waiting, lowering the chosen thread below every other now
/// and then (probabilistic concurrency testing, after Burckhardt et al.'s PCT): one
/// thread runs ahead for long stretches while another is held at a point, which is
/// how ordering bugs of a few steps' depth show up.
#[derive(Debug)]
pub struct Scheduler {
    id: u64,
    /// Switched off (the file system crashed): scheduling points no longer wait.
    off: AtomicBool,
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
        st.blocked.remove(&self.key);
        bump(&mut st);
        drop(st);
        KEYS.with(|k| k.borrow_mut().retain(|(s, _)| *s != self.sched.id));
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref()
                .is_some_and(|w| w.as_ptr() == Arc::as_ptr(&self.sched))
            {
                *c = None;
            }
        });
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
    /// A scheduler whose choices come from `seed`, uniformly among the waiting threads.
    pub fn new(seed: u64) -> Arc<Self> {
        Self::build(seed, None)
    }

    /// A scheduler that admits the waiting thread of highest priority (random per
    /// thread, from `seed`) and, at one choice in `change_one_in` on average, lowers
    /// the chosen thread below every other and chooses again. See the
    /// [type docs](Scheduler#two-ways-to-choose).
    pub fn with_priorities(seed: u64, change_one_in: u64) -> Arc<Self> {
        Self::build(seed, Some(change_one_in.max(1)))
    }

    fn build(seed: u64, change_one_in: Option<u64>) -> Arc<Self> {
        Arc::new(Scheduler {
            id: NEXT_SCHED.fetch_add(1, Ordering::Relaxed),
            off: AtomicBool::new(false),
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
                priorities: change_one_in.map(|n| (BTreeMap::new(), n)),
                next_low: UNREGISTERED,
                admissions: 0,
                blocked: BTreeMap::new(),
                marks: Vec::new(),
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
        CURRENT.with(|c| *c.borrow_mut() = Some(Arc::downgrade(self)));
        let mut st = lock(&self.state);
        st.known.insert(key, Known { tid: current_tid() });
        bump(&mut st);
        drop(st);
        // Start at a scheduling point, so that actors spawned together do not race
        // each other to their first call.
        drop(self.gate(false));
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

    /// Turns given so far (admissions at a call or point); during an admitted call,
    /// that call's turn is the last one counted.
    pub fn turns(&self) -> u64 {
        lock(&self.state).admissions
    }

    /// The moments the library marked on scheduled threads, in order.
    pub fn marks(&self) -> Vec<Mark> {
        lock(&self.state).marks.clone()
    }

    /// Switches the scheduling points off (the file system crashed): from now on they
    /// return at once.
    pub(super) fn switch_off(&self) {
        self.off.store(true, Ordering::Release);
        self.cv.notify_all();
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

    /// Waits at the gate until this thread is admitted (`blocked`: see [`blocked`]);
    /// the guard ends the call.
    pub(super) fn gate(self: &Arc<Self>, blocked: bool) -> CallGuard<'_> {
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_none_or(|w| w.as_ptr() != Arc::as_ptr(self)) {
                *c = Some(Arc::downgrade(self));
            }
        });
        let mut st = lock(&self.state);
        let key = self.key(&mut st);
        st.waiting.insert(key);
        if blocked {
            let n = st.admissions;
            st.blocked.insert(key, n);
        }
        bump(&mut st);
        self.cv.notify_all();
        loop {
            if st.in_call == Some(key) {
                st.waiting.remove(&key);
                return CallGuard(Some(self));
            }
            if self.off.load(Ordering::Acquire) {
                // The file system crashed: nothing waits any more.
                st.waiting.remove(&key);
                st.blocked.remove(&key);
                bump(&mut st);
                return CallGuard(None);
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
        if let Some(key) = choose(&mut st) {
            st.in_call = Some(key);
            st.trace.push(key);
            st.admissions += 1;
            st.blocked.remove(&key);
            bump(&mut st);
        }
        st
    }
}

/// The waiting thread to admit next.
fn choose(st: &mut State) -> Option<u64> {
    let State {
        rng,
        waiting,
        priorities,
        next_low,
        admissions,
        blocked,
        ..
    } = st;
    // A blocked thread waits for another thread's turn first, unless none can have one.
    let ready: BTreeSet<u64> = waiting
        .iter()
        .copied()
        .filter(|k| blocked.get(k) != Some(admissions))
        .collect();
    let waiting = if ready.is_empty() { &*waiting } else { &ready };
    let Some((prio, change_one_in)) = priorities else {
        let i = rng.below(waiting.len() as u64) as usize;
        return waiting.iter().nth(i).copied();
    };
    for k in waiting.iter() {
        // Random priorities sit above every lowered one.
        prio.entry(*k).or_insert_with(|| rng.next_u64() | (1 << 63));
    }
    let top = |prio: &BTreeMap<u64, u64>| waiting.iter().copied().max_by_key(|k| prio.get(k));
    let first = top(prio)?;
    if waiting.len() > 1 && rng.below(*change_one_in) == 0 {
        *next_low = next_low.saturating_sub(1);
        prio.insert(first, *next_low);
        return top(prio);
    }
    Some(first)
}
