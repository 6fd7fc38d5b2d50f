//! Reading one file: segment scans and header checks, never panicking, never writing.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, HeaderError, RecordScan, ScanEnd, SegmentHeader, SnapshotHeader};
use crate::fs::RealFs;
use crate::{snapshot, Seq};

use super::*;

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// The version field of a file that starts with `magic`.
pub(super) fn version_of(bytes: &[u8], magic: [u8; 8]) -> Option<u32> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    let (version, _) = rest.split_first_chunk::<4>()?;
    (*head == magic).then(|| u32::from_le_bytes(*version))
}

pub(super) fn header_problem(path: &Path, e: HeaderError) -> Problem {
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

pub(super) fn scan_segment(
    path: &Path,
    first_seq: Seq,
    mut progress: impl FnMut(u64),
) -> Result<SegmentInfo> {
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
pub(super) fn read_head(path: &Path, n: u64) -> Result<Vec<u8>> {
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
pub(super) fn check_file(path: &Path, number: u64) -> Result<FileCheck> {
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
pub(super) fn vanished(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}
