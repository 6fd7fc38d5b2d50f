//! Installs on a file system without `RENAME_NOREPLACE`: the fallback links the temp
//! file to its final name, then unlinks the temp name. The simulated file system in
//! that mode leaves crash images with the snapshot under both names or under neither,
//! and every crash point of checkpointing workloads must still recover what was
//! acknowledged (crashing recovery too, whose moves aside are renames as well).
#![cfg(feature = "testing")]

use std::path::Path;

use snapwal::fs::Fs;
use snapwal::testing::check::{Checker, Op, Workload};
use snapwal::testing::sim::{Choices, SimFs};
use snapwal::SyncPolicy;

/// `/d/a` holding `data`, durable.
fn durable_file(fs: &SimFs) {
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let f = fs.create_new(Path::new("/d/a")).unwrap();
    f.write_all_at(b"snapshot", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
}

fn names(fs: &SimFs) -> (bool, bool) {
    (fs.exists("/d/a"), fs.exists("/d/b"))
}

#[test]
fn the_link_fallback_can_leave_both_names_or_neither() {
    let fs = SimFs::new(7);
    fs.set_rename_via_link(true);
    durable_file(&fs);
    let before = fs.calls();
    fs.rename_noreplace(Path::new("/d/a"), Path::new("/d/b"))
        .unwrap();
    assert_eq!(fs.calls() - before, 2, "a link and an unlink");
    assert_eq!(names(&fs), (false, true));
    // Pending: the link of b, then the unlink of a (different names: independent).
    let image = |bits: Vec<bool>| fs.crash_image(&Choices::Bits(bits)).0;
    assert_eq!(names(&image(vec![true, true])), (false, true));
    assert_eq!(names(&image(vec![true, false])), (true, true), "both names");
    assert_eq!(names(&image(vec![false, true])), (false, false), "neither");
    assert_eq!(names(&image(vec![false, false])), (true, false));
    // No-replace holds: the link fails when the new name exists.
    let err = fs
        .rename_noreplace(Path::new("/d/b"), Path::new("/d/b"))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);

    // A crash between the two calls: the new name is there, the old one too.
    let fs = SimFs::new(8);
    fs.set_rename_via_link(true);
    durable_file(&fs);
    fs.crash_at(fs.calls() + 1);
    assert!(fs
        .rename_noreplace(Path::new("/d/a"), Path::new("/d/b"))
        .is_err());
    assert_eq!(names(&fs.crash_all_kept()), (true, true));
}

#[test]
fn checkpoints_installed_by_link_and_unlink_recover_at_every_crash_point() {
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        let workload = Workload::new(sync)
            .then(Op::Append(20))
            .then(Op::Checkpoint)
            .then(Op::Append(10))
            .then(Op::Checkpoint)
            .then(Op::Append(5))
            .then(Op::Checkpoint)
            .then(Op::Reopen)
            .then(Op::Append(3));
        let report = Checker::tally(workload)
            .rename_via_link(true)
            .random_images(2)
            .crash_recovery(2)
            .sample(60)
            .run();
        eprintln!("{sync:?}: {report}");
        assert!(report.failures.is_empty(), "{report}");
        assert!(report.crash_points > 0);
    }
}
