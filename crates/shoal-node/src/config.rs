//! Node configuration, layered: defaults, then a TOML file, then `SHOAL__SECTION__KEY`
//! environment variables, then command-line overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_coordinator::StorageExecution;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub listen: ListenSection,
    pub cluster: ClusterSection,
    pub tls: TlsSection,
    pub requests: RequestSection,
    pub limits: LimitsSection,
    pub storage: StorageSection,
    pub swim: SwimSection,
    pub transfer: TransferSection,
    pub handoff: HandoffSection,
    pub antientropy: AntiEntropySection,
    pub auth: AuthSection,
    pub bench: BenchSection,
    pub log: LogSection,
}

/// Client authentication. Off by default, as Cassandra's `AllowAllAuthenticator` and Riak's
/// security-off default are, so a local cluster works without setup; production enables it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Require a bearer token on every client request except `/healthz`.
    pub enabled: bool,
    /// TOML file of `[[token]]` entries (name, scopes, sha256 of the token); see
    /// `shoal auth token`. Read once at start.
    pub tokens_file: PathBuf,
}

/// Benchmark-only knobs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSection {
    /// Inject WARS latencies on every replica request this node coordinates, its own replica
    /// included: a built-in profile (`lnkd-ssd`, `lnkd-disk`, `ymmr`, `wan`; `lan` or empty
    /// injects nothing) or the path of a TOML profile file. Slows the node down on purpose;
    /// `shoal bench` sets it on the clusters it starts.
    pub latency_profile: String,
}

/// Hinted handoff: copies kept for down replicas (Dynamo §4.6).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffSection {
    /// Keep hints for down replicas and deliver them. Off: a write counts only replicas that
    /// answer, and anti-entropy alone repairs a replica that missed writes.
    pub enabled: bool,
    /// How long a hint waits for its owner. Past it, the hint is redirected: merged into the
    /// key's other live replicas, and released once one of them stored it as news (a hinted
    /// copy counts toward `w`, so it is moved, never just thrown away).
    pub window_secs: u64,
    /// Hints older than this are dropped, not delivered; anti-entropy repairs their owner from
    /// the other copies. Default: half of `antientropy.tombstone_grace_secs` (at least
    /// `window_secs`). Must stay below the grace by more than the nodes' clocks can disagree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// The most keys hinted for one owner; past it hinted writes for that owner are refused.
    pub max_hints_per_target: usize,
    /// How often to look for owners that came back.
    pub delivery_interval_ms: u64,
    /// Keys per delivery batch.
    pub batch_keys: usize,
    /// Throttle for hint delivery, in MB/s.
    pub max_mb_per_sec: f64,
}

/// Active anti-entropy and tombstone GC.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiEntropySection {
    pub enabled: bool,
    /// Every tree this node holds is exchanged with a random other replica once per interval,
    /// the exchanges spread evenly over it.
    pub interval_ms: u64,
    /// Throttle for anti-entropy traffic, in MB/s.
    pub max_mb_per_sec: f64,
    /// A tombstone is removed only once every replica holds it and it is this old. Must be
    /// longer than `handoff.max_age_secs`, or a late hint could bring a removed key back.
    pub tombstone_grace_secs: u64,
}

/// SWIM failure detection (memberlist's LAN profile by default).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwimSection {
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
    pub indirect_checks: usize,
    /// Suspicion lasts suspicion_mult × log10(N) probe intervals at least (Lifeguard).
    pub suspicion_mult: u32,
    /// ... and at most this many times that, before independent confirmations shorten it.
    pub suspicion_max_timeout_mult: u32,
    /// Each piggybacked update is sent retransmit_mult × log10(N+1) times.
    pub retransmit_mult: u32,
    /// Full-state push/pull with one random member, to heal what piggybacking missed.
    pub push_pull_interval_ms: u64,
}

/// Partition transfers on join, leave and remove.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    /// Throttle for the data a node streams in, in MB/s (10^6 bytes).
    pub max_mb_per_sec: f64,
    /// Bytes of objects asked for per request.
    pub chunk_bytes: usize,
    /// After a change commits, how long a node keeps data it no longer owns before dropping
    /// it, so coordinators that have not yet heard of the commit still find it.
    pub drop_delay_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Stable identity; also the actor in every dot this node mints. Never reuse one for a
    /// different disk.
    pub id: String,
    pub zone: String,
    pub weight: u32,
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub http: SocketAddr,
    /// QUIC, mutual TLS: peers only.
    pub peer: SocketAddr,
    /// QUIC, server TLS: the client API.
    pub quic: SocketAddr,
    /// Serve the HTTP API over TLS (HTTPS) with this PEM certificate chain; set together with
    /// `http_tls_key`. Empty: plain HTTP.
    pub http_tls_cert: PathBuf,
    /// The private key (PEM) of `http_tls_cert`.
    pub http_tls_key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: String,
    /// Where the member's peer port is reached.
    pub peer: SocketAddr,
    #[serde(default = "default_zone")]
    pub zone: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_zone() -> String {
    "default".into()
}

fn default_weight() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The founding members, this node included: every node configured with the same list
    /// computes the same first layout. Empty on a node that will be added with
    /// `shoal admin join`. Later changes are gossiped and remembered on disk, so this list is
    /// only read when the data directory is new.
    // `default`: the config crate drops empty arrays from the defaults layer.
    #[serde(default)]
    pub members: Vec<MemberConfig>,
    /// Peer addresses to contact on start, besides the configured and remembered members.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    pub partitions: u32,
    pub tokens_per_weight: u32,
    /// File holding the secret that signs causal-context tokens; identical on every node.
    pub secret_file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSection {
    pub n: u8,
    pub w: u8,
    pub r: u8,
    pub max_n: u8,
    pub timeout_ms: u32,
    pub max_timeout_ms: u32,
    pub read_repair: bool,
    /// Let hinted copies on fallback nodes count toward W and R when replicas are down
    /// (Dynamo's sloppy quorum); a request's `sloppy=false` turns it off for that request.
    /// Needs `handoff.enabled`.
    pub sloppy_quorum: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub sibling_warn: usize,
    pub sibling_max: usize,
    pub max_object_bytes: usize,
    pub max_frame_bytes: usize,
    /// Open connections one client (source IP) may hold, per API (HTTP, QUIC).
    pub max_connections_per_client: u32,
    /// Requests one client (source IP) may have in flight, per API; QUIC counts open streams.
    pub max_inflight_per_client: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// fsync every write (power-loss durability); off, a write is still in the WAL before it
    /// is acknowledged, which survives a process crash.
    pub sync_writes: bool,
    pub block_cache_mb: usize,
    /// Where RocksDB calls run: `inline` on the request's async worker (fast; right while
    /// writes are not fsynced and data mostly fits in memory) or `pool`, tokio's blocking pool
    /// (required with `sync_writes`).
    pub execution: StorageExecution,
    /// Refuse writes (`507 insufficient_storage`) while the data directory's filesystem has
    /// less than this many bytes available, before RocksDB itself runs out; 0 turns it off.
    pub min_free_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `shoal_coordinator=debug,info`.
    pub level: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let addr = |s: &str| s.parse().expect("literal socket address");
        Self {
            node: NodeSection {
                id: "n1".into(),
                zone: default_zone(),
                weight: 1,
                data_dir: "./data".into(),
            },
            listen: ListenSection {
                http: addr("127.0.0.1:8080"),
                peer: addr("127.0.0.1:9080"),
                quic: addr("127.0.0.1:7080"),
                http_tls_cert: PathBuf::new(),
                http_tls_key: PathBuf::new(),
            },
            cluster: ClusterSection {
                members: Vec::new(),
                seeds: Vec::new(),
                partitions: 1024,
                tokens_per_weight: 64,
                secret_file: "./certs/cluster.secret".into(),
            },
            tls: TlsSection {
                ca_cert: "./certs/ca.pem".into(),
                node_cert: "./certs/node.pem".into(),
                node_key: "./certs/node.key".into(),
            },
            requests: RequestSection {
                n: 3,
                w: 2,
                r: 2,
                max_n: 5,
                timeout_ms: 5000,
                max_timeout_ms: 60_000,
                read_repair: true,
                sloppy_quorum: true,
            },
            limits: LimitsSection {
                max_key_bytes: 1024,
                max_value_bytes: 8 << 20,
                sibling_warn: 25,
                sibling_max: 100,
                max_object_bytes: 64 << 20,
                max_frame_bytes: 80 << 20,
                max_connections_per_client: 1024,
                max_inflight_per_client: 4096,
            },
            storage: StorageSection {
                sync_writes: false,
                block_cache_mb: 64,
                execution: StorageExecution::Inline,
                min_free_bytes: 128 << 20,
            },
            swim: SwimSection {
                probe_interval_ms: 1000,
                probe_timeout_ms: 500,
                indirect_checks: 3,
                suspicion_mult: 4,
                suspicion_max_timeout_mult: 6,
                retransmit_mult: 4,
                push_pull_interval_ms: 30_000,
            },
            transfer: TransferSection {
                max_mb_per_sec: 32.0,
                chunk_bytes: 1 << 20,
                drop_delay_ms: 10_000,
            },
            handoff: HandoffSection {
                enabled: true,
                window_secs: 3 * 3600,
                max_age_secs: None,
                max_hints_per_target: 1_000_000,
                delivery_interval_ms: 1000,
                batch_keys: 256,
                max_mb_per_sec: 32.0,
            },
            antientropy: AntiEntropySection {
                enabled: true,
                interval_ms: 600_000,
                max_mb_per_sec: 16.0,
                tombstone_grace_secs: 10 * 86_400,
            },
            auth: AuthSection {
                enabled: false,
                tokens_file: PathBuf::new(),
            },
            bench: BenchSection {
                latency_profile: String::new(),
            },
            log: LogSection {
                format: "text".into(),
                level: "info".into(),
            },
        }
    }
}

impl NodeConfig {
    /// Load defaults, then `file` (TOML), then `SHOAL__SECTION__KEY` environment variables,
    /// then `overrides` (dotted keys such as `node.id`), and validate the result.
    pub fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<NodeConfig, ConfigError> {
        let defaults =
            config::Config::try_from(&NodeConfig::default()).map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Load(format!("config file {} does not exist", f.display())));
            }
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SHOAL")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        for (k, v) in overrides {
            builder = builder
                .set_override(k.as_str(), v.as_str())
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        let cfg: NodeConfig = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The WARS latency profile to inject, if any (`lan` injects nothing, so it is `None`).
    pub fn latency_profile(&self) -> Result<Option<shoal_pbs::Profile>, shoal_pbs::ProfileError> {
        let spec = self.bench.latency_profile.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let profile = shoal_pbs::Profile::resolve(spec)?;
        Ok((!profile.is_lan()).then_some(profile))
    }

    /// `handoff.max_age_secs`, or its default: half the tombstone grace, at least the window.
    pub fn hint_max_age_secs(&self) -> u64 {
        self.handoff
            .max_age_secs
            .unwrap_or_else(|| (self.antientropy.tombstone_grace_secs / 2).max(self.handoff.window_secs))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node.id.is_empty() {
            return bad("node.id must not be empty".into());
        }
        if !self.cluster.members.is_empty() && !self.cluster.members.iter().any(|m| m.id == self.node.id) {
            return bad(format!(
                "cluster.members must include this node ({}), or be empty on a node that will join with `shoal admin join`",
                self.node.id
            ));
        }
        if let Err(e) = self.ring_config().validate() {
            return bad(format!("cluster.partitions / cluster.tokens_per_weight: {e}"));
        }
        if let Err(e) = self.swim_config().validate() {
            return bad(e);
        }
        if !self.transfer.max_mb_per_sec.is_finite()
            || self.transfer.max_mb_per_sec <= 0.0
            || self.transfer.chunk_bytes == 0
        {
            return bad("transfer: max_mb_per_sec and chunk_bytes must be positive".into());
        }
        let h = &self.handoff;
        if h.max_hints_per_target == 0 || h.batch_keys == 0 || h.delivery_interval_ms == 0 || h.max_mb_per_sec <= 0.0 {
            return bad(
                "handoff: max_hints_per_target, batch_keys, delivery_interval_ms and max_mb_per_sec must be positive"
                    .into(),
            );
        }
        if self.requests.sloppy_quorum && !h.enabled {
            return bad("requests.sloppy_quorum needs handoff.enabled: a stand-in keeps its copy as a hint".into());
        }
        let a = &self.antientropy;
        if a.interval_ms < 100 || a.max_mb_per_sec <= 0.0 {
            return bad("antientropy: interval_ms must be at least 100 and max_mb_per_sec positive".into());
        }
        if h.enabled && h.max_age_secs.is_some_and(|m| m < h.window_secs) {
            return bad(format!(
                "handoff.max_age_secs ({}) must be at least handoff.window_secs ({}): a hint is redirected after the window and dropped after max_age",
                self.hint_max_age_secs(),
                h.window_secs
            ));
        }
        if h.enabled && a.tombstone_grace_secs <= self.hint_max_age_secs() {
            return bad(format!(
                "antientropy.tombstone_grace_secs ({}) must be longer than handoff.max_age_secs ({}): a hint delivered after its key's tombstone was removed would bring the key back",
                a.tombstone_grace_secs,
                self.hint_max_age_secs()
            ));
        }
        let r = &self.requests;
        if r.n == 0 || r.w == 0 || r.r == 0 || r.w > r.n || r.r > r.n || r.n > r.max_n {
            return bad(format!(
                "requests: need 1 <= w, r <= n <= max_n (got n={}, w={}, r={}, max_n={})",
                r.n, r.w, r.r, r.max_n
            ));
        }
        if r.timeout_ms == 0 || r.timeout_ms > r.max_timeout_ms {
            return bad("requests: need 0 < timeout_ms <= max_timeout_ms".into());
        }
        let l = &self.limits;
        if l.max_key_bytes == 0 || l.max_value_bytes == 0 || l.sibling_max == 0 || l.sibling_warn > l.sibling_max {
            return bad(
                "limits: key, value and sibling limits must be positive, with sibling_warn <= sibling_max".into(),
            );
        }
        if l.max_object_bytes < l.max_value_bytes || l.max_frame_bytes < l.max_object_bytes + l.max_key_bytes + 4096 {
            return bad("limits: need max_value_bytes <= max_object_bytes < max_frame_bytes (with room for the key and framing)".into());
        }
        if self.listen.http_tls_cert.as_os_str().is_empty() != self.listen.http_tls_key.as_os_str().is_empty() {
            return bad("listen: set both http_tls_cert and http_tls_key to serve HTTPS, or neither".into());
        }
        if l.max_connections_per_client == 0 || l.max_inflight_per_client == 0 {
            return bad("limits: max_connections_per_client and max_inflight_per_client must be positive".into());
        }
        self.authenticator()
            .map_err(|e| ConfigError::Invalid(format!("auth: {e}")))?;
        if self.storage.sync_writes && self.storage.execution == StorageExecution::Inline {
            return bad(
                "storage: sync_writes fsyncs every write, which must not run on the async workers; set storage.execution = \"pool\"".into(),
            );
        }
        self.latency_profile()
            .map_err(|e| ConfigError::Invalid(format!("bench.latency_profile: {e}")))?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad(format!("log.format must be text or json, not {:?}", self.log.format));
        }
        Ok(())
    }

    /// The `[auth]` section, with its tokens file read and checked.
    pub fn authenticator(&self) -> Result<crate::auth::Authenticator, crate::auth::AuthError> {
        crate::auth::Authenticator::from_config(self.auth.enabled, &self.auth.tokens_file)
    }

    pub fn peer_addr(&self, id: &str) -> Option<SocketAddr> {
        self.cluster.members.iter().find(|m| m.id == id).map(|m| m.peer)
    }

    /// The ring shape; every node of a cluster must agree on it.
    pub fn ring_config(&self) -> shoal_ring::RingConfig {
        shoal_ring::RingConfig {
            partitions: self.cluster.partitions,
            tokens_per_weight: self.cluster.tokens_per_weight,
        }
    }

    pub fn swim_config(&self) -> shoal_membership::SwimConfig {
        let s = &self.swim;
        let ms = std::time::Duration::from_millis;
        shoal_membership::SwimConfig {
            probe_interval: ms(s.probe_interval_ms),
            probe_timeout: ms(s.probe_timeout_ms),
            indirect_checks: s.indirect_checks,
            suspicion_mult: s.suspicion_mult,
            suspicion_max_timeout_mult: s.suspicion_max_timeout_mult,
            retransmit_mult: s.retransmit_mult,
            push_pull_interval: ms(s.push_pull_interval_ms),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("shoal.toml");
        std::fs::write(&p, body).unwrap();
        p
    }

    const BASE: &str = r#"
[node]
id = "a"
[[cluster.members]]
id = "a"
peer = "127.0.0.1:9000"
"#;

    #[test]
    fn layers_file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), &format!("{BASE}\n[requests]\nn = 1\nw = 1\nr = 1\n"));
        let cfg = NodeConfig::load(Some(&f), &[("limits.max_key_bytes".into(), "10".into())]).unwrap();
        assert_eq!(cfg.node.id, "a");
        assert_eq!(cfg.requests.n, 1);
        assert_eq!(cfg.limits.max_key_bytes, 10);
        assert_eq!(cfg.limits.max_value_bytes, 8 << 20, "untouched defaults stay");
    }

    #[test]
    fn refuses_bad_values_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), &format!("{BASE}\n[requests]\nw = 4\n"));
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("w"), "{err}");
        let f = write(dir.path(), &format!("{BASE}\n[storage]\nsync_writes = true\n"));
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("execution"), "{err}");
        let f = write(
            dir.path(),
            &format!("{BASE}\n[storage]\nsync_writes = true\nexecution = \"pool\"\n"),
        );
        assert!(NodeConfig::load(Some(&f), &[]).is_ok());
        let f = write(dir.path(), &format!("{BASE}\n[requests]\nbogus = 1\n"));
        assert!(NodeConfig::load(Some(&f), &[]).is_err(), "unknown keys are refused");
        let f = write(
            dir.path(),
            &format!("{BASE}\n[node]\nid = \"zz\"\n").replace("[node]\nid = \"a\"\n", ""),
        );
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("members must include this node (zz)"), "{err}");
        let f = write(dir.path(), "[node]\nid = \"zz\"\n");
        assert!(
            NodeConfig::load(Some(&f), &[]).is_ok(),
            "a node that will join lists no members"
        );
        let f = write(
            dir.path(),
            &format!("{BASE}\n[antientropy]\ntombstone_grace_secs = 60\n[handoff]\nwindow_secs = 120\n"),
        );
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(
            err.contains("tombstone_grace_secs (60) must be longer than handoff.max_age_secs (120)"),
            "{err}"
        );
        let f = write(
            dir.path(),
            &format!("{BASE}\n[handoff]\nwindow_secs = 120\nmax_age_secs = 60\n"),
        );
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(
            err.contains("handoff.max_age_secs (60) must be at least handoff.window_secs (120)"),
            "{err}"
        );
        let f = write(
            dir.path(),
            &format!("{BASE}\n[antientropy]\ntombstone_grace_secs = 1000\n[handoff]\nwindow_secs = 100\n"),
        );
        let config = NodeConfig::load(Some(&f), &[]).unwrap();
        assert_eq!(config.hint_max_age_secs(), 500, "the default is half the grace");
        let f = write(dir.path(), &format!("{BASE}\n[handoff]\nenabled = false\n"));
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("sloppy_quorum needs handoff.enabled"), "{err}");
        let f = write(dir.path(), &format!("{BASE}\n[swim]\nprobe_timeout_ms = 2000\n"));
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("probe_timeout"), "{err}");
        assert!(NodeConfig::load(Some(Path::new("/nonexistent/shoal.toml")), &[]).is_err());
    }

    #[test]
    fn auth_section_checks_the_tokens_file_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        let h = crate::auth::token_sha256_hex("t");
        let cfg = |extra: &str| write(dir.path(), &format!("{BASE}\n[auth]\n{extra}"));
        let f = cfg("enabled = true\n");
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("auth.tokens_file is not set"), "{err}");
        let f = cfg(&format!(
            "enabled = true\ntokens_file = {:?}\n",
            tokens.display().to_string()
        ));
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("reading the tokens file"), "{err}");
        std::fs::write(
            &tokens,
            format!("[[token]]\nname = \"ops\"\nscopes = [\"admin\", \"root\"]\nsha256 = \"{h}\"\n"),
        )
        .unwrap();
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(
            err.contains("entry 1 (\"ops\")") && err.contains("unknown scope \"root\""),
            "{err}"
        );
        std::fs::write(&tokens, "[[token]]\nname = \"ops\"\n").unwrap();
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("missing field"), "{err}");
        std::fs::write(
            &tokens,
            format!("[[token]]\nname = \"ops\"\nscopes = [\"admin\"]\nsha256 = \"{h}\"\n"),
        )
        .unwrap();
        let cfg = NodeConfig::load(Some(&f), &[]).unwrap();
        assert!(cfg.authenticator().unwrap().enabled());
        // The tokens file is a path, so any layer may name it (here the override layer).
        let f = cfg_plain(dir.path());
        let cfg = NodeConfig::load(
            Some(&f),
            &[
                ("auth.enabled".into(), "true".into()),
                ("auth.tokens_file".into(), tokens.display().to_string()),
            ],
        )
        .unwrap();
        assert!(cfg.auth.enabled);
        let f = write(
            dir.path(),
            &format!("{BASE}\n[listen]\nhttp_tls_cert = \"/etc/shoal/http.pem\"\n"),
        );
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("both http_tls_cert and http_tls_key"), "{err}");
        let f = write(dir.path(), &format!("{BASE}\n[limits]\nmax_inflight_per_client = 0\n"));
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("max_inflight_per_client"), "{err}");
    }

    fn cfg_plain(dir: &Path) -> PathBuf {
        write(dir, BASE)
    }
}
