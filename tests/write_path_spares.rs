//! The writer's spare versions: a version a checkpoint (or a reader) holds across
//! appends comes back as a spare when it is let go, caught up with the events it
//! missed, so holding one version at a time costs a clone only until the pool has
//! filled, not once per hold; a version held for ever is let go of once the writer
//! has kept 65,536 events for it.
mod common;

use common::{Counted, CLONES};
use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};
use std::sync::atomic::{AtomicUsize, Ordering};

fn expected(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[test]
fn a_held_version_comes_back_as_a_spare_and_long_holds_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Counted> =
        Store::open(dir.path(), Options::default().sync(SyncPolicy::Never)).unwrap();
    let mut n = 0u64;
    let mut append = |store: &Store<Counted>| {
        n += 1;
        store.append(&n).unwrap();
        n
    };
    // Warm up: hold a version across appends, as a checkpoint does, a few times.
    for _ in 0..3 {
        let held = store.current();
        for _ in 0..10 {
            append(&store);
        }
        assert_eq!(
            held.items,
            expected(held.seq()),
            "a held version never changes"
        );
        drop(held);
        append(&store);
    }
    // The pool is full now: holding one version at a time costs no clone any more.
    let before = CLONES.load(Ordering::SeqCst);
    for _ in 0..50 {
        let held = store.current();
        for _ in 0..10 {
            append(&store);
        }
        drop(held);
        let last = append(&store);
        assert_eq!(store.current().items, expected(last));
    }
    assert_eq!(
        CLONES.load(Ordering::SeqCst) - before,
        0,
        "a checkpoint-like hold costs no clone once the pool has filled"
    );

    // A version held for ever: its events are kept up to the bound, then it is let
    // go (a clone at most now and then, never an unbounded log).
    let forever = store.current();
    let before = CLONES.load(Ordering::SeqCst);
    for _ in 0..(1 << 16) + 100 {
        append(&store);
    }
    let clones = CLONES.load(Ordering::SeqCst) - before;
    assert!(clones <= 4, "{clones} clones while one version was held");
    assert_eq!(forever.items, expected(forever.seq()));
    let last = store.seq();
    assert_eq!(store.current().items, expected(last));
    store.close().unwrap();
    let store: Store<Counted> = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.current().items, expected(last));
    store.close().unwrap();
}

static WRITER_CLONES: AtomicUsize = AtomicUsize::new(0);
static BACKGROUND_CLONES: AtomicUsize = AtomicUsize::new(0);

/// A plain state whose clone is slow (as a large one is), counting where it runs.
#[derive(Default, Serialize, Deserialize, PartialEq, Debug)]
struct Slow {
    items: Vec<u64>,
}

impl Clone for Slow {
    fn clone(&self) -> Self {
        if std::thread::current().name() == Some("snapwal-prepare") {
            BACKGROUND_CLONES.fetch_add(1, Ordering::SeqCst);
        } else {
            WRITER_CLONES.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        Slow {
            items: self.items.clone(),
        }
    }
}

impl State for Slow {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        self.items.push(*e);
    }
}

#[test]
fn after_a_slow_clone_the_next_spare_is_prepared_off_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    // `Always`, so the durable pointer follows `current` and holds no spare.
    let store: Store<Slow> =
        Store::open(dir.path(), Options::default().sync(SyncPolicy::Always)).unwrap();
    // The first append after open has no spare: one clone on the writer's thread,
    // slow, so the second spare is cloned in the background.
    store.append(&1).unwrap();
    assert_eq!(WRITER_CLONES.load(Ordering::SeqCst), 1);
    let start = std::time::Instant::now();
    while BACKGROUND_CLONES.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "no background clone"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Give the prepared copy time to land in its slot, then hold versions across
    // appends as checkpoints do: the writer never clones again.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut n = 1;
    for _ in 0..20 {
        let held = store.current();
        for _ in 0..5 {
            n += 1;
            store.append(&n).unwrap();
        }
        assert_eq!(held.items, expected(held.seq()));
        drop(held);
    }
    assert_eq!(
        WRITER_CLONES.load(Ordering::SeqCst),
        1,
        "no clone on the writer's thread after the first"
    );
    assert_eq!(BACKGROUND_CLONES.load(Ordering::SeqCst), 1);
    assert_eq!(store.current().items, expected(n));
    // A hold as long as a big checkpoint's: the version comes back 600 events behind
    // and is caught up on a background thread, with no copy anywhere.
    for round in 0..3 {
        let held = store.current();
        for _ in 0..600 {
            n += 1;
            store.append(&n).unwrap();
        }
        assert_eq!(held.items, expected(held.seq()), "round {round}");
        drop(held);
        for _ in 0..30 {
            n += 1;
            store.append(&n).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(store.current().items, expected(n), "round {round}");
    }
    assert_eq!(WRITER_CLONES.load(Ordering::SeqCst), 1);
    assert_eq!(BACKGROUND_CLONES.load(Ordering::SeqCst), 1);
    store.close().unwrap();
    let store: Store<Slow> = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.current().items, expected(n));
    store.close().unwrap();
}

thread_local! {
    static APPLIED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A plain state that counts the events applied on each thread.
#[derive(Default, Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Tallied {
    items: Vec<u64>,
}

impl State for Tallied {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        APPLIED_HERE.with(|n| n.set(n.get() + 1));
        self.items.push(*e);
    }
}

/// A version held through a long checkpoint comes back thousands of events behind:
/// the writer does not replay them on its thread (that was a stall as long as the
/// checkpoint's events took to apply); it lets that version go and keeps applying
/// each event about twice, and every version stays exact.
#[test]
fn a_version_held_through_a_long_checkpoint_is_not_caught_up_on_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store: Store<Tallied> =
        Store::open(dir.path(), Options::default().sync(SyncPolicy::Never)).unwrap();
    let mut n = 0u64;
    for _ in 0..10 {
        n += 1;
        store.append(&n).unwrap();
    }
    let held = store.current();
    for _ in 0..5_000 {
        n += 1;
        store.append(&n).unwrap();
    }
    assert_eq!(held.items, expected(held.seq()));
    drop(held);
    let mut worst = 0;
    for _ in 0..100 {
        n += 1;
        let before = APPLIED_HERE.with(|c| c.get());
        store.append(&n).unwrap();
        worst = worst.max(APPLIED_HERE.with(|c| c.get()) - before);
    }
    // One event applied to the version published, plus the catch-up of the spare
    // used (one batch behind, at most a few hundred events after a short hold).
    assert!(
        worst <= 258,
        "an append applied {worst} events on the writer's thread"
    );
    assert_eq!(store.current().items, expected(n));
    store.close().unwrap();
    let store: Store<Tallied> = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.current().items, expected(n));
    store.close().unwrap();
}
