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

/// Send and receive buffer asked for on every QUIC socket. Linux's default receive buffer
/// (212,992 bytes) overflows under a burst of replica traffic: the kernel drops datagrams
/// (`RcvbufErrors` in /proc/net/snmp) and QUIC recovers only after a probe timeout, so a
/// replica write on loopback took 800 ms at p99 in a `shoal bench` run. 4 MiB holds a burst.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Bind a QUIC endpoint on `addr` (a server when `server` is given) with
/// [`UDP_BUFFER_BYTES`] socket buffers. Returns the endpoint and the receive buffer the kernel
/// granted, which `net.core.rmem_max` caps unless the process may force it (CAP_NET_ADMIN).
///
/// `reset_key` keys QUIC's stateless resets (RFC 9000 §10.3). A server should pass a key that
/// survives its restarts: a peer still holding a connection to the process before a `kill -9`
/// then gets a valid reset for its first packet and re-dials at once. With a random key (the
/// default, `None`) the restarted node cannot prove the old connection dead, and the peer's
/// requests on it time out until the idle timeout closes it.
pub fn bind_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    reset_key: Option<&[u8]>,
) -> std::io::Result<(quinn::Endpoint, usize)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let granted = grow_buffers(&socket, UDP_BUFFER_BYTES);
    let config = match reset_key {
        Some(key) => {
            let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key)));
            // quinn's connection IDs carry a keyed check, and an endpoint drops packets whose
            // ID fails it without a reset; the restarted endpoint must accept its
            // predecessor's IDs, so that key is stable too (derived from the reset key).
            let digest = ring::digest::digest(&ring::digest::SHA256, key);
            let mut cid_key = [0u8; 8];
            cid_key.copy_from_slice(&digest.as_ref()[..8]);
            let cid_key = u64::from_le_bytes(cid_key);
            config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
            config
        }
        None => quinn::EndpointConfig::default(),
    };
    let endpoint = quinn::Endpoint::new(config, server, socket, Arc::new(quinn::TokioRuntime))?;
    Ok((endpoint, granted))
}

/// Ask for `bytes` of send and receive buffer, forcibly where permitted; returns the receive
/// buffer in effect (Linux reports double what it accounts, as its bookkeeping overhead).
fn grow_buffers(socket: &std::net::UdpSocket, bytes: usize) -> usize {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for (forced, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        // SAFETY: setsockopt on a socket this function borrows, with a pointer to a c_int that
        // outlives the call and its exact size.
        let set =
            |opt| unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&value as *const libc::c_int).cast(), len) };
        if set(forced) != 0 && set(plain) != 0 {
            debug!(error = %std::io::Error::last_os_error(), "could not grow a QUIC socket buffer");
        }
    }
    let mut got: libc::c_int = 0;
    let mut got_len = len;
    // SAFETY: getsockopt into a c_int this function owns, with its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut got_len,
        )
    };
    if rc == 0 {
        usize::try_from(got).unwrap_or(0)
    } else {
        0
    }
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

/// What admitting a connection or a stream holds until it ends (a slot counted against a
/// client's limit, released on drop); `None` when the service counts nothing.
pub type Admission = Option<Box<dyn std::any::Any + Send + Sync>>;

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

    /// Admit a new connection from `remote`. `Err(reply)` refuses it: its first stream is
    /// answered with `reply` and the connection is closed. The `Ok` value lives as long as the
    /// connection.
    fn admit_connection(&self, _remote: SocketAddr) -> Result<Admission, Self::Response> {
        Ok(None)
    }

    /// Admit a new stream (one request) from `remote`, before its frame is read, so a slow
    /// sender holds its slot too. `Err(reply)` answers the stream with `reply` unread.
    fn admit_stream(&self, _remote: SocketAddr) -> Result<Admission, Self::Response> {
        Ok(None)
    }
}

/// Answer a refused stream with `reply` without keeping its request: the request's bytes are
/// drained and dropped (so a client blocked on flow control can finish writing and then read the
/// answer), for at most a few seconds, and nothing of it is held in memory.
async fn refuse_stream<T: Serialize>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    reply: &T,
    limit: usize,
) {
    let env = Envelope {
        id: 0,
        timeout_ms: 0,
        body: reply,
    };
    if write_frame(&mut send, &env, limit).await.is_err() || send.finish().is_err() {
        return;
    }
    let drain = async {
        let mut chunk = [0u8; 4096];
        while let Ok(Some(_)) = recv.read(&mut chunk).await {}
        // Wait until the client has the answer, so closing the connection next cannot lose it.
        let _ = send.stopped().await;
    };
    if tokio::time::timeout(Duration::from_secs(5), drain).await.is_err() {
        let _ = recv.stop(0u32.into());
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
            let _admitted = match service.admit_connection(remote) {
                Ok(a) => a,
                Err(reply) => {
                    if let Ok(Ok((send, recv))) = tokio::time::timeout(Duration::from_secs(5), conn.accept_bi()).await {
                        refuse_stream(send, recv, &reply, tuning.max_frame_bytes).await;
                    }
                    conn.close(0u32.into(), b"refused: too many connections from this client");
                    return;
                }
            };
            loop {
                let (send, recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(%remote, reason = %e, "QUIC connection closed");
                        break;
                    }
                };
                let admitted = match service.admit_stream(remote) {
                    Ok(a) => a,
                    Err(reply) => {
                        let limit = tuning.max_frame_bytes;
                        tokio::spawn(async move { refuse_stream(send, recv, &reply, limit).await });
                        continue;
                    }
                };
                let service = service.clone();
                let tuning = tuning.clone();
                tokio::spawn(
                    serve_stream(service, remote, send, recv, tuning, admitted)
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
    // Held until the answer is sent: the request's in-flight slot, if the service counts them.
    _admitted: Admission,
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
