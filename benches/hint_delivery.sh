#!/usr/bin/env bash
# Hinted handoff delivery: how fast a returning node gets its hints, and what delivery does to
# foreground latency at the same offered load.
#
# A 4-node cluster (n=3, w=2, anti-entropy off so only hints repair) serves an open-loop
# `shoal bench` (mix A, RATE ops/s) for SECS measured seconds: the baseline. Then n4 is killed,
# HINTS keys are written (each lands a hint for n4 on a fallback where n4 is a primary), n4
# is restarted, and the same load runs again while the hints are delivered, throttled to MBPS
# per sending node. A control run in between restarts n4 with nothing to deliver, so the cost
# of the restart itself is seen apart. Prints the delivery rate (keys/s, from restart to no
# hints pending) and the p99 of each phase.
#
#   benches/hint_delivery.sh [SHOAL_BINARY] [HINTS] [RATE] [SECS] [MBPS] [VALUE_SIZE] [BATCH_KEYS]
set -euo pipefail
SHOAL=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}
HINTS=${2:-60000}
RATE=${3:-1000}
SECS=${4:-15}
MBPS=${5:-4}
VALUE=${6:-1024}
BATCH=${7:-256}
base=28080
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$dir/n" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
"$SHOAL" cert init --dir "$dir/certs" >/dev/null
members=""
for i in 1 2 3 4; do
  members+="[[cluster.members]]
id = \"n$i\"
peer = \"127.0.0.1:$((base + 1000 + i))\"
"
done
for i in 1 2 3 4; do
  "$SHOAL" cert node --dir "$dir/certs" --id "n$i" >/dev/null
  mkdir -p "$dir/n$i"
  cat >"$dir/n$i/shoal.toml" <<TOML
[node]
id = "n$i"
data_dir = "$dir/n$i/data"
[listen]
http = "127.0.0.1:$((base + i))"
peer = "127.0.0.1:$((base + 1000 + i))"
quic = "127.0.0.1:$((base + 2000 + i))"
[tls]
ca_cert = "$dir/certs/ca.pem"
node_cert = "$dir/certs/n$i.pem"
node_key = "$dir/certs/n$i.key"
[swim]
probe_interval_ms = 500
probe_timeout_ms = 200
[handoff]
max_mb_per_sec = $MBPS
batch_keys = $BATCH
[antientropy]
enabled = false
[cluster]
secret_file = "$dir/certs/cluster.secret"
$members
TOML
done
start() { "$SHOAL" serve --config "$dir/n$1/shoal.toml" >>"$dir/n$1/node.log" 2>&1 & echo $! >"$dir/n$1/pid"; }
ready() { for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$((base + $1))/healthz" >/dev/null && return; sleep 0.1; done; echo "n$1 did not start" >&2; exit 1; }
for i in 1 2 3 4; do start $i; done
for i in 1 2 3 4; do ready $i; done
sleep 3 # SWIM: everyone meets everyone
endpoints="http://127.0.0.1:$((base + 1)),http://127.0.0.1:$((base + 2)),http://127.0.0.1:$((base + 3))"
bench() {
  "$SHOAL" bench --endpoints "$endpoints" --mix a --keys 20000 --value-size "$VALUE" --concurrency 32 \
    --rate "$RATE" --duration "$SECS" --warmup "${2:-2}" --probe-workers 0 ${3:-} --json "$1" >"$1.out" 2>&1
}
pending() {
  local total=0
  for i in 1 2 3; do
    local p
    p=$(curl -sf "http://127.0.0.1:$((base + i))/metrics" | awk '/^shoal_hints_pending/ {s += $2} END {print s + 0}')
    total=$((total + p))
  done
  echo $total
}
# Poll the hint gauges every 0.25 s for the whole measured window (in every phase, so the
# polling costs each phase the same) and note when they first reach zero.
watch_hints() {
  local until=$(($(date +%s) + SECS + 1))
  while [ "$(date +%s)" -lt $until ]; do
    if [ ! -e "$1" ] && [ "$(pending)" -eq 0 ]; then date +%s.%N >"$1"; fi
    sleep 0.25
  done
  pending >"$1.left"
}
echo "baseline: $RATE ops/s offered, $SECS s" >&2
bench "$dir/before.json"

kill_n4() {
  kill -9 "$(cat "$dir/n4/pid")"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$((base + 1))/v1/admin/status" | jq -e '.members[] | select(.id=="n4") | .liveness == "dead"' >/dev/null && break
    sleep 0.2
  done
}
# Control: the same kill and restart with nothing to deliver, so what a restart alone costs
# (a cold node, SWIM rejoining, connections re-dialled) is not charged to delivery.
kill_n4
echo "control: n4 restarts with no hints" >&2
start 4
watch_hints "$dir/restart.drained" &
poller=$!
ready 4
bench "$dir/restart.json" 0 --no-preload
wait $poller || true
sleep 3

kill_n4
echo "n4 down: writing $HINTS keys of $VALUE bytes" >&2
"$SHOAL" bench --endpoints "$endpoints" --mix w --keys "$HINTS" --value-size "$VALUE" --concurrency 32 \
  --duration 0 --warmup 0 --probe-workers 0 >"$dir/preload.out" 2>&1 || cat "$dir/preload.out" >&2
held=$(pending)
echo "hints held for n4: $held" >&2

start 4
t0=$(date +%s.%N)
watch_hints "$dir/drained" &
poller=$!
ready 4
bench "$dir/during.json" 0 --no-preload
wait $poller || true
t1=$(cat "$dir/drained" 2>/dev/null || echo "")
if [ -n "$t1" ]; then
  secs=$(echo "$t1 - $t0" | bc -l)
  delivered=$held
else
  # Not drained within the window: the rate is what was delivered during it.
  secs=$(echo "$(date +%s.%N) - $t0" | bc -l)
  delivered=$((held - $(cat "$dir/drained.left")))
fi
printf '{"hints":%d,"delivered":%d,"drained":%s,"seconds":%.2f,"keys_per_s":%.0f,"mb_per_sec_limit":%s,"batch_keys":%s}\n' \
  "$held" "$delivered" "$([ -n "$t1" ] && echo true || echo false)" "$secs" "$(echo "$delivered / $secs" | bc -l)" "$MBPS" "$BATCH"
for phase in before restart during; do
  jq -c --arg p "$phase" '.profiles[0].cells[0] | {phase: $p, ops_per_sec: (.throughput | floor), errors: .errors, get_p50_ms: (.get.p50_us / 1000), get_p99_ms: (.get.p99_us / 1000), put_p50_ms: (.put.p50_us / 1000), put_p99_ms: (.put.p99_us / 1000)}' "$dir/$phase.json" 2>/dev/null \
    || { echo "$phase report:"; cat "$dir/$phase.json.out"; }
done
