//! Several appenders under `SyncPolicy::Always`: each holds the version it published
//! until its group commit ends, and the writer keeps room in its pool for those
//! versions, so the state is copied a bounded number of times, not at every append.
mod common;

use common::{Counted, CLONES};
use snapwal::{Options, Store, SyncPolicy};
use std::sync::atomic::Ordering;

#[test]
fn durable_appenders_reuse_their_versions_instead_of_copying_the_state_each_append() {
    const THREADS: u64 = 8;
    const EACH: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::<Counted>::open(&path, Options::default().sync(SyncPolicy::Always)).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for i in 0..EACH {
                    store.append(&(t * EACH + i)).unwrap();
                }
            });
        }
    });
    let clones = CLONES.load(Ordering::SeqCst);
    let total = THREADS * EACH;
    // Every event in every version exactly once, in seq order of appends.
    let mut items = store.current().state().items.clone();
    assert_eq!(items.len() as u64, total);
    items.sort_unstable();
    assert_eq!(items, (0..total).collect::<Vec<_>>());
    assert_eq!(store.current_durable().seq(), total);
    store.close().unwrap();
    // The pool fills once per waiting appender (and a few more while the number
    // waiting rises); it was about one copy per append when the waiting appenders'
    // versions left the writer without a free spare.
    assert!(
        clones < 4 * THREADS as usize,
        "{clones} clones of the state for {total} appends by {THREADS} appenders"
    );
    let reopened = Store::<Counted>::open(&path, Options::default()).unwrap();
    assert_eq!(reopened.seq(), total);
    reopened.close().unwrap();
}
