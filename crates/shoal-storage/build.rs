//! RocksDB links its C++ runtime only when librocksdb-sys compiles RocksDB itself. When the
//! archive comes prebuilt (`ROCKSDB_LIB_DIR` with `ROCKSDB_STATIC`, as `scripts/rocksdb.sh`
//! arranges so RocksDB is built once per machine), nothing else names libstdc++, so this
//! crate does.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    let rocksdb = std::env::var_os("CARGO_FEATURE_ROCKSDB").is_some();
    let prebuilt = std::env::var_os("ROCKSDB_LIB_DIR").is_some() && std::env::var_os("ROCKSDB_STATIC").is_some();
    if rocksdb && prebuilt {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
