#!/usr/bin/env bash
# llama_src.sh - makes a pinned llama.cpp source tree available (from the npm package
# node-llama-cpp, which ships it as a git bundle) and prints its path as the last stdout line.
#
# usage: tools/llama_src.sh [CACHE_DIR]
#   CACHE_DIR defaults to $TFAB_LLAMA_CACHE, else ./llama-cache (relative to the cwd).
#
# The tree is used only as test data (vocab GGUF files models/ggml-vocab-*.gguf and their
# tokenizer test vectors .inp/.out); no llama.cpp code is ever copied into tfab.
# Idempotent and cached: a second call with the same cache prints the same path without
# touching the network. Safe to run concurrently (flock on the cache). Exit status 0 on
# success, 1 with a message on stderr on any failure (npm missing, registry unreachable,
# unexpected package contents).
set -euo pipefail

NLC_VERSION=3.22.1                                        # node-llama-cpp release, pinned
LLAMA_COMMIT=de3ff815ea7d559ee917f063901b8986f038abc6   # HEAD of its gitRelease.bundle

die() { echo "llama_src.sh: $*" >&2; exit 1; }

cache=${1:-${TFAB_LLAMA_CACHE:-./llama-cache}}
mkdir -p "$cache" || die "cannot create cache directory '$cache'"
cache=$(cd "$cache" && pwd)
dest="$cache/llama.cpp-nlc$NLC_VERSION"
stamp="$dest/.tfab-llama-src-ok"

have_tree() { [[ -f $stamp && $(cat "$stamp") == "$LLAMA_COMMIT" ]]; }

if have_tree; then
    echo "$dest"
    exit 0
fi

command -v git >/dev/null || die "git is not installed (apt-get install git)"
command -v tar >/dev/null || die "tar is not installed"

# One fetch at a time per cache; the others wait and then find the tree ready.
exec 9>"$cache/.lock"
if command -v flock >/dev/null; then
    flock 9 || die "cannot lock $cache/.lock"
fi
if have_tree; then
    echo "$dest"
    exit 0
fi

command -v npm >/dev/null ||
    die "npm is not installed; it is needed once to fetch node-llama-cpp@$NLC_VERSION (apt-get install npm)"

work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

tgz="$cache/node-llama-cpp-$NLC_VERSION.tgz"
if [[ ! -s $tgz ]]; then
    echo "llama_src.sh: fetching node-llama-cpp@$NLC_VERSION from the npm registry" >&2
    if ! (cd "$work" && npm pack --loglevel=error "node-llama-cpp@$NLC_VERSION" >"$work/pack.log" 2>&1); then
        sed 's/^/  npm: /' "$work/pack.log" >&2 || true
        die "'npm pack node-llama-cpp@$NLC_VERSION' failed: is the npm registry reachable (network, proxy, npm config get registry)?"
    fi
    [[ -s $work/node-llama-cpp-$NLC_VERSION.tgz ]] || die "npm pack produced no node-llama-cpp-$NLC_VERSION.tgz"
    mv "$work/node-llama-cpp-$NLC_VERSION.tgz" "$tgz"
fi

tar -xzf "$tgz" -C "$work" package/llama/gitRelease.bundle ||
    die "$tgz has no package/llama/gitRelease.bundle (corrupt download? delete it and retry)"
bundle="$work/package/llama/gitRelease.bundle"
head=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" {print $1}')
[[ $head == "$LLAMA_COMMIT" ]] ||
    die "bundle HEAD is '$head', expected $LLAMA_COMMIT: node-llama-cpp@$NLC_VERSION changed? (delete $tgz and retry)"

rm -rf "$dest"
git -c advice.detachedHead=false clone -q "$bundle" "$work/src" || die "git clone of the bundle failed"
[[ -f $work/src/models/ggml-vocab-llama-spm.gguf ]] || die "cloned tree lacks models/ggml-vocab-llama-spm.gguf"
rm -rf "$work/src/.git" # a plain tree: nothing of it is built or committed
echo "$LLAMA_COMMIT" >"$work/src/.tfab-llama-src-ok"
mv "$work/src" "$dest"
echo "$dest"
