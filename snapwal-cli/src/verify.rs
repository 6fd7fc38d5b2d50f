//! `snapwal verify`: every checksum and seq, with an exit code a script can use.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{human_bytes, show};

/// Exit code: damage found.
const EXIT_DAMAGE: u8 = 1;

pub fn run(dir: &Path) -> Result<(ExitCode, String), String> {
    use std::fmt::Write;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "verifying {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .map_err(|e| e.to_string())?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let start = Instant::now();
    let found = snapwal::inspect::inspect_with_progress(dir, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let found = found.map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "checked {} segments ({} records), {} snapshots, {} positions records: {} in {:.2} s ({:.0} MB/s)",
        found.segments.len(),
        found.records,
        found.snapshots.len(),
        found.positions.len(),
        human_bytes(found.bytes_read),
        secs,
        found.bytes_read as f64 / 1e6 / secs.max(1e-9),
    );
    if let Some((path, offset, bytes)) = &found.torn_tail {
        let _ = writeln!(o,
            "note: torn tail in the last segment: {bytes} bytes after offset {offset} in {} (a crash during a write; recovery cuts them)",
            show(path)
        );
    }
    for note in &found.notes {
        let _ = writeln!(o, "note: {note}");
    }
    let _ = writeln!(o, "recovery {}", crate::inspect::recovery_line(&found));
    if found.is_clean() {
        let _ = writeln!(o, "ok: no damage");
        return Ok((ExitCode::SUCCESS, o));
    }
    for p in &found.damage {
        let _ = writeln!(
            o,
            "DAMAGE: {} at offset {}: {}",
            show(&p.path),
            p.offset,
            p.reason
        );
    }
    let _ = writeln!(o, "{} damaged place(s) found", found.damage.len());
    Ok((ExitCode::from(EXIT_DAMAGE), o))
}
