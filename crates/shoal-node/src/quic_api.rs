//! The client QUIC API: the same operations as HTTP, one request per stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_net::client_api::{ApiError, ClientRequest, ClientResponse};
use shoal_net::{FrameError, Service};

use crate::api::Api;

pub struct ClientService {
    pub api: Arc<Api>,
}

impl Service for ClientService {
    type Request = ClientRequest;
    type Response = ClientResponse;

    async fn call(self: Arc<Self>, _from: SocketAddr, request: ClientRequest, _timeout: Duration) -> ClientResponse {
        self.api.handle(request).await
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
