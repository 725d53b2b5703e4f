#!/usr/bin/env bash
# Create the cluster CA, the context secret and node certificates for the StatefulSet, and write
# them as the Secret `shoal-certs` that statefulset.yaml mounts.
#
#   deploy/kubernetes/make-certs-secret.sh DIR [NODES]
#
# DIR keeps the CA (ca.pem, ca.key) and every certificate; run the script again with a larger
# NODES to add certificates for pods a scale-up will create (existing ones are kept). It
# writes DIR/shoal-certs.secret.yaml: apply it with `kubectl apply -f`. The Secret carries
# ca.pem, cluster.secret and shoal-I.pem/.key for I < NODES (default 5, room for growth);
# never ca.key, which stays in DIR: keep DIR somewhere safe.
#
# Uses `shoal` from SHOAL_BIN or PATH.
set -euo pipefail

DIR="${1:?usage: make-certs-secret.sh DIR [NODES]}"
NODES="${2:-5}"
STS="${SHOAL_STATEFULSET:-shoal}"
SHOAL="${SHOAL_BIN:-$(command -v shoal || true)}"
[ -x "$SHOAL" ] || {
    echo "make-certs-secret: no shoal binary (set SHOAL_BIN)" >&2
    exit 1
}
mkdir -p "$DIR"
if [ ! -f "$DIR/ca.pem" ]; then
    "$SHOAL" cert init --dir "$DIR" --cluster-name "$STS"
fi
i=0
while [ "$i" -lt "$NODES" ]; do
    id="$STS-$i"
    if [ ! -f "$DIR/$id.pem" ]; then
        "$SHOAL" cert node --dir "$DIR" --id "$id" --host "$id.$STS-peer" >/dev/null
    fi
    i=$((i + 1))
done

b64() { base64 -w0 <"$1"; }
out="$DIR/shoal-certs.secret.yaml"
(
    umask 077
    {
        echo "# Written by make-certs-secret.sh: the CA certificate, context secret and node"
        echo "# certificates for pods $STS-0 .. $STS-$((NODES - 1)). Contains private keys."
        echo "apiVersion: v1"
        echo "kind: Secret"
        echo "metadata:"
        echo "  name: shoal-certs"
        echo "  labels:"
        echo "    app.kubernetes.io/name: shoal"
        echo "type: Opaque"
        echo "data:"
        echo "  ca.pem: $(b64 "$DIR/ca.pem")"
        echo "  cluster.secret: $(b64 "$DIR/cluster.secret")"
        i=0
        while [ "$i" -lt "$NODES" ]; do
            echo "  $STS-$i.pem: $(b64 "$DIR/$STS-$i.pem")"
            echo "  $STS-$i.key: $(b64 "$DIR/$STS-$i.key")"
            i=$((i + 1))
        done
    } >"$out"
)
echo "wrote $out (certificates for $STS-0 .. $STS-$((NODES - 1))); the CA key stays in $DIR"
