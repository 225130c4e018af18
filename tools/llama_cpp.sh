#!/usr/bin/env bash
# llama_cpp.sh - builds the llama.cpp peer (reference) binaries from the tree tools/llama_src.sh
# provides, and prints their bin directory as the last stdout line.
#
# usage: tools/llama_cpp.sh [build|path] [CACHE_DIR]
#   build (default)  configure + build if needed (cached, idempotent), print the bin dir
#   path             print the bin dir if a complete build exists, else exit 1 (builds nothing)
#   CACHE_DIR        passed to tools/llama_src.sh; defaults to $TFAB_LLAMA_CACHE, else
#                    ./llama-cache (relative to the cwd), like llama_src.sh.
# Environment: TFAB_LLAMA_JOBS (default 2) build parallelism.
#
# Builds, CPU only, Release, static: llama-simple, llama-completion (plain completion CLI),
# llama-cli, llama-bench, llama-tokenize, test-tokenizer-0 - those of them this llama.cpp
# version has. No network after llama_src.sh (no curl/openssl, no web UI). A stamp file holds
# the llama.cpp commit and the target list; a changed tree or list rebuilds. Safe to run
# concurrently (flock). Exit 0 on success, 1 with a message on stderr otherwise.
#
# Example: greedy continuation with the built-in model
#   bin=$(tools/llama_cpp.sh); $bin/llama-simple -m models/tfab-tiny-f16.gguf -n 48 "Once upon a time"
set -euo pipefail

die() { echo "llama_cpp.sh: $*" >&2; exit 1; }

mode=${1:-build}
case $mode in build | path) ;; *) die "usage: $0 [build|path] [CACHE_DIR]" ;; esac
cache=${2:-${TFAB_LLAMA_CACHE:-./llama-cache}}
jobs=${TFAB_LLAMA_JOBS:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WANT="llama-simple llama-completion llama-cli llama-bench llama-tokenize test-tokenizer-0"

built() { [[ -f $stamp && -d $build/bin ]]; }

if [[ $mode == path ]]; then
    build="$(cd "$cache" 2>/dev/null && pwd || echo "$cache")/llama.cpp-build"
    stamp="$build/.tfab-llama-build-ok"
    built || die "no llama.cpp build in $cache/llama.cpp-build (run: $0 build ${2:-})"
    echo "$build/bin"
    exit 0
fi

mkdir -p "$cache" || die "cannot create cache directory '$cache'"
cache=$(cd "$cache" && pwd)
build="$cache/llama.cpp-build"
stamp="$build/.tfab-llama-build-ok"

src=$("$here/llama_src.sh" "$cache" | tail -n1) || die "tools/llama_src.sh failed"
[[ -f $src/CMakeLists.txt ]] || die "llama_src.sh printed '$src', which has no CMakeLists.txt"
commit=$(cat "$src/.tfab-llama-src-ok" 2>/dev/null || echo unknown)
want_stamp="$commit $WANT"

if built && [[ $(cat "$stamp") == "$want_stamp" ]]; then
    echo "$build/bin"
    exit 0
fi

command -v cmake >/dev/null || die "cmake is not installed (apt-get install cmake)"
command -v c++ >/dev/null || die "no C++ compiler (apt-get install g++)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

exec 9>"$cache/.build.lock"
command -v flock >/dev/null && { flock 9 || die "cannot lock $cache/.build.lock"; }
if built && [[ $(cat "$stamp") == "$want_stamp" ]]; then
    echo "$build/bin"
    exit 0
fi
rm -f "$stamp"

echo "llama_cpp.sh: configuring llama.cpp $commit in $build" >&2
cmake -S "$src" -B "$build" "${gen[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$build/bin" >"$build.configure.log" 2>&1 ||
    { tail -n 30 "$build.configure.log" >&2; die "cmake configure failed (log: $build.configure.log)"; }

# only the targets this version defines
targets=()
all=$(cmake --build "$build" --target help 2>/dev/null || true)
for t in $WANT; do
    grep -qE "(^|[ :./])$t(:|\$| )" <<<"$all" && targets+=("$t")
done
((${#targets[@]})) || die "none of the targets ($WANT) exist in $src"
echo "llama_cpp.sh: building ${targets[*]} with -j$jobs (several minutes on 2 cores)" >&2
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$build.build.log" 2>&1 ||
    { tail -n 30 "$build.build.log" >&2; die "build failed (log: $build.build.log)"; }
echo "$want_stamp" >"$stamp"
echo "$build/bin"
