# benches/lib/build.sh — sourced by the scripts in benches/ (not a benchmark itself): each
# script builds what it runs and gets the tools it compares against, from a fresh clone.
#
#   bench_args "$@"      BENCH_BUILD_ONLY=1 if --build-only is among the arguments; the others
#                        are left in BENCH_ARGS (the script does `set -- "${BENCH_ARGS[@]}"`)
#   bench_tools KIND TOOL:PACKAGE...
#                        KIND setup: tools the bench compares against or needs for its databases;
#                        PACKAGE must be one that scripts/setup.sh installs, and a run calls
#                        scripts/setup.sh if one of them is missing.
#                        KIND apt: helpers the script installs itself with apt-get when missing.
#                        With --build-only nothing is installed: a missing tool only has to be
#                        installable that way.
#   bench_build ARGS...  cargo build --profile "$MYRR_BENCH_CARGO_PROFILE" (default release)
#                        ARGS..., remembering the executables this very build produced
#   bench_built NAME     path of an executable bench_build produced (`myrr`,
#                        `examples/synthetic`); fails if the script did not ask for it. Scripts
#                        run only such paths, never target/release/..., so nothing they run can
#                        be missing from a fresh clone.
#   bench_binaries BINARY...  the myrr executables an A/B script compares, in BINS: those given,
#                        or this checkout's, built here (with --build-only it is built either
#                        way); each must be an executable.
#   bench_build_only_exit  with --build-only: say so and exit 0, before any benchmark.
#
# Environment: MYRR_BENCH_CARGO_PROFILE (release): the cargo profile to build with. The test
# suite (tests/benches.rs) runs every script with --build-only and the cheap `test` profile.

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export PATH="$PATH:/usr/sbin:/sbin"
BENCH_CARGO_PROFILE="${MYRR_BENCH_CARGO_PROFILE:-release}"
BENCH_BUILD_ONLY=0
BENCH_ARGS=()
declare -A BENCH_BUILT=()

bench_log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
bench_die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

bench_args() {
    local a
    for a in "$@"; do
        if [[ $a == --build-only ]]; then BENCH_BUILD_ONLY=1; else BENCH_ARGS+=("$a"); fi
    done
}

# The packages scripts/setup.sh installs (its PACKAGES=(...) line).
bench_setup_packages() {
    sed -n 's/^PACKAGES=(\(.*\))[[:space:]]*$/\1/p' "$ROOT/scripts/setup.sh"
}

bench_tools() {
    local kind=$1 t tool pkg setup_pkgs missing=() pkgs=()
    shift
    [[ $kind == setup || $kind == apt ]] || bench_die "bench_tools: unknown kind $kind"
    setup_pkgs=" $(bench_setup_packages) "
    for t in "$@"; do
        tool=${t%%:*} pkg=${t#*:}
        # Checked even when the tool is here, so a change to setup.sh shows on any machine.
        if [[ $kind == setup && $setup_pkgs != *" $pkg "* ]]; then
            bench_die "$tool: its package $pkg is not one scripts/setup.sh installs (it has:$setup_pkgs)"
        fi
        command -v "$tool" >/dev/null 2>&1 && continue
        missing+=("$tool")
        pkgs+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ((BENCH_BUILD_ONLY)); then
        if [[ $kind == setup ]]; then
            bench_log "not installed: ${missing[*]}; a run installs them with scripts/setup.sh (${pkgs[*]})"
            return 0
        fi
        command -v apt-get >/dev/null 2>&1 || bench_die "not installed: ${missing[*]} (packages ${pkgs[*]}), and no apt-get to install them"
        for pkg in "${pkgs[@]}"; do
            # Without package lists (a fresh image), the run's apt-get update fetches them.
            if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
                apt-cache show "$pkg" >/dev/null 2>&1 || bench_die "apt knows no package $pkg (for ${missing[*]})"
            fi
        done
        bench_log "not installed: ${missing[*]}; a run installs them with apt-get (${pkgs[*]})"
        return 0
    fi
    if [[ $kind == setup ]]; then
        bench_log "not installed: ${missing[*]}: running scripts/setup.sh"
        bash "$ROOT/scripts/setup.sh"
    else
        bench_log "installing ${pkgs[*]} (for ${missing[*]})"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    for tool in "${missing[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || bench_die "$tool is still not installed"
    done
}

bench_build() {
    local json exe key var unset=()
    # Under `cargo test` (tests/benches.rs) the environment holds the variables cargo sets for
    # the test binary. Build scripts watch some (ring's: CARGO_MANIFEST_DIR): left in, they
    # would make this build and the next `cargo test` each rebuild half the tree.
    for var in $(compgen -e); do
        case $var in
            CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_BIN_EXE_* | \
                CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR) unset+=(-u "$var") ;;
        esac
    done
    bench_log "building (cargo profile $BENCH_CARGO_PROFILE): $*"
    json=$(cd "$ROOT" && env ${unset[@]+"${unset[@]}"} "${CARGO:-cargo}" build \
        --profile "$BENCH_CARGO_PROFILE" --message-format=json-render-diagnostics "$@")
    while IFS= read -r exe; do
        key=${exe##*/}
        [[ $exe == */examples/* ]] && key=examples/$key
        BENCH_BUILT[$key]=$exe
    done < <(sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' <<<"$json")
}

bench_built() {
    local exe=${BENCH_BUILT[$1]:-}
    [[ -n $exe ]] || bench_die "$1 is run by this script but not built by its bench_build (built: ${!BENCH_BUILT[*]})"
    [[ -x $exe ]] || bench_die "$exe (built for $1) is not an executable"
    printf '%s\n' "$exe"
}

bench_binaries() {
    BINS=("$@")
    if ((${#BINS[@]} == 0 || BENCH_BUILD_ONLY)); then
        bench_build -p myrr --bin myrr
        local myrr
        myrr=$(bench_built myrr)
        ((${#BINS[@]})) || BINS=("$myrr")
    fi
    local bin
    for bin in "${BINS[@]}"; do
        [[ -x $bin && ! -d $bin ]] || bench_die "$bin is not an executable (BINARY: a myrr binary)"
    done
}

bench_build_only_exit() {
    if ((BENCH_BUILD_ONLY)); then
        bench_log "--build-only: built and checked what $(basename "$0") runs; no benchmark run"
        exit 0
    fi
}
