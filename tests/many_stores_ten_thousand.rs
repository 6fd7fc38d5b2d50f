//! Ten thousand stores on one shared scheduler, with the default options: once idle,
//! each holds one descriptor (its `LOCK`), so they fit under a limit of 10,000 plus a
//! small margin. The stores live on a tmpfs (`/dev/shm`), where `fsync` costs nothing,
//! so the test measures descriptors, not the disk; it is skipped (saying why) where
//! there is no tmpfs or the descriptor limit cannot be raised high enough.
mod common;
use common::fds_under;
use snapwal::{CheckpointerConfig, Options, Scheduler, Store};
use std::path::Path;
use std::time::{Duration, Instant};

const STORES: usize = 10_000;

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Actor {
    seen: u64,
}

impl snapwal::State for Actor {
    type Event = u64;
    fn apply(&mut self, n: &u64) {
        self.seen += n;
    }
}

/// Raises the soft descriptor limit to the hard one; returns the soft limit.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[test]
fn ten_thousand_idle_stores_hold_one_descriptor_each() {
    let limit = raise_nofile();
    // Stores, the test harness, the scheduler and a margin for the busy ones.
    let needed = (STORES + 1_000) as u64;
    if limit < needed {
        eprintln!("skipped: descriptor limit {limit} < {needed}; raise `ulimit -n`");
        return;
    }
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm tmpfs");
        return;
    }
    let base = tempfile::Builder::new()
        .prefix("snapwal-10k-")
        .tempdir_in(shm)
        .unwrap();
    let root = base.path().canonicalize().unwrap();
    let scheduler = Scheduler::new(2).unwrap();
    let cfg = CheckpointerConfig::every(Duration::from_millis(100));
    let mut stores = Vec::with_capacity(STORES);
    for i in 0..STORES {
        let store: Store<Actor> =
            Store::open(root.join(format!("actor-{i:05}")), Options::default())
                .unwrap_or_else(|e| panic!("store {i}: {e}"));
        store.start_checkpointer_on(&scheduler, cfg).unwrap();
        stores.push(store);
    }
    assert_eq!(
        fds_under(&root),
        STORES,
        "before any append: the locks only"
    );
    for (i, store) in stores.iter().enumerate() {
        store.append(&(i as u64)).unwrap();
    }
    // Checkpointed, then quiet: parked with their segments closed.
    let start = Instant::now();
    loop {
        let open = fds_under(&root);
        if open <= STORES + 16 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{open} descriptors still open under the stores after 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // One more append to an idle store reopens its segment and it parks again.
    stores[17].append(&1).unwrap();
    assert_eq!(stores[17].current().seen, 18);
    for store in stores {
        store.close().unwrap();
    }
    assert_eq!(fds_under(&root), 0);
    assert_eq!(scheduler.shutdown(Duration::from_secs(5)), 0);
}
