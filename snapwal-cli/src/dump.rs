//! `snapwal dump`: the WAL's records as JSON lines.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use snapwal::inspect::for_each_record;

pub fn run(dir: &Path, from: Option<u64>, to: Option<u64>, hex: bool) -> Result<ExitCode, String> {
    let from = from.unwrap_or(0);
    let to = to.unwrap_or(u64::MAX);
    if from > to {
        return Err(format!("--from {from} is after --to {to}"));
    }
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_error: Option<io::Error> = None;
    let result = for_each_record(dir, from..=to, |rec| {
        let payload = if hex {
            rec.payload
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        } else {
            base64::engine::general_purpose::STANDARD.encode(rec.payload)
        };
        let line = serde_json::json!({
            "seq": rec.seq,
            "segment": crate::show(rec.segment),
            "offset": rec.offset,
            "len": rec.len,
            "crc": rec.crc,
            "encoding": if hex { "hex" } else { "base64" },
            "payload": payload,
        });
        match writeln!(out, "{line}") {
            Ok(()) => Ok(()),
            Err(e) => {
                write_error = Some(e);
                // Stops the walk; the write error is reported below.
                Err(snapwal::Error::Cancelled)
            }
        }
    });
    let flushed = out.flush();
    match (write_error, result) {
        // The reader went away (`snapwal dump DIR | head`): not an error.
        (Some(e), _) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        (Some(e), _) => return Err(format!("writing to stdout: {e}")),
        (None, Err(e)) => return Err(e.to_string()),
        (None, Ok(())) => {}
    }
    match flushed {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(format!("writing to stdout: {e}")),
        _ => Ok(ExitCode::SUCCESS),
    }
}
