//! openraft storage on snapwal.
#![deny(missing_docs)]

pub mod error;
pub mod kv;
pub mod log_store;
pub mod state_machine;

pub use error::{Error, Result};
pub use log_store::{LogOptions, LogReader, LogStore, LogView};
pub use state_machine::{App, SmEvent, SmState, SnapshotBuilder, StateMachine};
