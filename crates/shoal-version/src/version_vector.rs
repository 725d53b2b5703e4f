//! Version vectors: a summary of which dots a replica or client has seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Dot;

/// For each actor, the highest counter seen; every dot of that actor with a
/// counter at or below it counts as seen.
///
/// That "everything up to n" reading is sound because an actor only mints
/// a counter above all of its own counters it knows of, and the contexts
/// Shoal builds are causally closed (a context that covers a dot also covers
/// that dot's past). So a single number per actor can stand for a whole
/// prefix of that actor's history.
///
/// Entries are never 0: "absent" already means 0, and keeping a single
/// spelling of each vector makes derived equality meaningful. Vectors built
/// through this API keep that invariant; vectors decoded from outside are
/// checked by `SiblingSet::validate` and `ContextCodec::decode`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(BTreeMap<String, u64>);

impl VersionVector {
    pub fn new() -> Self {
        VersionVector(BTreeMap::new())
    }

    /// The highest counter of `actor` seen, 0 if none.
    pub fn get(&self, actor: &str) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Whether the write named by `dot` has been seen.
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(&dot.actor)
    }

    /// Records `dot` as seen: entry = max(entry, dot.counter).
    pub fn add_dot(&mut self, dot: &Dot) {
        self.raise(&dot.actor, dot.counter);
    }

    /// Pointwise max: afterwards `self` has seen everything either side had.
    pub fn join(&mut self, other: &VersionVector) {
        for (actor, counter) in other.iter() {
            self.raise(actor, counter);
        }
    }

    /// Whether `self` has seen everything `other` has (`self >= other`
    /// pointwise). Equal vectors descend each other.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.iter().all(|(actor, counter)| self.get(actor) >= counter)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of actors with a non-zero entry.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(actor, counter)| (actor.as_str(), *counter))
    }

    /// Sets `actor`'s entry to at least `counter`, never storing a 0.
    fn raise(&mut self, actor: &str, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.0.get_mut(actor) {
            Some(entry) => *entry = (*entry).max(counter),
            None => {
                self.0.insert(actor.to_owned(), counter);
            }
        }
    }
}

/// Collects `(actor, counter)` pairs; repeated actors keep the highest
/// counter and zero counters are dropped.
impl<S: Into<String>> FromIterator<(S, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (S, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (actor, counter) in iter {
            vv.raise(&actor.into(), counter);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries.iter().map(|&(a, c)| (a, c)).collect()
    }

    #[test]
    fn absent_actor_reads_as_zero() {
        let v = vv(&[("n1", 3)]);
        assert_eq!(v.get("n1"), 3);
        assert_eq!(v.get("n2"), 0);
    }

    #[test]
    fn covers_every_counter_up_to_the_entry() {
        let v = vv(&[("n1", 3)]);
        assert!(v.covers(&Dot::new("n1", 1)));
        assert!(v.covers(&Dot::new("n1", 3)));
        assert!(!v.covers(&Dot::new("n1", 4)));
        assert!(!v.covers(&Dot::new("n2", 1)));
    }

    #[test]
    fn add_dot_keeps_the_max() {
        let mut v = vv(&[("n1", 5)]);
        v.add_dot(&Dot::new("n1", 2));
        assert_eq!(v.get("n1"), 5);
        v.add_dot(&Dot::new("n1", 8));
        assert_eq!(v.get("n1"), 8);
        v.add_dot(&Dot::new("n2", 1));
        assert_eq!(v, vv(&[("n1", 8), ("n2", 1)]));
    }

    #[test]
    fn zero_counters_are_never_stored() {
        let mut v = VersionVector::new();
        v.add_dot(&Dot::new("n1", 0));
        assert!(v.is_empty());
        assert_eq!(vv(&[("n1", 0), ("n2", 2)]), vv(&[("n2", 2)]));
    }

    #[test]
    fn join_is_pointwise_max() {
        let mut a = vv(&[("n1", 3), ("n2", 1)]);
        a.join(&vv(&[("n2", 4), ("n3", 2)]));
        assert_eq!(a, vv(&[("n1", 3), ("n2", 4), ("n3", 2)]));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn descends_is_pointwise_ge() {
        let big = vv(&[("n1", 3), ("n2", 4)]);
        let small = vv(&[("n1", 2)]);
        let other = vv(&[("n3", 1)]);
        assert!(big.descends(&small));
        assert!(!small.descends(&big));
        assert!(big.descends(&big));
        assert!(big.descends(&VersionVector::new()));
        assert!(!big.descends(&other));
        assert!(!other.descends(&big));
    }

    #[test]
    fn iter_is_in_actor_order() {
        let v = vv(&[("n2", 1), ("n1", 3)]);
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![("n1", 3), ("n2", 1)]);
    }

    #[test]
    fn serializes_as_a_plain_map() {
        let v = vv(&[("n1", 3), ("n2", 1)]);
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        let as_map: BTreeMap<String, u64> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(as_map.len(), 2);
        assert_eq!(rmp_serde::from_slice::<VersionVector>(&bytes).unwrap(), v);
    }
}
