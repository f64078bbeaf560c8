#!/usr/bin/env bash
# benches/capture-ab.sh — interleaved A/B of `myrr capture -r` builds against
# `tcpdump -r PCAP -w /dev/null` on one page-cached pcap. For refactors: each round runs
# tcpdump and every binary back to back, so a slow minute hits all of them alike.
#
# Per run: elapsed seconds and CPU seconds (user+sys), and the ratio of each to tcpdump's in
# the same round; at the end, the median ratio of each binary over the rounds.
#
# Usage: benches/capture-ab.sh PCAP ROUNDS [BINARY[,ARG...]...]
#   PCAP: a MySQL capture (benches/capture.sh leaves target/bench/sysbench.pcap and, with
#   --ps, sysbench-ps.pcap); BINARY: myrr executables (default: this checkout's, built here),
#   each with extra `capture` arguments after commas (e.g. `myrr,--backfill,view.json`).
# Environment: MYRR_AB_PORT (23306): the server port the pcap's MySQL traffic uses.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
if ((BENCH_BUILD_ONLY)); then
    BINS=("$@")
else
    [[ $# -ge 2 ]] || usage
    PCAP=$1 ROUNDS=$2
    shift 2
    BINS=("$@")
    [[ -f $PCAP ]] || bench_die "no pcap $PCAP (benches/capture.sh makes target/bench/sysbench.pcap)"
    [[ $ROUNDS =~ ^[0-9]+$ ]] || bench_die "ROUNDS must be a number, not '$ROUNDS'"
fi
bench_tools setup tcpdump:tcpdump
bench_tools apt /usr/bin/time:time python3:python3
# Extra capture arguments per binary ("BIN,ARG,ARG").
SPECS=("${BINS[@]}")
BINS=()
for spec in "${SPECS[@]}"; do
    BINS+=("${spec%%,*}")
done
bench_binaries "${BINS[@]}"
((${#SPECS[@]})) || SPECS=("${BINS[@]}")
bench_build_only_exit
PORT="${MYRR_AB_PORT:-23306}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

cat "$PCAP" >/dev/null # page-cache it
# run NAME CMD...: appends "round name elapsed cpu" to $T/runs.
run() {
    local name=$1
    shift
    /usr/bin/time -f '%e %U %S' -o "$T/time" "$@" >/dev/null 2>"$T/err" || {
        cat "$T/err" >&2
        bench_die "$name failed"
    }
    read -r e u s <"$T/time"
    echo "$round $name $e $(python3 -c "print(round($u + $s, 2))")" >>"$T/runs"
}
for round in $(seq "$ROUNDS"); do
    run tcpdump tcpdump -r "$PCAP" -w /dev/null
    i=0
    for spec in "${SPECS[@]}"; do
        i=$((i + 1))
        IFS=, read -ra parts <<<"$spec"
        run "myrr$i" "${parts[0]}" capture -r "$PCAP" --port "$PORT" -o "$T/out.myrr" "${parts[@]:1}"
    done
done
echo "binaries:"
i=0
for spec in "${SPECS[@]}"; do
    i=$((i + 1))
    echo "  myrr$i = ${spec//,/ }"
done
python3 - "$T/runs" <<'PY'
import sys, statistics
from collections import defaultdict
runs = defaultdict(dict)
for line in open(sys.argv[1]):
    r, name, e, cpu = line.split()
    runs[int(r)][name] = (float(e), float(cpu))
names = [n for n in runs[1] if n != "tcpdump"]
print("| round | tcpdump s (cpu) | " + " | ".join(f"{n} s (cpu), × tcpdump" for n in names) + " |")
print("|---" * (2 + len(names)) + "|")
ratios = defaultdict(list)
for r in sorted(runs):
    te, tc = runs[r]["tcpdump"]
    cells = []
    for n in names:
        e, c = runs[r][n]
        ratios[n].append((e / te, c / tc))
        cells.append(f"{e:.2f} ({c:.2f}), {e / te:.2f}× ({c / tc:.2f}× cpu)")
    print(f"| {r} | {te:.2f} ({tc:.2f}) | " + " | ".join(cells) + " |")
for n in names:
    el = statistics.median(x for x, _ in ratios[n])
    cp = statistics.median(y for _, y in ratios[n])
    print(f"{n}: median {el:.2f}× tcpdump's time, {cp:.2f}× its CPU")
PY
