//! The mutation score: each planted bug (`snapwal::testing::mutation`) switched on in
//! turn, and the concurrent crash checker run against it from plain workloads until it
//! finds a violation. One test, so the process-wide switch is never shared.
#![cfg(feature = "testing")]

use std::time::{Duration, Instant};

use snapwal::testing::check::{Case, Concurrent, ConcurrentChecker, ConcurrentFailure};
use snapwal::testing::mutation::{self, Mutation};
use snapwal::SyncPolicy;

/// The plain workloads every mutant faces, in order.
fn workloads() -> Vec<(&'static str, Concurrent)> {
    vec![
        ("always", Concurrent::always()),
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
            // Three appenders of large events that never sync: many rotations while
            // others append, and the staging bound is all that keeps a crash of the
            // process from losing what they queued meanwhile.
            "rotations, no syncs",
            Concurrent::unsynced_rotations(),
        ),
        (
            // A neighbour store on one shared checkpoint scheduler, closed while the
            // scheduler may be checkpointing either store.
            "shared scheduler",
            Concurrent::shared_scheduler(),
        ),
        (
            // A reader that appends and moves its position, racing many checkpoints.
            "positions",
            Concurrent::position_race(),
        ),
        (
            // A rotation in nearly every write, most while another appender's group
            // commit is in flight (last: it is there for the rotation race).
            "syncing rotations",
            Concurrent::syncing_rotations(),
        ),
    ]
}

/// Runs the checker against `m` (or no mutant); returns the workload that killed it
/// with its failure, whether replaying the failure's case (as its replay line does)
/// fails again, and the images checked until then.
fn hunt(m: Option<Mutation>, seeds: u64) -> (Option<(String, ConcurrentFailure, bool)>, u64) {
    mutation::set(m);
    let mut images = 0;
    let mut killer = None;
    // A planted bug in the panic guards shows only when a call panics.
    let panics = m == Some(Mutation::PanicUnguarded);
    for (name, w) in workloads() {
        let checker = ConcurrentChecker::new(w)
            .seeds(0..seeds)
            .crash_points(12)
            .random_images(3)
            .stop_at_first(true)
            .panics(panics)
            .hang_after(Duration::from_secs(5));
        let report = checker.run();
        images += report.images;
        if let Some(f) = report.failures.into_iter().next() {
            let case: Case = f
                .to_string()
                .split("SNAPWAL_REPLAY='")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .expect("a replay line")
                .parse()
                .expect("the replay line parses");
            assert_eq!(case, f.case);
            let replayed = checker.replay(&case).is_err();
            killer = Some((name.to_owned(), f, replayed));
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
    // never inject (`crash_with_faults` finds it); a replacing install needs a
    // damaged or existing file under a snapshot's final name, which no store
    // workload makes (`checker_mutations_rot` finds it through `snapshot::write`).
    let elsewhere = [Mutation::FailedSyncForgotten, Mutation::ReplaceOnInstall];
    for m in Mutation::ALL.into_iter().filter(|m| !elsewhere.contains(m)) {
        let start = Instant::now();
        let (killer, images) = hunt(Some(m), 24);
        match &killer {
            Some((name, f, replayed)) => {
                eprintln!(
                    "{m:?}: {name}: {} after {images} images in {:.2?}; its replay line {}",
                    f.to_string().lines().next().unwrap_or(""),
                    start.elapsed(),
                    if *replayed { "fails again" } else { "passed" },
                );
                // Without clock-driven threads a case replays exactly.
                let clocked = f.case.workload.periodic.is_some()
                    || f.case.workload.neighbour_appends > 0
                    || matches!(f.case.workload.sync, SyncPolicy::Interval(_));
                assert!(*replayed || clocked, "{m:?}: its replay passed: {f}");
                killed.push(m);
            }
            None => {
                eprintln!(
                    "{m:?}: NOT KILLED after {images} images in {:.2?}",
                    start.elapsed()
                );
                survived.push(m);
            }
        }
    }
    eprintln!(
        "mutation score of the concurrent checker: {} of {} killed; survived: {survived:?}",
        killed.len(),
        Mutation::ALL.len() - elsewhere.len()
    );
    for m in [
        Mutation::SkipDirSync,
        Mutation::LyingSync,
        Mutation::AckBeforeSync,
        Mutation::PurgeOneTooMany,
        Mutation::PositionsAfterLoad,
        Mutation::RotationRace,
        Mutation::PanicUnguarded,
        Mutation::StagingUnbounded,
        Mutation::CloseLeavesJobRunning,
        Mutation::CloseWithoutCancel,
    ] {
        assert!(killed.contains(&m), "{m:?} survived");
    }
}
