//! Read-only views of a store directory, for operators and tools (feature `inspect`).
//!
//! Nothing here changes a byte in the directory and nothing takes the store's lock:
//! every function can run next to a live writer. What they read:
//!
//! - [`inspect`] (and [`inspect_with_progress`]) reads every file of a store: each
//!   segment's header and every record's checksum and seq, each snapshot's and
//!   positions record's header, body length and checksum. The resulting
//!   [`Inspection`] lists the files with what is wrong with them, the
//!   [damage](Inspection::damage) found (each with file and offset), a torn tail in the
//!   last segment (which recovery cuts, so it is not damage), and the seq a recovery
//!   would reach.
//! - [`for_each_record`] walks the records of the WAL in order, with their seq, file,
//!   offset, length, checksum and payload bytes; [`RecordView::decode`] decodes a
//!   payload with the application's own event type.
//! - [`lock_state`] tells whether a store has the directory open, without disturbing it.
//!
//! Files are read into memory one at a time (never mapped, so a writer that changes a
//! file meanwhile cannot fault this process); the largest allocation is one file.
//! Malformed bytes never panic: they are reported as a [`Problem`].
//!
//! # Decoding payloads with your own event type
//!
//! A small binary of your own can print the log with its real events:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Default, Serialize, Deserialize)]
//! # struct Counter(i64);
//! # impl snapwal::State for Counter {
//! #     type Event = Op;
//! #     fn apply(&mut self, Op::Add(n): &Op) { self.0 += n }
//! # }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! enum Op {
//!     Add(i64),
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! # let store = snapwal::Store::<Counter>::open(dir.path(), snapwal::Options::default())?;
//! # store.append(&Op::Add(2))?;
//! # store.append(&Op::Add(40))?;
//! # store.close()?;
//! let mut lines = Vec::new();
//! snapwal::inspect::for_each_record(dir.path(), 1.., |rec| {
//!     let op: Op = rec.decode()?;
//!     let line = serde_json::json!({ "seq": rec.seq, "event": format!("{op:?}") });
//!     lines.push(line.to_string());
//!     Ok(())
//! })?;
//! assert_eq!(lines[1], r#"{"event":"Add(40)","seq":2}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::format::{
    self, HeaderError, RecordScan, ScanEnd, SegmentHeader, SnapshotHeader, FRAME_HEADER_LEN,
};
use crate::fs::RealFs;
use crate::position::Position;
use crate::{snapshot, wal, Seq};

/// Whether a process holds the store's directory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// A `Store` has the directory open (in this process or another one).
    Held,
    /// No `Store` has the directory open.
    Free,
    /// There is no `LOCK` file (the store was never opened, or it is not a store).
    Missing,
}

impl LockState {
    /// `"held"`, `"free"` or `"missing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Held => "held",
            LockState::Free => "free",
            LockState::Missing => "missing",
        }
    }
}

/// Probes the lock on `dir/LOCK` without disturbing a running writer.
///
/// Opens the file read-only (never creating it) and asks for a shared `flock` without
/// waiting: if a store holds its exclusive lock the request fails at once (`Held`);
/// otherwise the shared lock is released immediately (`Free`). A store that starts in
/// the microseconds the probe holds the shared lock gets [`Error::Locked`], as it would
/// next to any other opener.
pub fn lock_state(dir: &Path) -> Result<LockState> {
    let path = dir.join("LOCK");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockState::Missing),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            // Closing the descriptor would release it too; unlock explicitly so that
            // a child forked meanwhile cannot keep it.
            let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
            Ok(LockState::Free)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(LockState::Held),
        Err(e) => Err(Error::io("flock", path, e.into())),
    }
}

/// Something wrong at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// Byte offset of the first bad byte.
    pub offset: u64,
    /// What is wrong there.
    pub reason: String,
}

impl Problem {
    fn new(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// The file, offset and reason of a typed error (offset 0 when it names none).
    fn from_error(path: &Path, e: &Error) -> Self {
        match e {
            Error::Corrupt {
                path,
                offset,
                reason,
            } => Problem::new(path, *offset, reason.clone()),
            Error::BadMagic { path } => {
                Problem::new(path, 0, "not a snapwal file (bad magic bytes)")
            }
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => Problem::new(
                path,
                8,
                format!("format version {found}; this build reads version {supported}"),
            ),
            Error::ForeignFile {
                path,
                expected,
                found,
            } => Problem::new(
                path,
                20,
                format!("belongs to store {found:016x}, not {expected:016x}"),
            ),
            Error::Decode {
                path,
                offset,
                source,
            } => Problem::new(path, *offset, format!("body does not decode: {source}")),
            other => Problem::new(path, 0, other.to_string()),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.path.display(),
            self.offset,
            self.reason
        )
    }
}

/// How a segment's valid records end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// After the last record there are only zeros (preallocated space) or nothing.
    Clean,
    /// Non-zero bytes follow the last valid record: a torn write if this is the last
    /// segment, damage or stale bytes otherwise.
    Torn {
        /// Offset just past the last valid record.
        offset: u64,
        /// Bytes from there to the end of the file.
        bytes: u64,
        /// What is wrong with the first invalid frame.
        reason: String,
    },
    /// The header does not validate, so no record was read.
    BadHeader(Problem),
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// The first seq, from the file name.
    pub first_seq: Seq,
    /// Size of the file (preallocated space included).
    pub bytes: u64,
    /// The store id in the header, if the header validates.
    pub store_id: Option<u64>,
    /// The format version in the header, if it carries snapwal's magic bytes.
    pub version: Option<u32>,
    /// Valid records, from the first one on.
    pub records: u64,
    /// Offset just past the last valid record.
    pub valid_end: u64,
    /// How the records end.
    pub end: SegmentEnd,
}

impl SegmentInfo {
    /// The seq of the last valid record, if there is one.
    pub fn last_seq(&self) -> Option<Seq> {
        (self.records > 0).then(|| self.first_seq + (self.records - 1))
    }

    /// The seq the record after the last valid one would carry.
    pub fn next_seq(&self) -> Seq {
        self.first_seq.saturating_add(self.records)
    }
}

/// One snapshot or positions record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// The number in its name: the seq of a snapshot, the generation of a positions
    /// record.
    pub number: u64,
    /// Size of the file.
    pub bytes: u64,
    /// The store id in the header, if the header validates.
    pub store_id: Option<u64>,
    /// The format version in the header, if it carries snapwal's magic bytes.
    pub version: Option<u32>,
    /// Why the file does not validate; `None` when it does.
    pub problem: Option<Problem>,
}

impl FileCheck {
    /// Whether the file validates.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// One positions record (`pos/<generation>.snap`).
#[derive(Debug, Clone, PartialEq)]
pub struct PositionsInfo {
    /// The file and whether it validates.
    pub file: FileCheck,
    /// The seq of the state the positions go with (when the record validates).
    pub state_seq: Option<Seq>,
    /// The positions saved in it.
    pub positions: Vec<(String, Position)>,
}

/// What a recovery of the directory would do, judged from the files alone (every
/// payload is assumed to decode as the application's types, which only the
/// application can check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Recovery reaches the state after `seq`.
    Reaches {
        /// The seq of the recovered state.
        seq: Seq,
        /// The snapshot it starts from, if any.
        snapshot: Option<Seq>,
        /// A torn tail it would cut: (segment, offset, bytes).
        torn_tail: Option<(PathBuf, u64, u64)>,
    },
    /// Recovery fails with the default recovery policy, on this problem.
    Fails(Problem),
}

/// Everything [`inspect`] found in a store directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// The store id (from the segments, else the snapshots, else the positions
    /// records); `None` for a store with no file yet.
    pub store_id: Option<u64>,
    /// The format versions found in file headers (normally just [`format::VERSION`]).
    pub versions: BTreeSet<u32>,
    /// Whether a store holds the directory lock.
    pub lock: LockState,
    /// The segments, by first seq.
    pub segments: Vec<SegmentInfo>,
    /// The snapshots, by seq.
    pub snapshots: Vec<FileCheck>,
    /// The positions records, by generation.
    pub positions: Vec<PositionsInfo>,
    /// Snapshot and positions temp files (left by a crash, or in flight).
    pub temp_files: Vec<PathBuf>,
    /// Files moved aside by recovery (`*.corrupt`).
    pub corrupt_files: Vec<PathBuf>,
    /// Other entries that snapwal does not read.
    pub other_files: Vec<PathBuf>,
    /// Every problem in a file that recovery reads or relies on, with file and offset:
    /// a record, header or snapshot that fails its checksum, a gap or overlap in the
    /// seqs, a file of another store or format version. A torn tail in the last
    /// segment is not damage (recovery cuts it).
    pub damage: Vec<Problem>,
    /// A torn tail in the last segment: (segment, offset, bytes).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Remarks that are not damage (bytes after the last record of a sealed segment
    /// that the next segment continues, an empty last segment).
    pub notes: Vec<String>,
    /// What a recovery would do.
    pub recovery: Recovery,
    /// Records read and checked.
    pub records: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

impl Inspection {
    /// No damage found.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Reads every file of the store in `dir` and reports what it found. Fails only when
/// a file or directory cannot be read (or `dir` is not a store directory).
pub fn inspect(dir: &Path) -> Result<Inspection> {
    inspect_with_progress(dir, |_, _| {})
}

/// Like [`inspect`], calling `progress(bytes_read, total_bytes)` as it reads (often
/// enough to drive a progress bar).
pub fn inspect_with_progress(dir: &Path, mut progress: impl FnMut(u64, u64)) -> Result<Inspection> {
    let fs = RealFs;
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::io(
            "open store",
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let wal_dir = dir.join("wal");
    let snap_dir = dir.join("snap");
    let pos_dir = dir.join("pos");
    if !wal_dir.is_dir() && !snap_dir.is_dir() && !dir.join("LOCK").exists() {
        return Err(Error::io(
            "open store",
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "not a snapwal store (no LOCK, wal/ or snap/)",
            ),
        ));
    }
    let segments = list_or_empty(&wal_dir, |d| wal::list_segments(&fs, d))?;
    let snapshots = list_or_empty(&snap_dir, |d| snapshot::list(&fs, d))?;
    let pos_records = list_or_empty(&pos_dir, |d| snapshot::list(&fs, d))?;

    let mut out = Inspection {
        dir: dir.to_path_buf(),
        store_id: None,
        versions: BTreeSet::new(),
        lock: lock_state(dir)?,
        segments: Vec::new(),
        snapshots: Vec::new(),
        positions: Vec::new(),
        temp_files: Vec::new(),
        corrupt_files: Vec::new(),
        other_files: Vec::new(),
        damage: Vec::new(),
        torn_tail: None,
        notes: Vec::new(),
        recovery: Recovery::Reaches {
            seq: 0,
            snapshot: None,
            torn_tail: None,
        },
        records: 0,
        bytes_read: 0,
    };
    classify_others(&mut out, dir, &wal_dir, &snap_dir, &pos_dir)?;

    let mut total = 0u64;
    for (_, path) in segments.iter().chain(&snapshots).chain(&pos_records) {
        total = total.saturating_add(std::fs::metadata(path).map_or(0, |m| m.len()));
    }
    progress(0, total);
    let mut done = 0u64;
    for (first, path) in &segments {
        let seg = match scan_segment(path, *first, |n| progress(done + n, total)) {
            Err(e) if vanished(&e) => {
                out.notes
                    .push(format!("{}: removed while being read", path.display()));
                continue;
            }
            r => r?,
        };
        done += seg.bytes;
        progress(done, total);
        out.records += seg.records;
        out.segments.push(seg);
    }
    for (number, path, is_positions) in snapshots
        .iter()
        .map(|(n, p)| (n, p, false))
        .chain(pos_records.iter().map(|(n, p)| (n, p, true)))
    {
        let mut file = match check_file(path, *number) {
            Err(e) if vanished(&e) => {
                out.notes
                    .push(format!("{}: removed while being read", path.display()));
                continue;
            }
            r => r?,
        };
        done += file.bytes;
        progress(done, total);
        if !is_positions {
            out.snapshots.push(file);
            continue;
        }
        let (mut state_seq, mut positions) = (None, Vec::new());
        if file.is_valid() {
            match snapshot::load::<(Seq, Vec<(String, Position)>)>(&RealFs, path, None) {
                Ok((_, (seq, saved))) => {
                    state_seq = Some(seq);
                    positions = saved;
                }
                Err(e) if vanished(&e) => continue,
                Err(e @ Error::Io { .. }) => return Err(e),
                Err(e) => file.problem = Some(Problem::from_error(path, &e)),
            }
        }
        out.positions.push(PositionsInfo {
            file,
            state_seq,
            positions,
        });
    }
    out.bytes_read = done;
    judge(&mut out);
    Ok(out)
}

fn list_or_empty(
    dir: &Path,
    list: impl FnOnce(&Path) -> Result<Vec<(Seq, PathBuf)>>,
) -> Result<Vec<(Seq, PathBuf)>> {
    match list(dir) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r,
    }
}

fn names(dir: &Path) -> Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("list", dir, e)),
        Ok(entries) => {
            let mut v = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("list", dir, e))?;
                v.push(entry.file_name().to_string_lossy().into_owned());
            }
            v.sort();
            Ok(v)
        }
    }
}

/// Sorts the entries snapwal does not read as records: temp files, `.corrupt` files,
/// anything else.
fn classify_others(
    out: &mut Inspection,
    dir: &Path,
    wal_dir: &Path,
    snap_dir: &Path,
    pos_dir: &Path,
) -> Result<()> {
    for name in names(dir)? {
        if !matches!(name.as_str(), "LOCK" | "wal" | "snap" | "pos") {
            out.other_files.push(dir.join(name));
        }
    }
    for (d, ext) in [(wal_dir, "wal"), (snap_dir, "snap"), (pos_dir, "snap")] {
        for name in names(d)? {
            let path = d.join(&name);
            if format::parse_name(&name, ext).is_some() {
                continue;
            } else if name.ends_with(".corrupt") {
                out.corrupt_files.push(path);
            } else if ext == "snap" && snapshot::is_temp_name(&name) {
                out.temp_files.push(path);
            } else {
                out.other_files.push(path);
            }
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// The version field of a file that starts with `magic`.
fn version_of(bytes: &[u8], magic: [u8; 8]) -> Option<u32> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    let (version, _) = rest.split_first_chunk::<4>()?;
    (*head == magic).then(|| u32::from_le_bytes(*version))
}

fn header_problem(path: &Path, e: HeaderError) -> Problem {
    match e {
        HeaderError::Short => Problem::new(path, 0, "file is shorter than its header"),
        HeaderError::Zeroed => Problem::new(path, 0, "header is all zeros"),
        HeaderError::BadMagic => Problem::new(path, 0, "not a snapwal file (bad magic bytes)"),
        HeaderError::Version(v) => Problem::new(
            path,
            8,
            format!(
                "format version {v}; this build reads version {}",
                format::VERSION
            ),
        ),
        HeaderError::Checksum { stored, computed } => Problem::new(
            path,
            0,
            format!("header checksum mismatch (stored {stored:08x}, computed {computed:08x})"),
        ),
    }
}

/// Progress is reported about every this many bytes inside a segment.
const PROGRESS_STEP: u64 = 8 << 20;

fn scan_segment(path: &Path, first_seq: Seq, mut progress: impl FnMut(u64)) -> Result<SegmentInfo> {
    let bytes = read_file(path)?;
    let mut info = SegmentInfo {
        path: path.to_path_buf(),
        first_seq,
        bytes: bytes.len() as u64,
        store_id: None,
        version: version_of(&bytes, format::SEGMENT_MAGIC),
        records: 0,
        valid_end: 0,
        end: SegmentEnd::Clean,
    };
    let header = match SegmentHeader::decode(&bytes) {
        Ok(h) => h,
        Err(e) => {
            info.end = SegmentEnd::BadHeader(header_problem(path, e));
            return Ok(info);
        }
    };
    info.store_id = Some(header.store_id);
    info.valid_end = format::SEGMENT_HEADER_LEN as u64;
    if header.first_seq != first_seq {
        info.end = SegmentEnd::BadHeader(Problem::new(
            path,
            12,
            format!(
                "header says first seq {} but the name says {first_seq}",
                header.first_seq
            ),
        ));
        return Ok(info);
    }
    let mut scan = RecordScan::new(&bytes, first_seq);
    let mut next_report = PROGRESS_STEP;
    for rec in scan.by_ref() {
        info.records += 1;
        info.valid_end = rec.offset + format::frame_len(rec.payload.len()) as u64;
        if info.valid_end >= next_report {
            progress(info.valid_end);
            next_report = info.valid_end + PROGRESS_STEP;
        }
    }
    info.end = match scan.end() {
        Some(ScanEnd::Torn {
            offset,
            bytes,
            reason,
        }) => SegmentEnd::Torn {
            offset: *offset,
            bytes: *bytes,
            reason: reason.clone(),
        },
        Some(ScanEnd::Clean { .. }) | None => SegmentEnd::Clean,
    };
    Ok(info)
}

/// The first `n` bytes of a file (fewer if it is shorter).
fn read_head(path: &Path, n: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    File::open(path)
        .and_then(|f| f.take(n).read_to_end(&mut out))
        .map_err(|e| Error::io("read", path, e))?;
    Ok(out)
}

/// Checks a snapshot-format file (a snapshot or a positions record): everything but
/// the body's type. Snapshots are never written in place once installed, so the
/// library's own reader is safe here.
fn check_file(path: &Path, number: u64) -> Result<FileCheck> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let head = read_head(path, format::SNAPSHOT_HEADER_LEN as u64)?;
    let mut check = FileCheck {
        path: path.to_path_buf(),
        number,
        bytes,
        store_id: SnapshotHeader::decode(&head).ok().map(|h| h.store_id),
        version: version_of(&head, format::SNAPSHOT_MAGIC),
        problem: None,
    };
    match snapshot::verify(&RealFs, path, None) {
        Ok(_) => {}
        Err(e @ Error::Io { .. }) => return Err(e),
        Err(e) => check.problem = Some(Problem::from_error(path, &e)),
    }
    Ok(check)
}

/// Whether `e` says a file vanished (a live store purged or pruned it meanwhile).
fn vanished(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}

/// Fills in the damage, the torn tail, the notes, the store id and the recovery.
fn judge(out: &mut Inspection) {
    let mut damage = Vec::new();
    let mut notes = Vec::new();
    // The store id: the segments', else the snapshots', else the positions records'.
    let store_id = out
        .segments
        .iter()
        .filter_map(|s| s.store_id)
        .chain(out.snapshots.iter().filter_map(|s| s.store_id))
        .chain(out.positions.iter().filter_map(|p| p.file.store_id))
        .next();
    out.store_id = store_id;
    let versions = out
        .segments
        .iter()
        .filter_map(|s| s.version)
        .chain(out.snapshots.iter().filter_map(|s| s.version))
        .chain(out.positions.iter().filter_map(|p| p.file.version));
    out.versions.extend(versions);

    let last = out.segments.len().saturating_sub(1);
    let mut prev: Option<&SegmentInfo> = None;
    for (i, seg) in out.segments.iter().enumerate() {
        let is_last = i == last;
        if seg.first_seq == 0 {
            damage.push(Problem::new(
                &seg.path,
                0,
                "a segment cannot start at seq 0 (seqs start at 1)",
            ));
        }
        if let (Some(id), Some(expected)) = (seg.store_id, store_id) {
            if id != expected {
                damage.push(Problem::new(
                    &seg.path,
                    20,
                    format!("belongs to store {id:016x}, not {expected:016x}"),
                ));
            }
        }
        if let Some(p) = prev {
            let expected = p.next_seq();
            if seg.first_seq != expected && p.store_id.is_some() {
                damage.push(match &p.end {
                    SegmentEnd::Torn { offset, reason, .. } => Problem::new(
                        &p.path,
                        *offset,
                        format!(
                            "records end at seq {} but the next segment starts at {} ({reason})",
                            expected.saturating_sub(1),
                            seg.first_seq
                        ),
                    ),
                    _ if seg.first_seq > expected => Problem::new(
                        &seg.path,
                        0,
                        format!(
                            "records {expected}..{} are missing (no segment holds them)",
                            seg.first_seq - 1
                        ),
                    ),
                    _ => Problem::new(
                        &seg.path,
                        0,
                        format!(
                            "segment starts at seq {} but seq {expected} was expected",
                            seg.first_seq
                        ),
                    ),
                });
            } else if let SegmentEnd::Torn { offset, bytes, .. } = &p.end {
                notes.push(format!(
                    "{}: {bytes} bytes after the last record (offset {offset}) are ignored; the next segment continues the seqs",
                    p.path.display()
                ));
            }
        }
        match &seg.end {
            SegmentEnd::BadHeader(problem) => {
                let empty = problem.offset == 0
                    && (problem.reason.contains("all zeros") || problem.reason.contains("shorter"));
                if is_last && empty {
                    notes.push(format!(
                        "{}: the last segment was created but never written; recovery removes it",
                        seg.path.display()
                    ));
                } else {
                    damage.push(problem.clone());
                }
            }
            SegmentEnd::Torn { offset, bytes, .. } if is_last => {
                out.torn_tail = Some((seg.path.clone(), *offset, *bytes));
            }
            _ => {}
        }
        prev = Some(seg);
    }
    for file in out
        .snapshots
        .iter()
        .chain(out.positions.iter().map(|p| &p.file))
    {
        if let Some(problem) = &file.problem {
            damage.push(problem.clone());
        } else if let (Some(id), Some(expected)) = (file.store_id, store_id) {
            if id != expected {
                damage.push(Problem::new(
                    &file.path,
                    20,
                    format!("belongs to store {id:016x}, not {expected:016x}"),
                ));
            }
        }
    }
    out.recovery = recovery(out, store_id);
    if let Recovery::Fails(problem) = &out.recovery {
        if !damage.contains(problem) {
            damage.push(problem.clone());
        }
    }
    out.damage = damage;
    out.notes.extend(notes);
}

/// Follows the steps of recovery under the default policy over what was read.
fn recovery(out: &Inspection, store_id: Option<u64>) -> Recovery {
    let valid =
        |f: &&FileCheck| f.problem.is_none() && store_id.is_none_or(|id| f.store_id == Some(id));
    let base = out.snapshots.iter().rev().find(valid);
    let base_seq = base.map_or(0, |b| b.number);
    let newest_bad = out
        .snapshots
        .iter()
        .rev()
        .find(|f| f.number > base_seq && !valid(f));
    let skipped = |f: &FileCheck| {
        f.problem
            .clone()
            .unwrap_or_else(|| Problem::new(&f.path, 20, "belongs to another store"))
    };
    let first_needed = base_seq.saturating_add(1);
    let segs = out.segments.as_slice();
    if let Some(seg) = segs.first().filter(|s| s.first_seq == 0) {
        return Recovery::Fails(Problem::new(
            &seg.path,
            0,
            "a segment cannot start at seq 0 (seqs start at 1)",
        ));
    }
    let Some(start) = segs.iter().rposition(|s| s.first_seq <= first_needed) else {
        return match (segs.first(), newest_bad) {
            (None, _) => Recovery::Reaches {
                seq: base_seq,
                snapshot: base.map(|b| b.number),
                torn_tail: None,
            },
            (Some(_), Some(bad)) => Recovery::Fails(skipped(bad)),
            (Some(seg), None) => Recovery::Fails(Problem::new(
                &seg.path,
                0,
                format!(
                    "WAL record {first_needed} is missing: the WAL starts at {}",
                    seg.first_seq
                ),
            )),
        };
    };
    let needed = segs.get(start..).unwrap_or(&[]);
    let mut expected = needed.first().map_or(first_needed, |s| s.first_seq);
    let mut torn_tail = None;
    let mut prev: Option<&SegmentInfo> = None;
    for (i, seg) in needed.iter().enumerate() {
        let is_last = i + 1 == needed.len();
        if seg.first_seq != expected {
            let problem = match prev.map(|p| &p.end) {
                Some(SegmentEnd::Torn { offset, reason, .. }) => Problem::new(
                    prev.map_or(&seg.path, |p| &p.path),
                    *offset,
                    format!(
                        "records end at seq {} but the next segment starts at {} ({reason})",
                        expected.saturating_sub(1),
                        seg.first_seq
                    ),
                ),
                _ => Problem::new(
                    &seg.path,
                    0,
                    format!(
                        "segment starts at seq {} but seq {expected} was expected",
                        seg.first_seq
                    ),
                ),
            };
            return Recovery::Fails(problem);
        }
        match &seg.end {
            SegmentEnd::BadHeader(p) => {
                let empty = p.offset == 0
                    && (p.reason.contains("all zeros") || p.reason.contains("shorter"));
                if is_last && empty {
                    break;
                }
                return Recovery::Fails(p.clone());
            }
            SegmentEnd::Torn { offset, bytes, .. } if is_last => {
                torn_tail = Some((seg.path.clone(), *offset, *bytes));
            }
            _ => {}
        }
        if let (Some(id), Some(expected_id)) = (seg.store_id, store_id) {
            if id != expected_id {
                return Recovery::Fails(Problem::new(
                    &seg.path,
                    20,
                    format!("belongs to store {id:016x}, not {expected_id:016x}"),
                ));
            }
        }
        expected = seg.next_seq();
        prev = Some(seg);
    }
    let seq = expected.max(first_needed) - 1;
    match newest_bad {
        Some(bad) if seq < bad.number => Recovery::Fails(skipped(bad)),
        _ => Recovery::Reaches {
            seq,
            snapshot: base.map(|b| b.number),
            torn_tail,
        },
    }
}

/// One record of the WAL, as [`for_each_record`] passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's seq.
    pub seq: Seq,
    /// The segment that holds it.
    pub segment: &'a Path,
    /// Offset of the record's frame in the segment.
    pub offset: u64,
    /// Payload length in bytes.
    pub len: u32,
    /// The stored checksum (CRC32C of the payload, continued over the seq).
    pub crc: u32,
    /// The payload: the postcard encoding of the event.
    pub payload: &'a [u8],
}

impl RecordView<'_> {
    /// Decodes the payload as `E` (the application's `State::Event`). A payload that
    /// does not decode is [`Error::Decode`]; one with bytes left over is
    /// [`Error::Corrupt`]; both name the segment and the record's offset.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E> {
        let (event, rest) =
            postcard::take_from_bytes::<E>(self.payload).map_err(|source| Error::Decode {
                path: self.segment.to_path_buf(),
                offset: self.offset,
                source,
            })?;
        if !rest.is_empty() {
            return Err(Error::corrupt(
                self.segment,
                self.offset + FRAME_HEADER_LEN as u64 + (self.payload.len() - rest.len()) as u64,
                "event has trailing bytes",
            ));
        }
        Ok(event)
    }
}

/// Calls `f` for every valid record of the WAL in `dir` whose seq is in `range`, in
/// order (segment by segment; within a segment, up to its first invalid record).
/// Segments whose header does not validate are skipped with a warning. Stops at the
/// first error `f` returns.
pub fn for_each_record(
    dir: &Path,
    range: impl RangeBounds<Seq>,
    mut f: impl FnMut(&RecordView<'_>) -> Result<()>,
) -> Result<()> {
    let wal_dir = dir.join("wal");
    let segments = wal::list_segments(&RealFs, &wal_dir)?;
    let from = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    for (i, (first, path)) in segments.iter().enumerate() {
        // Every record of this segment is below `from` when the next one starts at
        // or below it.
        if segments.get(i + 1).is_some_and(|(next, _)| *next <= from) {
            continue;
        }
        if let Bound::Included(to) | Bound::Excluded(to) = range.end_bound() {
            if first > to {
                break;
            }
        }
        let bytes = read_file(path)?;
        if let Err(e) = SegmentHeader::decode(&bytes) {
            tracing::warn!(segment = %path.display(), error = ?e, "segment header does not validate; skipped");
            continue;
        }
        for rec in RecordScan::new(&bytes, *first) {
            if !range.contains(&rec.seq) {
                continue;
            }
            let len = u32::try_from(rec.payload.len()).unwrap_or(u32::MAX);
            let crc = crc32c::crc32c_append(crc32c::crc32c(rec.payload), &rec.seq.to_le_bytes());
            f(&RecordView {
                seq: rec.seq,
                segment: path,
                offset: rec.offset,
                len,
                crc,
                payload: rec.payload,
            })?;
        }
    }
    Ok(())
}
