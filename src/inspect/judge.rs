//! Judging what was read: continuity across segments, damage, and the seq a recovery
//! would reach.

use super::*;

/// Fills in the damage, the torn tail, the notes, the store id and the recovery.
pub(super) fn judge(out: &mut Inspection) {
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
pub(super) fn recovery(out: &Inspection, store_id: Option<u64>) -> Recovery {
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
