//! `shoal-sim`: run the deterministic cluster simulation over a range of seeds, or replay one.
//!
//!     scripts/sim.sh --seeds 0..1000          # what CI runs (a smaller range)
//!     scripts/sim.sh --seed 17 --history h.json   # replay one seed, keep its history
//!     scripts/sim.sh --seeds 0..20000 --chaos-secs 60   # a soak

use std::time::{Duration, Instant};

use clap::Parser;
use shoal_sim::{run_many, Sabotage, SimConfig};

#[derive(Parser)]
#[command(about = "Deterministic whole-cluster simulation of Shoal, judged by the history checkers")]
struct Args {
    /// Seeds to run, `A..B` (B excluded).
    #[arg(long, default_value = "0..100", conflicts_with = "seed")]
    seeds: String,
    /// Run (replay) this one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Virtual seconds of workload and faults per seed.
    #[arg(long, default_value_t = 20)]
    chaos_secs: u64,
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 6)]
    keys: usize,
    /// Run without faults.
    #[arg(long)]
    no_faults: bool,
    /// Largest clock skew (and clock step) of a node, in seconds. Above the tombstone grace
    /// minus the hints' max age, over two (2.5 s here), deleted keys may come back.
    #[arg(long, default_value_t = 2)]
    max_skew_secs: u64,
    /// How often the nemesis skips a member a layout change waits for while it is down
    /// (`shoal admin skip`), from 0 to 1.
    #[arg(long, default_value_t = 0.5)]
    skip_chance: f64,
    /// Wipe a node's disk when it crashes (to see the checkers catch lost writes).
    #[arg(long)]
    sabotage_wipe_disk: bool,
    /// Keep the membership fixed (by default the nemesis joins, leaves and removes nodes too).
    #[arg(long)]
    no_membership: bool,
    /// Commit layout changes without the retiring phase and without epoch fencing (to see
    /// the checkers catch the stale reads they prevent; nothing with --no-membership).
    #[arg(long)]
    sabotage_commit_without_retiring: bool,
    /// Serve replica requests whatever the coordinator's layout epoch (to see the checkers
    /// catch what epoch fencing prevents; nothing with --no-membership).
    #[arg(long)]
    sabotage_no_fencing: bool,
    /// Let layout changes go on without the members SWIM calls dead, as Shoal did before the
    /// layout-change engine (with --sabotage-no-fencing too: the bug as it was).
    #[arg(long)]
    sabotage_excuse_dead: bool,
    /// Threads (each runs whole seeds).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    jobs: usize,
    /// Write the history of the seed (with --seed) as JSON here.
    #[arg(long)]
    history: Option<std::path::PathBuf>,
    /// Write every seed's report (without histories) as JSON here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("--seeds takes A..B")?;
    let a: u64 = a.parse().map_err(|_| format!("bad seed {a:?}"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad seed {b:?}"))?;
    if b <= a {
        return Err(format!("empty seed range {s}"));
    }
    Ok(a..b)
}

fn main() {
    let args = Args::parse();
    let seeds = match args.seed {
        Some(s) => s..s + 1,
        None => parse_range(&args.seeds).unwrap_or_else(|e| {
            eprintln!("shoal-sim: {e}");
            std::process::exit(2)
        }),
    };
    let configure = |seed| {
        let mut c = SimConfig::new(seed);
        c.chaos = Duration::from_secs(args.chaos_secs);
        c.nodes = args.nodes;
        c.clients = args.clients;
        c.keys = args.keys;
        c.faults = !args.no_faults;
        c.max_skew = Duration::from_secs(args.max_skew_secs);
        c.skip_chance = args.skip_chance;
        c.membership = !args.no_membership;
        c.sabotage = if args.sabotage_wipe_disk {
            Some(Sabotage::WipeDiskOnCrash)
        } else if args.sabotage_commit_without_retiring {
            Some(Sabotage::CommitWithoutRetiring)
        } else {
            match (args.sabotage_excuse_dead, args.sabotage_no_fencing) {
                (true, true) => Some(Sabotage::ExcuseDeadNoFencing),
                (true, false) => Some(Sabotage::ExcuseDead),
                (false, true) => Some(Sabotage::NoFencing),
                (false, false) => None,
            }
        };
        c
    };
    // Everything but the seed selection, so a printed replay command reruns the same run.
    let mut replay_flags = format!(
        " --chaos-secs {} --nodes {} --clients {} --keys {} --max-skew-secs {} --skip-chance {}",
        args.chaos_secs, args.nodes, args.clients, args.keys, args.max_skew_secs, args.skip_chance
    );
    if args.no_faults {
        replay_flags.push_str(" --no-faults");
    }
    if args.sabotage_wipe_disk {
        replay_flags.push_str(" --sabotage-wipe-disk");
    }
    if args.no_membership {
        replay_flags.push_str(" --no-membership");
    }
    if args.sabotage_commit_without_retiring {
        replay_flags.push_str(" --sabotage-commit-without-retiring");
    }
    if args.sabotage_excuse_dead {
        replay_flags.push_str(" --sabotage-excuse-dead");
    }
    if args.sabotage_no_fencing {
        replay_flags.push_str(" --sabotage-no-fencing");
    }
    let started = Instant::now();
    let reports = run_many(seeds.clone(), args.jobs, configure, |r| {
        if !r.verdict.ok() {
            println!("seed {}: {} anomalies", r.seed, r.verdict.anomalies.len());
            for a in r.verdict.anomalies.iter().take(10) {
                println!("  [{}] {}: {}", a.checker, a.key, a.detail);
            }
            for s in &r.unconverged_state {
                println!("  at the end, {s}");
            }
            println!("  replay: scripts/sim.sh --seed {}{}", r.seed, replay_flags);
        }
    });
    let ops: usize = reports.iter().map(|r| r.ops).sum();
    let acked: usize = reports.iter().map(|r| r.acked_writes).sum();
    let faults: usize = reports.iter().map(|r| r.faults).sum();
    let failed: Vec<u64> = reports.iter().filter(|r| !r.verdict.ok()).map(|r| r.seed).collect();
    let anomalies: usize = reports.iter().map(|r| r.verdict.anomalies.len()).sum();
    let slowest = reports.iter().filter_map(|r| r.converged_after_ms).max().unwrap_or(0);
    println!(
        "shoal-sim: {} seeds ({}..{}), {ops} ops ({acked} acknowledged writes), {faults} faults, \
         slowest convergence {slowest} ms, {anomalies} anomalies in {} seeds, {:.1} s",
        reports.len(),
        seeds.start,
        seeds.end,
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if let (Some(path), Some(r)) = (&args.history, reports.first()) {
        let json = serde_json::to_string_pretty(&r.history).expect("histories serialise");
        std::fs::write(path, json).unwrap_or_else(|e| eprintln!("shoal-sim: writing {}: {e}", path.display()));
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&reports).expect("reports serialise");
        std::fs::write(path, json).unwrap_or_else(|e| eprintln!("shoal-sim: writing {}: {e}", path.display()));
    }
    if !failed.is_empty() {
        println!("failing seeds: {failed:?}");
        std::process::exit(1);
    }
}
