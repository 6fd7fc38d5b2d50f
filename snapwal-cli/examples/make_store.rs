//! Makes a large store to measure `snapwal verify` against the library's recovery.
//!
//! ```text
//! cargo run --release -p snapwal-cli --example make_store -- write DIR MIB
//! cargo run --release -p snapwal-cli --example make_store -- open DIR
//! ```
//!
//! `write` appends 100-byte events until the WAL holds about `MIB` MiB (default
//! segments of 64 MiB, no snapshot, so recovery replays every record); `open` times
//! `Store::open` on it.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Bytes {
    events: u64,
    bytes: u64,
}

impl State for Bytes {
    type Event = Vec<u8>;
    fn apply(&mut self, e: &Vec<u8>) {
        self.events += 1;
        self.bytes += e.len() as u64;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match args.as_slice() {
        [cmd, dir, ..] => (cmd.as_str(), PathBuf::from(dir)),
        _ => return Err("usage: make_store (write DIR MIB | open DIR)".into()),
    };
    match cmd {
        "write" => {
            let mib: u64 = args.get(2).map_or(Ok(1024), |s| s.parse())?;
            let store = Store::<Bytes>::open(&dir, Options::default().sync(SyncPolicy::Never))?;
            // 100-byte payload: 1 length byte + 99 bytes; 16-byte frame.
            let frame = 16 + 100;
            let records = (mib << 20) / frame;
            let batch: Vec<Vec<u8>> = (0..1000u32).map(|i| vec![i as u8; 99]).collect();
            let start = Instant::now();
            let mut done = 0;
            while done < records {
                let n = (records - done).min(batch.len() as u64) as usize;
                store.append_batch(&batch[..n])?;
                done += n as u64;
            }
            store.sync()?;
            store.close()?;
            println!(
                "wrote {done} records ({:.0} MiB) in {:.1} s",
                (done * frame) as f64 / (1 << 20) as f64,
                start.elapsed().as_secs_f64()
            );
        }
        "open" => {
            let start = Instant::now();
            let (store, report) = Store::<Bytes>::open_with_report(&dir, Options::default())?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "recovered seq {} ({} records, {} bytes replayed) in {secs:.3} s: {:.0} MB/s of records",
                report.seq,
                report.records_replayed,
                report.bytes_replayed,
                report.bytes_replayed as f64 / 1e6 / secs
            );
            store.close()?;
        }
        _ => return Err(format!("unknown command {cmd}").into()),
    }
    Ok(())
}
