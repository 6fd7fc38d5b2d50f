//! One node of the cluster, in its own process: a raft node on a snapwal log store
//! and state machine in its own directory, serving the wire protocol on a TCP port.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Config, Entry, LogId, OptionalSend, RaftLogReader, Snapshot, SnapshotMeta,
    SnapshotPolicy, StorageError, StoredMembership,
};
use snapwal_raft::kv::{Kv, KvConfig, Response};
use snapwal_raft::{LogOptions, LogReader, LogStore, SmReader, SnapshotBuilder, StateMachine};
use tokio::net::{TcpListener, TcpStream};

use crate::rpc::{read_frame, write_frame, Call, Conn, Reply, Status};

/// The raft instance of a node.
pub type Raft = openraft::Raft<KvConfig>;

/// A snapshot every this many applied entries.
pub const SNAPSHOT_EVERY: u64 = 500;
/// Applied entries kept in the log behind the newest snapshot. A node that misses fewer
/// entries than this catches up from the log; one that misses more than
/// `SNAPSHOT_EVERY + KEEP_BEHIND_SNAPSHOT` needs a snapshot.
pub const KEEP_BEHIND_SNAPSHOT: u64 = 1000;

/// The raft configuration every node uses: timeouts generous enough for a debug build
/// on a busy machine, and a small snapshot and purge policy.
pub fn raft_config() -> Config {
    Config {
        cluster_name: "snapwal-kv".to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        install_snapshot_timeout: 2000,
        max_payload_entries: 100,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        max_in_snapshot_log_to_keep: KEEP_BEHIND_SNAPSHOT,
        snapshot_max_chunk_size: 256 << 10,
        ..Default::default()
    }
}

/// The arguments of a node process.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// Its raft id.
    pub id: u64,
    /// Its snapwal directory (log store and state machine).
    pub dir: PathBuf,
    /// Where it listens (`127.0.0.1:0` picks a port); it prints the address it got.
    pub listen: String,
}

impl NodeArgs {
    /// As command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--node".into(),
            self.id.to_string(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--listen".into(),
            self.listen.clone(),
        ]
    }

    /// Parses `--node ID --dir D --listen ADDR` (in any order).
    pub fn parse(args: &[String]) -> Result<NodeArgs, String> {
        let (mut id, mut dir, mut listen) = (None, None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--node" => {
                    let v = value()?;
                    id = Some(v.parse::<u64>().map_err(|e| format!("--node {v}: {e}"))?);
                }
                "--dir" => dir = Some(PathBuf::from(value()?)),
                "--listen" => listen = Some(value()?),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(NodeArgs {
            id: id.ok_or("--node is required")?,
            dir: dir.ok_or("--dir is required")?,
            listen: listen.ok_or("--listen is required")?,
        })
    }
}

/// The state machine as the node runs it: the adapter's, counting the snapshots it
/// installs (the proof that a far-behind node was sent one).
struct CountingSm {
    inner: StateMachine<KvConfig, Kv>,
    installs: Arc<Installs>,
}

/// Snapshots installed since the process started, and the last one's index.
#[derive(Default)]
struct Installs {
    count: AtomicU64,
    last_index: AtomicU64,
}

impl RaftStateMachine<KvConfig> for CountingSm {
    type SnapshotBuilder = SnapshotBuilder<KvConfig, Kv>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        self.inner.applied_state().await
    }
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<KvConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.inner.apply(entries).await
    }
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.inner.get_snapshot_builder().await
    }
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        self.inner.begin_receiving_snapshot().await
    }
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        self.inner.install_snapshot(meta, snapshot).await?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.installs.last_index.store(index, Ordering::Relaxed);
        self.installs.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<KvConfig>>, StorageError<u64>> {
        self.inner.get_current_snapshot().await
    }
}

/// Sends raft's RPCs to the other nodes over [`Conn`]s.
pub struct Network;

/// The client side of one peer.
pub struct PeerClient {
    target: u64,
    conn: Conn,
}

impl RaftNetworkFactory<KvConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            conn: Conn::new(node.addr.clone()),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl PeerClient {
    /// One call; a connection failure is `Unreachable` (raft backs off), a bad reply is
    /// a `Network` error.
    async fn call<E: std::error::Error>(
        &mut self,
        call: Call,
        option: &RPCOption,
    ) -> Result<Reply, RpcErr<E>> {
        self.conn
            .call(&call, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn unexpected<E: std::error::Error>(&self, reply: Reply) -> RpcErr<E> {
        let e = std::io::Error::other(format!("unexpected reply {reply:?}"));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<KvConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<KvConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        match self.call(Call::AppendEntries(rpc), &option).await? {
            Reply::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<KvConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        match self.call(Call::InstallSnapshot(rpc), &option).await? {
            Reply::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        match self.call(Call::Vote(rpc), &option).await? {
            Reply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    fn backoff(&self) -> Backoff {
        // A restarted node is back within a few hundred milliseconds: retry soon.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

/// What a connection handler needs.
struct Node {
    id: u64,
    raft: Raft,
    log: tokio::sync::Mutex<LogReader<KvConfig>>,
    sm: SmReader<KvConfig, Kv>,
    installs: Arc<Installs>,
}

/// Runs a node until the process is killed: opens the stores in `args.dir`, starts
/// raft, listens on `args.listen` and prints `listening <addr>` once it serves.
pub fn run_node(args: &NodeArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(serve(args))
}

async fn serve(args: &NodeArgs) -> Result<(), String> {
    let mut log =
        LogStore::<KvConfig>::open(&args.dir, LogOptions::default().segment_bytes(1 << 20))
            .map_err(|e| format!("open log store in {}: {e}", args.dir.display()))?;
    let sm = StateMachine::<KvConfig, Kv>::open(
        &args.dir,
        snapwal::Options::default().segment_bytes(1 << 20),
    )
    .map_err(|e| format!("open state machine in {}: {e}", args.dir.display()))?;
    let reader = sm.reader();
    let log_reader = log.get_log_reader().await;
    let installs = Arc::new(Installs::default());
    let config = Arc::new(raft_config().validate().map_err(|e| e.to_string())?);
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let raft = Raft::new(
        args.id,
        config,
        Network,
        log,
        CountingSm {
            inner: sm,
            installs: installs.clone(),
        },
    )
    .await
    .map_err(|e| format!("raft: {e}"))?;
    let node = Arc::new(Node {
        id: args.id,
        raft,
        log: tokio::sync::Mutex::new(log_reader),
        sm: reader,
        installs,
    });
    println!("listening {addr}");
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(&node, stream).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

async fn connection(node: &Node, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    while let Some(call) = read_frame::<Call>(&mut stream).await? {
        let reply = handle(node, call).await;
        write_frame(&mut stream, &reply).await?;
    }
    Ok(())
}

fn not_leader(e: &RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Option<Reply> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Some(Reply::NotLeader {
            leader: f.leader_id,
            addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
        }),
        _ => None,
    }
}

async fn handle(node: &Node, call: Call) -> Reply {
    let raft = &node.raft;
    match call {
        Call::AppendEntries(rpc) => Reply::AppendEntries(raft.append_entries(rpc).await),
        Call::Vote(rpc) => Reply::Vote(raft.vote(rpc).await),
        Call::InstallSnapshot(rpc) => Reply::InstallSnapshot(raft.install_snapshot(rpc).await),
        Call::Write(req) => match raft.client_write(req).await {
            Ok(r) => Reply::Written {
                index: r.log_id.index,
            },
            Err(e) => not_leader(&e).unwrap_or_else(|| Reply::Failed(e.to_string())),
        },
        Call::Init { addr } => {
            let members = BTreeMap::from([(node.id, BasicNode { addr })]);
            match raft.initialize(members).await {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Failed(e.to_string()),
            }
        }
        Call::AddLearner { id, addr } => {
            match raft.add_learner(id, BasicNode { addr }, true).await {
                Ok(_) => Reply::Done,
                Err(e) => not_leader(&e).unwrap_or_else(|| Reply::Failed(e.to_string())),
            }
        }
        Call::ChangeMembership(voters) => match raft.change_membership(voters, false).await {
            Ok(_) => Reply::Done,
            Err(e) => not_leader(&e).unwrap_or_else(|| Reply::Failed(e.to_string())),
        },
        Call::Status => Reply::Status(status(node)),
        Call::Dump => {
            let cur = node.sm.current();
            let s = cur.state();
            Reply::Dump {
                last_applied: s.last_applied,
                map: s.app.map.clone(),
            }
        }
        Call::Log { from, to } => {
            let mut log = node.log.lock().await;
            match log.try_get_log_entries(from..=to).await {
                Ok(v) => Reply::Log(v),
                Err(e) => Reply::Failed(e.to_string()),
            }
        }
    }
}

fn status(node: &Node) -> Status {
    let m = node.raft.metrics().borrow().clone();
    let applied = node
        .sm
        .current()
        .state()
        .last_applied
        .map_or(0, |l| l.index);
    Status {
        id: node.id,
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied,
        snapshot: m.snapshot.map_or(0, |l| l.index),
        purged: m.purged.map_or(0, |l| l.index),
        installs: node.installs.count.load(Ordering::Relaxed),
        installed_through: node.installs.last_index.load(Ordering::Relaxed),
        voters: m.membership_config.membership().voter_ids().collect(),
    }
}
