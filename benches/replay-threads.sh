#!/usr/bin/env bash
# benches/replay-threads.sh — where a closed-loop replay's client CPU goes, thread by thread:
# task-clock (perf stat --per-thread) over a window of a running replay, in µs per query, for
# the dispatcher (main thread), the output thread, the writer thread and the session threads
# together (queries in the window: the run's average QPS times its length). For changes to one
# of them; compare builds in interleaved runs (this machine's noise is ±10 % run to run).
#
# Usage: benches/replay-threads.sh REC.myrr BINARY...
#   REC.myrr: a recording to replay with --speed max (benches/replay.sh leaves
#   target/bench/replay/ro-16.myrr and ro-64.myrr); BINARY: myrr executables.
#   MYRR_THREADS_WINDOW: seconds measured (4), after MYRR_THREADS_WARMUP seconds (2).
# The database pair must be up (bash scripts/db.sh start) with myrr_bench loaded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 2 ]] || { sed -n '2,13p' "$0" >&2; exit 2; }
REC=$1
shift
WINDOW=${MYRR_THREADS_WINDOW:-4} WARMUP=${MYRR_THREADS_WARMUP:-2}
eval "$(bash "$ROOT/scripts/db.sh" env)"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for bin in "$@"; do
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
