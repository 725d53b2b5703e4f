//! The layout-change engine: the one set of rules, run unchanged by `shoal-node` and by the
//! simulator, for when a change in flight takes its next step and whom it waits for.
//!
//! Sans-IO, like the rest of this crate: it reads a [`LayoutRecord`] and what each node has
//! reported of its own progress ([`Epochs`]; `shoal-node` gossips them in SWIM metadata, the
//! simulator exchanges them) and answers with a [`Step`]. The caller adopts the record a step
//! returns, streams, or waits, and shows the [`Blocker`]s to the operator.
//!
//! **No member is excused silently.** Every member of the current, next and retiring layouts
//! must report each epoch, dead or alive, as Riak's `ring_ready` and Garage's `ack_map_min`
//! require. A member that SWIM calls dead blocks the change; only two nodes are excused: the
//! node a `remove` takes out, and a node the operator skipped for this change
//! ([`LayoutRecord::skip`], `shoal admin skip`, Garage's `skip-dead-nodes`). Excusing dead
//! members automatically is what let a node sleep through a whole change and come back to
//! coordinate on its old layout (the simulator found it in 32 of 5,000 seeds).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::history::{moves, ChangeError, ChangeKind, LayoutRecord};
use crate::node::NodeId;

/// What a node reports of its own progress through layout changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epochs {
    /// The newest record epoch it has adopted with no request begun under an older placement
    /// still running (Garage's layout "ack").
    pub seen: u64,
    /// The epoch of the last change whose data it finished streaming in.
    pub synced: u64,
    /// The current layout's epoch when it last finished handing over and dropping the data
    /// it no longer owns.
    pub swept: u64,
}

/// What a change waits for a node to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// That it has adopted the record's epoch (and no older request runs on it).
    Seen,
    /// That it has streamed in the data it gains.
    Synced,
}

/// A node a change in flight is waiting for, and what for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    pub node: NodeId,
    pub waiting: Waiting,
    /// The epoch it must report.
    pub epoch: u64,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.waiting {
            Waiting::Seen => write!(f, "{} has not adopted layout epoch {}", self.node, self.epoch),
            Waiting::Synced => write!(
                f,
                "{} has not streamed in the data it gains in the change of epoch {}",
                self.node, self.epoch
            ),
        }
    }
}

/// Where a gaining node streams a run of a range from (see [`LayoutRecord::source_for`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Stream the run from each of these nodes (the giver alone, or every live holder).
    Ask(Vec<NodeId>),
    /// Wait for this node: it alone may be asked, and it is not reachable now.
    Wait(NodeId),
    /// Nobody the change waits for holds the run: go on without it.
    PassOver,
}

/// What a layout change does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No change is in flight.
    Idle,
    /// Nothing may move until these nodes report: streaming may not start (a node that has
    /// not seen the proposal may still write to the old owners only, behind a transfer
    /// cursor), and a committed change may not finish (a node that has not seen the commit
    /// may still read from the old owners).
    Wait(Vec<Blocker>),
    /// Every node has seen the proposal: the gaining nodes stream, and the commit waits for
    /// these to finish.
    Stream(Vec<Blocker>),
    /// Adopt this record: the change commits.
    Commit(LayoutRecord),
    /// Adopt this record: the committed change finishes and the old owners let go.
    Finish(LayoutRecord),
}

impl Step {
    /// The nodes this step waits for (none for a step to take now).
    pub fn blockers(&self) -> &[Blocker] {
        match self {
            Step::Wait(b) | Step::Stream(b) => b,
            _ => &[],
        }
    }

    /// Whether the gaining nodes may stream (everyone has seen the proposal).
    pub fn may_stream(&self) -> bool {
        matches!(self, Step::Stream(_) | Step::Commit(_))
    }
}

impl LayoutRecord {
    /// The epoch of the proposal of the change in flight, if one is.
    pub fn change_epoch(&self) -> Option<u64> {
        if self.next.is_some() {
            Some(self.epoch)
        } else {
            // A commit is its proposal's epoch + 1 and makes the current layout.
            self.retiring.as_ref().map(|_| self.current_epoch.saturating_sub(1))
        }
    }

    /// Whether the operator skipped `node` for the change in flight.
    pub fn excused(&self, node: &NodeId) -> bool {
        self.change_epoch()
            .is_some_and(|started| self.skipped.get(node).is_some_and(|at| *at >= started))
    }

    /// Whether `node` was skipped after its record was at `epoch`: a change went on without
    /// it, so whatever it holds in ranges it lost may be the only copy (it acknowledged it
    /// before it died, or it was the only holder of an `n = 1` range nobody streamed).
    pub fn skipped_since(&self, node: &NodeId, epoch: u64) -> bool {
        self.skipped.get(node).is_some_and(|at| *at >= epoch)
    }

    /// The node a `remove` in flight takes out (its disk goes with it; nobody waits for it).
    pub fn removed(&self) -> Option<&NodeId> {
        match (&self.next, &self.retiring) {
            (Some(t), _) if t.kind == ChangeKind::Remove => Some(&t.node),
            (None, Some(r)) if r.kind == ChangeKind::Remove => Some(&r.node),
            _ => None,
        }
    }

    /// Every node that must report each epoch of the change in flight: the members of the
    /// current, next and retiring layouts, but the removed node and the skipped ones.
    pub fn must_see(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .current
            .iter()
            .chain(self.next.iter().flat_map(|t| t.members.iter()))
            .chain(self.retiring.iter().flat_map(|r| r.members.iter()))
            .map(|m| m.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids.retain(|id| Some(id) != self.removed() && !self.excused(id));
        ids
    }

    /// The nodes that gain data in the change being streamed, for objects of replication
    /// factor up to `max_n`.
    pub fn gainers(&self, max_n: u8) -> Vec<NodeId> {
        let Ok(p) = self.placement() else { return Vec::new() };
        let Some(next) = &p.next else { return Vec::new() };
        next.members()
            .iter()
            .filter(|m| !moves(&p.current, next, &m.id, max_n).is_empty())
            .map(|m| m.id.clone())
            .collect()
    }

    /// Whether a range whose sources are `sources`, none of them reachable, may be passed
    /// over by a gaining node instead of waited for: every source is the removed node (the
    /// objects' `n` was too small to survive it) or was skipped (it hands what it holds to the
    /// owners when it returns).
    pub fn may_pass_over(&self, sources: &[NodeId]) -> bool {
        sources.iter().all(|s| Some(s) == self.removed() || self.excused(s))
    }

    /// Where a gaining node streams a run of a move from: its `giver` while it is `live`
    /// (see [`crate::Move::givers`]: that keeps every replica set's contents), else, if the
    /// giver is not waited for (removed or skipped), every live node of `sources`, merged
    /// (no single one is sure to hold every write the giver did: a write acknowledged by the
    /// giver and one other owner survives only on that one), else nothing if no source is
    /// waited for either. A giver that is down but waited for is waited for: the change cannot
    /// commit without it anyway, and another source may lack writes only the giver
    /// acknowledged.
    pub fn source_for(&self, giver: Option<&NodeId>, sources: &[NodeId], live: impl Fn(&NodeId) -> bool) -> Source {
        if let Some(g) = giver {
            if live(g) {
                return Source::Ask(vec![g.clone()]);
            }
            if !self.may_pass_over(std::slice::from_ref(g)) {
                return Source::Wait(g.clone());
            }
        }
        let holders: Vec<NodeId> = sources.iter().filter(|s| live(s)).cloned().collect();
        if !holders.is_empty() {
            return Source::Ask(holders);
        }
        match sources.iter().find(|s| !self.may_pass_over(std::slice::from_ref(*s))) {
            Some(s) => Source::Wait(s.clone()),
            None => Source::PassOver,
        }
    }

    /// The change's next step, given what each node has reported (`None`: never heard of) and
    /// the change's [`gainers`](Self::gainers) (worked out once per record by the caller: it
    /// builds both layouts).
    pub fn step(&self, epochs: impl Fn(&NodeId) -> Option<Epochs>, gainers: &[NodeId]) -> Step {
        if self.change_epoch().is_none() {
            return Step::Idle;
        }
        let unseen: Vec<Blocker> = self
            .must_see()
            .into_iter()
            .filter(|id| epochs(id).is_none_or(|e| e.seen < self.epoch))
            .map(|node| Blocker {
                node,
                waiting: Waiting::Seen,
                epoch: self.epoch,
            })
            .collect();
        if !unseen.is_empty() {
            return Step::Wait(unseen);
        }
        if self.next.is_some() {
            let unsynced: Vec<Blocker> = gainers
                .iter()
                .filter(|id| epochs(id).is_none_or(|e| e.synced < self.epoch))
                .map(|node| Blocker {
                    node: node.clone(),
                    waiting: Waiting::Synced,
                    epoch: self.epoch,
                })
                .collect();
            return match (unsynced.is_empty(), self.commit()) {
                (true, Some(commit)) => Step::Commit(commit),
                _ => Step::Stream(unsynced),
            };
        }
        match self.finish() {
            Some(finish) => Step::Finish(finish),
            None => Step::Idle,
        }
    }

    /// The record with `node` skipped for the change in flight: the change no longer waits
    /// for it to see its epochs, and gaining nodes pass over ranges only it holds. The
    /// operator's way out when a member is dead and will not come back soon (it is not a
    /// decision to make automatically: a node that is only cut off may still be serving).
    /// When `node` returns, peers fence it off until it adopts the newer record, and it hands
    /// what it holds in ranges it lost to their owners before dropping it.
    ///
    /// The epoch stays: a skip changes nobody's placement, and a record with more skipped
    /// nodes at the same epoch wins the merge (concurrent skips add up).
    pub fn skip(&self, node: &NodeId, max_n: u8) -> Result<LayoutRecord, ChangeError> {
        if self.change_epoch().is_none() {
            return Err(ChangeError::NothingToSkip);
        }
        if !self.must_see().contains(node) {
            return Err(ChangeError::NotWaitedFor { node: node.clone() });
        }
        if self.next.is_some() && self.gainers(max_n).contains(node) {
            return Err(ChangeError::SkipGainer { node: node.clone() });
        }
        let mut skipped = self.clone();
        skipped.skipped.insert(node.clone(), self.epoch);
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{cfg, member};
    use crate::history::Change;
    use std::collections::BTreeMap;

    fn four() -> LayoutRecord {
        LayoutRecord::bootstrap(["n1", "n2", "n3", "n4"].map(member).to_vec(), cfg()).unwrap()
    }

    fn all(ids: &[&str], e: Epochs) -> impl Fn(&NodeId) -> Option<Epochs> {
        let map: BTreeMap<NodeId, Epochs> = ids.iter().map(|id| (NodeId::from(*id), e)).collect();
        move |id| map.get(id).copied()
    }

    fn blocked_on(step: &Step) -> Vec<String> {
        step.blockers().iter().map(|b| b.node.to_string()).collect()
    }

    /// A join waits for every member, dead or alive, to see each epoch; the joining node's
    /// sync gates the commit; the commit and finish are the history's own.
    #[test]
    fn a_change_waits_for_every_member_and_then_steps() {
        let r0 = four();
        assert_eq!(r0.step(|_| None, &[]), Step::Idle);
        let r1 = r0.propose(Change::Join(member("n5")), 3).unwrap();
        let ids = ["n1", "n2", "n3", "n4", "n5"];
        let g = r1.gainers(3);
        assert_eq!(g, [NodeId::from("n5")]);
        // n3 never reported (dead, or unheard of): the proposal cannot stream.
        let step = r1.step(
            all(
                &["n1", "n2", "n4", "n5"],
                Epochs {
                    seen: r1.epoch,
                    ..Default::default()
                },
            ),
            &g,
        );
        assert_eq!(blocked_on(&step), ["n3"]);
        assert!(!step.may_stream());
        // Everyone has seen it: stream, and the commit waits for the gainer.
        let seen = Epochs {
            seen: r1.epoch,
            ..Default::default()
        };
        let step = r1.step(all(&ids, seen), &g);
        assert!(step.may_stream());
        assert_eq!(blocked_on(&step), ["n5"]);
        assert_eq!(step.blockers()[0].waiting, Waiting::Synced);
        let synced = Epochs {
            seen: r1.epoch,
            synced: r1.epoch,
            swept: 0,
        };
        let Step::Commit(r2) = r1.step(all(&ids, synced), &g) else {
            panic!("no commit")
        };
        assert_eq!(Some(r2.clone()), r1.commit());
        // Retiring: every member of both layouts must see the commit, then it finishes.
        let step = r2.step(all(&ids, synced), &[]);
        assert_eq!(blocked_on(&step).len(), 5);
        let seen2 = Epochs {
            seen: r2.epoch,
            ..synced
        };
        let Step::Finish(r3) = r2.step(all(&ids, seen2), &[]) else {
            panic!("no finish")
        };
        assert_eq!(Some(r3.clone()), r2.finish());
        assert_eq!(r3.step(all(&ids, seen2), &[]), Step::Idle);
    }

    /// A remove never waits for the node it takes out; a leave waits for the leaver.
    #[test]
    fn only_the_removed_node_is_not_waited_for() {
        let r0 = four();
        let remove = r0.propose(Change::Remove("n4".into()), 3).unwrap();
        assert!(!remove.must_see().contains(&NodeId::from("n4")));
        assert!(!remove.commit().unwrap().must_see().contains(&NodeId::from("n4")));
        let leave = r0.propose(Change::Leave("n4".into()), 3).unwrap();
        assert!(leave.must_see().contains(&NodeId::from("n4")));
        assert!(leave.commit().unwrap().must_see().contains(&NodeId::from("n4")));
    }

    /// A skip excuses a node for the change in flight only, keeps the epoch, merges with
    /// concurrent skips, and tells the node later that a change went on without it.
    #[test]
    fn a_skip_excuses_one_node_for_one_change() {
        let r0 = four();
        let n3 = NodeId::from("n3");
        assert_eq!(r0.skip(&n3, 3), Err(ChangeError::NothingToSkip));
        let r1 = r0.propose(Change::Join(member("n5")), 3).unwrap();
        // The joining node gains data: skipping it would commit an owner that holds nothing.
        assert!(matches!(r1.skip(&"n5".into(), 3), Err(ChangeError::SkipGainer { .. })));
        assert!(matches!(
            r1.skip(&"n9".into(), 3),
            Err(ChangeError::NotWaitedFor { .. })
        ));
        let s = r1.skip(&n3, 3).unwrap();
        assert_eq!(s.epoch, r1.epoch);
        assert!(s.excused(&n3) && !s.must_see().contains(&n3));
        // A record with the skip wins over the one without it, at the same epoch.
        let mut merged = r1.clone();
        assert!(merged.merge(&s).unwrap());
        assert_eq!(merged, s);
        // Two operators skipping two nodes at once: both skips hold, in either order.
        let t = r1.skip(&"n4".into(), 3).unwrap();
        let (mut a, mut b) = (s.clone(), t.clone());
        a.merge(&t).unwrap();
        b.merge(&s).unwrap();
        assert_eq!(a, b);
        assert!(a.excused(&n3) && a.excused(&"n4".into()));
        // Still excused through the commit, no longer for the next change.
        let c = s.commit().unwrap();
        assert!(c.excused(&n3));
        let f = c.finish().unwrap();
        assert!(!f.excused(&n3));
        let next = f.propose(Change::Leave("n1".into()), 3).unwrap();
        assert!(!next.excused(&n3) && next.must_see().contains(&n3));
        // n3, back with the epoch it had when skipped, learns it was skipped; a node that
        // caught up later does not.
        assert!(next.skipped_since(&n3, r1.epoch));
        assert!(!next.skipped_since(&n3, f.epoch));
        assert!(!next.skipped_since(&"n1".into(), r1.epoch));
    }

    /// A gaining node passes over a range with no reachable source only when every source is
    /// the removed node or was skipped.
    #[test]
    fn only_removed_or_skipped_sources_may_be_passed_over() {
        let r0 = four();
        let remove = r0.propose(Change::Remove("n4".into()), 3).unwrap();
        assert!(remove.may_pass_over(&["n4".into()]));
        assert!(!remove.may_pass_over(&["n4".into(), "n3".into()]));
        let join = r0.propose(Change::Join(member("n5")), 3).unwrap();
        assert!(!join.may_pass_over(&["n3".into()]));
        let skipped = join.skip(&"n3".into(), 3).unwrap();
        assert!(skipped.may_pass_over(&["n3".into()]));
    }

    /// The giver is asked while it lives and waited for while it is down, unless the change
    /// does not wait for it; then any live source will do.
    #[test]
    fn a_run_streams_from_its_giver_or_waits_for_it() {
        let join = four().propose(Change::Join(member("n5")), 3).unwrap();
        let (n2, n3): (NodeId, NodeId) = ("n2".into(), "n3".into());
        let sources = [n2.clone(), n3.clone()];
        let all_live = |_: &NodeId| true;
        let n3_down = |id: &NodeId| *id != n3;
        let none_live = |_: &NodeId| false;
        assert_eq!(
            join.source_for(Some(&n3), &sources, all_live),
            Source::Ask(vec![n3.clone()])
        );
        assert_eq!(join.source_for(Some(&n3), &sources, n3_down), Source::Wait(n3.clone()));
        assert_eq!(join.source_for(None, &sources, all_live), Source::Ask(sources.to_vec()));
        assert_eq!(join.source_for(None, &sources, n3_down), Source::Ask(vec![n2.clone()]));
        assert_eq!(join.source_for(None, &sources, none_live), Source::Wait(n2.clone()));
        let skipped = join.skip(&n3, 3).unwrap();
        assert_eq!(
            skipped.source_for(Some(&n3), &sources, n3_down),
            Source::Ask(vec![n2.clone()])
        );
        assert_eq!(
            skipped.source_for(Some(&n3), std::slice::from_ref(&n3), n3_down),
            Source::PassOver
        );
        let remove = four().propose(Change::Remove("n4".into()), 3).unwrap();
        assert_eq!(
            remove.source_for(Some(&"n4".into()), &["n4".into()], none_live),
            Source::PassOver
        );
    }
}
