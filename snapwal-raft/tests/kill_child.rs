//! kill -9 of a child process appending through the adapter: every entry whose
//! `LogFlushed` callback said durable is there after the kill, the log is contiguous,
//! and the next child continues from it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use snapwal_raft::kv::{KvConfig, Request};
use snapwal_raft::{LogOptions, LogStore};

type C = KvConfig;
const CHILD_ENV: &str = "SNAPWAL_RAFT_KILL_CHILD_DIR";

fn opts() -> LogOptions {
    LogOptions::default().segment_bytes(64 << 10)
}

fn ent(term: u64, index: u64) -> Entry<C> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
        payload: EntryPayload::Normal(Request::Set {
            key: format!("key-{index}"),
            value: format!("value-{index}"),
        }),
    }
}

/// The child: appends entries (one append of 1–4 entries at a time, term = round),
/// saves a vote each round, purges now and then, and prints each acknowledged index.
fn child(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut log = LogStore::<C>::open(dir, opts()).unwrap();
        let state = log.get_log_state().await.unwrap();
        let term = log
            .read_vote()
            .await
            .unwrap()
            .map_or(1, |v| v.leader_id.term + 1);
        log.save_vote(&Vote::new(term, 0)).await.unwrap();
        println!("vote {term}");
        let mut next = state.last_log_id.map_or(1, |l| l.index + 1);
        for round in 0u64.. {
            let n = 1 + round % 4;
            log.blocking_append((next..next + n).map(|i| ent(term, i)))
                .await
                .unwrap();
            next += n;
            println!("acked {}", next - 1);
            if round % 100 == 99 {
                let upto = next.saturating_sub(50);
                let id = log.try_get_log_entries(upto..=upto).await.unwrap();
                if let Some(e) = id.first() {
                    log.purge(e.log_id).await.unwrap();
                    println!("purged {upto}");
                }
            }
        }
    });
}

#[test]
fn kill_9_keeps_every_acknowledged_entry() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total_acked = 0;
    for round in 1..=3u64 {
        let mut c = Command::new(&exe)
            .args([
                "--exact",
                "kill_9_keeps_every_acknowledged_entry",
                "--nocapture",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(c.stdout.take().unwrap());
        let (mut acked, mut purged, mut vote) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        let want = 300 * round;
        for line in out.lines() {
            let line = line.unwrap();
            let mut it = line.split_whitespace();
            match (it.next(), it.next().and_then(|n| n.parse::<u64>().ok())) {
                (Some("acked"), Some(n)) => acked = n,
                (Some("purged"), Some(n)) => purged = n,
                (Some("vote"), Some(n)) => vote = n,
                _ => {}
            }
            if acked >= want || start.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        assert!(acked > 0, "round {round}: the child acknowledged nothing");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut log = LogStore::<C>::open(tmp.path(), opts()).unwrap();
            let v = log.view();
            let last = v.entries.last().map_or(0, |e| e.log_id.index);
            assert!(
                last >= acked,
                "round {round}: acknowledged {acked}, recovered through {last}"
            );
            assert_eq!(
                log.read_vote().await.unwrap().map(|v| v.leader_id.term),
                Some(vote)
            );
            let purged_now = v.purged.map_or(0, |p| p.index);
            assert!(
                purged_now >= purged,
                "round {round}: purged {purged}, recovered {purged_now}"
            );
            let first = v.entries.first().map_or(0, |e| e.log_id.index);
            assert_eq!(
                first,
                purged_now + 1,
                "round {round}: the log starts right after the purged id"
            );
            for (i, e) in v.entries.iter().enumerate() {
                assert_eq!(
                    e.log_id.index,
                    first + i as u64,
                    "round {round}: contiguous"
                );
            }
            log.close();
        });
        total_acked = acked;
    }
    assert!(total_acked >= 3);
}
