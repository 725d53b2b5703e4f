//! Shoal's QUIC transport: mutual TLS from a cluster CA, length-prefixed msgpack frames with
//! request ids, deadlines and size limits, a request/response service loop, and a pool holding
//! one connection per peer that re-dials after the peer restarts.
//!
//! Every request travels on its own bidirectional QUIC stream, so a slow reply never blocks the
//! others on the same connection (no head-of-line blocking between requests).
//!
//! Invariants: a malformed, oversized or undecodable frame is logged and its stream dropped;
//! nothing a peer or client sends can panic the process. The peer port accepts only
//! connections presenting a certificate signed by the cluster CA.

pub mod client_api;
mod endpoint;
mod frame;
mod pool;
pub mod tls;

pub use endpoint::{bind_endpoint, serve, Admission, Service, TransportTuning, UDP_BUFFER_BYTES};
pub use frame::{
    decode_body, decode_frame, encode_frame, read_frame, write_frame, Envelope, FrameError, FRAME_FORMAT_VERSION,
};
pub use pool::{NetError, Pool};
pub use tls::{TlsError, TlsFiles, ALPN_CLIENT, ALPN_PEER, SERVER_NAME};
