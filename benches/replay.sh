#!/usr/bin/env bash
# benches/replay.sh — replay throughput, pacing accuracy and memory, side by side with sysbench.
#
#  1. closed loop: a sysbench oltp_read_only recording (prepared statements, the sysbench
#     default) at 16 and 64 sessions, replayed with --speed max against the candidate, next to
#     sysbench itself against the same candidate at the same concurrency: QPS and client CPU
#     per 1000 queries (user+sys of the client process). Once with clients and server sharing
#     all CPUs, once with the server pinned to CPU 1 and the client to CPU 0.
#  2. paced: the 16-session recording replayed at --speed 1: start lag p50/p99.
#  3. scale: 5000 concurrent sessions (synthetic recording) at --speed 1: peak RSS.
# Results are printed and appended to benches/RESULTS.md.
#
# Usage: benches/replay.sh [--build-only]
#   --build-only  build myrr and examples/synthetic, check sysbench, MariaDB and the helpers are
#                 installed or installable, then exit without benchmarking (tests/benches.rs)
# Environment: MYRR_BENCH_TIME (10 s per run), MYRR_BENCH_ROUNDS (3 alternating rounds per
# concurrency), MYRR_BENCH_DIR, MYRR_BENCH_CARGO_PROFILE (release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
[[ $# -eq 0 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/replay"
T="${MYRR_BENCH_TIME:-10}"
ROUNDS="${MYRR_BENCH_ROUNDS:-3}"
log() { bench_log "$@"; }

# sysbench is what the replay is measured against; the MariaDB pair comes from scripts/db.sh.
bench_tools setup sysbench:sysbench mariadb:mariadb-client mariadb-dump:mariadb-client mariadbd:mariadb-server
bench_tools apt /usr/bin/time:time python3:python3 taskset:util-linux
bench_build -p myrr --bin myrr --example synthetic
MYRR=$(bench_built myrr)
SYNTHETIC=$(bench_built examples/synthetic)
bench_build_only_exit

mkdir -p "$DIR"
bash scripts/db.sh start >/dev/null
eval "$(bash scripts/db.sh env)"
HZ=$(getconf CLK_TCK)
server_ticks() { awk '{print $14+$15}' "/proc/$(tr -dc 0-9 <"$ROOT/target/myrr-db/candidate/mariadbd.pid")/stat"; }
SB_PS=(sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=myrr --mysql-password=myrr --mysql-db=myrr_bench --tables=4 --table-size=10000)
SB=(sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=myrr --mysql-password=myrr --mysql-db=myrr_bench --tables=4 --table-size=10000)
M=(mariadb -h127.0.0.1 --protocol=tcp -umyrr -pmyrr)

log "loading 4 x 10k rows into myrr_bench on the source and the candidate"
"${M[@]}" -P"$MYRR_SOURCE_PORT" -e "DROP DATABASE IF EXISTS myrr_bench; CREATE DATABASE myrr_bench"
"${SB[@]}" --mysql-port="$MYRR_SOURCE_PORT" prepare >/dev/null
mariadb-dump -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$MYRR_SOURCE_PORT" --databases myrr_bench | "${M[@]}" -P"$MYRR_CANDIDATE_PORT"

CAP_PID=
cleanup() {
    [[ -n "$CAP_PID" ]] && kill -INT "$CAP_PID" 2>/dev/null
    [[ -n "${SERVER_PID:-}" ]] && place_server "$ALL_CPUS" 2>/dev/null
    true
}
trap cleanup EXIT

# QPS of a replay run over the window in which all its sessions were live (jsonl on stdin).
STEADY='
import sys, json
starts, ends, done = [], [], []
for line in sys.stdin:
    e = json.loads(line)
    k = e["event"]
    if k == "session_start": starts.append(e["start_us"])
    elif k == "session_end": ends.append(e["end_us"])
    elif k == "exchange": done.append(e["end_us"])
t0, t1 = max(starts), min(ends)
print(round(sum(t0 <= x <= t1 for x in done) / ((t1 - t0) / 1e6)))
'
# CPU placement of a closed-loop round. shared: clients and the server share every CPU, the
# way the issue measures. pinned: the server on CPU 1 and the client on CPU 0, as if each had
# a machine of its own (a replay client is meant to run beside the candidate, not on it).
SERVER_PID=$(tr -dc 0-9 <"$ROOT/target/myrr-db/candidate/mariadbd.pid")
ALL_CPUS="0-$(($(nproc) - 1))"
place_server() { taskset -a -p -c "$1" "$SERVER_PID" >/dev/null; }

# One round: sysbench, then the replay, against the candidate at the same concurrency. The
# server's CPU per query is read from /proc for each run (the client's load changes the
# server's cost).
closed_loop_round() {
    local threads=$1 round=$2 place=$3 rec="$DIR/ro-$1.myrr" pin=()
    if [[ $place == pinned ]]; then
        place_server 1
        pin=(taskset -c 0)
    fi
    log "round $round ($place CPUs): sysbench against the candidate, $threads threads"
    local s0 s1 s2
    s0=$(server_ticks)
    /usr/bin/time -f "%U %S %M" -o "$DIR/sb-$threads.time" \
        "${pin[@]}" "${SB[@]}" --mysql-port="$MYRR_CANDIDATE_PORT" --threads="$threads" --time="$T" run >"$DIR/sb-$threads.txt"
    s1=$(server_ticks)
    local sb_q sb_qps sb_cpu
    sb_q=$(awk '/queries:/ {print $2; exit}' "$DIR/sb-$threads.txt")
    sb_qps=$(awk '/queries:/ {gsub(/\(/,"",$3); print $3; exit}' "$DIR/sb-$threads.txt")
    sb_cpu=$(awk '{print $1+$2}' "$DIR/sb-$threads.time")

    log "round $round ($place CPUs): myrr replay --speed max against the candidate"
    /usr/bin/time -f "%U %S %M" -o "$DIR/rp-$threads.time" \
        "${pin[@]}" "$MYRR" replay "$rec" --target "$MYRR_CANDIDATE_URL" --speed max -o "$DIR/rp-$threads.myrr" --json >"$DIR/rp-$threads.json" 2>"$DIR/rp-$threads.log"
    s2=$(server_ticks)
    place_server "$ALL_CPUS"
    local rp_q rp_qps rp_steady rp_cpu
    rp_q=$(python3 -c "import json;print(json.load(open('$DIR/rp-$threads.json'))['exchanges'])")
    rp_qps=$(python3 -c "import json;print(round(json.load(open('$DIR/rp-$threads.json'))['qps']))")
    # sysbench keeps every thread busy until its end; a replay's sessions end one by one
    # (they had different numbers of queries), so its QPS is also given over the window
    # in which every session was live.
    rp_steady=$("$MYRR" inspect --format jsonl "$DIR/rp-$threads.myrr" | python3 -c "$STEADY")
    rp_cpu=$(awk '{print $1+$2}' "$DIR/rp-$threads.time")
    rp_err=$(python3 -c "import json;print(json.load(open('$DIR/rp-$threads.json'))['errors'])")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$place" "$threads" "$sb_q" "$sb_qps" "$sb_cpu" "$rp_q" "$rp_qps" "$rp_cpu" >>"$DIR/rounds.tsv"
    ROW[$place.$threads.$round]=$(python3 -c "
sbq,sbqps,sbcpu,rq,rqps,rst,rcpu=$sb_q,$sb_qps,$sb_cpu,$rp_q,$rp_qps,$rp_steady,$rp_cpu
ssb,srp=($s1-$s0)/$HZ,($s2-$s1)/$HZ
print(f'| {$threads} | {$round} | {sbqps:,.0f} | {rqps:,.0f} | {rst:,.0f} | {rqps/sbqps*100:.0f} % / {rst/sbqps*100:.0f} % | {sbcpu/sbq*1e6:.1f} ms | {rcpu/rq*1e6:.1f} ms | {ssb/sbq*1e6:.1f} ms | {srp/rq*1e6:.1f} ms | $rp_err |')")
    echo "${ROW[$place.$threads.$round]}" >&2
}

declare -A ROW
rm -f "$DIR/rounds.tsv"
for threads in 16 64; do
    # A recording with packets dropped by the kernel holds EXECUTEs whose parameters were
    # lost: their replay fails on the server and the round measures errors. Record again.
    for attempt in 1 2 3; do
        log "recording sysbench oltp_read_only, $threads threads, ${T}s (attempt $attempt)"
        "$MYRR" capture -i lo --port "$MYRR_SOURCE_PORT" -o "$DIR/ro-$threads.myrr" 2>"$DIR/capture-$threads.log" &
        CAP_PID=$!
        for _ in $(seq 50); do grep -q "capturing on" "$DIR/capture-$threads.log" && break; sleep 0.1; done
        sleep 0.3
        "${SB[@]}" --mysql-port="$MYRR_SOURCE_PORT" --threads="$threads" --time="$T" run >/dev/null
        sleep 0.3
        kill -INT "$CAP_PID"; wait "$CAP_PID"; CAP_PID=
        grep -iE "exchanges|drop|gaps" "$DIR/capture-$threads.log" >&2
        grep -q "DROPPED" "$DIR/capture-$threads.log" || break
        log "the capture dropped packets: recording again"
    done

    for place in shared pinned; do
        [[ $place == pinned && $(nproc) -lt 2 ]] && continue
        for round in $(seq "$ROUNDS"); do closed_loop_round "$threads" "$round" "$place"; done
    done
done

# The machine's own wake-up lateness, for reading the start lags below: a thread that sleeps
# 1 ms at a time on an otherwise idle machine (a VM's host may hold its CPUs for ms at times).
log "wake-up lateness of an idle machine: 1 ms sleeps for 5 s"
JITTER=$(python3 - <<'PY'
import time
late = []
end = time.monotonic() + 5
while time.monotonic() < end:
    t = time.monotonic_ns()
    time.sleep(0.001)
    late.append((time.monotonic_ns() - t) / 1000 - 1000)
late.sort()
n = len(late)
print(f"a 1 ms sleep wakes late by p50 {late[n // 2]:.0f} µs, p99 {late[n * 99 // 100]:.0f} µs, "
      f"max {late[-1]:.0f} µs ({sum(1 for x in late if x > 1000)} of {n} over 1 ms)")
PY
)
log "$JITTER"

log "paced replay (--speed 1) of a recording with think times: sysbench oltp_point_select at a fixed rate"
"$MYRR" capture -i lo --port "$MYRR_SOURCE_PORT" -o "$DIR/rate.myrr" 2>"$DIR/capture-rate.log" &
CAP_PID=$!
for _ in $(seq 50); do grep -q "capturing on" "$DIR/capture-rate.log" && break; sleep 0.1; done
sleep 0.3
"${SB_PS[@]}" --mysql-port="$MYRR_SOURCE_PORT" --threads=16 --rate=8000 --time="$T" run >/dev/null
sleep 0.3
kill -INT "$CAP_PID"; wait "$CAP_PID"; CAP_PID=
"$MYRR" replay "$DIR/rate.myrr" --target "$MYRR_CANDIDATE_URL" --speed 1 -o "$DIR/rate.out.myrr" --json >"$DIR/rate.json" 2>"$DIR/rate.log"
lag() { python3 -c "import json;d=json.load(open('$1'));l=d['start_lag_us'];print(f\"start lag p50 {l['p50']} µs, p99 {l['p99']} µs, max {l['max']} µs; {d['exchanges']} exchanges at {d['qps']:.0f} qps, service p99 {d['service_us']['p99']} µs\")"; }
RATE=$(lag "$DIR/rate.json")
log "$RATE"

log "paced replay (--speed 1) of a synthetic recording: 16 sessions, a point select every 1 ms each"
"$SYNTHETIC" 16 5000 1 myrr_bench "$DIR/syn16.myrr"
"$MYRR" replay "$DIR/syn16.myrr" --target "$MYRR_CANDIDATE_URL" --speed 1 -o "$DIR/syn16.out.myrr" --json >"$DIR/syn16.json" 2>"$DIR/syn16.log"
SYN=$(lag "$DIR/syn16.json")
log "$SYN"

log "paced replay (--speed 1) of the closed-loop 16-session recording (no think time)"
"$MYRR" replay "$DIR/ro-16.myrr" --target "$MYRR_CANDIDATE_URL" --speed 1 -o "$DIR/paced.myrr" --json >"$DIR/paced.json" 2>"$DIR/paced.log"
PACED=$(python3 -c "import json;d=json.load(open('$DIR/paced.json'));l=d['start_lag_us'];print(f\"start lag p50 {l['p50']} µs, p99 {l['p99']} µs, max {l['max']} µs; {d['exchanges']} exchanges at {d['qps']:.0f} qps\")")
log "$PACED"

log "write workload: sysbench oltp_read_write over 2000 rows, 8 threads, replayed with --sync none|commit|all"
SBW=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=myrr --mysql-password=myrr --mysql-db=myrr_rw --tables=1 --table-size=2000)
"${M[@]}" -P"$MYRR_SOURCE_PORT" -e "DROP DATABASE IF EXISTS myrr_rw; CREATE DATABASE myrr_rw"
"${SBW[@]}" --mysql-port="$MYRR_SOURCE_PORT" prepare >/dev/null
mariadb-dump -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$MYRR_SOURCE_PORT" --databases myrr_rw >"$DIR/rw-initial.sql"
"$MYRR" capture -i lo --port "$MYRR_SOURCE_PORT" -o "$DIR/rw.myrr" 2>"$DIR/capture-rw.log" &
CAP_PID=$!
for _ in $(seq 50); do grep -q "capturing on" "$DIR/capture-rw.log" && break; sleep 0.1; done
sleep 0.3
"${SBW[@]}" --mysql-port="$MYRR_SOURCE_PORT" --threads=8 --time="$T" --mysql-ignore-errors=all run >/dev/null
sleep 0.3
kill -INT "$CAP_PID"; wait "$CAP_PID"; CAP_PID=
SYNC_ROWS=()
for mode in none commit all; do
    "${M[@]}" -P"$MYRR_CANDIDATE_PORT" <"$DIR/rw-initial.sql"
    "$MYRR" replay "$DIR/rw.myrr" --target "$MYRR_CANDIDATE_URL" --speed 1 --sync "$mode" -o "$DIR/rw-$mode.myrr" --json >"$DIR/rw-$mode.json" 2>"$DIR/rw-$mode.log"
    "$MYRR" analyze --baseline "$DIR/rw.myrr" --candidate "$DIR/rw-$mode.myrr" --format json >"$DIR/rw-$mode.analyze.json" || true
    SYNC_ROWS+=("$(python3 -c "
import json
s=json.load(open('$DIR/rw-$mode.json')); a=json.load(open('$DIR/rw-$mode.analyze.json'))['totals']
print(f\"| {'$mode'} | {s['exchanges']:,} | {s['elapsed_s']:.1f} s | {a['mismatched']/a['compared']*100:.1f} % | {s['errors']} | {s['start_lag_us']['p99']/1000:.0f} ms | {s.get('sync_timeouts',0)} / {s.get('sync_cycles',0)} |\")")")
    log "${SYNC_ROWS[-1]}"
done

log "5000 concurrent sessions (synthetic: SELECT every 500 ms, 10 each)"
"$SYNTHETIC" 5000 10 500 myrr_bench "$DIR/5000.myrr"
/usr/bin/time -f "%e %U %S %M" -o "$DIR/5000.time" \
    "$MYRR" replay "$DIR/5000.myrr" --target "$MYRR_CANDIDATE_URL" --speed 1 -o "$DIR/5000.out.myrr" --json >"$DIR/5000.json" 2>"$DIR/5000.log"
BIG=$(python3 -c "
import json;d=json.load(open('$DIR/5000.json'));e,u,s,m=open('$DIR/5000.time').read().split()
print(f\"{d['sessions']} sessions, {d['exchanges']} exchanges, errors {d['errors']}, failed connects {d['connect_failures']}, lag p99 {d['start_lag_us']['p99']} µs; peak RSS {int(m)/1024:.0f} MiB, {e} s\")")
log "$BIG"

{
    echo
    echo "## replay — $(date -u +%F) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
    echo
    for place in shared pinned; do
        [[ $place == pinned && $(nproc) -lt 2 ]] && continue
        if [[ $place == shared ]]; then
            echo "Closed loop, sysbench oltp_read_only (prepared statements), ${T}s, same candidate, one after the other; clients and server share all CPUs:"
        else
            echo "The same, with the server pinned to CPU 1 and the client (sysbench or myrr) to CPU 0, as if each had a machine of its own:"
        fi
        echo
        echo "| sessions | round | sysbench QPS | myrr replay --speed max QPS, whole run | while all sessions live | myrr / sysbench (whole / all live) | sysbench CPU / 1000 q | myrr CPU / 1000 q | server CPU / 1000 q under sysbench | under myrr | myrr server errors |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        for threads in 16 64; do for round in $(seq "$ROUNDS"); do echo "${ROW[$place.$threads.$round]}"; done; done
        echo
        # All rounds together: queries over time, CPU over queries.
        python3 - "$DIR/rounds.tsv" "$place" <<'SUM'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.split("\t")[0] == sys.argv[2]]
for threads in sorted({int(r[1]) for r in rows}):
    rs = [list(map(float, r[2:])) for r in rows if int(r[1]) == threads]
    sb_t = sum(q / qps for q, qps, *_ in rs)
    rp_t = sum(r[3] / r[4] for r in rs)
    sb_q, rp_q = sum(r[0] for r in rs), sum(r[3] for r in rs)
    sb_c, rp_c = sum(r[2] for r in rs), sum(r[5] for r in rs)
    print(f"All {len(rs)} rounds at {threads} sessions: myrr {rp_q / rp_t:,.0f} QPS against sysbench's {sb_q / sb_t:,.0f} "
          f"({rp_q / rp_t / (sb_q / sb_t) * 100:.1f} %); client CPU {rp_c / rp_q * 1e6:.1f} against {sb_c / sb_q * 1e6:.1f} ms per 1000 queries.")
    print()
SUM
    done
    echo "Idle machine, before the paced runs: $JITTER"
    echo
    echo "Paced (--speed 1), sysbench oltp_point_select --rate=8000, 16 threads (think times between queries): $RATE"
    echo
    echo "Paced (--speed 1), synthetic, 16 sessions x 1 query/ms: $SYN"
    echo
    echo "Paced (--speed 1), the closed-loop oltp_read_only recording (each query sent as soon as the last was answered, so any slower answer delays the rest): $PACED"
    echo
    echo "Write workload (sysbench oltp_read_write, 2000 rows, 8 threads, ${T}s), replayed at --speed 1 on the data it started from:"
    echo
    echo "| --sync | exchanges | replay time | answers differing from the recording | server errors | start lag p99 | waits given up (timeout / lock cycle) |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${SYNC_ROWS[@]}"
    echo
    echo "Scale: $BIG"
    echo
    echo "Command: \`bash benches/replay.sh\` (MYRR_BENCH_TIME=$T, MYRR_BENCH_ROUNDS=$ROUNDS$([[ $BENCH_CARGO_PROFILE == release ]] || echo ", MYRR_BENCH_CARGO_PROFILE=$BENCH_CARGO_PROFILE"))"
} | tee -a benches/RESULTS.md
