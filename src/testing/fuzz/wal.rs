//! The `wal_decode` target: one segment file through the scanner, replay and `open`.

use super::alloc::bounded_alloc;
use super::{check_store, error_kind, sim_with, wal_dir, Expect, FuzzEvent, FuzzState};
use crate::error::Error;
use crate::format::{
    self, HeaderError, RecordScan, ScanEnd, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::{RecoveryPolicy, Seq};

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

/// [`expect_replay`] for a segment file named `first`: a segment named 0 is never
/// valid (seqs start at 1), whatever it holds: a typed error at offset 0, or moved
/// aside under `SalvagePrefix`.
fn expect_named(
    data: &[u8],
    model: Option<&SegmentModel>,
    first: Seq,
    after: Seq,
    policy: RecoveryPolicy,
) -> Expect {
    if first != 0 {
        return expect_replay(data, model, after, policy);
    }
    match policy {
        RecoveryPolicy::SalvagePrefix => Expect::Ok {
            events: Vec::new(),
            next_seq: after + 1,
            torn: None,
            removed: false,
            quarantined: true,
        },
        _ => Expect::Err("Corrupt", Some(0)),
    }
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
            // Never written: removed; holding other bytes (damage): moved aside.
            Err(HeaderError::Short | HeaderError::Zeroed) => {
                let holds_bytes = data.iter().any(|&b| b != 0);
                Expect::Ok {
                    events: Vec::new(),
                    next_seq: next,
                    torn: None,
                    removed: !holds_bytes,
                    quarantined: holds_bytes,
                }
            }
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
        // No valid record: removed when nothing follows the header, else moved aside.
        removed: m.records.is_empty() && torn.is_none(),
        quarantined: m.records.is_empty() && torn.is_some(),
    }
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
    let fs = sim_with([(path.clone(), data.to_vec())]);
    let expect = expect_named(data, model, first, after, policy);
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
                assert!(!fs.exists(&path), "a quarantined segment is still in place");
            }
            Expect::Ok {
                events,
                next_seq: r.next_seq,
                torn: r.torn_tail.map(|(p, o, b)| {
                    assert_eq!(p, path);
                    (o, b)
                }),
                removed: !fs.exists(&path) && !quarantined,
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
        let expect = expect_named(
            data,
            model.as_ref(),
            first,
            0,
            RecoveryPolicy::TolerateTornTail,
        );
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
/// then recovery under each policy and through [`Store::open`](crate::Store::open) against a model of what
/// it must do: the exact records, next seq and torn tail, or a typed error naming the
/// segment and the offset.
pub fn wal_decode(data: &[u8]) {
    bounded_alloc("wal_decode", data.len(), || {
        check_segment(data);
        check_segment(&repair_segment(data));
    });
}
