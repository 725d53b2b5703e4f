//! The tokio driver of the quorum core: fan-out to all N replicas, answer at W or R, keep
//! collecting for read repair.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use shoal_handoff::{Hints, StrayOwners};
use shoal_pbs::{Leg, LegLog, Profile};
use shoal_ring::{Layout, NodeId, Placement};
use shoal_storage::{Object, Replica, ReplicaError, Store, StoreError, Value};
use shoal_version::{VersionError, VersionVector};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::params::{self, ParamError, RequestDefaults};
use crate::quorum::{Progress, QuorumTracker};

pub type TransportFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How the coordinator reaches other nodes. Implemented over QUIC by the node, and by the
/// simulator over its virtual network. `Err(String)` means the replica could not be reached
/// or failed; the string is reported to the client as the reason.
///
/// Replica requests carry `epoch`, the coordinator's layout epoch, for epoch fencing: the
/// replica refuses one older than [`Coordinator::check_fence`] allows, and answers with its
/// layout record, which the transport hands to membership before reporting the refusal.
pub trait Transport: Send + Sync + 'static {
    fn replica_put(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>>;
    fn replica_get(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>>;
    /// Sloppy quorum: ask `node`, beyond the preference list, to keep `object` as a hint for
    /// `owner`, which is down, and hand it over when `owner` is back.
    fn hinted_put(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>>;
    /// Sloppy quorum: read the hint `node` keeps of `key` for `owner`.
    fn hinted_get(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>>;
    /// Ask `node` to coordinate a write. The outer `Err` means it could not be reached.
    fn forward_put(
        &self,
        node: &NodeId,
        request: PutRequest,
        timeout: Duration,
    ) -> TransportFuture<Result<Result<PutResponse, CoordError>, String>>;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Bytes,
    /// `None` writes a tombstone (a delete).
    pub value: Option<Bytes>,
    /// The causal context from an earlier read; `None` makes the write a sibling of whatever is
    /// there (for a delete: deletes what the coordinating replica holds).
    pub context: Option<VersionVector>,
    pub n: Option<u8>,
    pub w: Option<u8>,
    pub timeout_ms: Option<u32>,
    /// Set when a non-replica passed the write on, so a layout disagreement cannot loop.
    pub forwarded: bool,
    /// Whether hinted copies on fallback nodes count toward W (Dynamo's sloppy quorum);
    /// `Some(false)` counts only the preference list (Riak's `pw = w`). `None`: the node's
    /// `requests.sloppy_quorum`.
    #[serde(default)]
    pub sloppy: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PutResponse {
    pub context: VersionVector,
    pub acks: u8,
    /// How many of `acks` were hinted copies on fallback nodes standing in for down replicas.
    #[serde(default)]
    pub hinted: u8,
    pub siblings: u32,
    /// More siblings than the warning threshold: the application should resolve them.
    pub sibling_warning: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetRequest {
    pub key: Bytes,
    pub n: Option<u8>,
    pub r: Option<u8>,
    pub timeout_ms: Option<u32>,
    /// Whether fallback nodes' hints may answer for down replicas; see [`PutRequest::sloppy`].
    #[serde(default)]
    pub sloppy: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct GetResponse {
    /// The merge of the replies that made the quorum; `None` if none of them had the key.
    pub object: Option<Object>,
    pub replies: u8,
    /// How many of `replies` came from fallback nodes' hints.
    pub hinted: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedReplica {
    pub node: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, Clone, Serialize, Deserialize)]
pub enum CoordError {
    #[error("invalid parameter {param}: {message}")]
    InvalidParam { param: String, message: String },
    #[error("{op} quorum not reached: required {required} replicas, {acked} acknowledged")]
    Unavailable {
        op: String,
        required: u8,
        acked: u8,
        failed: Vec<FailedReplica>,
    },
    #[error("too many siblings: the write would leave {count}, over the limit sibling_max = {limit}; write with the returned context to resolve them")]
    TooManySiblings {
        count: usize,
        limit: usize,
        context: VersionVector,
    },
    #[error("object too large: the write would make the stored object {size} bytes, over the limit max_object_bytes = {limit}")]
    ObjectTooLarge {
        size: usize,
        limit: usize,
        context: VersionVector,
    },
    #[error("storage failure: {0}")]
    Storage(String),
    /// This node's data directory is under `storage.min_free_bytes`: its own replica cannot
    /// take the write. Reads still work.
    #[error("insufficient storage: {free} bytes free in this node's data directory, under the limit storage.min_free_bytes = {limit}; writes are refused until space is freed")]
    DiskFull { free: u64, limit: u64 },
}

impl From<ParamError> for CoordError {
    fn from(e: ParamError) -> Self {
        CoordError::InvalidParam {
            param: e.param().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<ReplicaError> for CoordError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Version(VersionError::TooManySiblings { count, limit, context }) => {
                CoordError::TooManySiblings { count, limit, context }
            }
            ReplicaError::ObjectTooLarge { size, limit, context } => {
                CoordError::ObjectTooLarge { size, limit, context }
            }
            ReplicaError::Store(StoreError::DiskFull { free, limit }) => CoordError::DiskFull { free, limit },
            other => CoordError::Storage(other.to_string()),
        }
    }
}

/// Epoch fencing refused a peer's replica request: the coordinator's layout is older than
/// this replica's placement serves (see [`Placement::fence`]).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[error("stale layout: the coordinator's layout epoch {epoch} is older than epoch {fence}, the oldest this replica serves; the coordinator has been sent the newer layout")]
pub struct StaleLayout {
    pub epoch: u64,
    pub fence: u64,
}

/// Why a node did not take a handoff (see [`Coordinator::check_handoff`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandoffRefused {
    /// The sender's layout is older: it is sent this node's record, and tries again.
    #[error(transparent)]
    Stale(StaleLayout),
    /// Not now (a change in flight, this node behind, a storage error): try again later.
    #[error("{0}")]
    Busy(String),
}

/// What [`Coordinator::replicate`] needs besides the placement and the object.
#[derive(Clone, Copy)]
struct Fanout {
    partition: u32,
    n: u8,
    w: u8,
    sloppy: bool,
    deadline: Instant,
    /// The object is already in this node's replica (it coordinated the write there).
    written_here: bool,
}

/// Why a coordinator's own replica did not count (see [`CoordinatorConfig::layout_lease`]).
const LEASE_LAPSED: &str = "layout lease lapsed: this node has not heard from a peer lately (it was paused, \
     restarted, or is cut off from every peer), so its own copy counts only alongside a peer's, in case the \
     cluster changed its layout without it";

/// How many times a request runs again when a replica's fence taught its coordinator a newer
/// layout while it ran.
const LAYOUT_RETRIES: usize = 2;

#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub defaults: RequestDefaults,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub read_repair: bool,
    pub storage: StorageExecution,
    /// The default for [`PutRequest::sloppy`] and [`GetRequest::sloppy`].
    pub sloppy_quorum: bool,
    /// WARS latencies to inject on every replica request, this node's own replica included
    /// (`shoal bench` latency profiles). `None` in production.
    pub inject: Option<Arc<Profile>>,
    /// Wait injected delays out on a dedicated timer thread, to the tens of microseconds,
    /// rather than on tokio's millisecond timer (which rounds a 0.26 ms draw up to 1–2 ms).
    /// Off only in tests that run on tokio's paused clock.
    pub precise_delays: bool,
    /// The layout lease: how long after its last sign from a peer that its layout is current
    /// (see [`Coordinator::renew_layout_lease`]) this node counts its own replica toward R and
    /// W on its own. Past it (a node back from a SIGSTOP or a crash, or cut off from every
    /// peer) its own replica counts only once a peer has accepted the request too, so a node
    /// the cluster went on without cannot answer from an old layout alone. Must be shorter
    /// than SWIM takes to declare a node dead. Zero turns the lease off.
    pub layout_lease: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            defaults: RequestDefaults::default(),
            default_timeout: Duration::from_secs(5),
            max_timeout: Duration::from_secs(60),
            read_repair: true,
            storage: StorageExecution::Inline,
            sloppy_quorum: true,
            inject: None,
            precise_delays: true,
            layout_lease: Duration::ZERO,
        }
    }
}

const NO_REPLY: &str = "no reply before the deadline";

/// Which nodes the coordinator should not wait for: SWIM's view of who is down.
pub trait Health: Send + Sync {
    fn is_down(&self, node: &NodeId) -> bool;
}

pub struct Coordinator<S: Store, T: Transport> {
    me: NodeId,
    health: OnceLock<Arc<dyn Health>>,
    /// Hints this node keeps for down replicas, when it stands in for them.
    hints: Option<Arc<Hints<S>>>,
    /// `None` until this node belongs to a cluster (a fresh node waiting for `admin join`).
    placement: RwLock<Option<Arc<Placement>>>,
    replica: Arc<Replica<S>>,
    transport: Arc<T>,
    config: CoordinatorConfig,
    /// Measured WARS legs per replica, for the live consistency prediction.
    legs: Arc<LegLog>,
    /// Until when this node's layout counts as confirmed (see `layout_lease`).
    lease: parking_lot::Mutex<Option<Instant>>,
}

/// Samples kept per leg and peer: enough for the model's tails (p99.9 needs a thousand).
const LEG_SAMPLES: usize = 4096;

/// Wait out an injected delay of `ms`; returns how long it actually took, in ms.
async fn pause(ms: f64, precise: bool) -> f64 {
    if ms <= 0.0 {
        return 0.0;
    }
    let started = Instant::now();
    let d = Duration::from_secs_f64(ms / 1000.0);
    if precise {
        crate::delay::precise_sleep(d).await;
    } else {
        tokio::time::sleep(d).await;
    }
    started.elapsed().as_secs_f64() * 1000.0
}

/// The injected delays of one round trip, in ms, and how to wait them out.
#[derive(Clone, Copy)]
struct Delays {
    out: f64,
    back: f64,
    precise: bool,
}

/// One round trip to a replica over the WARS legs `out` and `back`: wait out the injected
/// delay on the way there, make the call (built only then, so the message really leaves
/// late), wait out the delay on the way back, and record both legs (the delays as actually
/// waited) when the call succeeded.
async fn round_trip<V, F: Future<Output = Result<V, String>>>(
    legs: Arc<LegLog>,
    peer: NodeId,
    local: bool,
    (out, back): (Leg, Leg),
    delays: Delays,
    call: impl FnOnce() -> F,
) -> Result<V, String> {
    let waited_out = pause(delays.out, delays.precise).await;
    let started = Instant::now();
    let result = call().await;
    let measured = started.elapsed().as_secs_f64() * 1000.0;
    let waited_back = pause(delays.back, delays.precise).await;
    if result.is_ok() {
        legs.record_round_trip(peer.as_str(), local, (out, waited_out), (back, waited_back), measured);
    }
    result
}

fn unavailable<Id: Clone + PartialEq + ToString>(op: &str, q: &QuorumTracker<Id>) -> CoordError {
    metrics::counter!("shoal_quorum_failures_total", "op" => op.to_string()).increment(1);
    CoordError::Unavailable {
        op: op.to_string(),
        required: q.required() as u8,
        acked: q.acked().len() as u8,
        failed: q
            .failures(NO_REPLY)
            .into_iter()
            .map(|(node, reason)| FailedReplica {
                node: node.to_string(),
                reason,
            })
            .collect(),
    }
}

/// Where a replica's storage calls run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageExecution {
    /// On the async worker that handles the request. A RocksDB point read or an unsynced WAL
    /// append takes microseconds, while a hop to a blocking thread and back costs two context
    /// switches; on a 2-core host running three nodes that hop halved throughput (see
    /// docs/benchmarks.md). Right when writes are not fsynced and the working set is cached.
    Inline,
    /// On tokio's blocking pool: for `sync_writes` (an fsync per write) or data sets much larger
    /// than memory, where a call can wait on the disk.
    Pool,
}

async fn storage<R: Send + 'static>(
    execution: StorageExecution,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    match execution {
        StorageExecution::Inline => Ok(f()),
        StorageExecution::Pool => shoal_storage::blocking(f).await,
    }
}

impl<S: Store, T: Transport> Coordinator<S, T> {
    /// `placement` is `None` on a node that has not joined a cluster; it refuses requests until
    /// [`Coordinator::set_placement`] gives it one.
    pub fn new(
        me: NodeId,
        placement: Option<Placement>,
        replica: Arc<Replica<S>>,
        transport: Arc<T>,
        config: CoordinatorConfig,
    ) -> Self {
        Self {
            me,
            health: OnceLock::new(),
            hints: None,
            placement: RwLock::new(placement.map(Arc::new)),
            replica,
            transport,
            config,
            legs: Arc::new(LegLog::new(LEG_SAMPLES)),
            lease: parking_lot::Mutex::new(None),
        }
    }

    /// The WARS legs this coordinator measured (`GET /v1/admin/consistency`).
    pub fn legs(&self) -> &Arc<LegLog> {
        &self.legs
    }

    /// The delays to inject on a round trip `out`, `back` to a replica (zero without a
    /// profile). `nearest`: the coordinator's own replica, or the nearest one when it holds
    /// none, which a profile's far legs spare.
    fn delays(&self, out: Leg, back: Leg, nearest: bool) -> Delays {
        let precise = self.config.precise_delays;
        match &self.config.inject {
            None => Delays {
                out: 0.0,
                back: 0.0,
                precise,
            },
            Some(p) => {
                let mut rng = rand::thread_rng();
                Delays {
                    out: p.sample(out, nearest, &mut rng),
                    back: p.sample(back, nearest, &mut rng),
                    precise,
                }
            }
        }
    }

    /// Keep hints for other nodes in `hints` (without it, this node refuses to stand in).
    pub fn with_hints(mut self, hints: Arc<Hints<S>>) -> Self {
        self.hints = Some(hints);
        self
    }

    /// Where the coordinator learns who is down (set once, by membership).
    pub fn set_health(&self, health: Arc<dyn Health>) {
        let _ = self.health.set(health);
    }

    fn is_down(&self, node: &NodeId) -> bool {
        self.health.get().is_some_and(|h| h.is_down(node))
    }

    pub fn hints(&self) -> Option<&Arc<Hints<S>>> {
        self.hints.as_ref()
    }

    /// The nodes that may stand in for down members of `pref`, in the ring's fallback order,
    /// skipping those known to be down (empty when the request is strict). Requests work it
    /// out only on first need: most find every replica up and never ask.
    fn fallbacks(
        &self,
        layout: &Layout,
        partition: u32,
        pref: &[NodeId],
        skip: &[NodeId],
        sloppy: bool,
    ) -> VecDeque<NodeId> {
        if !sloppy {
            return VecDeque::new();
        }
        layout
            .walk(partition)
            .iter()
            .filter(|x| !pref.contains(x) && !skip.contains(x) && **x != self.me && !self.is_down(x))
            .cloned()
            .collect()
    }

    /// Where a request for replica `node` goes: to `node` itself, or, when SWIM already knows
    /// it is down and a fallback is left, to that fallback standing in for it (sloppy quorum).
    /// Returns (the node to ask, the replica it stands in for).
    fn route(&self, node: &NodeId, next_fallback: &mut impl FnMut() -> Option<NodeId>) -> (NodeId, Option<NodeId>) {
        if *node != self.me && self.is_down(node) {
            if let Some(f) = next_fallback() {
                return (f, Some(node.clone()));
            }
        }
        (node.clone(), None)
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// The complete layout: where reads go and writes always go. `None` before this node has
    /// joined a cluster.
    pub fn layout(&self) -> Option<Arc<Layout>> {
        self.placement.read().as_ref().map(|p| p.current.clone())
    }

    pub fn placement(&self) -> Option<Arc<Placement>> {
        self.placement.read().clone()
    }

    /// Switch layouts (membership does this when the gossiped layout record changes). Requests
    /// already running finish with the placement they started with; each holds it until it
    /// returns, so the one handed back here is still referenced while any of them runs.
    pub fn set_placement(&self, placement: Option<Placement>) -> Option<Arc<Placement>> {
        std::mem::replace(&mut *self.placement.write(), placement.map(Arc::new))
    }

    fn placed(&self, op: &str) -> Result<Arc<Placement>, CoordError> {
        self.placement().ok_or_else(|| CoordError::Unavailable {
            op: op.into(),
            required: 0,
            acked: 0,
            failed: vec![FailedReplica {
                node: self.me.to_string(),
                reason: "this node has not joined a cluster yet (see `shoal admin join`)".into(),
            }],
        })
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn replica(&self) -> &Arc<Replica<S>> {
        &self.replica
    }

    fn timeout(&self, ms: Option<u32>) -> Duration {
        ms.map(|ms| Duration::from_millis(ms as u64))
            .unwrap_or(self.config.default_timeout)
            .min(self.config.max_timeout)
    }

    /// Where this node's strays go, asking the newest placement each time: the keys' current
    /// owners, or nowhere while this node still holds them, or has no layout (see
    /// [`shoal_handoff::hand_off_strays`]).
    pub fn stray_owners(self: &Arc<Self>) -> StrayOwners {
        let this = self.clone();
        Arc::new(move |partition, n| {
            let owners = this.placement()?.stray_owners(&this.me, partition, n)?;
            Some(owners.iter().map(|id| id.to_string()).collect())
        })
    }

    /// Epoch fencing, on the replica side: whether this node serves a peer's replica request
    /// of `kind` (put, get, hint, ...) made under layout epoch `epoch`. A node that has not
    /// joined a cluster serves none anyway (it cannot place a key), so it fences nothing.
    pub fn check_fence(&self, kind: &'static str, epoch: u64) -> Result<(), StaleLayout> {
        let fence = self.placement().map_or(0, |p| p.fence());
        if epoch < fence {
            metrics::counter!("shoal_layout_fenced_total", "kind" => kind).increment(1);
            return Err(StaleLayout { epoch, fence });
        }
        Ok(())
    }

    /// Whether this node takes an anti-entropy exchange from a peer on layout epoch `epoch`:
    /// only when both hold the same stable layout, so an exchange never pairs replicas of two
    /// different layouts. Returns the placement to hold meanwhile.
    pub fn check_handoff(&self, kind: &'static str, epoch: u64) -> Result<Arc<Placement>, HandoffRefused> {
        let placement = self.check_merge(kind, epoch)?;
        if placement.changing() {
            return Err(HandoffRefused::Busy(format!(
                "this node is on layout epoch {} with a change in flight: anti-entropy waits for a stable layout",
                placement.epoch
            )));
        }
        Ok(placement)
    }

    /// Whether this node merges copies of `kind` (hint delivery, stray handoff, a redirected
    /// hint, an anti-entropy push) from a peer on layout epoch `epoch`: only when both hold the
    /// same layout record, so the sender routed them by the layouts this node holds (the write
    /// set of both while a change is under way, see `Placement::route_handoff`). A peer on
    /// another layout may not even be sending to an owner. Returns the placement to hold while
    /// the copies are stored: a newer change is announced as seen only once it is let go, so a
    /// range is never dropped under a merge in flight.
    pub fn check_merge(&self, kind: &'static str, epoch: u64) -> Result<Arc<Placement>, HandoffRefused> {
        let placement = self.placed(kind).map_err(|e| HandoffRefused::Busy(e.to_string()))?;
        if epoch < placement.epoch {
            metrics::counter!("shoal_layout_fenced_total", "kind" => kind).increment(1);
            return Err(HandoffRefused::Stale(StaleLayout {
                epoch,
                fence: placement.epoch,
            }));
        }
        if epoch > placement.epoch {
            return Err(HandoffRefused::Busy(format!(
                "this node is on layout epoch {} and the sender on {epoch}: handoffs wait for both to hold \
                 the same layout",
                placement.epoch,
            )));
        }
        Ok(placement)
    }

    /// Stores a handoff (see [`Self::check_merge`]) of objects this node owns. A key it
    /// does not own refuses the whole batch: the sender routed it by the same layout, so a
    /// mismatch means a bug or a forged request, not a race. Returns, per object, whether it
    /// was news here (changed this replica).
    pub async fn accept_handoff(
        &self,
        kind: &'static str,
        epoch: u64,
        objects: Vec<(Bytes, Object)>,
    ) -> Result<Vec<bool>, HandoffRefused> {
        let placement = self.check_merge(kind, epoch)?;
        let mut placed = Vec::with_capacity(objects.len());
        for (key, object) in objects {
            let partition = placement.current.partition_of(&key);
            if !placement.holds(&self.me, partition, object.n) {
                return Err(HandoffRefused::Busy(format!(
                    "this node does not own partition {partition} for n = {} at layout epoch {epoch}",
                    object.n
                )));
            }
            placed.push((partition, key, object));
        }
        let replica = self.replica.clone();
        let stored = shoal_storage::blocking(move || {
            placed
                .into_iter()
                .map(|(partition, key, object)| {
                    replica
                        .apply_from_peer(partition, &key, &object)
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<bool>, String>>()
        })
        .await
        .and_then(|r| r);
        drop(placement);
        stored.map_err(HandoffRefused::Busy)
    }

    /// A sign from a peer that this node's layout is current: membership adopted a record, or
    /// exchanged layouts with a peer whose record was no newer, or a peer accepted a replica
    /// request.
    pub fn renew_layout_lease(&self) {
        if !self.config.layout_lease.is_zero() {
            *self.lease.lock() = Some(Instant::now() + self.config.layout_lease);
        }
    }

    /// Whether the layout lease is current (always, with the lease off). A node alone in its
    /// layout needs none: no change can go on without it (every member must see each step),
    /// and nobody else could skip it.
    pub fn layout_confirmed(&self) -> bool {
        let alone = || {
            self.placement()
                .is_some_and(|p| p.companion().is_none() && p.current.members().len() == 1)
        };
        self.config.layout_lease.is_zero() || self.lease.lock().is_some_and(|until| Instant::now() < until) || alone()
    }

    /// Waits until the layout lease is renewed (by gossip) or `deadline`; returns whether it was.
    async fn await_lease(&self, deadline: Instant) -> bool {
        loop {
            if self.layout_confirmed() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10).min(deadline - Instant::now())).await;
        }
    }

    /// Whether this node has adopted a layout newer than epoch `epoch`.
    fn newer_than(&self, epoch: u64) -> bool {
        self.placement().is_some_and(|p| p.epoch > epoch)
    }

    /// Whether this node adopted a layout newer than `placement` since a request took it (a
    /// replica fenced the request out) with time left to run it again under the new one.
    fn relearned(&self, placement: &Placement, deadline: Instant) -> bool {
        Instant::now() < deadline && self.newer_than(placement.epoch)
    }

    /// Coordinate a put or delete.
    pub async fn put(self: &Arc<Self>, req: PutRequest) -> Result<PutResponse, CoordError> {
        let mut placement = self.placed("put")?;
        let layout = placement.current.clone();
        let (n, w) = params::resolve(&self.config.defaults, layout.members().len(), req.n, req.w, "w")?;
        let timeout = self.timeout(req.timeout_ms);
        let deadline = Instant::now() + timeout;
        let partition = layout.partition_of(&req.key);
        let pref: Vec<NodeId> = layout.preference_list(partition, n as usize).to_vec();
        if !pref.contains(&self.me) {
            if req.forwarded {
                return Err(CoordError::Unavailable {
                    op: "put".into(),
                    required: w,
                    acked: 0,
                    failed: vec![FailedReplica {
                        node: self.me.to_string(),
                        reason: "forwarded a write for a partition this node does not replicate (layouts disagree)"
                            .into(),
                    }],
                });
            }
            return self.forward(pref, req, deadline, w).await;
        }

        let key = req.key.clone();
        let me = self.me.clone();
        let replica = self.replica.clone();
        let value = match req.value {
            Some(b) => Value::Data(b),
            None => Value::Tombstone,
        };
        let explicit = req.context;
        // With injected WARS latencies the coordinator's own replica gets the write over a W
        // leg like every other replica; otherwise it is written here, first, as Dynamo's
        // coordinator does.
        let deferred = self.config.inject.is_some();
        let started = Instant::now();
        let (object, outcome) = storage(self.config.storage, move || {
            // A delete without a context removes what this replica holds, as Riak's
            // fetch-then-delete does; concurrent writes it has not seen survive as siblings.
            let ctx = match (explicit, &value) {
                (Some(c), _) => c,
                (None, Value::Tombstone) => replica
                    .read(partition, &key)?
                    .map(|o| o.siblings.context())
                    .unwrap_or_default(),
                (None, Value::Data(_)) => VersionVector::new(),
            };
            if deferred {
                replica.prepare(partition, &key, me.as_str(), &ctx, value, n)
            } else {
                replica.coordinate(partition, &key, me.as_str(), &ctx, value, n)
            }
        })
        .await
        .map_err(CoordError::Storage)??;
        if !deferred {
            let took = started.elapsed().as_secs_f64() * 1000.0;
            self.legs
                .record_round_trip(self.me.as_str(), true, (Leg::W, 0.0), (Leg::A, 0.0), took);
        }
        if outcome.warn {
            metrics::counter!("shoal_sibling_warnings_total").increment(1);
            warn!(
                siblings = outcome.siblings,
                "key has more siblings than sibling_warn; resolve them by writing with a context"
            );
        }
        metrics::histogram!("shoal_object_siblings").record(outcome.siblings as f64);
        let context = object.siblings.context();
        let sloppy = req.sloppy.unwrap_or(self.config.sloppy_quorum);
        let shared = Arc::new(object);
        let mut attempt = 0;
        loop {
            let fan = Fanout {
                partition,
                n,
                w,
                sloppy,
                deadline,
                written_here: !deferred,
            };
            match self.replicate(&placement, &req.key, &shared, fan).await {
                Ok((acks, hinted)) => {
                    if hinted > 0 {
                        metrics::counter!("shoal_hinted_writes_total").increment(1);
                    }
                    return Ok(PutResponse {
                        context,
                        acks: acks as u8,
                        hinted: hinted as u8,
                        siblings: outcome.siblings as u32,
                        sibling_warning: outcome.warn,
                    });
                }
                // A replica's fence taught this node a newer layout: the same object (so no
                // second version of the write) goes to the owners under that layout.
                Err(e) if attempt < LAYOUT_RETRIES && self.relearned(&placement, deadline) => {
                    attempt += 1;
                    debug!(error = %e, "put fenced out under an old layout; replicating under the new one");
                    placement = self.placed("put")?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a coordinated object to its replicas under `placement` and waits for W of each
    /// preference list in force. Returns (acks, of which hinted).
    async fn replicate(
        self: &Arc<Self>,
        placement: &Placement,
        key: &Bytes,
        shared: &Arc<Object>,
        fan: Fanout,
    ) -> Result<(usize, usize), CoordError> {
        let Fanout {
            partition,
            n,
            w,
            sloppy,
            deadline,
            written_here,
        } = fan;
        let layout = &placement.current;
        let epoch = placement.epoch;
        let pref: Vec<NodeId> = layout.preference_list(partition, n as usize).to_vec();
        // While a layout change is under way the write also goes to the owners of the other
        // layout (the one it moves to while streaming, the one it retires after the commit),
        // and must reach W of that preference list as well as W of the current one, so that
        // whichever layout a later read uses finds it (Garage's layout-history rule).
        let extra = placement.extra_owners(partition, n as usize);
        let next_pref: Vec<NodeId> = placement
            .companion()
            .map(|other| other.preference_list(partition, n as usize).to_vec())
            .unwrap_or_default();
        let mut current = QuorumTracker::new(w as usize, pref.clone());
        let mut next =
            (!next_pref.is_empty()).then(|| QuorumTracker::new((w as usize).min(next_pref.len()), next_pref.clone()));
        let mut fallbacks: Option<VecDeque<NodeId>> = None;
        let mut next_fallback = || {
            fallbacks
                .get_or_insert_with(|| self.fallbacks(layout, partition, &pref, &extra, sloppy))
                .pop_front()
        };
        let owns_here = pref.contains(&self.me) || extra.contains(&self.me);
        // This node's own copy, held back from the count until a peer accepts (the layout
        // lease has run out).
        let mut held_self = false;
        let ack_self = |current: &mut QuorumTracker<NodeId>, next: &mut Option<QuorumTracker<NodeId>>| {
            // The trackers count this node only where it is an owner.
            current.ack(self.me.clone());
            if let Some(t) = next.as_mut() {
                t.ack(self.me.clone());
            }
        };
        if written_here && owns_here {
            if self.layout_confirmed() {
                ack_self(&mut current, &mut next);
            } else {
                held_self = true;
            }
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        // Every send reports (the node it went to, the replica it stands for, the result).
        let (tx, mut rx) = mpsc::unbounded_channel();
        let send = |node: NodeId, owner: Option<NodeId>| {
            let (tx, transport, shared, key) = (tx.clone(), self.transport.clone(), shared.clone(), key.clone());
            let (legs, delays) = (self.legs.clone(), self.delays(Leg::W, Leg::A, false));
            // Dynamo: send to all N, answer at W. The stragglers' writes still land.
            tokio::spawn(async move {
                let result = round_trip(legs, node.clone(), false, (Leg::W, Leg::A), delays, || match &owner {
                    None => transport.replica_put(&node, epoch, key, shared, timeout),
                    Some(o) => transport.hinted_put(&node, epoch, o, key, shared, timeout),
                })
                .await;
                let _ = tx.send((node, owner, result));
            });
        };
        let mut outstanding = 0usize;
        if !written_here && owns_here {
            let (tx, legs, me, replica) = (tx.clone(), self.legs.clone(), self.me.clone(), self.replica.clone());
            let (key, shared, execution) = (key.clone(), shared.clone(), self.config.storage);
            let delays = self.delays(Leg::W, Leg::A, true);
            tokio::spawn(async move {
                let apply = || async move {
                    storage(execution, move || {
                        replica
                            .apply(partition, &key, &shared)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                    .await?
                };
                let result = round_trip(legs, me.clone(), true, (Leg::W, Leg::A), delays, apply).await;
                let _ = tx.send((me, None, result));
            });
            outstanding += 1;
        }
        for node in pref.iter().filter(|p| **p != self.me) {
            let (to, owner) = self.route(node, &mut next_fallback);
            send(to, owner);
            outstanding += 1;
        }
        // The owners a layout change adds get their copy directly: they stand in for no one.
        for node in extra.iter().filter(|p| **p != self.me) {
            send(node.clone(), None);
            outstanding += 1;
        }
        // `tx` stays alive for the stand-ins sent later; `outstanding` says when all answered.
        let failed = |current: &QuorumTracker<NodeId>, next: &Option<QuorumTracker<NodeId>>| match next {
            Some(t) if current.progress() == Progress::Reached => unavailable("put", t),
            _ => unavailable("put", current),
        };
        // The replicas whose first ack came through a hint.
        let mut via_hint: HashSet<NodeId> = HashSet::new();
        loop {
            let reached = |t: &QuorumTracker<NodeId>| t.progress() == Progress::Reached;
            if reached(&current) && next.as_ref().is_none_or(reached) {
                let mut acked: Vec<&NodeId> = current.acked().iter().collect();
                if let Some(t) = &next {
                    acked.extend(t.acked().iter().filter(|id| !current.acked().contains(id)));
                }
                let hinted = acked.iter().filter(|id| via_hint.contains(**id)).count();
                return Ok((acked.len(), hinted));
            }
            // Once W is out of reach, still wait (until the deadline) for the replicas that
            // have not answered: the error must say exactly which replicas hold the write.
            if outstanding == 0 {
                if held_self && self.await_lease(deadline).await {
                    held_self = false;
                    ack_self(&mut current, &mut next);
                    continue;
                }
                if held_self {
                    current.fail(self.me.clone(), LEASE_LAPSED);
                    if let Some(t) = next.as_mut() {
                        t.fail(self.me.clone(), LEASE_LAPSED);
                    }
                }
                return Err(failed(&current, &next));
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((node, owner, result))) => {
                    outstanding -= 1;
                    let slot = owner.clone().unwrap_or_else(|| node.clone());
                    match result {
                        Ok(()) if node == self.me && !self.layout_confirmed() => held_self = true,
                        Ok(()) => {
                            if node != self.me {
                                self.renew_layout_lease();
                                if std::mem::take(&mut held_self) {
                                    ack_self(&mut current, &mut next);
                                }
                            }
                            if owner.is_some() && !current.acked().contains(&slot) {
                                via_hint.insert(slot.clone());
                            }
                            current.ack(slot.clone());
                            if let Some(t) = next.as_mut() {
                                t.ack(slot);
                            }
                        }
                        Err(reason) => {
                            debug!(%node, %reason, "replica put failed");
                            // A primary that failed (or whose stand-in failed) gets the next
                            // fallback, if any is left.
                            if pref.contains(&slot) {
                                if let Some(f) = next_fallback() {
                                    send(f, Some(slot));
                                    outstanding += 1;
                                    continue;
                                }
                            }
                            current.fail(slot.clone(), reason.clone());
                            if let Some(t) = next.as_mut() {
                                t.fail(slot, reason);
                            }
                            // Fenced out and taught a newer layout: no use waiting for the
                            // stragglers of this one (a SIGSTOPped replica would hold the
                            // request to its deadline); the caller sends again under the new.
                            let lost = |t: &QuorumTracker<NodeId>| t.progress() == Progress::Impossible;
                            if (lost(&current) || next.as_ref().is_some_and(lost)) && self.newer_than(epoch) {
                                return Err(failed(&current, &next));
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    if held_self {
                        current.fail(self.me.clone(), LEASE_LAPSED);
                        if let Some(t) = next.as_mut() {
                            t.fail(self.me.clone(), LEASE_LAPSED);
                        }
                    }
                    return Err(failed(&current, &next));
                }
            };
        }
    }

    async fn forward(
        &self,
        pref: Vec<NodeId>,
        mut req: PutRequest,
        deadline: Instant,
        w: u8,
    ) -> Result<PutResponse, CoordError> {
        req.forwarded = true;
        let mut failed = Vec::new();
        // Replicas SWIM knows are down go last: reaching one would only use up the deadline.
        let (up, down): (Vec<NodeId>, Vec<NodeId>) = pref.into_iter().partition(|p| !self.is_down(p));
        for node in up.into_iter().chain(down) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                failed.push(FailedReplica {
                    node: node.to_string(),
                    reason: NO_REPLY.into(),
                });
                continue;
            }
            match self.transport.forward_put(&node, req.clone(), remaining).await {
                Ok(answer) => return answer,
                Err(reason) => failed.push(FailedReplica {
                    node: node.to_string(),
                    reason,
                }),
            }
        }
        metrics::counter!("shoal_quorum_failures_total", "op" => "put").increment(1);
        Err(CoordError::Unavailable {
            op: "put".into(),
            required: w,
            acked: 0,
            failed,
        })
    }

    /// Coordinate a get: ask all N replicas, answer with the merge of the first R replies.
    pub async fn get(self: &Arc<Self>, req: GetRequest) -> Result<GetResponse, CoordError> {
        let deadline = Instant::now() + self.timeout(req.timeout_ms);
        let mut attempt = 0;
        loop {
            let placement = self.placed("get")?;
            match self.get_under(&placement, &req, deadline).await {
                // A replica's fence taught this node a newer layout: ask its owners instead.
                Err(e @ CoordError::Unavailable { .. })
                    if attempt < LAYOUT_RETRIES && self.relearned(&placement, deadline) =>
                {
                    attempt += 1;
                    debug!(error = %e, "get fenced out under an old layout; asking again under the new one");
                }
                other => return other,
            }
        }
    }

    async fn get_under(
        self: &Arc<Self>,
        placement: &Arc<Placement>,
        req: &GetRequest,
        deadline: Instant,
    ) -> Result<GetResponse, CoordError> {
        let layout = &placement.current;
        let epoch = placement.epoch;
        let (n, r) = params::resolve(&self.config.defaults, layout.members().len(), req.n, req.r, "r")?;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let partition = layout.partition_of(&req.key);
        let pref: Vec<NodeId> = layout.preference_list(partition, n as usize).to_vec();

        let sloppy = req.sloppy.unwrap_or(self.config.sloppy_quorum);
        let mut fallbacks: Option<VecDeque<NodeId>> = None;
        let mut next_fallback = || {
            fallbacks
                .get_or_insert_with(|| self.fallbacks(layout, partition, &pref, &[], sloppy))
                .pop_front()
        };
        // Every read reports (the node asked, the replica it stands for, the result).
        let (tx, mut rx) = mpsc::unbounded_channel();
        // A profile's far legs spare the coordinator's own replica, or the first one when it
        // holds none.
        let nearest = if pref.contains(&self.me) {
            &self.me
        } else {
            pref.first().unwrap_or(&self.me)
        };
        let send = |node: NodeId, owner: Option<NodeId>| {
            let (tx, key, legs) = (tx.clone(), req.key.clone(), self.legs.clone());
            let delays = self.delays(Leg::R, Leg::S, node == *nearest);
            let legs_of = (Leg::R, Leg::S);
            if node == self.me {
                let this = self.clone();
                tokio::spawn(async move {
                    let result = round_trip(legs, node.clone(), true, legs_of, delays, || this.read_local(key)).await;
                    let _ = tx.send((node, owner, result));
                });
            } else {
                let transport = self.transport.clone();
                tokio::spawn(async move {
                    let result = round_trip(legs, node.clone(), false, legs_of, delays, || match &owner {
                        None => transport.replica_get(&node, epoch, key, timeout),
                        Some(o) => transport.hinted_get(&node, epoch, o, key, timeout),
                    })
                    .await;
                    let _ = tx.send((node, owner, result));
                });
            }
        };
        let mut outstanding = 0usize;
        for node in &pref {
            let (to, owner) = self.route(node, &mut next_fallback);
            send(to, owner);
            outstanding += 1;
        }

        let mut tracker = QuorumTracker::new(r as usize, pref.clone());
        // Direct replies only: read repair writes to replicas, never to a stand-in's hints.
        let mut replies: Vec<(NodeId, Option<Object>)> = Vec::with_capacity(pref.len());
        let mut merged: Option<Object> = None;
        let mut via_hint = 0usize;
        // This node's own reply, held back from the count until a peer answers (the layout
        // lease has run out).
        let mut held_self: Option<Option<Object>> = None;
        loop {
            if tracker.progress() == Progress::Reached {
                break;
            }
            if outstanding == 0 {
                match held_self.take() {
                    Some(obj) if self.await_lease(deadline).await => {
                        merge_into(&mut merged, obj.as_ref());
                        replies.push((self.me.clone(), obj));
                        tracker.ack(self.me.clone());
                        continue;
                    }
                    Some(_) => {
                        tracker.fail(self.me.clone(), LEASE_LAPSED);
                        return Err(unavailable("get", &tracker));
                    }
                    None => return Err(unavailable("get", &tracker)),
                }
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((node, owner, result))) => {
                    outstanding -= 1;
                    let slot = owner.clone().unwrap_or_else(|| node.clone());
                    // A stand-in with no hint of the key knows nothing of the owner's copy: its
                    // "not found" is no answer for the owner (Riak's notfound_ok = false, for
                    // fallbacks only). Counting it let a returning node that could not yet
                    // reach a new owner read its own stale copy at r = 2.
                    // Nor does it renew the layout lease: seed 145 of the simulator read a stale
                    // own copy at r=1 when an empty answer from a stand-in that had itself just
                    // restarted on an old layout renewed the lease of a node back from a
                    // skipped change.
                    let result = match result {
                        Ok(None) if owner.is_some() => {
                            Err(format!("{node} stands in for {slot} but holds no hint of the key"))
                        }
                        other => other,
                    };
                    match result {
                        Ok(obj) if node == self.me && !self.layout_confirmed() => held_self = Some(obj),
                        Ok(obj) => {
                            if node != self.me {
                                self.renew_layout_lease();
                                if let Some(mine) = held_self.take() {
                                    merge_into(&mut merged, mine.as_ref());
                                    replies.push((self.me.clone(), mine));
                                    tracker.ack(self.me.clone());
                                }
                            }
                            merge_into(&mut merged, obj.as_ref());
                            if owner.is_none() {
                                replies.push((node, obj));
                            } else if !tracker.acked().contains(&slot) {
                                via_hint += 1;
                            }
                            tracker.ack(slot);
                        }
                        Err(reason) => {
                            debug!(%node, %reason, "replica get failed");
                            if let Some(f) = next_fallback() {
                                send(f, Some(slot));
                                outstanding += 1;
                                continue;
                            }
                            tracker.fail(slot, reason);
                            if tracker.progress() == Progress::Impossible && self.newer_than(epoch) {
                                return Err(unavailable("get", &tracker));
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    if held_self.is_some() {
                        tracker.fail(self.me.clone(), LEASE_LAPSED);
                    }
                    return Err(unavailable("get", &tracker));
                }
            }
        }
        let answer = GetResponse {
            object: merged.clone(),
            replies: tracker.acked().len() as u8,
            hinted: via_hint as u8,
        };
        drop(tx);
        if self.config.read_repair {
            let (this, key) = (self.clone(), req.key.clone());
            tokio::spawn(async move {
                // Keep collecting the stragglers, then repair every replica that answered with
                // less than the merge of all answers (Dynamo §4.7 / Riak read repair).
                while outstanding > 0 {
                    let Ok(Some((node, owner, result))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                        break;
                    };
                    outstanding -= 1;
                    if let Ok(obj) = result {
                        merge_into(&mut merged, obj.as_ref());
                        if owner.is_none() {
                            replies.push((node, obj));
                        }
                    }
                }
                if let Some(full) = merged {
                    this.read_repair(epoch, key, full, replies, timeout).await;
                }
            });
        }
        Ok(answer)
    }

    async fn read_repair(
        &self,
        epoch: u64,
        key: Bytes,
        full: Object,
        replies: Vec<(NodeId, Option<Object>)>,
        timeout: Duration,
    ) {
        let full = Arc::new(full);
        for (node, obj) in replies {
            let stale = match &obj {
                None => true,
                Some(o) => !o.siblings.covers(&full.siblings),
            };
            if !stale {
                continue;
            }
            metrics::counter!("shoal_read_repairs_total").increment(1);
            debug!(%node, "read repair");
            let result = if node == self.me {
                self.apply_local(key.clone(), (*full).clone()).await
            } else {
                self.transport
                    .replica_put(&node, epoch, key.clone(), full.clone(), timeout)
                    .await
            };
            if let Err(reason) = result {
                debug!(%node, %reason, "read repair failed");
            }
        }
    }

    fn partition_of(&self, key: &[u8]) -> Result<u32, String> {
        self.layout()
            .map(|l| l.partition_of(key))
            .ok_or_else(|| "this node has not joined a cluster yet".to_string())
    }

    /// A peer's replication or repair of `key` into this node's replica. The object came from
    /// outside, so it is validated before it is merged.
    pub async fn apply_local(&self, key: Bytes, object: Object) -> Result<(), String> {
        let partition = self.partition_of(&key)?;
        let replica = self.replica.clone();
        storage(self.config.storage, move || {
            replica
                .apply_from_peer(partition, &key, &object)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await?
    }

    /// Keep `object` as a hint for `owner` (this node stands in for it under sloppy quorum).
    pub async fn store_hint(&self, owner: NodeId, key: Bytes, object: Object) -> Result<(), String> {
        object
            .siblings
            .validate()
            .map_err(|e| format!("refused hinted object: {e}"))?;
        let hints = self
            .hints
            .clone()
            .ok_or_else(|| "this node keeps no hints (handoff is disabled)".to_string())?;
        let partition = self.partition_of(&key)?;
        storage(self.config.storage, move || {
            hints
                .record(owner.as_str(), partition, &key, &object)
                .map_err(|e| e.to_string())
        })
        .await?
    }

    /// The hint this node keeps of `key` for `owner`, if any.
    pub async fn read_hint(&self, owner: NodeId, key: Bytes) -> Result<Option<Object>, String> {
        let Some(hints) = self.hints.clone() else {
            return Ok(None);
        };
        let partition = self.partition_of(&key)?;
        storage(self.config.storage, move || {
            hints.get(owner.as_str(), partition, &key).map_err(|e| e.to_string())
        })
        .await?
    }

    /// Merge a batch of copies from a peer (hint delivery, anti-entropy push), validated, on
    /// the blocking pool whatever `storage.execution` says: a batch of hundreds of writes
    /// would hold an async worker for milliseconds, and foreground requests would queue
    /// behind it.
    pub async fn apply_batch(&self, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        let layout = self
            .layout()
            .ok_or_else(|| "this node has not joined a cluster yet".to_string())?;
        let replica = self.replica.clone();
        shoal_storage::blocking(move || {
            for (key, object) in objects {
                replica
                    .apply_from_peer(layout.partition_of(&key), &key, &object)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await?
    }

    /// A peer's read of this node's replica of `key`.
    pub async fn read_local(&self, key: Bytes) -> Result<Option<Object>, String> {
        let partition = self.partition_of(&key)?;
        let replica = self.replica.clone();
        storage(self.config.storage, move || {
            replica.read(partition, &key).map_err(|e| e.to_string())
        })
        .await?
    }
}

fn merge_into(acc: &mut Option<Object>, obj: Option<&Object>) {
    if let Some(o) = obj {
        match acc {
            Some(a) => a.merge(o),
            None => *acc = Some(o.clone()),
        }
    }
}
