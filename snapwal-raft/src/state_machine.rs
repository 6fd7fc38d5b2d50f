//! openraft's state machine ([`RaftStateMachine`], [`RaftSnapshotBuilder`]) on a
//! [`snapwal::Store`].
//!
//! The store's state is [`SmState`]: the application's state ([`App`]) plus the last
//! applied log id and the last membership. Each `apply` call is one store event
//! ([`SmEvent::Apply`]) holding its entries; installing a snapshot is one event
//! ([`SmEvent::Install`]) holding the whole received state, made durable and then
//! checkpointed, so a crash at any point leaves either the old state or the new one.
//!
//! A raft snapshot *is* a snapwal snapshot file: `build_snapshot` runs a checkpoint
//! and serves that file's bytes (header, checksums, body) as the snapshot data, and
//! `install_snapshot` validates received bytes with the same checks as a file at open
//! (magic, version, header and body CRC32C, no trailing bytes).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    RaftTypeConfig, Snapshot, SnapshotMeta, StorageError, StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use snapwal::position::Position;
use snapwal::{CheckpointOutcome, Options, Seq, State, Store};

use crate::error::{Error, Result};

/// The application state replicated by raft: deterministic, like [`snapwal::State`].
pub trait App<C: RaftTypeConfig>:
    Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Applies one client request and returns its response. Must be deterministic.
    fn apply(&mut self, log_id: &LogId<C::NodeId>, request: &C::D) -> C::R;
    /// The response for a blank or membership entry.
    fn no_op_response(&self, log_id: &LogId<C::NodeId>) -> C::R;
}

/// Responses produced by `apply`, handed back to the caller of
/// [`RaftStateMachine::apply`]. Shared by every clone of a state; never serialized.
struct Sink<R>(Arc<Mutex<BTreeMap<u64, R>>>);

impl<R> Default for Sink<R> {
    fn default() -> Self {
        Sink(Arc::new(Mutex::new(BTreeMap::new())))
    }
}

impl<R> Clone for Sink<R> {
    fn clone(&self) -> Self {
        Sink(Arc::clone(&self.0))
    }
}

/// Responses by log index. The store may apply an event more than once (it keeps two
/// versions of the state and replays onto the one readers gave back), and `apply` is
/// deterministic, so a replay writes the same response under the same index.
impl<R> Sink<R> {
    fn push(&self, index: u64, r: R) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index, r);
    }
    /// The responses of indices `first..=last`, in order; forgets everything up to
    /// `last` (replays of older entries included).
    fn take(&self, first: u64, last: u64) -> Vec<R> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let rest = map.split_off(&last.saturating_add(1));
        let upto = std::mem::replace(&mut *map, rest);
        upto.into_iter()
            .filter(|(i, _)| *i >= first)
            .map(|(_, r)| r)
            .collect()
    }
    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The state kept in the [`snapwal::Store`]: the application plus raft's bookkeeping.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SmState<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> {
    /// The last log id applied.
    pub last_applied: Option<LogId<C::NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<C::NodeId, C::Node>,
    /// The application's state.
    pub app: A,
    #[serde(skip)]
    sink: Sink<C::R>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> Clone for SmState<C, A> {
    fn clone(&self) -> Self {
        SmState {
            last_applied: self.last_applied.clone(),
            membership: self.membership.clone(),
            app: self.app.clone(),
            sink: self.sink.clone(),
        }
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> Default for SmState<C, A> {
    fn default() -> Self {
        SmState {
            last_applied: None,
            membership: StoredMembership::default(),
            app: A::default(),
            sink: Sink::default(),
        }
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> std::fmt::Debug for SmState<C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmState")
            .field("last_applied", &self.last_applied)
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

/// The events of the state machine's store (postcard in its WAL).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum SmEvent<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> {
    /// Entries applied by one `apply` call, in order.
    Apply(Vec<Entry<C>>),
    /// A snapshot installed: the whole state replaces the current one.
    Install(Box<SmState<C, A>>),
}

impl<C, A> State for SmState<C, A>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    A: App<C>,
{
    type Event = SmEvent<C, A>;

    fn apply(&mut self, event: &SmEvent<C, A>) {
        match event {
            SmEvent::Apply(entries) => {
                for e in entries {
                    self.last_applied = Some(e.log_id.clone());
                    let r = match &e.payload {
                        EntryPayload::Blank => self.app.no_op_response(&e.log_id),
                        EntryPayload::Normal(req) => self.app.apply(&e.log_id, req),
                        EntryPayload::Membership(m) => {
                            self.membership =
                                StoredMembership::new(Some(e.log_id.clone()), m.clone());
                            self.app.no_op_response(&e.log_id)
                        }
                    };
                    self.sink.push(e.log_id.index, r);
                }
            }
            SmEvent::Install(state) => {
                let sink = self.sink.clone();
                *self = (**state).clone();
                self.sink = sink;
            }
        }
    }
}

/// The body of a state-machine snapshot file.
type Body<C, A> = (SmState<C, A>, Vec<(String, Position)>);

/// The snapshot id of the state after `last_applied`: states after the same log id
/// are the same (apply is deterministic), so the id is derived from it.
fn snapshot_id<NID: openraft::NodeId>(last_applied: &Option<LogId<NID>>) -> String {
    match last_applied {
        Some(id) => format!("{}-{}", id.leader_id, id.index),
        None => "none".to_string(),
    }
}

struct Shared<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> {
    store: Store<SmState<C, A>>,
    sink: Sink<C::R>,
    fs: Arc<dyn snapwal::fs::Fs>,
    snap_dir: PathBuf,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> Shared<C, A> {
    /// Runs a checkpoint, waiting (bounded) while another one runs; returns its seq.
    fn checkpoint(&self) -> Result<Seq> {
        for _ in 0..2000 {
            let report = self.store.checkpoint()?;
            if report.outcome != CheckpointOutcome::Busy {
                return Ok(report.seq);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(Error::StateMachine(
            "a checkpoint stayed busy for 10 s".to_string(),
        ))
    }

    /// Reads and decodes the snapshot at `seq`, or the newest one if that one is gone.
    fn read_snapshot(&self, seq: Option<Seq>) -> Result<Option<Snapshot<C>>>
    where
        C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>>,
    {
        let fs = self.store_fs();
        let list = snapwal::snapshot::list(fs.as_ref(), &self.snap_dir)?;
        let path = match seq.and_then(|s| list.iter().find(|(q, _)| *q == s)) {
            Some((_, p)) => p.clone(),
            None => match list.last() {
                Some((_, p)) => p.clone(),
                None => return Ok(None),
            },
        };
        let bytes = fs.read(&path).map_err(|source| Error::Io {
            op: "read snapshot",
            path: path.clone(),
            source,
        })?;
        let bytes = bytes.to_vec();
        let (_, (state, _)) = snapwal::snapshot::decode::<Body<C, A>>(&bytes, &path, None)?;
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                snapshot_id: snapshot_id(&state.last_applied),
                last_log_id: state.last_applied,
                last_membership: state.membership,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }

    /// The snapshot of the state at seq 0 (nothing applied), as snapshot-file bytes.
    fn empty_snapshot(&self) -> Result<Snapshot<C>>
    where
        C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>>,
    {
        let cur = self.store.current();
        let state = cur.state();
        let positions: Vec<(String, Position)> = Vec::new();
        let body = postcard::to_allocvec(&(state, positions)).map_err(Error::Encode)?;
        let header = snapwal::format::SnapshotHeader {
            seq: cur.seq(),
            store_id: 0,
            body_len: body.len() as u64,
            body_crc: crc32c::crc32c(&body),
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(&body);
        Ok(Snapshot {
            meta: SnapshotMeta {
                snapshot_id: snapshot_id(&state.last_applied),
                last_log_id: state.last_applied.clone(),
                last_membership: state.membership.clone(),
            },
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }

    fn store_fs(&self) -> Arc<dyn snapwal::fs::Fs> {
        self.fs.clone()
    }
}

/// openraft's state machine on a [`snapwal::Store`] in `dir/sm/`.
///
/// `apply` appends one event per call under the store's sync policy (the raft log is
/// the durable record of applied entries: after a crash openraft re-applies the
/// committed entries after the recovered `last_applied`, and never purges past the
/// newest snapshot, which is durable). `install_snapshot` and `build_snapshot` are
/// durable when they return.
pub struct StateMachine<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> {
    shared: Arc<Shared<C, A>>,
}

/// Builds snapshots of a [`StateMachine`] (openraft's `SnapshotBuilder`): a snapwal
/// checkpoint, served as that snapshot file's bytes.
pub struct SnapshotBuilder<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> {
    shared: Arc<Shared<C, A>>,
}

/// A read handle on a [`StateMachine`]'s state, usable while openraft owns the state
/// machine (a status or read endpoint of a service). Cheap to clone; each
/// [`SmReader::current`] is one lock-free load.
pub struct SmReader<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> {
    shared: Arc<Shared<C, A>>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> Clone for SmReader<C, A> {
    fn clone(&self) -> Self {
        SmReader {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> std::fmt::Debug for SmReader<C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmReader")
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> SmReader<C, A> {
    /// The current state, as [`StateMachine::current`]. Holding the returned `Arc`
    /// keeps that version alive: the store then applies new entries to a fresh copy,
    /// so drop it once read.
    pub fn current(&self) -> Arc<snapwal::Versioned<SmState<C, A>>> {
        self.shared.store.current()
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> std::fmt::Debug for StateMachine<C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>, A: App<C>> StateMachine<C, A> {
    /// Opens (or creates) the state machine in `dir/sm/` with the store `options`
    /// (their sync policy applies to `apply`; installs always sync).
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        let sm_dir = dir.join("sm");
        let fs = options.fs.clone();
        // Make `dir/sm` itself durable: the store syncs what is inside it.
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        fs.create_dir_all(&sm_dir)
            .map_err(io("create dir", &sm_dir))?;
        fs.sync_dir(dir).map_err(io("fsync dir", dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(io("fsync dir", parent))?;
        }
        let store = Store::<SmState<C, A>>::open(&sm_dir, options)?;
        // Every clone of the state shares the sink of the state recovered at open;
        // the responses of replayed events are dropped.
        let sink = store.current().state().sink.clone();
        sink.clear();
        Ok(StateMachine {
            shared: Arc::new(Shared {
                store,
                sink,
                fs,
                snap_dir: sm_dir.join("snap"),
            }),
        })
    }

    /// The current state (lock-free, as [`Store::current`]).
    pub fn current(&self) -> Arc<snapwal::Versioned<SmState<C, A>>> {
        self.shared.store.current()
    }

    /// A read handle that stays valid after the state machine is handed to openraft.
    pub fn reader(&self) -> SmReader<C, A> {
        SmReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store<SmState<C, A>> {
        &self.shared.store
    }

    fn apply_entries(&self, entries: Vec<Entry<C>>) -> Result<Vec<C::R>> {
        let n = entries.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let first = entries.first().map_or(0, |e| e.log_id.index);
        let last = entries.last().map_or(0, |e| e.log_id.index);
        self.shared.store.append(&SmEvent::Apply(entries))?;
        let responses = self.shared.sink.take(first, last);
        if responses.len() != n {
            return Err(Error::StateMachine(format!(
                "apply produced {} responses for {n} entries",
                responses.len()
            )));
        }
        Ok(responses)
    }

    fn install(&self, meta: &SnapshotMeta<C::NodeId, C::Node>, bytes: &[u8]) -> Result<()> {
        let (_, (state, _)) =
            snapwal::snapshot::decode::<Body<C, A>>(bytes, Path::new("received snapshot"), None)?;
        if state.last_applied != meta.last_log_id || state.membership != meta.last_membership {
            return Err(Error::BadSnapshot(format!(
                "snapshot holds last applied {:?} and membership {:?}, but its metadata says {:?} and {:?}",
                state.last_applied, state.membership, meta.last_log_id, meta.last_membership
            )));
        }
        let seq = self
            .shared
            .store
            .append(&SmEvent::Install(Box::new(state)))?;
        self.shared.store.sync()?;
        let snap = self.shared.checkpoint()?;
        tracing::info!(snapshot = %meta.snapshot_id, seq, snap, "raft snapshot installed");
        Ok(())
    }
}

impl<C, A> RaftSnapshotBuilder<C> for SnapshotBuilder<C, A>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    A: App<C>,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let build = || -> Result<Snapshot<C>> {
            let seq = self.shared.checkpoint()?;
            match self.shared.read_snapshot(Some(seq))? {
                Some(s) => Ok(s),
                // Nothing applied (openraft builds one at startup when the log was
                // purged): the empty state, encoded in memory; there is nothing to keep.
                None => self.shared.empty_snapshot(),
            }
        };
        let snap =
            build().map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        tracing::info!(snapshot = %snap.meta.snapshot_id, "raft snapshot built");
        Ok(snap)
    }
}

impl<C, A> RaftStateMachine<C> for StateMachine<C, A>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    A: App<C>,
{
    type SnapshotBuilder = SnapshotBuilder<C, A>;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<C::NodeId>>,
            StoredMembership<C::NodeId, C::Node>,
        ),
        StorageError<C::NodeId>,
    > {
        let cur = self.shared.store.current();
        let s = cur.state();
        Ok((s.last_applied.clone(), s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let subject = match entries.first() {
            Some(e) => ErrorSubject::Apply(e.log_id.clone()),
            None => ErrorSubject::StateMachine,
        };
        self.apply_entries(entries)
            .map_err(|e| e.into_storage(subject, ErrorVerb::Write))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let bytes = snapshot.into_inner();
        self.install(meta, &bytes).map_err(|e| {
            e.into_storage(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        self.shared
            .read_snapshot(None)
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}
