#!/usr/bin/env bash
# Runs the StatefulSet's start script (shoal-k8s.sh, taken from configmap.yaml exactly as
# shipped) for pods shoal-0..shoal-3 as real `shoal serve` processes on this machine, each on
# its own loopback address (127.0.0.11-14) standing in for a pod IP, with a stand-in `getent`
# answering for the headless Service's DNS. It walks through what the manifests and the
# documented procedures rely on:
#   1. the founding pods wait until all of them resolve, then found one cluster together;
#   2. scale-up: shoal-3 starts with seeds only, then `shoal-k8s.sh join` adds it;
#   3. a restarted pod (data on its volume) comes back from seeds at a new IP, its data intact,
#      and the others learn its new address;
#   4. scale-down: `shoal-k8s.sh leave` decommissions shoal-3, whose process then exits 0;
#   5. a founding pod whose volume was lost finds the existing layout instead of founding anew,
#      and anti-entropy refills it.
# Kubernetes itself is not involved: no scheduler, kubelet, probes or real DNS.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
export WAIT_POLL_SECS=0.5   # read by check-lib.sh's wait_for
# shellcheck source=/dev/null
. "$here/../check-lib.sh"
started=$SECONDS
BIN="${SHOAL_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}"
if [ ! -x "$BIN" ]; then
    echo "test-start-script: no shoal binary at $BIN (set SHOAL_BIN)" >&2
    exit 1
fi
for tool in curl jq awk; do
    command -v "$tool" >/dev/null || {
        echo "test-start-script: $tool is required" >&2
        exit 1
    }
done
HTTP_PORT="${SHOAL_TEST_HTTP_PORT:-28080}"
PEER_PORT="${SHOAL_TEST_PEER_PORT:-29080}"
QUIC_PORT="${SHOAL_TEST_QUIC_PORT:-27080}"

tmp="$(mktemp -d)"
PASSED=0
FAILED=0
declare -A PID=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$rc" -ne 0 ]; then
        FAILED=1
        for log in "$tmp"/shoal-*/log; do
            [ -f "$log" ] || continue
            echo "--- last lines of $log"
            tail -n 15 "$log"
        done
    fi
    rm -rf "$tmp"
    echo
    echo "k8s-start-script: $PASSED passed, $FAILED failed ($((SECONDS - started)) s)"
}
trap cleanup EXIT

# The ConfigMap's files, exactly as shipped.
configmap_file "$here/configmap.yaml" shoal-k8s.sh >"$tmp/shoal-k8s.sh"
configmap_file "$here/configmap.yaml" shoal.toml >"$tmp/shoal.toml"
# shellcheck disable=SC2016  # a literal $SHOAL
grep -q 'exec "$SHOAL" serve' "$tmp/shoal-k8s.sh" ||
    fail "could not extract shoal-k8s.sh from configmap.yaml"
grep -q '^\[cluster\]' "$tmp/shoal.toml" || fail "could not extract shoal.toml from configmap.yaml"

# The headless Service's DNS: a hosts file the test fills as pods "appear".
mkdir -p "$tmp/bin"
: >"$tmp/hosts"
cat >"$tmp/bin/getent" <<'EOF'
#!/bin/sh
# Stand-in for getent: answers ahostsv4 NAME from $STUB_HOSTS ("IP NAME" lines).
[ "$1" = ahostsv4 ] || exit 2
while read -r ip name; do
    if [ "$name" = "$2" ]; then
        echo "$ip       STREAM $name"
        exit 0
    fi
done <"$STUB_HOSTS"
exit 2
EOF
chmod +x "$tmp/bin/getent"
appear() { echo "$(ip_of "$1") $1.shoal-peer" >>"$tmp/hosts"; }
# A pod's IP: 127.0.0.11 + ordinal, unless it was "rescheduled" (NEW_IP).
declare -A NEW_IP=()
ip_of() { echo "${NEW_IP[$1]:-127.0.0.$((11 + ${1##*-}))}"; }
reschedule() {
    NEW_IP[$1]=$2
    sed -i "/ $1\.shoal-peer\$/d" "$tmp/hosts"
    appear "$1"
}
http() { echo "http://$(ip_of "$1"):$HTTP_PORT"; }

"$BIN" cert init --dir "$tmp/certs" >/dev/null
for i in 0 1 2 3; do "$BIN" cert node --dir "$tmp/certs" --id "shoal-$i" >/dev/null; done

# run_script POD ARGS: shoal-k8s.sh with the environment the StatefulSet gives the container,
# plus what this machine needs instead of a pod's own network namespace and volumes (ports on
# a shared loopback, paths). It execs, so `( run_script ... ) &` leaves the node's PID in $!.
run_script() {
    local pod=$1
    shift
    exec env PATH="$tmp/bin:$PATH" STUB_HOSTS="$tmp/hosts" \
        POD_NAME="$pod" POD_IP="$(ip_of "$pod")" \
        SHOAL_PEER_SERVICE=shoal-peer SHOAL_FOUNDING=3 \
        SHOAL_PEER_PORT="$PEER_PORT" SHOAL_HTTP_PORT="$HTTP_PORT" \
        SHOAL_DATA_DIR="$tmp/$pod/data" SHOAL_CERT_DIR="$tmp/certs" \
        SHOAL_BASE_CONFIG="$tmp/shoal.toml" SHOAL_CONFIG="$tmp/$pod/shoal.toml" \
        SHOAL_DNS_WAIT_SECS=60 SHOAL_SEED_WAIT_SECS=10 SHOAL_BIN="$BIN" SHOAL_ENDPOINT="$(http "$pod")" \
        SHOAL__LISTEN__HTTP="$(ip_of "$pod"):$HTTP_PORT" SHOAL__LISTEN__QUIC="$(ip_of "$pod"):$QUIC_PORT" \
        SHOAL__TLS__CA_CERT="$tmp/certs/ca.pem" SHOAL__CLUSTER__SECRET_FILE="$tmp/certs/cluster.secret" \
        SHOAL__TRANSFER__DROP_DELAY_MS=1000 SHOAL__ANTIENTROPY__INTERVAL_MS=2000 SHOAL__LOG__FORMAT=text \
        sh "$tmp/shoal-k8s.sh" "$@"
}
start_pod() {
    mkdir -p "$tmp/$1"
    (run_script "$1" start) >>"$tmp/$1/log" 2>&1 &
    PID[$1]=$!
}
healthz() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(http "$1")/healthz")" = 200 ]; }
status() { curl -s --max-time 3 "$(http "$1")/v1/admin/status"; }
# members_seen POD N: POD's layout has N members in state member, all alive to its SWIM.
members_seen() {
    [ "$(status "$1" | jq '[.members[] | select(.admin_state == "member" and .liveness == "alive")] | length' 2>/dev/null)" = "$2" ]
}
in_layout() { [ "$(status "$1" | jq -r --arg id "$2" '.members[] | select(.id == $id) | .admin_state' 2>/dev/null)" = member ]; }
trees_equal() {
    local a b
    a="$(curl -s "$(http "$1")/v1/admin/aae" | jq -c '[.trees[] | select(.keys > 0) | [.partition, .n, .root]] | sort')"
    b="$(curl -s "$(http "$2")/v1/admin/aae" | jq -c '[.trees[] | select(.keys > 0) | [.partition, .n, .root]] | sort')"
    [ "$a" != "[]" ] && [ "$a" = "$b" ]
}
for i in 0 1 2 3; do
    if curl -s -o /dev/null --max-time 1 "$(http "shoal-$i")/"; then
        echo "test-start-script: something already answers on $(http "shoal-$i")" >&2
        exit 1
    fi
done

step "founding: shoal-0, shoal-1, shoal-2 start together; only shoal-0 resolves at first"
appear shoal-0
for i in 0 1 2; do start_pod "shoal-$i"; done
sleep 4
grep -q "waiting for shoal-1 shoal-2 to resolve" "$tmp/shoal-0/log" || fail "shoal-0 did not wait for the other founding pods: $(cat "$tmp/shoal-0/log")"
healthz shoal-0 && fail "shoal-0 serves before the other founding pods resolve"
ok "shoal-0 waits for shoal-1 and shoal-2 to resolve, and does not serve yet"
appear shoal-1
appear shoal-2
for i in 0 1 2; do wait_for 30 "shoal-$i serves" healthz "shoal-$i"; done
for i in 0 1 2; do
    grep -q "founding the cluster with shoal-0=127.0.0.11 shoal-1=127.0.0.12 shoal-2=127.0.0.13" "$tmp/shoal-$i/log" ||
        grep -q "already serves a cluster layout" "$tmp/shoal-$i/log" ||
        fail "shoal-$i neither founded with all three nor joined: $(head -n 5 "$tmp/shoal-$i/log")"
done
ok "each founding pod founded with shoal-0..2 at their pod IPs (or took the layout from one that already had)"
for i in 0 1 2; do wait_for 30 "shoal-$i sees 3 members alive" members_seen "shoal-$i" 3; done
[ "$(status shoal-1 | jq .layout.epoch)" = 1 ] || fail "the founded layout is not epoch 1: $(status shoal-1 | jq -c .layout)"
ok "one layout, epoch 1, on the founding pods"
for k in 1 2 3 4 5; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary "v$k" "$(http shoal-0)/v1/kv/k$k?w=3")" = 204 ] ||
        fail "PUT k$k w=3 via shoal-0"
done
[ "$(curl -s "$(http shoal-2)/v1/kv/k1?r=3")" = v1 ] || fail "GET k1 r=3 via shoal-2"
ok "PUT k1..k5 via shoal-0 (w=3), GET k1 via shoal-2 (r=3)"

step "scale-up: shoal-3 starts with seeds only, then \`shoal-k8s.sh join\`"
appear shoal-3
start_pod shoal-3
wait_for 30 "shoal-3 serves" healthz shoal-3
grep -q '^\[\[cluster.members\]\]' "$tmp/shoal-3/shoal.toml" && fail "shoal-3's configuration lists founding members"
grep -q '^seeds = \["127.0.0.11:'"$PEER_PORT"'", "127.0.0.12:'"$PEER_PORT"'", "127.0.0.13:'"$PEER_PORT"'"\]' "$tmp/shoal-3/shoal.toml" ||
    fail "shoal-3's seeds: $(grep '^seeds' "$tmp/shoal-3/shoal.toml")"
ok "shoal-3's configuration: no members, the three founding pods as seeds"
in_layout shoal-0 shoal-3 && fail "shoal-3 is a member before joining"
ok "shoal-3 is not a member before it joins"
seed="$(run_script shoal-3 seed)"  # (in a subshell already)
[ "$seed" = "127.0.0.11:$PEER_PORT" ] || fail "shoal-k8s.sh seed printed $seed"
ok "shoal-k8s.sh seed: $seed (shoal-0's peer address)"
t0=$SECONDS
if (run_script shoal-3 join) >"$tmp/join.out" 2>&1; then
    sed 's/^/  | /' "$tmp/join.out"
else
    sed 's/^/  | /' "$tmp/join.out"
    fail "shoal-k8s.sh join failed"
fi
ok "shoal-k8s.sh join returned after $((SECONDS - t0)) s"
for i in 0 1 2 3; do wait_for 30 "shoal-$i sees 4 members alive" members_seen "shoal-$i" 4; done

step "restart: shoal-1 stops (SIGTERM) and starts again with its volume, at a new pod IP"
kill -TERM "${PID[shoal-1]}"
if wait "${PID[shoal-1]}"; then ok "shoal-1 exited 0 on SIGTERM"; else fail "shoal-1 exited non-zero on SIGTERM"; fi
unset 'PID[shoal-1]'
reschedule shoal-1 127.0.0.22
start_pod shoal-1
wait_for 30 "shoal-1 serves again" healthz shoal-1
grep -q '^\[\[cluster.members\]\]' "$tmp/shoal-1/shoal.toml" && fail "the restarted shoal-1 lists founding members"
ok "the restarted shoal-1's configuration has seeds only: its layout is on its volume"
wait_for 30 "shoal-1 sees 4 members alive" members_seen shoal-1 4
# peer_is VIEWER NODE ADDR: VIEWER knows NODE's peer address as ADDR.
peer_is() { [ "$(status "$1" | jq -r --arg id "$2" '.members[] | select(.id == $id) | .peer')" = "$3" ]; }
for i in 0 2 3; do
    wait_for 30 "shoal-$i knows shoal-1's new address 127.0.0.22:$PEER_PORT" \
        peer_is "shoal-$i" shoal-1 "127.0.0.22:$PEER_PORT"
done
[ "$(curl -s "$(http shoal-1)/v1/kv/k1?r=1")" = v1 ] || fail "GET k1 r=1 via the restarted shoal-1"
ok "GET k1 via shoal-1 (r=1): its data survived the restart"

step "scale-down: \`shoal-k8s.sh leave\` on shoal-3"
t0=$SECONDS
if (run_script shoal-3 leave) >"$tmp/leave.out" 2>&1; then
    sed 's/^/  | /' "$tmp/leave.out"
else
    sed 's/^/  | /' "$tmp/leave.out"
    fail "shoal-k8s.sh leave failed"
fi
ok "shoal-k8s.sh leave returned after $((SECONDS - t0)) s"
deadline=$((SECONDS + 30))
while kill -0 "${PID[shoal-3]}" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
kill -0 "${PID[shoal-3]}" 2>/dev/null && fail "shoal-3 still runs 30 s after leaving"
if wait "${PID[shoal-3]}"; then ok "shoal-3's process exited 0 after leaving"; else fail "shoal-3 exited non-zero after leaving"; fi
unset 'PID[shoal-3]'
for i in 0 1 2; do wait_for 30 "shoal-$i: 3 members, shoal-3 no longer one" members_seen "shoal-$i" 3; done
in_layout shoal-0 shoal-3 && fail "shoal-3 is still in the layout"
# Kubernetes restarts the container until the scale-down removes the pod.
start_pod shoal-3
wait_for 30 "shoal-3, restarted after leaving (as Kubernetes would), serves" healthz shoal-3
sleep 2
in_layout shoal-0 shoal-3 && fail "the restarted shoal-3 is back in the layout"
[ "$(status shoal-3 | jq -r '.members[] | select(.id == "shoal-3") | .admin_state')" = left ] ||
    fail "the restarted shoal-3 does not see itself as left: $(status shoal-3 | jq -c '.members')"
[ "$(status shoal-3 | jq '[.members[] | select(.id == "shoal-3") | .partitions_replicated] | first')" = 0 ] ||
    fail "the restarted shoal-3 owns partitions"
ok "the restarted shoal-3 stays out of the layout (admin state left, no partitions)"
kill -TERM "${PID[shoal-3]}"
wait "${PID[shoal-3]}" || true
unset 'PID[shoal-3]'
[ "$(curl -s "$(http shoal-0)/v1/kv/k1?r=3")" = v1 ] || fail "GET k1 r=3 after the scale-down"
ok "GET k1 via shoal-0 (r=3) after the scale-down: v1"

# At its old IP: a node with an empty volume at a new IP is not heard by the others (its SWIM
# incarnation restarts at 1 and they answer its old address; docs/operations.md, "Kubernetes").
step "lost volume: shoal-2 comes back with an empty volume; it must not found a new cluster"
kill -TERM "${PID[shoal-2]}"
wait "${PID[shoal-2]}" || true
unset 'PID[shoal-2]'
rm -rf "$tmp/shoal-2/data"
: >"$tmp/shoal-2/log"
start_pod shoal-2
wait_for 30 "shoal-2 serves again" healthz shoal-2
grep -q "shoal-0 already serves a cluster layout" "$tmp/shoal-2/log" ||
    fail "shoal-2 did not notice the existing cluster: $(head -n 5 "$tmp/shoal-2/log")"
grep -q '^\[\[cluster.members\]\]' "$tmp/shoal-2/shoal.toml" && fail "shoal-2 founded again"
ok "shoal-2 found shoal-0's layout and started with seeds only"
# Its SWIM incarnation was on the lost volume too, so it starts again at 1, which the others may
# already hold as dead: it is seen alive once it learns that and refutes it, which can take
# until the next push/pull (swim.push_pull_interval_ms, 30 s).
wait_for 60 "shoal-2 is a member with 3 members alive" members_seen shoal-2 3
[ "$(status shoal-2 | jq .layout.epoch)" = "$(status shoal-0 | jq .layout.epoch)" ] || fail "shoal-2's layout epoch differs from shoal-0's"
ok "shoal-2 holds the cluster's current layout (epoch $(status shoal-0 | jq .layout.epoch))"
wait_for 60 "anti-entropy refilled shoal-2 (its trees equal shoal-0's)" trees_equal shoal-0 shoal-2
