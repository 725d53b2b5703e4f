//! Shoal's deterministic whole-cluster simulator, and the history checkers it shares with the
//! real-process nemesis suite in `tests/nemesis.rs`.
//!
//! A run boots a cluster of real cores (coordinator with sloppy quorum and read repair,
//! replicas with DVV siblings, hinted handoff, Merkle anti-entropy with tombstone GC, SWIM
//! with Lifeguard) on in-memory stores, a virtual clock per node (skewed) and a seeded
//! network, drives a set workload while a nemesis crashes, pauses, partitions and degrades,
//! then heals and checks the history ([`check`]). Every run is a function of its seed:
//! `scripts/sim.sh --seed N` replays one.

pub mod check;
pub mod history;
pub mod layout;
pub mod net;
pub mod node;
pub mod run;
mod store;

pub use run::{run, RunReport, Sabotage, Script, ScriptReport, SimConfig};

/// Run seeds `seeds` on `jobs` threads (each its own single-threaded runtime), calling
/// `done` with every report as it finishes. Reports come back in seed order.
pub fn run_many(
    seeds: std::ops::Range<u64>,
    jobs: usize,
    configure: impl Fn(u64) -> SimConfig + Sync,
    done: impl Fn(&RunReport) + Sync,
) -> Vec<RunReport> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(seeds.start);
    let reports = parking_lot::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let report = run(&configure(seed));
                done(&report);
                reports.lock().push(report);
            });
        }
    });
    let mut reports = reports.into_inner();
    reports.sort_by_key(|r| r.seed);
    reports
}
