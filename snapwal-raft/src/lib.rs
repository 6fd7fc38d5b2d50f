//! openraft storage on snapwal.
#![deny(missing_docs)]

pub mod error;
pub mod log_store;

pub use error::{Error, Result};
pub use log_store::{LogOptions, LogReader, LogStore};
