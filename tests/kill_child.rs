//! A real kernel SIGKILL at a pseudo-random moment loses no acknowledged append: a
//! child process appends under `SyncPolicy::Always` and reports each acknowledged seq;
//! the parent kills it, reopens the directory, and finds at least every acknowledged
//! seq and exactly the state after events `1..=k`, round after round in one directory.
//!
//! A SIGKILL keeps the page cache, so this test alone cannot tell `Always` from
//! `Never`: it checks the kernel-kill path (real processes, real files, the lock freed
//! by the kernel). `power_loss_keeps_every_acknowledged_append_only_under_always`
//! below pairs it with a simulated power loss, which drops what was not synced, and
//! shows that the difference is seen; `tests/crash_check.rs` explores every crash
//! point that way.
//!
//! The child is this test binary itself, re-executed to run only `child_appends` (an
//! ignored test that does nothing unless `KILL_CHILD_DIR` is set).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use snapwal::{Options, Store, SyncPolicy};

const DIR_VAR: &str = "KILL_CHILD_DIR";
const ROUNDS: u64 = 8;

/// The event with seq `seq`: a pure function of it, so the parent can recompute the
/// log. Sizes vary so records straddle the small segments in different ways.
fn event(seq: u64) -> Entry {
    Entry::padded((seq % 5) as u32, seq, (seq * 37 % 300) as usize)
}

fn options() -> Options {
    Options::default()
        .sync(SyncPolicy::Always)
        .segment_bytes(4096)
        .preallocate(true)
}

/// Child entry point: open (recovering the previous round's crash), then append
/// forever, printing `ack <seq>` after each append returns, and checkpoint now and then.
#[test]
#[ignore = "child process of kill_at_random_moments_loses_no_acknowledged_append"]
fn child_appends() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let store = Store::<common::Ledger>::open(&dir, options()).expect("child open");
    let mut out = std::io::stdout().lock();
    // A newline first: the test runner has printed `test child_appends ... ` unended.
    writeln!(out, "\nopen {}", store.seq()).unwrap();
    out.flush().unwrap();
    loop {
        let seq = store.seq() + 1;
        assert_eq!(store.append(&event(seq)).expect("append"), seq);
        writeln!(out, "ack {seq}").unwrap();
        out.flush().unwrap();
        if seq % 97 == 0 {
            store.checkpoint().expect("checkpoint");
        }
    }
}

/// xorshift64*: a fixed seed makes the kill points the same on every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn kill_at_random_moments_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0x5EED_0FC0_FFEE_u64;
    let mut log: Vec<Entry> = Vec::new();
    let mut recovered = 0u64;
    let mut acked_in_all_rounds = 0u64;
    for round in 0..ROUNDS {
        let kill_after = 1 + next(&mut rng) % 300;
        let mut child = Command::new(&exe)
            .args([
                "child_appends",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut acked, mut opened_at, mut acks_this_round) = (0u64, None, 0u64);
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(s) = line.strip_prefix("open ") {
                opened_at = Some(s.parse::<u64>().unwrap());
            } else if let Some(s) = line.strip_prefix("ack ") {
                let seq: u64 = s.parse().unwrap();
                assert!(seq > acked, "acks must increase");
                acked = seq;
                acks_this_round += 1;
                if acks_this_round == kill_after {
                    child.kill().unwrap(); // SIGKILL; lines already written are still read
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must have been killed, not exit: {status:?}"
        );
        assert_eq!(
            opened_at,
            Some(recovered),
            "round {round}: the child recovered what the parent did"
        );
        assert!(
            acks_this_round >= kill_after,
            "round {round}: child stopped before the kill"
        );
        acked_in_all_rounds += acks_this_round;

        let store = open_checked(dir.path());
        let k = store.seq();
        assert!(
            k >= acked,
            "round {round}: acknowledged seq {acked} lost (recovered {k})"
        );
        while (log.len() as u64) < k {
            log.push(event(log.len() as u64 + 1));
        }
        assert_eq!(
            *store.current().state(),
            replayed(&log[..k as usize]),
            "round {round}: state is not events 1..={k}"
        );
        store.close().unwrap();
        recovered = k;
    }
    assert!(
        recovered >= acked_in_all_rounds,
        "{recovered} recovered of {acked_in_all_rounds} acknowledged"
    );
    assert!(segments(dir.path()).len() + snapshots(dir.path()).len() > 1);
}

fn open_checked(dir: &std::path::Path) -> Store<common::Ledger> {
    match Store::<common::Ledger>::open(dir, options()) {
        Ok(s) => s,
        Err(e) => panic!("recovery after SIGKILL failed: {e}"),
    }
}

/// The pair of the kill test: a simulated power loss (every un-synced write and
/// directory entry dropped) after appends keeps every acknowledged append under
/// `Always`, and loses appends under `Never`, so a store that stopped syncing under
/// `Always` fails here where the SIGKILL test cannot see it.
#[cfg(feature = "testing")]
#[test]
fn power_loss_keeps_every_acknowledged_append_only_under_always() {
    use snapwal::testing::sim::SimFs;
    use std::sync::Arc;
    for (sync, keeps_all) in [(SyncPolicy::Always, true), (SyncPolicy::Never, false)] {
        let fs = Arc::new(SimFs::new(1));
        let opts = options().sync(sync).preallocate(false).fs(fs.clone());
        let store = Store::<common::Ledger>::open("/store", opts.clone()).unwrap();
        let n = 50;
        for seq in 1..=n {
            assert_eq!(store.append(&event(seq)).unwrap(), seq);
        }
        drop(store);
        let image = Arc::new(fs.crash_all_dropped());
        let store = Store::<common::Ledger>::open("/store", opts.fs(image)).unwrap();
        let expected: Vec<Entry> = (1..=store.seq()).map(event).collect();
        assert_eq!(*store.current().state(), replayed(&expected));
        if keeps_all {
            assert_eq!(store.seq(), n, "{sync:?} lost an acknowledged append");
        } else {
            assert!(
                store.seq() < n,
                "{sync:?} kept un-synced appends after a power loss"
            );
        }
    }
}
