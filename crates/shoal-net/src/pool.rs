//! Outgoing requests: one pooled connection per remote address, re-dialled when it breaks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use crate::frame::{read_frame, write_frame, Envelope, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("connection to {addr} lost: {reason}")]
    Connection { addr: SocketAddr, reason: String },
    #[error("bad frame from {addr}: {error}")]
    Frame { addr: SocketAddr, error: FrameError },
}

type Slot = Arc<AsyncMutex<Option<quinn::Connection>>>;

/// A failed exchange, and whether the request may have left (so may have been acted on).
enum Sent {
    No(NetError),
    Yes(NetError),
}

impl Sent {
    fn into_inner(self) -> NetError {
        match self {
            Sent::No(e) | Sent::Yes(e) => e,
        }
    }
}

/// A pool of QUIC connections, one per remote address. Concurrent requests to the same peer
/// share its connection (each on its own stream); a dead connection is replaced on next use.
pub struct Pool {
    endpoint: quinn::Endpoint,
    server_name: String,
    max_frame_bytes: usize,
    slots: parking_lot::Mutex<HashMap<SocketAddr, Slot>>,
    next_id: AtomicU64,
}

impl Pool {
    /// `endpoint` must have a default client config (see `quinn::Endpoint::set_default_client_config`).
    pub fn new(endpoint: quinn::Endpoint, server_name: impl Into<String>, max_frame_bytes: usize) -> Self {
        Self {
            endpoint,
            server_name: server_name.into(),
            max_frame_bytes,
            slots: parking_lot::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    async fn connection(&self, addr: SocketAddr, fresh: bool) -> Result<quinn::Connection, NetError> {
        let slot = self.slots.lock().entry(addr).or_default().clone();
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref() {
            if !fresh && conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        let connecting = self
            .endpoint
            .connect(addr, &self.server_name)
            .map_err(|e| NetError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let conn = connecting.await.map_err(|e| NetError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Forget the connection to `addr` (used when a peer is known to have gone away).
    pub fn forget(&self, addr: SocketAddr) {
        self.slots.lock().remove(&addr);
    }

    /// Send `request` to `addr` and wait for its response, for at most `timeout` overall.
    pub async fn call<Req, Resp>(&self, addr: SocketAddr, request: Req, timeout: Duration) -> Result<Resp, NetError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let env = Envelope {
            id,
            timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
            body: request,
        };
        match tokio::time::timeout(timeout, self.exchange(addr, &env)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout(timeout)),
        }
    }

    async fn exchange<Req, Resp>(&self, addr: SocketAddr, env: &Envelope<Req>) -> Result<Resp, NetError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let conn = self.connection(addr, false).await?;
        match self.exchange_on(&conn, addr, env).await {
            // The pooled connection had closed before the stream opened: nothing was sent.
            Err(Sent::No(_)) => {}
            // A stateless reset: the peer restarted since this connection was made, and the
            // new process never saw the request. Send it once more on a fresh connection.
            Err(Sent::Yes(_)) if matches!(conn.close_reason(), Some(quinn::ConnectionError::Reset)) => {}
            Err(Sent::Yes(e)) => return Err(e),
            Ok(resp) => return Ok(resp),
        }
        let conn = self.connection(addr, true).await?;
        self.exchange_on(&conn, addr, env).await.map_err(Sent::into_inner)
    }

    async fn exchange_on<Req, Resp>(
        &self,
        conn: &quinn::Connection,
        addr: SocketAddr,
        env: &Envelope<Req>,
    ) -> Result<Resp, Sent>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| {
            Sent::No(NetError::Connection {
                addr,
                reason: e.to_string(),
            })
        })?;
        let frame_err = |error| Sent::Yes(NetError::Frame { addr, error });
        write_frame(&mut send, env, self.max_frame_bytes)
            .await
            .map_err(frame_err)?;
        send.finish().map_err(|e| {
            Sent::Yes(NetError::Connection {
                addr,
                reason: e.to_string(),
            })
        })?;
        let resp: Envelope<Resp> = read_frame(&mut recv, self.max_frame_bytes).await.map_err(frame_err)?;
        Ok(resp.body)
    }
}
