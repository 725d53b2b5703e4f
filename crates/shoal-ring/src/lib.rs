//! Shoal's consistent-hash ring: given the cluster's members, decide which
//! nodes hold which keys.
//!
//! The scheme is Dynamo's partitioning strategy 3 (§6.2): the 64-bit hash
//! space is cut into `Q` fixed, equal-sized partitions; every node scatters
//! `weight × tokens_per_weight` tokens on the ring; and a partition's owners
//! are the distinct nodes met walking clockwise from the partition's start.
//! Because partitions never change shape, data moves between nodes in whole
//! partitions, and a membership change only re-draws who owns which partition.
//!
//! Invariants a [`Layout`] keeps:
//! - It is a pure function of the member *set* and the [`RingConfig`]: every
//!   node that is handed the same members (in any order) computes the same
//!   owners, so nodes never have to agree on anything but the member list.
//! - [`Layout::walk`] lists every member exactly once for every partition.
//!   Its first `n` entries are the preference list; the rest are the fallback
//!   order sloppy quorum uses when preferred nodes are unreachable.
//! - Every prefix of a walk spreads over as many zones as it can.
//! - In a single zone, adding a node only moves partitions *to* that node;
//!   no partition changes hands between nodes that were already there.
//!
//! What it refuses to do: no I/O, no clock, no threads, no randomness. It does
//! not discover members, gossip layouts or decide when a layout changes; the
//! `version` it carries is an opaque number for callers to order layouts by.
//! Bad caller input is reported as a [`RingError`], never a panic.

mod engine;
mod error;
mod history;
mod layout;
mod node;
mod partition;
mod preference_list;
mod token;

pub use engine::{Blocker, Epochs, Source, Step, Waiting};
pub use error::RingError;
pub use history::{
    moves, AdminState, Change, ChangeError, ChangeKind, LayoutRecord, Move, PendingStrays, Phase, Placement, Retiring,
    Transition,
};
pub use layout::{Layout, RingConfig, MAX_PARTITIONS, MAX_TOKENS_PER_NODE};
pub use node::{Member, NodeId};
pub use partition::{key_hash, partition_for_hash, PartitionId};
