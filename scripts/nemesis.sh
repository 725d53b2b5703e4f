#!/usr/bin/env bash
# Run the long nemesis suite (tests/nemesis.rs, `nemesis_long`): real `shoal serve` processes
# under a set workload while a seeded schedule kills, pauses, partitions (iptables), fills a
# disk (tmpfs), joins, leaves and removes nodes; then heal, convergence, and the shared
# history checkers. Partitions and the full disk need root; without it they are skipped, and
# the run says so.
#
#   scripts/nemesis.sh                                  # 600 s, a time-based seed (printed)
#   SHOAL_NEMESIS_SECS=1800 scripts/nemesis.sh          # longer
#   SHOAL_NEMESIS_SEED=1796233917410597513 scripts/nemesis.sh   # the same schedule again
#   SHOAL_NEMESIS_REPORT=report.json scripts/nemesis.sh # where the history and verdict go
#
# A failure prints the anomalies and the seed, and keeps the nodes' logs in
# $TMPDIR/shoal-failed-*. SHOAL_NEMESIS_SEED and SHOAL_NEMESIS_REPORT pass through from the
# environment; extra arguments go to the test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
export SHOAL_NEMESIS_SECS="${SHOAL_NEMESIS_SECS:-600}"
exec cargo test --test nemesis -- --ignored --nocapture --exact nemesis_long "$@"
