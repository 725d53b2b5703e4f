//! Who takes part in the ring.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable node identity chosen by the operator, e.g. "n1".
///
/// It is the only thing token placement depends on, so renaming a node moves
/// its data as if it were a new node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn new(s: impl Into<String>) -> Self {
        NodeId(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_owned())
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId(s)
    }
}

/// A node as the ring sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// Failure domain (rack, availability zone, ...). Replicas of a partition
    /// are spread over as many distinct zones as exist.
    pub zone: String,
    /// Relative share of the ring: a node of weight 2 gets twice the tokens,
    /// hence about twice the partitions, of a node of weight 1.
    pub weight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_displays_as_its_string() {
        let id = NodeId::new("n1");
        assert_eq!(id.to_string(), "n1");
        assert_eq!(id.as_str(), "n1");
        assert_eq!(NodeId::from("n1"), id);
    }

    #[test]
    fn node_ids_order_as_strings() {
        assert!(NodeId::from("n1") < NodeId::from("n10"));
        assert!(NodeId::from("n10") < NodeId::from("n2"));
    }
}
