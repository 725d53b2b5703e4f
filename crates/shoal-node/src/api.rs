//! The client API's semantics, shared by HTTP and QUIC: validation, limits, context tokens,
//! and the mapping of coordinator outcomes to answers and errors.

use std::sync::Arc;
use std::time::Instant;

use shoal_coordinator::{CoordError, GetRequest, PutRequest};
use shoal_net::client_api::{ApiError, ClientRequest, ClientResponse, FailedReplica};
use shoal_version::{ContextCodec, VersionVector};

use crate::peer::NodeCoordinator;

#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

pub struct Api {
    pub coordinator: Arc<NodeCoordinator>,
    codec: ContextCodec,
    limits: ApiLimits,
}

impl Api {
    pub fn new(coordinator: Arc<NodeCoordinator>, codec: ContextCodec, limits: ApiLimits) -> Self {
        Self {
            coordinator,
            codec,
            limits,
        }
    }

    pub fn limits(&self) -> ApiLimits {
        self.limits
    }

    fn check_key(&self, key: &[u8]) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::new(400, "invalid_key", "the key must not be empty").with_param("key"));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(ApiError::new(
                413,
                "key_too_large",
                format!(
                    "key of {} bytes is over the limit max_key_bytes = {}",
                    key.len(),
                    self.limits.max_key_bytes
                ),
            )
            .with_limit("max_key_bytes", self.limits.max_key_bytes as u64));
        }
        Ok(())
    }

    /// The error for a value over `max_value_bytes`; HTTP raises it before reading the body.
    /// `len` is `None` when the body was streamed without a length and cut off at the limit.
    pub fn value_too_large(&self, len: Option<usize>) -> ApiError {
        let limit = self.limits.max_value_bytes;
        let message = match len {
            Some(len) => format!("value of {len} bytes is over the limit max_value_bytes = {limit}"),
            None => format!("value is over the limit max_value_bytes = {limit}"),
        };
        ApiError::new(413, "value_too_large", message).with_limit("max_value_bytes", limit as u64)
    }

    fn context(&self, token: Option<&str>) -> Result<Option<VersionVector>, ApiError> {
        match token {
            None => Ok(None),
            Some(t) => self.codec.decode(t).map(Some).map_err(|e| {
                ApiError::new(
                    400,
                    "invalid_context",
                    format!("the X-Shoal-Context token was not issued by this cluster or is damaged: {e}"),
                )
                .with_param("context")
            }),
        }
    }

    pub fn encode_context(&self, ctx: &VersionVector) -> String {
        self.codec.encode(ctx)
    }

    /// Handle one request, recording its latency by operation, N and quorum.
    pub async fn handle(&self, request: ClientRequest) -> ClientResponse {
        let started = Instant::now();
        let (op, n, q) = match &request {
            ClientRequest::Get { n, r, .. } => ("get", *n, *r),
            ClientRequest::Put { n, w, .. } => ("put", *n, *w),
            ClientRequest::Delete { n, w, .. } => ("delete", *n, *w),
        };
        let response = match self.dispatch(request).await {
            Ok(r) => r,
            Err(e) => ClientResponse::Error(e),
        };
        let status = match &response {
            ClientResponse::Error(e) => e.status.to_string(),
            ClientResponse::NotFound { .. } => "404".to_string(),
            _ => "ok".to_string(),
        };
        let label = |v: Option<u8>| v.map_or_else(|| "default".to_string(), |v| v.to_string());
        metrics::histogram!("shoal_request_duration_seconds",
            "op" => op, "n" => label(n), "q" => label(q), "status" => status)
        .record(started.elapsed().as_secs_f64());
        response
    }

    async fn dispatch(&self, request: ClientRequest) -> Result<ClientResponse, ApiError> {
        match request {
            ClientRequest::Get {
                key,
                n,
                r,
                timeout_ms,
                sloppy,
                ..
            } => {
                self.check_key(&key)?;
                let got = self
                    .coordinator
                    .get(GetRequest {
                        key,
                        n,
                        r,
                        timeout_ms,
                        sloppy,
                    })
                    .await
                    .map_err(|e| self.coord_error(e))?;
                Ok(match got.object {
                    None => ClientResponse::NotFound { context: None },
                    Some(obj) => {
                        let context = self.codec.encode(&obj.siblings.context());
                        if obj.is_deleted() {
                            ClientResponse::NotFound { context: Some(context) }
                        } else {
                            metrics::histogram!("shoal_object_bytes").record(obj.payload_len() as f64);
                            ClientResponse::Found {
                                context,
                                values: obj.values(),
                            }
                        }
                    }
                })
            }
            ClientRequest::Put {
                key,
                value,
                context,
                n,
                w,
                timeout_ms,
                sloppy,
                ..
            } => {
                self.check_key(&key)?;
                if value.len() > self.limits.max_value_bytes {
                    return Err(self.value_too_large(Some(value.len())));
                }
                let context = self.context(context.as_deref())?;
                self.write(PutRequest {
                    key,
                    value: Some(value),
                    context,
                    n,
                    w,
                    timeout_ms,
                    forwarded: false,
                    sloppy,
                })
                .await
            }
            ClientRequest::Delete {
                key,
                context,
                n,
                w,
                timeout_ms,
                sloppy,
                ..
            } => {
                self.check_key(&key)?;
                let context = self.context(context.as_deref())?;
                self.write(PutRequest {
                    key,
                    value: None,
                    context,
                    n,
                    w,
                    timeout_ms,
                    forwarded: false,
                    sloppy,
                })
                .await
            }
        }
    }

    async fn write(&self, req: PutRequest) -> Result<ClientResponse, ApiError> {
        let done = self.coordinator.put(req).await.map_err(|e| self.coord_error(e))?;
        Ok(ClientResponse::Written {
            context: self.codec.encode(&done.context),
            acks: done.acks,
            hinted: done.hinted,
            siblings: done.siblings,
            sibling_warning: done.sibling_warning,
        })
    }

    fn coord_error(&self, e: CoordError) -> ApiError {
        let message = e.to_string();
        match e {
            CoordError::InvalidParam { param, .. } => {
                ApiError::new(400, "invalid_parameter", message).with_param(param)
            }
            CoordError::Unavailable {
                required,
                acked,
                failed,
                ..
            } => ApiError {
                required: Some(required),
                acked: Some(acked),
                failed: failed
                    .into_iter()
                    .map(|f| FailedReplica {
                        node: f.node,
                        reason: f.reason,
                    })
                    .collect(),
                ..ApiError::new(503, "quorum_not_reached", message)
            },
            CoordError::TooManySiblings { limit, context, .. } => ApiError {
                context: Some(self.codec.encode(&context)),
                ..ApiError::new(409, "too_many_siblings", message).with_limit("sibling_max", limit as u64)
            },
            CoordError::ObjectTooLarge { limit, context, .. } => ApiError {
                context: Some(self.codec.encode(&context)),
                ..ApiError::new(413, "object_too_large", message).with_limit("max_object_bytes", limit as u64)
            },
            CoordError::Storage(_) => ApiError::new(500, "storage_error", message),
            CoordError::DiskFull { limit, .. } => {
                ApiError::new(507, "insufficient_storage", message).with_limit("min_free_bytes", limit)
            }
        }
    }
}
