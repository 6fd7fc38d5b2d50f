//! A crash check driven by a fuzzer's bytes.

use std::fmt;

use super::{tick, Checker, Op, Tally, Workload};
use crate::testing::sim::Choices;
use crate::{State, SyncPolicy};

/// Most operations [`crash_recovery_from_bytes`] decodes.
pub const FUZZ_MAX_OPS: usize = 16;

/// Decodes a fuzzer's bytes into a workload, a crash point and crash-image choices,
/// runs that one check with [`Tally`], and panics if the contract is violated. Never
/// panics otherwise, whatever the bytes; the work is bounded (at most
/// [`FUZZ_MAX_OPS`] operations of at most 8 events). It is
/// [`check_from_bytes`] with snapwal's own test state.
///
/// ```
/// snapwal::testing::check::crash_recovery_from_bytes(&[0, 7, 0, 3, 0x10, 3, 0x21, 0xff, 0x0f]);
/// ```
pub fn crash_recovery_from_bytes(data: &[u8]) {
    check_from_bytes::<Tally, _>(data, tick);
}

/// The body of a cargo-fuzz crash-recovery target for your own state: decodes the
/// fuzzer's bytes into a workload, a crash point and crash-image choices, runs that
/// one check with `S` and the deterministic event maker `events` (the `i`-th event,
/// from 1), and panics if the contract is violated. Never panics otherwise; the work
/// is bounded (at most [`FUZZ_MAX_OPS`] operations of at most 8 events).
///
/// Layout: byte 0: bit 0 sync policy (`Never` if set, else `Always`), bit 1
/// preallocate, bit 2 keep one snapshot instead of two; bytes 1–2: the crash point
/// (little-endian, taken modulo the crash-free run's call count plus one); byte 3:
/// the number of operations (modulo `FUZZ_MAX_OPS + 1`); then one byte per operation
/// (low 3 bits the kind, the rest the count); every byte left is eight crash choices,
/// least significant bit first (`false` once they run out).
#[expect(
    clippy::panic,
    reason = "a contract violation must fail the fuzz target"
)]
pub fn check_from_bytes<S, G>(data: &[u8], events: G)
where
    S: State + PartialEq + fmt::Debug,
    G: Fn(u64) -> S::Event,
{
    let mut bytes = data.iter().copied();
    let flags = bytes.next().unwrap_or(0);
    let point = u16::from_le_bytes([bytes.next().unwrap_or(0), bytes.next().unwrap_or(0)]);
    let n_ops = usize::from(bytes.next().unwrap_or(0)) % (FUZZ_MAX_OPS + 1);
    let mut w = Workload::new(if flags & 1 == 1 {
        SyncPolicy::Never
    } else {
        SyncPolicy::Always
    });
    w.preallocate = flags & 2 != 0;
    w.keep_snapshots = if flags & 4 != 0 { 1 } else { 2 };
    for b in bytes.by_ref().take(n_ops) {
        let n = 1 + u32::from(b >> 3) % 8;
        w.ops.push(match b & 7 {
            0 | 1 => Op::Append(n),
            2 => Op::AppendBatch(n),
            3 => Op::Sync,
            4 => Op::Checkpoint,
            5 => Op::Reopen,
            6 => Op::ReopenWithCheckpoint,
            _ => Op::DropReopen,
        });
    }
    let bits: Vec<bool> = bytes
        .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
        .collect();
    let checker = Checker::<S, G>::new(w, events);
    let total = match checker.total_calls() {
        Ok(t) => t,
        Err(f) => panic!(
            "snapwal crash-consistency violation: {f}\nworkload: {:?}",
            checker.workload
        ),
    };
    let point = u64::from(point) % (total + 1);
    if let Err(f) = checker.check_one(point, &Choices::Bits(bits)) {
        panic!(
            "snapwal crash-consistency violation: {f}\nworkload: {:?}",
            checker.workload
        );
    }
}
