#!/usr/bin/env bash
# Manage the two project-owned MariaDB servers used by myrr's tests.
#
#   scripts/db.sh start   [source|candidate|tls|all]   start (or reuse) servers, ensure user/db
#   scripts/db.sh stop    [source|candidate|tls|all]   stop servers started by this script
#   scripts/db.sh restart [source|candidate|tls|all]   stop + start (same data)
#   scripts/db.sh status  [source|candidate|tls|all]   show state; exit 3 if one is not answering
#   scripts/db.sh env                              print `export` lines for the test env
#
# "source" listens on 127.0.0.1:${MYRR_SOURCE_PORT:-23306}, "candidate" on
# 127.0.0.1:${MYRR_CANDIDATE_PORT:-23307}, "tls" (a source whose clients use TLS, for
# capture through TLS) on 127.0.0.1:${MYRR_TLS_PORT:-23308}. All state (data dir, socket, pid
# file, log) lives under ${MYRR_DB_DIR:-<repo>/target/myrr-db}/<name>/.
# Servers are only ever stopped through their own pid files.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[db] %s\n' "$*" >&2; }
die() { printf '[db] ERROR: %s\n' "$*" >&2; exit 1; }

SOURCE_PORT="${MYRR_SOURCE_PORT:-23306}"
CANDIDATE_PORT="${MYRR_CANDIDATE_PORT:-23307}"
TLS_PORT="${MYRR_TLS_PORT:-23308}"
DB_DIR="${MYRR_DB_DIR:-$ROOT/target/myrr-db}"
mkdir -p "$DB_DIR"
DB_DIR="$(cd "$DB_DIR" && pwd)"

START_TIMEOUT=60
STOP_TIMEOUT=60
MYRR_USER=myrr
MYRR_PASS=myrr

# Client tools must not read /etc/mysql/*.cnf (Debian points the default
# socket at /run/mysqld, which is the system server, not ours).
CLIENT=(mariadb --no-defaults)
ADMIN=(mariadb-admin --no-defaults)

# inst <name>: set PORT DIR DATA SOCK PIDF LOGF for one instance.
inst() {
    NAME="$1"
    case "$NAME" in
        source) PORT="$SOURCE_PORT" ;;
        candidate) PORT="$CANDIDATE_PORT" ;;
        tls) PORT="$TLS_PORT" ;;
        *) die "unknown instance '$NAME' (expected source, candidate or tls)" ;;
    esac
    [[ "$PORT" =~ ^[0-9]+$ ]] || die "port for $NAME is not a number: '$PORT'"
    DIR="$DB_DIR/$NAME"
    DATA="$DIR/data"
    PIDF="$DIR/mariadbd.pid"
    LOGF="$DIR/mariadbd.log"
    SOCK="$DIR/mariadbd.sock"
    # Unix socket paths are limited to 107 bytes; fall back to /tmp for
    # very deep checkouts.
    if ((${#SOCK} > 100)); then
        local h
        h="$(printf '%s' "$DB_DIR" | sha256sum | cut -c1-12)"
        SOCK="/tmp/myrr-db-$h/$NAME.sock"
    fi
}

# Pid from our pid file if that process is alive and is a mariadbd running on
# our data dir (a recycled pid or a zombie does not count). Empty otherwise.
our_pid() {
    local pid cmdline
    [[ -f "$PIDF" ]] || return 0
    pid="$(tr -dc '0-9' <"$PIDF" 2>/dev/null || true)"
    [[ -n "$pid" ]] || return 0
    pid_is_ours "$pid" && printf '%s' "$pid"
    return 0
}

pid_is_ours() {
    local cmdline
    [[ -r "/proc/$1/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"--datadir=$DATA "* ]]
}

# True while pid exists and is not a zombie.
proc_running() {
    local st
    st="$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || true
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# Does anything speak the MySQL protocol on our port? (mariadb-admin ping
# exits 0 even on "Access denied", so credentials do not matter here.)
answers() {
    "${ADMIN[@]}" --protocol=tcp -h127.0.0.1 -P"$PORT" -uroot \
        --connect-timeout=2 ping >/dev/null 2>&1
}

# Find a way to run admin SQL on the server: root over our socket, root over
# TCP (install-db's "normal" root has no password), then the myrr user.
ADMIN_SQL=()
find_admin() {
    ADMIN_SQL=()
    if [[ -S "$SOCK" ]] && MYSQL_PWD='' "${CLIENT[@]}" -uroot --socket="$SOCK" -Nse 'SELECT 1' >/dev/null 2>&1; then
        ADMIN_SQL=(env MYSQL_PWD= "${CLIENT[@]}" -uroot --socket="$SOCK")
    elif MYSQL_PWD='' "${CLIENT[@]}" --protocol=tcp -h127.0.0.1 -P"$PORT" -uroot -Nse 'SELECT 1' >/dev/null 2>&1; then
        ADMIN_SQL=(env MYSQL_PWD= "${CLIENT[@]}" --protocol=tcp -h127.0.0.1 -P"$PORT" -uroot)
    elif MYSQL_PWD="$MYRR_PASS" "${CLIENT[@]}" --protocol=tcp -h127.0.0.1 -P"$PORT" -u"$MYRR_USER" -Nse 'SELECT 1' >/dev/null 2>&1; then
        ADMIN_SQL=(env MYSQL_PWD="$MYRR_PASS" "${CLIENT[@]}" --protocol=tcp -h127.0.0.1 -P"$PORT" -u"$MYRR_USER")
    else
        return 1
    fi
}

raise_nofile() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

log_tail() {
    if [[ -f "$LOGF" ]]; then
        printf '[db] ---- last 40 lines of %s ----\n' "$LOGF" >&2
        tail -n 40 "$LOGF" >&2 || true
        printf '[db] ---- end of log ----\n' >&2
    else
        log "(no log file at $LOGF)"
    fi
}

install_db() {
    if [[ -f "$DIR/.installed" && -d "$DATA/mysql" ]]; then
        return 0
    fi
    if [[ -e "$DATA" ]]; then
        # Left over from an interrupted install: it is ours, start fresh.
        log "$NAME: removing incomplete data dir $DATA"
        rm -rf -- "$DATA"
    fi
    mkdir -p "$DATA"
    local userarg=()
    if [[ "$(id -u)" -eq 0 ]]; then
        # mariadbd refuses to run as root unless told to explicitly.
        userarg=(--user=root)
    fi
    log "$NAME: initialising data dir $DATA (mariadb-install-db)"
    if ! mariadb-install-db --no-defaults "${userarg[@]}" \
        --datadir="$DATA" \
        --auth-root-authentication-method=normal \
        --skip-test-db \
        --skip-name-resolve \
        >"$DIR/install-db.log" 2>&1; then
        tail -n 40 "$DIR/install-db.log" >&2 || true
        die "$NAME: mariadb-install-db failed (full output: $DIR/install-db.log)"
    fi
    touch "$DIR/.installed"
}

# A CA and a server certificate for 127.0.0.1/localhost for the candidate, so replay's TLS to
# the target can be tested (verify-ca and verify-identity against ca.pem).
TLS_DIR="$DB_DIR/tls"
ensure_tls() {
    [[ -s "$TLS_DIR/server-key.pem" && -s "$TLS_DIR/server-cert.pem" && -s "$TLS_DIR/ca.pem" ]] && return 0
    command -v openssl >/dev/null || { log "openssl missing: servers start without TLS"; return 0; }
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=myrr test CA" \
            -keyout ca-key.pem -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout server-key.pem -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 3650 -extfile san.ext -out server-cert.pem 2>/dev/null
    ) || { log "could not make TLS certificates: servers start without TLS"; rm -rf "$TLS_DIR"; }
}

ensure_users() {
    find_admin || die "$NAME: server on port $PORT answers but neither root nor $MYRR_USER can log in; cannot create the $MYRR_USER user"
    "${ADMIN_SQL[@]}" <<SQL
CREATE USER IF NOT EXISTS '$MYRR_USER'@'127.0.0.1' IDENTIFIED BY '$MYRR_PASS';
CREATE USER IF NOT EXISTS '$MYRR_USER'@'localhost' IDENTIFIED BY '$MYRR_PASS';
ALTER USER '$MYRR_USER'@'127.0.0.1' IDENTIFIED BY '$MYRR_PASS';
ALTER USER '$MYRR_USER'@'localhost' IDENTIFIED BY '$MYRR_PASS';
GRANT ALL PRIVILEGES ON *.* TO '$MYRR_USER'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$MYRR_USER'@'localhost' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '${MYRR_USER}_tls'@'127.0.0.1' IDENTIFIED BY '$MYRR_PASS' REQUIRE SSL;
GRANT ALL PRIVILEGES ON *.* TO '${MYRR_USER}_tls'@'127.0.0.1';
CREATE DATABASE IF NOT EXISTS sbtest;
SQL
    # An account that logs in with client_ed25519 (the replay's auth switch to it is tested).
    "${ADMIN_SQL[@]}" -e "INSTALL SONAME 'auth_ed25519'" 2>/dev/null || true
    "${ADMIN_SQL[@]}" <<SQL || log "$NAME: no ed25519 account (auth_ed25519 plugin missing?)"
CREATE USER IF NOT EXISTS '${MYRR_USER}_ed'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('$MYRR_PASS');
GRANT ALL PRIVILEGES ON *.* TO '${MYRR_USER}_ed'@'127.0.0.1';
SQL
    log "$NAME: user $MYRR_USER@127.0.0.1/$MYRR_USER@localhost and database sbtest ensured"
}

start_one() {
    inst "$1"
    mkdir -p "$DIR"
    local pid
    pid="$(our_pid)"
    if answers; then
        if [[ -n "$pid" ]]; then
            log "$NAME: already running on 127.0.0.1:$PORT (pid $pid); reusing it"
        else
            log "$NAME: something already answers on 127.0.0.1:$PORT but not with our pid file; reusing it (stop will not touch it)"
        fi
        ensure_users
        return 0
    fi

    local launched=""
    if [[ -n "$pid" ]]; then
        log "$NAME: pid $pid is running but not answering yet; waiting for it"
        launched="$pid"
    else
        rm -f -- "$PIDF"
        install_db
        mkdir -p "$(dirname "$SOCK")"
        rm -f -- "$SOCK"
        local userarg=()
        [[ "$(id -u)" -eq 0 ]] && userarg=(--user=root)
        # max_connections=6000 needs ~6000+ descriptors; mariadbd silently
        # lowers max_connections if it cannot get them. Raise the limit as far
        # as allowed (the launch subshell repeats this) and tell mariadbd.
        local nofile
        nofile="$(raise_nofile; ulimit -n)"
        [[ "$nofile" =~ ^[0-9]+$ ]] || nofile=65536
        # TLS on the candidate and the tls server only: clients such as the mariadb CLI use
        # TLS whenever the server offers it, and the source's traffic must stay in the clear
        # for the plaintext capture tests. The tls server offers TLS 1.2 and 1.3.
        local tls=()
        [[ "$NAME" != source ]] && ensure_tls
        [[ "$NAME" != source && -s "$TLS_DIR/server-cert.pem" ]] && tls=(
            --ssl-ca="$TLS_DIR/ca.pem"
            --ssl-cert="$TLS_DIR/server-cert.pem"
            --ssl-key="$TLS_DIR/server-key.pem"
        )
        [[ "$NAME" == tls ]] && tls+=(--tls-version=TLSv1.2,TLSv1.3)
        # The source keeps performance_schema on: capture's --server backfill reads
        # its prepared statements and session state there. The candidate keeps
        # it off, which is also the "server without performance_schema" case.
        local pfs=(--performance-schema=OFF)
        [[ "$NAME" != candidate ]] && pfs=(--performance-schema=ON)
        local args=(
            --no-defaults
            "${tls[@]}"
            "${userarg[@]}"
            --datadir="$DATA"
            --port="$PORT"
            --bind-address=127.0.0.1
            --socket="$SOCK"
            --pid-file="$PIDF"
            --log-error="$LOGF"
            --skip-name-resolve
            --innodb-buffer-pool-size=128M
            --innodb-flush-log-at-trx-commit=2
            --max-connections=6000
            --max-connect-errors=1000000
            --open-files-limit="$nofile"
            "${pfs[@]}"
            --character-set-server=utf8mb4
            --collation-server=utf8mb4_general_ci
        )
        log "$NAME: starting mariadbd on 127.0.0.1:$PORT (log: $LOGF)"
        printf '\n==== %s db.sh start: mariadbd %s\n' "$(date '+%F %T')" "${args[*]}" >>"$LOGF"
        # Own session (setsid) so the server outlives this script and its
        # process group; no inherited stdio or lock fd. `setsid -w` keeps $!
        # alive exactly as long as the server even if setsid has to fork.
        (
            raise_nofile
            exec setsid -w mariadbd "${args[@]}"
        ) </dev/null >>"$LOGF" 2>&1 9>&- &
        launched=$!
    fi

    local waited=0
    while ! answers; do
        if ! proc_running "$launched"; then
            log_tail
            die "$NAME: mariadbd exited during startup"
        fi
        if ((waited >= START_TIMEOUT * 2)); then
            log_tail
            die "$NAME: mariadbd did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    pid="$(our_pid)"
    log "$NAME: up on 127.0.0.1:$PORT (pid ${pid:-?}) after ~$((waited / 2))s"
    ensure_users
    local maxc
    maxc="$("${ADMIN_SQL[@]}" -Nse 'SELECT @@max_connections' 2>/dev/null || true)"
    if [[ -n "$maxc" && "$maxc" -lt 6000 ]]; then
        log "$NAME: WARNING: max_connections is only $maxc (open-files limit too low?)"
    fi
}

stop_one() {
    inst "$1"
    local pid
    pid="$(our_pid)"
    if [[ -z "$pid" ]]; then
        rm -f -- "$PIDF"
        if answers; then
            log "$NAME: port $PORT answers but the server was not started by this script (no live pid file); leaving it alone"
        else
            log "$NAME: not running"
        fi
        return 0
    fi
    log "$NAME: stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    # Wait for the process to be gone or a zombie (a zombie has closed its
    # files and sockets; an empty cmdline alone does not guarantee that).
    while proc_running "$pid"; do
        if ((waited >= STOP_TIMEOUT * 2)); then
            log "$NAME: pid $pid still running after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    rm -f -- "$PIDF"
    log "$NAME: stopped"
}

status_one() {
    inst "$1"
    local pid state version="" maxc=""
    pid="$(our_pid)"
    if answers; then
        state="answering"
        if find_admin; then
            version="$("${ADMIN_SQL[@]}" -Nse 'SELECT VERSION()' 2>/dev/null || true)"
            maxc="$("${ADMIN_SQL[@]}" -Nse 'SELECT @@max_connections' 2>/dev/null || true)"
        fi
    else
        state="NOT answering"
        STATUS_RC=3
    fi
    printf '%-9s 127.0.0.1:%-5s %-13s pid=%-8s version=%-28s max_connections=%s\n' \
        "$NAME" "$PORT" "$state" "${pid:-none}" "${version:-?}" "${maxc:-?}"
    printf '          data=%s socket=%s log=%s\n' "$DATA" "$SOCK" "$LOGF"
}

print_env() {
    local sock_s pid_s sock_c pid_c sock_t pid_t
    inst source; sock_s="$SOCK"; pid_s="$PIDF"
    inst candidate; sock_c="$SOCK"; pid_c="$PIDF"
    inst tls; sock_t="$SOCK"; pid_t="$PIDF"
    printf 'export %s=%q\n' \
        MYRR_DB_DIR "$DB_DIR" \
        MYRR_SOURCE_PORT "$SOURCE_PORT" \
        MYRR_CANDIDATE_PORT "$CANDIDATE_PORT" \
        MYRR_SOURCE_URL "mysql://$MYRR_USER:$MYRR_PASS@127.0.0.1:$SOURCE_PORT" \
        MYRR_CANDIDATE_URL "mysql://$MYRR_USER:$MYRR_PASS@127.0.0.1:$CANDIDATE_PORT" \
        MYRR_TLS_PORT "$TLS_PORT" \
        MYRR_TLS_URL "mysql://$MYRR_USER:$MYRR_PASS@127.0.0.1:$TLS_PORT" \
        MYRR_TLS_SOCKET "$sock_t" \
        MYRR_TLS_PIDFILE "$pid_t" \
        MYRR_TLS_CA "$TLS_DIR/ca.pem" \
        MYRR_SOURCE_SOCKET "$sock_s" \
        MYRR_CANDIDATE_SOCKET "$sock_c" \
        MYRR_SOURCE_PIDFILE "$pid_s" \
        MYRR_CANDIDATE_PIDFILE "$pid_c"
}

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

targets() {
    case "${1:-all}" in
        all) echo source candidate tls ;;
        source | candidate | tls) echo "$1" ;;
        *) die "unknown instance '$1' (expected source, candidate, tls or all)" ;;
    esac
}

lock() {
    # Serialise concurrent start/stop runs. fd 9 is closed for mariadbd.
    exec 9>"$DB_DIR/.lock"
    flock -w 300 9 || die "could not lock $DB_DIR/.lock within 300s"
}

need_tools() {
    local c
    for c in mariadbd mariadb-install-db mariadb mariadb-admin flock setsid; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' not found; run scripts/setup.sh"
    done
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    start)
        need_tools; lock
        for n in $(targets "${1:-all}"); do start_one "$n"; done
        ;;
    stop)
        lock
        for n in $(targets "${1:-all}"); do stop_one "$n"; done
        ;;
    restart)
        need_tools; lock
        for n in $(targets "${1:-all}"); do stop_one "$n"; start_one "$n"; done
        ;;
    status)
        STATUS_RC=0
        for n in $(targets "${1:-all}"); do status_one "$n"; done
        exit "$STATUS_RC"
        ;;
    env)
        print_env
        ;;
    *)
        usage
        ;;
esac
