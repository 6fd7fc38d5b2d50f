//! Bit rot, misdirected writes and latent read errors on durable data (WAL segments,
//! snapshots, positions records), after a clean close and in crash images, each
//! damage then recovered: a typed error naming the file, or a correct recovery that
//! loses nothing the contract does not allow, and keeps the damaged bytes.

use snapwal::testing::check::{Checker, Op, Rot, Workload};
use snapwal::SyncPolicy;

/// Segments rotate, snapshots and a positions record are written, the WAL runs past
/// the last snapshot, then a last checkpoint makes the newest snapshot the state's
/// seq (so a damaged newest snapshot is rewritten under the same name).
fn workload(sync: SyncPolicy) -> Workload {
    Workload::new(sync)
        .then(Op::Append(8))
        .then(Op::Checkpoint)
        .then(Op::Append(12))
        .then(Op::MovePosition)
        .then(Op::Checkpoint)
        .then(Op::MovePosition)
        .then(Op::Append(3))
        .then(Op::Sync)
        .then(Op::Checkpoint)
        .then(Op::MovePosition)
        .then(Op::Checkpoint)
        .then(Op::Append(5))
        .then(Op::Sync)
        .then(Op::Checkpoint)
}

/// Reopens (clean, with a final checkpoint, and a process crash) and a single kept
/// snapshot: a damaged snapshot has no older one to fall back on.
fn reopens() -> Workload {
    let mut w = Workload::new(SyncPolicy::Never)
        .then(Op::Append(10))
        .then(Op::Sync)
        .then(Op::ReopenWithCheckpoint)
        .then(Op::Append(9))
        .then(Op::MovePosition)
        .then(Op::Checkpoint)
        .then(Op::DropReopen)
        .then(Op::Append(6))
        .then(Op::Reopen)
        .then(Op::Append(2))
        .then(Op::Sync);
    w.keep_snapshots = 1;
    w
}

#[test]
fn damaged_durable_files_give_a_typed_error_or_a_correct_recovery() {
    let start = std::time::Instant::now();
    let mut totals = (0, 0, 0, 0, 0, 0, 0);
    for (name, w) in [
        ("always", workload(SyncPolicy::Always)),
        ("never", workload(SyncPolicy::Never)),
        ("reopens, keep 1", reopens()),
    ] {
        let report = Checker::tally(w)
            .seed(0xb17_2077)
            .rot(&Rot::default().crash_points(12).per_file(6));
        println!("{name}: {report}");
        assert!(report.failures.is_empty(), "{name}: {report}");
        assert!(report.damages > 500, "{name}: {report}");
        assert!(
            report.typed_errors > 0 && report.recovered > 0,
            "{name}: {report}"
        );
        assert!(
            report.second_rounds > 0 && report.rewrites > 0,
            "{name}: {report}"
        );
        totals.0 += report.images;
        totals.1 += report.damages;
        totals.2 += report.typed_errors;
        totals.3 += report.recovered;
        totals.4 += report.recovered_short;
        totals.5 += report.rewrites;
        totals.6 += report.rewrite_images;
    }
    println!(
        "total: {} images, {} damages opened: {} typed errors, {} full recoveries, {} allowed shorter; {} snapshot rewrites ({} crash images); 0 violations; {:.1} s",
        totals.0,
        totals.1,
        totals.2,
        totals.3,
        totals.4,
        totals.5,
        totals.6,
        start.elapsed().as_secs_f64()
    );
}
