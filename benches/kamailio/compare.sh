#!/usr/bin/env bash
# Server CPU time per call (INVITE -> 302 -> ACK over UDP on loopback), Tollgate against Kamailio
# answering every INVITE with a bare stateless 302 (benches/kamailio/kamailio.cfg), under the same
# fixed sipp load. Issue 5 benchmark; results and how to read them: benches/README.md, section
# "Tollgate vs Kamailio CPU per call".
#
#   benches/kamailio/compare.sh [RATE [SECONDS [RUNS]]]      default: 4000 calls/s, 15 s, 1 run
#
# For each server in turn (Tollgate first, then Kamailio) and each run: start it, send a short
# unmeasured warm-up (1 s of calls), read utime + stime of every one of its processes from
# /proc/<pid>/stat, run sipp at RATE calls/s for SECONDS, read them again, stop the server. CPU per
# call = (CPU after - CPU before) / successful calls. A run with any failed call is marked FAILED,
# left out of the means, and makes the script exit 1. Tollgate runs the release build over a copy
# of config/ (the shipped tollgate.toml with other ports), doing all its work: the caller is a
# Direct Routing user dialing abroad (grace@contoso.com -> +442079460000; CALLER and DIAL override),
# admitted with a reservation written to the ledger and a 302 to the tenant's SBC. Kamailio runs
# with children=2 (one UDP receiver per core of the 2-core reference machine), like Tollgate's one
# UDP socket per core.
#
# Needs: sipp (Debian sip-tester), kamailio, curl, cargo. Environment knobs:
#   TOLLGATE_PORT (15060), TOLLGATE_HTTP (19090), KAMAILIO_PORT (15070), PYTHON_PORT (15090),
#   SIPP_PORT (15080), SERVERS ("tollgate kamailio"; add "python" for the yardstick of
#   benches/kamailio/trivial_302.py), TOLLGATE_LINGER_US (1000: `[ledger].linger_us`),
#   TOLLGATE_LEDGER (on; off: `[ledger] enabled = false`, the
#   reservations in memory only, to see what the ledger costs), KAMAILIO_CHILDREN (2),
#   KAMAILIO_MEM (empty: Kamailio's default allocator, qm; e.g. tlsf or fm: `-x NAME -X NAME`,
#   faster), NO_BUILD=1 (use the existing release binary), KEEP=1 (keep the work directory with
#   the sipp logs and stats), THREADS=1 (also print Tollgate's CPU per call by thread name: the
#   UDP workers, the ledger writer, the tokio runtime).
set -euo pipefail

RATE=${1:-4000}
DURATION=${2:-15}
RUNS=${3:-1}
TOLLGATE_PORT=${TOLLGATE_PORT:-15060}
TOLLGATE_HTTP=${TOLLGATE_HTTP:-19090}
KAMAILIO_PORT=${KAMAILIO_PORT:-15070}
PYTHON_PORT=${PYTHON_PORT:-15090}
SIPP_PORT=${SIPP_PORT:-15080}
SERVERS=${SERVERS:-tollgate kamailio}
KAMAILIO_CHILDREN=${KAMAILIO_CHILDREN:-2}
KAMAILIO_MEM=${KAMAILIO_MEM:-}
TOLLGATE_LEDGER=${TOLLGATE_LEDGER:-on}
CALLER=${CALLER:-grace@contoso.com}
DIAL=${DIAL:-+442079460000}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCENARIO=$ROOT/benches/sipp/invite_302.xml
CLK_TCK=$(getconf CLK_TCK)
CALLS=$((RATE * DURATION))

for tool in sipp kamailio curl; do
    command -v "$tool" >/dev/null || {
        echo "compare.sh: $tool not found (apt-get install -y sip-tester kamailio curl)" >&2
        exit 2
    }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-vs-kamailio.XXXXXX")
SERVER_PID=""
cleanup() {
    stop_server
    if [ "${KEEP:-0}" = 1 ]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# Stops the server this script started (by its pid only) and waits for it.
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

port_busy() { ss -Hlun "sport = :$1" | grep -q .; }

# "utime stime" (clock ticks) summed over the given processes, threads included (the kernel sums
# a process's threads into /proc/<pid>/stat). The comm field may hold spaces: cut after its ')'.
cpu_ticks() {
    local user=0 sys=0 pid fields
    for pid in "$@"; do
        fields=$(sed 's/^.*) //' "/proc/$pid/stat") || {
            echo "compare.sh: process $pid is gone" >&2
            exit 1
        }
        # After "pid (comm) ": state is field 1, utime field 12, stime field 13.
        read -r u s < <(awk '{print $12, $13}' <<<"$fields")
        user=$((user + u))
        sys=$((sys + s))
    done
    echo "$user $sys"
}

# "comm utime stime" (clock ticks) for every thread of process $1, one line each.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        # "pid (comm) state ...": comm may hold spaces; utime and stime are the 12th and 13th
        # fields after its ')'.
        awk '{
            i = index($0, " ("); j = match($0, /\) [A-Za-z] /)
            comm = substr($0, i + 2, j - i - 2); gsub(/ /, "_", comm)
            split(substr($0, j + 2), f, " "); print comm, f[12], f[13]
        }' "$t/stat" 2>/dev/null || true
    done
}

# The server's processes: the one we started and all its children (Kamailio forks its workers).
server_pids() {
    echo "$SERVER_PID"
    pgrep -P "$SERVER_PID" || true
}

start_tollgate() {
    local dir=$WORK/tollgate
    mkdir -p "$dir/config"
    cp "$ROOT"/config/{tenants.toml,users.csv,catalog.toml,rates.csv} "$dir/config/"
    # One caller at full rate: lift contoso's per-user limits far above the run (they are
    # still judged on every call, so their cost is in the figures).
    sed -i 's/^user_spend_limit = "20.00"$/&\n[tenant.limits]\nuser_concurrent_calls = 1000000\nuser_calls_per_minute = 1000000000/' \
      "$dir/config/tenants.toml"
    local ledger=true
    [ "$TOLLGATE_LEDGER" != off ] || ledger=false
    sed -e "s/127\.0\.0\.1:5060/127.0.0.1:$TOLLGATE_PORT/g" \
        -e "s/127\.0\.0\.1:9090/127.0.0.1:$TOLLGATE_HTTP/" \
        -e "s/^enabled = true /enabled = $ledger /" \
        -e "s/^linger_us = 1000 /linger_us = ${TOLLGATE_LINGER_US:-1000} /" \
        "$ROOT/config/tollgate.toml" >"$dir/config/tollgate.toml"
    grep -q "^enabled = $ledger " "$dir/config/tollgate.toml" || {
        echo "compare.sh: cannot set [ledger] enabled = $ledger in the copy of tollgate.toml" >&2
        exit 2
    }
    "$TOLLGATE_BIN" serve --config "$dir/config/tollgate.toml" 2>"$dir/stderr.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$TOLLGATE_HTTP/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "compare.sh: tollgate did not start:" >&2
    cat "$dir/stderr.log" >&2
    exit 1
}

# The yardstick of issue 5: a trivial single-threaded Python loop answering 302
# (benches/kamailio/trivial_302.py).
start_python() {
    python3 "$ROOT/benches/kamailio/trivial_302.py" "$PYTHON_PORT" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_busy "$PYTHON_PORT" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "compare.sh: the python loop did not start" >&2
    exit 1
}

start_kamailio() {
    local dir=$WORK/kamailio
    mkdir -p "$dir"
    sed -e "s/^listen=udp:127\.0\.0\.1:5070$/listen=udp:127.0.0.1:$KAMAILIO_PORT/" \
        -e "s/^#!define KAMAILIO_CHILDREN 2$/#!define KAMAILIO_CHILDREN $KAMAILIO_CHILDREN/" \
        "$ROOT/benches/kamailio/kamailio.cfg" >"$dir/kamailio.cfg"
    # -DD: the main process stays in the foreground (its pid is ours) and forks its workers.
    local mem=()
    [ -z "$KAMAILIO_MEM" ] || mem=(-x "$KAMAILIO_MEM" -X "$KAMAILIO_MEM")
    kamailio -f "$dir/kamailio.cfg" -DD -E -P "$dir/kamailio.pid" -Y "$dir" "${mem[@]}" \
        >"$dir/stderr.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_busy "$KAMAILIO_PORT" && sleep 0.5 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "compare.sh: kamailio did not start:" >&2
    cat "$dir/stderr.log" >&2
    exit 1
}

# sipp: CALLS calls at RATE calls/s against port $1; stats CSV in $2. Exit code: sipp's.
run_sipp() {
    local port=$1 stats=$2 calls=$3
    sipp -sf "$SCENARIO" -key caller "$CALLER" -key dial "$DIAL" \
        -m "$calls" -r "$RATE" -l $((RATE * 5)) \
        -i 127.0.0.1 -p "$SIPP_PORT" -t u1 \
        -timeout $((DURATION * 4 + 30))s -timeout_error -nostdin \
        -trace_stat -stf "$stats" -fd 1 \
        "127.0.0.1:$port" >"$stats.out" 2>&1
}

# The value of column $2 in the last line of sipp's stats CSV $1.
stat_column() {
    awk -F';' -v col="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { last = $c }
        END { print (c ? last : "?") }' "$1"
}

# One result line ("run server procs ok failed retrans user_ticks sys_ticks wall_ns" on stdin)
# as a table row; $1 marks it (FAILED).
report_line() {
    awk -v hz="$CLK_TCK" -v mark="${1:+ $1}" '{
        user = $7 / hz; sys = $8 / hz; cpu = user + sys
        printf "%-3s %-9s %5d %8d %6d %7d %7.2f %7.2f %7.2f %7.2f %9.1f%s\n", $1, $2, $3, $4, $5,
            $6, user, sys, cpu, $9 / 1e9, cpu / ($4 ? $4 : 1) * 1e6, mark
    }'
}

TOLLGATE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate
case " $SERVERS " in
    *" tollgate "*)
        if [ "${NO_BUILD:-0}" != 1 ]; then
            (cd "$ROOT" && cargo build --release -p tollgate --bin tollgate)
        fi
        [ -x "$TOLLGATE_BIN" ] || {
            echo "compare.sh: no $TOLLGATE_BIN" >&2
            exit 2
        }
        ;;
esac

for p in "$TOLLGATE_PORT" "$KAMAILIO_PORT" "$PYTHON_PORT" "$SIPP_PORT"; do
    if port_busy "$p"; then
        echo "compare.sh: UDP port $p is in use (set TOLLGATE_PORT/KAMAILIO_PORT/SIPP_PORT)" >&2
        exit 2
    fi
done

echo "load: INVITE -> 302 -> ACK, $RATE calls/s x ${DURATION}s = $CALLS calls per run, $RUNS run(s)"
echo "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tollgate: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), ledger $TOLLGATE_LEDGER"
echo "kamailio: $(kamailio -v | head -1 | sed 's/^version: //'), children=$KAMAILIO_CHILDREN, allocator ${KAMAILIO_MEM:-default (qm)}"
RESULTS=$WORK/results
: >"$RESULTS"
STATUS=0
printf "%-3s %-9s %5s %8s %6s %7s %7s %7s %7s %7s %9s\n" run server procs calls failed retrans \
    user_s sys_s cpu_s wall_s us/call
for run in $(seq "$RUNS"); do
    for server in $SERVERS; do
        case $server in
            tollgate) start_tollgate; port=$TOLLGATE_PORT ;;
            kamailio) start_kamailio; port=$KAMAILIO_PORT ;;
            python) start_python; port=$PYTHON_PORT ;;
            *) echo "compare.sh: unknown server $server" >&2; exit 2 ;;
        esac
        stats=$WORK/$server-$run
        # Warm-up, not measured: 1 s of calls.
        if ! run_sipp "$port" "$stats-warmup.csv" "$RATE"; then
            echo "compare.sh: $server: warm-up calls failed:" >&2
            tail -30 "$stats-warmup.csv.out" >&2
            exit 1
        fi
        mapfile -t pids < <(server_pids)
        read -r user0 sys0 < <(cpu_ticks "${pids[@]}")
        [ "$server" != tollgate ] || thread_ticks "$SERVER_PID" >"$stats.threads0"
        start_ns=$(date +%s%N)
        rc=0
        run_sipp "$port" "$stats.csv" "$CALLS" || rc=$?
        wall_ns=$(($(date +%s%N) - start_ns))
        read -r user1 sys1 < <(cpu_ticks "${pids[@]}")
        if [ "$server" = tollgate ]; then
            thread_ticks "$SERVER_PID" >"$stats.threads1"
        fi
        stop_server
        ok=$(stat_column "$stats.csv" "SuccessfulCall(C)")
        failed=$(stat_column "$stats.csv" "FailedCall(C)")
        retrans=$(stat_column "$stats.csv" "Retransmissions(C)")
        line="$run $server ${#pids[@]} $ok $failed $retrans $((user1 - user0)) $((sys1 - sys0)) $wall_ns"
        if [ "$rc" != 0 ] || [ "$failed" != 0 ] || [ "$ok" != "$CALLS" ]; then
            # A run with failed calls does not count; the others go on, the exit code says it.
            echo "compare.sh: $server run $run: sipp exit $rc, $ok successful, $failed failed:" >&2
            grep -E "Aborting|INVITE -|302 <|Call Rate" "$stats.csv.out" | head -8 >&2 || true
            STATUS=1
            echo "$line" | report_line FAILED
        else
            echo "$line" >>"$RESULTS"
            echo "$line" | report_line ""
        fi
        if [ "$server" = tollgate ] && [ "${THREADS:-0}" = 1 ]; then
            # Per thread name: CPU µs per call (THREADS=1).
            awk -v hz="$CLK_TCK" -v calls="$ok" '
                NR == FNR { u0[$1] += $2; s0[$1] += $3; next }
                { u1[$1] += $2; s1[$1] += $3 }
                END {
                    for (t in u1) {
                        us = ((u1[t] - u0[t]) + (s1[t] - s0[t])) / hz / (calls ? calls : 1) * 1e6
                        if (us > 0) printf "    thread %-18s %6.1f us/call (user %.1f, sys %.1f)\n", t, us,
                            (u1[t] - u0[t]) / hz / calls * 1e6, (s1[t] - s0[t]) / hz / calls * 1e6
                    }
                }' "$stats.threads0" "$stats.threads1"
        fi
        # Let the machine settle between servers.
        sleep 1
    done
done

awk '
    {
        us = ($7 + $8) / hz / $4 * 1e6
        sum_us[$2] += us; n[$2]++
        if ($1 > last) last = $1
        per[$1, $2] = us
    }
    END {
        print ""
        for (r = 1; r <= last; r++)
            if (per[r, "tollgate"] && per[r, "kamailio"])
                printf "run %s: tollgate/kamailio = %.3f\n", r, per[r, "tollgate"] / per[r, "kamailio"]
        if (n["tollgate"] && n["kamailio"]) {
            t = sum_us["tollgate"] / n["tollgate"]; k = sum_us["kamailio"] / n["kamailio"]
            printf "mean: tollgate %.1f us/call, kamailio %.1f us/call, ratio %.3f (bar: <= 15 us and <= 0.25)\n", t, k, t / k
        }
        if (n["python"] && n["kamailio"]) {
            p = sum_us["python"] / n["python"]; k = sum_us["kamailio"] / n["kamailio"]
            printf "mean: trivial python loop %.1f us/call, %.3f of kamailio\n", p, p / k
        }
    }' hz="$CLK_TCK" "$RESULTS"
exit "$STATUS"
