#!/usr/bin/env bash
# Two or more builds of the daemon under the same load, alternating in one run (this machine is
# shared and noisy: only side-by-side figures compare): latency, the daemon's CPU per call, the
# ledger writer thread's CPU per row written, and the group commit's p99 and worst histogram
# bucket in ms (`tollgate_ledger_commit_seconds`, warm-up included). Fresh ledger per run,
# synthetic 100k-user directory, `--mix domestic` (most calls admitted, so written).
#
#   benches/builds_compare.sh RATE SECONDS ROUNDS BINARY...
#
# Needs curl and the sqlite3 shell (apt-get install -y sqlite3).
#
# e.g. to measure a change against the commit before it:
#   git worktree add /tmp/base HEAD~1 && (cd /tmp/base && cargo build --release -p tollgate)
#   cargo build --release -p tollgate -p tollgate-benches
#   benches/builds_compare.sh 20000 8 2 /tmp/base/target/release/tollgate target/release/tollgate
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,15p' "$0"; exit 2; }
RATE=$1 SECS=$2 ROUNDS=$3
shift 3
SIP=127.0.0.1:5073
HTTP=127.0.0.1:9193
DIR=${DIR:-/tmp/tollgate-builds-bench}
LOAD=${LOAD_BIN:-target/release/tollgate-load}
[ -x "$LOAD" ] || cargo build --release -q -p tollgate-benches --bin tollgate-load
if [ ! -f "$DIR/users.csv" ]; then
  "$LOAD" --write-directory "$DIR" --users 100000 --sip-listen $SIP --http-listen $HTTP >/dev/null
fi
sed -e '/^\[ledger\]/,$d' "$DIR/tollgate.toml" > "$DIR/base.toml"
printf '[ledger]\npath = "%s/ledger.db"\n' "$DIR" | cat "$DIR/base.toml" - > "$DIR/run.toml"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The writer thread's ticks (0 if it has none, e.g. the ledger is off).
writer_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    if [ "$(cat "$t/comm")" = tollgate-ledger ]; then awk '{print $14 + $15}' "$t/stat"; return; fi
  done
  echo 0
}
HZ=$(getconf CLK_TCK)
printf '%-40s %8s %9s %8s %8s %8s %11s %13s %8s %9s %9s\n' build answered rate/s p50_ms \
  p99_ms p999_ms cpu_us/call writer_us/row rows commit_p99 commit_max
for _ in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    rm -f "$DIR"/ledger.db*
    RUST_LOG=warn "$bin" serve --config "$DIR/run.toml" 2>"$DIR/daemon.log" &
    PID=$!
    for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" >/dev/null && break; sleep 0.1; done
    # Warm-up, not measured.
    "$LOAD" --target $SIP --directory "$DIR" --rate "$RATE" --duration 1 --mix domestic -q \
      --json /dev/null >/dev/null 2>&1 || true
    T0=$(ticks $PID) W0=$(writer_ticks $PID) R0=$(sqlite3 "$DIR/ledger.db" 'SELECT count(*) FROM calls')
    "$LOAD" --target $SIP --directory "$DIR" --rate "$RATE" --duration "$SECS" --timeout 4 \
      --mix domestic -q --json "$DIR/run.json" >/dev/null 2>&1 || true
    T1=$(ticks $PID) W1=$(writer_ticks $PID) R1=$(sqlite3 "$DIR/ledger.db" 'SELECT count(*) FROM calls')
    curl -s "http://$HTTP/metrics" > "$DIR/run.metrics"
    kill -TERM $PID; wait $PID || true
    python3 - "$DIR/run.json" "$bin" "$((T1 - T0))" "$((W1 - W0))" "$((R1 - R0))" "$HZ" <<'PY'
import json, sys
path, name, ticks, wticks, rows, hz = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
r = json.load(open(path))
lat = r["latency"]
cpu = ticks / hz * 1e6 / max(r["answered"], 1)
writer = wticks / hz * 1e6 / max(rows, 1)
# The group commit's p99 and worst bucket (tollgate_ledger_commit_seconds, cumulative buckets).
buckets = []
for line in open(path.replace("run.json", "run.metrics")):
    if line.startswith("tollgate_ledger_commit_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
p99 = worst = "-"
if buckets and buckets[-1][1] > 0:
    total = buckets[-1][1]
    p99 = next(f"{le * 1e3:.2f}" for le, c in buckets if c >= 0.99 * total)
    worst = next(f"{le * 1e3:.2f}" for le, c in buckets if c >= total)
print(f"{name[-40:]:<40} {r['answered']:>8} {r['achieved_rate']:>9.0f} {lat['p50_ms']:>8.3f} "
      f"{lat['p99_ms']:>8.3f} {lat['p999_ms']:>8.3f} {cpu:>11.1f} {writer:>13.1f} {rows:>8} "
      f"{p99:>9} {worst:>9}")
PY
    sleep 1
  done
done
