//! The concurrent crash checker: interleavings chosen from a seed, crashed at sampled
//! calls, every image checked for I1, I2 and I10. `SNAPWAL_CHECK_SEEDS=n` runs `n`
//! seeds per workload instead of CI's 20 (a longer exploration).
#![cfg(feature = "testing")]

use std::time::Instant;

use snapwal::testing::check::{Case, Concurrent, ConcurrentChecker, ConcurrentReport};
use snapwal::SyncPolicy;

fn seeds() -> u64 {
    std::env::var("SNAPWAL_CHECK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn timed(name: &str, checker: ConcurrentChecker) -> ConcurrentReport {
    let start = Instant::now();
    let report = checker.run();
    eprintln!("{name}: {report} in {:.2?}", start.elapsed());
    assert!(report.failures.is_empty(), "{name}: {report}");
    assert!(report.images > 0, "{name}: nothing explored");
    report
}

/// CI's exploration: eight workloads, together at least 10,000 crash images.
#[test]
fn sampled_crash_points_of_concurrent_workloads_recover() {
    let workloads = [
        ("always", Concurrent::always()),
        ("never", Concurrent::default()),
        (
            "never, keep 1, no final checkpoint",
            Concurrent {
                keep_snapshots: 1,
                final_checkpoint: false,
                ..Concurrent::default()
            },
        ),
        (
            "never, 3 appenders syncing often",
            Concurrent {
                appenders: 3,
                appends: 10,
                sync_every: 2,
                ..Concurrent::default()
            },
        ),
        (
            "never, large events rotating every few appends",
            Concurrent::rotating(),
        ),
        (
            "never, 3 appenders of large events syncing after each",
            Concurrent::syncing_rotations(),
        ),
        (
            "never, 3 appenders of large events, no syncs",
            Concurrent::unsynced_rotations(),
        ),
        (
            "never, a reader moving its position through many checkpoints",
            Concurrent::position_race(),
        ),
    ];
    let start = Instant::now();
    let mut images = 0;
    let mut points = 0;
    for (name, w) in workloads {
        let report = timed(
            name,
            ConcurrentChecker::new(w)
                .seeds(0..seeds())
                .crash_points(20)
                .random_images(3),
        );
        images += report.images;
        points += report.crash_points;
        assert!(report.images_with_loss > 0 || name == "always");
    }
    eprintln!(
        "concurrent exploration: {points} crash points, {images} images in {:.2?}",
        start.elapsed()
    );
    assert!(images >= 10_000 || seeds() < 20, "{images} images");
}

/// Several stores on one shared checkpoint `Scheduler`: a neighbour store appended
/// to and closed by its own actor while the scheduler checkpoints both (its
/// interleavings follow the clock, as the periodic checkpoints do). Every image must
/// recover both stores, and nothing may touch a store's directory once its `close`
/// returned (I8).
#[test]
fn stores_on_a_shared_scheduler_interleave_and_recover() {
    for (name, w) in [
        ("shared scheduler, never", Concurrent::shared_scheduler()),
        (
            "shared scheduler, always, checkpoints every 1 ms",
            Concurrent {
                sync: SyncPolicy::Always,
                neighbour_appends: 12,
                periodic: Some(std::time::Duration::from_millis(1)),
                ..Concurrent::default()
            },
        ),
    ] {
        timed(
            name,
            ConcurrentChecker::new(w)
                .seeds(0..10)
                .crash_points(12)
                .random_images(3),
        );
    }
}

/// The store's own background threads: the `Interval` sync thread and a periodic
/// checkpointer run while the actors do, and while `close` stops them. Their wake-ups
/// follow the clock, so these interleavings are not reproducible from the seed alone.
#[test]
fn background_threads_interleave_and_recover() {
    let w = Concurrent {
        sync: SyncPolicy::Interval(std::time::Duration::from_millis(1)),
        periodic: Some(std::time::Duration::from_millis(2)),
        checkpoints: 1,
        ..Concurrent::default()
    };
    timed(
        "interval + periodic checkpointer",
        ConcurrentChecker::new(w)
            .seeds(0..8)
            .crash_points(10)
            .random_images(2),
    );
}

/// A file system that panics: each sampled call panics instead of crashing, the
/// workload runs on, and images of its end must still hold every acknowledged event
/// (the panic reaches one operation; the store may turn read-only, never acknowledge
/// what was lost, never hang).
#[test]
fn panics_in_file_system_calls_never_acknowledge_what_is_lost_or_hang() {
    for (name, w) in [
        ("always", Concurrent::always()),
        ("never", Concurrent::default()),
        ("never, large events", Concurrent::rotating()),
    ] {
        timed(
            &format!("panics, {name}"),
            ConcurrentChecker::new(w)
                .panics(true)
                .seeds(0..10)
                .crash_points(12)
                .random_images(3),
        );
    }
}

/// Replays one case given as `SNAPWAL_REPLAY='<case>'` (a failure prints the line);
/// without it, a case of a sampled run replays, and its line round-trips.
#[test]
fn replay_one_case() {
    let case: Case = match std::env::var("SNAPWAL_REPLAY") {
        Ok(line) => line.parse().expect("SNAPWAL_REPLAY holds a case"),
        Err(_) => {
            let checker = ConcurrentChecker::new(Concurrent::default());
            let (trace, _, _) = checker.interleaving(5);
            let case = Case {
                workload: Concurrent::default(),
                seed: 5,
                crash_point: Some(trace.len() as u64 / 2),
                panics: false,
                bits: vec![false, true, true],
            };
            assert_eq!(case.to_string().parse::<Case>(), Ok(case.clone()));
            case
        }
    };
    eprintln!("replaying {case}");
    let result = ConcurrentChecker::new(case.workload.clone()).replay(&case);
    assert!(
        result.is_ok(),
        "{}",
        result.err().map(|f| f.to_string()).unwrap_or_default()
    );
}
