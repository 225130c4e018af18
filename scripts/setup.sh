#!/usr/bin/env bash
# setup.sh - the quick start: install every package tfab needs (apt-get, idempotent), build,
# then either run the main job or the whole test suite.
#
#   scripts/setup.sh run     install + build + `tfab devices` + `tfab run` with the built-in model
#   scripts/setup.sh test    install + build + the whole test suite (what .ci/run calls)
#   scripts/setup.sh deps    install only
#   scripts/setup.sh build   install + build only
#
# Builds: build/ (gcc, RelWithDebInfo; every test label) and, for `test`, build-san/ (clang with
# AddressSanitizer + UndefinedBehaviorSanitizer and libFuzzer; unit, net and fuzz labels).
# Environment: TFAB_JOBS (parallel build jobs, default nproc), TFAB_SKIP_SAN=1 skips build-san.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
jobs=${TFAB_JOBS:-$(nproc)}

packages=(
    build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev git python3
    libibverbs-dev librdmacm-dev rdma-core ibverbs-utils rdmacm-utils perftest ucx-utils
    libnuma-dev numactl libopenblas-dev libprotobuf-c-dev protobuf-c-compiler
    libmicrohttpd-dev libcjson-dev libpcre2-dev libyaml-dev libcmocka-dev
    iproute2 libcap2-bin iperf3 qemu-system-x86 busybox-static cpio kmod python3-torch python3-numpy
    curl chromium
)

say() { printf '\n==> %s\n' "$*"; }

install_deps() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    # npm fetches llama.cpp's source (test data) once; a Node.js already on the machine brings its
    # own npm, which Debian's npm package would conflict with: install it only when absent
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -eq 0 ]; then
        say "all ${#packages[@]} packages already installed"
        return
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup.sh: missing packages (${missing[*]}) and not root; run as root" >&2; exit 1; }
        sudo=sudo
    fi
    say "installing ${#missing[@]} packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() { # build DIR [cmake args...]
    local dir=$1; shift
    say "configuring and building $dir"
    cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
}

case "$mode" in
    deps) install_deps ;;
    build) install_deps; build build ;;
    run)
        install_deps
        build build
        say "tfab devices"
        ./build/tfab devices
        say "tfab run \"Once upon a time\"  (the built-in model)"
        ./build/tfab run "Once upon a time"
        ;;
    test)
        install_deps
        build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTFAB_WERROR=ON
        # the soft-RoCE tests must exist (verbs found): a missing test is a failure, not a skip
        n=$(ctest --test-dir build -N -L softroce | sed -n 's/^Total Tests: //p')
        [ "${n:-0}" -ge 4 ] || { echo "setup.sh: only ${n:-0} softroce tests configured (verbs not found?)" >&2; exit 1; }
        # so must the llama.cpp peer tests (greedy continuations identical to llama.cpp's)
        n=$(ctest --test-dir build -N -L peer | sed -n 's/^Total Tests: //p')
        [ "${n:-0}" -ge 2 ] || { echo "setup.sh: only ${n:-0} peer tests configured" >&2; exit 1; }
        status=0
        if [ "${TFAB_SKIP_SAN:-0}" != 1 ]; then
            build build-san -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DTFAB_WERROR=ON \
                -DTFAB_SANITIZE_ADDRESS=ON -DTFAB_SANITIZE_UNDEFINED=ON -DTFAB_FUZZ=ON
            say "sanitizer build: unit, net and fuzz tests"
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                ctest --test-dir build-san -L 'unit|net|fuzz' --output-on-failure -j 2 || status=1
        fi
        say "full suite: unit, net, fuzz, softroce, peer, perf"
        ctest --test-dir build --output-on-failure -j 2 || status=1
        exit $status
        ;;
    *) echo "usage: scripts/setup.sh run|test|deps|build" >&2; exit 2 ;;
esac
