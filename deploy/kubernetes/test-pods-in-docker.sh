#!/usr/bin/env bash
# The StatefulSet's pods, approximated with Docker containers of the deploy/Dockerfile image:
# the container command, environment, user (10001), read-only root filesystem with a writable
# /run/shoal, ConfigMap files and Secret-like certificates (root-owned, group 10001, mode 0440)
# are those of statefulset.yaml, and Docker's DNS answers for the headless Service through
# network aliases shoal-N.shoal-peer. It checks that
#   1. shoal-0..2 found one cluster, finding each other by DNS;
#   2. shoal-1, recreated at another IP with its volume (a rescheduled pod), comes back and the
#      others learn its new address;
#   3. shoal-3 (a scale-up) joins with `shoal-k8s.sh join`.
# SHOAL_IMAGE must be an image built from deploy/Dockerfile (test-dockerfile-runtime.sh builds
# one): the script needs the Debian userland (sh, getent, curl, coreutils). Without a Docker
# engine it prints SKIPPED.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
. "$here/../check-lib.sh"
started=$SECONDS
IMAGE="${SHOAL_IMAGE:?set SHOAL_IMAGE to an image built from deploy/Dockerfile}"
BIN="${SHOAL_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}"
NET=shoalk8s-net
SUBNET_PREFIX=172.30.54

if ! docker info >/dev/null 2>&1; then
    echo "SKIPPED: no docker engine (\`docker info\` failed): the pods were not run"
    exit 0
fi
[ -x "$BIN" ] || {
    echo "test-pods-in-docker: no shoal binary at $BIN (set SHOAL_BIN)" >&2
    exit 1
}

tmp="$(mktemp -d)"
PASSED=0
FAILED=0
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        FAILED=1
        for i in 0 1 2 3; do
            docker logs "shoalk8s-$i" >/dev/null 2>&1 || continue
            echo "--- shoalk8s-$i"
            docker logs --tail 12 "shoalk8s-$i" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
        done
    fi
    for i in 0 1 2 3; do docker rm -f "shoalk8s-$i" >/dev/null 2>&1 || true; done
    docker network rm "$NET" >/dev/null 2>&1 || true
    for i in 0 1 2 3; do docker volume rm "shoalk8s-data-$i" >/dev/null 2>&1 || true; done
    rm -rf "$tmp"
    echo
    echo "k8s-pods-in-docker: $PASSED passed, $FAILED failed ($((SECONDS - started)) s)"
}
trap cleanup EXIT

# The ConfigMap's files, exactly as shipped.
mkdir -p "$tmp/conf" "$tmp/certs"
configmap_file "$here/configmap.yaml" shoal-k8s.sh >"$tmp/conf/shoal-k8s.sh"
configmap_file "$here/configmap.yaml" shoal.toml >"$tmp/conf/shoal.toml"
# The Secret: what make-certs-secret.sh puts in it, with the modes the pod sees (0440, group
# fsGroup 10001).
"$BIN" cert init --dir "$tmp/ca" --cluster-name shoal >/dev/null
for i in 0 1 2 3; do "$BIN" cert node --dir "$tmp/ca" --id "shoal-$i" --host "shoal-$i.shoal-peer" >/dev/null; done
cp "$tmp/ca/ca.pem" "$tmp/ca/cluster.secret" "$tmp/ca"/shoal-*.pem "$tmp/ca"/shoal-*.key "$tmp/certs/"
chmod 0755 "$tmp" "$tmp/conf" "$tmp/certs"
chmod 0644 "$tmp/conf"/*
chmod 0440 "$tmp/certs"/*
chgrp 10001 "$tmp/certs"/* 2>/dev/null || chmod 0444 "$tmp/certs"/*

docker rm -f shoalk8s-0 shoalk8s-1 shoalk8s-2 shoalk8s-3 >/dev/null 2>&1 || true
docker network rm "$NET" >/dev/null 2>&1 || true
docker network create --internal --subnet "$SUBNET_PREFIX.0/24" "$NET" >/dev/null

# start_pod ORDINAL IP: a container shaped like the StatefulSet's pod, running its command.
start_pod() {
    local i=$1 ip=$2
    docker rm -f "shoalk8s-$i" >/dev/null 2>&1 || true
    docker create --name "shoalk8s-$i" --hostname "shoal-$i" \
        --network "$NET" --ip "$ip" --network-alias "shoal-$i.shoal-peer" \
        --user 10001:10001 --read-only --tmpfs /run/shoal:uid=10001,gid=10001,mode=0700 \
        -e "POD_NAME=shoal-$i" -e "POD_IP=$ip" -e SHOAL_PEER_SERVICE=shoal-peer -e SHOAL_FOUNDING=3 \
        -v "shoalk8s-data-$i:/var/lib/shoal" \
        -v "$tmp/conf:/etc/shoal/conf:ro" -v "$tmp/certs:/etc/shoal/certs:ro" \
        --stop-timeout 60 --entrypoint /bin/sh \
        "$IMAGE" /etc/shoal/conf/shoal-k8s.sh start >/dev/null
    docker start "shoalk8s-$i" >/dev/null
}
in_pod() { docker exec "shoalk8s-$1" "${@:2}"; }
status() { in_pod "$1" curl -s --max-time 3 http://127.0.0.1:8080/v1/admin/status; }
serves() { in_pod "$1" curl -fs -o /dev/null --max-time 2 http://127.0.0.1:8080/healthz 2>/dev/null; }
members_alive() {
    [ "$(status "$1" 2>/dev/null | jq '[.members[] | select(.admin_state == "member" and .liveness == "alive")] | length' 2>/dev/null)" = "$2" ]
}
# peer_is VIEWER NODE ADDR: VIEWER knows NODE's peer address as ADDR.
peer_is() { [ "$(status "$1" | jq -r --arg id "$2" '.members[] | select(.id == $id) | .peer')" = "$3" ]; }

step "founding: shoal-0, shoal-1, shoal-2 start together and find each other by DNS"
for i in 0 1 2; do start_pod "$i" "$SUBNET_PREFIX.1$i"; done
for i in 0 1 2; do wait_for 60 "shoal-$i serves" serves "$i"; done
for i in 0 1 2; do
    log="$(docker logs "shoalk8s-$i" 2>&1)"
    grep -Eq "founding the cluster with shoal-0=$SUBNET_PREFIX.10 shoal-1=$SUBNET_PREFIX.11 shoal-2=$SUBNET_PREFIX.12|already serves a cluster layout" <<<"$log" ||
        fail "shoal-$i neither founded with the three pod IPs nor joined: $(head -n 3 <<<"$log")"
done
ok "each pod resolved the others through DNS (shoal-N.shoal-peer) and founded with their pod IPs"
for i in 0 1 2; do wait_for 30 "shoal-$i sees 3 members alive" members_alive "$i" 3; done
[ "$(in_pod 0 curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary v1 'http://127.0.0.1:8080/v1/kv/k1?w=3')" = 204 ] ||
    fail "PUT k1 w=3 via shoal-0"
[ "$(in_pod 2 curl -s 'http://127.0.0.1:8080/v1/kv/k1?r=3')" = v1 ] || fail "GET k1 r=3 via shoal-2"
ok "PUT k1 via shoal-0 (w=3), GET via shoal-2 (r=3)"
[ "$(in_pod 0 sh -c 'touch /etc/x 2>/dev/null && echo writable || echo read-only')" = read-only ] ||
    fail "the root filesystem is writable"
ok "the pods run as uid $(in_pod 0 id -u) on a read-only root filesystem"

step "rescheduled: shoal-1 is recreated at another IP with its volume"
t0=$SECONDS
docker stop "shoalk8s-1" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' shoalk8s-1)" = 0 ] || fail "shoal-1 did not exit 0 on SIGTERM"
ok "shoal-1 exited 0 on SIGTERM ($((SECONDS - t0)) s)"
start_pod 1 "$SUBNET_PREFIX.21"
wait_for 60 "shoal-1 serves again at $SUBNET_PREFIX.21" serves 1
wait_for 30 "shoal-1 sees 3 members alive" members_alive 1 3
for i in 0 2; do
    wait_for 30 "shoal-$i knows shoal-1 at $SUBNET_PREFIX.21:9080" peer_is "$i" shoal-1 "$SUBNET_PREFIX.21:9080"
done
[ "$(in_pod 1 curl -s 'http://127.0.0.1:8080/v1/kv/k1?r=1')" = v1 ] || fail "GET k1 r=1 via the rescheduled shoal-1"
ok "GET k1 via shoal-1 (r=1): its volume came along"

step "scale-up: shoal-3 starts, then \`shoal-k8s.sh join\`"
start_pod 3 "$SUBNET_PREFIX.13"
wait_for 60 "shoal-3 serves" serves 3
out="$(in_pod 3 sh /etc/shoal/conf/shoal-k8s.sh join 2>&1)" || fail "shoal-k8s.sh join: $out"
while IFS= read -r line; do echo "  | $line"; done <<<"$out"
ok "shoal-k8s.sh join in the pod"
for i in 0 1 2 3; do wait_for 30 "shoal-$i sees 4 members alive" members_alive "$i" 4; done
