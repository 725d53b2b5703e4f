//! An in-memory [`Store`] for tests and the simulator. It round-trips objects through the
//! on-disk encoding, so it exercises the same format checks as RocksDB.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::object::Object;
use crate::store::{Store, StoreError};

/// Encoded objects by (partition, key), ordered like RocksDB's keyspace.
type Records = BTreeMap<(u32, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct MemoryStore {
    data: RwLock<Records>,
    meta: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError> {
        self.data
            .read()
            .get(&(partition, key.to_vec()))
            .map(|b| Object::decode(b))
            .transpose()
    }

    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError> {
        self.data.write().insert((partition, key.to_vec()), object.encode());
        Ok(())
    }

    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        self.data.write().remove(&(partition, key.to_vec()));
        Ok(())
    }

    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let data = self.data.read();
        for ((_, key), bytes) in data.range((partition, from.to_vec())..(partition + 1, Vec::new())) {
            if !visit(key, Object::decode(bytes)?) {
                break;
            }
        }
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.read().get(key).cloned())
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.write().insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}
