//! Where each node's tokens land on the ring.

use crate::node::NodeId;
use xxhash_rust::xxh3::xxh3_64;

/// Token `i` of `node`: xxh3-64 of `id ++ [0] ++ i (u32, big-endian)`.
///
/// The zero separator keeps ("n1", 0..) and ("n10", ..) from ever hashing the
/// same bytes; ids are operator strings and could otherwise run into the index.
pub(crate) fn token(node: &NodeId, i: u32) -> u64 {
    let id = node.as_str().as_bytes();
    let mut bytes = Vec::with_capacity(id.len() + 5);
    bytes.extend_from_slice(id);
    bytes.push(0);
    bytes.extend_from_slice(&i.to_be_bytes());
    xxh3_64(&bytes)
}

/// Every member's tokens, indexed by member position (members sorted by id).
#[derive(Debug)]
pub(crate) struct Tokens {
    /// Each member's tokens, sorted ascending; never empty.
    per_member: Vec<Vec<u64>>,
    /// All tokens of all members, sorted ascending.
    all: Vec<u64>,
}

impl Tokens {
    /// `counts[j]` tokens for member `ids[j]`.
    pub(crate) fn place<'a>(members: impl Iterator<Item = (&'a NodeId, u32)>) -> Tokens {
        let per_member: Vec<Vec<u64>> = members
            .map(|(id, count)| {
                let mut ts: Vec<u64> = (0..count).map(|i| token(id, i)).collect();
                ts.sort_unstable();
                ts
            })
            .collect();
        let mut all: Vec<u64> = per_member.iter().flatten().copied().collect();
        all.sort_unstable();
        Tokens { per_member, all }
    }

    pub(crate) fn members(&self) -> usize {
        self.per_member.len()
    }

    /// Clockwise distance from `start` to member `m`'s first token at or after
    /// it, wrapping past the top of the ring. Ordering members by it gives the
    /// order a clockwise walk meets them, without walking every token: a walk
    /// that must meet a light node next to heavy ones could otherwise cross
    /// most of the ring for each partition.
    pub(crate) fn distance(&self, m: usize, start: u64) -> u64 {
        let Some(ts) = self.per_member.get(m) else {
            return u64::MAX;
        };
        let i = ts.partition_point(|&t| t < start);
        ts.get(i)
            .or_else(|| ts.first())
            .map_or(u64::MAX, |t| t.wrapping_sub(start))
    }

    /// Which gap between consecutive tokens `start` falls into, named by the
    /// index of the first token at or after it (wrapping). Two starts in the
    /// same gap meet the same tokens in the same order, so have the same walk.
    pub(crate) fn gap(&self, start: u64) -> usize {
        let i = self.all.partition_point(|&t| t < start);
        if i == self.all.len() {
            0
        } else {
            i
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_keeps_ids_and_indices_apart() {
        // Without the separator "n1" token 0x30.. and "n10" could collide in bytes.
        assert_ne!(token(&NodeId::from("n1"), 0), token(&NodeId::from("n10"), 0));
        assert_eq!(token(&NodeId::from("n1"), 7), {
            let mut b = b"n1\0".to_vec();
            b.extend_from_slice(&7u32.to_be_bytes());
            xxh3_64(&b)
        });
    }

    #[test]
    fn distance_wraps_past_the_top() {
        let a = NodeId::from("a");
        let tokens = Tokens::place([(&a, 4)].into_iter());
        let ts = &tokens.per_member[0];
        let last = *ts.last().unwrap();
        assert_eq!(tokens.distance(0, ts[0]), 0);
        assert_eq!(tokens.distance(0, last.wrapping_add(1)), ts[0].wrapping_sub(last + 1));
        assert_eq!(tokens.gap(last.wrapping_add(1)), 0);
        assert_eq!(tokens.gap(ts[1]), 1);
    }
}
