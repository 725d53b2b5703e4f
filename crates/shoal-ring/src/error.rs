//! Why a layout could not be built.

use crate::node::NodeId;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RingError {
    #[error("partition count {partitions} is not a power of two")]
    PartitionsNotPowerOfTwo { partitions: u32 },

    #[error("partition count {partitions} exceeds the maximum of {max}")]
    TooManyPartitions { partitions: u32, max: u32 },

    #[error("tokens_per_weight is 0; it must be at least 1")]
    ZeroTokensPerWeight,

    #[error("a layout needs at least one member")]
    NoMembers,

    #[error("node id is empty")]
    EmptyNodeId,

    #[error("node {id} is listed more than once")]
    DuplicateMember { id: NodeId },

    #[error("node {id} has weight 0; weight must be at least 1")]
    ZeroWeight { id: NodeId },

    #[error(
        "node {id} would get {tokens} tokens (weight {weight} × tokens_per_weight \
         {tokens_per_weight}), more than the maximum of {max}"
    )]
    TooManyTokens {
        id: NodeId,
        weight: u32,
        tokens_per_weight: u32,
        tokens: u64,
        max: u32,
    },
}
