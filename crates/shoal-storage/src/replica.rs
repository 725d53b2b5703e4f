//! One node's replica of its partitions: read-modify-write of objects under per-key locks.
//!
//! Two writers racing on the same key at one replica must not lose each other's sibling, so
//! every read-merge-write runs under a lock striped by key hash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use shoal_version::{SiblingLimits, VersionError, VersionVector, WriteOutcome};

use crate::exec::{system_clock, Clock};
use crate::object::{Object, Value};
use crate::store::{Store, StoreError};

const LOCK_STRIPES: usize = 1024;

/// The meta key holding the highest dot counter this node may have minted (see
/// [`Replica::coordinate`]).
const META_DOT_CLOCK: &str = "replica/dot_clock";
/// How far ahead of the counters in use the persisted dot clock runs, so it is written once
/// per this many writes, not on every one.
const DOT_CLOCK_RESERVE: u64 = 1 << 20;

/// Told of every change to a replica's objects, under the key's lock, so it sees changes to
/// one key in the order they happened. Anti-entropy keeps its Merkle trees with it.
pub trait ReplicaObserver: Send + Sync {
    /// `key` in `partition` went from `old` to `new` (`None`: absent).
    fn changed(&self, partition: u32, key: &[u8], old: Option<&Object>, new: Option<&Object>);
}

/// Sets `obj.deleted_at` after a change: `now` if the change left it all tombstones, else none.
fn stamp(obj: &mut Object, now: u64) {
    obj.deleted_at = obj.is_deleted().then_some(now);
}

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
    /// A copy from another node whose sibling set breaks the DVV invariants.
    #[error("refused replica object: {0}")]
    Refused(VersionError),
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
    observer: OnceLock<Arc<dyn ReplicaObserver>>,
    /// Every dot this node mints is above this counter, whatever the key: a node-wide floor
    /// that only grows, so a key this replica forgot cannot get a dot it minted before.
    dot_clock: AtomicU64,
    /// The dot clock value persisted in the meta column family; counters never pass it
    /// without persisting a higher one first, so a restart starts above anything minted.
    /// Read without a lock on every write; `reserving` serialises the rare raise.
    dot_clock_reserved: AtomicU64,
    reserving: Mutex<()>,
    /// This node's wall clock, for tombstone stamps (virtual and skewed in the simulator).
    clock: Arc<dyn Clock>,
}

impl<S: Store> Replica<S> {
    /// Opens the replica over `store`, restoring its dot clock.
    pub fn new(store: Arc<S>, limits: ReplicaLimits) -> Result<Self, StoreError> {
        let reserved = match store.get_meta(META_DOT_CLOCK)? {
            Some(b) => u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(format!("dot clock record of {} bytes", b.len())))?,
            ),
            None => 0,
        };
        Ok(Self {
            store,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            limits,
            observer: OnceLock::new(),
            dot_clock: AtomicU64::new(reserved),
            dot_clock_reserved: AtomicU64::new(reserved),
            reserving: Mutex::new(()),
            clock: system_clock(),
        })
    }

    /// Read wall-clock time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// This node's wall-clock time, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    /// Attach the observer of every change (once; later calls are ignored and return false).
    pub fn set_observer(&self, observer: Arc<dyn ReplicaObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    fn notify(&self, partition: u32, key: &[u8], old: Option<&Object>, new: Option<&Object>) {
        if let Some(o) = self.observer.get() {
            o.changed(partition, key, old, new);
        }
    }

    /// Record that `counter` was minted, persisting a new reservation first when it reaches
    /// the persisted one.
    fn advance_dot_clock(&self, counter: u64) -> Result<(), StoreError> {
        self.dot_clock.fetch_max(counter, Ordering::SeqCst);
        if counter < self.dot_clock_reserved.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _raise = self.reserving.lock();
        if counter >= self.dot_clock_reserved.load(Ordering::SeqCst) {
            let next = counter.saturating_add(DOT_CLOCK_RESERVE);
            self.store.put_meta(META_DOT_CLOCK, &next.to_be_bytes())?;
            self.dot_clock_reserved.store(next, Ordering::SeqCst);
        }
        Ok(())
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
        self.mint(partition, key, actor, context, value, n, true)
    }

    /// Mint the new version as [`Replica::coordinate`] does, but leave this replica as it is:
    /// the caller delivers the object to it later like to any other replica ([`Replica::apply`]).
    /// Used when `shoal bench` injects WARS latencies, so that the coordinator's own replica
    /// gets the write over an injected W leg too. The dot is consumed all the same.
    pub fn prepare(
        &self,
        partition: u32,
        key: &[u8],
        actor: &str,
        context: &VersionVector,
        value: Value,
        n: u8,
    ) -> Result<(Object, WriteOutcome), ReplicaError> {
        self.mint(partition, key, actor, context, value, n, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn mint(
        &self,
        partition: u32,
        key: &[u8],
        actor: &str,
        context: &VersionVector,
        value: Value,
        n: u8,
        store: bool,
    ) -> Result<(Object, WriteOutcome), ReplicaError> {
        let _guard = self.lock(key);
        let old = self.store.get(partition, key)?;
        let mut obj = old.clone().unwrap_or_default();
        let before = obj.siblings.context();
        let floor = self.dot_clock.load(Ordering::SeqCst);
        let outcome = obj
            .siblings
            .write_above(actor, context, value, &self.limits.siblings, floor)?;
        obj.n = obj.n.max(n);
        stamp(&mut obj, self.now_ms());
        let size = obj.encode().len();
        if size > self.limits.max_object_bytes {
            return Err(ReplicaError::ObjectTooLarge {
                size,
                limit: self.limits.max_object_bytes,
                context: before,
            });
        }
        self.advance_dot_clock(outcome.dot.counter)?;
        if store {
            self.store.put(partition, key, &obj)?;
            self.notify(partition, key, old.as_ref(), Some(&obj));
        }
        Ok((obj, outcome))
    }

    /// Merge another replica's copy into ours (replication, read repair, handoff). Writes only
    /// when the merge changed something. Returns the merged object.
    pub fn apply(&self, partition: u32, key: &[u8], incoming: &Object) -> Result<Object, ReplicaError> {
        self.merge(partition, key, incoming).map(|(merged, _)| merged)
    }

    /// [`Replica::apply`] for a copy that came from another node (replication, hint delivery,
    /// anti-entropy, transfers): validated first, since only this node's own writes are known
    /// to be well formed. Returns whether the merge changed this replica.
    pub fn apply_from_peer(&self, partition: u32, key: &[u8], incoming: &Object) -> Result<bool, ReplicaError> {
        incoming.siblings.validate().map_err(ReplicaError::Refused)?;
        self.merge(partition, key, incoming).map(|(_, changed)| changed)
    }

    /// The merge behind both: the merged object, and whether it differs from what was stored.
    fn merge(&self, partition: u32, key: &[u8], incoming: &Object) -> Result<(Object, bool), ReplicaError> {
        let _guard = self.lock(key);
        let old = self.store.get(partition, key)?;
        let mut merged = match &old {
            Some(local) => {
                if local.siblings.covers(&incoming.siblings) && local.n >= incoming.n {
                    return Ok((local.clone(), false));
                }
                let mut m = local.clone();
                m.merge(incoming);
                m
            }
            None => incoming.clone(),
        };
        stamp(&mut merged, self.now_ms());
        self.store.put(partition, key, &merged)?;
        self.notify(partition, key, old.as_ref(), Some(&merged));
        Ok((merged, true))
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

    /// The objects of `partition` this node no longer holds (`still_held(n)` is false for
    /// their replication factor `n`), to hand to their owners before dropping them.
    pub fn strays(
        &self,
        partition: u32,
        still_held: impl Fn(u8) -> bool,
    ) -> Result<Vec<(Vec<u8>, Object)>, StoreError> {
        let mut out = Vec::new();
        self.store.scan_partition(partition, b"", &mut |key, obj| {
            if !still_held(obj.n) {
                out.push((key.to_vec(), obj));
            }
            true
        })?;
        Ok(out)
    }

    /// Deletes the strays that were handed to their owners, each only if it is still exactly
    /// the object handed over (a merge since then would be lost) and `still_held` says this
    /// node still does not hold it. Returns how many went.
    pub fn drop_handed_off(
        &self,
        partition: u32,
        handed: &[(Vec<u8>, Object)],
        still_held: impl Fn(u8) -> bool,
    ) -> Result<usize, StoreError> {
        let mut dropped = 0;
        for (key, sent) in handed {
            let _guard = self.lock(key);
            if let Some(obj) = self.store.get(partition, key)? {
                if obj == *sent && !still_held(obj.n) {
                    self.store.delete(partition, key)?;
                    self.notify(partition, key, Some(&obj), None);
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// Tombstone GC: delete `key` if this replica holds it as all tombstones and `still` agrees
    /// (checked under the key's lock, so a write that revived the key in between wins).
    /// Returns whether it was deleted.
    pub fn reap_if(&self, partition: u32, key: &[u8], still: impl FnOnce(&Object) -> bool) -> Result<bool, StoreError> {
        let _guard = self.lock(key);
        match self.store.get(partition, key)? {
            Some(obj) if obj.is_deleted() && still(&obj) => {
                self.store.delete(partition, key)?;
                self.notify(partition, key, Some(&obj), None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
