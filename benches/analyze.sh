#!/usr/bin/env bash
# benches/analyze.sh — analyze throughput (exchanges per second per core) and memory.
#
# Joins a large real recording with itself (the sysbench capture made by benches/capture.sh,
# text protocol: every statement fingerprinted from its SQL text; and the prepared-statement
# one) and reports exchanges analyzed per CPU-second (both sides count: one joined pair = two
# exchanges read) and peak RSS. Run benches/capture.sh first.
#
# Usage: benches/analyze.sh [--build-only]
#   --build-only  build myrr, check the helpers are installed or installable, then exit
#                 without benchmarking (tests/benches.rs)
# Environment: MYRR_BENCH_DIR (<repo>/target/bench), MYRR_BENCH_CARGO_PROFILE (release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
[[ $# -eq 0 ]] || { sed -n '2,12p' "$0" >&2; exit 2; }
DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}"
bench_tools apt /usr/bin/time:time python3:python3
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit
out=()
for name in sysbench sysbench-ps; do
    rec="$DIR/$name.myrr"
    [[ -f "$rec" ]] || { echo "missing $rec: run benches/capture.sh$([[ $name == *-ps ]] && echo " --ps") first" >&2; continue; }
    n=$("$MYRR" inspect "$rec" --format jsonl 2>/dev/null | grep -c '"event":"exchange"')
    for run in 1 2 3; do
        /usr/bin/time -f "%e %U %S %M" -o "$DIR/analyze.time" "$MYRR" analyze --baseline "$rec" --candidate "$rec" --format json -o "$DIR/analyze-$name.json" 2>/dev/null || true
        read -r e u s m <"$DIR/analyze.time"
        line=$(python3 -c "n=$n;cpu=$u+$s;print(f'| {\"$name\"} | {n:,} | {$e:.2f} s | {cpu:.2f} s | {2*n/cpu/1e6:.2f} M | {$m/1024:.0f} MiB |')")
        echo "$line" >&2
    done
    out+=("$line")
done
((${#out[@]})) || bench_die "no recording to analyze in $DIR: run benches/capture.sh (and --ps) first"
{
    echo
    echo "## analyze — $(date -u +%F) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
    echo
    echo "A recording joined with itself; exchanges read = 2 × exchanges in the file. Last of 3 runs."
    echo
    echo "| recording | exchanges | elapsed | CPU | exchanges/s per core | peak RSS |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${out[@]}"
    echo
    echo "Command: \`bash benches/analyze.sh\`$([[ $BENCH_CARGO_PROFILE == release ]] || echo " (MYRR_BENCH_CARGO_PROFILE=$BENCH_CARGO_PROFILE)")"
} | tee -a benches/RESULTS.md
