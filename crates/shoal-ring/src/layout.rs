//! A layout: one version of the ring, with every partition's owners worked
//! out up front so lookups on the request path are a slice borrow.

use crate::error::RingError;
use crate::node::{Member, NodeId};
use crate::partition::{key_hash, partition_for_hash, partition_start, PartitionId};
use crate::preference_list::{ring_order, zone_diverse};
use crate::token::Tokens;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Largest partition count. Partitions are the unit of hand-off, so more of
/// them means finer moves but more per-partition state on every node.
pub const MAX_PARTITIONS: u32 = 65536;

/// Largest number of tokens one node may place (weight × tokens_per_weight).
pub const MAX_TOKENS_PER_NODE: u32 = 65536;

/// Shape of the ring. Every node must use the same config, or they will
/// disagree on owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingConfig {
    /// Q: number of equal-sized partitions; a power of two in [1, 65536].
    pub partitions: u32,
    /// Tokens a node places per unit of weight. More tokens even out the
    /// share each node gets, at the cost of a slower layout build.
    pub tokens_per_weight: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            partitions: 1024,
            tokens_per_weight: 64,
        }
    }
}

impl RingConfig {
    /// Checks the config on its own, before any members are known.
    pub fn validate(&self) -> Result<(), RingError> {
        if !self.partitions.is_power_of_two() {
            return Err(RingError::PartitionsNotPowerOfTwo {
                partitions: self.partitions,
            });
        }
        if self.partitions > MAX_PARTITIONS {
            return Err(RingError::TooManyPartitions {
                partitions: self.partitions,
                max: MAX_PARTITIONS,
            });
        }
        if self.tokens_per_weight == 0 {
            return Err(RingError::ZeroTokensPerWeight);
        }
        Ok(())
    }
}

/// One version of the ring: members, config, and every partition's walk.
#[derive(Clone)]
pub struct Layout {
    version: u64,
    config: RingConfig,
    /// Sorted by id; member indices elsewhere refer to this order.
    members: Vec<Member>,
    /// For each partition, which of `walks` it uses. Neighbouring partitions
    /// with no token between their starts meet the ring identically, so they
    /// share one walk; with many partitions and few tokens this is most of them.
    walk_of: Vec<u32>,
    /// The distinct walks, each `members.len()` long, back to back.
    walks: Vec<NodeId>,
}

impl Layout {
    /// Builds the layout, computing every partition's walk.
    ///
    /// The members' order does not matter. Fails if the config is invalid,
    /// there are no members, an id is empty or repeated, or a weight gives a
    /// node no tokens or too many.
    pub fn new(version: u64, mut members: Vec<Member>, config: RingConfig) -> Result<Layout, RingError> {
        config.validate()?;
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        let mut token_counts = Vec::with_capacity(members.len());
        for m in &members {
            token_counts.push(token_count(m, config)?);
        }
        // Sorting by id is what makes the layout independent of input order:
        // member indices, tie-breaks and zone numbering all follow from it.
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by(|&a, &b| members[a].id.cmp(&members[b].id));
        let token_counts: Vec<u32> = order.iter().map(|&i| token_counts[i]).collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = members.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(RingError::DuplicateMember { id: pair[0].id.clone() });
        }

        let (zone_of, zones) = number_zones(&members);
        let tokens = Tokens::place(members.iter().map(|m| &m.id).zip(token_counts));

        let mut walk_of = Vec::with_capacity(config.partitions as usize);
        let mut walks = Vec::new();
        let mut walk_for_gap: HashMap<usize, u32> = HashMap::new();
        for p in 0..config.partitions {
            let start = partition_start(p, config.partitions);
            let next = walk_for_gap.len() as u32;
            let w = *walk_for_gap.entry(tokens.gap(start)).or_insert_with(|| {
                let ring = ring_order(&tokens, start);
                let walk = zone_diverse(&ring, &zone_of, zones);
                walks.extend(walk.into_iter().map(|m| members[m].id.clone()));
                next
            });
            walk_of.push(w);
        }

        Ok(Layout {
            version,
            config,
            members,
            walk_of,
            walks,
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn config(&self) -> RingConfig {
        self.config
    }

    pub fn partitions(&self) -> u32 {
        self.config.partitions
    }

    /// All members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.id.cmp(id))
            .ok()
            .and_then(|i| self.members.get(i))
    }

    /// The partition that holds `key`.
    pub fn partition_of(&self, key: &[u8]) -> PartitionId {
        partition_for_hash(key_hash(key), self.config.partitions)
    }

    /// Every member exactly once, in preference order for partition `p`: the
    /// first `n` are its preference list (zone-diverse where possible) and the
    /// rest the fallback order for sloppy quorum.
    ///
    /// A `p` outside `0..partitions()` has no owners: the slice is empty.
    pub fn walk(&self, p: PartitionId) -> &[NodeId] {
        let n = self.members.len();
        self.walk_of
            .get(p as usize)
            .and_then(|&w| {
                let start = w as usize * n;
                self.walks.get(start..start + n)
            })
            .unwrap_or(&[])
    }

    /// The first `min(n, members)` entries of [`Layout::walk`]: the nodes
    /// that hold partition `p` when nobody is down.
    pub fn preference_list(&self, p: PartitionId, n: usize) -> &[NodeId] {
        let walk = self.walk(p);
        &walk[..n.min(walk.len())]
    }

    /// Partitions for which `node` is in the preference list of length `n`,
    /// ascending: what the node should hold when nobody is down.
    pub fn partitions_of(&self, node: &NodeId, n: usize) -> Vec<PartitionId> {
        (0..self.config.partitions)
            .filter(|&p| self.preference_list(p, n).contains(node))
            .collect()
    }
}

// Hand-written so logging a layout prints its identity, not its
// partitions × members walk table.
impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("version", &self.version)
            .field("config", &self.config)
            .field("members", &self.members)
            .field("distinct_walks", &(self.walks.len() / self.members.len().max(1)))
            .finish_non_exhaustive()
    }
}

/// Validates one member and returns how many tokens it places.
fn token_count(m: &Member, config: RingConfig) -> Result<u32, RingError> {
    if m.id.as_str().is_empty() {
        return Err(RingError::EmptyNodeId);
    }
    if m.weight == 0 {
        return Err(RingError::ZeroWeight { id: m.id.clone() });
    }
    let tokens = u64::from(m.weight) * u64::from(config.tokens_per_weight);
    if tokens > u64::from(MAX_TOKENS_PER_NODE) {
        return Err(RingError::TooManyTokens {
            id: m.id.clone(),
            weight: m.weight,
            tokens_per_weight: config.tokens_per_weight,
            tokens,
            max: MAX_TOKENS_PER_NODE,
        });
    }
    // Bounded by MAX_TOKENS_PER_NODE just above, so it fits.
    Ok(tokens as u32)
}

/// Numbers zones 0.. in order of first appearance among the id-sorted members,
/// returning each member's zone number and the zone count.
fn number_zones(members: &[Member]) -> (Vec<usize>, usize) {
    let mut numbers: HashMap<&str, usize> = HashMap::new();
    let zone_of = members
        .iter()
        .map(|m| {
            let next = numbers.len();
            *numbers.entry(m.zone.as_str()).or_insert(next)
        })
        .collect();
    (zone_of, numbers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, zone: &str, weight: u32) -> Member {
        Member {
            id: NodeId::from(id),
            zone: zone.to_owned(),
            weight,
        }
    }

    fn nodes(n: usize) -> Vec<Member> {
        (1..=n).map(|i| member(&format!("n{i}"), "z", 1)).collect()
    }

    fn config(partitions: u32, tokens_per_weight: u32) -> RingConfig {
        RingConfig {
            partitions,
            tokens_per_weight,
        }
    }

    #[test]
    fn default_config() {
        assert_eq!(RingConfig::default(), config(1024, 64));
        assert_eq!(RingConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_partition_counts() {
        for q in [0, 3, 1000, 65537, u32::MAX] {
            let err = Layout::new(1, nodes(3), config(q, 1)).unwrap_err();
            assert_eq!(err, RingError::PartitionsNotPowerOfTwo { partitions: q }, "{q}");
        }
        let err = Layout::new(1, nodes(3), config(1 << 17, 1)).unwrap_err();
        assert_eq!(
            err,
            RingError::TooManyPartitions {
                partitions: 1 << 17,
                max: 65536
            }
        );
        assert_eq!(err.to_string(), "partition count 131072 exceeds the maximum of 65536");
        assert!(Layout::new(1, nodes(3), config(1, 1)).is_ok());
        assert!(Layout::new(1, nodes(3), config(65536, 1)).is_ok());
    }

    #[test]
    fn refuses_zero_tokens_per_weight() {
        let err = Layout::new(1, nodes(3), config(8, 0)).unwrap_err();
        assert_eq!(err, RingError::ZeroTokensPerWeight);
    }

    #[test]
    fn refuses_no_members() {
        assert_eq!(
            Layout::new(1, Vec::new(), RingConfig::default()).unwrap_err(),
            RingError::NoMembers
        );
    }

    #[test]
    fn refuses_empty_node_id() {
        let mut ms = nodes(2);
        ms.push(member("", "z", 1));
        assert_eq!(
            Layout::new(1, ms, RingConfig::default()).unwrap_err(),
            RingError::EmptyNodeId
        );
    }

    #[test]
    fn refuses_duplicate_ids() {
        let mut ms = nodes(3);
        ms.push(member("n2", "other", 5));
        let err = Layout::new(1, ms, RingConfig::default()).unwrap_err();
        assert_eq!(err, RingError::DuplicateMember { id: "n2".into() });
        assert_eq!(err.to_string(), "node n2 is listed more than once");
    }

    #[test]
    fn refuses_zero_weight() {
        let mut ms = nodes(2);
        ms.push(member("light", "z", 0));
        assert_eq!(
            Layout::new(1, ms, RingConfig::default()).unwrap_err(),
            RingError::ZeroWeight { id: "light".into() }
        );
    }

    #[test]
    fn refuses_too_many_tokens() {
        let mut ms = nodes(2);
        ms.push(member("heavy", "z", 1025));
        let err = Layout::new(1, ms, RingConfig::default()).unwrap_err();
        assert_eq!(
            err,
            RingError::TooManyTokens {
                id: "heavy".into(),
                weight: 1025,
                tokens_per_weight: 64,
                tokens: 65600,
                max: 65536
            }
        );
        assert!(err.to_string().contains("65600"));
        // The product must not wrap around u32 and sneak under the limit.
        let ms = vec![member("huge", "z", u32::MAX)];
        assert!(matches!(
            Layout::new(1, ms, config(8, u32::MAX)),
            Err(RingError::TooManyTokens { .. })
        ));
        // Exactly at the limit is fine.
        let ms = vec![member("edge", "z", 1024)];
        assert!(Layout::new(1, ms, config(8, 64)).is_ok());
    }

    #[test]
    fn walk_lists_each_member_once() {
        let mut ms = nodes(7);
        ms.push(member("heavy", "b", 3));
        ms.push(member("other", "c", 1));
        let layout = Layout::new(4, ms, RingConfig::default()).unwrap();
        let mut expected: Vec<NodeId> = layout.members().iter().map(|m| m.id.clone()).collect();
        expected.sort();
        for p in 0..layout.partitions() {
            let mut walk = layout.walk(p).to_vec();
            walk.sort();
            assert_eq!(walk, expected, "partition {p}");
        }
    }

    #[test]
    fn out_of_range_partition_has_empty_walk() {
        let layout = Layout::new(1, nodes(3), config(16, 4)).unwrap();
        assert!(layout.walk(16).is_empty());
        assert!(layout.walk(u32::MAX).is_empty());
        assert!(layout.preference_list(16, 3).is_empty());
    }

    #[test]
    fn preference_list_is_a_prefix_of_the_walk() {
        let layout = Layout::new(1, nodes(5), RingConfig::default()).unwrap();
        for p in [0, 1, 511, 1023] {
            assert_eq!(layout.preference_list(p, 3), &layout.walk(p)[..3]);
            assert_eq!(layout.preference_list(p, 0), &[] as &[NodeId]);
            assert_eq!(layout.preference_list(p, 99), layout.walk(p));
        }
    }

    #[test]
    fn walk_follows_the_ring() {
        // Brute force the definition: sort every (token, node) pair and walk
        // clockwise from the partition start, collecting distinct nodes.
        let ms = nodes(6);
        let cfg = config(256, 8);
        let layout = Layout::new(1, ms.clone(), cfg).unwrap();
        let mut ring: Vec<(u64, NodeId)> = ms
            .iter()
            .flat_map(|m| (0..8).map(move |i| (crate::token::token(&m.id, i), m.id.clone())))
            .collect();
        ring.sort();
        for p in 0..cfg.partitions {
            let start = partition_start(p, cfg.partitions);
            let first = ring.partition_point(|(t, _)| *t < start);
            let mut walk: Vec<NodeId> = Vec::new();
            for i in 0..ring.len() {
                let id = &ring[(first + i) % ring.len()].1;
                if !walk.contains(id) {
                    walk.push(id.clone());
                }
            }
            assert_eq!(layout.walk(p), walk.as_slice(), "partition {p}");
        }
    }

    #[test]
    fn partition_of_uses_key_hash() {
        let layout = Layout::new(1, nodes(3), RingConfig::default()).unwrap();
        assert_eq!(layout.partition_of(b"k"), partition_for_hash(key_hash(b"k"), 1024));
        let one = Layout::new(1, nodes(3), config(1, 1)).unwrap();
        assert_eq!(one.partition_of(b"k"), 0);
    }

    #[test]
    fn partitions_of_agrees_with_preference_lists() {
        let layout = Layout::new(1, nodes(4), config(64, 16)).unwrap();
        let mut total = 0;
        for m in layout.members() {
            let ps = layout.partitions_of(&m.id, 2);
            assert!(ps.windows(2).all(|w| w[0] < w[1]));
            for p in &ps {
                assert!(layout.preference_list(*p, 2).contains(&m.id));
            }
            total += ps.len();
        }
        assert_eq!(total, 64 * 2);
        assert!(layout.partitions_of(&"absent".into(), 3).is_empty());
    }

    #[test]
    fn accessors() {
        let layout = Layout::new(9, vec![member("b", "z", 2), member("a", "y", 1)], config(4, 2)).unwrap();
        assert_eq!(layout.version(), 9);
        assert_eq!(layout.config(), config(4, 2));
        assert_eq!(layout.partitions(), 4);
        let ids: Vec<&str> = layout.members().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(layout.member(&"b".into()).map(|m| m.weight), Some(2));
        assert!(layout.member(&"c".into()).is_none());
        assert!(format!("{layout:?}").contains("version: 9"));
    }

    #[test]
    fn heavier_nodes_own_more() {
        let ms = vec![member("a", "z", 1), member("b", "z", 4)];
        let layout = Layout::new(1, ms, RingConfig::default()).unwrap();
        let a = layout.partitions_of(&"a".into(), 1).len();
        let b = layout.partitions_of(&"b".into(), 1).len();
        assert!(b > 2 * a, "a={a} b={b}");
    }

    #[test]
    fn single_member_owns_everything() {
        let layout = Layout::new(1, nodes(1), RingConfig::default()).unwrap();
        assert_eq!(layout.partitions_of(&"n1".into(), 3).len(), 1024);
        assert_eq!(layout.preference_list(5, 3), &[NodeId::from("n1")]);
    }
}
