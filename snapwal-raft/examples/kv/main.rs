//! A 3-node replicated key-value service on snapwal-raft: three OS processes on
//! 127.0.0.1, each with its own snapwal directory, raft over a small TCP protocol.
//!
//! ```sh
//! cargo run --release -p snapwal-raft --example kv
//! ```
//!
//! The parent starts the nodes (this binary again, with `--node ID --dir D --listen
//! ADDR`), forms the cluster, writes keys with many writes in flight, SIGKILLs a
//! follower and later the leader mid-load, restarts each from its directory, and
//! prints what happened: the election, the catch-up from the log, the catch-up from a
//! snapshot, and the final check that every node holds every acknowledged write.

mod cluster;
mod node;
mod rpc;

use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--node") {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
        let node = match node::NodeArgs::parse(&args) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("kv node: {e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = node::run_node(&node) {
            eprintln!("kv node {}: {e}", node.id);
            std::process::exit(1);
        }
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("snapwal-kv-")
        .tempdir()
        .expect("create a temporary directory");
    let exe = std::env::current_exe().expect("the path of this executable");
    let launch: cluster::Launcher = Box::new(move |a: &node::NodeArgs| {
        let mut c = Command::new(&exe);
        c.args(a.to_args());
        c
    });
    let plan = cluster::Plan {
        writers: 64,
        warmup: 2_000,
        while_follower_down: 500,
        before_leader_kill: 2_000,
        tail: 1_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let say = |s: String| println!("{s}");
    match rt.block_on(cluster::story(launch, tmp.path(), &plan, &say)) {
        Ok(_) => {}
        Err(e) => {
            eprintln!("kv: {e}");
            std::process::exit(1);
        }
    }
}
