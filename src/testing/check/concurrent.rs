//! Concurrent workloads, deterministically scheduled, crashed at any call.
//!
//! A [`Concurrent`] workload runs several actors at once on real threads: appenders,
//! a thread that takes checkpoints, a position updater (it appends an event and then
//! sets the position `src` to that event's seq), and optionally the store's own
//! background threads (the `Interval` sync thread, a periodic checkpointer), then
//! `close` (with or without a final checkpoint) while those background threads run.
//! The [`SimFs`] gets a [`Scheduler`] that admits one thread at a time at each
//! file-system call and at each scheduling point the library marks, chosen from the
//! seed, so each seed is one interleaving (see the scheduler's docs for the points
//! and for what may still depend on the clock). Even seeds choose uniformly among the
//! waiting threads, odd seeds by random priorities ([`scheduler_for`]).
//!
//! [`ConcurrentChecker::run`] takes each seed, runs it once without a crash (which
//! counts its calls and checks the crash-free result), then reruns the same seed
//! crashing before a sample of its calls, and checks several crash images of each
//! (only what was durable, everything visible, every name with no unsynced byte
//! ([`Choices::NamesKept`]), and random ones):
//!
//! 1. **Recovery succeeds**, and the recovered events are exactly the first `k`
//!    events in the order the store gave them seqs (I2: the [`Ledger`] state lists
//!    every event, so a gap, a reorder or a double application shows), with
//!    `acknowledged <= k` (I1). *Acknowledged* is the highest seq the store promised
//!    durable before the crash: an `Always` append that returned, a `sync`, a
//!    checkpoint, `close`, or [`Store::durable_seq`] after any of them.
//! 2. **Positions never run ahead** (I10): every restored position is at most `k`.
//! 3. **The store is usable**: one more event appends as `k + 1`, `close` succeeds,
//!    and a reopen shows it.
//!
//! ```
//! use snapwal::testing::check::{Concurrent, ConcurrentChecker};
//! let report = ConcurrentChecker::new(Concurrent::default())
//!     .seeds(0..1)
//!     .crash_points(2)
//!     .random_images(1)
//!     .run();
//! assert!(report.failures.is_empty(), "{report}");
//! ```

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::actors::{self, Outcome};
use super::case::Case;
use super::ledger::{
    entry, entry_padded, Concurrent, Ledger, NEIGHBOUR_ACTOR, NEIGHBOUR_DIR, RECOVERY_ACTOR,
};
use super::points;
use super::STORE_DIR;
use crate::testing::sim::{Choices, Mark, OpKind, Rng, Scheduler, SimFs};
use crate::util::lock_raw as lock;
use crate::util::panic_message;
use crate::{Store, SyncPolicy};

/// The scheduler of seed `seed`: even seeds choose uniformly, odd seeds by priority
/// (see [`Scheduler::with_priorities`]), lowering the chosen thread at one choice in
/// 24 on average.
pub fn scheduler_for(seed: u64) -> Arc<Scheduler> {
    if seed % 2 == 1 {
        Scheduler::with_priorities(seed, 24)
    } else {
        Scheduler::new(seed)
    }
}

/// One file-system call of a run, as the checker logs it.
#[derive(Debug, Clone)]
struct Logged {
    op: OpKind,
    /// The path (a rename's source).
    path: std::path::PathBuf,
    /// The scheduler's turn count at the call (its own turn included).
    turn: u64,
}

/// A checkpoint that `close` cancelled installs nothing: no temp file whose last
/// sync came after the cancellation is renamed into place after it, until the final
/// checkpoint of `close` (if any) starts.
fn installed_after_cancel(ops: &[Logged], marks: &[Mark]) -> Option<String> {
    for m in marks.iter().filter(|m| m.label == "cancel") {
        let until = marks
            .iter()
            .find(|f| f.label == "final" && f.path == m.path && f.turn >= m.turn)
            .map_or(u64::MAX, |f| f.turn);
        for (i, c) in ops.iter().enumerate().filter(|(_, c)| c.turn <= until) {
            let temp = c
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
            if c.op != OpKind::Rename || c.turn <= m.turn || !temp || !c.path.starts_with(&m.path) {
                continue;
            }
            let synced = ops.get(..i).and_then(|before| {
                before
                    .iter()
                    .rev()
                    .find(|s| s.op == OpKind::SyncData && s.path == c.path)
            });
            if synced.is_some_and(|s| s.turn > m.turn) {
                return Some(format!(
                    "{} was synced after close cancelled the checkpoint of {} and then installed",
                    c.path.display(),
                    m.path.display()
                ));
            }
        }
    }
    None
}

/// The payload of a panic injected into a file-system call.
#[derive(Debug)]
pub(super) struct InjectedPanic;

/// Keeps the panics injected by the checker out of the test output (every other
/// panic is reported as before).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<InjectedPanic>().is_none() {
                previous(info);
            }
        }));
    });
}

/// A contract violation found by a [`ConcurrentChecker`], with what reproduces it.
#[derive(Debug, Clone)]
pub struct ConcurrentFailure {
    /// The case: workload, seed, crash point, image.
    pub case: Case,
    /// The events in seq order as the store held them in memory before the crash.
    pub expected: Vec<u64>,
    /// What went wrong (with the recovered state, when there was one).
    pub what: String,
}

impl fmt::Display for ConcurrentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.case;
        let point = match (c.crash_point, c.panics) {
            (None, _) => "no crash".to_owned(),
            (Some(n), false) => format!("crash before call {n}"),
            (Some(n), true) => format!("call {n} panics"),
        };
        write!(
            f,
            "seed {:#x}, {point}, {}: {}\n    expected (in-memory order): {:x?}\n    workload: {:?}\n    replay: SNAPWAL_REPLAY='{c}' cargo test --features testing --test checker_concurrent replay_one_case -- --nocapture",
            c.seed,
            Choices::Bits(c.bits.clone()),
            self.what,
            self.expected,
            c.workload,
        )
    }
}

/// What a [`ConcurrentChecker::run`] explored and found.
#[derive(Debug, Clone, Default)]
pub struct ConcurrentReport {
    /// Interleavings (seeds) run.
    pub interleavings: u64,
    /// Crash points run (each a rerun of an interleaving).
    pub crash_points: u64,
    /// Crash images recovered and checked.
    pub images: u64,
    /// Images that recovered fewer events than were appended.
    pub images_with_loss: u64,
    /// Scheduler choices made after passing over a thread (clock-dependent).
    pub grace_decisions: u64,
    /// Contract violations.
    pub failures: Vec<ConcurrentFailure>,
}

impl fmt::Display for ConcurrentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} interleavings, {} crash points, {} images ({} lost un-synced events), {} clock-dependent choices, {} failures",
            self.interleavings,
            self.crash_points,
            self.images,
            self.images_with_loss,
            self.grace_decisions,
            self.failures.len()
        )?;
        for fail in self.failures.iter().take(3) {
            write!(f, "\n  {fail}")?;
        }
        Ok(())
    }
}

/// Runs a [`Concurrent`] workload over many seeds and crash points. See the
/// [module docs](crate::testing::check).
#[derive(Debug, Clone)]
pub struct ConcurrentChecker {
    workload: Concurrent,
    seeds: std::ops::Range<u64>,
    crash_points: usize,
    random_images: usize,
    stop_at_first: bool,
    panics: bool,
    hang_after: Duration,
}

/// One run of the workload.
struct Run {
    fs: Arc<SimFs>,
    calls: u64,
    truth: Vec<u64>,
    acked: u64,
    grace: u64,
    trace: Vec<u64>,
    /// Every file-system call, in order.
    ops: Vec<Logged>,
    /// The neighbour store's acknowledged seq.
    neighbour_acked: u64,
    problem: Option<String>,
}

impl ConcurrentChecker {
    /// A checker for `workload`: seeds `0..16`, 8 crash points per seed, 3 random
    /// images per crash point besides the fixed ones
    /// ([`Choices::fixed`]: all dropped, all kept, names kept).
    pub fn new(workload: Concurrent) -> Self {
        ConcurrentChecker {
            workload,
            seeds: 0..16,
            crash_points: 8,
            random_images: 3,
            stop_at_first: false,
            panics: false,
            hang_after: Duration::from_secs(20),
        }
    }

    /// Panics instead of crashes: each sampled call panics (as a file system that
    /// panics would: the panic unwinds through the store into the operation that made
    /// the call), the workload runs on to its end, and images of the end are checked.
    /// The store may turn read-only, but must never acknowledge what is not durable,
    /// and no operation may hang (see [`ConcurrentChecker::hang_after`]).
    pub fn panics(mut self, on: bool) -> Self {
        self.panics = on;
        self
    }

    /// A run that has not finished after `d` (default 20 s) is a failure ("hung"):
    /// some thread waits for ever. Its threads are left behind.
    pub fn hang_after(mut self, d: Duration) -> Self {
        self.hang_after = d;
        self
    }

    /// The seeds (interleavings) to run.
    pub fn seeds(mut self, seeds: std::ops::Range<u64>) -> Self {
        self.seeds = seeds;
        self
    }

    /// Crash points per seed, sampled with the seed among its calls (always including
    /// the end of the run).
    pub fn crash_points(mut self, n: usize) -> Self {
        self.crash_points = n;
        self
    }

    /// Random images per crash point, besides the fixed ones
    /// ([`Choices::fixed`]: all dropped, all kept, names kept).
    pub fn random_images(mut self, k: usize) -> Self {
        self.random_images = k;
        self
    }

    /// Stops at the first failure (for mutation tests).
    pub fn stop_at_first(mut self, on: bool) -> Self {
        self.stop_at_first = on;
        self
    }

    /// Runs every seed and crash point.
    pub fn run(&self) -> ConcurrentReport {
        let mut report = ConcurrentReport::default();
        for seed in self.seeds.clone() {
            if self.stop_at_first && !report.failures.is_empty() {
                break;
            }
            report.interleavings += 1;
            let free = self.run_workload(seed, None);
            report.grace_decisions += free.grace;
            if let Some(what) = self.crash_free_problem(&free) {
                report
                    .failures
                    .push(self.failure(seed, None, &free, Vec::new(), what));
                continue;
            }
            let mut rng = Rng::new(seed ^ 0xC4A5_4000);
            let kinds: Vec<OpKind> = free.ops.iter().map(|c| c.op).collect();
            let ahead = free.fs.names_ahead_of_data();
            let want = self.crash_points;
            for point in points::sample(free.calls, &kinds, &ahead, want, &mut rng) {
                if self.stop_at_first && !report.failures.is_empty() {
                    break;
                }
                report.crash_points += 1;
                let run = self.run_workload(seed, Some(point));
                report.grace_decisions += run.grace;
                if let Some(what) = run.problem.clone() {
                    report
                        .failures
                        .push(self.failure(seed, Some(point), &run, Vec::new(), what));
                    continue;
                }
                let mut images = Choices::fixed();
                images.extend((0..self.random_images).map(|_| Choices::Random(rng.next_u64())));
                for choices in images {
                    let (image, bits) = run.fs.crash_image(&choices);
                    report.images += 1;
                    match self.check_image(image, &run, bits.iter().all(|b| *b)) {
                        Ok(k) => report.images_with_loss += u64::from(k < run.truth.len() as u64),
                        Err(what) => {
                            report
                                .failures
                                .push(self.failure(seed, Some(point), &run, bits, what));
                            if self.stop_at_first {
                                break;
                            }
                        }
                    }
                }
            }
        }
        report
    }

    /// The crash-free run of `seed`: the thread admitted at each call (see
    /// [`Scheduler::trace`]), the events in seq order, and the clock-dependent choices.
    pub fn interleaving(&self, seed: u64) -> (Vec<u64>, Vec<u64>, u64) {
        let run = self.run_workload(seed, None);
        (run.trace, run.truth, run.grace)
    }

    /// Reruns one case (the workload and the panic mode are the case's, not this
    /// checker's): its interleaving, crashed (or panicking) at its point (`None`: the
    /// crash-free run, checked as such), image built from its bits.
    pub fn replay(&self, case: &Case) -> Result<(), Box<ConcurrentFailure>> {
        let mut checker = self.clone();
        checker.workload = case.workload.clone();
        checker.panics = case.panics;
        checker.check_one(
            case.seed,
            case.crash_point,
            &Choices::Bits(case.bits.clone()),
        )
    }

    /// Reruns one case of this checker's workload: the interleaving of `seed`,
    /// crashed before call `crash_point` (`None`: the crash-free run, checked as
    /// such), image built from `choices`.
    pub fn check_one(
        &self,
        seed: u64,
        crash_point: Option<u64>,
        choices: &Choices,
    ) -> Result<(), Box<ConcurrentFailure>> {
        let run = self.run_workload(seed, crash_point);
        let problem = match crash_point {
            None => self.crash_free_problem(&run),
            Some(_) => run.problem.clone(),
        };
        if let Some(what) = problem {
            return Err(Box::new(self.failure(
                seed,
                crash_point,
                &run,
                Vec::new(),
                what,
            )));
        }
        let (image, bits) = run.fs.crash_image(choices);
        self.check_image(image, &run, bits.iter().all(|b| *b))
            .map(drop)
            .map_err(|what| Box::new(self.failure(seed, crash_point, &run, bits, what)))
    }

    fn failure(
        &self,
        seed: u64,
        crash_point: Option<u64>,
        run: &Run,
        bits: Vec<bool>,
        what: String,
    ) -> ConcurrentFailure {
        ConcurrentFailure {
            case: Case {
                workload: self.workload.clone(),
                seed,
                crash_point,
                panics: self.panics && crash_point.is_some(),
                bits,
            },
            expected: run.truth.clone(),
            what,
        }
    }

    fn crash_free_problem(&self, run: &Run) -> Option<String> {
        if let Some(p) = &run.problem {
            return Some(p.clone());
        }
        let w = &self.workload;
        if run.truth.len() as u64 != w.events() {
            return Some(format!(
                "crash-free run holds {} events of {}",
                run.truth.len(),
                w.events()
            ));
        }
        // Each actor's events in its own order, each once.
        let mut next: std::collections::BTreeMap<u64, u64> = Default::default();
        for id in &run.truth {
            let n = next.entry(id >> 32).or_insert(0);
            if id & 0xFFFF_FFFF != *n {
                return Some(format!("event {id:#x} out of its actor's order"));
            }
            *n += 1;
        }
        if run.acked != run.truth.len() as u64 {
            return Some(format!(
                "crash-free run: close made {} of {} events durable",
                run.acked,
                run.truth.len()
            ));
        }
        None
    }

    /// Runs the workload for `seed`, crashing before call `crash_at` if given (or,
    /// with [`ConcurrentChecker::panics`], making that call panic and running on).
    fn run_workload(&self, seed: u64, crash_at: Option<u64>) -> Run {
        let fs = Arc::new(SimFs::new(seed));
        let sched = scheduler_for(seed);
        fs.set_scheduler(Arc::clone(&sched));
        let panic_at = crash_at.filter(|_| self.panics);
        if let (Some(n), false) = (crash_at, self.panics) {
            fs.crash_at(n);
        }
        let out = Arc::new(Outcome::default());
        let ops = Arc::new(Mutex::new(Vec::new()));
        let (log, flag, turns) = (Arc::clone(&ops), Arc::clone(&out), Arc::clone(&sched));
        fs.set_hook(move |call| {
            lock(&log).push(Logged {
                op: call.op,
                path: call.path.to_path_buf(),
                turn: turns.turns(),
            });
            flag.touched_after_close(call);
            if panic_at == Some(call.index) {
                flag.panicked.store(true, Ordering::SeqCst);
                quiet_panics();
                // The planted failure itself: a file system that panics.
                #[allow(clippy::panic)]
                std::panic::panic_any(InjectedPanic);
            }
            None
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (w, fs2, sched2, out2) = (
            self.workload.clone(),
            Arc::clone(&fs),
            Arc::clone(&sched),
            Arc::clone(&out),
        );
        let driver = std::thread::Builder::new()
            .name("snapwal-check-drive".into())
            .spawn(move || {
                let result =
                    catch_unwind(AssertUnwindSafe(|| actors::drive(&w, &fs2, &sched2, &out2)));
                let _ = done_tx.send(result.err().map(|p| panic_message(p.as_ref())));
            });
        let mut problem = match driver {
            Err(e) => Some(format!("could not start the workload's thread: {e}")),
            Ok(_) => match done_rx.recv_timeout(self.hang_after) {
                Ok(None) => None,
                Ok(Some(panic)) => Some(format!("panic: {panic}")),
                Err(_) => {
                    // Its threads stay blocked; crashing the file system lets any
                    // that wait on a call go.
                    fs.crash_now();
                    Some(format!(
                        "hung: the workload did not finish within {:?}",
                        self.hang_after
                    ))
                }
            },
        };
        if problem.is_none() {
            problem = lock(&out.problems).first().cloned();
        }
        let ops = lock(&ops).clone();
        if problem.is_none() {
            problem = installed_after_cancel(&ops, &sched.marks());
        }
        let truth = lock(&out.truth).clone();
        Run {
            calls: fs.calls(),
            fs,
            truth,
            acked: out.acked.load(Ordering::SeqCst),
            neighbour_acked: out.neighbour_acked.load(Ordering::SeqCst),
            grace: sched.grace_decisions(),
            trace: sched.trace(),
            ops,
            problem,
        }
    }

    /// The neighbour store of the image recovers its own events, in order, at least
    /// as many as it acknowledged.
    fn check_neighbour(&self, image: &Arc<SimFs>, run: &Run) -> Result<(), String> {
        let opts = self.workload.options(Arc::clone(image), SyncPolicy::Never);
        let store = Store::<Ledger>::open(NEIGHBOUR_DIR, opts)
            .map_err(|e| format!("recovery of the neighbour failed: {e}"))?;
        let k = store.seq();
        let want: Vec<u64> = (0..k)
            .map(|n| u64::from(NEIGHBOUR_ACTOR) << 32 | n)
            .collect();
        if store.current().state().events != want {
            return Err(format!(
                "the neighbour's recovered events at seq {k} are not its first {k}: {:x?}",
                store.current().state().events
            ));
        }
        if k < run.neighbour_acked {
            return Err(format!(
                "the neighbour recovered seq {k}, below its acknowledged {}",
                run.neighbour_acked
            ));
        }
        store
            .close()
            .map_err(|e| format!("close of the neighbour failed: {e}"))?;
        Ok(())
    }

    /// A crash of the process loses at most the bytes staged in memory: at most
    /// [`Options::max_staged_bytes`] plus one batch (here one event) per appending
    /// thread (the WAL's staging bound; I9).
    fn staged_loss_within_bound(&self, run: &Run, k: u64) -> Result<(), String> {
        let w = &self.workload;
        let frame = |id: u64| -> u64 {
            let e = entry_padded((id >> 32) as u32, id as u32, w.pad);
            postcard::to_allocvec(&e).map_or(0, |b| b.len() as u64)
                + crate::format::FRAME_HEADER_LEN as u64
        };
        let lost: Vec<u64> = run
            .truth
            .iter()
            .skip(k as usize)
            .map(|id| frame(*id))
            .collect();
        let threads = u64::from(w.appenders) + u64::from(w.position_updates > 0);
        let largest = lost.iter().copied().max().unwrap_or(0);
        let bound = w.max_staged_bytes + threads * largest;
        let bytes: u64 = lost.iter().sum();
        if bytes > bound {
            return Err(format!(
                "a crash of the process lost {} events ({bytes} bytes) written to no file, past the staging bound of {bound} bytes",
                lost.len()
            ));
        }
        Ok(())
    }

    /// Recovers `image` and checks it (see the module docs). Returns the recovered seq.
    ///
    /// `all_kept`: every write that reached the OS survived, as at a crash of the
    /// process rather than of the machine; under `Never` and `Interval` the events
    /// lost then are only those staged in memory, within the staging bound.
    fn check_image(&self, image: SimFs, run: &Run, all_kept: bool) -> Result<u64, String> {
        let image = Arc::new(image);
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<u64, String> {
            let opts = self.workload.options(Arc::clone(&image), SyncPolicy::Never);
            let store = Store::<Ledger>::open(STORE_DIR, opts.clone())
                .map_err(|e| format!("recovery failed: {e}"))?;
            let k = store.seq();
            let events = store.current().state().events.clone();
            let expected = usize::try_from(k)
                .ok()
                .and_then(|k| run.truth.get(..k))
                .ok_or_else(|| {
                    format!(
                        "recovered seq {k}, past the {} events appended",
                        run.truth.len()
                    )
                })?;
            if events != expected {
                return Err(format!(
                    "recovered events at seq {k} are not the first {k} events: {events:x?}"
                ));
            }
            if k < run.acked {
                return Err(format!(
                    "recovered seq {k}, below the acknowledged {}",
                    run.acked
                ));
            }
            if all_kept && !self.panics {
                self.staged_loss_within_bound(run, k)?;
            }
            for (name, p) in store.positions() {
                if p.offset > k {
                    return Err(format!(
                        "position {name:?} restored at {} is ahead of the restored seq {k}",
                        p.offset
                    ));
                }
            }
            let post = entry(RECOVERY_ACTOR, 0);
            match store.append(&post) {
                Ok(seq) if seq == k + 1 => {}
                Ok(seq) => return Err(format!("append after recovery to {k} returned {seq}")),
                Err(e) => return Err(format!("append after recovery failed: {e}")),
            }
            store
                .close()
                .map_err(|e| format!("close after recovery failed: {e}"))?;
            let store = Store::<Ledger>::open(STORE_DIR, opts)
                .map_err(|e| format!("second recovery failed: {e}"))?;
            let mut want = expected.to_vec();
            want.push(post.id);
            if store.current().state().events != want {
                return Err(format!(
                    "after recovery to {k}, one append, close and reopen: seq {}",
                    store.seq()
                ));
            }
            store
                .close()
                .map_err(|e| format!("second close failed: {e}"))?;
            if self.workload.neighbour_appends > 0 {
                self.check_neighbour(&image, run)?;
            }
            Ok(k)
        }));
        match result {
            Ok(r) => r,
            Err(panic) => Err(format!(
                "panic during recovery: {}",
                panic_message(panic.as_ref())
            )),
        }
    }
}
