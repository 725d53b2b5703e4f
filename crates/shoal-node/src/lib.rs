//! A Shoal node: configuration, logging, the HTTP and QUIC client APIs, the peer protocol, and
//! the wiring of ring, storage, network and coordinator into one serving process.
//!
//! Both client APIs go through [`api::Api`], so HTTP and QUIC validate, limit and answer
//! identically. Peer traffic arrives only on the mutual-TLS QUIC port.

pub mod api;
pub mod config;
pub mod http_api;
pub mod logging;
pub mod peer;
mod quic_api;
pub mod server;
mod telemetry;

pub use config::{ConfigError, NodeConfig};
pub use server::run;
