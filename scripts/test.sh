#!/usr/bin/env bash
# Shoal's test command: prerequisites, formatting, lints, then every test (unit, property,
# conformance and the real-process integration suites in tests/), then deploy/: manifests,
# the systemd unit, and the compose cluster on the Docker engine (skipped, and said so,
# where there is none).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Outside the clone, so RocksDB's C++ (about 15 min on 2 cores) is built once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"

echo "== dependency graph"
# The pure cores and the simulator build without RocksDB or quinn (docs/architecture.md).
for crate in shoal-ring shoal-version shoal-pbs shoal-membership shoal-storage shoal-coordinator shoal-antientropy shoal-handoff shoal-sim; do
    heavy="$(cargo tree -q -p "$crate" -e normal,build --prefix none | grep -E '^(rocksdb|librocksdb-sys|quinn) ' | sort -u || true)"
    if [ -n "$heavy" ]; then
        echo "$crate depends on: $heavy" >&2
        exit 1
    fi
done
echo "the pure cores, the coordinator and the simulator depend on neither RocksDB nor quinn"
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# Integration tests start three-node clusters; two test threads keep a 2-core machine honest.
# --nocapture shows what each suite checked (node logs go to files, so this stays short).
cargo test --workspace --all-targets -- --test-threads=2 --nocapture
echo "== deploy/test.sh"
# The Dockerfile's runtime stage needs a Debian base built from the archive with mmdebstrap
# (minutes, and more network); run it by hand with SHOAL_DEPLOY_SKIP_DOCKERFILE=0.
SHOAL_BIN="$CARGO_TARGET_DIR/debug/shoal" SHOAL_DEPLOY_SKIP_DOCKERFILE="${SHOAL_DEPLOY_SKIP_DOCKERFILE:-1}" deploy/test.sh
