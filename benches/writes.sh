#!/usr/bin/env bash
# benches/writes.sh — how deterministic is a write replay? Each rule's effect on answers and time.
#
# Captures a write workload on the source, from a state saved before it — sysbench
# oltp_read_write (prepared statements), or with MYRR_BENCH_WORKLOAD=tpcc the TPC-C-like
# benches/tpcc.py (mysql-connector-python, prepared statements, FOR UPDATE, AUTO_INCREMENT,
# multi-row INSERTs, NOW(6)) — then for each mode, twice: restore the candidate to that state, replay the
# capture against it, and time it. Per mode: replay time (median of the two), answers that
# differ between the two replays (analyze replay vs replay: FAIL/PASS, the application
# statements' mismatch rate) and between each replay and the capture, and whether the two
# replays' final tables are equal (CHECKSUM TABLE). Modes:
#   closed          --speed max --pin off      (no order, no pins: the reference time)
#   sync            --sync all --sync-views off --sync-writes off --pin off
#                                              (statements wait for earlier commits)
#   sync+pin        ... --pin on               (and production's timestamp/insert_id)
#   sync+pin+views  --sync all --sync-writes off
#                                              (commits also wait for the reads that ended
#                                               before they started)
#   default         --sync all                 (the default: writes also wait for the writes
#                                               of their rows that ended before they started)
#   views+setpins   ... --pin-batch off        (every pin a SET round trip of its own, as
#                                               before pins rode in the statement; not in the
#                                               default list)
#   all             ... --sync-writes on       (writes also wait for the
#                                               writes that ended before they started)
# Per mode also: `analyze --reference capture --baseline replay1 --candidate replay2
# --max-mismatch-rate 0` (verdict, share not reproduced, differences on labelled exchanges),
# and the replays' order labels (order-ambiguous reads, exchanges out of order).
# Results are printed and appended to benches/RESULTS.md.
#
# Usage: benches/writes.sh [--build-only]
# Environment: MYRR_BENCH_TIME (10 s of sysbench), MYRR_BENCH_THREADS (8),
#   MYRR_BENCH_MODES (all six, space-separated), MYRR_BENCH_WORKLOAD (sysbench|tpcc),
#   MYRR_BENCH_DIR,
#   MYRR_BENCH_CARGO_PROFILE (release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
[[ $# -eq 0 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
WORKLOAD="${MYRR_BENCH_WORKLOAD:-sysbench}"
case "$WORKLOAD" in
    sysbench) DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/writes" ;;
    tpcc) DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/writes-tpcc" ;;
    *) bench_die "MYRR_BENCH_WORKLOAD is sysbench or tpcc, not '$WORKLOAD'" ;;
esac
T="${MYRR_BENCH_TIME:-10}"
THREADS="${MYRR_BENCH_THREADS:-8}"
log() { bench_log "$@"; }

bench_tools setup sysbench:sysbench mariadb:mariadb-client mariadb-dump:mariadb-client mariadbd:mariadb-server
bench_tools apt /usr/bin/time:time python3:python3
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit

mkdir -p "$DIR"
bash scripts/db.sh start >/dev/null
eval "$(bash scripts/db.sh env)"
DB=myrr_writes
M=(mariadb -h127.0.0.1 --protocol=tcp -umyrr -pmyrr)
if [[ $WORKLOAD == sysbench ]]; then
    SB=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=myrr
        --mysql-password=myrr --mysql-db=$DB --tables=4 --table-size=2000)
    TABLES="$DB.sbtest1, $DB.sbtest2, $DB.sbtest3, $DB.sbtest4"
    load() { "${SB[@]}" --mysql-port="$MYRR_SOURCE_PORT" prepare >/dev/null; }
    work() { "${SB[@]}" --mysql-port="$MYRR_SOURCE_PORT" --threads="$THREADS" --time="$T" run; }
    WHAT="sysbench oltp_read_write"
else
    PY="$ROOT/target/clients/venv/bin/python"
    [[ -x $PY ]] || bench_die "no $PY: run scripts/setup.sh (it installs the Python client)"
    TPCC=("$PY" "$ROOT/benches/tpcc.py" --host 127.0.0.1 --port "$MYRR_SOURCE_PORT" --user myrr
          --password myrr --db "$DB")
    TABLES=$(for t in warehouse district customer history orders new_order order_line item stock; do
        printf '%s.%s, ' "$DB" "$t"; done | sed 's/, $//')
    load() { "${TPCC[@]}" --prepare; }
    work() { "${TPCC[@]}" --threads "$THREADS" --time "$T"; }
    WHAT="benches/tpcc.py (TPC-C-like)"
fi
checksum() { "${M[@]}" -P"$1" -N -e "CHECKSUM TABLE $TABLES" | awk '{print $2}' | tr '\n' ' '; }

log "loading $DB on the source ($WHAT); saving that state"
"${M[@]}" -P"$MYRR_SOURCE_PORT" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
load
mariadb-dump -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$MYRR_SOURCE_PORT" --databases $DB >"$DIR/before.sql"

log "capturing $WHAT, $THREADS threads, ${T}s"
"$MYRR" capture -i lo --port "$MYRR_SOURCE_PORT" -o "$DIR/capture.myrr" 2>"$DIR/capture.log" &
CAP=$!
trap 'kill -INT $CAP 2>/dev/null || true' EXIT
sleep 1
work >"$DIR/sysbench.txt"
sleep 0.5
kill -INT $CAP
wait $CAP || true
trap - EXIT
PROD=$(checksum "$MYRR_SOURCE_PORT")

declare -A ARGS=(
    [closed]="--speed max --pin off"
    [sync]="--speed max --sync all --sync-views off --sync-writes off --pin off"
    [sync+pin]="--speed max --sync all --sync-views off --sync-writes off --pin on"
    [sync+pin+views]="--speed max --sync all --sync-writes off"
    [default]="--speed max --sync all"
    [views+setpins]="--speed max --sync all --pin-batch off"
    [all]="--speed max --sync all --sync-writes on"
)
read -r -a MODES <<<"${MYRR_BENCH_MODES:-closed sync sync+pin sync+pin+views default all}"
restore() {
    "${M[@]}" -P"$MYRR_CANDIDATE_PORT" -e "DROP DATABASE IF EXISTS $DB"
    "${M[@]}" -P"$MYRR_CANDIDATE_PORT" <"$DIR/before.sql"
}
# rate FILE: "verdict app-rate% all-rate%" of an analyze JSON report.
rate() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
t = r["totals"]
app = 100 * t["application_mismatched"] / max(t["application_compared"], 1)
every = 100 * t["mismatched"] / max(t["compared"], 1)
print("PASS" if r["verdict"]["pass"] else "FAIL", f"{app:.3f}", f"{every:.3f}")' "$1"
}
# against_reference FILE: "verdict (reasons) | not-reproduced % (causes) | labelled differences"
against_reference() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
v, x, t = r["verdict"], r["reproduction"], r["totals"]
verdict = "PASS" if v["pass"] else "FAIL: " + "; ".join(v["reasons"])
causes = ", ".join(f"{k} {n}" for k, n in x["causes"].items())
dep = ", ".join(f"{k} {n}" for k, n in t["order_dependent"].items()) or "0"
share, counted = 100 * x["not_reproduced_share"], t["mismatched"]
print(f"{verdict} | {share:.3f} ({causes}) | {dep} | {counted}")' "$1"
}
# labels FILE: "ambiguous out-of-order lock-conflict after-divergence" of a replay JSON summary.
labels() {
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
d = s.get("divergence") or {}
print(s.get("order_ambiguous", 0), s.get("out_of_order", 0), d.get("lock_conflicts", 0), d.get("after_divergence", 0))' "$1"
}
declare -A TIME SUMS
for mode in "${MODES[@]}"; do
    for i in 1 2; do
        restore
        out="$DIR/$mode-$i.myrr"
        # shellcheck disable=SC2086
        /usr/bin/time -f '%e' -o "$DIR/time" "$MYRR" replay "$DIR/capture.myrr" \
            --target "$MYRR_CANDIDATE_URL" --default-db $DB -o "$out" ${ARGS[$mode]} --json >"$DIR/$mode-$i.json" 2>/dev/null
        TIME[$mode-$i]=$(cat "$DIR/time")
        SUMS[$mode-$i]=$(checksum "$MYRR_CANDIDATE_PORT")
        log "$mode #$i: $(cat "$DIR/time") s"
    done
    "$MYRR" analyze --baseline "$DIR/$mode-1.myrr" --candidate "$DIR/$mode-2.myrr" --format json -o "$DIR/$mode-rr.json" --max-unreplayed 100% || true
    "$MYRR" analyze --baseline "$DIR/capture.myrr" --candidate "$DIR/$mode-1.myrr" --format json -o "$DIR/$mode-cr.json" --max-unreplayed 100% || true
    "$MYRR" analyze --reference "$DIR/capture.myrr" --baseline "$DIR/$mode-1.myrr" --candidate "$DIR/$mode-2.myrr" \
        --max-mismatch-rate 0 --format json -o "$DIR/$mode-ref.json" --max-unreplayed 100% || true
done

{
    echo
    echo "## $(date -u '+%F %T') — writes.sh: $WHAT, $THREADS threads, ${T}s, replayed twice per mode"
    echo
    echo '```'
    grep -E "queries:|transactions:" "$DIR/sysbench.txt" | sed 's/^ *//'
    echo '```'
    echo
    echo "| mode | replay s (1, 2) | replay vs replay: verdict, app. mismatch %, all % | capture vs replay 1: app. %, all % | tables: replays equal / = production | labels (replay 1): order-ambiguous, out-of-order, lock-conflict, after-divergence |"
    echo "|---|---|---|---|---|---|"
    for mode in "${MODES[@]}"; do
        read -r v a e <<<"$(rate "$DIR/$mode-rr.json")"
        read -r _ ca ce <<<"$(rate "$DIR/$mode-cr.json")"
        eq=no; [[ "${SUMS[$mode-1]}" == "${SUMS[$mode-2]}" ]] && eq=yes
        pr=no; [[ "${SUMS[$mode-1]}" == "$PROD" ]] && pr=yes
        read -r la lo lc ld <<<"$(labels "$DIR/$mode-1.json")"
        echo "| $mode (\`${ARGS[$mode]}\`) | ${TIME[$mode-1]}, ${TIME[$mode-2]} | $v, $a, $e | $ca, $ce | $eq / $pr | $la, $lo, $lc, $ld |"
    done
    echo
    echo "With production as the reference (\`analyze --reference capture --baseline replay1 --candidate replay2 --max-mismatch-rate 0\`):"
    echo
    echo "| mode | verdict | not reproduced % of compared (causes) | differences on labelled exchanges (not counted) | differences counted |"
    echo "|---|---|---|---|---|"
    for mode in "${MODES[@]}"; do
        echo "| $mode | $(against_reference "$DIR/$mode-ref.json") |"
    done
} | tee -a benches/RESULTS.md
