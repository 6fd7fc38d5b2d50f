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
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format;
use crate::fs::RealFs;
use crate::position::Position;
use crate::{snapshot, wal, Seq};

mod judge;
mod records;
mod scan;

use judge::judge;
pub use records::{for_each_record, RecordView};
use scan::*;

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

pub(super) fn list_or_empty(
    dir: &Path,
    list: impl FnOnce(&Path) -> Result<Vec<(Seq, PathBuf)>>,
) -> Result<Vec<(Seq, PathBuf)>> {
    match list(dir) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r,
    }
}

pub(super) fn names(dir: &Path) -> Result<Vec<String>> {
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
pub(super) fn classify_others(
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
