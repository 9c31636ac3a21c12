#!/usr/bin/env bash
# Two or more builds of the daemon under the same fixed sipp load (INVITE -> 302 -> ACK over UDP
# on loopback, the load of benches/kamailio/compare.sh), alternating in one run: this machine is
# shared and noisy, so only side-by-side figures compare. For each build and round: start it over
# a copy of config/ (the shipped tollgate.toml on other ports, ledger on, fresh), 1 s of calls
# not measured, then RATE x SECONDS calls measured. Prints the daemon's CPU per call from
# /proc/<pid>/task/*/schedstat (nanoseconds of run time, summed over its threads: finer than
# the 10 ms ticks of /proc/<pid>/stat) and its voluntary context switches per call.
#
#   benches/sipp_compare.sh RATE SECONDS ROUNDS BINARY...
#
# A build given as NAME=BINARY is printed as NAME. Environment: EXTRA_ENV (e.g.
# "RUST_LOG=warn"), passed to every daemon. Needs sipp (apt-get install -y sip-tester) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,14p' "$0"; exit 2; }
RATE=$1 SECS=$2 ROUNDS=$3
shift 3
PORT=15160 HTTP=19190 SIPP_PORT=15180
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-sipp-compare.XXXXXX")
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

run_sipp() { # CALLS [stats file]
  local stats=()
  [ $# -lt 2 ] || stats=(-trace_stat -stf "$2")
  sipp -sf benches/sipp/invite_302.xml -key caller grace@contoso.com -key dial +442079460000 \
    -m "$1" -r "$RATE" -l $((RATE * 5)) -i 127.0.0.1 -p $SIPP_PORT -t u1 -nostdin \
    -timeout $((SECS * 4 + 30))s -timeout_error "${stats[@]}" 127.0.0.1:$PORT >/dev/null 2>&1
}
run_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }

printf '%-24s %8s %7s %12s %10s\n' build calls failed cpu_us/call vcsw/call
for _ in $(seq "$ROUNDS"); do
  for build in "$@"; do
    name=${build%%=*} bin=${build#*=}
    rm -rf "$WORK/config"; mkdir -p "$WORK/config"
    cp config/{tenants.toml,users.csv,catalog.toml,rates.csv} "$WORK/config/"
    # One caller at full rate: lift contoso's per-user limits far above the run (they are
    # still judged on every call, so their cost is in the figures).
    sed -i 's/^user_spend_limit = "20.00"$/&\n[tenant.limits]\nuser_concurrent_calls = 1000000\nuser_calls_per_minute = 1000000000/' \
      "$WORK/config/tenants.toml"
    sed -e "s/127\.0\.0\.1:5060/127.0.0.1:$PORT/g" -e "s/127\.0\.0\.1:9090/127.0.0.1:$HTTP/" \
      config/tollgate.toml >"$WORK/config/tollgate.toml"
    # shellcheck disable=SC2086
    env ${EXTRA_ENV:-} "$bin" serve --config "$WORK/config/tollgate.toml" 2>"$WORK/daemon.log" &
    PID=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && break; sleep 0.1; done
    kill -0 "$PID" || { cat "$WORK/daemon.log" >&2; exit 1; }
    run_sipp "$RATE" || true
    N0=$(run_ns $PID) S0=$(switches $PID)
    CALLS=$((RATE * SECS))
    run_sipp "$CALLS" "$WORK/stats.csv" || true
    N1=$(run_ns $PID) S1=$(switches $PID)
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    failed=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "FailedCall(C)") c = i; next }
      { f = $c } END { print (c ? f : "?") }' "$WORK/stats.csv")
    awk -v n="$name" -v calls="$CALLS" -v f="$failed" -v ns=$((N1 - N0)) -v sw=$((S1 - S0)) \
      'BEGIN { printf "%-24s %8d %7s %12.1f %10.3f\n", substr(n, length(n) - 23), calls, f, ns / calls / 1000, sw / calls }'
  done
done
