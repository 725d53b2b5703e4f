#!/usr/bin/env bash
# Install what building Shoal needs on Debian/Ubuntu, or say exactly what is missing.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need_apt=()
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)   # bindgen for RocksDB
dpkg -s clang >/dev/null 2>&1 || need_apt+=(clang)
command -v c++ >/dev/null 2>&1 || need_apt+=(build-essential)      # RocksDB is C++
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# deploy/test.sh: JSON in shell checks, and lint of the deploy scripts.
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} with sudo" >&2
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing ${need_apt[*]}. Install them, e.g.: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain. Install one with rustup (https://rustup.rs), then rerun." >&2
    exit 1
  fi
fi
for comp in rustfmt clippy; do
  if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "$comp"
    else
      echo "setup: cargo $comp is missing; install the $comp component." >&2
      exit 1
    fi
  fi
done

# RocksDB's C++, compiled once per machine into ~/.cache/shoal-rocksdb and linked by every
# cargo command in this clone (scripts/rocksdb.sh says how, and how to clear it).
"$(dirname "$0")/rocksdb.sh" >/dev/null
