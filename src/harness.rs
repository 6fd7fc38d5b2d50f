//! Bodies of the fuzz targets, as plain functions that take the fuzzer's bytes.
//!
//! Each function panics **only** on a violation of the contract (I2 prefix, I6 bad
//! input): a panic inside snapwal, a record accepted whose checksum or seq is wrong, a
//! valid record refused, an error that names the wrong file or offset, or an
//! allocation out of proportion to the input. Any other outcome is fine. The cargo-fuzz
//! targets in `fuzz/` call them, and `tests/fuzz_replay.rs` replays every committed
//! corpus and regression input through them, so a crash found once stays fixed.
//!
//! - [`wal_decode`]: the bytes are one segment file. They go through the pure scanner
//!   ([`SegmentHeader::decode`] + [`RecordScan`]), then through the whole recovery path
//!   ([`wal::replay`](crate::wal::replay) under each [`RecoveryPolicy`], and
//!   [`Store::open`] followed by an append and a reopen) on an in-memory file system.
//!   The outcome must match an independent model of the format exactly.
//! - [`snapshot_decode`]: the bytes are one snapshot file, through
//!   [`snapshot::decode`](crate::snapshot::decode) and [`Store::open`]; a snapshot that
//!   decodes must re-encode to the same value (and to the same bytes when its body is
//!   canonical).
//! - `crash_recovery` (feature `sim`): delegates to
//!   [`check::crash_recovery_from_bytes`](crate::check::crash_recovery_from_bytes).
//!
//! Random bytes almost never carry valid CRC32C checksums, so each of the first two
//! also runs on a *repaired* copy of its input, whose magic, version and checksums are
//! made valid: the fuzzer then reaches the seq, length and payload logic behind them.
//!
//! Allocation is checked when the program installs [`CountingAlloc`] as its global
//! allocator (the fuzz targets and the replay test do): the peak of live bytes on the
//! calling thread during one input must stay under [`ALLOC_FACTOR`] times the input
//! length plus [`ALLOC_SLACK`].

#![expect(
    clippy::panic,
    reason = "a fuzz target body reports a contract violation by panicking"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::format::{
    self, HeaderError, RecordScan, ScanEnd, SegmentHeader, SnapshotHeader, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN,
};
use crate::fs::{FileBytes, Fs, FsFile, LockGuard};
use crate::position::Position;
use crate::wal::lock;
use crate::{Options, RecoveryPolicy, Seq, State, Store, SyncPolicy};

/// Peak live bytes allowed per input byte (on top of [`ALLOC_SLACK`]).
pub const ALLOC_FACTOR: usize = 64;
/// Peak live bytes allowed whatever the input (buffers, paths, small maps).
pub const ALLOC_SLACK: usize = 256 * 1024;

/// The event type the harness decodes payloads as: the same serde shape as the test
/// suite's `Entry`, so segments written by the tests are valid inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuzzEvent {
    /// Source of the event.
    pub source: u32,
    /// Number of the event within its source.
    pub n: u64,
    /// Padding.
    pub pad: Vec<u8>,
}

/// The state the harness decodes snapshots as: the same serde shape and `apply` as the
/// test suite's `Ledger`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuzzState {
    /// Events applied.
    pub count: u64,
    /// Order-sensitive digest of the events applied.
    pub digest: u64,
    /// Last `n` seen per source.
    pub last: BTreeMap<u32, u64>,
}

impl State for FuzzState {
    type Event = FuzzEvent;
    fn apply(&mut self, e: &FuzzEvent) {
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_mul(0x100000001b3)
            .wrapping_add((u64::from(e.source) << 40) ^ e.n ^ e.pad.len() as u64);
        self.last.insert(e.source, e.n);
    }
}

type Body = (FuzzState, Vec<(String, Position)>);

// ---------------------------------------------------------------------------------
// Allocation accounting.

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let paused = PAUSED.try_with(Cell::get).unwrap_or(true);
        let _ = PEAK.try_with(|peak| {
            if !paused && now > peak.get() {
                peak.set(now);
            }
        });
    });
}

/// A global allocator that counts live bytes per thread, so the harness can check
/// that decoding never allocates out of proportion to its input. Install it with
/// `#[global_allocator] static A: snapwal::harness::CountingAlloc = snapwal::harness::CountingAlloc;`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// it upholds `GlobalAlloc`'s contract exactly as `System` does. The accounting only
// touches thread-local `Cell`s with const initializers and no destructors, which
// neither allocate nor unwind.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed through to `System`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation of
        // this allocator is), as the caller guarantees for this allocator.
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is passed through unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and checks its peak allocation on this thread against the input length,
/// when [`CountingAlloc`] is the global allocator.
fn bounded_alloc<T>(what: &str, input_len: usize, f: impl FnOnce() -> T) -> T {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let probe = std::hint::black_box(vec![0u8; 64]);
    drop(probe);
    let counting = PEAK.with(Cell::get) >= base + 64;
    PEAK.with(|p| p.set(LIVE.with(Cell::get)));
    let out = f();
    if counting {
        let peak = PEAK.with(Cell::get).saturating_sub(base).max(0) as usize;
        let bound = input_len
            .saturating_mul(ALLOC_FACTOR)
            .saturating_add(ALLOC_SLACK);
        assert!(
            peak <= bound,
            "{what}: peak allocation {peak} bytes for {input_len} input bytes (bound {bound})"
        );
    }
    out
}

/// Runs `f` without counting its allocations towards the peak: for checks that
/// write (a snapshot writer's buffer is sized for throughput, not for its input).
fn unbounded<T>(f: impl FnOnce() -> T) -> T {
    let was = PAUSED.with(|p| p.replace(true));
    let out = f();
    PAUSED.with(|p| p.set(was));
    out
}

// ---------------------------------------------------------------------------------
// A tiny in-memory file system (no crash semantics: only recovery logic is fuzzed).

type MemFile = Arc<Mutex<Vec<u8>>>;

#[derive(Debug, Default)]
struct MemFs {
    files: Mutex<BTreeMap<PathBuf, MemFile>>,
}

#[derive(Debug)]
struct MemHandle(MemFile);

#[derive(Debug)]
struct MemLock;

impl LockGuard for MemLock {}

fn not_found() -> io::Error {
    io::ErrorKind::NotFound.into()
}

impl MemFs {
    fn with(files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>) -> Arc<Self> {
        let fs = MemFs::default();
        for (p, b) in files {
            lock(&fs.files).insert(p, Arc::new(Mutex::new(b)));
        }
        Arc::new(fs)
    }
    fn get(&self, path: &Path) -> Option<Vec<u8>> {
        lock(&self.files).get(path).map(|f| lock(f).clone())
    }
}

impl FsFile for MemHandle {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut v = lock(&self.0);
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if v.len() < end {
            v.resize(end, 0);
        }
        if let Some(dst) = v.get_mut(start..end) {
            dst.copy_from_slice(buf);
        }
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut v = lock(&self.0);
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if v.len() < len {
            v.resize(len, 0);
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        lock(&self.0).resize(len, 0);
        Ok(())
    }
}

impl Fs for MemFs {
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut files = lock(&self.files);
        if files.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let f = MemFile::default();
        files.insert(path.into(), Arc::clone(&f));
        Ok(Box::new(MemHandle(f)))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = lock(&self.files).get(path).cloned().ok_or_else(not_found)?;
        Ok(Box::new(MemHandle(f)))
    }
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        self.get(path)
            .map(FileBytes::from_vec)
            .ok_or_else(not_found)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(lock(&self.files)
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect())
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = lock(&self.files);
        if files.contains_key(to) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let f = files.remove(from).ok_or_else(not_found)?;
        files.insert(to.into(), f);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.files)
            .remove(path)
            .map(drop)
            .ok_or_else(not_found)
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn lock(&self, _path: &Path) -> io::Result<Box<dyn LockGuard>> {
        Ok(Box::new(MemLock))
    }
}

const STORE: &str = "store";

fn wal_dir() -> PathBuf {
    Path::new(STORE).join("wal")
}

fn snap_dir() -> PathBuf {
    Path::new(STORE).join("snap")
}

fn mem_options(fs: &Arc<MemFs>) -> Options {
    Options::default()
        .sync(SyncPolicy::Never)
        .segment_bytes(4096)
        .preallocate(false)
        .fs(Arc::clone(fs) as Arc<dyn Fs>)
}

// ---------------------------------------------------------------------------------
// Segments.

/// A reference reading of the frame at `offset`: `Some((frame length, seq, payload))`
/// when it is a valid record carrying `expected` seq.
fn valid_frame(data: &[u8], offset: usize, expected: Option<Seq>) -> Option<(usize, Seq, &[u8])> {
    let head = data.get(offset..)?.get(..FRAME_HEADER_LEN)?;
    let (len, rest) = head.split_first_chunk::<4>()?;
    let (crc, rest) = rest.split_first_chunk::<4>()?;
    let seq = u64::from_le_bytes(*rest.first_chunk::<8>()?);
    let len = u32::from_le_bytes(*len) as usize;
    let payload = data.get(offset + FRAME_HEADER_LEN..)?.get(..len)?;
    let computed = crc32c::crc32c_append(crc32c::crc32c(payload), &seq.to_le_bytes());
    let valid = len != 0 && computed == u32::from_le_bytes(*crc) && Some(seq) == expected;
    (valid && seq != Seq::MAX).then_some((FRAME_HEADER_LEN + len, seq, payload))
}

/// One record the scanner yielded, checked against the bytes.
#[derive(Debug, Clone)]
struct Rec {
    seq: Seq,
    offset: u64,
    /// The decoded event, or the kind of error recovery reports for it.
    event: Result<FuzzEvent, &'static str>,
}

/// The scanner's reading of a segment, checked against the reference reading.
#[derive(Debug)]
struct SegmentModel {
    first: Seq,
    records: Vec<Rec>,
    end: ScanEnd,
}

/// Scans `data` with [`RecordScan`] and checks every record and the end against the
/// reference reading. `None` when the header does not decode.
fn scan_model(data: &[u8]) -> Option<SegmentModel> {
    let header = SegmentHeader::decode(data).ok()?;
    let mut scan = RecordScan::new(data, header.first_seq);
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut expected = Some(header.first_seq);
    for rec in scan.by_ref() {
        let Some((frame, seq, payload)) = valid_frame(data, pos, expected) else {
            panic!(
                "scan yielded seq {} at {} but the reference finds no valid record there",
                rec.seq, rec.offset
            );
        };
        assert_eq!(
            (rec.seq, rec.offset, rec.payload),
            (seq, pos as u64, payload),
            "record mismatch"
        );
        let event = match postcard::take_from_bytes::<FuzzEvent>(payload) {
            Ok((e, [])) => Ok(e),
            Ok(_) => Err("Corrupt"),
            Err(_) => Err("Decode"),
        };
        records.push(Rec {
            seq,
            offset: pos as u64,
            event,
        });
        pos += frame;
        expected = seq.checked_add(1);
    }
    let end = scan.end().cloned();
    // The prefix is maximal: no valid record follows it.
    assert!(
        valid_frame(data, pos, expected).is_none(),
        "scan stopped at {pos} before a valid record"
    );
    let rest = data.get(pos..).unwrap_or(&[]);
    let want = if rest.iter().all(|&b| b == 0) {
        ScanEnd::Clean { offset: pos as u64 }
    } else {
        ScanEnd::Torn {
            offset: pos as u64,
            bytes: rest.len() as u64,
            reason: String::new(),
        }
    };
    match (&end, &want) {
        (
            Some(ScanEnd::Torn { offset, bytes, .. }),
            ScanEnd::Torn {
                offset: o,
                bytes: b,
                ..
            },
        ) if (offset, bytes) == (o, b) => {}
        (Some(got), want) => assert_eq!(got, want, "scan end"),
        (None, _) => panic!("scan ended without recording how"),
    }
    Some(SegmentModel {
        first: header.first_seq,
        records,
        end: want,
    })
}

/// What recovery must do with one segment, after `after`.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Recovery succeeds: the events applied, the next seq, the torn tail.
    Ok {
        events: Vec<FuzzEvent>,
        next_seq: Seq,
        torn: Option<(u64, u64)>,
        removed: bool,
        quarantined: bool,
    },
    /// Recovery fails with this kind of error at this offset (None: no offset).
    Err(&'static str, Option<u64>),
}

fn expect_replay(
    data: &[u8],
    model: Option<&SegmentModel>,
    after: Seq,
    policy: RecoveryPolicy,
) -> Expect {
    let next = after + 1;
    let Some(m) = model else {
        return match SegmentHeader::decode(data) {
            Err(HeaderError::Short | HeaderError::Zeroed) => Expect::Ok {
                events: Vec::new(),
                next_seq: next,
                torn: None,
                removed: true,
                quarantined: false,
            },
            Err(HeaderError::BadMagic) => Expect::Err("BadMagic", None),
            Err(HeaderError::Version(_)) => Expect::Err("UnsupportedVersion", None),
            _ if policy == RecoveryPolicy::SalvagePrefix => Expect::Ok {
                events: Vec::new(),
                next_seq: next,
                torn: None,
                removed: false,
                quarantined: true,
            },
            _ => Expect::Err("Corrupt", Some(0)),
        };
    };
    let mut events = Vec::new();
    for r in m.records.iter().filter(|r| r.seq > after) {
        match &r.event {
            Ok(e) => events.push(e.clone()),
            Err(kind) => return Expect::Err(kind, Some(r.offset)),
        }
    }
    let scanned_next = m.records.last().map_or(m.first, |r| r.seq + 1);
    let torn = match m.end {
        ScanEnd::Torn { offset, bytes, .. } => Some((offset, bytes)),
        ScanEnd::Clean { .. } => None,
    };
    if let (Some((offset, _)), RecoveryPolicy::Strict) = (torn, policy) {
        return Expect::Err("TornTail", Some(offset));
    }
    Expect::Ok {
        events,
        next_seq: scanned_next.max(next),
        torn,
        removed: m.records.is_empty(),
        quarantined: false,
    }
}

fn error_kind(e: &Error, path: &Path) -> (&'static str, Option<u64>) {
    let (kind, p, offset) = match e {
        Error::BadMagic { path } => ("BadMagic", path, None),
        Error::UnsupportedVersion { path, .. } => ("UnsupportedVersion", path, None),
        Error::Corrupt { path, offset, .. } => ("Corrupt", path, Some(*offset)),
        Error::TornTail { path, offset, .. } => ("TornTail", path, Some(*offset)),
        Error::Decode { path, offset, .. } => ("Decode", path, Some(*offset)),
        other => panic!("unexpected error kind: {other}"),
    };
    assert_eq!(p, path, "error names the wrong file: {e}");
    (kind, offset)
}

/// Runs [`crate::wal::replay`] on a file system holding only `data` as `name`.
fn check_replay(
    data: &[u8],
    model: Option<&SegmentModel>,
    first: Seq,
    after: Seq,
    policy: RecoveryPolicy,
) {
    let path = wal_dir().join(format::segment_name(first));
    let fs = MemFs::with([(path.clone(), data.to_vec())]);
    let expect = expect_replay(data, model, after, policy);
    let mut events = Vec::new();
    let mut seqs = Vec::new();
    let got = crate::wal::replay(fs.as_ref(), &wal_dir(), after, None, policy, |rec, p| {
        assert_eq!(p, path, "record attributed to the wrong file");
        let (e, rest) = postcard::take_from_bytes::<FuzzEvent>(rec.payload).map_err(|source| {
            Error::Decode {
                path: p.into(),
                offset: rec.offset,
                source,
            }
        })?;
        if !rest.is_empty() {
            return Err(Error::Corrupt {
                path: p.into(),
                offset: rec.offset,
                reason: "event has trailing bytes".into(),
            });
        }
        seqs.push(rec.seq);
        events.push(e);
        Ok(())
    });
    let got = match got {
        Ok(r) => {
            let first_applied = after + 1;
            for (i, s) in seqs.iter().enumerate() {
                assert_eq!(
                    *s,
                    first_applied + i as u64,
                    "replayed seqs are not consecutive from {first_applied}"
                );
            }
            assert_eq!(r.records_replayed, events.len() as u64);
            let quarantined = !r.quarantined.is_empty();
            if quarantined {
                assert!(
                    fs.get(&path).is_none(),
                    "a quarantined segment is still in place"
                );
            }
            Expect::Ok {
                events,
                next_seq: r.next_seq,
                torn: r.torn_tail.map(|(p, o, b)| {
                    assert_eq!(p, path);
                    (o, b)
                }),
                removed: fs.get(&path).is_none() && !quarantined,
                quarantined,
            }
        }
        Err(e) => {
            let (kind, offset) = error_kind(&e, &path);
            Expect::Err(kind, offset)
        }
    };
    assert_eq!(
        got, expect,
        "replay under {policy:?} of a segment named {first} after {after}"
    );
    if let Expect::Ok { next_seq, .. } = got {
        // Recovering again changes nothing: same records, same next seq.
        let mut again = 0u64;
        let r = crate::wal::replay(fs.as_ref(), &wal_dir(), after, None, policy, |_, _| {
            again += 1;
            Ok(())
        });
        match r {
            Ok(r) => assert_eq!(r.next_seq, next_seq, "second recovery disagrees"),
            Err(e) => panic!("second recovery failed: {e}"),
        }
    }
}

/// Opens a [`Store`] over `files`, checks it against `expect`, then appends one event,
/// reopens, and checks that the event follows the recovered ones.
fn check_store(files: Vec<(PathBuf, Vec<u8>)>, expect: &Expect, base: FuzzState) {
    let fs = MemFs::with(files);
    let opened = Store::<FuzzState>::open(STORE, mem_options(&fs));
    let (store, mut state) = match (opened, expect) {
        (
            Ok(store),
            Expect::Ok {
                events, next_seq, ..
            },
        ) => {
            let mut state = base;
            for e in events {
                state.apply(e);
            }
            let cur = store.current();
            assert_eq!(
                cur.seq(),
                next_seq.wrapping_sub(1),
                "store opened at the wrong seq"
            );
            assert_eq!(cur.state(), &state, "store opened with the wrong state");
            (store, state)
        }
        (Err(e), Expect::Err(kind, _)) => {
            let got = match &e {
                Error::BadMagic { .. } => "BadMagic",
                Error::UnsupportedVersion { .. } => "UnsupportedVersion",
                Error::Corrupt { .. } => "Corrupt",
                Error::TornTail { .. } => "TornTail",
                Error::Decode { .. } => "Decode",
                other => panic!("unexpected open error: {other}"),
            };
            assert_eq!(got, *kind, "open failed differently: {e}");
            return;
        }
        (Ok(s), want) => panic!(
            "store opened at seq {} where {want:?} was expected",
            s.seq()
        ),
        (Err(e), want) => panic!("open failed with {e} where {want:?} was expected"),
    };
    let event = FuzzEvent {
        source: 0xF0,
        n: 1,
        pad: vec![7; 3],
    };
    let seq = match store.append(&event) {
        Ok(s) => s,
        // The seq space ends at u64::MAX - 1: a typed refusal, never a wrap.
        Err(crate::Error::SeqExhausted) if store.seq() >= Seq::MAX - 1 => return,
        Err(e) => panic!("append after recovery failed: {e}"),
    };
    state.apply(&event);
    if let Err(e) = store.close() {
        panic!("close failed: {e}");
    }
    match Store::<FuzzState>::open(STORE, mem_options(&fs)) {
        Ok(s) => {
            assert_eq!(s.seq(), seq, "reopen lost the appended event");
            assert_eq!(s.current().state(), &state, "reopen state differs");
        }
        Err(e) => panic!("reopen after recovery and one append failed: {e}"),
    }
}

fn check_segment(data: &[u8]) {
    let model = scan_model(data);
    let first = model.as_ref().map_or(1, |m| m.first);
    let after = first.saturating_sub(1);
    for policy in [
        RecoveryPolicy::Strict,
        RecoveryPolicy::TolerateTornTail,
        RecoveryPolicy::SalvagePrefix,
    ] {
        check_replay(data, model.as_ref(), first, after, policy);
    }
    // A store recovers from seq 0: only a segment that starts there can stand alone.
    if first <= 1 {
        let expect = expect_replay(data, model.as_ref(), 0, RecoveryPolicy::TolerateTornTail);
        let path = wal_dir().join(format::segment_name(first));
        check_store(vec![(path, data.to_vec())], &expect, FuzzState::default());
    }
}

/// A copy of `data` with a valid segment header (keeping its first seq and store id)
/// and every frame's checksum recomputed, so that only seqs, lengths and payloads
/// remain for the fuzzer to get wrong.
fn repair_segment(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    if v.len() < SEGMENT_HEADER_LEN {
        return v;
    }
    let first = v
        .get(12..20)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let id = v
        .get(20..28)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let header = SegmentHeader {
        first_seq: first,
        store_id: id,
    }
    .encode();
    if let Some(h) = v.get_mut(..SEGMENT_HEADER_LEN) {
        h.copy_from_slice(&header);
    }
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(head) = v.get(pos..pos + FRAME_HEADER_LEN) {
        let len = head
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_le_bytes(*b)) as usize;
        let seq = head.last_chunk::<8>().copied().unwrap_or_default();
        let Some(payload) = v.get(pos + FRAME_HEADER_LEN..).and_then(|p| p.get(..len)) else {
            break;
        };
        if len == 0 {
            break;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(payload), &seq);
        if let Some(c) = v.get_mut(pos + 4..pos + 8) {
            c.copy_from_slice(&crc.to_le_bytes());
        }
        pos += FRAME_HEADER_LEN + len;
    }
    v
}

/// Fuzz target body: `data` is the bytes of one WAL segment.
///
/// Checks the scanner against a reference reading (every record yielded has a valid
/// checksum and the next seq, and the scan stops only where no valid record follows),
/// then recovery under each policy and through [`Store::open`] against a model of what
/// it must do: the exact records, next seq and torn tail, or a typed error naming the
/// segment and the offset.
pub fn wal_decode(data: &[u8]) {
    bounded_alloc("wal_decode", data.len(), || {
        check_segment(data);
        check_segment(&repair_segment(data));
    });
}

// ---------------------------------------------------------------------------------
// Snapshots.

fn check_snapshot(data: &[u8]) {
    let header = SnapshotHeader::decode(data).ok();
    let seq = header.map_or(1, |h| h.seq);
    if seq == Seq::MAX {
        let path = snap_dir().join(format::snapshot_name(seq));
        match crate::snapshot::decode::<Body>(data, &path, None) {
            Err(
                Error::Corrupt { .. } | Error::BadMagic { .. } | Error::UnsupportedVersion { .. },
            ) => {}
            other => panic!("a snapshot of seq u64::MAX was not refused: {other:?}"),
        }
    }
    let path = snap_dir().join(format::snapshot_name(seq));
    let decoded = crate::snapshot::decode::<Body>(data, &path, None);
    let expect = match &decoded {
        Ok((h, (state, positions))) => {
            assert_eq!(Some(*h), header, "decode disagrees with the header decoder");
            assert_eq!(
                data.len() as u64,
                SNAPSHOT_HEADER_LEN as u64 + h.body_len,
                "length not checked"
            );
            let body = data.get(SNAPSHOT_HEADER_LEN..).unwrap_or(&[]);
            assert_eq!(
                crc32c::crc32c(body),
                h.body_crc,
                "body checksum not checked"
            );
            // Re-encoding: the same value, and the same bytes when the body is canonical.
            let fs = MemFs::with([]);
            let written = unbounded(|| {
                crate::snapshot::write(
                    fs.as_ref(),
                    &snap_dir(),
                    h.seq,
                    h.store_id,
                    &(state, positions),
                )
            });
            let written = match written {
                Ok(w) => w,
                Err(e) => panic!("re-encoding a decoded snapshot failed: {e}"),
            };
            assert_eq!(written.path, path);
            let bytes = fs.get(&path).unwrap_or_default();
            match crate::snapshot::decode::<Body>(&bytes, &path, Some(h.store_id)) {
                Ok((h2, v2)) => {
                    assert_eq!((h2.seq, h2.store_id), (h.seq, h.store_id));
                    assert_eq!(
                        &v2,
                        &(state.clone(), positions.clone()),
                        "re-encoded snapshot decodes differently"
                    );
                }
                Err(e) => panic!("re-encoded snapshot does not load: {e}"),
            }
            assert!(
                bytes.len() <= data.len(),
                "canonical encoding is longer than the input"
            );
            if bytes.get(SNAPSHOT_HEADER_LEN..) == Some(body) {
                assert_eq!(bytes, data, "same body, different file");
            }
            // Another file name than the header's seq is refused.
            let other = snap_dir().join(format::snapshot_name(h.seq.wrapping_add(1)));
            match crate::snapshot::decode::<Body>(data, &other, None) {
                Err(Error::Corrupt { offset: 12, .. }) => {}
                other => panic!("name/seq mismatch not refused: {other:?}"),
            }
            // Another store id is refused.
            match crate::snapshot::decode::<Body>(data, &path, Some(h.store_id ^ 1)) {
                Err(Error::ForeignFile { .. }) => {}
                other => panic!("foreign snapshot not refused: {other:?}"),
            }
            Expect::Ok {
                events: Vec::new(),
                next_seq: h.seq.wrapping_add(1),
                torn: None,
                removed: false,
                quarantined: false,
            }
        }
        Err(e) => {
            let (kind, offset) = error_kind(e, &path);
            if let Some(o) = offset {
                assert!(
                    o <= data.len() as u64,
                    "error offset {o} past the end of {} bytes: {e}",
                    data.len()
                );
            }
            // Recovery stops at once on a snapshot whose version or state type it does
            // not know; any other damage makes it fall back, and with nothing else to
            // recover from it must report that damage rather than open an empty store,
            // unless the snapshot was of seq 0 (the empty store is then all it held).
            match kind {
                "Decode" | "UnsupportedVersion" => Expect::Err(kind, offset),
                _ if seq == 0 => Expect::Ok {
                    events: Vec::new(),
                    next_seq: 1,
                    torn: None,
                    removed: false,
                    quarantined: false,
                },
                _ => Expect::Err(kind, offset),
            }
        }
    };
    let base = match &decoded {
        Ok((_, (state, _))) => state.clone(),
        Err(_) => FuzzState::default(),
    };
    check_store(vec![(path, data.to_vec())], &expect, base);
}

/// A copy of `data` with a valid snapshot header (keeping its seq and store id) whose
/// body length and checksum describe the bytes that follow it.
fn repair_snapshot(data: &[u8]) -> Vec<u8> {
    let Some((head, body)) = data.split_at_checked(SNAPSHOT_HEADER_LEN) else {
        return data.to_vec();
    };
    let seq = head
        .get(12..20)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let store_id = head
        .get(20..28)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let header = SnapshotHeader {
        seq,
        store_id,
        body_len: body.len() as u64,
        body_crc: crc32c::crc32c(body),
    };
    let mut v = header.encode().to_vec();
    v.extend_from_slice(body);
    v
}

/// Fuzz target body: `data` is the bytes of one snapshot file.
///
/// A snapshot that decodes must have had its length and checksum checked, must
/// re-encode to the same value (byte for byte when its body is canonical), and must be
/// refused under another name or store id; one that does not decode must give a typed
/// error naming the file, with an offset inside it. Then [`Store::open`] on a
/// directory holding only that snapshot must open at its seq with its state, or fail.
pub fn snapshot_decode(data: &[u8]) {
    bounded_alloc("snapshot_decode", data.len(), || {
        check_snapshot(data);
        check_snapshot(&repair_snapshot(data));
    });
}

/// Fuzz target body: crash-recovery exploration driven by `data`; see
/// [`check::crash_recovery_from_bytes`](crate::check::crash_recovery_from_bytes).
#[cfg(feature = "sim")]
pub fn crash_recovery(data: &[u8]) {
    crate::check::crash_recovery_from_bytes(data);
}
