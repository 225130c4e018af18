#!/usr/bin/env bash
# t_topo_probe.sh - `tfab topo --probe` measures each ranked link against `tfab topo --serve`
# on the peer: two namespaced hosts on two networks, the first (eth0) shaped to 100 Mbit/s,
# the second not. The probe must rank net0 first, report its bandwidth near 0.1 Gbit/s, the
# unshaped net1 well above it, and latencies that are positive and sane.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tfab=${TFAB_BUILD:?}/tfab
fail() { echo "t_topo_probe: FAIL: $*" >&2; exit 1; }
topo=$(mktemp /tmp/tfab-topo.XXXXXX.yaml)
trap 'rm -f "$topo"' EXIT
cat >"$topo" <<'YAML'
version: 1
hosts:
  - name: h0
    links:
      - {name: net0, kind: tcp, address: 10.98.0.1:7470}
      - {name: net1, kind: tcp, address: 10.98.1.1:7470}
  - name: h1
    links:
      - {name: net0, kind: tcp, address: 10.98.0.2:7470}
      - {name: net1, kind: tcp, address: 10.98.1.2:7470}
routes:
  - {from: h0, to: h1, links: [net0, net1]}
YAML
chmod 644 "$topo"
out=$(bash "$here/netns.sh" --hosts 2 --nets 2 --rate 100 --timeout 90 -- \
    "$tfab topo --file $topo --probe h0 --to h1 --seconds 30" \
    "$tfab topo --file $topo --serve h1 --once --seconds 60") || { echo "$out"; fail "probe run failed"; }
echo "$out"
line0=$(grep -E '^  1\. net0 +tcp +-> 10.98.0.2:7470: ' <<<"$out") || fail "net0 not probed first"
line1=$(grep -E '^  2\. net1 +tcp +-> 10.98.1.2:7470: ' <<<"$out") || fail "net1 not probed second"
read -r lat0 bw0 < <(sed -E 's/.*latency ([0-9.]+) us, bandwidth ([0-9.]+) Gbit\/s$/\1 \2/' <<<"$line0")
read -r lat1 bw1 < <(sed -E 's/.*latency ([0-9.]+) us, bandwidth ([0-9.]+) Gbit\/s$/\1 \2/' <<<"$line1")
echo "net0: latency $lat0 us, $bw0 Gbit/s; net1: latency $lat1 us, $bw1 Gbit/s"
awk -v b="$bw0" 'BEGIN { exit !(b >= 0.06 && b <= 0.11) }' || fail "net0 (shaped to 100 Mbit/s) measured $bw0 Gbit/s"
awk -v b="$bw1" -v b0="$bw0" 'BEGIN { exit !(b > 3 * b0) }' || fail "net1 (unshaped) measured $bw1 Gbit/s, not well above net0"
awk -v a="$lat0" -v c="$lat1" 'BEGIN { exit !(a > 0 && a < 20000 && c > 0 && c < 20000) }' || fail "latencies out of range"
[ "$(grep -c '^served a probe on net[01] (ok)$' <<<"$out")" = 2 ] || fail "the responder did not answer one probe per link"
echo "t_topo_probe: PASS"
