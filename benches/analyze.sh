#!/usr/bin/env bash
# benches/analyze.sh — analyze throughput (exchanges per second per core) and memory.
#
# Joins a large real recording with itself (the sysbench capture made by benches/capture.sh,
# text protocol: every statement fingerprinted from its SQL text; and the prepared-statement
# one) and reports exchanges analyzed per CPU-second (both sides count: one joined pair = two
# exchanges read) and peak RSS. Run benches/capture.sh first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}"
cargo build --release -q -p myrr
MYRR="$ROOT/target/release/myrr"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
out=()
for name in sysbench sysbench-ps; do
    rec="$DIR/$name.myrr"
    [[ -f "$rec" ]] || { echo "missing $rec: run benches/capture.sh${name#sysbench} first" >&2; continue; }
    n=$("$MYRR" inspect "$rec" --format jsonl 2>/dev/null | grep -c '"event":"exchange"')
    for run in 1 2 3; do
        /usr/bin/time -f "%e %U %S %M" -o "$DIR/analyze.time" "$MYRR" analyze --baseline "$rec" --candidate "$rec" --format json -o "$DIR/analyze-$name.json" 2>/dev/null || true
        read -r e u s m <"$DIR/analyze.time"
        line=$(python3 -c "n=$n;cpu=$u+$s;print(f'| {\"$name\"} | {n:,} | {$e:.2f} s | {cpu:.2f} s | {2*n/cpu/1e6:.2f} M | {$m/1024:.0f} MiB |')")
        echo "$line" >&2
    done
    out+=("$line")
done
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
    echo "Command: \`bash benches/analyze.sh\`"
} | tee -a benches/RESULTS.md
