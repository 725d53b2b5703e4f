//! The WARS Monte Carlo model of PBS (Bailis et al., VLDB 2012, §5), extended to the exact
//! experiment `shoal bench` runs, so prediction and measurement answer the same question.
//!
//! One trial: `k_max` versions of a key are written back to back through one coordinator
//! (each write starts when the previous one is acknowledged, as the harness does). Every write
//! is sent to all N replicas; replica i applies version j at `start_j + W_ij` and its ack
//! arrives `A_ij` later; the write is acknowledged at the W-th ack. A read starts `t` ms after
//! the last acknowledgement (plus the client's hops, when the caller measured them, which
//! also separate the versions of the burst), reaches replica i after `R_i`, returns the newest version i holds
//! then, and its response arrives `S_i` later. The coordinator answers with the newest version
//! among the first R responses. The read is *fresh* if that is the last version written, and
//! *k-fresh* if it is one of the last k.
//!
//! Legs are drawn from empirical samples: the coordinator's own replica has its own
//! distribution (no network), every other replica shares the remote one, as WARS assumes.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::legs::Leg;

/// Empirical samples of each leg, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplicaLegs {
    pub w: Vec<f64>,
    pub a: Vec<f64>,
    pub r: Vec<f64>,
    pub s: Vec<f64>,
}

impl ReplicaLegs {
    fn samples(&self, leg: Leg) -> &[f64] {
        match leg {
            Leg::W => &self.w,
            Leg::A => &self.a,
            Leg::R => &self.r,
            Leg::S => &self.s,
        }
    }

    pub fn is_complete(&self) -> bool {
        [Leg::W, Leg::A, Leg::R, Leg::S]
            .iter()
            .all(|l| !self.samples(*l).is_empty())
    }

    fn draw(&self, leg: Leg, rng: &mut impl Rng) -> f64 {
        let s = self.samples(leg);
        s[rng.gen_range(0..s.len())]
    }

    /// Mean, p50 and p99 of one leg (None without samples).
    pub fn summary(&self, leg: Leg) -> Option<(usize, f64, f64, f64)> {
        let s = self.samples(leg);
        if s.is_empty() {
            return None;
        }
        let mut sorted = s.to_vec();
        sorted.sort_by(f64::total_cmp);
        let q = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
        Some((s.len(), s.iter().sum::<f64>() / s.len() as f64, q(0.5), q(0.99)))
    }
}

/// How far a write spreads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spread {
    /// Dynamo and Shoal: the write goes to all N replicas and reaches the slow ones after the
    /// ack.
    Expanding,
    /// The write reaches exactly the W replicas that acknowledged first and never spreads
    /// (no delayed delivery, no repair): PBS's closed-form case.
    NonExpanding,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Query {
    pub n: u8,
    pub r: u8,
    pub w: u8,
    /// Delays after the last acknowledgement at which reads start, in ms.
    pub t_ms: Vec<f64>,
    /// Versions written back to back before the read (k-staleness for k = 1..=k_max).
    pub k_max: u32,
    pub trials: u32,
    pub seed: u64,
    pub spread: Spread,
    /// Probability that the read's coordinator, a node other than the writer's, holds one of
    /// the key's replicas: its legs to that replica are then local ones. Otherwise every leg
    /// of the read is remote. With as many nodes as replicas it is 1.
    pub reader_local: f64,
    /// Reads go through the writer's own coordinator (its replica is local to both).
    pub same_coordinator: bool,
    /// Samples of the time, besides `t`, between a write's ack leaving its coordinator and the
    /// client's next request (the next version of the burst, or the read) reaching its
    /// coordinator: the client's two hops. Empty: none, PBS's definition, where t counts from
    /// the coordinator's commit. A benchmark whose client waits t after *receiving* the ack
    /// passes the round trips it measured to the nodes.
    #[serde(default)]
    pub gap_ms: Vec<f64>,
}

impl Query {
    pub fn validate(&self) -> Result<(), String> {
        if self.n == 0 || self.r == 0 || self.w == 0 || self.r > self.n || self.w > self.n {
            return Err(format!(
                "need 1 <= r, w <= n, got n={} r={} w={}",
                self.n, self.r, self.w
            ));
        }
        if self.k_max == 0 || self.trials == 0 {
            return Err("k_max and trials must be at least 1".into());
        }
        if self.t_ms.iter().any(|t| !t.is_finite() || *t < 0.0) {
            return Err("every t must be a finite number of ms, zero or more".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictedPoint {
    pub t_ms: f64,
    /// P(the read returns the last version or newer): t-visibility.
    pub p_fresh: f64,
    /// `p_within_k[k - 1]`: P(the read returns one of the last k versions); `[0] == p_fresh`.
    pub p_within_k: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prediction {
    pub n: u8,
    pub r: u8,
    pub w: u8,
    pub trials: u32,
    pub points: Vec<PredictedPoint>,
    /// Predicted latency quantiles (p50, p99, p99.9) in ms of a read (R-th fastest R + S) and
    /// of a write (W-th fastest W + A).
    pub read_latency_ms: [f64; 3],
    pub write_latency_ms: [f64; 3],
}

/// Run the model. `local` are the coordinator's own replica's legs (empty: use `remote`).
pub fn predict(local: &ReplicaLegs, remote: &ReplicaLegs, q: &Query) -> Result<Prediction, String> {
    q.validate()?;
    if !remote.is_complete() {
        return Err("no latency samples for some WARS leg yet: send some traffic through this node first".into());
    }
    let local = if local.is_complete() { local } else { remote };
    let (n, r, w, k_max) = (q.n as usize, q.r as usize, q.w as usize, q.k_max as usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(q.seed);
    let mut fresh_within = vec![vec![0u64; k_max]; q.t_ms.len()];
    let mut read_lat = Vec::with_capacity(q.trials as usize);
    let mut write_lat = Vec::with_capacity(q.trials as usize);
    // arrive[j * n + i]: when replica i holds version j (infinite: never).
    let mut arrive = vec![0f64; k_max * n];
    let mut round = vec![(0f64, 0usize); n];
    let mut read = vec![(0f64, 0f64, 0usize); n];
    for _ in 0..q.trials {
        // The writer's coordinator holds replica 0.
        let mut start = 0.0;
        for j in 0..k_max {
            for (i, slot) in round.iter_mut().enumerate() {
                let legs = if i == 0 { local } else { remote };
                let wl = legs.draw(Leg::W, &mut rng);
                let al = legs.draw(Leg::A, &mut rng);
                arrive[j * n + i] = start + wl;
                *slot = (wl + al, i);
            }
            round.sort_by(|a, b| a.0.total_cmp(&b.0));
            if q.spread == Spread::NonExpanding {
                for &(_, i) in &round[w..] {
                    arrive[j * n + i] = f64::INFINITY;
                }
            }
            let ack = round[w - 1].0;
            if j + 1 == k_max {
                write_lat.push(ack);
            }
            // The client's hops between this ack and its next request (the next version, or
            // the read).
            let gap = if q.gap_ms.is_empty() {
                0.0
            } else {
                q.gap_ms[rng.gen_range(0..q.gap_ms.len())]
            };
            start += ack + gap;
        }
        // When the read leaves for its coordinator, t = 0.
        let commit = start;
        // Which replica, if any, is local to the read's coordinator.
        let reader_slot = if q.same_coordinator {
            Some(0)
        } else if n >= 2 && rng.gen_bool(q.reader_local.clamp(0.0, 1.0)) {
            Some(1)
        } else {
            None
        };
        for (i, slot) in read.iter_mut().enumerate() {
            let legs = if Some(i) == reader_slot { local } else { remote };
            let rl = legs.draw(Leg::R, &mut rng);
            let sl = legs.draw(Leg::S, &mut rng);
            *slot = (rl + sl, rl, i);
        }
        read.sort_by(|a, b| a.0.total_cmp(&b.0));
        read_lat.push(read[r - 1].0);
        for (ti, t) in q.t_ms.iter().enumerate() {
            // The newest version among the first R responses; 0 = none of the burst.
            let mut newest = 0usize;
            for &(_, rl, i) in &read[..r] {
                let at = commit + t + rl;
                if let Some(j) = (0..k_max).rev().find(|j| arrive[j * n + i] <= at) {
                    newest = newest.max(j + 1);
                }
            }
            for (k, hits) in fresh_within[ti].iter_mut().enumerate() {
                // One of the last k + 1 versions: version number > k_max - (k + 1).
                if newest + k >= k_max {
                    *hits += 1;
                }
            }
        }
    }
    let quantiles = |mut v: Vec<f64>| -> [f64; 3] {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        [at(0.5), at(0.99), at(0.999)]
    };
    let trials = f64::from(q.trials);
    Ok(Prediction {
        n: q.n,
        r: q.r,
        w: q.w,
        trials: q.trials,
        points: q
            .t_ms
            .iter()
            .zip(fresh_within)
            .map(|(t, hits)| {
                let p: Vec<f64> = hits.iter().map(|h| *h as f64 / trials).collect();
                PredictedPoint {
                    t_ms: *t,
                    p_fresh: p[0],
                    p_within_k: p,
                }
            })
            .collect(),
        read_latency_ms: quantiles(read_lat),
        write_latency_ms: quantiles(write_lat),
    })
}

/// PBS's closed form for a non-expanding partial quorum: the probability that a read of R
/// replicas misses a write that reached exactly W of N, C(N−W, R) / C(N, R).
pub fn p_stale_closed_form(n: u8, r: u8, w: u8) -> f64 {
    fn choose(n: u64, k: u64) -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }
    let (n, r, w) = (u64::from(n), u64::from(r), u64::from(w));
    choose(n - w.min(n), r) / choose(n, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    fn legs(seed: u64, scale: f64) -> ReplicaLegs {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut draw = || (0..2000).map(|_| rng.gen::<f64>() * scale).collect::<Vec<_>>();
        ReplicaLegs {
            w: draw(),
            a: draw(),
            r: draw(),
            s: draw(),
        }
    }

    fn query(n: u8, r: u8, w: u8, spread: Spread) -> Query {
        Query {
            n,
            r,
            w,
            t_ms: vec![0.0, 1.0, 10.0, 100.0],
            k_max: 1,
            trials: 60_000,
            seed: 11,
            spread,
            reader_local: 0.0,
            same_coordinator: false,
            gap_ms: Vec::new(),
        }
    }

    /// PBS's check: when a write reaches exactly W replicas and never spreads, a read misses
    /// it with probability C(N−W, R) / C(N, R), at every t.
    #[test]
    fn non_expanding_quorums_match_the_closed_form() {
        let remote = legs(1, 10.0);
        for n in 1..=5u8 {
            for r in 1..=n {
                for w in 1..=n {
                    let p = predict(&ReplicaLegs::default(), &remote, &query(n, r, w, Spread::NonExpanding))
                        .expect("prediction");
                    let want = 1.0 - p_stale_closed_form(n, r, w);
                    for point in &p.points {
                        assert!(
                            (point.p_fresh - want).abs() < 0.01,
                            "n={n} r={r} w={w} t={}: model {:.4}, closed form {want:.4}",
                            point.t_ms,
                            point.p_fresh
                        );
                    }
                }
            }
        }
        assert_eq!(p_stale_closed_form(3, 1, 1), 2.0 / 3.0);
        assert_eq!(p_stale_closed_form(3, 2, 2), 0.0);
        assert!((p_stale_closed_form(5, 2, 2) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn expanding_writes_become_visible_with_time() {
        let remote = legs(2, 10.0);
        let p = predict(&ReplicaLegs::default(), &remote, &query(3, 1, 1, Spread::Expanding)).expect("prediction");
        let fresh: Vec<f64> = p.points.iter().map(|x| x.p_fresh).collect();
        assert!(
            fresh.windows(2).all(|w| w[0] <= w[1] + 1e-9),
            "monotone in t: {fresh:?}"
        );
        // No leg exceeds 10 ms, so 100 ms after the ack every replica has the write.
        assert_eq!(fresh[3], 1.0);
        // At t = 0 an r=1, w=1 read misses sometimes, and less often than without spreading.
        let closed = 1.0 - p_stale_closed_form(3, 1, 1);
        assert!(fresh[0] < 1.0 && fresh[0] > closed, "{fresh:?} against {closed}");
    }

    #[test]
    fn k_staleness_counts_older_versions_and_the_local_replica_is_used() {
        // Remote legs are slow (up to 50 ms), local ones instant; reads through the writer's
        // coordinator with r=1 get the local answer first and are always fresh.
        let remote = legs(3, 50.0);
        let local = ReplicaLegs {
            w: vec![0.0],
            a: vec![0.0],
            r: vec![0.0],
            s: vec![0.0],
        };
        let mut q = query(3, 1, 1, Spread::Expanding);
        q.k_max = 3;
        q.same_coordinator = true;
        let p = predict(&local, &remote, &q).expect("prediction");
        assert!(p.points.iter().all(|x| x.p_fresh == 1.0), "{:?}", p.points);
        // Through another coordinator, the three-version burst leaves older versions to find.
        q.same_coordinator = false;
        let p = predict(&local, &remote, &q).expect("prediction");
        let t0 = &p.points[0];
        assert!(t0.p_within_k[0] < t0.p_within_k[1] && t0.p_within_k[1] <= t0.p_within_k[2]);
        assert!(t0.p_within_k[2] <= 1.0);
    }

    #[test]
    fn the_clients_hops_give_the_write_time_to_spread() {
        let remote = legs(5, 10.0);
        let mut q = query(3, 1, 1, Spread::Expanding);
        let without = predict(&ReplicaLegs::default(), &remote, &q).expect("prediction");
        q.gap_ms = vec![20.0];
        let with = predict(&ReplicaLegs::default(), &remote, &q).expect("prediction");
        assert!(without.points[0].p_fresh < 1.0);
        // Legs are under 10 ms, so a read starting 20 ms after the commit finds the write.
        assert_eq!(with.points[0].p_fresh, 1.0);
    }

    #[test]
    fn refuses_impossible_queries_and_missing_samples() {
        let remote = legs(4, 1.0);
        assert!(predict(&ReplicaLegs::default(), &remote, &query(3, 4, 1, Spread::Expanding)).is_err());
        let err = predict(
            &ReplicaLegs::default(),
            &ReplicaLegs::default(),
            &query(3, 1, 1, Spread::Expanding),
        )
        .expect_err("no samples");
        assert!(err.contains("no latency samples"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Strict quorums (r + w > n) always intersect: every read at every t is fresh,
        /// whether or not writes spread.
        #[test]
        fn strict_quorums_are_always_fresh(n in 1u8..=5, r in 1u8..=5, w in 1u8..=5, seed in 0u64..1000, expanding: bool) {
            prop_assume!(r <= n && w <= n && r + w > n);
            let remote = legs(seed, 20.0);
            let mut q = query(n, r, w, if expanding { Spread::Expanding } else { Spread::NonExpanding });
            q.trials = 2000;
            q.k_max = 2;
            let p = predict(&ReplicaLegs::default(), &remote, &q).expect("prediction");
            for point in p.points {
                prop_assert_eq!(point.p_fresh, 1.0);
            }
        }
    }
}
