//! The peer protocol: replica reads and writes, forwarded coordination, and pings, carried over
//! the mutual-TLS QUIC port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_coordinator::{CoordError, Coordinator, PutRequest, PutResponse, Transport, TransportFuture};
use shoal_net::{Pool, Service};
use shoal_ring::NodeId;
use shoal_storage::{Object, RocksStore};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Merge this copy of the key into your replica.
    Put {
        key: Bytes,
        object: Object,
    },
    /// Send your replica's copy of the key.
    Get {
        key: Bytes,
    },
    /// Coordinate this write: you replicate its key and this node does not.
    Coordinate(PutRequest),
    Ping,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Stored,
    Object(Option<Object>),
    Coordinated(Result<PutResponse, CoordError>),
    Pong { node: String },
    Failed(String),
}

/// Reaches other nodes' peer ports through one pooled QUIC connection each. Cloning is cheap,
/// so each in-flight call's future owns a handle to the pool.
#[derive(Clone)]
pub struct QuicTransport {
    pool: Arc<Pool>,
    addrs: Arc<HashMap<NodeId, SocketAddr>>,
}

impl QuicTransport {
    pub fn new(pool: Pool, addrs: HashMap<NodeId, SocketAddr>) -> Self {
        Self {
            pool: Arc::new(pool),
            addrs: Arc::new(addrs),
        }
    }

    pub fn addr(&self, node: &NodeId) -> Option<SocketAddr> {
        self.addrs.get(node).copied()
    }

    pub async fn call(&self, node: &NodeId, req: PeerRequest, timeout: Duration) -> Result<PeerResponse, String> {
        let addr = self.addr(node).ok_or_else(|| format!("no address known for {node}"))?;
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

fn unexpected(r: PeerResponse) -> String {
    match r {
        PeerResponse::Failed(reason) => reason,
        other => format!("unexpected peer response {other:?}"),
    }
}

impl Transport for QuicTransport {
    fn replica_put(
        &self,
        node: &NodeId,
        key: Bytes,
        object: Arc<Object>,
        timeout: Duration,
    ) -> TransportFuture<Result<(), String>> {
        let req = PeerRequest::Put {
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
        key: Bytes,
        timeout: Duration,
    ) -> TransportFuture<Result<Option<Object>, String>> {
        self.spawn_call(node, PeerRequest::Get { key }, timeout, |r| match r {
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

pub type NodeCoordinator = Coordinator<RocksStore, QuicTransport>;

/// Serves the peer port.
pub struct PeerService {
    pub coordinator: Arc<NodeCoordinator>,
}

impl Service for PeerService {
    type Request = PeerRequest;
    type Response = PeerResponse;

    async fn call(self: Arc<Self>, _from: SocketAddr, request: PeerRequest, timeout: Duration) -> PeerResponse {
        match request {
            PeerRequest::Put { key, object } => match self.coordinator.apply_local(key, object).await {
                Ok(()) => PeerResponse::Stored,
                Err(e) => PeerResponse::Failed(e),
            },
            PeerRequest::Get { key } => match self.coordinator.read_local(key).await {
                Ok(o) => PeerResponse::Object(o),
                Err(e) => PeerResponse::Failed(e),
            },
            PeerRequest::Coordinate(mut req) => {
                // Never wait longer than the forwarding node will.
                let ms = timeout.as_millis().min(u32::MAX as u128) as u32;
                req.timeout_ms = Some(req.timeout_ms.map_or(ms, |t| t.min(ms)));
                PeerResponse::Coordinated(self.coordinator.put(req).await)
            }
            PeerRequest::Ping => PeerResponse::Pong {
                node: self.coordinator.me().to_string(),
            },
        }
    }
}
