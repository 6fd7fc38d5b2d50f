//! The wire: one request, one reply, each a frame `len: u32 LE | JSON` on a TCP
//! connection to 127.0.0.1. A connection carries any number of calls, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Entry, LogId};
use serde::{Deserialize, Serialize};
use snapwal_raft::kv::{KvConfig, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest frame either side accepts (a snapshot chunk, a batch of entries).
pub const MAX_FRAME: u32 = 64 << 20;

/// A request to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    /// Raft: replicate entries / heartbeat.
    AppendEntries(AppendEntriesRequest<KvConfig>),
    /// Raft: request a vote.
    Vote(VoteRequest<u64>),
    /// Raft: one chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<KvConfig>),
    /// Client: write through raft (the leader answers; others say who leads).
    Write(Request),
    /// Admin: make this node a one-voter cluster (the first node, once).
    Init {
        /// This node's address, as the others reach it.
        addr: String,
    },
    /// Admin: add a learner (on the leader; returns once it has caught up).
    AddLearner {
        /// Its id.
        id: u64,
        /// Its address.
        addr: String,
    },
    /// Admin: make exactly these nodes the voters (on the leader).
    ChangeMembership(BTreeSet<u64>),
    /// This node's view: role, leader, indexes, snapshot installs.
    Status,
    /// The state machine's contents and last applied log id.
    Dump,
    /// The log entries with index in `from..=to` that this node still holds.
    Log {
        /// First index.
        from: u64,
        /// Last index.
        to: u64,
    },
}

/// A node's status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// The node id.
    pub id: u64,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The last log index.
    pub last_log_index: u64,
    /// The last index applied to the state machine, read from the state machine.
    pub applied: u64,
    /// The last log index covered by this node's newest snapshot.
    pub snapshot: u64,
    /// The last purged log index.
    pub purged: u64,
    /// Snapshots received from a leader and installed since this process started.
    pub installs: u64,
    /// The last log index of the last snapshot installed (0 if none).
    pub installed_through: u64,
    /// The voters of the effective membership.
    pub voters: Vec<u64>,
}

/// A reply.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Call::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To [`Call::Vote`].
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To [`Call::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// The write is committed and applied at this log index.
    Written {
        /// Its log index.
        index: u64,
    },
    /// This node does not lead; this one might.
    NotLeader {
        /// The leader it knows of.
        leader: Option<u64>,
        /// Its address.
        addr: Option<String>,
    },
    /// An admin call succeeded.
    Done,
    /// To [`Call::Status`].
    Status(Status),
    /// To [`Call::Dump`].
    Dump {
        /// The last applied log id.
        last_applied: Option<LogId<u64>>,
        /// The map.
        map: BTreeMap<String, String>,
    },
    /// To [`Call::Log`].
    Log(Vec<Entry<KvConfig>>),
    /// The call failed on the node.
    Failed(String),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(s: &mut TcpStream, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(s: &mut TcpStream) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A connection to one node, opened on first use and reopened after any failure.
#[derive(Debug)]
pub struct Conn {
    addr: String,
    stream: Option<TcpStream>,
}

impl Conn {
    /// A connection to `addr` (not opened yet).
    pub fn new(addr: impl Into<String>) -> Self {
        Conn {
            addr: addr.into(),
            stream: None,
        }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One call, bounded by `timeout` (connect included). Cancel-safe: the stream is
    /// taken out for the exchange and put back only after a whole reply was read, so
    /// after an error, a timeout or a caller that dropped this future (openraft
    /// bounds its RPCs with its own timeout), the next call opens a new connection and
    /// a late reply can never be read as the answer to another call.
    pub async fn call(&mut self, call: &Call, timeout: Duration) -> io::Result<Reply> {
        tokio::time::timeout(timeout, self.call_inner(call))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
    }

    async fn call_inner(&mut self, call: &Call) -> io::Result<Reply> {
        let mut s = match self.stream.take() {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                s
            }
        };
        write_frame(&mut s, call).await?;
        let reply = read_frame(&mut s).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the node",
            )
        })?;
        self.stream = Some(s);
        Ok(reply)
    }
}
