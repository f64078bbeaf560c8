#!/usr/bin/env bash
# benches/ramp.sh — does a ramp cost more per exchange than the same steps run as separate
# replays?
#
# Replays a sysbench oltp_read_only recording (benches/replay.sh leaves
# target/bench/replay/ro-16.myrr) paced at MYRR_BENCH_SPEED (0.2: about a fifth of the
# recorded closed-loop rate, so that every step keeps up on this machine), interleaved, in
# ROUNDS rounds: once as `--ramp 1,2` and once as two replays, `--scale 1` then `--scale 2`.
# Prints, per round, the exchanges and the replay processes' CPU (user+sys) per exchange.
# The ramp's lag limit is set out of reach, so both run every step to the end.
#
# Usage: benches/ramp.sh [--build-only] [ROUNDS]
# Environment: MYRR_BENCH_SPEED (0.2), MYRR_BENCH_LIMIT (4s of the recording per step),
#   MYRR_BENCH_DIR, MYRR_BENCH_CARGO_PROFILE (release).
# The database pair must be up (bash scripts/db.sh start) with myrr_bench loaded
# (benches/replay.sh loads it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
[[ $# -le 1 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
ROUNDS="${1:-3}"
SPEED="${MYRR_BENCH_SPEED:-0.2}"
LIMIT="${MYRR_BENCH_LIMIT:-4s}"
DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}"
REC="$DIR/replay/ro-16.myrr"
bench_tools apt /usr/bin/time:time python3:python3
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit
[[ -f $REC ]] || bench_die "no recording $REC: run benches/replay.sh first"
eval "$(bash scripts/db.sh env)"
URL="mysql://myrr:myrr@127.0.0.1:$MYRR_CANDIDATE_PORT/myrr_bench"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# One replay: prints "exchanges cpu_seconds".
replay() {
    /usr/bin/time -f "%U %S" -o "$T/time" "$MYRR" replay "$REC" --target "$URL" \
        -o "$T/out.myrr" --speed "$SPEED" --limit-duration "$LIMIT" --json "$@" >"$T/summary.json" 2>"$T/err" \
        || { cat "$T/err" >&2; bench_die "replay failed"; }
    python3 - "$T/summary.json" "$T/time" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
u, k = map(float, open(sys.argv[2]).read().split()[-2:])
print(s["exchanges"], u + k)
PY
}

row() { python3 -c 'import sys; r, m, n, c = sys.argv[1:]; n = int(n); c = float(c); print(f"{r:<6} {m:<22} {n:>10} {c:>10.2f} {c * 1e6 / n:>12.2f}")' "$@"; }
printf '%-6s %-22s %10s %10s %12s\n' round mode exchanges cpu_s "cpu µs/exch"
for round in $(seq "$ROUNDS"); do
    read -r n cpu < <(replay --ramp 1,2 --ramp-max-lag 1h)
    row "$round" "ramp 1,2" "$n" "$cpu"
    read -r n1 cpu1 < <(replay --scale 1)
    read -r n2 cpu2 < <(replay --scale 2)
    row "$round" "scale 1 + scale 2" $((n1 + n2)) "$(python3 -c "print($cpu1 + $cpu2)")"
done
