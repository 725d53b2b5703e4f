//! What an N/W/R choice buys in freshness, predicted the way Bailis et al. do in
//! "Probabilistically Bounded Staleness for Practical Partial Quorums" (PBS, VLDB 2012).
//!
//! A Dynamo-style write goes to all N replicas and is acknowledged after W of them answer; a
//! read asks all N and answers with the first R. Whether a read sees a write depends on four
//! one-way latencies per replica, the WARS legs: **W** (the write reaching the replica),
//! **A** (its ack returning), **R** (the read reaching the replica) and **S** (its response
//! returning). This crate holds:
//! - [`dist`]: latency distributions and the latency profiles `shoal bench` injects (the PBS
//!   authors' fits of LinkedIn and Yammer production latencies);
//! - [`legs`]: the rolling per-peer record of measured legs every Shoal coordinator keeps;
//! - [`wars`]: the Monte Carlo model that turns leg samples into t-visibility and
//!   k-staleness.

pub mod dist;
pub mod legs;
pub mod wars;

pub use dist::{Dist, Profile, ProfileError};
pub use legs::{Leg, LegLog, LegSnapshot, PeerLegs};
pub use wars::{predict, Prediction, Query, ReplicaLegs, Spread};
