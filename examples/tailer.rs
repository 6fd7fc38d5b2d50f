//! An async file tailer that survives `kill -9`.
//!
//! ```sh
//! cargo run --release --example tailer            # the demo below, in a temp dir
//! cargo run --release --example tailer -- child DIR   # one tailer on DIR
//! ```
//!
//! The demo writes lines into three log files from a thread, runs the tailer as a
//! child process (this program with `child DIR`), SIGKILLs it at pseudo-random
//! moments and restarts it, then lets a last tailer catch up and checks that every
//! line of every file was counted exactly once. The tailer records each line as an
//! event with `append_batch_async` (durable under `SyncPolicy::Always`), keeps each
//! file's read offset in a position cell, and checkpoints every 100 ms; see
//! `tailer/demo.rs` for why a position that lags the state re-reads lines but never
//! counts one twice.

#[path = "tailer/demo.rs"]
mod demo;

use std::path::Path;
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, dir] = &args[..] {
        if mode == "child" {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            if let Err(e) = rt.block_on(demo::tail(Path::new(dir))) {
                eprintln!("tailer failed: {e}");
                std::process::exit(1);
            }
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let child = |dir: &Path| {
        let mut cmd = Command::new(&exe);
        cmd.arg("child").arg(dir);
        cmd
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    println!(
        "tailing {} files; the tailer is killed 5 times",
        demo::FILES.len()
    );
    let outcome = demo::run(tmp.path(), 5, seed, &child, &mut |line| println!("{line}"));
    println!();
    println!(
        "{:<10} {:>8} {:>8} {:>10}",
        "file", "counted", "in file", "exact"
    );
    for (name, got, want) in &outcome.files {
        println!(
            "{name:<10} {:>8} {:>8} {:>10}",
            got.lines,
            want.lines,
            if got == want { "yes" } else { "NO" }
        );
    }
    if outcome.exact() {
        println!(
            "\nafter {} kills, every line was counted exactly once: none lost, none twice.",
            outcome.kills
        );
    } else {
        println!("\nMISMATCH: lines were lost or counted twice");
        std::process::exit(1);
    }
}
