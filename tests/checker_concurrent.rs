//! The concurrent crash checker: interleavings chosen from a seed, crashed at sampled
//! calls, every image checked for I1, I2 and I10.
#![cfg(feature = "testing")]

use std::time::{Duration, Instant};

use snapwal::testing::check::{Concurrent, ConcurrentChecker, ConcurrentReport};
use snapwal::SyncPolicy;

fn timed(name: &str, checker: ConcurrentChecker) -> ConcurrentReport {
    let start = Instant::now();
    let report = checker.run();
    eprintln!("{name}: {report} in {:.2?}", start.elapsed());
    assert!(report.failures.is_empty(), "{name}: {report}");
    assert!(report.images > 0, "{name}: nothing explored");
    report
}

#[test]
fn quick() {
    timed(
        "never",
        ConcurrentChecker::new(Concurrent::default())
            .seeds(0..4)
            .crash_points(10),
    );
}
