//! The mutation score: each planted bug (`snapwal::testing::mutation`) switched on in
//! turn, and the concurrent crash checker run against it from plain workloads until it
//! finds a violation. One test, so the process-wide switch is never shared.
#![cfg(feature = "testing")]

use std::time::{Duration, Instant};

use snapwal::testing::check::{Concurrent, ConcurrentChecker};
use snapwal::testing::mutation::{self, Mutation};
use snapwal::SyncPolicy;

/// The plain workloads every mutant faces, in order.
fn workloads() -> Vec<(&'static str, Concurrent)> {
    vec![
        (
            "always",
            Concurrent {
                sync: SyncPolicy::Always,
                ..Concurrent::default()
            },
        ),
        ("never", Concurrent::default()),
        (
            // The `Interval` thread's group commits overlap rotations most often
            // (its wake-ups follow the clock).
            "interval",
            Concurrent {
                sync: SyncPolicy::Interval(Duration::from_millis(1)),
                sync_every: 2,
                ..Concurrent::default()
            },
        ),
        (
            "never, keep 1",
            Concurrent {
                keep_snapshots: 1,
                ..Concurrent::default()
            },
        ),
        (
            // Large events: a rotation every few appends, often while a group commit
            // of the `Interval` thread or an appender's `sync` is in flight.
            "rotations",
            Concurrent {
                sync: SyncPolicy::Interval(Duration::from_millis(1)),
                sync_every: 2,
                pad: 600,
                ..Concurrent::default()
            },
        ),
        (
            // A reader that appends and moves its position, racing many checkpoints.
            "positions",
            Concurrent {
                appenders: 1,
                appends: 6,
                sync_every: 3,
                position_updates: 16,
                checkpoints: 8,
                ..Concurrent::default()
            },
        ),
    ]
}

/// Runs the checker against `m` (or no mutant); returns the workload that killed it
/// and the images checked until then.
fn hunt(m: Option<Mutation>, seeds: u64) -> (Option<String>, u64) {
    mutation::set(m);
    let mut images = 0;
    let mut killer = None;
    for (name, w) in workloads() {
        let report = ConcurrentChecker::new(w)
            .seeds(0..seeds)
            .crash_points(12)
            .random_images(3)
            .stop_at_first(true)
            .run();
        images += report.images;
        if let Some(f) = report.failures.first() {
            killer = Some(format!("{name}: {f}"));
            break;
        }
    }
    mutation::set(None);
    (killer, images)
}

#[test]
fn every_planted_bug_is_found_by_the_concurrent_checker() {
    let (clean, images) = hunt(None, 4);
    assert!(clean.is_none(), "the unmutated store fails: {clean:?}");
    assert!(images > 0);
    let mut killed = Vec::new();
    let mut survived = Vec::new();
    // A forgotten fdatasync failure needs an injected fault, which these workloads
    // never inject: `crash_with_faults` finds it.
    for m in Mutation::ALL
        .into_iter()
        .filter(|m| *m != Mutation::FailedSyncForgotten)
    {
        let start = Instant::now();
        let (killer, images) = hunt(Some(m), 12);
        eprintln!(
            "{m:?}: {} after {images} images in {:.2?}",
            killer
                .as_deref()
                .map_or("NOT KILLED", |k| k.lines().next().unwrap_or("")),
            start.elapsed()
        );
        match killer {
            Some(_) => killed.push(m),
            None => survived.push(m),
        }
    }
    eprintln!(
        "mutation score of the concurrent checker: {} of {} killed; survived: {survived:?}",
        killed.len(),
        Mutation::ALL.len() - 1
    );
    // The replacing install is reachable only with a file under the final name, which
    // these workloads never make; `tests/planted_replace_on_install.rs` shows that the
    // switch plants its bug.
    for m in [
        Mutation::SkipDirSync,
        Mutation::LyingSync,
        Mutation::AckBeforeSync,
        Mutation::PurgeOneTooMany,
        Mutation::PositionsAfterLoad,
        Mutation::RotationRace,
    ] {
        assert!(killed.contains(&m), "{m:?} survived");
    }
}
