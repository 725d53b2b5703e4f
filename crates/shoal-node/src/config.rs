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
    pub log: LogSection,
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
    /// Every member, this node included, until SWIM membership replaces the static list.
    pub members: Vec<MemberConfig>,
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
            },
            cluster: ClusterSection {
                members: Vec::new(),
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
            },
            limits: LimitsSection {
                max_key_bytes: 1024,
                max_value_bytes: 8 << 20,
                sibling_warn: 25,
                sibling_max: 100,
                max_object_bytes: 64 << 20,
                max_frame_bytes: 80 << 20,
            },
            storage: StorageSection {
                sync_writes: false,
                block_cache_mb: 64,
                execution: StorageExecution::Inline,
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node.id.is_empty() {
            return bad("node.id must not be empty".into());
        }
        if !self.cluster.members.iter().any(|m| m.id == self.node.id) {
            return bad(format!("cluster.members must include this node ({})", self.node.id));
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
        if self.storage.sync_writes && self.storage.execution == StorageExecution::Inline {
            return bad(
                "storage: sync_writes fsyncs every write, which must not run on the async workers; set storage.execution = \"pool\"".into(),
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad(format!("log.format must be text or json, not {:?}", self.log.format));
        }
        Ok(())
    }

    pub fn peer_addr(&self, id: &str) -> Option<SocketAddr> {
        self.cluster.members.iter().find(|m| m.id == id).map(|m| m.peer)
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
        let f = write(dir.path(), "[node]\nid = \"zz\"\n");
        let err = NodeConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(err.contains("members"), "{err}");
        assert!(NodeConfig::load(Some(Path::new("/nonexistent/shoal.toml")), &[]).is_err());
    }
}
