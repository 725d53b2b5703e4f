//! A tictac Merkle tree (Riak's `kv_index_tictactree`): leaves are the XOR of one hash per key
//! in the segment, so a write changes one leaf, one branch and the root in O(1), with no
//! rehashing of siblings and no need to know the order writes happened in.

use serde::{Deserialize, Serialize};
use shoal_storage::{segment_of, Object, SEGMENTS};

/// Branches under the root; each covers `SEGMENTS / BRANCHES` leaves.
pub const BRANCHES: usize = 32;
pub const LEAVES_PER_BRANCH: usize = SEGMENTS as usize / BRANCHES;

/// The hash of one key at one version. Two replicas' copies hash alike exactly when they hold
/// the same writes (a dot names one write, so the dot set is the version) with the same
/// replication factor. `deleted_at` is local bookkeeping and is left out.
pub fn version_hash(key: &[u8], obj: &Object) -> u64 {
    let mut buf = Vec::with_capacity(key.len() + 16 + 24 * obj.siblings.len());
    buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
    buf.extend_from_slice(key);
    buf.push(obj.n);
    for s in obj.siblings.siblings() {
        buf.extend_from_slice(&(s.dot.actor.len() as u32).to_be_bytes());
        buf.extend_from_slice(s.dot.actor.as_bytes());
        buf.extend_from_slice(&s.dot.counter.to_be_bytes());
    }
    // Never 0, so a key always changes its leaf (XOR with 0 would make it invisible).
    xxhash_rust::xxh3::xxh3_64(&buf) | 1
}

/// Which level of a tree a peer asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeQuery {
    Root,
    Branches,
    /// The leaves under these branches, branch by branch.
    Leaves(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicTacTree {
    leaves: Vec<u64>,
    branches: [u64; BRANCHES],
    /// Keys and all-tombstone keys in the tree (tombstone GC runs only where there are some).
    keys: u64,
    tombstones: u64,
}

impl Default for TicTacTree {
    fn default() -> Self {
        Self {
            leaves: vec![0; SEGMENTS as usize],
            branches: [0; BRANCHES],
            keys: 0,
            tombstones: 0,
        }
    }
}

impl TicTacTree {
    fn toggle(&mut self, segment: u16, hash: u64) {
        self.leaves[segment as usize] ^= hash;
        self.branches[segment as usize / LEAVES_PER_BRANCH] ^= hash;
    }

    /// Add `key` at version `obj` to the tree.
    pub fn insert(&mut self, key: &[u8], obj: &Object) {
        self.toggle(segment_of(key), version_hash(key, obj));
        self.keys += 1;
        self.tombstones += obj.is_deleted() as u64;
    }

    /// Take `key` at version `obj` out of the tree (XOR is its own inverse).
    pub fn remove(&mut self, key: &[u8], obj: &Object) {
        self.toggle(segment_of(key), version_hash(key, obj));
        self.keys = self.keys.saturating_sub(1);
        self.tombstones = self.tombstones.saturating_sub(obj.is_deleted() as u64);
    }

    pub fn root(&self) -> u64 {
        self.branches.iter().fold(0, |a, b| a ^ b)
    }

    pub fn branches(&self) -> &[u64; BRANCHES] {
        &self.branches
    }

    /// The leaves under `branch`.
    pub fn leaves(&self, branch: u8) -> &[u64] {
        let b = (branch as usize).min(BRANCHES - 1);
        &self.leaves[b * LEAVES_PER_BRANCH..(b + 1) * LEAVES_PER_BRANCH]
    }

    pub fn keys(&self) -> u64 {
        self.keys
    }

    pub fn tombstones(&self) -> u64 {
        self.tombstones
    }

    /// Answer a peer's query: one hash for the root, `BRANCHES` for the branches, and
    /// `LEAVES_PER_BRANCH` per requested branch for leaves (branches out of range, and any
    /// past the first `BRANCHES` asked for, are skipped: the answer stays small whatever a
    /// peer sends).
    pub fn answer(&self, query: &TreeQuery) -> Vec<u64> {
        match query {
            TreeQuery::Root => vec![self.root()],
            TreeQuery::Branches => self.branches.to_vec(),
            TreeQuery::Leaves(bs) => bs
                .iter()
                .take(BRANCHES)
                .filter(|b| (**b as usize) < BRANCHES)
                .flat_map(|b| self.leaves(*b).iter().copied())
                .collect(),
        }
    }
}

/// Positions where two hash lists differ (a missing entry on either side counts as differing).
pub fn differing(ours: &[u64], theirs: &[u64]) -> Vec<usize> {
    (0..ours.len().max(theirs.len()))
        .filter(|&i| ours.get(i) != theirs.get(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use shoal_storage::Value;
    use shoal_version::SiblingLimits;

    fn obj(actor: &str, writes: u32, n: u8) -> Object {
        let mut o = Object {
            n,
            ..Default::default()
        };
        for i in 0..writes {
            let ctx = o.siblings.context();
            o.siblings
                .write(
                    actor,
                    &ctx,
                    Value::Data(Bytes::from(i.to_string())),
                    &SiblingLimits::default(),
                )
                .unwrap();
        }
        o
    }

    #[test]
    fn version_hash_sees_dots_and_n_but_not_the_stamp() {
        let a = obj("n1", 1, 3);
        let mut stamped = a.clone();
        stamped.deleted_at = Some(42);
        assert_eq!(version_hash(b"k", &a), version_hash(b"k", &stamped));
        assert_ne!(version_hash(b"k", &a), version_hash(b"k", &obj("n1", 2, 3)));
        assert_ne!(version_hash(b"k", &a), version_hash(b"k", &obj("n1", 1, 2)));
        assert_ne!(version_hash(b"k", &a), version_hash(b"j", &a));
    }

    proptest! {
        /// A tree kept up to date through any sequence of inserts and removals equals the tree
        /// built from the final contents, and two trees differ in exactly the segments whose
        /// contents differ.
        #[test]
        fn incremental_equals_rebuilt(ops in proptest::collection::vec((0u16..400, 1u32..4, any::<bool>()), 0..200),
                                       other in proptest::collection::vec((0u16..400, 1u32..4), 0..50)) {
            let mut live: std::collections::BTreeMap<Vec<u8>, Object> = Default::default();
            let mut tree = TicTacTree::default();
            for (k, w, put) in ops {
                let key = format!("key{k}").into_bytes();
                if let Some(old) = live.remove(&key) {
                    tree.remove(&key, &old);
                }
                if put {
                    let o = obj("n1", w, 3);
                    tree.insert(&key, &o);
                    live.insert(key, o);
                }
            }
            let mut rebuilt = TicTacTree::default();
            for (k, o) in &live {
                rebuilt.insert(k, o);
            }
            prop_assert_eq!(&tree, &rebuilt);

            let mut theirs = live.clone();
            for (k, w) in other {
                theirs.insert(format!("key{k}").into_bytes(), obj("n2", w, 3));
            }
            let mut t2 = TicTacTree::default();
            for (k, o) in &theirs {
                t2.insert(k, o);
            }
            let mut want: Vec<u16> = live.keys().chain(theirs.keys())
                .filter(|k| live.get(*k) != theirs.get(*k))
                .map(|k| segment_of(k))
                .collect();
            want.sort();
            want.dedup();
            // Descend as an exchange does: branches, then leaves of differing branches.
            let mut got = Vec::new();
            for b in differing(tree.branches(), t2.branches()) {
                for l in differing(tree.leaves(b as u8), t2.leaves(b as u8)) {
                    got.push((b * LEAVES_PER_BRANCH + l) as u16);
                }
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(tree.root() == t2.root(), live == theirs);
        }
    }
}
