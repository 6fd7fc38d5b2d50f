//! The file tailer and its kill-and-resume demo, shared by `examples/tailer.rs` and
//! `tests/tailer_kill_resume.rs`.
//!
//! The tailer follows several files. Each complete line becomes an event (`Line`)
//! appended with `append_batch_async` under `SyncPolicy::Always`; the state keeps, per
//! file, the lines counted, a hash chained over them in order, and the offset after
//! the last one. After a batch is durable, the tailer moves the file's position cell
//! (`store.position(name)`); the periodic checkpointer saves positions with the
//! state, never ahead of it (I10).
//!
//! Positions are at-least-once: after a kill, a tailer resumes from the position the
//! last checkpoint saved, which may be behind the state the WAL recovers. Lines
//! between the two are read again, and skipped because the state's offset says they
//! were counted. So a line is counted exactly once: the offset that decides it is in
//! the same event as the count.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use snapwal::{CheckpointerConfig, CloseOptions, Options, Position, State, Store, SyncPolicy};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The files the demo writes and tails.
pub const FILES: [&str; 3] = ["app.log", "db.log", "web.log"];

/// What the tailer knows about one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// Lines counted.
    pub lines: u64,
    /// A hash chained over the lines counted, in order.
    pub hash: u64,
    /// The byte offset after the last line counted.
    pub offset: u64,
}

/// Per-file tails.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tails {
    pub files: BTreeMap<String, Tail>,
}

/// One line of a file: where it ends, and its hash.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    pub file: String,
    pub end: u64,
    pub hash: u64,
}

impl State for Tails {
    type Event = Line;
    fn apply(&mut self, line: &Line) {
        let tail = self.files.entry(line.file.clone()).or_default();
        // A line at or before the offset was counted already (the tailer skips them;
        // this keeps `apply` idempotent all the same).
        if line.end <= tail.offset {
            return;
        }
        tail.lines += 1;
        tail.hash = chain(tail.hash, line.hash);
        tail.offset = line.end;
    }
}

/// FNV-1a of a line's bytes.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn chain(h: u64, line: u64) -> u64 {
    h.rotate_left(5) ^ line
}

/// What a file holds: the `Tail` a tailer that counted every complete line has.
pub fn expected(path: &Path) -> Tail {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut tail = Tail::default();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            tail.lines += 1;
            tail.hash = chain(tail.hash, hash(&bytes[start..i]));
            tail.offset = i as u64 + 1;
            start = i + 1;
        }
    }
    tail
}

pub fn store_options() -> Options {
    Options::default()
        .sync(SyncPolicy::Always)
        .segment_bytes(256 << 10)
}

/// The tailer: tails every file of `dir/logs` into the store in `dir/store` until
/// `dir/logs/DONE` exists and every file is counted to its end, then closes with a
/// final checkpoint. Prints what it resumed from.
pub async fn tail(dir: &Path) -> snapwal::Result<()> {
    let store = Arc::new(Store::<Tails>::open(dir.join("store"), store_options())?);
    store.start_checkpointer(CheckpointerConfig::every(Duration::from_millis(100)))?;
    let state = store.current();
    println!("opened at seq {}", state.seq());
    for name in FILES {
        let pos = store.position(name).get().offset;
        let counted = state.files.get(name).map_or(0, |t| t.offset);
        // I10: a saved position is never ahead of the state restored with it.
        assert!(
            pos <= counted,
            "{name}: position {pos} ahead of the state {counted}"
        );
        if pos < counted {
            println!("{name}: position {pos}, state counted to {counted}: re-reading {} bytes, counted lines are skipped", counted - pos);
        } else {
            println!("{name}: resuming at {pos}");
        }
    }
    let tasks: Vec<_> = FILES
        .iter()
        .map(|name| {
            let (store, logs) = (Arc::clone(&store), dir.join("logs"));
            tokio::spawn(async move { follow(&store, &logs, name).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("tail task")?;
    }
    let store = Arc::try_unwrap(store).expect("tasks ended");
    let report = store
        .close_with_async(CloseOptions::default().final_checkpoint(Some(Duration::from_secs(10))))
        .await?;
    println!("done: closed at durable seq {}", report.durable_seq);
    Ok(())
}

/// Follows one file from its saved position until the demo is done.
async fn follow(store: &Store<Tails>, logs: &Path, name: &str) -> snapwal::Result<()> {
    let cell = store.position(name);
    let path = logs.join(name);
    let mut offset = cell.get().offset;
    let (mut skipped, mut buf) = (0u64, Vec::new());
    loop {
        let done = logs.join("DONE").exists();
        buf.clear();
        if let Ok(mut f) = tokio::fs::File::open(&path).await {
            f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
            f.read_to_end(&mut buf).await.map_err(io)?;
        }
        let counted = store.current().files.get(name).map_or(0, |t| t.offset);
        let (mut lines, mut start) = (Vec::new(), 0usize);
        for (i, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                let end = offset + i as u64 + 1;
                if end <= counted {
                    skipped += 1;
                } else {
                    let bytes = buf.get(start..i).unwrap_or_default();
                    lines.push(Line {
                        file: name.to_owned(),
                        end,
                        hash: hash(bytes),
                    });
                }
                start = i + 1;
            }
        }
        let end = offset + start as u64;
        if !lines.is_empty() {
            // Durable when this returns (SyncPolicy::Always), so the position that
            // follows is never ahead of a state a crash can take back.
            store.append_batch_async(&lines).await?;
        }
        if end > offset {
            offset = end;
            cell.set(Position {
                offset,
                ..Position::default()
            });
        } else if done {
            if skipped > 0 {
                println!("{name}: {skipped} lines read again after the restart were skipped");
            }
            return Ok(());
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn io(e: std::io::Error) -> snapwal::Error {
    snapwal::Error::Io {
        op: "read",
        path: PathBuf::new(),
        source: e,
    }
}

/// How a demo run went.
#[derive(Debug)]
pub struct Outcome {
    /// Per file: what the store counted and what the file holds.
    pub files: Vec<(String, Tail, Tail)>,
    pub kills: usize,
}

impl Outcome {
    pub fn exact(&self) -> bool {
        self.files.iter().all(|(_, got, want)| got == want)
    }
}

/// xorshift64*: pseudo-random kill times.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The demo: a writer thread appends lines to the files; a tailer child process
/// (`child` builds its command for the data directory) is SIGKILLed `kills` times at
/// pseudo-random moments and restarted; then the writer stops, the last tailer
/// catches up and exits, and the store is opened here to compare what it counted
/// with what the files hold. `say` gets the story.
pub fn run(
    dir: &Path,
    kills: usize,
    seed: u64,
    child: &dyn Fn(&Path) -> Command,
    say: &mut dyn FnMut(String),
) -> Outcome {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, logs) = (Arc::clone(&stop), logs.clone());
        std::thread::spawn(move || write_lines(&logs, &stop))
    };
    let mut rng = Rng(seed | 1);
    for round in 1..=kills {
        let mut tailer = start(child, dir, say);
        let after = Duration::from_millis(150 + rng.below(350));
        std::thread::sleep(after);
        tailer.kill().expect("SIGKILL");
        tailer.wait().expect("reap");
        say(format!(
            "kill {round}: SIGKILL after {} ms",
            after.as_millis()
        ));
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");
    std::fs::write(logs.join("DONE"), b"").expect("DONE");
    say(format!(
        "writer stopped after {written} lines; a last tailer catches up"
    ));
    let mut tailer = start(child, dir, say);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tailer.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the last tailer did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let store = Store::<Tails>::open(dir.join("store"), store_options()).expect("open");
    let state = store.current();
    let files = FILES
        .iter()
        .map(|name| {
            let got = state.files.get(*name).cloned().unwrap_or_default();
            (name.to_string(), got, expected(&logs.join(name)))
        })
        .collect();
    store.close().expect("close");
    Outcome { files, kills }
}

/// Starts a tailer child and relays its output to `say` from a thread.
fn start(child: &dyn Fn(&Path) -> Command, dir: &Path, say: &mut dyn FnMut(String)) -> Child {
    let mut cmd = child(dir);
    let mut tailer = cmd.stdout(Stdio::piped()).spawn().expect("spawn tailer");
    let out = tailer.stdout.take().expect("stdout");
    // Wait for the tailer to say it opened the store, so each kill lands mid-run.
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.expect("child output");
        let opened = line.starts_with("opened at");
        if !line.trim().is_empty() && !line.starts_with("running") && !line.starts_with("test ") {
            say(format!("  tailer {}: {line}", tailer.id()));
        }
        if opened {
            break;
        }
    }
    let id = tailer.id();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if !line.trim().is_empty() && !line.starts_with("test ") {
                println!("  tailer {id}: {line}");
            }
        }
    });
    tailer
}

/// Appends numbered lines to the files until `stop`; returns how many it wrote.
/// Each line is one `write` of a whole line, so a file never holds half a line.
fn write_lines(logs: &Path, stop: &AtomicBool) -> u64 {
    let mut files: Vec<_> = FILES
        .iter()
        .map(|n| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(n))
                .expect("open log")
        })
        .collect();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for _ in 0..20 {
            n += 1;
            let i = (n * 7 % files.len() as u64) as usize;
            let line = format!("{n} {} request served in {} us\n", FILES[i], n * 37 % 1000);
            files[i].write_all(line.as_bytes()).expect("write line");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    n
}
