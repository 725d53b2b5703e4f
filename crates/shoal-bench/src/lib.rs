//! The load generator behind `shoal bench`: a YCSB-style mix of gets and puts from many
//! concurrent clients, with latencies in HDR histograms; freshness probes that measure
//! staleness against ground truth ([`freshness`]); one setting of a consistency matrix with
//! its PBS prediction ([`matrix`]); and the report files ([`report`]).
//!
//! Writes carry the causal context of the last read or write of the same key, as a real
//! application would; blind writes would pile up siblings and measure sibling growth instead
//! of the request path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shoal_client::{Client, ClientError, Options, Read};

pub mod freshness;
pub mod matrix;
pub mod report;

pub use report::Latency;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KeyDistribution {
    Uniform,
    /// Zipfian with YCSB's constant 0.99: a few hot keys take most of the traffic.
    Zipfian,
}

#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    /// Fraction of operations that are gets (YCSB A = 0.5, B = 0.95, C = 1.0).
    pub read_fraction: f64,
    pub keys: u64,
    pub value_size: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub n: Option<u8>,
    pub w: Option<u8>,
    pub r: Option<u8>,
    pub distribution: KeyDistribution,
    pub seed: u64,
    /// Offered load in operations per second across all workers (open loop): operations are
    /// due on one fixed schedule, each taken by whichever worker is free, and latency is
    /// measured from the due time, so a stall counts against every operation it delays. One
    /// schedule for all, not one per worker (as wrk2 and YCSB's target do): with a schedule
    /// per worker, a get due behind a slow put on the same worker waits for it even while
    /// other workers idle, and reports the put's latency as its own. `None`: closed loop,
    /// each worker starts its next operation when the last one ends.
    pub rate: Option<f64>,
}

impl Latency {
    fn from(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Points of a latency CDF (ms, cumulative fraction), dense in the tail where settings differ.
fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> = (0..20).map(|i| f64::from(i) * 0.05).collect();
    qs.extend([0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0]);
    qs.into_iter()
        .map(|q| (h.value_at_quantile(q) as f64 / 1000.0, q))
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ops: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed_s: f64,
    pub throughput: f64,
    pub get: Latency,
    pub put: Latency,
    pub get_cdf: Vec<(f64, f64)>,
    pub put_cdf: Vec<(f64, f64)>,
}

fn key_name(i: u64) -> Vec<u8> {
    format!("bench-{i:010}").into_bytes()
}

/// A Zipfian sampler over [0, n) (Gray et al., "Quickly generating billion-record synthetic
/// databases", as YCSB does).
struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Self {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Self {
            n,
            theta,
            alpha,
            zetan,
            eta,
        }
    }

    fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        ((self.n as f64) * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64 % self.n
    }
}

struct Shared {
    contexts: Mutex<HashMap<u64, String>>,
    errors: AtomicU64,
    error_samples: Mutex<Vec<String>>,
    done: AtomicBool,
    measuring: AtomicBool,
    ops: AtomicU64,
    /// The next operation's place on the open-loop schedule.
    next_slot: AtomicU64,
}

impl Shared {
    fn error(&self, e: ClientError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.error_samples.lock();
        if s.len() < 5 {
            s.push(e.to_string());
        }
    }
}

/// Write every key once so gets measure reads of real 1-KiB objects, not misses.
pub async fn preload(clients: &[Arc<Client>], w: &Workload) -> Result<(), ClientError> {
    let value = Bytes::from(vec![b'x'; w.value_size]);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..w.concurrency.max(1) {
        let (client, next, value) = (clients[i % clients.len()].clone(), next.clone(), value.clone());
        let opts = Options {
            n: w.n,
            w: w.w,
            r: w.r,
            timeout_ms: None,
            sloppy: None,
        };
        let keys = w.keys;
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= keys {
                    return Ok::<(), ClientError>(());
                }
                client.put(&key_name(k), value.clone(), None, &opts).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| ClientError::Transport(e.to_string()))??;
    }
    Ok(())
}

/// Run `w` against `clients` (workers spread across them round-robin, so every node
/// coordinates) and report what was measured after the warm-up.
pub async fn run(clients: &[Arc<Client>], w: &Workload, progress: bool) -> Report {
    let shared = Arc::new(Shared {
        contexts: Mutex::new(HashMap::new()),
        errors: AtomicU64::new(0),
        error_samples: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        measuring: AtomicBool::new(w.warmup.is_zero()),
        ops: AtomicU64::new(0),
        next_slot: AtomicU64::new(0),
    });
    let origin = Instant::now();
    let period = w.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
    let zipf = Arc::new(Zipf::new(w.keys.max(1), 0.99));
    let mut tasks = Vec::new();
    for i in 0..w.concurrency.max(1) {
        let (client, shared, zipf, w) = (
            clients[i % clients.len()].clone(),
            shared.clone(),
            zipf.clone(),
            w.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w.seed.wrapping_add(i as u64));
            let mut gets = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds");
            let mut puts = gets.clone();
            let value = Bytes::from(vec![b'v'; w.value_size]);
            let opts = Options {
                n: w.n,
                w: w.w,
                r: w.r,
                timeout_ms: None,
                sloppy: None,
            };
            while !shared.done.load(Ordering::Relaxed) {
                let k = match w.distribution {
                    KeyDistribution::Uniform => rng.gen_range(0..w.keys.max(1)),
                    KeyDistribution::Zipfian => zipf.sample(&mut rng),
                };
                let key = key_name(k);
                let is_get = rng.gen_bool(w.read_fraction.clamp(0.0, 1.0));
                let started = match period {
                    Some(p) => {
                        let slot = shared.next_slot.fetch_add(1, Ordering::Relaxed);
                        let due = origin + p.mul_f64(slot as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let result = if is_get {
                    client.get(&key, &opts).await.map(|r| match r {
                        Read::Found { context, .. } => Some(context),
                        Read::NotFound { context } => context,
                    })
                } else {
                    let ctx = shared.contexts.lock().get(&k).cloned();
                    client
                        .put(&key, value.clone(), ctx.as_deref(), &opts)
                        .await
                        .map(|d| Some(d.context))
                };
                let micros = started.elapsed().as_micros().max(1) as u64;
                let measuring = shared.measuring.load(Ordering::Relaxed);
                match result {
                    Ok(ctx) => {
                        if let Some(c) = ctx {
                            shared.contexts.lock().insert(k, c);
                        }
                        if measuring {
                            let h = if is_get { &mut gets } else { &mut puts };
                            let _ = h.record(micros.min(60_000_000));
                            shared.ops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if measuring => shared.error(e),
                    Err(_) => {}
                }
            }
            (gets, puts)
        }));
    }
    tokio::time::sleep(w.warmup).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < w.duration {
        tokio::time::sleep(Duration::from_secs(1).min(w.duration)).await;
        if progress {
            let ops = shared.ops.load(Ordering::Relaxed);
            let pct = (started.elapsed().as_secs_f64() / w.duration.as_secs_f64() * 100.0).min(100.0);
            let filled = (pct / 5.0) as usize;
            eprint!(
                "\r  [{}{}] {pct:5.1}%  {:>8} ops/s  ",
                "#".repeat(filled),
                ".".repeat(20 - filled),
                ops - last
            );
            last = ops;
        }
    }
    shared.done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    if progress {
        eprintln!();
    }
    let mut gets = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds");
    let mut puts = gets.clone();
    for t in tasks {
        if let Ok((g, p)) = t.await {
            let _ = gets.add(&g);
            let _ = puts.add(&p);
        }
    }
    let ops = gets.len() + puts.len();
    let samples = shared.error_samples.lock().clone();
    Report {
        ops,
        errors: shared.errors.load(Ordering::Relaxed),
        error_samples: samples,
        elapsed_s: elapsed,
        throughput: ops as f64 / elapsed,
        get: Latency::from(&gets),
        put: Latency::from(&puts),
        get_cdf: cdf(&gets),
        put_cdf: cdf(&puts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_stays_in_range_and_is_skewed() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut hits = vec![0u32; 1000];
        for _ in 0..100_000 {
            hits[z.sample(&mut rng) as usize] += 1;
        }
        assert!(
            hits[0] > hits[500] * 20,
            "key 0 should be far hotter than key 500: {} vs {}",
            hits[0],
            hits[500]
        );
    }
}
