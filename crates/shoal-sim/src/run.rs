//! One simulated run: boot a cluster, drive the set workload while the nemesis injects faults,
//! heal, wait for quiescence, record every replica's final state, and judge the history.
//!
//! The whole run happens on one thread, on a tokio runtime whose clock is paused: time only
//! moves when every task waits, and then jumps to the next timer. Tasks run in the order
//! they were woken, storage work runs inline, and every random choice is drawn from one
//! stream seeded by the run's seed, so a run is a function of its seed and configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shoal_coordinator::{GetRequest, PutRequest};
use shoal_membership::SwimConfig;
use shoal_ring::{Change, Layout, LayoutRecord, Member, RingConfig};
use shoal_storage::{MemoryStore, Object, Value};

use crate::check::{check, Verdict};
use crate::history::{Fault, FinalState, History, Op, OpKind, Outcome, Sib};
use crate::net::{index_of, node_id, Net, NetStats, Weather};
use crate::node::{held, Core, NodeConfig, SkewedClock};

/// Deliberate damage, to show the checkers catch what they claim to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Sabotage {
    /// A crash wipes the node's disk, as if writes were acknowledged before they were durable.
    WipeDiskOnCrash,
    /// A layout commit moves writes to the new owners at once, as Shoal did before the
    /// retiring phase, and replicas serve coordinators of any layout, as before epoch
    /// fencing: nodes that have not heard of the commit read from the old owners.
    CommitWithoutRetiring,
    /// Replicas serve coordinators of any layout epoch, as Shoal did before epoch fencing: a
    /// node back from a crash or partition with an old layout reads from, and acknowledges
    /// writes on, owners that have dropped the range.
    NoFencing,
    /// Layout changes go on without the members SWIM calls dead, as Shoal did before the
    /// layout-change engine: a node that sleeps through a whole change comes back with its
    /// old layout.
    ExcuseDead,
    /// Both: changes excuse dead members, and replicas do not fence old coordinators.
    ExcuseDeadNoFencing,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// The founding members.
    pub nodes: usize,
    /// Nodes that may join during the run (each joins at most once).
    pub spares: usize,
    /// Let the nemesis change the membership (join, leave, remove) as well.
    pub membership: bool,
    /// How often a change that waits on a member that is down is skipped past (`shoal admin
    /// skip`), from 0 to 1.
    pub skip_chance: f64,
    pub clients: usize,
    pub keys: usize,
    /// How long the workload and the nemesis run, in virtual time.
    pub chaos: Duration,
    /// Inject faults (off: a fault-free run, which must also satisfy every checker).
    pub faults: bool,
    /// How long after the heal every replica must agree.
    pub convergence_bound: Duration,
    pub partitions: u32,
    pub node: NodeConfig,
    /// Largest clock skew between a node and true time.
    pub max_skew: Duration,
    pub sabotage: Option<Sabotage>,
    /// A scripted schedule in place of the random nemesis.
    pub script: Option<Script>,
}

/// Scripted schedules: one membership scenario, with the workload running throughout and the
/// usual checkers after the heal. Node 3 (`n3`) is the member that goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Script {
    /// `kill -9` n3 and, once SWIM calls it dead, join a spare. The join must not finish while
    /// n3 is down; after 8 s n3 restarts and the join finishes.
    JoinWaitsForKilledMember,
    /// The same, but after 8 s the operator skips n3 (`shoal admin skip`) and the join
    /// finishes without it. Then n3 restarts with the record it had: replicas fence its first
    /// requests out, and nothing it does under its old layout may show in the checkers.
    SkippedMemberReturns,
}

/// What a scripted schedule observed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScriptReport {
    /// How long the join stayed unfinished on every running member while n3 was down.
    pub blocked_ms: u64,
    /// From n3's restart (or its skip) to the join's finish; `None` if it never finished.
    pub finished_after_ms: Option<u64>,
    /// Requests of the restarted n3 that replicas fenced out as stale, counted once its first
    /// request (an r=2 read of every key, sent the moment it boots, before any gossip can
    /// reach it) has been answered. The reads are in the history, judged like any other.
    pub fenced_on_return: u64,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            nodes: 5,
            spares: 2,
            membership: true,
            skip_chance: 0.5,
            clients: 4,
            keys: 6,
            chaos: Duration::from_secs(20),
            faults: true,
            convergence_bound: Duration::from_secs(60),
            partitions: 16,
            node: NodeConfig {
                swim: SwimConfig {
                    probe_interval: Duration::from_millis(500),
                    probe_timeout: Duration::from_millis(200),
                    push_pull_interval: Duration::from_secs(5),
                    ..SwimConfig::default()
                },
                aae_interval: Duration::from_secs(2),
                handoff_interval: Duration::from_millis(500),
                // Tombstone GC's grace must exceed the hints' max age (see shoal-handoff) by
                // more than the clocks can disagree (twice `max_skew`). The window is short, so
                // partitions and crashes outlast it and redirects run in most seeds. The max age
                // is what a hint may not outlive: it must stay well above how long SWIM takes to
                // see a cut-off node again (seconds here, as in production, where it is days),
                // or the simulator drops hints that production would deliver. With a 4 s
                // window and grace 10 s, seeds 9780, 13100, 18109 and 18335 of 0..20000 lost
                // acknowledged writes whose other copies were on a removed node.
                hint_window: Duration::from_secs(2),
                hint_max_age: Duration::from_secs(15),
                tombstone_grace: Duration::from_secs(20),
                request_timeout: Duration::from_millis(1500),
                drop_delay: Duration::from_secs(2),
                retire_after_commit: true,
                fence: true,
                excuse_dead: false,
            },
            // Scaled to the grace and window above, as hours and days are in production: with
            // ±2 min of skew, seeds 858 and 2825 brought deleted keys back (docs/testing.md).
            max_skew: Duration::from_secs(2),
            sabotage: None,
            script: None,
        }
    }
}

/// What a run did and found.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub seed: u64,
    pub ops: usize,
    pub acked_writes: usize,
    pub faults: usize,
    pub fault_kinds: BTreeMap<String, usize>,
    pub net: NetStats,
    pub converged_after_ms: Option<u64>,
    /// When the cluster did not converge: what each node believed at the end (the members
    /// SWIM did not call alive, the hints it still held), to start the diagnosis from.
    pub unconverged_state: Vec<String>,
    pub verdict: Verdict,
    /// What a scripted schedule observed (`SimConfig::script`).
    pub script: Option<ScriptReport>,
    /// A digest of the whole history: equal for two runs of one seed.
    pub history_hash: u64,
    #[serde(skip)]
    pub history: History,
}

/// Run one seed to completion on this thread.
pub fn run(config: &SimConfig) -> RunReport {
    shoal_storage::run_blocking_inline_on_this_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    rt.block_on(simulate(config.clone()))
}

struct Cluster {
    net: Arc<Net>,
    config: SimConfig,
    /// The founders' first layout.
    bootstrap: LayoutRecord,
    /// The layout members as the nemesis made them (founders, joined, not left or removed).
    members: Mutex<BTreeSet<usize>>,
    /// Spares that have been started (to join).
    started: Mutex<BTreeSet<usize>>,
    /// A membership change is being made: the nemesis runs one at a time, as an operator
    /// does (two at once race, and the layout keeps only one of them).
    changing: Mutex<bool>,
    disks: Vec<Mutex<Arc<MemoryStore>>>,
    clocks: Vec<Arc<SkewedClock>>,
    faults: Mutex<Vec<Fault>>,
    ops: Mutex<Vec<Op>>,
    next_write: AtomicU64,
}

const EPOCH_MS: i64 = 1_800_000_000_000;

impl Cluster {
    fn total(&self) -> usize {
        self.config.nodes + self.config.spares
    }

    fn boot(&self, i: usize, join: Option<usize>) {
        let clock = self.clocks[i].clone();
        let swim_seed = self.net.with_rng(|r| r.gen());
        let disk = self.disks[i].lock().clone();
        let mut node = self.config.node.clone();
        match self.config.sabotage {
            Some(Sabotage::CommitWithoutRetiring) => {
                node.retire_after_commit = false;
                node.fence = false;
            }
            Some(Sabotage::NoFencing) => node.fence = false,
            Some(Sabotage::ExcuseDead) => node.excuse_dead = true,
            Some(Sabotage::ExcuseDeadNoFencing) => {
                node.excuse_dead = true;
                node.fence = false;
            }
            _ => {}
        }
        Core::boot(
            &self.net,
            i,
            disk,
            (i < self.config.nodes).then(|| self.bootstrap.clone()),
            self.bootstrap.config.partitions,
            clock,
            &node,
            swim_seed,
            join,
        );
    }

    fn members(&self) -> Vec<usize> {
        self.members.lock().iter().copied().collect()
    }

    /// A member that is up and not paused, other than `not`.
    fn pick_running(&self, not: Option<usize>) -> Option<usize> {
        let up: Vec<usize> = self
            .members()
            .into_iter()
            .filter(|i| Some(*i) != not && self.net.is_up(*i) && !self.net.is_paused(*i))
            .collect();
        (!up.is_empty()).then(|| up[self.net.with_rng(|r| r.gen_range(0..up.len()))])
    }

    fn fault(&self, kind: &str, detail: String) {
        self.faults.lock().push(Fault {
            at_ms: self.net.now_ms(),
            kind: kind.into(),
            detail,
        });
    }

    fn crash(&self, i: usize) {
        if let Some(core) = self.net.remove(i) {
            core.kill();
            if self.config.sabotage == Some(Sabotage::WipeDiskOnCrash) {
                *self.disks[i].lock() = Arc::new(MemoryStore::new());
            }
            self.fault("kill", node_id(i).to_string());
        }
    }

    /// Restarts a crashed member (a node that left or was removed stays down).
    fn restart(&self, i: usize) {
        if !self.net.is_up(i) && self.members.lock().contains(&i) {
            let others: Vec<usize> = self.members().into_iter().filter(|m| *m != i).collect();
            let seed = others[self.net.with_rng(|r| r.gen_range(0..others.len()))];
            self.boot(i, Some(seed));
            self.fault("restart", node_id(i).to_string());
        }
    }

    /// Restarts node `i` if it is down while the layout still has it leaving (its leave
    /// outlasted the nemesis's patience): the change waits for it, as it would for an
    /// operator to bring it back or skip it.
    fn restart_leaver(&self, i: usize) {
        if self.net.is_up(i) {
            return;
        }
        let leaving = self.members().into_iter().any(|m| {
            self.net.core(m).and_then(|c| c.record()).is_some_and(|r| {
                r.admin_state(&node_id(i)) == shoal_ring::AdminState::Leaving && r.removed() != Some(&node_id(i))
            })
        });
        if leaving {
            let seed = self.members()[0];
            self.boot(i, Some(seed));
            self.fault("restart", node_id(i).to_string());
        }
    }

    /// Waits (up to 30 s) until the change proposed at `epoch` has finished on a running
    /// member, then lets the nemesis make the next one. A change still waiting after 4 s for
    /// a member that is down (crashed, and declared dead) is skipped past with `skip_chance`, as an
    /// operator would with `shoal admin skip`; the member comes back later all the same.
    async fn settle(&self, epoch: u64) {
        let began = tokio::time::Instant::now();
        let give_up = began + Duration::from_secs(30);
        let mut considered_skip = false;
        while tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.finished(epoch) {
                break;
            }
            if !considered_skip && began.elapsed() > Duration::from_secs(4) {
                considered_skip = true;
                if self
                    .net
                    .with_rng(|r| r.gen_bool(self.config.skip_chance.clamp(0.0, 1.0)))
                {
                    self.skip_a_dead_member();
                }
            }
        }
        *self.changing.lock() = false;
    }

    /// `shoal admin skip NODE` through a running member whose change waits for NODE, which is
    /// down and which that member's SWIM calls dead.
    fn skip_a_dead_member(&self) {
        for m in self.members() {
            if !self.net.is_up(m) || self.net.is_paused(m) {
                continue;
            }
            let Some(core) = self.net.core(m) else { continue };
            let Some(record) = core.record() else { continue };
            let step = core.step(&record);
            for b in step.blockers() {
                let down = !self.net.is_up(index_of(&b.node));
                let dead = core
                    .swim
                    .lock()
                    .member(&b.node)
                    .is_some_and(|x| x.liveness == shoal_membership::Liveness::Dead);
                if !(down && dead) {
                    continue;
                }
                if let Ok(skipped) = record.skip(&b.node, 3) {
                    core.adopt(&skipped);
                    self.fault("skip", format!("{} via {}", b.node, node_id(m)));
                    return;
                }
            }
        }
    }

    /// Starts spare `s` and has it join through a running member.
    async fn join(self: &Arc<Self>, s: usize) {
        if let Some(epoch) = self.propose_join(s).await {
            self.settle(epoch).await;
        }
    }

    /// Starts spare `s` and has it propose its join through a running member; the epoch of
    /// the proposal, or `None` (and the spare gone again) if that failed.
    async fn propose_join(self: &Arc<Self>, s: usize) -> Option<u64> {
        let Some(seed) = self.pick_running(None) else {
            *self.changing.lock() = false;
            return None;
        };
        self.started.lock().insert(s);
        self.boot(s, Some(seed));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // `shoal admin join SEED`: fetch the record from the seed, propose, adopt.
        let inc = self.net.incarnation(s);
        let record = self
            .net
            .call(s, inc, seed, Duration::from_secs(2), false, |core| async move {
                core.record()
            })
            .await
            .ok()
            .flatten();
        let core = self.net.core(s);
        let proposed = match (record, &core) {
            (Some(r), Some(core)) => {
                core.adopt(&r);
                r.propose(Change::Join(member(s)), 3).ok()
            }
            _ => None,
        };
        match (proposed, core) {
            (Some(p), Some(core)) => {
                core.adopt(&p);
                self.members.lock().insert(s);
                self.fault("join", format!("{} via {}", node_id(s), node_id(seed)));
                Some(p.epoch)
            }
            _ => {
                // Refused (a change in flight) or unreachable: the spare goes away unjoined.
                if let Some(core) = self.net.remove(s) {
                    core.kill();
                }
                *self.disks[s].lock() = Arc::new(MemoryStore::new());
                self.started.lock().remove(&s);
                *self.changing.lock() = false;
                None
            }
        }
    }

    /// Whether the change proposed at `epoch` has finished on some running member.
    fn finished(&self, epoch: u64) -> bool {
        self.members().into_iter().any(|i| {
            !self.net.is_paused(i)
                && self
                    .net
                    .core(i)
                    .and_then(|c| c.record())
                    .is_some_and(|r| r.epoch >= epoch + 2 && r.change().is_none())
        })
    }

    /// Whether member `judge`'s SWIM calls node `i` dead.
    fn dead_to(&self, judge: usize, i: usize) -> bool {
        self.net.core(judge).is_some_and(|c| {
            c.swim
                .lock()
                .member(&node_id(i))
                .is_some_and(|m| m.liveness == shoal_membership::Liveness::Dead)
        })
    }

    /// `shoal admin leave` on member `v`.
    async fn leave(self: &Arc<Self>, v: usize) {
        let proposed = self.net.core(v).and_then(|core| {
            let p = core.record()?.propose(Change::Leave(node_id(v)), 3).ok()?;
            core.adopt(&p);
            Some(p)
        });
        match proposed {
            Some(p) => {
                self.fault("leave", node_id(v).to_string());
                // Still a member (restarted after a crash) until its leave has gone through:
                // every change waits for the node that leaves, as it streams its data away.
                self.settle(p.epoch).await;
                self.members.lock().remove(&v);
            }
            None => *self.changing.lock() = false,
        }
    }

    /// `kill -9` member `v`, then `shoal admin remove` it through a member whose SWIM has
    /// declared it dead; if none does in time, or the change is refused, `v` comes back.
    async fn remove(self: &Arc<Self>, v: usize) {
        self.crash(v);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let judges: Vec<usize> = self
                .members()
                .into_iter()
                .filter(|m| *m != v && self.net.is_up(*m) && !self.net.is_paused(*m))
                .collect();
            for m in judges {
                let Some(core) = self.net.core(m) else { continue };
                let dead = core
                    .swim
                    .lock()
                    .member(&node_id(v))
                    .is_some_and(|x| x.liveness == shoal_membership::Liveness::Dead);
                if !dead {
                    continue;
                }
                let proposed = core
                    .record()
                    .and_then(|r| r.propose(Change::Remove(node_id(v)), 3).ok());
                if let Some(p) = proposed {
                    core.adopt(&p);
                    self.members.lock().remove(&v);
                    self.fault("remove", format!("{} via {}", node_id(v), node_id(m)));
                    drop(core);
                    self.settle(p.epoch).await;
                    return;
                }
                self.restart(v);
                *self.changing.lock() = false;
                return;
            }
        }
        self.restart(v);
        *self.changing.lock() = false;
    }
}

/// Runs `script` (see [`Script`]) against the running workload.
async fn script(cluster: Arc<Cluster>, script: Script) -> ScriptReport {
    const VICTIM: usize = 2;
    let mut report = ScriptReport::default();
    let tick = Duration::from_millis(250);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.crash(VICTIM);
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cluster.dead_to(0, VICTIM) && tokio::time::Instant::now() < until {
        tokio::time::sleep(tick).await;
    }
    *cluster.changing.lock() = true;
    let Some(epoch) = cluster.propose_join(cluster.config.nodes).await else {
        return report;
    };
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_secs(8) && !cluster.finished(epoch) {
        tokio::time::sleep(tick).await;
    }
    report.blocked_ms = began.elapsed().as_millis() as u64;
    match script {
        Script::JoinWaitsForKilledMember => cluster.restart(VICTIM),
        Script::SkippedMemberReturns => cluster.skip_a_dead_member(),
    }
    let released = tokio::time::Instant::now();
    while released.elapsed() < Duration::from_secs(30) {
        if cluster.finished(epoch) {
            report.finished_after_ms = Some(released.elapsed().as_millis() as u64);
            break;
        }
        tokio::time::sleep(tick).await;
    }
    if script == Script::SkippedMemberReturns {
        cluster.restart(VICTIM);
        let reads: Vec<_> = (0..cluster.config.keys)
            .map(|k| tokio::spawn(recorded_read(cluster.clone(), u32::MAX, VICTIM, key_name(k), 2)))
            .collect();
        for r in reads {
            let _ = r.await;
        }
        report.fenced_on_return = cluster
            .net
            .core(VICTIM)
            .map_or(0, |c| c.fenced.load(std::sync::atomic::Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    *cluster.changing.lock() = false;
    report
}

fn member(i: usize) -> Member {
    Member {
        id: node_id(i),
        zone: "default".into(),
        weight: 1,
    }
}

fn bootstrap_for(nodes: usize, partitions: u32) -> LayoutRecord {
    let ring = RingConfig {
        partitions,
        ..RingConfig::default()
    };
    LayoutRecord::bootstrap((0..nodes).map(member).collect(), ring).expect("a valid simulated membership")
}

async fn simulate(config: SimConfig) -> RunReport {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let skew_ms = config.max_skew.as_millis() as i64;
    let total = config.nodes + config.spares;
    let skews: Vec<i64> = (0..total).map(|_| rng.gen_range(-skew_ms..=skew_ms)).collect();
    let net = Arc::new(Net::new(total, rng));
    let cluster = Arc::new(Cluster {
        net: net.clone(),
        bootstrap: bootstrap_for(config.nodes, config.partitions),
        members: Mutex::new((0..config.nodes).collect()),
        started: Mutex::new(BTreeSet::new()),
        changing: Mutex::new(false),
        disks: (0..total).map(|_| Mutex::new(Arc::new(MemoryStore::new()))).collect(),
        clocks: skews
            .iter()
            .map(|s| {
                Arc::new(SkewedClock {
                    net: net.clone(),
                    start_ms: AtomicI64::new(EPOCH_MS + s),
                })
            })
            .collect(),
        faults: Mutex::new(Vec::new()),
        ops: Mutex::new(Vec::new()),
        next_write: AtomicU64::new(1),
        config,
    });
    let config = &cluster.config;
    for i in 0..config.nodes {
        cluster.boot(i, (i > 0).then_some(0));
    }
    // Let SWIM gather everyone before traffic starts.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let end = tokio::time::Instant::now() + config.chaos;
    let mut clients = Vec::new();
    for c in 0..config.clients {
        let seed = net.with_rng(|r| r.gen());
        clients.push(tokio::spawn(client(cluster.clone(), c as u32, seed, end)));
    }
    let nemesis = (config.faults && config.script.is_none()).then(|| tokio::spawn(nemesis(cluster.clone(), end)));
    let scripted = config.script.map(|s| tokio::spawn(script(cluster.clone(), s)));
    for c in clients {
        let _ = c.await;
    }
    if let Some(n) = nemesis {
        let _ = n.await;
    }
    let script = match scripted {
        Some(s) => s.await.ok(),
        None => None,
    };

    // Heal: every node up and running, every link whole, calm weather.
    net.set_weather(Weather::calm());
    net.heal_links();
    for i in 0..cluster.total() {
        if net.is_paused(i) {
            net.set_paused(i, false);
        }
        cluster.restart(i);
        cluster.restart_leaver(i);
    }
    cluster.fault("heal", "all nodes up, links whole, weather calm".into());
    let healed = net.now_ms();
    let keys: Vec<String> = (0..config.keys).map(key_name).collect();
    let bound = config.convergence_bound;
    let mut converged_after_ms = None;
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if quiet(&cluster, &keys) {
            converged_after_ms = Some(net.now_ms() - healed);
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let unconverged_state = if converged_after_ms.is_none() {
        (0..cluster.total())
            .filter_map(|i| net.core(i))
            .map(|c| describe(&c))
            .collect()
    } else {
        Vec::new()
    };
    let final_state = FinalState {
        replicas: keys.iter().map(|k| (k.clone(), replicas_of(&cluster, k))).collect(),
        converged_after_ms,
        bound_ms: bound.as_millis() as u64,
    };
    for i in 0..cluster.total() {
        if let Some(core) = net.remove(i) {
            core.kill();
        }
    }
    let stats = *net.stats.lock();
    net.clear();
    let mut ops = std::mem::take(&mut *cluster.ops.lock());
    ops.sort_by_key(|o| (o.invoked_ms, o.client));
    let history = History {
        ops,
        faults: std::mem::take(&mut *cluster.faults.lock()),
        final_state,
        reads_hide_tombstones: false,
    };
    let verdict = check(&history);
    let mut fault_kinds = BTreeMap::new();
    for f in &history.faults {
        *fault_kinds.entry(f.kind.clone()).or_insert(0) += 1;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&history)
        .expect("histories serialise")
        .hash(&mut hasher);
    RunReport {
        seed: config.seed,
        ops: history.ops.len(),
        acked_writes: verdict.acked_writes,
        faults: history.faults.len(),
        fault_kinds,
        net: stats,
        converged_after_ms,
        unconverged_state,
        verdict,
        script,
        history_hash: hasher.finish(),
        history,
    }
}

/// A node's beliefs, for a run that did not converge.
fn describe(core: &Core) -> String {
    let swim = core.swim.lock();
    let others: Vec<String> = swim
        .members()
        .filter(|m| *m.id != core.id)
        .map(|m| format!("{}:{:?}@{}", m.id, m.liveness, m.incarnation))
        .collect();
    format!(
        "{} (incarnation {}): members [{}], hints held {:?}, layout {:?}",
        core.id,
        swim.incarnation(),
        others.join(" "),
        core.hints.pending(),
        core.record()
            .map(|r| (r.epoch, r.change().map(|(k, n, p)| format!("{k} {n} {p}"))))
    )
}

fn key_name(k: usize) -> String {
    format!("key-{k}")
}

/// The siblings of an object, as the checkers see them.
fn sibs(object: Option<&Object>) -> Vec<Sib> {
    let mut out: Vec<Sib> = object
        .map(|o| {
            o.siblings
                .values()
                .map(|v| match v {
                    Value::Data(b) => Sib::decode(b).unwrap_or(Sib::Value {
                        write: 0,
                        elements: BTreeSet::new(),
                    }),
                    Value::Tombstone => Sib::Tombstone,
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The layout the members agree on with no change under way, if they do.
fn settled_layout(cluster: &Cluster) -> Option<Arc<Layout>> {
    let mut records = cluster
        .members()
        .into_iter()
        .map(|i| cluster.net.core(i).and_then(|c| c.record()));
    let first = records.next()??;
    if first.change().is_some() || !records.all(|r| r.as_ref() == Some(&first)) {
        return None;
    }
    first.placement().ok().map(|p| p.current)
}

/// What each replica of `key` (its preference list for n = 3) holds.
fn replicas_of(cluster: &Cluster, key: &str) -> BTreeMap<String, Vec<Sib>> {
    let layout = &settled_layout(cluster)
        .or_else(|| {
            cluster
                .members()
                .iter()
                .find_map(|i| cluster.net.core(*i)?.coordinator.layout())
        })
        .unwrap_or_else(|| cluster.bootstrap.placement().expect("a valid layout").current);
    let p = layout.partition_of(key.as_bytes());
    layout
        .preference_list(p, 3)
        .iter()
        .map(|id| {
            let i = crate::net::index_of(id);
            let object = cluster.net.core(i).and_then(|c| held(&c, layout, key.as_bytes()));
            (id.to_string(), sibs(object.as_ref()))
        })
        .collect()
}

/// The members agree on a layout with no change under way, every replica of every key
/// agrees, and no node still holds hints or strays to hand over.
fn quiet(cluster: &Cluster, keys: &[String]) -> bool {
    if settled_layout(cluster).is_none() {
        return false;
    }
    let agree = keys.iter().all(|k| {
        let r = replicas_of(cluster, k);
        let mut sets = r.values();
        let first = sets.next();
        sets.all(|s| Some(s) == first)
    });
    agree
        && (0..cluster.total()).all(|i| {
            cluster
                .net
                .core(i)
                .is_none_or(|c| c.hints.pending().is_empty() && !c.strays_pending())
        })
        && cluster.members().iter().all(|i| cluster.net.is_up(*i))
}

/// One read of `key` at `r` through node `i`, recorded in the history as `client`'s; the
/// object read, if it succeeded.
async fn recorded_read(
    cluster: Arc<Cluster>,
    client: u32,
    i: usize,
    key: String,
    r: u8,
) -> Option<(Option<Object>, Vec<Sib>)> {
    let net = &cluster.net;
    let timeout = cluster.config.node.request_timeout + Duration::from_millis(500);
    let invoked = net.now_ms();
    let req = GetRequest {
        key: Bytes::from(key.clone()),
        n: Some(3),
        r: Some(r),
        timeout_ms: None,
        sloppy: None,
    };
    let got = at_node(net, i, timeout, move |core| {
        let req = req.clone();
        async move { core.coordinator.get(req).await.map_err(|e| e.to_string()) }
    })
    .await;
    let (outcome, read) = match got {
        Ok(resp) => {
            let returned = sibs(resp.object.as_ref());
            (
                Outcome::Ok {
                    returned: returned.clone(),
                    hinted: resp.hinted,
                },
                Some((resp.object, returned)),
            )
        }
        Err(e) => (Outcome::Failed(e), None),
    };
    cluster.ops.lock().push(Op {
        client,
        key,
        node: node_id(i).to_string(),
        invoked_ms: invoked,
        completed_ms: net.now_ms(),
        kind: OpKind::Read { n: 3, r },
        outcome,
    });
    read
}

/// One client: read a key, add an element to the union of its siblings' sets (or, now and
/// then, delete it), write back with the read's context. Each operation goes to a node the
/// client picks at random among those that accept connections.
async fn client(cluster: Arc<Cluster>, client: u32, seed: u64, end: tokio::time::Instant) {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = &cluster.net;
    let config = &cluster.config;
    let timeout = config.node.request_timeout + Duration::from_millis(500);
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..=30))).await;
        // Any node that is up and has a layout (a member, a joiner, or one leaving).
        let up: Vec<usize> = (0..cluster.total())
            .filter(|i| net.core(*i).is_some_and(|c| c.coordinator.placement().is_some()))
            .collect();
        if up.is_empty() {
            continue;
        }
        let i = up[rng.gen_range(0..up.len())];
        let key = key_name(rng.gen_range(0..config.keys));
        let (r, w) = (rng.gen_range(1..=3u8), rng.gen_range(1..=3u8));
        let node = node_id(i).to_string();

        let Some((object, returned)) = recorded_read(cluster.clone(), client, i, key.clone(), r).await else {
            continue;
        };

        let delete = object.is_some() && rng.gen_bool(0.06);
        let write = cluster.next_write.fetch_add(1, Ordering::Relaxed);
        let parents: Vec<u64> = returned.iter().filter_map(Sib::write).collect();
        let mut elements: BTreeSet<u64> = BTreeSet::new();
        let element = (!delete).then_some(write);
        if let Some(e) = element {
            for s in &returned {
                if let Sib::Value { elements: els, .. } = s {
                    elements.extend(els.iter().copied());
                }
            }
            elements.insert(e);
        }
        let req = PutRequest {
            key: Bytes::from(key.clone()),
            value: element.map(|_| Bytes::from(Sib::encode(write, &elements))),
            context: object.map(|o| o.siblings.context()),
            n: Some(3),
            w: Some(w),
            timeout_ms: None,
            forwarded: false,
            sloppy: None,
        };
        let invoked = net.now_ms();
        let put = at_node(net, i, timeout, move |core| {
            let req = req.clone();
            async move { core.coordinator.put(req).await.map_err(|e| e.to_string()) }
        })
        .await;
        cluster.ops.lock().push(Op {
            client,
            key,
            node,
            invoked_ms: invoked,
            completed_ms: net.now_ms(),
            kind: OpKind::Write {
                write,
                element,
                elements,
                parents,
                n: 3,
                w,
            },
            outcome: match put {
                Ok(resp) => Outcome::Ok {
                    returned: Vec::new(),
                    hinted: resp.hinted,
                },
                Err(e) => Outcome::Failed(e),
            },
        });
    }
}

/// A client request to node `i`: waits while the node is paused, and fails if the node
/// crashes before answering (the client's connection dies with it).
async fn at_node<T, F, Fut>(net: &Arc<Net>, i: usize, timeout: Duration, f: F) -> Result<T, String>
where
    F: FnOnce(Arc<Core>) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let inc = net.incarnation(i);
    let run = async {
        net.runnable(i).await;
        let core = net.core(i).ok_or("connection refused")?;
        let answer = f(core).await;
        net.runnable(i).await;
        if !net.alive(i, inc) {
            return Err("the node crashed before answering".to_string());
        }
        answer
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| "client timeout".to_string())?
}

/// The nemesis: every 0.3–2 s one fault, healed after a while. At most two nodes (a
/// minority of five) are down or paused at once, so quorums stay possible.
async fn nemesis(cluster: Arc<Cluster>, end: tokio::time::Instant) {
    let net = cluster.net.clone();
    let nodes = cluster.total();
    while tokio::time::Instant::now() < end {
        let wait = net.with_rng(|r| Duration::from_millis(r.gen_range(300..2000)));
        tokio::time::sleep(wait).await;
        if tokio::time::Instant::now() >= end {
            break;
        }
        let members = cluster.members();
        let max_out = (members.len() - 1) / 2;
        let out = members.iter().filter(|i| !net.is_up(**i) || net.is_paused(**i)).count();
        // Kinds 7..10 change the membership.
        let kinds = if cluster.config.membership { 10 } else { 7 };
        let (kind, victim, lasts) = net.with_rng(|r| {
            (
                r.gen_range(0..kinds),
                members[r.gen_range(0..members.len())],
                Duration::from_millis(r.gen_range(200..8000)),
            )
        });
        let c = cluster.clone();
        // Membership changes keep at least four members, so that n = 3 leaves a fallback.
        let spare = (cluster.config.nodes..nodes).find(|s| !cluster.started.lock().contains(s));
        let runs = |i: usize| net.is_up(i) && !net.is_paused(i);
        let idle = cluster.config.membership && !*cluster.changing.lock();
        let begin = || *cluster.changing.lock() = true;
        match kind {
            7 if idle && spare.is_some() => {
                begin();
                let s = spare.expect("checked");
                tokio::spawn(async move { c.join(s).await });
            }
            8 if idle && members.len() > 4 && runs(victim) => {
                begin();
                tokio::spawn(async move { c.leave(victim).await });
            }
            9 if idle && members.len() > 4 && out < max_out && runs(victim) => {
                begin();
                tokio::spawn(async move { c.remove(victim).await });
            }
            0 | 1 if out < max_out && net.is_up(victim) && !net.is_paused(victim) => {
                cluster.crash(victim);
                tokio::spawn(async move {
                    tokio::time::sleep(lasts).await;
                    c.restart(victim);
                });
            }
            2 if out < max_out && net.is_up(victim) && !net.is_paused(victim) => {
                net.set_paused(victim, true);
                cluster.fault("pause", node_id(victim).to_string());
                tokio::spawn(async move {
                    tokio::time::sleep(lasts).await;
                    if c.net.is_paused(victim) {
                        c.net.set_paused(victim, false);
                        c.fault("resume", node_id(victim).to_string());
                    }
                });
            }
            3 => {
                // A two-way split into a minority and the rest.
                let minority: Vec<usize> = net.with_rng(|r| {
                    let size = r.gen_range(1..=max_out);
                    rand::seq::index::sample(r, nodes, size).into_vec()
                });
                for &a in &minority {
                    for b in (0..nodes).filter(|b| !minority.contains(b)) {
                        net.cut(a, b);
                        net.cut(b, a);
                    }
                }
                cluster.fault("partition", format!("{minority:?} | rest (by index)"));
                heal_later(c, lasts);
            }
            4 => {
                // One-way: `victim` stops hearing from some nodes, which still hear it.
                let from: Vec<usize> = net.with_rng(|r| {
                    let size = r.gen_range(1..nodes);
                    rand::seq::index::sample(r, nodes, size).into_vec()
                });
                for &a in from.iter().filter(|a| **a != victim) {
                    net.cut(a, victim);
                }
                cluster.fault("one-way", format!("{from:?} -/-> {victim} (by index)"));
                heal_later(c, lasts);
            }
            5 => {
                let weather = net.with_rng(|r| Weather {
                    min_delay: Duration::from_micros(100),
                    max_delay: Duration::from_millis(r.gen_range(2..40)),
                    tail: r.gen_range(0.0..0.2),
                    tail_max: Duration::from_millis(r.gen_range(50..1500)),
                    loss: r.gen_range(0.0..0.3),
                    duplicate: r.gen_range(0.0..0.2),
                });
                cluster.fault(
                    "weather",
                    format!(
                        "delay up to {:?} (+{:?} tail, {:.0}%), loss {:.0}%, duplicates {:.0}%",
                        weather.max_delay,
                        weather.tail_max,
                        weather.tail * 100.0,
                        weather.loss * 100.0,
                        weather.duplicate * 100.0
                    ),
                );
                net.set_weather(weather);
                tokio::spawn(async move {
                    tokio::time::sleep(lasts).await;
                    c.net.set_weather(Weather::calm());
                });
            }
            6 => {
                // Step a host's clock (as NTP does) to anywhere within the skew bound: hint
                // ages, tombstone stamps and the tombstone GC cutoff read it.
                let skew_ms = cluster.config.max_skew.as_millis() as i64;
                let to_ms = net.with_rng(|r| r.gen_range(-skew_ms..=skew_ms));
                let by_ms = cluster.clocks[victim].step_to(EPOCH_MS + to_ms);
                cluster.fault("clock-step", format!("{} by {by_ms} ms", node_id(victim)));
            }
            _ => {}
        }
    }
}

fn heal_later(cluster: Arc<Cluster>, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        cluster.net.heal_links();
        cluster.fault("heal-links", String::new());
    });
}
