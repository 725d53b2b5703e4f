//! `shoal bench`: run a workload against an embedded local cluster (default) or a running
//! one, optionally beside a one-node baseline in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use shoal_bench::{KeyDistribution, Report, Workload};
use shoal_client::Client;

use crate::cluster::{self, DevArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mix {
    /// YCSB A: 50% reads, 50% updates.
    A,
    /// YCSB B: 95% reads.
    B,
    /// YCSB C: read only.
    C,
    /// Writes only.
    W,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Quic,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Nodes of the embedded cluster (ignored with --endpoints).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Target a running cluster instead: comma-separated http:// or quic:// endpoints.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// CA certificate for QUIC against --endpoints.
    #[arg(long, env = "SHOAL_CA_CERT")]
    ca: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "a")]
    mix: Mix,
    #[arg(long)]
    zipfian: bool,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Offered load in operations per second (open loop; latency counted from each
    /// operation's scheduled start). Without it, each client sends as fast as it is answered.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Unmeasured seconds before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    #[arg(long, default_value_t = 3)]
    n: u8,
    #[arg(long, default_value_t = 2)]
    w: u8,
    #[arg(long, default_value_t = 2)]
    r: u8,
    /// Also run the same load against a one-node cluster with n=w=r=1, and report the ratio.
    #[arg(long)]
    baseline: bool,
    /// Base port for the embedded clusters' HTTP (peer = +1000, QUIC = +2000).
    #[arg(long, default_value_t = 28080)]
    base_port: u16,
    /// Skip writing the keys before the run (they were written by an earlier run).
    #[arg(long)]
    no_preload: bool,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Outcome {
    label: String,
    report: Report,
    rss_mib: Vec<f64>,
}

async fn clients(endpoints: &[String], ca: Option<&std::path::Path>) -> anyhow::Result<Vec<Arc<Client>>> {
    let mut out = Vec::new();
    for e in endpoints {
        out.push(Arc::new(
            Client::connect(e, ca)
                .await
                .with_context(|| format!("connecting to {e}"))?,
        ));
    }
    Ok(out)
}

async fn run_one(
    args: &BenchArgs,
    label: &str,
    endpoints: Vec<String>,
    ca: Option<PathBuf>,
    w: &Workload,
    pids: &[u32],
) -> anyhow::Result<Outcome> {
    let clients = clients(&endpoints, ca.as_deref()).await?;
    if !args.no_preload {
        eprintln!("{label}: preloading {} keys of {} bytes", w.keys, w.value_size);
        shoal_bench::preload(&clients, w).await.context("preloading keys")?;
    }
    eprintln!(
        "{label}: {} clients, n={:?} w={:?} r={:?}, {} s warm-up + {} s measured over {}",
        w.concurrency,
        w.n,
        w.w,
        w.r,
        w.warmup.as_secs(),
        w.duration.as_secs(),
        if args.protocol == Protocol::Quic {
            "QUIC"
        } else {
            "HTTP"
        }
    );
    let report = shoal_bench::run(&clients, w, true).await;
    let rss_mib = pids.iter().filter_map(|p| peak_rss_mib(*p)).collect();
    Ok(Outcome {
        label: label.to_string(),
        report,
        rss_mib,
    })
}

async fn embedded(
    args: &BenchArgs,
    nodes: usize,
    n: u8,
    w: &Workload,
    label: &str,
    port_offset: u16,
) -> anyhow::Result<Outcome> {
    let dir = tempdir()?;
    let dev = DevArgs {
        nodes,
        dir: dir.clone(),
        http_port: args.base_port + port_offset,
        peer_port: args.base_port + 1000 + port_offset,
        quic_port: args.base_port + 2000 + port_offset,
        n,
    };
    let cluster = cluster::start(&dev).await?;
    let endpoints = match args.protocol {
        Protocol::Http => cluster.http_endpoints(),
        Protocol::Quic => cluster.quic_endpoints(),
    };
    let pids = cluster.pids();
    let result = run_one(args, label, endpoints, Some(dir.join("certs/ca.pem")), w, &pids).await;
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("shoal-bench-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn print(o: &Outcome) {
    let r = &o.report;
    println!("\n== {} ==", o.label);
    println!(
        "throughput   {:>10.0} ops/s   ({} ops in {:.1} s, {} errors)",
        r.throughput, r.ops, r.elapsed_s, r.errors
    );
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "op", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, l) in [("get", &r.get), ("put", &r.put)] {
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "{:<6} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            l.count,
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us)
        );
    }
    if !o.rss_mib.is_empty() {
        let rss: Vec<String> = o.rss_mib.iter().map(|m| format!("{m:.0}")).collect();
        println!("peak RSS per node (MiB): {}", rss.join(", "));
    }
    for e in &r.error_samples {
        println!("error sample: {e}");
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let read_fraction = match args.mix {
        Mix::A => 0.5,
        Mix::B => 0.95,
        Mix::C => 1.0,
        Mix::W => 0.0,
    };
    let workload = |n: u8, w: u8, r: u8| Workload {
        read_fraction,
        keys: args.keys,
        value_size: args.value_size,
        concurrency: args.concurrency,
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        n: Some(n),
        w: Some(w),
        r: Some(r),
        distribution: if args.zipfian {
            KeyDistribution::Zipfian
        } else {
            KeyDistribution::Uniform
        },
        seed: args.seed,
        rate: args.rate,
    };
    let main = workload(args.n, args.w, args.r);
    let mut outcomes = Vec::new();
    if !args.endpoints.is_empty() {
        outcomes.push(run_one(&args, "cluster", args.endpoints.clone(), args.ca.clone(), &main, &[]).await?);
    } else {
        let label = format!("{} nodes, n={} w={} r={}", args.nodes, args.n, args.w, args.r);
        outcomes.push(embedded(&args, args.nodes, args.n, &main, &label, 0).await?);
        if args.baseline {
            outcomes.push(embedded(&args, 1, 1, &workload(1, 1, 1), "baseline: 1 node, n=1 w=1 r=1", 100).await?);
        }
    }
    for o in &outcomes {
        print(o);
    }
    if let [cluster, baseline] = outcomes.as_slice() {
        println!(
            "\nratio: {:.2}x of the one-node n=1 throughput ({:.0} / {:.0} ops/s)",
            cluster.report.throughput / baseline.report.throughput,
            cluster.report.throughput,
            baseline.report.throughput
        );
    }
    if let Some(path) = &args.json {
        let all: Vec<_> = outcomes
            .iter()
            .map(|o| serde_json::json!({"label": o.label, "report": o.report, "peak_rss_mib": o.rss_mib}))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
