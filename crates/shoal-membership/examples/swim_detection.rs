//! Measures SWIM crash detection and false positives in the deterministic simulator.
//!
//! ```text
//! cargo run --release -p shoal-membership --example swim_detection -- --nodes 5 --seeds 200
//! ```
//!
//! For each seed it bootstraps a cluster on a loss-free LAN (0.5–5 ms latency, memberlist's
//! LAN settings), crashes one member and times detection; then, separately, it runs the same
//! cluster with no failure at a uniform message loss and counts false suspicions and false
//! deaths. Every run is a pure function of its seed, so any outlier can be replayed.

#[path = "../tests/support/sim.rs"]
mod sim;

use shoal_membership::SwimConfig;
use sim::*;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: swim_detection [--nodes N] [--seeds S] [--first-seed F] [--loss P] [--duration SECS]
  --nodes N        cluster size (default 5)
  --seeds S        seeds to run (default 100)
  --first-seed F   first seed (default 0)
  --loss P         message loss for the false-positive runs, 0..1 (default 0.10)
  --duration SECS  simulated seconds per false-positive run (default 120)";

struct Args {
    nodes: usize,
    seeds: u64,
    first_seed: u64,
    loss: f64,
    duration: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 5,
        seeds: 100,
        first_seed: 0,
        loss: 0.10,
        duration: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--nodes" => args.nodes = value.parse().map_err(|e| bad(&e))?,
            "--seeds" => args.seeds = value.parse().map_err(|e| bad(&e))?,
            "--first-seed" => args.first_seed = value.parse().map_err(|e| bad(&e))?,
            "--loss" => args.loss = value.parse().map_err(|e| bad(&e))?,
            "--duration" => args.duration = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if args.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if !(0.0..1.0).contains(&args.loss) {
        return Err("--loss must be in [0, 1)".into());
    }
    Ok(args)
}

fn row(name: &str, values: &[Duration]) {
    println!(
        "  {name:<24} {:>9} {:>9} {:>9}",
        secs(percentile(values, 0.5)),
        secs(percentile(values, 0.99)),
        secs(percentile(values, 1.0))
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let n = args.nodes;
    let seeds = args.first_seed..args.first_seed + args.seeds;
    let config = SwimConfig::default();
    let bound = detection_bound(&config, n);
    let (min, max) = config.suspicion_bounds(n);

    println!("SWIM crash detection: {n} nodes, seeds {seeds:?}, memberlist LAN settings, 0.5-5 ms latency, no loss");
    println!(
        "  suspicion timeout {}..{}, derived detection bound {} (tests/support/sim.rs: detection_bound)",
        secs(min),
        secs(max),
        secs(bound)
    );
    let mut runs = Vec::new();
    let mut errors = 0;
    for seed in seeds.clone() {
        // Measure well past the bound so that a run exceeding it is reported, not cut off.
        match measure_crash_detection(n, seed, 4 * bound) {
            Ok(d) => runs.push(d),
            Err(e) => {
                errors += 1;
                eprintln!("  seed {seed}: {e}");
            }
        }
    }
    let pick = |f: fn(&Detection) -> Duration| runs.iter().map(f).collect::<Vec<_>>();
    println!("  {:<24} {:>9} {:>9} {:>9}", "", "median", "p99", "max");
    row("crash -> first suspect", &pick(|d| d.first_suspect));
    row("crash -> first dead", &pick(|d| d.first_dead));
    row("crash -> all dead", &pick(|d| d.all_dead));
    let over = runs.iter().filter(|d| d.all_dead > bound).count();
    let messages: u64 = runs.iter().map(|d| d.messages).sum();
    println!(
        "  runs over the bound: {over} of {}; failed runs: {errors}; messages from crash to detection: {:.0} per run",
        runs.len(),
        messages as f64 / runs.len().max(1) as f64
    );

    println!(
        "False positives: {n} nodes, seeds {seeds:?}, {:.0}% uniform loss, {} s per seed, nobody fails",
        args.loss * 100.0,
        args.duration.as_secs()
    );
    let mut total = LossRun::default();
    let mut runs_with_deaths = 0;
    for seed in seeds {
        match measure_false_positives(n, seed, args.loss, args.duration) {
            Ok(r) => {
                if r.deaths > 0 {
                    runs_with_deaths += 1;
                    eprintln!(
                        "  seed {seed}: {} false deaths (replay with a trace: SHOAL_SIM_TRACE=all cargo run --release -p \
                         shoal-membership --example swim_detection -- --nodes {n} --seeds 1 --first-seed {seed})",
                        r.deaths
                    );
                }
                total.add(&r);
            }
            Err(e) => {
                errors += 1;
                eprintln!("  seed {seed}: {e}");
            }
        }
    }
    let per_probe = |x: u64| 100.0 * x as f64 / total.probes.max(1) as f64;
    println!(
        "  probes {}, failed {} ({:.3}%), false suspicions {} ({:.3}% of probes), refutations {}",
        total.probes,
        total.probes_failed,
        per_probe(total.probes_failed),
        total.suspicions,
        per_probe(total.suspicions),
        total.refutations
    );
    println!(
        "  false deaths {} (in {runs_with_deaths} runs); max local health {}; messages {} ({} lost)",
        total.deaths, total.max_health, total.messages, total.lost
    );
    if errors > 0 || over > 0 || total.deaths > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
