//! The simulation over a fixed seed range (what CI runs), determinism, and proof that the
//! checkers catch a lost write in a simulated run.
//!
//! `SHOAL_SIM_SEEDS=A..B` widens or moves the range; `scripts/sim.sh --seed N`
//! replays one seed.

use std::time::{Duration, Instant};

use shoal_sim::{run, run_many, Sabotage, SimConfig};

fn seed_range() -> std::ops::Range<u64> {
    std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once("..")?;
            Some(a.parse().ok()?..b.parse().ok()?)
        })
        .unwrap_or(0..2000)
}

#[test]
fn every_seed_in_the_ci_range_has_no_anomaly() {
    let started = Instant::now();
    let seeds = seed_range();
    let reports = run_many(seeds.clone(), 2, SimConfig::new, |_| {});
    let ops: usize = reports.iter().map(|r| r.ops).sum();
    let acked: usize = reports.iter().map(|r| r.acked_writes).sum();
    let faults: usize = reports.iter().map(|r| r.faults).sum();
    let pairs: usize = reports.iter().map(|r| r.verdict.intersection_pairs).sum();
    let required: usize = reports.iter().map(|r| r.verdict.required_elements).sum();
    let mut kinds = std::collections::BTreeMap::new();
    for r in &reports {
        for (k, n) in &r.fault_kinds {
            *kinds.entry(k.clone()).or_insert(0usize) += n;
        }
    }
    let failed: Vec<_> = reports.iter().filter(|r| !r.verdict.ok()).collect();
    println!(
        "shoal-sim: {} seeds ({}..{}), {ops} ops, {acked} acknowledged writes, {required} elements \
         required at the end, {pairs} read/write pairs checked for quorum intersection, {faults} faults \
         {kinds:?}, {} anomalies, {:.1} s",
        reports.len(),
        seeds.start,
        seeds.end,
        failed.iter().map(|r| r.verdict.anomalies.len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    for r in &failed {
        println!("seed {}: replay with `scripts/sim.sh --seed {}`", r.seed, r.seed);
        for a in r.verdict.anomalies.iter().take(5) {
            println!("  [{}] {}: {}", a.checker, a.key, a.detail);
        }
    }
    assert!(failed.is_empty(), "{} seeds had anomalies", failed.len());
    // The range must have exercised what it claims to.
    assert!(acked > reports.len() * 50, "only {acked} acknowledged writes");
    for kind in [
        "kill",
        "restart",
        "pause",
        "partition",
        "one-way",
        "weather",
        "clock-step",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} fault in the whole range");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(&SimConfig::new(7));
    let b = run(&SimConfig::new(7));
    assert_eq!(a.history_hash, b.history_hash, "seed 7 gave two different histories");
    assert_eq!(a.history, b.history);
    let c = run(&SimConfig::new(8));
    assert_ne!(a.history_hash, c.history_hash, "seeds 7 and 8 gave the same history");
}

#[test]
fn a_fault_free_run_converges_at_once_and_is_clean() {
    let mut config = SimConfig::new(1);
    config.faults = false;
    let r = run(&config);
    assert!(r.verdict.ok(), "{:?}", r.verdict.anomalies);
    assert_eq!(r.faults, 1, "only the heal is recorded");
    assert!(r.converged_after_ms.is_some_and(|ms| ms < 5_000));
}

#[test]
fn the_checkers_catch_writes_lost_to_a_wiped_disk() {
    // With a crash wiping the disk, acknowledged writes whose only copies were on the crashed
    // node disappear. Some seed in a small range must show it.
    let reports = run_many(
        0..20,
        2,
        |seed| {
            let mut c = SimConfig::new(seed);
            c.sabotage = Some(Sabotage::WipeDiskOnCrash);
            c.chaos = Duration::from_secs(15);
            c
        },
        |_| {},
    );
    let lost = reports
        .iter()
        .flat_map(|r| &r.verdict.anomalies)
        .filter(|a| a.checker == "no-lost-writes")
        .count();
    println!("sabotaged runs: {lost} lost writes found in 20 seeds");
    assert!(lost > 0, "wiping disks on crash lost no acknowledged write in 20 seeds");
}

/// Membership changes under faults, with and without the retiring phase, over the same
/// seeds. The bug the nemesis suite found (a commit moved writes to the new owners while
/// nodes that had not heard of it read from the old ones) must show as many more stale reads
/// without the retiring phase. With it, the seeds that still fail are the open problem
/// docs/testing.md describes (a node back from a crash or partition with an old layout), so
/// this compares rather than demanding zero.
#[test]
fn membership_changes_read_stale_far_more_often_without_the_retiring_phase() {
    let stale = |sabotage: Option<Sabotage>| {
        let reports = run_many(
            0..300,
            2,
            |seed| {
                let mut c = SimConfig::new(seed);
                c.membership = true;
                c.sabotage = sabotage;
                c
            },
            |_| {},
        );
        let changes: usize = reports
            .iter()
            .flat_map(|r| &r.fault_kinds)
            .filter(|(k, _)| ["join", "leave", "remove"].contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum();
        let failing: Vec<u64> = reports
            .iter()
            .filter(|r| r.verdict.anomalies.iter().any(|a| a.checker == "quorum-intersection"))
            .map(|r| r.seed)
            .collect();
        (changes, failing)
    };
    let (changes, with) = stale(None);
    let (_, without) = stale(Some(Sabotage::CommitWithoutRetiring));
    println!(
        "membership: {changes} changes in seeds 0..300; stale reads in {} seeds with the retiring phase \
         {with:?}, in {} without it",
        with.len(),
        without.len()
    );
    assert!(changes > 100, "only {changes} membership changes in 300 seeds");
    assert!(
        without.len() >= 3 * with.len().max(1),
        "without the retiring phase {} seeds read stale, with it {}",
        without.len(),
        with.len()
    );
}
