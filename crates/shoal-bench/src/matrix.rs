//! One setting of a consistency matrix: the YCSB load and the freshness probes run together
//! against the same cluster, then the PBS model is fed the WARS legs the nodes measured
//! during exactly that window, so measured and predicted staleness describe the same traffic.

use std::sync::Arc;

use anyhow::Context;
use shoal_client::Client;
use shoal_pbs::{Leg, LegSnapshot, ReplicaLegs};

use crate::freshness::{self, ProbeConfig};
use crate::report::{Cell, KPoint, LegStat, LegSummary, VisibilityPoint};
use crate::Workload;

pub struct CellPlan {
    /// The load; its n, r and w are the setting measured.
    pub workload: Workload,
    /// Read delays, burst length and probe workers (n, r, w and duration are taken from the
    /// workload).
    pub probe: ProbeConfig,
    /// Monte Carlo trials for the prediction.
    pub trials: u32,
    /// Nodes in the cluster (the chance that a read's coordinator holds a replica).
    pub nodes: usize,
}

/// Ask every node to forget its leg samples, so the prediction sees only this setting.
pub async fn clear_legs(admin: &[String], access: shoal_client::Access<'_>) -> anyhow::Result<()> {
    for e in admin {
        shoal_client::http_json(e, "DELETE", "/v1/admin/consistency/legs", access)
            .await
            .with_context(|| format!("clearing the leg samples of {e}"))?;
    }
    Ok(())
}

/// Every node's leg samples, pooled into the coordinator's own replica and the others.
pub async fn fetch_legs(
    admin: &[String],
    access: shoal_client::Access<'_>,
) -> anyhow::Result<(ReplicaLegs, ReplicaLegs)> {
    let mut snaps = Vec::new();
    for e in admin {
        let v = shoal_client::http_get_json(e, "/v1/admin/consistency/legs", access)
            .await
            .with_context(|| format!("fetching the leg samples of {e}"))?;
        snaps.push(serde_json::from_value::<LegSnapshot>(v).with_context(|| format!("leg samples of {e}"))?);
    }
    Ok(LegSnapshot::pooled(&snaps))
}

fn leg_stat(legs: &ReplicaLegs, leg: Leg) -> LegStat {
    match legs.summary(leg) {
        Some((samples, mean_ms, p50_ms, p99_ms)) => LegStat {
            samples: samples as u64,
            mean_ms,
            p50_ms,
            p99_ms,
        },
        None => LegStat {
            samples: 0,
            mean_ms: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        },
    }
}

/// Round trips to the nodes (each in turn, every 20 ms) until `until`, in ms.
async fn ping_nodes(admin: &[String], until: std::time::Instant) -> Vec<f64> {
    let mut clients = Vec::new();
    for e in admin {
        if let Ok(c) = Client::connect(e, None).await {
            clients.push(c);
        }
    }
    let mut rtts = Vec::new();
    let mut i = 0;
    while std::time::Instant::now() < until && !clients.is_empty() {
        if let Ok(rtt) = clients[i % clients.len()].ping().await {
            rtts.push(rtt.as_secs_f64() * 1000.0);
        }
        i += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    rtts
}

/// Run one setting. `admin` are the nodes' HTTP endpoints (for the leg samples, read with
/// `access`: the token and CA the nodes require); without them the cell has measurements but
/// no prediction.
pub async fn run_cell(
    clients: &[Arc<Client>],
    admin: &[String],
    access: shoal_client::Access<'_>,
    plan: &CellPlan,
    label: &str,
) -> anyhow::Result<(Cell, Vec<String>)> {
    let w = &plan.workload;
    let (n, r, wq) = (
        w.n.context("the workload names n")?,
        w.r.context("the workload names r")?,
        w.w.context("the workload names w")?,
    );
    if !admin.is_empty() {
        clear_legs(admin, access).await?;
    }
    let probe_cfg = ProbeConfig {
        n,
        r,
        w: wq,
        duration: w.warmup + w.duration,
        ..plan.probe.clone()
    };
    let probes = (probe_cfg.workers > 0 && !probe_cfg.duration.is_zero()).then(|| {
        let (clients, cfg) = (clients.to_vec(), probe_cfg.clone());
        let prefix = format!("probe-{}-{label}-n{n}r{r}w{wq}", plan.probe.seed);
        tokio::spawn(async move { freshness::probe(&clients, &cfg, &prefix).await })
    });
    // The probes' reads start t after the client *received* the ack, the model's t after the
    // coordinator sent it: between them are the client's two hops, measured by pinging the
    // nodes' HTTP ports while the setting runs.
    let pinger = (probes.is_some() && !admin.is_empty()).then(|| {
        let (admin, until) = (admin.to_vec(), std::time::Instant::now() + probe_cfg.duration);
        tokio::spawn(async move { ping_nodes(&admin, until).await })
    });
    let load = crate::run(clients, w, true).await;
    let probes = match probes {
        Some(p) => p.await.context("probe task")?,
        None => Default::default(),
    };
    let gap_ms = match pinger {
        Some(p) => p.await.context("ping task")?,
        None => Vec::new(),
    };
    let mut notes = load.error_samples.clone();
    notes.extend(probes.error_samples.iter().cloned());

    let prediction = if admin.is_empty() || probes.points.is_empty() {
        None
    } else {
        let (local, remote) = fetch_legs(admin, access).await?;
        let query = shoal_pbs::Query {
            n,
            r,
            w: wq,
            t_ms: probes.points.iter().map(|p| p.waited_ms).collect(),
            k_max: probe_cfg.burst,
            trials: plan.trials,
            seed: probe_cfg.seed,
            spread: shoal_pbs::Spread::Expanding,
            reader_local: if plan.nodes > 1 {
                f64::from(n.saturating_sub(1)) / (plan.nodes - 1) as f64
            } else {
                1.0
            },
            same_coordinator: plan.nodes == 1,
            gap_ms,
        };
        match shoal_pbs::predict(&local, &remote, &query) {
            Ok(p) => Some((p, local, remote)),
            Err(e) => {
                notes.push(format!("no prediction: {e}"));
                None
            }
        }
    };
    let ratio = |hits: u64, of: u64| (of > 0).then(|| hits as f64 / of as f64);
    let visibility = probes
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| VisibilityPoint {
            t_ms: p.t_ms,
            probes: p.probes,
            fresh: p.within_k.first().copied().unwrap_or(0),
            measured: ratio(p.within_k.first().copied().unwrap_or(0), p.probes),
            predicted: prediction.as_ref().map(|(pr, ..)| pr.points[i].p_fresh),
        })
        .collect();
    let k_staleness = probes
        .points
        .first()
        .map(|p| {
            p.within_k
                .iter()
                .enumerate()
                .map(|(k, hits)| KPoint {
                    k: k as u32 + 1,
                    probes: p.probes,
                    measured: ratio(*hits, p.probes),
                    predicted: prediction.as_ref().map(|(pr, ..)| pr.points[0].p_within_k[k]),
                })
                .collect()
        })
        .unwrap_or_default();
    let legs = match &prediction {
        Some((_, _, remote)) => LegSummary {
            w: leg_stat(remote, Leg::W),
            a: leg_stat(remote, Leg::A),
            r: leg_stat(remote, Leg::R),
            s: leg_stat(remote, Leg::S),
        },
        None => {
            let empty = ReplicaLegs::default();
            LegSummary {
                w: leg_stat(&empty, Leg::W),
                a: leg_stat(&empty, Leg::A),
                r: leg_stat(&empty, Leg::R),
                s: leg_stat(&empty, Leg::S),
            }
        }
    };
    let cell = Cell {
        n,
        r,
        w: wq,
        ops: load.ops,
        errors: load.errors + probes.errors,
        elapsed_s: load.elapsed_s,
        throughput: load.throughput,
        get: load.get,
        put: load.put,
        get_cdf: load.get_cdf,
        put_cdf: load.put_cdf,
        visibility,
        k_staleness,
        legs,
    };
    Ok((cell, notes))
}
