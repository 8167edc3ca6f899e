#!/usr/bin/env bash
# Runs the test suite on both tested stacks, setting each up first if needed
# (tools/setup_env.sh): every test on the newest stack (.venv), the tests marked `oldest`
# (listed in tests/conftest.py) on the oldest supported stack (.venv-oldest).
#   ./test.sh [pytest args]               the args go to both runs (a -m of yours
#                                         replaces the oldest run's -m oldest)
#   PVTFPN_STACKS=newest ./test.sh ...    one stack only: newest, oldest, "newest oldest"
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
rc=0
for stack in ${PVTFPN_STACKS:-newest oldest}; do
    case $stack in
        newest) venv=${PVTFPN_VENV:-$ROOT/.venv}; select=() ;;
        oldest) venv=${PVTFPN_VENV_OLDEST:-$ROOT/.venv-oldest}; select=(-m oldest) ;;
        *) echo "PVTFPN_STACKS: unknown stack '$stack' (allowed: newest, oldest)" >&2; exit 2 ;;
    esac
    start=$SECONDS
    bash "$ROOT/tools/setup_env.sh" "$stack"
    echo "[test.sh] $stack stack ready in $((SECONDS - start)) s: $venv" >&2
    start=$SECONDS
    status=0
    "$venv/bin/python" -m pytest "${select[@]}" "${@:--q}" || status=$?
    echo "[test.sh] $stack stack: pytest exit $status in $((SECONDS - start)) s" >&2
    if [[ $status -ne 0 && ( $rc -eq 0 || $rc -eq 5 ) ]]; then
        rc=$status
    fi
done
exit $rc
