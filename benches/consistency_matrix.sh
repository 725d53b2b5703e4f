#!/usr/bin/env bash
# The consistency matrix of docs/benchmarks.md: every (r, w) for n = 3 on an embedded 3-node
# cluster, under each latency profile (a fresh cluster per profile), with freshness probes
# beside an open-loop YCSB A load; the nodes' measured WARS legs feed the PBS prediction.
# Writes report.json, CSVs, SVG/PNG plots and report.md to OUT.
#
#   benches/consistency_matrix.sh [SHOAL_BINARY] [OUT] [PROFILES] [SECS] [RATE] [PROBE_WORKERS] [PROBE_RATE]
#
# PROBE_RATE probes a second over SECS give SECS x PROBE_RATE / 10 reads per (setting, t):
# 300 with the defaults, enough for a 95% interval of about +-0.06 around 0.5.
set -euo pipefail
SHOAL=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}
OUT=${2:-docs/bench/consistency}
PROFILES=${3:-lan,lnkd-ssd,lnkd-disk,ymmr}
SECS=${4:-20}
RATE=${5:-300}
PROBES=${6:-48}
PROBE_RATE=${7:-150}
rm -rf "$OUT"
"$SHOAL" bench --nodes 3 --n 3 --matrix --profile "$PROFILES" --mix a --keys 10000 --value-size 1024 \
  --concurrency 64 --rate "$RATE" --duration "$SECS" --warmup 2 --probe-workers "$PROBES" --probe-rate "$PROBE_RATE" --burst 3 \
  --t-ms 0,1,2,5,10,20,50,100,200,500 --trials 50000 --base-port 38080 --out "$OUT"
