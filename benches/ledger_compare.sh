#!/usr/bin/env bash
# Admissions per second and latency with the durable ledger on versus the in-memory seam
# (issue "Durable ledger", benchmark): the same load, alternating A/B in one run, on a
# synthetic 100k-user directory. Also reads the daemon's CPU time from /proc and the
# ledger's commit histogram.
#
#   benches/ledger_compare.sh [RATE|max] [SECONDS] [ROUNDS]
#
# RATE: calls/s offered (open loop), or `max` (closed loop, --concurrency $CONC, default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-20000}
SECS=${2:-8}
ROUNDS=${3:-2}
CONC=${CONC:-2000}
SIP=127.0.0.1:5072
HTTP=127.0.0.1:9192
DIR=${DIR:-/tmp/tollgate-ledger-bench}
cargo build --release -q -p tollgate -p tollgate-benches --bin tollgate --bin tollgate-load
BIN=target/release/tollgate
LOAD=${LOAD_BIN:-target/release/tollgate-load}
if [ ! -f "$DIR/users.csv" ]; then
  "$LOAD" --write-directory "$DIR" --users 100000 --sip-listen $SIP --http-listen $HTTP >/dev/null
fi
sed -e '/^\[ledger\]/,$d' "$DIR/tollgate.toml" > "$DIR/base.toml"
printf '[ledger]\npath = "%s/ledger.db"\n' "$DIR" | cat "$DIR/base.toml" - > "$DIR/ledger.toml"
printf '[ledger]\nenabled = false\n' | cat "$DIR/base.toml" - > "$DIR/memory.toml"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
printf '%-7s %9s %9s %9s %8s %8s %8s %9s %11s %12s\n' mode sent answered rate/s p50_ms p99_ms p999_ms timeouts cpu_us/call commit_p99_ms
for round in $(seq "$ROUNDS"); do
  for mode in ledger memory; do
    rm -f "$DIR"/ledger.db*
    "$BIN" serve --config "$DIR/$mode.toml" 2>"$DIR/$mode.log" &
    PID=$!
    for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" >/dev/null && break; sleep 0.1; done
    T0=$(ticks $PID)
    "$LOAD" --target $SIP --directory "$DIR" --rate "$RATE" --concurrency "$CONC" \
      --duration "$SECS" --timeout 4 --mix domestic -q --json "$DIR/$mode.json" >/dev/null 2>&1 || true
    T1=$(ticks $PID)
    curl -s "http://$HTTP/metrics" > "$DIR/$mode.metrics"
    kill -TERM $PID; wait $PID || true
    python3 - "$DIR" "$mode" "$((T1 - T0))" "$HZ" <<'PY'
import json, sys
d, mode, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(f"{d}/{mode}.json"))
lat = r["latency"]
cpu = ticks / hz * 1e6 / max(r["answered"], 1)
# p99 of the commit histogram (buckets are cumulative)
p99 = "-"
buckets = []
for line in open(f"{d}/{mode}.metrics"):
    if line.startswith("tollgate_ledger_commit_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
if buckets and buckets[-1][1] > 0:
    total = buckets[-1][1]
    p99 = next(f"{le*1e3:.2f}" for le, c in buckets if c >= 0.99 * total)
print(f"{mode:<7} {r['sent']:>9} {r['answered']:>9} {r['achieved_rate']:>9.0f} {lat['p50_ms']:>8.3f} "
      f"{lat['p99_ms']:>8.3f} {lat['p999_ms']:>8.3f} {r['timeouts']:>9} {cpu:>11.1f} {p99:>12}")
PY
  done
done
