//! Crashes during recovery: every crash image of a workload is first recovered on a
//! copy that crashes partway through its recovery (cutting a torn tail, removing
//! snapshot temp files, removing an empty last segment, syncing what it read), and
//! the images that crash leaves must recover what was acknowledged too.
#![cfg(feature = "testing")]

use snapwal::testing::check::{Checker, Op, Workload};
use snapwal::SyncPolicy;

/// Rotations, checkpoints (temp files at a crash), reopens with and without close,
/// and appends left unsynced (torn tails).
fn workload(sync: SyncPolicy) -> Workload {
    Workload::new(sync)
        .then(Op::Append(30))
        .then(Op::Checkpoint)
        .then(Op::Append(12))
        .then(Op::DropReopen)
        .then(Op::AppendBatch(5))
        .then(Op::Checkpoint)
        .then(Op::Append(6))
}

fn check(sync: SyncPolicy) {
    let report = Checker::tally(workload(sync))
        .sample(40)
        .random_images(1)
        .crash_recovery(4)
        .run();
    eprintln!("{sync:?}: {report}");
    assert!(report.failures.is_empty(), "{report}");
    assert!(report.images > 0);
    // Every image had its recovery crashed (at up to 4 calls, two images each).
    assert!(report.recovery_images >= report.images, "{report}");
}

#[test]
fn a_crash_during_recovery_loses_nothing_acknowledged_under_always() {
    check(SyncPolicy::Always);
}

#[test]
fn a_crash_during_recovery_loses_nothing_acknowledged_under_never() {
    check(SyncPolicy::Never);
}
