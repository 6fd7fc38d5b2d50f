//! Regression: a child process forked by another thread holds copies of every
//! descriptor until it execs. The directory lock was released only by closing its
//! descriptor, so a store dropped during that window stayed locked and a reopen got
//! `Error::Locked`. The lock guard now unlocks explicitly.
mod common;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;
use snapwal::SyncPolicy;

#[test]
fn reopen_succeeds_while_a_forked_child_holds_inherited_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SyncPolicy::Always);
    store.append(&Entry::new(1, 1)).unwrap();

    let mut cmd = std::process::Command::new("true");
    // SAFETY: the closure runs in the forked child before exec and only sleeps
    // (a nanosleep loop, async-signal-safe); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            std::thread::sleep(Duration::from_secs(1));
            Ok(())
        });
    }
    let child_thread = std::thread::spawn(move || cmd.status().unwrap());
    // Let the fork happen: the child now sleeps holding a copy of the LOCK fd.
    std::thread::sleep(Duration::from_millis(200));
    drop(store);
    let reopened = snapwal::Store::<common::Ledger>::open(dir.path(), opts(SyncPolicy::Always));
    assert!(reopened.is_ok(), "{:?}", reopened.err());
    assert_eq!(reopened.unwrap().current().seq(), 1);
    assert!(child_thread.join().unwrap().success());
}
