//! The parent side: starts and kills the node processes, writes through the cluster,
//! polls the nodes, and runs the story (kill a follower, kill the leader, restart both
//! from their directories, check everything at the end).

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use snapwal_raft::kv::Request;

use crate::node::{NodeArgs, KEEP_BEHIND_SNAPSHOT, SNAPSHOT_EVERY};
use crate::rpc::{Call, Conn, Reply, Status};

/// Makes the command that runs one node (the example re-runs itself with
/// `--node ...`; the test re-runs its own binary).
pub type Launcher = Box<dyn Fn(&NodeArgs) -> Command + Send + Sync>;

/// How long one call to a node may take.
const CALL: Duration = Duration::from_secs(3);
/// How long any one step of the story may wait for its condition.
const STEP: Duration = Duration::from_secs(30);

/// The node processes. Dropping it SIGKILLs every child still running, so no path
/// (an error, a panic) leaves one behind.
pub struct Processes {
    launch: Launcher,
    root: PathBuf,
    children: BTreeMap<u64, Child>,
    addrs: BTreeMap<u64, String>,
}

impl Processes {
    /// No node running yet; node `i` uses `root/node-i/` and logs to `root/node-i.log`.
    pub fn new(launch: Launcher, root: &Path) -> Self {
        Processes {
            launch,
            root: root.to_path_buf(),
            children: BTreeMap::new(),
            addrs: BTreeMap::new(),
        }
    }

    /// Node `id`'s directory.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}"))
    }

    /// Node `id`'s address (known once it has started).
    pub fn addr(&self, id: u64) -> Option<String> {
        self.addrs.get(&id).cloned()
    }

    /// Starts node `id` (on its previous address if it ran before, else on a free port)
    /// and waits until it serves. Returns how long that took.
    pub fn start(&mut self, id: u64) -> Result<Duration, String> {
        let t = Instant::now();
        let args = NodeArgs {
            id,
            dir: self.dir(id),
            listen: match self.addrs.get(&id) {
                Some(a) => a.clone(),
                None => free_addr()?,
            },
        };
        let log_path = self.root.join(format!("node-{id}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let mut child = (self.launch)(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn node {id}: {e}"))?;
        let stdout = child.stdout.take();
        self.children.insert(id, child);
        let (tx, rx) = mpsc::channel();
        if let Some(out) = stdout {
            // Reads until the child's stdout closes (it exits or is killed).
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = t + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("listening ") {
                        self.addrs.insert(id, addr.to_string());
                        // Keep draining stdout so the child never blocks on it.
                        std::thread::spawn(move || for _ in rx {});
                        return Ok(t.elapsed());
                    }
                }
                Err(_) => {
                    self.kill(id);
                    return Err(format!(
                        "node {id} did not start within {STEP:?}; its log ends with:\n{}",
                        self.log_tail(id)
                    ));
                }
            }
        }
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of node `id`'s log, for error messages.
    pub fn log_tail(&self, id: u64) -> String {
        let path = self.root.join(format!("node-{id}.log"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A free 127.0.0.1 port below Linux's default ephemeral range (32768–60999), so that
/// no outgoing connection can be holding a node's port when the node restarts on it.
fn free_addr() -> Result<String, String> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..100 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(format!("127.0.0.1:{port}"));
        }
    }
    Err("no free port in 20000..32000 after 100 tries".to_string())
}

impl Drop for Processes {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// The key and value of the `i`-th write.
pub fn kv_of(i: u64) -> (String, String) {
    (format!("k{i:07}"), format!("v{i}"))
}

/// The node addresses as the client sees them.
type Addrs = Arc<Mutex<BTreeMap<u64, String>>>;

/// Calls node `id` on a fresh connection.
async fn call(addrs: &Addrs, id: u64, c: Call) -> Result<Reply, String> {
    let addr = addrs
        .lock()
        .map_err(|_| "poisoned".to_string())?
        .get(&id)
        .cloned()
        .ok_or(format!("node {id} has no address"))?;
    Conn::new(addr)
        .call(&c, CALL)
        .await
        .map_err(|e| format!("node {id}: {e}"))
}

async fn status(addrs: &Addrs, id: u64) -> Result<Status, String> {
    match call(addrs, id, Call::Status).await? {
        Reply::Status(s) => Ok(s),
        other => Err(format!("node {id}: unexpected reply {other:?}")),
    }
}

/// Polls `cond` every 20 ms until it returns `Some`, for at most `STEP`.
async fn wait_for<T, F, Fut>(what: &str, mut cond: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {STEP:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The writes acknowledged so far.
#[derive(Default)]
struct Load {
    next: AtomicU64,
    acked: AtomicU64,
    acked_keys: Mutex<Vec<u64>>,
    stop: AtomicBool,
    failed: Mutex<Option<String>>,
}

/// One writer: takes the next key, writes it until a node acknowledges it (following
/// `NotLeader` hints, trying the other nodes after an error), and repeats.
async fn writer(load: Arc<Load>, addrs: Addrs, ids: Vec<u64>, max: u64) {
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    let mut target = ids.first().copied().unwrap_or(1);
    while !load.stop.load(Ordering::Relaxed) {
        let i = load.next.fetch_add(1, Ordering::Relaxed) + 1;
        if i > max {
            return;
        }
        let (key, value) = kv_of(i);
        let req = Call::Write(Request::Set { key, value });
        let deadline = Instant::now() + STEP;
        let mut tries = 0u64;
        loop {
            if Instant::now() >= deadline {
                let mut f = load.failed.lock().unwrap_or_else(|e| e.into_inner());
                f.get_or_insert(format!(
                    "write {i} not acknowledged within {STEP:?} ({tries} tries)"
                ));
                load.stop.store(true, Ordering::Relaxed);
                return;
            }
            tries += 1;
            let addr = addrs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&target)
                .cloned();
            let Some(addr) = addr else {
                target = next_id(&ids, target);
                continue;
            };
            let conn = conns
                .entry(target)
                .or_insert_with(|| Conn::new(addr.clone()));
            if conn.addr() != addr {
                *conn = Conn::new(addr);
            }
            match conn.call(&req, CALL).await {
                Ok(Reply::Written { .. }) => {
                    load.acked.fetch_add(1, Ordering::Relaxed);
                    load.acked_keys
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(i);
                    break;
                }
                Ok(Reply::NotLeader {
                    leader: Some(l), ..
                }) if l != target => target = l,
                _ => {
                    target = next_id(&ids, target);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

fn next_id(ids: &[u64], id: u64) -> u64 {
    let pos = ids.iter().position(|x| *x == id).unwrap_or(0);
    ids[(pos + 1) % ids.len()]
}

/// How much to write in each act of the story.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Writes in flight at once.
    pub writers: usize,
    /// Acknowledged writes before the follower is killed.
    pub warmup: u64,
    /// Acknowledged writes while the follower is down.
    pub while_follower_down: u64,
    /// Acknowledged writes between the follower's catch-up and the leader's kill.
    pub before_leader_kill: u64,
    /// Acknowledged writes after the old leader has caught up.
    pub tail: u64,
}

/// What happened, for the caller's own checks and the README.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Spawn to a three-voter cluster.
    pub formed: Duration,
    /// The follower that was killed.
    pub follower: u64,
    /// Entries it missed while down.
    pub follower_missed: u64,
    /// Restart to caught up.
    pub follower_catch_up: Duration,
    /// Snapshots it installed while catching up (0: it caught up from the log).
    pub follower_installs: u64,
    /// The index the follower had applied when it reopened.
    pub follower_reopened_at: u64,
    /// The leader's purged index once the follower had caught up: at or above
    /// `follower_reopened_at`, the follower may have needed a snapshot.
    pub leader_purged_after_follower: u64,
    /// The leader that was killed.
    pub old_leader: u64,
    /// Kill to a new leader seen.
    pub election: Duration,
    /// The new leader.
    pub new_leader: u64,
    /// Kill to the first write acknowledged after the new leader was seen.
    pub writes_resumed: Duration,
    /// Entries the old leader missed while down.
    pub old_leader_missed: u64,
    /// The new leader's purged index when the old leader restarted.
    pub purged_at_restart: u64,
    /// Restart to caught up.
    pub old_leader_catch_up: Duration,
    /// Snapshots the old leader installed while catching up.
    pub old_leader_installs: u64,
    /// Acknowledged writes.
    pub acked: u64,
    /// Acknowledged writes per second over the whole load.
    pub write_rate: f64,
    /// The last applied log index, the same on every node.
    pub last_applied: u64,
    /// Log entries compared across the three nodes.
    pub log_entries_compared: u64,
    /// The number of status readings taken by the applied-index poller.
    pub status_polls: u64,
}

/// Runs the story against three node processes made by `launch` under `root`, telling
/// it through `say`. Every acknowledged write must be on every node at the end, the
/// nodes must agree (state, last applied log id, the log over the range all hold) and
/// no node's applied index may go backwards, also across its restart.
pub async fn story(
    launch: Launcher,
    root: &Path,
    plan: &Plan,
    say: &(dyn Fn(String) + Sync),
) -> Result<Report, String> {
    let t0 = Instant::now();
    let mut procs = Processes::new(launch, root);
    let result = act(&mut procs, plan, say, t0).await;
    if result.is_err() {
        for id in 1..=3 {
            say(format!("node {id} log tail:\n{}", procs.log_tail(id)));
        }
    }
    drop(procs);
    result
}

async fn act(
    procs: &mut Processes,
    plan: &Plan,
    say: &(dyn Fn(String) + Sync),
    t0: Instant,
) -> Result<Report, String> {
    let ids = vec![1u64, 2, 3];
    let addrs: Addrs = Arc::new(Mutex::new(BTreeMap::new()));
    let say = |s: String| say(format!("[{:>6.2} s] {s}", t0.elapsed().as_secs_f64()));
    let mut report = Report::default();

    // Act 1: three processes, one cluster.
    for &id in &ids {
        let took = tokio::task::block_in_place(|| procs.start(id))?;
        let addr = procs.addr(id).ok_or("no address")?;
        say(format!(
            "node {id} up on {addr} in {} ms, directory node-{id}/",
            took.as_millis()
        ));
        addrs.lock().map_err(|_| "poisoned")?.insert(id, addr);
    }
    let formed = Instant::now();
    let addr1 = procs.addr(1).ok_or("no address")?;
    expect_done(
        call(&addrs, 1, Call::Init { addr: addr1 }).await?,
        "initialize",
    )?;
    for id in [2u64, 3] {
        let addr = procs.addr(id).ok_or("no address")?;
        expect_done(
            call(&addrs, 1, Call::AddLearner { id, addr }).await?,
            "add_learner",
        )?;
    }
    expect_done(
        call(
            &addrs,
            1,
            Call::ChangeMembership(ids.iter().copied().collect()),
        )
        .await?,
        "change_membership",
    )?;
    report.formed = formed.elapsed();
    say(format!(
        "cluster formed: initialize(1), add_learner(2), add_learner(3), change_membership{{1,2,3}} in {} ms",
        report.formed.as_millis()
    ));

    // The applied-index poller: every node's applied index, read from its state
    // machine, must never go below what it was seen at, across restarts too.
    let poll_stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (addrs, stop, ids) = (addrs.clone(), poll_stop.clone(), ids.clone());
        tokio::spawn(async move {
            let mut max: BTreeMap<u64, u64> = BTreeMap::new();
            let mut polls = 0u64;
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for &id in &ids {
                    if let Ok(s) = status(&addrs, id).await {
                        polls += 1;
                        let seen = max.entry(id).or_insert(0);
                        if s.applied < *seen {
                            return Err(format!(
                                "node {id}: applied index went back from {seen} to {}",
                                s.applied
                            ));
                        }
                        *seen = s.applied;
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Ok(polls)
        })
    };

    // The load.
    let load = Arc::new(Load::default());
    let load_start = Instant::now();
    let max_writes = 1_000_000;
    let writers: Vec<_> = (0..plan.writers)
        .map(|w| {
            let mut order = ids.clone();
            order.rotate_left(w % ids.len());
            tokio::spawn(writer(load.clone(), addrs.clone(), order, max_writes))
        })
        .collect();
    say(format!("writing with {} writes in flight", plan.writers));
    let acked_at_least = |n: u64| {
        let load = load.clone();
        move || {
            let load = load.clone();
            async move {
                if let Some(f) = load
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                {
                    return Some(Err(f));
                }
                (load.acked.load(Ordering::Relaxed) >= n).then_some(Ok(()))
            }
        }
    };
    wait_for("the warm-up writes", acked_at_least(plan.warmup)).await??;

    // Act 2: SIGKILL a follower, write on, restart it: it catches up from the log.
    let leader = find_leader(&addrs, &ids, None).await?;
    let follower = *ids.iter().find(|i| **i != leader.id).ok_or("no follower")?;
    let f_before = status(&addrs, follower).await?;
    procs.kill(follower);
    let acked = load.acked.load(Ordering::Relaxed);
    say(format!(
        "SIGKILL follower {follower} (applied {}, {acked} writes acknowledged)",
        f_before.applied
    ));
    wait_for(
        "writes while the follower is down",
        acked_at_least(acked + plan.while_follower_down),
    )
    .await??;
    let l = status(&addrs, leader.id).await?;
    let restart = Instant::now();
    let took = tokio::task::block_in_place(|| procs.start(follower))?;
    let f_open = status(&addrs, follower).await?;
    report.follower = follower;
    report.follower_missed = l.last_log_index.saturating_sub(f_open.applied);
    say(format!(
        "restart follower {follower}: reopened its directory at applied {} in {} ms; leader {} is at {} (purged through {})",
        f_open.applied,
        took.as_millis(),
        leader.id,
        l.last_log_index,
        l.purged
    ));
    let target = l.last_log_index;
    let caught = wait_for("the follower to catch up", || {
        let addrs = addrs.clone();
        async move {
            status(&addrs, follower)
                .await
                .ok()
                .filter(|s| s.applied >= target)
        }
    })
    .await?;
    report.follower_catch_up = restart.elapsed();
    report.follower_installs = caught.installs;
    report.follower_reopened_at = f_open.applied;
    report.leader_purged_after_follower = status(&addrs, leader.id).await?.purged;
    say(format!(
        "follower {follower} reached {target}, the leader's last index at its restart ({} entries behind), in {} ms, {}",
        report.follower_missed,
        report.follower_catch_up.as_millis(),
        if caught.installs == 0 {
            "from the leader's log (no snapshot installed)".to_string()
        } else {
            format!("with {} snapshot(s) installed", caught.installs)
        }
    ));

    // Act 3: SIGKILL the leader mid-load: an election, the writes move on.
    let acked = load.acked.load(Ordering::Relaxed);
    wait_for(
        "writes before the leader is killed",
        acked_at_least(acked + plan.before_leader_kill),
    )
    .await??;
    let old = find_leader(&addrs, &ids, None).await?;
    let killed_at = Instant::now();
    procs.kill(old.id);
    report.old_leader = old.id;
    say(format!(
        "SIGKILL leader {} (term {}, last log index {}, {} writes acknowledged)",
        old.id,
        old.term,
        old.last_log_index,
        load.acked.load(Ordering::Relaxed)
    ));
    let survivors: Vec<u64> = ids.iter().copied().filter(|i| *i != old.id).collect();
    let new = find_leader(&addrs, &survivors, Some(old.term)).await?;
    report.election = killed_at.elapsed();
    report.new_leader = new.id;
    let acked = load.acked.load(Ordering::Relaxed);
    wait_for("a write after the election", acked_at_least(acked + 1)).await??;
    report.writes_resumed = killed_at.elapsed();
    say(format!(
        "node {} elected leader for term {} {} ms after the kill; writes resumed after {} ms",
        new.id,
        new.term,
        report.election.as_millis(),
        report.writes_resumed.as_millis()
    ));

    // Act 4: write until the new leader has purged its log past everything the old
    // leader holds, then restart it: it must be sent a snapshot.
    // What it holds is read from its log on disk (it is dead, so its lock is free):
    // between its last status and the kill it may have appended more than the
    // writes in flight.
    let held = last_log_index_on_disk(&procs.dir(old.id)).await?;
    let need = held.max(old.last_log_index) + 10;
    say(format!(
        "writing on until leader {} purges its log past {need} (snapshot every {SNAPSHOT_EVERY} entries, {KEEP_BEHIND_SNAPSHOT} kept behind it)",
        new.id
    ));
    let l = wait_for("the new leader to purge past the old leader's log", || {
        let addrs = addrs.clone();
        let load = load.clone();
        async move {
            if let Some(f) = load
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return Some(Err(f));
            }
            status(&addrs, new.id)
                .await
                .ok()
                .filter(|s| s.purged > need)
                .map(Ok)
        }
    })
    .await??;
    let restart = Instant::now();
    let took = tokio::task::block_in_place(|| procs.start(old.id))?;
    let o_open = status(&addrs, old.id).await?;
    report.old_leader_missed = l.last_log_index.saturating_sub(o_open.applied);
    report.purged_at_restart = l.purged;
    say(format!(
        "restart old leader {}: reopened at applied {} in {} ms; leader {} is at {}, purged through {}",
        old.id,
        o_open.applied,
        took.as_millis(),
        new.id,
        l.last_log_index,
        l.purged
    ));
    let target = l.last_log_index;
    let oid = old.id;
    let caught = wait_for("the old leader to catch up", || {
        let addrs = addrs.clone();
        async move {
            status(&addrs, oid)
                .await
                .ok()
                .filter(|s| s.applied >= target)
        }
    })
    .await?;
    report.old_leader_catch_up = restart.elapsed();
    report.old_leader_installs = caught.installs;
    say(format!(
        "node {} reached {target}, the leader's last index at its restart ({} entries behind), in {} ms: it installed {} snapshot(s) (the last through index {}) and then followed the log",
        old.id,
        report.old_leader_missed,
        report.old_leader_catch_up.as_millis(),
        caught.installs,
        caught.installed_through
    ));

    // Act 5: a little more, then stop and check.
    let acked = load.acked.load(Ordering::Relaxed);
    wait_for("the last writes", acked_at_least(acked + plan.tail)).await??;
    load.stop.store(true, Ordering::Relaxed);
    for w in writers {
        tokio::time::timeout(STEP, w)
            .await
            .map_err(|_| "a writer did not stop")?
            .map_err(|e| format!("writer: {e}"))?;
    }
    if let Some(f) = load
        .failed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        return Err(f);
    }
    report.acked = load.acked.load(Ordering::Relaxed);
    report.write_rate = report.acked as f64 / load_start.elapsed().as_secs_f64();
    say(format!(
        "stopped writing: {} writes acknowledged ({:.0} writes/s through the cluster)",
        report.acked, report.write_rate
    ));

    let last = wait_for("every node to apply the whole log", || {
        let addrs = addrs.clone();
        let ids = ids.clone();
        async move {
            let mut seen = Vec::new();
            for id in &ids {
                seen.push(status(&addrs, *id).await.ok()?);
            }
            let leader = seen.iter().find(|s| s.state == "Leader")?;
            let target = leader.last_log_index;
            seen.iter()
                .all(|s| s.applied == target && s.last_log_index == target)
                .then_some(target)
        }
    })
    .await?;
    poll_stop.store(true, Ordering::Relaxed);
    report.status_polls = poller.await.map_err(|e| format!("poller: {e}"))??;
    report.last_applied = last;

    // Every node: the same state after the same log id, holding every acked write.
    let mut dumps = Vec::new();
    for &id in &ids {
        match call(&addrs, id, Call::Dump).await? {
            Reply::Dump { last_applied, map } => dumps.push((id, last_applied, map)),
            other => return Err(format!("node {id}: unexpected reply {other:?}")),
        }
    }
    let keys = load
        .acked_keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (id, last_applied, map) in &dumps {
        if last_applied.map(|l| l.index) != Some(last) {
            return Err(format!(
                "node {id}: last applied {last_applied:?}, expected index {last}"
            ));
        }
        for &i in &keys {
            let (k, v) = kv_of(i);
            if map.get(&k) != Some(&v) {
                return Err(format!(
                    "node {id}: acknowledged write {k}={v} is missing (found {:?})",
                    map.get(&k)
                ));
            }
        }
    }
    let (_, la0, map0) = &dumps[0];
    for (id, la, map) in &dumps[1..] {
        if la != la0 || map != map0 {
            return Err(format!(
                "node {id} differs from node 1: last applied {la:?} vs {la0:?}, {} vs {} keys",
                map.len(),
                map0.len()
            ));
        }
    }

    // The logs agree over the range every node still holds.
    let mut from = 1u64;
    let mut to = u64::MAX;
    for &id in &ids {
        let s = status(&addrs, id).await?;
        from = from.max(s.purged + 1);
        to = to.min(s.last_log_index);
    }
    if from > to {
        return Err(format!(
            "no log range common to the three nodes ({from}..={to})"
        ));
    }
    let mut lo = from;
    while lo <= to {
        let hi = (lo + 499).min(to);
        let mut first: Option<String> = None;
        for &id in &ids {
            let entries = match call(&addrs, id, Call::Log { from: lo, to: hi }).await? {
                Reply::Log(e) => e,
                other => return Err(format!("node {id}: unexpected reply {other:?}")),
            };
            if entries.len() as u64 != hi - lo + 1 {
                return Err(format!(
                    "node {id}: {} entries in {lo}..={hi}",
                    entries.len()
                ));
            }
            let text = serde_json::to_string(&entries).map_err(|e| e.to_string())?;
            match &first {
                None => first = Some(text),
                Some(f) if *f != text => {
                    return Err(format!("node {id}: log differs from node 1 in {lo}..={hi}"));
                }
                Some(_) => {}
            }
        }
        lo = hi + 1;
    }
    report.log_entries_compared = to - from + 1;
    say(format!(
        "all 3 nodes applied through {last}: identical state ({} keys, every acknowledged write present), identical log entries {from}..={to}; applied index never went back ({} status polls)",
        map0.len(),
        report.status_polls
    ));
    Ok(report)
}

fn expect_done(r: Reply, what: &str) -> Result<(), String> {
    match r {
        Reply::Done => Ok(()),
        other => Err(format!("{what}: {other:?}")),
    }
}

/// Waits for one of `ids` to report itself leader (of a term after `after_term`).
async fn find_leader(
    addrs: &Addrs,
    ids: &[u64],
    after_term: Option<u64>,
) -> Result<Status, String> {
    wait_for("a leader", || async move {
        for &id in ids {
            if let Ok(s) = status(addrs, id).await {
                if s.state == "Leader" && after_term.is_none_or(|t| s.term > t) {
                    return Some(s);
                }
            }
        }
        None
    })
    .await
}

/// The last log index in a stopped node's log store, as its recovery will find it.
async fn last_log_index_on_disk(dir: &Path) -> Result<u64, String> {
    use openraft::storage::RaftLogStorage;
    let mut log = snapwal_raft::LogStore::<snapwal_raft::kv::KvConfig>::open(
        dir,
        snapwal_raft::LogOptions::default().segment_bytes(1 << 20),
    )
    .map_err(|e| format!("open the stopped node's log in {}: {e}", dir.display()))?;
    let state = log
        .get_log_state()
        .await
        .map_err(|e| format!("read the stopped node's log state: {e}"))?;
    Ok(state.last_log_id.map_or(0, |id| id.index))
}
