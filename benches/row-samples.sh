#!/usr/bin/env bash
# benches/row-samples.sh — how much do row samples add to a recording?
#
# Records sysbench oltp_read_write on the source with tcpdump (text protocol, then prepared
# statements), then decodes each pcap twice with `myrr capture -r`: with row samples (the
# default: the first rows of the first 3 answers of each statement shape) and with
# --no-row-samples (what recordings held before samples existed); then replays the prepared-
# statement capture (closed loop, no --sync: most answers differ, the worst case for a
# replay's samples) onto the candidate restored to the pre-capture state, with and without
# samples, twice each. Prints sizes, growth, CPU and replay times, and appends the tables to
# benches/RESULTS.md.
#
# Usage: benches/row-samples.sh [--build-only]
# Environment: MYRR_BENCH_TIME (30 s of sysbench per protocol), MYRR_BENCH_THREADS (8),
#   MYRR_BENCH_DIR, MYRR_BENCH_CARGO_PROFILE (release), MYRR_SOURCE_PORT (scripts/db.sh's).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
[[ $# -eq 0 ]] || { sed -n '2,12p' "$0" >&2; exit 2; }
DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/row-samples"
T="${MYRR_BENCH_TIME:-30}"
THREADS="${MYRR_BENCH_THREADS:-8}"
RESULTS_MD="${MYRR_BENCH_RESULTS:-$ROOT/benches/RESULTS.md}"
log() { bench_log "$@"; }

bench_tools setup tcpdump:tcpdump sysbench:sysbench mariadb:mariadb-client mariadb-dump:mariadb-client mariadbd:mariadb-server
bench_tools apt /usr/bin/time:time
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit

mkdir -p "$DIR"
bash scripts/db.sh start >/dev/null
eval "$(bash scripts/db.sh env)"
DB=myrr_rowsamples
SB=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=myrr
    --mysql-password=myrr --mysql-db=$DB --tables=4 --table-size=10000
    --mysql-port="$MYRR_SOURCE_PORT")
M=(mariadb -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$MYRR_SOURCE_PORT")
"${M[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
"${SB[@]}" prepare >/dev/null

ROWS=()
MC=(mariadb -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$MYRR_CANDIDATE_PORT")
for mode in disable auto; do
    mariadb-dump -h127.0.0.1 --protocol=tcp -umyrr -pmyrr -P"$MYRR_SOURCE_PORT" --databases $DB >"$DIR/before-$mode.sql"
    pcap="$DIR/sysbench-$mode.pcap"
    log "recording sysbench oltp_read_write (--db-ps-mode=$mode), $THREADS threads, ${T}s"
    tcpdump -i lo -s 0 -w "$pcap" "tcp port $MYRR_SOURCE_PORT" 2>"$DIR/tcpdump-$mode.log" &
    TD=$!
    sleep 1
    "${SB[@]}" --db-ps-mode=$mode --threads="$THREADS" --time="$T" run >"$DIR/sysbench-$mode.txt"
    sleep 1
    kill -INT $TD
    wait $TD || true
    queries=$(awk '/queries:/ {print $2; exit}' "$DIR/sysbench-$mode.txt")
    for with in on off; do
        out="$DIR/$mode-$with.myrr"
        extra=()
        [[ $with == off ]] && extra=(--no-row-samples)
        /usr/bin/time -f '%U %S' -o "$DIR/time-$mode-$with" \
            "$MYRR" capture -r "$pcap" --port "$MYRR_SOURCE_PORT" -o "$out" --json \
            "${extra[@]+"${extra[@]}"}" 2>"$DIR/capture-$mode-$with.json"
    done
    on=$(stat -c %s "$DIR/$mode-on.myrr")
    off=$(stat -c %s "$DIR/$mode-off.myrr")
    kept=$(grep -o '"row_samples":{[^}]*}' "$DIR/capture-$mode-on.json" | grep -o '"kept":[0-9]*' | cut -d: -f2)
    cpu_on=$(awk '{print $1 + $2}' "$DIR/time-$mode-on")
    cpu_off=$(awk '{print $1 + $2}' "$DIR/time-$mode-off")
    growth=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.2f", (a - b) * 100 / b }')
    pcap_size=$(stat -c %s "$pcap")
    ROWS+=("| $mode | $queries | $((pcap_size >> 20)) MiB | $off | $on | +$growth % | $kept | ${cpu_off} s / ${cpu_on} s |")
done

REPLAYS=()
for run in 1 2; do
    for with in on off; do
        "${MC[@]}" <"$DIR/before-auto.sql"
        extra=()
        [[ $with == off ]] && extra=(--no-row-samples)
        out="$DIR/replay-$with-$run.myrr"
        /usr/bin/time -f '%e %U %S' -o "$DIR/time-replay-$with-$run" \
            "$MYRR" replay "$DIR/auto-on.myrr" --target "mysql://myrr:myrr@127.0.0.1:$MYRR_CANDIDATE_PORT" \
            --speed max --json -o "$out" "${extra[@]+"${extra[@]}"}" >"$DIR/replay-$with-$run.json" \
            2>"$DIR/replay-$with-$run.log"
        samples=$(grep -o '"row_samples":[0-9]*' "$DIR/replay-$with-$run.json" | cut -d: -f2)
        read -r wall user sys <"$DIR/time-replay-$with-$run"
        REPLAYS+=("| $run | $with | $(stat -c %s "$out") | $samples | $wall s | $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') s |")
    done
done
log "replays done"

TABLE=$(
    echo "| --db-ps-mode | queries | pcap | recording without samples (bytes) | with samples (bytes) | growth | answers sampled | capture CPU without / with |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
)
REPLAY_TABLE=$(
    echo "| run | row samples | replay recording (bytes) | answers sampled | replay wall time | replay CPU (user+sys) |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${REPLAYS[@]}"
)
echo "$TABLE"
echo "$REPLAY_TABLE"
{
    echo
    echo "## $(date '+%Y-%m-%d %H:%M:%S') — row-samples.sh: recording growth from row samples, sysbench oltp_read_write, $THREADS threads, ${T}s"
    echo
    echo "Each pcap decoded twice by \`myrr capture -r\`: with row samples (default) and with \`--no-row-samples\`."
    echo
    echo "$TABLE"
    echo
    echo "The prepared-statement capture replayed (\`--speed max\`, no \`--sync\`) onto the candidate restored to the pre-capture state:"
    echo
    echo "$REPLAY_TABLE"
} >>"$RESULTS_MD"
