#!/usr/bin/env bash
# benches/capture.sh — how fast does `myrr capture` decode a large, real pcap?
#
# Makes a pcap of sysbench oltp_read_write traffic against the project MariaDB
# (127.0.0.1:23306, see scripts/db.sh), then times, on the same page-cached file:
#   a. tcpdump -r FILE -w /dev/null                       (floor: read + write pcap)
#   b. myrr capture -r FILE --port 23306 -o OUT.myrr      (3 runs each, medians)
#   c. tshark -r FILE -Y mysql.query -T fields ...        (1 run, maybe on a slice)
# and prints a results table, which is also appended to benches/RESULTS.md.
#
# Usage: benches/capture.sh [--reuse] [--ps] [--profile|--no-profile] [--no-tshark] [--build-only]
#   --reuse       keep an existing pcap (and its saved sysbench/tcpdump logs)
#   --ps          sysbench with prepared statements (binary protocol), own pcap
#   --profile     always run the perf profile (default: only if myrr > 4x tcpdump)
#   --no-profile  never run it
#   --no-tshark   skip tshark
#   --build-only  build myrr, check tcpdump, tshark, sysbench, MariaDB and the helpers are
#                 installed or installable, then exit without benchmarking (tests/benches.rs)
# Environment: MYRR_BENCH_DIR (default <repo>/target/bench), MYRR_BENCH_TIME (20 s),
#   MYRR_BENCH_THREADS (16), MYRR_BENCH_RUNS (3), MYRR_BENCH_PROFILE_PACKETS (200000),
#   MYRR_BENCH_TSHARK_MAX (600 s: above this estimate tshark runs on a 10% slice),
#   MYRR_BENCH_RESULTS (where to append, default benches/RESULTS.md),
#   MYRR_BENCH_CARGO_PROFILE (the cargo profile myrr is built with, default release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/benches/lib/build.sh"
BENCH_DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}"
DB_PORT=23306
DURATION="${MYRR_BENCH_TIME:-20}"
THREADS="${MYRR_BENCH_THREADS:-16}"
RUNS="${MYRR_BENCH_RUNS:-3}"
PROFILE_PACKETS="${MYRR_BENCH_PROFILE_PACKETS:-200000}"
TSHARK_MAX="${MYRR_BENCH_TSHARK_MAX:-600}"
RESULTS_MD="${MYRR_BENCH_RESULTS:-$ROOT/benches/RESULTS.md}"

REUSE=0 PS=0 PROFILE=auto TSHARK=1
bench_args "$@"
for arg in "${BENCH_ARGS[@]}"; do
    case "$arg" in
        --reuse) REUSE=1 ;;
        --ps) PS=1 ;;
        --profile) PROFILE=yes ;;
        --no-profile) PROFILE=no ;;
        --no-tshark) TSHARK=0 ;;
        -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { bench_log "$@"; }
die() { bench_die "$@"; }

# ---- 1. tools and build ---------------------------------------------------------------
# tcpdump and tshark are what myrr is measured against; sysbench makes the traffic, on the
# MariaDB of scripts/db.sh. capinfos comes with tshark (wireshark-common). jq, perf and
# valgrind are optional (a fallback, the profile).
bench_tools setup tcpdump:tcpdump tshark:tshark editcap:tshark capinfos:tshark \
    sysbench:sysbench mariadb:mariadb-client mariadbd:mariadb-server
bench_tools apt /usr/bin/time:time numfmt:coreutils
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
if ((PS)); then NAME=sysbench-ps PS_MODE=auto; else NAME=sysbench PS_MODE=disable; fi
PCAP="$BENCH_DIR/$NAME.pcap"
SYSBENCH_LOG="$PCAP.sysbench.txt"   # kept next to the pcap so --reuse can report them
TCPDUMP_LOG="$PCAP.tcpdump.txt"
OUT="$BENCH_DIR/$NAME.myrr"
WORK="$(mktemp -d "$BENCH_DIR/run.XXXXXX")"

# ---- cleanup: only processes this script started, by pid ----------------------------
BG_PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${BG_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT "$pid" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TIME=(/usr/bin/time -f '%e %M %U %S')   # elapsed s, max RSS KB, user s, sys s

# median of the numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# fdiv A B [DECIMALS]
fdiv() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.*f\n", d, a / b }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }        # KB -> MB
human() { numfmt --to=iec-i --suffix=B --format='%.2f' "$1"; }

# timed LOG cmd...: run cmd (stdout/stderr -> LOG), print "elapsed_s maxrss_kb cpu_s"
timed() {
    local logf="$1"; shift
    local tf="$WORK/time.$$.$RANDOM"
    if ! "${TIME[@]}" -o "$tf" "$@" >"$logf" 2>&1; then
        # myrr capture exits 1 on a damaged input, still a measurement; anything else is not
        log "command failed: $* (see below)"; tail -20 "$logf" >&2
        [[ "$1" == "$MYRR" ]] || die "aborting"
    fi
    tail -1 "$tf" | awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }'
}

# ---- 2. pcap ------------------------------------------------------------------------
SB=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=$DB_PORT
    --mysql-user=myrr --mysql-password=myrr --mysql-db=sbtest --tables=4 --table-size=10000)
SB_RUN=("${SB[@]}" --threads="$THREADS" --time="$DURATION" --db-ps-mode="$PS_MODE" run)
TCPDUMP_CMD=(tcpdump -i lo -s 0 -B 262144 -w "$PCAP" "tcp port $DB_PORT")

if ((REUSE)) && [[ -s "$PCAP" ]]; then
    log "reusing $PCAP"
else
    if ! mariadb --no-defaults -h127.0.0.1 -P$DB_PORT -umyrr -pmyrr -e 'select 1' sbtest >/dev/null 2>&1; then
        log "MariaDB on $DB_PORT is not answering; starting it"
        bash "$ROOT/scripts/db.sh" start source
    fi
    log "sysbench cleanup + prepare (4 tables x 10000 rows)"
    "${SB[@]}" cleanup >/dev/null
    "${SB[@]}" prepare >/dev/null
    rm -f "$PCAP"
    log "starting: ${TCPDUMP_CMD[*]}"
    echo "# ${TCPDUMP_CMD[*]}" >"$TCPDUMP_LOG"
    "${TCPDUMP_CMD[@]}" 2>>"$TCPDUMP_LOG" &
    TCPDUMP_PID=$!
    BG_PIDS+=("$TCPDUMP_PID")
    for _ in $(seq 100); do
        grep -q 'listening on' "$TCPDUMP_LOG" 2>/dev/null && break
        kill -0 "$TCPDUMP_PID" 2>/dev/null || { cat "$TCPDUMP_LOG" >&2; die "tcpdump exited"; }
        sleep 0.1
    done
    grep -q 'listening on' "$TCPDUMP_LOG" || die "tcpdump did not start listening"
    sleep 0.5
    log "running: ${SB_RUN[*]}"
    echo "# ${SB_RUN[*]}" >"$SYSBENCH_LOG"
    "${SB_RUN[@]}" >>"$SYSBENCH_LOG" 2>&1 || { cat "$SYSBENCH_LOG" >&2; die "sysbench run failed"; }
    sleep 0.5
    kill -INT "$TCPDUMP_PID"
    wait "$TCPDUMP_PID" || true
    log "tcpdump: $(tr '\n' ';' <"$TCPDUMP_LOG")"
fi
[[ -s "$PCAP" ]] || die "no pcap at $PCAP"

PCAP_BYTES=$(stat -c %s "$PCAP")
SB_QUERIES=$(awk '/queries:/ {print $2; exit}' "$SYSBENCH_LOG" 2>/dev/null || true)
SB_TX=$(awk '/transactions:/ {print $2; exit}' "$SYSBENCH_LOG" 2>/dev/null || true)
SB_QPS=$(awk '/queries:/ {gsub(/\(/, "", $3); print $3; exit}' "$SYSBENCH_LOG" 2>/dev/null || true)
TD_CAPTURED=$(awk '/packets captured/ {print $1}' "$TCPDUMP_LOG" 2>/dev/null || true)
TD_DROPS=$(awk '/dropped by kernel/ {print $1}' "$TCPDUMP_LOG" 2>/dev/null || true)
# what was actually run (matters with --reuse)
SB_RUN_DESC="$(sed -n '1s/^# //p' "$SYSBENCH_LOG" 2>/dev/null)"; SB_RUN_DESC="${SB_RUN_DESC:-${SB_RUN[*]}}"
TCPDUMP_DESC="$(sed -n '1s/^# //p' "$TCPDUMP_LOG" 2>/dev/null)"; TCPDUMP_DESC="${TCPDUMP_DESC:-${TCPDUMP_CMD[*]}}"
SB_THREADS=$(awk -F: '/Number of threads/ {gsub(/ /, "", $2); print $2; exit}' "$SYSBENCH_LOG" 2>/dev/null || true)
SB_TIME=$(awk '/total time:/ {print $3; exit}' "$SYSBENCH_LOG" 2>/dev/null || true)
SB_MODE="text protocol"; [[ "$SB_RUN_DESC" == *--db-ps-mode=disable* ]] || SB_MODE="prepared statements"
log "pcap $(human "$PCAP_BYTES"), sysbench queries ${SB_QUERIES:-?}, tcpdump drops ${TD_DROPS:-?}"

# ---- 3. measurements ----------------------------------------------------------------
log "warm-up read of the pcap"
cat "$PCAP" >/dev/null

LOADAVG_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -a TD_T TD_M TD_C MY_T MY_M MY_C
for i in $(seq "$RUNS"); do
    read -r t m c < <(timed "$WORK/tcpdump.$i.log" tcpdump -r "$PCAP" -w /dev/null)
    TD_T+=("$t"); TD_M+=("$m"); TD_C+=("$c")
    log "tcpdump run $i: ${t}s ${m}KB cpu ${c}s"
done
for i in $(seq "$RUNS"); do
    rm -f "$OUT"
    read -r t m c < <(timed "$WORK/myrr.$i.log" "$MYRR" capture -r "$PCAP" --port $DB_PORT -o "$OUT")
    MY_T+=("$t"); MY_M+=("$m"); MY_C+=("$c")
    log "myrr capture run $i: ${t}s ${m}KB cpu ${c}s"
done
MYRR_SUMMARY="$(cat "$WORK/myrr.$RUNS.log")"
"$MYRR" capture -r "$PCAP" --port $DB_PORT -o "$WORK/json.myrr" --json 2>"$WORK/summary.json" || true
PACKETS=$(jq -r .packets "$WORK/summary.json" 2>/dev/null || echo 0)
[[ "$PACKETS" =~ ^[0-9]+$ && "$PACKETS" -gt 0 ]] || PACKETS=$(capinfos -c -M "$PCAP" | awk '/Number of packets/ {print $NF}')
OUT_BYTES=$(stat -c %s "$OUT")

TD_MED=$(median "${TD_T[@]}"); TD_RSS=$(median "${TD_M[@]}")
MY_MED=$(median "${MY_T[@]}"); MY_RSS=$(median "${MY_M[@]}")
RATIO=$(fdiv "$MY_MED" "$TD_MED")
TD_CPU=$(median "${TD_C[@]}"); MY_CPU=$(median "${MY_C[@]}")
CPU_RATIO=$(fdiv "$MY_CPU" "$TD_CPU")
LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

log "inspecting the recording"
"$MYRR" inspect "$OUT" --format jsonl 2>"$WORK/inspect.err" >"$WORK/events.jsonl"
JSONL_LINES=$(wc -l <"$WORK/events.jsonl")
EXCHANGES=$(grep -c '"event":"exchange"' "$WORK/events.jsonl" || true)
INSPECT_SUMMARY="$(cat "$WORK/inspect.err")"
rm -f "$WORK/events.jsonl"

# tshark: probe on a 10% slice; run on the whole file only if that looks affordable.
# Port 23306 is not wireshark's MySQL port, so `-d tcp.port==23306,mysql` is needed, else
# nothing is dissected as MySQL (and mysql.query never matches).
TSHARK_CMD_DESC="-"
TS_T=n/a TS_M=n/a TS_CPU=n/a TS_NOTE="skipped" TS_LINES=n/a TS_SCALED=""
if ((TSHARK)); then
    SLICE_N=$(( (PACKETS + 9) / 10 ))
    SLICE="$WORK/slice10.pcap"
    tcpdump -r "$PCAP" -c "$SLICE_N" -w "$SLICE" 2>/dev/null
    cat "$SLICE" >/dev/null
    TS=(tshark -r "$SLICE" -d "tcp.port==$DB_PORT,mysql" -Y mysql.query -T fields -e mysql.query)
    log "tshark on first 10% ($SLICE_N packets)"
    "${TIME[@]}" -o "$WORK/tshark.time" "${TS[@]}" >"$WORK/tshark.out" 2>"$WORK/tshark.err" || die "tshark failed: $(tail -3 "$WORK/tshark.err")"
    read -r st sm _ <"$WORK/tshark.time"
    SLICE_LINES=$(wc -l <"$WORK/tshark.out"); rm -f "$WORK/tshark.out"
    EST=$(awk -v t="$st" -v a="$PACKETS" -v b="$SLICE_N" 'BEGIN { printf "%.0f", t * a / b }')
    log "tshark slice: ${st}s ${sm}KB, ${SLICE_LINES} query lines; full-file estimate ${EST}s"
    if ((EST <= TSHARK_MAX)); then
        TS=(tshark -r "$PCAP" -d "tcp.port==$DB_PORT,mysql" -Y mysql.query -T fields -e mysql.query)
        log "tshark on the whole file"
        "${TIME[@]}" -o "$WORK/tshark.time" "${TS[@]}" >"$WORK/tshark.out" 2>"$WORK/tshark.err" || die "tshark failed: $(tail -3 "$WORK/tshark.err")"
        read -r TS_T TS_M TS_U TS_S <"$WORK/tshark.time"
        TS_CPU=$(awk -v u="$TS_U" -v s="$TS_S" 'BEGIN { printf "%.2f", u + s }')
        TS_LINES=$(wc -l <"$WORK/tshark.out"); rm -f "$WORK/tshark.out"
        TS_NOTE="whole file, 1 run"
    else
        TS_T=$EST TS_M=$sm TS_CPU=n/a TS_LINES="$SLICE_LINES (slice)"
        TS_NOTE="first 10% ($SLICE_N pkts, ${st}s) scaled x$(fdiv "$PACKETS" "$SLICE_N" 2); RSS is the slice's"
        TS_SCALED=" (est.)"
    fi
    TSHARK_CMD_DESC="${TS[*]} > /dev/null"
    rm -f "$SLICE"
fi

# ---- 4. profile (if myrr is slow) ----------------------------------------------------
PROFILE_TXT="" PROFILE_INCL=""
if [[ "$PROFILE" == yes || ( "$PROFILE" == auto && $(awk -v r="$RATIO" 'BEGIN {print (r > 4)}') == 1 ) ]]; then
    PSLICE="$WORK/profile.pcap"
    tcpdump -r "$PCAP" -c "$PROFILE_PACKETS" -w "$PSLICE" 2>/dev/null
    if ! command -v perf >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null || true
    fi
    if command -v perf >/dev/null && perf stat -e cpu-clock true >/dev/null 2>&1; then
        # hardware counters are often missing in VMs; cpu-clock sampling works everywhere
        EV=cpu-clock
        perf stat -e instructions true 2>&1 | grep -q 'not supported' || EV=cycles
        log "perf record -e $EV on the first $PROFILE_PACKETS packets"
        perf record -q -e "$EV" -F 20000 -o "$WORK/perf.data" -- \
            "$MYRR" capture -r "$PSLICE" --port $DB_PORT -o "$WORK/prof.myrr" 2>/dev/null || true
        PROFILE_TXT="$(perf report -i "$WORK/perf.data" --no-children -F overhead,dso,sym \
            --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 || true)"
        PROFILE_HOW="perf record -e $EV -F 20000, self time, first $PROFILE_PACKETS packets"
        # inclusive view (release builds have no frame pointers: unwind with dwarf, lower rate)
        log "perf record --call-graph dwarf (inclusive view)"
        perf record -q -e "$EV" -F 2000 --call-graph dwarf,16384 -o "$WORK/perf-cg.data" -- \
            "$MYRR" capture -r "$PSLICE" --port $DB_PORT -o "$WORK/prof.myrr" 2>/dev/null || true
        PROFILE_INCL="$(perf report -i "$WORK/perf-cg.data" --children -F overhead_children,overhead,sym \
            -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' \
            | grep -Ev 'std::|core::|__libc|_start|\] main$|myrr::main|0x0000' | head -25 || true)"
    else
        log "perf unusable; valgrind --tool=callgrind on the first $PROFILE_PACKETS packets"
        valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
            "$MYRR" capture -r "$PSLICE" --port $DB_PORT -o "$WORK/prof.myrr" >/dev/null 2>&1 || true
        PROFILE_TXT="$(callgrind_annotate "$WORK/cg.out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '2,16p' || true)"
        PROFILE_HOW="callgrind Ir (self, first $PROFILE_PACKETS packets)"
    fi
fi

# ---- 5. report ----------------------------------------------------------------------
MY_MBS=$(awk -v b="$PCAP_BYTES" -v t="$MY_MED" 'BEGIN { printf "%.0f", b / 1048576 / t }')
TD_MBS=$(awk -v b="$PCAP_BYTES" -v t="$TD_MED" 'BEGIN { printf "%.0f", b / 1048576 / t }')
TS_VS_MY=n/a; [[ "$TS_T" != n/a ]] && TS_VS_MY="$(fdiv "$TS_T" "$MY_MED" 1)x$TS_SCALED"
SHRINK=$(fdiv "$PCAP_BYTES" "$OUT_BYTES" 1)
COVER=n/a; [[ -n "$SB_QUERIES" ]] && COVER="$(fdiv "$((EXCHANGES * 100))" "$SB_QUERIES" 2)%"
verdict() { awk -v v="$1" -v lim="$2" -v dir="$3" 'BEGIN { ok = (dir == "le") ? v <= lim : v >= lim; print ok ? "ok" : "MISSED" }'; }

TABLE="$(cat <<EOF
pcap:       $PCAP ($(human "$PCAP_BYTES"), $PACKETS packets)
sysbench:   $SB_MODE, ${SB_THREADS:-?} threads, ${SB_TIME:-?}: ${SB_QUERIES:-?} queries (${SB_QPS:-?}/s), ${SB_TX:-?} transactions
tcpdump:    ${TD_CAPTURED:-?} packets captured, ${TD_DROPS:-?} dropped by kernel

| tool                    | median s (runs)                | MB/s | CPU s (user+sys) | peak RSS MB | ratio | target |
|-------------------------|--------------------------------|------|------------------|-------------|-------|--------|
| tcpdump -r -w /dev/null | $TD_MED (${TD_T[*]}) | $TD_MBS | $TD_CPU | $(mb "$TD_RSS") | 1.00 | |
| myrr capture            | $MY_MED (${MY_T[*]}) | $MY_MBS | $MY_CPU | $(mb "$MY_RSS") | ${RATIO}x tcpdump (CPU ${CPU_RATIO}x) | <= 4x: $(verdict "$RATIO" 4 le); RSS <= 128 MB: $(verdict "$(mb "$MY_RSS")" 128 le) |
| tshark -Y mysql.query   | $TS_T$TS_SCALED ($TS_NOTE) | | $TS_CPU | $( [[ "$TS_M" == n/a ]] && echo n/a || mb "$TS_M") | tshark/myrr $TS_VS_MY | |

load avg:   $LOADAVG_BEFORE before the timed runs, $LOADAVG_AFTER after ($(nproc) cores, shared with other work: elapsed times are noisy, CPU s less so)
recording:  $(human "$OUT_BYTES") = 1/$SHRINK of the pcap (target <= 1/20: $(verdict "$SHRINK" 20 ge))
events:     inspect --format jsonl: $JSONL_LINES lines, $EXCHANGES exchanges = $COVER of sysbench's ${SB_QUERIES:-?} queries; tshark query lines: $TS_LINES
EOF
)"

echo
echo "==== myrr capture stderr (last run) ===="
echo "$MYRR_SUMMARY"
echo "==== myrr inspect summary ===="
echo "$INSPECT_SUMMARY"
if [[ -n "$PROFILE_TXT" ]]; then
    echo "==== hottest functions: $PROFILE_HOW ===="
    echo "$PROFILE_TXT"
fi
if [[ -n "$PROFILE_INCL" ]]; then
    echo "==== inclusive (children, self), wrappers removed — top 25 ===="
    echo "$PROFILE_INCL"
fi
echo "==== results ===="
echo "$TABLE"

{
    [[ -s "$RESULTS_MD" ]] || printf '# myrr benchmark results\n\nAppended by the scripts in this directory; newest last.\n'
    echo
    echo "## capture.sh — $(date '+%Y-%m-%d %H:%M %Z')$( ((PS)) && echo ' (--ps)')"
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)."
    echo "myrr at $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo ' (with uncommitted changes)'); $(tcpdump --version 2>&1 | head -1); $(tshark --version 2>/dev/null | head -1 | cut -d' ' -f1-3); $(sysbench --version)."
    echo
    echo "Commands (FILE = the pcap; each timed with \`/usr/bin/time -f '%e %M %U %S'\` after a warm-up \`cat FILE\`):"
    echo
    echo '```'
    echo "${SB[*]} cleanup && ... prepare"
    echo "$TCPDUMP_DESC &   # stopped with SIGINT (kill -INT pid) after sysbench"
    echo "$SB_RUN_DESC"
    echo "tcpdump -r FILE -w /dev/null                                   # x$RUNS"
    echo "${MYRR#"$ROOT"/} capture -r FILE --port $DB_PORT -o OUT.myrr         # x$RUNS"
    echo "$TSHARK_CMD_DESC   # x1"
    echo "${MYRR#"$ROOT"/} inspect OUT.myrr --format jsonl | wc -l"
    echo '```'
    echo
    echo '```'
    echo "$TABLE"
    echo '```'
    echo
    echo "myrr capture stderr:"
    echo
    echo '```'
    echo "$MYRR_SUMMARY"
    echo '```'
    if [[ -n "$PROFILE_TXT" ]]; then
        echo
        echo "Hottest functions ($PROFILE_HOW):"
        echo
        echo '```'
        echo "$PROFILE_TXT"
        echo '```'
    fi
    if [[ -n "$PROFILE_INCL" ]]; then
        echo
        echo "Inclusive time (children, self; perf --call-graph dwarf):"
        echo
        echo '```'
        echo "$PROFILE_INCL"
        echo '```'
    fi
} >>"$RESULTS_MD"
log "appended to $RESULTS_MD"
