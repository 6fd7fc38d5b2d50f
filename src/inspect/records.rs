//! The record walk for tools that decode payloads with their own event type.

use std::ops::{Bound, RangeBounds};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::format::{RecordScan, SegmentHeader, FRAME_HEADER_LEN};
use crate::fs::RealFs;
use crate::{wal, Seq};

use super::*;

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
