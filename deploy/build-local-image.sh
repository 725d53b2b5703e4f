#!/usr/bin/env bash
# Build a Shoal container image with no registry and no base image: assemble a root
# filesystem from an already built `shoal` binary and the shared libraries it links (ldd),
# and `docker import` it. This is how the tests get an image on a Docker engine that cannot
# pull anything; users with a registry build deploy/Dockerfile instead (same layout, same user,
# same ports, volume and health check).
#
#   deploy/build-local-image.sh                     # -> shoal:local
#   SHOAL_BIN=path/to/shoal SHOAL_IMAGE=shoal:dev deploy/build-local-image.sh
#   SHOAL_STRIP=0 ...                               # keep the binary's debug info
#
# The root filesystem holds:
#   /usr/local/bin/shoal      the binary, and every library `ldd` lists for it, the loader included
#   /usr/bin/curl             for the /healthz health check (shoal has no health-check subcommand)
#   /bin/sh, /usr/bin/getent  a shell for one-shot helpers (the compose certificate init) and
#                             name lookups when debugging; each with its libraries
#   /etc/passwd, /etc/group   root and the non-root user `shoal` (uid and gid 10001)
#   /var/lib/shoal            the data volume, owned by shoal
#   /etc/shoal/certs          where certificates are mounted, owned by shoal
#   /tmp                      mode 1777
# Nothing here needs root: ownership is set inside the tar archive.
set -euo pipefail

TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
BIN="${SHOAL_BIN:-$TARGET_DIR/debug/shoal}"
IMAGE="${SHOAL_IMAGE:-shoal:local}"
SHOAL_UID=10001

die() {
    echo "build-local-image: $*" >&2
    exit 1
}

[ -x "$BIN" ] || die "no shoal binary at $BIN (build it first, or set SHOAL_BIN)"
for tool in docker ldd tar; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
CURL="$(command -v curl || true)"
SH="$(readlink -f /bin/sh)"
GETENT="$(command -v getent || true)"
[ -n "$CURL" ] || die "curl is not installed on this machine; the image's health check copies it"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root"

# copy_with_libs SRC DEST: the executable, then every library ldd resolves for it (and the
# dynamic loader), each at the path ldd printed, symlinks followed.
copy_with_libs() {
    local src="$1" dest="$2"
    if ldd "$src" | grep -q "not found"; then
        die "ldd cannot resolve every library of $src: $(ldd "$src" | grep "not found" | tr -s ' \t' ' ')"
    fi
    install -D -m 0755 "$src" "$root$dest"
    local lib
    # "libx.so => /path/libx.so (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
    # linux-vdso has no file.
    while read -r lib; do
        [ -n "$lib" ] || continue
        if [ ! -e "$root$lib" ]; then
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        fi
    done < <(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

copy_with_libs "$BIN" /usr/local/bin/shoal
# The dev build carries ~400 MB of debug info; symbols stay, so backtraces still name functions.
if [ "${SHOAL_STRIP:-1}" = 1 ] && command -v strip >/dev/null; then
    strip --strip-debug "$root/usr/local/bin/shoal"
fi
copy_with_libs "$CURL" /usr/bin/curl
copy_with_libs "$SH" /bin/sh
if [ -n "$GETENT" ]; then copy_with_libs "$GETENT" /usr/bin/getent; fi

mkdir -p "$root/etc" "$root/tmp" "$root/var/lib/shoal" "$root/etc/shoal/certs"
chmod 1777 "$root/tmp"
chmod 0750 "$root/var/lib/shoal" "$root/etc/shoal/certs"
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
shoal:x:$SHOAL_UID:$SHOAL_UID:Shoal:/var/lib/shoal:/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
shoal:x:$SHOAL_UID:
EOF
# Name lookups (getent, and anything else that resolves): Docker mounts /etc/hosts and
# /etc/resolv.conf; glibc's files and dns backends are part of libc.so.6 since 2.34.
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"

# Everything owned by root, except the two directories the shoal user writes to. A named
# volume mounted on them starts with this ownership.
tar -C "$root" --numeric-owner --owner=0 --group=0 \
    --exclude=./var/lib/shoal --exclude=./etc/shoal/certs -cf "$stage/rootfs.tar" .
tar -C "$root" --numeric-owner --owner="$SHOAL_UID" --group="$SHOAL_UID" --no-recursion \
    -rf "$stage/rootfs.tar" ./var/lib/shoal ./etc/shoal/certs

# The same metadata as deploy/Dockerfile's runtime stage.
previous="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
docker import \
    --change "USER 10001:10001" \
    --change "WORKDIR /var/lib/shoal" \
    --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" \
    --change "VOLUME /var/lib/shoal" \
    --change "EXPOSE 8080/tcp 9080/udp 7080/udp" \
    --change 'HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]' \
    --change 'ENTRYPOINT ["/usr/local/bin/shoal"]' \
    --change 'CMD ["serve", "--config", "/etc/shoal/shoal.toml"]' \
    "$stage/rootfs.tar" "$IMAGE" >/dev/null
# The image this one replaces, now untagged (kept if a container still uses it).
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
fi

size="$(docker image inspect "$IMAGE" --format '{{.Size}}')"
echo "built $IMAGE from $BIN ($(( size / 1000000 )) MB, $(tar -tf "$stage/rootfs.tar" | grep -c '\.so') shared libraries)"
