#!/usr/bin/env bash
# Detection time with real processes: start a 5-node `shoal dev` cluster with the default SWIM
# settings (memberlist LAN: 1 s probes, 500 ms timeout, suspicion multiplier 4), wait until
# every node sees every other alive, kill -9 one node, and time how long until each survivor's
# /v1/admin/status shows it dead. Repeats REPS times with a fresh cluster each time.
#
#   benches/swim_detection_real.sh [SHOAL_BINARY] [REPS] [NODES]
set -euo pipefail
SHOAL=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}
REPS=${2:-5}
NODES=${3:-5}
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }
base=18080
now() { date +%s.%N; }
for rep in $(seq 1 "$REPS"); do
  dir=$(mktemp -d)
  "$SHOAL" dev --nodes "$NODES" --dir "$dir" --http-port $base --peer-port $((base + 1000)) \
    --quic-port $((base + 2000)) >"$dir/dev.out" 2>&1 &
  dev=$!
  # Converged: every node sees NODES alive members.
  for _ in $(seq 1 200); do
    ok=0
    for i in $(seq 0 $((NODES - 1))); do
      c=$(curl -sf "http://127.0.0.1:$((base + i))/v1/admin/status" | jq '[.members[] | select(.liveness=="alive")] | length' 2>/dev/null || echo 0)
      [ "$c" = "$NODES" ] && ok=$((ok + 1))
    done
    [ "$ok" = "$NODES" ] && break
    sleep 0.1
  done
  victim="n$NODES"
  pid=$(pgrep -f "$dir/$victim/shoal.toml")
  t0=$(now)
  kill -9 "$pid"
  declare -A seen=()
  while [ ${#seen[@]} -lt $((NODES - 1)) ]; do
    for i in $(seq 0 $((NODES - 2))); do
      [ -n "${seen[$i]:-}" ] && continue
      l=$(curl -sf "http://127.0.0.1:$((base + i))/v1/admin/status" | jq -r ".members[] | select(.id==\"$victim\") | .liveness" 2>/dev/null || true)
      if [ "$l" = "dead" ]; then seen[$i]=$(echo "$(now) - $t0" | bc); fi
    done
    sleep 0.05
  done
  printf 'rep %d: %s dead at' "$rep" "$victim"
  for i in $(seq 0 $((NODES - 2))); do printf ' n%d=%.2fs' $((i + 1)) "${seen[$i]}"; done
  echo
  unset seen
  kill "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
  rm -rf "$dir"
done
