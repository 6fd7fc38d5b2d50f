//! openraft's log store ([`RaftLogStorage`], [`RaftLogReader`]) on snapwal's segment log.
//!
//! Every change is one WAL record whose payload is a [`LogRecord`] (see the
//! [crate docs](crate#the-raft-log-records) for the byte layout). Recovery replays the
//! records in WAL seq order and folds them into the in-memory view: the live entries
//! (keyed by raft log index, each with the WAL seq of its record), the vote, the
//! committed log id and the purged log id.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, RaftTypeConfig,
    StorageError, Vote,
};
use serde::{Deserialize, Serialize};
use snapwal::fs::{Fs, LockGuard, RealFs};
use snapwal::wal::{self, Wal, WalOptions};
use snapwal::{RecoveryPolicy, Seq};

use crate::error::{Error, Result};

/// One record of the raft log, as stored in a WAL payload (postcard).
///
/// The outer enum is the record version: a reader that meets a version it does not
/// know returns [`Error::Decode`] naming the segment and offset, never a guess.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum LogRecord<C: RaftTypeConfig<Entry = Entry<C>>> {
    /// Version 1.
    V1(RecordV1<C>),
}

/// The version 1 record kinds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RecordV1<C: RaftTypeConfig<Entry = Entry<C>>> {
    /// A log entry. It replaces any entry at its index or above (openraft's log is
    /// contiguous, so an entry at index `i` supersedes the old suffix from `i`).
    Entry(Entry<C>),
    /// `truncate`: every entry with index `>= .0` written before this record is gone.
    TruncateFrom(u64),
    /// `purge`: every entry with index `<= .0.index` is gone; the id is kept.
    Purged(LogId<C::NodeId>),
    /// `save_vote`.
    Vote(Vote<C::NodeId>),
    /// `save_committed`.
    Committed(Option<LogId<C::NodeId>>),
}

/// What a [`LogStore`] holds, as returned by [`LogStore::view`].
pub struct LogView<C: RaftTypeConfig<Entry = Entry<C>>> {
    /// The live entries, in index order.
    pub entries: Vec<Entry<C>>,
    /// The saved vote.
    pub vote: Option<Vote<C::NodeId>>,
    /// The saved committed log id.
    pub committed: Option<LogId<C::NodeId>>,
    /// The last purged log id.
    pub purged: Option<LogId<C::NodeId>>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Debug for LogView<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogView")
            .field("entries", &self.entries)
            .field("vote", &self.vote)
            .field("committed", &self.committed)
            .field("purged", &self.purged)
            .finish()
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> PartialEq for LogView<C>
where
    Entry<C>: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.vote == other.vote
            && self.committed == other.committed
            && self.purged == other.purged
    }
}

/// Options of a [`LogStore`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Rotate to a new segment past this many bytes. Purge unlinks whole segments, so
    /// smaller segments free space sooner. Default: 16 MiB.
    pub segment_bytes: u64,
    /// Reserve each segment's size when it is created. Default: on.
    pub preallocate: bool,
    /// The file system. Default: [`RealFs`].
    pub fs: Arc<dyn Fs>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 16 << 20,
            preallocate: true,
            fs: Arc::new(RealFs),
        }
    }
}

impl LogOptions {
    /// Sets [`LogOptions::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
    /// Sets [`LogOptions::preallocate`].
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }
    /// Sets [`LogOptions::fs`].
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }
}

/// The folded view of the records.
struct Mem<C: RaftTypeConfig<Entry = Entry<C>>> {
    /// Live entries by index, with the WAL seq of the record holding each.
    entries: BTreeMap<u64, (Seq, Entry<C>)>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
    purged: Option<LogId<C::NodeId>>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Mem<C> {
    fn new() -> Self {
        Mem {
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
        }
    }

    fn fold(&mut self, seq: Seq, rec: RecordV1<C>) {
        match rec {
            RecordV1::Entry(e) => {
                let index = e.log_id.index;
                drop(self.entries.split_off(&index));
                self.entries.insert(index, (seq, e));
            }
            RecordV1::TruncateFrom(index) => drop(self.entries.split_off(&index)),
            RecordV1::Purged(id) => {
                if self.purged.as_ref().is_none_or(|p| p.index < id.index) {
                    self.entries = self.entries.split_off(&(id.index + 1));
                    self.purged = Some(id);
                }
            }
            RecordV1::Vote(v) => self.vote = Some(v),
            RecordV1::Committed(c) => self.committed = c,
        }
    }

    fn last_log_id(&self) -> Option<LogId<C::NodeId>> {
        self.entries
            .last_key_value()
            .map(|(_, (_, e))| e.log_id.clone())
            .or_else(|| self.purged.clone())
    }
}

/// What the log store and its readers share.
struct Shared<C: RaftTypeConfig<Entry = Entry<C>>> {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    wal: Wal,
    mem: Mutex<Mem<C>>,
    _lock: Box<dyn LockGuard>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Shared<C> {
    fn mem(&self) -> MutexGuard<'_, Mem<C>> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stages records and returns the seq of the first.
    fn stage(&self, records: &[RecordV1<C>]) -> Result<Seq>
    where
        C: RaftTypeConfig,
    {
        self.wal.check_writable()?;
        let mut payloads = Vec::with_capacity(records.len());
        for r in records {
            payloads.push(encode(r)?);
        }
        Ok(self
            .wal
            .stage(payloads.iter().map(|(p, c)| (p.as_slice(), *c))))
    }
}

fn encode<C: RaftTypeConfig<Entry = Entry<C>>>(r: &RecordV1<C>) -> Result<(Vec<u8>, u32)> {
    // Serialize `LogRecord::V1(r)` without moving `r`: the outer variant index (0) then
    // the inner record, which is exactly postcard's encoding of the outer enum.
    let mut bytes = vec![0u8];
    bytes.extend(postcard::to_allocvec(r).map_err(Error::Encode)?);
    if bytes.len() > u32::MAX as usize - snapwal::format::FRAME_HEADER_LEN {
        return Err(Error::Encode(postcard::Error::SerializeBufferFull));
    }
    let crc = crc32c::crc32c(&bytes);
    Ok((bytes, crc))
}

type Flush<C> = (Seq, LogFlushed<C>);

/// openraft's log store on a snapwal segment log in `dir/log/`.
///
/// `append` stages the entries and returns; a flusher thread (started by
/// [`LogStore::open`]) runs one group commit (`Wal::sync_through`) for every append
/// waiting and then calls their `LogFlushed` callbacks in order: `Ok` once the entries
/// are durable, the error otherwise. `truncate`, `purge`, `save_vote` and
/// `save_committed` return once their record is durable.
///
/// Entries not yet purged are also held in memory (openraft purges applied entries
/// behind each snapshot, so this is bounded by the snapshot policy).
pub struct LogStore<C: RaftTypeConfig<Entry = Entry<C>>> {
    shared: Arc<Shared<C>>,
    flush_tx: Option<mpsc::Sender<Flush<C>>>,
    flusher: Option<JoinHandle<()>>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .field("durable_seq", &self.shared.wal.durable_seq())
            .finish_non_exhaustive()
    }
}

/// A reader of a [`LogStore`]'s entries (openraft's `LogReader`).
pub struct LogReader<C: RaftTypeConfig<Entry = Entry<C>>> {
    shared: Arc<Shared<C>>,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Debug for LogReader<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A random store id for a new log, without a dependency: std's hasher keys are
/// seeded from the OS.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> LogStore<C> {
    /// Opens (or creates) the log store in `dir`: takes `dir/LOCK`, replays
    /// `dir/log/`, and starts the flusher thread.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        let log_dir = dir.join("log");
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        fs.create_dir_all(&log_dir)
            .map_err(io("create dir", &log_dir))?;
        fs.sync_dir(&dir).map_err(io("fsync dir", &dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(io("fsync dir", parent))?;
        }
        let lock_path = dir.join("LOCK");
        let lock = fs.lock(&lock_path).map_err(io("lock", &lock_path))?;
        // Purge unlinks a prefix of the segments: replay from the first one left.
        let segments = wal::list_segments(fs.as_ref(), &log_dir)?;
        let after = segments
            .first()
            .map_or(0, |(first, _)| first.saturating_sub(1));
        let mut mem = Mem::<C>::new();
        let mut bad: Option<Error> = None;
        let report = wal::replay(
            fs.as_ref(),
            &log_dir,
            after,
            None,
            RecoveryPolicy::TolerateTornTail,
            |rec, path| {
                if bad.is_some() {
                    return Ok(());
                }
                match postcard::from_bytes::<LogRecord<C>>(rec.payload) {
                    Ok(LogRecord::V1(r)) => mem.fold(rec.seq, r),
                    Err(source) => {
                        bad = Some(Error::Decode {
                            path: path.to_path_buf(),
                            offset: rec.offset,
                            seq: rec.seq,
                            source,
                        })
                    }
                }
                Ok(())
            },
        )?;
        if let Some(e) = bad {
            return Err(e);
        }
        tracing::info!(
            dir = %dir.display(),
            records = report.records_replayed,
            segments = report.segments_read,
            entries = mem.entries.len(),
            last_log_id = ?mem.last_log_id(),
            purged = ?mem.purged,
            "raft log recovered"
        );
        let wal = Wal::new(
            fs.clone(),
            log_dir,
            report.store_id.unwrap_or_else(random_id),
            report.next_seq,
            WalOptions {
                segment_bytes: opts.segment_bytes,
                preallocate: opts.preallocate,
            },
        );
        let shared = Arc::new(Shared {
            fs,
            dir,
            wal,
            mem: Mutex::new(mem),
            _lock: lock,
        });
        let (flush_tx, rx) = mpsc::channel::<Flush<C>>();
        let s = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("snapwal-raft-flush".into())
            .spawn(move || flush_loop(&s, &rx))
            .map_err(|source| Error::Io {
                op: "spawn flusher",
                path: shared.dir.clone(),
                source,
            })?;
        Ok(LogStore {
            shared,
            flush_tx: Some(flush_tx),
            flusher: Some(flusher),
        })
    }

    /// The directory of this log store.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A copy of what the log holds now (entries, vote, committed and purged ids):
    /// for tests, tools and comparisons after a reopen.
    pub fn view(&self) -> LogView<C>
    where
        C::D: Clone,
    {
        let mem = self.shared.mem();
        LogView {
            entries: mem.entries.values().map(|(_, e)| e.clone()).collect(),
            vote: mem.vote.clone(),
            committed: mem.committed.clone(),
            purged: mem.purged.clone(),
        }
    }

    /// The last WAL seq known durable.
    pub fn durable_seq(&self) -> Seq {
        self.shared.wal.durable_seq()
    }

    /// Stops the flusher (after it has answered every pending append) and releases
    /// the directory once every [`LogReader`] is dropped too.
    pub fn close(mut self) {
        self.stop_flusher();
    }

    fn stop_flusher(&mut self) {
        drop(self.flush_tx.take());
        if let Some(h) = self.flusher.take() {
            if h.join().is_err() {
                tracing::error!(dir = %self.shared.dir.display(), "raft log flusher panicked");
            }
        }
    }

    fn append_entries(
        &mut self,
        entries: Vec<Entry<C>>,
        callback: LogFlushed<C>,
    ) -> Result<(), (Error, LogFlushed<C>)> {
        if entries.is_empty() {
            // Nothing to write, but the callback must still come after everything
            // appended before: queue it behind them.
            let seq = self.shared.wal.durable_seq();
            return self.queue_flush(seq, callback);
        }
        let records: Vec<RecordV1<C>> = entries.into_iter().map(RecordV1::Entry).collect();
        let n = records.len() as u64;
        let first = {
            let mut mem = self.shared.mem();
            let first = match self.shared.stage(&records) {
                Ok(f) => f,
                Err(e) => return Err((e, callback)),
            };
            for (seq, r) in (first..).zip(records) {
                mem.fold(seq, r);
            }
            first
        };
        self.queue_flush(first + n - 1, callback)
    }

    fn queue_flush(
        &mut self,
        seq: Seq,
        callback: LogFlushed<C>,
    ) -> Result<(), (Error, LogFlushed<C>)> {
        match &self.flush_tx {
            Some(tx) => tx
                .send((seq, callback))
                .map_err(|mpsc::SendError((_, cb))| (Error::Closed, cb)),
            None => Err((Error::Closed, callback)),
        }
    }
}

/// Group commit: take every queued append, one `sync_through` for the highest seq,
/// then answer them in order.
fn flush_loop<C: RaftTypeConfig<Entry = Entry<C>>>(
    shared: &Shared<C>,
    rx: &mpsc::Receiver<Flush<C>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let through = batch.iter().map(|(s, _)| *s).max().unwrap_or(0);
        let result = shared.wal.sync_through(through).map_err(Error::from);
        if let Err(e) = &result {
            tracing::error!(error = %e, through, "raft log flush failed");
        }
        for (_, cb) in batch {
            cb.log_io_completed(match &result {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_io()),
            });
        }
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Drop for LogStore<C> {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> LogStore<C> {
    /// Writes `records` (folding them into memory in WAL order) and makes them durable.
    fn write_records(&self, records: Vec<RecordV1<C>>) -> Result<Seq> {
        let n = records.len() as u64;
        let first = {
            let mut mem = self.shared.mem();
            let first = self.shared.stage(&records)?;
            for (seq, r) in (first..).zip(records) {
                mem.fold(seq, r);
            }
            first
        };
        let last = first + n.saturating_sub(1);
        self.shared.wal.sync_through(last)?;
        Ok(first)
    }

    fn purge_durable(&self, log_id: LogId<C::NodeId>) -> Result<()> {
        // The purged id, and a fresh copy of the vote and committed id, so that the
        // segments holding their older records can go.
        let records = {
            let mem = self.shared.mem();
            let mut r = vec![RecordV1::Purged(log_id)];
            r.extend(mem.vote.clone().map(RecordV1::Vote));
            r.extend(mem.committed.clone().map(|c| RecordV1::Committed(Some(c))));
            r
        };
        let first = self.write_records(records)?;
        // Every record below the first live entry (entries' seqs grow with their
        // index) and below the records just written is superseded.
        let floor = {
            let mem = self.shared.mem();
            let live = mem.entries.first_key_value().map(|(_, (seq, _))| *seq);
            live.unwrap_or(first).min(first).saturating_sub(1)
        };
        self.unlink_through(floor);
        Ok(())
    }

    /// Unlinks the segments whose records all have seq `<= floor`, oldest first, with
    /// a directory sync after each, so that a crash can only leave a contiguous suffix
    /// of segments. Failures are logged: the purge is already durable as a record, and
    /// the next purge retries.
    fn unlink_through(&self, floor: Seq) {
        let s = &*self.shared;
        let dir = s.wal.dir();
        let segments = match wal::list_segments(s.fs.as_ref(), dir) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "raft log purge: listing segments failed");
                return;
            }
        };
        let mut removed = 0usize;
        for pair in segments.windows(2) {
            let [_, (next_first, _)] = pair else { break };
            let through = next_first.saturating_sub(1);
            if through > floor {
                break;
            }
            match s.wal.purge_through(through) {
                Ok(out) => {
                    for (path, r) in out {
                        match r {
                            Ok(()) => removed += 1,
                            Err(e) => {
                                tracing::warn!(segment = %path.display(), error = %e,
                                    "raft log purge: unlink failed; retried at the next purge");
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "raft log purge failed");
                    return;
                }
            }
            if let Err(e) = s.fs.sync_dir(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "raft log purge: fsync dir failed");
                return;
            }
        }
        tracing::debug!(floor, segments_removed = removed, "raft log purged");
    }
}

fn read_range<C, RB>(shared: &Shared<C>, range: RB) -> Vec<Entry<C>>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    RB: RangeBounds<u64>,
    C::D: Clone,
{
    shared
        .mem()
        .entries
        .range(range)
        .map(|(_, (_, e))| e.clone())
        .collect()
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> RaftLogReader<C> for LogReader<C>
where
    C::D: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        Ok(read_range(&self.shared, range))
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> RaftLogReader<C> for LogStore<C>
where
    C::D: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        Ok(read_range(&self.shared, range))
    }
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> RaftLogStorage<C> for LogStore<C>
where
    C::D: Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let mem = self.shared.mem();
        Ok(LogState {
            last_purged_log_id: mem.purged.clone(),
            last_log_id: mem.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.write_records(vec![RecordV1::Vote(vote.clone())])
            .map(drop)
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.shared.mem().vote.clone())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.write_records(vec![RecordV1::Committed(committed)])
            .map(drop)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.shared.mem().committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        match self.append_entries(entries, callback) {
            Ok(()) => Ok(()),
            Err((e, callback)) => {
                callback.log_io_completed(Err(e.to_io()));
                Err(e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        tracing::debug!(%log_id, "raft log truncate");
        self.write_records(vec![RecordV1::TruncateFrom(log_id.index)])
            .map(drop)
            .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        tracing::debug!(%log_id, "raft log purge");
        self.purge_durable(log_id.clone())
            .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}
