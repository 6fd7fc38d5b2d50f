//! Replay: reading the segments back at open, checking every record, cutting a torn
//! tail, and moving damage aside under `SalvagePrefix`. The same scan, with every
//! change to the directory switched off ([`Access::ReadOnly`]), serves a
//! [`Reader`](crate::Reader) that holds no lock.
//!
//! # Invariants kept here
//!
//! - **I2 Prefix**: records are applied only in seq order, each exactly the previous
//!   plus one, across segment boundaries; a gap is [`Error::MissingRecords`] or
//!   corruption, never skipped.
//! - **I6 Bad input**: every header and record is checked ([`format`]); only the last
//!   segment may end torn; every other damage is a typed error naming file and offset.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{self, HeaderError, Record, RecordScan, ScanEnd, SegmentHeader};
use crate::fs::{FileBytes, Fs};
use crate::{RecoveryPolicy, Seq};

/// Lists the segments in `dir`, sorted by first seq.
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let names = fs.list(dir).map_err(|e| Error::io("list", dir, e))?;
    Ok(format::numbered(&names, dir, "wal"))
}

/// What [`replay`] found.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The seq the next appended record gets.
    pub next_seq: Seq,
    /// The store id read from the segments, if any segment was read.
    pub store_id: Option<u64>,
    /// Segments read.
    pub segments_read: usize,
    /// Records passed to the callback.
    pub records_replayed: u64,
    /// Payload and frame bytes of those records.
    pub bytes_replayed: u64,
    /// A torn tail that was cut: (segment, offset, bytes).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Segments moved aside: by [`RecoveryPolicy::SalvagePrefix`], and a last segment
    /// that holds no valid record but holds bytes (a torn first record, or damage),
    /// under every policy.
    pub quarantined: Vec<PathBuf>,
}

/// How a replay may treat the store directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Recovery at open, under the store's lock: cut a torn tail, remove an empty
    /// last segment, move damage aside under `SalvagePrefix`, sync what was read.
    Recover,
    /// A reader without the lock: nothing in the directory changes (no cut, no
    /// removal, no move aside, no sync) and files are read into memory, never mapped.
    /// An empty, torn or half-written end of the last segment (its header included)
    /// ends the log: a writer may be writing it; other damage is an error. `resume` continues an earlier read where it
    /// stopped, when the log still starts there.
    ReadOnly { resume: Option<LogCursor> },
}

/// Where a read of the log stopped: the segment read last, the offset just past its
/// last valid record, and the seq the next record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogCursor {
    pub(crate) segment: Seq,
    pub(crate) offset: u64,
    pub(crate) next_seq: Seq,
}

fn header_error(path: &Path, e: HeaderError) -> Error {
    match e {
        HeaderError::BadMagic => Error::BadMagic { path: path.into() },
        HeaderError::Version(found) => Error::UnsupportedVersion {
            path: path.into(),
            found,
            supported: format::VERSION,
        },
        HeaderError::Short => Error::corrupt(path, 0, "file is shorter than its header"),
        HeaderError::Zeroed => Error::corrupt(path, 0, "header is all zeros"),
        HeaderError::Checksum { stored, computed } => Error::corrupt(
            path,
            0,
            format!("header checksum mismatch (stored {stored:08x}, computed {computed:08x})"),
        ),
    }
}

/// Replays the log in `dir` from seq `after + 1`, calling `apply` for each record in
/// order, and prepares the directory for appending (see [`ReplayReport`]).
///
/// Segments wholly at or below `after` are not read. The last segment may end in a
/// torn record: it is cut (logically: later appends go to a new segment) with a
/// warning, or refused under [`RecoveryPolicy::Strict`]. Any other damage is an error
/// naming the file and offset, unless the policy is [`RecoveryPolicy::SalvagePrefix`]:
/// then the records before the damage are kept and every segment from the damaged one
/// on is moved aside (to a unique `<name>.corrupt` or `<name>.<n>.corrupt`). A WAL
/// that starts past `after + 1` is salvaged the same way when `after > 0` (the caller's
/// snapshot is the prefix); with `after == 0` it is [`Error::MissingRecords`] under
/// every policy, since seq 1 is gone and there is no prefix to keep. A segment named 0
/// is never valid (seqs start at 1): [`Error::Corrupt`] naming it, or moved aside under
/// `SalvagePrefix`.
pub fn replay(
    fs: &dyn Fs,
    dir: &Path,
    after: Seq,
    store_id: Option<u64>,
    policy: RecoveryPolicy,
    apply: impl FnMut(Record<'_>, &Path) -> Result<()>,
) -> Result<ReplayReport> {
    replay_with(fs, dir, after, store_id, policy, Access::Recover, apply).map(|(r, _)| r)
}

/// [`replay`] without changing a byte of the directory ([`Access::ReadOnly`]), from
/// `resume` when the log still starts there. Also returns where it stopped.
pub(crate) fn read_only(
    fs: &dyn Fs,
    dir: &Path,
    after: Seq,
    store_id: Option<u64>,
    resume: Option<LogCursor>,
    apply: impl FnMut(Record<'_>, &Path) -> Result<()>,
) -> Result<(ReplayReport, Option<LogCursor>)> {
    let access = Access::ReadOnly { resume };
    let policy = RecoveryPolicy::TolerateTornTail;
    replay_with(fs, dir, after, store_id, policy, access, apply)
}

/// [`replay`] with the directory access given (see [`Access`]); also returns where it
/// stopped.
pub(crate) fn replay_with(
    fs: &dyn Fs,
    dir: &Path,
    after: Seq,
    store_id: Option<u64>,
    policy: RecoveryPolicy,
    access: Access,
    mut apply: impl FnMut(Record<'_>, &Path) -> Result<()>,
) -> Result<(ReplayReport, Option<LogCursor>)> {
    let read_only = access != Access::Recover;
    let mut segments = list_segments(fs, dir)?;
    // Snapshots never carry u64::MAX (their decoder refuses it), so this only guards
    // a caller passing it directly.
    let first_needed = after
        .checked_add(1)
        .ok_or_else(|| Error::corrupt(dir, 0, "replay asked to start after seq u64::MAX"))?;
    let mut report = ReplayReport {
        next_seq: first_needed,
        store_id,
        ..ReplayReport::default()
    };
    // Seqs start at 1: no writer names a segment 0, and every check below relies on
    // a segment's first seq having a predecessor.
    if let Some((0, path)) = segments.first() {
        let err = Error::corrupt(
            path,
            0,
            "a segment cannot start at seq 0 (seqs start at 1): not written by snapwal",
        );
        if policy != RecoveryPolicy::SalvagePrefix {
            return Err(err);
        }
        tracing::error!(error = %err, "WAL damaged; moving the segment named 0 aside");
        let aside = crate::fs::move_all_aside(fs, dir, &[path.as_path()])?;
        report.quarantined.extend(aside);
        segments.remove(0);
    }
    let mut cursor = None;
    let Some(start) = segments
        .iter()
        .rposition(|(first, _)| *first <= first_needed)
    else {
        return match segments.first() {
            None => Ok((report, cursor)),
            Some((_, path)) => {
                let err = Error::MissingRecords {
                    needed: first_needed,
                    path: path.clone(),
                };
                // With a snapshot to start from (`after > 0`), its state is the valid
                // prefix: salvage keeps it and moves every later segment aside. Without
                // one there is no prefix at all (seq 1 is gone), and an empty store is
                // not a salvage.
                if after > 0 {
                    salvage(fs, dir, policy, err, &segments, first_needed, report)
                        .map(|r| (r, cursor))
                } else {
                    Err(err)
                }
            }
        };
    };
    let needed = segments.get(start..).unwrap_or(&[]);
    // A reader's log now starts inside the records it read, in another segment than
    // the one it read them from: the writer rewound (lost records it had written and
    // logs other events under their seqs). Only a reload from scratch can tell what
    // the log holds now.
    if let (Access::ReadOnly { resume: Some(c) }, Some((first, path))) = (access, needed.first()) {
        if c.next_seq == first_needed && *first != c.segment && *first < first_needed {
            return Err(Error::MissingRecords {
                needed: first_needed,
                path: path.clone(),
            });
        }
    }
    let mut expected = needed.first().map_or(first_needed, |(f, _)| *f);
    // Where the previous segment's records ended early: (path, offset).
    let mut prev_torn: Option<(PathBuf, u64)> = None;
    let mut read: Vec<&PathBuf> = Vec::new();
    for (i, (first, path)) in needed.iter().enumerate() {
        let is_last = i + 1 == needed.len();
        // Damage here: salvage from segment `from` on, or fail (per the policy).
        let next_seq = expected.max(first_needed);
        let give_up = |err: Error, from: usize, report: ReplayReport| {
            let rest = needed.get(from..).unwrap_or(&[]);
            salvage(fs, dir, policy, err, rest, next_seq, report).map(|r| (r, None))
        };
        if *first != expected {
            let err = match (&prev_torn, *first > expected) {
                (Some((p, off)), _) => Error::corrupt(
                    p,
                    *off,
                    format!(
                        "records end at seq {} but the next segment starts at {first}",
                        expected.saturating_sub(1)
                    ),
                ),
                (None, true) => Error::MissingRecords {
                    needed: expected,
                    path: path.clone(),
                },
                (None, false) => Error::corrupt(
                    path,
                    0,
                    format!("segment starts at seq {first} but seq {expected} was expected"),
                ),
            };
            // A damaged segment with no valid record is named after the next seq: it
            // goes aside too, or the next append could not create its segment.
            let from = match (&prev_torn, needed.get(i.saturating_sub(1))) {
                (Some(_), Some((prev_first, _))) if *prev_first == expected => i.saturating_sub(1),
                _ => i,
            };
            return give_up(err, from, report);
        }
        // A reader continues in the segment it stopped in, past the records it read.
        let resumed = match access {
            Access::ReadOnly { resume: Some(c) }
                if i == 0 && c.segment == *first && c.next_seq == first_needed =>
            {
                Some(c)
            }
            _ => None,
        };
        let bytes = match (read_only, resumed) {
            (true, r) => fs
                .read_from(path, r.map_or(0, |c| c.offset))
                .map(FileBytes::from_vec),
            (false, _) => fs.read(path),
        }
        .map_err(|e| Error::io("read", path, e))?;
        let decoded = match resumed {
            Some(_) => Ok(None),
            None => SegmentHeader::decode(&bytes).map(Some),
        };
        let header = match decoded {
            Ok(h) => h,
            Err(e) if is_last && read_only => {
                // The live writer may be writing this header right now (a read is
                // not atomic with a write): the log ends here for now.
                tracing::debug!(segment = %path.display(), error = %header_error(path, e),
                    "the last segment's header does not validate (yet); reading stops there");
                break;
            }
            Err(HeaderError::Short | HeaderError::Zeroed) if is_last => {
                // Created but never written before a crash (or, for a reader, not yet
                // written by the live writer): it holds no record.
                let holds_bytes = bytes.iter().any(|&b| b != 0);
                drop(bytes);
                if !read_only {
                    clear_recordless_segment(fs, dir, path, holds_bytes, &mut report)?;
                }
                break;
            }
            Err(e @ (HeaderError::BadMagic | HeaderError::Version(_))) => {
                return Err(header_error(path, e))
            }
            Err(e) => {
                let err = header_error(path, e);
                return give_up(err, i, report);
            }
        };
        if let Some(header) = header {
            if header.first_seq != *first {
                let err = Error::corrupt(
                    path,
                    12,
                    format!(
                        "header says first seq {} but the name says {first}",
                        header.first_seq
                    ),
                );
                return give_up(err, i, report);
            }
            match report.store_id {
                Some(id) if id != header.store_id => {
                    return Err(Error::ForeignFile {
                        path: path.clone(),
                        expected: id,
                        found: header.store_id,
                    })
                }
                _ => report.store_id = Some(header.store_id),
            }
        }
        report.segments_read += 1;
        read.push(path);
        let mut scan = match resumed {
            Some(c) => RecordScan::resume(&bytes, c.offset, c.next_seq),
            None => RecordScan::new(&bytes, *first),
        };
        for rec in scan.by_ref() {
            if rec.seq > after {
                report.records_replayed += 1;
                report.bytes_replayed += format::frame_len(rec.payload.len()) as u64;
                apply(rec, path)?;
            }
        }
        expected = scan.next_seq();
        cursor = Some(LogCursor {
            segment: *first,
            offset: scan.offset(),
            next_seq: expected,
        });
        prev_torn = None;
        match scan.end() {
            Some(ScanEnd::Torn {
                offset,
                bytes: torn,
                reason,
            }) => {
                if is_last && read_only {
                    // A record the live writer is still writing, or a crash's torn
                    // tail that its next open cuts: the log ends here for now.
                    tracing::debug!(segment = %path.display(), offset = *offset, bytes = *torn,
                        "the last segment ends in an incomplete record; reading stops there");
                    report.torn_tail = Some((path.clone(), *offset, *torn));
                } else if is_last {
                    if policy == RecoveryPolicy::Strict {
                        return Err(Error::TornTail {
                            path: path.clone(),
                            offset: *offset,
                            bytes: *torn,
                        });
                    }
                    tracing::warn!(
                        segment = %path.display(),
                        offset = *offset,
                        bytes = *torn,
                        reason = %reason,
                        "cut torn tail of the WAL: {torn} bytes after the last valid record"
                    );
                    report.torn_tail = Some((path.clone(), *offset, *torn));
                } else {
                    tracing::debug!(segment = %path.display(), offset = *offset, bytes = *torn,
                        "bytes after the last record of a sealed segment are ignored");
                    prev_torn = Some((path.clone(), *offset));
                }
            }
            Some(ScanEnd::Clean { .. }) | None => {}
        }
        if is_last && expected == *first {
            // No valid record at all: its name would clash with the next segment.
            let holds_bytes = matches!(scan.end(), Some(ScanEnd::Torn { .. }));
            drop(bytes);
            read.pop();
            if !read_only {
                clear_recordless_segment(fs, dir, path, holds_bytes, &mut report)?;
            }
        }
    }
    report.next_seq = expected.max(first_needed);
    if read_only {
        return Ok((report, cursor));
    }
    // What was read may have come from the page cache of a crashed process: make it
    // durable before new records, acknowledged as durable, are written after it.
    // (Nothing read: no entry to make durable, as in a new store.)
    let any_read = !read.is_empty();
    for path in read {
        fs.open_write(path)
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::io("fdatasync", path, e))?;
    }
    if any_read {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("fsync dir", dir, e))?;
    }
    Ok((report, cursor))
}

/// Frees the name of the last segment, which holds no valid record (its name would
/// clash with the next segment's). An empty one (zeros only: created, never written
/// before a crash) is removed; one that holds other bytes (a torn first record, or
/// damage: bit rot or a misdirected write over records that were durable) is moved
/// aside to a `.corrupt` name and listed in the report, never deleted.
fn clear_recordless_segment(
    fs: &dyn Fs,
    dir: &Path,
    path: &Path,
    holds_bytes: bool,
    report: &mut ReplayReport,
) -> Result<()> {
    if holds_bytes {
        let aside =
            crate::fs::move_aside(fs, path).map_err(|e| Error::io("rename aside", path, e))?;
        tracing::warn!(segment = %path.display(), moved_to = %aside.display(),
            "the last WAL segment holds no valid record, but holds bytes; moved it aside");
        report.quarantined.push(aside);
    } else {
        tracing::warn!(segment = %path.display(), "removing a WAL segment that holds no valid record");
        fs.remove_file(path)
            .map_err(|e| Error::io("remove empty segment", path, e))?;
    }
    fs.sync_dir(dir).map_err(|e| Error::io("fsync dir", dir, e))
}

/// Under [`RecoveryPolicy::SalvagePrefix`], moves `rest` aside and ends the replay at
/// the valid prefix; under any other policy returns `err`.
fn salvage(
    fs: &dyn Fs,
    dir: &Path,
    policy: RecoveryPolicy,
    err: Error,
    rest: &[(Seq, PathBuf)],
    next_seq: Seq,
    mut report: ReplayReport,
) -> Result<ReplayReport> {
    if policy != RecoveryPolicy::SalvagePrefix {
        return Err(err);
    }
    tracing::error!(error = %err, segments = rest.len(),
        "WAL damaged; keeping the valid prefix and moving later segments aside");
    let rest: Vec<&Path> = rest.iter().map(|(_, p)| p.as_path()).collect();
    report
        .quarantined
        .extend(crate::fs::move_all_aside(fs, dir, &rest)?);
    report.next_seq = next_seq;
    Ok(report)
}
