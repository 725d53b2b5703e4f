//! The stored object: a DVV sibling set plus the metadata Shoal keeps beside it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_version::SiblingSet;

use crate::store::StoreError;

/// Bumped whenever the encoding of [`Object`] changes; decoders refuse versions they don't know.
pub const OBJECT_FORMAT_VERSION: u8 = 1;

/// One sibling's payload: the bytes a client wrote, or the tombstone a delete left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Data(Bytes),
    Tombstone,
}

impl Value {
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Value::Tombstone)
    }

    /// The payload size in bytes (0 for a tombstone).
    pub fn len(&self) -> usize {
        match self {
            Value::Data(b) => b.len(),
            Value::Tombstone => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a replica stores under a key: the sibling set and the replication factor it was
/// written with (anti-entropy and handoff need to know how many replicas the key should have).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Object {
    pub siblings: SiblingSet<Value>,
    pub n: u8,
    /// When this replica last changed the object into one that is all tombstones (Unix ms, by
    /// this node's clock); `None` while any value is live. Tombstone GC waits a grace period
    /// from it. Local bookkeeping: it is not part of the object's version, and a merge keeps the
    /// receiving replica's own stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<u64>,
}

impl Object {
    /// True when every sibling is a tombstone: the key reads as deleted.
    pub fn is_deleted(&self) -> bool {
        self.siblings.siblings().iter().all(|s| s.value.is_tombstone())
    }

    /// The live (non-tombstone) values, in canonical sibling order.
    pub fn values(&self) -> Vec<Bytes> {
        self.siblings
            .siblings()
            .iter()
            .filter_map(|s| match &s.value {
                Value::Data(b) => Some(b.clone()),
                Value::Tombstone => None,
            })
            .collect()
    }

    /// Join another replica's copy into this one (a lattice join: order and repetition don't matter).
    pub fn merge(&mut self, other: &Object) {
        self.siblings.merge(&other.siblings);
        self.n = self.n.max(other.n);
    }

    /// Encode for disk or the wire: a format version byte, then named msgpack so fields can evolve.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload_len());
        out.push(OBJECT_FORMAT_VERSION);
        // Serializing plain data into a Vec cannot fail: no maps with non-string keys, no I/O.
        if let Err(e) = rmp_serde::encode::write_named(&mut out, self) {
            unreachable!("encoding an Object into memory failed: {e}");
        }
        out
    }

    /// Decode bytes from disk, refusing unknown format versions and sibling sets that break the
    /// DVV invariants (they could only come from corruption or a bug).
    pub fn decode(bytes: &[u8]) -> Result<Object, StoreError> {
        let (version, payload) = bytes
            .split_first()
            .ok_or_else(|| StoreError::Corrupt("empty object record".into()))?;
        if *version != OBJECT_FORMAT_VERSION {
            return Err(StoreError::Corrupt(format!(
                "unknown object format version {version} (this build reads {OBJECT_FORMAT_VERSION})"
            )));
        }
        let obj: Object =
            rmp_serde::from_slice(payload).map_err(|e| StoreError::Corrupt(format!("undecodable object: {e}")))?;
        obj.siblings
            .validate()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(obj)
    }

    /// Sum of sibling payload sizes.
    pub fn payload_len(&self) -> usize {
        self.siblings.siblings().iter().map(|s| s.value.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_version::{SiblingLimits, VersionVector};

    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut obj = Object {
            n: 3,
            ..Default::default()
        };
        obj.siblings
            .write(
                "n1",
                &VersionVector::new(),
                Value::Data(Bytes::from_static(b"v")),
                &SiblingLimits::default(),
            )
            .unwrap();
        let bytes = obj.encode();
        assert_eq!(Object::decode(&bytes).unwrap(), obj);
        assert!(matches!(Object::decode(&[]), Err(StoreError::Corrupt(_))));
        assert!(matches!(Object::decode(&[9, 1, 2]), Err(StoreError::Corrupt(_))));
        let mut truncated = bytes.clone();
        truncated.truncate(bytes.len() / 2);
        assert!(matches!(Object::decode(&truncated), Err(StoreError::Corrupt(_))));
    }
}
