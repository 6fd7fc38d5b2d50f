//! The on-disk format, version 1: every byte snapwal writes, in one place.
//!
//! All integers are little-endian and written field by field. Every file starts with
//! eight magic bytes and a `u32` format version; a reader that finds a version it does
//! not know returns [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion)
//! and never guesses. Checksums are CRC32C (Castagnoli). The parsers here cannot panic
//! on any bytes (no indexing, no unwrap): the base of **I6 Bad input**.
//!
//! ```text
//! dir/
//!   LOCK                                       flock target (empty)
//!   wal/00000000000000000001.wal               segment, named by the first seq it holds
//!   snap/00000000000000001234.snap             state after seq 1234
//!   snap/.00000000000000001234.<pid>.<n>.tmp   snapshot in flight; removed at open
//!   pos/00000000000000000007.snap              positions record, generation 7
//!   wal/00000000000000000001.wal.corrupt       moved aside by recovery; never read again
//!   snap/00000000000000001234.snap.2.corrupt   (<name>.corrupt, then <name>.<n>.corrupt)
//! ```
//!
//! Names are 20-digit zero-padded decimal, so they sort by name.
//! Seq 0 is never a segment name (seqs start at 1); a segment named 0 is corrupt.
//!
//! A file that does not validate (a damaged snapshot at open or under a checkpoint's
//! install, a segment salvaged away under `SalvagePrefix`) is renamed, never replacing,
//! to `<name>.corrupt`, or `<name>.1.corrupt`, `<name>.2.corrupt`, ... when that name is
//! taken. These names never match `<20 digits>.wal` / `<20 digits>.snap`, so no reader
//! looks at them again; they stay for inspection until an operator removes them.
//!
//! # Segment (`wal/<first seq>.wal`)
//!
//! ```text
//! offset size field
//!      0    8 magic        b"SNAPWALS"
//!      8    4 version      1
//!     12    8 first_seq    seq of the first record; equals the file name
//!     20    8 store_id     random id chosen when the store was created
//!     28    4 header_crc   crc32c of bytes 0..28
//!     32      records, back to back:
//!
//!      0    4 len          payload length in bytes; 0 ends the log
//!      4    4 crc          crc32c of payload, continued over seq (8 bytes LE)
//!      8    8 seq          previous record's seq + 1 (the first: first_seq);
//!                          never u64::MAX (a record carrying it ends the log)
//!     16  len payload      postcard encoding of the event
//! ```
//!
//! A segment may be preallocated: the bytes after its last record are then zeros.
//! The log ends at the first record that is zero, does not fit in the file, fails its
//! checksum, or does not carry the next seq. Because each seq must be exactly the
//! previous one plus one, stale bytes left in reused or preallocated space cannot pass
//! as records.
//!
//! # Snapshot (`snap/<seq>.snap`)
//!
//! ```text
//! offset size field
//!      0    8 magic        b"SNAPWALP"
//!      8    4 version      1
//!     12    8 seq          the state is the state after this seq; never u64::MAX
//!     20    8 store_id     as in segments
//!     28    8 body_len     bytes of body that follow the header
//!     36    4 body_crc     crc32c of the body
//!     40    4 header_crc   crc32c of bytes 0..40
//!     44      body         postcard encoding of (state, positions)
//! ```
//!
//! The body is the postcard encoding of the application's state followed by the source
//! positions (a sequence of `(name, offset, inode, timestamp)`).
//!
//! # Positions record (`pos/<generation>.snap`)
//!
//! Written by a checkpoint that finds the state unchanged since the newest snapshot but
//! source positions moved. The file is a snapshot in every byte (same magic, version,
//! header and checksums; temp file, `fdatasync`, no-replace rename, directory sync),
//! whose header `seq` is the record's *generation* (1, 2, ...: the name) and whose body
//! is the postcard encoding of `(state seq, positions)`: the seq of the state the
//! positions go with, which was durable when the record was written. Recovery uses the
//! newest record that validates and whose state seq lies between the base snapshot's
//! seq and the recovered seq; such positions are never ahead of the recovered state. A
//! record that does not validate is skipped with a warning (older positions are always
//! safe to resume from). A store without `pos/` (written before records existed)
//! opens as before; `open` creates the directory.
//!
//! # Format policy
//!
//! The number in [`VERSION`] is the version of the bytes described above, in every
//! file. It changes only when a file written by the new release could be misread by
//! an older one, or a file written by an older release could be misread by the new one:
//!
//! - **Bumps the version:** any change to a header (a field added, removed, resized or
//!   moved, another magic or checksum), to the record frame (`len`, `crc`, `seq`), to
//!   what a checksum covers, to the rules that end the log (zero length, the seq
//!   sequence), to the file naming, or to the envelope of a snapshot body (the
//!   `(state, positions)` pair and the encoding of a position).
//! - **Does not bump it:** new kinds of files in new places that older releases
//!   never read (as `pos/` was added within version 1: a store without it opens as
//!   before), new names for files moved aside, and anything in the payloads, which are
//!   the application's own types (see [Evolving your events](#evolving-your-events)).
//!
//! **Reading older versions.** A release reads every format version that any earlier
//! release wrote: a file is decoded by the code of the version in its header, and new
//! records and snapshots are written in the newest version. A store therefore moves to
//! a new version one file at a time, without a migration step: the first checkpoint
//! after the upgrade writes a new-version snapshot, and the old segments are unlinked
//! once the snapshots cover them, as always. A release that drops the reading of an
//! old version says so in its release notes and is a new major version of the crate.
//! A version newer than the build is never guessed at: it is
//! [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion) naming the file.
//!
//! **Held to it by tests.** `tests/data/v1/` holds store directories written by the
//! release that introduced version 1 (a snapshot with a WAL tail, a torn tail, a damaged
//! newest snapshot with an older good one). They are never regenerated: every later
//! release must open them to exactly the state recorded in `tests/golden_data_v1.rs`.
//!
//! # Evolving your events
//!
//! The WAL keeps every event as the application appended it, and recovery decodes
//! them with the application's *current* `State::Event` type (and the newest snapshot
//! with its current state type). postcard, the encoding, is compact because it is not
//! self-describing: no field names, no field count, an enum variant is its index. So
//! some changes to the types read old bytes back, and others do not. A payload that
//! no longer decodes makes [`Store::open`](crate::Store::open) fail with
//! [`Error::Decode`](crate::Error::Decode), naming the file and offset.
//!
//! **A new enum variant at the end is fine.** Variants are encoded by index, so old
//! payloads keep their meaning:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum EventBefore {
//!     Opened { id: u32 },
//!     Closed { id: u32 },
//! }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum EventAfter {
//!     Opened { id: u32 },
//!     Closed { id: u32 },
//!     Renamed { id: u32, name: String }, // new, at the end
//! }
//!
//! let old = postcard::to_allocvec(&EventBefore::Closed { id: 7 })?;
//! let read: EventAfter = postcard::from_bytes(&old)?;
//! assert_eq!(read, EventAfter::Closed { id: 7 });
//! # let _ = EventBefore::Opened { id: 0 };
//! # Ok::<(), postcard::Error>(())
//! ```
//!
//! A variant inserted *before* others, or a reordering, shifts the indexes: old
//! payloads then decode as the wrong event, silently when the shapes happen to match.
//! Never do it.
//!
//! **A new field is not.** Old payloads end where the new field would start, and
//! `#[serde(default)]` does not help (postcard has no way to tell a field is absent):
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum EventBefore {
//!     Opened { id: u32 },
//! }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! enum EventAfter {
//!     Opened {
//!         id: u32,
//!         #[serde(default)]
//!         owner: String, // new field
//!     },
//! }
//!
//! let old = postcard::to_allocvec(&EventBefore::Opened { id: 7 })?;
//! assert!(postcard::from_bytes::<EventAfter>(&old).is_err());
//! # Ok::<(), postcard::Error>(())
//! ```
//!
//! A removed field is worse: the old payload decodes with bytes left over (recovery
//! reports the record as corrupt), or, inside a larger value, shifts every field after
//! it. Changing a field's type is the same kind of change.
//!
//! **The pattern: versioned events.** Never change an event that has been written.
//! Add the new shape as a new variant at the end, keep the old variant, and have
//! `apply` handle both (usually by converting the old one). With one enum per version
//! it stays readable:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct OpenedV1 { pub id: u32 }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! pub struct OpenedV2 { pub id: u32, pub owner: String }
//!
//! // The type the store logs. Variants are only ever added, at the end.
//! #[derive(Serialize, Deserialize)]
//! pub enum Event {
//!     V1(OpenedV1),
//!     V2(OpenedV2),
//! }
//!
//! impl Event {
//!     /// The newest shape, whatever version was logged.
//!     pub fn upgrade(self) -> OpenedV2 {
//!         match self {
//!             Event::V1(OpenedV1 { id }) => OpenedV2 { id, owner: String::new() },
//!             Event::V2(e) => e,
//!         }
//!     }
//! }
//!
//! #[derive(Clone, Default, Serialize, Deserialize)]
//! pub struct Owners(Vec<(u32, String)>);
//!
//! impl snapwal::State for Owners {
//!     type Event = Event;
//!     fn apply(&mut self, event: &Event) {
//!         let (id, owner) = match event {
//!             Event::V1(OpenedV1 { id }) => (*id, String::new()),
//!             Event::V2(OpenedV2 { id, owner }) => (*id, owner.clone()),
//!         };
//!         self.0.push((id, owner));
//!     }
//! }
//!
//! // A log written when only `V1` existed...
//! #[derive(Serialize)]
//! enum EventWhenOnlyV1 { V1(OpenedV1) }
//! let old = postcard::to_allocvec(&EventWhenOnlyV1::V1(OpenedV1 { id: 7 }))?;
//! // ...still decodes, and new appends use `V2`.
//! let read: Event = postcard::from_bytes(&old)?;
//! assert_eq!(read.upgrade(), OpenedV2 { id: 7, owner: String::new() });
//! # Ok::<(), postcard::Error>(())
//! ```
//!
//! The state type is in every snapshot and follows the same rules. It is rewritten at
//! each checkpoint, so it can also change in two steps: release 1 reads the old and
//! the new shape (for example a versioned enum around the state) and writes the new
//! one; once every store has checkpointed under release 1, release 2 drops the old
//! shape. Events cannot be dropped that way until no retained segment holds them.
//!
//! To see what a log holds before an upgrade, `snapwal dump DIR` prints every record,
//! and `snapwal::inspect::for_each_record` (feature `inspect`) decodes them
//! with your own type.

use crate::Seq;

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Magic bytes at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SNAPWALS";
/// Magic bytes at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SNAPWALP";
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record's frame header (len, crc, seq).
pub const FRAME_HEADER_LEN: usize = 16;
/// Size of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 44;

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    Short,
    /// All header bytes are zero (a file created but never written).
    Zeroed,
    /// The magic bytes are wrong.
    BadMagic,
    /// A version this build does not read.
    Version(u32),
    /// The header checksum does not match.
    Checksum {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
}

/// A little-endian cursor over a byte slice that cannot panic.
struct Le<'a>(&'a [u8]);

impl Le<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

fn check_magic_version(bytes: &[u8], len: usize, magic: [u8; 8]) -> Result<&[u8], HeaderError> {
    let header = bytes.get(..len).ok_or(HeaderError::Short)?;
    if header.iter().all(|&b| b == 0) {
        return Err(HeaderError::Zeroed);
    }
    let mut r = Le(header);
    if r.take::<8>() != Some(magic) {
        return Err(HeaderError::BadMagic);
    }
    let version = r.u32().ok_or(HeaderError::Short)?;
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    let (body, crc) = header.split_last_chunk::<4>().ok_or(HeaderError::Short)?;
    let stored = u32::from_le_bytes(*crc);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(HeaderError::Checksum { stored, computed });
    }
    Ok(header)
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Seq of the first record.
    pub first_seq: Seq,
    /// The store's id.
    pub store_id: u64,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        let mut v = Vec::with_capacity(SEGMENT_HEADER_LEN);
        v.extend_from_slice(&SEGMENT_MAGIC);
        v.extend_from_slice(&VERSION.to_le_bytes());
        v.extend_from_slice(&self.first_seq.to_le_bytes());
        v.extend_from_slice(&self.store_id.to_le_bytes());
        let crc = crc32c::crc32c(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        out.copy_from_slice(&v);
        out
    }

    /// Decodes the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let header = check_magic_version(bytes, SEGMENT_HEADER_LEN, SEGMENT_MAGIC)?;
        let mut r = Le(header.get(12..).ok_or(HeaderError::Short)?);
        let first_seq = r.u64().ok_or(HeaderError::Short)?;
        let store_id = r.u64().ok_or(HeaderError::Short)?;
        Ok(SegmentHeader {
            first_seq,
            store_id,
        })
    }
}

/// Appends one framed record to `out`.
///
/// `payload_crc` is `crc32c(payload)`, computed by the caller (outside the writer
/// section); this function only continues it over the seq.
pub fn encode_frame(out: &mut Vec<u8>, seq: Seq, payload: &[u8], payload_crc: u32) {
    let seq_bytes = seq.to_le_bytes();
    let crc = crc32c::crc32c_append(payload_crc, &seq_bytes);
    // Payload length is checked against u32::MAX when the event is encoded.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq_bytes);
    out.extend_from_slice(payload);
}

/// The size of a framed record with a payload of `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// One valid record found by [`RecordScan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's seq.
    pub seq: Seq,
    /// Offset of the record's frame in the file.
    pub offset: u64,
    /// The payload (postcard bytes of the event).
    pub payload: &'a [u8],
}

/// How the valid records of a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// The records end at `offset` and every byte after it is zero (or there is none).
    Clean {
        /// Offset just past the last valid record.
        offset: u64,
    },
    /// Non-zero bytes follow the last valid record: a torn write, or damage.
    Torn {
        /// Offset just past the last valid record.
        offset: u64,
        /// Bytes from `offset` to the end of the file.
        bytes: u64,
        /// What is wrong with the first invalid frame.
        reason: String,
    },
}

/// Iterates over the valid records of a segment's bytes (header included).
///
/// The scan never panics and never allocates in proportion to the input: a record
/// whose length runs past the end of the bytes ends the scan as [`ScanEnd::Torn`].
#[derive(Debug)]
pub struct RecordScan<'a> {
    bytes: &'a [u8],
    /// Offset in the file of `bytes[0]` (non-zero for a resumed scan).
    base: u64,
    pos: usize,
    next_seq: Seq,
    end: Option<ScanEnd>,
}

impl<'a> RecordScan<'a> {
    /// Starts scanning `bytes` (a whole segment) for records beginning at `first_seq`.
    pub fn new(bytes: &'a [u8], first_seq: Seq) -> Self {
        RecordScan {
            bytes,
            base: 0,
            pos: SEGMENT_HEADER_LEN,
            next_seq: first_seq,
            end: None,
        }
    }

    /// Continues a scan of a segment whose bytes from file offset `offset` on are
    /// `tail`, at the record carrying `next_seq`: for a reader that has already read
    /// the records before `offset` (the [`RecordScan::offset`] of an earlier scan).
    /// Offsets in the records and the end are file offsets.
    pub fn resume(tail: &'a [u8], offset: u64, next_seq: Seq) -> Self {
        RecordScan {
            bytes: tail,
            base: offset,
            pos: 0,
            next_seq,
            end: None,
        }
    }

    /// The file offset just past the last record returned (where the next one would
    /// start).
    pub fn offset(&self) -> u64 {
        self.base.saturating_add(self.pos as u64)
    }

    /// The seq the next record would need.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// How the scan ended; `None` until the iterator has returned `None`.
    pub fn end(&self) -> Option<&ScanEnd> {
        self.end.as_ref()
    }

    fn finish(&mut self, reason: Option<String>) -> Option<Record<'a>> {
        let offset = self.offset();
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        self.end = Some(if rest.iter().all(|&b| b == 0) {
            ScanEnd::Clean { offset }
        } else {
            ScanEnd::Torn {
                offset,
                bytes: rest.len() as u64,
                reason: reason.unwrap_or_else(|| "zero length followed by non-zero bytes".into()),
            }
        });
        None
    }
}

impl<'a> Iterator for RecordScan<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.end.is_some() {
            return None;
        }
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let mut r = Le(rest);
        let (Some(len), Some(crc), Some(seq)) = (r.u32(), r.u32(), r.u64()) else {
            return self.finish(Some("truncated frame header".into()));
        };
        if len == 0 {
            return self.finish(None);
        }
        let Some(payload) = r.0.get(..len as usize) else {
            return self.finish(Some(format!(
                "record of {len} bytes runs past the end of the file"
            )));
        };
        let computed = crc32c::crc32c_append(crc32c::crc32c(payload), &seq.to_le_bytes());
        if computed != crc {
            return self.finish(Some(format!(
                "checksum mismatch (stored {crc:08x}, computed {computed:08x})"
            )));
        }
        if seq != self.next_seq {
            return self.finish(Some(format!(
                "record carries seq {seq} where {} was expected",
                self.next_seq
            )));
        }
        let Some(next_seq) = seq.checked_add(1) else {
            return self.finish(Some(format!(
                "record carries seq {seq}, which no writer reaches"
            )));
        };
        let offset = self.offset();
        self.pos += FRAME_HEADER_LEN + payload.len();
        self.next_seq = next_seq;
        Some(Record {
            seq,
            offset,
            payload,
        })
    }
}

/// A decoded snapshot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The state is the state after this seq.
    pub seq: Seq,
    /// The store's id.
    pub store_id: u64,
    /// Length of the body.
    pub body_len: u64,
    /// CRC32C of the body.
    pub body_crc: u32,
}

impl SnapshotHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_LEN] {
        let mut v = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
        v.extend_from_slice(&SNAPSHOT_MAGIC);
        v.extend_from_slice(&VERSION.to_le_bytes());
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.extend_from_slice(&self.store_id.to_le_bytes());
        v.extend_from_slice(&self.body_len.to_le_bytes());
        v.extend_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        let mut out = [0u8; SNAPSHOT_HEADER_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Decodes the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let header = check_magic_version(bytes, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC)?;
        let mut r = Le(header.get(12..).ok_or(HeaderError::Short)?);
        let (Some(seq), Some(store_id), Some(body_len), Some(body_crc)) =
            (r.u64(), r.u64(), r.u64(), r.u32())
        else {
            return Err(HeaderError::Short);
        };
        Ok(SnapshotHeader {
            seq,
            store_id,
            body_len,
            body_crc,
        })
    }
}

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: Seq) -> String {
    format!("{first_seq:020}.wal")
}

/// The file name of the snapshot of the state after `seq`.
pub fn snapshot_name(seq: Seq) -> String {
    format!("{seq:020}.snap")
}

/// Parses `<20 digits>.<ext>` into the number; anything else is `None`.
pub fn parse_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The entries of `names` that are `<20 digits>.<ext>`, as `(number, dir/name)`, sorted
/// by number.
pub(crate) fn numbered(
    names: &[String],
    dir: &std::path::Path,
    ext: &str,
) -> Vec<(u64, std::path::PathBuf)> {
    let mut v: Vec<_> = names
        .iter()
        .filter_map(|n| parse_name(n, ext).map(|s| (s, dir.join(n))))
        .collect();
    v.sort_unstable_by_key(|(s, _)| *s);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            first_seq: 42,
            store_id: 0xdead_beef,
        };
        let mut bytes = h.encode().to_vec();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        assert_eq!(SegmentHeader::decode(&bytes[..10]), Err(HeaderError::Short));
        bytes[15] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&bytes),
            Err(HeaderError::Checksum { .. })
        ));
        bytes[8] = 2;
        assert_eq!(SegmentHeader::decode(&bytes), Err(HeaderError::Version(2)));
        bytes[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bytes), Err(HeaderError::BadMagic));
        assert_eq!(
            SegmentHeader::decode(&[0u8; SEGMENT_HEADER_LEN]),
            Err(HeaderError::Zeroed)
        );
    }

    #[test]
    fn scan_stops_at_seq_gap_and_reports_torn_bytes() {
        let mut seg = SegmentHeader {
            first_seq: 5,
            store_id: 1,
        }
        .encode()
        .to_vec();
        for (seq, p) in [(5u64, b"a".as_slice()), (6, b"bb"), (8, b"ccc")] {
            encode_frame(&mut seg, seq, p, crc32c::crc32c(p));
        }
        let mut scan = RecordScan::new(&seg, 5);
        let got: Vec<_> = scan.by_ref().map(|r| (r.seq, r.payload.to_vec())).collect();
        assert_eq!(got, vec![(5, b"a".to_vec()), (6, b"bb".to_vec())]);
        let torn_at = (SEGMENT_HEADER_LEN + 2 * FRAME_HEADER_LEN + 3) as u64;
        match scan.end() {
            Some(ScanEnd::Torn { offset, bytes, .. }) => {
                assert_eq!(*offset, torn_at);
                assert_eq!(*bytes, (FRAME_HEADER_LEN + 3) as u64);
            }
            other => panic!("unexpected end {other:?}"),
        }
    }

    #[test]
    fn zero_padding_is_a_clean_end() {
        let mut seg = SegmentHeader {
            first_seq: 1,
            store_id: 1,
        }
        .encode()
        .to_vec();
        encode_frame(&mut seg, 1, b"x", crc32c::crc32c(b"x"));
        let end = seg.len() as u64;
        seg.resize(4096, 0);
        let mut scan = RecordScan::new(&seg, 1);
        assert_eq!(scan.by_ref().count(), 1);
        assert_eq!(scan.end(), Some(&ScanEnd::Clean { offset: end }));
    }

    #[test]
    fn names_parse_only_when_exact() {
        assert_eq!(parse_name(&segment_name(17), "wal"), Some(17));
        assert_eq!(parse_name(&snapshot_name(u64::MAX), "snap"), Some(u64::MAX));
        assert_eq!(parse_name("17.wal", "wal"), None);
        assert_eq!(parse_name("0000000000000000001x.wal", "wal"), None);
        assert_eq!(parse_name("00000000000000000017.wal.corrupt", "wal"), None);
        assert_eq!(
            parse_name("00000000000000000017.wal.1.corrupt", "wal"),
            None
        );
        assert_eq!(
            parse_name("00000000000000000017.snap.2.corrupt", "snap"),
            None
        );
    }
}
