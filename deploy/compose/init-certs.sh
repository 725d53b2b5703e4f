#!/bin/sh
# One-shot `certs` service of docker-compose.yml: creates the cluster CA and the context
# secret (once), a certificate per node, and copies what the nodes need into the `certs`
# volume, which they mount read-only. The CA key stays in the `ca` volume, which only this
# service mounts. Runs as the image's shoal user; plain POSIX sh (the test image has no cp).
set -eu

CA=/var/lib/shoal          # the `ca` volume
OUT=/etc/shoal/certs       # the `certs` volume
NODES="${SHOAL_NODES:-n1 n2 n3}"
umask 077

if [ ! -f "$CA/ca.pem" ]; then
    shoal cert init --dir "$CA" --cluster-name shoal-compose
fi
for id in $NODES; do
    if [ ! -f "$CA/$id.pem" ]; then
        shoal cert node --dir "$CA" --id "$id" --host "$id"
    fi
done

# copy SRC DEST, with shell builtins only (PEM files and the secret are text).
copy() {
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "$line"
    done <"$1" >"$2"
}

copy "$CA/ca.pem" "$OUT/ca.pem"
copy "$CA/cluster.secret" "$OUT/cluster.secret"
for id in $NODES; do
    copy "$CA/$id.pem" "$OUT/$id.pem"
    copy "$CA/$id.key" "$OUT/$id.key"
done
echo "certificates for: $NODES"
