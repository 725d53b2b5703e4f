//! What a run records: every client operation with its outcome, the faults injected, and the
//! state of every replica after heal and quiescence. The simulator and the real-process
//! nemesis suite (`tests/nemesis.rs`) write the same history, and [`crate::check`] judges both.
//!
//! The workload is set-style, as in Jepsen's Riak tests: a key's value is a set of elements.
//! A client reads the key, takes the union of every sibling's set, adds one new element and
//! writes the result with the read's causal context, so the write supersedes exactly the
//! siblings it read. Each write carries a unique write id in its value, so any sibling seen
//! later names the write that made it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A client write's unique id, carried in the value it wrote.
pub type WriteId = u64;

/// One sibling as a client (or a replica dump) sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Sib {
    /// A value written by `write`, holding `elements`.
    Value { write: WriteId, elements: BTreeSet<u64> },
    /// A delete's tombstone (tombstones carry no payload, so no write id).
    Tombstone,
}

impl Sib {
    /// The value bytes a write stores: `w=<id>;e=<el>,<el>,...`. Text, so the nemesis suite
    /// can send it over HTTP and a failing history stays readable.
    pub fn encode(write: WriteId, elements: &BTreeSet<u64>) -> Vec<u8> {
        let els: Vec<String> = elements.iter().map(u64::to_string).collect();
        format!("w={write};e={}", els.join(",")).into_bytes()
    }

    /// Parse a value written by [`Sib::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Sib> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (w, e) = text.strip_prefix("w=")?.split_once(";e=")?;
        let write = w.parse().ok()?;
        let elements = if e.is_empty() {
            BTreeSet::new()
        } else {
            e.split(',').map(|x| x.parse().ok()).collect::<Option<_>>()?
        };
        Some(Sib::Value { write, elements })
    }

    pub fn write(&self) -> Option<WriteId> {
        match self {
            Sib::Value { write, .. } => Some(*write),
            Sib::Tombstone => None,
        }
    }
}

/// How an operation ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Acknowledged. For a read: the siblings returned (empty: not found). `hinted`: how many
    /// of the acks or replies came from stand-ins' hints (sloppy quorum).
    Ok { returned: Vec<Sib>, hinted: u8 },
    /// Refused or failed: the write may still have landed on some replicas.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    Read {
        n: u8,
        r: u8,
    },
    /// A put (`element: Some`) or delete (`None`) carrying the context of a read that returned
    /// the siblings written by `parents`.
    Write {
        write: WriteId,
        element: Option<u64>,
        /// The set written (empty for a delete).
        elements: BTreeSet<u64>,
        parents: Vec<WriteId>,
        n: u8,
        w: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub client: u32,
    pub key: String,
    pub node: String,
    /// Milliseconds since the run began (virtual in the simulator, wall clock on real nodes).
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub kind: OpKind,
    pub outcome: Outcome,
}

/// A fault the nemesis injected (or healed), for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub at_ms: u64,
    /// `kill`, `restart`, `pause`, `resume`, `partition`, `heal`, `disk-full`, ...
    pub kind: String,
    pub detail: String,
}

/// After heal and quiescence: what each replica of each key holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalState {
    /// key -> (node -> siblings held, sorted; empty: the replica does not hold the key).
    pub replicas: BTreeMap<String, BTreeMap<String, Vec<Sib>>>,
    /// How long after the heal every replica agreed, or `None` if they never did within
    /// `bound_ms`.
    pub converged_after_ms: Option<u64>,
    pub bound_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub ops: Vec<Op>,
    pub faults: Vec<Fault>,
    pub final_state: FinalState,
    /// Reads report values only, hiding a tombstone that sits beside them (Shoal's HTTP GET
    /// does): a delete concurrent with a returned value may then be present but unseen.
    #[serde(default)]
    pub reads_hide_tombstones: bool,
}
