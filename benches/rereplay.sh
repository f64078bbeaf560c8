#!/usr/bin/env bash
# benches/rereplay.sh — A/B of `--sync` on a writes.sh capture: two replays, then production
# as the reference.
#
# Replays the capture that benches/writes.sh left (target/bench/writes, or writes-tpcc with
# MYRR_BENCH_WORKLOAD=tpcc) twice with the given binary and replay arguments (after
# `--speed max --sync all` by default), each onto the candidate restored to the state before the
# capture, then runs `analyze --reference capture --baseline 1 --candidate 2
# --max-mismatch-rate 0`. Prints per replay: wall, user and system CPU seconds, the re-read
# counts, order-ambiguous and out-of-order labels, circles; then the verdict, the share not
# reproduced and its causes. Interleave builds (LABELs) to compare them: the machine drifts.
#
# Usage: benches/rereplay.sh LABEL [BINARY [replay args...]]
#   BINARY: a myrr executable (default, or `-`: this checkout's, built here).
# Environment: MYRR_BENCH_WORKLOAD (sysbench|tpcc), MYRR_BENCH_DIR, MYRR_BENCH_SYNC (the
#   `--sync` mode, `all`; `none` for the closed loop the time target is measured against).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
usage() { sed -n '2,15p' "$0" >&2; exit 2; }
L=ab BIN=()
if ! ((BENCH_BUILD_ONLY)); then
    [[ $# -ge 1 ]] || usage
    L=$1
    shift
    if [[ $# -ge 1 ]]; then
        [[ $1 == - ]] || BIN=("$1")
        shift
    fi
fi
bench_tools setup mariadb:mariadb-client mariadbd:mariadb-server
bench_tools apt /usr/bin/time:time python3:python3
bench_binaries ${BIN[@]+"${BIN[@]}"}
BIN=${BINS[0]}
bench_build_only_exit
case "${MYRR_BENCH_WORKLOAD:-sysbench}" in
    sysbench) DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/writes" ;;
    tpcc) DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/writes-tpcc" ;;
    *) bench_die "MYRR_BENCH_WORKLOAD is sysbench or tpcc" ;;
esac
[[ -f $DIR/capture.myrr && -f $DIR/before.sql ]] ||
    bench_die "no capture in $DIR: run benches/writes.sh first"
cd "$ROOT"
bash scripts/db.sh start >/dev/null
eval "$(bash scripts/db.sh env)"
DB=myrr_writes
M=(mariadb -h127.0.0.1 --protocol=tcp -umyrr -pmyrr)
for i in 1 2; do
    "${M[@]}" -P"$MYRR_CANDIDATE_PORT" -e "DROP DATABASE IF EXISTS $DB"
    "${M[@]}" -P"$MYRR_CANDIDATE_PORT" <"$DIR/before.sql"
    /usr/bin/time -f '%e %U %S' -o "$DIR/$L-$i.time" "$BIN" replay "$DIR/capture.myrr" \
        --target "$MYRR_CANDIDATE_URL" --default-db $DB -o "$DIR/$L-$i.myrr" --speed max \
        --sync "${MYRR_BENCH_SYNC:-all}" "$@" --json >"$DIR/$L-$i.json" 2>"$DIR/$L-$i.err"
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} #{sys.argv[3]}: wall/user/sys {open(sys.argv[4]).read().strip()}",
      "rereads", s.get("rereads"), "order-ambiguous", s.get("order_ambiguous"),
      "out-of-order", s.get("out_of_order"), "circles", s.get("sync_cycles"))' \
        "$DIR/$L-$i.json" "$L" "$i" "$DIR/$L-$i.time"
done
"$BIN" analyze --reference "$DIR/capture.myrr" --baseline "$DIR/$L-1.myrr" \
    --candidate "$DIR/$L-2.myrr" --max-mismatch-rate 0 --format json -o "$DIR/$L-ref.json" \
    --max-unreplayed 100% >/dev/null 2>&1 || true
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
v, x, t = r["verdict"], r["reproduction"], r["totals"]
share = 100 * x["not_reproduced_share"]
print(sys.argv[2], "PASS" if v["pass"] else "FAIL", f"not reproduced {share:.3f} %",
      x["causes"], "| labelled differences", t["order_dependent"], "| counted", t["mismatched"])' \
    "$DIR/$L-ref.json" "$L"
