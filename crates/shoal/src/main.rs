//! `shoal`: run a node, a local dev cluster, certificates, the key-value client, admin, and
//! the benchmark harness.

mod bench_cmd;
mod cert;
mod cluster;
mod kv;
mod token;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Shoal: a leaderless key-value store with per-request N/W/R"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Serve {
        /// TOML configuration file; `SHOAL__SECTION__KEY` environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one setting, e.g. `--set node.id=n2` (repeatable; wins over everything).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Start a local cluster on consecutive ports, creating certificates and configs in DIR.
    Dev(cluster::DevArgs),
    /// Create the cluster CA, the context-signing secret, and node certificates.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Get, put and delete keys.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Cluster administration.
    Admin(kv::AdminArgs),
    /// Client bearer tokens.
    #[command(subcommand)]
    Auth(token::AuthCommand),
    /// Measure throughput and latency of a workload against a local or running cluster.
    Bench(bench_cmd::BenchArgs),
    /// List the objects a stopped node holds in its data directory, as JSON lines
    /// (`{"partition", "key", "n", "deleted"}`): what is on its disk, bypassing the cluster.
    Inspect {
        /// The node's data directory (node.data_dir).
        #[arg(long)]
        data_dir: PathBuf,
        /// List the hints it holds for other nodes instead
        /// (`{"target", "partition", "key"}`).
        #[arg(long)]
        hints: bool,
    },
    /// Write a value straight into a stopped node's storage, as if that node had coordinated
    /// it, bypassing the cluster: divergence that only anti-entropy can find (for testing
    /// repair).
    Inject {
        #[arg(long)]
        data_dir: PathBuf,
        /// The node's id: the actor of the new write's dot.
        #[arg(long)]
        node_id: String,
        /// cluster.partitions of the cluster.
        #[arg(long, default_value_t = 1024)]
        partitions: u32,
        #[arg(long, default_value_t = 3)]
        n: u8,
        key: String,
        value: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, set } => serve(config, set).await,
            Command::Dev(args) => cluster::dev(args).await,
            Command::Cert(c) => cert::run(c),
            Command::Kv(c) => kv::run(c).await,
            Command::Admin(c) => kv::admin(c).await,
            Command::Auth(c) => token::run(c),
            Command::Bench(args) => bench_cmd::run(args).await,
            Command::Inspect { data_dir, hints } => inspect(&data_dir, hints),
            Command::Inject {
                data_dir,
                node_id,
                partitions,
                n,
                key,
                value,
            } => inject(&data_dir, &node_id, partitions, n, &key, value),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>, set: Vec<String>) -> anyhow::Result<std::process::ExitCode> {
    let overrides = set
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--set takes KEY=VALUE, got {kv:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = shoal_node::NodeConfig::load(config.as_deref(), &overrides)?;
    shoal_node::logging::init(&cfg.log.format, &cfg.log.level);
    shoal_node::run(cfg, shutdown_signal()).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn open_stopped(data_dir: &std::path::Path) -> anyhow::Result<shoal_storage::RocksStore> {
    let path = data_dir.join("db");
    anyhow::ensure!(path.exists(), "{} holds no Shoal database", path.display());
    shoal_storage::RocksStore::open(&path, &shoal_storage::RocksOptions::default())
        .map_err(|e| anyhow::anyhow!("opening {} (is the node still running?): {e}", path.display()))
}

fn inject(
    data_dir: &std::path::Path,
    node_id: &str,
    partitions: u32,
    n: u8,
    key: &str,
    value: String,
) -> anyhow::Result<std::process::ExitCode> {
    let store = std::sync::Arc::new(open_stopped(data_dir)?);
    let replica = shoal_storage::Replica::new(store, shoal_storage::ReplicaLimits::default())?;
    let partition = shoal_ring::partition_for_hash(shoal_ring::key_hash(key.as_bytes()), partitions);
    let current = replica.read(partition, key.as_bytes())?;
    let context = current.map(|o| o.siblings.context()).unwrap_or_default();
    let (obj, outcome) = replica.coordinate(
        partition,
        key.as_bytes(),
        node_id,
        &context,
        shoal_storage::Value::Data(value.into()),
        n,
    )?;
    println!(
        "{}",
        serde_json::json!({"partition": partition, "key": key, "dot": outcome.dot.to_string(), "siblings": obj.siblings.len()})
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn inspect(data_dir: &std::path::Path, hints: bool) -> anyhow::Result<std::process::ExitCode> {
    use shoal_storage::Store;
    use std::io::Write;
    let store = open_stopped(data_dir)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    if hints {
        let mut failed = None;
        store.hint_scan(None, None, &mut |target, partition, key, _| {
            let line = serde_json::json!({
                "target": target,
                "partition": partition,
                "key": String::from_utf8_lossy(key),
            });
            match writeln!(out, "{line}") {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        return match failed {
            Some(e) => Err(e.into()),
            None => Ok(std::process::ExitCode::SUCCESS),
        };
    }
    for partition in 0..shoal_ring::MAX_PARTITIONS {
        let mut failed = None;
        store.scan_partition(partition, b"", &mut |key, obj| {
            let line = serde_json::json!({
                "partition": partition,
                "key": String::from_utf8_lossy(key),
                "n": obj.n,
                "deleted": obj.is_deleted(),
            });
            if let Err(e) = writeln!(out, "{line}") {
                failed = Some(e);
                return false;
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
