#!/usr/bin/env bash
# Install the system packages myrr's build and tests need (Debian/Ubuntu).
#
# Idempotent: every package is checked with `dpkg -s` first, and apt is only
# touched (one `apt-get update`, one `apt-get install`) when something is
# missing. On a machine that already has everything this does no apt work.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

PACKAGES=(libpcap-dev mariadb-server mariadb-client tcpdump tshark sysbench)

is_installed() {
    # `dpkg -s` succeeds for packages in "deinstall" (rc) state too, so look
    # at the status line itself.
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]]
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${PACKAGES[@]}"; do
        if is_installed "$pkg"; then
            log "package $pkg: installed"
        else
            log "package $pkg: MISSING"
            missing+=("$pkg")
        fi
    done
else
    die "dpkg-query not found: this script supports Debian/Ubuntu only; install manually: ${PACKAGES[*]}"
fi

if ((${#missing[@]} > 0)); then
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and sudo not available; install: ${missing[*]}"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # tshark pulls in wireshark-common, whose postinst asks whether
    # non-root users may capture. Preseed "no" so it never prompts.
    log "preseeding wireshark-common/install-setuid=false"
    echo "wireshark-common wireshark-common/install-setuid boolean false" \
        | "${SUDO[@]}" debconf-set-selections
    log "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null >&2
    for pkg in "${missing[@]}"; do
        is_installed "$pkg" || die "package $pkg still not installed after apt-get install"
    done
else
    log "all system packages present; no apt work needed"
fi

# Binaries the scripts and tests call directly. mariadbd/mariadb-install-db
# live in /usr/sbin or /usr/bin depending on the release.
export PATH="$PATH:/usr/sbin:/sbin"
for cmd in mariadbd mariadb-install-db mariadb mariadb-admin tcpdump tshark sysbench; do
    command -v "$cmd" >/dev/null 2>&1 || die "command '$cmd' not found even though its package is installed"
done
log "commands present: mariadbd mariadb-install-db mariadb mariadb-admin tcpdump tshark sysbench"

# Rust toolchain: not installed by this script (needs rustup + network).
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        log "cargo found in ${CARGO_HOME:-$HOME/.cargo}/bin (not on PATH; callers should add it)"
    else
        die "cargo not found on PATH or in ${CARGO_HOME:-$HOME/.cargo}/bin; install Rust (https://rustup.rs) first"
    fi
fi
log "cargo: $(cargo --version)"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: run 'rustup component add rustfmt'"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing: run 'rustup component add clippy'"
log "rustfmt and clippy present"
log "setup complete"
