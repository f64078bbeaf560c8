#!/usr/bin/env bash
# benches/replay-threads.sh — where a closed-loop replay's client CPU goes, thread by thread:
# task-clock (perf stat --per-thread) over a window of a running replay, in µs per query, for
# the dispatcher (main thread), the output thread, the writer thread and the session threads
# together (queries in the window: the run's average QPS times its length). For changes to one
# of them; compare builds in interleaved runs (this machine's noise is ±10 % run to run).
#
# Usage: benches/replay-threads.sh REC.myrr [BINARY...]
#        benches/replay-threads.sh --build-only [BINARY...]
#   REC.myrr: a recording to replay with --speed max (benches/replay.sh leaves
#   target/bench/replay/ro-16.myrr and ro-64.myrr); BINARY: myrr executables (default: this
#   checkout's, built with MYRR_BENCH_CARGO_PROFILE, release by default).
#   MYRR_THREADS_WINDOW: seconds measured (4), after MYRR_THREADS_WARMUP seconds (2).
#   --build-only: build this checkout's myrr, check the BINARYs, perf and python3, then exit
#   without benchmarking (tests/benches.rs).
# The database pair must be up (bash scripts/db.sh start) with myrr_bench loaded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
usage() { sed -n '2,17p' "$0" >&2; exit 2; }
if ((BENCH_BUILD_ONLY)); then
    BINS=("$@")
else
    [[ $# -ge 1 ]] || usage
    REC=$1
    shift
    BINS=("$@")
    [[ -f $REC ]] || bench_die "no recording $REC (benches/replay.sh makes target/bench/replay/ro-16.myrr and ro-64.myrr)"
fi
WINDOW=${MYRR_THREADS_WINDOW:-4} WARMUP=${MYRR_THREADS_WARMUP:-2}
bench_tools apt perf:linux-perf python3:python3
bench_binaries "${BINS[@]}"
bench_build_only_exit
eval "$(bash "$ROOT/scripts/db.sh" env)"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for bin in "${BINS[@]}"; do
    "$bin" replay "$REC" --target "$MYRR_CANDIDATE_URL" --speed max -o "$T/run.myrr" --json \
        >"$T/run.json" 2>"$T/err" &
    pid=$!
    sleep "$WARMUP"
    perf stat -e task-clock --per-thread -p "$pid" -x, -o "$T/stat" -- sleep "$WINDOW" 2>/dev/null
    wait "$pid" || { cat "$T/err" >&2; exit 1; }
    python3 - "$bin" "$T/stat" "$T/run.json" "$WINDOW" <<'PY'
import collections, json, re, sys
name, stat, run, window = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
qps = json.load(open(run))["qps"]
groups = collections.Counter()
for line in open(stat):
    f = line.strip().split(",")
    if len(f) < 3 or "task-clock" not in line:
        continue
    thread = re.sub(r"-\d+$", "", f[0])
    if re.fullmatch(r"myrr-s\d+", thread):
        thread = "sessions"
    elif not thread.startswith("myrr-"):
        thread = "dispatcher"
    groups[thread] += float(f[1])  # ms
queries = qps * window
us = lambda ms: ms * 1000 / queries
parts = "  ".join(f"{k} {us(v):.2f}" for k, v in sorted(groups.items()))
print(f"{name[-30:]:>30}  qps {qps:7.0f}  client {us(sum(groups.values())):5.2f} µs/q:  {parts}")
PY
done
