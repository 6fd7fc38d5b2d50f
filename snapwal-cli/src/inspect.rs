//! `snapwal inspect`: the store's files as a table or as JSON.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};
use snapwal::inspect::{FileCheck, Inspection, Problem, Recovery, SegmentEnd};

use crate::{human_bytes, show};

pub fn run(dir: &Path, as_json: bool) -> Result<(ExitCode, String), String> {
    let found = snapwal::inspect::inspect(dir).map_err(|e| e.to_string())?;
    let text = if as_json {
        format!("{:#}\n", to_json(&found))
    } else {
        table(&found)
    };
    Ok((ExitCode::SUCCESS, text))
}

fn store_id(id: Option<u64>) -> Value {
    id.map_or(Value::Null, |id| Value::String(format!("{id:016x}")))
}

pub fn problem_json(p: &Problem) -> Value {
    json!({ "file": show(&p.path), "offset": p.offset, "reason": p.reason })
}

fn opt_problem(p: Option<&Problem>) -> Value {
    p.map_or(Value::Null, problem_json)
}

fn torn_json(t: Option<&(std::path::PathBuf, u64, u64)>) -> Value {
    t.map_or(
        Value::Null,
        |(path, offset, bytes)| json!({ "file": show(path), "offset": offset, "bytes": bytes }),
    )
}

fn file_json(f: &FileCheck, number_key: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("file".into(), show(&f.path).into());
    m.insert(number_key.into(), f.number.into());
    m.insert("bytes".into(), f.bytes.into());
    m.insert("valid".into(), f.is_valid().into());
    m.insert("problem".into(), opt_problem(f.problem.as_ref()));
    m
}

pub fn recovery_json(r: &Recovery) -> Value {
    match r {
        Recovery::Reaches {
            seq,
            snapshot,
            torn_tail,
        } => json!({
            "ok": true,
            "seq": seq,
            "from_snapshot": snapshot,
            "torn_tail": torn_json(torn_tail.as_ref()),
        }),
        Recovery::Fails(p) => json!({ "ok": false, "problem": problem_json(p) }),
    }
}

pub fn to_json(i: &Inspection) -> Value {
    let paths = |v: &[std::path::PathBuf]| v.iter().map(|p| show(p)).collect::<Vec<_>>();
    let segments: Vec<Value> = i
        .segments
        .iter()
        .map(|s| {
            let (end, problem) = match &s.end {
                SegmentEnd::Clean => ("clean", Value::Null),
                SegmentEnd::Torn {
                    offset,
                    bytes,
                    reason,
                } => (
                    "torn",
                    json!({ "file": show(&s.path), "offset": offset, "bytes": bytes, "reason": reason }),
                ),
                SegmentEnd::BadHeader(p) => ("bad_header", problem_json(p)),
            };
            json!({
                "file": show(&s.path),
                "first_seq": s.first_seq,
                "last_seq": s.last_seq(),
                "records": s.records,
                "bytes": s.bytes,
                "valid_end": s.valid_end,
                "end": end,
                "problem": problem,
            })
        })
        .collect();
    let snapshots: Vec<Value> = i
        .snapshots
        .iter()
        .map(|f| Value::Object(file_json(f, "seq")))
        .collect();
    let positions: Vec<Value> = i
        .positions
        .iter()
        .map(|p| {
            let mut m = file_json(&p.file, "generation");
            m.insert("state_seq".into(), json!(p.state_seq));
            let list: Vec<Value> = p
                .positions
                .iter()
                .map(|(name, pos)| {
                    json!({ "name": name, "offset": pos.offset, "inode": pos.inode, "timestamp": pos.timestamp })
                })
                .collect();
            m.insert("positions".into(), list.into());
            Value::Object(m)
        })
        .collect();
    json!({
        "dir": show(&i.dir),
        "store_id": store_id(i.store_id),
        "format_versions": i.versions.iter().collect::<Vec<_>>(),
        "reads_version": snapwal::format::VERSION,
        "lock": i.lock.as_str(),
        "segments": segments,
        "snapshots": snapshots,
        "positions": positions,
        "temp_files": paths(&i.temp_files),
        "corrupt_files": paths(&i.corrupt_files),
        "other_files": paths(&i.other_files),
        "recovery": recovery_json(&i.recovery),
        "torn_tail": torn_json(i.torn_tail.as_ref()),
        "damage": i.damage.iter().map(problem_json).collect::<Vec<_>>(),
        "notes": i.notes,
        "records": i.records,
        "bytes_read": i.bytes_read,
    })
}

/// A file's name relative to the store directory.
fn rel(dir: &Path, path: &Path) -> String {
    show(path.strip_prefix(dir).unwrap_or(path))
}

pub fn recovery_line(i: &Inspection) -> String {
    match &i.recovery {
        Recovery::Reaches {
            seq,
            snapshot,
            torn_tail,
        } => {
            let mut s = format!("reaches seq {seq}");
            match snapshot {
                Some(snap) => s.push_str(&format!(" (snapshot {snap} + WAL)")),
                None => s.push_str(" (WAL only)"),
            }
            if let Some((path, offset, bytes)) = torn_tail {
                s.push_str(&format!(
                    "; cuts a torn tail of {bytes} bytes at {}:{offset}",
                    rel(&i.dir, path)
                ));
            }
            s
        }
        Recovery::Fails(p) => format!("FAILS: {p}"),
    }
}

fn table(i: &Inspection) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let versions: Vec<String> = i.versions.iter().map(u32::to_string).collect();
    let _ = writeln!(o, "store      {}", show(&i.dir));
    let _ = writeln!(
        o,
        "store id   {}",
        i.store_id
            .map_or("(none yet)".into(), |id| format!("{id:016x}"))
    );
    let _ = writeln!(
        o,
        "format     {} (this build reads {})",
        if versions.is_empty() {
            "(no file yet)".to_string()
        } else {
            format!("version {}", versions.join(", "))
        },
        snapwal::format::VERSION
    );
    let _ = writeln!(o, "lock       {}", i.lock.as_str());
    let _ = writeln!(o, "recovery   {}", recovery_line(i));

    let _ = writeln!(o, "\nsegments ({})", i.segments.len());
    if !i.segments.is_empty() {
        let _ = writeln!(
            o,
            "  {:<30} {:>10} {:>10} {:>9} {:>10}  end",
            "file", "first seq", "last seq", "records", "size"
        );
    }
    for s in &i.segments {
        let end = match &s.end {
            SegmentEnd::Clean => "clean".to_string(),
            SegmentEnd::Torn { offset, bytes, .. } => format!("torn: {bytes} bytes at {offset}"),
            SegmentEnd::BadHeader(p) => format!("bad header: {}", p.reason),
        };
        let _ = writeln!(
            o,
            "  {:<30} {:>10} {:>10} {:>9} {:>10}  {end}",
            rel(&i.dir, &s.path),
            s.first_seq,
            s.last_seq().map_or("-".into(), |l| l.to_string()),
            s.records,
            human_bytes(s.bytes),
        );
    }
    let _ = writeln!(o, "\nsnapshots ({})", i.snapshots.len());
    for f in &i.snapshots {
        let _ = writeln!(
            o,
            "  {:<30} seq {:>10} {:>10}  {}",
            rel(&i.dir, &f.path),
            f.number,
            human_bytes(f.bytes),
            status(f)
        );
    }
    let _ = writeln!(o, "\npositions records ({})", i.positions.len());
    for p in &i.positions {
        let names: Vec<String> = p
            .positions
            .iter()
            .map(|(n, pos)| format!("{n}@{}", pos.offset))
            .collect();
        let _ = writeln!(
            o,
            "  {:<30} gen {:>6} state seq {:>10}  {}{}",
            rel(&i.dir, &p.file.path),
            p.file.number,
            p.state_seq.map_or("-".into(), |s| s.to_string()),
            status(&p.file),
            if names.is_empty() {
                String::new()
            } else {
                format!("  [{}]", names.join(", "))
            }
        );
    }
    for (title, list) in [
        ("temp files", &i.temp_files),
        ("moved aside (.corrupt)", &i.corrupt_files),
        ("other files", &i.other_files),
    ] {
        if !list.is_empty() {
            let _ = writeln!(o, "\n{title} ({})", list.len());
            for p in list {
                let _ = writeln!(o, "  {}", rel(&i.dir, p));
            }
        }
    }
    if !i.damage.is_empty() {
        let _ = writeln!(o, "\ndamage ({})", i.damage.len());
        for p in &i.damage {
            let _ = writeln!(o, "  {}", p);
        }
    }
    if !i.notes.is_empty() {
        let _ = writeln!(o, "\nnotes");
        for n in &i.notes {
            let _ = writeln!(o, "  {n}");
        }
    }
    o
}

fn status(f: &FileCheck) -> String {
    match &f.problem {
        None => "valid".into(),
        Some(p) => format!("INVALID at offset {}: {}", p.offset, p.reason),
    }
}
