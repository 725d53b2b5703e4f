//! The HTTP API: `/v1/kv/{key}`, `/v1/admin/{status,aae,consistency,join,leave,remove,skip}`,
//! `/v1/admin/replica/{key}`, `/metrics`, `/healthz`.
//!
//! Every request first passes [`guard`]: the connection limit, the bearer token and the scope
//! its route needs, and the in-flight limit. Handlers then run knowing who asked.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use shoal_net::client_api::{ApiError, ClientRequest, ClientResponse};

use crate::auth::{Authenticator, Principal, Scope};
use crate::http_listener::ClientConn;
use crate::server::{ConsistencyQuery, NodeShared};

pub const CONTEXT_HEADER: &str = "x-shoal-context";

pub fn router(shared: Arc<NodeShared>) -> Router {
    Router::new()
        .route("/v1/kv/{*key}", get(kv).put(kv).delete(kv))
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/aae", get(aae_status))
        .route("/v1/admin/replica/{*key}", get(replica))
        .route("/v1/admin/consistency", get(consistency))
        .route("/v1/admin/consistency/legs", get(legs).delete(clear_legs))
        .route("/v1/admin/join", post(join))
        .route("/v1/admin/leave", post(leave))
        .route("/v1/admin/remove", post(remove))
        .route("/v1/admin/skip", post(skip))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|uri: Uri| async move {
            error_response(ApiError::new(
                404,
                "no_such_route",
                format!("no route for {}", uri.path()),
            ))
        })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// The scope a request needs, or `None` for the open `/healthz` (load-balancer and
/// orchestrator probes carry no credentials). Unknown paths need `read`, so a caller without a
/// token learns nothing about which routes exist.
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    if path == "/healthz" {
        return None;
    }
    if path.starts_with("/v1/admin/") || path == "/v1/admin" {
        return Some(Scope::Admin);
    }
    if path.starts_with("/v1/kv/") && (method == Method::PUT || method == Method::DELETE || method == Method::POST) {
        return Some(Scope::Write);
    }
    Some(Scope::Read)
}

/// `Authorization: Bearer <token>`; `Err` for any other shape of the header.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::new(
            401,
            "unauthenticated",
            "the Authorization header must be `Bearer <token>`",
        )
    };
    let v = v.to_str().map_err(|_| malformed())?;
    let (scheme, token) = v.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed());
    }
    Ok(Some(token.trim()))
}

/// Log an admin action, or a refused attempt at one, for the audit trail (`shoal::audit`).
pub fn audit(principal: &str, source: std::net::SocketAddr, action: &str, args: &str, outcome: &str) {
    // Debug formatting quotes and escapes, so a client-chosen argument cannot forge a line.
    tracing::info!(target: "shoal::audit", principal = ?principal, source = %source, action = ?action, args = ?args, outcome = ?outcome, "admin action");
}

/// Connection limit, authentication, authorization and in-flight limit, in that order: a
/// client over its limits is refused before its token is even hashed.
async fn guard(
    State(shared): State<Arc<NodeShared>>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // A refused PUT's body is never read, so the connection cannot carry another request.
    let has_body = method == Method::PUT || method == Method::POST;
    let refuse = |e: ApiError, connection_refused: bool| {
        let status = e.status;
        let mut resp = error_response(e);
        let h = resp.headers_mut();
        match status {
            401 => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"shoal\""),
                );
            }
            429 => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if has_body || connection_refused {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    };
    if let Some(e) = &conn.refused {
        return refuse(e.as_ref().clone(), true);
    }
    let Some(scope) = required_scope(&method, &path) else {
        return next.run(request).await;
    };
    let _slot = match shared.http_admission.request(conn.addr.ip()) {
        Ok(s) => s,
        Err(e) => return refuse(e, false),
    };
    let auth = &shared.auth;
    let principal = match bearer(request.headers()).and_then(|t| auth.authenticate(t)) {
        Ok(p) => p,
        Err(e) => {
            if scope == Scope::Admin {
                audit(
                    "unauthenticated",
                    conn.addr,
                    &format!("{method} {path}"),
                    "",
                    "refused: 401 unauthenticated",
                );
            }
            return refuse(e, false);
        }
    };
    if let Err(e) = Authenticator::authorize(&principal, scope) {
        if scope == Scope::Admin {
            audit(
                &principal.name,
                conn.addr,
                &format!("{method} {path}"),
                "",
                "refused: 403 forbidden",
            );
        }
        return refuse(e, false);
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn error_response(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(&e)).into_response();
    if let Some(ctx) = e.context.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(CONTEXT_HEADER, ctx);
    }
    resp
}

/// Percent-decode a path segment into raw key bytes (keys are bytes, not necessarily UTF-8).
fn percent_decode(s: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::new(400, "invalid_key", "bad percent-encoding in the key").with_param("key")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Query parameters of a kv request, parsed by hand so every mistake gets a JSON 400 naming
/// the parameter rather than a framework's plain-text rejection.
#[derive(Default)]
pub struct KvParams {
    n: Option<u8>,
    quorum: Option<u8>,
    timeout_ms: Option<u32>,
    sloppy: Option<bool>,
}

/// Public for the `http_params` fuzz target.
pub fn parse_params(query: Option<&str>, quorum_name: &'static str) -> Result<KvParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::new(400, "invalid_parameter", format!("unreadable query string: {e}")))?;
    let mut p = KvParams::default();
    for (k, v) in pairs {
        let small = |name: &str| {
            v.parse::<u8>().map_err(|_| {
                ApiError::new(
                    400,
                    "invalid_parameter",
                    format!("{name} must be an integer from 0 to 255, got {v:?}"),
                )
                .with_param(name)
            })
        };
        match k.as_str() {
            "n" => p.n = Some(small("n")?),
            q if q == quorum_name => p.quorum = Some(small(quorum_name)?),
            "timeout_ms" => {
                p.timeout_ms = Some(v.parse::<u32>().ok().filter(|t| *t > 0).ok_or_else(|| {
                    ApiError::new(
                        400,
                        "invalid_parameter",
                        format!("timeout_ms must be a positive integer, got {v:?}"),
                    )
                    .with_param("timeout_ms")
                })?)
            }
            "sloppy" => {
                p.sloppy = Some(match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::new(
                            400,
                            "invalid_parameter",
                            format!("sloppy must be true or false, got {v:?}"),
                        )
                        .with_param("sloppy"))
                    }
                })
            }
            other => {
                return Err(ApiError::new(
                    400,
                    "invalid_parameter",
                    format!("unknown parameter {other:?}; this request takes n, {quorum_name}, timeout_ms and sloppy"),
                )
                .with_param(other.to_string()))
            }
        }
    }
    Ok(p)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn context_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.to_string())).map_err(|_| {
            ApiError::new(400, "invalid_context", "X-Shoal-Context is not valid ASCII").with_param("context")
        }),
    }
}

async fn kv(
    State(shared): State<Arc<NodeShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let is_put = method == Method::PUT;
    match kv_inner(&shared, method, uri, headers, body).await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = error_response(e);
            if is_put {
                // Refused before its body was read (or cut off at the limit): the unread bytes
                // would corrupt the next request on this connection, so the client must not
                // reuse it.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

async fn kv_inner(
    shared: &NodeShared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let api = &shared.api;
    let raw = uri.path().strip_prefix("/v1/kv/").unwrap_or_default();
    let key = Bytes::from(percent_decode(raw)?);
    let request = if method == Method::GET {
        let p = parse_params(uri.query(), "r")?;
        ClientRequest::Get {
            key,
            n: p.n,
            r: p.quorum,
            timeout_ms: p.timeout_ms,
            sloppy: p.sloppy,
            // Authenticated by `guard`, from the Authorization header.
            token: None,
        }
    } else {
        let p = parse_params(uri.query(), "w")?;
        let context = context_header(&headers)?;
        if method == Method::PUT {
            let limit = api.limits().max_value_bytes;
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if let Some(len) = declared.filter(|l| *l > limit) {
                return Err(api.value_too_large(Some(len)));
            }
            let value = axum::body::to_bytes(body, limit)
                .await
                .map_err(|_| api.value_too_large(None))?;
            ClientRequest::Put {
                key,
                value,
                context,
                n: p.n,
                w: p.quorum,
                timeout_ms: p.timeout_ms,
                sloppy: p.sloppy,
                token: None,
            }
        } else {
            ClientRequest::Delete {
                key,
                context,
                n: p.n,
                w: p.quorum,
                timeout_ms: p.timeout_ms,
                sloppy: p.sloppy,
                token: None,
            }
        }
    };
    Ok(render(api.handle(request).await, wants_json(&headers)))
}

fn with_context(mut resp: Response, context: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(context) {
        resp.headers_mut().insert(CONTEXT_HEADER, v);
    }
    resp
}

fn render(response: ClientResponse, json: bool) -> Response {
    match response {
        ClientResponse::Found { context, mut values } => {
            if values.len() == 1 && !json {
                let value = values.pop().unwrap_or_default();
                let resp = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    value,
                )
                    .into_response();
                return with_context(resp, &context);
            }
            let status = if values.len() == 1 {
                StatusCode::OK
            } else {
                StatusCode::MULTIPLE_CHOICES
            };
            let engine = base64::engine::general_purpose::STANDARD;
            let body = serde_json::json!({
                "context": context,
                "siblings": values.iter().map(|v| engine.encode(v)).collect::<Vec<_>>(),
            });
            with_context((status, axum::Json(body)).into_response(), &context)
        }
        ClientResponse::NotFound { context } => {
            let mut e = ApiError::new(404, "not_found", "no value for this key");
            e.context = context;
            error_response(e)
        }
        ClientResponse::Written {
            context,
            acks,
            hinted,
            siblings,
            sibling_warning,
        } => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            h.insert("x-shoal-acks", HeaderValue::from(u32::from(acks)));
            h.insert("x-shoal-hinted-acks", HeaderValue::from(u32::from(hinted)));
            h.insert("x-shoal-siblings", HeaderValue::from(siblings));
            if sibling_warning {
                let text = format!("199 shoal \"{siblings} siblings: resolve them by writing with the context\"");
                if let Ok(v) = HeaderValue::from_str(&text) {
                    h.insert(header::WARNING, v);
                }
            }
            with_context(resp, &context)
        }
        ClientResponse::Error(e) => error_response(e),
    }
}

async fn status(State(shared): State<Arc<NodeShared>>) -> Response {
    axum::Json(shared.status().await).into_response()
}

async fn consistency(
    State(shared): State<Arc<NodeShared>>,
    params: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match params {
        Ok(Query(q)) => q,
        Err(e) => return error_response(ApiError::new(400, "invalid_parameter", e.body_text())),
    };
    // Up to a million Monte Carlo trials: CPU work that must not hold an async worker that
    // serves key-value traffic.
    match tokio::task::spawn_blocking(move || shared.consistency(&q)).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => error_response(e),
        Err(e) => error_response(ApiError::new(
            500,
            "prediction_failed",
            format!("the PBS prediction did not finish: {e}"),
        )),
    }
}

/// The raw WARS leg samples behind the prediction (`shoal bench` pools every node's).
async fn legs(State(shared): State<Arc<NodeShared>>) -> Response {
    axum::Json(shared.api.coordinator.legs().snapshot()).into_response()
}

async fn clear_legs(
    State(shared): State<Arc<NodeShared>>,
    Extension(who): Extension<Arc<Principal>>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
) -> Response {
    audit(&who.name, conn.addr, "clear_legs", "", "done");
    shared.api.coordinator.legs().clear();
    axum::Json(serde_json::json!({"cleared": true})).into_response()
}

async fn aae_status(State(shared): State<Arc<NodeShared>>) -> Response {
    axum::Json(shared.aae_status()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaParams {
    n: Option<u8>,
}

/// This node's own copy of a key, read from its local store alone: no quorum, no other
/// replica, no read repair, tombstones included (`"value": null`), each sibling with its dot.
/// With it the key's preference list for `n` in this node's current layout, and whether a
/// layout change is in flight. For checking convergence replica by replica (tests, debugging).
async fn replica(
    State(shared): State<Arc<NodeShared>>,
    uri: Uri,
    params: Result<Query<ReplicaParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = match params {
        Ok(Query(p)) => p,
        Err(e) => return error_response(ApiError::new(400, "invalid_parameter", e.body_text())),
    };
    let raw = uri.path().strip_prefix("/v1/admin/replica/").unwrap_or_default();
    let key = match percent_decode(raw) {
        Ok(k) if !k.is_empty() => Bytes::from(k),
        Ok(_) => {
            return error_response(ApiError::new(400, "invalid_key", "the key must not be empty").with_param("key"))
        }
        Err(e) => return error_response(e),
    };
    let coordinator = &shared.api.coordinator;
    let Some(placement) = coordinator.placement() else {
        return error_response(ApiError::new(
            503,
            "not_joined",
            "this node has not joined a cluster yet (see `shoal admin join`)",
        ));
    };
    let layout = &placement.current;
    let n = p.n.unwrap_or(coordinator.config().defaults.n);
    if n == 0 || n as usize > layout.members().len() {
        return error_response(
            ApiError::new(
                400,
                "invalid_parameter",
                format!(
                    "n must be from 1 to the {} members of the current layout, got {n}",
                    layout.members().len()
                ),
            )
            .with_param("n"),
        );
    }
    let partition = layout.partition_of(&key);
    let preference_list: Vec<String> = layout
        .preference_list(partition, n as usize)
        .iter()
        .map(|id| id.to_string())
        .collect();
    let object = match coordinator.read_local(key).await {
        Ok(o) => o,
        Err(e) => return error_response(ApiError::new(500, "storage_error", e)),
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let object = object.map(|o| {
        let siblings: Vec<_> = o
            .siblings
            .siblings()
            .iter()
            .map(|s| {
                let value = match &s.value {
                    shoal_storage::Value::Data(b) => Some(engine.encode(b)),
                    shoal_storage::Value::Tombstone => None,
                };
                serde_json::json!({"dot": s.dot.to_string(), "value": value})
            })
            .collect();
        serde_json::json!({"n": o.n, "deleted": o.is_deleted(), "siblings": siblings})
    });
    axum::Json(serde_json::json!({
        "node": coordinator.me().to_string(),
        "partition": partition,
        "n": n,
        "layout_epoch": placement.epoch,
        "changing": placement.changing(),
        "preference_list": preference_list,
        "object": object,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct JoinParams {
    seed: String,
}

#[derive(serde::Deserialize)]
struct NodeParams {
    node: String,
}

/// The answer to an accepted change: the proposed record's epoch and what is in flight.
fn change_accepted(result: Result<shoal_ring::LayoutRecord, String>) -> Response {
    match result {
        Ok(record) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "epoch": record.epoch,
                "transition": record.next.as_ref().map(|t| serde_json::json!({
                    "kind": t.kind.to_string(),
                    "node": t.node.to_string(),
                })),
            })),
        )
            .into_response(),
        Err(message) => error_response(ApiError::new(409, "layout_change_refused", message)),
    }
}

/// Audit a layout change's outcome, then answer it.
fn audited_change(
    who: &Principal,
    conn: &ClientConn,
    action: &str,
    args: &str,
    result: Result<shoal_ring::LayoutRecord, String>,
) -> Response {
    let outcome = match &result {
        Ok(r) => format!("accepted at epoch {}", r.epoch),
        Err(m) => format!("refused: {m}"),
    };
    audit(&who.name, conn.addr, action, args, &outcome);
    change_accepted(result)
}

async fn join(
    State(shared): State<Arc<NodeShared>>,
    Extension(who): Extension<Arc<Principal>>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
    Query(p): Query<JoinParams>,
) -> Response {
    let args = format!("seed={}", p.seed);
    let seed = match p.seed.parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            audit(&who.name, conn.addr, "join", &args, "refused: invalid seed");
            return error_response(
                ApiError::new(
                    400,
                    "invalid_seed",
                    format!("seed {:?} is not a peer address such as 10.0.0.1:9080", p.seed),
                )
                .with_param("seed"),
            );
        }
    };
    audited_change(&who, &conn, "join", &args, shared.membership.join(seed).await)
}

async fn leave(
    State(shared): State<Arc<NodeShared>>,
    Extension(who): Extension<Arc<Principal>>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
) -> Response {
    audited_change(&who, &conn, "leave", "", shared.membership.leave())
}

async fn remove(
    State(shared): State<Arc<NodeShared>>,
    Extension(who): Extension<Arc<Principal>>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
    Query(p): Query<NodeParams>,
) -> Response {
    node_change(&who, &conn, "remove", p, |node| shared.membership.remove(node))
}

async fn skip(
    State(shared): State<Arc<NodeShared>>,
    Extension(who): Extension<Arc<Principal>>,
    ConnectInfo(conn): ConnectInfo<ClientConn>,
    Query(p): Query<NodeParams>,
) -> Response {
    node_change(&who, &conn, "skip", p, |node| shared.membership.skip(node))
}

/// An audited layout change that names a node (`?node=`).
fn node_change(
    who: &Principal,
    conn: &ClientConn,
    action: &str,
    p: NodeParams,
    change: impl FnOnce(shoal_ring::NodeId) -> Result<shoal_ring::LayoutRecord, String>,
) -> Response {
    let args = format!("node={}", p.node);
    audited_change(who, conn, action, &args, change(shoal_ring::NodeId::new(p.node)))
}

async fn metrics(State(shared): State<Arc<NodeShared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked_by_name() {
        let p = parse_params(Some("n=3&w=2&timeout_ms=100"), "w").unwrap();
        assert_eq!((p.n, p.quorum, p.timeout_ms), (Some(3), Some(2), Some(100)));
        let e = parse_params(Some("w=two"), "w").err().unwrap();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("w")));
        let e = parse_params(Some("r=1"), "w").err().unwrap();
        assert_eq!(e.param.as_deref(), Some("r"), "r is not a write parameter");
        let e = parse_params(Some("timeout_ms=0"), "r").err().unwrap();
        assert_eq!(e.param.as_deref(), Some("timeout_ms"));
        assert!(parse_params(Some("n=999"), "r").is_err());
    }

    #[test]
    fn keys_are_percent_decoded_to_bytes() {
        assert_eq!(percent_decode("a%2Fb%00%ff").unwrap(), b"a/b\x00\xff".to_vec());
        assert!(percent_decode("bad%zz").is_err());
        assert!(percent_decode("bad%2").is_err());
    }

    #[test]
    fn every_route_has_the_scope_the_docs_promise() {
        let cases = [
            (Method::GET, "/healthz", None),
            (Method::GET, "/metrics", Some(Scope::Read)),
            (Method::GET, "/v1/kv/a", Some(Scope::Read)),
            (Method::HEAD, "/v1/kv/a", Some(Scope::Read)),
            (Method::PUT, "/v1/kv/a", Some(Scope::Write)),
            (Method::DELETE, "/v1/kv/a", Some(Scope::Write)),
            (Method::GET, "/v1/admin/status", Some(Scope::Admin)),
            (Method::GET, "/v1/admin/consistency", Some(Scope::Admin)),
            (Method::GET, "/v1/admin/replica/a", Some(Scope::Admin)),
            (Method::DELETE, "/v1/admin/consistency/legs", Some(Scope::Admin)),
            (Method::POST, "/v1/admin/join", Some(Scope::Admin)),
            (Method::GET, "/nowhere", Some(Scope::Read)),
        ];
        for (m, p, want) in cases {
            assert_eq!(required_scope(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn only_bearer_authorization_is_understood() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(bearer(&HeaderMap::new()).unwrap(), None);
        assert_eq!(bearer(&h("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer(&h("bearer abc")).unwrap(), Some("abc"));
        assert!(bearer(&h("Basic YWxhZGRpbjpvcGVu")).is_err());
        assert!(bearer(&h("Bearer ")).is_err());
        assert!(bearer(&h("abc")).is_err());
    }
}
