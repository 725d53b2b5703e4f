#!/usr/bin/env bash
# Run Shoal's deterministic cluster simulation (crates/shoal-sim). Arguments go to `shoal-sim`:
#   scripts/sim.sh --seeds 0..1000            # a seed range
#   scripts/sim.sh --seed 17 --history h.json # replay one seed and keep its history
#   scripts/sim.sh --seeds 0..20000 --chaos-secs 60   # a soak
# It builds the whole workspace (as CI does) rather than `cargo run -p shoal-sim`: a narrower
# build unifies features differently and would compile RocksDB a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
cargo build --workspace --all-targets --quiet
exec "$CARGO_TARGET_DIR/debug/shoal-sim" "$@"
