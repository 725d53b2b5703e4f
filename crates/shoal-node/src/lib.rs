//! A Shoal node: configuration, logging, the HTTP and QUIC client APIs, the peer protocol, and
//! the wiring of ring, storage, network and coordinator into one serving process.
//!
//! Both client APIs go through [`api::Api`], so HTTP and QUIC validate, limit and answer
//! identically, and both check the same bearer tokens and per-client limits. Peer traffic
//! arrives only on the mutual-TLS QUIC port.

// `ApiError` is the wire error body (about 150 bytes with its optional details). It travels only
// on the cold path of a refused request, where boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod api;
pub mod auth;
pub mod config;
pub mod http_api;
pub mod http_listener;
pub mod logging;
pub mod membership;
pub mod peer;
mod quic_api;
pub mod repair;
pub mod server;
mod telemetry;

pub use config::{ConfigError, NodeConfig};
pub use server::run;
