#!/usr/bin/env bash
# Static checks of the systemd files, without installing anything on this machine:
# - `systemd-analyze verify` of shoal.service (a copy whose ExecStart names a binary that
#   exists here: verify refuses a missing one); any warning, an unknown key for example, fails;
# - `systemd-analyze security --offline=true`: the hardening score, which must stay "OK" or better;
# - shoal.toml loads as a configuration: `shoal serve` with the sample, its data directory,
#   certificates and addresses redirected to a scratch directory and loopback, must get past
#   configuration loading (it is stopped as soon as it serves).
# Without systemd-analyze (no systemd package) it says SKIPPED for those checks.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
status=0

BIN="${SHOAL_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}"

if command -v systemd-analyze >/dev/null; then
    exe=/bin/true
    [ -x "$BIN" ] && exe="$BIN"
    sed "s|^ExecStart=/usr/local/bin/shoal |ExecStart=$exe |" "$here/shoal.service" >"$tmp/shoal.service"
    if out="$(systemd-analyze verify "$tmp/shoal.service" 2>&1)" && [ -z "$out" ]; then
        echo "ok    systemd-analyze verify shoal.service: no errors, no warnings"
    else
        echo "FAIL  systemd-analyze verify shoal.service:" >&2
        echo "$out" >&2
        status=1
    fi
    score="$(systemd-analyze security --offline=true "$tmp/shoal.service" 2>&1 | sed -n 's/.*Overall exposure level for shoal.service: //p')"
    case "$score" in
    *OK* | *SAFE*) echo "ok    systemd-analyze security: exposure $score" ;;
    *)
        echo "FAIL  systemd-analyze security: exposure ${score:-unknown}" >&2
        status=1
        ;;
    esac
else
    echo "SKIPPED: systemd-analyze is not installed: shoal.service was not verified"
fi

if [ -x "$BIN" ]; then
    # The sample with every path and address moved somewhere this machine has.
    "$BIN" cert init --dir "$tmp/certs" >/dev/null
    "$BIN" cert node --dir "$tmp/certs" --id n1 >/dev/null
    # This node listens on ephemeral loopback ports; the other two members point at port 1 of
    # loopback addresses, where nothing listens.
    sed -e "s|/etc/shoal/certs|$tmp/certs|; s|/var/lib/shoal|$tmp/data|" \
        -e 's|"10\.0\.0\.1:[0-9]*"|"127.0.0.1:0"|' \
        -e 's|"10\.0\.0\.\([0-9]*\):9080"|"127.0.0.\1:1"|' \
        "$here/shoal.toml" >"$tmp/shoal.toml"
    if grep -q '"10\.0\.0\.' "$tmp/shoal.toml"; then
        echo "FAIL  verify.sh could not redirect every address of shoal.toml" >&2
        exit 1
    fi
    # One node of three, alone: it loads its configuration, opens its store and serves.
    "$BIN" serve --config "$tmp/shoal.toml" >"$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        if grep -q "shoal node serving" "$tmp/log"; then break; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if grep -q "shoal node serving" "$tmp/log"; then
        echo "ok    shoal.toml: shoal serve accepts the sample (paths and addresses redirected) and serves"
        kill -TERM "$pid"
        if wait "$pid"; then
            echo "ok    shoal serve exited 0 on SIGTERM (what KillSignal=SIGTERM relies on)"
        else
            echo "FAIL  shoal serve did not exit 0 on SIGTERM" >&2
            status=1
        fi
        pid=""
    else
        echo "FAIL  shoal serve refused the sample configuration:" >&2
        tail -n 20 "$tmp/log" >&2
        status=1
    fi
else
    echo "SKIPPED: no shoal binary at $BIN: the sample shoal.toml was not loaded"
fi
exit "$status"
