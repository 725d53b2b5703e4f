//! The cluster's layout history: the committed member set, and at most one change in flight.
//!
//! A [`LayoutRecord`] is gossiped between nodes as a last-writer-wins register ordered by
//! `(epoch, content)`: the higher epoch wins, and two different records at the same epoch
//! (two operators changing the cluster at once through different nodes) are ordered by their
//! content, so every node keeps the same one whatever order it hears them in.
//!
//! A change is a two-step transition, as Garage's layout history and Riak's claimant do it:
//! 1. **Propose** (`epoch + 1`): `next` names the target member set. While it is in flight,
//!    writes go to the owners in both layouts, and reads to the current one, which is complete.
//! 2. **Commit** (`epoch + 1`) once every node that gains data has streamed it in: `next`
//!    becomes `current`, and the old member set stays on as `retiring`. Reads now go to the
//!    new layout, which is complete; writes still reach W of the old owners too, because a
//!    node that has not heard of the commit yet still reads from them.
//! 3. **Finish** (`epoch + 1`) once every live node has adopted the commit: `retiring` is
//!    dropped, writes go to the new owners only, and nodes that lost data drop it.
//!
//! Without step 3 a write acknowledged by the new owners alone could be missed by a read that
//! a node still on the in-flight record sends to the old ones (`r + w > n` holds inside each
//! layout, not across two); the nemesis suite caught exactly that right after commits.
//!
//! Which objects a node gains or loses depends on each object's own replication factor `n`
//! (a per-request choice), so moves are described per partition as a range of `n`.

use crate::error::RingError;
use crate::layout::{Layout, RingConfig};
use crate::node::{Member, NodeId};
use crate::partition::PartitionId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What a transition does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new node enters; it streams what it will own from the current owners.
    Join,
    /// A live node decommissions itself; the new owners stream its data from it.
    Leave,
    /// A dead node is taken out; the new owners stream its data from surviving replicas.
    Remove,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Join => "join",
            ChangeKind::Leave => "leave",
            ChangeKind::Remove => "remove",
        })
    }
}

/// A change the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Join(Member),
    Leave(NodeId),
    Remove(NodeId),
}

impl Change {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::Join(_) => ChangeKind::Join,
            Change::Leave(_) => ChangeKind::Leave,
            Change::Remove(_) => ChangeKind::Remove,
        }
    }
}

/// A change in flight: the member set the cluster is moving to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Transition {
    pub kind: ChangeKind,
    pub node: NodeId,
    /// Sorted by id.
    pub members: Vec<Member>,
}

/// A node's role in the layout, apart from whether it is alive (which SWIM decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// In the target layout only: streaming in what it will own.
    Joining,
    Member,
    /// In the current layout only: its data is being moved off (leave or remove).
    Leaving,
    /// In neither layout.
    Left,
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminState::Joining => "joining",
            AdminState::Member => "member",
            AdminState::Leaving => "leaving",
            AdminState::Left => "left",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error(
        "a layout change is already in flight ({kind} of {node}, epoch {epoch}); Shoal runs one change at a \
         time, so wait until `shoal admin status` shows no transition and retry"
    )]
    InFlight { kind: ChangeKind, node: NodeId, epoch: u64 },
    #[error("no layout change is in flight, so there is nothing to skip a node for")]
    NothingToSkip,
    #[error("the layout change in flight does not wait for node {node}")]
    NotWaitedFor { node: NodeId },
    #[error(
        "node {node} gains data in the change in flight and has not streamed it in; skipping it would commit a \
         layout whose owner holds nothing. Bring {node} back: the change resumes where it stopped"
    )]
    SkipGainer { node: NodeId },
    #[error("node {node} is already a member of the cluster")]
    AlreadyMember { node: NodeId },
    #[error("node {node} is not a member of the cluster")]
    NotMember { node: NodeId },
    #[error(
        "refused: the change would leave {remaining} members, fewer than the replication factor n = {n}; add a \
         node first"
    )]
    TooFewMembers { remaining: usize, n: usize },
    #[error("the gossiped layout uses ring config {theirs:?} but this node is configured with {ours:?}")]
    ConfigMismatch { ours: RingConfig, theirs: RingConfig },
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// The member set a committed change replaced, kept while nodes may still read from it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Retiring {
    pub kind: ChangeKind,
    pub node: NodeId,
    /// The version of the replaced layout.
    pub layout_epoch: u64,
    /// Sorted by id.
    pub members: Vec<Member>,
}

/// Where a layout change stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Proposed: nodes that gain data stream it in; reads use the old layout.
    Streaming,
    /// Committed: reads use the new layout; writes still reach the old owners until every
    /// live node has adopted the commit.
    Retiring,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Streaming => "streaming",
            Phase::Retiring => "retiring",
        })
    }
}

/// The layout register every node gossips. Field order matters: the derived `Ord` compares
/// `epoch` first, which is what makes merging a last-writer-wins by epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayoutRecord {
    /// Bumped by every proposal and every commit.
    pub epoch: u64,
    pub config: RingConfig,
    /// The epoch at which `current` was committed; the version of the current [`Layout`].
    pub current_epoch: u64,
    /// Sorted by id.
    pub current: Vec<Member>,
    pub next: Option<Transition>,
    /// After a commit, until every live node has adopted it: the member set it replaced.
    #[serde(default)]
    pub retiring: Option<Retiring>,
    /// Nodes the operator skipped (`shoal admin skip`), each with the record epoch it was
    /// skipped at: excused from the change in flight then (see [`LayoutRecord::excused`]),
    /// and kept so that a skipped node learns, whenever it returns, that a change went on
    /// without it. Last, so that it only breaks ties between records otherwise equal.
    #[serde(default)]
    pub skipped: BTreeMap<NodeId, u64>,
}

impl LayoutRecord {
    /// The first layout of a cluster, from its configured members. Every node configured with
    /// the same members computes the same record, so a fresh cluster needs no agreement round.
    pub fn bootstrap(mut members: Vec<Member>, config: RingConfig) -> Result<Self, ChangeError> {
        members.sort();
        Layout::new(1, members.clone(), config)?;
        Ok(Self {
            epoch: 1,
            config,
            current_epoch: 1,
            current: members,
            next: None,
            retiring: None,
            skipped: BTreeMap::new(),
        })
    }

    /// Merges a gossiped record into this one. Returns whether this one changed.
    pub fn merge(&mut self, other: &LayoutRecord) -> Result<bool, ChangeError> {
        if other.config != self.config {
            return Err(ChangeError::ConfigMismatch {
                ours: self.config,
                theirs: other.config,
            });
        }
        // The same record with other skips (operators skipping two nodes at once): keep both.
        let mut same = other.clone();
        same.skipped = self.skipped.clone();
        if same == *self {
            let mut changed = false;
            for (node, at) in &other.skipped {
                let mine = self.skipped.entry(node.clone()).or_insert(0);
                if at > mine {
                    *mine = *at;
                    changed = true;
                }
            }
            return Ok(changed);
        }
        if other > self {
            *self = other.clone();
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub fn in_current(&self, id: &NodeId) -> bool {
        self.current.iter().any(|m| &m.id == id)
    }

    fn in_retiring(&self, id: &NodeId) -> bool {
        self.retiring
            .as_ref()
            .is_some_and(|r| r.members.iter().any(|m| &m.id == id))
    }

    /// The change under way, if any: what it does, to which node, and how far it got.
    pub fn change(&self) -> Option<(ChangeKind, &NodeId, Phase)> {
        match (&self.next, &self.retiring) {
            (Some(t), _) => Some((t.kind, &t.node, Phase::Streaming)),
            (None, Some(r)) => Some((r.kind, &r.node, Phase::Retiring)),
            (None, None) => None,
        }
    }

    fn in_next(&self, id: &NodeId) -> bool {
        self.next
            .as_ref()
            .is_some_and(|t| t.members.iter().any(|m| &m.id == id))
    }

    pub fn admin_state(&self, id: &NodeId) -> AdminState {
        if !self.in_current(id) && self.in_retiring(id) {
            return AdminState::Leaving;
        }
        match (self.in_current(id), self.next.is_some(), self.in_next(id)) {
            (true, true, false) => AdminState::Leaving,
            (true, _, _) => AdminState::Member,
            (false, _, true) => AdminState::Joining,
            (false, _, false) => AdminState::Left,
        }
    }

    /// The record with `change` in flight. `n` is the replication factor the cluster must keep
    /// enough members for.
    pub fn propose(&self, change: Change, n: usize) -> Result<LayoutRecord, ChangeError> {
        if let Some((kind, node, _)) = self.change() {
            return Err(ChangeError::InFlight {
                kind,
                node: node.clone(),
                epoch: self.epoch,
            });
        }
        let mut members = self.current.clone();
        let kind = change.kind();
        let node = match change {
            Change::Join(m) => {
                if self.in_current(&m.id) {
                    return Err(ChangeError::AlreadyMember { node: m.id });
                }
                let id = m.id.clone();
                members.push(m);
                members.sort();
                id
            }
            Change::Leave(id) | Change::Remove(id) => {
                if !self.in_current(&id) {
                    return Err(ChangeError::NotMember { node: id });
                }
                if self.current.len() - 1 < n {
                    return Err(ChangeError::TooFewMembers {
                        remaining: self.current.len() - 1,
                        n,
                    });
                }
                members.retain(|m| m.id != id);
                id
            }
        };
        // Build it once here so a change that cannot make a valid ring is refused up front.
        Layout::new(self.epoch + 1, members.clone(), self.config)?;
        Ok(LayoutRecord {
            epoch: self.epoch + 1,
            config: self.config,
            current_epoch: self.current_epoch,
            current: self.current.clone(),
            next: Some(Transition { kind, node, members }),
            retiring: None,
            skipped: self.skipped.clone(),
        })
    }

    /// The record with the transition in flight made current and the old member set
    /// retiring, or `None` if there is none. Every node that commits the same transition
    /// produces the same record.
    pub fn commit(&self) -> Option<LayoutRecord> {
        let t = self.next.as_ref()?;
        Some(LayoutRecord {
            epoch: self.epoch + 1,
            config: self.config,
            current_epoch: self.epoch + 1,
            current: t.members.clone(),
            next: None,
            retiring: Some(Retiring {
                kind: t.kind,
                node: t.node.clone(),
                layout_epoch: self.current_epoch,
                members: self.current.clone(),
            }),
            skipped: self.skipped.clone(),
        })
    }

    /// The record with the retiring member set let go, or `None` if nothing is retiring.
    /// Call it once every live node has adopted the commit.
    pub fn finish(&self) -> Option<LayoutRecord> {
        self.retiring.as_ref()?;
        Some(LayoutRecord {
            epoch: self.epoch + 1,
            retiring: None,
            ..self.clone()
        })
    }

    /// When this record, adopted after `old`, ends a change (it finished, or gossip skipped
    /// past its commit): the version and members of the layout nodes held data under before
    /// that change, from which each drops what it no longer holds.
    pub fn ended_change_from(&self, old: &LayoutRecord) -> Option<(u64, Vec<Member>)> {
        let before = match (&old.retiring, &old.next) {
            (Some(r), _) => (r.layout_epoch, r.members.clone()),
            (None, Some(_)) => (old.current_epoch, old.current.clone()),
            (None, None) => return None,
        };
        (self.retiring.is_none() && self.current_epoch > before.0).then_some(before)
    }

    /// Whether a node whose record went from `old` straight to this one slept through the
    /// streaming phase of a change that has committed since (it was down, SIGSTOPped or cut
    /// off, and the cluster went on without it). Whatever it acknowledged meanwhile under
    /// `old`, as a coordinator with a small `w` or as a replica of other stale coordinators,
    /// no gaining node streamed in: it must hand the data it no longer holds to the owners
    /// before dropping it, not just drop it.
    pub fn missed_stream_from(&self, old: &LayoutRecord) -> bool {
        let saw_the_proposal = old.next.is_some() && old.epoch + 1 == self.current_epoch;
        self.current_epoch > old.current_epoch && !saw_the_proposal
    }

    /// Whether tombstone GC may run: every member, and every other node still alive
    /// (`others`: one that left keeps its strays until it has handed them over), has dealt
    /// with the strays the changes up to the current layout left it (`swept(id)`: the current
    /// epoch at its last finished handoff). A stray may be older than a delete the owners
    /// have since collected; merged into them after the collection, it would bring the
    /// deleted value back, so GC waits for the handoff as it waits for every replica
    /// (Cassandra's gc_grace rule, enforced rather than documented).
    pub fn strays_cleared<'a>(
        &self,
        swept: impl Fn(&NodeId) -> u64,
        others: impl IntoIterator<Item = &'a NodeId>,
    ) -> bool {
        let done = |id: &NodeId| swept(id) >= self.current_epoch;
        self.change().is_none() && self.current.iter().all(|m| done(&m.id)) && others.into_iter().all(done)
    }

    /// The layouts the request path uses.
    pub fn placement(&self) -> Result<Placement, RingError> {
        Ok(Placement {
            epoch: self.epoch,
            current: Arc::new(Layout::new(self.current_epoch, self.current.clone(), self.config)?),
            next: match &self.next {
                Some(t) => Some(Arc::new(Layout::new(self.epoch, t.members.clone(), self.config)?)),
                None => None,
            },
            previous: match &self.retiring {
                Some(r) => Some(Arc::new(Layout::new(r.layout_epoch, r.members.clone(), self.config)?)),
                None => None,
            },
        })
    }
}

/// What a node still has to do with data it no longer owns (persisted, so a restart resumes
/// it): set when a record leaves it strays ([`PendingStrays::after`]), cleared once it
/// has dealt with them under a stable layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStrays {
    /// The record that last left strays: a handoff that began before it must run again.
    pub epoch: u64,
    /// Hand them to the owners before dropping them (some change was slept through).
    pub hand_over: bool,
}

impl PendingStrays {
    /// What a node owes, on top of `pending`, once its record went from `old` to `new`:
    /// - a change it followed ended: drop what it no longer holds (the gaining nodes streamed
    ///   it all in);
    /// - it slept through a change ([`LayoutRecord::missed_stream_from`]), or adopted a change
    ///   with its layout lease `lapsed` (out of touch long enough for the cluster to have
    ///   started streaming without it): hand its strays to the owners before dropping them,
    ///   for it may hold writes it acknowledged meanwhile that no gaining node streamed;
    /// - it was skipped (`shoal admin skip`) since its record was `old`: the change went on
    ///   without it as a source, so it may hold the only copy of what it lost.
    ///
    /// A handoff still owed is never downgraded to a drop.
    pub fn after(
        pending: Option<PendingStrays>,
        me: &NodeId,
        old: &LayoutRecord,
        new: &LayoutRecord,
        lapsed: bool,
    ) -> Option<PendingStrays> {
        let moved = new.next.is_some() || new.current_epoch > old.current_epoch;
        let hand_over = new.missed_stream_from(old) || (lapsed && moved) || new.skipped_since(me, old.epoch);
        if !hand_over && new.ended_change_from(old).is_none() {
            return pending;
        }
        Some(PendingStrays {
            epoch: new.epoch,
            hand_over: hand_over || pending.is_some_and(|p| p.hand_over),
        })
    }
}

/// The layouts in force: `current` is complete and serves reads. While a change is streaming,
/// writes also go to the owners in `next`; once it has committed and until every node knows,
/// to the owners in `previous`.
#[derive(Clone, Debug)]
pub struct Placement {
    pub epoch: u64,
    pub current: Arc<Layout>,
    pub next: Option<Arc<Layout>>,
    pub previous: Option<Arc<Layout>>,
}

impl Placement {
    /// A placement with no change in flight.
    pub fn stable(layout: Arc<Layout>) -> Self {
        Placement {
            epoch: layout.version(),
            current: layout,
            next: None,
            previous: None,
        }
    }

    /// The other layout a write must reach W of, if a change is under way.
    pub fn companion(&self) -> Option<&Arc<Layout>> {
        self.next.as_ref().or(self.previous.as_ref())
    }

    /// Epoch fencing: the oldest layout epoch a coordinator may hold for a node with this
    /// placement to serve its replica requests. A coordinator that slept through part of a
    /// change (SIGSTOPped, partitioned, down) would otherwise read from owners that have since
    /// dropped the data, or acknowledge writes on nodes no read asks.
    ///
    /// - Stable: the commit of the current layout. Anything older reads from the layout before
    ///   it, whose leavers have dropped their data.
    /// - Streaming: the proposal itself. A coordinator without it writes to the old owners
    ///   only, behind the gaining nodes' transfer cursors.
    /// - Retiring: the proposal of the committed change. A coordinator that has the proposal
    ///   but not the commit still writes to both member sets and reads from the old one,
    ///   which keeps receiving every write until the change finishes.
    pub fn fence(&self) -> u64 {
        match (&self.next, &self.previous) {
            (Some(_), _) => self.epoch,
            (None, Some(_)) => self.current.version().saturating_sub(1),
            (None, None) => self.current.version(),
        }
    }

    /// Whether a layout change is under way (streaming or retiring).
    pub fn changing(&self) -> bool {
        self.companion().is_some()
    }

    /// Whether `node` holds objects of replication factor `n` in partition `p` under this
    /// placement: it is among the first `n` of the partition's walk in the current layout or,
    /// while a change is under way, in the other one (where dual writes and transfers put them).
    pub fn holds(&self, node: &NodeId, p: PartitionId, n: u8) -> bool {
        let within = |layout: &Layout| position(layout.walk(p), node) < n as usize;
        within(&self.current) || self.companion().is_some_and(|l| within(l))
    }

    /// Where an object of replication factor `n` in partition `p` that `node` holds but no
    /// longer should goes: its owners in the current layout but `node`. `None` if `node`
    /// holds it.
    pub fn stray_owners(&self, node: &NodeId, p: PartitionId, n: u8) -> Option<Vec<NodeId>> {
        if self.holds(node, p, n) {
            return None;
        }
        let owners = self.current.preference_list(p, n as usize);
        Some(owners.iter().filter(|id| *id != node).cloned().collect())
    }

    /// Whether a handoff (hint delivery, stray handoff) for `owner` may go now: once `owner` is
    /// `alive`, or at once if it has left the layout (its objects go to the keys' owners
    /// instead, see [`Placement::route_handoff`]). A change in flight does not hold handoffs
    /// back: they go to the write set of both layouts, as writes do.
    pub fn handoff_ready(&self, owner: &NodeId, alive: bool) -> bool {
        alive || self.current.member(owner).is_none()
    }

    /// Where each object of a handoff meant for `owner` goes: to `owner` while it owns the
    /// object's key in the current layout, else to every owner the key has now (a departed
    /// owner's hints, or a hint for a range its owner has since lost, as Riak hands a fallback
    /// vnode's data to the vnode's current owner). While a change is under way the key's owners
    /// in the other layout that are not owners in the current one get it too, as a write's do:
    /// an owner may drop the range once the change finishes, after a gaining node streamed it,
    /// and the gaining node must not miss what that owner took late. `n_of` reads an object's
    /// replication factor.
    pub fn route_handoff<K: AsRef<[u8]> + Clone, V: Clone>(
        &self,
        owner: &NodeId,
        objects: Vec<(K, V)>,
        n_of: impl Fn(&V) -> u8,
    ) -> BTreeMap<NodeId, Vec<(K, V)>> {
        let mut by_node: BTreeMap<NodeId, Vec<(K, V)>> = BTreeMap::new();
        for (key, object) in objects {
            let partition = self.current.partition_of(key.as_ref());
            let n = n_of(&object) as usize;
            let owners = self.current.preference_list(partition, n);
            let mut targets: Vec<NodeId> = if owners.contains(owner) {
                vec![owner.clone()]
            } else {
                owners.to_vec()
            };
            targets.extend(self.extra_owners(partition, n));
            for node in targets {
                by_node.entry(node).or_default().push((key.clone(), object.clone()));
            }
        }
        by_node
    }

    /// Where the hints meant for `owner` go when they waited out the handoff window (see
    /// shoal-handoff): to every replica of each key in the write set (the current layout's
    /// owners, and the companion layout's during a change) but `owner`, that `live` says is
    /// reachable. Lists, per node, the indices into `objects` it gets.
    pub fn route_redirect<K: AsRef<[u8]>, V>(
        &self,
        owner: &NodeId,
        objects: &[(K, V)],
        n_of: impl Fn(&V) -> u8,
        live: impl Fn(&NodeId) -> bool,
    ) -> BTreeMap<NodeId, Vec<usize>> {
        let mut by_node: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for (i, (key, object)) in objects.iter().enumerate() {
            let partition = self.current.partition_of(key.as_ref());
            let n = n_of(object) as usize;
            let owners = self.current.preference_list(partition, n);
            let extra = self.extra_owners(partition, n);
            for node in owners.iter().chain(&extra) {
                if node != owner && live(node) {
                    by_node.entry(node.clone()).or_default().push(i);
                }
            }
        }
        by_node
    }

    /// The owners in the companion layout that are not owners in `current`: where a write
    /// must also go while a change is under way.
    pub fn extra_owners(&self, p: PartitionId, n: usize) -> Vec<NodeId> {
        match self.companion() {
            None => Vec::new(),
            Some(other) => {
                let cur = self.current.preference_list(p, n);
                other
                    .preference_list(p, n)
                    .iter()
                    .filter(|id| !cur.contains(id))
                    .cloned()
                    .collect()
            }
        }
    }
}

/// A range of objects a node holds in one layout and not in another: in `partition`, those
/// whose replication factor is in `n_min..=n_max`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub partition: PartitionId,
    pub n_min: u8,
    pub n_max: u8,
    /// Nodes of `from` that hold every object of the range, in the order to ask them.
    pub sources: Vec<NodeId>,
    /// For each factor `n` of the range, the node of `from` that gives up objects of factor
    /// `n` in this change (`None` where no node does: `from` had fewer than `n` members).
    /// Streaming each `n` from its giver, as Cassandra streams a range from the replica that
    /// gives it up, keeps every replica set's contents: the new set is the old one with the
    /// giver's copy moved to the gaining node, so whatever W replicas acknowledged before the
    /// change, W replicas still hold after it, even where the other sources missed a write.
    #[serde(default)]
    pub givers: Vec<(u8, Option<NodeId>)>,
}

impl Move {
    /// The range cut into runs of consecutive `n` with the same giver: `(n_min, n_max, giver)`,
    /// each streamed in one go.
    pub fn runs(&self) -> Vec<(u8, u8, Option<NodeId>)> {
        let mut out: Vec<(u8, u8, Option<NodeId>)> = Vec::new();
        for n in self.n_min..=self.n_max {
            let giver = self.givers.iter().find(|(m, _)| *m == n).and_then(|(_, g)| g.clone());
            match out.last_mut() {
                Some((_, hi, g)) if *g == giver && *hi + 1 == n => *hi = n,
                _ => out.push((n, n, giver)),
            }
        }
        out
    }
}

fn position(walk: &[NodeId], node: &NodeId) -> usize {
    walk.iter().position(|id| id == node).unwrap_or(usize::MAX)
}

/// What `node` holds under `to` but not under `from`, for objects of replication factor up to
/// `max_n`. An object of factor `n` lives on the first `n` nodes of its partition's walk, so a
/// node at walk position `i` holds exactly the objects with `n > i`.
///
/// With `from` the current layout and `to` the next, these are the node's gains (what it must
/// stream in). Swapped, they are what it may drop once the change is committed.
pub fn moves(from: &Layout, to: &Layout, node: &NodeId, max_n: u8) -> Vec<Move> {
    let mut out = Vec::new();
    for p in 0..to.partitions() {
        let to_walk = to.walk(p);
        let from_walk = from.walk(p);
        let (pos_to, pos_from) = (position(to_walk, node), position(from_walk, node));
        if pos_to >= pos_from || pos_to >= max_n as usize {
            continue;
        }
        let n_min = pos_to + 1;
        let n_max = pos_from.min(max_n as usize);
        // A node at position j of `from` holds every object with n > j, so each source before
        // position n_min holds the whole range: asking them in walk order, the first one alive
        // has everything that any live node has.
        let sources = from_walk.iter().take(n_min).filter(|id| *id != node).cloned().collect();
        let givers = (n_min..=n_max)
            .map(|n| {
                let new_owners = &to_walk[..n.min(to_walk.len())];
                let giver = from_walk
                    .iter()
                    .take(n)
                    .find(|id| *id != node && !new_owners.contains(id))
                    .cloned();
                (n as u8, giver)
            })
            .collect();
        out.push(Move {
            partition: p,
            n_min: n_min as u8,
            n_max: n_max as u8,
            sources,
            givers,
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn member(id: &str) -> Member {
        Member {
            id: NodeId::from(id),
            zone: "z".into(),
            weight: 1,
        }
    }

    pub(crate) fn cfg() -> RingConfig {
        RingConfig {
            partitions: 64,
            tokens_per_weight: 16,
        }
    }

    fn three() -> LayoutRecord {
        LayoutRecord::bootstrap(vec![member("n3"), member("n1"), member("n2")], cfg()).unwrap()
    }

    #[test]
    fn bootstrap_is_independent_of_member_order() {
        let a = three();
        let b = LayoutRecord::bootstrap(vec![member("n1"), member("n2"), member("n3")], cfg()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn join_then_commit_walks_the_admin_states() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        assert_eq!(r1.epoch, 2);
        assert_eq!(r1.admin_state(&"n4".into()), AdminState::Joining);
        assert_eq!(r1.admin_state(&"n1".into()), AdminState::Member);
        let again = r1.propose(Change::Join(member("n5")), 3).unwrap_err();
        assert!(matches!(again, ChangeError::InFlight { epoch: 2, .. }), "{again}");
        let r2 = r1.commit().unwrap();
        assert_eq!(r2.epoch, 3);
        assert_eq!(r2.current_epoch, 3);
        assert_eq!(r2.admin_state(&"n4".into()), AdminState::Member);
        assert!(r2.commit().is_none());
        assert_eq!(r2.change(), Some((ChangeKind::Join, &"n4".into(), Phase::Retiring)));
        let busy = r2.propose(Change::Join(member("n5")), 3).unwrap_err();
        assert!(matches!(busy, ChangeError::InFlight { epoch: 3, .. }), "{busy}");
        let r3 = r2.finish().unwrap();
        assert_eq!((r3.epoch, r3.current_epoch, r3.change()), (4, 3, None));
        assert!(r3.finish().is_none());
        assert!(r3.placement().unwrap().companion().is_none());
        r3.propose(Change::Join(member("n5")), 3).unwrap();
        // Drops wait for the finish, and then start from the layout before the change,
        // whether or not gossip brought the commit in between.
        assert_eq!(r1.ended_change_from(&r0), None);
        assert_eq!(r2.ended_change_from(&r1), None);
        let before = Some((1, r0.current.clone()));
        assert_eq!(r3.ended_change_from(&r2), before);
        assert_eq!(r3.ended_change_from(&r1), before);
        assert_eq!(r3.ended_change_from(&r3), None);
    }

    /// A hint redirected past its window goes to every live replica of its key but its owner,
    /// in both layouts while a change is under way, and nowhere else.
    #[test]
    fn redirected_hints_reach_the_write_set_but_their_owner() {
        let stable = three().placement().unwrap();
        let changing = three()
            .propose(Change::Join(member("n4")), 3)
            .unwrap()
            .placement()
            .unwrap();
        let keys: Vec<(Vec<u8>, u8)> = (0..200)
            .map(|i| (format!("k{i}").into_bytes(), 1 + (i % 3) as u8))
            .collect();
        let owner = NodeId::from("n2");
        for (p, down) in [
            (&stable, None),
            (&changing, None),
            (&changing, Some(NodeId::from("n4"))),
        ] {
            let routes = p.route_redirect(&owner, &keys, |n| *n, |id| Some(id) != down.as_ref());
            for (i, (key, n)) in keys.iter().enumerate() {
                let part = p.current.partition_of(key);
                let mut want: Vec<NodeId> = p.current.preference_list(part, *n as usize).to_vec();
                want.extend(p.extra_owners(part, *n as usize));
                want.retain(|id| *id != owner && Some(id) != down.as_ref());
                want.sort();
                let got: Vec<NodeId> = routes
                    .iter()
                    .filter(|(_, idx)| idx.contains(&i))
                    .map(|(id, _)| id.clone())
                    .collect();
                assert_eq!(got, want, "key {i}");
            }
        }
        assert!(
            (0..200).any(|i| !changing
                .extra_owners(changing.current.partition_of(&keys[i].0), 3)
                .is_empty()),
            "the join moves some ranges"
        );
    }

    /// A node that slept through a change's streaming phase, and only such a node, must hand
    /// its strays over before dropping them.
    #[test]
    fn sleeping_through_a_stream_is_told_apart_from_following_the_change() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let r2 = r1.commit().unwrap();
        let r3 = r2.finish().unwrap();
        let r4 = r3.propose(Change::Leave("n1".into()), 3).unwrap();
        let r5 = r4.commit().unwrap();
        // Followed step by step, or from the proposal on: nothing missed.
        for (old, new) in [(&r0, &r1), (&r1, &r2), (&r2, &r3), (&r1, &r3), (&r3, &r4), (&r4, &r5)] {
            assert!(!new.missed_stream_from(old), "{} -> {}", old.epoch, new.epoch);
        }
        // Asleep from before the proposal until after the commit.
        for (old, new) in [(&r0, &r2), (&r0, &r3), (&r0, &r5), (&r1, &r5), (&r2, &r5), (&r3, &r5)] {
            assert!(new.missed_stream_from(old), "{} -> {}", old.epoch, new.epoch);
        }
        // Strays go to the current owners only; held objects are not strays.
        let p = r3.placement().unwrap();
        let mut strays = 0;
        for part in 0..cfg().partitions {
            for id in ["n1", "n2", "n3", "n4"] {
                let id = NodeId::from(id);
                match p.stray_owners(&id, part, 3) {
                    None => assert!(p.current.preference_list(part, 3).contains(&id)),
                    Some(owners) => {
                        strays += 1;
                        assert_eq!(owners, p.current.preference_list(part, 3));
                    }
                }
            }
        }
        assert!(strays > 0);
    }

    /// What a node owes after adopting a record: a followed change ends in a drop, a slept-
    /// through one or one adopted with a lapsed lease in a handoff, and a handoff owed is
    /// never downgraded.
    #[test]
    fn strays_owed_after_a_record_depend_on_what_the_node_missed() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let r2 = r1.commit().unwrap();
        let r3 = r2.finish().unwrap();
        let me = NodeId::from("n1");
        let drop = |epoch| {
            Some(PendingStrays {
                epoch,
                hand_over: false,
            })
        };
        let hand = |epoch| Some(PendingStrays { epoch, hand_over: true });
        // Followed step by step: nothing until the finish, then a drop.
        assert_eq!(PendingStrays::after(None, &me, &r0, &r1, false), None);
        assert_eq!(PendingStrays::after(None, &me, &r1, &r2, false), None);
        assert_eq!(PendingStrays::after(None, &me, &r2, &r3, false), drop(r3.epoch));
        // Slept through the streaming: a handoff, as soon as the commit arrives.
        assert_eq!(PendingStrays::after(None, &me, &r0, &r2, false), hand(r2.epoch));
        assert_eq!(PendingStrays::after(None, &me, &r0, &r3, false), hand(r3.epoch));
        // Adopted the proposal with a lapsed lease: streaming may have begun without it.
        assert_eq!(PendingStrays::after(None, &me, &r0, &r1, true), hand(r1.epoch));
        // A lapsed lease with nothing moving owes nothing.
        assert_eq!(PendingStrays::after(None, &me, &r3, &r3, true), None);
        // A handoff still owed survives a later drop, at the later epoch.
        assert_eq!(
            PendingStrays::after(hand(r1.epoch), &me, &r2, &r3, false),
            hand(r3.epoch)
        );
        // Skipped while it had the proposal: the change went on without it as a source, so
        // the finish it had the proposal of still owes a handoff (without the skip, a drop).
        assert_eq!(PendingStrays::after(None, &me, &r1, &r3, false), drop(r3.epoch));
        let s3 = r1.skip(&me, 3).unwrap().commit().unwrap().finish().unwrap();
        assert_eq!(PendingStrays::after(None, &me, &r1, &s3, false), hand(s3.epoch));
        assert_eq!(
            PendingStrays::after(None, &"n2".into(), &r1, &s3, false),
            drop(s3.epoch)
        );
        // A pending drop is kept when nothing new ends.
        assert_eq!(
            PendingStrays::after(drop(r3.epoch), &me, &r3, &r3, false),
            drop(r3.epoch)
        );
    }

    /// Tombstone GC waits for every member, and every other live node, to have swept the
    /// current layout's strays, and for no change to be in flight.
    #[test]
    fn gc_waits_until_every_node_has_swept_its_strays() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let r3 = r1.commit().unwrap().finish().unwrap();
        let swept = |done: &'static [&'static str], epoch: u64| {
            move |id: &NodeId| if done.contains(&id.as_str()) { epoch } else { 0 }
        };
        const ALL: &[&str] = &["n1", "n2", "n3", "n4"];
        assert!(r0.strays_cleared(swept(&["n1", "n2", "n3"], r0.current_epoch), []));
        // In flight: never, even if every node has swept.
        assert!(!r1.strays_cleared(swept(ALL, r1.epoch), []));
        // Finished: every member, the new one included, at the current layout.
        assert!(r3.strays_cleared(swept(ALL, r3.current_epoch), []));
        assert!(!r3.strays_cleared(swept(&["n1", "n2", "n3"], r3.current_epoch), []));
        assert!(!r3.strays_cleared(swept(ALL, r0.current_epoch), []));
        // A live node outside the layout (one that left) must have swept too.
        let gone = NodeId::from("n9");
        assert!(!r3.strays_cleared(swept(ALL, r3.current_epoch), [&gone]));
    }

    /// Epoch fencing through a whole change: each phase serves the coordinators whose writes
    /// reach every owner a read may ask and whose reads ask owners that still hold the data,
    /// and no older ones.
    #[test]
    fn the_fence_admits_exactly_the_coordinators_a_phase_is_safe_with() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let r2 = r1.commit().unwrap();
        let r3 = r2.finish().unwrap();
        let fence = |r: &LayoutRecord| r.placement().unwrap().fence();
        // Stable: the commit of the current layout.
        assert_eq!(fence(&r0), r0.epoch);
        // Streaming: only coordinators that write to the gaining owners too.
        assert_eq!(fence(&r1), r1.epoch);
        // Retiring: a coordinator still on the proposal writes to both sets and reads from
        // the old one, which keeps receiving writes; one before the proposal does neither.
        assert_eq!(fence(&r2), r1.epoch);
        assert!(fence(&r2) > r0.epoch);
        // Finished: the retired owners may drop their data, so nothing before the commit.
        assert_eq!(fence(&r3), r2.epoch);
        // The next change's proposal fences out the finished one's coordinators.
        let r4 = r3.propose(Change::Leave("n1".into()), 3).unwrap();
        assert_eq!(fence(&r4), r4.epoch);
        assert!(fence(&r4) > r3.epoch);
    }

    /// While a commit retires the old layout, a write must reach W of both preference lists:
    /// a node that has not adopted the commit yet still reads from the old owners.
    #[test]
    fn a_committed_change_keeps_writing_to_the_old_owners_until_finished() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let (old, streaming) = (r0.placement().unwrap(), r1.placement().unwrap());
        let retiring = r1.commit().unwrap().placement().unwrap();
        let done = r1.commit().unwrap().finish().unwrap().placement().unwrap();
        let mut moved = 0;
        for p in 0..cfg().partitions {
            let before = old.current.preference_list(p, 3);
            let after = done.current.preference_list(p, 3);
            assert_eq!(retiring.current.preference_list(p, 3), after);
            assert_eq!(retiring.companion().unwrap().preference_list(p, 3), before);
            assert_eq!(streaming.companion().unwrap().preference_list(p, 3), after);
            let lost: Vec<NodeId> = before.iter().filter(|id| !after.contains(id)).cloned().collect();
            assert_eq!(retiring.extra_owners(p, 3), lost);
            assert!(done.extra_owners(p, 3).is_empty());
            moved += lost.len();
        }
        assert!(moved > 0, "the join moved nothing");
    }

    /// The drop a commit plans is asked again at drop time: when a leave right after a join
    /// gives a range back, the newest placement says the node still holds it. (Dropping it
    /// anyway lost acknowledged n=2 writes in the grow-and-shrink test.)
    #[test]
    fn a_range_given_back_by_the_next_change_is_still_held() {
        let r0 = three();
        let joined = r0
            .propose(Change::Join(member("n4")), 3)
            .unwrap()
            .commit()
            .unwrap()
            .finish()
            .unwrap();
        let (before, after) = (r0.placement().unwrap(), joined.placement().unwrap());
        let leaving = joined.propose(Change::Leave("n4".into()), 3).unwrap();
        let in_flight = leaving.placement().unwrap();
        let mut checked = 0;
        for node in ["n1", "n2", "n3"].map(NodeId::from) {
            for mv in moves(&after.current, &before.current, &node, 3) {
                for n in mv.n_min..=mv.n_max {
                    assert!(!after.holds(&node, mv.partition, n), "{node} p{} n{n}", mv.partition);
                    assert!(in_flight.holds(&node, mv.partition, n), "{node} p{} n{n}", mv.partition);
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "the join moved nothing");
        // Once the leave has finished, the three-node layout holds them again.
        let left = leaving.commit().unwrap().finish().unwrap().placement().unwrap();
        assert!(["n1", "n2", "n3"].map(NodeId::from).iter().all(|node| moves(
            &after.current,
            &before.current,
            node,
            3
        )
        .iter()
        .all(|mv| left.holds(node, mv.partition, mv.n_min))));
    }

    #[test]
    fn leave_and_remove_refuse_to_drop_below_n() {
        let r0 = three();
        let e = r0.propose(Change::Leave("n1".into()), 3).unwrap_err();
        assert_eq!(e, ChangeError::TooFewMembers { remaining: 2, n: 3 });
        assert!(e.to_string().contains("fewer than the replication factor n = 3"));
        let r1 = r0.propose(Change::Remove("n1".into()), 2).unwrap();
        assert_eq!(r1.admin_state(&"n1".into()), AdminState::Leaving);
        let r2 = r1.commit().unwrap();
        assert_eq!(r2.admin_state(&"n1".into()), AdminState::Leaving);
        assert_eq!(r2.finish().unwrap().admin_state(&"n1".into()), AdminState::Left);
        assert_eq!(
            r0.propose(Change::Leave("n9".into()), 1).unwrap_err(),
            ChangeError::NotMember { node: "n9".into() }
        );
        assert_eq!(
            r0.propose(Change::Join(member("n2")), 1).unwrap_err(),
            ChangeError::AlreadyMember { node: "n2".into() }
        );
    }

    #[test]
    fn merge_is_order_independent_for_concurrent_proposals() {
        let r0 = three();
        let a = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let b = r0.propose(Change::Join(member("n5")), 3).unwrap();
        let mut x = r0.clone();
        x.merge(&a).unwrap();
        x.merge(&b).unwrap();
        let mut y = r0.clone();
        y.merge(&b).unwrap();
        y.merge(&a).unwrap();
        assert_eq!(x, y);
        assert!(!x.merge(&r0).unwrap(), "an older record never wins");
        let mut other = r0.clone();
        other.config.partitions = 128;
        assert!(matches!(x.merge(&other), Err(ChangeError::ConfigMismatch { .. })));
    }

    #[test]
    fn moves_on_join_only_go_to_the_new_node_and_cover_its_ownership() {
        let r0 = three();
        let r1 = r0.propose(Change::Join(member("n4")), 3).unwrap();
        let p = r1.placement().unwrap();
        let next = p.next.clone().unwrap();
        for old in ["n1", "n2", "n3"] {
            // Single zone: a join only moves partitions to the new node.
            assert!(
                moves(&p.current, &next, &old.into(), 3).is_empty(),
                "{old} gained on a join"
            );
        }
        let gains = moves(&p.current, &next, &"n4".into(), 3);
        let owned: Vec<_> = next.partitions_of(&"n4".into(), 3);
        assert_eq!(gains.iter().map(|m| m.partition).collect::<Vec<_>>(), owned);
        for m in &gains {
            assert_eq!(m.n_max, 3, "n4 held nothing before, so every n up to max_n moves");
            assert!(!m.sources.is_empty() && !m.sources.contains(&"n4".into()));
            // Every source holds the whole range under the old layout.
            for s in &m.sources {
                let pos = p.current.walk(m.partition).iter().position(|x| x == s).unwrap();
                assert!(pos < m.n_min as usize);
            }
            // Each n's giver is the old owner the new preference list leaves out.
            for (n, giver) in &m.givers {
                let old = p.current.preference_list(m.partition, *n as usize);
                let new = next.preference_list(m.partition, *n as usize);
                let out: Vec<&NodeId> = old.iter().filter(|id| !new.contains(id)).collect();
                assert_eq!(out, giver.iter().collect::<Vec<_>>(), "p{} n{n}", m.partition);
            }
            let runs = m.runs();
            assert_eq!(runs.first().map(|r| r.0), Some(m.n_min));
            assert_eq!(runs.last().map(|r| r.1), Some(m.n_max));
        }
    }

    /// A leave streams every range from the leaving node.
    #[test]
    fn a_leave_streams_from_the_leaving_node() {
        let r0 = LayoutRecord::bootstrap(vec![member("n1"), member("n2"), member("n3"), member("n4")], cfg()).unwrap();
        let p = r0.propose(Change::Leave("n4".into()), 3).unwrap().placement().unwrap();
        let next = p.next.clone().unwrap();
        let mut runs = 0;
        for node in ["n1", "n2", "n3"] {
            for m in moves(&p.current, &next, &node.into(), 3) {
                for (_, _, giver) in m.runs() {
                    assert_eq!(giver, Some("n4".into()));
                    runs += 1;
                }
            }
        }
        assert!(runs > 0);
    }

    #[test]
    fn drops_after_a_leave_are_the_leaving_nodes_whole_share() {
        let r0 = LayoutRecord::bootstrap(vec![member("n1"), member("n2"), member("n3"), member("n4")], cfg()).unwrap();
        let r1 = r0.propose(Change::Leave("n4".into()), 3).unwrap();
        let p = r1.placement().unwrap();
        let next = p.next.clone().unwrap();
        let drops = moves(&next, &p.current, &"n4".into(), 3);
        assert_eq!(
            drops.iter().map(|m| m.partition).collect::<Vec<_>>(),
            p.current.partitions_of(&"n4".into(), 3)
        );
    }
}
