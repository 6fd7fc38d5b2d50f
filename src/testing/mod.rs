//! The testing toolkit (feature `testing`; `sim` is an alias): everything needed to
//! test crash recovery, snapwal's own and yours. None of it is in the default build.
//!
//! - [`sim`]: a simulated file system with page-cache semantics, crash images and
//!   injected faults, deterministic from a seed.
//! - [`check`]: a crash-consistency checker that runs a workload on [`sim::SimFs`],
//!   crashes it at every file-system call and checks every image against the
//!   contract (I1 durability, I2 prefix) with your own state type.
//! - [`fuzz`]: the bodies of snapwal's cargo-fuzz targets, as plain functions of the
//!   fuzzer's bytes (the targets in `fuzz/` and `tests/fuzz_replay.rs` call them).
//! - [`mutation`]: planted bugs, switched on one at a time, for the mutation score.
//!
//! ```toml
//! [dev-dependencies]
//! snapwal = { version = "0.1", features = ["testing"] }
//! ```

pub mod check;
pub mod fuzz;
pub mod mutation;
pub mod sim;
