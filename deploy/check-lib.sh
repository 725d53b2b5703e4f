# shellcheck shell=bash disable=SC2154,SC2034
# What every deploy/ check script shares: step headings, ok/fail lines counted into PASSED and
# FAILED, and bounded polling. Source it after setting `started=$SECONDS`, PASSED and FAILED.
# WAIT_POLL_SECS sets how often wait_for polls (default 1 s).

step() {
    echo
    echo "== $* [$((SECONDS - started)) s]"
}
ok() {
    PASSED=$((PASSED + 1))
    echo "  ok    $*"
}
fail() {
    FAILED=1
    echo "  FAIL  $*" >&2
    exit 1
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds, failing the check
# if it has not within SECONDS.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit)) t0=$SECONDS
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within $limit s"
        sleep "${WAIT_POLL_SECS:-1}"
    done
    ok "$what ($((SECONDS - t0)) s)"
}

# configmap_file MANIFEST KEY: prints the file KEY of the ConfigMap in MANIFEST as a pod would
# see it (the block scalar under `  KEY: |`, unindented), so tests run what is shipped.
configmap_file() {
    awk -v key="  $2: |" '
        $0 == key { on = 1; next }
        on && /^    / { print substr($0, 5); next }
        on && /^$/ { print ""; next }
        on { exit }' "$1"
}
