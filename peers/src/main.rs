//! Peer comparisons measured in one run on one machine: durable 100-byte appends
//! (snapwal `SyncPolicy::Always` vs okaywal 0.3, each entry committed) with 1, 2 and 8
//! threads; durable appends on a plain 100,000-entry `HashMap` state with 1 and 8
//! threads; recovery replay (snapwal vs okaywal); SQLite in WAL mode
//! (`synchronous=FULL` and `NORMAL`) inserting 100-byte rows from one thread.
//!
//! ```text
//! cargo run --release --manifest-path peers/Cargo.toml -- [--seconds S] [--replay-mib M] [--dir PATH]
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use okaywal::{
    Configuration, Entry, EntryId, LogManager, ReadChunkResult, SegmentReader, WriteAheadLog,
};
use serde::{Deserialize, Serialize};
use snapwal::{Options, Store, SyncPolicy};

/// The state both logs recover into: a count and a byte total of the records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tally {
    events: u64,
    bytes: u64,
}

impl snapwal::State for Tally {
    type Event = Vec<u8>;
    fn apply(&mut self, e: &Vec<u8>) {
        self.events += 1;
        self.bytes += e.len() as u64;
    }
}

/// 100 bytes once encoded by postcard (99 bytes and a length byte); okaywal gets the
/// same 100 bytes as one chunk.
fn payload() -> Vec<u8> {
    (0..99u8).collect()
}

#[derive(Debug, Default)]
struct OkTally {
    events: u64,
    bytes: u64,
}

impl LogManager for OkTally {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        loop {
            match entry.read_chunk()? {
                ReadChunkResult::Chunk(mut chunk) => {
                    let mut buf = Vec::with_capacity(chunk.bytes_remaining() as usize);
                    io::Read::read_to_end(&mut chunk, &mut buf)?;
                    if !chunk.check_crc()? {
                        return Err(io::Error::other("crc mismatch"));
                    }
                    self.events += 1;
                    self.bytes += buf.len() as u64;
                }
                ReadChunkResult::EndOfEntry | ReadChunkResult::AbortedEntry => return Ok(()),
            }
        }
    }

    fn checkpoint_to(
        &mut self,
        _last: EntryId,
        _entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

struct Args {
    seconds: f64,
    replay_mib: u64,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5.0,
        replay_mib: 256,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--seconds" => a.seconds = v.parse().expect("--seconds"),
            "--replay-mib" => a.replay_mib = v.parse().expect("--replay-mib"),
            "--dir" => a.dir = Some(PathBuf::from(v)),
            _ => {
                eprintln!("usage: peers [--seconds S] [--replay-mib M] [--dir PATH]");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Runs `f` on `threads` threads for `secs`; returns appends per second.
fn rate(threads: usize, secs: f64, f: impl Fn() + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    f();
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn durable_snapwal(dir: &Path, threads: usize, secs: f64, preallocate: bool) -> f64 {
    let opts = Options::default()
        .sync(SyncPolicy::Always)
        .preallocate(preallocate);
    let store = Store::<Tally>::open(dir, opts).unwrap();
    let p = payload();
    let r = rate(threads, secs, || {
        store.append(&p).unwrap();
    });
    store.close().unwrap();
    r
}

/// A plain std state of 100,000 entries: each event bumps one of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counters {
    counts: std::collections::HashMap<u64, u64>,
}

impl snapwal::State for Counters {
    type Event = u64;
    fn apply(&mut self, e: &u64) {
        *self.counts.entry(e % PLAIN_ENTRIES).or_insert(0) += 1;
    }
}

/// Entries of the plain state in [`durable_plain`].
const PLAIN_ENTRIES: u64 = 100_000;

/// Durable appends on a plain `HashMap` state of [`PLAIN_ENTRIES`] entries: each
/// appender holds the version it published until its group commit ends, which must
/// not make the writer copy the state at every append.
fn durable_plain(dir: &Path, threads: usize, secs: f64) -> f64 {
    let state = Counters {
        counts: (0..PLAIN_ENTRIES).map(|k| (k, 0)).collect(),
    };
    let opts = Options::default().sync(SyncPolicy::Always);
    let store = Store::create_with(dir, state, opts).unwrap();
    let next = AtomicU64::new(0);
    let r = rate(threads, secs, || {
        store.append(&next.fetch_add(1, Ordering::Relaxed)).unwrap();
    });
    store.close().unwrap();
    r
}

/// The disk's own ceiling for one writer: a loop of 100-byte `pwrite` + `fdatasync`
/// on a preallocated file, appends per second.
fn fsync_ceiling(dir: &Path, secs: f64) -> f64 {
    use snapwal::fs::{Fs, RealFs};
    std::fs::create_dir_all(dir).unwrap();
    let file = RealFs.create_new(&dir.join("ceiling")).unwrap();
    file.allocate(64 << 20).unwrap();
    let p = payload();
    let offset = AtomicU64::new(0);
    rate(1, secs, || {
        let at = offset.fetch_add(p.len() as u64, Ordering::Relaxed);
        file.write_all_at(&p, at).unwrap();
        file.sync_data().unwrap();
    })
}

fn durable_okaywal(dir: &Path, threads: usize, secs: f64) -> f64 {
    let wal = Configuration::default_for(dir)
        .open(OkTally::default())
        .unwrap();
    let p = payload();
    let r = rate(threads, secs, || {
        let mut e = wal.begin_entry().unwrap();
        e.write_chunk(&p).unwrap();
        e.commit().unwrap();
    });
    wal.shutdown().unwrap();
    r
}

fn sqlite(dir: &Path, sync: &str, secs: f64) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", sync).unwrap();
    conn.execute(
        "CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
        [],
    )
    .unwrap();
    let p = vec![7u8; 100];
    let mut stmt = conn.prepare("INSERT INTO log (body) VALUES (?1)").unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        // Autocommit: one transaction per row.
        stmt.execute([&p]).unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// Writes `records` 100-byte records to each log (in entries/batches of 1,000, synced
/// at the end), then times recovery of each, `reps` times, best taken.
fn replay(root: &Path, records: u64, reps: usize) -> ((f64, u64), (f64, u64)) {
    let p = payload();
    let batch: Vec<Vec<u8>> = (0..1000).map(|_| p.clone()).collect();
    let sdir = root.join("replay-snapwal");
    {
        let store =
            Store::<Tally>::open(&sdir, Options::default().sync(SyncPolicy::Never)).unwrap();
        for _ in 0..records / 1000 {
            store.append_batch(&batch).unwrap();
        }
        store.close().unwrap();
    }
    let odir = root.join("replay-okaywal");
    {
        let wal = Configuration::default_for(&odir)
            .checkpoint_after_bytes(u64::MAX / 2)
            .open(OkTally::default())
            .unwrap();
        for _ in 0..records / 1000 {
            let mut e = wal.begin_entry().unwrap();
            for _ in 0..1000 {
                e.write_chunk(&p).unwrap();
            }
            e.commit().unwrap();
        }
        wal.shutdown().unwrap();
    }
    let (sbytes, obytes) = (dir_bytes(&sdir.join("wal")), dir_bytes(&odir));
    let mut best_s = f64::MAX;
    let mut best_o = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let (store, rep) = Store::<Tally>::open_with_report(&sdir, Options::default()).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(store.current().events, records);
        assert_eq!(rep.records_replayed, records);
        drop(store);
        best_s = best_s.min(s);

        let t = Instant::now();
        // `open` takes the manager by value; count through a shared cell.
        let counted = Arc::new(AtomicU64::new(0));
        {
            #[derive(Debug)]
            struct Counting(Arc<AtomicU64>, OkTally);
            impl LogManager for Counting {
                fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
                    self.1.recover(entry)?;
                    self.0.store(self.1.events, Ordering::Relaxed);
                    Ok(())
                }
                fn checkpoint_to(
                    &mut self,
                    l: EntryId,
                    e: &mut SegmentReader,
                    w: &WriteAheadLog,
                ) -> io::Result<()> {
                    self.1.checkpoint_to(l, e, w)
                }
            }
            let wal = Configuration::default_for(&odir)
                .checkpoint_after_bytes(u64::MAX / 2)
                .open(Counting(Arc::clone(&counted), OkTally::default()))
                .unwrap();
            let o = t.elapsed().as_secs_f64();
            best_o = best_o.min(o);
            drop(wal);
        }
        assert_eq!(counted.load(Ordering::Relaxed), records);
    }
    ((best_s, sbytes), (best_o, obytes))
}

fn main() {
    let a = args();
    let tmp = match &a.dir {
        Some(d) => tempfile::Builder::new().prefix("peers-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("peers-").tempdir(),
    }
    .unwrap();
    let root = tmp.path();
    eprintln!(
        "peers: {} s per measurement, replay of {} MiB",
        a.seconds, a.replay_mib
    );

    println!("durable 100-byte appends per second (each acknowledged after fdatasync)");
    println!(
        "{:<10}{:>14}{:>14}{:>18}{:>22}",
        "threads", "snapwal", "okaywal", "snapwal/okaywal", "snapwal no-prealloc"
    );
    for threads in [1usize, 2, 8] {
        // Interleaved rounds, median of each: the disk is shared and its fsync latency
        // drifts, so no store gets a quiet moment the other did not.
        let (mut s, mut np, mut o) = (Vec::new(), Vec::new(), Vec::new());
        let mut ceiling = Vec::new();
        let secs = a.seconds / ROUNDS as f64;
        for r in 0..ROUNDS {
            if threads == 1 {
                ceiling.push(fsync_ceiling(&root.join(format!("c-{r}")), secs));
            }
            s.push(durable_snapwal(
                &root.join(format!("s{threads}-{r}")),
                threads,
                secs,
                true,
            ));
            o.push(durable_okaywal(
                &root.join(format!("o{threads}-{r}")),
                threads,
                secs,
            ));
            np.push(durable_snapwal(
                &root.join(format!("n{threads}-{r}")),
                threads,
                secs,
                false,
            ));
        }
        let (s, np, o) = (median(s), median(np), median(o));
        eprintln!("  durable appends, {threads} threads: snapwal {s:.0}/s, okaywal {o:.0}/s");
        println!("{threads:<10}{s:>14.0}{o:>14.0}{:>17.2}x{np:>22.0}", s / o);
        if !ceiling.is_empty() {
            let c = median(ceiling);
            println!(
                "{:<10}{c:>14.0}  (the disk's pwrite + fdatasync loop; snapwal at {:.2}x of it)",
                "ceiling",
                s / c
            );
        }
    }

    println!();
    println!(
        "durable appends on a plain HashMap state of {PLAIN_ENTRIES} entries (one entry changed per event)"
    );
    for threads in [1usize, 8] {
        let r = durable_plain(&root.join(format!("plain{threads}")), threads, a.seconds);
        println!("{threads:<10}{r:>14.0} per s");
    }

    println!();
    println!("SQLite WAL mode, 1 thread, 100-byte rows, one transaction per insert");
    let full = sqlite(&root.join("q-full").tap_mkdir(), "FULL", a.seconds);
    let normal = sqlite(&root.join("q-normal").tap_mkdir(), "NORMAL", a.seconds);
    println!("{:<28}{:>14.0} inserts/s", "synchronous=FULL", full);
    println!(
        "{:<28}{:>14.0} inserts/s (not durable per commit)",
        "synchronous=NORMAL", normal
    );

    println!();
    let records = a.replay_mib * (1 << 20) / 100 / 1000 * 1000;
    eprintln!("  writing {records} records to each log for the replay test...");
    let ((s, sb), (o, ob)) = replay(root, records, 3);
    println!("recovery replay of {records} 100-byte records (warm page cache, best of 3)");
    println!(
        "{:<10}{:>12}{:>12}{:>12}",
        "", "seconds", "MB on disk", "MB/s"
    );
    println!(
        "{:<10}{:>12.3}{:>12.1}{:>12.0}",
        "snapwal",
        s,
        sb as f64 / 1e6,
        sb as f64 / 1e6 / s
    );
    println!(
        "{:<10}{:>12.3}{:>12.1}{:>12.0}",
        "okaywal",
        o,
        ob as f64 / 1e6,
        ob as f64 / 1e6 / o
    );
    println!(
        "replay time okaywal/snapwal: {:.2}x (records per second ratio)",
        o / s
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
