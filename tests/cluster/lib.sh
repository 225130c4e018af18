# lib.sh - shared by the tests/cluster scripts: paths, a python with numpy, a random-weight
# model, and the bit-for-bit comparison of a cluster run's logits with one host's.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
B=${TFAB_BUILD:?}
T=$B/tfab
NS=$here/../net/netns.sh
TINY=$here/../../models/tfab-tiny-f16.gguf
py=
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "FAIL: no python3 with numpy" >&2; exit 1; }
fail() { echo "$(basename "$0"): FAIL: $*" >&2; exit 1; }

# make_random MODEL.gguf [N_CTX [KV_HEADS]]: llama, 4 layers, GQA 8/2 heads (or 12/6 of width
# 96: divisible by 2 and 3 for tensor parallelism), q8_0 weights, vocabulary 256
make_random() {
    "$py" - "$1" "$here/../model" "${2:-256}" "${3:-2}" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
import gguf_writer as gw
import ref_llama as R
kv = int(sys.argv[4])
cfg = R.Config("llama", n_vocab=256, n_embd=128 if kv == 2 else 96, n_layer=4,
               n_head=8 if kv == 2 else 12, n_head_kv=kv, n_ff=256 if kv == 2 else 160,
               n_ctx=int(sys.argv[3]))
R.write_gguf(cfg, R.make_weights(cfg, seed=7), sys.argv[1], wtype=gw.GGML_Q8_0)
PY
}

# check_logits MODEL IDS DUMP N_PROMPT: the cluster's dumped rows (one per sampled token) equal
# `tfab logits` on one host at positions N_PROMPT-1.., bit for bit; and the ids are their argmax
# (REF: logits already computed, e.g. on a guest whose CPU picks other kernels than this host)
check_logits() {
    local model=$1 ids=$2 dump=$3 np=$4 ref
    ref=$(mktemp /tmp/tfab-ref.XXXXXX)
    if [ -n "${5:-}" ]; then
        cp "$5" "$ref"
    else
        "$T" logits --model "$model" --tokens "$ids" --out "$ref" --threads 1 ||
            { rm -f "$ref"; fail "tfab logits on one host"; }
    fi
    "$py" - "$ref" "$dump" "$ids" "$np" <<'PY' || { rm -f "$ref"; fail "logits differ from one host"; }
import sys
import numpy as np
ref, dump, ids, np_ = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")], int(sys.argv[4])
r = np.fromfile(ref, dtype="<u4").reshape(len(ids), -1)
d = np.fromfile(dump, dtype="<u4").reshape(-1, r.shape[1])
want = r[np_ - 1:np_ - 1 + d.shape[0]]
same = bool((want == d).all())
greedy = d.view("<f4").argmax(-1).tolist() == ids[np_:np_ + d.shape[0]]
print("  %d steps x %d logits: %s to one host; greedy ids %s" % (
    d.shape[0], r.shape[1], "bit-identical" if same else "DIFFERENT", "match" if greedy else "DIFFER"))
sys.exit(0 if same and greedy else 1)
PY
    rm -f "$ref"
}
