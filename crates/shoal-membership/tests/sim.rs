//! SWIM in a simulated cluster: crash detection against a derived bound, no false deaths under
//! loss, partitions that heal, paused and restarted nodes, user broadcasts and user state, and
//! determinism.
//!
//! Every test runs over a range of seeds; `SHOAL_SIM_SEEDS=START..END` overrides the range for
//! a soak. A failure names its seed and the command that replays just that seed. Each test
//! prints one summary line per scenario (run with `--nocapture`).

#[path = "support/sim.rs"]
mod sim;

use shoal_membership::{Liveness, SwimConfig};
use sim::*;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// The seeds to run: `default`, or `SHOAL_SIM_SEEDS=START..END`.
fn seeds(default: Range<u64>) -> Range<u64> {
    let Ok(spec) = std::env::var("SHOAL_SIM_SEEDS") else {
        return default;
    };
    let parsed = spec
        .split_once("..")
        .and_then(|(a, b)| Some(a.trim().parse().ok()?..b.trim().parse().ok()?));
    parsed.unwrap_or_else(|| panic!("SHOAL_SIM_SEEDS={spec:?}: expected START..END, e.g. 0..1000"))
}

/// Runs `check` for every seed; a failing seed panics with the command that replays it alone.
fn for_each_seed(test: &str, seeds: Range<u64>, mut check: impl FnMut(u64)) {
    for seed in seeds {
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| check(seed))) {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{test}: seed {seed} failed: {msg}\n  replay: SHOAL_SIM_SEEDS={seed}..{} cargo test -p shoal-membership \
                 --test sim {test} -- --nocapture",
                seed + 1
            );
        }
    }
}

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn max(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

/// Crash one member of a converged cluster; every live member must mark it Dead within
/// [`detection_bound`] (derived in `support/sim.rs`: first probe + one probe period + Lifeguard's
/// maximum suspicion timeout + λ·⌈log10(n+1)⌉ periods of dissemination).
#[test]
fn detects_crash_within_bound() {
    let config = SwimConfig::default();
    for (n, default) in [(5, 0..100), (10, 0..100), (20, 0..50), (50, 0..12)] {
        let bound = detection_bound(&config, n);
        let range = seeds(default);
        let mut runs = Vec::new();
        for_each_seed("detects_crash_within_bound", range.clone(), |seed| {
            runs.push(ok(
                measure_crash_detection(n, seed, bound).map_err(|e| format!("n={n}: {e}"))
            ));
        });
        let suspect: Vec<_> = runs.iter().map(|r| r.first_suspect).collect();
        let all_dead: Vec<_> = runs.iter().map(|r| r.all_dead).collect();
        let spread: Vec<_> = runs.iter().map(|r| r.all_dead - r.first_dead).collect();
        let messages: u64 = runs.iter().map(|r| r.messages).sum();
        println!(
            "detects_crash_within_bound n={n} seeds={range:?}: bound {}; crash→first suspect median {} max {}; \
             crash→all dead median {} max {}; first dead→all dead max {}; {messages} messages; no live node suspected",
            secs(bound),
            secs(percentile(&suspect, 0.5)),
            secs(max(&suspect)),
            secs(percentile(&all_dead, 0.5)),
            secs(max(&all_dead)),
            secs(max(&spread)),
        );
    }
}

/// Nobody fails, but 10% of messages are lost for two simulated minutes: probes fail and
/// members get suspected, but every suspicion must be refuted in time; nobody may be declared
/// Dead.
#[test]
fn no_false_dead_under_loss() {
    let duration = Duration::from_secs(120);
    for (n, default) in [(5, 0..50), (10, 0..50), (20, 0..25), (50, 0..6)] {
        let range = seeds(default);
        let mut total = LossRun::default();
        for_each_seed("no_false_dead_under_loss", range.clone(), |seed| {
            let run = ok(measure_false_positives(n, seed, 0.10, duration));
            assert_eq!(run.deaths, 0, "n={n}: {} false Dead verdicts: {run:?}", run.deaths);
            // The loss really is 10%: within six standard deviations of a binomial count.
            let (m, p) = (run.messages as f64, 0.10);
            let z = (run.lost as f64 - p * m) / (m * p * (1.0 - p)).sqrt();
            assert!(
                z.abs() < 6.0,
                "n={n}: the network lost {} of {} messages, not 10%: {run:?}",
                run.lost,
                run.messages
            );
            total.add(&run);
        });
        println!(
            "no_false_dead_under_loss n={n} seeds={range:?}: {}s at 10% loss each; {} probes, {} failed ({:.3}%), \
             {} false suspicions ({:.3}% of probes), {} refutations, 0 deaths; max local health {}; {} messages, {} lost",
            duration.as_secs(),
            total.probes,
            total.probes_failed,
            100.0 * total.probes_failed as f64 / total.probes as f64,
            total.suspicions,
            100.0 * total.suspicions as f64 / total.probes as f64,
            total.refutations,
            total.max_health,
            total.messages,
            total.lost,
        );
    }
}

/// Bound on re-convergence after a partition heals. Nobody probes a member it holds Dead, so
/// the halves first meet through push/pull: every node runs push/pull once per interval and,
/// holding at least as many Dead members as live ones, also syncs with a random Dead member
/// (Serf's reconnect), so the first exchange across the old cut happens within one
/// `push_pull_interval`. That exchange makes its receiver refute (the sender's table holds it
/// Dead), and its reply revives the receiver in the sender, who starts probing it. From there
/// the refutations of each half cross through the members already revived on the other side
/// and spread as ordinary updates: one [`dissemination`] window per direction, each after a
/// probe period for the first probe across. A member that misses one of those bursts (seen at
/// n = 6: two members left holding each other Dead, and members never probe or gossip about a
/// member they hold Dead) catches up at its next push/pull with an up-to-date peer, at most one
/// more interval later.
fn heal_bound(config: &SwimConfig, n: usize) -> Duration {
    2 * config.push_pull_interval + 2 * (dissemination(config, n) + config.probe_interval)
}

/// Splits the cluster, waits until each side holds the other Dead, heals, and returns the time
/// from the heal until every node sees every node Alive.
fn partition_and_heal(n: usize, seed: u64, one_way: bool) -> Duration {
    let mut sim = ok(converged_cluster(SimConfig::lan(n, seed)));
    let config = sim.config.swim.clone();
    let (a, b): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| i < n / 2);
    if one_way {
        for &x in &a {
            for &y in &b {
                sim.block(x, y);
            }
        }
    } else {
        sim.partition(&a, &b);
    }
    // Many members fail at once here and local health rises, so this allows three times the
    // single-crash bound; it is a precondition, not the property under test.
    let split_limit = sim.now() + 3 * detection_bound(&config, n);
    let split = sim.run_until_pred(split_limit, |s| {
        a.iter().all(|&x| s.all_see(&b, x, Liveness::Dead)) && b.iter().all(|&y| s.all_see(&a, y, Liveness::Dead))
    });
    assert!(
        split.is_some(),
        "the halves did not declare each other Dead; views of n00: {}",
        sim.views_of(0)
    );
    sim.heal();
    let healed_at = sim.now();
    let bound = heal_bound(&config, n);
    let done = sim.run_until_pred(healed_at + bound, Sim::up_nodes_agree_all_alive);
    let Some(done) = done else {
        let views: Vec<String> = (0..n).map(|i| format!("[{i}: {}]", sim.views_of(i))).collect();
        panic!(
            "n={n} one_way={one_way}: not converged {bound:?} after the heal: {}",
            views.join(" ")
        );
    };
    done - healed_at
}

#[test]
fn converges_after_partition_heals() {
    for (n, one_way, default) in [(6, false, 0..50), (10, false, 0..50), (10, true, 0..50)] {
        let range = seeds(default);
        let mut times = Vec::new();
        for_each_seed("converges_after_partition_heals", range.clone(), |seed| {
            times.push(partition_and_heal(n, seed, one_way));
        });
        println!(
            "converges_after_partition_heals n={n} {} seeds={range:?}: bound {}; heal→all Alive median {} max {}",
            if one_way { "one-way" } else { "two-way" },
            secs(heal_bound(&SwimConfig::default(), n)),
            secs(percentile(&times, 0.5)),
            secs(max(&times)),
        );
    }
}

/// Bound on a resumed (or restarted) member being Alive everywhere again: its first exchange
/// tells it that it is held Dead (the buddy system puts the accusation on every reply to it, and
/// a join reply's table holds it), it refutes within a probe period, and the refutation spreads
/// in [`dissemination`] periods, stretched by its raised local health (one refutation: ×2).
/// Behind the epidemic, its own probes carry its Alive to every member within a round.
fn rejoin_bound(config: &SwimConfig, n: usize) -> Duration {
    2 * (config.probe_interval + dissemination(config, n))
}

#[test]
fn paused_node() {
    let n = 10;
    let config = SwimConfig::default();
    let (min, _) = config.suspicion_bounds(n);
    let range = seeds(0..50);
    let (mut back, mut short_suspected) = (Vec::new(), 0);
    for_each_seed("paused_node", range.clone(), |seed| {
        let mut sim = ok(converged_cluster(SimConfig::lan(n, seed)));
        let victim = (seed % n as u64) as usize;

        // Shorter than the minimum suspicion timeout: no suspicion can time out before the
        // node is back to refute it.
        let log_start = sim.log.len();
        sim.pause(victim);
        sim.run_for(min - config.probe_interval);
        sim.resume(victim);
        sim.run_for(Duration::from_secs(60));
        let events = &sim.log[log_start..];
        assert!(
            !events.iter().any(|e| e.to == Liveness::Dead),
            "a pause of {:?} got someone declared Dead: {:?}",
            min - config.probe_interval,
            events.iter().find(|e| e.to == Liveness::Dead)
        );
        short_suspected += events
            .iter()
            .filter(|e| e.subject == victim && e.to == Liveness::Suspect)
            .count();
        assert!(sim.up_nodes_agree_all_alive(), "not all Alive after the short pause");

        // Longer than the detection bound: Dead everywhere, then Alive everywhere once resumed.
        sim.pause(victim);
        let paused_at = sim.now();
        let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        let dead = sim.run_until_pred(paused_at + detection_bound(&config, n), |s| {
            s.all_see(&others, victim, Liveness::Dead)
        });
        assert!(
            dead.is_some(),
            "paused node not Dead everywhere: {}",
            sim.views_of(victim)
        );
        sim.run_for(Duration::from_secs(30));
        sim.resume(victim);
        let resumed_at = sim.now();
        let bound = rejoin_bound(&config, n);
        let alive = sim.run_until_pred(resumed_at + bound, Sim::up_nodes_agree_all_alive);
        assert!(
            alive.is_some(),
            "resumed node not Alive everywhere within {bound:?}: {}",
            sim.views_of(victim)
        );
        back.push(alive.unwrap() - resumed_at);
    });
    println!(
        "paused_node n={n} seeds={range:?}: pause of {} (min suspicion {}) never declared Dead ({short_suspected} \
         suspicions refuted); after a long pause, resume→Alive everywhere median {} max {} (bound {})",
        secs(min - config.probe_interval),
        secs(min),
        secs(percentile(&back, 0.5)),
        secs(max(&back)),
        secs(rejoin_bound(&config, n)),
    );
}

#[test]
fn restart_with_higher_incarnation() {
    let n = 10;
    let config = SwimConfig::default();
    let range = seeds(0..50);
    let mut times: [Vec<Duration>; 3] = Default::default();
    for_each_seed("restart_with_higher_incarnation", range.clone(), |seed| {
        let mut sim = ok(converged_cluster(SimConfig::lan(n, seed)));
        let victim = 1 + (seed % (n as u64 - 1)) as usize;
        let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        let bound = rejoin_bound(&config, n);
        // 0: restarted after everyone declared it Dead, with the next incarnation.
        // 1: the same, but the restarted process lost its incarnation and starts from 0.
        // 2: restarted quickly, before anyone noticed, with the next incarnation.
        for (case, times) in times.iter_mut().enumerate() {
            let incarnation = sim.swim(victim).incarnation();
            sim.crash(victim);
            if case < 2 {
                let dead = sim.run_until_pred(sim.now() + detection_bound(&config, n), |s| {
                    s.all_see(&others, victim, Liveness::Dead)
                });
                assert!(
                    dead.is_some(),
                    "case {case}: crashed node not Dead everywhere: {}",
                    sim.views_of(victim)
                );
            } else {
                sim.run_for(config.probe_interval);
            }
            let restarted_at = sim.now();
            let restart_incarnation = if case == 1 { 0 } else { incarnation + 1 };
            sim.restart(victim, restart_incarnation, others[(seed as usize) % others.len()]);
            let alive = sim.run_until_pred(restarted_at + bound, Sim::up_nodes_agree_all_alive);
            assert!(
                alive.is_some(),
                "case {case}: restarted node not Alive everywhere: {}",
                sim.views_of(victim)
            );
            assert!(
                sim.swim(victim).incarnation() > incarnation,
                "case {case}: the restarted node did not end above its old incarnation {incarnation}"
            );
            times.push(alive.unwrap() - restarted_at);
            sim.run_for(Duration::from_secs(10));
        }
    });
    println!(
        "restart_with_higher_incarnation n={n} seeds={range:?}: restart→Alive everywhere (bound {}): after death with \
         incarnation+1 median {} max {}; with incarnation 0 median {} max {}; before detection median {} max {}",
        secs(rejoin_bound(&config, n)),
        secs(percentile(&times[0], 0.5)),
        secs(max(&times[0])),
        secs(percentile(&times[1], 0.5)),
        secs(max(&times[1])),
        secs(percentile(&times[2], 0.5)),
        secs(max(&times[2])),
    );
}

/// A user payload spreads by piggybacking, with each application rebroadcasting it once on
/// first receipt; every node must get it exactly once, within two dissemination windows (one
/// for the first hop's retransmissions, one for the epidemic it starts).
#[test]
fn user_broadcast_reaches_everyone() {
    let config = SwimConfig::default();
    for (n, default) in [(10, 0..50), (30, 0..20)] {
        let range = seeds(default);
        let bound = 2 * dissemination(&config, n);
        let mut times = Vec::new();
        for_each_seed("user_broadcast_reaches_everyone", range.clone(), |seed| {
            let mut sim = ok(converged_cluster(SimConfig::lan(n, seed)));
            let origin = (seed % n as u64) as usize;
            let payload = format!("layout from {origin} at seed {seed}").into_bytes();
            sim.broadcast_user(origin, payload.clone());
            let start = sim.now();
            let everyone =
                |s: &Sim| (0..n).all(|i| i == origin || s.node(i).user_received.iter().any(|(_, d)| d == &payload));
            let done = sim.run_until_pred(start + bound, everyone);
            let missing: Vec<usize> = (0..n)
                .filter(|&i| i != origin && !sim.node(i).user_received.iter().any(|(_, d)| d == &payload))
                .collect();
            assert!(done.is_some(), "n={n}: payload missing at {missing:?} after {bound:?}");
            times.push(done.unwrap() - start);
            sim.run_for(Duration::from_secs(30));
            for i in 0..n {
                let copies = sim.node(i).user_received.iter().filter(|(_, d)| d == &payload).count();
                assert_eq!(
                    copies,
                    usize::from(i != origin),
                    "n={n}: node {i} got the payload {copies} times"
                );
            }
        });
        println!(
            "user_broadcast_reaches_everyone n={n} seeds={range:?}: everyone once, median {} max {} (bound {})",
            secs(percentile(&times, 0.5)),
            secs(max(&times)),
            secs(bound),
        );
    }
}

/// Bound on user state reaching everyone through push/pull at 10% loss, in push/pull
/// intervals. Every node starts one exchange per interval with a random peer and adopts a newer
/// state from either side of it, so while few hold the state the holders more than double per
/// interval in expectation (push and pull): ⌈log2 n⌉ intervals. Once all but a few hold it, a
/// node still missing it gets it within an interval unless its own exchange fails (its Sync or
/// the reply is lost: 0.19) and none of the n − 1 holders picks it ((1 − 0.9/(n−1))^(n−1) ≤
/// e^−0.9 = 0.41), so it misses an interval with probability q < 0.08; all n get it within
/// ⌈ln(n/ε) / ln(1/q)⌉ more intervals except with probability ε = 10⁻⁶.
fn user_state_bound(config: &SwimConfig, n: usize) -> Duration {
    let spread = (n as f64).log2().ceil();
    let tail = ((n as f64 / 1e-6).ln() / (1.0 / 0.08f64).ln()).ceil();
    config.push_pull_interval * (spread + tail) as u32
}

#[test]
fn user_state_spreads_through_push_pull() {
    let n = 10;
    let config = SwimConfig::default();
    let bound = user_state_bound(&config, n);
    let range = seeds(0..50);
    let (mut spread, mut joined) = (Vec::new(), Vec::new());
    for_each_seed("user_state_spreads_through_push_pull", range.clone(), |seed| {
        let mut sim = ok(converged_cluster(SimConfig::lan(n, seed)));
        sim.set_loss(0.10);
        sim.set_user_state(0, 1);
        let start = sim.now();
        let done = sim.run_until_pred(start + bound, |s| (0..n).all(|i| s.node(i).user_state_version == 1));
        let missing: Vec<usize> = (0..n).filter(|&i| sim.node(i).user_state_version != 1).collect();
        assert!(
            done.is_some(),
            "user state missing at {missing:?} after {bound:?} at 10% loss"
        );
        spread.push(done.unwrap() - start);

        // A node that restarts learns the current state from its join reply.
        let victim = 1 + (seed % (n as u64 - 1)) as usize;
        sim.set_loss(0.0);
        sim.crash(victim);
        sim.set_user_state(0, 2);
        sim.run_for(Duration::from_secs(5));
        let incarnation = sim.swim(victim).incarnation();
        sim.restart(victim, incarnation + 1, 0);
        let at = sim.now();
        let got = sim.run_until_pred(at + Duration::from_secs(1), |s| s.node(victim).user_state_version == 2);
        assert!(got.is_some(), "the join reply did not carry the user state");
        joined.push(got.unwrap() - at);
    });
    println!(
        "user_state_spreads_through_push_pull n={n} seeds={range:?}: at 10% loss everyone adopted it in median {} max {} \
         (bound {}); a joiner had it {} after joining (max)",
        secs(percentile(&spread, 0.5)),
        secs(max(&spread)),
        secs(bound),
        secs(max(&joined)),
    );
}

/// One seed, run twice, must give the same messages and the same liveness events in the same
/// order; a different seed must not (or the trace would prove nothing).
#[test]
fn same_seed_same_trace() {
    fn run(seed: u64) -> (u64, usize, u64) {
        let mut cfg = SimConfig::lan(10, seed);
        cfg.trace_messages = true;
        cfg.loss = 0.10;
        let mut sim = Sim::new(cfg);
        sim.bootstrap();
        sim.run_for(Duration::from_secs(20));
        sim.crash(3);
        sim.pause(5);
        sim.run_for(Duration::from_secs(30));
        sim.resume(5);
        sim.run_for(Duration::from_secs(40));
        (sim.trace_hash(), sim.log.len(), sim.counters.sent)
    }
    let range = seeds(0..5);
    for_each_seed("same_seed_same_trace", range.clone(), |seed| {
        let first = run(seed);
        assert_eq!(first, run(seed), "same seed, different trace");
        assert_ne!(first.0, run(seed + 1_000_000).0, "different seeds gave the same trace");
    });
    println!("same_seed_same_trace seeds={range:?}: identical message and liveness traces on replay");
}
