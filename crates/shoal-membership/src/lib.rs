//! SWIM membership (Das et al., 2002) with the Lifeguard refinements (Dadgar et al., 2018), as a
//! sans-IO state machine: messages and the time come in, messages to send and liveness changes
//! come out. No clock, socket or thread lives in here, so the node drives it over QUIC and the
//! simulator drives it over a virtual network with a virtual clock.

pub mod swim;

pub use swim::*;
