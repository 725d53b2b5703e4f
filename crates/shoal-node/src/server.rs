//! Starting a node: open storage, build the layout, bind the peer, client-QUIC and HTTP
//! listeners, and serve until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use shoal_antientropy::{AaeConfig, AntiEntropy};
use shoal_coordinator::{Coordinator, CoordinatorConfig, RequestDefaults};
use shoal_handoff::Throttle;
use shoal_handoff::{DeliveryConfig, HandoffConfig, Hints};
use shoal_net::client_api::ApiError;
use shoal_net::{tls, Pool, TransportTuning};
use shoal_ring::NodeId;
use shoal_storage::{Replica, ReplicaLimits, RocksOptions, RocksStore};
use shoal_version::{ContextCodec, SiblingLimits};
use tracing::{info, warn};

use crate::admission::Admission;
use crate::api::{Api, ApiLimits};
use crate::auth::Authenticator;
use crate::config::NodeConfig;
use crate::membership::{liveness_label, Membership};
use crate::peer::{PeerService, QuicTransport};
use crate::quic_api::ClientService;
use crate::repair::HintTarget;

/// What the HTTP handlers share.
/// The read delays of the live prediction when the caller names none, in ms.
pub const DEFAULT_T_MS: [f64; 11] = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// How long shutdown waits for peers to confirm the QUIC close.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// How long shutdown waits for QUIC client requests in flight to finish.
const CLIENT_DRAIN: Duration = Duration::from_secs(5);

/// `GET /v1/admin/consistency` parameters.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConsistencyQuery {
    pub n: Option<u8>,
    pub r: Option<u8>,
    pub w: Option<u8>,
    /// Comma-separated delays after the write's acknowledgement, in ms.
    pub t: Option<String>,
    /// k-staleness up to this k.
    pub k: Option<u32>,
    pub trials: Option<u32>,
    pub seed: Option<u64>,
}

pub struct NodeShared {
    pub config: NodeConfig,
    pub api: Arc<Api>,
    pub transport: Arc<QuicTransport>,
    pub membership: Arc<Membership>,
    pub aae: Arc<AntiEntropy<RocksStore>>,
    pub metrics: PrometheusHandle,
    pub auth: Arc<Authenticator>,
    /// Connection and in-flight counts of HTTP clients.
    pub http_admission: Arc<Admission>,
}

impl NodeShared {
    /// This node's view of the cluster, for `GET /v1/admin/status`: liveness from SWIM, admin
    /// state and ownership from the layout record, transfers from each member's gossiped meta.
    pub async fn status(&self) -> serde_json::Value {
        let coordinator = &self.api.coordinator;
        let me = coordinator.me().clone();
        let n = coordinator.config().defaults.n as usize;
        let layout = coordinator.layout();
        let record = self.membership.record();
        let member_list = self.membership.members();
        // Whom the change in flight waits for, each with its liveness and a sentence.
        let (blockers, stuck) = self.membership.blocked_on();
        let waiting_for: Vec<_> = blockers
            .iter()
            .map(|b| {
                let liveness = member_list
                    .iter()
                    .find(|m| m.id == b.node)
                    .and_then(|m| m.liveness)
                    .map_or("unknown", crate::membership::liveness_label);
                json!({
                    "node": b.node.to_string(),
                    "waiting": b.waiting,
                    "epoch": b.epoch,
                    "liveness": liveness,
                    "reason": format!("{b} ({liveness})"),
                })
            })
            .collect();
        let members: Vec<_> = member_list
            .into_iter()
            .map(|m| {
                let owned = |len: usize| layout.as_ref().map_or(0, |l| l.partitions_of(&m.id, len).len());
                let liveness = if m.id == me {
                    "alive"
                } else {
                    m.liveness.map_or("unknown", liveness_label)
                };
                json!({
                    "id": m.id.to_string(),
                    "zone": m.member.as_ref().map(|x| x.zone.clone()).or(m.meta.as_ref().map(|x| x.zone.clone())),
                    "weight": m.member.as_ref().map(|x| x.weight),
                    "peer": m.meta.as_ref().map(|x| x.peer.to_string()),
                    "http": m.meta.as_ref().map(|x| x.http.to_string()),
                    "liveness": liveness,
                    "incarnation": m.incarnation,
                    "admin_state": m.admin_state.to_string(),
                    "seen_epoch": m.meta.as_ref().map(|x| x.seen_epoch),
                    "synced_epoch": m.meta.as_ref().map(|x| x.synced_epoch),
                    "swept_epoch": m.meta.as_ref().map(|x| x.swept_epoch),
                    "transfer": m.meta.as_ref().and_then(|x| x.transfer.clone()).map(|t| json!({
                        "epoch": t.epoch,
                        "waiting": t.waiting,
                        "partitions_done": t.partitions_done,
                        "partitions_total": t.partitions_total,
                        "percent": if t.partitions_total == 0 { 100.0 } else {
                            100.0 * f64::from(t.partitions_done) / f64::from(t.partitions_total)
                        },
                        "bytes": t.bytes,
                        "keys": t.keys,
                    })),
                    "partitions_primary": owned(1),
                    "partitions_replicated": owned(n),
                })
            })
            .collect();
        let d = coordinator.config().defaults;
        json!({
            "node": {
                "id": me.to_string(),
                "zone": self.config.node.zone,
                "http": self.config.listen.http.to_string(),
                "peer": self.config.listen.peer.to_string(),
                "quic": self.config.listen.quic.to_string(),
                "local_health": self.membership.local_health(),
            },
            "layout": {
                "version": layout.as_ref().map(|l| l.version()),
                "epoch": record.as_ref().map(|r| r.epoch),
                "partitions": self.config.cluster.partitions,
                "tokens_per_weight": self.config.cluster.tokens_per_weight,
                "transition": record.as_ref().and_then(|r| r.change()).map(|(kind, node, phase)| json!({
                    "kind": kind.to_string(),
                    "node": node.to_string(),
                    "phase": phase.to_string(),
                    "waiting_for": waiting_for,
                    "blocked_secs": stuck.map(|d| d.as_secs_f64()),
                    "skipped": record.as_ref().map(|r| {
                        r.skipped.keys().filter(|id| r.excused(id)).map(|id| id.to_string()).collect::<Vec<_>>()
                    }),
                })),
            },
            "defaults": {"n": d.n, "w": d.w, "r": d.r, "max_n": d.max_n},
            "members": members,
        })
    }

    /// The live PBS prediction for `GET /v1/admin/consistency`: t-visibility and k-staleness
    /// of (n, r, w) from the WARS legs this node measured on its own recent requests.
    pub fn consistency(&self, q: &ConsistencyQuery) -> Result<serde_json::Value, ApiError> {
        let invalid = |m: String| ApiError::new(400, "invalid_parameter", m);
        let coordinator = &self.api.coordinator;
        let defaults = &coordinator.config().defaults;
        let members = coordinator.layout().map_or(1, |l| l.members().len()).max(1);
        // Defaults shrink to fit a small cluster; a value the caller gave is checked as the kv
        // API checks it.
        let members_u8 = u8::try_from(members).unwrap_or(u8::MAX);
        let n = match q.n {
            Some(n) if n == 0 || n > members_u8 => {
                return Err(invalid(format!(
                    "n: between 1 and the {members} members of the layout, got {n}"
                )))
            }
            Some(n) => n,
            None => defaults.n.min(members_u8),
        };
        let quorum = |name: &str, given: Option<u8>, default: u8| match given {
            Some(v) if v == 0 || v > n => Err(invalid(format!("{name}: between 1 and n = {n}, got {v}"))),
            Some(v) => Ok(v),
            None => Ok(default.min(n)),
        };
        let (r, w) = (quorum("r", q.r, defaults.r)?, quorum("w", q.w, defaults.w)?);
        let t_ms: Vec<f64> = match &q.t {
            Some(list) => list
                .split(',')
                .map(|t| match t.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                    _ => Err(invalid(format!("t: {t:?} is not a number of ms, zero or more"))),
                })
                .collect::<Result<_, _>>()?,
            None => DEFAULT_T_MS.to_vec(),
        };
        if t_ms.len() > 64 {
            return Err(invalid(format!(
                "t: at most 64 delays (the limit max_t_points), got {}",
                t_ms.len()
            )));
        }
        let trials = q.trials.unwrap_or(20_000);
        if trials == 0 || trials > 1_000_000 {
            return Err(invalid(format!(
                "trials: between 1 and 1000000 (the limit max_trials), got {trials}"
            )));
        }
        let snapshot = coordinator.legs().snapshot();
        let (local, remote) = shoal_pbs::LegSnapshot::pooled([&snapshot]);
        let query = shoal_pbs::Query {
            n,
            r,
            w,
            t_ms,
            k_max: q.k.unwrap_or(3).clamp(1, 16),
            trials,
            seed: q.seed.unwrap_or(1),
            spread: shoal_pbs::Spread::Expanding,
            // The writer's coordinator holds a replica (a non-replica forwards writes); the
            // reader is another node, which holds one with this probability.
            reader_local: if members > 1 {
                f64::from(n.saturating_sub(1)) / (members - 1) as f64
            } else {
                1.0
            },
            same_coordinator: false,
            // t counts from the write's ack leaving this node (PBS's commit time).
            gap_ms: Vec::new(),
        };
        if !remote.is_complete() {
            return Err(ApiError::new(
                409,
                "no_latency_samples",
                "no latency samples for some WARS leg yet: send some traffic through this node first",
            ));
        }
        let p = shoal_pbs::predict(&local, &remote, &query).map_err(invalid)?;
        let legs = |l: &shoal_pbs::ReplicaLegs| {
            let mut out = serde_json::Map::new();
            for (name, leg) in [
                ("w", shoal_pbs::Leg::W),
                ("a", shoal_pbs::Leg::A),
                ("r", shoal_pbs::Leg::R),
                ("s", shoal_pbs::Leg::S),
            ] {
                if let Some((count, mean, p50, p99)) = l.summary(leg) {
                    out.insert(
                        name.into(),
                        json!({"samples": count, "mean_ms": mean, "p50_ms": p50, "p99_ms": p99}),
                    );
                }
            }
            serde_json::Value::Object(out)
        };
        let t0 = p.points.first();
        Ok(json!({
            "node": coordinator.me().to_string(),
            "n": n,
            "r": r,
            "w": w,
            "injected_profile": coordinator.config().inject.as_ref().map(|p| p.name.clone()),
            "method": "WARS Monte Carlo (PBS, Bailis et al., VLDB 2012) over the last samples of each leg this node measured; a one-way leg is the injected delay plus half of the rest of its round trip",
            "trials": p.trials,
            "reader_local": query.reader_local,
            "legs_ms": {"local": legs(&local), "remote": legs(&remote)},
            "t_visibility": p.points.iter().map(|x| json!({"t_ms": x.t_ms, "p_fresh": x.p_fresh})).collect::<Vec<_>>(),
            "k_staleness": t0.map(|x| x.p_within_k.iter().enumerate().map(|(k, p)| json!({"k": k + 1, "p": p})).collect::<Vec<_>>()),
            "predicted_latency_ms": {
                "read": {"p50": p.read_latency_ms[0], "p99": p.read_latency_ms[1], "p999": p.read_latency_ms[2]},
                "write": {"p50": p.write_latency_ms[0], "p99": p.write_latency_ms[1], "p999": p.write_latency_ms[2]},
            },
            "closed_form_p_stale_non_expanding": shoal_pbs::wars::p_stale_closed_form(n, r, w),
        }))
    }

    /// Anti-entropy and handoff state, for `GET /v1/admin/aae`: every Merkle tree this node
    /// holds with its root and last exchange, and the hints it keeps per owner.
    pub fn aae_status(&self) -> serde_json::Value {
        let exchanges: std::collections::HashMap<(u32, u8), _> =
            self.aae.status().into_iter().map(|s| ((s.partition, s.n), s)).collect();
        let trees: Vec<_> = self
            .aae
            .trees()
            .list()
            .into_iter()
            .map(|t| {
                let last = exchanges.get(&(t.partition, t.n));
                json!({
                    "partition": t.partition,
                    "n": t.n,
                    "keys": t.keys,
                    "tombstones": t.tombstones,
                    "root": format!("{:016x}", t.root),
                    "last_exchange": last,
                })
            })
            .collect();
        let hints: Vec<_> = self
            .api
            .coordinator
            .hints()
            .map(|h| h.pending())
            .unwrap_or_default()
            .into_iter()
            .map(|(owner, count)| json!({"target": owner, "pending": count}))
            .collect();
        json!({
            "node": self.api.coordinator.me().to_string(),
            "enabled": self.config.antientropy.enabled,
            "interval_ms": self.config.antientropy.interval_ms,
            "trees": trees,
            "hints": hints,
        })
    }
}

/// The key of an endpoint's QUIC stateless resets: the same across this node's restarts (so a
/// peer's connection to the process before a crash is reset at its first packet, see
/// `shoal_net::bind_endpoint`), different per node and port, and unknowable without the
/// cluster secret.
fn reset_key(secret: &[u8], node: &impl std::fmt::Display, port: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, format!("shoal quic stateless reset\0{node}\0{port}").as_bytes());
    tag.as_ref().to_vec()
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the cluster secret {} (create it with `shoal cert init`)",
            path.display()
        )
    })?;
    let secret = text.trim().as_bytes().to_vec();
    anyhow::ensure!(
        secret.len() >= 32,
        "the cluster secret in {} is shorter than 32 characters",
        path.display()
    );
    Ok(secret)
}

/// Run a node until `shutdown` completes.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let metrics = crate::telemetry::install();
    let me = NodeId::new(config.node.id.clone());
    let auth = Arc::new(config.authenticator().context("loading auth.tokens_file")?);
    if !auth.enabled() {
        warn!("auth.enabled = false: every client may read, write and administer this node; enable it outside development");
    }
    let limits = &config.limits;
    let http_admission = Admission::new(
        "http",
        limits.max_connections_per_client,
        limits.max_inflight_per_client,
    );
    let quic_admission = Admission::new(
        "quic",
        limits.max_connections_per_client,
        limits.max_inflight_per_client,
    );

    let db_path = config.node.data_dir.join("db");
    std::fs::create_dir_all(&db_path).with_context(|| format!("creating {}", db_path.display()))?;
    let rocks_opts = RocksOptions {
        sync_writes: config.storage.sync_writes,
        block_cache_bytes: config.storage.block_cache_mb << 20,
        min_free_bytes: (config.storage.min_free_bytes > 0).then_some(config.storage.min_free_bytes),
    };
    let store = {
        let p = db_path.clone();
        tokio::task::spawn_blocking(move || RocksStore::open(&p, &rocks_opts))
            .await?
            .with_context(|| format!("opening RocksDB at {}", db_path.display()))?
    };
    let limits = ReplicaLimits {
        siblings: SiblingLimits {
            warn: config.limits.sibling_warn,
            max: config.limits.sibling_max,
        },
        max_object_bytes: config.limits.max_object_bytes,
    };
    let store = Arc::new(store);
    let replica = Arc::new(Replica::new(store.clone(), limits).context("opening the replica")?);
    // The Merkle trees are rebuilt before anything can write, so they never miss a change.
    let aae = {
        let (replica, partitions) = (replica.clone(), config.cluster.partitions);
        let aae_config = AaeConfig {
            tombstone_grace: Duration::from_secs(config.antientropy.tombstone_grace_secs),
        };
        let started = std::time::Instant::now();
        let aae = tokio::task::spawn_blocking(move || AntiEntropy::open(replica, partitions, aae_config))
            .await?
            .context("building the anti-entropy trees")?;
        let keys: u64 = aae.trees().list().iter().map(|t| t.keys).sum();
        info!(
            keys,
            took_ms = started.elapsed().as_millis() as u64,
            "anti-entropy trees built"
        );
        aae
    };
    let hints = if config.handoff.enabled {
        let handoff = HandoffConfig {
            window: Duration::from_secs(config.handoff.window_secs),
            max_age: Duration::from_secs(config.hint_max_age_secs()),
            max_hints_per_target: config.handoff.max_hints_per_target,
        };
        let s = store.clone();
        Some(Arc::new(
            tokio::task::spawn_blocking(move || Hints::open(s, handoff))
                .await?
                .context("opening the hint store")?,
        ))
    } else {
        None
    };

    let tls_files = tls::TlsFiles {
        ca_cert: config.tls.ca_cert.clone(),
        node_cert: config.tls.node_cert.clone(),
        node_key: config.tls.node_key.clone(),
    };
    let tuning = TransportTuning {
        max_frame_bytes: config.limits.max_frame_bytes,
        ..Default::default()
    };
    let secret = read_secret(&config.cluster.secret_file)?;
    let peer_server = tuning.server_config(tls::peer_server_config(&tls_files)?)?;
    let peer_reset = reset_key(&secret, &me, "peer");
    let (mut peer_endpoint, granted) =
        shoal_net::bind_endpoint(config.listen.peer, Some(peer_server), Some(&peer_reset))
            .with_context(|| format!("binding the peer port {}", config.listen.peer))?;
    // Linux reports twice the buffer it accounts for; less than asked means rmem_max capped it.
    if granted < shoal_net::UDP_BUFFER_BYTES {
        warn!(
            granted,
            wanted = shoal_net::UDP_BUFFER_BYTES,
            "the kernel capped the QUIC receive buffer; bursts may drop datagrams and stall requests: raise net.core.rmem_max and net.core.wmem_max to at least 4194304"
        );
    }
    peer_endpoint.set_default_client_config(tuning.client_config(tls::peer_client_config(&tls_files)?)?);
    let addrs: HashMap<NodeId, _> = config
        .cluster
        .members
        .iter()
        .map(|m| (NodeId::new(m.id.clone()), m.peer))
        .collect();
    let pool = Pool::new(peer_endpoint.clone(), tls::SERVER_NAME, config.limits.max_frame_bytes);
    let transport = Arc::new(QuicTransport::new(pool, addrs));

    let coord_config = CoordinatorConfig {
        defaults: RequestDefaults {
            n: config.requests.n,
            w: config.requests.w,
            r: config.requests.r,
            max_n: config.requests.max_n,
        },
        default_timeout: Duration::from_millis(config.requests.timeout_ms as u64),
        max_timeout: Duration::from_millis(config.requests.max_timeout_ms as u64),
        read_repair: config.requests.read_repair,
        storage: config.storage.execution,
        sloppy_quorum: config.requests.sloppy_quorum,
        precise_delays: true,
        inject: config.latency_profile()?.map(Arc::new),
        layout_lease: config.swim_config().layout_lease(),
    };
    if let Some(p) = &coord_config.inject {
        warn!(profile = %p.name, "injecting WARS latencies on every replica request (bench.latency_profile): for benchmarks only");
    }
    let mut coordinator = Coordinator::new(
        me.clone(),
        // Membership restores or bootstraps the layout; until then the node serves no data.
        None,
        replica,
        transport.clone(),
        coord_config,
    );
    if let Some(h) = &hints {
        coordinator = coordinator.with_hints(h.clone());
    }
    let coordinator = Arc::new(coordinator);
    let membership = Membership::start(&config, coordinator.clone(), transport.clone())?;
    coordinator.set_health(membership.clone());
    if let Some(h) = hints {
        let target = HintTarget {
            membership: membership.clone(),
            transport: transport.clone(),
            coordinator: coordinator.clone(),
        };
        let delivery = DeliveryConfig {
            interval: Duration::from_millis(config.handoff.delivery_interval_ms),
            batch_keys: config.handoff.batch_keys,
            batch_bytes: 4 << 20,
            sweep_interval: Duration::from_secs(60),
            redirect_interval: Duration::from_secs(60),
        };
        let throttle = Arc::new(Throttle::new(config.handoff.max_mb_per_sec));
        tokio::spawn(shoal_handoff::run(h, target, delivery, throttle));
    }
    if config.antientropy.enabled {
        tokio::spawn(crate::repair::anti_entropy(
            aae.clone(),
            coordinator.clone(),
            membership.clone(),
            transport.clone(),
            Duration::from_millis(config.antientropy.interval_ms),
            Arc::new(Throttle::new(config.antientropy.max_mb_per_sec)),
        ));
    }
    if let Some(space) = store.space().cloned() {
        // Writes re-read the free space themselves; this keeps the gauges (and the way back
        // out of a full disk) current while none arrive.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                space.refresh();
                let (free, full) = space.state();
                metrics::gauge!("shoal_disk_free_bytes").set(free as f64);
                metrics::gauge!("shoal_disk_full").set(if full { 1.0 } else { 0.0 });
            }
        });
    }
    let codec = ContextCodec::new(&secret);
    let api = Arc::new(Api::new(
        coordinator.clone(),
        codec,
        ApiLimits {
            max_key_bytes: config.limits.max_key_bytes,
            max_value_bytes: config.limits.max_value_bytes,
        },
    ));

    tokio::spawn(shoal_net::serve(
        peer_endpoint.clone(),
        Arc::new(PeerService {
            coordinator,
            membership: membership.clone(),
            aae: aae.clone(),
        }),
        tuning.clone(),
    ));
    let client_server = tuning.server_config(tls::client_api_server_config(&tls_files)?)?;
    let client_reset = reset_key(&secret, &me, "client");
    let (client_endpoint, _) = shoal_net::bind_endpoint(config.listen.quic, Some(client_server), Some(&client_reset))
        .with_context(|| format!("binding the client QUIC port {}", config.listen.quic))?;
    tokio::spawn(shoal_net::serve(
        client_endpoint.clone(),
        Arc::new(ClientService {
            api: api.clone(),
            auth: auth.clone(),
            limits: quic_admission.clone(),
        }),
        tuning,
    ));

    let shared = Arc::new(NodeShared {
        config: config.clone(),
        api,
        transport,
        membership: membership.clone(),
        aae,
        metrics,
        auth,
        http_admission: http_admission.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen.http)
        .await
        .with_context(|| format!("binding the HTTP port {}", config.listen.http))?;
    let https = if config.listen.http_tls_cert.as_os_str().is_empty() {
        None
    } else {
        let tls = tls::https_server_config(&config.listen.http_tls_cert, &config.listen.http_tls_key)
            .context("loading listen.http_tls_cert and listen.http_tls_key")?;
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
    };
    let scheme = if https.is_some() { "https" } else { "http" };
    let listener = crate::http_listener::AdmittingListener::new(listener, http_admission, https)
        .context("starting the HTTP listener")?;
    info!(node = %me, http = %config.listen.http, scheme, peer = %config.listen.peer, quic = %config.listen.quic, "shoal node serving");
    let app = crate::http_api::router(shared).into_make_service_with_connect_info::<crate::http_listener::ClientConn>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = membership.stopped() => {}
            }
        })
        .await
        .context("serving HTTP")?;
    // HTTP requests in flight have finished (axum's graceful shutdown). The QUIC client API
    // takes no new connections, and its requests in flight get CLIENT_DRAIN to finish.
    client_endpoint.set_server_config(None);
    let draining = std::time::Instant::now();
    while quic_admission.inflight() > 0 && draining.elapsed() < CLIENT_DRAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    info!(node = %me, "shutting down: closing QUIC endpoints");
    client_endpoint.close(0u32.into(), b"shutdown");
    peer_endpoint.close(0u32.into(), b"shutdown");
    // Closing tells every peer at once; waiting for each to confirm is a courtesy bounded
    // here, since a peer that is down (or SIGSTOPped) answers only at the 30 s idle timeout,
    // and an orchestrator's grace period is better spent than that.
    if tokio::time::timeout(SHUTDOWN_DRAIN, peer_endpoint.wait_idle())
        .await
        .is_err()
    {
        info!(node = %me, "shutdown: some peers did not confirm the close within {SHUTDOWN_DRAIN:?}; exiting anyway");
    }
    // Everything acknowledged is in the WAL already; flushing the memtables spares the next
    // start a WAL replay. Hints stay in their column family for delivery after the restart.
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
    match flushed {
        Ok(Ok(())) => info!(node = %me, "shutdown: storage flushed"),
        Ok(Err(e)) => {
            warn!(node = %me, error = %e, "shutdown: could not flush storage (the WAL still has every write)")
        }
        Err(e) => warn!(node = %me, error = %e, "shutdown: the storage flush did not run"),
    }
    Ok(())
}
