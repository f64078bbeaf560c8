#!/usr/bin/env bash
# benches/keylog.sh — is reading TLS with a key log at least half as fast as reading the same
# workload in the clear?
#
# Records the same workload twice with tcpdump on loopback: node's mysql2
# (benches/lib/tls_load.js: N connections of point and 100-row range SELECTs) against the
# source server in the clear, then against the tls server over TLS (client and server
# defaults: TLS 1.3, TLS_AES_256_GCM_SHA384) with `node --tls-keylog`. Then times, in
# interleaved rounds on the page-cached files:
#   a. myrr capture -r plain.pcap --port SOURCE -o OUT
#   b. myrr capture -r tls.pcap --port TLS --keylog KEYS -o OUT
# and prints packets/s, MB/s and exchanges/s of each (medians) and b's share of a's; the table
# is also appended to benches/RESULTS.md.
#
# Usage: benches/keylog.sh [--reuse] [--build-only]
#   --reuse       keep existing pcaps and key log
#   --build-only  build myrr, check tcpdump, node and mysql2 are installed or installable, then
#                 exit without benchmarking (tests/benches.rs)
# Environment: MYRR_BENCH_DIR (default <repo>/target/bench), MYRR_BENCH_TIME (20 s),
#   MYRR_BENCH_CONNECTIONS (8), MYRR_BENCH_RUNS (5), MYRR_SOURCE_PORT (23306),
#   MYRR_TLS_PORT (23308), MYRR_BENCH_RESULTS (default benches/RESULTS.md),
#   MYRR_BENCH_CARGO_PROFILE (the cargo profile myrr is built with, default release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/benches/lib/build.sh"
BENCH_DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}"
DURATION="${MYRR_BENCH_TIME:-20}"
CONNS="${MYRR_BENCH_CONNECTIONS:-8}"
RUNS="${MYRR_BENCH_RUNS:-5}"
SOURCE_PORT="${MYRR_SOURCE_PORT:-23306}"
TLS_PORT="${MYRR_TLS_PORT:-23308}"
RESULTS_MD="${MYRR_BENCH_RESULTS:-$ROOT/benches/RESULTS.md}"

REUSE=0
bench_args "$@"
for arg in "${BENCH_ARGS[@]}"; do
    case "$arg" in
        --reuse) REUSE=1 ;;
        -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { bench_log "$@"; }
die() { bench_die "$@"; }

# ---- 1. tools and build ---------------------------------------------------------------
bench_tools setup tcpdump:tcpdump mariadb:mariadb-client mariadbd:mariadb-server
bench_tools apt /usr/bin/time:time
# node and mysql2 (pinned in tests/clients/) come from scripts/setup.sh.
NODE_MODULES="$ROOT/target/clients/node/node_modules"
if ! command -v node >/dev/null || [[ ! -d $NODE_MODULES/mysql2 ]]; then
    log "node or mysql2 ($NODE_MODULES) missing: running scripts/setup.sh"
    bash "$ROOT/scripts/setup.sh" >&2
fi
command -v node >/dev/null || die "node missing after scripts/setup.sh"
[[ -d $NODE_MODULES/mysql2 ]] || die "mysql2 missing in $NODE_MODULES after scripts/setup.sh"
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
WORK="$(mktemp -d "$BENCH_DIR/keylog.XXXXXX")"
PLAIN="$BENCH_DIR/keylog-plain.pcap"
TLS="$BENCH_DIR/keylog-tls.pcap"
KEYS="$BENCH_DIR/keylog-tls.keys"

# ---- cleanup: only processes this script started, by pid ----------------------------
BG_PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${BG_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -INT "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 2. pcaps -----------------------------------------------------------------------
# record PORT PCAP MODE: tcpdump while tls_load.js runs MODE against PORT.
record() {
    local port=$1 pcap=$2 mode=$3 log="$WORK/tcpdump.$3.txt" pid
    rm -f "$pcap"
    tcpdump -i lo -s 0 -B 262144 --immediate-mode -U -w "$pcap" "tcp port $port" 2>"$log" &
    pid=$!
    BG_PIDS+=("$pid")
    for _ in $(seq 100); do
        grep -q 'listening on' "$log" && break
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "tcpdump exited"; }
        sleep 0.1
    done
    local node_args=()
    [[ $mode == tls ]] && node_args=(--tls-keylog="$KEYS")
    log "recording $mode: $CONNS connections for ${DURATION}s against 127.0.0.1:$port"
    NODE_PATH="$NODE_MODULES" node ${node_args[@]+"${node_args[@]}"} \
        "$ROOT/benches/lib/tls_load.js" "$port" "$mode" "$DURATION" "$CONNS" 2>"$WORK/node.err" \
        | tee "$pcap.node.txt" >&2 || { cat "$WORK/node.err" >&2; die "tls_load.js failed"; }
    sleep 0.5
    kill -INT "$pid"
    wait "$pid" || true
    grep -E 'captured|dropped' "$log" >&2 || true
    grep -qx '0 packets dropped by kernel' "$log" || log "WARNING: tcpdump dropped packets: $(cat "$log")"
}

if ((REUSE)) && [[ -s $PLAIN && -s $TLS && -s $KEYS ]]; then
    log "reusing $PLAIN, $TLS, $KEYS"
else
    for p in "$SOURCE_PORT" "$TLS_PORT"; do
        mariadb --no-defaults -h127.0.0.1 -P"$p" -umyrr -pmyrr -e 'select 1' >/dev/null 2>&1 ||
            die "MariaDB on $p is not answering: bash scripts/db.sh start (MYRR_SOURCE_PORT/MYRR_TLS_PORT)"
    done
    rm -f "$KEYS"
    record "$SOURCE_PORT" "$PLAIN" plain
    record "$TLS_PORT" "$TLS" tls
fi

# ---- 3. decode, interleaved ---------------------------------------------------------
TIME=(/usr/bin/time -f '%e %M')
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fdiv() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.*f\n", d, a / b }'; }

# decode NAME args...: one timed `myrr capture`, appends "elapsed" to $WORK/NAME.times and
# keeps the JSON summary in $WORK/NAME.json.
decode() {
    local name=$1
    shift
    "${TIME[@]}" -o "$WORK/time" "$MYRR" capture "$@" --json -o "$WORK/$name.myrr" 2>"$WORK/$name.json" ||
        { cat "$WORK/$name.json" >&2; die "myrr capture failed"; }
    awk '{print $1}' "$WORK/time" >>"$WORK/$name.times"
}
cat "$PLAIN" "$TLS" >/dev/null   # page cache
for r in $(seq "$RUNS"); do
    decode plain -r "$PLAIN" --port "$SOURCE_PORT"
    decode tls -r "$TLS" --port "$TLS_PORT" --keylog "$KEYS"
    log "round $r: plain $(tail -1 "$WORK/plain.times")s, tls $(tail -1 "$WORK/tls.times")s"
done

field() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$WORK/$1.json" | head -1; }
row() {
    local name=$1 pcap=$2 t packets bytes exchanges
    t=$(median $(cat "$WORK/$name.times"))
    packets=$(field "$name" packets)
    exchanges=$(field "$name" exchanges)
    bytes=$(stat -c %s "$pcap")
    printf '%s %s %s %s %s\n' "$t" "$packets" "$bytes" "$exchanges" \
        "$(grep -o '"tls_read":[0-9]*' "$WORK/$name.json" | cut -d: -f2)"
}
read -r PT PP PB PX PR <<<"$(row plain "$PLAIN")"
read -r TT TP TB TX TR <<<"$(row tls "$TLS")"
[[ $TR -gt 0 ]] || die "no TLS session was read with the key log: $(cat "$WORK/tls.json")"
P_PPS=$(fdiv "$PP" "$PT" 0) T_PPS=$(fdiv "$TP" "$TT" 0)
P_MBS=$(fdiv "$(fdiv "$PB" 1048576 3)" "$PT" 1) T_MBS=$(fdiv "$(fdiv "$TB" 1048576 3)" "$TT" 1)
P_XPS=$(fdiv "$PX" "$PT" 0) T_XPS=$(fdiv "$TX" "$TT" 0)
RATIO=$(fdiv "$T_XPS" "$P_XPS" 2)

TABLE=$(cat <<EOF
| capture | pcap | packets | exchanges | time (median of $RUNS) | packets/s | MB/s | exchanges/s |
|---|---|---|---|---|---|---|---|
| plaintext | $(fdiv "$PB" 1048576 1) MiB | $PP | $PX | ${PT} s | $P_PPS | $P_MBS | $P_XPS |
| TLS 1.3 + --keylog ($TR sessions read) | $(fdiv "$TB" 1048576 1) MiB | $TP | $TX | ${TT} s | $T_PPS | $T_MBS | $T_XPS |

Key-log decoding runs at **$RATIO×** the exchanges/s of plaintext decoding (goal ≥ 0.5).
EOF
)
printf '\n%s\n' "$TABLE"
{
    printf '\n## keylog.sh — %s, %s\n\n' "$(date -u +%Y-%m-%d)" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    printf 'node mysql2, %s connections x %s s of point + range SELECTs, recorded once in the clear and once over TLS (defaults: TLS 1.3 AES-256-GCM); `myrr capture -r` timed in %s interleaved rounds, page-cached; cargo profile %s.\n\n' \
        "$CONNS" "$DURATION" "$RUNS" "$BENCH_CARGO_PROFILE"
    printf '%s\n' "$TABLE"
} >>"$RESULTS_MD"
log "appended to $RESULTS_MD"
