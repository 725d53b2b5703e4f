#!/usr/bin/env bash
# Builds the runtime stage of deploy/Dockerfile for real, on an engine that cannot pull images,
# and runs the compose test and kubernetes/test-pods-in-docker.sh on the result. The build stage (rust image, cargo build --release)
# is replaced by the already built binary; every line of the runtime stage is taken from
# deploy/Dockerfile as it is. The base image debian:bookworm-slim is made locally when missing:
# mmdebstrap assembles a minimal Debian bookworm with apt from the Debian archive and it is
# `docker import`ed under that name (and removed afterwards). The runtime stage's own
# `apt-get install` also fetches from the Debian archive, so this needs the network to it.
#
# Prints SKIPPED and exits 0 without a Docker engine, or without a base image and mmdebstrap.
# Environment: SHOAL_BIN, DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
BIN="${SHOAL_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE=debian:bookworm-slim
IMAGE=shoal:dockerfile-runtime

if ! docker info >/dev/null 2>&1; then
    echo "SKIPPED: no docker engine (\`docker info\` failed): the Dockerfile's runtime stage was not built"
    exit 0
fi
[ -x "$BIN" ] || {
    echo "test-dockerfile-runtime: no shoal binary at $BIN (set SHOAL_BIN)" >&2
    exit 1
}

tmp="$(mktemp -d)"
made_base=0
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    docker rmi "$IMAGE" >/dev/null 2>&1 || true
    # The legacy builder keeps the build stage as an untagged image.
    docker image ls -q --filter label=shoal.test=dockerfile-runtime-build | xargs -r docker rmi >/dev/null 2>&1 || true
    if [ "$made_base" = 1 ]; then docker rmi "$BASE" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    if ! command -v mmdebstrap >/dev/null; then
        echo "SKIPPED: no $BASE image and no mmdebstrap to make one (apt-get install mmdebstrap)"
        exit 0
    fi
    echo "== making $BASE with mmdebstrap (minimal Debian bookworm with apt, from $MIRROR)"
    t0=$SECONDS
    mmdebstrap --variant=apt --format=tar --quiet bookworm "$tmp/base.tar" "$MIRROR"
    docker import --change 'CMD ["bash"]' "$tmp/base.tar" "$BASE" >/dev/null
    made_base=1
    rm -f "$tmp/base.tar"
    echo "  ok    $BASE imported ($((SECONDS - t0)) s)"
fi

# The runtime stage, verbatim: from its FROM line to the end of deploy/Dockerfile.
mkdir -p "$tmp/ctx"
{
    echo "ARG DEBIAN_RELEASE=bookworm"
    echo "FROM scratch AS build"
    echo "LABEL shoal.test=dockerfile-runtime-build"
    echo "COPY shoal /out/shoal"
    sed -n '/^FROM debian:/,$p' "$here/Dockerfile"
} >"$tmp/ctx/Dockerfile"
grep -q '^FROM debian:' "$tmp/ctx/Dockerfile" || {
    echo "test-dockerfile-runtime: no runtime stage (FROM debian:...) in deploy/Dockerfile" >&2
    exit 1
}
cp "$BIN" "$tmp/ctx/shoal"
strip --strip-debug "$tmp/ctx/shoal" 2>/dev/null || true

echo "== docker build of deploy/Dockerfile's runtime stage"
t0=$SECONDS
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$tmp/ctx" >/dev/null 2>"$tmp/build.err" || {
    cat "$tmp/build.err" >&2
    exit 1
}
echo "  ok    built $IMAGE ($((SECONDS - t0)) s, $(($(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000)) MB)"
cfg="$(docker image inspect -f '{{json .Config}}' "$IMAGE")"
[ "$(jq -r .User <<<"$cfg")" = "10001:10001" ] || { echo "  FAIL  user: $(jq -r .User <<<"$cfg")" >&2; exit 1; }
[ "$(jq -c '.Volumes | keys' <<<"$cfg")" = '["/var/lib/shoal"]' ] || { echo "  FAIL  volumes" >&2; exit 1; }
[ "$(jq -c '.ExposedPorts | keys' <<<"$cfg")" = '["7080/udp","8080/tcp","9080/udp"]' ] || { echo "  FAIL  ports" >&2; exit 1; }
jq -e '.Healthcheck.Test | index("http://127.0.0.1:8080/healthz")' <<<"$cfg" >/dev/null || { echo "  FAIL  health check" >&2; exit 1; }
echo "  ok    runs as 10001:10001, volume /var/lib/shoal, ports 8080/tcp 9080/udp 7080/udp, /healthz health check"
out="$(docker run --rm --entrypoint /bin/sh "$IMAGE" -c 'id -un; shoal --version; ls -ld /var/lib/shoal /etc/shoal/certs | cut -d" " -f1,3')"
[ "$(tr '\n' ' ' <<<"$out")" = "shoal shoal 0.1.0 drwxr-x--- shoal drwxr-x--- shoal " ] || {
    echo "  FAIL  inside the image: $out" >&2
    exit 1
}
echo "  ok    inside: user shoal, shoal --version works, /var/lib/shoal and /etc/shoal/certs owned by shoal (0750)"

echo "== the compose test on $IMAGE"
SHOAL_SKIP_IMAGE_BUILD=1 SHOAL_IMAGE="$IMAGE" "$here/test-compose.sh"

echo "== the StatefulSet's pods, as containers of $IMAGE"
SHOAL_IMAGE="$IMAGE" "$here/kubernetes/test-pods-in-docker.sh"
