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
//! 5. after the finish and a drop delay, nodes drop what they no longer hold (asking the
//!    newest placement key by key), and a leaving node stops.
//!
//! What `shoal-node` gossips in SWIM metadata and user state (the record, each node's seen
//! and synced epochs) travels here in a push/pull exchange with one live peer every
//! [`GOSSIP_INTERVAL`]. Transfers move a range in one request instead of throttled chunks
//! behind a persisted cursor: a crash in the middle simply restarts the range.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_membership::Liveness;
use shoal_ring::{moves, AdminState, ChangeKind, Layout, LayoutRecord, Member, NodeId, Placement};
use shoal_storage::{Object, Store};

use crate::net::{index_of, Net};
use crate::node::Core;

const META_RECORD: &str = "layout/record";
const META_SYNCED: &str = "layout/synced_epoch";
/// How often a node exchanges its layout knowledge with one live peer.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
const LAYOUT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a node knows of another's progress through layout changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epochs {
    /// The highest epoch it has adopted with no older request still running.
    pub seen: u64,
    /// The epoch of the last change whose data it finished streaming in.
    pub synced: u64,
}

/// One node's layout state (its memory; the record and synced epoch are also on its disk).
#[derive(Default)]
pub struct LayoutState {
    pub record: Option<LayoutRecord>,
    /// Every node's epochs as far as this node knows, its own included.
    pub views: BTreeMap<NodeId, Epochs>,
    /// Placements replaced by an adoption, until the requests holding them return.
    retired: Vec<Weak<Placement>>,
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

    /// Whether every live node still in either layout has seen `record`'s epoch.
    fn all_seen(&self, record: &LayoutRecord) -> bool {
        let live = self.live_nodes();
        let state = self.layout.lock();
        live.iter().all(|id| {
            record.admin_state(id) == AdminState::Left || state.views.get(id).is_some_and(|e| e.seen >= record.epoch)
        })
    }

    fn max_n(&self) -> u8 {
        self.coordinator.config().defaults.max_n
    }

    /// The nodes that gain data in `record`'s change.
    fn gainers(&self, record: &LayoutRecord) -> Vec<NodeId> {
        let Ok(p) = record.placement() else { return Vec::new() };
        let Some(next) = &p.next else { return Vec::new() };
        next.members()
            .iter()
            .filter(|m| !moves(&p.current, next, &m.id, self.max_n()).is_empty())
            .map(|m| m.id.clone())
            .collect()
    }

    /// Commits the change once every gainer has synced; finishes a committed change once
    /// every live node has seen the commit.
    fn advance(&self) {
        let Some(record) = self.record() else { return };
        if record.next.is_some() {
            let synced = {
                let state = self.layout.lock();
                self.gainers(&record)
                    .iter()
                    .all(|g| state.views.get(g).is_some_and(|e| e.synced >= record.epoch))
            };
            if synced {
                if let Some(commit) = record.commit() {
                    // The sabotage: commit straight to the new layout, as Shoal did before
                    // the retiring phase (the checkers must then find stale reads).
                    let commit = if self.retire_after_commit {
                        commit
                    } else {
                        commit.finish().expect("a commit retires a layout")
                    };
                    self.adopt(&commit);
                }
            }
        } else if record.retiring.is_some() && self.all_seen(&record) {
            if let Some(finish) = record.finish() {
                self.adopt(&finish);
            }
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
        if gains.is_empty() || !self.all_seen(&record) {
            return;
        }
        // Removing a dead node: ranges only it held (objects whose n was too small to
        // survive it) have no source and are skipped, as `shoal-node` does.
        let removed = record
            .next
            .as_ref()
            .filter(|t| t.kind == ChangeKind::Remove)
            .map(|t| t.node.clone());
        for mv in gains {
            if removed.as_ref().is_some_and(|r| mv.sources.iter().all(|s| s == r)) {
                continue;
            }
            let live = self.live_nodes();
            let mut done = false;
            for source in mv.sources.iter().filter(|s| **s != self.id && live.contains(s)) {
                let (partition, n_min, n_max) = (mv.partition, mv.n_min, mv.n_max);
                let answer = net
                    .call(
                        self.index,
                        self.inc,
                        index_of(source),
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
                if let Ok(Ok(objects)) = answer {
                    if self.coordinator.apply_batch(objects).await.is_ok() {
                        done = true;
                        break;
                    }
                }
            }
            if !done || self.record().map(|r| r.epoch) != Some(record.epoch) {
                return;
            }
        }
        let _ = self.store.put_meta(META_SYNCED, &record.epoch.to_be_bytes());
        self.layout.lock().views.entry(self.id.clone()).or_default().synced = record.epoch;
    }
}

/// Boots a node's layout knowledge: its record, and its own epochs (a persisted record was
/// adopted before the crash, and no request survives one).
pub fn boot_state(id: &NodeId, record: Option<LayoutRecord>, synced: u64) -> LayoutState {
    let mut views = BTreeMap::new();
    views.insert(
        id.clone(),
        Epochs {
            seen: record.as_ref().map_or(0, |r| r.epoch),
            synced,
        },
    );
    LayoutState {
        record,
        views,
        retired: Vec::new(),
    }
}

/// The layout loop: gossip, commit and finish, stream in, and drop after a change.
pub async fn layout_loop(net: Arc<Net>, core: Weak<Core>, drop_delay: Duration) {
    let mut last: Option<LayoutRecord> = core.upgrade().and_then(|c| c.record());
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
                c.exchange_layout(record, views);
            }
        }
        c.advance();
        c.stream_in(&net).await;
        let record = c.record();
        if let (Some(old), Some(new)) = (&last, &record) {
            if let Some((epoch, members)) = new.ended_change_from(old) {
                tokio::spawn(drop_lost(
                    net.clone(),
                    Arc::downgrade(&c),
                    epoch,
                    members,
                    new.clone(),
                    drop_delay,
                ));
            }
        }
        last = record;
    }
}

/// After `drop_delay`, drops what this node held under the layout `old_members` and no
/// longer holds; a node that left then stops.
async fn drop_lost(
    net: Arc<Net>,
    core: Weak<Core>,
    old_epoch: u64,
    old_members: Vec<Member>,
    new: LayoutRecord,
    drop_delay: Duration,
) {
    tokio::time::sleep(drop_delay).await;
    let Some(c) = core.upgrade() else { return };
    net.runnable(c.index).await;
    if !net.alive(c.index, c.inc) {
        return;
    }
    let (Ok(old), Ok(new_p)) = (Layout::new(old_epoch, old_members, new.config), new.placement()) else {
        return;
    };
    for mv in moves(&new_p.current, &old, &c.id, c.max_n()) {
        let still_held = |n: u8| {
            c.coordinator
                .placement()
                .is_none_or(|p| p.holds(&c.id, mv.partition, n))
        };
        let _ = c.replica.drop_range(mv.partition, mv.n_min, mv.n_max, still_held);
    }
    let leaving = !new.in_current(&c.id) && old.member(&c.id).is_some();
    if leaving && c.record().is_some_and(|r| r.admin_state(&c.id) == AdminState::Left) {
        // The process exits, as `shoal serve` does once it has left.
        if let Some(me) = net.remove(c.index) {
            me.kill();
        }
    }
}
