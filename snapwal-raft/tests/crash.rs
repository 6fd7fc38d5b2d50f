//! Crash consistency of the adapter: a scripted sequence of raft storage operations
//! run on the simulated file system, crashed at every file-system call; every crash
//! image (un-synced data and directory entries all dropped, all kept, and a few random
//! mixes) must reopen to a state the Raft storage contract allows.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder, Vote,
};
use snapwal::testing::sim::SimFs;
use snapwal::{Options, SyncPolicy};
use snapwal_raft::kv::{Kv, KvConfig, Request};
use snapwal_raft::{LogOptions, LogStore, LogView, StateMachine};

type C = KvConfig;
const DIR: &str = "/raft";

fn lid(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

fn ent(term: u64, index: u64) -> Entry<C> {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(Request::Set {
            key: format!("k{}", index % 3),
            value: format!("v{term}.{index}"),
        }),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Vote(Vote<u64>),
    Append(Vec<Entry<C>>),
    Committed(LogId<u64>),
    Truncate(u64),
    Purge(LogId<u64>),
}

fn script() -> Vec<Op> {
    vec![
        Op::Vote(Vote::new(1, 0)),
        Op::Append(vec![ent(1, 1), ent(1, 2), ent(1, 3)]),
        Op::Committed(lid(1, 2)),
        Op::Append(vec![ent(1, 4), ent(1, 5)]),
        Op::Truncate(4),
        Op::Append(vec![ent(2, 4)]),
        Op::Vote(Vote::new(2, 1)),
        Op::Purge(lid(1, 2)),
        Op::Append(vec![ent(2, 5), ent(2, 6)]),
        Op::Committed(lid(2, 6)),
        Op::Purge(lid(2, 6)),
        // Past the last entry: the purged id alone says where the log is.
        Op::Purge(lid(2, 8)),
        Op::Append(vec![ent(2, 9)]),
        Op::Vote(Vote::new(3, 2)),
    ]
}

/// The log after applying `ops` to an empty one: what the contract says it holds.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    entries: BTreeMap<u64, LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
}

impl Model {
    fn new() -> Self {
        Model {
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
        }
    }
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Vote(v) => self.vote = Some(*v),
            Op::Append(es) => {
                for e in es {
                    self.entries.split_off(&e.log_id.index);
                    self.entries.insert(e.log_id.index, e.log_id);
                }
            }
            Op::Committed(c) => self.committed = Some(*c),
            Op::Truncate(i) => drop(self.entries.split_off(i)),
            Op::Purge(id) => {
                self.entries = self.entries.split_off(&(id.index + 1));
                self.purged = Some(*id);
            }
        }
    }
    fn of(view: &LogView<C>) -> Self {
        Model {
            entries: view
                .entries
                .iter()
                .map(|e| (e.log_id.index, e.log_id))
                .collect(),
            vote: view.vote,
            committed: view.committed,
            purged: view.purged,
        }
    }
}

/// The states a crash after `acked` acknowledged ops may recover: all of them, plus
/// the one in flight (an append may land as any prefix of its entries).
fn allowed(ops: &[Op], acked: usize) -> Vec<Model> {
    let mut m = Model::new();
    for op in ops.iter().take(acked) {
        m.apply(op);
    }
    let mut out = vec![m.clone()];
    if let Some(op) = ops.get(acked) {
        if let Op::Append(es) = op {
            for n in 1..=es.len() {
                let mut p = m.clone();
                p.apply(&Op::Append(es.get(..n).unwrap_or_default().to_vec()));
                out.push(p);
            }
        } else {
            let mut p = m.clone();
            p.apply(op);
            out.push(p);
        }
    }
    out
}

fn log_opts(fs: &Arc<SimFs>) -> LogOptions {
    LogOptions::default()
        .segment_bytes(200)
        .preallocate(false)
        .fs(fs.clone())
}

async fn run_op(log: &mut LogStore<C>, op: &Op) -> Result<(), openraft::StorageError<u64>> {
    match op {
        Op::Vote(v) => log.save_vote(v).await,
        Op::Append(es) => log.blocking_append(es.clone()).await,
        Op::Committed(c) => log.save_committed(Some(*c)).await,
        Op::Truncate(i) => log.truncate(lid(0, *i)).await,
        Op::Purge(id) => log.purge(*id).await,
    }
}

/// Runs the script on `fs` until an operation fails; returns how many were acknowledged.
fn run_log_script(fs: &Arc<SimFs>, ops: &[Op]) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(mut log) = LogStore::<C>::open(DIR, log_opts(fs)) else {
            return 0;
        };
        let mut acked = 0;
        for op in ops {
            if run_op(&mut log, op).await.is_err() {
                break;
            }
            acked += 1;
        }
        log.close();
        acked
    })
}

fn check_log_image(image: SimFs, ops: &[Op], acked: usize, what: &str) {
    let image = Arc::new(image);
    let log = LogStore::<C>::open(DIR, log_opts(&image))
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let got = Model::of(&log.view());
    let ok = allowed(ops, acked);
    assert!(
        ok.contains(&got),
        "{what}: after {acked} acknowledged ops the log recovered {got:#?}\nallowed: {ok:#?}"
    );
    // Reads agree with the view, and get_log_state is consistent with it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut log = log;
    let state = rt.block_on(log.get_log_state()).unwrap();
    assert_eq!(state.last_purged_log_id, got.purged, "{what}");
    let last = got.entries.values().last().copied().or(got.purged);
    assert_eq!(state.last_log_id, last, "{what}");
    log.close();
}

#[test]
fn log_store_recovers_an_allowed_state_at_every_crash_point() {
    let ops = script();
    let clean = Arc::new(SimFs::new(7));
    assert_eq!(run_log_script(&clean, &ops), ops.len());
    let calls = clean.calls();
    let segments: Vec<_> = clean
        .files()
        .into_iter()
        .filter(|(p, _)| p.starts_with("/raft/log"))
        .collect();
    eprintln!("segments left after the script: {segments:?}");
    assert!(
        segments
            .iter()
            .all(|(p, _)| !p.ends_with("00000000000000000001.wal")),
        "purge unlinked the first segment: {segments:?}"
    );
    check_log_image(clean.crash_all_dropped(), &ops, ops.len(), "no crash");
    let mut images = 0u64;
    for n in 0..calls {
        let fs = Arc::new(SimFs::new(n));
        fs.crash_at(n);
        let acked = run_log_script(&fs, &ops);
        let what = format!("crash at call {n}");
        check_log_image(
            fs.crash_all_dropped(),
            &ops,
            acked,
            &format!("{what}, all dropped"),
        );
        check_log_image(
            fs.crash_all_kept(),
            &ops,
            acked,
            &format!("{what}, all kept"),
        );
        for seed in 0..2 {
            check_log_image(
                fs.crash_random(seed),
                &ops,
                acked,
                &format!("{what}, random {seed}"),
            );
        }
        images += 4;
    }
    eprintln!("raft log crash check: {calls} crash points, {images} crash images, all allowed");
}

// ---- state machine ----

fn sm_opts(fs: &Arc<SimFs>) -> Options {
    Options::default()
        .sync(SyncPolicy::Always)
        .segment_bytes(4096)
        .preallocate(false)
        .fs(fs.clone())
}

#[derive(Clone)]
enum SmOp {
    Apply(Vec<Entry<C>>),
    Build,
    Install(
        Box<openraft::SnapshotMeta<u64, openraft::BasicNode>>,
        Vec<u8>,
    ),
}

type SmModel = (Option<LogId<u64>>, Kv);

fn membership_entry(index: u64) -> Entry<C> {
    Entry {
        log_id: lid(1, index),
        payload: EntryPayload::Membership(Membership::new(vec![[0u64].into()], None)),
    }
}

/// A snapshot built on another state machine (a leader's), to install.
fn leader_snapshot() -> (
    openraft::SnapshotMeta<u64, openraft::BasicNode>,
    Vec<u8>,
    Kv,
) {
    let fs = Arc::new(SimFs::new(99));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sm = StateMachine::<C, Kv>::open("/leader", sm_opts(&fs)).unwrap();
        let entries: Vec<Entry<C>> = (1..=20).map(|i| ent(3, i)).collect();
        sm.apply(entries).await.unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let app = sm.current().state().app.clone();
        (snap.meta, snap.snapshot.into_inner(), app)
    })
}

fn run_sm_script(fs: &Arc<SimFs>, ops: &[SmOp]) -> (usize, Vec<Option<LogId<u64>>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut snaps = Vec::new();
        let Ok(mut sm) = StateMachine::<C, Kv>::open(DIR, sm_opts(fs)) else {
            return (0, snaps);
        };
        let mut acked = 0;
        for op in ops {
            let r = match op {
                SmOp::Apply(es) => sm.apply(es.clone()).await.map(drop),
                SmOp::Build => match sm.get_snapshot_builder().await.build_snapshot().await {
                    Ok(s) => {
                        snaps.push(s.meta.last_log_id);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                SmOp::Install(meta, bytes) => {
                    let r = sm
                        .install_snapshot(meta, Box::new(Cursor::new(bytes.clone())))
                        .await;
                    if r.is_ok() {
                        snaps.push(meta.last_log_id);
                    }
                    r
                }
            };
            if r.is_err() {
                break;
            }
            acked += 1;
        }
        (acked, snaps)
    })
}

fn sm_models(ops: &[SmOp], leader: &Kv) -> Vec<SmModel> {
    let mut out: Vec<SmModel> = vec![(None, Kv::default())];
    let mut cur: SmModel = (None, Kv::default());
    for op in ops {
        match op {
            SmOp::Apply(es) => {
                for e in es {
                    cur.0 = Some(e.log_id);
                    if let EntryPayload::Normal(req) = &e.payload {
                        snapwal_raft::App::<C>::apply(&mut cur.1, &e.log_id, req);
                    }
                }
            }
            SmOp::Build => {}
            SmOp::Install(meta, _) => cur = (meta.last_log_id, leader.clone()),
        }
        out.push(cur.clone());
    }
    out
}

fn check_sm_image(
    image: SimFs,
    models: &[SmModel],
    acked: usize,
    snaps: &[Option<LogId<u64>>],
    what: &str,
) {
    let image = Arc::new(image);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sm = StateMachine::<C, Kv>::open(DIR, sm_opts(&image))
            .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        let cur = sm.current();
        let got: SmModel = (cur.state().last_applied, cur.state().app.clone());
        let ok = models
            .get(acked..=(acked + 1).min(models.len() - 1))
            .unwrap();
        assert!(
            ok.contains(&got),
            "{what}: after {acked} ops recovered {got:?}"
        );
        // A snapshot acknowledged (built or installed) is still served, or a newer one.
        if let Some(want) = snaps.last() {
            let cur = sm.get_current_snapshot().await.unwrap();
            let have = cur.map(|s| s.meta.last_log_id);
            assert!(
                have.flatten() >= *want,
                "{what}: acknowledged snapshot {want:?}, serving {have:?}"
            );
        }
    });
}

#[test]
fn state_machine_recovers_an_allowed_state_at_every_crash_point() {
    let (meta, bytes, leader) = leader_snapshot();
    let ops = vec![
        SmOp::Apply(vec![membership_entry(1), ent(1, 2), ent(1, 3)]),
        SmOp::Build,
        SmOp::Apply(vec![ent(1, 4), ent(1, 5)]),
        SmOp::Install(Box::new(meta), bytes),
        SmOp::Apply(vec![ent(3, 21)]),
        SmOp::Build,
        SmOp::Apply(vec![ent(3, 22)]),
    ];
    let models = sm_models(&ops, &leader);
    let clean = Arc::new(SimFs::new(3));
    let (acked, snaps) = run_sm_script(&clean, &ops);
    assert_eq!(acked, ops.len());
    let calls = clean.calls();
    let mut images = 0u64;
    for n in 0..calls {
        let fs = Arc::new(SimFs::new(n));
        fs.crash_at(n);
        let (acked, snaps) = run_sm_script(&fs, &ops);
        let what = format!("crash at call {n}");
        check_sm_image(
            fs.crash_all_dropped(),
            &models,
            acked,
            &snaps,
            &format!("{what}, dropped"),
        );
        check_sm_image(
            fs.crash_all_kept(),
            &models,
            acked,
            &snaps,
            &format!("{what}, kept"),
        );
        check_sm_image(
            fs.crash_random(n),
            &models,
            acked,
            &snaps,
            &format!("{what}, random"),
        );
        images += 3;
    }
    let _ = snaps;
    eprintln!(
        "raft state machine crash check: {calls} crash points, {images} crash images, all allowed"
    );
}
