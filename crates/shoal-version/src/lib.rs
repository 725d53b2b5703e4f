//! Causality tracking for Shoal: which versions of a key are concurrent and
//! which are obsolete.
//!
//! Shoal is leaderless: any replica may coordinate a write, and replicas
//! exchange state by read repair, hinted handoff and anti-entropy in any
//! order. This crate decides, from causal metadata alone, which values a
//! write replaces and which it must keep as siblings. It uses Dotted Version
//! Vectors (Preguiça, Baquero, Almeida et al., "Dotted Version Vectors:
//! Logical Clocks for Optimistic Replication"), the mechanism Riak 2.0
//! adopted to end sibling explosion:
//!
//! - [`Dot`]: one write event, `(actor, counter)`.
//! - [`VersionVector`]: what a replica or client has seen.
//! - [`SiblingSet`]: a key's concurrent values, each tagged with its own dot
//!   and the context its writer had read (see [`dvv`]).
//! - [`ContextCodec`]: the opaque, authenticated token carrying a read's
//!   context to the client and back on its next write (see [`context`]).
//!
//! # Invariants
//!
//! - Siblings are an antichain: no sibling's writer had seen another
//!   sibling, and no two siblings share a dot.
//! - [`SiblingSet::merge`] is a join: commutative, associative and
//!   idempotent, so replicas converge whatever order, and however often,
//!   they exchange state.
//! - A write carrying a read's context supersedes exactly what that read saw:
//!   values the read returned disappear (on every replica, once merged), and
//!   values it did not see survive as siblings. Nothing concurrent is lost
//!   and nothing seen comes back.
//!
//! # What it refuses to do
//!
//! - No I/O and no clocks: wall time plays no part in deciding what is
//!   newer, so there is no last-writer-wins and no clock skew to get wrong.
//!   Resolving siblings is the client's job.
//! - It does not grow a key without bound: a write that would leave more
//!   than [`SiblingLimits::max`] siblings is refused with the context needed
//!   to resolve them.
//! - It does not trust outside input: tokens are length-limited, signed and
//!   checked; sets from disk or peers can be checked with
//!   [`SiblingSet::validate`]; nothing here panics on bad input.
//! - It does not mint dots for other actors: [`SiblingSet::write`] must only
//!   be called by the replica named by `actor`, on its own state, or dots
//!   stop being unique.

pub mod context;
pub mod dot;
pub mod dvv;
pub mod version_vector;

pub use context::{ContextCodec, ContextError, MAX_CONTEXT_TOKEN_BYTES};
pub use dot::Dot;
pub use dvv::{Sibling, SiblingLimits, SiblingSet, VersionError, WriteOutcome};
pub use version_vector::VersionVector;
