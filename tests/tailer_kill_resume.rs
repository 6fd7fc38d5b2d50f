//! The async tailer of `examples/tailer.rs` survives SIGKILL: a child tailer (this
//! test binary, re-executed to run only `child_tailer`) is killed three times at
//! pseudo-random moments while a writer appends lines, then a last one catches up;
//! every line of every file is counted exactly once, and every restart finds its
//! saved positions no further than the recovered state (asserted in the child).
#![cfg(feature = "async")]

#[path = "../examples/tailer/demo.rs"]
mod demo;

use std::path::Path;
use std::process::Command;

const DIR_VAR: &str = "TAILER_CHILD_DIR";

/// Child entry point: one tailer on the directory the parent gives.
#[test]
#[ignore = "child process of a_killed_tailer_resumes_and_counts_every_line_once"]
fn child_tailer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    // A newline first: the test runner has printed `test child_tailer ... ` unended.
    println!();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(demo::tail(Path::new(&dir))).expect("tailer");
}

#[test]
fn a_killed_tailer_resumes_and_counts_every_line_once() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = |dir: &Path| {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--exact",
            "child_tailer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir);
        cmd
    };
    let start = std::time::Instant::now();
    let outcome = demo::run(tmp.path(), 3, 0x7A11, &child, &mut |line| {
        println!("{line}")
    });
    println!("{outcome:?} in {:.1?}", start.elapsed());
    for (name, got, want) in &outcome.files {
        assert!(want.lines > 100, "{name}: the writer wrote lines");
        assert_eq!(got, want, "{name}: counted vs in the file");
    }
}
