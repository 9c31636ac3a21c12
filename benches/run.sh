#!/usr/bin/env bash
# The benchmark run of issue 7 (see benches/README.md): builds release, writes a synthetic
# directory, runs the criterion suites, starts `tollgate serve` on loopback and drives it up a
# ladder of call rates with `tollgate-load`, then prints one summary table.
#
#   benches/run.sh [--no-criterion] [--rates "10000 25000 ..."] [--step-secs N] [--no-max]
#                  [--users N] [--transport udp|tcp] [--fresh-daemon] [--calls-per-step N]
#                  [--timeout SECS] [--out DIR] [--floor]
#
# --floor runs the same ladder against benches/examples/floor_302.rs afterwards (UDP only): the
# cheapest server the generator can drive on this machine, so each of the daemon's rows can be
# read against what the kernel and the generator leave (benches/README.md, "The floor").
#
# Loopback only (127.0.0.1:5070 for SIP, :9190 for HTTP, or $SIP_PORT / $HTTP_PORT); every
# step is bounded (--step-secs of new calls, then at most --timeout for the last answers).
# LOAD_ARGS adds arguments to every tollgate-load step (e.g. LOAD_ARGS="--sockets 2");
# TOLLGATE_BIN runs another daemon build (e.g. the previous commit's) instead of this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."

CRITERION=1
RATES="10000 25000 50000 75000 100000 150000"
STEP_SECS=10
MAX_RUN=1
MAX_CONCURRENCY=200
USERS=100000
TRANSPORT=udp
FRESH=0
CALLS=""
TIMEOUT=8
OUT=target/load-run
FLOOR=0
SERVER=tollgate
PREFIX=""
SIP_PORT=${SIP_PORT:-5070}
HTTP_PORT=${HTTP_PORT:-9190}

while [ $# -gt 0 ]; do
  case "$1" in
    --no-criterion) CRITERION=0 ;;
    --rates) RATES="$2"; shift ;;
    --step-secs) STEP_SECS="$2"; shift ;;
    --no-max) MAX_RUN=0 ;;
    --max-concurrency) MAX_CONCURRENCY="$2"; shift ;;
    --users) USERS="$2"; shift ;;
    --transport) TRANSPORT="$2"; shift ;;
    --fresh-daemon) FRESH=1 ;;
    --calls-per-step) CALLS="$2"; shift ;;
    --timeout) TIMEOUT="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --floor) FLOOR=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$FLOOR" = 1 ] && [ "$TRANSPORT" != udp ]; then
  echo "run.sh: --floor serves UDP only" >&2
  exit 2
fi
echo "== build (release)" >&2
cargo build --release -p tollgate -p tollgate-benches --bins
[ "$FLOOR" = 1 ] && cargo build --release -p tollgate-benches --example floor_302
TOLLGATE=${TOLLGATE_BIN:-target/release/tollgate}  # another build to compare: TOLLGATE_BIN=...
LOAD=target/release/tollgate-load

mkdir -p "$OUT"
DIR="$OUT/directory"
echo "== directory: $USERS users in $DIR" >&2
rm -rf "$DIR"
"$LOAD" --write-directory "$DIR" --users "$USERS" \
  --sip-listen "127.0.0.1:$SIP_PORT" --http-listen "127.0.0.1:$HTTP_PORT"
"$TOLLGATE" check --config "$DIR/tollgate.toml"

if [ "$CRITERION" = 1 ]; then
  # Before the daemon starts: the benches get both cores.
  echo "== criterion (--quick)" >&2
  cargo bench -p tollgate-benches --bench '*' -- --quick 2>&1 | tee "$OUT/criterion.txt"
fi

PID=""
stop_daemon() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
  fi
  PID=""
}
trap stop_daemon EXIT

# Whether GET /readyz answers 200 (bash's /dev/tcp: no curl needed).
ready() {
  local status
  exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  read -r -t 2 _ status _ <&3 || status=""
  exec 3<&- 3>&-
  [ "$status" = 200 ]
}

start_daemon() {
  if [ "$SERVER" = floor ]; then
    target/release/examples/floor_302 "127.0.0.1:$SIP_PORT" "$(nproc)" 2>>"$OUT/daemon.log" &
    PID=$!
    sleep 0.5
    kill -0 "$PID" 2>/dev/null || { echo "run.sh: floor_302 exited, see $OUT/daemon.log" >&2; exit 1; }
    return 0
  fi
  rm -f "$DIR"/tollgate.db*
  # Rejects are logged at info: keep the log quiet so it is not what gets measured.
  RUST_LOG=warn "$TOLLGATE" serve --config "$DIR/tollgate.toml" 2>>"$OUT/daemon.log" &
  PID=$!
  for _ in $(seq 100); do
    if ready; then return 0; fi
    kill -0 "$PID" 2>/dev/null || { echo "run.sh: the daemon exited, see $OUT/daemon.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "run.sh: the daemon is not ready after 10 s" >&2
  exit 1
}

# utime + stime of the daemon, in clock ticks (fields 14 and 15 of /proc/PID/stat, counted
# after the parenthesised command name).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$PID/stat" | awk '{print $12 + $13}'
}
TICK=$(getconf CLK_TCK)

# The number after "KEY": in a pretty-printed JSON report (one key per line).
json() {
  awk -v k="\"$2\":" '$1 == k { gsub(/[ ,]/, "", $2); print $2; exit }' "$1"
}

: >"$OUT/daemon.log"
ROWS=()
step() { # step NAME LOAD-ARGS...
  local name="$1"; shift
  [ "$FRESH" = 1 ] && stop_daemon
  [ -z "$PID" ] && start_daemon
  local report="$OUT/${PREFIX}step-$name.json"
  echo "== step $name: tollgate-load $*" >&2
  local before after
  before=$(cpu_ticks)
  "$LOAD" --target "127.0.0.1:$SIP_PORT" --transport "$TRANSPORT" --directory "$DIR" \
    --timeout "$TIMEOUT" --json "$report" ${CALLS:+--calls "$CALLS"} ${LOAD_ARGS:-} "$@" \
    >"$OUT/${PREFIX}step-$name.txt"
  after=$(cpu_ticks)
  cat "$OUT/${PREFIX}step-$name.txt"
  local answered sent s503 cpu_us
  answered=$(json "$report" answered)
  sent=$(json "$report" sent)
  s503=$(json "$report" 503); s503=${s503:-0}
  cpu_us=$(awk -v t=$((after - before)) -v hz="$TICK" -v n="$answered" \
    'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
  ROWS+=("$(printf '%-8s %-8s %9s %9s %9s %9s %9s %9s %9s %6s %10s' "$SERVER" "$name" "$sent" \
    "$(json "$report" achieved_rate)" "$(json "$report" p50_ms)" "$(json "$report" p99_ms)" \
    "$(json "$report" p999_ms)" "$(json "$report" timeouts)" \
    "$(json "$report" retransmissions)" "$s503" "$cpu_us")")
  sleep 1
}

ladder() {
  for rate in $RATES; do
    step "$rate" --rate "$rate" --duration "$STEP_SECS" --quiet
  done
  if [ "$MAX_RUN" = 1 ]; then
    step max --rate max --concurrency "$MAX_CONCURRENCY" --duration "$STEP_SECS" --quiet
  fi
  stop_daemon
}
ladder
if [ "$FLOOR" = 1 ]; then
  SERVER=floor PREFIX=floor-
  ladder
fi

{
  echo
  echo "tollgate-load ladder: $TRANSPORT, $USERS users, ${STEP_SECS}s${CALLS:+ or $CALLS calls} per step, timeout ${TIMEOUT}s, $( [ "$FRESH" = 1 ] && echo "fresh daemon per step" || echo "one daemon for all steps" )"
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores"
  printf '%-8s %-8s %9s %9s %9s %9s %9s %9s %9s %6s %10s\n' server target sent achieved p50_ms p99_ms p999_ms timeouts retrans 503s cpu_us/call
  printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/summary.txt"
