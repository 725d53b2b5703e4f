//! The checkers every run's history goes through, in the simulator and in the real-process
//! nemesis suite alike. Each anomaly names its checker, the key, and the writes involved.
//!
//! - **no-lost-writes**: every element added by an acknowledged write is in the key's final
//!   value (the union of its final siblings' sets), unless a delete whose context covered that
//!   write was attempted, or at least w nodes were removed for good after it began.
//! - **convergence**: after heal and quiescence every replica of a key holds the same siblings,
//!   within the run's bound.
//! - **causality**: no read, and no replica, holds a sibling together with a sibling whose
//!   writer had read it (the DVV antichain); and no final sibling is one an acknowledged write
//!   superseded.
//! - **no-resurrection**: no final sibling is one an acknowledged delete's context covered.
//! - **quorum-intersection**: a read with `r + w > n`, started after an acknowledged write of
//!   the same key with the same `n`, where neither used a stand-in (no hinted acks or
//!   replies), reflects that write or something that superseded it. Where reads hide a
//!   tombstone beside values, a delete is reflected by values it did not cover.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::history::{History, Op, OpKind, Outcome, Sib, WriteId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub checker: String,
    pub key: String,
    pub detail: String,
}

/// What the checkers looked at and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub ops: usize,
    pub reads: usize,
    pub writes: usize,
    pub acked_writes: usize,
    pub deletes: usize,
    /// Elements the final state had to hold.
    pub required_elements: usize,
    /// (write, later read) pairs the quorum-intersection checker compared.
    pub intersection_pairs: usize,
    pub keys: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.anomalies.is_empty()
    }
}

struct Write<'a> {
    op: &'a Op,
    element: Option<u64>,
    n: u8,
    w: u8,
    acked: Option<u8>,
}

/// Judge a history.
pub fn check(history: &History) -> Verdict {
    let mut v = Verdict {
        ops: history.ops.len(),
        keys: history.final_state.replicas.len(),
        ..Verdict::default()
    };
    let found: RefCell<Vec<Anomaly>> = RefCell::new(Vec::new());
    let anomaly = |checker: &str, key: &str, detail: String| {
        found.borrow_mut().push(Anomaly {
            checker: checker.into(),
            key: key.into(),
            detail,
        })
    };

    // Every write by id, with the writes its context covered.
    let mut writes: BTreeMap<WriteId, Write> = BTreeMap::new();
    let mut parents_of: BTreeMap<WriteId, &[WriteId]> = BTreeMap::new();
    for op in &history.ops {
        match &op.kind {
            OpKind::Read { .. } => v.reads += 1,
            OpKind::Write {
                write,
                element,
                parents,
                n,
                w,
                ..
            } => {
                v.writes += 1;
                if element.is_none() {
                    v.deletes += 1;
                }
                let acked = match &op.outcome {
                    Outcome::Ok { hinted, .. } => {
                        v.acked_writes += 1;
                        Some(*hinted)
                    }
                    Outcome::Failed(_) => None,
                };
                parents_of.insert(*write, parents);
                writes.insert(
                    *write,
                    Write {
                        op,
                        element: *element,
                        n: *n,
                        w: *w,
                        acked,
                    },
                );
            }
        }
    }
    // Ancestors: what each write superseded, transitively. A sibling read before its own
    // write was acknowledged is fine; one no write of the history made is not.
    let mut ancestors: BTreeMap<WriteId, BTreeSet<WriteId>> = BTreeMap::new();
    for &id in writes.keys() {
        let mut anc = BTreeSet::new();
        let mut stack: Vec<WriteId> = parents_of[&id].to_vec();
        while let Some(p) = stack.pop() {
            if !anc.insert(p) {
                continue;
            }
            match parents_of.get(&p) {
                Some(ps) => stack.extend(ps.iter().copied()),
                None => anomaly(
                    "causality",
                    &writes[&id].op.key,
                    format!("write {id} read sibling {p}, which no write of the history made"),
                ),
            }
        }
        if anc.contains(&id) {
            anomaly(
                "causality",
                &writes[&id].op.key,
                format!("write {id} is among its own ancestors"),
            );
        }
        ancestors.insert(id, anc);
    }
    let is_ancestor = |a: WriteId, of: WriteId| ancestors.get(&of).is_some_and(|s| s.contains(&a));
    // Writes some delete's context covered (whether or not the delete was acknowledged: a
    // failed delete may still have landed), with the earliest such delete's start.
    // And for each, the deletes that covered it.
    let mut deleted: BTreeMap<WriteId, u64> = BTreeMap::new();
    let mut covering: BTreeMap<WriteId, Vec<WriteId>> = BTreeMap::new();
    for (id, w) in writes.iter().filter(|(_, w)| w.element.is_none()) {
        for covered in ancestors[id].iter().chain([id]) {
            let t = deleted.entry(*covered).or_insert(u64::MAX);
            *t = (*t).min(w.op.invoked_ms);
            covering.entry(*covered).or_default().push(*id);
        }
    }

    // Causality within one answer: no sibling may be an ancestor of another.
    let antichain = |what: &str, key: &str, sibs: &[Sib]| {
        let ids: Vec<WriteId> = sibs.iter().filter_map(Sib::write).collect();
        for &a in &ids {
            for &b in &ids {
                if a != b && is_ancestor(a, b) {
                    anomaly(
                        "causality",
                        key,
                        format!("{what} returned write {a} beside write {b}, whose writer had read {a}"),
                    );
                }
            }
        }
    };
    for op in &history.ops {
        if let (OpKind::Read { .. }, Outcome::Ok { returned, .. }) = (&op.kind, &op.outcome) {
            antichain(
                &format!("a read at {} ms via {}", op.invoked_ms, op.node),
                &op.key,
                returned,
            );
        }
    }

    // The final state.
    let fs = &history.final_state;
    for (key, replicas) in &fs.replicas {
        for (node, sibs) in replicas {
            antichain(&format!("replica {node} (final)"), key, sibs);
        }
        let mut sets = replicas.values();
        if let Some(first) = sets.next() {
            if sets.any(|s| s != first) {
                let views: Vec<String> = replicas
                    .iter()
                    .map(|(n, s)| format!("{n}: {:?}", s.iter().map(Sib::write).collect::<Vec<_>>()))
                    .collect();
                anomaly(
                    "convergence",
                    key,
                    format!(
                        "replicas still differ {} ms after heal: {}",
                        fs.bound_ms,
                        views.join("; ")
                    ),
                );
            }
        }
    }
    if fs.converged_after_ms.is_none() && !found.borrow().iter().any(|a| a.checker == "convergence") {
        anomaly(
            "convergence",
            "*",
            format!(
                "every key's replicas agree, but the cluster did not settle (hints still held) within {} ms of the heal",
                fs.bound_ms
            ),
        );
    }
    // What a reader of the final state sees: the union of every replica's siblings, minus those
    // another present sibling supersedes (what a DVV merge would drop).
    let final_view: BTreeMap<&String, Vec<&Sib>> = fs
        .replicas
        .iter()
        .map(|(key, replicas)| {
            let all: BTreeSet<&Sib> = replicas.values().flatten().collect();
            let ids: Vec<WriteId> = all.iter().filter_map(|s| s.write()).collect();
            let kept = all
                .into_iter()
                .filter(|s| s.write().is_none_or(|a| !ids.iter().any(|&b| is_ancestor(a, b))))
                .collect();
            (key, kept)
        })
        .collect();
    // A node removed from the cluster (a `remove` fault: its disk is gone for good) may take
    // writes with it: one acknowledged by w replicas survives fewer than w such losses after
    // it began, and promises nothing past that (Dynamo's durability is its W copies).
    let removals: Vec<u64> = history
        .faults
        .iter()
        .filter(|f| f.kind == "remove")
        .map(|f| f.at_ms)
        .collect();
    let durable =
        |w: &Write| w.acked.is_some() && w.w as usize > removals.iter().filter(|&&t| t >= w.op.invoked_ms).count();
    let empty = Vec::new();
    for (id, w) in &writes {
        let key = &w.op.key;
        let view = final_view.get(key).unwrap_or(&empty);
        // Superseded siblings must be gone once the superseding write was acknowledged.
        if durable(w) {
            for s in view.iter().filter_map(|s| s.write()) {
                if is_ancestor(s, *id) {
                    let (checker, what) = if w.element.is_none() {
                        ("no-resurrection", "delete")
                    } else {
                        ("causality", "write")
                    };
                    anomaly(
                        checker,
                        key,
                        format!("write {s} is in the final state, but the acknowledged {what} {id} had read and superseded it"),
                    );
                }
            }
        }
        // Every acknowledged element is still there, unless a delete covered its write.
        if let (true, Some(e)) = (durable(w), w.element) {
            if deleted.contains_key(id) {
                continue;
            }
            v.required_elements += 1;
            let present = view.iter().any(|s| match s {
                Sib::Value { elements, .. } => elements.contains(&e),
                Sib::Tombstone => false,
            });
            if !present {
                anomaly(
                    "no-lost-writes",
                    key,
                    format!(
                        "element {e} of acknowledged write {id} (via {}, acked at {} ms) is missing from the final value",
                        w.op.node, w.op.completed_ms
                    ),
                );
            }
        }
    }

    // Quorum intersection: strict (non-hinted) quorums that overlap must see each other.
    let mut reads_by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        if matches!(op.kind, OpKind::Read { .. }) && matches!(op.outcome, Outcome::Ok { hinted: 0, .. }) {
            reads_by_key.entry(&op.key).or_default().push(op);
        }
    }
    for (id, w) in &writes {
        if w.acked != Some(0) {
            continue;
        }
        for read in reads_by_key
            .get(w.op.key.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (OpKind::Read { n, r }, Outcome::Ok { returned, .. }) = (&read.kind, &read.outcome) else {
                continue;
            };
            if *n != w.n || r + w.w <= *n || read.invoked_ms <= w.op.completed_ms {
                continue;
            }
            // As for lost writes: w removals since the write began may have taken every copy.
            let removed = removals
                .iter()
                .filter(|&&t| t >= w.op.invoked_ms && t <= read.completed_ms)
                .count();
            if removed >= w.w as usize {
                continue;
            }
            v.intersection_pairs += 1;
            // A tombstone carries no write id, so a write that read one cannot name it: once
            // a delete covered `id`, a tombstone, nothing, or any write begun after that
            // delete (it may have superseded the tombstone) reflects `id` too.
            let deleted_at = deleted.get(id).copied();
            let after_delete =
                |s: WriteId| deleted_at.is_some_and(|d| writes.get(&s).is_some_and(|x| x.op.invoked_ms >= d));
            let reflects = if returned.is_empty() {
                deleted_at.is_some()
            } else {
                returned.iter().any(|s| match s.write() {
                    Some(s) => s == *id || is_ancestor(*id, s) || after_delete(s),
                    None => deleted_at.is_some(),
                })
            };
            // A covering delete's tombstone may be there, hidden beside values concurrent with
            // it; a value that delete had covered would still show the read missed it.
            let hidden_tombstone = history.reads_hide_tombstones
                && covering.get(id).is_some_and(|ds| {
                    ds.iter().any(|d| {
                        returned
                            .iter()
                            .all(|s| s.write().is_some_and(|s| s != *d && !is_ancestor(s, *d)))
                    })
                });
            let reflects = reflects || hidden_tombstone;
            if !reflects {
                anomaly(
                    "quorum-intersection",
                    &w.op.key,
                    format!(
                        "read via {} at {} ms (n={n} r={r}) returned {:?}, missing write {id} (w={}, acked at {} ms via {})",
                        read.node,
                        read.invoked_ms,
                        returned.iter().map(Sib::write).collect::<Vec<_>>(),
                        w.w,
                        w.op.completed_ms,
                        w.op.node
                    ),
                );
            }
        }
    }
    v.anomalies = found.into_inner();
    v
}

#[cfg(test)]
mod tests {
    //! Each checker must fire on the anomaly it names, and stay quiet on a clean history.
    use super::*;
    use crate::history::{Fault, FinalState};

    fn val(write: WriteId, els: &[u64]) -> Sib {
        Sib::Value {
            write,
            elements: els.iter().copied().collect(),
        }
    }

    fn put(t: u64, write: WriteId, els: &[u64], parents: &[WriteId], w: u8, acked: bool) -> Op {
        Op {
            client: 0,
            key: "k".into(),
            node: "n1".into(),
            invoked_ms: t,
            completed_ms: t + 1,
            kind: OpKind::Write {
                write,
                element: els.last().copied(),
                elements: els.iter().copied().collect(),
                parents: parents.to_vec(),
                n: 3,
                w,
            },
            outcome: if acked {
                Outcome::Ok {
                    returned: vec![],
                    hinted: 0,
                }
            } else {
                Outcome::Failed("timeout".into())
            },
        }
    }

    fn delete(t: u64, write: WriteId, parents: &[WriteId]) -> Op {
        let mut op = put(t, write, &[], parents, 2, true);
        if let OpKind::Write { element, .. } = &mut op.kind {
            *element = None;
        }
        op
    }

    fn read(t: u64, r: u8, returned: Vec<Sib>) -> Op {
        Op {
            client: 1,
            key: "k".into(),
            node: "n2".into(),
            invoked_ms: t,
            completed_ms: t + 1,
            kind: OpKind::Read { n: 3, r },
            outcome: Outcome::Ok { returned, hinted: 0 },
        }
    }

    fn history(ops: Vec<Op>, final_sibs: Vec<Sib>) -> History {
        let replicas = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), final_sibs.clone()))
            .collect();
        History {
            ops,
            faults: vec![Fault {
                at_ms: 0,
                kind: "kill".into(),
                detail: "n1".into(),
            }],
            final_state: FinalState {
                replicas: [("k".to_string(), replicas)].into_iter().collect(),
                converged_after_ms: Some(10),
                bound_ms: 1000,
            },
            reads_hide_tombstones: false,
        }
    }

    fn checkers(v: &Verdict) -> Vec<&str> {
        v.anomalies.iter().map(|a| a.checker.as_str()).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        // 1 adds e1; 2 reads it and adds e2; a strict read after both sees 2.
        let h = history(
            vec![
                put(0, 1, &[1], &[], 2, true),
                read(5, 2, vec![val(1, &[1])]),
                put(6, 2, &[1, 2], &[1], 2, true),
                read(10, 2, vec![val(2, &[1, 2])]),
            ],
            vec![val(2, &[1, 2])],
        );
        let v = check(&h);
        assert!(v.ok(), "{:?}", v.anomalies);
        assert_eq!((v.acked_writes, v.required_elements), (2, 2));
        assert!(v.intersection_pairs >= 2);
    }

    #[test]
    fn a_missing_acknowledged_element_is_a_lost_write() {
        // Two concurrent adds; the final state kept only one of them.
        let h = history(
            vec![put(0, 1, &[1], &[], 1, true), put(0, 2, &[2], &[], 1, true)],
            vec![val(1, &[1])],
        );
        assert_eq!(checkers(&check(&h)), ["no-lost-writes"]);
    }

    #[test]
    fn an_unacknowledged_write_may_be_lost() {
        let h = history(
            vec![put(0, 1, &[1], &[], 1, true), put(0, 2, &[2], &[], 1, false)],
            vec![val(1, &[1])],
        );
        assert!(check(&h).ok());
    }

    /// A node removed for good takes its disk: a w=1 write begun before the removal may be
    /// gone, a w=2 write must survive one removal.
    #[test]
    fn a_removed_node_may_take_only_writes_with_fewer_copies_than_removals() {
        let removal = |mut h: History| {
            h.faults.push(Fault {
                at_ms: 10,
                kind: "remove".into(),
                detail: "n3".into(),
            });
            h
        };
        let h = removal(history(vec![put(0, 1, &[1], &[], 1, true)], vec![]));
        assert!(check(&h).ok(), "{:?}", check(&h).anomalies);
        let h = removal(history(vec![put(0, 1, &[1], &[], 2, true)], vec![]));
        assert_eq!(checkers(&check(&h)), ["no-lost-writes"]);
        // A write begun after the removal owes nothing to it.
        let h = removal(history(vec![put(20, 1, &[1], &[], 1, true)], vec![]));
        assert_eq!(checkers(&check(&h)), ["no-lost-writes"]);
        // Nor may a later strict read expect a w=1 write the removal may have taken...
        let h = removal(history(
            vec![put(0, 1, &[1], &[], 1, true), read(15, 3, vec![])],
            vec![],
        ));
        assert!(check(&h).ok(), "{:?}", check(&h).anomalies);
        // ...but a read before the removal must see it.
        let h = removal(history(vec![put(0, 1, &[1], &[], 1, true), read(5, 3, vec![])], vec![]));
        assert_eq!(checkers(&check(&h)), ["quorum-intersection"]);
    }

    #[test]
    fn replicas_that_differ_do_not_converge() {
        let mut h = history(vec![put(0, 1, &[1], &[], 3, true)], vec![val(1, &[1])]);
        h.final_state.replicas.get_mut("k").unwrap().insert("n3".into(), vec![]);
        assert_eq!(checkers(&check(&h)), ["convergence"]);
        let mut h = history(vec![put(0, 1, &[1], &[], 3, true)], vec![val(1, &[1])]);
        h.final_state.converged_after_ms = None;
        assert_eq!(checkers(&check(&h)), ["convergence"]);
    }

    #[test]
    fn a_superseded_sibling_beside_its_successor_breaks_causality() {
        let h = history(
            vec![
                put(0, 1, &[1], &[], 2, true),
                put(5, 2, &[1, 2], &[1], 2, true),
                read(10, 1, vec![val(1, &[1]), val(2, &[1, 2])]),
            ],
            vec![val(2, &[1, 2])],
        );
        assert_eq!(checkers(&check(&h)), ["causality"]);
    }

    #[test]
    fn a_superseded_sibling_in_the_final_state_breaks_causality() {
        // Write 2 superseded 1 and was acknowledged, yet a replica's final value is 1 alone
        // (write 2's element is then lost too).
        let h = history(
            vec![put(0, 1, &[1], &[], 2, true), put(5, 2, &[1, 2], &[1], 2, true)],
            vec![val(1, &[1])],
        );
        assert_eq!(checkers(&check(&h)), ["causality", "no-lost-writes"]);
    }

    #[test]
    fn a_deleted_value_that_comes_back_is_a_resurrection() {
        let h = history(
            vec![put(0, 1, &[1], &[], 2, true), delete(5, 2, &[1])],
            vec![val(1, &[1])],
        );
        assert_eq!(checkers(&check(&h)), ["no-resurrection"]);
        // Gone for good is fine, and its element is not required.
        let h = history(vec![put(0, 1, &[1], &[], 2, true), delete(5, 2, &[1])], vec![]);
        let v = check(&h);
        assert!(v.ok(), "{:?}", v.anomalies);
        assert_eq!(v.required_elements, 0);
    }

    #[test]
    fn a_strict_read_missing_an_acknowledged_write_breaks_intersection() {
        let h = history(
            vec![put(0, 1, &[1], &[], 2, true), read(5, 2, vec![])],
            vec![val(1, &[1])],
        );
        assert_eq!(checkers(&check(&h)), ["quorum-intersection"]);
        // r + w <= n promises nothing.
        let h = history(
            vec![put(0, 1, &[1], &[], 2, true), read(5, 1, vec![])],
            vec![val(1, &[1])],
        );
        assert!(check(&h).ok());
        // Nor does a read that overlapped the write, or one answered by a stand-in.
        let mut overlapping = read(0, 2, vec![]);
        overlapping.completed_ms = 3;
        let mut hinted = read(5, 3, vec![]);
        hinted.outcome = Outcome::Ok {
            returned: vec![],
            hinted: 1,
        };
        let h = history(
            vec![put(0, 1, &[1], &[], 2, true), overlapping, hinted],
            vec![val(1, &[1])],
        );
        assert!(check(&h).ok());
    }

    /// Shoal's HTTP GET shows values and hides a tombstone beside them: a read that returns
    /// only a value written concurrently with a delete may hold the delete unseen. It still
    /// misses the delete if it returns a value the delete covered.
    #[test]
    fn a_tombstone_hidden_beside_a_concurrent_value_still_counts() {
        let ops = |returned: Vec<Sib>| {
            vec![
                put(0, 1, &[1], &[], 2, true),
                put(4, 3, &[3], &[], 2, true),
                delete(5, 2, &[1]),
                read(10, 2, returned),
            ]
        };
        let finals = vec![Sib::Tombstone, val(3, &[3])];
        let mut h = history(ops(vec![val(3, &[3])]), finals.clone());
        assert_eq!(checkers(&check(&h)), ["quorum-intersection", "quorum-intersection"]);
        h.reads_hide_tombstones = true;
        assert!(check(&h).ok(), "{:?}", check(&h).anomalies);
        let mut h = history(ops(vec![val(1, &[1]), val(3, &[3])]), finals);
        h.reads_hide_tombstones = true;
        let v = check(&h);
        assert_eq!(checkers(&v), ["quorum-intersection"]);
        assert!(v.anomalies[0].detail.contains("missing write 2"), "{:?}", v.anomalies);
    }

    #[test]
    fn values_round_trip_through_their_encoding() {
        let els: BTreeSet<u64> = [3, 1, 2].into_iter().collect();
        assert_eq!(Sib::decode(&Sib::encode(9, &els)), Some(val(9, &[1, 2, 3])));
        assert_eq!(Sib::decode(&Sib::encode(9, &BTreeSet::new())), Some(val(9, &[])));
        assert_eq!(Sib::decode(b"w=x;e="), None);
        assert_eq!(Sib::decode(b"hello"), None);
    }
}
