//! The peer protocol: replica reads and writes, forwarded coordination, SWIM messages and
//! partition transfers, all carried over the mutual-TLS QUIC port (no plaintext side channel).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use shoal_antientropy::{AntiEntropy, Remote, TreeQuery};
use shoal_coordinator::{
    CoordError, Coordinator, HandoffRefused, PutRequest, PutResponse, StaleLayout, Transport, TransportFuture,
};
use shoal_membership::Message;
use shoal_net::{Pool, Service};
use shoal_ring::{LayoutRecord, NodeId};
use shoal_storage::{Object, RocksStore};

use crate::membership::{Membership, NodeMeta};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Merge this copy of the key into your replica. `epoch`: the coordinator's layout epoch,
    /// for epoch fencing (see [`Coordinator::check_fence`]).
    Put {
        epoch: u64,
        key: Bytes,
        object: Object,
    },
    /// Send your replica's copy of the key.
    Get {
        epoch: u64,
        key: Bytes,
    },
    /// Coordinate this write: you replicate its key and this node does not.
    Coordinate(PutRequest),
    Ping,
    /// A SWIM message; answered with `Done` at once (SWIM's acks are messages of their own).
    Swim(Message<NodeMeta>),
    /// One chunk of a partition transfer: the objects of `partition` whose replication factor
    /// is in `n_min..=n_max`, from key `from` on, about `max_bytes` of them.
    Fetch {
        partition: u32,
        from: Bytes,
        n_min: u8,
        n_max: u8,
        max_bytes: u32,
    },
    /// Sloppy quorum: keep this copy as a hint for `owner`, which is down.
    Hint {
        epoch: u64,
        owner: NodeId,
        key: Bytes,
        object: Object,
    },
    /// Sloppy quorum: send the hint you keep of `key` for `owner`.
    GetHint {
        epoch: u64,
        owner: NodeId,
        key: Bytes,
    },
    /// Merge these copies into your replica (hint delivery, stray handoff, anti-entropy push).
    /// `epoch`: the sender's layout epoch; taken only when both hold the same stable layout
    /// (see [`Coordinator::check_handoff`]).
    Merge {
        epoch: u64,
        objects: Vec<(Bytes, Object)>,
    },
    /// Anti-entropy: a level of your Merkle tree of (partition, n).
    /// `epoch`: the sender's layout epoch; answered only when both hold the same stable
    /// layout, so an exchange never pairs replicas of two different layouts.
    AaeTree {
        epoch: u64,
        partition: u32,
        n: u8,
        query: TreeQuery,
    },
    /// Anti-entropy: (key, version hash) of the keys of these segments.
    AaeDigests {
        partition: u32,
        n: u8,
        segments: Vec<u16>,
    },
    /// Anti-entropy: your copies of these keys.
    AaeFetch {
        partition: u32,
        keys: Vec<Bytes>,
    },
    /// Tombstone GC: delete these keys where you hold exactly this tombstone version. A
    /// reaper under an old layout would miss an owner, so `epoch` is fenced too.
    Reap {
        epoch: u64,
        partition: u32,
        keys: Vec<(Bytes, u64)>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Stored,
    /// A `Merge` stored; per object, whether it was news to this replica.
    Merged(Vec<bool>),
    Object(Option<Object>),
    Coordinated(Result<PutResponse, CoordError>),
    Pong {
        node: String,
    },
    Done,
    Chunk {
        objects: Vec<(Bytes, Object)>,
        /// Where the next chunk starts; `None` when the partition is done.
        resume: Option<Bytes>,
    },
    Hashes(Vec<u64>),
    Digests(Vec<(Bytes, u64)>),
    Objects(Vec<(Bytes, Option<Object>)>),
    Keys(Vec<Bytes>),
    Failed(String),
    /// Epoch fencing refused the request (`reason`); `record` is this node's layout, newer
    /// than the asker's.
    StaleLayout {
        reason: String,
        record: Option<LayoutRecord>,
    },
}

/// Reaches other nodes' peer ports through one pooled QUIC connection each. Cloning is cheap,
/// so each in-flight call's future owns a handle to the pool.
#[derive(Clone)]
pub struct QuicTransport {
    pool: Arc<Pool>,
    /// Peer addresses by node, from configuration at first and then from SWIM's member metadata.
    addrs: Arc<RwLock<HashMap<NodeId, SocketAddr>>>,
    /// Where a newer layout record that fenced a request out goes (membership adopts it).
    on_stale: Arc<OnceLock<NewerLayout>>,
}

type NewerLayout = Box<dyn Fn(LayoutRecord) + Send + Sync>;

impl QuicTransport {
    pub fn new(pool: Pool, addrs: HashMap<NodeId, SocketAddr>) -> Self {
        Self {
            pool: Arc::new(pool),
            addrs: Arc::new(RwLock::new(addrs)),
            on_stale: Arc::new(OnceLock::new()),
        }
    }

    /// Set once, by membership: what to do with the layout record of a replica that fenced a
    /// request out.
    pub fn on_stale_layout(&self, adopt: impl Fn(LayoutRecord) + Send + Sync + 'static) {
        let _ = self.on_stale.set(Box::new(adopt));
    }

    pub fn addr(&self, node: &NodeId) -> Option<SocketAddr> {
        self.addrs.read().get(node).copied()
    }

    pub fn set_addr(&self, node: NodeId, addr: SocketAddr) {
        let old = self.addrs.write().insert(node, addr);
        if let Some(old) = old.filter(|o| *o != addr) {
            self.pool.forget(old);
        }
    }

    /// Drop the pooled connection to `node`. A connection to a node that died stays open on
    /// this side until the QUIC idle timeout (30 s); a request on it hangs until then, even
    /// after the node has restarted on the same address.
    pub fn forget(&self, node: &NodeId) {
        if let Some(addr) = self.addr(node) {
            self.pool.forget(addr);
        }
    }

    /// One request to `node`. A refusal by epoch fencing hands the replica's newer layout
    /// record to membership and is reported as an error.
    pub async fn call(&self, node: &NodeId, req: PeerRequest, timeout: Duration) -> Result<PeerResponse, String> {
        let addr = self.addr(node).ok_or_else(|| format!("no address known for {node}"))?;
        match self.call_addr(addr, req, timeout).await? {
            PeerResponse::StaleLayout { reason, record } => {
                if let (Some(record), Some(adopt)) = (record, self.on_stale.get()) {
                    adopt(record);
                }
                Err(format!("{node}: {reason}"))
            }
            other => Ok(other),
        }
    }

    pub async fn call_addr(
        &self,
        addr: SocketAddr,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, String> {
        self.pool.call(addr, req, timeout).await.map_err(|e| e.to_string())
    }

    fn spawn_call<T: Send + 'static>(
        &self,
        node: &NodeId,
        req: PeerRequest,
        timeout: Duration,
        map: impl FnOnce(PeerResponse) -> Result<T, String> + Send + 'static,
    ) -> TransportFuture<Result<T, String>> {
        let this = self.clone();
        let node = node.clone();
        Box::pin(async move { this.call(&node, req, timeout).await.and_then(map) })
    }
}

/// The reason to report for a peer answer that is not the one asked for.
pub(crate) fn unexpected(r: PeerResponse) -> String {
    match r {
        PeerResponse::Failed(reason) => reason,
        other => format!("unexpected peer response {other:?}"),
    }
}

impl Transport for QuicTransport {
    fn replica_put(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let req = PeerRequest::Put {
            epoch,
            key,
            object: (*object).clone(),
        };
        self.spawn_call(node, req, timeout, |r| match r {
            PeerResponse::Stored => Ok(()),
            other => Err(unexpected(other)),
        })
    }

    fn replica_get(
        &self,
        node: &NodeId,
        epoch: u64,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        self.spawn_call(node, PeerRequest::Get { epoch, key }, timeout, |r| match r {
            PeerResponse::Object(o) => Ok(o),
            other => Err(unexpected(other)),
        })
    }

    fn hinted_put(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let req = PeerRequest::Hint {
            epoch,
            owner: owner.clone(),
            key,
            object: (*object).clone(),
        };
        self.spawn_call(node, req, timeout, |r| match r {
            PeerResponse::Stored => Ok(()),
            other => Err(unexpected(other)),
        })
    }

    fn hinted_get(
        &self,
        node: &NodeId,
        epoch: u64,
        owner: &NodeId,
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        let req = PeerRequest::GetHint {
            epoch,
            owner: owner.clone(),
            key,
        };
        self.spawn_call(node, req, timeout, |r| match r {
            PeerResponse::Object(o) => Ok(o),
            other => Err(unexpected(other)),
        })
    }

    fn forward_put(
        &self,
        node: &NodeId,
        request: PutRequest,
        timeout: Duration,
    ) -> TransportFuture<Result<Result<PutResponse, CoordError>, String>> {
        self.spawn_call(node, PeerRequest::Coordinate(request), timeout, |r| match r {
            PeerResponse::Coordinated(answer) => Ok(answer),
            other => Err(unexpected(other)),
        })
    }
}

/// How long one anti-entropy or handoff round trip may take.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// Another replica, as the other side of an anti-entropy exchange.
pub struct PeerRemote {
    pub transport: Arc<QuicTransport>,
    pub node: NodeId,
    /// The layout epoch the exchange was planned under (tombstone GC is fenced by it).
    pub epoch: u64,
}

impl PeerRemote {
    async fn ask(&self, req: PeerRequest) -> Result<PeerResponse, String> {
        match self.transport.call(&self.node, req, BACKGROUND_TIMEOUT).await? {
            PeerResponse::Failed(reason) => Err(reason),
            other => Ok(other),
        }
    }
}

impl Remote for PeerRemote {
    async fn tree(&self, partition: u32, n: u8, query: TreeQuery) -> Result<Vec<u64>, String> {
        let epoch = self.epoch;
        match self
            .ask(PeerRequest::AaeTree {
                epoch,
                partition,
                n,
                query,
            })
            .await?
        {
            PeerResponse::Hashes(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    async fn digests(&self, partition: u32, n: u8, segments: Vec<u16>) -> Result<Vec<(Bytes, u64)>, String> {
        match self.ask(PeerRequest::AaeDigests { partition, n, segments }).await? {
            PeerResponse::Digests(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    async fn fetch(&self, partition: u32, keys: Vec<Bytes>) -> Result<Vec<(Bytes, Option<Object>)>, String> {
        match self.ask(PeerRequest::AaeFetch { partition, keys }).await? {
            PeerResponse::Objects(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    async fn push(&self, objects: Vec<(Bytes, Object)>) -> Result<(), String> {
        let epoch = self.epoch;
        match self.ask(PeerRequest::Merge { epoch, objects }).await? {
            PeerResponse::Merged(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn reap(&self, partition: u32, _n: u8, keys: Vec<(Bytes, u64)>) -> Result<Vec<Bytes>, String> {
        let epoch = self.epoch;
        match self.ask(PeerRequest::Reap { epoch, partition, keys }).await? {
            PeerResponse::Keys(k) => Ok(k),
            other => Err(unexpected(other)),
        }
    }
}

/// Largest transfer chunk this node serves, whatever a peer asks for. Only a single object
/// larger than this (up to `max_object_bytes`, which the frame limit allows for) makes a bigger one.
const MAX_CHUNK_BYTES: usize = 16 << 20;

pub type NodeCoordinator = Coordinator<RocksStore, QuicTransport>;

/// Serves the peer port.
pub struct PeerService {
    pub coordinator: Arc<NodeCoordinator>,
    pub membership: Arc<Membership>,
    pub aae: Arc<AntiEntropy<RocksStore>>,
}

/// Requests a peer may send in one anti-entropy message, whatever it asks for.
const MAX_AAE_ITEMS: usize = 4096;

impl PeerService {
    /// Epoch fencing's answer: the reason, and this node's newer record for the asker to adopt.
    fn stale(&self, stale: StaleLayout) -> PeerResponse {
        PeerResponse::StaleLayout {
            reason: stale.to_string(),
            record: self.membership.record(),
        }
    }

    fn refused(&self, e: HandoffRefused) -> PeerResponse {
        match e {
            HandoffRefused::Stale(stale) => self.stale(stale),
            HandoffRefused::Busy(reason) => PeerResponse::Failed(reason),
        }
    }
}

impl Service for PeerService {
    type Request = PeerRequest;
    type Response = PeerResponse;

    async fn call(self: Arc<Self>, _from: SocketAddr, request: PeerRequest, timeout: Duration) -> PeerResponse {
        let fenced = match &request {
            PeerRequest::Put { epoch, .. } => Some(("put", *epoch)),
            PeerRequest::Get { epoch, .. } => Some(("get", *epoch)),
            PeerRequest::Hint { epoch, .. } => Some(("hint", *epoch)),
            PeerRequest::GetHint { epoch, .. } => Some(("get_hint", *epoch)),
            PeerRequest::Reap { epoch, .. } => Some(("reap", *epoch)),
            _ => None,
        };
        if let Some(Err(stale)) = fenced.map(|(kind, e)| self.coordinator.check_fence(kind, e)) {
            return self.stale(stale);
        }
        match request {
            PeerRequest::Put { key, object, .. } => match self.coordinator.apply_local(key, object).await {
                Ok(()) => PeerResponse::Stored,
                Err(e) => PeerResponse::Failed(e),
            },
            PeerRequest::Get { key, .. } => match self.coordinator.read_local(key).await {
                Ok(o) => PeerResponse::Object(o),
                Err(e) => PeerResponse::Failed(e),
            },
            PeerRequest::Coordinate(mut req) => {
                // Never wait longer than the forwarding node will.
                let ms = timeout.as_millis().min(u32::MAX as u128) as u32;
                req.timeout_ms = Some(req.timeout_ms.map_or(ms, |t| t.min(ms)));
                PeerResponse::Coordinated(self.coordinator.put(req).await)
            }
            PeerRequest::Hint { owner, key, object, .. } => match self.coordinator.store_hint(owner, key, object).await
            {
                Ok(()) => PeerResponse::Stored,
                Err(e) => PeerResponse::Failed(e),
            },
            PeerRequest::GetHint { owner, key, .. } => match self.coordinator.read_hint(owner, key).await {
                Ok(o) => PeerResponse::Object(o),
                Err(e) => PeerResponse::Failed(e),
            },
            PeerRequest::Merge { epoch, objects } => {
                match self.coordinator.accept_handoff("merge", epoch, objects).await {
                    Ok(news) => PeerResponse::Merged(news),
                    Err(e) => self.refused(e),
                }
            }
            PeerRequest::AaeTree {
                epoch,
                partition,
                n,
                query,
            } => match self.coordinator.check_handoff("aae", epoch) {
                Ok(_placement) => PeerResponse::Hashes(self.aae.answer_tree(partition, n, &query)),
                Err(e) => self.refused(e),
            },
            PeerRequest::AaeDigests {
                partition,
                n,
                mut segments,
            } => {
                segments.truncate(MAX_AAE_ITEMS);
                match self.aae.answer_digests(partition, n, segments).await {
                    Ok(d) => PeerResponse::Digests(d),
                    Err(e) => PeerResponse::Failed(e),
                }
            }
            PeerRequest::AaeFetch { partition, mut keys } => {
                keys.truncate(MAX_AAE_ITEMS);
                match self.aae.answer_fetch(partition, keys).await {
                    Ok(o) => PeerResponse::Objects(o),
                    Err(e) => PeerResponse::Failed(e),
                }
            }
            PeerRequest::Reap {
                partition, mut keys, ..
            } => {
                keys.truncate(MAX_AAE_ITEMS);
                match self.aae.answer_reap(partition, keys).await {
                    Ok(k) => PeerResponse::Keys(k),
                    Err(e) => PeerResponse::Failed(e),
                }
            }
            PeerRequest::Ping => PeerResponse::Pong {
                node: self.coordinator.me().to_string(),
            },
            PeerRequest::Swim(message) => {
                self.membership.handle(message);
                PeerResponse::Done
            }
            PeerRequest::Fetch {
                partition,
                from,
                n_min,
                n_max,
                max_bytes,
            } => {
                let replica = self.coordinator.replica().clone();
                // The asker's size is a wish: a chunk must stay well inside the frame limit.
                let max_bytes = (max_bytes as usize).min(MAX_CHUNK_BYTES);
                let chunk =
                    tokio::task::spawn_blocking(move || replica.export(partition, &from, n_min, n_max, max_bytes))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                match chunk {
                    Ok((objects, resume)) => {
                        let objects: Vec<(Bytes, Object)> =
                            objects.into_iter().map(|(k, o)| (Bytes::from(k), o)).collect();
                        let bytes: usize = objects.iter().map(|(k, o)| k.len() + o.payload_len()).sum();
                        metrics::counter!("shoal_transfer_sent_bytes_total").increment(bytes as u64);
                        PeerResponse::Chunk {
                            objects,
                            resume: resume.map(Bytes::from),
                        }
                    }
                    Err(e) => PeerResponse::Failed(format!("reading partition {partition}: {e}")),
                }
            }
        }
    }
}
