#!/usr/bin/env bash
# benches/tls-probe.sh — what reading TLS inside the server costs it: the tls server's
# throughput under sysbench oltp_read_only over TLS (16 threads, text protocol), in
# interleaved rounds of
#   none      nothing capturing
#   probe     myrr capture -i lo --tls-probe: sysbench's sessions are set up under the probe,
#             so they are read from the packets with their handshake secrets (EVP_KDF_derive)
#   probe+old the same with one TLS connection opened before the capture and kept open: the
#             SSL_read/SSL_write probes stay attached (a trap per call of every session; the
#             keyed sessions are passed over in the BPF program)
#   tcpdump   tcpdump -i lo -w FILE (the encrypted packets only)
# Per mode: queries per second (median of the rounds) and the ratio to `none`; for the probe,
# its drops (ring buffer, sockets not found, kernel packet drops, TCP gaps passed over in TLS
# sessions) and the statements recorded vs sysbench's count.
# Results are printed and appended to benches/RESULTS.md.
#
# Usage: benches/tls-probe.sh [--build-only]
# Environment: MYRR_BENCH_TIME (15 s per run), MYRR_BENCH_ROUNDS (3), MYRR_BENCH_THREADS (16),
#   MYRR_BENCH_DIR, MYRR_BENCH_CARGO_PROFILE (release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/benches/lib/build.sh"
bench_args "$@"
set -- "${BENCH_ARGS[@]}"
[[ $# -eq 0 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
DIR="${MYRR_BENCH_DIR:-$ROOT/target/bench}/tls-probe"
T="${MYRR_BENCH_TIME:-15}"
ROUNDS="${MYRR_BENCH_ROUNDS:-3}"
THREADS="${MYRR_BENCH_THREADS:-16}"
log() { bench_log "$@"; }

bench_tools setup sysbench:sysbench mariadb:mariadb-client tcpdump:tcpdump bpftool:bpftool
bench_build -p myrr --bin myrr
MYRR=$(bench_built myrr)
bench_build_only_exit

mkdir -p "$DIR"
bash scripts/db.sh start tls >/dev/null
eval "$(bash scripts/db.sh env)"
PORT="$MYRR_TLS_PORT"
TLSDIR="$(dirname "$MYRR_TLS_CA")"
# sysbench --mysql-ssl=on reads these from its working directory.
cp "$TLSDIR/ca.pem" "$DIR/cacert.pem"
cp "$TLSDIR/server-cert.pem" "$DIR/client-cert.pem"
cp "$TLSDIR/server-key.pem" "$DIR/client-key.pem"
SB=(sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT"
    --mysql-user=myrr --mysql-password=myrr --mysql-db=sbtest --tables=4 --table-size=10000)
(cd "$DIR" && "${SB[@]}" cleanup >/dev/null 2>&1 || true)
(cd "$DIR" && "${SB[@]}" prepare >/dev/null)

# run MODE ROUND: one sysbench run; prints qps, and for probe the recorded/expected counts.
run() {
    local mode=$1 r=$2 pid="" out="$DIR/$1-$2"
    local old=""
    if [[ "$mode" == probe+old ]]; then
        # Logged in over TLS, then idle, waiting for statements on a stdin that stays open.
        mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$PORT" -umyrr -pmyrr --ssl \
            < <(sleep $((T + 60))) >/dev/null 2>&1 &
        old=$!
        sleep 1
    fi
    case "$mode" in
        probe|probe+old)
            "$MYRR" capture -i lo --port "$PORT" --tls-probe --json -o "$out.myrr" 2>"$out.log" &
            pid=$!
            until grep -q "capturing on" "$out.log" 2>/dev/null; do
                kill -0 $pid 2>/dev/null || { cat "$out.log" >&2; exit 1; }
                sleep 0.2
            done ;;
        tcpdump)
            tcpdump -i lo -s 0 -B 65536 -w "$out.pcap" "tcp port $PORT" 2>"$out.log" &
            pid=$!
            sleep 1 ;;
    esac
    sleep 0.5
    (cd "$DIR" && "${SB[@]}" --mysql-ssl=on --threads="$THREADS" --time="$T" --db-ps-mode=disable run) >"$out.sysbench"
    sleep 0.5
    if [[ -n "$pid" ]]; then kill -INT $pid; wait $pid || true; fi
    if [[ -n "$old" ]]; then kill $old; wait $old 2>/dev/null || true; sleep 1; fi

    local qps total
    qps=$(awk '/queries:/ {gsub(/[()]/, "", $3); print $3}' "$out.sysbench")
    total=$(awk '$1 == "total:" {print $2; exit}' "$out.sysbench")
    printf '%s %s\n' "$qps" "$total"
}

declare -A QPS
PROBE_NOTES=""
TCPDUMP_DROPS=""
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in none probe probe+old tcpdump; do
        read -r qps total < <(run "$mode" "$r")
        QPS[$mode]+="$qps "
        if [[ "$mode" == probe* ]]; then
            json=$(tail -n 1 "$DIR/$mode-$r.log")
            rec=$("$MYRR" inspect --format jsonl "$DIR/$mode-$r.myrr" 2>/dev/null | grep -c '"command":"query"' || true)
            drops=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); t=j["tls_probe"]; print(t["lost_records"], t["lost_bytes"], t["unattributed_bytes"], j["kernel_drops"], j["tls"]["gaps_passed"], t["sessions_keyed"])' "$json")
            log "round $r $mode: $qps qps; sysbench statements $total, recorded queries $rec; probe lost records/bytes, unattributed bytes, kernel drops, TLS gaps passed, sessions read with secrets: $drops"
            PROBE_NOTES+="round $r $mode: sysbench $total statements, recorded $rec; lost records/bytes/unattributed/kernel drops/gaps passed/keyed sessions $drops; "
        elif [[ "$mode" == tcpdump ]]; then
            d=$(awk '/dropped by kernel/ {print $1}' "$DIR/tcpdump-$r.log")
            TCPDUMP_DROPS+="$d "
            log "round $r $mode: $qps qps; kernel drops $d"
        else
            log "round $r $mode: $qps qps"
        fi
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
NONE=$(echo "${QPS[none]}" | median)
{
    printf '\n## %s tls-probe.sh: server QPS, sysbench oltp_read_only over TLS, %s threads, %s s x %s rounds (interleaved)\n\n' \
        "$(date -u '+%F %H:%M')" "$THREADS" "$T" "$ROUNDS"
    printf '| mode | QPS (median) | runs | vs none |\n|---|---|---|---|\n'
    for mode in none probe probe+old tcpdump; do
        m=$(echo "${QPS[$mode]}" | median)
        printf '| %s | %s | %s| %s |\n' "$mode" "$m" "${QPS[$mode]}" "$(python3 -c "print(f'{$m/$NONE:.3f}')")"
    done
    printf '\nprobe: %s\n\ntcpdump kernel drops per round: %s\n' "$PROBE_NOTES" "$TCPDUMP_DROPS"
} | tee -a benches/RESULTS.md
