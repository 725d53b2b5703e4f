//! The SWIM state machine.
//!
//! # Protocol
//!
//! This is SWIM (Das, Gupta and Motivala, DSN 2002) as HashiCorp's memberlist implements it, with
//! the three Lifeguard refinements (Dadgar, Phillips and Currey, 2018):
//!
//! * **Failure detection** (SWIM §3.1, §4.3). Once per probe interval a node pings the next member
//!   of a randomly shuffled list (randomized round-robin, so every member is probed within two
//!   rounds). With no `Ack` within the probe timeout it asks `indirect_checks` other members to
//!   ping the target on its behalf (`PingReq`), which gets around a lossy or congested path
//!   between just the two of them. With no `Ack` from anyone by the end of the interval the
//!   target becomes *Suspect*.
//! * **Suspicion** (SWIM §4.2). A suspect has a window in which to refute by raising its
//!   *incarnation* number and announcing itself *Alive*; only when that window closes is it
//!   declared *Dead*. Incarnations order the claims about one member, so old news never
//!   overrides new.
//! * **Dissemination** (SWIM §4.1). Membership updates ride on the failure detector's own
//!   messages (piggybacking) and each is retransmitted about λ·log(n) times, which reaches every
//!   member with high probability. A periodic full-table exchange with one random member
//!   (memberlist's push/pull) repairs whatever the epidemic missed and lets partitions heal.
//! * **Lifeguard local health** (LHA-Probe). A node that is itself slow (CPU starved, paused,
//!   losing packets) would otherwise accuse healthy peers. It keeps a score that rises when its
//!   probes fail without the helpers' `Nack`s that a healthy node would have received, and when
//!   it has to refute suspicion about itself, and it stretches its probe interval and timeout by
//!   `score + 1`.
//! * **Lifeguard dynamic suspicion** (LHA-Suspicion). The suspicion window starts long and
//!   shrinks logarithmically as independent members confirm the suspicion, so a lone slow
//!   accuser cannot kill a member quickly but a crash that everybody sees is declared fast.
//! * **Lifeguard buddy system**. A ping to a member we suspect carries the suspicion itself, so
//!   the suspect learns about it on the first message that reaches it rather than whenever the
//!   epidemic gets there. This implementation applies the same rule to members it holds Dead,
//!   and to replies sent to them: a Dead member that is in fact running (resumed from a pause,
//!   or at the far side of a healed partition) learns it must refute on its first exchange.
//!
//! # Departures from memberlist
//!
//! Each of these was either forced by the sans-IO design or found necessary in the simulator
//! (`tests/sim.rs`), which at memberlist's LAN settings and 10% message loss otherwise produced
//! false Dead verdicts; the reasons are documented where each is implemented.
//!
//! * There is no separate gossip timer or TCP fallback: updates ride only on probe traffic and
//!   push/pull, as in the SWIM paper.
//! * A `PingReq` helper `Nack`s after [`SwimConfig::nack_timeout`], half the prober's remaining
//!   window, so that the `Nack` can arrive before the prober stops counting.
//! * Local health scoring follows memberlist: a failed probe costs one point per missing
//!   `Nack`, or one point when no helper could be asked; a failed probe whose helpers all
//!   `Nack` costs nothing, since the helpers have just shown that our network works.
//! * Push/pull rows are hearsay: they start suspicions but never confirm them
//!   (`Swim::merge`). Push/pull also reconnects to Dead members, as Serf does
//!   (`Swim::push_pull`).
//! * Refutations do not rely on the epidemic alone. Accusations about us are answered to the
//!   members that hold them (`Swim::answer_accuser`); a claim older than the Alive we hold is
//!   answered with that Alive (`Swim::answer_claims`); the suspicions a member holds ride on
//!   its probes until they resolve, so that stale ones meet that answer
//!   (`Swim::request_piggyback`); and a suspect gets one last probe before its timer runs out
//!   (`Swim::start_probe`). Together these took the simulator from occasional false Dead
//!   verdicts at 10% loss to none in 12,000 two-minute runs of 5 to 50 members.
//! * Every `Ping` and `PingReq` carries its sender's Alive, so that a member that has not yet
//!   heard of a joiner can still address its reply (memberlist's ping carries the source
//!   address).
//!
//! # Sans-IO
//!
//! [`Swim`] owns no clock, socket, thread or global randomness. The driver passes each arriving
//! [`Message`] to [`Swim::handle`], calls [`Swim::tick`] when [`Swim::next_deadline`] comes, and
//! carries out the returned [`Output`]s. All randomness comes from a `StdRng` seeded in
//! [`Swim::new`], and every collection that is iterated is ordered, so the same seed and the same
//! inputs give the same outputs; the simulator relies on this to replay a failing run.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::time::Duration;

pub use shoal_ring::NodeId;

/// A point in time, measured from an arbitrary monotonic origin chosen by the driver.
pub type Time = Duration;

/// At most this many `PingReq`s are served at once. Each lives for one probe interval, so a
/// healthy cluster needs about `indirect_checks` of them; the cap only matters if a peer floods.
const MAX_RELAYS: usize = 1024;

/// At most this many user broadcasts wait in the piggyback queue; past it the most-sent one is
/// dropped. Member updates are not capped: there is at most one per member.
const MAX_QUEUED_USER: usize = 1024;

/// How many user payload hashes are remembered to suppress duplicate [`Output::User`]s. A
/// payload still circulating after this many newer ones would be reported again, so callers
/// must apply user payloads idempotently (a layout with a version number does).
const USER_SEEN_CAP: usize = 4096;

/// At most this many (peer, member) corrections wait to be sent; see `Swim::answer_claims`.
const MAX_CORRECTIONS: usize = 4096;

/// Tunables. The defaults are memberlist's `DefaultLANConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct SwimConfig {
    /// Time between probes (SWIM's protocol period), before Lifeguard scaling.
    pub probe_interval: Duration,
    /// How long to wait for a direct `Ack` before asking helpers, before Lifeguard scaling. It
    /// should be well above the network's round-trip time.
    pub probe_timeout: Duration,
    /// k: how many members are asked to probe the target indirectly.
    pub indirect_checks: usize,
    /// Scales the minimum suspicion timeout; also sets how many independent confirmations
    /// (`suspicion_mult - 2`) shrink the timeout to that minimum.
    pub suspicion_mult: u32,
    /// The suspicion timeout starts at this multiple of the minimum.
    pub suspicion_max_timeout_mult: u32,
    /// λ: each update is piggybacked `retransmit_mult · ⌈log10(n + 1)⌉` times.
    pub retransmit_mult: u32,
    /// Time between full-table exchanges with a random member.
    pub push_pull_interval: Duration,
    /// Lifeguard's local health score ranges over `0..awareness_max_multiplier`.
    pub awareness_max_multiplier: u32,
    /// Most updates piggybacked on one message.
    pub max_piggyback: usize,
}

impl Default for SwimConfig {
    fn default() -> Self {
        SwimConfig {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            push_pull_interval: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            max_piggyback: 16,
        }
    }
}

impl SwimConfig {
    /// Checks the settings, naming the first one at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.probe_interval.is_zero() {
            return Err("swim.probe_interval must be positive".into());
        }
        if self.probe_timeout.is_zero() {
            return Err("swim.probe_timeout must be positive".into());
        }
        // The indirect stage runs in the rest of the interval after the timeout; without it a
        // single lost packet would make a member suspect.
        if self.probe_timeout >= self.probe_interval {
            return Err("swim.probe_timeout must be shorter than swim.probe_interval".into());
        }
        if self.suspicion_mult == 0 {
            return Err("swim.suspicion_mult must be at least 1".into());
        }
        if self.suspicion_max_timeout_mult == 0 {
            return Err("swim.suspicion_max_timeout_mult must be at least 1".into());
        }
        if self.retransmit_mult == 0 {
            return Err("swim.retransmit_mult must be at least 1".into());
        }
        if self.push_pull_interval.is_zero() {
            return Err("swim.push_pull_interval must be positive".into());
        }
        if self.awareness_max_multiplier == 0 {
            return Err("swim.awareness_max_multiplier must be at least 1".into());
        }
        if self.max_piggyback == 0 {
            return Err("swim.max_piggyback must be at least 1".into());
        }
        Ok(())
    }

    /// Lifeguard's suspicion timeout bounds for `n` non-dead members (memberlist's
    /// `suspicionTimeout`): `min = suspicion_mult · max(1, log10 n) · probe_interval` and
    /// `max = suspicion_max_timeout_mult · min`. The log term grows the window with the cluster
    /// because dissemination, and so refutation, takes O(log n) periods.
    pub fn suspicion_bounds(&self, n: usize) -> (Duration, Duration) {
        let scale = (n.max(1) as f64).log10().max(1.0);
        let min = secs(self.probe_interval.as_secs_f64() * f64::from(self.suspicion_mult) * scale);
        (min, min.saturating_mul(self.suspicion_max_timeout_mult))
    }

    /// How long a node may trust its layout record without a sign from a peer (the
    /// coordinator's layout lease): half the shortest suspicion timeout, so the lease runs out
    /// well before the others can have declared this node dead and gone on without it.
    pub fn layout_lease(&self) -> Duration {
        self.suspicion_bounds(1).0 / 2
    }

    /// How many times each update is piggybacked in a cluster of `n` members (memberlist's
    /// `retransmitLimit`): `retransmit_mult · ⌈log10(n + 1)⌉`, at least `retransmit_mult`. Like
    /// memberlist, [`Swim`] counts every known member here, Dead ones included.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        let scale = ((n as f64) + 1.0).log10().ceil().max(1.0) as u32;
        self.retransmit_mult.saturating_mul(scale)
    }

    /// How long a `PingReq` helper waits for the target before sending a `Nack`.
    ///
    /// The prober sends `PingReq` at `probe_timeout` and gives up at `probe_interval` (both scaled
    /// by its health), so the helper's ping and the `Nack`'s way back share the remaining window:
    /// the helper takes half of it. A memberlist helper waits a full `ProbeTimeout`; with the LAN
    /// settings (timeout = half the interval) it sends its `Nack` just as the prober stops
    /// counting, so the `Nack` arrives a network round trip too late and Lifeguard penalises a
    /// healthy prober for the silence of helpers that did answer.
    pub fn nack_timeout(&self) -> Duration {
        self.probe_interval.saturating_sub(self.probe_timeout) / 2
    }
}

/// Converts seconds to a `Duration`, saturating instead of panicking on overflow, NaN or a
/// negative value.
fn secs(x: f64) -> Duration {
    Duration::try_from_secs_f64(x).unwrap_or(if x > 0.0 { Duration::MAX } else { Duration::ZERO })
}

/// Lifeguard's suspicion timeout after `confirmations` independent confirmations, when `k` are
/// expected (memberlist's `remainingSuspicionTime`, before subtracting the elapsed time):
/// `max − (max − min) · ln(c + 1) / ln(k + 1)`, never below `min`. With `k = 0` no confirmation
/// can be expected and the timeout is `min`.
pub fn suspicion_timeout(confirmations: u32, k: u32, min: Duration, max: Duration) -> Duration {
    if k == 0 {
        return min;
    }
    let frac = (f64::from(confirmations) + 1.0).ln() / (f64::from(k) + 1.0).ln();
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    secs(raw).max(min)
}

/// What a node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Liveness {
    Alive,
    Suspect,
    Dead,
}

/// One member as this node sees it.
#[derive(Debug)]
pub struct MemberView<'a, M> {
    pub id: &'a NodeId,
    pub incarnation: u64,
    pub liveness: Liveness,
    pub meta: &'a M,
    /// When this node last saw the member's liveness change (or first saw the member).
    pub since: Time,
}

/// A membership claim, piggybacked on messages and gossiped epidemically.
///
/// Claims about one member are ordered by incarnation, and within one incarnation
/// Alive < Suspect < Dead; a claim replaces the held state exactly when it ranks higher (SWIM
/// §4.2). `from` names the member whose observation the claim reports, so that Lifeguard can
/// count independent confirmations of a suspicion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Update<M> {
    Alive {
        id: NodeId,
        incarnation: u64,
        meta: M,
    },
    Suspect {
        id: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    Dead {
        id: NodeId,
        incarnation: u64,
        from: NodeId,
    },
    /// An opaque payload from [`Swim::broadcast_user`].
    User(Vec<u8>),
}

/// One row of the full member table exchanged by push/pull.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemberRecord<M> {
    pub id: NodeId,
    pub incarnation: u64,
    pub liveness: Liveness,
    pub meta: M,
}

/// Node-to-node messages. Every message names its sender and carries piggybacked updates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Message<M> {
    /// "Are you alive?" `target` is the id the sender thinks it is talking to; a node ignores
    /// pings meant for someone else (a reused address), since acking would vouch for the wrong
    /// member. The reply is an `Ack` with the same `seq`.
    Ping {
        from: NodeId,
        seq: u64,
        target: NodeId,
        updates: Vec<Update<M>>,
    },
    /// "Please ping `target` for me." The helper answers with an `Ack` carrying the prober's
    /// `seq` if the target answers, or a `Nack` with it if the target stays silent.
    PingReq {
        from: NodeId,
        seq: u64,
        target: NodeId,
        updates: Vec<Update<M>>,
    },
    /// A reply to a `Ping`, or a helper relaying the target's reply to the prober.
    Ack {
        from: NodeId,
        seq: u64,
        updates: Vec<Update<M>>,
    },
    /// A helper's "the target did not answer me" (Lifeguard). It tells the prober that the
    /// helper, and the prober's own network, are working.
    Nack {
        from: NodeId,
        seq: u64,
        updates: Vec<Update<M>>,
    },
    /// A push/pull request (memberlist's push/pull, also the join request): the sender's full
    /// member table, itself included, and its user state.
    Sync {
        from: NodeId,
        members: Vec<MemberRecord<M>>,
        user_state: Vec<u8>,
        updates: Vec<Update<M>>,
    },
    /// The answer to a `Sync`: the receiver's table after merging the request.
    SyncReply {
        from: NodeId,
        members: Vec<MemberRecord<M>>,
        user_state: Vec<u8>,
        updates: Vec<Update<M>>,
    },
}

impl<M> Message<M> {
    /// The sender.
    pub fn from(&self) -> &NodeId {
        match self {
            Message::Ping { from, .. }
            | Message::PingReq { from, .. }
            | Message::Ack { from, .. }
            | Message::Nack { from, .. }
            | Message::Sync { from, .. }
            | Message::SyncReply { from, .. } => from,
        }
    }

    /// The piggybacked updates.
    pub fn updates(&self) -> &[Update<M>] {
        match self {
            Message::Ping { updates, .. }
            | Message::PingReq { updates, .. }
            | Message::Ack { updates, .. }
            | Message::Nack { updates, .. }
            | Message::Sync { updates, .. }
            | Message::SyncReply { updates, .. } => updates,
        }
    }

    /// The variant's name, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::PingReq { .. } => "ping_req",
            Message::Ack { .. } => "ack",
            Message::Nack { .. } => "nack",
            Message::Sync { .. } => "sync",
            Message::SyncReply { .. } => "sync_reply",
        }
    }
}

/// What the driver must do or may want to know.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<M> {
    /// Send `message` to member `to`. The driver finds the address in the member's meta.
    Send { to: NodeId, message: Message<M> },
    /// A member's liveness changed, or a member was seen for the first time (then `from` is None).
    Liveness {
        id: NodeId,
        from: Option<Liveness>,
        to: Liveness,
    },
    /// A member's meta changed (new incarnation with different meta).
    Meta { id: NodeId },
    /// A user broadcast arrived (first time this node sees these bytes).
    User(Vec<u8>),
    /// A peer's user state arrived in a push/pull exchange.
    UserState(Vec<u8>),
}

/// Counters for metrics and tests. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwimStats {
    /// Probes started.
    pub probes: u64,
    /// Probes that ended without an `Ack`, direct or relayed.
    pub probes_failed: u64,
    /// Probes that reached the indirect (`PingReq`) stage.
    pub indirect_probes: u64,
    /// Members this node moved from Alive to Suspect because its own probe failed.
    pub suspicions_raised: u64,
    /// Members this node declared Dead because their suspicion timed out here.
    pub deaths_declared: u64,
    /// Times this node raised its incarnation to refute a Suspect or Dead claim about itself.
    pub refutations: u64,
}

/// A suspicion in progress (Lifeguard LHA-Suspicion, memberlist's `suspicion`).
#[derive(Clone, Debug)]
struct Suspicion {
    start: Time,
    /// Members whose observations back the suspicion, its originator included; empty for a
    /// suspicion taken from a push/pull table, which names no witness (`Swim::merge`).
    confirmers: BTreeSet<NodeId>,
    /// Confirmations expected; once reached, the timeout is `min` and more are not gossiped.
    k: u32,
    min: Duration,
    max: Duration,
    deadline: Time,
    /// Whether we have already given the suspect its last probe (`Swim::start_probe`).
    verified: bool,
}

impl Suspicion {
    fn new(from: Option<NodeId>, start: Time, k: u32, min: Duration, max: Duration) -> Self {
        let timeout = suspicion_timeout(0, k, min, max);
        Suspicion {
            start,
            confirmers: from.into_iter().collect(),
            k,
            min,
            max,
            deadline: start.saturating_add(timeout),
            verified: false,
        }
    }

    fn confirmations(&self) -> u32 {
        u32::try_from(self.confirmers.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Records an independent confirmation; true if it was new and should be gossiped on.
    fn confirm(&mut self, from: NodeId) -> bool {
        if self.confirmations() >= self.k || !self.confirmers.insert(from) {
            return false;
        }
        let timeout = suspicion_timeout(self.confirmations(), self.k, self.min, self.max);
        self.deadline = self.start.saturating_add(timeout);
        true
    }
}

#[derive(Clone, Debug)]
struct Member<M> {
    incarnation: u64,
    liveness: Liveness,
    meta: M,
    since: Time,
    /// Present exactly when `liveness` is Suspect.
    suspicion: Option<Suspicion>,
}

/// This node's probe in progress.
#[derive(Clone, Debug)]
struct Probe {
    seq: u64,
    target: NodeId,
    /// When to fall back to `PingReq`.
    indirect_at: Time,
    /// When the probe fails if nobody has acked.
    deadline: Time,
    indirect_sent: bool,
    helpers: Vec<NodeId>,
    nacks: BTreeSet<NodeId>,
}

/// A `PingReq` this node is serving as a helper.
#[derive(Clone, Debug)]
struct Relay {
    /// The sequence number of our own ping to the target.
    seq: u64,
    prober: NodeId,
    prober_seq: u64,
    /// When to send the `Nack`; None once sent.
    nack_at: Option<Time>,
    /// Kept until then so that a late `Ack` is still relayed.
    expires: Time,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BroadcastKey {
    Member(NodeId),
    User(u64),
}

#[derive(Clone, Debug)]
struct Queued<M> {
    key: BroadcastKey,
    update: Update<M>,
    transmits: u32,
    /// Insertion order; among equally-sent updates the newest goes first.
    order: u64,
}

/// memberlist's `TransmitLimitedQueue`: the updates waiting to be piggybacked.
#[derive(Clone, Debug)]
struct BroadcastQueue<M> {
    items: Vec<Queued<M>>,
    next_order: u64,
}

impl<M: Clone> BroadcastQueue<M> {
    fn new() -> Self {
        BroadcastQueue {
            items: Vec::new(),
            next_order: 0,
        }
    }

    /// Queues `update`, replacing any older update with the same key: a newer claim about a
    /// member makes the older one pointless to spread.
    fn push(&mut self, key: BroadcastKey, update: Update<M>) {
        self.items.retain(|q| q.key != key);
        let is_user = matches!(key, BroadcastKey::User(_));
        self.items.push(Queued {
            key,
            update,
            transmits: 0,
            order: self.next_order,
        });
        self.next_order += 1;
        if is_user {
            let users = self
                .items
                .iter()
                .filter(|q| matches!(q.key, BroadcastKey::User(_)))
                .count();
            if users > MAX_QUEUED_USER {
                // Drop the user broadcast that has already had the most chances to spread.
                if let Some(pos) = self
                    .items
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| matches!(q.key, BroadcastKey::User(_)))
                    .max_by_key(|(_, q)| (q.transmits, std::cmp::Reverse(q.order)))
                    .map(|(i, _)| i)
                {
                    self.items.remove(pos);
                }
            }
        }
    }

    /// Takes up to `max` updates, those sent fewest times first (newest first among equals),
    /// counts one transmission for each and drops those that reached `limit`.
    fn take(&mut self, max: usize, limit: u32) -> Vec<Update<M>> {
        if max == 0 || self.items.is_empty() {
            return Vec::new();
        }
        self.items.sort_by_key(|q| (q.transmits, std::cmp::Reverse(q.order)));
        let n = max.min(self.items.len());
        let mut out = Vec::with_capacity(n);
        for q in &mut self.items[..n] {
            q.transmits += 1;
            out.push(q.update.clone());
        }
        self.items.retain(|q| q.transmits < limit);
        out
    }

    fn remove(&mut self, key: &BroadcastKey) {
        self.items.retain(|q| &q.key != key);
    }
}

/// Bounded memory of user payloads already reported.
#[derive(Clone, Debug, Default)]
struct SeenSet {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl SeenSet {
    /// True if `hash` is new.
    fn insert(&mut self, hash: u64) -> bool {
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > USER_SEEN_CAP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// `DefaultHasher::new()` uses fixed keys, so the hash is the same on every run. It is only
/// used locally (dedupe and queue keys), never sent.
fn payload_hash(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// A SWIM member: the failure detector and membership list of one node.
pub struct Swim<M> {
    me: NodeId,
    meta: M,
    incarnation: u64,
    started: Time,
    config: SwimConfig,
    rng: StdRng,
    members: BTreeMap<NodeId, Member<M>>,
    /// Members removed by [`Swim::forget`], with the incarnation they had then. One entry per
    /// operator removal, kept for good: dropping one would let old gossip resurrect the member.
    forgotten: BTreeMap<NodeId, u64>,
    probe_order: Vec<NodeId>,
    probe_index: usize,
    next_probe_at: Time,
    probe: Option<Probe>,
    relays: Vec<Relay>,
    next_seq: u64,
    /// Lifeguard's local health score, in `0..awareness_max_multiplier`.
    awareness: u32,
    /// Members that recently accused us, until when their suspicion timers could still run.
    /// Every message to them carries our Alive; see `Swim::answer_accuser`.
    accusers: BTreeMap<NodeId, Time>,
    /// Accusers named in the message being handled, for `Swim::answer_claims`.
    heard_accusers: Vec<NodeId>,
    /// Members about which the message being handled carried a claim older than our Alive.
    heard_stale: Vec<NodeId>,
    /// Per peer, members whose current Alive it has shown it missed; see
    /// `Swim::answer_claims`.
    corrections: BTreeMap<NodeId, BTreeSet<NodeId>>,
    queue: BroadcastQueue<M>,
    user_seen: SeenSet,
    user_state: Vec<u8>,
    next_push_pull_at: Time,
    stats: SwimStats,
    out: Vec<Output<M>>,
}

impl<M: Clone + PartialEq + Debug + Serialize + DeserializeOwned> Swim<M> {
    /// A node that knows only itself; [`Swim::join_request`] introduces it to the cluster.
    ///
    /// `incarnation` must exceed any this identity used before, if the caller knows it (a
    /// restart); if it does not, the node still wins in the end by refuting whatever the cluster
    /// believes about its earlier life, at the cost of a suspicion round. `seed` drives every
    /// random choice.
    ///
    /// # Panics
    ///
    /// If `config` fails [`SwimConfig::validate`]: configuration is checked when it is loaded.
    pub fn new(me: NodeId, meta: M, incarnation: u64, config: SwimConfig, seed: u64, now: Time) -> Self {
        if let Err(e) = config.validate() {
            panic!("invalid SWIM configuration: {e}");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        // Stagger the first probe and push/pull (as memberlist does) so that nodes started
        // together do not act in lockstep.
        let next_probe_at = now.saturating_add(config.probe_interval.mul_f64(rng.gen::<f64>()));
        let next_push_pull_at = now.saturating_add(config.push_pull_interval.mul_f64(rng.gen::<f64>()));
        let mut swim = Swim {
            me,
            meta,
            incarnation,
            started: now,
            config,
            rng,
            members: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            probe_order: Vec::new(),
            probe_index: 0,
            next_probe_at,
            probe: None,
            relays: Vec::new(),
            next_seq: 0,
            awareness: 0,
            accusers: BTreeMap::new(),
            heard_accusers: Vec::new(),
            heard_stale: Vec::new(),
            corrections: BTreeMap::new(),
            queue: BroadcastQueue::new(),
            user_seen: SeenSet::default(),
            user_state: Vec::new(),
            next_push_pull_at,
            stats: SwimStats::default(),
            out: Vec::new(),
        };
        // Announce ourselves on the first messages we send: after a restart with a higher
        // incarnation this is what revives us in members that held us Dead.
        swim.queue_self_alive();
        swim
    }

    /// A push/pull request to send to a seed address (the driver knows only its socket address,
    /// not its id). The request carries this node's own state so the seed learns about it and
    /// can reply.
    pub fn join_request(&mut self, _now: Time) -> Message<M> {
        Message::Sync {
            from: self.me.clone(),
            members: self.records(),
            user_state: self.user_state.clone(),
            updates: Vec::new(),
        }
    }

    /// Processes one message from the network. Malformed or stale messages are ignored; this
    /// never panics. Call [`Swim::next_deadline`] afterwards: a message can bring a deadline
    /// forward (a confirmed suspicion).
    pub fn handle(&mut self, message: Message<M>, now: Time) -> Vec<Output<M>> {
        if message.from() == &self.me {
            // Our own message looped back (a seed list that includes ourselves).
            return Vec::new();
        }
        match message {
            Message::Ping {
                from,
                seq,
                target,
                updates,
            } => {
                if target == self.me {
                    // Updates first, so a refutation they provoke rides on this very Ack.
                    self.apply_updates(updates, now);
                    self.answer_claims(&from, true, now);
                    let updates = self.piggyback(&from);
                    self.send(
                        from,
                        Message::Ack {
                            from: self.me.clone(),
                            seq,
                            updates,
                        },
                    );
                }
            }
            Message::PingReq {
                from,
                seq,
                target,
                updates,
            } => {
                self.apply_updates(updates, now);
                self.answer_claims(&from, false, now);
                self.serve_ping_req(from, seq, target, now);
            }
            Message::Ack { from, seq, updates } => {
                self.apply_updates(updates, now);
                self.answer_claims(&from, false, now);
                self.on_ack(seq);
            }
            Message::Nack { from, seq, updates } => {
                self.apply_updates(updates, now);
                self.answer_claims(&from, false, now);
                if let Some(p) = self
                    .probe
                    .as_mut()
                    .filter(|p| p.seq == seq && p.helpers.contains(&from))
                {
                    p.nacks.insert(from);
                }
            }
            Message::Sync {
                from,
                members,
                user_state,
                updates,
            } => {
                self.apply_updates(updates, now);
                self.merge(&from, members, now);
                // The reply's table corrects whatever was stale in the request.
                self.heard_stale.clear();
                self.answer_claims(&from, true, now);
                if !user_state.is_empty() {
                    self.out.push(Output::UserState(user_state));
                }
                // Built after the merge, so it carries any refutation the request provoked.
                let reply = self.sync_message(Some(&from), true);
                self.send(from, reply);
            }
            Message::SyncReply {
                from,
                members,
                user_state,
                updates,
            } => {
                self.apply_updates(updates, now);
                self.merge(&from, members, now);
                self.answer_claims(&from, false, now);
                if !user_state.is_empty() {
                    self.out.push(Output::UserState(user_state));
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Runs whatever is due at `now`: probe stages, suspicion timeouts, `Nack`s, the next probe
    /// and push/pull. Calling it early or twice does no harm.
    pub fn tick(&mut self, now: Time) -> Vec<Output<M>> {
        self.accusers.retain(|_, until| now < *until);
        self.tick_relays(now);
        self.tick_probe(now);
        self.tick_suspicions(now);
        if now >= self.next_probe_at {
            self.start_probe(now);
        }
        if now >= self.next_push_pull_at {
            self.push_pull(now);
        }
        std::mem::take(&mut self.out)
    }

    /// The earliest time at which `tick` has something to do (for the simulator and the
    /// driver's timer). It may be in the past after `handle`; then tick at once.
    pub fn next_deadline(&self) -> Time {
        let mut at = self.next_probe_at.min(self.next_push_pull_at);
        if let Some(p) = &self.probe {
            at = at.min(p.deadline);
            if !p.indirect_sent {
                at = at.min(p.indirect_at);
            }
        }
        for r in &self.relays {
            at = at.min(r.nack_at.unwrap_or(r.expires));
        }
        for m in self.members.values() {
            if let Some(s) = &m.suspicion {
                at = at.min(s.deadline);
            }
        }
        at
    }

    /// Change this node's meta: raises its incarnation and broadcasts an alive update. Returns
    /// [`Output::Meta`] for this node, as a peer's meta change would.
    pub fn set_meta(&mut self, meta: M, _now: Time) -> Vec<Output<M>> {
        self.meta = meta;
        self.incarnation += 1;
        self.queue_self_alive();
        vec![Output::Meta { id: self.me.clone() }]
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// This node's own meta.
    pub fn meta(&self) -> &M {
        &self.meta
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn config(&self) -> &SwimConfig {
        &self.config
    }

    pub fn stats(&self) -> SwimStats {
        self.stats
    }

    /// Lifeguard local health multiplier (0 = healthy, up to awareness_max_multiplier-1).
    pub fn local_health(&self) -> u32 {
        self.awareness
    }

    /// Every known member, this node first (always Alive), then the others by id. Forgotten
    /// members are not listed.
    pub fn members(&self) -> impl Iterator<Item = MemberView<'_, M>> {
        std::iter::once(self.self_view()).chain(self.members.iter().map(|(id, m)| view(id, m)))
    }

    pub fn member(&self, id: &NodeId) -> Option<MemberView<'_, M>> {
        if id == &self.me {
            return Some(self.self_view());
        }
        self.members.get_key_value(id).map(|(id, m)| view(id, m))
    }

    /// Bytes included in every push/pull exchange (the cluster layout, owned by the caller).
    /// Peers report it as [`Output::UserState`] on every exchange; an empty state is not
    /// reported. This is the anti-entropy path: it reaches everyone eventually, but slowly (in
    /// simulation at 10 nodes and 10% loss, a median 80 s), so news also goes out through
    /// [`Swim::broadcast_user`].
    pub fn set_user_state(&mut self, state: Vec<u8>) {
        self.user_state = state;
    }

    /// Piggyback these bytes on outgoing messages, each retransmitted about
    /// retransmit_mult·log10(N+1) times (rounded up, at least 1 round).
    ///
    /// Receivers emit [`Output::User`] once per distinct payload and do not rebroadcast it: only
    /// the caller knows whether the payload was news (a newer layout) worth spreading further,
    /// and rebroadcasting exactly those gives an epidemic that stops by itself. Broadcasts are
    /// best effort, with no retry beyond the retransmissions: what must converge belongs in
    /// [`Swim::set_user_state`] as well.
    pub fn broadcast_user(&mut self, data: Vec<u8>) {
        let hash = payload_hash(&data);
        // Our own payload coming back to us is not news.
        self.user_seen.insert(hash);
        self.queue.push(BroadcastKey::User(hash), Update::User(data));
    }

    /// Forget a member entirely (an operator removed it from the cluster). Later gossip about it
    /// at the same or lower incarnation must not resurrect it; a higher incarnation alive (it
    /// restarted) may.
    pub fn forget(&mut self, id: &NodeId) {
        let Some(m) = self.members.remove(id) else { return };
        self.forgotten.insert(id.clone(), m.incarnation);
        self.corrections.remove(id);
        self.accusers.remove(id);
        for ids in self.corrections.values_mut() {
            ids.remove(id);
        }
        self.queue.remove(&BroadcastKey::Member(id.clone()));
        self.probe_order.retain(|x| x != id);
        self.probe_index = self.probe_index.min(self.probe_order.len());
        if self.probe.as_ref().is_some_and(|p| &p.target == id) {
            // Its outcome no longer means anything, least of all about our own health.
            self.probe = None;
        }
    }

    // ----- views and counts -----

    fn self_view(&self) -> MemberView<'_, M> {
        MemberView {
            id: &self.me,
            incarnation: self.incarnation,
            liveness: Liveness::Alive,
            meta: &self.meta,
            since: self.started,
        }
    }

    /// Non-dead members, this node included: the n of Lifeguard's suspicion timeout.
    fn live_count(&self) -> usize {
        1 + self.members.values().filter(|m| m.liveness != Liveness::Dead).count()
    }

    fn records(&self) -> Vec<MemberRecord<M>> {
        let me = MemberRecord {
            id: self.me.clone(),
            incarnation: self.incarnation,
            liveness: Liveness::Alive,
            meta: self.meta.clone(),
        };
        std::iter::once(me)
            .chain(self.members.iter().map(|(id, m)| MemberRecord {
                id: id.clone(),
                incarnation: m.incarnation,
                liveness: m.liveness,
                meta: m.meta.clone(),
            }))
            .collect()
    }

    // ----- sending -----

    fn send(&mut self, to: NodeId, message: Message<M>) {
        self.out.push(Output::Send { to, message });
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Updates for a message to `to`: our Alive if `to` recently accused us
    /// (`Swim::answer_accuser`); the buddy-system accusations if we suspect `to` or hold it
    /// Dead; the Alives `to` has shown it missed (`Swim::answer_claims`); then the queue's
    /// least-sent updates, up to `max_piggyback` in all.
    fn piggyback(&mut self, to: &NodeId) -> Vec<Update<M>> {
        self.piggyback_within(to, self.config.max_piggyback)
    }

    fn piggyback_within(&mut self, to: &NodeId, max: usize) -> Vec<Update<M>> {
        let mut updates = Vec::new();
        if self.accusers.contains_key(to) {
            updates.push(Update::Alive {
                id: self.me.clone(),
                incarnation: self.incarnation,
                meta: self.meta.clone(),
            });
        }
        if let Some(m) = self.members.get(to) {
            let (id, incarnation) = (to.clone(), m.incarnation);
            match (&m.liveness, &m.suspicion) {
                // Name every member whose observation backs the suspicion (at most k + 1):
                // their timers run shortest, so the suspect answers them first.
                (Liveness::Suspect, Some(s)) if !s.confirmers.is_empty() => {
                    updates.extend(s.confirmers.iter().map(|from| Update::Suspect {
                        id: id.clone(),
                        incarnation,
                        from: from.clone(),
                    }))
                }
                // Hearsay names no witness; the suspect learns of it from us.
                (Liveness::Suspect, _) => updates.push(Update::Suspect {
                    id,
                    incarnation,
                    from: self.me.clone(),
                }),
                (Liveness::Dead, _) => updates.push(Update::Dead {
                    id,
                    incarnation,
                    from: self.me.clone(),
                }),
                _ => {}
            }
        }
        if let Some(ids) = self.corrections.remove(to) {
            for id in ids {
                if let Some(m) = self.members.get(&id).filter(|m| m.liveness == Liveness::Alive) {
                    updates.push(Update::Alive {
                        id,
                        incarnation: m.incarnation,
                        meta: m.meta.clone(),
                    });
                }
            }
        }
        updates.truncate(max);
        let room = max.saturating_sub(updates.len());
        // Every known member counts here, Dead ones included, as in memberlist's
        // `estNumNodes`: a death must not shrink n across a power of ten and so halve the
        // retransmissions of the very Dead update that announces it.
        let limit = self.config.retransmit_limit(self.members.len() + 1);
        updates.extend(self.queue.take(room, limit));
        updates
    }

    /// `Swim::piggyback` for a request (`Ping`, `PingReq`), which also carries:
    ///
    /// * our own Alive: the receiver may not know us yet (we just joined, and our Alive is still
    ///   spreading), and without our meta it could not address the reply. memberlist's ping
    ///   carries the sender's address for the same reason.
    /// * every suspicion we hold, under the names of its witnesses, until it resolves (not in
    ///   memberlist). A member that heard a suspicion but missed the refutation's epidemic burst
    ///   would otherwise stop mentioning it once its retransmit budget was spent, and nobody
    ///   could tell it otherwise before its timer killed a live member (seen in simulation at
    ///   10% loss in 50-node clusters, 41 s after the refutation). Mentioned on every probe, the
    ///   stale suspicion meets a member that knows better within an interval or two, and that
    ///   member's reply carries the refutation (`Swim::answer_claims`). For a suspect that
    ///   really failed, the names are genuine witnesses, so they only spread confirmations.
    fn request_piggyback(&mut self, to: &NodeId) -> Vec<Update<M>> {
        let mut updates = vec![Update::Alive {
            id: self.me.clone(),
            incarnation: self.incarnation,
            meta: self.meta.clone(),
        }];
        let held = self
            .members
            .iter()
            .filter(|(id, _)| *id != to)
            .filter_map(|(id, m)| m.suspicion.as_ref().map(|s| (id, m.incarnation, s)))
            .flat_map(|(id, incarnation, s)| {
                s.confirmers.iter().map(move |from| Update::Suspect {
                    id: id.clone(),
                    incarnation,
                    from: from.clone(),
                })
            });
        updates.extend(held.take(self.config.max_piggyback / 2));
        let room = self.config.max_piggyback.saturating_sub(updates.len());
        let rest = self.piggyback_within(to, room);
        updates.extend(
            rest.into_iter()
                .filter(|u| !matches!(u, Update::Alive { id, .. } if id == &self.me)),
        );
        updates
    }

    fn sync_message(&mut self, to: Option<&NodeId>, reply: bool) -> Message<M> {
        let updates = to.map(|to| self.piggyback(to)).unwrap_or_default();
        let (from, members, user_state) = (self.me.clone(), self.records(), self.user_state.clone());
        if reply {
            Message::SyncReply {
                from,
                members,
                user_state,
                updates,
            }
        } else {
            Message::Sync {
                from,
                members,
                user_state,
                updates,
            }
        }
    }

    fn queue_self_alive(&mut self) {
        let update = Update::Alive {
            id: self.me.clone(),
            incarnation: self.incarnation,
            meta: self.meta.clone(),
        };
        self.queue.push(BroadcastKey::Member(self.me.clone()), update);
    }

    // ----- applying claims -----

    fn apply_updates(&mut self, updates: Vec<Update<M>>, now: Time) {
        for update in updates {
            match update {
                Update::Alive { id, incarnation, meta } => self.on_alive(id, incarnation, meta, now),
                Update::Suspect { id, incarnation, from } => self.on_suspect(id, incarnation, from, true, now),
                Update::Dead { id, incarnation, from } => self.on_dead(id, incarnation, from, now),
                Update::User(data) => {
                    if self.user_seen.insert(payload_hash(&data)) {
                        self.out.push(Output::User(data));
                    }
                }
            }
        }
    }

    /// Merges a push/pull table. A remote Dead is taken as Suspect, as memberlist's
    /// `mergeState` does: the sender may have declared a member Dead that is in fact running
    /// (it was paused, or across a partition), and as Suspect it gets a window to refute
    /// instead of being killed outright by old news.
    ///
    /// A table does not say who observed a failure, so its Suspect and Dead rows are hearsay:
    /// they start a suspicion here (so the member gets probed, hears of it through the buddy
    /// system, and must refute) but never count as a Lifeguard confirmation and are not gossiped
    /// on. memberlist attributes them to the merging node; attributing them to the sender, which
    /// merely relayed the claim, let the simulator produce a false Dead at 10% loss: a node's
    /// suspicion came back to it through a push/pull round trip as a "confirmation" from the
    /// peer, which with one genuine confirmation cut its timeout from 24 s to the 4 s minimum.
    fn merge(&mut self, sender: &NodeId, records: Vec<MemberRecord<M>>, now: Time) {
        for r in records {
            match r.liveness {
                Liveness::Alive => self.on_alive(r.id, r.incarnation, r.meta, now),
                Liveness::Suspect | Liveness::Dead => {
                    self.on_suspect(r.id, r.incarnation, sender.clone(), false, now);
                }
            }
        }
    }

    fn on_alive(&mut self, id: NodeId, incarnation: u64, meta: M, now: Time) {
        if id == self.me {
            // Someone announces us at our incarnation or later with other meta: our own earlier
            // life, from before a restart that lost the incarnation. Outbid it.
            if incarnation > self.incarnation || (incarnation == self.incarnation && meta != self.meta) {
                self.incarnation = incarnation.saturating_add(1);
                self.queue_self_alive();
            }
            return;
        }
        let update = Update::Alive {
            id: id.clone(),
            incarnation,
            meta: meta.clone(),
        };
        match self.members.get_mut(&id) {
            None => {
                if let Some(&gone) = self.forgotten.get(&id) {
                    if incarnation <= gone {
                        return;
                    }
                    self.forgotten.remove(&id);
                }
                self.members.insert(
                    id.clone(),
                    Member {
                        incarnation,
                        liveness: Liveness::Alive,
                        meta,
                        since: now,
                        suspicion: None,
                    },
                );
                self.out.push(Output::Liveness {
                    id: id.clone(),
                    from: None,
                    to: Liveness::Alive,
                });
                self.add_to_probe_order(&id);
            }
            Some(m) => {
                if incarnation <= m.incarnation {
                    if incarnation < m.incarnation && m.liveness == Liveness::Alive {
                        self.heard_stale.push(id);
                    }
                    return;
                }
                let was = m.liveness;
                let meta_changed = m.meta != meta;
                m.incarnation = incarnation;
                m.meta = meta;
                m.suspicion = None;
                if was != Liveness::Alive {
                    m.liveness = Liveness::Alive;
                    m.since = now;
                    self.out.push(Output::Liveness {
                        id: id.clone(),
                        from: Some(was),
                        to: Liveness::Alive,
                    });
                }
                if meta_changed {
                    self.out.push(Output::Meta { id: id.clone() });
                }
                if was == Liveness::Dead {
                    self.add_to_probe_order(&id);
                }
            }
        }
        self.queue.push(BroadcastKey::Member(id), update);
    }

    /// A claim that `id` is Suspect at `incarnation`. `witnessed` is false for push/pull
    /// hearsay (see `Swim::merge`): then `from` is only the relaying peer, whose word neither
    /// confirms a suspicion nor is passed on.
    fn on_suspect(&mut self, id: NodeId, incarnation: u64, from: NodeId, witnessed: bool, now: Time) {
        if id == self.me {
            self.refute(incarnation);
            self.heard_accusers.push(from);
            return;
        }
        let n = self.live_count();
        let (min, max) = self.config.suspicion_bounds(n);
        // memberlist: with fewer than k + 2 live members there are not k members left to
        // confirm (the suspect and the accuser do not count), so expect none.
        let k = self.config.suspicion_mult.saturating_sub(2);
        let k = if n.saturating_sub(2) < k as usize { 0 } else { k };
        let Some(m) = self.members.get_mut(&id) else { return };
        if incarnation < m.incarnation {
            if m.liveness == Liveness::Alive {
                self.heard_stale.push(id);
            }
            return;
        }
        let update = Update::Suspect {
            id: id.clone(),
            incarnation,
            from: from.clone(),
        };
        match m.liveness {
            Liveness::Suspect if incarnation == m.incarnation => {
                // Lifeguard: another member's independent observation shortens the timeout;
                // pass it on so the others' timers shrink too.
                let confirmed = witnessed && m.suspicion.as_mut().is_some_and(|s| s.confirm(from));
                if confirmed {
                    self.queue.push(BroadcastKey::Member(id), update);
                }
                return;
            }
            // Dead(j) yields only to a claim about a later life (j < incarnation). A Suspect is
            // one: the member refuted after its death and was suspected again.
            Liveness::Dead if incarnation == m.incarnation => return,
            _ => {}
        }
        let was = m.liveness;
        m.incarnation = incarnation;
        m.suspicion = Some(Suspicion::new(witnessed.then_some(from), now, k, min, max));
        if was != Liveness::Suspect {
            m.liveness = Liveness::Suspect;
            m.since = now;
            self.out.push(Output::Liveness {
                id: id.clone(),
                from: Some(was),
                to: Liveness::Suspect,
            });
        }
        if was == Liveness::Dead {
            self.add_to_probe_order(&id);
        }
        if witnessed {
            self.queue.push(BroadcastKey::Member(id), update);
        }
    }

    fn on_dead(&mut self, id: NodeId, incarnation: u64, from: NodeId, now: Time) {
        if id == self.me {
            self.refute(incarnation);
            self.heard_accusers.push(from);
            return;
        }
        let Some(m) = self.members.get_mut(&id) else { return };
        if incarnation < m.incarnation {
            if m.liveness == Liveness::Alive {
                self.heard_stale.push(id);
            }
            return;
        }
        if m.liveness == Liveness::Dead {
            // Already dead; remember the later life so stale Alives for it cannot revive it.
            m.incarnation = incarnation;
            return;
        }
        let was = m.liveness;
        m.incarnation = incarnation;
        m.liveness = Liveness::Dead;
        m.since = now;
        m.suspicion = None;
        self.out.push(Output::Liveness {
            id: id.clone(),
            from: Some(was),
            to: Liveness::Dead,
        });
        self.queue
            .push(BroadcastKey::Member(id.clone()), Update::Dead { id, incarnation, from });
    }

    /// SWIM §4.2: a member accused at our current incarnation (or later, if we restarted and
    /// lost count) outbids the accusation. Lifeguard counts having to do so against our local
    /// health: accusations we keep having to refute suggest we are the slow one.
    fn refute(&mut self, incarnation: u64) {
        if incarnation < self.incarnation {
            // About an earlier incarnation we have already moved past.
            return;
        }
        self.incarnation = incarnation.saturating_add(1);
        self.stats.refutations += 1;
        self.adjust_awareness(1);
        self.queue_self_alive();
    }

    /// After applying a message's claims: answer accusations about us (see
    /// `Swim::answer_accuser`) and correct the sender's stale claims about others.
    ///
    /// SWIM's dissemination is push-only, and each update is pushed a bounded number of times,
    /// so a member that hears a suspicion late, after the refutation's burst has spent its
    /// retransmit budget, keeps the suspicion and even passes it on, while nobody it talks to
    /// has a reason to tell it otherwise; its timer then declares a live member Dead (seen in
    /// simulation at 10% loss, once in about 1,700 two-minute runs of 20 nodes). So a claim
    /// older than the Alive we hold marks its sender as out of date, and our next message to
    /// it (the reply, when there is one) carries that Alive: the refutation follows the stale
    /// suspicion wherever it travels.
    fn answer_claims(&mut self, sender: &NodeId, replying: bool, now: Time) {
        let stale = std::mem::take(&mut self.heard_stale);
        if !stale.is_empty() && self.members.contains_key(sender) {
            let pending: usize = self.corrections.values().map(BTreeSet::len).sum();
            if pending < MAX_CORRECTIONS {
                self.corrections.entry(sender.clone()).or_default().extend(stale);
            }
        }
        let named = std::mem::take(&mut self.heard_accusers);
        if named.is_empty() {
            return;
        }
        // Whoever passed the accusation on holds a suspicion timer on us too; it may be
        // relaying a claim at an incarnation we have long refuted, having missed the
        // refutation. When we are about to reply, the reply carries our Alive.
        self.answer_accuser(sender.clone(), !replying, now);
        for accuser in named {
            self.answer_accuser(accuser, true, now);
        }
    }

    /// The buddy system in reverse (not in Lifeguard or memberlist): answer an accusation
    /// about us to the members that hold it, not only to the epidemic.
    ///
    /// A member named in an accusation runs one of the suspicion timers that fire first: it
    /// started the suspicion, or confirmed it from its own failed probe. It is also the member
    /// most likely to miss our refutation's short epidemic burst: its probes of us have just
    /// failed, and with its local health raised by the failure it sends, and so receives, fewer
    /// messages than anyone. A member that passes an accusation on to us holds a timer as well,
    /// and if the claim is at an incarnation we have already refuted, it plainly missed the
    /// refutation. Each of them gets it directly, three ways: an out-of-band ping now (its Ack
    /// is ignored) unless a reply to it is about to go out anyway, our next probe (whose
    /// indirect stage gets through a lossy direct path), and our Alive on every message to it
    /// until its timer could have run out, whatever the queue's retransmit budget says.
    ///
    /// Found in simulation at 10% loss. Without it, an accuser occasionally missed the
    /// refutation and declared a live member Dead; a member paused for a little less than the
    /// minimum suspicion timeout, whose refutation had a second to spread, was sometimes
    /// declared Dead by the prober that first suspected it; and in a five-node cluster a member
    /// that had missed a refutation kept pinging the suspect with the stale accusation for
    /// 24 seconds, getting back Acks with nothing to correct it, and then declared it Dead.
    fn answer_accuser(&mut self, accuser: NodeId, ping: bool, now: Time) {
        if accuser == self.me || !self.members.contains_key(&accuser) {
            return;
        }
        let (_, max) = self.config.suspicion_bounds(self.live_count());
        if self.accusers.insert(accuser.clone(), now.saturating_add(max)).is_some() {
            return;
        }
        if let Some(pos) = self.probe_order.iter().position(|x| x == &accuser) {
            self.probe_order.remove(pos);
            if pos < self.probe_index {
                self.probe_index -= 1;
            }
        }
        self.probe_order.insert(self.probe_index, accuser.clone());
        if !ping {
            return;
        }
        let seq = self.next_seq();
        let updates = self.request_piggyback(&accuser);
        let message = Message::Ping {
            from: self.me.clone(),
            seq,
            target: accuser.clone(),
            updates,
        };
        self.send(accuser, message);
    }

    fn adjust_awareness(&mut self, delta: i64) {
        let max = i64::from(self.config.awareness_max_multiplier) - 1;
        let score = (i64::from(self.awareness) + delta).clamp(0, max.max(0));
        self.awareness = u32::try_from(score).unwrap_or(0);
    }

    // ----- probing -----

    /// Inserts a member at a random position of the probe list (SWIM §4.3), so a new member is
    /// probed within one round on average without disturbing everybody else's turn.
    fn add_to_probe_order(&mut self, id: &NodeId) {
        if self.probe_order.contains(id) {
            return;
        }
        let pos = self.rng.gen_range(0..=self.probe_order.len());
        self.probe_order.insert(pos, id.clone());
        if pos < self.probe_index {
            self.probe_index += 1;
        }
    }

    /// The next member in randomized round-robin order, reshuffling at the end of a round.
    /// Dead members are skipped (left in place until the reshuffle drops them).
    fn next_probe_target(&mut self) -> Option<NodeId> {
        for _ in 0..2 {
            while self.probe_index < self.probe_order.len() {
                let id = &self.probe_order[self.probe_index];
                self.probe_index += 1;
                if self.members.get(id).is_some_and(|m| m.liveness != Liveness::Dead) {
                    return Some(id.clone());
                }
            }
            self.probe_order = self
                .members
                .iter()
                .filter(|(_, m)| m.liveness != Liveness::Dead)
                .map(|(id, _)| id.clone())
                .collect();
            self.probe_order.shuffle(&mut self.rng);
            self.probe_index = 0;
        }
        None
    }

    /// Starts this interval's probe: normally of the next member in round-robin order, but first
    /// of any suspect whose suspicion is due to expire within two intervals and that we have not
    /// yet probed for it.
    ///
    /// That last probe (not in memberlist) carries the accusation (the buddy system), so a
    /// suspect that is alive answers with its refutation. It closes the last gap through which
    /// simulation at 10% loss still produced false Dead verdicts in 50-node clusters: a member
    /// that heard a suspicion, missed the refutation's epidemic burst, stopped mentioning the
    /// suspicion once its retransmit budget was spent (so nobody could correct it), and lost
    /// two push/pull exchanges in a row, then timed the live suspect out 41 s later. Probing a
    /// suspect we are about to kill asks the one member that surely knows. It costs each
    /// member holding a suspicion one probe, and no detection latency: the probe starts at
    /// least one interval before the deadline, so it has ended by then, and for a member that
    /// really failed it is one more independent confirmation.
    fn start_probe(&mut self, now: Time) {
        let scale = self.awareness + 1;
        let interval = self.config.probe_interval.saturating_mul(scale);
        self.next_probe_at = now.saturating_add(interval);
        let window = now.saturating_add(interval.saturating_mul(2));
        let last_chance = self
            .members
            .iter()
            .filter_map(|(id, m)| m.suspicion.as_ref().map(|s| (s.deadline, id)))
            .filter(|(deadline, id)| {
                *deadline <= window && self.members[*id].suspicion.as_ref().is_some_and(|s| !s.verified)
            })
            .min()
            .map(|(_, id)| id.clone());
        let target = match last_chance {
            Some(id) => {
                if let Some(s) = self.members.get_mut(&id).and_then(|m| m.suspicion.as_mut()) {
                    s.verified = true;
                }
                id
            }
            None => match self.next_probe_target() {
                Some(id) => id,
                None => return,
            },
        };
        let seq = self.next_seq();
        self.probe = Some(Probe {
            seq,
            target: target.clone(),
            indirect_at: now.saturating_add(self.config.probe_timeout.saturating_mul(scale)),
            deadline: now.saturating_add(interval),
            indirect_sent: false,
            helpers: Vec::new(),
            nacks: BTreeSet::new(),
        });
        self.stats.probes += 1;
        let updates = self.request_piggyback(&target);
        self.send(
            target.clone(),
            Message::Ping {
                from: self.me.clone(),
                seq,
                target,
                updates,
            },
        );
    }

    fn tick_probe(&mut self, now: Time) {
        let Some(p) = &self.probe else { return };
        if now >= p.deadline {
            if let Some(p) = self.probe.take() {
                self.probe_failed(p, now);
            }
        } else if !p.indirect_sent && now >= p.indirect_at {
            self.send_ping_reqs();
        }
    }

    /// SWIM §3.1: ask k random Alive members (never the target) to probe the target for us.
    fn send_ping_reqs(&mut self) {
        let Some(p) = &self.probe else { return };
        let (seq, target) = (p.seq, p.target.clone());
        let candidates: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(id, m)| m.liveness == Liveness::Alive && **id != target)
            .map(|(id, _)| id.clone())
            .collect();
        let helpers: Vec<NodeId> = candidates
            .choose_multiple(&mut self.rng, self.config.indirect_checks)
            .cloned()
            .collect();
        for helper in &helpers {
            let updates = self.request_piggyback(helper);
            let message = Message::PingReq {
                from: self.me.clone(),
                seq,
                target: target.clone(),
                updates,
            };
            self.send(helper.clone(), message);
        }
        self.stats.indirect_probes += 1;
        if let Some(p) = self.probe.as_mut() {
            p.indirect_sent = true;
            p.helpers = helpers;
        }
    }

    /// No `Ack` by the end of the interval.
    ///
    /// Lifeguard local health, as memberlist scores it: when helpers were asked, each `Nack`
    /// that did not come counts +1 (helpers that answer prove our network works and the target
    /// is the problem; silent helpers suggest the problem is us); with no helpers to ask, the
    /// failed probe itself counts +1.
    fn probe_failed(&mut self, p: Probe, now: Time) {
        self.stats.probes_failed += 1;
        let delta = if p.helpers.is_empty() {
            1
        } else {
            p.helpers.len().saturating_sub(p.nacks.len())
        };
        self.adjust_awareness(i64::try_from(delta).unwrap_or(i64::MAX));
        let Some(m) = self.members.get(&p.target) else { return };
        if m.liveness == Liveness::Dead {
            return;
        }
        if m.liveness == Liveness::Alive {
            self.stats.suspicions_raised += 1;
        }
        let incarnation = m.incarnation;
        self.on_suspect(p.target, incarnation, self.me.clone(), true, now);
    }

    fn on_ack(&mut self, seq: u64) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            self.adjust_awareness(-1);
            return;
        }
        if let Some(pos) = self.relays.iter().position(|r| r.seq == seq) {
            let relay = self.relays.swap_remove(pos);
            let updates = self.piggyback(&relay.prober);
            let message = Message::Ack {
                from: self.me.clone(),
                seq: relay.prober_seq,
                updates,
            };
            self.send(relay.prober, message);
        }
        // Otherwise the probe already ended: nothing to do.
    }

    fn serve_ping_req(&mut self, prober: NodeId, prober_seq: u64, target: NodeId, now: Time) {
        if target == self.me {
            // Asked to probe ourselves: we are evidently up.
            let updates = self.piggyback(&prober);
            self.send(
                prober,
                Message::Ack {
                    from: self.me.clone(),
                    seq: prober_seq,
                    updates,
                },
            );
            return;
        }
        if !self.members.contains_key(&target) {
            // We cannot address it. Still prove to the prober that we, and its network, work.
            let updates = self.piggyback(&prober);
            self.send(
                prober,
                Message::Nack {
                    from: self.me.clone(),
                    seq: prober_seq,
                    updates,
                },
            );
            return;
        }
        if self.relays.len() >= MAX_RELAYS {
            return;
        }
        let seq = self.next_seq();
        self.relays.push(Relay {
            seq,
            prober,
            prober_seq,
            nack_at: Some(now.saturating_add(self.config.nack_timeout())),
            expires: now.saturating_add(self.config.probe_interval),
        });
        let updates = self.request_piggyback(&target);
        self.send(
            target.clone(),
            Message::Ping {
                from: self.me.clone(),
                seq,
                target,
                updates,
            },
        );
    }

    fn tick_relays(&mut self, now: Time) {
        let mut nacks = Vec::new();
        for r in &mut self.relays {
            if r.nack_at.is_some_and(|at| now >= at) {
                r.nack_at = None;
                nacks.push((r.prober.clone(), r.prober_seq));
            }
        }
        self.relays.retain(|r| now < r.expires);
        for (prober, seq) in nacks {
            let updates = self.piggyback(&prober);
            self.send(
                prober,
                Message::Nack {
                    from: self.me.clone(),
                    seq,
                    updates,
                },
            );
        }
    }

    fn tick_suspicions(&mut self, now: Time) {
        let expired: Vec<(NodeId, u64)> = self
            .members
            .iter()
            .filter(|(_, m)| m.suspicion.as_ref().is_some_and(|s| now >= s.deadline))
            .map(|(id, m)| (id.clone(), m.incarnation))
            .collect();
        for (id, incarnation) in expired {
            self.stats.deaths_declared += 1;
            self.on_dead(id, incarnation, self.me.clone(), now);
        }
    }

    // ----- push/pull -----

    /// memberlist's push/pull with one random Alive member, plus Serf's reconnect: with
    /// probability dead/live, also one random Dead member. Nobody probes a Dead member, so
    /// without the reconnect two halves of a healed partition that each declared the other Dead
    /// would never talk again. The probability keeps the whole cluster's reconnect traffic at
    /// about one exchange per Dead member per interval, whatever the cluster size.
    fn push_pull(&mut self, now: Time) {
        self.next_push_pull_at = now.saturating_add(self.config.push_pull_interval);
        let alive: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.liveness == Liveness::Alive)
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(peer) = alive.choose(&mut self.rng).cloned() {
            let message = self.sync_message(Some(&peer), false);
            self.send(peer, message);
        }
        let dead: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.liveness == Liveness::Dead)
            .map(|(id, _)| id.clone())
            .collect();
        if dead.is_empty() {
            return;
        }
        let p = (dead.len() as f64 / self.live_count() as f64).min(1.0);
        if self.rng.gen_bool(p) {
            if let Some(peer) = dead.choose(&mut self.rng).cloned() {
                let message = self.sync_message(Some(&peer), false);
                self.send(peer, message);
            }
        }
    }
}

fn view<'a, M>(id: &'a NodeId, m: &'a Member<M>) -> MemberView<'a, M> {
    MemberView {
        id,
        incarnation: m.incarnation,
        liveness: m.liveness,
        meta: &m.meta,
        since: m.since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Meta = u8;

    fn id(s: &str) -> NodeId {
        NodeId::new(s)
    }

    fn ms(n: u64) -> Time {
        Duration::from_millis(n)
    }

    fn node(name: &str) -> Swim<Meta> {
        Swim::new(id(name), 0, 0, SwimConfig::default(), 7, Time::ZERO)
    }

    fn ping(from: &str, to: &str, updates: Vec<Update<Meta>>) -> Message<Meta> {
        Message::Ping {
            from: id(from),
            seq: 1_000_000,
            target: id(to),
            updates,
        }
    }

    fn alive(name: &str, incarnation: u64) -> Update<Meta> {
        Update::Alive {
            id: id(name),
            incarnation,
            meta: 0,
        }
    }

    /// `me` knowing every name in `others` as Alive at incarnation 0.
    fn cluster(me: &str, others: &[&str]) -> Swim<Meta> {
        let mut s = node(me);
        let updates = others.iter().map(|o| alive(o, 0)).collect();
        s.handle(ping(others[0], me, updates), Time::ZERO);
        // Keep push/pull out of the way of the probe sequences these tests script.
        s.next_push_pull_at = Duration::from_secs(1_000_000);
        s
    }

    fn sends(outputs: &[Output<Meta>]) -> Vec<(NodeId, Message<Meta>)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { to, message } => Some((to.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }

    fn state(s: &Swim<Meta>, name: &str) -> Option<(u64, Liveness)> {
        s.member(&id(name)).map(|v| (v.incarnation, v.liveness))
    }

    /// Ticks at every deadline up to `until`, collecting outputs.
    fn run(s: &mut Swim<Meta>, until: Time) -> Vec<Output<Meta>> {
        let mut out = Vec::new();
        while s.next_deadline() <= until {
            let at = s.next_deadline();
            out.extend(s.tick(at));
        }
        out
    }

    #[test]
    fn defaults_validate_and_each_bad_field_is_named() {
        SwimConfig::default().validate().unwrap();
        let bad: Vec<(SwimConfig, &str)> = vec![
            (
                SwimConfig {
                    probe_interval: Duration::ZERO,
                    ..Default::default()
                },
                "swim.probe_interval",
            ),
            (
                SwimConfig {
                    probe_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "swim.probe_timeout",
            ),
            (
                SwimConfig {
                    probe_timeout: Duration::from_secs(1),
                    ..Default::default()
                },
                "swim.probe_timeout must be shorter than swim.probe_interval",
            ),
            (
                SwimConfig {
                    suspicion_mult: 0,
                    ..Default::default()
                },
                "swim.suspicion_mult",
            ),
            (
                SwimConfig {
                    suspicion_max_timeout_mult: 0,
                    ..Default::default()
                },
                "swim.suspicion_max_timeout_mult",
            ),
            (
                SwimConfig {
                    retransmit_mult: 0,
                    ..Default::default()
                },
                "swim.retransmit_mult",
            ),
            (
                SwimConfig {
                    push_pull_interval: Duration::ZERO,
                    ..Default::default()
                },
                "swim.push_pull_interval",
            ),
            (
                SwimConfig {
                    awareness_max_multiplier: 0,
                    ..Default::default()
                },
                "swim.awareness_max_multiplier",
            ),
            (
                SwimConfig {
                    max_piggyback: 0,
                    ..Default::default()
                },
                "swim.max_piggyback",
            ),
        ];
        for (config, field) in bad {
            let err = config.validate().unwrap_err();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }

    #[test]
    fn suspicion_timeout_follows_memberlist() {
        let c = SwimConfig::default();
        assert_eq!(c.suspicion_bounds(5), (Duration::from_secs(4), Duration::from_secs(24)));
        assert_eq!(
            c.suspicion_bounds(10),
            (Duration::from_secs(4), Duration::from_secs(24))
        );
        let (min, max) = c.suspicion_bounds(100);
        assert_eq!((min, max), (Duration::from_secs(8), Duration::from_secs(48)));
        let (min, max) = c.suspicion_bounds(10);
        assert_eq!(suspicion_timeout(0, 2, min, max), max);
        // 24 − 20·ln 2 / ln 3 = 11.381 s
        let one = suspicion_timeout(1, 2, min, max).as_secs_f64();
        assert!((one - 11.381).abs() < 0.001, "{one}");
        assert_eq!(suspicion_timeout(2, 2, min, max), min);
        assert_eq!(suspicion_timeout(5, 2, min, max), min);
        assert_eq!(suspicion_timeout(0, 0, min, max), min);
        assert_eq!(c.retransmit_limit(5), 4);
        assert_eq!(c.retransmit_limit(9), 4);
        assert_eq!(c.retransmit_limit(10), 8);
        assert_eq!(c.retransmit_limit(1), 4);
    }

    #[test]
    fn failed_probe_goes_indirect_then_suspects_and_the_timer_kills() {
        let mut s = cluster("a", &["b", "c", "d", "e", "f"]);
        let c = SwimConfig::default();
        // First probe.
        let start = s.next_deadline();
        let out = s.tick(start);
        let (target, seq) = match &sends(&out)[..] {
            [(to, Message::Ping { seq, target, .. })] => {
                assert_eq!(to, target);
                (target.clone(), *seq)
            }
            other => panic!("expected one ping, got {other:?}"),
        };
        // Nothing before the probe timeout.
        assert!(sends(&s.tick(start + c.probe_timeout - ms(1))).is_empty());
        let out = s.tick(start + c.probe_timeout);
        let reqs = sends(&out);
        assert_eq!(reqs.len(), 3, "k = 3 helpers");
        for (to, m) in &reqs {
            assert_ne!(to, &target);
            assert!(matches!(m, Message::PingReq { seq: s2, target: t, .. } if *s2 == seq && t == &target));
        }
        // One helper nacks, two stay silent: the probe fails, the target is suspected, and the
        // two missing nacks count against our health.
        s.handle(
            Message::Nack {
                from: reqs[0].0.clone(),
                seq,
                updates: vec![],
            },
            start + ms(700),
        );
        let out = s.tick(start + c.probe_interval);
        assert!(out.contains(&Output::Liveness {
            id: target.clone(),
            from: Some(Liveness::Alive),
            to: Liveness::Suspect
        }));
        assert_eq!(s.local_health(), 2);
        assert_eq!(s.stats().suspicions_raised, 1);
        // n = 6, k = 2, no confirmations: the timer is max = 24 s; a confirmation shrinks it.
        let suspected_at = start + c.probe_interval;
        let (_, max) = c.suspicion_bounds(6);
        let deadline = s.members.get(&target).unwrap().suspicion.as_ref().unwrap().deadline;
        assert_eq!(deadline, suspected_at + max);
        let other = reqs[1].0.clone();
        let confirm = Update::Suspect {
            id: target.clone(),
            incarnation: 0,
            from: other.clone(),
        };
        s.handle(
            Message::Ack {
                from: other,
                seq: 0,
                updates: vec![confirm],
            },
            suspected_at + ms(10),
        );
        let deadline = s.members.get(&target).unwrap().suspicion.as_ref().unwrap().deadline;
        assert!(deadline < suspected_at + max);
        let out = run(&mut s, deadline);
        assert!(out.contains(&Output::Liveness {
            id: target.clone(),
            from: Some(Liveness::Suspect),
            to: Liveness::Dead
        }));
        assert_eq!(state(&s, target.as_str()), Some((0, Liveness::Dead)));
    }

    #[test]
    fn successful_probe_lowers_health_and_ack_after_the_probe_is_ignored() {
        let mut s = cluster("a", &["b", "c"]);
        let start = s.next_deadline();
        let out = s.tick(start);
        let [(target, Message::Ping { seq, .. })] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        s.awareness = 3;
        s.handle(
            Message::Ack {
                from: target.clone(),
                seq: *seq,
                updates: vec![],
            },
            start + ms(3),
        );
        assert_eq!(s.local_health(), 2);
        assert!(s.probe.is_none());
        // A duplicate, and an ack with an unknown seq, change nothing.
        s.handle(
            Message::Ack {
                from: target.clone(),
                seq: *seq,
                updates: vec![],
            },
            start + ms(4),
        );
        s.handle(
            Message::Ack {
                from: target.clone(),
                seq: 999,
                updates: vec![],
            },
            start + ms(4),
        );
        assert_eq!(s.local_health(), 2);
        // Health 2 stretches the next probe interval to 3 s.
        assert_eq!(s.next_probe_at, start + Duration::from_secs(1));
        let out = s.tick(start + Duration::from_secs(1));
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(s.next_probe_at, start + Duration::from_secs(4));
    }

    #[test]
    fn helper_relays_the_ack_with_the_probers_seq_or_nacks() {
        let mut h = cluster("h", &["p", "t"]);
        let out = h.handle(
            Message::PingReq {
                from: id("p"),
                seq: 42,
                target: id("t"),
                updates: vec![],
            },
            ms(0),
        );
        let [(to, Message::Ping { seq: hseq, target, .. })] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!((to, target), (&id("t"), &id("t")));
        let out = h.handle(
            Message::Ack {
                from: id("t"),
                seq: *hseq,
                updates: vec![],
            },
            ms(5),
        );
        assert!(matches!(&sends(&out)[..], [(to, Message::Ack { seq: 42, .. })] if to == &id("p")));

        // A silent target: a Nack after the nack timeout, and a late Ack is still relayed.
        let out = h.handle(
            Message::PingReq {
                from: id("p"),
                seq: 43,
                target: id("t"),
                updates: vec![],
            },
            ms(1000),
        );
        let [(_, Message::Ping { seq: hseq, .. })] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        let nack_at = ms(1000) + SwimConfig::default().nack_timeout();
        assert!(!sends(&h.tick(nack_at - ms(1)))
            .iter()
            .any(|(_, m)| matches!(m, Message::Nack { .. })));
        let out = h.tick(nack_at);
        assert!(sends(&out)
            .iter()
            .any(|(to, m)| to == &id("p") && matches!(m, Message::Nack { seq: 43, .. })));
        let out = h.handle(
            Message::Ack {
                from: id("t"),
                seq: *hseq,
                updates: vec![],
            },
            nack_at + ms(100),
        );
        assert!(matches!(&sends(&out)[..], [(_, Message::Ack { seq: 43, .. })]));
        // Relays expire.
        h.tick(ms(10_000));
        assert!(h.relays.is_empty());
    }

    #[test]
    fn suspicion_about_self_is_refuted_on_the_ack() {
        let mut s = cluster("a", &["b"]);
        let accuse = Update::Suspect {
            id: id("a"),
            incarnation: 0,
            from: id("b"),
        };
        let out = s.handle(ping("b", "a", vec![accuse.clone()]), ms(1));
        assert_eq!(s.incarnation(), 1);
        assert_eq!(s.local_health(), 1);
        let [(_, Message::Ack { updates, .. })] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        assert!(updates.contains(&Update::Alive {
            id: id("a"),
            incarnation: 1,
            meta: 0
        }));
        // The same accusation again is stale.
        s.handle(ping("b", "a", vec![accuse]), ms(2));
        assert_eq!(s.incarnation(), 1);
        // Dead at a later incarnation (we restarted and lost count) is outbid too.
        s.handle(
            ping(
                "b",
                "a",
                vec![Update::Dead {
                    id: id("a"),
                    incarnation: 5,
                    from: id("b"),
                }],
            ),
            ms(3),
        );
        assert_eq!(s.incarnation(), 6);
        assert_eq!(s.member(&id("a")).unwrap().liveness, Liveness::Alive);
    }

    #[test]
    fn a_held_suspicion_rides_on_probes_until_a_peer_corrects_it() {
        // a heard c's suspicion of b but missed b's refutation; d has the refutation.
        let mut a = cluster("a", &["b", "c", "d"]);
        a.handle(
            ping(
                "c",
                "a",
                vec![Update::Suspect {
                    id: id("b"),
                    incarnation: 0,
                    from: id("c"),
                }],
            ),
            ms(1),
        );
        let mut d = cluster("d", &["a", "b", "c"]);
        d.handle(ping("b", "d", vec![alive("b", 1)]), ms(1));
        for _ in 0..40 {
            d.handle(ping("c", "d", vec![]), ms(2)); // spend d's retransmit budget
        }
        // a's probes carry the suspicion; the first one that reaches d comes back corrected.
        for _ in 0..8 {
            let out = a.tick(a.probe.as_ref().map_or(a.next_probe_at, |p| p.deadline));
            for (to, m) in sends(&out) {
                if to == id("d") {
                    assert!(m.updates().contains(&Update::Suspect {
                        id: id("b"),
                        incarnation: 0,
                        from: id("c")
                    }));
                    for reply in sends(&d.handle(m, a.next_probe_at)) {
                        a.handle(reply.1, a.next_probe_at);
                    }
                    assert_eq!(state(&a, "b"), Some((1, Liveness::Alive)));
                    return;
                }
            }
        }
        panic!("a never probed d");
    }

    #[test]
    fn a_suspect_gets_a_last_probe_before_its_timer_runs_out() {
        let others = ["b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let mut a = cluster("a", &others);
        a.handle(
            ping(
                "c",
                "a",
                vec![Update::Suspect {
                    id: id("b"),
                    incarnation: 0,
                    from: id("c"),
                }],
            ),
            ms(1),
        );
        let deadline = a.members[&id("b")].suspicion.as_ref().unwrap().deadline;
        // Ten members, no confirmation: the full 24 s.
        assert_eq!(deadline, ms(1) + Duration::from_secs(24));
        // Earlier than two intervals before the deadline, probes follow the round robin; the
        // first probe inside that window goes to b, once.
        a.next_probe_at = deadline - Duration::from_millis(2500);
        a.tick(a.next_probe_at);
        assert!(!a.members[&id("b")].suspicion.as_ref().unwrap().verified);
        a.probe = None;
        let at = deadline - Duration::from_millis(1500);
        a.next_probe_at = at;
        let out = a.tick(at);
        let [(to, Message::Ping { updates, .. })] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(to, &id("b"));
        assert!(updates.contains(&Update::Suspect {
            id: id("b"),
            incarnation: 0,
            from: id("c")
        }));
        assert!(a.members[&id("b")].suspicion.as_ref().unwrap().verified);
        // b answers with its refutation: no death.
        let seq = a.probe.as_ref().unwrap().seq;
        a.handle(
            Message::Ack {
                from: id("b"),
                seq,
                updates: vec![alive("b", 1)],
            },
            at + ms(2),
        );
        assert_eq!(state(&a, "b"), Some((1, Liveness::Alive)));
    }

    #[test]
    fn pings_for_another_id_are_ignored() {
        let mut s = cluster("a", &["b"]);
        let out = s.handle(ping("b", "zz", vec![alive("c", 0)]), ms(1));
        assert!(out.is_empty());
        assert!(s.member(&id("c")).is_none());
    }

    #[test]
    fn buddy_system_puts_the_accusation_on_pings_to_a_suspect() {
        let mut s = cluster("a", &["b", "c", "d", "e"]);
        let suspect = |from: &str| Update::Suspect {
            id: id("b"),
            incarnation: 0,
            from: id(from),
        };
        s.handle(ping("c", "a", vec![suspect("c"), suspect("d")]), ms(1));
        // Our probes go round to b within two rounds; every accuser is named on the ping to it.
        for _ in 0..8 {
            let out = s.tick(s.probe.as_ref().map_or(s.next_probe_at, |p| p.deadline));
            if let Some((_, Message::Ping { updates, .. })) = sends(&out).iter().find(|(to, _)| to == &id("b")) {
                // Our own Alive first (the target may not know us), and the accusations.
                assert_eq!(updates[0], alive("a", 0));
                assert!(
                    updates.contains(&suspect("c")) && updates.contains(&suspect("d")),
                    "{updates:?}"
                );
                return;
            }
        }
        panic!("b was not probed");
    }

    #[test]
    fn accusations_are_answered_to_the_accuser_and_the_relayer() {
        let mut s = cluster("a", &["b", "c", "d"]);
        // d relays c's accusation on a ping: we refute on the Ack to d and ping c directly.
        let accusation = Update::Suspect {
            id: id("a"),
            incarnation: 0,
            from: id("c"),
        };
        let out = s.handle(ping("d", "a", vec![accusation.clone()]), ms(1));
        let refutation = Update::Alive {
            id: id("a"),
            incarnation: 1,
            meta: 0,
        };
        let sent = sends(&out);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent
            .iter()
            .any(|(to, m)| to == &id("d") && matches!(m, Message::Ack { .. })));
        assert!(sent
            .iter()
            .any(|(to, m)| to == &id("c") && matches!(m, Message::Ping { .. })));
        assert!(sent.iter().all(|(_, m)| m.updates().contains(&refutation)));
        // The next probe goes to an accuser.
        let out = s.tick(s.next_probe_at);
        assert!(matches!(&sends(&out)[..], [(to, Message::Ping { .. })] if to == &id("c") || to == &id("d")));
        // Long after the refutation's retransmit budget is spent, b relays the stale accusation:
        // the Ack to b still carries our Alive.
        for i in 0..20 {
            s.handle(ping("b", "a", vec![]), ms(100 + i));
        }
        let out = s.handle(ping("b", "a", vec![accusation]), ms(200));
        let acks = sends(&out);
        assert!(
            acks.iter()
                .any(|(to, m)| to == &id("b") && m.updates().contains(&refutation)),
            "{acks:?}"
        );
        assert_eq!(s.incarnation(), 1, "a stale accusation is not refuted again");
    }

    #[test]
    fn forgotten_members_stay_forgotten_until_a_later_incarnation() {
        let mut s = cluster("a", &["b", "c"]);
        s.handle(ping("c", "a", vec![alive("b", 3)]), ms(1));
        s.forget(&id("b"));
        assert!(s.member(&id("b")).is_none());
        assert!(s.members().all(|m| m.id != &id("b")));
        s.handle(ping("c", "a", vec![alive("b", 3)]), ms(2));
        let table = vec![MemberRecord {
            id: id("b"),
            incarnation: 2,
            liveness: Liveness::Alive,
            meta: 0,
        }];
        s.handle(
            Message::SyncReply {
                from: id("c"),
                members: table,
                user_state: vec![],
                updates: vec![],
            },
            ms(3),
        );
        assert!(s.member(&id("b")).is_none());
        s.handle(
            ping(
                "c",
                "a",
                vec![Update::Suspect {
                    id: id("b"),
                    incarnation: 9,
                    from: id("c"),
                }],
            ),
            ms(4),
        );
        assert!(s.member(&id("b")).is_none());
        let out = s.handle(ping("c", "a", vec![alive("b", 4)]), ms(5));
        assert!(out.contains(&Output::Liveness {
            id: id("b"),
            from: None,
            to: Liveness::Alive
        }));
        assert_eq!(state(&s, "b"), Some((4, Liveness::Alive)));
    }

    #[test]
    fn meta_change_is_reported_and_set_meta_raises_incarnation() {
        let mut s = cluster("a", &["b"]);
        let out = s.handle(
            ping(
                "b",
                "a",
                vec![Update::Alive {
                    id: id("b"),
                    incarnation: 1,
                    meta: 9,
                }],
            ),
            ms(1),
        );
        assert!(out.contains(&Output::Meta { id: id("b") }));
        assert_eq!(*s.member(&id("b")).unwrap().meta, 9);
        assert_eq!(s.set_meta(4, ms(2)), vec![Output::Meta { id: id("a") }]);
        assert_eq!((s.incarnation(), *s.meta()), (1, 4));
        let out = s.tick(s.next_deadline());
        let [(_, Message::Ping { updates, .. })] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        assert!(updates.contains(&Update::Alive {
            id: id("a"),
            incarnation: 1,
            meta: 4
        }));
    }

    #[test]
    fn user_broadcasts_are_reported_once_and_retransmitted_a_bounded_number_of_times() {
        let mut s = cluster("a", &["b", "c", "d"]);
        let out = s.handle(ping("b", "a", vec![Update::User(b"x".to_vec())]), ms(1));
        assert!(out.contains(&Output::User(b"x".to_vec())));
        let out = s.handle(ping("c", "a", vec![Update::User(b"x".to_vec())]), ms(2));
        assert!(!out.iter().any(|o| matches!(o, Output::User(_))));
        // Our own broadcast coming back is not reported; it goes out limit(n = 4) = 4 times.
        s.broadcast_user(b"mine".to_vec());
        let mut sent = 0;
        for i in 0..20 {
            let out = s.handle(ping("b", "a", vec![Update::User(b"mine".to_vec())]), ms(10 + i));
            assert!(!out.iter().any(|o| matches!(o, Output::User(_))));
            for (_, m) in sends(&out) {
                sent += m
                    .updates()
                    .iter()
                    .filter(|u| **u == Update::User(b"mine".to_vec()))
                    .count();
            }
        }
        assert_eq!(sent, 4);
    }

    #[test]
    fn piggyback_prefers_the_least_sent_and_a_newer_claim_replaces_the_older() {
        let mut q = BroadcastQueue::<Meta>::new();
        for i in 0..3u8 {
            q.push(BroadcastKey::Member(id(&format!("m{i}"))), alive(&format!("m{i}"), 0));
        }
        // Newest first among equals.
        assert_eq!(q.take(1, 10), vec![alive("m2", 0)]);
        assert_eq!(q.take(2, 10), vec![alive("m1", 0), alive("m0", 0)]);
        q.push(BroadcastKey::Member(id("m2")), alive("m2", 1));
        assert_eq!(q.items.len(), 3);
        assert_eq!(q.take(1, 10), vec![alive("m2", 1)]);
        // Each is dropped once sent `limit` times.
        for _ in 0..10 {
            q.take(3, 3);
        }
        assert_eq!(q.items.len(), 0);
    }

    #[test]
    fn join_request_and_sync_exchange_tables_and_user_state() {
        let mut seed = cluster("s", &["x"]);
        seed.set_user_state(b"layout".to_vec());
        let mut joiner = node("j");
        let req = joiner.join_request(ms(0));
        let out = seed.handle(req, ms(1));
        assert!(out.contains(&Output::Liveness {
            id: id("j"),
            from: None,
            to: Liveness::Alive
        }));
        let [(to, reply)] = &sends(&out)[..] else {
            panic!("{out:?}")
        };
        assert_eq!(to, &id("j"));
        let out = joiner.handle(reply.clone(), ms(2));
        assert!(out.contains(&Output::UserState(b"layout".to_vec())));
        assert_eq!(joiner.members().count(), 3);
    }

    #[test]
    fn push_pull_treats_a_remote_dead_as_suspect_so_the_member_can_refute() {
        let mut s = cluster("a", &["b", "c"]);
        let table = vec![MemberRecord {
            id: id("b"),
            incarnation: 0,
            liveness: Liveness::Dead,
            meta: 0,
        }];
        s.handle(
            Message::SyncReply {
                from: id("c"),
                members: table,
                user_state: vec![],
                updates: vec![],
            },
            ms(1),
        );
        assert_eq!(state(&s, "b"), Some((0, Liveness::Suspect)));
        s.handle(ping("b", "a", vec![alive("b", 1)]), ms(2));
        assert_eq!(state(&s, "b"), Some((1, Liveness::Alive)));
    }

    /// The rank of a claim in SWIM's order: by incarnation, then Alive < Suspect < Dead.
    fn rank(incarnation: u64, l: Liveness) -> (u64, u8) {
        (incarnation, l as u8)
    }

    fn update_strategy() -> impl Strategy<Value = Update<Meta>> {
        (0u8..3, 0u64..4, 0usize..3, any::<u8>()).prop_map(|(kind, inc, from, meta)| {
            let from = id(["c", "d", "e"][from]);
            match kind {
                0 => Update::Alive {
                    id: id("b"),
                    incarnation: inc,
                    meta,
                },
                1 => Update::Suspect {
                    id: id("b"),
                    incarnation: inc,
                    from,
                },
                _ => Update::Dead {
                    id: id("b"),
                    incarnation: inc,
                    from,
                },
            }
        })
    }

    fn apply_each(updates: &[Update<Meta>]) -> Swim<Meta> {
        let mut s = cluster("a", &["b", "c", "d", "e"]);
        for (i, u) in updates.iter().enumerate() {
            s.handle(ping("c", "a", vec![u.clone()]), ms(i as u64 + 1));
        }
        s
    }

    fn message_strategy() -> impl Strategy<Value = Message<Meta>> {
        let name = prop::sample::select(vec!["a", "b", "c", "zz", ""]).prop_map(id);
        let liveness = prop::sample::select(vec![Liveness::Alive, Liveness::Suspect, Liveness::Dead]);
        // Small values collide with real state; the extremes probe for overflow.
        let incarnation = prop_oneof![0u64..4, Just(u64::MAX - 1), Just(u64::MAX), any::<u64>()];
        let update = prop_oneof![
            (name.clone(), incarnation.clone(), any::<u8>()).prop_map(|(id, incarnation, meta)| Update::Alive {
                id,
                incarnation,
                meta
            }),
            (name.clone(), incarnation.clone(), name.clone()).prop_map(|(id, incarnation, from)| Update::Suspect {
                id,
                incarnation,
                from
            }),
            (name.clone(), incarnation.clone(), name.clone()).prop_map(|(id, incarnation, from)| Update::Dead {
                id,
                incarnation,
                from
            }),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(Update::User),
        ];
        let updates = prop::collection::vec(update, 0..4);
        let record =
            (name.clone(), incarnation, liveness, any::<u8>()).prop_map(|(id, incarnation, liveness, meta)| {
                MemberRecord {
                    id,
                    incarnation,
                    liveness,
                    meta,
                }
            });
        let records = prop::collection::vec(record, 0..4);
        let seq = prop_oneof![0u64..4, any::<u64>()];
        prop_oneof![
            (name.clone(), seq.clone(), name.clone(), updates.clone()).prop_map(|(from, seq, target, updates)| {
                Message::Ping {
                    from,
                    seq,
                    target,
                    updates,
                }
            }),
            (name.clone(), seq.clone(), name.clone(), updates.clone()).prop_map(|(from, seq, target, updates)| {
                Message::PingReq {
                    from,
                    seq,
                    target,
                    updates,
                }
            }),
            (name.clone(), seq.clone(), updates.clone()).prop_map(|(from, seq, updates)| Message::Ack {
                from,
                seq,
                updates
            }),
            (name.clone(), seq, updates.clone()).prop_map(|(from, seq, updates)| Message::Nack { from, seq, updates }),
            (name.clone(), records.clone(), updates.clone()).prop_map(|(from, members, updates)| Message::Sync {
                from,
                members,
                user_state: vec![1],
                updates
            }),
            (name, records, updates).prop_map(|(from, members, updates)| Message::SyncReply {
                from,
                members,
                user_state: vec![],
                updates
            }),
        ]
    }

    proptest! {
        /// SWIM's precedence rules make a member's (incarnation, liveness) the maximum, in
        /// (incarnation, Alive < Suspect < Dead) order, of every claim received, so any order
        /// of delivery ends in the same state. (Meta is not order-independent: two Alives with
        /// the same incarnation and different meta keep the first; only a member's own bug
        /// could produce them.)
        #[test]
        fn precedence_is_order_independent(
            (updates, shuffled) in prop::collection::vec(update_strategy(), 0..12)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
        ) {
            let a = apply_each(&updates);
            let b = apply_each(&shuffled);
            let expect = updates.iter().fold((0u64, Liveness::Alive), |best, u| {
                let claim = match u {
                    Update::Alive { incarnation, .. } => (*incarnation, Liveness::Alive),
                    Update::Suspect { incarnation, .. } => (*incarnation, Liveness::Suspect),
                    Update::Dead { incarnation, .. } => (*incarnation, Liveness::Dead),
                    Update::User(_) => best,
                };
                if rank(claim.0, claim.1) > rank(best.0, best.1) { claim } else { best }
            });
            prop_assert_eq!(state(&a, "b"), Some(expect));
            prop_assert_eq!(state(&b, "b"), Some(expect));
        }

        /// Whatever is said about us, we stay Alive in our own view, and we end above every
        /// accusation we received, so our refutation outranks it everywhere.
        #[test]
        fn every_accusation_about_self_is_outbid(
            claims in prop::collection::vec((0u8..3, 0u64..6), 0..12)
        ) {
            let mut s = cluster("a", &["b"]);
            let mut highest_accusation = None;
            for (i, (kind, inc)) in claims.iter().enumerate() {
                let u = match kind {
                    0 => Update::Alive { id: id("a"), incarnation: *inc, meta: 0 },
                    1 => Update::Suspect { id: id("a"), incarnation: *inc, from: id("b") },
                    _ => Update::Dead { id: id("a"), incarnation: *inc, from: id("b") },
                };
                if *kind != 0 {
                    highest_accusation = highest_accusation.max(Some(*inc));
                }
                s.handle(ping("b", "a", vec![u]), ms(i as u64));
            }
            prop_assert_eq!(s.member(&id("a")).unwrap().liveness, Liveness::Alive);
            if let Some(h) = highest_accusation {
                prop_assert!(s.incarnation() > h);
            }
            prop_assert!(s.local_health() < SwimConfig::default().awareness_max_multiplier);
        }

        /// Messages come from the network: none may panic the core, time may jump, and the
        /// pending state stays bounded.
        #[test]
        fn arbitrary_messages_never_panic(
            messages in prop::collection::vec((message_strategy(), 0u64..3000), 0..40)
        ) {
            let mut s = cluster("a", &["b", "c"]);
            let mut now = Time::ZERO;
            for (m, step) in messages {
                now += ms(step);
                s.handle(m, now);
                if s.next_deadline() <= now {
                    s.tick(now);
                }
                prop_assert!(s.relays.len() <= MAX_RELAYS);
                prop_assert!(s.local_health() < SwimConfig::default().awareness_max_multiplier);
                prop_assert_eq!(s.member(&id("a")).unwrap().liveness, Liveness::Alive);
            }
        }
    }
}
