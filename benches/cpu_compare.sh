#!/usr/bin/env bash
# Daemon builds side by side under `tollgate-load`, alternating in one run (this machine is
# shared and noisy: only figures taken in the same minutes compare), each round on a fresh
# daemon and ledger. Per run: calls answered, achieved rate, p50/p99 latency, 503s,
# retransmissions, and the daemon's CPU per call from `/proc/PID/task/*/schedstat` (every
# thread, nanoseconds, the load only), with the user/system split (ticks), minor page faults
# and context switches (voluntary + involuntary) per call. The synthetic 100k-user directory,
# the default mix unless MIX is given.
#
#   benches/cpu_compare.sh RATE|max SECONDS ROUNDS BUILD...
#
# A BUILD is a `tollgate` binary, `floor` (benches/examples/floor_302.rs: the cheapest server
# the generator can drive), or a script that execs a binary with other arguments (e.g. a
# config with `[ledger] enabled = false`). `max` is the closed loop at 200 calls outstanding.
# MIX=domestic, LOAD_ARGS="--sockets 1" pass through to tollgate-load; WARMUP=SECONDS runs the
# same load first, unmeasured (a cluster node's shares reach the burn rate).
#
#   cargo build --release -p tollgate -p tollgate-benches --bins --example floor_302
#   benches/cpu_compare.sh 40000 4 3 /tmp/base/target/release/tollgate target/release/tollgate
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,19p' "$0"; exit 2; }
RATE=$1 SECS=$2 ROUNDS=$3
shift 3
SIP=127.0.0.1:5074
HTTP=127.0.0.1:9194
DIR=${DIR:-/tmp/tollgate-cpu-bench}
LOAD=${LOAD_BIN:-target/release/tollgate-load}
FLOOR=target/release/examples/floor_302
[ -x "$LOAD" ] || cargo build --release -q -p tollgate-benches --bin tollgate-load
if [ ! -f "$DIR/users.csv" ]; then
  "$LOAD" --write-directory "$DIR" --users 100000 --sip-listen $SIP --http-listen $HTTP >/dev/null
fi
if [ "$RATE" = max ]; then OFFER=(--rate max --concurrency 200); else OFFER=(--rate "$RATE"); fi

sched() { local s=0 a; for t in /proc/"$1"/task/*/schedstat; do read -r a _ < "$t"; s=$((s + a)); done; echo $s; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
# utime stime minflt of the whole process.
stat() { awk '{ print $14, $15, $10 }' "/proc/$1/stat"; }

printf '%-32s %8s %8s %8s %8s %6s %6s %8s %7s %7s %6s %6s\n' build answered rate/s p50_ms \
  p99_ms 503s retx cpu_us user_us sys_us flt csw
for _ in $(seq "$ROUNDS"); do
  for build in "$@"; do
    rm -f "$DIR"/tollgate.db*
    if [ "$build" = floor ]; then
      [ -x "$FLOOR" ] || cargo build --release -q -p tollgate-benches --example floor_302
      "$FLOOR" $SIP 2 2>/dev/null &
      PID=$!
      sleep 1
    else
      RUST_LOG=warn "$build" serve --config "$DIR/tollgate.toml" 2>"$DIR/daemon.log" &
      PID=$!
      for _ in $(seq 300); do curl -sf "http://$HTTP/readyz" >/dev/null && break; sleep 0.1; done
      sleep 1
    fi
    if [ "${WARMUP:-0}" -gt 0 ]; then
      # Warm the daemon up first (with several nodes: its shares reach the burn rate).
      # shellcheck disable=SC2086
      "$LOAD" --target $SIP --directory "$DIR" "${OFFER[@]}" ${LOAD_ARGS:-} --duration "$WARMUP" \
        --timeout 4 --mix "${MIX:-default}" -q >/dev/null 2>&1 || true
      sleep 1
    fi
    S0=$(sched $PID) C0=$(switches $PID)
    read -r U0 Y0 F0 < <(stat $PID)
    # shellcheck disable=SC2086
    "$LOAD" --target $SIP --directory "$DIR" "${OFFER[@]}" ${LOAD_ARGS:-} --duration "$SECS" \
      --timeout 4 --mix "${MIX:-default}" -q --json "$DIR/run.json" >/dev/null 2>&1 || true
    S1=$(sched $PID) C1=$(switches $PID)
    read -r U1 Y1 F1 < <(stat $PID)
    kill -TERM $PID; wait $PID || true
    python3 - "$DIR/run.json" "$build" "$(getconf CLK_TCK)" $S0 $S1 $U0 $U1 $Y0 $Y1 $F0 $F1 \
      $C0 $C1 <<'PY'
import json, sys
path, name, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
s0, s1, u0, u1, y0, y1, f0, f1, c0, c1 = map(int, sys.argv[4:])
r = json.load(open(path))
n = max(r["answered"], 1)
lat = r["latency"]
print(f"{name[-32:]:<32} {r['answered']:>8} {r['achieved_rate']:>8.0f} {lat['p50_ms']:>8.3f} "
      f"{lat['p99_ms']:>8.3f} {r['by_status'].get('503', 0):>6} {r['retransmissions']:>6} "
      f"{(s1 - s0) / 1e3 / n:>8.2f} {(u1 - u0) / hz * 1e6 / n:>7.2f} "
      f"{(y1 - y0) / hz * 1e6 / n:>7.2f} {(f1 - f0) / n:>6.2f} {(c1 - c0) / n:>6.3f}")
PY
  done
done
