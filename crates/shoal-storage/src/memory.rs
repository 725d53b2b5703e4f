//! An in-memory [`Store`] for tests and the simulator. It round-trips objects through the
//! on-disk encoding, so it exercises the same format checks as RocksDB.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::object::Object;
use crate::store::{hint_key, hint_prefix, hint_start, segment_of, visit_hint, HintVisit, Store, StoreError};

/// Encoded objects by (partition, segment, key), ordered like RocksDB's keyspace.
type Records = BTreeMap<(u32, u16, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct MemoryStore {
    data: RwLock<Records>,
    meta: RwLock<BTreeMap<String, Vec<u8>>>,
    hints: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn at(partition: u32, key: &[u8]) -> (u32, u16, Vec<u8>) {
    (partition, segment_of(key), key.to_vec())
}

impl MemoryStore {
    fn scan_range(
        &self,
        from: (u32, u16, Vec<u8>),
        to: (u32, u16, Vec<u8>),
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let data = self.data.read();
        for ((_, _, key), bytes) in data.range(from..to) {
            if !visit(key, Object::decode(bytes)?) {
                break;
            }
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError> {
        self.data
            .read()
            .get(&at(partition, key))
            .map(|b| Object::decode(b))
            .transpose()
    }

    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError> {
        self.data.write().insert(at(partition, key), object.encode());
        Ok(())
    }

    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        self.data.write().remove(&at(partition, key));
        Ok(())
    }

    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let start = if from.is_empty() {
            (partition, 0, Vec::new())
        } else {
            at(partition, from)
        };
        self.scan_range(start, (partition + 1, 0, Vec::new()), visit)
    }

    fn scan_segment(
        &self,
        partition: u32,
        segment: u16,
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let end = match segment.checked_add(1) {
            Some(next) => (partition, next, Vec::new()),
            None => (partition + 1, 0, Vec::new()),
        };
        self.scan_range((partition, segment, Vec::new()), end, visit)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.read().get(key).cloned())
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.write().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn hint_put(&self, owner: &str, partition: u32, key: &[u8], record: &[u8]) -> Result<(), StoreError> {
        self.hints
            .write()
            .insert(hint_key(owner, partition, key), record.to_vec());
        Ok(())
    }

    fn hint_get(&self, owner: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.hints.read().get(&hint_key(owner, partition, key)).cloned())
    }

    fn hint_delete(&self, owner: &str, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        self.hints.write().remove(&hint_key(owner, partition, key));
        Ok(())
    }

    fn hint_scan(
        &self,
        owner: Option<&str>,
        from: Option<(u32, &[u8])>,
        visit: &mut HintVisit<'_>,
    ) -> Result<(), StoreError> {
        let prefix = owner.map(hint_prefix).unwrap_or_default();
        let hints = self.hints.read();
        for (k, v) in hints.range(hint_start(owner, from)..) {
            if !k.starts_with(&prefix) {
                break;
            }
            if !visit_hint(k, v, visit)? {
                break;
            }
        }
        Ok(())
    }
}
