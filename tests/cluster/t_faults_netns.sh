#!/usr/bin/env bash
# t_faults_netns.sh - faults of a pipeline across namespaced hosts: a node with the wrong token is
# refused (the coordinator names the missing node and its cluster-file line); a node killed
# mid-generation (SIGKILL) and a node frozen mid-generation (SIGSTOP: heartbeats stop) fail the
# request with a clear error within the heartbeat timeout, nothing hangs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/tfab-faults.XXXXXX)
trap 'rm -rf "$work"' EXIT
make_random "$work/rand.gguf" 4096
dead_ms=1000

cat > "$work/c2.txt" <<EOC
token right-token
join_s 4
coordinator 10.98.0.1:7700
node 10.98.0.2:7700
EOC
# ---- wrong token ---------------------------------------------------------------------------
out=$(bash "$NS" --hosts 2 --timeout 60 -- \
    "$T run --cluster $work/c2.txt --model $work/rand.gguf --prompt-ids 1,2,3 -n 4 --threads 1" \
    "$T node --cluster $work/c2.txt --rank 1 --token wrong-token --threads 1") && { echo "$out"; fail "wrong token: the run succeeded"; }
grep -q "cannot join the coordinator 10.98.0.1:7700: authentication failed (the cluster token differs)" <<<"$out" ||
    { echo "$out"; fail "wrong token: the node did not say it was refused"; }
grep -q "0 of 1 nodes joined within 4 s; missing: 1 (10.98.0.2:7700, $work/c2.txt:4)" <<<"$out" ||
    { echo "$out"; fail "wrong token: the coordinator did not name the missing node"; }
grep -q "=== host 1 (10.98.0.2) exit=1 ===" <<<"$out" || { echo "$out"; fail "wrong token: node exit"; }
echo "wrong token: node refused before joining; coordinator names node 1 at c2.txt:4"

# ---- a node dies or freezes mid-generation --------------------------------------------------
cat > "$work/c3.txt" <<EOC
token t
heartbeat_ms 100
dead_ms $dead_ms
join_s 30
coordinator 10.98.0.1:7700
node 10.98.0.2:7700
node 10.98.0.3:7700
EOC
for fault in "1 KILL" "2 STOP" "2 KILL"; do
    read -r victim sig <<<"$fault"
    rm -f "$work/d.bin" "$work/t_fault" "$work/t_exit"
    coord="$T run --cluster $work/c3.txt --model $work/rand.gguf --prompt-ids 1,2,3 -n 4000 --temp 0 --threads 1 --dump-logits $work/d.bin; rc=\$?; date +%s.%N > $work/t_exit; exit \$rc"
    # the victim strikes once the coordinator has dumped 50 decode steps (256 floats each)
    strike="$T node --cluster $work/c3.txt --rank $victim --threads 1 & p=\$!
        for i in \$(seq 600); do [ \$(stat -c %s $work/d.bin 2>/dev/null || echo 0) -ge 51200 ] && break; sleep 0.02; done
        date +%s.%N > $work/t_fault; kill -$sig \$p; sleep $((dead_ms / 1000 + 4)); kill -KILL \$p 2>/dev/null; wait \$p; exit 0"
    plain="$T node --cluster $work/c3.txt --rank \$TFAB_NET_HOST --threads 1"
    if [ "$victim" = 1 ]; then cmds=("$coord" "$strike" "$plain"); else cmds=("$coord" "$plain" "$strike"); fi
    t0=$(date +%s)
    out=$(bash "$NS" --hosts 3 --timeout 60 -- "${cmds[@]}") && { echo "$out"; fail "$fault: the run succeeded"; }
    [ -s "$work/t_fault" ] && [ -s "$work/t_exit" ] || { echo "$out"; fail "$fault: no timestamps"; }
    steps=$(( $(stat -c %s "$work/d.bin") / 1024 ))
    [ "$steps" -lt 4000 ] || fail "$fault: generation finished before the fault"
    grep -q "=== host 0 (10.98.0.1) exit=1 ===" <<<"$out" || { echo "$out"; fail "$fault: coordinator exit"; }
    if [ "$sig" = STOP ]; then
        want="node $victim (10.98.0.$((victim + 1)):7700): no heartbeat for"
    else
        want="node $victim (10.98.0.$((victim + 1)):7700): link lost"   # whichever link saw it
    fi
    grep -Fq "$want" <<<"$out" || { echo "$out"; fail "$fault: no clear error ('$want')"; }
    # when the request failed: the time stamp of that error line (UTC time of day), after the fault
    at=$(grep -F "$want" <<<"$out" | head -1 | awk '{print $1}')
    lag=$("$py" -c "
h, m, s = '$at'.split(':'); t = int(h) * 3600 + int(m) * 60 + float(s)
print('%.3f' % ((t - $(cat "$work/t_fault") % 86400) % 86400))")
    gone=$("$py" -c "print('%.2f' % ($(cat "$work/t_exit") - $(cat "$work/t_fault")))")
    "$py" -c "import sys; sys.exit(0 if $lag < $dead_ms / 1000 + 1.0 else 1)" ||
        { echo "$out"; fail "$fault: the request failed $lag s after the fault (dead_ms $dead_ms)"; }
    echo "node $victim SIG$sig after $steps decode steps: request failed $lag s later (process exit after $gone s): $(grep -Fo "$want" <<<"$out" | head -1)..."
done
echo "t_faults_netns: PASS"
