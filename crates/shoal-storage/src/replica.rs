//! One node's replica of its partitions: read-modify-write of objects under per-key locks.
//!
//! Two writers racing on the same key at one replica must not lose each other's sibling, so
//! every read-merge-write runs under a lock striped by key hash.

use std::sync::Arc;

use parking_lot::Mutex;
use shoal_version::{SiblingLimits, VersionError, VersionVector, WriteOutcome};

use crate::object::{Object, Value};
use crate::store::{Store, StoreError};

const LOCK_STRIPES: usize = 1024;

#[derive(Clone, Copy, Debug)]
pub struct ReplicaLimits {
    pub siblings: SiblingLimits,
    /// Largest encoded object a coordinated write may produce (all siblings together).
    pub max_object_bytes: usize,
}

impl Default for ReplicaLimits {
    fn default() -> Self {
        Self {
            siblings: SiblingLimits::default(),
            max_object_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("object too large: the write would make the stored object {size} bytes, over the limit max_object_bytes = {limit}")]
    ObjectTooLarge {
        size: usize,
        limit: usize,
        context: VersionVector,
    },
}

/// One chunk of a partition transfer: the objects, and the key to resume from if there are more.
pub type Export = (Vec<(Vec<u8>, Object)>, Option<Vec<u8>>);

pub struct Replica<S: Store> {
    store: Arc<S>,
    locks: Vec<Mutex<()>>,
    limits: ReplicaLimits,
}

impl<S: Store> Replica<S> {
    pub fn new(store: Arc<S>, limits: ReplicaLimits) -> Self {
        Self {
            store,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            limits,
        }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn limits(&self) -> &ReplicaLimits {
        &self.limits
    }

    fn lock(&self, key: &[u8]) -> parking_lot::MutexGuard<'_, ()> {
        let stripe = xxhash_rust::xxh3::xxh3_64(key) as usize % LOCK_STRIPES;
        self.locks[stripe].lock()
    }

    pub fn read(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError> {
        self.store.get(partition, key)
    }

    /// The coordinating replica's half of a write (DVV: only a replica mints dots, from its own
    /// state): supersede what `context` covers, add `value` under a new dot of `actor`, persist.
    pub fn coordinate(
        &self,
        partition: u32,
        key: &[u8],
        actor: &str,
        context: &VersionVector,
        value: Value,
        n: u8,
    ) -> Result<(Object, WriteOutcome), ReplicaError> {
        let _guard = self.lock(key);
        let mut obj = self.store.get(partition, key)?.unwrap_or_default();
        let before = obj.siblings.context();
        let outcome = obj.siblings.write(actor, context, value, &self.limits.siblings)?;
        obj.n = obj.n.max(n);
        let size = obj.encode().len();
        if size > self.limits.max_object_bytes {
            return Err(ReplicaError::ObjectTooLarge {
                size,
                limit: self.limits.max_object_bytes,
                context: before,
            });
        }
        self.store.put(partition, key, &obj)?;
        Ok((obj, outcome))
    }

    /// Merge another replica's copy into ours (replication, read repair, handoff). Writes only
    /// when the merge changed something. Returns the merged object.
    pub fn apply(&self, partition: u32, key: &[u8], incoming: &Object) -> Result<Object, ReplicaError> {
        let _guard = self.lock(key);
        match self.store.get(partition, key)? {
            Some(mut local) => {
                if local.siblings.covers(&incoming.siblings) && local.n >= incoming.n {
                    return Ok(local);
                }
                local.merge(incoming);
                self.store.put(partition, key, &local)?;
                Ok(local)
            }
            None => {
                self.store.put(partition, key, incoming)?;
                Ok(incoming.clone())
            }
        }
    }

    /// One chunk of a partition transfer: the objects of `partition` whose replication factor
    /// is in `n_min..=n_max`, from key `from` on, at most `max_bytes` of keys and values (or one
    /// object, if that alone is larger).
    /// Returns them and, when the partition has more, the key to resume from.
    pub fn export(
        &self,
        partition: u32,
        from: &[u8],
        n_min: u8,
        n_max: u8,
        max_bytes: usize,
    ) -> Result<Export, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut resume = None;
        self.store.scan_partition(partition, from, &mut |key, obj| {
            if !(n_min..=n_max).contains(&obj.n) {
                return true;
            }
            let size = key.len() + obj.payload_len();
            // Stop before the object that would overflow the chunk, unless it is the first:
            // a chunk then never exceeds max(max_bytes, one object).
            if !out.is_empty() && bytes + size > max_bytes {
                resume = Some(key.to_vec());
                return false;
            }
            bytes += size;
            out.push((key.to_vec(), obj));
            true
        })?;
        Ok((out, resume))
    }

    /// Deletes the objects of `partition` whose replication factor is in `n_min..=n_max`: what
    /// this node no longer holds once a layout change has committed. Returns how many went.
    pub fn drop_range(&self, partition: u32, n_min: u8, n_max: u8) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        self.store.scan_partition(partition, b"", &mut |key, obj| {
            if (n_min..=n_max).contains(&obj.n) {
                keys.push(key.to_vec());
            }
            true
        })?;
        let mut dropped = 0;
        for key in keys {
            let _guard = self.lock(&key);
            // Re-read under the lock: a write that raised the object's n since the scan means
            // this node still holds it.
            if let Some(obj) = self.store.get(partition, &key)? {
                if (n_min..=n_max).contains(&obj.n) {
                    self.store.delete(partition, &key)?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }
}
