//! The RocksDB [`Store`]. Objects live in their own column family, keyed by the partition id
//! (4 bytes, big-endian) followed by the user key, so one partition is one contiguous range.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB};

use crate::object::Object;
use crate::store::{Store, StoreError};

const CF_OBJECTS: &str = "objects";
/// Node metadata: the SWIM incarnation, the layout record, known peers, transfer progress.
const CF_META: &str = "meta";

#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// fsync the WAL on every write, for durability across power loss (not only process crashes).
    pub sync_writes: bool,
    /// Block cache size in bytes.
    pub block_cache_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            sync_writes: false,
            block_cache_bytes: 64 << 20,
        }
    }
}

pub struct RocksStore {
    db: DB,
    sync_writes: bool,
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

fn storage_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl RocksStore {
    pub fn open(path: &Path, options: &RocksOptions) -> Result<Self, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        let mut cf_opts = Options::default();
        let mut block = rocksdb::BlockBasedOptions::default();
        block.set_block_cache(&rocksdb::Cache::new_lru_cache(options.block_cache_bytes));
        block.set_bloom_filter(10.0, false);
        cf_opts.set_block_based_table_factory(&block);
        cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_OBJECTS, cf_opts),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(engine)?;
        Ok(Self {
            db,
            sync_writes: options.sync_writes,
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("column family '{name}' missing")))
    }

    fn objects(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.cf(CF_OBJECTS)
    }

    fn write_options(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        // The WAL stays on: an acknowledged write must survive kill -9.
        w.disable_wal(false);
        w.set_sync(self.sync_writes);
        w
    }
}

impl Store for RocksStore {
    fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Object>, StoreError> {
        let cf = self.objects()?;
        match self.db.get_pinned_cf(cf, storage_key(partition, key)).map_err(engine)? {
            Some(bytes) => Object::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError> {
        let cf = self.objects()?;
        self.db
            .put_cf_opt(cf, storage_key(partition, key), object.encode(), &self.write_options())
            .map_err(engine)
    }

    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        let cf = self.objects()?;
        self.db
            .delete_cf_opt(cf, storage_key(partition, key), &self.write_options())
            .map_err(engine)
    }

    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let cf = self.objects()?;
        let prefix = partition.to_be_bytes();
        let start = storage_key(partition, from);
        let iter = self.db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(&prefix) {
                break;
            }
            if !visit(&k[4..], Object::decode(&v)?) {
                break;
            }
        }
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(CF_META)?, key.as_bytes()).map_err(engine)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        // Always synced: metadata writes are rare, and an incarnation or layout epoch that went
        // backwards after a power loss would be worse than the fsync.
        let mut w = self.write_options();
        w.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_META)?, key.as_bytes(), value, &w)
            .map_err(engine)
    }
}
