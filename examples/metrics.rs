//! snapwal's metrics exported for Prometheus.
//!
//! ```text
//! cargo run --release --features metrics --example metrics              # a scrape
//! cargo run --release --features metrics --example metrics -- --overhead
//! cargo run --release [--features metrics] --example metrics -- --loop plain|recorded N
//! ```
//!
//! The default run installs a Prometheus recorder, runs one store (label `orders`)
//! through 8 appender threads under `Always`, a checkpoint and a reopen, and prints
//! the `snapwal_` lines of a scrape. `--overhead` measures the metrics' cost on a
//! tight loop of appends (`Never`, so the disk stays out of it): a store whose handles
//! were taken with no recorder installed against one taken under a Prometheus
//! recorder, in alternating rounds in one process. `--loop` runs N appends of one
//! kind only, for an instruction count (`valgrind --tool=callgrind`), which this noisy
//! machine cannot disturb; built without the feature it gives the baseline.

#[cfg(feature = "metrics")]
use std::sync::Arc;
use std::time::Instant;

#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::{Deserialize, Serialize};
use snapwal::{Options, State, Store, SyncPolicy};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Orders {
    count: u64,
    value: u64,
}

impl State for Orders {
    type Event = u64;
    fn apply(&mut self, v: &u64) {
        self.count += 1;
        self.value += v;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, mode, n] = args.as_slice() {
        if flag == "--loop" {
            return one_loop(mode, n.parse()?);
        }
    }
    #[cfg(not(feature = "metrics"))]
    return Err("build with `--features metrics`".into());
    #[cfg(feature = "metrics")]
    if args.iter().any(|a| a == "--overhead") {
        return overhead();
    }
    #[cfg(feature = "metrics")]
    scrape()
}

/// Runs `n` appends under `Never` on a store opened with no recorder (`plain`) or
/// under a Prometheus recorder (`recorded`).
fn one_loop(mode: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = Options::default().sync(SyncPolicy::Never);
    let store = match mode {
        "plain" => Store::<Orders>::open(dir.path(), opts)?,
        #[cfg(feature = "metrics")]
        "recorded" => {
            let recorder = PrometheusBuilder::new().build_recorder();
            metrics::with_local_recorder(&recorder, || Store::<Orders>::open(dir.path(), opts))?
        }
        _ => return Err(format!("unknown loop {mode}").into()),
    };
    let per_sec = rate(&store, n)?;
    println!("{mode}: {n} appends, {per_sec:.0}/s");
    store.close()?;
    Ok(())
}

#[cfg(feature = "metrics")]
fn scrape() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let dir = tempfile::tempdir()?;
    let opts = Options::default()
        .sync(SyncPolicy::Always)
        .segment_bytes(1 << 20)
        .metrics_label("orders");
    let store = Arc::new(Store::<Orders>::open(dir.path(), opts.clone())?);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || -> snapwal::Result<()> {
                for i in 0..2_000u64 {
                    store.append(&(t * 10_000 + i))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "appender panicked")??;
    }
    store.checkpoint()?;
    Arc::into_inner(store)
        .ok_or("store still shared")?
        .close()?;
    Store::<Orders>::open(dir.path(), opts)?.close()?;
    println!("# the snapwal_ lines of a Prometheus scrape after 16,000 durable appends from 8 threads, a checkpoint and a reopen");
    for line in handle.render().lines() {
        if line.contains("snapwal_") {
            println!("{line}");
        }
    }
    Ok(())
}

/// Appends per second on `store` for `n` appends.
fn rate(store: &Store<Orders>, n: u64) -> snapwal::Result<f64> {
    let start = Instant::now();
    for i in 0..n {
        store.append(&i)?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[cfg(feature = "metrics")]
fn overhead() -> Result<(), Box<dyn std::error::Error>> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let opts = Options::default().sync(SyncPolicy::Never);
    // Without a recorder: every handle is a no-op.
    let plain = Store::<Orders>::open(dirs[0].path(), opts.clone().metrics_label("plain"))?;
    // Under a Prometheus recorder (installed for this store's open only).
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let recorded = metrics::with_local_recorder(&recorder, || {
        Store::<Orders>::open(dirs[1].path(), opts.metrics_label("recorded"))
    })?;
    let n = 200_000;
    rate(&plain, n)?;
    rate(&recorded, n)?;
    let mut ratios = Vec::new();
    for _ in 0..10 {
        let a = rate(&plain, n)?;
        let b = rate(&recorded, n)?;
        ratios.push(b / a);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "tight-loop appends (Never), 10 alternating rounds of {n}: recorded / no recorder = {:.3} median (min {:.3}, max {:.3})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let scrape = handle.render();
    let count = scrape
        .lines()
        .find(|l| l.starts_with("snapwal_records_total"))
        .unwrap_or("snapwal_records_total missing");
    println!("recorded store's scrape: {count}");
    plain.close()?;
    recorded.close()?;
    Ok(())
}
