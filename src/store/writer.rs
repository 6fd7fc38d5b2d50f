//! The writer's versions: the published one and the spares the next appends are
//! applied to in place (see the [`store`](super) module docs).
//!
//! # Invariants kept here
//!
//! - **A spare is used only when nobody else holds it** (`Arc::get_mut`), and only
//!   after replaying every event it missed, in seq order, from the log.
//! - **The log keeps every event some spare (or a version being prepared) still
//!   needs, and at most [`MAX_LOG`] of them**: a spare further behind is let go.
//! - **The writer catches a spare up by at most [`MAX_CATCH_UP`] events on its own
//!   thread**: it uses the free spare least behind, and hands a free spare further
//!   behind (the version a checkpoint held through its write comes back with every
//!   event of that time) to a background thread, with the log's batches it missed
//!   (shared, not copied), to catch up there.
//! - **The pool is kept full** ([`MAX_SPARES`], plus one per appender waiting for a
//!   sync with the version it published), so that the version a checkpoint
//!   holds never leaves the writer without a free spare: while a copy of the state is
//!   cheap the writer makes it at once; once a copy took longer than [`SLOW_CLONE`],
//!   it is made on a background thread and joins the pool when ready. The writer
//!   clones on its own thread only when every spare is held and none is being made.
//! - **No version is freed on the writer's thread**: versions let go of go to the
//!   reclaimer thread (one still held elsewhere only loses the writer's reference;
//!   its last holder frees it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::lock;
use crate::{Seq, State, Versioned};

/// The most versions the writer keeps besides `current`: the one published before
/// it, and one a checkpoint (or a reader) may still hold, so that a checkpoint no
/// longer costs a clone once the pool has filled.
const MAX_SPARES: usize = 2;

/// Publications in a row with fewer appenders waiting for a sync after which the
/// pool gives back the room of one ([`Writer::set_holders`]).
const SHRINK_AFTER: u32 = 1024;

/// The most events the writer keeps for its spares to catch up with. A spare further
/// behind (a version a reader holds for a long time) is let go instead.
pub(crate) const MAX_LOG: usize = 1 << 16;

/// A free spare further behind than this many events is caught up on a background
/// thread rather than on the writer's.
pub(crate) const MAX_CATCH_UP: u64 = 256;

/// A clone on the writer's thread slower than this makes the writer prepare its next
/// spare on a background thread instead.
pub(crate) const SLOW_CLONE: Duration = Duration::from_millis(1);

/// A version being made ready on a background thread (a copy of `current`, or a
/// spare catching up); the slot is filled when it is ready.
type Prepared<S> = Arc<Mutex<Option<Arc<Versioned<S>>>>>;

/// One publication's events, shared between the log and background catch-ups.
type Batch<E> = Arc<[E]>;

/// The writer's versions: the published one and the spares it applies the next
/// appends to in place (see the module docs).
pub(crate) struct Writer<S: State> {
    /// The version published last (the same `Arc` as `Inner::published`).
    pub(super) current: Arc<Versioned<S>>,
    /// Older versions, each behind `current` by the events of `log` after its seq; at
    /// most [`Writer::max_spares`].
    spares: Vec<Arc<Versioned<S>>>,
    /// Every event after the oldest spare's seq, in batches with the seq of their
    /// first event, in seq order.
    log: VecDeque<(Seq, Batch<S::Event>)>,
    /// Events in `log`.
    logged: usize,
    /// A version being made ready on a background thread, which will be at this seq
    /// (the log keeps every event after it).
    preparing: Option<(Seq, Prepared<S>)>,
    /// The last clone of the state took longer than [`SLOW_CLONE`].
    slow_clone: bool,
    /// Appenders waiting for a sync while holding the version they published (see
    /// [`Writer::max_spares`]).
    holders: usize,
    /// Publications in a row that saw fewer holders than `holders`.
    fewer_holders: u32,
}

/// Applies the events of `log` after `v.seq`, through `to`. Looks only at the
/// batches it needs (from the back: a spare is usually one batch behind).
fn catch_up<S: State>(v: &mut Versioned<S>, log: &VecDeque<(Seq, Batch<S::Event>)>, to: Seq) {
    let from = v.seq;
    let needed = log
        .iter()
        .rev()
        .take_while(|(first, batch)| {
            first.saturating_add(batch.len() as u64) > from.saturating_add(1)
        })
        .count();
    for (first, batch) in log.range(log.len() - needed..) {
        for (seq, e) in (*first..).zip(batch.iter()) {
            if seq > from && seq <= to {
                v.state.apply(e);
            }
        }
    }
    v.seq = to;
}

impl<S: State> Writer<S> {
    pub(crate) fn new(current: Arc<Versioned<S>>) -> Self {
        Writer {
            current,
            spares: Vec::new(),
            log: VecDeque::new(),
            logged: 0,
            preparing: None,
            slow_clone: false,
            holders: 0,
            fewer_holders: 0,
        }
    }

    /// Notes how many appenders wait for a sync while holding the version they
    /// published (under `Always`); the pool makes room for their versions.
    ///
    /// The room follows a rise at once and a fall slowly (one version per
    /// [`SHRINK_AFTER`] publications with fewer holders): the number waiting swings
    /// with every group commit, and a pool that shrank and grew with it would free
    /// and copy the state again each time.
    pub(super) fn set_holders(&mut self, n: usize) {
        if n >= self.holders {
            self.holders = n;
            self.fewer_holders = 0;
        } else {
            self.fewer_holders += 1;
            if self.fewer_holders >= SHRINK_AFTER {
                self.holders -= 1;
                self.fewer_holders = 0;
            }
        }
    }

    /// The most spares kept: [`MAX_SPARES`], plus one per appender waiting for a sync
    /// with its version. Each such appender holds one version until its group commit
    /// ends; without room for them, every spare would be held whenever several
    /// appenders wait, and the writer would clone the state at every append. The
    /// copies exist either way (each waiting appender holds one); the pool only lets
    /// them be reused.
    fn max_spares(&self) -> usize {
        MAX_SPARES.saturating_add(self.holders)
    }

    /// A version equal to `current` that only this thread holds, to apply the next
    /// events to in place: the free spare least behind (one that no reader,
    /// checkpoint or durable pointer holds any more), caught up with the events it
    /// missed; otherwise a clone of `current` (the fallback), keeping the held spares
    /// for later (they come back when their holders let go). The versions returned
    /// second were let go of (to free off the writer's thread).
    pub(super) fn take_free_version(&mut self) -> (Arc<Versioned<S>>, Vec<Arc<Versioned<S>>>) {
        let mut released = self.collect_prepared();
        // Usually the version published before `current`, one batch behind; the one
        // a checkpoint held comes back far behind and is caught up in the background
        // (see `fill_pool`).
        let freshest = self
            .spares
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Arc::get_mut(s).map(|v| (i, v.seq)))
            .max_by_key(|(_, seq)| *seq)
            .map(|(i, _)| i);
        if let Some(i) = freshest {
            let mut spare = self.spares.swap_remove(i);
            if let Some(v) = Arc::get_mut(&mut spare) {
                // A panic in `apply` here drops the half-caught-up spare (it is out of
                // the pool already); the log still serves the others.
                let to = self.current.seq;
                catch_up(v, &self.log, to);
                self.trim_log();
                return (spare, released);
            }
        }
        // Every spare is held. Keep them, unless the pool is full: then the one
        // furthest behind goes (whoever holds it last frees it).
        if self.spares.len() >= self.max_spares() {
            released.extend(self.release_oldest());
        }
        (self.clone_current(), released)
    }

    /// A copy of `current`, noting whether copying is slow.
    fn clone_current(&mut self) -> Arc<Versioned<S>> {
        let start = Instant::now();
        let copy = Arc::new(Versioned::clone(&self.current));
        self.slow_clone = start.elapsed() > SLOW_CLONE;
        copy
    }

    /// Keeps the pool ready, one background job at a time: a free spare far behind
    /// is caught up on a background thread; then, below [`MAX_SPARES`], a copy of
    /// `current` is made at once while copying is cheap, else in the background.
    fn fill_pool(&mut self) {
        if self.preparing.is_some() {
            return;
        }
        let newest = self.current.seq;
        let far = self
            .spares
            .iter_mut()
            .position(|s| newest.saturating_sub(s.seq) > MAX_CATCH_UP && Arc::get_mut(s).is_some());
        if let Some(i) = far {
            let spare = self.spares.swap_remove(i);
            self.catch_up_in_background(spare);
            return;
        }
        if self.spares.len() >= self.max_spares() {
            return;
        }
        if self.slow_clone {
            let source = Arc::clone(&self.current);
            let seq = source.seq;
            self.in_background(seq, move || Arc::new(Versioned::clone(&source)));
        } else {
            let copy = self.clone_current();
            self.spares.push(copy);
        }
    }

    /// Hands `spare` (only this thread holds it) and the batches it missed to a
    /// background thread that applies them; it joins the pool when done.
    fn catch_up_in_background(&mut self, mut spare: Arc<Versioned<S>>) {
        let to = self.current.seq;
        let from = spare.seq;
        let missed: VecDeque<(Seq, Batch<S::Event>)> = self
            .log
            .iter()
            .filter(|(first, batch)| {
                first.saturating_add(batch.len() as u64) > from.saturating_add(1)
            })
            .cloned()
            .collect();
        self.in_background(to, move || {
            if let Some(v) = Arc::get_mut(&mut spare) {
                catch_up(v, &missed, to);
            }
            spare
        });
    }

    /// Runs `make` on a background thread; its version joins the pool when ready, at
    /// seq `seq`. If the thread cannot start, `make` runs here.
    fn in_background(
        &mut self,
        seq: Seq,
        make: impl FnOnce() -> Arc<Versioned<S>> + Send + 'static,
    ) {
        let slot: Prepared<S> = Arc::default();
        let fill = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("snapwal-prepare".into())
            .spawn(move || {
                let ready = make();
                *lock(&fill) = Some(ready);
            });
        match spawned {
            Ok(_) => self.preparing = Some((seq, slot)),
            Err(e) => {
                tracing::debug!(error = %e, "could not start a thread to prepare a spare; the writer clones when it must");
            }
        }
    }

    /// Moves a version made ready in the background into the pool, if it is ready.
    /// Returns it if the pool has no room for it.
    fn collect_prepared(&mut self) -> Vec<Arc<Versioned<S>>> {
        let ready = match &self.preparing {
            Some((_, slot)) => slot.try_lock().ok().and_then(|mut s| s.take()),
            None => return Vec::new(),
        };
        let mut extra = Vec::new();
        if let Some(v) = ready {
            self.preparing = None;
            if self.spares.len() < self.max_spares() {
                self.spares.push(v);
            } else {
                extra.push(v);
            }
            self.trim_log();
        }
        extra
    }

    /// Records a publication: `old` (the version `current` was) joins the spares and
    /// `events` (the ones applied after it, from seq `first`) the log. Returns spares
    /// let go of to keep the log within [`MAX_LOG`].
    pub(super) fn published(
        &mut self,
        old: Arc<Versioned<S>>,
        first: Seq,
        events: Vec<S::Event>,
    ) -> Vec<Arc<Versioned<S>>> {
        self.spares.push(old);
        self.logged += events.len();
        self.log.push_back((first, Arc::from(events)));
        let mut released = Vec::new();
        // Room made for waiting appenders' versions is given back when they are done.
        while self.spares.len() > self.max_spares() {
            match self.release_oldest() {
                Some(spare) => released.push(spare),
                None => break,
            }
        }
        if self.logged > MAX_LOG && self.preparing.take().is_some() {
            // A background job that takes this long is not waited for: its version is
            // dropped when ready.
            self.trim_log();
        }
        // Spares that far behind go, oldest first (each release trims the log).
        while self.logged > MAX_LOG {
            match self.release_oldest() {
                Some(spare) => released.push(spare),
                None => break,
            }
        }
        self.trim_log();
        self.fill_pool();
        released
    }

    /// Takes the spare furthest behind out of the pool.
    fn release_oldest(&mut self) -> Option<Arc<Versioned<S>>> {
        let (i, _) = self.spares.iter().enumerate().min_by_key(|(_, s)| s.seq)?;
        let out = self.spares.swap_remove(i);
        self.trim_log();
        Some(out)
    }

    /// Drops the batches every spare (and the version being prepared) has applied.
    fn trim_log(&mut self) {
        let preparing = self.preparing.as_ref().map(|(seq, _)| *seq);
        let Some(oldest) = self.spares.iter().map(|s| s.seq).chain(preparing).min() else {
            self.log.clear();
            self.logged = 0;
            return;
        };
        while let Some((first, batch)) = self.log.front() {
            let last = first.saturating_add(batch.len() as u64).saturating_sub(1);
            if last > oldest {
                break;
            }
            self.logged -= batch.len();
            self.log.pop_front();
        }
    }
}
