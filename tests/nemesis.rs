//! Nemesis: fault injection on real `shoal serve` processes under a set workload, judged by the
//! checkers the simulator uses (`shoal_sim::check`).
//!
//! Six clients read-modify-write ten keys (n=3, r and w drawn from 1..=3 per operation; a few
//! percent of the operations are deletes) through every member, recording each read and write
//! with its outcome, while a seeded schedule, one fault at a time, `kill -9`s and restarts
//! nodes, SIGSTOPs and resumes them, partitions the peer (QUIC) ports with iptables (a majority
//! from a minority, and one-way), fills a node's disk (a tmpfs), joins a prepared node and
//! takes one out (`leave`, or `kill -9` plus `remove`). Then everything is healed, and every
//! replica of every key is read directly (`GET /v1/admin/replica/{key}`) until all replicas
//! agree or a bound passes. The history goes through `check`: no lost acknowledged element, no
//! resurrection, causality, convergence, and quorum intersection for strict quorums.
//!
//! Reads are sent with `sloppy=false`: the HTTP API does not say how many of a read's replies
//! came from fallback nodes' hints, and a strict read has none, so its `hinted` is truly 0.
//! Writes use the default sloppy quorum and report `X-Shoal-Hinted-Acks`.
//!
//! `nemesis_short` runs by default (`SHOAL_NEMESIS_SECS`, default 65, and every fault kind at
//! least once); `nemesis_long` is ignored (default 600 s, two joins, a leave and a remove): run
//! it with `scripts/nemesis.sh`. `SHOAL_NEMESIS_SEED` fixes the schedule (the seed is printed;
//! the processes' timing is not deterministic, so a seed replays the faults, not the run).
//! The report (ops, faults, final state, verdict) goes to `SHOAL_NEMESIS_REPORT` or a file in
//! the temporary directory, printed at the end. Partitions need root and iptables, the
//! disk-full fault root and tmpfs; each is skipped, saying so, when unavailable.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use shoal_sim::check::{check, Verdict};
use shoal_sim::history::{Fault, FinalState, History, Op, OpKind, Outcome, Sib, WriteId};

const N: u8 = 3;
const KEYS: usize = 10;
const CLIENTS: u32 = 6;
/// A client's pause between operations, ms: about 100 operations a second in all, so a long
/// run's history stays small enough to check (the checker's ancestor sets grow with the
/// square of the writes per key).
const THINK_MS: std::ops::RangeInclusive<u64> = 20..=100;
/// The share of read-modify-writes that delete what they read instead.
const DELETE_SHARE: f64 = 0.02;
/// Four founders, so that a key's three replicas leave a fallback for sloppy quorum.
const FOUNDERS: usize = 4;
/// Per-request deadline the nodes get (`timeout_ms`), and how long a client waits for an
/// answer at all (a SIGSTOPped coordinator never answers).
const REQUEST_TIMEOUT_MS: u32 = 2000;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);
/// How long after the heal the replicas have to agree.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(60);
/// The disk-full fault: node 0's data directory is a tmpfs of this size, and every node
/// refuses writes under `MIN_FREE` bytes free.
const TMPFS_MB: u64 = 256;
const MIN_FREE: u64 = 64 << 20;
/// Fast failure detection, short drop delay, and anti-entropy and hint delivery often enough
/// that the replicas converge within the bound after the heal.
const CONFIG: &str = "[swim]\nprobe_interval_ms = 500\nprobe_timeout_ms = 200\npush_pull_interval_ms = 5000\n\n\
                      [transfer]\ndrop_delay_ms = 1500\n\n\
                      [antientropy]\ninterval_ms = 3000\n\n\
                      [handoff]\ndelivery_interval_ms = 500\n\n";

#[tokio::test(flavor = "multi_thread")]
async fn nemesis_short() {
    run(Settings::from_env(65, 1)).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "ten minutes; run with scripts/nemesis.sh"]
async fn nemesis_long() {
    run(Settings::from_env(600, 2)).await;
}

struct Settings {
    secs: u64,
    seed: u64,
    /// Prepared nodes that join during the run; as many members are taken out again.
    spares: usize,
}

impl Settings {
    fn from_env(default_secs: u64, spares: usize) -> Settings {
        let var = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
            })
        };
        let seed = var("SHOAL_NEMESIS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ u64::from(std::process::id())
        });
        Settings {
            secs: var("SHOAL_NEMESIS_SECS").unwrap_or(default_secs),
            seed,
            spares,
        }
    }
}

/// Milliseconds since the run began; and the wall clock then, to line faults up with the
/// nodes' logs (UTC timestamps).
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    unix_ms: u64,
}

impl Clock {
    fn new() -> Clock {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            unix_ms,
        }
    }

    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The UTC time of day `ms` into the run, as the nodes' logs print it.
    fn utc(&self, ms: u64) -> String {
        let t = self.unix_ms + ms;
        let s = t / 1000 % 86_400;
        format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, t % 1000)
    }
}

/// What the clients and the nemesis share.
struct Shared {
    clock: Clock,
    /// Every node's HTTP base URL and id, by index.
    urls: Vec<String>,
    ids: Vec<String>,
    /// The nodes clients send requests to: the cluster's members as far as the test knows.
    targets: Mutex<Vec<usize>>,
    ops: Mutex<Vec<Op>>,
    faults: Mutex<Vec<Fault>>,
    /// Values read that no client wrote (they do not decode as a workload value).
    foreign: Mutex<Vec<String>>,
    next_id: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn fault(&self, kind: &str, detail: String) {
        let at_ms = self.clock.ms();
        println!(
            "[{:>7.1}s {}] {kind} {detail}",
            at_ms as f64 / 1000.0,
            self.clock.utc(at_ms)
        );
        self.faults.lock().unwrap().push(Fault {
            at_ms,
            kind: kind.into(),
            detail,
        });
    }
}

async fn run(settings: Settings) {
    println!(
        "nemesis: seed {} ({} s; rerun with SHOAL_NEMESIS_SEED={} SHOAL_NEMESIS_SECS={})",
        settings.seed, settings.secs, settings.seed, settings.secs
    );
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let size = FOUNDERS + settings.spares;
    let config = format!("{CONFIG}[storage]\nmin_free_bytes = {MIN_FREE}\n");
    let mut cluster = TestCluster::prepare(size, FOUNDERS, &config);
    let tmpfs = match Tmpfs::mount(&cluster.data_dir(0), TMPFS_MB) {
        Ok(t) => Some(t),
        Err(e) => {
            println!("SKIPPED disk-full: cannot mount a tmpfs for n1's data directory (needs root): {e}");
            None
        }
    };
    let partitions = match Partitions::install() {
        Ok(p) => Some(p),
        Err(e) => {
            println!("SKIPPED partitions: iptables is not usable (needs root): {e}");
            None
        }
    };
    for i in 0..FOUNDERS {
        cluster.spawn(i);
    }
    for i in 0..FOUNDERS {
        cluster.wait_ready(i);
    }
    let founders: Vec<usize> = (0..FOUNDERS).collect();
    assert!(
        wait_alive(&cluster, &founders, Duration::from_secs(30)).await,
        "the founders never saw each other alive"
    );

    let plan = Plan::new(&mut rng, settings.spares, partitions.is_some(), tmpfs.is_some());
    println!("nemesis: required steps {:?}", plan.required);
    let shared = Arc::new(Shared {
        clock: Clock::new(),
        urls: (0..size).map(|i| cluster.url(i, "")).collect(),
        ids: cluster.nodes.iter().map(|n| n.id.clone()).collect(),
        targets: Mutex::new(founders.clone()),
        ops: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        foreign: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(c, shared.clone(), settings.seed)))
        .collect();

    let mut nemesis = Nemesis {
        cluster: &mut cluster,
        shared: &shared,
        partitions: partitions.as_ref(),
        rng,
        members: founders,
        joined: FOUNDERS,
        paused: BTreeSet::new(),
        disk_full_windows: Vec::new(),
        done: BTreeSet::new(),
        crashed: Vec::new(),
    };
    // Load alone for a moment, then the schedule: every required step, then random faults
    // while time remains.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = Duration::from_secs(settings.secs);
    for step in &plan.required {
        nemesis.step(*step).await;
    }
    while shared.clock.start.elapsed() < deadline {
        let step = *plan
            .optional
            .choose(&mut nemesis.rng)
            .expect("some fault is always possible");
        nemesis.step(step).await;
    }
    // The load ends under one last fault, so that the replicas still differ when everything
    // is healed and convergence has work to do.
    let last = *plan.last.choose(&mut nemesis.rng).unwrap();
    nemesis.inject(last);
    nemesis.hold(3000..=6000).await;
    shared.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let load_ms = shared.clock.ms();

    // Heal everything, then read every replica of every key until they agree.
    nemesis.heal_all().await;
    let healed = Instant::now();
    let crashed = nemesis.crashed.clone();
    let members = nemesis.members.clone();
    let disk_full_windows = nemesis.disk_full_windows.clone();
    let done = nemesis.done.clone();
    assert!(
        wait_alive(&cluster, &members, Duration::from_secs(30)).await,
        "after the heal the members {members:?} did not all see each other alive"
    );
    let final_state = final_state(&cluster, &members, &shared, healed).await;

    let history = History {
        ops: std::mem::take(&mut *shared.ops.lock().unwrap()),
        faults: std::mem::take(&mut *shared.faults.lock().unwrap()),
        final_state,
        // GET answers with the values and hides a tombstone beside them.
        reads_hide_tombstones: true,
    };
    let verdict = check(&history);
    let report_path = write_report(&settings, shared.clock.unix_ms, &history, &verdict);
    print_summary(load_ms, &history, &verdict);
    println!("nemesis: report in {}", report_path.display());

    // A fault that could not be injected, or a run too thin to show anything, proves nothing.
    let missing: Vec<&Step> = plan.required.iter().filter(|s| !done.contains(*s)).collect();
    assert!(missing.is_empty(), "required steps never ran: {missing:?}");
    assert!(
        crashed.is_empty(),
        "nodes exited on their own during the run: {crashed:?} (logs kept below)"
    );
    let foreign = shared.foreign.lock().unwrap().clone();
    assert!(foreign.is_empty(), "values no client wrote were read: {foreign:?}");
    check_disk_full(&history, &disk_full_windows, &shared.ids[0]);
    assert!(
        verdict.acked_writes >= 100 && verdict.required_elements >= 50,
        "too little acknowledged to judge: {} acked writes, {} required elements",
        verdict.acked_writes,
        verdict.required_elements
    );
    assert!(
        verdict.intersection_pairs > 0,
        "no strict-quorum (write, later read) pair was compared"
    );
    assert!(
        verdict.ok(),
        "{} anomalies (seed {}; report {}), the first: {:#?}",
        verdict.anomalies.len(),
        settings.seed,
        report_path.display(),
        verdict.anomalies.iter().take(5).collect::<Vec<_>>()
    );
}

/// One nemesis action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Kill,
    Pause,
    /// A minority cut off from the majority, both ways.
    Split,
    /// One node's packets to some others dropped; theirs to it still arrive.
    OneWay,
    DiskFull,
    Join,
    Leave,
    /// `kill -9` a member, wait until SWIM declares it dead, `shoal admin remove` it.
    Remove,
}

/// From a second and a half after node 0's gauge said its disk was full to the ballast's
/// removal (ms into the run), and the keys whose preference list held node 0 then.
#[derive(Clone, Debug)]
struct DiskFullWindow {
    from: u64,
    until: u64,
    replicated: BTreeSet<String>,
}

/// A fault in force.
enum Active {
    Killed(usize),
    Paused(usize),
    Partitioned,
}

struct Plan {
    /// Run in this order, whatever the duration.
    required: Vec<Step>,
    /// Drawn from while time remains.
    optional: Vec<Step>,
    /// The fault the load ends under (left for the final heal).
    last: Vec<Step>,
}

impl Plan {
    fn new(rng: &mut StdRng, spares: usize, partitions: bool, disk: bool) -> Plan {
        let mut optional = vec![Step::Kill, Step::Pause];
        if partitions {
            optional.extend([Step::Split, Step::OneWay]);
        }
        if disk {
            optional.push(Step::DiskFull);
        }
        let last = optional.iter().copied().filter(|s| *s != Step::DiskFull).collect();
        let mut required = optional.clone();
        required.shuffle(rng);
        // Membership changes at random places, each join before the change that takes a member
        // out again (never fewer than n members). With one spare, leave or remove by the seed;
        // with two, both.
        let mut shrinks = vec![Step::Leave, Step::Remove];
        shrinks.shuffle(rng);
        shrinks.truncate(spares.min(2));
        let mut changes: Vec<Step> = Vec::new();
        for i in 0..spares {
            changes.push(Step::Join);
            if let Some(s) = shrinks.get(i) {
                changes.push(*s);
            }
        }
        let mut at = 0;
        for change in changes {
            at = rng.gen_range(at..=required.len());
            required.insert(at, change);
            at += 1;
        }
        Plan {
            required,
            optional,
            last,
        }
    }
}

struct Nemesis<'a> {
    cluster: &'a mut TestCluster,
    shared: &'a Shared,
    partitions: Option<&'a Partitions>,
    rng: StdRng,
    /// The cluster's members (node indices), as far as the test knows.
    members: Vec<usize>,
    /// Nodes 0..joined have been started.
    joined: usize,
    paused: BTreeSet<usize>,
    /// When node 0's disk was full, and the keys it replicated then.
    disk_full_windows: Vec<DiskFullWindow>,
    done: BTreeSet<Step>,
    /// Members whose process exited on its own.
    crashed: Vec<String>,
}

impl Nemesis<'_> {
    fn id(&self, i: usize) -> String {
        self.cluster.nodes[i].id.clone()
    }

    fn ids(&self, nodes: &[usize]) -> String {
        let ids: Vec<String> = nodes.iter().map(|&i| self.id(i)).collect();
        ids.join(",")
    }

    fn pick(&mut self) -> usize {
        *self.members.choose(&mut self.rng).unwrap()
    }

    async fn hold(&mut self, ms: std::ops::RangeInclusive<u64>) {
        let ms = self.rng.gen_range(ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn step(&mut self, step: Step) {
        self.reap_crashed();
        match step {
            Step::Kill | Step::Pause | Step::Split | Step::OneWay => {
                let active = self.inject(step);
                let hold = match step {
                    Step::Kill => 1000..=6000,
                    Step::Pause => 1000..=10_000,
                    _ => 3000..=10_000,
                };
                self.hold(hold).await;
                self.heal(active);
            }
            Step::DiskFull => self.disk_full().await,
            Step::Join => self.join().await,
            Step::Leave => self.leave().await,
            Step::Remove => self.remove().await,
        }
        self.done.insert(step);
        self.hold(1000..=3000).await;
    }

    /// Start a crash, pause or partition; [`Nemesis::heal`] or [`Nemesis::heal_all`] ends it.
    fn inject(&mut self, step: Step) -> Active {
        match step {
            Step::Kill => {
                let i = self.pick();
                tokio::task::block_in_place(|| self.cluster.kill9(i));
                self.shared.fault("kill", self.id(i));
                Active::Killed(i)
            }
            Step::Pause => {
                let i = self.pick();
                self.cluster.signal(i, "-STOP");
                self.paused.insert(i);
                self.shared.fault("pause", self.id(i));
                Active::Paused(i)
            }
            Step::Split => {
                let p = self.partitions.expect("planned only with iptables");
                let mut nodes = self.members.clone();
                nodes.shuffle(&mut self.rng);
                let minority = nodes.split_off(nodes.len() - (self.members.len() - 1) / 2);
                for &a in &nodes {
                    for &b in &minority {
                        p.drop_packets(self.cluster.nodes[a].peer, self.cluster.nodes[b].peer);
                        p.drop_packets(self.cluster.nodes[b].peer, self.cluster.nodes[a].peer);
                    }
                }
                let detail = format!("{{{}}} | {{{}}}", self.ids(&nodes), self.ids(&minority));
                self.shared.fault("partition", detail);
                Active::Partitioned
            }
            Step::OneWay => {
                let p = self.partitions.expect("planned only with iptables");
                let from = self.pick();
                let mut others: Vec<usize> = self.members.iter().copied().filter(|&i| i != from).collect();
                others.shuffle(&mut self.rng);
                others.truncate(self.rng.gen_range(1..=others.len()));
                for &to in &others {
                    p.drop_packets(self.cluster.nodes[from].peer, self.cluster.nodes[to].peer);
                }
                let detail = format!("{} -> {{{}}} dropped", self.id(from), self.ids(&others));
                self.shared.fault("partition-one-way", detail);
                Active::Partitioned
            }
            other => unreachable!("{other:?} is not a fault that stays active"),
        }
    }

    fn heal(&mut self, active: Active) {
        match active {
            Active::Killed(i) => {
                tokio::task::block_in_place(|| {
                    self.cluster.spawn(i);
                    self.cluster.wait_ready(i);
                });
                self.shared.fault("restart", self.id(i));
            }
            Active::Paused(i) => {
                self.cluster.signal(i, "-CONT");
                self.paused.remove(&i);
                self.shared.fault("resume", self.id(i));
            }
            Active::Partitioned => {
                self.partitions.expect("partitioned with iptables").heal();
                self.shared.fault("heal", "partition".into());
            }
        }
    }

    /// Fill node 0's tmpfs from outside until it is under `MIN_FREE`, hold, free it.
    async fn disk_full(&mut self) {
        let data = self.cluster.data_dir(0);
        let ballast = data.join("ballast");
        let fill = available(&data).saturating_sub(MIN_FREE / 2);
        let out = Command::new("fallocate")
            .args(["-l", &fill.to_string(), path_str(&ballast)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fallocate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.shared
            .fault("disk-full", format!("{}: {} bytes free", self.id(0), available(&data)));
        let cluster = &*self.cluster;
        let full = eventually(Duration::from_secs(10), || async {
            (metric_value(&cluster.metrics(0).await, "shoal_disk_full")? == 1.0).then_some(())
        })
        .await;
        assert!(full.is_some(), "n1 never reported shoal_disk_full = 1");
        // The write path reads the free space at most once a second: from a second after the
        // gauge says full, every write n1 coordinates must be refused. It coordinates the
        // writes of the keys it replicates; others it passes on to a replica.
        let from = self.shared.clock.ms() + 1500;
        let mut replicated = BTreeSet::new();
        for k in 0..KEYS {
            let key = format!("k{k}");
            let copy = cluster.replica(0, &key, N).await.expect("n1 answers /v1/admin/replica");
            let pref = copy["preference_list"].as_array().expect("a preference list");
            if pref.iter().any(|id| id == "n1") {
                replicated.insert(key);
            }
        }
        self.hold(3000..=8000).await;
        let until = self.shared.clock.ms();
        std::fs::remove_file(&ballast).unwrap();
        self.shared.fault("disk-freed", self.id(0));
        if until > from {
            self.disk_full_windows.push(DiskFullWindow {
                from,
                until,
                replicated,
            });
        }
        let cluster = &*self.cluster;
        let cleared = eventually(Duration::from_secs(15), || async {
            (metric_value(&cluster.metrics(0).await, "shoal_disk_full")? == 0.0).then_some(())
        })
        .await;
        assert!(cleared.is_some(), "shoal_disk_full stayed 1 after the space returned");
    }

    /// Start the next prepared node and join it through a random member's peer address.
    async fn join(&mut self) {
        let i = self.joined;
        self.joined += 1;
        tokio::task::block_in_place(|| {
            self.cluster.spawn(i);
            self.cluster.wait_ready(i);
        });
        let seed = self.pick();
        let started = Instant::now();
        self.shared
            .fault("join", format!("{} via {}", self.id(i), self.id(seed)));
        let peer = self.cluster.nodes[seed].peer.to_string();
        let out = self.admin(i, &["join", &peer]).await;
        assert!(out.contains("done: layout epoch"), "join of {}: {out}", self.id(i));
        self.members.push(i);
        self.shared.targets.lock().unwrap().push(i);
        let detail = format!("{} in {:.1} s", self.id(i), started.elapsed().as_secs_f64());
        self.shared.fault("joined", detail);
    }

    /// A member other than node 0 (its tmpfs) to take out of the cluster.
    fn victim(&mut self) -> usize {
        assert!(
            self.members.len() > N as usize,
            "a leave or remove needs more than n members"
        );
        let candidates: Vec<usize> = self.members.iter().copied().filter(|&i| i != 0).collect();
        *candidates.choose(&mut self.rng).unwrap()
    }

    fn forget(&mut self, i: usize) {
        self.members.retain(|&m| m != i);
        self.shared.targets.lock().unwrap().retain(|&m| m != i);
    }

    async fn leave(&mut self) {
        let i = self.victim();
        self.shared.fault("leave", self.id(i));
        let out = self.admin(i, &["leave"]).await;
        assert!(out.contains("done: layout epoch"), "leave of {}: {out}", self.id(i));
        self.forget(i);
        let exited = tokio::task::block_in_place(|| self.cluster.wait_exit(i, Duration::from_secs(60)));
        assert!(exited, "{} did not stop after leaving", self.id(i));
        self.shared.fault("left", self.id(i));
    }

    async fn remove(&mut self) {
        let i = self.victim();
        tokio::task::block_in_place(|| self.cluster.kill9(i));
        self.forget(i);
        self.shared.fault("kill", format!("{} (to be removed)", self.id(i)));
        let id = self.id(i);
        let (cluster, members) = (&*self.cluster, self.members.clone());
        let dead = eventually(Duration::from_secs(60), || async {
            for &m in &members {
                let s = cluster.status(m).await?;
                (liveness_of(&s, &id).as_deref() == Some("dead")).then_some(())?;
            }
            Some(())
        })
        .await;
        assert!(dead.is_some(), "{id} was not declared dead by every member within 60 s");
        let by = self.pick();
        let out = self.admin(by, &["remove", &id]).await;
        assert!(out.contains("done: layout epoch"), "remove of {id}: {out}");
        self.shared.fault("remove", format!("{id} via {}", self.id(by)));
    }

    /// `shoal admin ARGS` against node `i`, which must succeed within two minutes.
    async fn admin(&self, i: usize, args: &[&str]) -> String {
        match tokio::time::timeout(Duration::from_secs(120), admin(self.cluster, i, args)).await {
            Ok(out) => out,
            Err(_) => panic!("shoal admin {args:?} via {} did not finish in 120 s", self.id(i)),
        }
    }

    /// Members whose process exited without the nemesis stopping it: noted (with the exit
    /// status) for the verdict, and left dead for [`Nemesis::heal_all`] to restart.
    fn reap_crashed(&mut self) {
        for i in self.members.clone() {
            let node = &mut self.cluster.nodes[i];
            if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                node.child = None;
                let what = format!("{} ({status})", node.id);
                self.shared.fault("crashed", what.clone());
                self.crashed.push(what);
            }
        }
    }

    /// Heal every fault: the partitions, paused nodes, dead members.
    async fn heal_all(&mut self) {
        self.reap_crashed();
        if let Some(p) = self.partitions {
            p.heal();
        }
        for i in std::mem::take(&mut self.paused) {
            self.cluster.signal(i, "-CONT");
        }
        for i in self.members.clone() {
            if self.cluster.nodes[i].child.is_none() {
                tokio::task::block_in_place(|| {
                    self.cluster.spawn(i);
                    self.cluster.wait_ready(i);
                });
            }
        }
        self.shared.fault("heal-all", self.ids(&self.members.clone()));
    }
}

/// An iptables chain of DROP rules for UDP on loopback, jumped to from INPUT, removed on drop
/// (so also when the test panics). Packets are dropped on arrival, not on sending: a DROP in
/// OUTPUT makes a local `sendto` fail with EPERM, which the sender sees at once, whereas a
/// partition loses packets silently.
struct Partitions {
    chain: String,
}

const CHAIN_PREFIX: &str = "SHOAL_NEMESIS_";

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Partitions {
    fn install() -> Result<Partitions, String> {
        Self::remove_stale();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let chain = format!("{CHAIN_PREFIX}{}_{seq}", std::process::id());
        iptables(&["-N", &chain])?;
        let p = Partitions { chain };
        iptables(&["-I", "INPUT", "-i", "lo", "-p", "udp", "-j", &p.chain])?;
        Ok(p)
    }

    /// Chains left by test processes that no longer exist (killed before their drop ran);
    /// chains are named `SHOAL_NEMESIS_<pid>_<n>`.
    fn remove_stale() {
        let Ok(out) = Command::new("iptables").args(["-w", "-S"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(chain) = line.strip_prefix("-N ").filter(|c| c.starts_with(CHAIN_PREFIX)) else {
                continue;
            };
            let pid = chain[CHAIN_PREFIX.len()..].split('_').next().unwrap_or_default();
            if !std::path::Path::new("/proc").join(pid).exists() {
                remove_chain(chain);
            }
        }
    }

    /// Drop every UDP packet from `from` to `to` (one way).
    fn drop_packets(&self, from: SocketAddr, to: SocketAddr) {
        let (sport, dport) = (from.port().to_string(), to.port().to_string());
        iptables(&[
            "-A",
            &self.chain,
            "-p",
            "udp",
            "--sport",
            &sport,
            "--dport",
            &dport,
            "-j",
            "DROP",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn heal(&self) {
        iptables(&["-F", &self.chain]).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn remove_chain(chain: &str) {
    while iptables(&["-D", "INPUT", "-i", "lo", "-p", "udp", "-j", chain]).is_ok() {}
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

impl Drop for Partitions {
    fn drop(&mut self) {
        remove_chain(&self.chain);
    }
}

/// One read's answer: the workload values it returned and its context.
struct Read {
    sibs: Vec<Sib>,
    context: Option<String>,
}

/// How a failed request is recorded: status and error code, or the transport error.
async fn failure(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    format!(
        "{} {}: {}",
        status.as_u16(),
        body["error"].as_str().unwrap_or("?"),
        body["message"].as_str().unwrap_or("")
    )
}

fn context_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("x-shoal-context")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn get(shared: &Shared, http: &reqwest::Client, url: String) -> Result<Read, String> {
    let resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("request: {e}"))?;
    match resp.status() {
        StatusCode::NOT_FOUND => Ok(Read {
            sibs: Vec::new(),
            context: context_of(&resp),
        }),
        StatusCode::OK | StatusCode::MULTIPLE_CHOICES => {
            let body: serde_json::Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
            let engine = base64::engine::general_purpose::STANDARD;
            let mut sibs = Vec::new();
            for v in body["siblings"].as_array().ok_or("no siblings in the answer")? {
                let bytes = engine
                    .decode(v.as_str().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                match Sib::decode(&bytes) {
                    Some(s) => sibs.push(s),
                    None => shared
                        .foreign
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&bytes).into_owned()),
                }
            }
            sibs.sort();
            Ok(Read {
                sibs,
                context: body["context"].as_str().map(str::to_string),
            })
        }
        _ => Err(failure(resp).await),
    }
}

/// A client: read a random key through a random member, then add an element to the union of
/// what it read (or, now and then, delete what it read), with the read's context.
async fn client(c: u32, shared: Arc<Shared>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(c) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let http = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    let record = |key: &str, node: usize, invoked_ms: u64, kind: OpKind, outcome: Outcome| {
        shared.ops.lock().unwrap().push(Op {
            client: c,
            key: key.to_string(),
            node: shared.ids[node].clone(),
            invoked_ms,
            completed_ms: shared.clock.ms(),
            kind,
            outcome,
        })
    };
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(THINK_MS))).await;
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let node = *shared.targets.lock().unwrap().choose(&mut rng).unwrap();
        let (r, w) = (rng.gen_range(1..=N), rng.gen_range(1..=N));
        let base = format!("{}/v1/kv/{key}", shared.urls[node]);

        let invoked = shared.clock.ms();
        let url = format!("{base}?n={N}&r={r}&timeout_ms={REQUEST_TIMEOUT_MS}&sloppy=false");
        let read = get(&shared, &http, url).await;
        let outcome = match &read {
            Ok(got) => Outcome::Ok {
                returned: got.sibs.clone(),
                hinted: 0,
            },
            Err(e) => Outcome::Failed(e.clone()),
        };
        record(&key, node, invoked, OpKind::Read { n: N, r }, outcome);
        let Ok(read) = read else { continue };

        let write: WriteId = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let parents: Vec<WriteId> = read.sibs.iter().filter_map(Sib::write).collect();
        let delete = !read.sibs.is_empty() && rng.gen_bool(DELETE_SHARE);
        let (element, elements) = if delete {
            (None, BTreeSet::new())
        } else {
            let mut all: BTreeSet<u64> = read
                .sibs
                .iter()
                .flat_map(|s| match s {
                    Sib::Value { elements, .. } => elements.clone(),
                    Sib::Tombstone => BTreeSet::new(),
                })
                .collect();
            all.insert(write);
            (Some(write), all)
        };
        let url = format!("{base}?n={N}&w={w}&timeout_ms={REQUEST_TIMEOUT_MS}");
        let mut req = if delete {
            http.delete(url)
        } else {
            http.put(url).body(Sib::encode(write, &elements))
        };
        if let Some(ctx) = &read.context {
            req = req.header("x-shoal-context", ctx);
        }
        let invoked = shared.clock.ms();
        let outcome = match req.send().await {
            Ok(resp) if resp.status() == StatusCode::NO_CONTENT => Outcome::Ok {
                returned: Vec::new(),
                hinted: resp
                    .headers()
                    .get("x-shoal-hinted-acks")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .expect("a write's answer says how many acks were hinted"),
            },
            Ok(resp) => Outcome::Failed(failure(resp).await),
            Err(e) => Outcome::Failed(format!("request: {e}")),
        };
        let kind = OpKind::Write {
            write,
            element,
            elements,
            parents,
            n: N,
            w,
        };
        record(&key, node, invoked, kind, outcome);
    }
}

/// What each replica of each key holds, read until every replica agrees (siblings and their
/// dots) or `CONVERGENCE_BOUND` has passed since `healed`.
async fn final_state(cluster: &TestCluster, members: &[usize], shared: &Shared, healed: Instant) -> FinalState {
    let mut last: BTreeMap<String, BTreeMap<String, Vec<Sib>>> = BTreeMap::new();
    let mut converged_after_ms = None;
    let mut why = String::new();
    while healed.elapsed() < CONVERGENCE_BOUND {
        let mut all_agree = true;
        for k in 0..KEYS {
            let key = format!("k{k}");
            match replicas_of(cluster, members, &key, shared).await {
                Ok((sibs, agree)) => {
                    if !agree {
                        all_agree = false;
                        why = format!("{key}: replicas differ");
                    }
                    last.insert(key, sibs);
                }
                Err(e) => {
                    all_agree = false;
                    why = format!("{key}: {e}");
                }
            }
        }
        if all_agree {
            converged_after_ms = Some(healed.elapsed().as_millis() as u64);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    match converged_after_ms {
        Some(ms) => println!("nemesis: every replica of every key agreed {ms} ms after the heal"),
        None => println!(
            "nemesis: replicas still differ {} s after the heal ({why})",
            CONVERGENCE_BOUND.as_secs()
        ),
    }
    FinalState {
        replicas: last,
        converged_after_ms,
        bound_ms: CONVERGENCE_BOUND.as_millis() as u64,
    }
}

/// Every preference-list replica's copy of `key` (as sorted workload siblings), and whether
/// they are identical, dots included. `Err` while the members disagree about the preference
/// list, a change is in flight, or a replica does not answer.
async fn replicas_of(
    cluster: &TestCluster,
    members: &[usize],
    key: &str,
    shared: &Shared,
) -> Result<(BTreeMap<String, Vec<Sib>>, bool), String> {
    let mut answers: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for &i in members {
        let a = cluster
            .replica(i, key, N)
            .await
            .ok_or_else(|| format!("{} does not answer", cluster.nodes[i].id))?;
        answers.insert(cluster.nodes[i].id.clone(), a);
    }
    let first = answers.values().next().ok_or("no members")?;
    let pref = first["preference_list"].clone();
    if answers
        .values()
        .any(|a| a["preference_list"] != pref || a["changing"] != false)
    {
        return Err("the members do not agree on its preference list yet".into());
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = BTreeMap::new();
    let mut raw = Vec::new();
    for node in pref.as_array().ok_or("no preference list")? {
        let node = node.as_str().unwrap_or_default();
        let a = answers
            .get(node)
            .ok_or_else(|| format!("{node} is in the preference list but not a member the test knows"))?;
        let siblings = a["object"]["siblings"].as_array().cloned().unwrap_or_default();
        let mut sibs = Vec::new();
        for s in &siblings {
            match s["value"].as_str() {
                None => sibs.push(Sib::Tombstone),
                Some(v) => {
                    let bytes = engine.decode(v).map_err(|e| e.to_string())?;
                    match Sib::decode(&bytes) {
                        Some(sib) => sibs.push(sib),
                        None => shared.foreign.lock().unwrap().push(format!(
                            "{node}'s replica of {key}: {}",
                            String::from_utf8_lossy(&bytes)
                        )),
                    }
                }
            }
        }
        sibs.sort();
        out.insert(node.to_string(), sibs);
        raw.push(siblings);
    }
    let agree = raw.windows(2).all(|w| w[0] == w[1]);
    Ok((out, agree))
}

/// Every write through n1 while its disk was full, for a key n1 replicated, was refused with
/// 507 (writes for other keys are passed on to a replica); and there were some.
fn check_disk_full(history: &History, windows: &[DiskFullWindow], full_node: &str) {
    let (mut refused, mut passed_on) = (0, 0);
    for op in &history.ops {
        if op.node != full_node || !matches!(op.kind, OpKind::Write { .. }) {
            continue;
        }
        let Some(window) = windows
            .iter()
            .find(|w| op.invoked_ms >= w.from && op.completed_ms <= w.until)
        else {
            continue;
        };
        if !window.replicated.contains(&op.key) {
            passed_on += 1;
            continue;
        }
        match &op.outcome {
            Outcome::Failed(reason) if reason.starts_with("507 insufficient_storage") => refused += 1,
            other => panic!("a write of {} through {full_node} while its disk was full was not refused with 507 ({other:?}): {op:?}", op.key),
        }
    }
    if !windows.is_empty() {
        assert!(
            refused > 0,
            "no write of a key {full_node} replicates went through it while its disk was full"
        );
        println!("nemesis: while n1's disk was full, {refused} writes through it were refused with 507 and {passed_on} for keys it does not replicate were passed on");
    }
}

fn write_report(settings: &Settings, began_unix_ms: u64, history: &History, verdict: &Verdict) -> PathBuf {
    let path = std::env::var_os("SHOAL_NEMESIS_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("shoal-nemesis-{}.json", settings.seed)));
    let report = serde_json::json!({
        "seed": settings.seed,
        "secs": settings.secs,
        "began_unix_ms": began_unix_ms,
        "verdict": verdict,
        "history": history,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap())
        .unwrap_or_else(|e| panic!("writing the report to {}: {e}", path.display()));
    path
}

fn print_summary(load_ms: u64, history: &History, verdict: &Verdict) {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &history.faults {
        *kinds.entry(f.kind.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    let hinted = history
        .ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok { hinted, .. } if hinted > 0))
        .count();
    let failed_reads = history
        .ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Read { .. }) && matches!(op.outcome, Outcome::Failed(_)))
        .count();
    println!(
        "nemesis: {}s, {} ops ({} writes, {} acked, {} reads), {} faults [{}], anomalies: {}",
        load_ms / 1000,
        verdict.ops,
        verdict.writes,
        verdict.acked_writes,
        verdict.reads,
        history.faults.len(),
        kinds.join(", "),
        verdict.anomalies.len()
    );
    println!(
        "nemesis: {} deletes, {} failed reads, {} writes acked with hinted copies, {} elements required, {} strict (write, read) pairs compared, converged after {:?} ms",
        verdict.deletes,
        failed_reads,
        hinted,
        verdict.required_elements,
        verdict.intersection_pairs,
        history.final_state.converged_after_ms
    );
    for a in &verdict.anomalies {
        println!("ANOMALY {} {}: {}", a.checker, a.key, a.detail);
    }
}
