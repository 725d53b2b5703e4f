//! Ground truth for staleness: freshness probes.
//!
//! A probe writes a burst of `burst` versions of a fresh key back to back through one node
//! (each write carries the context of the one before, so they supersede rather than become
//! siblings), waits `t` after the last acknowledgement, and reads the key once through a
//! *different* node. Every value carries its version number, so the read says exactly how far
//! behind it is: fresh if it returned the last version, k-fresh if one of the last k
//! (PBS's t-visibility and k-staleness, Bailis et al., VLDB 2012). A key is read only once,
//! so the read repair one read triggers never helps another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shoal_client::{Client, Options, Read};

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub n: u8,
    pub r: u8,
    pub w: u8,
    /// Read delays after the last acknowledgement, in ms; probes cycle through them.
    pub t_ms: Vec<f64>,
    /// Versions written before the read: k-staleness is measured for k = 1..=burst.
    pub burst: u32,
    pub workers: usize,
    /// Probes started per second across all workers (each on a fixed schedule), so the
    /// probes measure the cluster rather than load it. `None`: back to back.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub value_size: usize,
    pub seed: u64,
}

/// What the probes at one read delay found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProbePoint {
    pub t_ms: f64,
    /// The mean delay actually waited (timers overshoot by up to a millisecond); the model
    /// is asked about this delay.
    pub waited_ms: f64,
    pub probes: u64,
    /// `within_k[k - 1]`: reads that returned one of the last k versions.
    pub within_k: Vec<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProbeReport {
    pub points: Vec<ProbePoint>,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl ProbeReport {
    /// No probes yet at any of `cfg`'s read delays.
    fn empty(cfg: &ProbeConfig) -> Self {
        Self {
            points: cfg
                .t_ms
                .iter()
                .map(|t| ProbePoint {
                    t_ms: *t,
                    within_k: vec![0; cfg.burst as usize],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The version number a probe value carries.
fn encode(version: u32, size: usize) -> Bytes {
    let mut v = format!("probe-v{version:010}-").into_bytes();
    v.resize(size.max(v.len()), b'p');
    Bytes::from(v)
}

fn decode(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value.get(7..17)?).ok()?.parse().ok()
}

/// The newest version among a read's siblings (0: none of the burst).
fn newest(read: &Read) -> u32 {
    match read {
        Read::Found { values, .. } => values.iter().filter_map(|v| decode(v)).max().unwrap_or(0),
        Read::NotFound { .. } => 0,
    }
}

/// Run probes until `cfg.duration` has passed. `clients` must reach at least two nodes.
pub async fn probe(clients: &[Arc<Client>], cfg: &ProbeConfig, key_prefix: &str) -> ProbeReport {
    let opts = Options {
        n: Some(cfg.n),
        w: Some(cfg.w),
        r: Some(cfg.r),
        timeout_ms: None,
        sloppy: None,
    };
    let deadline = Instant::now() + cfg.duration;
    let mut tasks = Vec::new();
    for worker in 0..cfg.workers.max(1) {
        let (clients, cfg, opts) = (clients.to_vec(), cfg.clone(), opts);
        let prefix = format!("{key_prefix}-{worker}");
        tasks.push(tokio::spawn(async move {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(worker as u64));
            let mut report = ProbeReport::empty(&cfg);
            let fail = |report: &mut ProbeReport, e: String| {
                report.errors += 1;
                if report.error_samples.len() < 3 {
                    report.error_samples.push(e);
                }
            };
            let every = cfg
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(cfg.workers.max(1) as f64 / r));
            let mut next =
                Instant::now() + every.map_or(Duration::ZERO, |e| e.mul_f64(worker as f64 / cfg.workers.max(1) as f64));
            let mut i = worker;
            loop {
                if let Some(e) = every {
                    tokio::time::sleep_until(next.into()).await;
                    next = (next + e).max(Instant::now());
                }
                if Instant::now() >= deadline {
                    break;
                }
                let point = i % cfg.t_ms.len();
                let key = format!("{prefix}-{i}").into_bytes();
                i += cfg.workers.max(1);
                let writer = rng.gen_range(0..clients.len());
                let reader = if clients.len() > 1 {
                    (writer + rng.gen_range(1..clients.len())) % clients.len()
                } else {
                    writer
                };
                let mut context: Option<String> = None;
                let mut ok = true;
                for version in 1..=cfg.burst {
                    let value = encode(version, cfg.value_size);
                    match clients[writer].put(&key, value, context.as_deref(), &opts).await {
                        Ok(written) => context = Some(written.context),
                        Err(e) => {
                            fail(&mut report, e.to_string());
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                let acked = Instant::now();
                let t = Duration::from_secs_f64(cfg.t_ms[point] / 1000.0);
                if !t.is_zero() {
                    tokio::time::sleep_until((acked + t).into()).await;
                }
                let waited = acked.elapsed().as_secs_f64() * 1000.0;
                match clients[reader].get(&key, &opts).await {
                    Ok(read) => {
                        let got = newest(&read);
                        let p = &mut report.points[point];
                        p.probes += 1;
                        p.waited_ms += waited;
                        for (k, hits) in p.within_k.iter_mut().enumerate() {
                            // One of the last k + 1 versions.
                            if got as usize + k >= cfg.burst as usize {
                                *hits += 1;
                            }
                        }
                    }
                    Err(e) => fail(&mut report, e.to_string()),
                }
            }
            report
        }));
    }
    let mut total = ProbeReport::empty(cfg);
    for t in tasks {
        let Ok(r) = t.await else { continue };
        total.errors += r.errors;
        for e in r.error_samples {
            if total.error_samples.len() < 5 {
                total.error_samples.push(e);
            }
        }
        for (into, from) in total.points.iter_mut().zip(r.points) {
            into.probes += from.probes;
            into.waited_ms += from.waited_ms;
            for (a, b) in into.within_k.iter_mut().zip(from.within_k) {
                *a += b;
            }
        }
    }
    for p in &mut total.points {
        if p.probes > 0 {
            p.waited_ms /= p.probes as f64;
        } else {
            p.waited_ms = p.t_ms;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_values_carry_their_version() {
        for v in [0, 1, 7, 4_000_000_000] {
            let b = encode(v, 64);
            assert_eq!(b.len(), 64);
            assert_eq!(decode(&b), Some(v));
        }
        assert_eq!(decode(b"bench-value"), None);
        let read = Read::Found {
            context: String::new(),
            values: vec![encode(2, 10), encode(3, 10), Bytes::from_static(b"other")],
        };
        assert_eq!(newest(&read), 3, "the newest sibling counts");
        assert_eq!(newest(&Read::NotFound { context: None }), 0);
    }
}
