//! `snapwal backup`: a consistent copy of a store another process may be writing.
//!
//! The store is owned by another process (or closed): this never takes its lock and
//! never writes to it. It links (same file system) or copies the snapshots, positions
//! records and sealed segments, and copies the last segment up to its last valid
//! record, starting again if a checkpoint's cleanup removes a file meanwhile (see
//! `snapwal::backup::backup_dir`). The copy is consistent to the prefix of records on
//! disk when the last segment was read: everything the writer had acknowledged as
//! durable by then, cut at a whole record.

use std::path::Path;
use std::process::ExitCode;

use crate::{human_bytes, show};

pub fn run(dir: &Path, dest: &Path) -> Result<(ExitCode, String), String> {
    let r = snapwal::backup::backup_dir(dir, dest).map_err(|e| e.to_string())?;
    let text = format!(
        "backed up {} to {}: seq {}; files: {} linked, {} copied ({}); {:.2} s\n",
        show(dir),
        show(dest),
        r.seq,
        r.files_linked,
        r.files_copied,
        human_bytes(r.bytes_copied),
        r.elapsed.as_secs_f64(),
    );
    Ok((ExitCode::SUCCESS, text))
}
