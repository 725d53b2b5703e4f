//! Membership: drives the SWIM core over the peer port, gossips the layout record, streams
//! partitions in when a change gives this node data, and switches the coordinator's placement.
//!
//! Liveness and layout are kept apart (Dynamo §4.8): SWIM says who is alive, suspect or dead;
//! only an operator's join, leave or remove changes the [`LayoutRecord`]. A dead node stays in
//! the layout until it is removed.
//!
//! A change flows like this:
//! 1. A node proposes it (epoch e). The record spreads as a SWIM user broadcast and in every
//!    push/pull; each node that adopts it writes to both layouts' owners and announces, in its
//!    SWIM metadata, that it has seen epoch e.
//! 2. Each node that gains data waits until every live node has seen e (so no coordinator still
//!    writes only to the old owners), then pulls each gained partition range from the first
//!    live old owner, throttled, persisting a cursor after every chunk so a restart resumes.
//!    When done it announces `synced_epoch = e`.
//! 3. Once every gaining node has synced, any node commits (epoch e+1); all compute the same
//!    record. Reads move to the new layout; writes still reach W of the old owners, since a
//!    node that has not adopted the commit yet still reads from them.
//! 4. Once every live node has adopted the commit, any node finishes it (epoch e+2): the old
//!    owners are let go. Nodes that lost data drop it after `transfer.drop_delay_ms`; a
//!    leaving node then stops.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use shoal_coordinator::Health;
use shoal_membership::{Liveness, Message, Output, Swim, SwimConfig};
use shoal_ring::{
    moves, AdminState, Blocker, Change, ChangeError, Epochs, LayoutRecord, Member, Move, NodeId, PendingStrays,
    Placement, Source, Step,
};
use shoal_storage::{RocksStore, Store};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::{NodeConfig, TransferSection};
use crate::peer::{unexpected, NodeCoordinator, PeerRequest, PeerResponse, QuicTransport};
use crate::repair::HintTarget;

/// What each node gossips about itself in SWIM (memberlist's node meta). Changing it raises
/// the node's incarnation, so the newest version always wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub peer: SocketAddr,
    pub http: SocketAddr,
    pub quic: SocketAddr,
    pub zone: String,
    pub weight: u32,
    /// The highest layout epoch this node has adopted.
    pub seen_epoch: u64,
    /// The epoch of the last change whose data this node has finished streaming in.
    pub synced_epoch: u64,
    /// The current layout's epoch when this node last finished dealing with the data it no
    /// longer owns; tombstone GC waits for every member's (`LayoutRecord::strays_cleared`).
    #[serde(default)]
    pub swept_epoch: u64,
    /// The transfer under way, for `shoal admin status`.
    pub transfer: Option<TransferProgress>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferProgress {
    pub epoch: u64,
    pub partitions_done: u32,
    pub partitions_total: u32,
    pub bytes: u64,
    pub keys: u64,
    /// Why the transfer is not moving, when it is not: a range no live node holds.
    #[serde(default)]
    pub waiting: Option<String>,
}

const META_INCARNATION: &str = "swim/incarnation";
const META_LAYOUT: &str = "layout/record";
const META_SYNCED: &str = "layout/synced_epoch";
const META_PEERS: &str = "swim/peers";
/// The epoch of the record that last left this node holding data it may no longer own
/// (0: none): a finished change, or one it slept through. Persisted so a restart resumes the
/// handoff.
const META_STRAYS: &str = "layout/strays";
const CURSOR_DONE: &[u8] = b"\xff\xffdone";

/// How long an admin join waits for the seed's layout before giving up.
const JOIN_WAIT: Duration = Duration::from_secs(10);

pub struct Membership {
    me: NodeId,
    zone: String,
    weight: u32,
    n: u8,
    max_n: u8,
    ring: shoal_ring::RingConfig,
    swim_config: SwimConfig,
    transfer_config: TransferSection,
    origin: Instant,
    swim: Mutex<Swim<NodeMeta>>,
    record: RwLock<Option<LayoutRecord>>,
    coordinator: Arc<NodeCoordinator>,
    transport: Arc<QuicTransport>,
    contacts: Mutex<BTreeSet<SocketAddr>>,
    records: watch::Sender<Option<LayoutRecord>>,
    /// The nodes that gain data in the change in flight, with the record epoch they were
    /// worked out for: derived once per adopted record, read by every commit check.
    gainers: Mutex<(u64, Vec<NodeId>)>,
    persisted_incarnation: Mutex<u64>,
    /// Placements replaced while requests begun under them may still run (see
    /// [`Membership::announce_seen`]).
    retired: Mutex<Vec<std::sync::Weak<Placement>>>,
    /// The members SWIM has declared dead, for the coordinator's sloppy quorum (kept apart
    /// from the SWIM lock, which every request would otherwise take).
    down: RwLock<HashSet<NodeId>>,
    wake: Notify,
    stop: watch::Sender<bool>,
    /// A stray handoff is running.
    sweeping: AtomicBool,
    /// Whom the change in flight waits for, as of the last check (for `admin status`).
    blocked: Mutex<BlockedOn>,
}

/// Whom the change in flight waits for, and since when one of them has not been alive.
#[derive(Default)]
struct BlockedOn {
    epoch: u64,
    blockers: Vec<Blocker>,
    /// When the change began waiting on a member SWIM does not see alive.
    stuck_since: Option<Instant>,
}

fn meta_get<T: serde::de::DeserializeOwned>(store: &RocksStore, key: &str) -> anyhow::Result<Option<T>> {
    match store.get_meta(key)? {
        Some(bytes) => Ok(Some(rmp_serde::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

fn meta_put<T: Serialize>(store: &RocksStore, key: &str, value: &T) {
    let result = rmp_serde::to_vec(value)
        .map_err(|e| e.to_string())
        .and_then(|b| store.put_meta(key, &b).map_err(|e| e.to_string()));
    if let Err(e) = result {
        error!(key, error = %e, "could not persist node metadata");
    }
}

impl Membership {
    /// Restores this node's incarnation, layout record and known peers, and builds the SWIM core.
    pub fn start(
        config: &NodeConfig,
        coordinator: Arc<NodeCoordinator>,
        transport: Arc<QuicTransport>,
    ) -> anyhow::Result<Arc<Membership>> {
        let me = NodeId::new(config.node.id.clone());
        let store = coordinator.replica().store().clone();
        // A restarted node must come back with a higher incarnation than anything it said
        // before, or its old "alive" would not override the cluster's "dead".
        let incarnation = meta_get::<u64>(&store, META_INCARNATION)?.map_or(1, |i| i + 1);
        meta_put(&store, META_INCARNATION, &incarnation);
        let ring = config.ring_config();
        let swim_config = config.swim_config();
        let mut record: Option<LayoutRecord> = meta_get(&store, META_LAYOUT)?;
        if !config.cluster.members.is_empty() {
            let members = config
                .cluster
                .members
                .iter()
                .map(|m| Member {
                    id: NodeId::new(m.id.clone()),
                    zone: m.zone.clone(),
                    weight: m.weight,
                })
                .collect();
            let boot = LayoutRecord::bootstrap(members, ring)?;
            match record.as_mut() {
                Some(r) => {
                    r.merge(&boot)?;
                }
                None => record = Some(boot),
            }
        }
        if let Some(r) = &record {
            anyhow::ensure!(
                r.config == ring,
                "the data directory holds a layout with ring config {:?}, but this node is configured with {:?}",
                r.config,
                ring
            );
        }
        let synced_epoch = meta_get::<u64>(&store, META_SYNCED)?.unwrap_or(0);
        let strays_pending = meta_get::<Option<PendingStrays>>(&store, META_STRAYS)?
            .flatten()
            .is_some();
        let swept_epoch = match &record {
            Some(r) if !strays_pending => r.current_epoch,
            _ => 0,
        };
        let meta = NodeMeta {
            peer: config.listen.peer,
            http: config.listen.http,
            quic: config.listen.quic,
            zone: config.node.zone.clone(),
            weight: config.node.weight,
            seen_epoch: record.as_ref().map_or(0, |r| r.epoch),
            synced_epoch,
            swept_epoch,
            transfer: None,
        };
        let mut swim = Swim::new(
            me.clone(),
            meta,
            incarnation,
            swim_config.clone(),
            rand::random(),
            Duration::ZERO,
        );
        if let Some(r) = &record {
            swim.set_user_state(rmp_serde::to_vec(r)?);
            coordinator.set_placement(Some(r.placement()?));
        }
        let mut contacts: BTreeSet<SocketAddr> = meta_get::<Vec<SocketAddr>>(&store, META_PEERS)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        contacts.extend(
            config
                .cluster
                .members
                .iter()
                .filter(|m| m.id != me.as_str())
                .map(|m| m.peer),
        );
        contacts.extend(config.cluster.seeds.iter().copied());
        contacts.remove(&config.listen.peer);
        let (records, _) = watch::channel(record.clone());
        let (stop, _) = watch::channel(false);
        let m = Arc::new(Membership {
            me,
            zone: config.node.zone.clone(),
            weight: config.node.weight,
            n: config.requests.n,
            max_n: config.requests.max_n,
            ring,
            swim_config,
            transfer_config: config.transfer.clone(),
            origin: Instant::now(),
            swim: Mutex::new(swim),
            // A record loaded from disk is never adopted: work its gainers out here.
            gainers: Mutex::new(
                record
                    .as_ref()
                    .map_or((0, Vec::new()), |r| (r.epoch, r.gainers(config.requests.max_n))),
            ),
            record: RwLock::new(record),
            coordinator,
            transport,
            contacts: Mutex::new(contacts),
            records,
            persisted_incarnation: Mutex::new(incarnation),
            retired: Mutex::new(Vec::new()),
            down: RwLock::new(HashSet::new()),
            wake: Notify::new(),
            stop,
            sweeping: AtomicBool::new(false),
            blocked: Mutex::new(BlockedOn::default()),
        });
        metrics::gauge!("shoal_layout_epoch").set(m.record.read().as_ref().map_or(0, |r| r.epoch) as f64);
        // Epoch fencing: a replica that refuses a request as coordinated under an old layout
        // answers with its record, which this node adopts at once (before gossip brings it).
        let weak = Arc::downgrade(&m);
        m.transport.on_stale_layout(move |record| {
            if let Some(m) = weak.upgrade() {
                match m.adopt(record) {
                    Ok(_) => m.coordinator.renew_layout_lease(),
                    Err(e) => error!(error = %e, "refused the layout record a fencing replica sent"),
                }
            }
        });
        tokio::spawn(m.clone().drive());
        tokio::spawn(m.clone().follow_layout());
        Ok(m)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn store(&self) -> &Arc<RocksStore> {
        self.coordinator.replica().store()
    }

    /// Resolves once this node has left the cluster and should stop.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// A SWIM message from a peer.
    pub fn handle(self: &Arc<Self>, message: Message<NodeMeta>) {
        let now = self.now();
        let acked_by = match &message {
            Message::Ack { from, .. } => Some(from.clone()),
            _ => None,
        };
        let outputs = self.swim.lock().handle(message, now);
        // A peer answered a probe, and has adopted no newer layout than this node's: a sign
        // this node's layout is current (the coordinator's layout lease).
        if let Some(peer) = acked_by {
            let epoch = self.record.read().as_ref().map_or(0, |r| r.epoch);
            if self
                .swim
                .lock()
                .member(&peer)
                .is_some_and(|m| m.meta.seen_epoch <= epoch)
            {
                self.coordinator.renew_layout_lease();
            }
        }
        self.process(outputs);
        // A message can bring a deadline forward (a confirmed suspicion): re-arm the timer.
        self.wake.notify_one();
    }

    /// The SWIM timer loop.
    async fn drive(self: Arc<Self>) {
        let mut next_contact = Instant::now();
        let mut next_maintain = Instant::now();
        loop {
            let deadline = self.swim.lock().next_deadline();
            let wait = deadline
                .saturating_sub(self.now())
                .clamp(Duration::from_millis(5), Duration::from_millis(200));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
            let now = self.now();
            let outputs = self.swim.lock().tick(now);
            self.process(outputs);
            if Instant::now() >= next_contact {
                // Alone (fresh start, or everyone else restarted): knock on every known door.
                if self.alive_peers() == 0 {
                    self.contact_all();
                }
                next_contact = Instant::now() + Duration::from_secs(2);
            }
            if Instant::now() >= next_maintain {
                self.maintain();
                next_maintain = Instant::now() + Duration::from_millis(100);
            }
        }
    }

    fn alive_peers(&self) -> usize {
        let swim = self.swim.lock();
        swim.members()
            .filter(|m| *m.id != self.me && m.liveness != Liveness::Dead)
            .count()
    }

    fn contact_all(self: &Arc<Self>) {
        let contacts: Vec<SocketAddr> = self.contacts.lock().iter().copied().collect();
        for addr in contacts {
            self.send_join(addr);
        }
    }

    fn send_join(self: &Arc<Self>, addr: SocketAddr) {
        let request = self.swim.lock().join_request(self.now());
        self.send_swim(addr, request, self.swim_config.probe_interval);
    }

    /// Sends one SWIM message without waiting: SWIM treats a message that does not arrive as
    /// lost, which is all a failed call means to it.
    fn send_swim(&self, addr: SocketAddr, message: Message<NodeMeta>, timeout: Duration) {
        let transport = self.transport.clone();
        tokio::spawn(async move {
            if let Err(e) = transport.call_addr(addr, PeerRequest::Swim(message), timeout).await {
                debug!(%addr, error = %e, "SWIM message not delivered");
            }
        });
    }

    fn process(self: &Arc<Self>, outputs: Vec<Output<NodeMeta>>) {
        for out in outputs {
            match out {
                Output::Send { to, message } => {
                    let addr = self.swim.lock().member(&to).map(|m| m.meta.peer);
                    if let Some(addr) = addr {
                        self.send_swim(addr, message, self.swim_config.probe_timeout);
                    }
                }
                Output::Liveness { id, from, to } => {
                    if to == Liveness::Dead {
                        self.down.write().insert(id.clone());
                    } else {
                        self.down.write().remove(&id);
                    }
                    // Into or out of death, the pooled connection is stale: the next request
                    // (hint delivery above all) must dial afresh, not wait out the idle timeout.
                    if to == Liveness::Dead || from == Some(Liveness::Dead) {
                        self.transport.forget(&id);
                    }
                    let label = liveness_label(to);
                    metrics::counter!("shoal_swim_transitions_total", "to" => label).increment(1);
                    match (from, to) {
                        (None, _) => info!(node = %id, state = label, "member discovered"),
                        (_, Liveness::Dead) => warn!(node = %id, "member declared dead"),
                        (_, Liveness::Suspect) => info!(node = %id, "member suspected"),
                        (Some(f), Liveness::Alive) => info!(node = %id, was = liveness_label(f), "member alive"),
                    }
                    self.learn_address(&id);
                }
                Output::Meta { id } => self.learn_address(&id),
                Output::User(bytes) => self.receive_record(&bytes, true),
                Output::UserState(bytes) => self.receive_record(&bytes, false),
            }
        }
    }

    fn learn_address(&self, id: &NodeId) {
        if *id == self.me {
            return;
        }
        let addr = self.swim.lock().member(id).map(|m| m.meta.peer);
        if let Some(addr) = addr {
            self.transport.set_addr(id.clone(), addr);
            let mut contacts = self.contacts.lock();
            if contacts.insert(addr) {
                let all: Vec<SocketAddr> = contacts.iter().copied().collect();
                drop(contacts);
                meta_put(self.store(), META_PEERS, &all);
            }
        }
    }

    fn receive_record(self: &Arc<Self>, bytes: &[u8], broadcast: bool) {
        match rmp_serde::from_slice::<LayoutRecord>(bytes) {
            Ok(record) => match self.adopt(record) {
                // Whether newer or not, this node's record is now at least the peer's.
                Ok(_) => self.coordinator.renew_layout_lease(),
                Err(e) => error!(error = %e, broadcast, "refused a gossiped layout"),
            },
            Err(e) => warn!(error = %e, "undecodable layout record in gossip"),
        }
    }

    /// Merges `incoming` into this node's record; if that changed it, switches the placement,
    /// persists the record and gossips it on.
    fn adopt(self: &Arc<Self>, incoming: LayoutRecord) -> Result<bool, ChangeError> {
        // A stored record always has the configured ring (checked at start), so this one check
        // covers a node's first record too.
        if incoming.config != self.ring {
            return Err(ChangeError::ConfigMismatch {
                ours: self.ring,
                theirs: incoming.config,
            });
        }
        let (record, old) = {
            let mut guard = self.record.write();
            let old = guard.clone();
            let changed = match guard.as_mut() {
                Some(r) => r.merge(&incoming)?,
                None => {
                    *guard = Some(incoming);
                    true
                }
            };
            if !changed {
                return Ok(false);
            }
            (guard.clone().expect("set just above"), old)
        };
        if let Some(old) = old {
            // Once the cluster is stable, drop what this node no longer holds, handing it to
            // the owners first if it may have missed a stream (`sweep_strays`). Set before the
            // placement switches, so a crash from here on resumes it.
            let pending = self.pending_strays();
            let lapsed = !self.coordinator.layout_confirmed();
            let after = PendingStrays::after(pending, &self.me, &old, &record, lapsed);
            if after != pending {
                meta_put(self.store(), META_STRAYS, &after);
            }
        }
        let placement = record.placement()?;
        *self.gainers.lock() = (record.epoch, record.gainers(self.max_n));
        info!(
            epoch = record.epoch,
            layout = placement.current.version(),
            transition = ?record.next.as_ref().map(|t| format!("{} {}", t.kind, t.node)),
            "adopted layout"
        );
        let retired = self.coordinator.set_placement(Some(placement));
        meta_put(self.store(), META_LAYOUT, &record);
        metrics::gauge!("shoal_layout_epoch").set(record.epoch as f64);
        let encoded = rmp_serde::to_vec(&record).expect("a layout record always encodes");
        {
            let mut swim = self.swim.lock();
            swim.set_user_state(encoded.clone());
            swim.broadcast_user(encoded);
        }
        self.announce_seen(record.epoch, retired);
        self.records.send_replace(Some(record));
        self.wake.notify_one();
        Ok(true)
    }

    /// Announces `seen_epoch = epoch` once no request that started under an older placement is
    /// still running here. A gaining node streams a partition once every live node has seen
    /// the change; a write its coordinator began under the old layout (so sent to the old
    /// owners only) that landed on the source behind the transfer cursor would otherwise be
    /// missed. Garage's layout "ack" waits for the same thing. Requests hold their placement
    /// until they return, so a retired placement still referenced means one is running; the
    /// wait is bounded by the longest request timeout.
    fn announce_seen(self: &Arc<Self>, epoch: u64, retired: Option<Arc<Placement>>) {
        let busy = {
            let mut waiting = self.retired.lock();
            if let Some(old) = retired {
                waiting.push(Arc::downgrade(&old));
            }
            waiting.retain(|w| w.strong_count() > 0);
            !waiting.is_empty()
        };
        let set_seen = move |this: &Arc<Self>| {
            let outputs = {
                let mut swim = this.swim.lock();
                let mut meta = swim.meta().clone();
                if meta.seen_epoch >= epoch {
                    return;
                }
                meta.seen_epoch = epoch;
                swim.set_meta(meta, this.now())
            };
            this.process(outputs);
        };
        if !busy {
            set_seen(self);
            return;
        }
        let this = self.clone();
        let bound = self.coordinator.config().max_timeout + Duration::from_secs(1);
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                let busy = {
                    let mut waiting = this.retired.lock();
                    waiting.retain(|w| w.strong_count() > 0);
                    !waiting.is_empty()
                };
                if !busy {
                    break;
                }
                if started.elapsed() > bound {
                    warn!(
                        epoch,
                        "requests begun under an older layout still running; announcing the new one anyway"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            set_seen(&this);
        });
    }

    /// Commits the change in flight once every node that gains data has streamed it in,
    /// finishes a committed one once every live node has adopted it, and keeps the persisted
    /// incarnation and the gauges current.
    fn maintain(self: &Arc<Self>) {
        let incarnation = self.swim.lock().incarnation();
        {
            let mut persisted = self.persisted_incarnation.lock();
            if incarnation > *persisted {
                meta_put(self.store(), META_INCARNATION, &incarnation);
                *persisted = incarnation;
            }
        }
        if let Some(record) = self.record() {
            match self.step(&record) {
                Step::Commit(commit) => {
                    info!(
                        epoch = commit.epoch,
                        "every node has seen the change and every gaining node has synced: committing it"
                    );
                    if let Err(e) = self.adopt(commit) {
                        error!(error = %e, "could not commit the layout change");
                    }
                }
                Step::Finish(finish) => {
                    info!(
                        epoch = finish.epoch,
                        "every node has adopted the commit: letting the old owners go"
                    );
                    if let Err(e) = self.adopt(finish) {
                        error!(error = %e, "could not finish the layout change");
                    }
                }
                step => self.note_blockers(&record, step.blockers()),
            }
        }
        let swim = self.swim.lock();
        for state in [Liveness::Alive, Liveness::Suspect, Liveness::Dead] {
            let count = swim.members().filter(|m| m.liveness == state).count();
            metrics::gauge!("shoal_members", "liveness" => liveness_label(state)).set(count as f64);
        }
        metrics::gauge!("shoal_swim_local_health").set(swim.local_health() as f64);
    }

    /// The layout-change engine's next step for `record` (`LayoutRecord::step`), from the
    /// epochs every node gossips in its SWIM metadata. A member SWIM has never heard of, or
    /// has forgotten, has seen nothing; a dead one counts with what it reported last.
    fn step(&self, record: &LayoutRecord) -> Step {
        let gainers = self.gainers.lock();
        if gainers.0 != record.epoch {
            // Worked out for another record: adopt is switching them right now.
            return Step::Wait(Vec::new());
        }
        let swim = self.swim.lock();
        record.step(
            |id| {
                swim.member(id).map(|m| Epochs {
                    seen: m.meta.seen_epoch,
                    synced: m.meta.synced_epoch,
                    swept: m.meta.swept_epoch,
                })
            },
            &gainers.1,
        )
    }

    /// Records whom the change in flight waits for, and keeps `shoal_layout_blocked_seconds`:
    /// how long it has waited on a member SWIM does not see alive (0 while every node it waits
    /// for is alive and working, or nothing is in flight).
    fn note_blockers(&self, record: &LayoutRecord, blockers: &[Blocker]) {
        let stuck = {
            let swim = self.swim.lock();
            blockers
                .iter()
                .any(|b| swim.member(&b.node).is_none_or(|m| m.liveness != Liveness::Alive))
        };
        let mut blocked = self.blocked.lock();
        if blocked.epoch != record.epoch || !stuck {
            blocked.stuck_since = None;
        }
        if stuck && blocked.stuck_since.is_none() {
            let names: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
            warn!(
                epoch = record.epoch,
                waiting_for = %names.join("; "),
                "the layout change waits for a member that is not alive; it resumes when the member returns, \
                 or `shoal admin skip NODE` lets it go on without a dead one"
            );
            blocked.stuck_since = Some(Instant::now());
        }
        blocked.epoch = record.epoch;
        blocked.blockers = blockers.to_vec();
        let secs = blocked.stuck_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        metrics::gauge!("shoal_layout_blocked_seconds").set(secs);
    }

    /// Whom the change in flight waits for (empty when nothing is in flight or it is about to
    /// step), and how long it has waited on a member that is not alive.
    pub fn blocked_on(&self) -> (Vec<Blocker>, Option<Duration>) {
        let epoch = self.record().map_or(0, |r| r.epoch);
        let blocked = self.blocked.lock();
        if blocked.epoch != epoch {
            return (Vec::new(), None);
        }
        (blocked.blockers.clone(), blocked.stuck_since.map(|t| t.elapsed()))
    }

    /// Follows layout changes: streams in what this node gains, and hands over and drops what
    /// it lost.
    async fn follow_layout(self: Arc<Self>) {
        let mut rx = self.records.subscribe();
        loop {
            let record = rx.borrow_and_update().clone();
            if let Some(record) = record {
                if record.next.is_some() {
                    self.stream_in(&record).await;
                }
                if record.change().is_none() && self.pending_strays().is_some() {
                    self.clone().sweep_strays();
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether tombstone GC may run: every member has dealt with the strays the last change
    /// left it (`LayoutRecord::strays_cleared`).
    pub fn gc_allowed(&self) -> bool {
        let Some(record) = self.record() else { return false };
        let swim = self.swim.lock();
        let alive: Vec<NodeId> = swim
            .members()
            .filter(|m| m.liveness != Liveness::Dead)
            .map(|m| m.id.clone())
            .collect();
        let swept = |id: &NodeId| {
            if *id == self.me {
                swim.meta().swept_epoch
            } else {
                swim.member(id).map_or(0, |m| m.meta.swept_epoch)
            }
        };
        record.strays_cleared(swept, &alive)
    }

    fn pending_strays(&self) -> Option<PendingStrays> {
        meta_get::<Option<PendingStrays>>(self.store(), META_STRAYS)
            .ok()
            .flatten()
            .flatten()
    }

    /// Once a change has finished (or this node slept through one), and after
    /// `transfer.drop_delay_ms` for requests still running under the old placement: drops
    /// every object this node no longer holds (`shoal_handoff::hand_off_strays`), and stops
    /// the node if it has left.
    ///
    /// After a change this node followed, the gaining nodes streamed all of it in. A node
    /// that slept through one (SWIM declared it dead and the change went on without it) may
    /// hold writes it acknowledged alone (`w = 1`) or with other stale nodes that no gaining
    /// node streamed: it hands every stray to the owners before dropping it (found by the
    /// simulator), and tombstone GC waits for that (`LayoutRecord::strays_cleared`).
    fn sweep_strays(self: Arc<Self>) {
        if self.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(self.transfer_config.drop_delay_ms)).await;
                let pending = self.pending_strays();
                let stable = self.record().is_some_and(|r| r.change().is_none());
                let Some(pending) = pending.filter(|_| stable) else {
                    break; // none left, or a change began: `follow_layout` starts again after it
                };
                self.publish_progress(None);
                let target = HintTarget {
                    membership: self.clone(),
                    transport: self.transport.clone(),
                    coordinator: self.coordinator.clone(),
                };
                let owners = self.coordinator.stray_owners();
                let replica = self.coordinator.replica();
                let partitions = self.ring.partitions;
                match shoal_handoff::hand_off_strays(replica, partitions, owners, &target, pending.hand_over).await {
                    Ok(moved) => {
                        metrics::counter!("shoal_strays_handed_off_total").increment(moved as u64);
                        info!(keys = moved, "handed over and dropped data this node no longer owns");
                        if self.pending_strays() != Some(pending) {
                            continue; // another change ended meanwhile
                        }
                        meta_put(self.store(), META_STRAYS, &None::<PendingStrays>);
                        let current = self.record().map_or(0, |r| r.current_epoch);
                        let outputs = {
                            let mut swim = self.swim.lock();
                            let mut meta = swim.meta().clone();
                            meta.swept_epoch = meta.swept_epoch.max(current);
                            swim.set_meta(meta, self.now())
                        };
                        self.process(outputs);
                        if self
                            .record()
                            .is_some_and(|r| r.admin_state(&self.me) == AdminState::Left)
                        {
                            info!("this node has left the cluster; stopping");
                            self.stop.send_replace(true);
                        }
                        break;
                    }
                    Err(e) => warn!(error = %e, "handing over data this node no longer owns; trying again"),
                }
            }
            self.sweeping.store(false, Ordering::SeqCst);
            // A change that ended while this sweep was giving up found it still running.
            if self.pending_strays().is_some() && self.record().is_some_and(|r| r.change().is_none()) {
                self.sweep_strays();
            }
        });
    }

    /// Streams in every partition range this node gains in `record`'s transition.
    async fn stream_in(self: &Arc<Self>, record: &LayoutRecord) {
        let epoch = record.epoch;
        if self.swim.lock().meta().synced_epoch >= epoch {
            return;
        }
        let gains = match record.placement() {
            Ok(p) => match &p.next {
                Some(next) => moves(&p.current, next, &self.me, self.max_n),
                None => return,
            },
            Err(e) => {
                error!(error = %e, "cannot build the layout in flight");
                return;
            }
        };
        if gains.is_empty() {
            return;
        }
        // Wait until no coordinator can still be writing to the old owners only: a write
        // landing on a source behind the cursor would otherwise be missed.
        loop {
            // The newest record at this epoch: a skip changes it without a new epoch.
            let Some(now) = self.record().filter(|r| r.epoch == epoch) else {
                return;
            };
            if self.step(&now).may_stream() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        info!(
            epoch,
            partitions = gains.len(),
            "streaming in the partitions this node gains"
        );
        let started = Instant::now();
        let mut progress = TransferProgress {
            epoch,
            partitions_total: gains.len() as u32,
            ..Default::default()
        };
        self.publish_progress(Some(progress.clone()));
        let mut last_publish = Instant::now();
        metrics::gauge!("shoal_transfer_partitions_pending").set(gains.len() as f64);
        for mv in &gains {
            if !self.stream_partition(epoch, mv, &mut progress, started).await {
                return;
            }
            progress.partitions_done += 1;
            metrics::gauge!("shoal_transfer_partitions_pending")
                .set(f64::from(progress.partitions_total - progress.partitions_done));
            if last_publish.elapsed() > Duration::from_secs(1) {
                self.publish_progress(Some(progress.clone()));
                last_publish = Instant::now();
            }
        }
        info!(
            epoch,
            partitions = progress.partitions_total,
            keys = progress.keys,
            bytes = progress.bytes,
            secs = started.elapsed().as_secs_f64(),
            "partition transfer done"
        );
        meta_put(self.store(), META_SYNCED, &epoch);
        let outputs = {
            let mut swim = self.swim.lock();
            let mut meta = swim.meta().clone();
            meta.synced_epoch = epoch;
            meta.transfer = Some(progress);
            swim.set_meta(meta, self.now())
        };
        self.process(outputs);
    }

    fn publish_progress(self: &Arc<Self>, progress: Option<TransferProgress>) {
        let outputs = {
            let mut swim = self.swim.lock();
            let mut meta = swim.meta().clone();
            meta.transfer = progress;
            swim.set_meta(meta, self.now())
        };
        self.process(outputs);
    }

    /// Streams one partition range, run by run (each `n` from the node that gives it up; see
    /// `Move::givers`). Returns false if the transition was superseded or committed meanwhile.
    async fn stream_partition(
        self: &Arc<Self>,
        epoch: u64,
        mv: &Move,
        progress: &mut TransferProgress,
        started: Instant,
    ) -> bool {
        for (n_min, n_max, giver) in mv.runs() {
            if !self
                .stream_run(epoch, mv, (n_min, n_max), giver.as_ref(), progress, started)
                .await
            {
                return false;
            }
        }
        true
    }

    /// Streams the objects of factor `n_min..=n_max` of `mv`'s partition from the sources the
    /// engine names (`LayoutRecord::source_for`). Returns false if the change moved on.
    async fn stream_run(
        self: &Arc<Self>,
        epoch: u64,
        mv: &Move,
        (n_min, n_max): (u8, u8),
        giver: Option<&NodeId>,
        progress: &mut TransferProgress,
        started: Instant,
    ) -> bool {
        loop {
            // The newest record at this epoch: a skip changes whom the change waits for.
            let Some(record) = self.record().filter(|r| r.epoch == epoch) else {
                return false;
            };
            let live = |id: &NodeId| {
                *id != self.me
                    && self
                        .swim
                        .lock()
                        .member(id)
                        .is_some_and(|m| m.liveness != Liveness::Dead)
            };
            let sources = match record.source_for(giver, &mv.sources, live) {
                Source::Ask(sources) => sources,
                Source::PassOver => {
                    let lost = record.removed().is_some_and(|r| mv.sources.iter().all(|s| s == r));
                    warn!(
                        partition = mv.partition,
                        n_min,
                        n_max,
                        lost,
                        "no live holder of this range and none is waited for (removed or skipped); passing it over"
                    );
                    if lost {
                        metrics::counter!("shoal_transfer_ranges_lost_total").increment(1);
                    }
                    return true;
                }
                Source::Wait(holder) => {
                    let waiting = format!(
                        "partition {} (n {n_min}..={n_max}): waiting for {holder}, which holds it and is down",
                        mv.partition
                    );
                    if progress.waiting.as_ref() != Some(&waiting) {
                        warn!(partition = mv.partition, %holder, "the node this range must come from is down; waiting for it, or for `shoal admin skip`");
                        progress.waiting = Some(waiting);
                        self.publish_progress(Some(progress.clone()));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if progress.waiting.take().is_some() {
                self.publish_progress(Some(progress.clone()));
            }
            let mut complete = true;
            for source in &sources {
                match self
                    .fetch_run(epoch, mv.partition, (n_min, n_max), source, progress, started)
                    .await
                {
                    Some(true) => {}
                    Some(false) => {
                        complete = false;
                        break;
                    }
                    None => return false,
                }
            }
            if complete {
                return true;
            }
            // A source failed: ask the engine again (it may be dead now, or back).
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Streams a run from `source` to its end, resuming from that source's persisted cursor:
    /// `Some(true)` once done, `Some(false)` if the source failed, `None` if the change moved on.
    async fn fetch_run(
        self: &Arc<Self>,
        epoch: u64,
        partition: u32,
        (n_min, n_max): (u8, u8),
        source: &NodeId,
        progress: &mut TransferProgress,
        started: Instant,
    ) -> Option<bool> {
        let cursor_key = format!("transfer/{epoch}/{partition}/{n_min}/{source}");
        let mut from: Vec<u8> = match self.store().get_meta(&cursor_key) {
            Ok(Some(c)) if c == CURSOR_DONE => return Some(true),
            Ok(Some(c)) => c,
            Ok(None) => Vec::new(),
            Err(e) => {
                error!(error = %e, "reading a transfer cursor");
                Vec::new()
            }
        };
        let rate = self.transfer_config.max_mb_per_sec * 1e6;
        loop {
            if self.record().is_none_or(|r| r.epoch != epoch) {
                return None;
            }
            let request = PeerRequest::Fetch {
                partition,
                from: Bytes::from(from.clone()),
                n_min,
                n_max,
                max_bytes: self.transfer_config.chunk_bytes.min(u32::MAX as usize) as u32,
            };
            let answer = self.transport.call(source, request, Duration::from_secs(30)).await;
            match answer.and_then(|r| match r {
                PeerResponse::Chunk { objects, resume } => Ok((objects, resume)),
                other => Err(unexpected(other)),
            }) {
                Ok((objects, resume)) => {
                    let bytes: u64 = objects.iter().map(|(k, o)| (k.len() + o.payload_len()) as u64).sum();
                    let keys = objects.len() as u64;
                    let replica = self.coordinator.replica().clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        for (key, object) in &objects {
                            replica
                                .apply_from_peer(partition, key, object)
                                .map_err(|e| e.to_string())?;
                        }
                        Ok::<_, String>(())
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    if let Err(e) = applied {
                        error!(partition, error = %e, "could not store a transferred chunk; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    progress.bytes += bytes;
                    progress.keys += keys;
                    metrics::counter!("shoal_transfer_received_bytes_total").increment(bytes);
                    metrics::counter!("shoal_transfer_received_keys_total").increment(keys);
                    let done = resume.is_none();
                    from = resume.map(|r| r.to_vec()).unwrap_or_default();
                    let cursor: &[u8] = if done { CURSOR_DONE } else { &from };
                    if let Err(e) = self.store().put_meta(&cursor_key, cursor) {
                        error!(error = %e, "persisting a transfer cursor");
                    }
                    // Throttle: never run ahead of max_mb_per_sec averaged over the transfer.
                    let due = Duration::from_secs_f64(progress.bytes as f64 / rate);
                    let elapsed = started.elapsed();
                    if due > elapsed {
                        tokio::time::sleep(due - elapsed).await;
                    }
                    if done {
                        return Some(true);
                    }
                }
                Err(e) => {
                    warn!(%source, partition, error = %e, "transfer source failed");
                    return Some(false);
                }
            }
        }
    }

    /// `shoal admin join SEED`: learn the cluster from `seed`, then propose adding this node.
    pub async fn join(self: &Arc<Self>, seed: SocketAddr) -> Result<LayoutRecord, String> {
        self.contacts.lock().insert(seed);
        let deadline = Instant::now() + JOIN_WAIT;
        loop {
            if self.record.read().is_some() && self.alive_peers() > 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer with a cluster layout from {seed} within {JOIN_WAIT:?}"
                ));
            }
            self.send_join(seed);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let me = Member {
            id: self.me.clone(),
            zone: self.zone.clone(),
            weight: self.weight,
        };
        self.propose(Change::Join(me))
    }

    /// `shoal admin leave`: decommission this node.
    pub fn leave(self: &Arc<Self>) -> Result<LayoutRecord, String> {
        self.propose(Change::Leave(self.me.clone()))
    }

    /// `shoal admin remove NODE`: take a dead node out of the layout.
    pub fn remove(self: &Arc<Self>, node: NodeId) -> Result<LayoutRecord, String> {
        let in_layout = self.record.read().as_ref().is_some_and(|r| r.in_current(&node));
        if in_layout {
            self.ensure_dead(
                &node,
                "removed",
                "decommission a live node with `shoal admin leave` on it",
            )?;
        }
        // Not a member: let the layout say so.
        self.propose(Change::Remove(node))
    }

    /// `shoal admin skip NODE`: let the change in flight go on without a dead member (Garage's
    /// `skip-dead-nodes`). Never automatic: a node SWIM calls dead may only be cut off, and
    /// still serving on its old layout. When it returns, peers fence it off until it adopts
    /// the newer record, and it hands what it holds in ranges it lost to their owners.
    pub fn skip(self: &Arc<Self>, node: NodeId) -> Result<LayoutRecord, String> {
        if node == self.me {
            return Err("a node cannot skip itself; run `shoal admin skip` on another member".into());
        }
        self.ensure_dead(
            &node,
            "skipped",
            "the change is waiting for it to catch up, which it will by itself",
        )?;
        let current = self
            .record()
            .ok_or("this node has no cluster layout yet; join it to a cluster first")?;
        let skipped = current.skip(&node, self.max_n).map_err(|e| e.to_string())?;
        self.adopt(skipped.clone()).map_err(|e| e.to_string())?;
        warn!(node = %node, epoch = skipped.epoch, "skipped a dead member: the layout change goes on without it");
        Ok(skipped)
    }

    /// Refuses (saying why) unless SWIM on this node holds `node` dead, or has not heard from
    /// it for the longest suspicion timeout since it started (it died while the cluster was
    /// down).
    fn ensure_dead(&self, node: &NodeId, done: &str, instead: &str) -> Result<(), String> {
        let liveness = self.swim.lock().member(node).map(|m| m.liveness);
        match liveness {
            Some(Liveness::Dead) => Ok(()),
            None if self.now() > self.never_heard_grace() => Ok(()),
            None => Err(format!(
                "SWIM on this node has not heard from {node} since it started {:.0} s ago; it can be {done} once \
                 {:.0} s have passed without a word from it",
                self.now().as_secs_f64(),
                self.never_heard_grace().as_secs_f64()
            )),
            Some(l) => Err(format!(
                "node {node} is {}; only a dead node can be {done} ({instead})",
                liveness_label(l)
            )),
        }
    }

    /// How long this node must have run without hearing from a layout member before treating
    /// it as dead: Lifeguard's longest suspicion timeout for the current cluster size.
    fn never_heard_grace(&self) -> Duration {
        let n = self.record.read().as_ref().map_or(1, |r| r.current.len());
        self.swim_config.suspicion_bounds(n).1 + self.swim_config.probe_interval
    }

    fn propose(self: &Arc<Self>, change: Change) -> Result<LayoutRecord, String> {
        let current = self
            .record
            .read()
            .clone()
            .ok_or("this node has no cluster layout yet; join it to a cluster first")?;
        let proposed = current.propose(change, self.n as usize).map_err(|e| e.to_string())?;
        self.adopt(proposed.clone()).map_err(|e| e.to_string())?;
        info!(epoch = proposed.epoch, transition = ?proposed.next, "proposed a layout change");
        Ok(proposed)
    }

    pub fn record(&self) -> Option<LayoutRecord> {
        self.record.read().clone()
    }

    /// Members for `GET /v1/admin/status`: everyone SWIM knows, and every layout member.
    pub fn members(&self) -> Vec<MemberStatus> {
        let record = self.record();
        let swim = self.swim.lock();
        let mut ids: BTreeSet<NodeId> = swim.members().map(|m| m.id.clone()).collect();
        if let Some(r) = &record {
            ids.extend(r.current.iter().map(|m| m.id.clone()));
            ids.extend(r.next.iter().flat_map(|t| t.members.iter().map(|m| m.id.clone())));
            ids.extend(r.retiring.iter().flat_map(|t| t.members.iter().map(|m| m.id.clone())));
        }
        ids.into_iter()
            .map(|id| {
                let view = swim.member(&id);
                let member = record.as_ref().and_then(|r| {
                    r.current
                        .iter()
                        .chain(r.next.iter().flat_map(|t| t.members.iter()))
                        .chain(r.retiring.iter().flat_map(|t| t.members.iter()))
                        .find(|m| m.id == id)
                        .cloned()
                });
                MemberStatus {
                    admin_state: record.as_ref().map_or(AdminState::Left, |r| r.admin_state(&id)),
                    liveness: view.as_ref().map(|v| v.liveness),
                    incarnation: view.as_ref().map(|v| v.incarnation),
                    meta: view.as_ref().map(|v| v.meta.clone()),
                    member,
                    id,
                }
            })
            .collect()
    }

    pub fn local_health(&self) -> u32 {
        self.swim.lock().local_health()
    }

    /// Whether SWIM currently sees `id` alive (not suspect, not dead).
    pub fn is_alive(&self, id: &NodeId) -> bool {
        *id == self.me
            || self
                .swim
                .lock()
                .member(id)
                .is_some_and(|m| m.liveness == Liveness::Alive)
    }
}

impl Health for Membership {
    fn is_down(&self, node: &NodeId) -> bool {
        self.down.read().contains(node)
    }
}

pub struct MemberStatus {
    pub id: NodeId,
    pub admin_state: AdminState,
    /// `None` when SWIM has never heard of the node.
    pub liveness: Option<Liveness>,
    pub incarnation: Option<u64>,
    pub meta: Option<NodeMeta>,
    pub member: Option<Member>,
}

pub fn liveness_label(l: Liveness) -> &'static str {
    match l {
        Liveness::Alive => "alive",
        Liveness::Suspect => "suspect",
        Liveness::Dead => "dead",
    }
}
