//! The writer's versions: the published one and the spares the next appends are
//! applied to in place (see the [`store`](super) module docs).
//!
//! # Invariants kept here
//!
//! - **A spare is used only when nobody else holds it** (`Arc::get_mut`), and only
//!   after replaying every event it missed, in seq order, from the log.
//! - **The log keeps every event some spare (or a copy being prepared) still needs,
//!   and at most [`MAX_LOG`] of them**: a spare further behind is let go.
//! - **The pool is kept full** ([`MAX_SPARES`]), so that the version a checkpoint
//!   holds never leaves the writer without a free spare: while a copy of the state is
//!   cheap the writer makes it at once; once a copy took longer than [`SLOW_CLONE`],
//!   it is made on a background thread and joins the pool when ready. The writer
//!   clones on its own thread only when every spare is held and none is being made.
//! - **The writer catches up at most [`MAX_CATCH_UP`] events per spare**: it uses
//!   the free spare least behind, and lets go of a free spare further behind (the
//!   version a checkpoint held through its write comes back with every event of that
//!   time) instead of replaying them on its thread; a fresh copy takes its place.
//!   Versions let go of are freed on the reclaimer thread, never the writer's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::lock;
use crate::{Seq, State, Versioned};

/// The most versions the writer keeps besides `current`: the one published before
/// it, and one a checkpoint (or a reader) may still hold, so that a checkpoint no
/// longer costs a clone once the pool has filled.
const MAX_SPARES: usize = 2;

/// The most events the writer keeps for its spares to catch up with. A spare further
/// behind (a version a reader holds for a long time) is let go instead.
pub(crate) const MAX_LOG: usize = 1 << 16;

/// A free spare further behind than this many events is let go rather than caught
/// up on the writer's thread (see [`Writer::release_far_behind`]).
pub(crate) const MAX_CATCH_UP: u64 = 256;

/// A clone on the writer's thread slower than this makes the writer prepare its next
/// spare on a background thread instead.
pub(crate) const SLOW_CLONE: Duration = Duration::from_millis(1);

/// A copy of a version being cloned on a background thread; the slot is filled when
/// it is ready.
type Prepared<S> = Arc<Mutex<Option<Arc<Versioned<S>>>>>;

/// The writer's versions: the published one and the spares it applies the next
/// appends to in place (see the module docs).
pub(crate) struct Writer<S: State> {
    /// The version published last (the same `Arc` as `Inner::published`).
    pub(super) current: Arc<Versioned<S>>,
    /// Older versions, each behind `current` by the events of `log` after its seq; at
    /// most [`MAX_SPARES`].
    spares: Vec<Arc<Versioned<S>>>,
    /// Every event after the oldest spare's seq, with its seq, in seq order.
    log: VecDeque<(Seq, S::Event)>,
    /// A spare being cloned on a background thread, from the version at this seq
    /// (the log keeps every event after it).
    preparing: Option<(Seq, Prepared<S>)>,
    /// The last clone of the state took longer than [`SLOW_CLONE`].
    slow_clone: bool,
}

impl<S: State> Writer<S> {
    pub(crate) fn new(current: Arc<Versioned<S>>) -> Self {
        Writer {
            current,
            spares: Vec::new(),
            log: VecDeque::new(),
            preparing: None,
            slow_clone: false,
        }
    }

    /// A version equal to `current` that only this thread holds, to apply the next
    /// events to in place: a spare that no reader, checkpoint or durable pointer holds
    /// any more, caught up with the events it missed; otherwise a clone of `current`
    /// (the fallback), keeping the held spares for later (they come back when their
    /// holders let go). The versions returned second were let go of (to drop outside
    /// the writer section).
    pub(super) fn take_free_version(&mut self) -> (Arc<Versioned<S>>, Vec<Arc<Versioned<S>>>) {
        self.collect_prepared();
        // The free spare least behind: usually the version published before
        // `current`, one batch behind, while the one a checkpoint held comes back far
        // behind.
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
                for (seq, e) in &self.log {
                    if *seq > v.seq {
                        v.state.apply(e);
                    }
                }
                v.seq = self.current.seq;
                // Only now: letting spares go trims the log this one needed.
                let released = self.release_far_behind();
                self.trim_log();
                return (spare, released);
            }
        }
        // Every spare is held. Keep them, unless the pool is full: then the one
        // furthest behind goes (whoever holds it last frees it).
        let mut released = Vec::new();
        if self.spares.len() >= MAX_SPARES {
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

    /// Fills the pool up to [`MAX_SPARES`], so that a version a checkpoint holds
    /// never leaves the writer without a free spare: while copying the state is
    /// cheap, a copy of `current` now (a state that grows from empty fills its pool
    /// while small); once it is slow, on a background thread.
    fn fill_pool(&mut self) {
        if self.spares.len() >= MAX_SPARES || self.preparing.is_some() {
            return;
        }
        if self.slow_clone {
            self.prepare();
        } else {
            let copy = self.clone_current();
            self.spares.push(copy);
        }
    }

    /// Starts cloning `current` on a background thread. If the thread cannot start,
    /// nothing happens: the writer clones on its own thread when it must, as before.
    fn prepare(&mut self) {
        let source = Arc::clone(&self.current);
        let seq = source.seq;
        let slot: Prepared<S> = Arc::default();
        let fill = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("snapwal-prepare".into())
            .spawn(move || {
                let copy = Arc::new(Versioned::clone(&source));
                drop(source);
                *lock(&fill) = Some(copy);
            });
        match spawned {
            Ok(_) => self.preparing = Some((seq, slot)),
            Err(e) => {
                tracing::debug!(error = %e, "could not start a thread to prepare a spare; the writer clones when it must");
            }
        }
    }

    /// Moves a copy prepared in the background into the pool, if it is ready.
    fn collect_prepared(&mut self) {
        let ready = match &self.preparing {
            Some((_, slot)) => slot.try_lock().ok().and_then(|mut s| s.take()),
            None => return,
        };
        if let Some(copy) = ready {
            self.preparing = None;
            if self.spares.len() < MAX_SPARES {
                self.spares.push(copy);
            }
            self.trim_log();
        }
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
        self.log.extend((first..).zip(events));
        let mut released = Vec::new();
        if self.log.len() > MAX_LOG && self.preparing.take().is_some() {
            // A copy that takes this long is not waited for: it is dropped when ready.
            self.trim_log();
        }
        // Spares that far behind go, oldest first (each release trims the log).
        while self.log.len() > MAX_LOG {
            match self.release_oldest() {
                Some(spare) => released.push(spare),
                None => break,
            }
        }
        self.trim_log();
        self.fill_pool();
        released
    }

    /// Takes out of the pool the free spares more than [`MAX_CATCH_UP`] events
    /// behind: catching one up would replay that many events on the writer's thread
    /// (a version a checkpoint held for its whole write comes back with every event
    /// of that time), while a fresh copy is made off it or is cheap (see
    /// [`Writer::fill_pool`]).
    fn release_far_behind(&mut self) -> Vec<Arc<Versioned<S>>> {
        let newest = self.current.seq;
        let (far, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.spares).into_iter().partition(|s| {
                newest.saturating_sub(s.seq) > MAX_CATCH_UP
                    && Arc::strong_count(s) == 1
                    && Arc::weak_count(s) == 0
            });
        self.spares = keep;
        if !far.is_empty() {
            self.trim_log();
        }
        far
    }

    /// Takes the spare furthest behind out of the pool.
    fn release_oldest(&mut self) -> Option<Arc<Versioned<S>>> {
        let (i, _) = self.spares.iter().enumerate().min_by_key(|(_, s)| s.seq)?;
        let out = self.spares.swap_remove(i);
        self.trim_log();
        Some(out)
    }

    /// Drops the events every spare has already applied.
    fn trim_log(&mut self) {
        let preparing = self.preparing.as_ref().map(|(seq, _)| *seq);
        match self.spares.iter().map(|s| s.seq).chain(preparing).min() {
            Some(oldest) => {
                while self.log.front().is_some_and(|(seq, _)| *seq <= oldest) {
                    self.log.pop_front();
                }
            }
            None => self.log.clear(),
        }
    }
}
