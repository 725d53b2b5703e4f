//! A node's disk across crashes: an in-memory store that outlives every incarnation of the
//! node, reached through a fence that a crash closes.
//!
//! Shoal acknowledges a write once RocksDB has appended it to the WAL (without fsync by
//! default), so `kill -9` loses nothing acknowledged: the OS still has the pages. A crash
//! therefore keeps the whole store and loses only process memory: SWIM state, Merkle trees
//! (rebuilt from the store on restart), anti-entropy's sync times, in-flight requests. What
//! the simulation does not model is power loss, which can drop unsynced WAL pages.
//!
//! After a crash the dead incarnation's tasks may still be scheduled (tokio tasks cannot be
//! stopped mid-poll); the fence makes every store call they make fail, as a dead process
//! writes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shoal_storage::{HintVisit, MemoryStore, Object, Store, StoreError};

pub struct FencedStore {
    disk: Arc<MemoryStore>,
    alive: AtomicBool,
    /// `SHOAL_SIM_TRACE_KEY`: print every write, delete and hint of that key on this node.
    trace: Option<Trace>,
}

/// What a traced store prints its lines with: the node, and the run's virtual clock.
pub struct Trace {
    pub key: Vec<u8>,
    pub node: String,
    pub now_ms: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl FencedStore {
    pub fn new(disk: Arc<MemoryStore>, trace: Option<Trace>) -> Self {
        Self {
            disk,
            alive: AtomicBool::new(true),
            trace,
        }
    }

    /// A line of the key's trace (stderr), when this store traces `key`.
    fn trace(&self, key: &[u8], what: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_ref().filter(|t| t.key == key) {
            eprintln!("trace {:>6} ms {:<3} {}", (t.now_ms)(), t.node, what());
        }
    }

    /// The process died: nothing it still runs reaches the disk.
    pub fn close(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    fn disk(&self) -> Result<&MemoryStore, StoreError> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(&self.disk)
        } else {
            Err(StoreError::Engine("the process crashed".into()))
        }
    }
}

impl Store for FencedStore {
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError> {
        self.disk()?.get(partition, key)
    }
    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError> {
        self.disk()?.put(partition, key, object)?;
        self.trace(key, || format!("put p{partition} n={} {:?}", object.n, object.siblings));
        Ok(())
    }
    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        self.disk()?.delete(partition, key)?;
        self.trace(key, || format!("delete p{partition}"));
        Ok(())
    }
    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        self.disk()?.scan_partition(partition, from, visit)
    }
    fn scan_segment(
        &self,
        partition: u32,
        segment: u16,
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        self.disk()?.scan_segment(partition, segment, visit)
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.disk()?.get_meta(key)
    }
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.disk()?.put_meta(key, value)
    }
    fn hint_put(&self, owner: &str, partition: u32, key: &[u8], record: &[u8]) -> Result<(), StoreError> {
        self.disk()?.hint_put(owner, partition, key, record)?;
        self.trace(key, || format!("hint for {owner} stored"));
        Ok(())
    }
    fn hint_get(&self, owner: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.disk()?.hint_get(owner, partition, key)
    }
    fn hint_delete(&self, owner: &str, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        self.disk()?.hint_delete(owner, partition, key)?;
        self.trace(key, || format!("hint for {owner} deleted"));
        Ok(())
    }
    fn hint_scan(
        &self,
        owner: Option<&str>,
        from: Option<(u32, &[u8])>,
        visit: &mut HintVisit<'_>,
    ) -> Result<(), StoreError> {
        self.disk()?.hint_scan(owner, from, visit)
    }
}
