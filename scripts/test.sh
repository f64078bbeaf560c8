#!/usr/bin/env bash
# The project's test command (see README): system setup, the two MariaDB
# servers, then fmt / clippy / tests with the server environment exported.
#
# Servers are left running for fast re-runs; set MYRR_STOP_DB=1 to stop them
# at the end. Exit status is non-zero if any step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n[test] ==================== %s ====================\n' "$*" >&2; }
log() { printf '[test] %s\n' "$*" >&2; }

# rustup installs into ~/.cargo/bin, which non-login CI shells may not have.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

if [[ "${MYRR_STOP_DB:-0}" == 1 ]]; then
    trap 'section "stopping databases (MYRR_STOP_DB=1)"; bash "$ROOT/scripts/db.sh" stop || true' EXIT
fi

section "setup (scripts/setup.sh)"
bash "$ROOT/scripts/setup.sh"

section "databases (scripts/db.sh start)"
bash "$ROOT/scripts/db.sh" start
db_env="$(bash "$ROOT/scripts/db.sh" env)"
eval "$db_env"
printf '%s\n' "$db_env" >&2

# Live capture on loopback needs root or CAP_NET_RAW.
if [[ -z "${MYRR_CAN_CAPTURE:-}" && "$(id -u)" -eq 0 ]]; then
    export MYRR_CAN_CAPTURE=1
fi
log "MYRR_CAN_CAPTURE=${MYRR_CAN_CAPTURE:-<unset>}"

failed=()
run_step() {
    local name="$1"
    shift
    section "$name"
    log "+ $*"
    if "$@"; then
        log "$name: OK"
    else
        log "$name: FAILED (exit $?)"
        failed+=("$name")
    fi
}

# Run every step even if an earlier one fails, so one run reports everything.
run_step "cargo fmt" cargo fmt --all -- --check
run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# The replay image's binary (deploy/Dockerfile): built without the capture feature.
run_step "cargo clippy (replay image: --no-default-features)" cargo clippy --bin myrr --no-default-features -- -D warnings
run_step "cargo test" cargo test --workspace --no-fail-fast

section "summary"
if ((${#failed[@]} > 0)); then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all steps passed"
