#!/usr/bin/env bash
# Check the Kubernetes manifests against the API's OpenAPI schemas, offline, with
# kubernetes-validate (PyPI; it ships the schemas of every Kubernetes release). --strict
# refuses fields the schema does not know, so a misspelt or misplaced key fails too.
#
#   deploy/kubernetes/validate.sh            # against K8S_VERSIONS (default: 1.29.0 1.35.0)
#
# Installs the tool into a virtualenv ($SHOAL_DEPLOY_VENV, default ~/.cache/shoal-deploy-venv)
# when it is missing. With a shoal binary (SHOAL_BIN, or the dev build), it also validates a
# Secret written by make-certs-secret.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
VENV="${SHOAL_DEPLOY_VENV:-$HOME/.cache/shoal-deploy-venv}"
TOOL_VERSION=1.35.0
K8S_VERSIONS="${K8S_VERSIONS:-1.29.0 1.35.0}"
TOOL="$VENV/bin/kubernetes-validate"

if ! "$TOOL" --version 2>/dev/null | grep -q "$TOOL_VERSION"; then
    echo "installing kubernetes-validate $TOOL_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "kubernetes-validate==$TOOL_VERSION"
fi

files=(configmap.yaml service-peer.yaml service-client.yaml statefulset.yaml pdb.yaml)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

BIN="${SHOAL_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}"
if [ -x "$BIN" ]; then
    SHOAL_BIN="$BIN" "$here/make-certs-secret.sh" "$tmp/certs" 4 >/dev/null
    cp "$tmp/certs/shoal-certs.secret.yaml" "$tmp/secret.yaml"
    files+=("$tmp/secret.yaml")
else
    echo "no shoal binary at $BIN: not validating a generated Secret"
fi

# Every resource in kustomization.yaml is validated, and nothing else is listed there.
listed="$(sed -n 's/^  - \(.*\.yaml\)$/\1/p' "$here/kustomization.yaml" | sort | tr '\n' ' ')"
expected="$(printf '%s\n' configmap.yaml service-peer.yaml service-client.yaml statefulset.yaml pdb.yaml | sort | tr '\n' ' ')"
if [ "$listed" != "$expected" ]; then
    echo "kustomization.yaml lists: $listed; expected: $expected" >&2
    exit 1
fi

cd "$here"
status=0
for v in $K8S_VERSIONS; do
    echo "== kubernetes-validate --strict -k $v"
    "$TOOL" --strict -k "$v" "${files[@]}" || status=1
done

# The ConfigMap's shoal-k8s.sh must be valid POSIX sh (dash is /bin/sh in the image).
"$VENV/bin/python" - "$here/configmap.yaml" "$tmp" <<'EOF'
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
for name in ("shoal-k8s.sh", "shoal.toml"):
    open(f"{sys.argv[2]}/{name}", "w").write(cm["data"][name])
EOF
if command -v dash >/dev/null; then
    if dash -n "$tmp/shoal-k8s.sh"; then echo "configmap.yaml: shoal-k8s.sh parses under dash"; else status=1; fi
fi
if command -v shellcheck >/dev/null; then
    if shellcheck -s sh "$tmp/shoal-k8s.sh"; then echo "configmap.yaml: shoal-k8s.sh passes shellcheck"; else status=1; fi
fi
# (tomllib: Python 3.11 and later.)
if "$VENV/bin/python" -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$tmp/shoal.toml"; then
    echo "configmap.yaml: shoal.toml is valid TOML"
else
    status=1
fi

if [ "$status" -ne 0 ]; then
    echo "kubernetes manifests: INVALID" >&2
    exit 1
fi
echo "kubernetes manifests: valid"
