//! The client QUIC protocol and the error body shared with the HTTP API.
//!
//! These types carry only plain data (bytes, strings, numbers) so a client needs nothing of
//! Shoal's internals to speak the protocol.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    Get {
        key: Bytes,
        n: Option<u8>,
        r: Option<u8>,
        timeout_ms: Option<u32>,
        /// Let fallback nodes' hints answer for down replicas (sloppy quorum); `None`: the
        /// node's default.
        #[serde(default)]
        sloppy: Option<bool>,
        /// Bearer token of the caller, when the node requires one (`auth.enabled`). Carried in
        /// every request rather than once per connection: a request is then self-contained, so
        /// a pooled connection that is re-dialled needs no handshake replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<BearerToken>,
    },
    Put {
        key: Bytes,
        value: Bytes,
        context: Option<String>,
        n: Option<u8>,
        w: Option<u8>,
        timeout_ms: Option<u32>,
        /// Count hinted copies on fallback nodes toward W (sloppy quorum); `Some(false)` counts
        /// only the preference list. `None`: the node's default.
        #[serde(default)]
        sloppy: Option<bool>,
        /// Bearer token of the caller, when the node requires one (`auth.enabled`). Carried in
        /// every request rather than once per connection: a request is then self-contained, so
        /// a pooled connection that is re-dialled needs no handshake replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<BearerToken>,
    },
    Delete {
        key: Bytes,
        context: Option<String>,
        n: Option<u8>,
        w: Option<u8>,
        timeout_ms: Option<u32>,
        /// Count hinted copies on fallback nodes toward W (sloppy quorum); `Some(false)` counts
        /// only the preference list. `None`: the node's default.
        #[serde(default)]
        sloppy: Option<bool>,
        /// Bearer token of the caller, when the node requires one (`auth.enabled`). Carried in
        /// every request rather than once per connection: a request is then self-contained, so
        /// a pooled connection that is re-dialled needs no handshake replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<BearerToken>,
    },
}

/// A client's bearer token. Its `Debug` never prints the secret, so a logged request cannot
/// leak it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct BearerToken(pub String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl ClientRequest {
    /// The bearer token the request carries, if any.
    pub fn token(&self) -> Option<&BearerToken> {
        match self {
            ClientRequest::Get { token, .. }
            | ClientRequest::Put { token, .. }
            | ClientRequest::Delete { token, .. } => token.as_ref(),
        }
    }

    /// Attach (or replace) the bearer token.
    pub fn set_token(&mut self, new: Option<BearerToken>) {
        match self {
            ClientRequest::Get { token, .. }
            | ClientRequest::Put { token, .. }
            | ClientRequest::Delete { token, .. } => *token = new,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ClientResponse {
    /// One value or several siblings, and the context covering all of them.
    Found {
        context: String,
        values: Vec<Bytes>,
    },
    /// Absent or deleted. A deleted key still has a context, to write over the tombstone with.
    NotFound {
        context: Option<String>,
    },
    /// A put or delete reached its write quorum.
    Written {
        context: String,
        acks: u8,
        /// How many of the acks were hinted copies standing in for down replicas.
        #[serde(default)]
        hinted: u8,
        siblings: u32,
        sibling_warning: bool,
    },
    Error(ApiError),
}

/// A replica that did not acknowledge, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedReplica {
    pub node: String,
    pub reason: String,
}

/// An error as both APIs report it: HTTP sends it as the JSON body with `status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code this error maps to.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub status: u16,
    /// Stable machine-readable code, e.g. `quorum_not_reached`, `value_too_large`.
    pub error: String,
    pub message: String,
    /// The request parameter or configured limit at fault.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub required: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acked: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub failed: Vec<FailedReplica>,
    /// The current causal context, where the client needs it to resolve the problem.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub context: Option<String>,
    /// The scope a refused request needed (`403 forbidden`): `read`, `write` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub required_scope: Option<String>,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            message: message.into(),
            param: None,
            limit: None,
            required: None,
            acked: None,
            failed: Vec::new(),
            context: None,
            required_scope: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_limit(mut self, name: impl Into<String>, limit: u64) -> Self {
        self.param = Some(name.into());
        self.limit = Some(limit);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)?;
        if let (Some(r), Some(a)) = (self.required, self.acked) {
            write!(f, " [required {r}, acked {a}]")?;
        }
        for fr in &self.failed {
            write!(f, " [{}: {}]", fr.node, fr.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}
