//! The storage trait. It names no engine, so pure cores and tests can use the in-memory store.

use crate::object::Object;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The data directory's filesystem is nearly full (see [`crate::SpaceGuard`]).
    #[error("disk full: {free} bytes free in the data directory, under the limit storage.min_free_bytes = {limit}; writes are refused until space is freed")]
    DiskFull { free: u64, limit: u64 },
}

/// How many Merkle segments a partition's keys fall into. Objects are stored in segment order
/// within a partition, so anti-entropy reads one segment's keys with a range scan and the cost
/// of an exchange follows the number of differing segments, not the number of keys.
pub const SEGMENTS: u16 = 1024;

/// The anti-entropy segment of `key`: the low bits of its xxh3 hash. The ring picks the
/// partition from the top bits of the same hash, so the low bits spread one partition's keys
/// over every segment (with the top bits, all of a partition's keys would share one segment
/// and an exchange would compare the whole partition). Part of the on-disk key order and of
/// the peer protocol, so it must never change.
pub fn segment_of(key: &[u8]) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(key) & u64::from(SEGMENTS - 1)) as u16
}

/// A visitor over stored hints: (intended owner, partition, key, encoded record) → continue?
pub type HintVisit<'a> = dyn FnMut(&str, u32, &[u8], &[u8]) -> bool + 'a;

/// A key-value store of [`Object`]s, grouped by partition so a partition can be scanned,
/// transferred or compared without touching the others. All methods block.
///
/// Within a partition, keys are ordered by ([`segment_of`] key, key).
pub trait Store: Send + Sync + 'static {
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError>;
    /// Durable on return: in the write-ahead log (and fsynced if the store was opened with sync).
    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError>;
    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError>;
    /// Visit the keys of a partition from `from` (inclusive; empty for the start) in the store's
    /// order until `visit` returns false. Partition transfers resume from the key after the
    /// last one they copied.
    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError>;
    /// Visit the keys of one Merkle segment of a partition, in key order.
    fn scan_segment(
        &self,
        partition: u32,
        segment: u16,
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError>;
    /// Node metadata (incarnation, layout record, transfer progress), apart from the objects.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Durable on return, like [`Store::put`].
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Hinted handoff: a copy of `key` held for `owner` while it is down, apart from this
    /// node's own objects. Durable on return, like [`Store::put`].
    fn hint_put(&self, owner: &str, partition: u32, key: &[u8], record: &[u8]) -> Result<(), StoreError>;
    fn hint_get(&self, owner: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn hint_delete(&self, owner: &str, partition: u32, key: &[u8]) -> Result<(), StoreError>;
    /// Visit the hints held for `owner` (for every owner if `None`), grouped by owner and
    /// ordered by (partition, key) within one, until `visit` returns false. With an owner,
    /// `from` starts the scan at that (partition, key), inclusive: delivery resumes after the
    /// last batch rather than wading through the deletions the batches before it left.
    fn hint_scan(
        &self,
        owner: Option<&str>,
        from: Option<(u32, &[u8])>,
        visit: &mut HintVisit<'_>,
    ) -> Result<(), StoreError>;
}

/// The key of a hint: owner length (2 bytes), owner, partition (4 bytes), key. Shared by both
/// stores so they order hints the same way.
pub(crate) fn hint_key(owner: &str, partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + owner.len() + 4 + key.len());
    k.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    k.extend_from_slice(owner.as_bytes());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The prefix that selects one owner's hints.
pub(crate) fn hint_prefix(owner: &str) -> Vec<u8> {
    hint_key(owner, 0, b"")[..2 + owner.len()].to_vec()
}

/// Where a hint scan starts: `from` within `owner`'s hints, else the start of the prefix.
pub(crate) fn hint_start(owner: Option<&str>, from: Option<(u32, &[u8])>) -> Vec<u8> {
    match (owner, from) {
        (Some(o), Some((p, k))) => hint_key(o, p, k),
        (Some(o), None) => hint_prefix(o),
        (None, _) => Vec::new(),
    }
}

/// Hands one stored hint record to a [`HintVisit`], splitting its key; shared by both stores.
pub(crate) fn visit_hint(k: &[u8], v: &[u8], visit: &mut HintVisit<'_>) -> Result<bool, StoreError> {
    let (owner, partition, key) =
        split_hint_key(k).ok_or_else(|| StoreError::Corrupt(format!("malformed hint key {k:?}")))?;
    Ok(visit(owner, partition, key, v))
}

/// Splits a hint key into (owner, partition, key); `None` for a malformed one.
pub(crate) fn split_hint_key(k: &[u8]) -> Option<(&str, u32, &[u8])> {
    let len = u16::from_be_bytes(k.get(..2)?.try_into().ok()?) as usize;
    let owner = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    let rest = k.get(2 + len..)?;
    let partition = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    Some((owner, partition, &rest[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_s_keys_spread_over_the_segments() {
        // Keys whose hash has the same top 10 bits (one partition of 1024) must not share a
        // segment: count the segments of the first 2,000 such keys.
        let top = |k: &[u8]| xxhash_rust::xxh3::xxh3_64(k) >> 54;
        let keys: Vec<Vec<u8>> = (0u64..)
            .map(|i| format!("key{i}").into_bytes())
            .filter(|k| top(k) == 7)
            .take(2_000)
            .collect();
        let segments: std::collections::HashSet<u16> = keys.iter().map(|k| segment_of(k)).collect();
        assert!(
            segments.len() > 800,
            "2,000 keys of one partition fell into {} segments",
            segments.len()
        );
    }
}
