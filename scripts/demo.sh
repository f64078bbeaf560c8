#!/usr/bin/env bash
# The whole story on this machine, in a few minutes: two MariaDB servers, a real client
# workload captured off loopback, a candidate that differs (a dropped index, one changed
# row), a replay on both, and a report.
#
#   bash scripts/demo.sh            # builds myrr (optimized) and runs everything
#   MYRR_BIN=target/debug/myrr MYRR_DEMO_SECONDS=3 bash scripts/demo.sh   # faster, for tests
#
# Output goes to ${MYRR_DEMO_DIR:-target/demo-run}: prod.myrr (the capture), base.myrr and
# cand.myrr (replays on the source and the candidate), report.html, report.json.
# Exit status: 0 when the demo ran (whatever the verdict), non-zero when something broke.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\n\033[1m[demo] %s\033[0m\n' "$*" >&2; }
[[ -n "${NO_COLOR:-}" || ! -t 2 ]] && say() { printf '\n[demo] %s\n' "$*" >&2; }

OUT="${MYRR_DEMO_DIR:-$ROOT/target/demo-run}"
SECONDS_RUN="${MYRR_DEMO_SECONDS:-10}"
DB=myrr_demo
mkdir -p "$OUT"

say "1/7 system packages and the MariaDB pair (scripts/setup.sh, scripts/db.sh)"
bash scripts/setup.sh
bash scripts/db.sh start
eval "$(bash scripts/db.sh env)"
SRC=$MYRR_SOURCE_PORT
CAND=$MYRR_CANDIDATE_PORT
if [[ -n "${MYRR_BIN:-}" ]]; then
    BIN="$MYRR_BIN"
else
    say "building myrr (optimized, profile demo)"
    cargo build --profile demo -q -p myrr
    BIN="$ROOT/target/demo/myrr"
fi
M=(mariadb -h127.0.0.1 --protocol=tcp -umyrr -pmyrr)
SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=myrr --mysql-password=myrr --mysql-db=$DB --tables=2 --table-size=10000)

say "2/7 a small realistic schema on the source (sysbench, 2 × 10k rows), copied to the candidate"
"${M[@]}" -P"$SRC" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
"${SB[@]}" --mysql-port="$SRC" oltp_read_only prepare >/dev/null
mariadb-dump -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$SRC" --databases $DB | "${M[@]}" -P"$CAND"

say "3/7 capturing loopback traffic to port $SRC while sysbench (text and prepared) and an app query run"
rm -f "$OUT/prod.myrr"
"$BIN" capture -i lo --port "$SRC" -o "$OUT/prod.myrr" --duration 10m 2>"$OUT/capture.log" &
CAP=$!
trap 'kill -INT $CAP 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "capturing on" "$OUT/capture.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
"${SB[@]}" --mysql-port="$SRC" --threads=4 --time="$SECONDS_RUN" --db-ps-mode=disable oltp_read_only run | grep -E "queries:|transactions:" >&2
"${SB[@]}" --mysql-port="$SRC" --threads=4 --time="$(( (SECONDS_RUN + 1) / 2 ))" --db-ps-mode=auto oltp_read_only run | grep -E "queries:" >&2
# The "app": lookups by the secondary index k, one of them on row 4242.
{
    echo "USE $DB;"
    for i in $(seq 1 200); do
        echo "SELECT id, c FROM sbtest1 WHERE k = $(( (i * 7919) % 10000 + 1 ));"
        echo "SELECT k, c FROM sbtest2 WHERE id = $(( i == 100 ? 4242 : (i * 104729) % 10000 + 1 ));"
    done
} | "${M[@]}" -P"$SRC" >/dev/null
sleep 0.3
kill -INT $CAP
wait $CAP
trap - EXIT
cat "$OUT/capture.log" >&2

say "4/7 the candidate differs: index k_1 dropped on sbtest1, one row of sbtest2 changed"
"${M[@]}" -P"$CAND" -e "ALTER TABLE $DB.sbtest1 DROP INDEX k_1; UPDATE $DB.sbtest2 SET c = 'changed on the candidate' WHERE id = 4242"

say "5/7 replaying the capture on the source (baseline) and on the candidate (--speed max)"
"$BIN" replay "$OUT/prod.myrr" --target "$MYRR_SOURCE_URL" --speed max -o "$OUT/base.myrr"
"$BIN" replay "$OUT/prod.myrr" --target "$MYRR_CANDIDATE_URL" --speed max -o "$OUT/cand.myrr"

say "6/7 analyzing: baseline replay vs candidate replay"
set +e
"$BIN" analyze --baseline "$OUT/base.myrr" --candidate "$OUT/cand.myrr" --max-p99-regression 20% --top 8
VERDICT=$?
"$BIN" analyze --baseline "$OUT/base.myrr" --candidate "$OUT/cand.myrr" --max-p99-regression 20% --format json -o "$OUT/report.json" 2>/dev/null
"$BIN" analyze --baseline "$OUT/base.myrr" --candidate "$OUT/cand.myrr" --max-p99-regression 20% --format html -o "$OUT/report.html"
set -e
[[ $VERDICT -le 1 ]] || { echo "[demo] analyze could not run (exit $VERDICT)" >&2; exit 1; }

say "7/7 done"
case $VERDICT in
    0) echo "verdict: PASS" ;;
    1) echo "verdict: FAIL (as expected: the candidate lost an index and one row differs)" ;;
esac
echo "report: $OUT/report.html (also report.json); recordings in $OUT"
