//! openraft's own storage suite on the adapter, with every case's end state reopened
//! from disk and compared with what the stores held when the case dropped them.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, Snapshot, SnapshotMeta, StorageError,
    StoredMembership, Vote,
};
use snapwal::Options;
use snapwal_raft::kv::{Kv, KvConfig, Response};
use snapwal_raft::{LogOptions, LogReader, LogStore, LogView, SnapshotBuilder, StateMachine};

type C = KvConfig;
type SmView = (
    Option<LogId<u64>>,
    StoredMembership<u64, openraft::BasicNode>,
    Kv,
);

fn log_opts() -> LogOptions {
    // Small segments, so that purge really unlinks files in the suite's cases.
    LogOptions::default().segment_bytes(512).preallocate(false)
}

fn sm_opts() -> Options {
    Options::default().segment_bytes(4096).preallocate(false)
}

/// The log store, recording its view when the suite drops it.
struct CheckedLog {
    inner: Option<LogStore<C>>,
    slot: Arc<Mutex<Option<LogView<C>>>>,
}

impl CheckedLog {
    fn log(&mut self) -> &mut LogStore<C> {
        self.inner.as_mut().expect("open until dropped")
    }
}

impl Drop for CheckedLog {
    fn drop(&mut self) {
        if let Some(log) = self.inner.take() {
            *self.slot.lock().unwrap() = Some(log.view());
            log.close();
        }
    }
}

struct CheckedSm {
    inner: Option<StateMachine<C, Kv>>,
    slot: Arc<Mutex<Option<SmView>>>,
}

impl CheckedSm {
    fn sm(&mut self) -> &mut StateMachine<C, Kv> {
        self.inner.as_mut().expect("open until dropped")
    }
}

fn sm_view(sm: &StateMachine<C, Kv>) -> SmView {
    let cur = sm.current();
    let s = cur.state();
    (s.last_applied, s.membership.clone(), s.app.clone())
}

impl Drop for CheckedSm {
    fn drop(&mut self) {
        if let Some(sm) = self.inner.take() {
            *self.slot.lock().unwrap() = Some(sm_view(&sm));
        }
    }
}

impl RaftLogReader<C> for CheckedLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        self.log().try_get_log_entries(range).await
    }
}

impl RaftLogStorage<C> for CheckedLog {
    type LogReader = LogReader<C>;
    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        self.log().get_log_state().await
    }
    async fn get_log_reader(&mut self) -> LogReader<C> {
        self.log().get_log_reader().await
    }
    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.log().save_vote(vote).await
    }
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.log().read_vote().await
    }
    async fn save_committed(&mut self, c: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        self.log().save_committed(c).await
    }
    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.log().read_committed().await
    }
    async fn append<I>(&mut self, entries: I, cb: LogFlushed<C>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.log().append(entries, cb).await
    }
    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log().truncate(log_id).await
    }
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log().purge(log_id).await
    }
}

impl RaftStateMachine<C> for CheckedSm {
    type SnapshotBuilder = SnapshotBuilder<C, Kv>;
    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        StorageError<u64>,
    > {
        self.sm().applied_state().await
    }
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.sm().apply(entries).await
    }
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.sm().get_snapshot_builder().await
    }
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<std::io::Cursor<Vec<u8>>>, StorageError<u64>> {
        self.sm().begin_receiving_snapshot().await
    }
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        self.sm().install_snapshot(meta, snapshot).await
    }
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        self.sm().get_current_snapshot().await
    }
}

/// One suite case's directory. Dropped after the case has dropped its stores: reopens
/// both from disk and compares them with what they held.
struct Case {
    dir: Option<tempfile::TempDir>,
    log: Arc<Mutex<Option<LogView<C>>>>,
    sm: Arc<Mutex<Option<SmView>>>,
    reopened: Arc<AtomicUsize>,
}

fn reopen_and_compare(dir: &Path, log: Option<LogView<C>>, sm: Option<SmView>) {
    if let Some(before) = log {
        let reopened = LogStore::<C>::open(dir, log_opts()).expect("reopen log store");
        assert_eq!(
            reopened.view(),
            before,
            "log store after reopen in {}",
            dir.display()
        );
        reopened.close();
    }
    if let Some(before) = sm {
        let reopened = StateMachine::<C, Kv>::open(dir, sm_opts()).expect("reopen state machine");
        assert_eq!(sm_view(&reopened), before, "state machine after reopen");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let log = self.log.lock().unwrap().take();
        let sm = self.sm.lock().unwrap().take();
        if let Some(dir) = self.dir.take() {
            if !std::thread::panicking() {
                reopen_and_compare(dir.path(), log, sm);
                self.reopened.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Builder {
    built: Arc<AtomicUsize>,
    reopened: Arc<AtomicUsize>,
}

impl StoreBuilder<C, CheckedLog, CheckedSm, Case> for Builder {
    async fn build(&self) -> Result<(Case, CheckedLog, CheckedSm), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let io = |e: snapwal_raft::Error| {
            e.into_storage(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write)
        };
        let log = LogStore::<C>::open(dir.path(), log_opts()).map_err(io)?;
        let sm = StateMachine::<C, Kv>::open(dir.path(), sm_opts()).map_err(io)?;
        self.built.fetch_add(1, Ordering::Relaxed);
        let log_slot = Arc::new(Mutex::new(None));
        let sm_slot = Arc::new(Mutex::new(None));
        Ok((
            Case {
                dir: Some(dir),
                log: log_slot.clone(),
                sm: sm_slot.clone(),
                reopened: self.reopened.clone(),
            },
            CheckedLog {
                inner: Some(log),
                slot: log_slot,
            },
            CheckedSm {
                inner: Some(sm),
                slot: sm_slot,
            },
        ))
    }
}

/// openraft's suite is a plain function that runs each case in its own runtime.
#[test]
fn openraft_storage_suite_passes_and_every_case_reopens_identical() {
    let built = Arc::new(AtomicUsize::new(0));
    let reopened = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    Suite::test_all(Builder {
        built: built.clone(),
        reopened: reopened.clone(),
    })
    .expect("openraft storage suite");
    let built = built.load(Ordering::Relaxed);
    let reopened = reopened.load(Ordering::Relaxed);
    eprintln!(
        "openraft suite: {built} stores built, {reopened} reopened and compared, {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(built, reopened, "every case's stores were reopened");
    assert!(built >= 30, "the suite built {built} stores");
}
