//! `snapwal`: inspect, verify, dump and back up a snapwal store directory.
//!
//! Nothing here writes to the store or takes its lock, so every command can run next
//! to a live writer (`backup` writes only to its destination).
//!
//! Exit codes: 0 when the command succeeded (for `verify`: no damage), 1 when `verify`
//! found damage, 2 when the store could not be read or the backup failed (or the
//! arguments are wrong).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backup;
mod dump;
mod inspect;
mod verify;

/// Inspect, verify, dump and back up a snapwal store directory (never writing to it).
#[derive(Debug, Parser)]
#[command(name = "snapwal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the store's files, their state, the lock and what a recovery would reach.
    Inspect {
        /// The store directory.
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every header, record and snapshot. Exit code: 0 clean, 1 damage found,
    /// 2 the store could not be read.
    Verify {
        /// The store directory.
        dir: PathBuf,
    },
    /// Print the WAL's records as JSON lines (seq, segment, offset, len, crc, payload).
    Dump {
        /// The store directory.
        dir: PathBuf,
        /// First seq to print.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last seq to print.
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Print payloads in hex instead of base64.
        #[arg(long)]
        hex: bool,
    },
    /// Copy the store to DEST (which must not exist, or be empty) without its lock:
    /// hard links for the files that never change where DEST is on the same file
    /// system, copies otherwise; the last segment is copied up to its last whole
    /// record. The copy opens as a store.
    Backup {
        /// The store directory.
        dir: PathBuf,
        /// The new copy.
        dest: PathBuf,
    },
}

/// Exit code: the store could not be read.
const EXIT_UNREADABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { dir, json } => inspect::run(&dir, json).map(print),
        Command::Verify { dir } => verify::run(&dir).map(print),
        Command::Dump { dir, from, to, hex } => dump::run(&dir, from, to, hex),
        Command::Backup { dir, dest } => backup::run(&dir, &dest).map(print),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("snapwal: error: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

/// Writes a command's report to stdout and returns its exit code. A reader that went
/// away (`snapwal inspect DIR | head -3`) does not change the exit code.
fn print((code, text): (ExitCode, String)) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("snapwal: error: writing to stdout: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
        _ => code,
    }
}

/// A path as printed: lossy UTF-8.
fn show(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// `n` bytes in human units.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS.get(unit).copied().unwrap_or("B")),
    }
}
