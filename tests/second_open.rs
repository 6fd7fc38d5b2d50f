//! A second open of a directory that a store holds fails with `Error::Locked`, from
//! this process and from another one, and succeeds again once the first store is
//! closed or dropped (I7).
mod common;
use common::*;
use snapwal::{Error, Store, SyncPolicy};
use std::path::Path;
use std::process::Command;

/// Tells `child_tries_to_open` that it runs as the child, and which directory to open.
const CHILD_DIR: &str = "SNAPWAL_TEST_CHILD_DIR";
/// Exit codes of the child: distinct from 0 (test passed) and 101 (test panicked).
const CHILD_OPENED: i32 = 40;
const CHILD_LOCKED: i32 = 41;
const CHILD_OTHER_ERROR: i32 = 42;

/// Serializes the tests of this file. A child process is forked from this one and, until
/// it execs, holds a copy of every descriptor this process has open, including the
/// `LOCK` descriptor of a store another test holds: an `flock` belongs to the open file
/// description, so that store's lock stays held until the child execs, and a test that
/// drops a store and reopens it at once would see `Locked` while another test spawns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The child half of the cross-process tests, ignored so that it never counts as a
/// passing test of its own: the parent runs this binary again with only this test
/// selected (`--ignored`) and the variable set. Run by hand without the variable, it
/// fails.
#[test]
#[ignore = "child process of the cross-process tests; run by them with the directory set"]
fn child_tries_to_open() {
    let dir = std::env::var_os(CHILD_DIR)
        .unwrap_or_else(|| panic!("{CHILD_DIR} is not set: this test is a child process"));
    let code = match Store::<Ledger>::open(Path::new(&dir), opts(SyncPolicy::Always)) {
        Ok(store) => {
            let seq = store.seq();
            store.close().unwrap();
            println!("child-result: opened seq={seq}");
            CHILD_OPENED
        }
        Err(e) => match &e {
            Error::Locked { path } => {
                println!("child-result: Locked path={} display={e}", path.display());
                CHILD_LOCKED
            }
            other => {
                println!("child-result: other error {other:?}");
                CHILD_OTHER_ERROR
            }
        },
    };
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::exit(code);
}

/// Runs `child_tries_to_open` in a new process on `dir`; returns its exit code and the
/// line it printed.
fn run_child(dir: &Path) -> (i32, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_tries_to_open",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The harness prints "test child_tries_to_open ... " before the child's own output.
    let line = stdout
        .lines()
        .find_map(|l| l.find("child-result: ").map(|i| &l[i..]))
        .unwrap_or_else(|| {
            panic!(
                "child printed no result; status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned();
    (out.status.code().expect("child killed by a signal"), line)
}

#[test]
fn second_open_in_same_process_is_locked() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), SyncPolicy::Always);
    first.append(&Entry::new(1, 0)).unwrap();

    let err = Store::<Ledger>::open(dir.path(), opts(SyncPolicy::Always)).unwrap_err();
    match &err {
        Error::Locked { path } => assert_eq!(path, &dir.path().join("LOCK")),
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("locked"),
        "display does not say locked: {text}"
    );
    assert!(
        text.contains("LOCK"),
        "display does not name the lock file: {text}"
    );

    // The failed open did not disturb the first store.
    assert_eq!(first.append(&Entry::new(1, 1)).unwrap(), 2);
    first.close().unwrap();
}

#[test]
fn second_open_from_child_process_is_locked() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), SyncPolicy::Always);
    first.append(&Entry::new(1, 0)).unwrap();

    let (code, line) = run_child(dir.path());
    assert_eq!(code, CHILD_LOCKED, "child: {line}");
    let lock = dir.path().join("LOCK");
    assert!(
        line.contains(&format!("path={}", lock.display())),
        "child: {line}"
    );
    assert!(line.contains("locked"), "child: {line}");

    // Still ours: appends go on, and the child wrote nothing.
    assert_eq!(first.append(&Entry::new(1, 1)).unwrap(), 2);
    first.close().unwrap();

    // Closed: now the child can open it and sees both events.
    let (code, line) = run_child(dir.path());
    assert_eq!(code, CHILD_OPENED, "child: {line}");
    assert_eq!(line, "child-result: opened seq=2");
}

#[test]
fn open_succeeds_after_close() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), SyncPolicy::Always);
    first.append(&Entry::new(1, 0)).unwrap();
    first.close().unwrap();

    let second = open(dir.path(), SyncPolicy::Always);
    assert_eq!(second.seq(), 1);
    assert_eq!(*second.current().state(), replayed(&[Entry::new(1, 0)]));
    second.close().unwrap();
}

#[test]
fn open_succeeds_after_drop_without_close() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Never,
        SyncPolicy::Interval(std::time::Duration::from_millis(10)),
    ] {
        let first = Store::<Ledger>::open(dir.path(), opts(policy)).unwrap();
        let seq = first.append(&Entry::new(1, first.seq())).unwrap();
        drop(first);

        let second = Store::<Ledger>::open(dir.path(), opts(policy))
            .unwrap_or_else(|e| panic!("reopen after drop under {policy:?}: {e}"));
        assert_eq!(second.seq(), seq);
        drop(second);
    }
    // Dropped in this process: another process can take the lock too.
    let (code, line) = run_child(dir.path());
    assert_eq!(code, CHILD_OPENED, "child: {line}");
    assert_eq!(line, "child-result: opened seq=3");
}
