//! One incarnation of a simulated node: Shoal's real cores (replica, coordinator, hints,
//! anti-entropy, SWIM) over the node's fenced store, wired to the simulated network the way
//! `shoal-node` wires them to QUIC.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use shoal_antientropy::{pick_peer, plan_round, AaeConfig, AntiEntropy, PlannedTree, Remote, TreeQuery};
use shoal_coordinator::{
    CoordError, Coordinator, CoordinatorConfig, HandoffRefused, Health, PutRequest, PutResponse, Transport,
    TransportFuture,
};
use shoal_handoff::{Deliver, DeliveryConfig, HandoffConfig, Hints};
use shoal_membership::{Liveness, Message, Output, Swim, SwimConfig};
use shoal_ring::{Layout, LayoutRecord, NodeId};
use shoal_storage::{Clock, MemoryStore, Object, Replica, ReplicaLimits, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::layout::{boot_state, layout_loop, LayoutState};
use crate::net::{index_of, node_id, Net};
use crate::store::FencedStore;

pub type SimCoordinator = Coordinator<FencedStore, SimTransport>;

/// The knobs of the nodes' background work, scaled down so a run of seconds exercises them.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub swim: SwimConfig,
    pub aae_interval: Duration,
    pub handoff_interval: Duration,
    /// How long a hint waits for its owner before it is redirected to the key's other replicas.
    pub hint_window: Duration,
    /// When a hint is dropped.
    pub hint_max_age: Duration,
    pub tombstone_grace: Duration,
    pub request_timeout: Duration,
    /// How long after a layout change finishes a node drops what it no longer holds.
    pub drop_delay: Duration,
    /// Keep the old owners receiving writes after a commit until every node has seen it
    /// (off only to show the checkers find what goes wrong without it).
    pub retire_after_commit: bool,
    /// Epoch fencing: replicas refuse coordinators on a layout older than their fence (off
    /// only to show the checkers find what goes wrong without it).
    pub fence: bool,
    /// Count members SWIM calls dead as having seen every layout epoch, as Shoal did before
    /// the layout-change engine (on only to show the checkers find what goes wrong).
    pub excuse_dead: bool,
}

/// A host's wall clock: the run's virtual time, shifted by the host's skew, which the
/// nemesis may step (as an NTP correction or an operator would). It belongs to the host, so
/// it survives the node's restarts.
pub struct SkewedClock {
    pub net: Arc<Net>,
    /// Unix ms at the run's start, by this host's clock.
    pub start_ms: AtomicI64,
}

impl SkewedClock {
    /// Sets the clock so that the run began at `start_ms` by it; returns the step taken.
    pub fn step_to(&self, start_ms: i64) -> i64 {
        start_ms - self.start_ms.swap(start_ms, Ordering::Relaxed)
    }
}

impl Clock for SkewedClock {
    fn unix_ms(&self) -> u64 {
        (self.start_ms.load(Ordering::Relaxed) + self.net.now_ms() as i64).max(0) as u64
    }
}

/// SWIM's view of who is dead, for the coordinator's sloppy quorum.
#[derive(Default)]
pub struct Down(RwLock<BTreeSet<NodeId>>);

impl Health for Down {
    fn is_down(&self, node: &NodeId) -> bool {
        self.0.read().contains(node)
    }
}

pub struct Core {
    pub index: usize,
    pub id: NodeId,
    /// Which incarnation this is (see [`Net::alive`]).
    pub inc: u64,
    pub store: Arc<FencedStore>,
    pub replica: Arc<Replica<FencedStore>>,
    pub hints: Arc<Hints<FencedStore>>,
    pub coordinator: Arc<SimCoordinator>,
    pub aae: Arc<AntiEntropy<FencedStore>>,
    pub swim: Mutex<Swim<()>>,
    pub down: Arc<Down>,
    pub inbox: mpsc::UnboundedSender<Message<()>>,
    pub layout: Mutex<LayoutState>,
    pub retire_after_commit: bool,
    pub fence: bool,
    pub excuse_dead: bool,
    /// This node's requests that a replica fenced out as coordinated under a stale layout.
    pub fenced: std::sync::atomic::AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Core {
    /// Boot incarnation `inc` of node `index` over `disk` and start its loops. The node's
    /// layout record comes from its disk, else `bootstrap` (a founder's first boot; a spare
    /// has none until it joins). `join`: a node to send SWIM's join request to.
    #[allow(clippy::too_many_arguments)]
    pub fn boot(
        net: &Arc<Net>,
        index: usize,
        disk: Arc<MemoryStore>,
        bootstrap: Option<LayoutRecord>,
        partitions: u32,
        clock: Arc<dyn Clock>,
        config: &NodeConfig,
        swim_seed: u64,
        join: Option<usize>,
    ) -> Arc<Core> {
        let id = node_id(index);
        let inc = net.incarnation(index);
        let trace = std::env::var("SHOAL_SIM_TRACE_KEY").ok().map(|key| {
            let net = Arc::downgrade(net);
            crate::store::Trace {
                key: key.into_bytes(),
                node: id.to_string(),
                now_ms: Box::new(move || net.upgrade().map_or(0, |n| n.now_ms())),
            }
        });
        let store = Arc::new(FencedStore::new(disk, trace));
        let replica = Arc::new(
            Replica::new(store.clone(), ReplicaLimits::default())
                .expect("the in-memory store opens")
                .with_clock(clock.clone()),
        );
        let (record, synced) = crate::layout::load(store.as_ref(), bootstrap);
        let strays = crate::layout::pending_strays(store.as_ref()).is_some();
        let placement = record.as_ref().and_then(|r| r.placement().ok());
        let aae = AntiEntropy::open(
            replica.clone(),
            partitions,
            AaeConfig {
                tombstone_grace: config.tombstone_grace,
            },
        )
        .expect("the in-memory store scans");
        let hints = Arc::new(
            Hints::open(
                store.clone(),
                HandoffConfig {
                    window: config.hint_window,
                    max_age: config.hint_max_age,
                    max_hints_per_target: 100_000,
                },
            )
            .expect("the in-memory store scans")
            .with_clock(clock),
        );
        let transport = Arc::new(SimTransport {
            net: net.clone(),
            me: index,
            inc,
        });
        let coordinator = Arc::new(
            Coordinator::new(
                id.clone(),
                placement,
                replica.clone(),
                transport,
                CoordinatorConfig {
                    default_timeout: config.request_timeout,
                    precise_delays: false,
                    layout_lease: if config.fence {
                        config.swim.layout_lease()
                    } else {
                        Duration::ZERO
                    },
                    ..CoordinatorConfig::default()
                },
            )
            .with_hints(hints.clone()),
        );
        let down = Arc::new(Down::default());
        coordinator.set_health(down.clone());
        // The node persists its SWIM incarnation and comes back one above it, as
        // `shoal-node`'s membership does.
        let incarnation = store
            .get_meta(META_INCARNATION)
            .ok()
            .flatten()
            .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
            .map_or(1, |i| i + 1);
        let _ = store.put_meta(META_INCARNATION, &incarnation.to_be_bytes());
        let swim = Swim::new(id.clone(), (), incarnation, config.swim.clone(), swim_seed, net.now());
        let (tx, rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            index,
            id,
            inc,
            store,
            replica,
            hints,
            coordinator,
            aae,
            swim: Mutex::new(swim),
            down,
            inbox: tx,
            layout: Mutex::new(boot_state(&node_id(index), record, synced, strays)),
            retire_after_commit: config.retire_after_commit,
            fence: config.fence,
            excuse_dead: config.excuse_dead,
            fenced: std::sync::atomic::AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        net.install(index, core.clone());
        if let Some(seed) = join {
            let request = core.swim.lock().join_request(net.now());
            net.datagram(index, seed, request);
        }
        let tasks = vec![
            tokio::spawn(swim_loop(net.clone(), core.clone(), rx)),
            tokio::spawn(shoal_handoff::run(
                core.hints.clone(),
                SimDeliver {
                    net: net.clone(),
                    core: Arc::downgrade(&core),
                    me: index,
                    inc,
                },
                DeliveryConfig {
                    interval: config.handoff_interval,
                    batch_keys: 64,
                    batch_bytes: 1 << 20,
                    sweep_interval: config.handoff_interval * 5,
                    redirect_interval: config.handoff_interval,
                },
                Arc::new(shoal_handoff::Throttle::new(0.0)),
            )),
            tokio::spawn(aae_loop(net.clone(), Arc::downgrade(&core), config.aae_interval)),
            tokio::spawn(layout_loop(net.clone(), Arc::downgrade(&core), config.drop_delay)),
        ];
        *core.tasks.lock() = tasks;
        core
    }

    /// The process dies: its loops stop, its store is fenced, its memory is gone.
    pub fn kill(&self) {
        self.store.close();
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    pub fn is_alive_member(&self, id: &NodeId) -> bool {
        *id == self.id
            || self
                .swim
                .lock()
                .member(id)
                .is_some_and(|m| m.liveness == Liveness::Alive)
    }
}

const META_INCARNATION: &str = "swim/incarnation";

/// How often a node that knows no live peer knocks on every other node's door (as
/// `shoal-node` does with its contacts).
const CONTACT_INTERVAL: Duration = Duration::from_secs(2);

/// SWIM over the simulated network: datagrams in, the core's deadlines as timers.
async fn swim_loop(net: Arc<Net>, core: Arc<Core>, mut inbox: mpsc::UnboundedReceiver<Message<()>>) {
    let i = core.index;
    let mut persisted = 0u64;
    let mut next_contact = net.now() + CONTACT_INTERVAL;
    loop {
        net.runnable(i).await;
        let incarnation = core.swim.lock().incarnation();
        if incarnation > persisted
            && core
                .store
                .put_meta(META_INCARNATION, &incarnation.to_be_bytes())
                .is_ok()
        {
            persisted = incarnation;
        }
        if net.now() >= next_contact {
            // Alone (a join that was lost, or everyone else restarted): ask everyone.
            let alone = !core
                .swim
                .lock()
                .members()
                .any(|m| *m.id != core.id && m.liveness != Liveness::Dead);
            if alone {
                for peer in (0..net.nodes()).filter(|p| *p != i) {
                    let request = core.swim.lock().join_request(net.now());
                    net.datagram(i, peer, request);
                }
            }
            next_contact = net.now() + CONTACT_INTERVAL;
        }
        let deadline = core.swim.lock().next_deadline().min(next_contact);
        let wake = tokio::time::Instant::now() + deadline.saturating_sub(net.now());
        // `biased`: poll in a fixed order, so the run stays a function of its seed.
        let outputs = tokio::select! {
            biased;
            message = inbox.recv() => match message {
                Some(m) => core.swim.lock().handle(m, net.now()),
                None => return,
            },
            _ = tokio::time::sleep_until(wake) => core.swim.lock().tick(net.now()),
        };
        for output in outputs {
            match output {
                Output::Send { to, message } => net.datagram(i, index_of(&to), message),
                Output::Liveness { id, to, .. } => {
                    let mut down = core.down.0.write();
                    if to == Liveness::Dead {
                        down.insert(id);
                    } else {
                        down.remove(&id);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Anti-entropy as the node's repair loop runs it: every tree once per interval, with a live
/// replica picked by rotation, then tombstone GC where every replica is live. Paused while a
/// layout change is under way (transfers move the data then), and planned again when the
/// layout changes.
async fn aae_loop(net: Arc<Net>, core: std::sync::Weak<Core>, interval: Duration) {
    let mut round = 0u64;
    loop {
        round += 1;
        let Some(c) = core.upgrade() else { return };
        let placement = c.coordinator.placement().filter(|p| !p.changing());
        let Some((layout, epoch)) = placement.map(|p| (p.current.clone(), p.epoch)) else {
            drop(c);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let trees = plan_round(c.aae.trees(), &layout, &c.id, c.coordinator.config().defaults.n);
        drop(c);
        if trees.is_empty() {
            // Not a replica of anything (a node that left, or one not joined yet).
            tokio::time::sleep(interval).await;
            continue;
        }
        let pause = interval / trees.len() as u32;
        for PlannedTree { partition, n, others } in trees {
            tokio::time::sleep(pause).await;
            let Some(c) = core.upgrade() else { return };
            net.runnable(c.index).await;
            if c.coordinator
                .placement()
                .is_none_or(|p| !Arc::ptr_eq(&p.current, &layout) || p.changing())
            {
                break; // the layout changed: plan again
            }
            let live: Vec<&NodeId> = others.iter().filter(|o| c.is_alive_member(o)).collect();
            if let Some(peer) = pick_peer(&live, round, partition) {
                let remote = SimRemote::new(&net, &c, peer, epoch);
                let _ = c.aae.exchange(partition, n, peer.as_str(), &remote, |_| async {}).await;
            }
            if live.len() == others.len() && c.gc_allowed() {
                let remotes: Vec<(String, SimRemote)> = others
                    .iter()
                    .map(|o| (o.to_string(), SimRemote::new(&net, &c, o, epoch)))
                    .collect();
                let _ = c.aae.collect_garbage(partition, n, &remotes).await;
            }
        }
    }
}

/// The coordinator's transport: peer requests over the simulated network.
#[derive(Clone)]
pub struct SimTransport {
    net: Arc<Net>,
    me: usize,
    inc: u64,
}

fn flat<T>(r: Result<Result<T, String>, String>) -> Result<T, String> {
    r.and_then(|x| x)
}

/// Why a replica request failed on the replica's side.
enum Refusal {
    Failed(String),
    /// Epoch fencing refused it; the replica's record comes back with the reason.
    Stale(String, Option<LayoutRecord>),
}

impl SimTransport {
    /// A replica request under epoch fencing: the replica refuses a coordinator whose layout
    /// is older than its fence and answers with its record, which the caller adopts (as
    /// `shoal-node`'s transport hands it to membership).
    async fn fenced<T, F, Fut>(
        &self,
        to: &NodeId,
        kind: &'static str,
        epoch: u64,
        timeout: Duration,
        idempotent: bool,
        handle: F,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: Fn(Arc<Core>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let (net, me, inc) = (&self.net, self.me, self.inc);
        let answer = net
            .call(me, inc, index_of(to), timeout, idempotent, move |core| {
                let fence = if core.fence {
                    core.coordinator.check_fence(kind, epoch)
                } else {
                    Ok(())
                };
                let work = fence.map(|()| handle(core.clone()));
                async move {
                    match work {
                        Ok(work) => work.await.map_err(Refusal::Failed),
                        Err(stale) => Err(Refusal::Stale(stale.to_string(), core.record())),
                    }
                }
            })
            .await?;
        self.settle(to, answer)
    }

    /// A handoff of `kind` (hint delivery, stray handoff, anti-entropy push) of `objects` to
    /// `to`, taken only when both hold the same stable layout (`Coordinator::accept_handoff`).
    async fn handoff(
        &self,
        to: &NodeId,
        kind: &'static str,
        epoch: u64,
        objects: Vec<(Bytes, Object)>,
    ) -> Result<Vec<bool>, String> {
        let answer = self
            .net
            .call(
                self.me,
                self.inc,
                index_of(to),
                Duration::from_secs(10),
                true,
                move |core| {
                    let objects = objects.clone();
                    async move {
                        let stored = core.coordinator.accept_handoff(kind, epoch, objects).await;
                        stored.map_err(|e| refusal(&core, e))
                    }
                },
            )
            .await?;
        self.settle(to, answer)
    }

    /// What a replica's answer means to the asker: a refusal by epoch fencing brings the
    /// replica's record, which the asker adopts.
    fn settle<T>(&self, to: &NodeId, answer: Result<T, Refusal>) -> Result<T, String> {
        match answer {
            Ok(v) => Ok(v),
            Err(Refusal::Failed(e)) => Err(e),
            Err(Refusal::Stale(reason, record)) => {
                let me = self.net.core(self.me).filter(|c| c.inc == self.inc);
                if let Some(c) = &me {
                    c.fenced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if let (Some(record), Some(c)) = (record, me) {
                    c.adopt(&record);
                    c.coordinator.renew_layout_lease();
                }
                Err(format!("{to}: {reason}"))
            }
        }
    }
}

/// A handoff refusal as the replica `core` answers it.
fn refusal(core: &Core, e: HandoffRefused) -> Refusal {
    match e {
        HandoffRefused::Stale(stale) => Refusal::Stale(stale.to_string(), core.record()),
        HandoffRefused::Busy(reason) => Refusal::Failed(reason),
    }
}

impl Transport for SimTransport {
    fn replica_put(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let (this, node) = (self.clone(), node.clone());
        Box::pin(async move {
            this.fenced(&node, "put", epoch, timeout, true, move |core| {
                let (key, object) = (key.clone(), (*object).clone());
                async move { core.coordinator.apply_local(key, object).await }
            })
            .await
        })
    }

    fn replica_get(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        let (this, node) = (self.clone(), node.clone());
        Box::pin(async move {
            this.fenced(&node, "get", epoch, timeout, false, move |core| {
                let key = key.clone();
                async move { core.coordinator.read_local(key).await }
            })
            .await
        })
    }

    fn hinted_put(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let (this, node, owner) = (self.clone(), node.clone(), owner.clone());
        Box::pin(async move {
            this.fenced(&node, "hint", epoch, timeout, true, move |core| {
                let (owner, key, object) = (owner.clone(), key.clone(), (*object).clone());
                async move { core.coordinator.store_hint(owner, key, object).await }
            })
            .await
        })
    }

    fn hinted_get(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        let (this, node, owner) = (self.clone(), node.clone(), owner.clone());
        Box::pin(async move {
            this.fenced(&node, "get_hint", epoch, timeout, false, move |core| {
                let (owner, key) = (owner.clone(), key.clone());
                async move { core.coordinator.read_hint(owner, key).await }
            })
            .await
        })
    }

    fn forward_put(
        &self,
        node: &NodeId,
        request: PutRequest,
        timeout: Duration,
    ) -> TransportFuture<Result<Result<PutResponse, CoordError>, String>> {
        let (net, me, inc, to) = (self.net.clone(), self.me, self.inc, index_of(node));
        Box::pin(async move {
            net.call(me, inc, to, timeout, false, move |core| {
                let request = request.clone();
                async move { core.coordinator.put(request).await }
            })
            .await
        })
    }
}

/// Hint delivery (and stray handoff) over the simulated network.
pub struct SimDeliver {
    net: Arc<Net>,
    core: std::sync::Weak<Core>,
    me: usize,
    inc: u64,
}

impl SimDeliver {
    pub fn new(net: &Arc<Net>, core: &Arc<Core>) -> Self {
        Self {
            net: net.clone(),
            core: Arc::downgrade(core),
            me: core.index,
            inc: core.inc,
        }
    }
}

impl SimDeliver {
    fn transport(&self) -> SimTransport {
        SimTransport {
            net: self.net.clone(),
            me: self.me,
            inc: self.inc,
        }
    }
}

impl Deliver for SimDeliver {
    fn ready(&self, owner: &str) -> bool {
        let Some(c) = self.core.upgrade() else { return false };
        let id = NodeId::from(owner);
        let placement = c.coordinator.placement();
        placement.is_some_and(|p| p.handoff_ready(&id, c.is_alive_member(&id)))
    }

    async fn deliver(&self, owner: &str, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        let Some(c) = self.core.upgrade() else {
            return Err("stopped".into());
        };
        let placement = c
            .coordinator
            .placement()
            .ok_or("this node has not joined a cluster yet")?;
        let epoch = placement.epoch;
        let routes = placement.route_handoff(&NodeId::from(owner), objects, |o| o.n);
        drop((placement, c));
        let transport = self.transport();
        for (node, batch) in routes {
            transport.handoff(&node, "handoff", epoch, batch).await?;
        }
        Ok(())
    }

    async fn redirect(&self, owner: &str, objects: Vec<(Bytes, Object)>) -> Result<Vec<bool>, String> {
        let Some(c) = self.core.upgrade() else {
            return Err("stopped".into());
        };
        let placement = c
            .coordinator
            .placement()
            .ok_or("this node has not joined a cluster yet")?;
        let epoch = placement.epoch;
        let routes = placement.route_redirect(
            &NodeId::from(owner),
            &objects,
            |o| o.n,
            |id| id == c.coordinator.me() || c.is_alive_member(id),
        );
        drop((placement, c));
        let transport = self.transport();
        Ok(shoal_handoff::merge_for_news(routes, &objects, |node, batch| {
            let transport = transport.clone();
            async move { transport.handoff(&node, "handoff", epoch, batch).await }
        })
        .await)
    }
}

/// The far side of an anti-entropy exchange, over the simulated network.
struct SimRemote {
    net: Arc<Net>,
    me: usize,
    inc: u64,
    to: usize,
    /// The layout epoch the exchange was planned under (tombstone GC is fenced by it).
    epoch: u64,
}

const AAE_TIMEOUT: Duration = Duration::from_secs(10);

impl SimRemote {
    fn new(net: &Arc<Net>, core: &Core, peer: &NodeId, epoch: u64) -> Self {
        Self {
            net: net.clone(),
            me: core.index,
            inc: core.inc,
            to: index_of(peer),
            epoch,
        }
    }

    fn transport(&self) -> SimTransport {
        SimTransport {
            net: self.net.clone(),
            me: self.me,
            inc: self.inc,
        }
    }
}

impl Remote for SimRemote {
    async fn tree(&self, partition: u32, n: u8, query: TreeQuery) -> Result<Vec<u64>, String> {
        let epoch = self.epoch;
        let answer = self
            .net
            .call(self.me, self.inc, self.to, AAE_TIMEOUT, false, move |core| {
                let answer = match core.coordinator.check_handoff("aae", epoch) {
                    Ok(_placement) => Ok(core.aae.answer_tree(partition, n, &query)),
                    Err(e) => Err(refusal(&core, e)),
                };
                async move { answer }
            })
            .await?;
        self.transport().settle(&node_id(self.to), answer)
    }

    async fn digests(&self, partition: u32, n: u8, segments: Vec<u16>) -> Result<Vec<(Bytes, u64)>, String> {
        flat(
            self.net
                .call(self.me, self.inc, self.to, AAE_TIMEOUT, false, move |core| {
                    let segments = segments.clone();
                    async move { core.aae.answer_digests(partition, n, segments).await }
                })
                .await,
        )
    }

    async fn fetch(&self, partition: u32, keys: Vec<Bytes>) -> Result<Vec<(Bytes, Option<Object>)>, String> {
        flat(
            self.net
                .call(self.me, self.inc, self.to, AAE_TIMEOUT, false, move |core| {
                    let keys = keys.clone();
                    async move { core.aae.answer_fetch(partition, keys).await }
                })
                .await,
        )
    }

    async fn push(&self, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        self.transport()
            .handoff(&node_id(self.to), "merge", self.epoch, objects)
            .await
            .map(|_| ())
    }

    async fn reap(&self, partition: u32, _n: u8, keys: Vec<(Bytes, u64)>) -> Result<Vec<Bytes>, String> {
        self.transport()
            .fenced(&node_id(self.to), "reap", self.epoch, AAE_TIMEOUT, true, move |core| {
                let keys = keys.clone();
                async move { core.aae.answer_reap(partition, keys).await }
            })
            .await
    }
}

/// What replica `core` holds of `key` right now (for the final state).
pub fn held(core: &Core, layout: &Layout, key: &[u8]) -> Option<Object> {
    core.store.get(layout.partition_of(key), key).ok().flatten()
}
