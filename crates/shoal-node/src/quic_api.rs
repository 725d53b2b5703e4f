//! The client QUIC API: the same operations as HTTP, one request per stream.
//!
//! Each request carries its bearer token (see `ClientRequest`), checked before the request
//! runs; connections and open streams are counted per client address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_net::client_api::{ApiError, ClientRequest, ClientResponse};
use shoal_net::{Admission, FrameError, Service};

use crate::admission::Admission as Limits;
use crate::api::Api;
use crate::auth::{Authenticator, Scope};

pub struct ClientService {
    pub api: Arc<Api>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<Limits>,
}

impl Service for ClientService {
    type Request = ClientRequest;
    type Response = ClientResponse;

    async fn call(self: Arc<Self>, _from: SocketAddr, request: ClientRequest, _timeout: Duration) -> ClientResponse {
        let scope = match &request {
            ClientRequest::Get { .. } => Scope::Read,
            ClientRequest::Put { .. } | ClientRequest::Delete { .. } => Scope::Write,
        };
        if let Err(e) = self.auth.check(request.token(), scope) {
            return ClientResponse::Error(e);
        }
        self.api.handle(request).await
    }

    fn admit_connection(&self, remote: SocketAddr) -> Result<Admission, ClientResponse> {
        match self.limits.connection(remote.ip()) {
            Ok(slot) => Ok(Some(Box::new(slot))),
            Err(e) => Err(ClientResponse::Error(e)),
        }
    }

    fn admit_stream(&self, remote: SocketAddr) -> Result<Admission, ClientResponse> {
        match self.limits.request(remote.ip()) {
            Ok(slot) => Ok(Some(Box::new(slot))),
            Err(e) => Err(ClientResponse::Error(e)),
        }
    }

    fn malformed(&self, error: &FrameError) -> Option<ClientResponse> {
        let e = match error {
            FrameError::TooLarge { len, limit } => ApiError::new(
                413,
                "frame_too_large",
                format!("request frame of {len} bytes is over the limit max_frame_bytes = {limit}"),
            )
            .with_limit("max_frame_bytes", *limit as u64),
            other => ApiError::new(400, "malformed_request", other.to_string()),
        };
        Some(ClientResponse::Error(e))
    }
}
