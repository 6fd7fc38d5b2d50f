//! The planted bug `ReplaceOnInstall` (a snapshot install that finds its name taken
//! removes the file there and renames over it) against the bit-rot checker. One test,
//! so the process-wide switch is never shared.
//!
//! Through `Store` the mutant is unreachable: a checkpoint installs only a seq above
//! the snapshot recovery started from, and every snapshot above that one on disk was
//! found damaged at open and moved aside (a failed move fails the open), so the name
//! is always free. It is reachable through `snapwal::snapshot::write`, a building
//! block of its own, whose documented promise it breaks: the checker rewrites every
//! snapshot of its images over its own name, and the mutant deletes a damaged file
//! instead of moving it aside (and, crashed between its remove and its rename, loses
//! a valid snapshot altogether).
#![cfg(feature = "testing")]

use snapwal::testing::check::{Checker, Op, Rot, Workload};
use snapwal::testing::mutation::{self, Mutation};
use snapwal::SyncPolicy;

fn workload() -> Workload {
    Workload::new(SyncPolicy::Always)
        .then(Op::Append(8))
        .then(Op::Checkpoint)
        .then(Op::Append(12))
        .then(Op::Checkpoint)
}

#[test]
fn replace_on_install_is_found_by_the_rot_checker() {
    let rot = Rot::default().crash_points(0).per_file(1);
    let checker = Checker::tally(workload()).seed(0x7e91ace);

    let clean = checker.rot(&rot);
    assert!(clean.failures.is_empty(), "unmutated: {clean}");
    assert!(clean.rewrites > 0, "{clean}");

    mutation::set(Some(Mutation::ReplaceOnInstall));
    let mutated = checker.rot(&rot);
    // Through the store alone (no snapshot rewrites) it stays hidden.
    let store_only = checker.rot(&rot.clone().rewrite(false));
    mutation::set(None);

    println!("unmutated: {clean}");
    println!("ReplaceOnInstall: {mutated}");
    println!("ReplaceOnInstall, store only: {store_only}");
    assert!(
        mutated
            .failures
            .iter()
            .any(|f| f.contains("snapshot::write over") && f.contains(".snap")),
        "ReplaceOnInstall not found: {mutated}"
    );
    assert!(
        mutated.failures.iter().any(|f| f.contains("are gone")),
        "the deleted damaged bytes not reported: {mutated}"
    );
    assert!(store_only.failures.is_empty(), "{store_only}");
}
