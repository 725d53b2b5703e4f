//! Layout changes in the simulator, driven the way `shoal-node`'s membership drives them, on
//! the same pure cores (`LayoutRecord::propose`/`commit`/`finish`, `moves`, `Placement`)
//! and the same coordinator:
//!
//! 1. a proposal (join, leave, remove) is adopted: the coordinator writes to both layouts;
//! 2. each node announces the epoch it has seen once no request begun under an older
//!    placement is still running (Garage's layout "ack");
//! 3. a gaining node waits until every live node has seen the change, then pulls each range
//!    it gains from the first old owner that answers, and announces it has synced;
//! 4. once every gainer has synced, any node commits; the old member set keeps receiving
//!    writes until every live node has seen the commit, then any node finishes it;
//! 5. after the finish and a drop delay, each node sweeps what it no longer holds: it hands
//!    over what it may have accepted alone (it slept through the change's streaming, or its
//!    layout lease had lapsed) to the new owners, drops the rest key by key under the newest
//!    placement, records the swept epoch, and a leaving node stops.
//!
//! Peer requests carry the coordinator's layout epoch and replicas fence older ones, and a
//! node holds back its own acknowledgements while its layout lease has lapsed: the same
//! `Coordinator` code as `shoal-node`. The lease renews when a layout exchange with a
//! peer completes or a fenced refusal brings a newer record (`shoal-node` renews it on SWIM
//! acks that carry the peer's epoch).
//!
//! What `shoal-node` gossips in SWIM metadata and user state (the record, each node's seen
//! and synced epochs) travels here in a push/pull exchange with one live peer every
//! [`GOSSIP_INTERVAL`]. Transfers move a range in one request instead of throttled chunks
//! behind a persisted cursor: a crash in the middle simply restarts the range.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use shoal_membership::Liveness;
use shoal_ring::{moves, AdminState, Epochs, LayoutRecord, NodeId, PendingStrays, Placement, Source, Step};
use shoal_storage::{Object, Store};

use crate::net::{index_of, Net};
use crate::node::Core;

const META_RECORD: &str = "layout/record";
const META_SYNCED: &str = "layout/synced_epoch";
/// Set while this node may hold strays it must hand over before dropping them.
const META_STRAYS: &str = "layout/strays";
/// How often a node exchanges its layout knowledge with one live peer.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
const LAYOUT_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's layout state (its memory; the record and synced epoch are also on its disk).
#[derive(Default)]
pub struct LayoutState {
    pub record: Option<LayoutRecord>,
    /// Every node's epochs as far as this node knows, its own included.
    pub views: BTreeMap<NodeId, Epochs>,
    /// Placements replaced by an adoption, until the requests holding them return.
    retired: Vec<Weak<Placement>>,
    /// A stray handoff is running.
    sweeping: bool,
}

/// The record and synced epoch a node boots with: from its disk, else `bootstrap`.
pub fn load(store: &dyn Store, bootstrap: Option<LayoutRecord>) -> (Option<LayoutRecord>, u64) {
    let record = store
        .get_meta(META_RECORD)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .or(bootstrap);
    let synced = store
        .get_meta(META_SYNCED)
        .ok()
        .flatten()
        .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0);
    (record, synced)
}

/// What the node of `store` still has to do with data it no longer owns.
pub fn pending_strays(store: &dyn Store) -> Option<PendingStrays> {
    let bytes = store.get_meta(META_STRAYS).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

fn set_pending_strays(store: &dyn Store, pending: Option<PendingStrays>) {
    let bytes = pending.map_or_else(Vec::new, |p| serde_json::to_vec(&p).expect("encodes"));
    let _ = store.put_meta(META_STRAYS, &bytes);
}

/// Whether the record on `store` says its node has left the cluster.
pub fn has_left(store: &dyn Store, id: &NodeId) -> bool {
    load(store, None)
        .0
        .is_some_and(|r| r.admin_state(id) == AdminState::Left)
}

impl Core {
    pub fn record(&self) -> Option<LayoutRecord> {
        self.layout.lock().record.clone()
    }

    /// Merges `incoming` into this node's record; if that changed it, switches the
    /// coordinator's placement and persists the record. Returns whether it changed.
    pub fn adopt(&self, incoming: &LayoutRecord) -> bool {
        let mut state = self.layout.lock();
        let old = state.record.clone();
        let changed = match state.record.as_mut() {
            Some(r) => r.merge(incoming).unwrap_or(false),
            None => {
                state.record = Some(incoming.clone());
                true
            }
        };
        if !changed {
            return false;
        }
        let record = state.record.clone().expect("set just above");
        if let Some(old) = old {
            // As `shoal-node`'s membership does: once the cluster is stable again, drop what
            // this node no longer holds, handing it to the owners first if it may have missed
            // a stream.
            let pending = pending_strays(self.store.as_ref());
            let lapsed = !self.coordinator.layout_confirmed();
            let after = PendingStrays::after(pending, &self.id, &old, &record, lapsed);
            if after != pending {
                set_pending_strays(self.store.as_ref(), after);
            }
        }
        let Ok(placement) = record.placement() else {
            return false;
        };
        if let Some(old) = self.coordinator.set_placement(Some(placement)) {
            state.retired.push(Arc::downgrade(&old));
        }
        if let Ok(bytes) = serde_json::to_vec(&record) {
            let _ = self.store.put_meta(META_RECORD, &bytes);
        }
        true
    }

    /// Whether this node may still hold strays to drop or hand over (see `sweep_strays`).
    pub fn strays_pending(&self) -> bool {
        pending_strays(self.store.as_ref()).is_some()
    }

    /// Whether tombstone GC may run (`LayoutRecord::strays_cleared`).
    pub fn gc_allowed(&self) -> bool {
        let live = self.live_nodes();
        let state = self.layout.lock();
        state
            .record
            .as_ref()
            .is_some_and(|r| r.strays_cleared(|id| state.views.get(id).map_or(0, |e| e.swept), &live))
    }

    fn my_epochs(&self) -> Epochs {
        self.layout.lock().views.get(&self.id).copied().unwrap_or_default()
    }

    /// Announces the adopted epoch once no request begun under an older placement runs.
    fn refresh_seen(&self) {
        let mut state = self.layout.lock();
        state.retired.retain(|w| w.strong_count() > 0);
        if !state.retired.is_empty() {
            return;
        }
        if let Some(epoch) = state.record.as_ref().map(|r| r.epoch) {
            let me = state.views.entry(self.id.clone()).or_default();
            me.seen = me.seen.max(epoch);
        }
    }

    /// Takes in a peer's record and views; answers with this node's.
    fn exchange_layout(
        &self,
        record: Option<LayoutRecord>,
        views: BTreeMap<NodeId, Epochs>,
    ) -> (Option<LayoutRecord>, BTreeMap<NodeId, Epochs>) {
        if let Some(r) = &record {
            self.adopt(r);
        }
        let mut state = self.layout.lock();
        for (id, e) in views {
            if id == self.id {
                continue; // only this node knows its own progress
            }
            let mine = state.views.entry(id).or_default();
            mine.seen = mine.seen.max(e.seen);
            mine.synced = mine.synced.max(e.synced);
            mine.swept = mine.swept.max(e.swept);
        }
        (state.record.clone(), state.views.clone())
    }

    /// The nodes SWIM does not call dead, this one included.
    fn live_nodes(&self) -> Vec<NodeId> {
        let swim = self.swim.lock();
        let mut out: Vec<NodeId> = swim
            .members()
            .filter(|m| m.liveness != Liveness::Dead)
            .map(|m| m.id.clone())
            .collect();
        out.push(self.id.clone());
        out.sort();
        out.dedup();
        out
    }

    /// The layout-change engine's next step for `record`, as `shoal-node` runs it, from the
    /// epochs this node has heard of. With the `ExcuseDead` sabotage, members SWIM calls dead
    /// count as having seen everything, as Shoal did before the engine.
    pub fn step(&self, record: &LayoutRecord) -> Step {
        let gainers = record.gainers(self.max_n());
        let dead: Vec<NodeId> = if self.excuse_dead {
            let swim = self.swim.lock();
            swim.members()
                .filter(|m| m.liveness == Liveness::Dead)
                .map(|m| m.id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let state = self.layout.lock();
        record.step(
            |id| {
                let mut e = state.views.get(id).copied();
                if dead.contains(id) {
                    e.get_or_insert_with(Epochs::default).seen = u64::MAX;
                }
                e
            },
            &gainers,
        )
    }

    fn max_n(&self) -> u8 {
        self.coordinator.config().defaults.max_n
    }

    /// Commits or finishes the change in flight when the engine says so.
    fn advance(&self) {
        let Some(record) = self.record() else { return };
        match self.step(&record) {
            Step::Commit(commit) => {
                // The sabotage: commit straight to the new layout, as Shoal did before the
                // retiring phase (the checkers must then find stale reads).
                let commit = if self.retire_after_commit {
                    commit
                } else {
                    commit.finish().expect("a commit retires a layout")
                };
                self.adopt(&commit);
            }
            Step::Finish(finish) => {
                self.adopt(&finish);
            }
            _ => {}
        }
    }

    /// Pulls every range this node gains in the change in flight, once every live node has
    /// seen it. Returns when done, or when a range had no live source (tried again later).
    async fn stream_in(&self, net: &Arc<Net>) {
        let Some(record) = self.record() else { return };
        if record.next.is_none() || self.my_epochs().synced >= record.epoch {
            return;
        }
        let Ok(p) = record.placement() else { return };
        let Some(next) = &p.next else { return };
        let gains = moves(&p.current, next, &self.id, self.max_n());
        if gains.is_empty() || !self.step(&record).may_stream() {
            return;
        }
        for mv in gains {
            for (n_min, n_max, giver) in mv.runs() {
                // As `shoal-node` does: each run from its giver, else (the giver removed or
                // skipped) from any live holder, else passed over if nobody waited for holds it.
                let Some(now) = self.record().filter(|r| r.epoch == record.epoch) else {
                    return;
                };
                let live = self.live_nodes();
                let is_live = |id: &NodeId| *id != self.id && live.contains(id);
                let sources = match now.source_for(giver.as_ref(), &mv.sources, is_live) {
                    Source::Ask(sources) => sources,
                    Source::PassOver => continue,
                    Source::Wait(_) => return,
                };
                for source in sources {
                    let partition = mv.partition;
                    let answer = net
                        .call(
                            self.index,
                            self.inc,
                            index_of(&source),
                            LAYOUT_TIMEOUT,
                            false,
                            move |core| async move {
                                let mut out: Vec<(Bytes, Object)> = Vec::new();
                                let scan = core.store.scan_partition(partition, b"", &mut |key, obj| {
                                    if (n_min..=n_max).contains(&obj.n) {
                                        out.push((Bytes::copy_from_slice(key), obj));
                                    }
                                    true
                                });
                                scan.map(|_| out).map_err(|e| e.to_string())
                            },
                        )
                        .await;
                    let stored = match answer {
                        Ok(Ok(objects)) => self.coordinator.apply_batch(objects).await.is_ok(),
                        _ => false,
                    };
                    if !stored {
                        return; // tried again on the next round
                    }
                }
            }
        }
        let _ = self.store.put_meta(META_SYNCED, &record.epoch.to_be_bytes());
        self.layout.lock().views.entry(self.id.clone()).or_default().synced = record.epoch;
    }
}

/// Boots a node's layout knowledge: its record, and its own epochs (a persisted record was
/// adopted before the crash, and no request survives one).
pub fn boot_state(id: &NodeId, record: Option<LayoutRecord>, synced: u64, strays: bool) -> LayoutState {
    let mut views = BTreeMap::new();
    views.insert(
        id.clone(),
        Epochs {
            seen: record.as_ref().map_or(0, |r| r.epoch),
            synced,
            swept: if strays {
                0
            } else {
                record.as_ref().map_or(0, |r| r.current_epoch)
            },
        },
    );
    LayoutState {
        record,
        views,
        retired: Vec::new(),
        sweeping: false,
    }
}

/// The layout loop: gossip, commit and finish, stream in, and hand over and drop strays
/// after a change.
pub async fn layout_loop(net: Arc<Net>, core: Weak<Core>, drop_delay: Duration) {
    loop {
        tokio::time::sleep(GOSSIP_INTERVAL).await;
        let Some(c) = core.upgrade() else { return };
        net.runnable(c.index).await;
        c.refresh_seen();
        let peers: Vec<NodeId> = c.live_nodes().into_iter().filter(|id| *id != c.id).collect();
        if !peers.is_empty() {
            let peer = peers[net.with_rng(|r| rand::Rng::gen_range(r, 0..peers.len()))].clone();
            let (record, views) = {
                let state = c.layout.lock();
                (state.record.clone(), state.views.clone())
            };
            let answer = net
                .call(c.index, c.inc, index_of(&peer), LAYOUT_TIMEOUT, false, move |remote| {
                    let (record, views) = (record.clone(), views.clone());
                    async move { remote.exchange_layout(record, views) }
                })
                .await;
            if let Ok((record, views)) = answer {
                // This node's record is now at least the peer's: its layout lease renews.
                c.exchange_layout(record, views);
                c.coordinator.renew_layout_lease();
            }
        }
        c.advance();
        c.stream_in(&net).await;
        if c.strays_pending() {
            let stable = c.record().is_some_and(|r| r.change().is_none());
            let start = stable && !std::mem::replace(&mut c.layout.lock().sweeping, true);
            if start {
                tokio::spawn(sweep_strays(net.clone(), Arc::downgrade(&c), drop_delay));
            }
        }
    }
}

/// After `drop_delay`, hands every stray to its owners and drops it (`shoal_handoff::strays`);
/// a node that left then stops. The marker stays until every stray is handed over.
async fn sweep_strays(net: Arc<Net>, core: Weak<Core>, drop_delay: Duration) {
    tokio::time::sleep(drop_delay).await;
    let Some(c) = core.upgrade() else { return };
    net.runnable(c.index).await;
    // Cleared below only if no change has set it again meanwhile.
    let Some(pending) = pending_strays(c.store.as_ref()) else {
        c.layout.lock().sweeping = false;
        return;
    };
    let target = crate::node::SimDeliver::new(&net, &c);
    let partitions = c.record().map_or(0, |r| r.config.partitions);
    let owners = c.coordinator.stray_owners();
    let done = shoal_handoff::hand_off_strays(&c.replica, partitions, owners, &target, pending.hand_over).await;
    if !net.alive(c.index, c.inc) {
        return;
    }
    c.layout.lock().sweeping = false;
    let unchanged = pending_strays(c.store.as_ref()) == Some(pending);
    if done.is_ok() && unchanged && c.record().is_some_and(|r| r.change().is_none()) {
        set_pending_strays(c.store.as_ref(), None);
        let current = c.record().map_or(0, |r| r.current_epoch);
        let mut state = c.layout.lock();
        let me = state.views.entry(c.id.clone()).or_default();
        me.swept = me.swept.max(current);
        drop(state);
        stop_if_left(&net, &c);
    }
}

/// A node that has left stops, as `shoal serve` exits once it has.
fn stop_if_left(net: &Net, c: &Core) {
    if c.record().is_some_and(|r| r.admin_state(&c.id) == AdminState::Left) {
        if let Some(me) = net.remove(c.index) {
            me.kill();
        }
    }
}
