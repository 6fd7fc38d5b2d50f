//! Reopen after each raft storage operation: the log state, vote, committed id,
//! entries, truncation and purge (including past the last entry) all come back.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use snapwal_raft::kv::{KvConfig, Request};
use snapwal_raft::{LogOptions, LogStore, LogView};

type C = KvConfig;

fn lid(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

fn ent(term: u64, index: u64) -> Entry<C> {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(Request::Set {
            key: format!("key-{index}"),
            value: "x".repeat(40),
        }),
    }
}

fn opts() -> LogOptions {
    LogOptions::default().segment_bytes(1024).preallocate(false)
}

/// Closes `log`, reopens it and checks that it holds exactly what it held.
async fn reopen(dir: &std::path::Path, log: LogStore<C>) -> LogStore<C> {
    let before: LogView<C> = log.view();
    log.close();
    let mut log = LogStore::<C>::open(dir, opts()).expect("reopen");
    assert_eq!(log.view(), before);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, before.purged);
    let last = before.entries.last().map(|e| e.log_id).or(before.purged);
    assert_eq!(state.last_log_id, last);
    assert_eq!(log.read_vote().await.unwrap(), before.vote);
    assert_eq!(log.read_committed().await.unwrap(), before.committed);
    let all = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(all, before.entries);
    log
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("log")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_survives_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut log = LogStore::<C>::open(dir, opts()).unwrap();

    log.save_vote(&Vote::new(1, 0)).await.unwrap();
    log = reopen(dir, log).await;
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 0)));

    log.blocking_append((1..=40).map(|i| ent(1, i)))
        .await
        .unwrap();
    log.save_committed(Some(lid(1, 30))).await.unwrap();
    log = reopen(dir, log).await;
    assert_eq!(log.view().entries.len(), 40);
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(1, 30)));

    // Truncate the uncommitted suffix, then write a new one at a higher term.
    log.truncate(lid(1, 35)).await.unwrap();
    log = reopen(dir, log).await;
    assert_eq!(
        log.view().entries.last().map(|e| e.log_id),
        Some(lid(1, 34))
    );
    log.blocking_append((35..=45).map(|i| ent(2, i)))
        .await
        .unwrap();
    log.save_vote(&Vote::new(2, 1)).await.unwrap();
    log = reopen(dir, log).await;
    assert_eq!(
        log.view().entries.last().map(|e| e.log_id),
        Some(lid(2, 45))
    );
    assert_eq!(
        log.view().entries.get(34).map(|e| e.log_id),
        Some(lid(2, 35))
    );

    // Purge unlinks whole segments; the vote and committed id outlive theirs.
    let before = segments(dir);
    log.purge(lid(1, 30)).await.unwrap();
    log = reopen(dir, log).await;
    assert!(
        segments(dir) < before,
        "purge unlinked segments ({before} before, {} after)",
        segments(dir)
    );
    assert_eq!(
        log.view().entries.first().map(|e| e.log_id),
        Some(lid(1, 31))
    );
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(1, 30)));

    // Purge past the last entry: the log is empty and starts after the purged id.
    log.purge(lid(2, 50)).await.unwrap();
    log = reopen(dir, log).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(lid(2, 50)));
    assert_eq!(state.last_log_id, Some(lid(2, 50)));
    assert!(log.view().entries.is_empty());
    log.blocking_append([ent(3, 51)]).await.unwrap();
    log = reopen(dir, log).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(lid(3, 51)));
    assert_eq!(state.last_purged_log_id, Some(lid(2, 50)));
    log.close();
}
