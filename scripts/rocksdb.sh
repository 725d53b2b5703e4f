#!/usr/bin/env bash
# Build RocksDB's C++ once per machine, and make every cargo command in this clone link it.
#
# librocksdb-sys compiles RocksDB from source in each target directory and again whenever
# a cargo invocation (clippy, `-p X`, `--release`, nightly fuzz) resolves its build script
# differently: 15 minutes on 2 cores each time. This script compiles the exact
# librocksdb-sys version Cargo.lock pins, with Shoal's features, once (optimised), keeps
# the archive in a cache outside the clone, and writes `.cargo/config.toml` (not tracked)
# so that every cargo command here links that archive (ROCKSDB_LIB_DIR, ROCKSDB_STATIC)
# instead of compiling it. The build script then only generates bindings (seconds).
#
#   scripts/rocksdb.sh           build if missing, write .cargo/config.toml, print the path
#   SHOAL_ROCKSDB_CACHE=DIR      cache root (default ~/.cache/shoal-rocksdb)
#   SHOAL_ROCKSDB_BUILD=source   compile RocksDB inside each target dir as cargo would
#
# Clear the cache with `rm -rf ~/.cache/shoal-rocksdb` (the next run rebuilds it); remove
# `.cargo/config.toml` to go back to cargo's own RocksDB build.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
config="$root/.cargo/config.toml"

if [ "${SHOAL_ROCKSDB_BUILD:-}" = source ]; then
    rm -f "$config"
    echo "rocksdb: SHOAL_ROCKSDB_BUILD=source, cargo compiles RocksDB itself" >&2
    exit 0
fi

version="$(awk '/^name = "librocksdb-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$version" ]; then
    echo "rocksdb: librocksdb-sys is not in Cargo.lock" >&2
    exit 1
fi
# The features Shoal asks of the rocksdb crate decide what the archive is compiled with.
features="$(sed -n 's/^rocksdb = .*features = \[\([^]]*\)\].*/\1/p' Cargo.toml)"
cxx="$(c++ --version | head -1)"
key="$(printf '%s\n%s\n%s\n' "$version" "$features" "$cxx" | sha256sum | cut -c1-12)"
cache="${SHOAL_ROCKSDB_CACHE:-$HOME/.cache/shoal-rocksdb}"
lib_dir="$cache/librocksdb-sys-$version-$key"

if [ ! -f "$lib_dir/librocksdb.a" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
    build="$cache/build-$key"
    mkdir -p "$build/src"
    # A one-dependency crate pinned to Cargo.lock's version: its build script compiles the
    # archive exactly as it would inside the workspace, with the same features.
    cat >"$build/Cargo.toml" <<EOF
[package]
name = "shoal-rocksdb-archive"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
librocksdb-sys = { version = "=$version", default-features = false, features = [$features] }

[profile.release]
opt-level = 3
debug = false

[workspace]
EOF
    : >"$build/src/lib.rs"
    # The workspace's lock pins the build dependencies (bindgen, cc, lz4-sys) to the versions
    # the workspace builds with; cargo drops the entries this crate does not use.
    cp Cargo.lock "$build/Cargo.lock"
    echo "rocksdb: compiling RocksDB $version ($features) once for this machine into $lib_dir" >&2
    echo "rocksdb: this takes about 15 minutes on 2 cores; every later build links it" >&2
    started=$(date +%s)
    (cd "$build" && env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC -u CARGO_TARGET_DIR \
        cargo build --release --quiet --target-dir "$build/target")
    archive="$(find "$build/target/release/build" -path '*librocksdb-sys-*/out/librocksdb.a' | head -1)"
    if [ -z "$archive" ]; then
        echo "rocksdb: the build finished but left no librocksdb.a under $build/target" >&2
        exit 1
    fi
    mkdir -p "$lib_dir.tmp"
    cp "$archive" "$lib_dir.tmp/librocksdb.a"
    printf 'librocksdb-sys %s\nfeatures %s\ncompiler %s\nbuilt %s in %ss\n' \
        "$version" "$features" "$cxx" "$(date -u +%FT%TZ)" "$(($(date +%s) - started))" >"$lib_dir.tmp/MANIFEST"
    rm -rf "$lib_dir"
    mv "$lib_dir.tmp" "$lib_dir"
    rm -rf "$build"
    echo "rocksdb: built in $(($(date +%s) - started)) s" >&2
fi

mkdir -p "$root/.cargo"
want="$(cat <<EOF
# Written by scripts/rocksdb.sh; not tracked. Every cargo command in this clone links the
# RocksDB archive built once for this machine instead of compiling RocksDB again.
[env]
ROCKSDB_LIB_DIR = "$lib_dir"
ROCKSDB_STATIC = "1"
EOF
)"
if [ ! -f "$config" ] || [ "$(cat "$config")" != "$want" ]; then
    printf '%s\n' "$want" >"$config"
fi
echo "$lib_dir"
