#!/usr/bin/env bash
# Install the system packages myrr's build and tests need (Debian/Ubuntu).
#
# Idempotent: every package is checked with `dpkg -s` first, and apt is only
# touched (one `apt-get update`, one `apt-get install`) when something is
# missing. On a machine that already has everything this does no apt work.
#
# Then the client libraries the end-to-end tests run as applications
# (tests/clients/): node's mysql2 and mysql-connector-python, pinned there,
# installed under target/clients/ and only when their pins changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# clang, libbpf-dev (headers), libelf-dev, zlib1g-dev and pkg-config build the TLS probe
# (tlsprobe/: its eBPF program, and libbpf which libbpf-sys compiles); bpftool lets the tests
# check that no probe stays loaded.
PACKAGES=(libpcap-dev mariadb-server mariadb-client tcpdump tshark sysbench python3-venv clang libbpf-dev libelf-dev zlib1g-dev pkg-config bpftool)
# node and npm are asked for by command, not package: a nodejs from elsewhere
# (NodeSource's bundles npm) conflicts with Debian's npm package.
NODE_PACKAGES=(node:nodejs npm:npm)

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
    for cmd_pkg in "${NODE_PACKAGES[@]}"; do
        if command -v "${cmd_pkg%%:*}" >/dev/null 2>&1; then
            log "command ${cmd_pkg%%:*}: present"
        else
            log "command ${cmd_pkg%%:*}: MISSING (package ${cmd_pkg#*:})"
            missing+=("${cmd_pkg#*:}")
        fi
    done
else
    die "dpkg-query not found: this script supports Debian/Ubuntu only; install manually: ${PACKAGES[*]} nodejs npm"
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
    hash -r
else
    log "all system packages present; no apt work needed"
fi

# Binaries the scripts and tests call directly. mariadbd/mariadb-install-db
# live in /usr/sbin or /usr/bin depending on the release.
export PATH="$PATH:/usr/sbin:/sbin"
for cmd in mariadbd mariadb-install-db mariadb mariadb-admin tcpdump tshark sysbench node npm; do
    command -v "$cmd" >/dev/null 2>&1 || die "command '$cmd' not found even though its package is installed"
done
log "commands present: mariadbd mariadb-install-db mariadb mariadb-admin tcpdump tshark sysbench node npm"

# Client libraries for tests/clients/app.js and app.py (tests/common/clients.rs runs them).
# Each install is redone only when its pin file differs from the copy kept after the last
# successful one.
CLIENTS="$ROOT/target/clients"
NODE_DIR="$CLIENTS/node"
if cmp -s tests/clients/package-lock.json "$NODE_DIR/.installed-lock" \
    && [[ -f "$NODE_DIR/node_modules/mysql2/package.json" ]]; then
    log "node clients: installed in $NODE_DIR"
else
    log "node clients: npm ci in $NODE_DIR (tests/clients/package-lock.json)"
    mkdir -p "$NODE_DIR"
    cp tests/clients/package.json tests/clients/package-lock.json "$NODE_DIR/"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null >&2) \
        || die "npm ci failed in $NODE_DIR"
    cp tests/clients/package-lock.json "$NODE_DIR/.installed-lock"
fi
# Debian's python3 (the one python3-venv serves), whatever python3 comes first on PATH.
VENV="$CLIENTS/venv"
if cmp -s tests/clients/requirements.txt "$VENV/.installed-requirements" \
    && "$VENV/bin/python" -c 'import mysql.connector' 2>/dev/null; then
    log "python clients: installed in $VENV"
else
    log "python clients: pip install into $VENV (tests/clients/requirements.txt)"
    [[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 missing (package python3)"
    [[ -x "$VENV/bin/python" ]] || /usr/bin/python3 -m venv "$VENV" \
        || die "could not create the venv $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/clients/requirements.txt </dev/null >&2 \
        || die "pip install failed in $VENV"
    cp tests/clients/requirements.txt "$VENV/.installed-requirements"
fi

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
