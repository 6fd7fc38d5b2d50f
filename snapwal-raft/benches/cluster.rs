//! Throughput of a 3-node raft cluster in one process: the same cluster (openraft,
//! an in-process network that calls the target `Raft` directly, 64 client writes in
//! flight, a fixed number of entries) on snapwal's durable log store and state machine
//! (`SyncPolicy::Always`) and on a minimal in-memory log store and state machine written
//! for the comparison. The ratio is the cost of durability.
//!
//! ```sh
//! cargo bench -p snapwal-raft --bench cluster
//! SNAPWAL_BENCH_ENTRIES=20000 cargo bench -p snapwal-raft --bench cluster   # longer
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Config, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StoredMembership, Vote,
};
use snapwal_raft::kv::{Kv, KvConfig, Request, Response};
use snapwal_raft::{App, LogOptions, LogStore, StateMachine};

type C = KvConfig;
type Raft = openraft::Raft<C>;

const WRITERS: u64 = 64;
const WARMUP: u64 = 500;

// ---- the in-process network ------------------------------------------------------

type Router = Arc<RwLock<BTreeMap<u64, Raft>>>;

struct InProc(Router);

struct InProcClient {
    target: u64,
    router: Router,
}

impl RaftNetworkFactory<C> for InProc {
    type Network = InProcClient;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> InProcClient {
        InProcClient {
            target,
            router: self.0.clone(),
        }
    }
}

impl InProcClient {
    fn raft(&self) -> Option<Raft> {
        self.router
            .read()
            .expect("router lock")
            .get(&self.target)
            .cloned()
    }
}

fn gone<E: std::error::Error>() -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    let e = std::io::Error::other("no such node");
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetwork<C> for InProcClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.raft().ok_or_else(gone)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self.raft().ok_or_else(gone)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.raft().ok_or_else(gone)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

// ---- the in-memory log store and state machine -----------------------------------

#[derive(Default)]
struct MemLogInner {
    log: BTreeMap<u64, Entry<C>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
}

/// The raft log in a `BTreeMap`; `append` is "durable" at once.
#[derive(Clone, Default)]
struct MemLog(Arc<Mutex<MemLogInner>>);

impl MemLog {
    fn inner(&self) -> std::sync::MutexGuard<'_, MemLogInner> {
        self.0.lock().expect("mem log lock")
    }
}

impl RaftLogReader<C> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        Ok(self
            .inner()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<C> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        let g = self.inner();
        let last = g.log.values().next_back().map(|e| e.log_id).or(g.purged);
        Ok(LogState {
            last_purged_log_id: g.purged,
            last_log_id: last,
        })
    }
    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }
    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.inner().vote = Some(*vote);
        Ok(())
    }
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.inner().vote)
    }
    async fn save_committed(&mut self, c: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        self.inner().committed = c;
        Ok(())
    }
    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.inner().committed)
    }
    async fn append<I>(&mut self, entries: I, cb: LogFlushed<C>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut g = self.inner();
            for e in entries {
                g.log.insert(e.log_id.index, e);
            }
        }
        cb.log_io_completed(Ok(()));
        Ok(())
    }
    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        drop(self.inner().log.split_off(&log_id.index));
        Ok(())
    }
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut g = self.inner();
        g.log = g.log.split_off(&(log_id.index + 1));
        g.purged = Some(log_id);
        Ok(())
    }
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct MemState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    kv: Kv,
}

/// The state machine in memory; a snapshot is the state's JSON.
#[derive(Default)]
struct MemSm {
    state: MemState,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
}

struct MemBuilder(MemState);

fn meta_of(s: &MemState) -> SnapshotMeta<u64, BasicNode> {
    SnapshotMeta {
        last_log_id: s.last_applied,
        last_membership: s.membership.clone(),
        snapshot_id: format!("{:?}", s.last_applied.map(|l| l.index)),
    }
}

impl RaftSnapshotBuilder<C> for MemBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<u64>> {
        let bytes = serde_json::to_vec(&self.0).expect("encode snapshot");
        Ok(Snapshot {
            meta: meta_of(&self.0),
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<C> for MemSm {
    type SnapshotBuilder = MemBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let s = &mut self.state;
        let mut out = Vec::new();
        for e in entries {
            s.last_applied = Some(e.log_id);
            out.push(match &e.payload {
                EntryPayload::Normal(req) => s.kv.apply(&e.log_id, req),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    Response::default()
                }
                EntryPayload::Blank => Response::default(),
            });
        }
        Ok(out)
    }
    async fn get_snapshot_builder(&mut self) -> MemBuilder {
        MemBuilder(self.state.clone())
    }
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        self.state = serde_json::from_slice(&bytes).expect("decode snapshot");
        self.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        Ok(self.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

// ---- the run ---------------------------------------------------------------------

fn config() -> Arc<Config> {
    let c = Config {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    };
    Arc::new(c.validate().expect("config"))
}

/// Forms the cluster, writes `WARMUP` then `entries` entries with `WRITERS` in flight
/// on the leader, and returns the entries per second of the measured part.
async fn run(rafts: Vec<Raft>, router: Router, entries: u64) -> f64 {
    for (i, r) in rafts.iter().enumerate() {
        router
            .write()
            .expect("router lock")
            .insert(i as u64 + 1, r.clone());
    }
    let members: BTreeMap<u64, BasicNode> = (1..=rafts.len() as u64)
        .map(|i| (i, BasicNode::default()))
        .collect();
    let leader = rafts[0].clone();
    leader.initialize(members).await.expect("initialize");
    leader
        .wait(Some(Duration::from_secs(10)))
        .state(openraft::ServerState::Leader, "node 1 leads")
        .await
        .expect("a leader");
    let write = |from: u64, to: u64| {
        let next = Arc::new(AtomicU64::new(from));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (next, leader) = (next.clone(), leader.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            return;
                        }
                        let req = Request::Set {
                            key: format!("k{i:08}"),
                            value: format!("value-{i}"),
                        };
                        leader.client_write(req).await.expect("client_write");
                    }
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await.expect("writer");
            }
        }
    };
    write(0, WARMUP).await;
    let t = Instant::now();
    write(WARMUP, WARMUP + entries).await;
    let rate = entries as f64 / t.elapsed().as_secs_f64();
    // Every node has everything before the stores go.
    let last = leader.metrics().borrow().last_log_index;
    for r in &rafts {
        r.wait(Some(Duration::from_secs(30)))
            .applied_index_at_least(last, "applied on every node")
            .await
            .expect("replicated");
    }
    router.write().expect("router lock").clear();
    for r in rafts {
        r.shutdown().await.expect("shutdown");
    }
    rate
}

/// Which stores the nodes run on.
#[derive(Clone, Copy)]
struct Stores {
    durable_log: bool,
    durable_sm: Option<snapwal::SyncPolicy>,
}

async fn cluster(entries: u64, stores: Stores) -> f64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let router: Router = Arc::default();
    let mut rafts = Vec::new();
    for id in 1..=3u64 {
        let dir = tmp.path().join(format!("node-{id}"));
        let net = InProc(router.clone());
        let raft = match (stores.durable_log, stores.durable_sm) {
            (true, Some(policy)) => {
                let log = LogStore::<C>::open(&dir, LogOptions::default()).expect("log store");
                let sm =
                    StateMachine::<C, Kv>::open(&dir, snapwal::Options::default().sync(policy))
                        .expect("state machine");
                Raft::new(id, config(), net, log, sm).await
            }
            (true, None) => {
                let log = LogStore::<C>::open(&dir, LogOptions::default()).expect("log store");
                Raft::new(id, config(), net, log, MemSm::default()).await
            }
            (false, Some(policy)) => {
                let sm =
                    StateMachine::<C, Kv>::open(&dir, snapwal::Options::default().sync(policy))
                        .expect("state machine");
                Raft::new(id, config(), net, MemLog::default(), sm).await
            }
            (false, None) => {
                Raft::new(id, config(), net, MemLog::default(), MemSm::default()).await
            }
        };
        rafts.push(raft.expect("raft"));
    }
    run(rafts, router, entries).await
}

fn main() {
    let entries: u64 = std::env::var("SNAPWAL_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "3-node raft cluster in one process, {entries} entries, {WRITERS} client writes in flight"
    );
    use snapwal::SyncPolicy::{Always, Never};
    let rows = [
        ("in-memory log store + state machine", false, None),
        ("durable log, in-memory state machine", true, None),
        (
            "in-memory log, durable state machine (Always)",
            false,
            Some(Always),
        ),
        ("durable log + state machine (Never)", true, Some(Never)),
        ("durable log + state machine (Always)", true, Some(Always)),
    ];
    let mut rates = Vec::new();
    for (name, durable_log, durable_sm) in rows {
        let stores = Stores {
            durable_log,
            durable_sm,
        };
        let t = Instant::now();
        let rate = rt.block_on(cluster(entries, stores));
        println!(
            "  {name:<48} {rate:>9.0} entries/s   (run {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        rates.push(rate);
    }
    let (mem, dur) = (rates[0], rates[rates.len() - 1]);
    println!(
        "  durable (Always) / in-memory = {:.3}: durability costs {:.1}x",
        dur / mem,
        mem / dur
    );
}
