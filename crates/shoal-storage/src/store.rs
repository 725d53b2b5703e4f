//! The storage trait. It names no engine, so pure cores and tests can use the in-memory store.

use crate::object::Object;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// A key-value store of [`Object`]s, grouped by partition so a partition can be scanned,
/// transferred or compared without touching the others. All methods block.
pub trait Store: Send + Sync + 'static {
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError>;
    /// Durable on return: in the write-ahead log (and fsynced if the store was opened with sync).
    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError>;
    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError>;
    /// Visit the keys of a partition from `from` (inclusive; empty for the start) in key order
    /// until `visit` returns false. Partition transfers resume from the key after the last one
    /// they copied.
    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError>;
    /// Node metadata (incarnation, layout record, transfer progress), apart from the objects.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Durable on return, like [`Store::put`].
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
}
