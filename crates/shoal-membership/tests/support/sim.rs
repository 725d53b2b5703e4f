//! A seeded, deterministic discrete-event simulator for the SWIM core, shared by `tests/sim.rs`
//! and `examples/swim_detection.rs`.
//!
//! Time is virtual: the simulator jumps from one event to the next (a message delivery or a
//! node's [`Swim::next_deadline`]), so two simulated minutes take milliseconds. Every random
//! choice (latency, loss, node seeds) comes from the run's seed, so a seed replays exactly.
//!
//! The network delivers each message after a latency drawn uniformly from
//! `[min_latency, max_latency]`, drops it with probability `loss`, and drops it if the directed
//! pair (from, to) is blocked, which allows one-way partitions. A crashed node neither sends nor
//! receives. A paused node (SIGSTOP) runs no timers; datagrams for it wait in a bounded socket
//! buffer and are handled when it resumes, late, as a real process would.
//!
//! Like the real driver, the simulator finds where to send a message from the destination's
//! meta in the *sender's* member table: a node cannot reach a member it does not know.
//!
//! The simulated application on each node does what Shoal's layout owner does with the user
//! channel: it rebroadcasts a user payload the first time it arrives (when enabled), and it
//! adopts a peer's user state when that state's version (an 8-byte big-endian prefix) is newer.

// Each includer uses part of this file: the test does not print percentiles, the example does
// not partition.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shoal_membership::{Liveness, Message, NodeId, Output, Swim, SwimConfig, Time};
use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// A member's meta in the simulation: where to send to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimMeta {
    pub addr: usize,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub swim: SwimConfig,
    /// Probability that the network drops a message.
    pub loss: f64,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Messages a paused node's socket buffer holds; further ones are dropped, as the kernel
    /// would.
    pub paused_buffer: usize,
    /// Whether the simulated application rebroadcasts a user payload it receives for the first
    /// time.
    pub rebroadcast_user: bool,
    /// Fold every sent message into [`Sim::trace_hash`] (for the determinism test; costs a
    /// `Debug` format per message).
    pub trace_messages: bool,
    /// Print every delivery to or from these nodes, and every liveness change they see, for
    /// replaying a failed seed: `SHOAL_SIM_TRACE=all` or `SHOAL_SIM_TRACE=1,5`.
    pub print: Option<Vec<usize>>,
}

impl SimConfig {
    /// A LAN: memberlist's LAN defaults, 0.5–5 ms latency, no loss.
    pub fn lan(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            swim: SwimConfig::default(),
            loss: 0.0,
            min_latency: Duration::from_micros(500),
            max_latency: Duration::from_millis(5),
            paused_buffer: 1024,
            rebroadcast_user: true,
            trace_messages: false,
            print: std::env::var("SHOAL_SIM_TRACE").ok().map(|v| match v.as_str() {
                "all" => (0..nodes).collect(),
                list => list.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Paused,
    Crashed,
}

/// One [`Output::Liveness`], with who saw it and when.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LivenessEvent {
    pub at: Time,
    pub observer: usize,
    pub subject: usize,
    pub from: Option<Liveness>,
    pub to: Liveness,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Messages handed to the network.
    pub sent: u64,
    pub delivered: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped by a partition.
    pub blocked: u64,
    /// `Send` to a member the sender does not know (no address).
    pub unaddressable: u64,
    /// Arrived at a crashed node, or overflowed a paused node's buffer.
    pub dropped_at_node: u64,
}

pub struct SimNode {
    pub swim: Swim<SimMeta>,
    pub state: NodeState,
    /// Messages waiting while paused.
    inbox: Vec<Message<SimMeta>>,
    /// Only the timer event with this generation is live; older ones were superseded.
    timer_gen: u64,
    timer_at: Option<Time>,
    /// User payloads this node's application received, with when.
    pub user_received: Vec<(Time, Vec<u8>)>,
    /// Version of the user state this node's application holds, and when it got it.
    pub user_state_version: u64,
    pub user_state_at: Option<Time>,
}

enum Event {
    Deliver { to: usize, message: Message<SimMeta> },
    Timer { node: usize, generation: u64 },
}

struct Scheduled {
    at: Time,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event; `seq` breaks ties in
    /// scheduling order, which keeps runs deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub struct Sim {
    pub config: SimConfig,
    now: Time,
    nodes: Vec<SimNode>,
    ids: Vec<NodeId>,
    index: BTreeMap<NodeId, usize>,
    queue: BinaryHeap<Scheduled>,
    next_seq: u64,
    rng: StdRng,
    blocked: BTreeSet<(usize, usize)>,
    /// Every liveness change any node reported, in order.
    pub log: Vec<LivenessEvent>,
    pub counters: Counters,
    trace: DefaultHasher,
    /// Set when a liveness or user event happened since the last predicate check.
    dirty: bool,
    restarts: u64,
}

/// A per-node seed derived from the run's seed (splitmix-style, so nodes differ).
fn node_seed(seed: u64, node: usize, restart: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((node as u64 + 1) << 32) ^ restart.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

pub fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("n{i:02}"))
}

/// Encodes a user-state version as the simulated application does.
pub fn user_state(version: u64) -> Vec<u8> {
    version.to_be_bytes().to_vec()
}

impl Sim {
    /// `config.nodes` nodes, each knowing only itself; see [`Sim::bootstrap`].
    pub fn new(config: SimConfig) -> Self {
        let ids: Vec<NodeId> = (0..config.nodes).map(node_id).collect();
        let index = ids.iter().cloned().enumerate().map(|(i, id)| (id, i)).collect();
        let nodes = (0..config.nodes)
            .map(|i| SimNode {
                swim: Swim::new(
                    ids[i].clone(),
                    SimMeta { addr: i },
                    0,
                    config.swim.clone(),
                    node_seed(config.seed, i, 0),
                    Time::ZERO,
                ),
                state: NodeState::Up,
                inbox: Vec::new(),
                timer_gen: 0,
                timer_at: None,
                user_received: Vec::new(),
                user_state_version: 0,
                user_state_at: None,
            })
            .collect();
        let rng = StdRng::seed_from_u64(config.seed ^ 0x5EED_5EED);
        let mut sim = Sim {
            config,
            now: Time::ZERO,
            nodes,
            ids,
            index,
            queue: BinaryHeap::new(),
            next_seq: 0,
            rng,
            blocked: BTreeSet::new(),
            log: Vec::new(),
            counters: Counters::default(),
            trace: DefaultHasher::new(),
            dirty: false,
            restarts: 0,
        };
        for i in 0..sim.nodes.len() {
            sim.reschedule(i);
        }
        sim
    }

    /// Every node but node 0 sends a join request to node 0, as nodes started with node 0 as
    /// their seed would.
    pub fn bootstrap(&mut self) {
        for i in 1..self.nodes.len() {
            self.join(i, 0);
        }
    }

    /// `node` sends a join request to `seed`'s address.
    pub fn join(&mut self, node: usize, seed: usize) {
        let message = self.nodes[node].swim.join_request(self.now);
        self.transmit(node, seed, message);
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn id(&self, i: usize) -> &NodeId {
        &self.ids[i]
    }

    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    pub fn swim(&self, i: usize) -> &Swim<SimMeta> {
        &self.nodes[i].swim
    }

    /// Runs `f` on node `i`'s core as its application would, then carries out the outputs.
    pub fn with_swim<R>(&mut self, i: usize, f: impl FnOnce(&mut Swim<SimMeta>, Time) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].swim, now);
        self.reschedule(i);
        r
    }

    /// Sets node `i`'s user state to `version`, as its application would after a layout change.
    pub fn set_user_state(&mut self, i: usize, version: u64) {
        let node = &mut self.nodes[i];
        node.user_state_version = version;
        node.user_state_at = Some(self.now);
        node.swim.set_user_state(user_state(version));
    }

    pub fn broadcast_user(&mut self, i: usize, data: Vec<u8>) {
        self.nodes[i].swim.broadcast_user(data);
    }

    /// What `observer` believes about `subject`.
    pub fn liveness(&self, observer: usize, subject: usize) -> Option<Liveness> {
        self.nodes[observer].swim.member(&self.ids[subject]).map(|m| m.liveness)
    }

    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].state == NodeState::Up)
            .collect()
    }

    /// Every node in `observers` holds `subject` at `liveness`.
    pub fn all_see(&self, observers: &[usize], subject: usize, liveness: Liveness) -> bool {
        observers
            .iter()
            .all(|&o| o == subject || self.liveness(o, subject) == Some(liveness))
    }

    /// Every up node sees every up node Alive.
    pub fn up_nodes_agree_all_alive(&self) -> bool {
        let up = self.up();
        up.iter().all(|&s| self.all_see(&up, s, Liveness::Alive))
    }

    /// A description of who sees `subject` how, for failure messages.
    pub fn views_of(&self, subject: usize) -> String {
        (0..self.nodes.len())
            .filter(|&o| o != subject)
            .map(|o| format!("{}({:?})={:?}", o, self.nodes[o].state, self.liveness(o, subject)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ----- faults -----

    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// Drops every message from `from` to `to` (one direction only).
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// Blocks both directions between the two groups.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.block(x, y);
                self.block(y, x);
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// The node stops; messages to it are lost. Its state is kept only so that a test can read
    /// its last incarnation.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].state = NodeState::Crashed;
        self.nodes[i].inbox.clear();
    }

    pub fn pause(&mut self, i: usize) {
        self.nodes[i].state = NodeState::Paused;
    }

    /// Resumes a paused node: it handles what its socket buffer held, then its overdue timers.
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].state = NodeState::Up;
        for message in std::mem::take(&mut self.nodes[i].inbox) {
            self.deliver(i, message);
        }
        self.nodes[i].timer_at = None;
        self.reschedule(i);
    }

    /// Replaces node `i` with a fresh process at `incarnation`, which joins through `seed`.
    pub fn restart(&mut self, i: usize, incarnation: u64, seed: usize) {
        self.restarts += 1;
        let swim = Swim::new(
            self.ids[i].clone(),
            SimMeta { addr: i },
            incarnation,
            self.config.swim.clone(),
            node_seed(self.config.seed, i, self.restarts),
            self.now,
        );
        let node = &mut self.nodes[i];
        node.swim = swim;
        node.state = NodeState::Up;
        node.inbox.clear();
        node.timer_at = None;
        node.user_received.clear();
        node.user_state_version = 0;
        node.user_state_at = None;
        self.join(i, seed);
        self.reschedule(i);
    }

    // ----- running -----

    /// Processes every event up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Time) {
        while self.queue.peek().is_some_and(|e| e.at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `pred` holds, checked after each event that changed a liveness view or user
    /// data (the only things predicates look at), so the time returned is exact. None if it
    /// does not hold by `deadline`.
    pub fn run_until_pred(&mut self, deadline: Time, mut pred: impl FnMut(&Sim) -> bool) -> Option<Time> {
        if pred(self) {
            return Some(self.now);
        }
        while self.queue.peek().is_some_and(|e| e.at <= deadline) {
            self.step();
            if self.dirty {
                self.dirty = false;
                if pred(self) {
                    return Some(self.now);
                }
            }
        }
        self.now = self.now.max(deadline);
        pred(self).then_some(self.now)
    }

    /// A hash of every liveness event and, with `trace_messages`, every message sent.
    pub fn trace_hash(&self) -> u64 {
        let mut h = self.trace.clone();
        self.log.hash(&mut h);
        self.counters.hash(&mut h);
        h.finish()
    }

    fn step(&mut self) {
        let Some(Scheduled { at, event, .. }) = self.queue.pop() else {
            return;
        };
        self.now = at;
        match event {
            Event::Deliver { to, message } => match self.nodes[to].state {
                NodeState::Up => {
                    self.counters.delivered += 1;
                    self.deliver(to, message);
                }
                NodeState::Paused if self.nodes[to].inbox.len() < self.config.paused_buffer => {
                    self.nodes[to].inbox.push(message);
                }
                NodeState::Paused | NodeState::Crashed => self.counters.dropped_at_node += 1,
            },
            Event::Timer { node, generation } => {
                let n = &mut self.nodes[node];
                if n.state != NodeState::Up || n.timer_gen != generation {
                    return;
                }
                n.timer_at = None;
                let outputs = n.swim.tick(self.now);
                self.dispatch(node, outputs);
                self.reschedule(node);
            }
        }
    }

    fn printing(&self, node: usize) -> bool {
        self.config.print.as_ref().is_some_and(|p| p.contains(&node))
    }

    fn deliver(&mut self, to: usize, message: Message<SimMeta>) {
        let from = message
            .from()
            .as_str()
            .trim_start_matches('n')
            .parse()
            .unwrap_or(usize::MAX);
        if self.printing(to) || self.printing(from) {
            println!("{:>12.6} {:>2} -> {:>2} {message:?}", self.now.as_secs_f64(), from, to);
        }
        let outputs = self.nodes[to].swim.handle(message, self.now);
        self.dispatch(to, outputs);
        self.reschedule(to);
    }

    /// Keeps one live timer event per node, at its next deadline.
    fn reschedule(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.state != NodeState::Up {
            return;
        }
        let at = node.swim.next_deadline().max(self.now);
        if node.timer_at == Some(at) {
            return;
        }
        node.timer_gen += 1;
        node.timer_at = Some(at);
        let event = Event::Timer {
            node: i,
            generation: node.timer_gen,
        };
        self.push(at, event);
    }

    fn push(&mut self, at: Time, event: Event) {
        self.next_seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.next_seq,
            event,
        });
    }

    fn dispatch(&mut self, from: usize, outputs: Vec<Output<SimMeta>>) {
        for output in outputs {
            match output {
                Output::Send { to, message } => match self.nodes[from].swim.member(&to).map(|m| m.meta.addr) {
                    Some(addr) if addr < self.nodes.len() => self.transmit(from, addr, message),
                    _ => self.counters.unaddressable += 1,
                },
                Output::Liveness { id, from: was, to } => {
                    if let Some(&subject) = self.index.get(&id) {
                        if self.printing(from) {
                            println!(
                                "{:>12.6} {from:>2} sees {subject} {was:?} -> {to:?}",
                                self.now.as_secs_f64()
                            );
                        }
                        self.log.push(LivenessEvent {
                            at: self.now,
                            observer: from,
                            subject,
                            from: was,
                            to,
                        });
                        self.dirty = true;
                    }
                }
                Output::Meta { .. } => {}
                Output::User(data) => {
                    self.dirty = true;
                    if self.config.rebroadcast_user {
                        self.nodes[from].swim.broadcast_user(data.clone());
                    }
                    self.nodes[from].user_received.push((self.now, data));
                }
                Output::UserState(bytes) => {
                    let Ok(version) = <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_be_bytes) else {
                        continue;
                    };
                    if version > self.nodes[from].user_state_version {
                        self.dirty = true;
                        self.set_user_state(from, version);
                    }
                }
            }
        }
    }

    fn transmit(&mut self, from: usize, to: usize, message: Message<SimMeta>) {
        self.counters.sent += 1;
        if self.config.trace_messages {
            (self.now, from, to).hash(&mut self.trace);
            format!("{message:?}").hash(&mut self.trace);
        }
        if self.blocked.contains(&(from, to)) {
            self.counters.blocked += 1;
            return;
        }
        if self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss) {
            self.counters.lost += 1;
            return;
        }
        let latency = self.rng.gen_range(self.config.min_latency..=self.config.max_latency);
        // A real driver serializes here; `Message` is serde-ready and a clone stands in for the
        // round trip (no serializer is among this crate's dependencies).
        self.push(self.now + latency, Event::Deliver { to, message });
    }
}

// ----- scenarios shared by the tests and the example -----

/// How long a fresh cluster may take to agree that everyone is Alive.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(60);

/// Probe periods within which, with probability at least 1 − 10⁻⁶, some member has started a
/// probe of a given member. Each of the n − 1 others probes it once per round of n − 1 periods
/// at a uniformly random position, so the chance that none of them reaches it within m periods
/// is at most (1 − m/(n−1))^(n−1) ≤ e^−m; e^−14 < 10⁻⁶. Randomized round-robin also guarantees
/// every prober reaches it within 2(n − 1) − 1 periods (SWIM §4.3), which is tighter for n ≤ 8.
pub fn first_probe_periods(n: usize) -> u32 {
    let round_robin = 2 * (n.max(2) as u32 - 1) - 1;
    round_robin.min(14)
}

/// The bound on crash detection that `detects_crash_within_bound` asserts: from the crash
/// until every live member holds the crashed member Dead, on a loss-free network, with every
/// member's Lifeguard health at 0 (checked before the crash; with no loss, the helpers of a
/// probe of the dead member all `Nack` in time, so it stays 0 and no interval is stretched):
///
/// 1. some member starts a probe of it within [`first_probe_periods`] periods;
/// 2. that probe fails at the end of its period (+1 period): the ping and the indirect pings
///    all go unanswered, and the prober suspects it;
/// 3. the suspicion reaches every member within [`dissemination`], `λ·⌈log10(n + 1)⌉` periods:
///    SWIM §5's bound for infection-style dissemination, and exactly how long each member that
///    learns it (or confirms it, which re-gossips it) keeps piggybacking it;
/// 4. each member's suspicion timer starts at Lifeguard's maximum,
///    `suspicion_max_timeout_mult · suspicion_mult · max(1, log10 n) · probe_interval`, and only
///    shrinks as confirmations arrive; no refutation can come, so every member holds it Dead
///    within `max` of hearing the suspicion, by its own timer if the Dead update has not
///    reached it first.
///
/// Steps 1 and 3 hold with high probability, not always; for n ≤ 8, step 1 is SWIM's
/// deterministic round-robin bound, and a member that missed the suspicion gossip probes the
/// victim itself within it. Network latency (at most ~5 ms per hop of this chain) is covered by
/// one extra probe timeout.
pub fn detection_bound(config: &SwimConfig, n: usize) -> Duration {
    let p = config.probe_interval;
    let (_, max) = config.suspicion_bounds(n);
    p * first_probe_periods(n) + p + max + dissemination(config, n) + config.probe_timeout
}

/// Step 3 of [`detection_bound`]: `retransmit_mult · ⌈log10(n + 1)⌉` probe periods.
pub fn dissemination(config: &SwimConfig, n: usize) -> Duration {
    config.probe_interval * config.retransmit_limit(n)
}

/// A bootstrapped cluster in which every node sees every node Alive, or an error.
pub fn converged_cluster(config: SimConfig) -> Result<Sim, String> {
    let mut sim = Sim::new(config);
    sim.bootstrap();
    match sim.run_until_pred(CONVERGE_LIMIT, Sim::up_nodes_agree_all_alive) {
        Some(_) => Ok(sim),
        None => Err(format!("cluster did not converge within {CONVERGE_LIMIT:?}")),
    }
}

/// One crash-detection measurement.
#[derive(Clone, Copy, Debug)]
pub struct Detection {
    /// Crash → first member marks it Suspect.
    pub first_suspect: Duration,
    /// Crash → first member marks it Dead.
    pub first_dead: Duration,
    /// Crash → the last live member marks it Dead.
    pub all_dead: Duration,
    /// Messages sent from the crash to full detection.
    pub messages: u64,
}

/// Bootstraps `n` nodes, runs a seed-chosen extra 0–2 probe intervals (so the crash falls at a
/// random phase of everybody's probe cycle), crashes a seed-chosen node and waits up to
/// `limit` for every live node to mark it Dead. Also checks that no other node is ever
/// marked Suspect or Dead, since the network is loss-free.
pub fn measure_crash_detection(n: usize, seed: u64, limit: Duration) -> Result<Detection, String> {
    let mut sim = converged_cluster(SimConfig::lan(n, seed))?;
    // The bound assumes unscaled probe intervals. Joining can raise a member's local health (a
    // probe of a member still busy learning the cluster can fail); each successful probe lowers
    // it again, so let that happen first.
    let interval = sim.config.swim.probe_interval;
    for _ in 0..4 * sim.config.swim.awareness_max_multiplier {
        if (0..n).all(|i| sim.swim(i).local_health() == 0) {
            break;
        }
        sim.run_for(interval);
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC0FFEE);
    sim.run_for(interval.mul_f64(rng.gen_range(1.0..3.0)));
    if let Some(i) = (0..n).find(|&i| sim.swim(i).local_health() != 0) {
        return Err(format!(
            "node {i} has local health {} before the crash",
            sim.swim(i).local_health()
        ));
    }
    let victim = rng.gen_range(0..n);
    let crash_at = sim.now();
    let sent_before = sim.counters.sent;
    let log_start = sim.log.len();
    sim.crash(victim);
    let live: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let done = sim.run_until_pred(crash_at + limit, |s| s.all_see(&live, victim, Liveness::Dead));
    let Some(done) = done else {
        return Err(format!(
            "node {victim} crashed at {crash_at:?} and was not Dead everywhere after {limit:?}: {}",
            sim.views_of(victim)
        ));
    };
    let events = &sim.log[log_start..];
    if let Some(e) = events.iter().find(|e| e.subject != victim && e.to != Liveness::Alive) {
        return Err(format!(
            "a live node was marked {:?} on a loss-free network: {e:?}",
            e.to
        ));
    }
    let first = |to: Liveness| {
        events
            .iter()
            .find(|e| e.subject == victim && e.to == to)
            .map(|e| e.at - crash_at)
            .unwrap_or(done - crash_at)
    };
    Ok(Detection {
        first_suspect: first(Liveness::Suspect),
        first_dead: first(Liveness::Dead),
        all_dead: done - crash_at,
        messages: sim.counters.sent - sent_before,
    })
}

/// One false-positive measurement under uniform loss, with no faults.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossRun {
    pub probes: u64,
    pub probes_failed: u64,
    /// Members moved from Alive to Suspect by a failed probe (all of them false: nobody fails).
    pub suspicions: u64,
    pub refutations: u64,
    /// Dead verdicts about anyone (all false).
    pub deaths: u64,
    /// Highest Lifeguard health any node reached (sampled every probe interval).
    pub max_health: u32,
    pub messages: u64,
    /// Messages the network dropped.
    pub lost: u64,
}

impl LossRun {
    /// Accumulates another run into this total (health is the maximum, the rest sums).
    pub fn add(&mut self, r: &LossRun) {
        self.probes += r.probes;
        self.probes_failed += r.probes_failed;
        self.suspicions += r.suspicions;
        self.refutations += r.refutations;
        self.deaths += r.deaths;
        self.max_health = self.max_health.max(r.max_health);
        self.messages += r.messages;
        self.lost += r.lost;
    }
}

/// Bootstraps `n` nodes on a clean network, then runs `duration` at `loss`.
pub fn measure_false_positives(n: usize, seed: u64, loss: f64, duration: Duration) -> Result<LossRun, String> {
    let mut sim = converged_cluster(SimConfig::lan(n, seed))?;
    sim.set_loss(loss);
    let before: Vec<_> = (0..n).map(|i| sim.swim(i).stats()).collect();
    let (log_start, sent_start, lost_start, start) = (sim.log.len(), sim.counters.sent, sim.counters.lost, sim.now());
    let mut max_health = 0;
    while sim.now() < start + duration {
        sim.run_for(sim.config.swim.probe_interval);
        max_health = (0..n).map(|i| sim.swim(i).local_health()).fold(max_health, u32::max);
    }
    let mut run = LossRun {
        max_health,
        messages: sim.counters.sent - sent_start,
        lost: sim.counters.lost - lost_start,
        ..LossRun::default()
    };
    for (i, b) in before.iter().enumerate() {
        let a = sim.swim(i).stats();
        run.probes += a.probes - b.probes;
        run.probes_failed += a.probes_failed - b.probes_failed;
        run.suspicions += a.suspicions_raised - b.suspicions_raised;
        run.refutations += a.refutations - b.refutations;
    }
    run.deaths = sim.log[log_start..].iter().filter(|e| e.to == Liveness::Dead).count() as u64;
    Ok(run)
}

/// The `p`-quantile (0..=1) of `values` by nearest rank.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut v = values.to_vec();
    v.sort();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Formats a duration as seconds with millisecond precision.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
