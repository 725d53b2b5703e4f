//! The rolling record of measured WARS legs every Shoal coordinator keeps, per peer.
//!
//! **How one-way legs are estimated.** A coordinator sees a round trip, not its halves: for a
//! replica write it knows when it sent the write and when the ack came back. Each round trip
//! is split into its two legs as NTP splits a path, symmetrically: a leg is the delay the
//! coordinator injected on it (which it knows exactly, having drawn it) plus half of the rest
//! of the round trip (wire time, the replica's queueing and service). On the coordinator's
//! own replica the rest is the storage call itself. With nothing injected, W = A = RTT / 2.
//! The split errs where the path is asymmetric: a replica that queues a write before applying
//! it has a longer W and a shorter A than recorded. On one machine that residue is a fraction
//! of a millisecond; across data centres it is dominated by the injected or real wire delay,
//! which the symmetric split gets right.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::wars::ReplicaLegs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Leg {
    /// The write travelling to a replica and being applied there.
    W,
    /// The write's acknowledgement travelling back.
    A,
    /// The read travelling to a replica and being served there.
    R,
    /// The read's response travelling back.
    S,
}

impl Leg {
    fn index(self) -> usize {
        match self {
            Leg::W => 0,
            Leg::A => 1,
            Leg::R => 2,
            Leg::S => 3,
        }
    }
}

#[derive(Default)]
struct Ring {
    samples: Vec<f32>,
    next: usize,
    recorded: u64,
}

impl Ring {
    fn push(&mut self, capacity: usize, ms: f64) {
        let v = ms.max(0.0) as f32;
        if self.samples.len() < capacity {
            self.samples.push(v);
        } else {
            self.samples[self.next] = v;
        }
        self.next = (self.next + 1) % capacity;
        self.recorded += 1;
    }
}

#[derive(Default)]
struct PeerRings {
    local: bool,
    rings: [Ring; 4],
}

/// The last `capacity` samples of each leg, per peer (the coordinator's own replica is the
/// peer marked `local`).
pub struct LegLog {
    capacity: usize,
    peers: Mutex<HashMap<String, PeerRings>>,
}

/// What a [`LegLog`] holds at one moment; `GET /v1/admin/consistency/legs` serves it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LegSnapshot {
    pub peers: Vec<PeerLegs>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerLegs {
    pub peer: String,
    /// The coordinator's own replica.
    pub local: bool,
    /// Samples ever recorded per leg (W, A, R, S); the vectors keep only the latest.
    pub recorded: [u64; 4],
    pub w: Vec<f32>,
    pub a: Vec<f32>,
    pub r: Vec<f32>,
    pub s: Vec<f32>,
}

impl LegLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Record one round trip to `peer` as its two legs (`out` then `back`: W and A, or R and S),
    /// by the rule in the module documentation.
    pub fn record_round_trip(&self, peer: &str, local: bool, out: (Leg, f64), back: (Leg, f64), measured_ms: f64) {
        let half = measured_ms.max(0.0) / 2.0;
        let mut peers = self.peers.lock();
        let rings = match peers.get_mut(peer) {
            Some(r) => r,
            None => peers.entry(peer.to_string()).or_default(),
        };
        rings.local = local;
        rings.rings[out.0.index()].push(self.capacity, out.1 + half);
        rings.rings[back.0.index()].push(self.capacity, back.1 + half);
    }

    pub fn snapshot(&self) -> LegSnapshot {
        let peers = self.peers.lock();
        let mut out: Vec<PeerLegs> = peers
            .iter()
            .map(|(peer, p)| PeerLegs {
                peer: peer.clone(),
                local: p.local,
                recorded: [0, 1, 2, 3].map(|i| p.rings[i].recorded),
                w: p.rings[0].samples.clone(),
                a: p.rings[1].samples.clone(),
                r: p.rings[2].samples.clone(),
                s: p.rings[3].samples.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        LegSnapshot { peers: out }
    }

    /// Forget every sample (between two benchmark settings).
    pub fn clear(&self) {
        self.peers.lock().clear();
    }
}

impl LegSnapshot {
    /// The samples pooled into the two kinds of replica the model knows: the coordinator's
    /// own (`local`) and every other (`remote`). Several snapshots (one per coordinator) pool
    /// together.
    pub fn pooled<'a>(snapshots: impl IntoIterator<Item = &'a LegSnapshot>) -> (ReplicaLegs, ReplicaLegs) {
        let (mut local, mut remote) = (ReplicaLegs::default(), ReplicaLegs::default());
        for snap in snapshots {
            for p in &snap.peers {
                let into = if p.local { &mut local } else { &mut remote };
                fn widen(v: &[f32]) -> impl Iterator<Item = f64> + '_ {
                    v.iter().map(|x| f64::from(*x))
                }
                into.w.extend(widen(&p.w));
                into.a.extend(widen(&p.a));
                into.r.extend(widen(&p.r));
                into.s.extend(widen(&p.s));
            }
        }
        (local, remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_split_symmetrically_around_the_injected_delays() {
        let log = LegLog::new(4);
        log.record_round_trip("n2", false, (Leg::W, 3.0), (Leg::A, 1.0), 0.5);
        log.record_round_trip("n1", true, (Leg::R, 0.0), (Leg::S, 0.0), 0.2);
        let snap = log.snapshot();
        assert_eq!(snap.peers[0].peer, "n1");
        assert!(snap.peers[0].local);
        assert_eq!(snap.peers[1].w, vec![3.25]);
        assert_eq!(snap.peers[1].a, vec![1.25]);
        assert!(snap.peers[1].r.is_empty());
        assert_eq!(snap.peers[0].r, vec![0.1]);
        let (local, remote) = LegSnapshot::pooled([&snap]);
        assert_eq!(local.r, vec![f64::from(0.1f32)]);
        assert_eq!(remote.w, vec![3.25]);
    }

    #[test]
    fn the_ring_keeps_only_the_latest_samples_but_counts_all() {
        let log = LegLog::new(3);
        for i in 0..10 {
            log.record_round_trip("n2", false, (Leg::W, i as f64), (Leg::A, 0.0), 0.0);
        }
        let snap = log.snapshot();
        let mut w = snap.peers[0].w.clone();
        w.sort_by(f32::total_cmp);
        assert_eq!(w, vec![7.0, 8.0, 9.0]);
        assert_eq!(snap.peers[0].recorded, [10, 10, 0, 0]);
        log.clear();
        assert!(log.snapshot().peers.is_empty());
    }
}
