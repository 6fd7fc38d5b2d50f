//! Faults combined with crashes: a call of the workload fails with `EIO` or `ENOSPC`,
//! the workload carries on, and the crash comes at its end. A failed `fdatasync`
//! drops the dirty pages as Linux does, so a store that acknowledged anything after
//! one would lose it; the planted bug that forgets the failure is found. One test, so
//! the process-wide mutation switch is never shared.
#![cfg(feature = "testing")]

use std::path::Path;

use snapwal::fs::Fs;
use snapwal::testing::check::{Checker, Op, Report, Workload};
use snapwal::testing::mutation::{self, Mutation};
use snapwal::testing::sim::{Choices, Fault, FaultError, OpKind, SimFs};
use snapwal::SyncPolicy;

fn workload(sync: SyncPolicy) -> Workload {
    Workload::new(sync)
        .then(Op::Append(12))
        .then(Op::Sync)
        .then(Op::Append(12))
        .then(Op::Checkpoint)
        .then(Op::Append(10))
        .then(Op::Sync)
        .then(Op::Append(6))
        .then(Op::Sync)
}

fn run(sync: SyncPolicy) -> Report {
    // Every call of the crash-free run gets its fault (about 150 runs).
    Checker::tally(workload(sync))
        .faults(1_000)
        .sample(20)
        .random_images(1)
        .run()
}

#[test]
fn a_failed_fdatasync_drops_the_pages_like_linux() {
    let fs = SimFs::new(3);
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let f = fs.create_new(Path::new("/d/f")).unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    f.write_all_at(b"lost", 0).unwrap();
    fs.inject(Fault::on_op(OpKind::SyncData, FaultError::Eio));
    assert!(f.sync_data().is_err(), "the fault is reported once");
    f.sync_data().expect("a retried sync succeeds");
    // Reads still see the bytes (page cache); the disk never got them.
    assert_eq!(&*fs.read(Path::new("/d/f")).unwrap(), b"lost");
    assert!(fs
        .crash_all_kept()
        .read(Path::new("/d/f"))
        .unwrap()
        .is_empty());
}

#[test]
fn faults_then_crashes_recover_what_was_acknowledged_and_catch_a_forgotten_failure() {
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        let report = run(sync);
        eprintln!("{sync:?}: {report}");
        assert!(report.failures.is_empty(), "{report}");
        assert!(report.fault_points > 50, "{report}");
    }
    mutation::set(Some(Mutation::FailedSyncForgotten));
    let report = run(SyncPolicy::Always);
    // A fault failure prints its own replay line, and replaying it fails again.
    let replayed = report.failures.iter().find(|f| f.image.is_some()).map(|f| {
        let (point, error) = (f.crash_point.expect("a point"), f.fault.expect("a fault"));
        (
            f.to_string(),
            Checker::tally(workload(SyncPolicy::Always)).check_fault(
                point,
                error,
                &Choices::Bits(f.bits.clone()),
            ),
        )
    });
    mutation::set(None);
    eprintln!("FailedSyncForgotten: {report}");
    let found = report
        .failures
        .first()
        .expect("a store that forgets a failed fdatasync is caught");
    assert!(found.what.contains("injected"), "{found}");
    let (shown, again) = replayed.expect("an image failure");
    assert!(shown.contains(").check_fault("), "{shown}");
    assert!(
        again.is_err(),
        "the fault replay reproduces the failure: {shown}"
    );

    // A crash-point failure prints a replay line, and replaying it fails the same way.
    mutation::set(Some(Mutation::LyingSync));
    let checker = Checker::tally(workload(SyncPolicy::Always)).sample(10);
    let report = checker.run();
    let replayed = report.failures.iter().find(|f| f.image.is_some()).map(|f| {
        let point = f.crash_point.expect("a crash point");
        (
            f.to_string(),
            checker.check_one(point, &Choices::Bits(f.bits.clone())),
        )
    });
    mutation::set(None);
    let (shown, again) = replayed.expect("a lying fdatasync is caught");
    assert!(
        shown.contains("replay: checker.seed(0x5eed).check_one("),
        "{shown}"
    );
    assert!(again.is_err(), "the replay reproduces the failure: {shown}");
}
