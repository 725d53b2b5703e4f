//! `shoal bench`: what an N/W/R choice costs in latency and buys in freshness.
//!
//! For each latency profile (an embedded local cluster per profile, or a running cluster),
//! for each (r, w) setting (one, or every pair with `--matrix`), the YCSB load and the
//! freshness probes run together; the nodes' measured WARS legs feed the PBS model; the
//! report puts measured and predicted staleness side by side.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use shoal_bench::freshness::ProbeConfig;
use shoal_bench::matrix::{self, CellPlan};
use shoal_bench::report::{self, MatrixReport, ProfileRun};
use shoal_bench::{KeyDistribution, Workload};
use shoal_client::Client;
use shoal_pbs::Profile;

use crate::cluster::{self, DevArgs, LocalCluster};

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

impl Mix {
    fn read_fraction(self) -> f64 {
        match self {
            Mix::A => 0.5,
            Mix::B => 0.95,
            Mix::C => 1.0,
            Mix::W => 0.0,
        }
    }
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
    /// HTTP endpoints of the running cluster's nodes, for their measured latencies (the PBS
    /// prediction); defaults to --endpoints when those are HTTP.
    #[arg(long, value_delimiter = ',')]
    admin_endpoints: Vec<String>,
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// CA certificate for QUIC against --endpoints.
    #[arg(long, env = "SHOAL_CA_CERT")]
    ca: Option<PathBuf>,
    /// Bearer token for --endpoints (read and write; admin too for the leg samples).
    #[command(flatten)]
    auth: crate::token::TokenArgs,
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
    /// Measured seconds per setting.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Unmeasured seconds before measuring each setting.
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
    /// Measure every (r, w) from (1, 1) to (n, n) instead of the one given.
    #[arg(long)]
    matrix: bool,
    /// Latency profiles to inject, each on a fresh embedded cluster: lan, lnkd-ssd,
    /// lnkd-disk, ymmr, wan, or the path of a TOML profile. With --endpoints, a label for
    /// whatever the cluster's nodes are configured with.
    #[arg(long, value_delimiter = ',', default_value = "lan")]
    profile: Vec<String>,
    /// Read delays after a probe's last acknowledged write, in ms (t-visibility's t).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,5,10,20,50,100,200,500")]
    t_ms: Vec<f64>,
    /// Versions each probe writes back to back before reading (k-staleness up to this k).
    #[arg(long, default_value_t = 3)]
    burst: u32,
    /// Concurrent freshness probes beside the load (0: measure latency only).
    #[arg(long, default_value_t = 8)]
    probe_workers: usize,
    /// Probes started per second across the probe workers, so they measure the cluster
    /// rather than saturate it; 0: each worker probes back to back.
    #[arg(long, default_value_t = 100.0)]
    probe_rate: f64,
    /// Monte Carlo trials of the PBS prediction per setting.
    #[arg(long, default_value_t = 20_000)]
    trials: u32,
    /// Also run the same load against a one-node cluster with n=w=r=1, and report the ratio.
    #[arg(long)]
    baseline: bool,
    /// Base port for the embedded clusters' HTTP (peer = +1000, QUIC = +2000).
    #[arg(long, default_value_t = 28080)]
    base_port: u16,
    /// Skip writing the keys before the run (they were written by an earlier run).
    #[arg(long)]
    no_preload: bool,
    /// Write the report here: report.json, CSVs, SVG and PNG plots, report.md.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the report's JSON here too.
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

async fn clients(
    endpoints: &[String],
    ca: Option<&std::path::Path>,
    token: Option<&str>,
) -> anyhow::Result<Vec<Arc<Client>>> {
    let mut out = Vec::new();
    for e in endpoints {
        out.push(Arc::new(
            Client::connect(e, ca)
                .await
                .with_context(|| format!("connecting to {e}"))?
                .with_token(token.map(str::to_string)),
        ));
    }
    Ok(out)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("shoal-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The clusters a run measures, one after the other.
struct Target {
    label: String,
    description: String,
    nodes: usize,
    n: u8,
    settings: Vec<(u8, u8)>,
    /// Embedded: start this many nodes with this profile. Running: use --endpoints.
    embedded: Option<(Option<String>, u16)>,
}

impl BenchArgs {
    fn workload(&self, n: u8, r: u8, w: u8) -> Workload {
        Workload {
            read_fraction: self.mix.read_fraction(),
            keys: self.keys,
            value_size: self.value_size,
            concurrency: self.concurrency,
            duration: Duration::from_secs(self.duration),
            warmup: Duration::from_secs(self.warmup),
            n: Some(n),
            w: Some(w),
            r: Some(r),
            distribution: if self.zipfian {
                KeyDistribution::Zipfian
            } else {
                KeyDistribution::Uniform
            },
            seed: self.seed,
            rate: self.rate,
        }
    }

    fn settings(&self) -> Vec<(u8, u8)> {
        if self.matrix {
            (1..=self.n).flat_map(|w| (1..=self.n).map(move |r| (r, w))).collect()
        } else {
            vec![(self.r, self.w)]
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.n >= 1, "--n must be at least 1");
        anyhow::ensure!(
            self.matrix || (1..=self.n).contains(&self.r) && (1..=self.n).contains(&self.w),
            "need 1 <= r, w <= n (got n={} r={} w={})",
            self.n,
            self.r,
            self.w
        );
        anyhow::ensure!(
            !self.endpoints.is_empty() || self.nodes >= self.n as usize,
            "--nodes ({}) must be at least --n ({}): a key cannot have more replicas than nodes",
            self.nodes,
            self.n
        );
        anyhow::ensure!(!self.t_ms.is_empty(), "--t-ms needs at least one delay");
        anyhow::ensure!(
            self.t_ms.iter().all(|t| t.is_finite() && *t >= 0.0 && *t <= 60_000.0),
            "--t-ms delays must be between 0 and 60000 ms"
        );
        anyhow::ensure!((1..=16).contains(&self.burst), "--burst must be between 1 and 16");
        anyhow::ensure!(self.trials >= 1, "--trials must be at least 1");
        anyhow::ensure!(
            self.probe_rate.is_finite() && self.probe_rate >= 0.0,
            "--probe-rate must be a number of probes per second, zero or more"
        );
        anyhow::ensure!(
            self.endpoints.is_empty() || self.profile.len() == 1,
            "with --endpoints the cluster's own latencies are measured: give at most one --profile (as a label)"
        );
        Ok(())
    }

    fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let mut out = Vec::new();
        if !self.endpoints.is_empty() {
            out.push(Target {
                label: self.profile[0].clone(),
                description: format!("running cluster at {}", self.endpoints.join(", ")),
                nodes: self.endpoints.len(),
                n: self.n,
                settings: self.settings(),
                embedded: None,
            });
            return Ok(out);
        }
        for (i, spec) in self.profile.iter().enumerate() {
            // Refuse a bad profile before starting anything.
            let p = Profile::resolve(spec)?;
            out.push(Target {
                label: p.name.clone(),
                description: p.description.clone(),
                nodes: self.nodes,
                n: self.n,
                settings: self.settings(),
                embedded: Some(((!p.is_lan()).then(|| spec.clone()), (i as u16) * 10)),
            });
        }
        if self.baseline {
            out.push(Target {
                label: "baseline".into(),
                description: "one node, n=1 w=1 r=1, nothing injected: the cost of replication is the ratio to this"
                    .into(),
                nodes: 1,
                n: 1,
                settings: vec![(1, 1)],
                embedded: Some((None, 100)),
            });
        }
        Ok(out)
    }
}

async fn measure(args: &BenchArgs, target: &Target) -> anyhow::Result<(ProfileRun, Vec<f64>)> {
    let mut cluster: Option<(LocalCluster, PathBuf)> = None;
    // Embedded clusters run without auth; a running cluster may need the caller's token.
    let mut token = None;
    let (endpoints, admin, ca) = match &target.embedded {
        Some((profile, port_offset)) => {
            let dir = tempdir()?;
            let dev = DevArgs {
                nodes: target.nodes,
                dir: dir.clone(),
                http_port: args.base_port + port_offset,
                peer_port: args.base_port + 1000 + port_offset,
                quic_port: args.base_port + 2000 + port_offset,
                n: target.n,
                latency_profile: profile.clone(),
            };
            let c = cluster::start(&dev).await?;
            let endpoints = match args.protocol {
                Protocol::Http => c.http_endpoints(),
                Protocol::Quic => c.quic_endpoints(),
            };
            let admin = c.http_endpoints();
            let ca = Some(dir.join("certs/ca.pem"));
            cluster = Some((c, dir));
            (endpoints, admin, ca)
        }
        None => {
            let admin = if args.admin_endpoints.is_empty() {
                args.endpoints
                    .iter()
                    .filter(|e| e.starts_with("http://") || e.starts_with("https://"))
                    .cloned()
                    .collect()
            } else {
                args.admin_endpoints.clone()
            };
            if admin.is_empty() {
                eprintln!("no HTTP endpoints (--admin-endpoints): staleness is measured but not predicted");
            }
            token = args.auth.token()?;
            (args.endpoints.clone(), admin, args.ca.clone())
        }
    };
    let result = measure_on(args, target, &endpoints, &admin, ca.as_deref(), token.as_deref()).await;
    let rss = cluster
        .as_ref()
        .map(|(c, _)| c.pids().iter().filter_map(|p| peak_rss_mib(*p)).collect())
        .unwrap_or_default();
    if let Some((c, dir)) = cluster {
        c.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|run| (run, rss))
}

async fn measure_on(
    args: &BenchArgs,
    target: &Target,
    endpoints: &[String],
    admin: &[String],
    ca: Option<&std::path::Path>,
    token: Option<&str>,
) -> anyhow::Result<ProfileRun> {
    let clients = clients(endpoints, ca, token).await?;
    if !args.no_preload {
        eprintln!(
            "{}: preloading {} keys of {} bytes",
            target.label, args.keys, args.value_size
        );
        let (r, w) = target.settings[0];
        let w = args.workload(target.n, r, w);
        shoal_bench::preload(&clients, &w).await.context("preloading keys")?;
    }
    let mut cells = Vec::new();
    for &(r, w) in &target.settings {
        let plan = CellPlan {
            workload: args.workload(target.n, r, w),
            probe: ProbeConfig {
                n: target.n,
                r,
                w,
                t_ms: args.t_ms.clone(),
                burst: args.burst,
                workers: args.probe_workers,
                rate: (args.probe_rate > 0.0).then_some(args.probe_rate),
                duration: Duration::ZERO,
                value_size: args.value_size,
                seed: args.seed,
            },
            trials: args.trials,
            nodes: target.nodes,
        };
        eprintln!(
            "{}: n={} r={r} w={w}: {} clients{}, {} probe workers at {} probes/s, {} s warm-up + {} s measured over {}",
            target.label,
            target.n,
            args.concurrency,
            args.rate.map(|r| format!(" at {r} ops/s")).unwrap_or_default(),
            args.probe_workers,
            args.probe_rate,
            args.warmup,
            args.duration,
            if args.protocol == Protocol::Quic {
                "QUIC"
            } else {
                "HTTP"
            }
        );
        let (cell, notes) = matrix::run_cell(
            &clients,
            admin,
            shoal_client::Access { token, ca },
            &plan,
            &target.label,
        )
        .await?;
        for note in notes.iter().take(5) {
            eprintln!("  note: {note}");
        }
        cells.push(cell);
    }
    Ok(ProfileRun {
        profile: target.label.clone(),
        description: target.description.clone(),
        nodes: target.nodes,
        cells,
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    args.validate()?;
    let targets = args.targets()?;
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut report = MatrixReport {
        title: format!(
            "{} nodes, YCSB {:?}, {} keys, {}-byte values, {} clients{}",
            targets.first().map_or(args.nodes, |t| t.nodes),
            args.mix,
            if args.zipfian { "zipfian" } else { "uniform" },
            args.value_size,
            args.concurrency,
            args.rate.map(|r| format!(" at {r} ops/s")).unwrap_or_default()
        ),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time,
        profiles: Vec::new(),
    };
    for target in &targets {
        let (run, rss) = measure(&args, target).await?;
        if !rss.is_empty() {
            let rss: Vec<String> = rss.iter().map(|m| format!("{m:.0}")).collect();
            eprintln!("{}: peak RSS per node (MiB): {}", target.label, rss.join(", "));
        }
        report.profiles.push(run);
    }
    println!("{}", report::summary_table(&report));
    let throughput = |p: &ProfileRun| p.cells.first().map_or(0.0, |c| c.throughput);
    if let (Some(first), Some(base)) = (
        report.profiles.first(),
        report.profiles.iter().find(|p| p.profile == "baseline"),
    ) {
        if args.baseline && !std::ptr::eq(first, base) {
            println!(
                "ratio: {:.2}x of the one-node n=1 throughput ({:.0} / {:.0} ops/s)",
                throughput(first) / throughput(base),
                throughput(first),
                throughput(base)
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match &args.out {
        Some(dir) => {
            let files = report::write_all(&report, dir)?;
            println!("report: {} files in {}", files.len(), dir.display());
        }
        None => eprintln!("add --out DIR for the JSON, CSV, plots and Markdown report"),
    }
    let errors: u64 = report.profiles.iter().flat_map(|p| &p.cells).map(|c| c.errors).sum();
    if errors > 0 {
        eprintln!("{errors} requests failed; see the notes above");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
