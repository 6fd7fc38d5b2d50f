//! The writer's spare versions: a version a checkpoint (or a reader) holds across
//! appends comes back as a spare when it is let go, caught up with the events it
//! missed, so holding one version at a time costs a clone only until the pool has
//! filled, not once per hold; a version held for ever is let go of once the writer
//! has kept 65,536 events for it.
use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};
use std::sync::atomic::{AtomicUsize, Ordering};

static CLONES: AtomicUsize = AtomicUsize::new(0);

/// A plain state that counts its clones.
#[derive(Default, Serialize, Deserialize, PartialEq, Debug)]
struct Counted {
    items: Vec<u64>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted {
            items: self.items.clone(),
        }
    }
}

impl State for Counted {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        self.items.push(*e);
    }
}

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
