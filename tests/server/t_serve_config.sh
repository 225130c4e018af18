#!/usr/bin/env bash
# t_serve_config.sh - tfab serve's configuration chain: defaults < file < environments.<env> <
# TFAB_* variables < flags (checked through --print-config), and every bad key or value is an
# error naming the file and line (or the variable or flag) and the key.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$work"
cat >c.yaml <<'YAML'
# a comment
credits: 50
stream_limit_max: 40
max_models: 2
environments:
  production:
    stream_limit_max: 30
    credits: 60
  test:
    credits: 70
YAML
get() { awk -v k="$1:" '$1 == k { print $2 }'; }
out=$("$tfab" serve --config c.yaml --print-config)
[ "$(get credits <<<"$out") $(get stream_limit_max <<<"$out") $(get max_models <<<"$out") $(get ack_timeout_ms <<<"$out")" = "50 40 2 5000" ] ||
    fail "file over defaults: $out"
out=$("$tfab" serve --config c.yaml --env production --print-config)
[ "$(get credits <<<"$out") $(get stream_limit_max <<<"$out")" = "60 30" ] || fail "environment section: $out"
out=$(TFAB_ENV=test TFAB_CREDITS=80 "$tfab" serve --config c.yaml --print-config)
[ "$(get credits <<<"$out")" = 80 ] || fail "variable over file: $out"
out=$(TFAB_CONFIG=c.yaml TFAB_ENV=test TFAB_CREDITS=80 "$tfab" serve --credits 90 --print-config)
[ "$(get credits <<<"$out")" = 90 ] || fail "flag over variable: $out"
out=$("$tfab" serve --config c.yaml --stream-limit-max=12 --print-config)
[ "$(get stream_limit_max <<<"$out")" = 12 ] || fail "--key=value: $out"
"$tfab" serve --help-config | grep -q '^  credits  *TFAB_CREDITS  *--credits  *\[100\]' || fail "--help-config"

bad() { # bad 'expected message' [env...] -- args
    local want=$1; shift
    set +e
    local msg; msg=$("$@" 2>&1); local rc=$?
    set -e
    [ $rc -eq 2 ] || fail "$* exited $rc: $msg"
    [ "$msg" = "tfab serve: $want" ] || fail "$*: got '$msg', want 'tfab serve: $want'"
}
printf 'credits: 5\ncreditz: 7\n' >u.yaml
bad "u.yaml:2: unknown key 'creditz' (see tfab serve --help-config)" "$tfab" serve --config u.yaml
printf 'listen: x\n\nstream_limit_max: many\n' >v.yaml
bad "v.yaml:3: key 'stream_limit_max': 'many' is not an integer from 1 to 100000" "$tfab" serve --config v.yaml
printf 'utilisation_high: 1.5\n' >w.yaml
bad "w.yaml:1: key 'utilisation_high': '1.5' is not a number from 0 to 1" "$tfab" serve --config w.yaml
printf 'environments:\n  staging:\n    credits: 3\n' >x.yaml
bad "x.yaml:2: unknown environment 'staging' (development, production, test)" "$tfab" serve --config x.yaml
printf 'environments:\n  test:\n    credits: 3\n    bogus: 1\n' >y.yaml
bad "y.yaml:4: unknown key 'bogus' in this environment (see tfab serve --help-config)" "$tfab" serve --config y.yaml --env test
printf 'credits: [1, 2]\n' >z.yaml
bad "z.yaml:1: key 'credits': the value must be a scalar" "$tfab" serve --config z.yaml
printf 'credits: 1\n  bad indent: [\n' >m.yaml
out=$("$tfab" serve --config m.yaml 2>&1) && fail "malformed YAML accepted"
[[ "$out" == "tfab serve: m.yaml:2: "* ]] || fail "malformed YAML: $out"
printf -- '- a\n- b\n' >l.yaml
bad "l.yaml:1: the top level must be a mapping of keys" "$tfab" serve --config l.yaml
bad "environment variable TFAB_MAX_BODY: key 'max_body': '1k' is not an integer from 64 to 1.07374e+09" env TFAB_MAX_BODY=1k "$tfab" serve --config c.yaml
bad "flag --slots: key 'slots': '0' is not an integer from 1 to 256" "$tfab" serve --config c.yaml --slots 0
bad "unknown flag '--no-such' (see tfab serve --help-config)" "$tfab" serve --config c.yaml --no-such 1
bad "environment 'prod' is not development, production or test" "$tfab" serve --env prod
bad "nothere.yaml: No such file or directory" "$tfab" serve --config nothere.yaml
bad "key 'slots' (128) is above 'n_batch' (64)" "$tfab" serve --config c.yaml --slots 128
bad "key 'stream_limit_min' (9) is above 'stream_limit_max' (4)" "$tfab" serve --config c.yaml --stream-limit-min 9 --stream-limit-max 4
# the repository's own file is valid in every environment
for e in development production test; do
    "$tfab" serve --config "$src/config/runtime.yaml" --env $e --print-config >/dev/null || fail "config/runtime.yaml --env $e"
done
echo "$name: PASS"
