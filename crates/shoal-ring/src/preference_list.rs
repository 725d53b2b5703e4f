//! The order in which a partition's owners are chosen: the clockwise ring
//! walk, re-ordered so that every prefix spans as many zones as it can.

use crate::token::Tokens;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Members (by index) in the order a clockwise walk from `start` first meets
/// them. Ties on a shared token value go to the lower member index, i.e. the
/// lower node id, so every node breaks them the same way.
pub(crate) fn ring_order(tokens: &Tokens, start: u64) -> Vec<usize> {
    let mut order: Vec<(u64, usize)> = (0..tokens.members()).map(|m| (tokens.distance(m, start), m)).collect();
    order.sort_unstable();
    order.into_iter().map(|(_, m)| m).collect()
}

/// Re-order `ring` so each prefix is as zone-diverse as possible.
///
/// Greedy: at each step take the earliest remaining node (in ring order) among
/// the zones with the fewest picks so far, counting only zones that still have
/// nodes left. Staying as close to ring order as the zone rule allows is what
/// keeps a membership change from reshuffling owners beyond the nodes
/// involved; with a single zone the output is exactly `ring`.
pub(crate) fn zone_diverse(ring: &[usize], zone_of: &[usize], zones: usize) -> Vec<usize> {
    // Each zone's nodes, in ring order.
    let mut per_zone: Vec<Vec<usize>> = vec![Vec::new(); zones];
    for &m in ring {
        if let Some(q) = zone_of.get(m).and_then(|&z| per_zone.get_mut(z)) {
            q.push(m);
        }
    }
    let position = {
        let mut pos = vec![usize::MAX; zone_of.len()];
        for (i, &m) in ring.iter().enumerate() {
            if let Some(slot) = pos.get_mut(m) {
                *slot = i;
            }
        }
        pos
    };
    let pos_of = |m: usize| position.get(m).copied().unwrap_or(usize::MAX);

    // Min-heap of (picks so far, ring position of the zone's next node, zone).
    // Only zones with nodes left are in it, which is the "still has unpicked
    // nodes" rule for free.
    let mut heads = vec![0usize; zones];
    let mut heap: BinaryHeap<Reverse<(usize, usize, usize)>> = per_zone
        .iter()
        .enumerate()
        .filter_map(|(z, q)| q.first().map(|&m| Reverse((0, pos_of(m), z))))
        .collect();

    let mut out = Vec::with_capacity(ring.len());
    while let Some(Reverse((picks, _, z))) = heap.pop() {
        let (Some(q), Some(head)) = (per_zone.get(z), heads.get_mut(z)) else {
            continue;
        };
        if let Some(&m) = q.get(*head) {
            out.push(m);
        }
        *head += 1;
        if let Some(&next) = q.get(*head) {
            heap.push(Reverse((picks + 1, pos_of(next), z)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_zone_keeps_ring_order() {
        let ring = [3, 1, 0, 2];
        assert_eq!(zone_diverse(&ring, &[0, 0, 0, 0], 1), ring);
    }

    #[test]
    fn spreads_prefixes_over_zones() {
        // Members 0,1,2 in zone 0; 3 in zone 1; 4 in zone 2.
        let zone_of = [0, 0, 0, 1, 2];
        let ring = [0, 1, 2, 3, 4];
        assert_eq!(zone_diverse(&ring, &zone_of, 3), [0, 3, 4, 1, 2]);
    }

    #[test]
    fn exhausted_zones_stop_counting() {
        // Zone 1 has one node; once it is used zone 0 fills the rest in order.
        let zone_of = [0, 0, 0, 1];
        let ring = [3, 0, 1, 2];
        assert_eq!(zone_diverse(&ring, &zone_of, 2), [3, 0, 1, 2]);
        let ring = [0, 1, 2, 3];
        assert_eq!(zone_diverse(&ring, &zone_of, 2), [0, 3, 1, 2]);
    }

    #[test]
    fn earliest_wins_among_least_used_zones() {
        // Zones A={0,2}, B={1,3}: alternates, each time taking the earliest.
        let zone_of = [0, 1, 0, 1, 0];
        let ring = [0, 2, 4, 1, 3];
        assert_eq!(zone_diverse(&ring, &zone_of, 2), [0, 1, 2, 3, 4]);
    }
}
