#!/usr/bin/env bash
# Build Shoal (installing prerequisites) and start a local three-node cluster.
# Extra arguments go to `shoal dev`, e.g. scripts/dev.sh --nodes 5 --dir /tmp/shoal
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
# Build exactly what the tests build (--workspace --all-targets): a narrower selection unifies
# build-dependency features differently and would compile RocksDB a second time.
cargo build --workspace --all-targets
exec "$CARGO_TARGET_DIR/debug/shoal" dev "$@"
