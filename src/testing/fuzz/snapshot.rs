//! The `snapshot_decode` target: one snapshot file through `decode`, re-encoding and `open`.

use super::alloc::{bounded_alloc, unbounded};
use super::{check_store, error_kind, sim_with, snap_dir, Body, Expect, FuzzState};
use crate::error::Error;
use crate::format::{self, SnapshotHeader, SNAPSHOT_HEADER_LEN};
use crate::fs::Fs;
use crate::Seq;

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
            let fs = sim_with([]);
            if let Err(e) = fs.create_dir_all(&snap_dir()) {
                panic!("simulated mkdir failed: {e}");
            }
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
            let bytes = fs.contents(&path).unwrap_or_default();
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
/// error naming the file, with an offset inside it. Then [`Store::open`](crate::Store::open) on a
/// directory holding only that snapshot must open at its seq with its state, or fail.
pub fn snapshot_decode(data: &[u8]) {
    bounded_alloc("snapshot_decode", data.len(), || {
        check_snapshot(data);
        check_snapshot(&repair_snapshot(data));
    });
}
