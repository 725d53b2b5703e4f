//! Sibling sets kept with Dotted Version Vectors (DVV).
//!
//! Every sibling carries the dot of the write that created it and, apart from
//! it, the causal context its writer had read (`past`). Keeping the two apart
//! is what lets DVV tell "the client saw this sibling" from "the coordinator
//! happened to have this sibling stored": a plain per-key version vector
//! conflates the two and either loses concurrent writes or piles up
//! false siblings (Riak's "sibling explosion").

use serde::{Deserialize, Serialize};

use crate::{Dot, VersionVector};

/// One concurrent value of a key.
///
/// Its full history is `past ∪ {dot}`; `past` never covers `dot` itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling<V> {
    /// The write that created this value.
    pub dot: Dot,
    /// The causal context the writer had read when it wrote.
    pub past: VersionVector,
    pub value: V,
}

impl<V> Sibling<V> {
    /// Whether `self`'s writer had seen `other`, which makes `other` obsolete.
    /// A sibling never dominates itself, even if malformed.
    fn dominates(&self, other: &Sibling<V>) -> bool {
        self.dot != other.dot && self.past.covers(&other.dot)
    }
}

/// The concurrent values of one key: an antichain of siblings.
///
/// Invariants (held by everything built through `merge` and `write`, and
/// checked by [`SiblingSet::validate`] for sets that come from outside):
/// dots are distinct and at least 1, no sibling's `past` covers its own dot,
/// no sibling is dominated by another, and siblings are sorted by dot so
/// that derived equality is equality of sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiblingSet<V> {
    siblings: Vec<Sibling<V>>,
}

/// How many siblings one key may hold.
///
/// Siblings only grow when clients write without the context of their last
/// read (or race each other); past `max` a write is refused rather than
/// letting a key grow without bound, and the caller gets the context needed
/// to resolve the siblings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiblingLimits {
    /// Above this many siblings a write succeeds but is flagged.
    pub warn: usize,
    /// Above this many siblings a write is refused.
    pub max: usize,
}

impl Default for SiblingLimits {
    fn default() -> Self {
        SiblingLimits { warn: 25, max: 100 }
    }
}

/// What a successful [`SiblingSet::write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The dot minted for the new value.
    pub dot: Dot,
    /// How many siblings the key holds after the write.
    pub siblings: usize,
    /// Whether that count is above [`SiblingLimits::warn`].
    pub warn: bool,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VersionError {
    #[error("too many siblings: the write would leave {count} siblings, over the limit sibling_max = {limit}; resolve them by writing with the returned context")]
    TooManySiblings {
        count: usize,
        limit: usize,
        /// The key's current context: writing with it replaces every sibling.
        context: VersionVector,
    },
    #[error("malformed sibling set: {0}")]
    Malformed(String),
}

impl<V> Default for SiblingSet<V> {
    fn default() -> Self {
        SiblingSet { siblings: Vec::new() }
    }
}

impl<V: Clone + PartialEq> SiblingSet<V> {
    /// The empty set: a key never written (or whose every value was removed
    /// by a later write's context, which cannot happen without a new value).
    pub fn new() -> Self {
        Self::default()
    }

    /// The siblings, sorted by dot.
    pub fn siblings(&self) -> &[Sibling<V>] {
        &self.siblings
    }

    /// The sibling values, in dot order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.siblings.iter().map(|s| &s.value)
    }

    /// Takes the siblings out, sorted by dot.
    pub fn into_siblings(self) -> Vec<Sibling<V>> {
        self.siblings
    }

    pub fn len(&self) -> usize {
        self.siblings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// Everything this set has seen: the join of every sibling's past and
    /// dot. A read returns it; writing with it supersedes every sibling.
    pub fn context(&self) -> VersionVector {
        let mut ctx = VersionVector::new();
        for s in &self.siblings {
            ctx.join(&s.past);
            ctx.add_dot(&s.dot);
        }
        ctx
    }

    /// In-place join with `other` (anti-entropy, read repair, hinted
    /// handoff): union by dot, then drop every sibling another one has seen.
    ///
    /// A dot names one write, so equal dots carry equal values; should they
    /// not, `self`'s copy is kept.
    pub fn merge(&mut self, other: &SiblingSet<V>) {
        let mut union = std::mem::take(&mut self.siblings);
        union.extend(other.siblings.iter().cloned());
        // A stable sort puts `self`'s copy of a shared dot first, and
        // `dedup_by` keeps the first of each run. Sorting the concatenation
        // (rather than merging two sorted runs) also copes with unsorted input.
        union.sort_by(|a, b| a.dot.cmp(&b.dot));
        union.dedup_by(|later, earlier| later.dot == earlier.dot);
        let obsolete: Vec<bool> = union.iter().map(|a| union.iter().any(|b| b.dominates(a))).collect();
        self.siblings = union
            .into_iter()
            .zip(obsolete)
            .filter_map(|(s, gone)| (!gone).then_some(s))
            .collect();
    }

    /// Coordinates a write of `value` by `actor` from a client that had read
    /// `ctx` (empty if it read nothing).
    ///
    /// Exactly the siblings `ctx` covers are replaced; the others, which the
    /// client never saw, stay as concurrent siblings. The new dot's counter
    /// is above every counter of `actor` this set or `ctx` knows, so it is
    /// fresh as long as only `actor`'s own replica mints `actor`'s dots.
    ///
    /// If the result would hold more than `limits.max` siblings the write is
    /// refused, `self` is left unchanged and the error carries the current
    /// context, with which a client can collapse the siblings.
    pub fn write(
        &mut self,
        actor: &str,
        ctx: &VersionVector,
        value: V,
        limits: &SiblingLimits,
    ) -> Result<WriteOutcome, VersionError> {
        self.write_above(actor, ctx, value, limits, 0)
    }

    /// [`SiblingSet::write`], with the new dot's counter also above `floor`.
    ///
    /// A replica that no longer holds a key (its tombstone was collected, or the partition
    /// moved away and back) would otherwise mint counters from 1 again, and a dot it minted
    /// before, still held by another replica, would cover the new write and silently drop it
    /// (Riak's KV679). A node-wide counter floor that only grows keeps every new dot fresh.
    pub fn write_above(
        &mut self,
        actor: &str,
        ctx: &VersionVector,
        value: V,
        limits: &SiblingLimits,
        floor: u64,
    ) -> Result<WriteOutcome, VersionError> {
        let highest = self
            .siblings
            .iter()
            .map(|s| {
                let own = if s.dot.actor == actor { s.dot.counter } else { 0 };
                own.max(s.past.get(actor))
            })
            .fold(ctx.get(actor).max(floor), u64::max);
        let counter = highest
            .checked_add(1)
            .ok_or_else(|| VersionError::Malformed(format!("the counter of actor {actor} is exhausted")))?;

        let count = 1 + self.siblings.iter().filter(|s| !ctx.covers(&s.dot)).count();
        if count > limits.max {
            return Err(VersionError::TooManySiblings {
                count,
                limit: limits.max,
                context: self.context(),
            });
        }

        let dot = Dot::new(actor, counter);
        self.siblings.retain(|s| !ctx.covers(&s.dot));
        let at = self.siblings.partition_point(|s| s.dot < dot);
        self.siblings.insert(
            at,
            Sibling {
                dot: dot.clone(),
                // Rebuilt rather than cloned so that a context decoded by
                // someone else with stray zero entries cannot make this set
                // fail `validate` later.
                past: ctx.iter().collect(),
                value,
            },
        );
        Ok(WriteOutcome {
            dot,
            siblings: count,
            warn: count > limits.warn,
        })
    }

    /// True when `self` already contains everything in `other`
    /// (merge(self, other) == self). Used by read repair to decide whom to
    /// repair.
    ///
    /// For an antichain `self` that holds exactly when every sibling of
    /// `other` is in `self` or seen by one of `self`'s, and no sibling of
    /// `self` is seen by one of `other`'s; checking that avoids cloning.
    pub fn covers(&self, other: &SiblingSet<V>) -> bool {
        let has_all = other
            .siblings
            .iter()
            .all(|o| self.siblings.iter().any(|s| s.dot == o.dot || s.dominates(o)));
        has_all
            && !self
                .siblings
                .iter()
                .any(|s| other.siblings.iter().any(|o| o.dominates(s)))
    }

    /// Validate a set that came from outside (disk or peer): distinct dots, counters >= 1, antichain. Returns VersionError::Malformed(reason) otherwise.
    ///
    /// Also refuses zero entries in a past, a past that covers its own
    /// sibling's dot, and siblings out of dot order (which would break
    /// canonical equality).
    pub fn validate(&self) -> Result<(), VersionError> {
        let malformed = |reason: String| Err(VersionError::Malformed(reason));
        for s in &self.siblings {
            if s.dot.counter == 0 {
                return malformed(format!("sibling of actor {} has counter 0", s.dot.actor));
            }
            if let Some((actor, _)) = s.past.iter().find(|&(_, c)| c == 0) {
                return malformed(format!(
                    "the past of sibling {} has a zero counter for actor {actor}",
                    s.dot
                ));
            }
            if s.past.covers(&s.dot) {
                return malformed(format!("sibling {} has its own dot in its past", s.dot));
            }
        }

        let mut dots: Vec<&Dot> = self.siblings.iter().map(|s| &s.dot).collect();
        let in_order = dots.windows(2).all(|w| w[0] < w[1]);
        dots.sort();
        if let Some(w) = dots.windows(2).find(|w| w[0] == w[1]) {
            return malformed(format!("dot {} appears on two siblings", w[0]));
        }
        if !in_order {
            return malformed("siblings are not sorted by dot".to_owned());
        }

        for a in &self.siblings {
            if let Some(b) = self.siblings.iter().find(|b| b.dominates(a)) {
                return malformed(format!(
                    "sibling {} is obsolete: the past of sibling {} covers it",
                    a.dot, b.dot
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        entries.iter().map(|&(a, c)| (a, c)).collect()
    }

    fn unlimited() -> SiblingLimits {
        SiblingLimits {
            warn: usize::MAX,
            max: usize::MAX,
        }
    }

    fn values(set: &SiblingSet<u32>) -> Vec<u32> {
        let mut v: Vec<u32> = set.values().copied().collect();
        v.sort();
        v
    }

    fn sib(actor: &str, counter: u64, past: &[(&str, u64)], value: u32) -> Sibling<u32> {
        Sibling {
            dot: Dot::new(actor, counter),
            past: vv(past),
            value,
        }
    }

    fn raw(siblings: Vec<Sibling<u32>>) -> SiblingSet<u32> {
        SiblingSet { siblings }
    }

    #[test]
    fn default_limits_are_25_and_100() {
        assert_eq!(SiblingLimits::default(), SiblingLimits { warn: 25, max: 100 });
    }

    #[test]
    fn a_floor_keeps_a_forgotten_key_s_dots_fresh() {
        // A replica that minted n1:5 for a key, then lost the key (tombstone GC), must not
        // mint n1:1 again: another replica's {n1:5} would cover it and drop the write.
        let mut old = SiblingSet::new();
        for v in 0..5u32 {
            old.write("n1", &old.context(), v, &unlimited()).unwrap();
        }
        let mut fresh = SiblingSet::new();
        let out = fresh
            .write_above("n1", &VersionVector::new(), 9, &unlimited(), 5)
            .unwrap();
        assert_eq!(out.dot, Dot::new("n1", 6));
        let mut merged = old.clone();
        merged.merge(&fresh);
        assert!(merged.values().any(|v| *v == 9), "the new write survives the merge");
        let mut unfloored = SiblingSet::new();
        unfloored.write("n1", &VersionVector::new(), 9, &unlimited()).unwrap();
        let mut lost = old;
        lost.merge(&unfloored);
        assert!(
            !lost.values().any(|v| *v == 9),
            "without the floor the old clock covers it"
        );
    }

    #[test]
    fn first_write_mints_counter_one() {
        let mut s = SiblingSet::new();
        let out = s.write("n1", &VersionVector::new(), 7u32, &unlimited()).unwrap();
        assert_eq!(out.dot, Dot::new("n1", 1));
        assert_eq!(out.siblings, 1);
        assert!(!out.warn);
        assert_eq!(s.context(), vv(&[("n1", 1)]));
    }

    #[test]
    fn write_with_context_replaces_what_was_read() {
        let mut s = SiblingSet::new();
        s.write("n1", &VersionVector::new(), 1u32, &unlimited()).unwrap();
        let ctx = s.context();
        let out = s.write("n1", &ctx, 2, &unlimited()).unwrap();
        assert_eq!(out.dot, Dot::new("n1", 2));
        assert_eq!(values(&s), vec![2]);
        assert_eq!(s.siblings()[0].past, ctx);
    }

    #[test]
    fn blind_writes_become_siblings() {
        let mut s = SiblingSet::new();
        s.write("n1", &VersionVector::new(), 1u32, &unlimited()).unwrap();
        s.write("n1", &VersionVector::new(), 2, &unlimited()).unwrap();
        assert_eq!(values(&s), vec![1, 2]);
        s.write("n1", &s.context(), 3, &unlimited()).unwrap();
        assert_eq!(values(&s), vec![3]);
    }

    #[test]
    fn counter_exceeds_counters_seen_in_context_and_pasts() {
        let mut s = raw(vec![sib("n2", 1, &[("n1", 5)], 0)]);
        let out = s.write("n1", &vv(&[("n1", 2)]), 1, &unlimited()).unwrap();
        assert_eq!(out.dot, Dot::new("n1", 6));
        let out = s.write("n3", &vv(&[("n3", 9)]), 2, &unlimited()).unwrap();
        assert_eq!(out.dot, Dot::new("n3", 10));
    }

    #[test]
    fn concurrent_writes_on_two_replicas_survive_merge() {
        let mut a = SiblingSet::new();
        let mut b = SiblingSet::new();
        a.write("n1", &VersionVector::new(), 1u32, &unlimited()).unwrap();
        b.write("n2", &VersionVector::new(), 2, &unlimited()).unwrap();
        a.merge(&b);
        assert_eq!(values(&a), vec![1, 2]);
        a.write("n1", &a.context(), 3, &unlimited()).unwrap();
        b.merge(&a);
        assert_eq!(values(&b), vec![3]);
        assert_eq!(a, b);
    }

    #[test]
    fn context_from_another_replica_supersedes_on_merge() {
        // A client reads from n2, then writes through n1, which has not yet
        // received n2's value: n2's value must not survive the next merge.
        let mut n1 = SiblingSet::new();
        let mut n2 = SiblingSet::new();
        n2.write("n2", &VersionVector::new(), 1u32, &unlimited()).unwrap();
        n1.write("n1", &n2.context(), 2, &unlimited()).unwrap();
        n2.merge(&n1);
        assert_eq!(values(&n2), vec![2]);
    }

    #[test]
    fn too_many_siblings_is_refused_without_change() {
        let limits = SiblingLimits { warn: 1, max: 3 };
        let mut s = SiblingSet::new();
        let empty = VersionVector::new();
        assert!(!s.write("n1", &empty, 1u32, &limits).unwrap().warn);
        let out = s.write("n1", &empty, 2, &limits).unwrap();
        assert!(out.warn);
        assert_eq!(out.siblings, 2);
        assert_eq!(s.write("n1", &empty, 3, &limits).unwrap().siblings, 3);
        let before = s.clone();
        let err = s.write("n1", &empty, 4, &limits).unwrap_err();
        assert_eq!(
            err,
            VersionError::TooManySiblings {
                count: 4,
                limit: 3,
                context: before.context()
            }
        );
        assert!(err.to_string().contains("sibling_max = 3"));
        assert_eq!(s, before);
        // The returned context resolves the siblings.
        let VersionError::TooManySiblings { context, .. } = err else {
            unreachable!()
        };
        assert_eq!(s.write("n1", &context, 5, &limits).unwrap().siblings, 1);
    }

    #[test]
    fn exhausted_counter_is_an_error_not_a_panic() {
        let mut s = SiblingSet::new();
        let ctx = vv(&[("n1", u64::MAX)]);
        assert!(matches!(
            s.write("n1", &ctx, 1u32, &unlimited()),
            Err(VersionError::Malformed(_))
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn merge_drops_siblings_the_other_side_has_seen() {
        let mut a = raw(vec![sib("n1", 1, &[], 1)]);
        let b = raw(vec![sib("n2", 1, &[("n1", 1)], 2)]);
        assert!(!a.covers(&b));
        assert!(b.covers(&a));
        a.merge(&b);
        assert_eq!(a, b);
    }

    #[test]
    fn merge_keeps_own_copy_of_a_shared_dot() {
        let mut a = raw(vec![sib("n1", 1, &[], 1), sib("n2", 1, &[], 2)]);
        let b = raw(vec![sib("n1", 1, &[], 99), sib("n3", 1, &[], 3)]);
        a.merge(&b);
        assert_eq!(a.values().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn merge_sorts_unsorted_input() {
        let mut a = SiblingSet::new();
        a.merge(&raw(vec![sib("n2", 1, &[], 2), sib("n1", 1, &[], 1)]));
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn covers_matches_merge() {
        let a = raw(vec![sib("n1", 1, &[], 1)]);
        let b = raw(vec![sib("n2", 1, &[], 2)]);
        assert!(!a.covers(&b));
        assert!(a.covers(&SiblingSet::new()));
        assert!(a.covers(&a));
        assert!(!SiblingSet::new().covers(&a));
    }

    #[test]
    fn validate_accepts_reachable_sets() {
        let mut s = SiblingSet::new();
        s.write("n1", &VersionVector::new(), 1u32, &unlimited()).unwrap();
        s.write("n2", &VersionVector::new(), 2, &unlimited()).unwrap();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(SiblingSet::<u32>::new().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_duplicate_dots() {
        let s = raw(vec![sib("n1", 1, &[], 1), sib("n1", 1, &[], 2)]);
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains("n1:1 appears on two siblings"), "{err}");
    }

    #[test]
    fn validate_rejects_zero_counters() {
        assert!(raw(vec![sib("n1", 0, &[], 1)]).validate().is_err());
        let mut zero_past = sib("n1", 1, &[], 1);
        let mut map = std::collections::BTreeMap::new();
        map.insert("n2".to_owned(), 0u64);
        zero_past.past = rmp_serde::from_slice(&rmp_serde::to_vec(&map).unwrap()).unwrap();
        assert!(raw(vec![zero_past]).validate().is_err());
    }

    #[test]
    fn validate_rejects_dominated_siblings() {
        let s = raw(vec![sib("n1", 1, &[], 1), sib("n2", 1, &[("n1", 1)], 2)]);
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains("n1:1 is obsolete"), "{err}");
    }

    #[test]
    fn validate_rejects_own_dot_in_past_and_bad_order() {
        assert!(raw(vec![sib("n1", 2, &[("n1", 2)], 1)]).validate().is_err());
        let unsorted = raw(vec![sib("n2", 1, &[], 1), sib("n1", 1, &[], 2)]);
        assert!(unsorted.validate().is_err());
    }

    #[test]
    fn named_msgpack_round_trip() {
        let mut s = SiblingSet::new();
        let limits = unlimited();
        s.write("n1", &VersionVector::new(), bytes::Bytes::from_static(b"a"), &limits)
            .unwrap();
        s.write("n2", &VersionVector::new(), bytes::Bytes::from_static(b"b"), &limits)
            .unwrap();
        let encoded = rmp_serde::to_vec_named(&s).unwrap();
        let decoded: SiblingSet<bytes::Bytes> = rmp_serde::from_slice(&encoded).unwrap();
        assert_eq!(decoded, s);
        assert_eq!(decoded.validate(), Ok(()));
    }

    #[test]
    fn garbage_bytes_do_not_decode_into_a_set() {
        for junk in [&b""[..], b"\x00", b"\xc1", b"\x91\x92", b"\xdf\xff\xff\xff\xff"] {
            assert!(rmp_serde::from_slice::<SiblingSet<u32>>(junk).is_err());
        }
    }
}
