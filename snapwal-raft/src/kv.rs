//! A small replicated key-value map: the [`App`] the tests and the example use, and a
//! starting point for your own.

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::LogId;
use serde::{Deserialize, Serialize};

use crate::state_machine::App;

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// The answer to a request: the value the key had before (`None` for no-op entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The previous value.
    pub previous: Option<String>,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of the key-value map: `u64` node ids,
    /// `BasicNode`, `Cursor<Vec<u8>>` snapshots, tokio.
    pub KvConfig:
        D = Request,
        R = Response,
);

/// The key-value map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    /// Keys and values.
    pub map: BTreeMap<String, String>,
}

impl App<KvConfig> for Kv {
    fn apply(&mut self, _log_id: &LogId<u64>, request: &Request) -> Response {
        let previous = match request {
            Request::Set { key, value } => self.map.insert(key.clone(), value.clone()),
            Request::Delete { key } => self.map.remove(key),
        };
        Response { previous }
    }

    fn no_op_response(&self, _log_id: &LogId<u64>) -> Response {
        Response::default()
    }
}
