#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for RUNS executions each (default 1,000,000) and prints
# the executions and any crash per target. Needs a nightly toolchain (`rustup toolchain list`)
# and cargo-fuzz (installed from crates.io when missing). Crashes land in
# fuzz/artifacts/TARGET/; copy each into fuzz/regressions/TARGET/ once fixed, where the stable
# smoke test (crates/shoal-fuzz) replays it in every CI run.
#   scripts/fuzz.sh [TARGET...]        RUNS=N, FUZZ_JOBS=N (parallel jobs per target, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1000000}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: no nightly toolchain; install one with: rustup toolchain install nightly" >&2
    exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/shoal-fuzz-target}"
# The targets are safe Rust decoders, so no sanitizer (-s none): coverage guidance only, and
# RocksDB need not be rebuilt with ASan: nightly links the archive scripts/rocksdb.sh built
# once for this machine, as every stable build does.
if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    ROCKSDB_LIB_DIR="$(scripts/rocksdb.sh)"
    export ROCKSDB_LIB_DIR ROCKSDB_STATIC=1
fi
# The fuzz workspace resolves the same dependency versions as the main one.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v shoal-fuzz-targets)
summary=()
for t in "${targets[@]}"; do
    scratch="$(mktemp -d)"
    log="$(mktemp)"
    echo "== $t: $RUNS runs"
    set +e
    cargo +nightly fuzz run -s none --fuzz-dir fuzz "$t" "$scratch" "fuzz/corpus/$t" -- \
        -runs="$RUNS" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|==|SUMMARY|stat::)'
    rc=${PIPESTATUS[0]}
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        summary+=("$t: ${execs:-?} executions, no crash")
    else
        summary+=("$t: CRASH after ${execs:-?} executions (rc $rc); see fuzz/artifacts/$t/")
    fi
    rm -rf "$scratch" "$log"
done
echo
printf 'fuzz: %s\n' "${summary[@]}"
