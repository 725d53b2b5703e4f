#!/usr/bin/env bash
# Client latency before and during a join, at the same closed-loop load: a 3-node `shoal dev`
# cluster serves `shoal bench` (mix A, CONC clients) twice for SECS measured seconds each.
# The first run is the baseline; during the second, a fourth node joins and streams its share
# at TRANSFER_MBPS, throttled so the transfer spans the whole measured window.
#
#   benches/join_latency.sh [SHOAL_BINARY] [KEYS] [SECS] [CONC] [TRANSFER_MBPS]
set -euo pipefail
SHOAL=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}
KEYS=${2:-100000}
SECS=${3:-15}
CONC=${4:-8}
MBPS=${5:-1}
base=18080
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
"$SHOAL" dev --nodes 3 --dir "$dir" --http-port $base --peer-port $((base + 1000)) --quic-port $((base + 2000)) \
  >"$dir/dev.out" 2>&1 &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((base + 2))/healthz" >/dev/null && break; sleep 0.1; done
endpoints="http://127.0.0.1:$base,http://127.0.0.1:$((base + 1)),http://127.0.0.1:$((base + 2))"
bench() {
  "$SHOAL" bench --endpoints "$endpoints" --mix a --keys "$KEYS" --value-size 256 --concurrency "$CONC" \
    --duration "$SECS" --warmup 2 --probe-workers 0 --json "$1" >"$1.out" 2>&1
}
echo "baseline: $KEYS keys, $CONC clients, $SECS s" >&2
bench "$dir/before.json"

"$SHOAL" cert node --dir "$dir/certs" --id n4 >/dev/null
mkdir -p "$dir/n4"
cat >"$dir/n4/shoal.toml" <<TOML
[node]
id = "n4"
data_dir = "$dir/n4/data"
[listen]
http = "127.0.0.1:$((base + 3))"
peer = "127.0.0.1:$((base + 1003))"
quic = "127.0.0.1:$((base + 2003))"
[tls]
ca_cert = "$dir/certs/ca.pem"
node_cert = "$dir/certs/n4.pem"
node_key = "$dir/certs/n4.key"
[cluster]
secret_file = "$dir/certs/cluster.secret"
[transfer]
max_mb_per_sec = $MBPS
TOML
"$SHOAL" serve --config "$dir/n4/shoal.toml" >"$dir/n4/node.log" 2>&1 &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((base + 3))/healthz" >/dev/null && break; sleep 0.1; done
echo "during: n4 joins 2 s into the run (the end of the warm-up)" >&2
( sleep 2; "$SHOAL" admin join "127.0.0.1:$((base + 1000))" --endpoint "http://127.0.0.1:$((base + 3))" >"$dir/join.out" 2>&1 ) &
joiner=$!
bench "$dir/during.json"
wait $joiner || true
tail -1 "$dir/join.out" >&2
for phase in before during; do
  jq -c --arg p "$phase" '.profiles[0].cells[0] | {phase: $p, ops_per_sec: (.throughput | floor), errors: .errors, get_p50_ms: (.get.p50_us / 1000), get_p99_ms: (.get.p99_us / 1000), put_p50_ms: (.put.p50_us / 1000), put_p99_ms: (.put.p99_us / 1000)}' "$dir/$phase.json" 2>/dev/null \
    || { echo "$phase report:"; cat "$dir/$phase.json.out"; }
done
curl -s "http://127.0.0.1:$((base + 3))/metrics" | grep -E "^shoal_transfer_received_(bytes|keys)_total" >&2 || true
