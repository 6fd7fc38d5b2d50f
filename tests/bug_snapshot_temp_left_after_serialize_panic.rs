//! Regression (bug 15, the snapshot file's part): a panic while serializing the state
//! inside `snapshot::write` left the temp file behind. A drop guard removes it now, on
//! every path out of the write, and the panic still propagates to the caller.
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::ser::{Serialize, SerializeSeq, Serializer};
use snapwal::fs::RealFs;
use snapwal::snapshot;

/// Serializes `before` chunks of 64 KiB (enough to reach the file), then panics.
struct PanicsMidway {
    before: usize,
}

impl Serialize for PanicsMidway {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let chunk = vec![7u8; 64 * 1024];
        let mut seq = s.serialize_seq(Some(self.before + 1))?;
        for _ in 0..self.before {
            seq.serialize_element(&chunk)?;
        }
        panic!("state serializer panicked");
    }
}

fn names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn bug_snapshot_temp_left_after_serialize_panic() {
    for before in [0, 40] {
        let dir = tempfile::tempdir().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            snapshot::write(&RealFs, dir.path(), 5, 1, &PanicsMidway { before })
        }));
        let payload = result.expect_err("the panic propagates");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"state serializer panicked")
        );
        assert!(
            names(dir.path()).is_empty(),
            "{before}: {:?}",
            names(dir.path())
        );
        // And the name is free for the next try.
        let w = snapshot::write(&RealFs, dir.path(), 5, 1, &"fine").unwrap();
        assert!(w.installed);
        assert_eq!(
            names(dir.path()),
            vec!["00000000000000000005.snap".to_string()]
        );
    }
}
