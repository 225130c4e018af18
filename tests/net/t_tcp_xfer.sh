#!/usr/bin/env bash
# t_tcp_xfer.sh - 64 MiB and 1 B over TCP between two namespaced hosts, and 3 hosts in a ring
# (each sends to the next): every byte checked on the receiver, checksums equal on both ends.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
x=${TFAB_BUILD:?}/tests/tcp_xfer
fail() { echo "FAIL: $*" >&2; exit 1; }

for bytes in 64M 1B 3333333B; do
    out=$(bash "$here/netns.sh" --hosts 2 --timeout 60 -- \
        "$x --server --bind \$TFAB_NET_IP --bytes $bytes" \
        "$x --client 10.98.0.1 --bytes $bytes --seed 42") || { echo "$out"; fail "transfer of $bytes failed"; }
    echo "$out"
    n=$(grep -o '^server: [0-9]* bytes checksum [0-9a-f]* intact' <<<"$out" | awk '{print $2, $5}')
    c=$(grep -o '^client: [0-9]* bytes checksum [0-9a-f]* server [0-9a-f]*' <<<"$out" | awk '{print $2, $5, $7}')
    read -r sbytes ssum <<<"$n"
    read -r cbytes csum cssum <<<"$c"
    want=$(python3 -c "import sys; s=sys.argv[1]; print(int(s[:-1]) if s.endswith('B') else int(s[:-1]) << 20)" "$bytes")
    [ "$sbytes" = "$want" ] && [ "$cbytes" = "$want" ] || fail "$bytes: byte counts $sbytes/$cbytes, want $want"
    [ "$ssum" = "$csum" ] && [ "$cssum" = "$csum" ] || fail "$bytes: checksums differ: $ssum $csum $cssum"
done

# 3 hosts: host i serves, and sends 8 MiB to host (i+1) mod 3
ring="$x --server --bind \$TFAB_NET_IP --bytes 8M --port 7500 & s=\$!;
      next=\$(( (TFAB_NET_HOST + 1) % TFAB_NET_HOSTS + 1 ));
      $x --client 10.98.0.\$next --port 7500 --bytes 8M --seed \$TFAB_NET_HOST && wait \$s"
out=$(bash "$here/netns.sh" --hosts 3 --timeout 60 -- "$ring") || { echo "$out"; fail "3-host ring failed"; }
echo "$out"
[ "$(grep -c '^server: 8388608 bytes checksum [0-9a-f]* intact' <<<"$out")" = 3 ] || fail "ring: not 3 intact receives"
[ "$(grep -c '^client: OK' <<<"$out")" = 3 ] || fail "ring: not 3 verified sends"
echo PASS
