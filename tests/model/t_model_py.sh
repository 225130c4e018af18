#!/usr/bin/env bash
# t_model_py.sh SCRIPT [ARGS] - runs a tests/model python test as SCRIPT TFAB_BUILD TFAB_SOURCE
# ARGS with a python3 that has numpy and torch (Debian's python3-torch is in /usr/bin/python3,
# which a pyenv shim may hide).
set -euo pipefail
py=
for p in /usr/bin/python3 python3; do
    if "$p" -c 'import torch, numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "FAIL: no python3 with torch and numpy (apt-get install python3-torch python3-numpy)" >&2; exit 1; }
script=$1
shift
exec "$py" "$(dirname "$0")/$script" "${TFAB_BUILD:?}" "${TFAB_SOURCE:?}" "$@"
