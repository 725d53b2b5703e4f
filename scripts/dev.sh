#!/usr/bin/env bash
# Build Shoal (installing prerequisites) and start a local three-node cluster.
# Extra arguments go to `shoal dev`, e.g. scripts/dev.sh --nodes 5 --dir /tmp/shoal
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
# Build what the tests build, so scripts/test.sh afterwards starts from a warm target dir.
# RocksDB itself is never compiled here: scripts/setup.sh built it once for this machine.
cargo build --workspace --all-targets
exec "$CARGO_TARGET_DIR/debug/shoal" dev "$@"
