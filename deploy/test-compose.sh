#!/usr/bin/env bash
# The compose deployment, tested for real on a Docker engine: builds the image from the local
# binary (deploy/build-local-image.sh), starts deploy/compose/docker-compose.yml, and checks
#   1. writes and reads through every node;
#   2. `docker stop` of one node: SIGTERM stops it cleanly, w=2 writes go on, w=3 answers 503;
#   3. `docker start`: the node catches up on what it missed (anti-entropy; a 3-node cluster
#      with n=3 has no node to hold hints);
#   4. `docker network disconnect` of one node from the peer network (a partition), writes on
#      both sides, reconnect: the replicas converge.
# Every wait is bounded; the cluster and its volumes are removed on exit, pass or fail.
# Without a Docker engine it prints SKIPPED and exits 0.
#
# Environment: SHOAL_BIN (the binary to package; default $CARGO_TARGET_DIR/debug/shoal),
# SHOAL_IMAGE (default shoal:local), SHOAL_SKIP_IMAGE_BUILD=1 (use an existing image),
# SHOAL_N{1,2,3}_HTTP (host ports, default 18080-18082), SHOAL_COMPOSE_PROJECT (shoaltest),
# SHOAL_PARTITION_SECS (35: how long the partition lasts; past the 30 s QUIC idle timeout, so that
# only anti-entropy can repair), SHOAL_KEEP=1 (leave the cluster running on exit, for debugging).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
. "$here/check-lib.sh"
started=$SECONDS

if ! docker info >/dev/null 2>&1; then
    echo "SKIPPED: no docker engine (\`docker info\` failed): the compose deployment test did not run"
    exit 0
fi
for tool in curl jq; do
    command -v "$tool" >/dev/null || {
        echo "test-compose: $tool is required" >&2
        exit 1
    }
done
if command -v docker-compose >/dev/null 2>&1; then
    DC_BIN=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    DC_BIN=(docker compose)
else
    echo "test-compose: a Docker engine is present but neither docker-compose nor \`docker compose\` is" >&2
    exit 1
fi

export SHOAL_IMAGE="${SHOAL_IMAGE:-shoal:local}"
export SHOAL_N1_HTTP="${SHOAL_N1_HTTP:-18080}" SHOAL_N2_HTTP="${SHOAL_N2_HTTP:-18081}" SHOAL_N3_HTTP="${SHOAL_N3_HTTP:-18082}"
# A short anti-entropy interval, so that a returning node is repaired within seconds.
export SHOAL_AAE_INTERVAL_MS="${SHOAL_AAE_INTERVAL_MS:-3000}"
PROJECT="${SHOAL_COMPOSE_PROJECT:-shoaltest}"
PARTITION_SECS="${SHOAL_PARTITION_SECS:-35}"
PEER_NET="${PROJECT}_peer"
N3_PEER_IP=172.30.53.13
DC=("${DC_BIN[@]}" -p "$PROJECT" -f "$here/compose/docker-compose.yml")
port() { case $1 in n1) echo "$SHOAL_N1_HTTP" ;; n2) echo "$SHOAL_N2_HTTP" ;; n3) echo "$SHOAL_N3_HTTP" ;; esac; }

PASSED=0
FAILED=0
tmp="$(mktemp -d)"
cleanup() {
    local rc=$?
    if [ "$FAILED" -ne 0 ] || [ "$rc" -ne 0 ]; then
        echo
        echo "== state at failure"
        "${DC[@]}" ps 2>&1 || true
        "${DC[@]}" logs --no-color --tail=40 2>&1 | tail -n 150 || true
    fi
    if [ "${SHOAL_KEEP:-0}" = 1 ]; then
        echo "SHOAL_KEEP=1: leaving project $PROJECT running (${DC[*]} down -v to remove it)"
    else
        "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    if [ "$FAILED" -eq 0 ] && [ "$rc" -ne 0 ]; then FAILED=1; fi
    echo
    echo "compose: $PASSED passed, $FAILED failed ($((SECONDS - started)) s)"
    if [ "$FAILED" -ne 0 ]; then exit 1; fi
    exit "$rc"
}
trap cleanup EXIT


# req METHOD NODE PATH [BODY [CONTEXT]]: sets STATUS, BODY, HEADERS (curl's 000 when nothing
# answered).
req() {
    local method=$1 node=$2 path=$3
    local args=(-s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 15 -X "$method")
    if [ $# -ge 4 ]; then args+=(--data-binary "$4"); fi
    if [ $# -ge 5 ]; then args+=(-H "X-Shoal-Context: $5"); fi
    : >"$tmp/body"
    : >"$tmp/headers"
    STATUS="$(curl "${args[@]}" "http://127.0.0.1:$(port "$node")$path" 2>/dev/null)" || STATUS="${STATUS:-000}"
    BODY="$(cat "$tmp/body")"
    HEADERS="$(tr -d '\r' <"$tmp/headers")"
}
header() { printf '%s\n' "$HEADERS" | awk -v h="$1" -F': ' 'tolower($1) == tolower(h) { print $2 }'; }

# expect_put NODE KEY VALUE QUERY: a write that must be acknowledged (204).
expect_put() {
    req PUT "$1" "/v1/kv/$2?$4" "$3"
    [ "$STATUS" = 204 ] || fail "PUT $2 via $1 ($4): expected 204, got $STATUS $BODY"
    ok "PUT $2=$3 via $1 ($4): 204, acks $(header x-shoal-acks)"
}
# expect_get NODE KEY VALUE QUERY: a read that must answer 200 with VALUE.
expect_get() {
    req GET "$1" "/v1/kv/$2?$4"
    if [ "$STATUS" != 200 ] || [ "$BODY" != "$3" ]; then
        fail "GET $2 via $1 ($4): expected 200 \"$3\", got $STATUS \"$BODY\""
    fi
    ok "GET $2 via $1 ($4): 200 \"$3\""
}


healthz() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(port "$1")/healthz")" = 200 ]; }
docker_healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$(cid "$1")" 2>/dev/null)" = healthy ]; }
cid() { "${DC[@]}" ps -q "$1"; }
# alive_seen_by NODE COUNT: NODE's SWIM sees COUNT members alive (itself included).
alive_seen_by() {
    local n
    n="$(curl -s --max-time 3 "http://127.0.0.1:$(port "$1")/v1/admin/status" |
        jq '[.members[] | select(.liveness == "alive" and .admin_state == "member")] | length' 2>/dev/null)" || return 1
    [ "$n" = "$2" ]
}
# Anti-entropy trees of a node as "partition/n root keys" lines: equal on two replicas when
# they hold the same data. No reads involved, so no read repair either.
trees() {
    curl -s --max-time 5 "http://127.0.0.1:$(port "$1")/v1/admin/aae" |
        jq -r '.trees[] | select(.keys > 0 or .tombstones > 0) | "\(.partition)/\(.n) \(.root) \(.keys)"' | sort
}
trees_equal() {
    local a b
    a="$(trees "$1")" && b="$(trees "$2")" || return 1
    [ -n "$a" ] && [ "$a" = "$b" ]
}
keys_held() { trees "$1" | awk '{ s += $3 } END { print s + 0 }'; }
# liveness VIEWER NODE: what VIEWER's SWIM says of NODE.
liveness() {
    curl -s --max-time 3 "http://127.0.0.1:$(port "$1")/v1/admin/status" |
        jq -r --arg id "$2" '.members[] | select(.id == $id) | .liveness' 2>/dev/null
}
is_dead() { [ "$(liveness "$1" "$2")" = dead ]; }
# repaired NODE DIRECTION: shoal_aae_repaired_keys_total{direction} on NODE.
repaired() {
    curl -s --max-time 3 "http://127.0.0.1:$(port "$1")/metrics" |
        awk -v d="$2" '$1 == "shoal_aae_repaired_keys_total{direction=\"" d "\"}" { v = $2 } END { print v + 0 }'
}
repaired_all() { echo $(($(repaired n1 pulled) + $(repaired n2 pulled) + $(repaired n3 pulled) + $(repaired n1 pushed) + $(repaired n2 pushed) + $(repaired n3 pushed))); }
# Keys in a stopped node's data volume, read from its disk with `shoal inspect`.
inspect_stopped() {
    docker run --rm --network none -v "${PROJECT}_$1-data:/var/lib/shoal" \
        --entrypoint /usr/local/bin/shoal "$SHOAL_IMAGE" inspect --data-dir /var/lib/shoal
}

for n in n1 n2 n3; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$(port "$n")/"; then
        echo "test-compose: something already answers on 127.0.0.1:$(port "$n"); set SHOAL_N1_HTTP..SHOAL_N3_HTTP" >&2
        exit 1
    fi
done

step "image"
if [ "${SHOAL_SKIP_IMAGE_BUILD:-0}" = 1 ]; then
    docker image inspect "$SHOAL_IMAGE" >/dev/null || fail "SHOAL_SKIP_IMAGE_BUILD=1 but there is no image $SHOAL_IMAGE"
    ok "using the existing image $SHOAL_IMAGE"
else
    "$here/build-local-image.sh"
    ok "built $SHOAL_IMAGE"
fi
[ "$(docker image inspect -f '{{.Config.User}}' "$SHOAL_IMAGE")" = "10001:10001" ] ||
    fail "the image does not run as the non-root user 10001"
ok "the image runs as uid 10001, not root"

step "compose up (${DC_BIN[*]}, project $PROJECT)"
"${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
"${DC[@]}" up -d 2>&1 | sed 's/^/  | /'
[ "$(docker inspect -f '{{.State.ExitCode}}' "$(cid certs)")" = 0 ] || fail "the certs init service failed"
ok "certs init service exited 0"
for n in n1 n2 n3; do wait_for 60 "$n answers /healthz on 127.0.0.1:$(port "$n")" healthz "$n"; done
for n in n1 n2 n3; do wait_for 60 "$n: docker reports the image HEALTHCHECK healthy" docker_healthy "$n"; done
for n in n1 n2 n3; do wait_for 30 "$n sees 3 members alive" alive_seen_by "$n" 3; done
files="$(docker exec "$(cid n1)" sh -c 'for f in ca.pem cluster.secret n1.pem n1.key ca.key; do
    if [ -e "/etc/shoal/certs/$f" ]; then echo "$f:yes"; else echo "$f:no"; fi; done' | tr '\n' ' ')"
[ "$files" = "ca.pem:yes cluster.secret:yes n1.pem:yes n1.key:yes ca.key:no " ] ||
    fail "certificates on n1: expected ca.pem, cluster.secret, n1.pem, n1.key and no ca.key; found $files"
ok "n1 has its certificate, key, the CA certificate and the secret, and not the CA key"

step "write and read through each node"
for n in n1 n2 n3; do expect_put "$n" "via-$n" "value-from-$n" "w=3"; done
for n in n1 n2 n3; do
    for m in n1 n2 n3; do expect_get "$m" "via-$n" "value-from-$n" "r=2"; done
done

step "docker stop n3: writes with w=2 continue, w=3 cannot"
t0=$SECONDS
docker stop -t 60 "$(cid n3)" >/dev/null
code="$(docker inspect -f '{{.State.ExitCode}}' "$(cid n3)")"
[ "$code" = 0 ] || fail "n3 exited with status $code on SIGTERM (137 would mean killed after the grace period)"
ok "n3 stopped on SIGTERM with status 0 in $((SECONDS - t0)) s"
healthz n3 && fail "n3 still answers after docker stop"
ok "n3 no longer answers"
for i in 1 2 3 4 5; do expect_put n1 "down-$i" "written-while-n3-down-$i" "w=2"; done
req PUT n2 "/v1/kv/down-w3?w=3&timeout_ms=2000" "x"
if [ "$STATUS" != 503 ] || [ "$(jq -r .error <<<"$BODY")" != quorum_not_reached ]; then
    fail "PUT w=3 with n3 down: expected 503 quorum_not_reached, got $STATUS $BODY"
fi
ok "PUT w=3 via n2: 503 quorum_not_reached ($(jq -c '{required, acked}' <<<"$BODY"))"
expect_get n2 down-1 written-while-n3-down-1 "r=2"
on_disk="$(inspect_stopped n3)"
grep -q '"key":"via-n1"' <<<"$on_disk" || fail "shoal inspect of n3's volume does not list via-n1: $on_disk"
missing="$(grep -c '"key":"down-' <<<"$on_disk" || true)"
[ "$missing" = 0 ] || fail "n3's volume already holds $missing down-* keys"
ok "n3's volume (shoal inspect) holds the earlier keys and none of the 5 it missed"

step "docker start n3: it catches up"
docker start "$(cid n3)" >/dev/null
wait_for 60 "n3 answers /healthz again" healthz n3
wait_for 60 "n3 sees 3 members alive" alive_seen_by n3 3
wait_for 60 "n1 sees n3 alive again" alive_seen_by n1 3
wait_for 120 "n3's Merkle trees equal n1's ($(keys_held n1) keys): n3 holds what it missed" trees_equal n1 n3
for i in 1 2 3 4 5; do expect_get n3 "down-$i" "written-while-n3-down-$i" "r=1"; done
# An exchange adds to the counters when it ends, which can be after the data has landed.
repaired_to_n3_reaches() { [ $(($(repaired n3 pulled) + $(repaired n1 pushed) + $(repaired n2 pushed))) -ge "$1" ]; }
wait_for 30 "anti-entropy counts at least the 5 keys n3 missed (pulled by n3 or pushed to it)" repaired_to_n3_reaches 5
ok "anti-entropy repaired n3: $(repaired n3 pulled) keys pulled by n3, $(($(repaired n1 pushed) + $(repaired n2 pushed))) pushed by n1 and n2 (no hints: every node is a replica)"

step "partition: docker network disconnect n3 from the peer network"
docker network disconnect "$PEER_NET" "$(cid n3)"
ok "n3 disconnected from $PEER_NET (its HTTP port stays published on the front network)"
req PUT n3 "/v1/kv/part-n3-w2?w=2&timeout_ms=2000" "x"
[ "$STATUS" = 503 ] || fail "PUT w=2 through the partitioned n3: expected 503, got $STATUS $BODY"
ok "PUT w=2 via n3: 503 (n3 reaches no other replica)"
# Cut off from every peer, n3's layout lease lapses (a second or two): it no longer answers
# alone, in case the others changed the layout without it (docs/architecture.md).
lease_lapsed() { req PUT n3 "/v1/kv/part-from-n3?w=1&timeout_ms=1000" "written-on-n3-side"; [ "$STATUS" = 503 ]; }
wait_for 30 "n3, cut off from every peer, stops acknowledging writes alone" lease_lapsed
case "$BODY" in *"layout lease lapsed"*) ;; *) fail "the 503 does not name the layout lease: $BODY" ;; esac
ok "PUT w=1 via n3: 503 naming the lapsed layout lease"
for i in 1 2 3 4 5; do expect_put n1 "part-$i" "written-during-partition-$i" "w=2&timeout_ms=1000"; done
req GET n2 "/v1/kv/via-n1?r=2"
ctx="$(header x-shoal-context)"
if [ "$STATUS" != 200 ] || [ -z "$ctx" ]; then fail "GET via-n1 via n2: expected 200 with a context, got $STATUS"; fi
req PUT n2 "/v1/kv/via-n1?w=2&timeout_ms=1000" "overwritten-during-partition" "$ctx"
[ "$STATUS" = 204 ] || fail "PUT via-n1 via n2 with the read's context: expected 204, got $STATUS $BODY"
ok "PUT via-n1=overwritten-during-partition via n2 with the context of a read (replaces the old value)"
req GET n3 "/v1/kv/part-1?r=1&timeout_ms=1000"
[ "$STATUS" = 503 ] || fail "GET part-1 via the partitioned n3 (r=1): expected 503, got $STATUS $BODY"
ok "GET part-1 via n3 (r=1): 503, n3 does not answer alone from a layout no peer has confirmed"
last_write=$SECONDS
wait_for 60 "n1's SWIM declares n3 dead" is_dead n1 n3
wait_for 60 "n3's SWIM declares n1 dead" is_dead n3 n1
# A replica write the coordinator gave up on is still in its QUIC stream, and QUIC would deliver
# it once the network heals, for as long as the connection lives (idle timeout 30 s). Holding
# the partition longer leaves anti-entropy as the only way the replicas can converge.
hold=$((PARTITION_SECS - (SECONDS - last_write)))
if [ "$hold" -gt 0 ]; then
    echo "  ..    holding the partition $hold s more ($PARTITION_SECS s in all: past the peers' QUIC idle timeout)"
    sleep "$hold"
fi
before="$(repaired_all)"

step "heal: docker network connect n3 again; the replicas converge"
docker network connect --ip "$N3_PEER_IP" "$PEER_NET" "$(cid n3)"
ok "n3 reconnected to $PEER_NET at $N3_PEER_IP"
wait_for 60 "n3 sees 3 members alive" alive_seen_by n3 3
wait_for 60 "n1 sees 3 members alive" alive_seen_by n1 3
wait_for 120 "n3's Merkle trees equal n1's: the replicas converged" trees_equal n1 n3
wait_for 60 "n2's Merkle trees equal n1's" trees_equal n1 n2
# At least 6 key copies: part-1..5 and via-n1 to n3 (part-from-n3, stored on n3 though not
# acknowledged, may go to n1 and n2 too).
repaired_since_reaches() { [ $(($(repaired_all) - $1)) -ge "$2" ]; }
wait_for 30 "anti-entropy counts at least 6 repaired copies since the heal" repaired_since_reaches "$before" 6
ok "anti-entropy repaired $(($(repaired_all) - before)) key copies after the heal"
for i in 1 2 3 4 5; do expect_get n3 "part-$i" "written-during-partition-$i" "r=1"; done
expect_get n3 via-n1 overwritten-during-partition "r=1"
