#!/usr/bin/env bash
# t_install.sh - `cmake --install` produces a usable libtfab: a consumer program builds and runs
# against it through pkg-config (shared and static) and through the CMake package tfab::tfab.
set -euo pipefail
build=${TFAB_BUILD:?}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
[ -f "$tmp/prefix/include/tfab/tfab.h" ] && [ -f "$tmp/prefix/include/tfab/version.h" ] || fail "headers not installed"
lib=$(ls -d "$tmp"/prefix/lib*/ | head -1)
[ -f "$lib/libtfab.a" ] && [ -e "$lib/libtfab.so" ] || fail "libtfab.a/.so not installed"
cat > "$tmp/consumer.c" <<'C'
#include <stdio.h>
#include <tfab/tfab.h>
int main(void)
{
    uint64_t b;
    if (tfab_size_parse("3MiB", &b) != TFAB_OK || b != 3u << 20)
        return 1;
    printf("consumer: tfab %s %s\n", TFAB_VERSION_STRING, tfab_status_str(TFAB_ERR_TIMEOUT));
    return 0;
}
C
export PKG_CONFIG_PATH=$lib/pkgconfig
cc "$tmp/consumer.c" -o "$tmp/c_shared" $(pkg-config --cflags --libs tfab)
out=$(LD_LIBRARY_PATH=$lib "$tmp/c_shared") || fail "shared consumer failed"
[ "$out" = "consumer: tfab $(pkg-config --modversion tfab) timed out" ] || fail "shared consumer printed '$out'"
cc "$tmp/consumer.c" -o "$tmp/c_static" $(pkg-config --cflags tfab) "$lib/libtfab.a" $(pkg-config --libs-only-l --static tfab | sed 's/-ltfab//')
"$tmp/c_static" | grep -q '^consumer: tfab ' || fail "static consumer failed"
ldd "$tmp/c_static" | grep -q libtfab && fail "static consumer links libtfab.so"
mkdir "$tmp/cm"
cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(tfab REQUIRED)
add_executable(consumer ../consumer.c)
target_link_libraries(consumer PRIVATE tfab::tfab)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null || fail "find_package(tfab) failed"
cmake --build "$tmp/cm/b" >/dev/null || fail "CMake consumer did not build"
LD_LIBRARY_PATH=$lib "$tmp/cm/b/consumer" | grep -q '^consumer: tfab ' || fail "CMake consumer failed"
echo PASS
