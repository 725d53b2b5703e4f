//! Shoal's request coordinator: the N/W/R get, put and delete paths of Dynamo (§4.5), with
//! read repair and sloppy quorum (§4.6): a replica SWIM knows is down, or that fails a request,
//! is replaced by the next healthy node in the ring's fallback order, which keeps a hint.
//!
//! The crate has two halves:
//! - a pure core ([`quorum`], [`params`]) that validates a request's N/W/R and decides, from
//!   the replies seen so far, whether a quorum is reached or has become impossible. It never
//!   touches a clock, socket or disk, so the simulator can drive it;
//! - a driver ([`Coordinator`]) that runs the core with tokio: it sends to all N replicas,
//!   answers at W acks or R replies, and keeps collecting afterwards for read repair.
//!
//! Invariants: only a replica of the key mints a dot for it (DVV requires the minting node to
//! hold every dot it minted before), so a coordinator outside the preference list forwards the
//! write to one that is inside it. A request never outlives its deadline.

mod delay;
mod driver;
pub mod params;
pub mod quorum;

pub use driver::{
    CoordError, Coordinator, CoordinatorConfig, FailedReplica, GetRequest, GetResponse, HandoffRefused, Health,
    PutRequest, PutResponse, StaleLayout, StorageExecution, Transport, TransportFuture,
};
pub use params::{ParamError, RequestDefaults};
pub use quorum::{Progress, QuorumTracker};
