//! Which trees a replica exchanges in one anti-entropy round, and with whom. Shared by the
//! node's repair loop and the simulator, so both run the same plan.

use std::collections::BTreeSet;

use shoal_ring::{Layout, NodeId};

use crate::Trees;

/// One tree to exchange this round: (partition, n) and the tree's other replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTree {
    pub partition: u32,
    pub n: u8,
    pub others: Vec<NodeId>,
}

/// The trees `me` exchanges in a round under `layout`: every one it holds, and, for the
/// default n, every partition it replicates even if it holds nothing there yet (a node that
/// lost its disk or missed every write must ask, not only wait to be told). Trees with no
/// other replica are left out. In (partition, n) order; the caller may shuffle.
pub fn plan_round(trees: &Trees, layout: &Layout, me: &NodeId, default_n: u8) -> Vec<PlannedTree> {
    let mut wanted: BTreeSet<(u32, u8)> = trees.list().into_iter().map(|t| (t.partition, t.n)).collect();
    wanted.extend(
        layout
            .partitions_of(me, default_n as usize)
            .into_iter()
            .map(|p| (p, default_n)),
    );
    wanted
        .into_iter()
        .filter_map(|(partition, n)| {
            let pref = layout.preference_list(partition, n as usize);
            (pref.len() > 1 && pref.contains(me)).then(|| PlannedTree {
                partition,
                n,
                others: pref.iter().filter(|p| *p != me).cloned().collect(),
            })
        })
        .collect()
}

/// The live replica to exchange with in round `round`. Rotating through the other replicas
/// round by round (from a per-tree offset) makes every pair of replicas of a tree meet within
/// n - 1 rounds; a random pick leaves some pair unmet for many rounds.
pub fn pick_peer<'a>(live: &[&'a NodeId], round: u64, partition: u32) -> Option<&'a NodeId> {
    (!live.is_empty()).then(|| live[(round as usize + partition as usize) % live.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_meets_every_live_peer() {
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        let live = [&a, &b];
        let picked: BTreeSet<&NodeId> = (0..2).filter_map(|r| pick_peer(&live, r, 7)).collect();
        assert_eq!(picked.len(), 2);
        assert_eq!(pick_peer(&[], 3, 7), None);
    }
}
