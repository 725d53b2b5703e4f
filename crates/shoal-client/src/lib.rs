//! A Rust client for Shoal over HTTP or QUIC, with per-request N/W/R.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal_client::ClientError> {
//! let client = shoal_client::Client::connect("http://127.0.0.1:8080", None).await?;
//! let opts = shoal_client::Options { w: Some(2), ..Default::default() };
//! let written = client.put(b"greeting", "hello".into(), None, &opts).await?;
//! let read = client.get(b"greeting", &Default::default()).await?;
//! # let _ = (written, read); Ok(()) }
//! ```
//!
//! Every read and write returns the causal context; pass it to the next write of the same key
//! to replace exactly the siblings that read saw.

// `ClientError::Api` carries the wire error body (about 170 bytes with its optional details),
// returned only on the cold path of a refused request, where boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
pub use shoal_net::client_api::{ApiError, BearerToken, ClientRequest, ClientResponse};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error (quorum not reached, bad parameter, limit).
    #[error("{0}")]
    Api(ApiError),
    #[error("transport: {0}")]
    Transport(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("bad endpoint {0:?}: use http://HOST:PORT, https://HOST:PORT or quic://HOST:PORT")]
    Endpoint(String),
}

/// An HTTP client for `http://` and (with a CA) `https://` endpoints.
type HttpClient = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Build the HTTP client for `endpoint`: `https://` needs `ca`, the CA certificate that signed
/// the node's HTTP certificate (Shoal trusts no system roots, like its QUIC client).
fn http_client(endpoint: &str, ca: Option<&Path>, max_idle: usize) -> Result<HttpClient, ClientError> {
    let tls = if endpoint.starts_with("https://") {
        let ca = ca.ok_or_else(|| {
            ClientError::Transport(
                "https:// needs the CA certificate of the node's HTTP certificate (--ca FILE or SHOAL_CA_CERT)".into(),
            )
        })?;
        shoal_net::tls::https_client_config(ca).map_err(|e| ClientError::Transport(e.to_string()))?
    } else {
        // Never used for a handshake: plain http:// connections skip TLS.
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector))
}

/// `http://HOST:PORT` or `https://HOST:PORT` without a trailing slash, and its HOST:PORT.
fn http_base(endpoint: &str) -> Option<(String, &str)> {
    for scheme in ["http://", "https://"] {
        if let Some(hostport) = endpoint.strip_prefix(scheme) {
            let hostport = hostport.trim_end_matches('/');
            return Some((format!("{scheme}{hostport}"), hostport));
        }
    }
    None
}

/// Credentials and trust for the admin calls ([`http_json`]): the bearer token, and the CA
/// for `https://` endpoints.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access<'a> {
    pub token: Option<&'a str>,
    pub ca: Option<&'a Path>,
}

/// Per-request consistency and deadline; `None` takes the node's configured default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub n: Option<u8>,
    pub w: Option<u8>,
    pub r: Option<u8>,
    pub timeout_ms: Option<u32>,
    /// `Some(false)`: count only the preference list toward W and R (strict quorum, Riak's
    /// `pw`/`pr`); `Some(true)`: let hinted copies on fallback nodes count (sloppy quorum).
    pub sloppy: Option<bool>,
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// One value, or several siblings when writes were concurrent.
    Found { context: String, values: Vec<Bytes> },
    /// Absent, or deleted (then with a context to write over the tombstone).
    NotFound { context: Option<String> },
}

/// The answer to a put or delete that reached its write quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub context: String,
    pub acks: u8,
    /// How many of `acks` were hinted copies on fallback nodes.
    pub hinted: u8,
    pub siblings: u32,
    pub sibling_warning: bool,
}

enum Transport {
    Http { base: String, client: HttpClient },
    Quic { pool: shoal_net::Pool, addr: SocketAddr },
}

pub struct Client {
    transport: Transport,
    /// Sent with every request: `Authorization: Bearer` on HTTP, in the request on QUIC.
    token: Option<BearerToken>,
}

const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

async fn resolve(hostport: &str, raw: &str) -> Result<SocketAddr, ClientError> {
    tokio::net::lookup_host(hostport)
        .await
        .map_err(|e| ClientError::Transport(format!("resolving {hostport}: {e}")))?
        .next()
        .ok_or_else(|| ClientError::Endpoint(raw.to_string()))
}

/// Percent-encode a key for a URL path: everything outside RFC 3986's unreserved set.
pub fn encode_key(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len() * 3);
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

impl Client {
    /// Connect to `endpoint` (`http://HOST:PORT`, `https://HOST:PORT` or `quic://HOST:PORT`).
    /// QUIC and HTTPS need the CA certificate to verify the node.
    pub async fn connect(endpoint: &str, ca_cert: Option<&Path>) -> Result<Client, ClientError> {
        if let Some((base, hostport)) = http_base(endpoint) {
            resolve(hostport, endpoint).await?;
            let client = http_client(endpoint, ca_cert, 256)?;
            return Ok(Client {
                transport: Transport::Http { base, client },
                token: None,
            });
        }
        if let Some(hostport) = endpoint.strip_prefix("quic://") {
            let hostport = hostport.trim_end_matches('/');
            let addr = resolve(hostport, endpoint).await?;
            let ca = ca_cert.ok_or_else(|| {
                ClientError::Transport("QUIC needs the cluster CA certificate (--ca FILE or SHOAL_CA_CERT)".into())
            })?;
            let tls =
                shoal_net::tls::client_api_client_config(ca).map_err(|e| ClientError::Transport(e.to_string()))?;
            let tuning = shoal_net::TransportTuning::default();
            let quic = tuning
                .client_config(tls)
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
                .parse()
                .map_err(|_| ClientError::Endpoint(endpoint.to_string()))?;
            let (mut ep, _) =
                shoal_net::bind_endpoint(bind, None, None).map_err(|e| ClientError::Transport(e.to_string()))?;
            ep.set_default_client_config(quic);
            let pool = shoal_net::Pool::new(ep, shoal_net::SERVER_NAME, tuning.max_frame_bytes);
            return Ok(Client {
                transport: Transport::Quic { pool, addr },
                token: None,
            });
        }
        Err(ClientError::Endpoint(endpoint.to_string()))
    }

    /// Authenticate every request with this bearer token (nodes with `auth.enabled`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.map(BearerToken);
        self
    }

    pub async fn get(&self, key: &[u8], opts: &Options) -> Result<Read, ClientError> {
        let req = ClientRequest::Get {
            key: Bytes::copy_from_slice(key),
            n: opts.n,
            r: opts.r,
            timeout_ms: opts.timeout_ms,
            sloppy: opts.sloppy,
            token: None,
        };
        match self.call(req, opts).await? {
            ClientResponse::Found { context, values } => Ok(Read::Found { context, values }),
            ClientResponse::NotFound { context } => Ok(Read::NotFound { context }),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    pub async fn put(
        &self,
        key: &[u8],
        value: Bytes,
        context: Option<&str>,
        opts: &Options,
    ) -> Result<Written, ClientError> {
        let req = ClientRequest::Put {
            key: Bytes::copy_from_slice(key),
            value,
            context: context.map(str::to_string),
            n: opts.n,
            w: opts.w,
            timeout_ms: opts.timeout_ms,
            sloppy: opts.sloppy,
            token: None,
        };
        self.written(req, opts).await
    }

    pub async fn delete(&self, key: &[u8], context: Option<&str>, opts: &Options) -> Result<Written, ClientError> {
        let req = ClientRequest::Delete {
            key: Bytes::copy_from_slice(key),
            context: context.map(str::to_string),
            n: opts.n,
            w: opts.w,
            timeout_ms: opts.timeout_ms,
            sloppy: opts.sloppy,
            token: None,
        };
        self.written(req, opts).await
    }

    async fn written(&self, req: ClientRequest, opts: &Options) -> Result<Written, ClientError> {
        match self.call(req, opts).await? {
            ClientResponse::Written {
                context,
                acks,
                hinted,
                siblings,
                sibling_warning,
            } => Ok(Written {
                context,
                acks,
                hinted,
                siblings,
                sibling_warning,
            }),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// One round trip to the node that does no work there: `GET /healthz` over the client's
    /// kept-alive HTTP connection. (The QUIC API has no such request; ping a node's HTTP port.)
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let Transport::Http { base, client } = &self.transport else {
            return Err(ClientError::Protocol("ping needs an http:// endpoint".into()));
        };
        let request = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(format!("{base}/healthz"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let started = std::time::Instant::now();
        let resp = tokio::time::timeout(DEFAULT_DEADLINE, client.request(request))
            .await
            .map_err(|_| ClientError::Transport(format!("no answer within {DEFAULT_DEADLINE:?}")))?
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let ok = resp.status().is_success();
        body_bytes(resp).await?;
        if !ok {
            return Err(ClientError::Protocol("GET /healthz did not answer 200".into()));
        }
        Ok(started.elapsed())
    }

    async fn call(&self, mut req: ClientRequest, opts: &Options) -> Result<ClientResponse, ClientError> {
        req.set_token(self.token.clone());
        // Wait a little longer than the server-side deadline, so the server's 503 (which names
        // the replicas that failed) arrives rather than a bare client timeout.
        let deadline = opts
            .timeout_ms
            .map_or(DEFAULT_DEADLINE, |t| Duration::from_millis(t as u64 + 2_000));
        let resp =
            match &self.transport {
                Transport::Quic { pool, addr } => pool
                    .call::<_, ClientResponse>(*addr, req, deadline)
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?,
                Transport::Http { base, client } => tokio::time::timeout(deadline, http_call(client, base, req))
                    .await
                    .map_err(|_| ClientError::Transport(format!("no answer within {deadline:?}")))??,
            };
        match resp {
            ClientResponse::Error(e) => Err(ClientError::Api(e)),
            other => Ok(other),
        }
    }
}

async fn body_bytes(resp: hyper::Response<hyper::body::Incoming>) -> Result<Bytes, ClientError> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?
        .to_bytes())
}

fn query(pairs: &[(&str, Option<u32>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

async fn http_call(client: &HttpClient, base: &str, req: ClientRequest) -> Result<ClientResponse, ClientError> {
    let o = |v: Option<u8>| v.map(u32::from);
    let b = |v: Option<bool>| v.map(u32::from);
    let token = req.token().cloned();
    let (method, key, q, context, body) = match req {
        ClientRequest::Get {
            key,
            n,
            r,
            timeout_ms,
            sloppy,
            ..
        } => (
            "GET",
            key,
            query(&[
                ("n", o(n)),
                ("r", o(r)),
                ("timeout_ms", timeout_ms),
                ("sloppy", b(sloppy)),
            ]),
            None,
            Bytes::new(),
        ),
        ClientRequest::Put {
            key,
            value,
            context,
            n,
            w,
            timeout_ms,
            sloppy,
            ..
        } => (
            "PUT",
            key,
            query(&[
                ("n", o(n)),
                ("w", o(w)),
                ("timeout_ms", timeout_ms),
                ("sloppy", b(sloppy)),
            ]),
            context,
            value,
        ),
        ClientRequest::Delete {
            key,
            context,
            n,
            w,
            timeout_ms,
            sloppy,
            ..
        } => (
            "DELETE",
            key,
            query(&[
                ("n", o(n)),
                ("w", o(w)),
                ("timeout_ms", timeout_ms),
                ("sloppy", b(sloppy)),
            ]),
            context,
            Bytes::new(),
        ),
    };
    let uri = format!("{base}/v1/kv/{}{q}", encode_key(&key));
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/json");
    if let Some(c) = &context {
        builder = builder.header("x-shoal-context", c);
    }
    if let Some(t) = &token {
        builder = builder.header("authorization", format!("Bearer {}", t.0));
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let resp = client
        .request(request)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let context = header("x-shoal-context");
    let acks = header("x-shoal-acks").and_then(|v| v.parse().ok()).unwrap_or(0);
    let hinted = header("x-shoal-hinted-acks").and_then(|v| v.parse().ok()).unwrap_or(0);
    let siblings = header("x-shoal-siblings").and_then(|v| v.parse().ok()).unwrap_or(0);
    let warning = header("warning").is_some();
    let body = body_bytes(resp).await?;
    match status {
        200 | 300 => {
            #[derive(serde::Deserialize)]
            struct Siblings {
                context: String,
                siblings: Vec<String>,
            }
            let s: Siblings = serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
            let engine = base64::engine::general_purpose::STANDARD;
            let values = s
                .siblings
                .iter()
                .map(|v| engine.decode(v).map(Bytes::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            Ok(ClientResponse::Found {
                context: s.context,
                values,
            })
        }
        204 => Ok(ClientResponse::Written {
            context: context.ok_or_else(|| ClientError::Protocol("204 without X-Shoal-Context".into()))?,
            acks,
            hinted,
            siblings,
            sibling_warning: warning,
        }),
        404 => Ok(ClientResponse::NotFound { context }),
        _ => {
            let mut e: ApiError = serde_json::from_slice(&body)
                .map_err(|_| ClientError::Protocol(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))))?;
            e.status = status;
            Ok(ClientResponse::Error(e))
        }
    }
}

/// `GET` a JSON document from a node's HTTP API, e.g. `/v1/admin/status`.
pub async fn http_get_json(endpoint: &str, path: &str, access: Access<'_>) -> Result<serde_json::Value, ClientError> {
    http_json(endpoint, "GET", path, access).await
}

/// Sends a bodiless request to an admin endpoint and returns its JSON answer. An error answer
/// that carries Shoal's error body becomes [`ClientError::Api`], so its message reaches the user.
pub async fn http_json(
    endpoint: &str,
    method: &str,
    path: &str,
    access: Access<'_>,
) -> Result<serde_json::Value, ClientError> {
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let (base, _) = http_base(endpoint).ok_or_else(|| ClientError::Endpoint(endpoint.to_string()))?;
    let client = http_client(endpoint, access.ca, 1)?;
    let uri = format!("{base}{path}");
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    if let Some(t) = access.token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let resp = tokio::time::timeout(DEFAULT_DEADLINE, client.request(request))
        .await
        .map_err(|_| ClientError::Transport(format!("no answer within {DEFAULT_DEADLINE:?}")))?
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = body_bytes(resp).await?;
    if !(200..300).contains(&status) {
        if let Ok(mut api) = serde_json::from_slice::<ApiError>(&body) {
            api.status = status;
            return Err(ClientError::Api(api));
        }
        return Err(ClientError::Protocol(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
}
