#!/usr/bin/env bash
# t_plan.sh - `tfab plan`: layer ranges in proportion to memory (contiguous, covering the model,
# each within its rank's memory), bytes per token per link, the stage order that puts consecutive
# stages on the best-ranked links of a topology file, and a clear error with the numbers when
# the model does not fit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/tfab-plan.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$py" - "$work/m8.gguf" "$here/../model" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import ref_llama as R
cfg = R.Config("llama", n_vocab=500, n_embd=256, n_layer=8, n_head=8, n_head_kv=4, n_ff=512)
R.write_gguf(cfg, R.make_weights(cfg, seed=3), sys.argv[1])
PY
# f32: a layer is 4 x (3 x 256^2 / 2 ... ) bytes; the plan prints the numbers, we check them
cat > "$work/c.txt" <<EOF2
chunk 16
coordinator 10.0.0.1:7700 mem 24MiB
node 10.0.0.2:7700 mem 12MiB
node 10.0.0.3:7700 mem 12MiB
EOF2
out=$("$T" plan --cluster "$work/c.txt" --model "$work/m8.gguf" --ctx 128) || { echo "$out"; fail "plan"; }
echo "$out"
"$py" - "$out" <<'PY' || fail "plan values"
import re, sys
out = sys.argv[1]
st = [tuple(map(int, m)) for m in re.findall(r"layers \[(\d+), (\d+)\)", out)]
assert [s[0] for s in st] == [0, st[0][1], st[1][1]] and st[-1][1] == 8, st
assert all(b < e for b, e in st), st
n0, n1, n2 = [e - b for b, e in st]
assert n0 >= n1 + n2 - 1 and n0 > n1 and n0 > n2, ("memory 2:1:1 but layers", st)
for need, mem in re.findall(r"needs ([\d.]+ \w+) of ([\d.]+ \w+)", out):
    u = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    f = lambda s: float(s.split()[0]) * u[s.split()[1]]
    assert f(need) <= f(mem), (need, mem)
# decode: 944-byte header + 1 position + 1 flag, padded to 64, + 256 floats; logits: header + 500 floats
assert re.search(r"link 0 -> 1: tcp 10.0.0.1:7700 -> 10.0.0.2:7700: 1984 bytes/token decode, (\d+) bytes/token prefill", out)
pf = int(re.search(r"(\d+) bytes/token prefill", out).group(1))
assert pf == -(-((944 + 16 * 5 + 63) // 64 * 64 + 16 * 256 * 4) // 16), pf
assert "link 2 -> 0 (logits): tcp 10.0.0.3:7700 -> 10.0.0.1:7700: 2944 bytes/token decode" in out
print("plan values ok: stages", st)
PY

# does not fit: the numbers are in the message
printf 'coordinator 10.0.0.1:7700 mem 2MiB\nnode 10.0.0.2:7700 mem 2MiB\n' > "$work/small.txt"
out=$("$T" plan --cluster "$work/small.txt" --model "$work/m8.gguf" --ctx 128 2>&1) && fail "a model too large was placed"
grep -q "does not fit: it needs .* (weights .* + KV cache .* at n_ctx 128) but the cluster has 4.00 MiB: 2.00 MiB on rank 0 (10.0.0.1:7700)" <<<"$out" ||
    { echo "$out"; fail "not-fit message"; }
echo "too large: $out"

# the topology decides the order: verbs between h0-h2, h2-h1, h1-h3, h3-h0; tcp everywhere
cat > "$work/topo.yaml" <<'EOF2'
version: 1
hosts:
  - name: h0
    links:
      - {name: v1, kind: verbs, device: rxe0, address: 10.1.0.1}
      - {name: v4, kind: verbs, device: rxe1, address: 10.4.0.1}
      - {name: eth, kind: tcp, address: 10.0.0.1:7400}
  - name: h1
    links:
      - {name: v2, kind: verbs, device: rxe0, address: 10.2.0.2}
      - {name: v3, kind: verbs, device: rxe1, address: 10.3.0.2}
      - {name: eth, kind: tcp, address: 10.0.0.2:7400}
  - name: h2
    links:
      - {name: v1, kind: verbs, device: rxe0, address: 10.1.0.3}
      - {name: v2, kind: verbs, device: rxe1, address: 10.2.0.3}
      - {name: eth, kind: tcp, address: 10.0.0.3:7400}
  - name: h3
    links:
      - {name: v3, kind: verbs, device: rxe0, address: 10.3.0.4}
      - {name: v4, kind: verbs, device: rxe1, address: 10.4.0.4}
      - {name: eth, kind: tcp, address: 10.0.0.4:7400}
EOF2
cat > "$work/t.txt" <<EOF2
topology $work/topo.yaml
coordinator 10.0.0.1:7700 mem 1GiB host h0
node 10.0.0.2:7700 mem 1GiB host h1
node 10.0.0.3:7700 mem 1GiB host h2
node 10.0.0.4:7700 mem 1GiB host h3
EOF2
out=$("$T" plan --cluster "$work/t.txt" --model "$work/m8.gguf" --ctx 128) || { echo "$out"; fail "plan with topology"; }
echo "$out"
order=$(grep -o 'stage [0-9]: rank [0-9]' <<<"$out" | awk '{print $4}' | tr '\n' ' ')
[ "$order" = "0 2 1 3 " ] || fail "stage order '$order', want 0 2 1 3 (all-verbs ring)"
grep -q "link 0 -> 1: verbs v1 (h0 -> h2)" <<<"$out" && grep -q "link 1 -> 2: verbs v2 (h2 -> h1)" <<<"$out" &&
    grep -q "link 2 -> 3: verbs v3 (h1 -> h3)" <<<"$out" && grep -q "link 3 -> 0 (logits): verbs v4 (h3 -> h0)" <<<"$out" ||
    fail "links per boundary"
sed -i 's/host h3$/host h9/' "$work/t.txt"
out=$("$T" plan --cluster "$work/t.txt" --model "$work/m8.gguf" 2>&1) && fail "unknown host accepted"
grep -q "t.txt:5: host 'h9' is not in" <<<"$out" || { echo "$out"; fail "unknown host message"; }
echo "t_plan: PASS"
