//! Properties every layout must have, whatever the members.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use shoal_ring::{Layout, Member, NodeId, RingConfig};
use std::collections::{BTreeSet, HashSet};

fn member(id: &str, zone: &str, weight: u32) -> Member {
    Member {
        id: NodeId::from(id),
        zone: zone.to_owned(),
        weight,
    }
}

fn node_names(count: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z][a-z0-9]{0,7}", count).prop_map(|s| s.into_iter().collect())
}

/// 1..=12 members over 1..=4 zones with weights 1..=3, in a shuffled order.
fn members() -> impl Strategy<Value = Vec<Member>> {
    node_names(1..=12)
        .prop_flat_map(|names| {
            let n = names.len();
            (
                Just(names),
                prop::collection::vec(0..4u8, n),
                prop::collection::vec(1..=3u32, n),
            )
        })
        .prop_map(|(names, zones, weights)| {
            names
                .iter()
                .zip(zones)
                .zip(weights)
                .map(|((id, z), w)| member(id, &format!("z{z}"), w))
                .collect()
        })
}

fn config() -> impl Strategy<Value = RingConfig> {
    (prop::sample::select(vec![1u32, 2, 16, 256, 1024]), 1..=64u32).prop_map(|(partitions, tokens_per_weight)| {
        RingConfig {
            partitions,
            tokens_per_weight,
        }
    })
}

fn walks(layout: &Layout) -> Vec<Vec<NodeId>> {
    (0..layout.partitions()).map(|p| layout.walk(p).to_vec()).collect()
}

proptest! {
    // Failures are saved next to this file; the default looks for a lib.rs,
    // which integration tests do not have.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn lookups_are_deterministic(
        (ms, shuffled) in members().prop_flat_map(|ms| (Just(ms.clone()), Just(ms).prop_shuffle())),
        cfg in config(),
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 1..16),
    ) {
        let a = Layout::new(1, ms, cfg).unwrap();
        let b = Layout::new(1, shuffled, cfg).unwrap();
        prop_assert_eq!(a.members(), b.members());
        prop_assert_eq!(walks(&a), walks(&b));
        for key in &keys {
            let p = a.partition_of(key);
            prop_assert!(p < cfg.partitions);
            prop_assert_eq!(p, b.partition_of(key));
            prop_assert_eq!(p, a.partition_of(key));
        }
    }

    #[test]
    fn preference_lists_are_distinct_nodes(ms in members(), cfg in config(), n in 0usize..16) {
        let layout = Layout::new(1, ms.clone(), cfg).unwrap();
        let all: BTreeSet<&NodeId> = ms.iter().map(|m| &m.id).collect();
        for p in 0..layout.partitions() {
            let walk = layout.walk(p);
            prop_assert_eq!(walk.len(), ms.len());
            prop_assert_eq!(walk.iter().collect::<BTreeSet<_>>(), all.clone());
            let list = layout.preference_list(p, n);
            prop_assert_eq!(list.len(), n.min(ms.len()));
            prop_assert_eq!(list.iter().collect::<HashSet<_>>().len(), list.len());
        }
    }

    #[test]
    fn first_k_replicas_span_k_zones(
        per_zone in prop::collection::vec(1..=4usize, 1..=5),
        cfg in config(),
    ) {
        let ms: Vec<Member> = per_zone
            .iter()
            .enumerate()
            .flat_map(|(z, &count)| (0..count).map(move |i| member(&format!("z{z}n{i}"), &format!("z{z}"), 1)))
            .collect();
        let zone = |id: &NodeId| ms.iter().find(|m| &m.id == id).map(|m| m.zone.clone());
        let k = per_zone.len();
        let layout = Layout::new(1, ms.clone(), cfg).unwrap();
        for p in 0..layout.partitions() {
            for n in 1..=k {
                let zones: HashSet<_> = layout.preference_list(p, n).iter().map(zone).collect();
                prop_assert_eq!(zones.len(), n, "partition {} n {}", p, n);
            }
        }
    }

    #[test]
    fn adding_a_node_only_moves_partitions_to_it(names in node_names(4..=11)) {
        let (new, old) = names.split_last().unwrap();
        let s = old.len();
        let new = NodeId::from(new.as_str());
        let before: Vec<Member> = old.iter().map(|id| member(id, "z", 1)).collect();
        let mut after = before.clone();
        after.push(member(new.as_str(), "z", 1));
        let cfg = RingConfig::default();
        let before = Layout::new(1, before, cfg).unwrap();
        let after = Layout::new(2, after, cfg).unwrap();

        let mut primary_moved = 0u32;
        for p in 0..cfg.partitions {
            let old_list = before.preference_list(p, 3);
            let new_list = after.preference_list(p, 3);
            for id in new_list.iter().filter(|id| **id != new) {
                prop_assert!(old_list.contains(id), "partition {}: {} moved in between old nodes", p, id);
            }
            if !new_list.contains(&new) {
                prop_assert_eq!(old_list, new_list);
            }
            if old_list[0] != new_list[0] {
                prop_assert_eq!(&new_list[0], &new);
                primary_moved += 1;
            }
        }
        // The new node becomes primary for the partitions whose start falls in
        // the arcs ending at its tokens, so the moved fraction is its ring
        // share. That share is a sum of 64 gaps between (S+1)·64 random
        // tokens: about Gamma(64)/(S+1)·64, i.e. mean 1/(S+1) with a relative
        // spread of 1/√64 = 12.5%, plus sampling it at 1024 partition starts.
        // The bounds sit about 5σ below and 8σ above the mean, so a failure
        // means the placement is broken, not an unlucky draw.
        let fraction = f64::from(primary_moved) / f64::from(cfg.partitions);
        let fair = 1.0 / (s as f64 + 1.0);
        prop_assert!(
            (0.4 * fair..=2.0 * fair).contains(&fraction),
            "S={} moved {} of {} partitions, fraction {:.3} vs fair {:.3}",
            s, primary_moved, cfg.partitions, fraction, fair
        );
    }
}
