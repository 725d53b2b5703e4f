//! The tokio driver of the quorum core: fan-out to all N replicas, answer at W or R, keep
//! collecting for read repair.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use shoal_ring::{Layout, NodeId};
use shoal_storage::{Object, Replica, ReplicaError, Store, Value};
use shoal_version::{VersionError, VersionVector};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::params::{self, ParamError, RequestDefaults};
use crate::quorum::{Progress, QuorumTracker};

pub type TransportFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How the coordinator reaches other nodes. Implemented over QUIC by the node, and by the
/// simulator over its virtual network. `Err(String)` means the replica could not be reached
/// or failed; the string is reported to the client as the reason.
pub trait Transport: Send + Sync + 'static {
    fn replica_put(
        &self,
        node: &NodeId,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>>;
    fn replica_get(
        &self,
        node: &NodeId,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>>;
    /// Ask `node` to coordinate a write. The outer `Err` means it could not be reached.
    fn forward_put(
        &self,
        node: &NodeId,
        request: PutRequest,
        timeout: Duration,
    ) -> TransportFuture<Result<Result<PutResponse, CoordError>, String>>;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Bytes,
    /// `None` writes a tombstone (a delete).
    pub value: Option<Bytes>,
    /// The causal context from an earlier read; `None` makes the write a sibling of whatever is
    /// there (for a delete: deletes what the coordinating replica holds).
    pub context: Option<VersionVector>,
    pub n: Option<u8>,
    pub w: Option<u8>,
    pub timeout_ms: Option<u32>,
    /// Set when a non-replica passed the write on, so a layout disagreement cannot loop.
    pub forwarded: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PutResponse {
    pub context: VersionVector,
    pub acks: u8,
    pub siblings: u32,
    /// More siblings than the warning threshold: the application should resolve them.
    pub sibling_warning: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetRequest {
    pub key: Bytes,
    pub n: Option<u8>,
    pub r: Option<u8>,
    pub timeout_ms: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct GetResponse {
    /// The merge of the replies that made the quorum; `None` if none of them had the key.
    pub object: Option<Object>,
    pub replies: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedReplica {
    pub node: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, Clone, Serialize, Deserialize)]
pub enum CoordError {
    #[error("invalid parameter {param}: {message}")]
    InvalidParam { param: String, message: String },
    #[error("{op} quorum not reached: required {required} replicas, {acked} acknowledged")]
    Unavailable {
        op: String,
        required: u8,
        acked: u8,
        failed: Vec<FailedReplica>,
    },
    #[error("too many siblings: the write would leave {count}, over the limit sibling_max = {limit}; write with the returned context to resolve them")]
    TooManySiblings {
        count: usize,
        limit: usize,
        context: VersionVector,
    },
    #[error("object too large: the write would make the stored object {size} bytes, over the limit max_object_bytes = {limit}")]
    ObjectTooLarge {
        size: usize,
        limit: usize,
        context: VersionVector,
    },
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<ParamError> for CoordError {
    fn from(e: ParamError) -> Self {
        CoordError::InvalidParam {
            param: e.param().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<ReplicaError> for CoordError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Version(VersionError::TooManySiblings { count, limit, context }) => {
                CoordError::TooManySiblings { count, limit, context }
            }
            ReplicaError::ObjectTooLarge { size, limit, context } => {
                CoordError::ObjectTooLarge { size, limit, context }
            }
            other => CoordError::Storage(other.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub defaults: RequestDefaults,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub read_repair: bool,
    pub storage: StorageExecution,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            defaults: RequestDefaults::default(),
            default_timeout: Duration::from_secs(5),
            max_timeout: Duration::from_secs(60),
            read_repair: true,
            storage: StorageExecution::Inline,
        }
    }
}

const NO_REPLY: &str = "no reply before the deadline";

pub struct Coordinator<S: Store, T: Transport> {
    me: NodeId,
    layout: RwLock<Arc<Layout>>,
    replica: Arc<Replica<S>>,
    transport: Arc<T>,
    config: CoordinatorConfig,
}

fn unavailable<Id: Clone + PartialEq + ToString>(op: &str, q: &QuorumTracker<Id>) -> CoordError {
    metrics::counter!("shoal_quorum_failures_total", "op" => op.to_string()).increment(1);
    CoordError::Unavailable {
        op: op.to_string(),
        required: q.required() as u8,
        acked: q.acked().len() as u8,
        failed: q
            .failures(NO_REPLY)
            .into_iter()
            .map(|(node, reason)| FailedReplica {
                node: node.to_string(),
                reason,
            })
            .collect(),
    }
}

/// Where a replica's storage calls run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageExecution {
    /// On the async worker that handles the request. A RocksDB point read or an unsynced WAL
    /// append takes microseconds, while a hop to a blocking thread and back costs two context
    /// switches; on a 2-core host running three nodes that hop halved throughput (see
    /// docs/benchmarks.md). Right when writes are not fsynced and the working set is cached.
    Inline,
    /// On tokio's blocking pool: for `sync_writes` (an fsync per write) or data sets much larger
    /// than memory, where a call can wait on the disk.
    Pool,
}

async fn storage<R: Send + 'static>(
    execution: StorageExecution,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    match execution {
        StorageExecution::Inline => Ok(f()),
        StorageExecution::Pool => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| format!("storage task failed: {e}")),
    }
}

impl<S: Store, T: Transport> Coordinator<S, T> {
    pub fn new(
        me: NodeId,
        layout: Arc<Layout>,
        replica: Arc<Replica<S>>,
        transport: Arc<T>,
        config: CoordinatorConfig,
    ) -> Self {
        Self {
            me,
            layout: RwLock::new(layout),
            replica,
            transport,
            config,
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn layout(&self) -> Arc<Layout> {
        self.layout.read().clone()
    }

    pub fn set_layout(&self, layout: Arc<Layout>) {
        *self.layout.write() = layout;
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn replica(&self) -> &Arc<Replica<S>> {
        &self.replica
    }

    fn timeout(&self, ms: Option<u32>) -> Duration {
        ms.map(|ms| Duration::from_millis(ms as u64))
            .unwrap_or(self.config.default_timeout)
            .min(self.config.max_timeout)
    }

    /// Coordinate a put or delete.
    pub async fn put(self: &Arc<Self>, req: PutRequest) -> Result<PutResponse, CoordError> {
        let layout = self.layout();
        let (n, w) = params::resolve(&self.config.defaults, layout.members().len(), req.n, req.w, "w")?;
        let timeout = self.timeout(req.timeout_ms);
        let deadline = Instant::now() + timeout;
        let partition = layout.partition_of(&req.key);
        let pref: Vec<NodeId> = layout.preference_list(partition, n as usize).to_vec();
        if !pref.contains(&self.me) {
            if req.forwarded {
                return Err(CoordError::Unavailable {
                    op: "put".into(),
                    required: w,
                    acked: 0,
                    failed: vec![FailedReplica {
                        node: self.me.to_string(),
                        reason: "forwarded a write for a partition this node does not replicate (layouts disagree)"
                            .into(),
                    }],
                });
            }
            return self.forward(pref, req, deadline, w).await;
        }

        let key = req.key.clone();
        let me = self.me.clone();
        let replica = self.replica.clone();
        let value = match req.value {
            Some(b) => Value::Data(b),
            None => Value::Tombstone,
        };
        let explicit = req.context;
        let (object, outcome) = storage(self.config.storage, move || {
            // A delete without a context removes what this replica holds, as Riak's
            // fetch-then-delete does; concurrent writes it has not seen survive as siblings.
            let ctx = match (explicit, &value) {
                (Some(c), _) => c,
                (None, Value::Tombstone) => replica
                    .read(partition, &key)?
                    .map(|o| o.siblings.context())
                    .unwrap_or_default(),
                (None, Value::Data(_)) => VersionVector::new(),
            };
            replica.coordinate(partition, &key, me.as_str(), &ctx, value, n)
        })
        .await
        .map_err(CoordError::Storage)??;
        if outcome.warn {
            metrics::counter!("shoal_sibling_warnings_total").increment(1);
            warn!(
                siblings = outcome.siblings,
                "key has more siblings than sibling_warn; resolve them by writing with a context"
            );
        }
        metrics::histogram!("shoal_object_siblings").record(outcome.siblings as f64);
        let context = object.siblings.context();
        let response = |acks: usize| PutResponse {
            context: context.clone(),
            acks: acks as u8,
            siblings: outcome.siblings as u32,
            sibling_warning: outcome.warn,
        };

        let mut tracker = QuorumTracker::new(w as usize, pref.clone());
        tracker.ack(self.me.clone());
        let shared = Arc::new(object);
        let (tx, mut rx) = mpsc::channel(pref.len());
        for node in pref.iter().filter(|p| **p != self.me) {
            let (tx, node, transport, shared, key) = (
                tx.clone(),
                node.clone(),
                self.transport.clone(),
                shared.clone(),
                req.key.clone(),
            );
            // Dynamo: send to all N, answer at W. The stragglers' writes still land.
            tokio::spawn(async move {
                let result = transport.replica_put(&node, key, shared, timeout).await;
                let _ = tx.send((node, result)).await;
            });
        }
        drop(tx);
        loop {
            if tracker.progress() == Progress::Reached {
                return Ok(response(tracker.acked().len()));
            }
            // Once W is out of reach, still wait (until the deadline) for the replicas that
            // have not answered: the error must say exactly which replicas hold the write.
            if tracker.all_answered() {
                return Err(unavailable("put", &tracker));
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((node, Ok(())))) => tracker.ack(node),
                Ok(Some((node, Err(reason)))) => {
                    debug!(%node, %reason, "replica put failed");
                    tracker.fail(node, reason)
                }
                Ok(None) | Err(_) => return Err(unavailable("put", &tracker)),
            };
        }
    }

    async fn forward(
        &self,
        pref: Vec<NodeId>,
        mut req: PutRequest,
        deadline: Instant,
        w: u8,
    ) -> Result<PutResponse, CoordError> {
        req.forwarded = true;
        let mut failed = Vec::new();
        for node in pref {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                failed.push(FailedReplica {
                    node: node.to_string(),
                    reason: NO_REPLY.into(),
                });
                continue;
            }
            match self.transport.forward_put(&node, req.clone(), remaining).await {
                Ok(answer) => return answer,
                Err(reason) => failed.push(FailedReplica {
                    node: node.to_string(),
                    reason,
                }),
            }
        }
        metrics::counter!("shoal_quorum_failures_total", "op" => "put").increment(1);
        Err(CoordError::Unavailable {
            op: "put".into(),
            required: w,
            acked: 0,
            failed,
        })
    }

    /// Coordinate a get: ask all N replicas, answer with the merge of the first R replies.
    pub async fn get(self: &Arc<Self>, req: GetRequest) -> Result<GetResponse, CoordError> {
        let layout = self.layout();
        let (n, r) = params::resolve(&self.config.defaults, layout.members().len(), req.n, req.r, "r")?;
        let timeout = self.timeout(req.timeout_ms);
        let deadline = Instant::now() + timeout;
        let partition = layout.partition_of(&req.key);
        let pref: Vec<NodeId> = layout.preference_list(partition, n as usize).to_vec();

        let (tx, mut rx) = mpsc::channel(pref.len());
        for node in &pref {
            let (tx, node, key) = (tx.clone(), node.clone(), req.key.clone());
            if node == self.me {
                let this = self.clone();
                tokio::spawn(async move {
                    let result = this.read_local(key).await;
                    let _ = tx.send((node, result)).await;
                });
            } else {
                let transport = self.transport.clone();
                tokio::spawn(async move {
                    let result = transport.replica_get(&node, key, timeout).await;
                    let _ = tx.send((node, result)).await;
                });
            }
        }
        drop(tx);

        let mut tracker = QuorumTracker::new(r as usize, pref.clone());
        let mut replies: Vec<(NodeId, Option<Object>)> = Vec::with_capacity(pref.len());
        let mut merged: Option<Object> = None;
        loop {
            if tracker.progress() == Progress::Reached {
                break;
            }
            if tracker.all_answered() {
                return Err(unavailable("get", &tracker));
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((node, Ok(obj)))) => {
                    merge_into(&mut merged, obj.as_ref());
                    replies.push((node.clone(), obj));
                    tracker.ack(node);
                }
                Ok(Some((node, Err(reason)))) => {
                    debug!(%node, %reason, "replica get failed");
                    tracker.fail(node, reason);
                }
                Ok(None) | Err(_) => return Err(unavailable("get", &tracker)),
            }
        }
        let answer = GetResponse {
            object: merged.clone(),
            replies: tracker.acked().len() as u8,
        };
        if self.config.read_repair {
            let this = self.clone();
            tokio::spawn(async move {
                // Keep collecting the stragglers, then repair every replica that answered with
                // less than the merge of all answers (Dynamo §4.7 / Riak read repair).
                while let Ok(Some((node, result))) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    if let Ok(obj) = result {
                        merge_into(&mut merged, obj.as_ref());
                        replies.push((node, obj));
                    }
                }
                if let Some(full) = merged {
                    this.read_repair(req.key, full, replies, timeout).await;
                }
            });
        }
        Ok(answer)
    }

    async fn read_repair(&self, key: Bytes, full: Object, replies: Vec<(NodeId, Option<Object>)>, timeout: Duration) {
        let full = Arc::new(full);
        for (node, obj) in replies {
            let stale = match &obj {
                None => true,
                Some(o) => !o.siblings.covers(&full.siblings),
            };
            if !stale {
                continue;
            }
            metrics::counter!("shoal_read_repairs_total").increment(1);
            debug!(%node, "read repair");
            let result = if node == self.me {
                self.apply_local(key.clone(), (*full).clone()).await
            } else {
                self.transport
                    .replica_put(&node, key.clone(), full.clone(), timeout)
                    .await
            };
            if let Err(reason) = result {
                debug!(%node, %reason, "read repair failed");
            }
        }
    }

    /// A peer's replication or repair of `key` into this node's replica. The object came from
    /// outside, so it is validated before it is merged.
    pub async fn apply_local(&self, key: Bytes, object: Object) -> Result<(), String> {
        object
            .siblings
            .validate()
            .map_err(|e| format!("refused replica object: {e}"))?;
        let partition = self.layout().partition_of(&key);
        let replica = self.replica.clone();
        storage(self.config.storage, move || {
            replica
                .apply(partition, &key, &object)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await?
    }

    /// A peer's read of this node's replica of `key`.
    pub async fn read_local(&self, key: Bytes) -> Result<Option<Object>, String> {
        let partition = self.layout().partition_of(&key);
        let replica = self.replica.clone();
        storage(self.config.storage, move || {
            replica.read(partition, &key).map_err(|e| e.to_string())
        })
        .await?
    }
}

fn merge_into(acc: &mut Option<Object>, obj: Option<&Object>) {
    if let Some(o) = obj {
        match acc {
            Some(a) => a.merge(o),
            None => *acc = Some(o.clone()),
        }
    }
}
