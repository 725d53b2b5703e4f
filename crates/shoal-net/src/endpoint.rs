//! Binding QUIC endpoints and serving request/response streams on them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use serde::{de::DeserializeOwned, Serialize};
use tracing::{debug, warn, Instrument};

use crate::frame::{read_frame, write_frame, Envelope};
use crate::tls::TlsError;

/// QUIC knobs. quinn's defaults (100 concurrent streams, 30 s idle timeout, no keep-alive) are
/// too tight for a node that fans out every request, and would let idle peer links drop.
#[derive(Clone, Debug)]
pub struct TransportTuning {
    pub max_concurrent_streams: u32,
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    pub max_frame_bytes: usize,
    /// Upper bound on how long a server works on one request, whatever the sender asked for.
    pub max_request_timeout: Duration,
}

impl Default for TransportTuning {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 4096,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            max_frame_bytes: 80 << 20,
            max_request_timeout: Duration::from_secs(60),
        }
    }
}

impl TransportTuning {
    pub fn transport_config(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(self.max_concurrent_streams.into());
        t.max_concurrent_uni_streams(0u32.into());
        // Within VarInt range for any sane config; fall back to quinn's default otherwise.
        if let Ok(idle) = quinn::IdleTimeout::try_from(self.idle_timeout) {
            t.max_idle_timeout(Some(idle));
        }
        t.keep_alive_interval(Some(self.keep_alive));
        t
    }

    pub fn server_config(&self, tls: rustls::ServerConfig) -> Result<quinn::ServerConfig, TlsError> {
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        sc.transport_config(Arc::new(self.transport_config()));
        Ok(sc)
    }

    pub fn client_config(&self, tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
        cc.transport_config(Arc::new(self.transport_config()));
        Ok(cc)
    }
}

/// A request handler served on a QUIC endpoint, one request per bidirectional stream.
pub trait Service: Send + Sync + 'static {
    type Request: DeserializeOwned + Send + 'static;
    type Response: Serialize + Send + Sync + 'static;

    /// Handle one request. `timeout` is what the sender will wait, capped by the server.
    fn call(
        self: Arc<Self>,
        from: SocketAddr,
        request: Self::Request,
        timeout: Duration,
    ) -> impl Future<Output = Self::Response> + Send;

    /// The answer to a frame that could not be decoded, if the protocol has one (the client
    /// API answers with an error; the peer protocol just drops the stream).
    fn malformed(&self, _error: &crate::FrameError) -> Option<Self::Response> {
        None
    }
}

/// Accept connections on `endpoint` until it is closed, serving each stream with `service`.
pub async fn serve<S: Service>(endpoint: quinn::Endpoint, service: Arc<S>, tuning: TransportTuning) {
    let tuning = Arc::new(tuning);
    while let Some(incoming) = endpoint.accept().await {
        let service = service.clone();
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    // Includes TLS failures: a peer without a cluster certificate ends here.
                    warn!(%remote, error = %e, "refused QUIC connection");
                    return;
                }
            };
            debug!(%remote, "QUIC connection established");
            loop {
                let (send, recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(%remote, reason = %e, "QUIC connection closed");
                        break;
                    }
                };
                let service = service.clone();
                let tuning = tuning.clone();
                tokio::spawn(
                    serve_stream(service, remote, send, recv, tuning)
                        .instrument(tracing::debug_span!("stream", %remote)),
                );
            }
        });
    }
}

async fn serve_stream<S: Service>(
    service: Arc<S>,
    remote: SocketAddr,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    tuning: Arc<TransportTuning>,
) {
    let request: Envelope<S::Request> = match read_frame(&mut recv, tuning.max_frame_bytes).await {
        Ok(r) => r,
        Err(e) => {
            warn!(%remote, error = %e, "dropping malformed frame");
            if let Some(reply) = service.malformed(&e) {
                let env = Envelope {
                    id: 0,
                    timeout_ms: 0,
                    body: reply,
                };
                let _ = write_frame(&mut send, &env, tuning.max_frame_bytes).await;
                let _ = send.finish();
            } else {
                let _ = send.reset(1u32.into());
            }
            let _ = recv.stop(1u32.into());
            return;
        }
    };
    let timeout = Duration::from_millis(request.timeout_ms as u64).min(tuning.max_request_timeout);
    let id = request.id;
    let body = service.call(remote, request.body, timeout).await;
    let env = Envelope {
        id,
        timeout_ms: 0,
        body,
    };
    if let Err(e) = write_frame(&mut send, &env, tuning.max_frame_bytes).await {
        debug!(%remote, id, error = %e, "could not send response");
        return;
    }
    let _ = send.finish();
}
