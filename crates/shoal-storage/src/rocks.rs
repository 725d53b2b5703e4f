//! The RocksDB [`Store`]. Objects live in their own column family, keyed by the partition id
//! (4 bytes, big-endian), the key's Merkle segment (2 bytes) and the user key, so one partition
//! is one contiguous range and so is each of its segments. Hints have a column family of their
//! own, keyed by intended owner.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB};

use crate::object::Object;
use crate::space::SpaceGuard;
use crate::store::{hint_key, hint_prefix, hint_start, segment_of, visit_hint, HintVisit, Store, StoreError};

/// The object key in partition order: partition (4 bytes), segment (2 bytes), key.
fn object_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&segment_of(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Where a scan of `partition` from `from` starts: the partition's first key when `from` is
/// empty, else `from`'s own position.
fn scan_start(partition: u32, from: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        partition.to_be_bytes().to_vec()
    } else {
        object_key(partition, from)
    }
}

fn segment_prefix(partition: u32, segment: u16) -> Vec<u8> {
    let mut k = partition.to_be_bytes().to_vec();
    k.extend_from_slice(&segment.to_be_bytes());
    k
}

const CF_OBJECTS: &str = "objects";
/// Node metadata: the SWIM incarnation, the layout record, known peers, transfer progress.
const CF_META: &str = "meta";
/// Hinted handoff: copies held for nodes that were down when they were written.
const CF_HINTS: &str = "hints";
/// The meta key recording the on-disk key format. Format 2 put the Merkle segment into object
/// keys; a database written by format 1 would scan in the wrong order, so it is refused.
const META_FORMAT: &str = "storage/key_format";
const KEY_FORMAT: u8 = 2;

/// A visitor over raw (key, value) records: continue?
type RawVisit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError> + 'a;

#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// fsync the WAL on every write, for durability across power loss (not only process crashes).
    pub sync_writes: bool,
    /// Block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Refuse object and hint writes while the filesystem has less than this many bytes
    /// available (see [`SpaceGuard`]); `None`: never.
    pub min_free_bytes: Option<u64>,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            sync_writes: false,
            block_cache_bytes: 64 << 20,
            min_free_bytes: None,
        }
    }
}

pub struct RocksStore {
    db: DB,
    sync_writes: bool,
    space: Option<Arc<SpaceGuard>>,
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
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
            ColumnFamilyDescriptor::new(CF_HINTS, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(engine)?;
        let store = Self {
            db,
            sync_writes: options.sync_writes,
            space: options
                .min_free_bytes
                .map(|min| Arc::new(SpaceGuard::for_dir(path, min))),
        };
        store.check_format()?;
        Ok(store)
    }

    /// Stamps a new database with the key format, and refuses one written in another format.
    fn check_format(&self) -> Result<(), StoreError> {
        match self.get_meta(META_FORMAT)? {
            Some(v) if v == [KEY_FORMAT] => Ok(()),
            Some(v) => Err(StoreError::Corrupt(format!(
                "the database uses key format {v:?}; this build reads format {KEY_FORMAT}"
            ))),
            None => {
                let mut any = self.db.iterator_cf(self.objects()?, IteratorMode::Start);
                if any.next().is_some() {
                    return Err(StoreError::Corrupt(format!(
                        "the database predates key format {KEY_FORMAT} (Merkle segments in object keys); \
                         wipe the data directory and let anti-entropy and transfers refill it"
                    )));
                }
                self.put_meta(META_FORMAT, &[KEY_FORMAT])
            }
        }
    }

    /// Writes every column family's memtable to disk and syncs the WAL (at shutdown, so the
    /// next start replays nothing).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(engine)?;
        for name in [CF_OBJECTS, CF_META, CF_HINTS] {
            self.db.flush_cf(self.cf(name)?).map_err(engine)?;
        }
        Ok(())
    }

    /// The disk-full guard, when `min_free_bytes` was set.
    pub fn space(&self) -> Option<&Arc<SpaceGuard>> {
        self.space.as_ref()
    }

    fn check_space(&self) -> Result<(), StoreError> {
        self.space.as_ref().map_or(Ok(()), |s| s.check())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("column family '{name}' missing")))
    }

    fn objects(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.cf(CF_OBJECTS)
    }

    fn hints(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.cf(CF_HINTS)
    }

    /// Visits `(key without its first `strip` bytes, value)` for every key of `cf` that starts
    /// with `prefix`, from `start` on, until `visit` returns false.
    fn scan_prefix(
        &self,
        cf: &rocksdb::ColumnFamily,
        prefix: &[u8],
        start: &[u8],
        visit: &mut RawVisit<'_>,
    ) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(cf, IteratorMode::From(start, Direction::Forward)) {
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(prefix) || !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
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
        match self.db.get_pinned_cf(cf, object_key(partition, key)).map_err(engine)? {
            Some(bytes) => Object::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put(&self, partition: u32, key: &[u8], object: &Object) -> Result<(), StoreError> {
        self.check_space()?;
        let cf = self.objects()?;
        self.db
            .put_cf_opt(cf, object_key(partition, key), object.encode(), &self.write_options())
            .map_err(engine)
    }

    fn delete(&self, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        let cf = self.objects()?;
        self.db
            .delete_cf_opt(cf, object_key(partition, key), &self.write_options())
            .map_err(engine)
    }

    fn scan_partition(
        &self,
        partition: u32,
        from: &[u8],
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let prefix = partition.to_be_bytes();
        self.scan_prefix(self.objects()?, &prefix, &scan_start(partition, from), &mut |k, v| {
            Ok(visit(&k[6..], Object::decode(v)?))
        })
    }

    fn scan_segment(
        &self,
        partition: u32,
        segment: u16,
        visit: &mut dyn FnMut(&[u8], Object) -> bool,
    ) -> Result<(), StoreError> {
        let prefix = segment_prefix(partition, segment);
        self.scan_prefix(self.objects()?, &prefix, &prefix, &mut |k, v| {
            Ok(visit(&k[6..], Object::decode(v)?))
        })
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

    fn hint_put(&self, owner: &str, partition: u32, key: &[u8], record: &[u8]) -> Result<(), StoreError> {
        self.check_space()?;
        self.db
            .put_cf_opt(
                self.hints()?,
                hint_key(owner, partition, key),
                record,
                &self.write_options(),
            )
            .map_err(engine)
    }

    fn hint_get(&self, owner: &str, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.hints()?, hint_key(owner, partition, key))
            .map_err(engine)
    }

    fn hint_delete(&self, owner: &str, partition: u32, key: &[u8]) -> Result<(), StoreError> {
        self.db
            .delete_cf_opt(self.hints()?, hint_key(owner, partition, key), &self.write_options())
            .map_err(engine)
    }

    fn hint_scan(
        &self,
        owner: Option<&str>,
        from: Option<(u32, &[u8])>,
        visit: &mut HintVisit<'_>,
    ) -> Result<(), StoreError> {
        let prefix = owner.map(hint_prefix).unwrap_or_default();
        self.scan_prefix(self.hints()?, &prefix, &hint_start(owner, from), &mut |k, v| {
            visit_hint(k, v, visit)
        })
    }
}
