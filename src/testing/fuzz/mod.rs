//! Bodies of the fuzz targets, as plain functions that take the fuzzer's bytes.
//!
//! Each function panics **only** on a violation of the contract (I2 prefix, I6 bad
//! input): a panic inside snapwal, a record accepted whose checksum or seq is wrong, a
//! valid record refused, an error that names the wrong file or offset, or an
//! allocation out of proportion to the input. Any other outcome is fine. The cargo-fuzz
//! targets in `fuzz/` call them, and `tests/fuzz_replay.rs` replays every committed
//! corpus and regression input through them, so a crash found once stays fixed.
//!
//! - [`wal_decode`]: the bytes are one segment file. They go through the pure scanner
//!   ([`SegmentHeader::decode`](crate::format::SegmentHeader::decode) + [`RecordScan`](crate::format::RecordScan)), then through the whole recovery path
//!   ([`wal::replay`](crate::wal::replay) under each [`RecoveryPolicy`](crate::RecoveryPolicy), and
//!   [`Store::open`](crate::Store::open) followed by an append and a reopen) on an in-memory file system.
//!   The outcome must match an independent model of the format exactly.
//! - [`snapshot_decode`]: the bytes are one snapshot file, through
//!   [`snapshot::decode`](crate::snapshot::decode) and [`Store::open`](crate::Store::open); a snapshot that
//!   decodes must re-encode to the same value (and to the same bytes when its body is
//!   canonical).
//! - `crash_recovery` (feature `sim`): delegates to
//!   [`check::crash_recovery_from_bytes`](crate::testing::check::crash_recovery_from_bytes).
//!
//! Random bytes almost never carry valid CRC32C checksums, so each of the first two
//! also runs on a *repaired* copy of its input, whose magic, version and checksums are
//! made valid: the fuzzer then reaches the seq, length and payload logic behind them.
//!
//! Allocation is checked when the program installs [`CountingAlloc`] as its global
//! allocator (the fuzz targets and the replay test do): the peak of live bytes on the
//! calling thread during one input must stay under [`ALLOC_FACTOR`] times the input
//! length plus [`ALLOC_SLACK`].
#![expect(
    clippy::panic,
    reason = "a fuzz target body reports a contract violation by panicking"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::position::Position;
use crate::testing::sim::SimFs;
use crate::{Options, Seq, State, Store, SyncPolicy};

mod alloc;
mod snapshot;
mod wal;

pub use alloc::{CountingAlloc, ALLOC_FACTOR, ALLOC_SLACK};
pub use snapshot::snapshot_decode;
pub use wal::wal_decode;

/// The event type the harness decodes payloads as: the same serde shape as the test
/// suite's `Entry`, so segments written by the tests are valid inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuzzEvent {
    /// Source of the event.
    pub source: u32,
    /// Number of the event within its source.
    pub n: u64,
    /// Padding.
    pub pad: Vec<u8>,
}

/// The state the harness decodes snapshots as: the same serde shape and `apply` as the
/// test suite's `Ledger`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuzzState {
    /// Events applied.
    pub count: u64,
    /// Order-sensitive digest of the events applied.
    pub digest: u64,
    /// Last `n` seen per source.
    pub last: BTreeMap<u32, u64>,
}

impl State for FuzzState {
    type Event = FuzzEvent;
    fn apply(&mut self, e: &FuzzEvent) {
        self.count = self.count.wrapping_add(1);
        self.digest = self
            .digest
            .wrapping_mul(0x100000001b3)
            .wrapping_add((u64::from(e.source) << 40) ^ e.n ^ e.pad.len() as u64);
        self.last.insert(e.source, e.n);
    }
}

pub(super) type Body = (FuzzState, Vec<(String, Position)>);

const STORE: &str = "/store";

pub(super) fn wal_dir() -> PathBuf {
    Path::new(STORE).join("wal")
}

pub(super) fn snap_dir() -> PathBuf {
    Path::new(STORE).join("snap")
}

fn sim_options(fs: &Arc<SimFs>) -> Options {
    Options::default()
        .sync(SyncPolicy::Never)
        .segment_bytes(4096)
        .preallocate(false)
        .fs(Arc::clone(fs) as Arc<dyn crate::fs::Fs>)
}

/// A simulated file system holding `files` durably.
fn sim_with(files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>) -> Arc<SimFs> {
    match SimFs::with_files(0, files) {
        Ok(fs) => Arc::new(fs),
        Err(e) => panic!("could not build the simulated file system: {e}"),
    }
}

/// What recovery must do with one segment, after `after`.
#[derive(Debug, PartialEq)]
pub(super) enum Expect {
    /// Recovery succeeds: the events applied, the next seq, the torn tail.
    Ok {
        events: Vec<FuzzEvent>,
        next_seq: Seq,
        torn: Option<(u64, u64)>,
        removed: bool,
        quarantined: bool,
    },
    /// Recovery fails with this kind of error at this offset (None: no offset).
    Err(&'static str, Option<u64>),
}

pub(super) fn error_kind(e: &Error, path: &Path) -> (&'static str, Option<u64>) {
    let (kind, p, offset) = match e {
        Error::BadMagic { path } => ("BadMagic", path, None),
        Error::UnsupportedVersion { path, .. } => ("UnsupportedVersion", path, None),
        Error::Corrupt { path, offset, .. } => ("Corrupt", path, Some(*offset)),
        Error::TornTail { path, offset, .. } => ("TornTail", path, Some(*offset)),
        Error::Decode { path, offset, .. } => ("Decode", path, Some(*offset)),
        other => panic!("unexpected error kind: {other}"),
    };
    assert_eq!(p, path, "error names the wrong file: {e}");
    (kind, offset)
}

/// Opens a [`Store`] over `files`, checks it against `expect`, then appends one event,
/// reopens, and checks that the event follows the recovered ones.
pub(super) fn check_store(files: Vec<(PathBuf, Vec<u8>)>, expect: &Expect, base: FuzzState) {
    let fs = sim_with(files);
    let opened = Store::<FuzzState>::open(STORE, sim_options(&fs));
    let (store, mut state) = match (opened, expect) {
        (
            Ok(store),
            Expect::Ok {
                events, next_seq, ..
            },
        ) => {
            let mut state = base;
            for e in events {
                state.apply(e);
            }
            let cur = store.current();
            assert_eq!(
                cur.seq(),
                next_seq.wrapping_sub(1),
                "store opened at the wrong seq"
            );
            assert_eq!(cur.state(), &state, "store opened with the wrong state");
            (store, state)
        }
        (Err(e), Expect::Err(kind, _)) => {
            let got = match &e {
                Error::BadMagic { .. } => "BadMagic",
                Error::UnsupportedVersion { .. } => "UnsupportedVersion",
                Error::Corrupt { .. } => "Corrupt",
                Error::TornTail { .. } => "TornTail",
                Error::Decode { .. } => "Decode",
                other => panic!("unexpected open error: {other}"),
            };
            assert_eq!(got, *kind, "open failed differently: {e}");
            return;
        }
        (Ok(s), want) => panic!(
            "store opened at seq {} where {want:?} was expected",
            s.seq()
        ),
        (Err(e), want) => panic!("open failed with {e} where {want:?} was expected"),
    };
    let event = FuzzEvent {
        source: 0xF0,
        n: 1,
        pad: vec![7; 3],
    };
    let seq = match store.append(&event) {
        Ok(s) => s,
        // The seq space ends at u64::MAX - 1: a typed refusal, never a wrap.
        Err(crate::Error::SeqExhausted) if store.seq() >= Seq::MAX - 1 => return,
        Err(e) => panic!("append after recovery failed: {e}"),
    };
    state.apply(&event);
    if let Err(e) = store.close() {
        panic!("close failed: {e}");
    }
    match Store::<FuzzState>::open(STORE, sim_options(&fs)) {
        Ok(s) => {
            assert_eq!(s.seq(), seq, "reopen lost the appended event");
            assert_eq!(s.current().state(), &state, "reopen state differs");
        }
        Err(e) => panic!("reopen after recovery and one append failed: {e}"),
    }
}

/// Fuzz target body: crash-recovery exploration driven by `data`; see
/// [`check::crash_recovery_from_bytes`](crate::testing::check::crash_recovery_from_bytes).
#[cfg(feature = "testing")]
pub fn crash_recovery(data: &[u8]) {
    crate::testing::check::crash_recovery_from_bytes(data);
}
