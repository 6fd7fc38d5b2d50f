//! A crash-consistency checker: run a workload on a [`SimFs`], crash it at every call,
//! and check that every crash image recovers to a state the contract allows.
//!
//! A [`Workload`] is a list of [`Op`]s (appends, batches, syncs, checkpoints, clean and
//! unclean reopens) with store options chosen so that segments rotate and get cleaned
//! up (4 KiB segments). A [`Checker`] runs it once without a crash to count its file
//! system calls, then, for every call boundary `n` from `0` to that count (or a seeded
//! sample of them), runs it again on a fresh [`SimFs`] that crashes before call `n`,
//! builds several crash images (everything un-synced dropped, everything kept, and
//! random mixes; see the [`sim`](crate::testing::sim) model) and on each one checks:
//!
//! 1. **Recovery succeeds**: [`Store::open`](crate::Store::open) neither panics nor returns an error (a
//!    crash must be recoverable under the default recovery policy).
//! 2. **Durability and prefix** (I1, I2): the recovered store is at some seq `k` with
//!    `acknowledged <= k <= appended`, and its state equals the state after events
//!    `1..=k`. *Appended* counts every event whose append was attempted; *acknowledged*
//!    is the highest seq the store promised was durable before the crash: an append
//!    that returned `Ok` under [`SyncPolicy::Always`], the seq returned by
//!    [`Store::sync`](crate::Store::sync), a checkpoint's seq, `close`'s durable seq, and
//!    [`Store::durable_seq`](crate::Store::durable_seq) after each operation that succeeded.
//! 3. **The store is usable**: one more event appends as seq `k + 1`, `close`
//!    succeeds, and a reopen shows exactly events `1..=k` plus that one.
//!
//! The crash-free run is checked too: after every reopen the store holds every event
//! appended, and every seq returned is the expected one.
//!
//! [`Checker::rot`] damages durable files instead (bit rot, misdirected writes,
//! latent read errors; see [`Rot`]): every open must then give a typed error naming
//! the damaged file, or a correct recovery that loses only what the contract allows.
//!
//! The checker is generic over the state, so you can run it with your own
//! [`State`] and a function that makes the `i`-th event; [`Tally`] and [`tick`] are a
//! small ready-made pair. [`crash_recovery_from_bytes`] is the body of a cargo-fuzz
//! target that drives one check from the fuzzer's bytes.
//!
//! ```
//! use snapwal::testing::check::{Checker, Op, Workload};
//! use snapwal::SyncPolicy;
//!
//! let workload = Workload::new(SyncPolicy::Always)
//!     .then(Op::Append(3))
//!     .then(Op::Checkpoint)
//!     .then(Op::Append(2));
//! let report = Checker::tally(workload).random_images(1).run();
//! assert!(report.failures.is_empty(), "{report}");
//! assert!(report.crash_points > 0);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

mod actors;
mod bytes;
mod case;
mod concurrent;
mod images;
mod ledger;
mod points;
mod rot;
mod workload;

pub use bytes::{check_from_bytes, crash_recovery_from_bytes, FUZZ_MAX_OPS};
pub use case::Case;
pub use concurrent::{scheduler_for, ConcurrentChecker, ConcurrentFailure, ConcurrentReport};
pub use ledger::{
    entry, entry_padded, Concurrent, Entry, Ledger, CHECKPOINT_ACTOR, NEIGHBOUR_ACTOR,
    NEIGHBOUR_DIR, POSITION_ACTOR, RECOVERY_ACTOR,
};
pub use rot::{Rot, RotReport};
pub use workload::{tick, Op, Tally, Tick, Workload, POSITION_INODE, POSITION_NAME};

use crate::testing::sim::{is_crash, Choices, Fault, FaultError, Rng, SimFs};
use crate::util::panic_message;
use crate::{CheckpointOutcome, CloseOptions, Error, Seq, State, Store, SyncPolicy};

/// Where the checker puts the store inside the simulated file system.
pub const STORE_DIR: &str = "/store";

/// Added to the index of the event appended after recovery, so that it differs from
/// the workload's own event with the same seq.
pub const POST_RECOVERY_EVENT: u64 = 1 << 40;
/// A contract violation found by the checker, with what it takes to reproduce it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The checker's seed ([`Checker::seed`]).
    pub seed: u64,
    /// The crash point (`None` for the crash-free run).
    pub crash_point: Option<u64>,
    /// How the image was chosen.
    pub image: Option<Choices>,
    /// Every choice answer given to build the image: pass
    /// `Choices::Bits(bits)` to [`Checker::check_one`] to rebuild it.
    pub bits: Vec<bool>,
    /// The fault injected at the crash point's call ([`Checker::faults`]), if any.
    pub fault: Option<FaultError>,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.crash_point {
            None => write!(f, "crash-free run (seed {:#x}): {}", self.seed, self.what),
            Some(n) => {
                write!(f, "crash before call {n} (seed {:#x})", self.seed)?;
                if let Some(img) = &self.image {
                    write!(f, ", image {img}")?;
                }
                write!(f, ", {}: {}", Choices::Bits(self.bits.clone()), self.what)?;
                match (&self.image, self.fault) {
                    (Some(_), None) => write!(
                        f,
                        "\n    replay: checker.seed({:#x}).check_one({n}, &Choices::Bits(vec!{:?}))",
                        self.seed, self.bits
                    )?,
                    (_, Some(e)) => write!(
                        f,
                        "\n    replay: checker.seed({:#x}).check_fault({n}, FaultError::{e:?}, &Choices::Bits(vec!{:?}))",
                        self.seed, self.bits
                    )?,
                    (None, None) => {}
                }
                Ok(())
            }
        }
    }
}

/// What a [`Checker::run`] explored and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// File system calls of the crash-free run.
    pub total_calls: u64,
    /// Crash points run.
    pub crash_points: u64,
    /// Crash images recovered and checked.
    pub images: u64,
    /// Images that recovered fewer events than were appended (un-synced data lost).
    pub images_with_loss: u64,
    /// Images whose recovery cut a torn tail.
    pub torn_tails: u64,
    /// Images left by crashes during recovery, checked too ([`Checker::crash_recovery`]).
    pub recovery_images: u64,
    /// Runs with an injected fault, then a crash ([`Checker::faults`]).
    pub fault_points: u64,
    /// Contract violations.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, {} crash points, {} fault points, {} images ({} lost un-synced events, {} torn tails), {} images of crashed recoveries, {} failures",
            self.total_calls,
            self.crash_points,
            self.fault_points,
            self.images,
            self.images_with_loss,
            self.torn_tails,
            self.recovery_images,
            self.failures.len()
        )?;
        for fail in self.failures.iter().take(10) {
            write!(f, "\n  {fail}")?;
        }
        Ok(())
    }
}

/// What one crash image recovered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageOutcome {
    /// The recovered seq.
    pub recovered: Seq,
    /// The highest acknowledged-durable seq before the crash.
    pub acknowledged: Seq,
    /// Events appended (attempted) before the crash.
    pub appended: Seq,
    /// Recovery cut a torn tail.
    pub torn_tail: bool,
    /// Images left by crashes of this image's own recovery, checked too
    /// ([`Checker::crash_recovery`]).
    pub recovery_images: u64,
}

/// The model: the state after each prefix of the events, computed on demand.
struct Model<'g, S: State, G> {
    events: &'g G,
    states: Vec<S>,
}

impl<S: State, G: Fn(u64) -> S::Event> Model<'_, S, G> {
    /// The state after events `1..=k`.
    fn state(&mut self, k: Seq) -> S {
        if self.states.is_empty() {
            self.states.push(S::default());
        }
        while (self.states.len() as u64) <= k {
            let mut s = self.states.last().cloned().unwrap_or_default();
            s.apply(&(self.events)(self.states.len() as u64));
            self.states.push(s);
        }
        usize::try_from(k)
            .ok()
            .and_then(|i| self.states.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

/// Counters of one run, kept while the workload runs.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    appended: Seq,
    acked: Seq,
}

/// Runs a [`Workload`] with crashes at every call and checks every image. See the
/// [module docs](self).
pub struct Checker<S, G> {
    workload: Workload,
    events: G,
    seed: u64,
    random_images: usize,
    sample: Option<usize>,
    recovery_crashes: usize,
    rename_via_link: bool,
    faults: usize,
    _state: PhantomData<fn() -> S>,
}

impl<S, G> fmt::Debug for Checker<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("workload", &self.workload)
            .field("seed", &self.seed)
            .field("random_images", &self.random_images)
            .field("sample", &self.sample)
            .finish_non_exhaustive()
    }
}

impl Checker<Tally, fn(u64) -> Tick> {
    /// A checker for `workload` with the ready-made [`Tally`] state and [`tick`] events.
    pub fn tally(workload: Workload) -> Self {
        Checker::new(workload, tick as fn(u64) -> Tick)
    }
}

type Checked<T> = std::result::Result<T, String>;

impl<S, G> Checker<S, G>
where
    S: State + PartialEq + fmt::Debug,
    G: Fn(u64) -> S::Event,
{
    /// A checker for `workload` whose `i`-th event (from 1) is `events(i)`. `events`
    /// must be deterministic.
    pub fn new(workload: Workload, events: G) -> Self {
        Checker {
            workload,
            events,
            seed: 0x5eed,
            random_images: 3,
            sample: None,
            recovery_crashes: 0,
            rename_via_link: false,
            faults: 0,
            _state: PhantomData,
        }
    }

    /// Sets the seed of the random images and of sampling (default `0x5eed`).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Random images per crash point, besides the fixed ones
    /// ([`Choices::fixed`]: all dropped, all kept, names kept) (default 3).
    pub fn random_images(mut self, k: usize) -> Self {
        self.random_images = k;
        self
    }

    /// Checks only `n` crash points, chosen with the seed (always including the last),
    /// instead of every one.
    pub fn sample(mut self, n: usize) -> Self {
        self.sample = Some(n);
        self
    }

    /// Also crashes *recovery*: before an image is recovered and checked, its
    /// recovery ([`Store::open`](crate::Store::open) and the store's drop) is run on a
    /// copy crashed at `n` of its calls (all of them if it makes fewer, else chosen
    /// with the seed), and the images that crash leaves (everything un-synced
    /// dropped, and a random mix) must pass the same checks against the same
    /// acknowledged and appended seqs. Recovery cuts torn tails, removes temp files,
    /// moves damage aside and syncs; a crash in the middle of any of that must lose
    /// nothing acknowledged. Default 0 (off).
    pub fn crash_recovery(mut self, n: usize) -> Self {
        self.recovery_crashes = n;
        self
    }

    /// Runs every install as a file system without `RENAME_NOREPLACE` makes it: a
    /// link and an unlink ([`SimFs::set_rename_via_link`]), so the crash images
    /// include a snapshot under both its temp name and its final name, and under
    /// neither. Default off.
    pub fn rename_via_link(mut self, on: bool) -> Self {
        self.rename_via_link = on;
        self
    }

    /// Also injects faults, then crashes: for `n` calls of the crash-free run (all of
    /// them if it makes fewer, else chosen with the seed), a run where that call fails
    /// with `EIO` or `ENOSPC` (alternately). The workload carries on past operations
    /// that fail (the store may have turned read-only; a reopen that fails stops it),
    /// the crash comes at its end, and every image must hold every event the store
    /// acknowledged, before the fault or after it. A
    /// failed `fdatasync` follows Linux: the dirty pages are dropped and a retried
    /// sync succeeds without them (see the [`sim`](crate::testing::sim) model), so a
    /// store that acknowledged anything after such a failure is caught. Default 0.
    pub fn faults(mut self, n: usize) -> Self {
        self.faults = n;
        self
    }

    /// Runs the whole check.
    pub fn run(&self) -> Report {
        let mut model = Model {
            events: &self.events,
            states: Vec::new(),
        };
        let mut report = Report::default();
        let (fs, progress, problem) = self.run_workload(None, &mut model);
        report.total_calls = fs.calls();
        if let Some(what) = problem {
            report
                .failures
                .push(self.failure(None, None, Vec::new(), what));
            return report;
        }
        if progress.appended != self.workload.events()
            || (progress.acked != progress.appended && self.workload.sync == SyncPolicy::Always)
        {
            let what = format!(
                "crash-free run appended {} of {} events, {} acknowledged",
                progress.appended,
                self.workload.events(),
                progress.acked
            );
            report
                .failures
                .push(self.failure(None, None, Vec::new(), what));
            return report;
        }
        for point in self.crash_points(report.total_calls) {
            report.crash_points += 1;
            let run = self.run_workload(Some(point), &mut model);
            self.check_images(run, point, None, &mut model, &mut report);
        }
        let mut rng = Rng::new(self.seed ^ 0xfa17);
        let calls = report.total_calls;
        for (i, call) in sample_calls(&mut rng, calls, self.faults)
            .into_iter()
            .enumerate()
        {
            let error = if i % 2 == 0 {
                FaultError::Eio
            } else {
                FaultError::Enospc
            };
            report.fault_points += 1;
            let run = self.run_workload_with(None, Some((call, error)), &mut model);
            self.check_images(run, call, Some(error), &mut model, &mut report);
        }
        report
    }

    /// The number of file system calls of the crash-free run, or the failure of that run.
    pub fn total_calls(&self) -> Result<u64, Failure> {
        let mut model = Model {
            events: &self.events,
            states: Vec::new(),
        };
        let (fs, _, problem) = self.run_workload(None, &mut model);
        match problem {
            None => Ok(fs.calls()),
            Some(what) => Err(self.failure(None, None, Vec::new(), what)),
        }
    }

    /// Checks one crash image: crash before call `crash_point`, build the image with
    /// `choices`, recover and check it. Reproduces a [`Failure`].
    pub fn check_one(&self, crash_point: u64, choices: &Choices) -> Result<ImageOutcome, Failure> {
        let mut model = Model {
            events: &self.events,
            states: Vec::new(),
        };
        let (fs, progress, problem) = self.run_workload(Some(crash_point), &mut model);
        if let Some(what) = problem {
            return Err(self.failure(Some(crash_point), None, Vec::new(), what));
        }
        let (image, bits) = fs.crash_image(choices);
        self.check_image(image, progress, &mut model)
            .map_err(|what| self.failure(Some(crash_point), Some(choices.clone()), bits, what))
    }

    /// Reruns one fault case: `error` injected at call `call` (the workload carries
    /// on to its end), image built from `choices`. What a failure found by
    /// [`Checker::faults`] prints as its replay.
    pub fn check_fault(
        &self,
        call: u64,
        error: FaultError,
        choices: &Choices,
    ) -> Result<ImageOutcome, Failure> {
        let mut model = Model {
            events: &self.events,
            states: Vec::new(),
        };
        let fail = |image, bits, what: String| {
            let mut f = self.failure(
                Some(call),
                image,
                bits,
                format!("after {error:?} injected at call {call}: {what}"),
            );
            f.fault = Some(error);
            f
        };
        let (fs, progress, problem) = self.run_workload_with(None, Some((call, error)), &mut model);
        if let Some(what) = problem {
            return Err(fail(None, Vec::new(), what));
        }
        let (image, bits) = fs.crash_image(choices);
        self.check_image(image, progress, &mut model)
            .map_err(|what| fail(Some(choices.clone()), bits, what))
    }

    fn failure(
        &self,
        crash_point: Option<u64>,
        image: Option<Choices>,
        bits: Vec<bool>,
        what: String,
    ) -> Failure {
        Failure {
            seed: self.seed,
            crash_point,
            image,
            bits,
            fault: None,
            what,
        }
    }

    fn crash_points(&self, total: u64) -> Vec<u64> {
        match self.sample {
            Some(n) if (n as u64) <= total => {
                let mut rng = Rng::new(self.seed);
                let mut points = std::collections::BTreeSet::new();
                points.insert(total);
                while points.len() < n.max(1) {
                    points.insert(rng.below(total + 1));
                }
                points.into_iter().collect()
            }
            _ => (0..=total).collect(),
        }
    }

    /// Runs the workload on a fresh `SimFs` (crashing before call `crash_at`, if
    /// given). Returns the file system, the progress made before the crash, and a
    /// problem that is not the crash (an error or a wrong state while no crash had
    /// happened, or a panic).
    fn run_workload(
        &self,
        crash_at: Option<u64>,
        model: &mut Model<'_, S, G>,
    ) -> (Arc<SimFs>, Progress, Option<String>) {
        self.run_workload_with(crash_at, None, model)
    }

    /// [`Checker::run_workload`], with an injected fault on one call.
    fn run_workload_with(
        &self,
        crash_at: Option<u64>,
        fault: Option<(u64, FaultError)>,
        model: &mut Model<'_, S, G>,
    ) -> (Arc<SimFs>, Progress, Option<String>) {
        let fs = Arc::new(SimFs::new(self.seed));
        fs.set_rename_via_link(self.rename_via_link);
        if let Some(n) = crash_at {
            fs.crash_at(n);
        }
        if let Some((call, error)) = fault {
            fs.inject(Fault::on_call(call, error));
        }
        let mut progress = Progress::default();
        let result = catch_unwind(AssertUnwindSafe(|| self.drive(&fs, &mut progress, model)));
        let problem = match result {
            Ok(Ok(())) => None,
            Ok(Err(what)) => Some(what),
            Err(panic) => Some(format!(
                "panic while running the workload: {}",
                panic_message(panic.as_ref())
            )),
        };
        (fs, progress, problem)
    }

    fn open(
        &self,
        fs: &Arc<SimFs>,
        p: &mut Progress,
        model: &mut Model<'_, S, G>,
    ) -> Checked<Option<Store<S>>> {
        let store = match Store::<S>::open(STORE_DIR, self.workload.options(Arc::clone(fs))) {
            Ok(s) => s,
            Err(e) => return stopped(fs, "open", e).map(|()| None),
        };
        if store.seq() != p.appended {
            return Err(format!(
                "reopened at seq {} after {} events were appended",
                store.seq(),
                p.appended
            ));
        }
        if *store.current().state() != model.state(p.appended) {
            return Err(format!(
                "reopened state differs from the state after {} events",
                p.appended
            ));
        }
        p.acked = p.acked.max(store.durable_seq());
        Ok(Some(store))
    }

    /// Runs the ops; `Ok` when they all ran or the simulated crash stopped them.
    fn drive(&self, fs: &Arc<SimFs>, p: &mut Progress, model: &mut Model<'_, S, G>) -> Checked<()> {
        let Some(mut store) = self.open(fs, p, model)? else {
            return Ok(());
        };
        let always = self.workload.sync == SyncPolicy::Always;
        for op in &self.workload.ops {
            match *op {
                Op::Append(n) => {
                    for _ in 0..n {
                        p.appended += 1;
                        match store.append(&(self.events)(p.appended)) {
                            Ok(seq) if seq == p.appended => {
                                if always {
                                    p.acked = seq;
                                }
                            }
                            Ok(seq) => {
                                return Err(format!(
                                    "append returned seq {seq}, expected {}",
                                    p.appended
                                ))
                            }
                            Err(_) if carry_on(fs, &store, p) => {}
                            Err(e) => return stopped(fs, "append", e),
                        }
                    }
                }
                Op::AppendBatch(n) => {
                    let first = p.appended + 1;
                    p.appended += u64::from(n);
                    let batch: Vec<S::Event> = (first..=p.appended).map(&self.events).collect();
                    match store.append_batch(&batch) {
                        Ok(seq) if seq == p.appended => {
                            if always {
                                p.acked = seq;
                            }
                        }
                        Ok(seq) => {
                            return Err(format!(
                                "append_batch returned seq {seq}, expected {}",
                                p.appended
                            ))
                        }
                        Err(_) if carry_on(fs, &store, p) => {}
                        Err(e) => return stopped(fs, "append_batch", e),
                    }
                }
                Op::Sync => match store.sync() {
                    Ok(seq) if seq >= p.appended => p.acked = p.acked.max(seq),
                    Ok(seq) => {
                        return Err(format!(
                            "sync returned {seq} after {} events were appended",
                            p.appended
                        ))
                    }
                    Err(_) if carry_on(fs, &store, p) => {}
                    Err(e) => return stopped(fs, "sync", e),
                },
                Op::Checkpoint => match store.checkpoint() {
                    Ok(rep) if rep.seq != p.appended => {
                        return Err(format!(
                            "checkpoint of seq {} after {} events were appended",
                            rep.seq, p.appended
                        ))
                    }
                    Ok(rep) if rep.outcome != CheckpointOutcome::Busy => {
                        p.acked = p.acked.max(rep.seq)
                    }
                    Ok(_) => {}
                    Err(_) if carry_on(fs, &store, p) => {}
                    Err(e) => return stopped(fs, "checkpoint", e),
                },
                Op::Reopen | Op::ReopenWithCheckpoint => {
                    let closed = if *op == Op::Reopen {
                        store.close()
                    } else {
                        store.close_with(
                            CloseOptions::default()
                                .final_checkpoint(Some(Duration::from_secs(600))),
                        )
                    };
                    match closed {
                        Ok(rep) if rep.durable_seq >= p.appended => {
                            p.acked = p.acked.max(rep.durable_seq)
                        }
                        Ok(rep) => {
                            return Err(format!(
                                "close made {} durable after {} events were appended",
                                rep.durable_seq, p.appended
                            ))
                        }
                        Err(e) => return stopped(fs, "close", e),
                    }
                    let Some(s) = self.open(fs, p, model)? else {
                        return Ok(());
                    };
                    store = s;
                }
                Op::MovePosition => store.position(POSITION_NAME).set(crate::Position {
                    offset: p.appended,
                    inode: POSITION_INODE,
                    timestamp: 0,
                }),
                Op::DropReopen => {
                    drop(store);
                    let Some(s) = self.open(fs, p, model)? else {
                        return Ok(());
                    };
                    store = s;
                }
            }
            p.acked = p.acked.max(store.durable_seq());
        }
        Ok(())
    }
}

/// Every call index below `calls` if there are at most `n`, else `n` drawn from `rng`.
fn sample_calls(rng: &mut Rng, calls: u64, n: usize) -> Vec<u64> {
    if calls <= n as u64 {
        (0..calls).collect()
    } else {
        (0..n).map(|_| rng.below(calls)).collect()
    }
}

/// After an injected fault, a failed operation does not stop the workload: the rest
/// runs (a store that acknowledges anything after a failed `fdatasync` is caught by
/// the crash at the end). The events it counts are the ones the store took.
fn carry_on<S: State>(fs: &SimFs, store: &Store<S>, p: &mut Progress) -> bool {
    if fs.crashed() || fs.faults_fired() == 0 {
        return false;
    }
    p.appended = store.seq();
    true
}

/// `Ok` if `e` comes from the simulated crash (the workload stops there), else the
/// error as a problem.
fn stopped(fs: &SimFs, what: &str, e: Error) -> Checked<()> {
    if !fs.crashed() && fs.faults_fired() > 0 {
        // An injected fault failed this operation or an earlier one (the store may be
        // read-only since): the workload stops, and the crash comes right here.
        Ok(())
    } else if fs.crashed() && e.io_error().is_none_or(is_crash) {
        Ok(())
    } else if fs.crashed() {
        // Once the crash point is reached every call fails as a crash; any other error
        // still comes from a call made before it.
        Err(format!("{what} failed before the crash: {e}"))
    } else {
        Err(format!("{what} failed without a crash: {e}"))
    }
}
