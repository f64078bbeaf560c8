#!/usr/bin/env bash
# benches/replay-ab.sh — interleaved A/B of myrr binaries in a closed loop, with sysbench in
# every round, on shared CPUs. For changes smaller than this machine's run-to-run noise: each
# round runs every binary and sysbench back to back, so a slow minute hits all of them.
#
# Per run: QPS, the client's CPU per query (user+sys, and user alone), the candidate server's
# user and sys CPU per query (/proc/PID/stat), and rescheduling interrupts per 1000 queries
# (/proc/interrupts, RES).
# With MYRR_AB_SYSCALLS=1, also the server's poll and recvfrom calls per query (perf stat on
# syscall tracepoints). A server thread polls when the next command is not yet there as it
# finishes a query: that is how a client's scheduling shows in the server's CPU. The tracing
# itself costs the server about 10 % of its QPS, so leave it off for the figures.
#
# Usage: benches/replay-ab.sh REC.myrr ROUNDS SESSIONS [BINARY...]
#        benches/replay-ab.sh --build-only [BINARY...]
#   REC.myrr: a sysbench oltp_read_only recording with SESSIONS sessions (benches/replay.sh
#   leaves target/bench/replay/ro-16.myrr and ro-64.myrr); BINARY: myrr executables (default:
#   this checkout's, built with MYRR_BENCH_CARGO_PROFILE, release by default).
#   --build-only: build this checkout's myrr, check the BINARYs, sysbench and the helpers,
#   then exit without benchmarking (tests/benches.rs).
# The database pair must be up (bash scripts/db.sh start) with myrr_bench loaded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
usage() { sed -n '2,21p' "$0" >&2; exit 2; }
if ((BENCH_BUILD_ONLY)); then
    BINS=("$@")
else
    [[ $# -ge 3 ]] || usage
    REC=$1 ROUNDS=$2 SESSIONS=$3
    shift 3
    BINS=("$@")
    [[ -f $REC ]] || bench_die "no recording $REC (benches/replay.sh makes target/bench/replay/ro-16.myrr and ro-64.myrr)"
fi
bench_tools setup sysbench:sysbench
bench_tools apt /usr/bin/time:time python3:python3
[[ ${MYRR_AB_SYSCALLS:-0} == 1 ]] && bench_tools apt perf:linux-perf
bench_binaries "${BINS[@]}"
bench_build_only_exit
eval "$(bash "$ROOT/scripts/db.sh" env)"
HZ=$(getconf CLK_TCK)
PIDFILE="$ROOT/target/myrr-db/candidate/mariadbd.pid"
server() { awk '{print $14, $15}' "/proc/$(tr -dc 0-9 <"$PIDFILE")/stat"; }
resched() { awk '/^ *RES:/ {s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s}' /proc/interrupts; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

for round in $(seq "$ROUNDS"); do
    for who in "${BINS[@]}" sysbench; do
        read -r u0 s0 < <(server)
        i0=$(resched)
        if [[ ${MYRR_AB_SYSCALLS:-0} == 1 ]]; then
            perf stat -x, -e syscalls:sys_enter_poll,syscalls:sys_enter_recvfrom \
                -p "$(tr -dc 0-9 <"$PIDFILE")" -o "$T/perf" &
            PERF=$!
        fi
        if [[ $who == sysbench ]]; then
            /usr/bin/time -f "%U %S" -o "$T/time" sysbench oltp_read_only --db-driver=mysql \
                --mysql-host=127.0.0.1 --mysql-port="$MYRR_CANDIDATE_PORT" --mysql-user=myrr \
                --mysql-password=myrr --mysql-db=myrr_bench --tables=4 --table-size=10000 \
                --threads="$SESSIONS" --time=10 run >"$T/out"
            q=$(awk '/queries:/ {print $2; exit}' "$T/out")
            qps=$(awk '/queries:/ {gsub(/\(/, "", $3); print $3; exit}' "$T/out")
        else
            /usr/bin/time -f "%U %S" -o "$T/time" "$who" replay "$REC" \
                --target "$MYRR_CANDIDATE_URL" --speed max -o "$T/run.myrr" --json \
                >"$T/out" 2>"$T/err"
            q=$(python3 -c "import json; print(json.load(open('$T/out'))['exchanges'])")
            qps=$(python3 -c "import json; print(json.load(open('$T/out'))['qps'])")
        fi
        if [[ ${MYRR_AB_SYSCALLS:-0} == 1 ]]; then
            kill -INT "$PERF"
            wait "$PERF" || true
        else
            : >"$T/perf"
        fi
        read -r u1 s1 < <(server)
        i1=$(resched)
        python3 - "$who" "$round" "$q" "$qps" "$u0" "$s0" "$u1" "$s1" "$i0" "$i1" "$HZ" "$T/time" "$T/perf" <<'PY'
import sys
who, rnd = sys.argv[1], sys.argv[2]
q, qps = int(sys.argv[3]), float(sys.argv[4])
u0, s0, u1, s1, i0, i1, hz = map(int, sys.argv[5:12])
cu, cs = map(float, open(sys.argv[12]).read().split())
calls = {}
for line in open(sys.argv[13]):
    f = line.strip().split(",")
    if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].isdigit():
        calls[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0])
us = lambda x: x / q * 1e6
extra = "".join(f"  server {k}/q {v / q:4.2f}" for k, v in sorted(calls.items()))
print(f"round {rnd}  {who[-30:]:>30}  qps {qps:7.0f}  client {us(cu + cs):5.2f} µs/q (user {us(cu):4.2f})"
      f"  server user {us((u1 - u0) / hz):5.2f} sys {us((s1 - s0) / hz):5.2f} µs/q"
      f"  RES {(i1 - i0) / q * 1000:4.0f}/1000q{extra}")
PY
    done
done
