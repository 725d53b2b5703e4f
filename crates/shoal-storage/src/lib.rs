//! Shoal's local storage: the stored object format, the [`Store`] trait, its RocksDB and
//! in-memory implementations, and the [`Replica`] that applies coordinated writes and
//! replica merges to a store atomically per key.
//!
//! Invariants:
//! - The [`Store`] trait names no storage engine (TiKV's `engine_traits` pattern), so the pure
//!   cores and the simulator can run against [`MemoryStore`] while nodes run on `RocksStore`.
//!   RocksDB sits behind the `rocksdb` feature: a crate that does not turn it on does not
//!   compile RocksDB's C++ at all.
//! - Every object written to disk carries a format version byte, and every object read back is
//!   decoded and validated; a corrupt record becomes [`StoreError::Corrupt`], never a panic.
//! - `Store::put` returns only once the write is in RocksDB's write-ahead log (and fsynced when
//!   `sync_writes` is on), so an acknowledged write survives `kill -9`.
//!
//! - Object and hint writes are refused with [`StoreError::DiskFull`] while the data
//!   directory's filesystem is under `min_free_bytes` ([`SpaceGuard`]), before RocksDB itself
//!   would run out of space.
//!
//! Every method here blocks. Async callers run them on a blocking pool, never on the reactor.

mod exec;
mod memory;
mod object;
mod replica;
#[cfg(feature = "rocksdb")]
mod rocks;
mod space;
mod store;

#[cfg(test)]
mod conformance;

pub use exec::{blocking, run_blocking_inline_on_this_thread, system_clock, unix_ms, Clock, SystemClock};
pub use memory::MemoryStore;
pub use object::{Object, Value, OBJECT_FORMAT_VERSION};
pub use replica::{Export, Replica, ReplicaError, ReplicaLimits, ReplicaObserver};
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksOptions, RocksStore};
pub use space::{FreeSpace, SpaceGuard, Statvfs};
pub use store::{segment_of, HintVisit, Store, StoreError, SEGMENTS};
