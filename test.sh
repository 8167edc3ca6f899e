#!/usr/bin/env bash
# Runs the checks and the test suite on both tested stacks, setting each up first if
# needed (tools/setup_env.sh): lint, format and type checks (tools/lint.sh) once with the
# newest stack's tools, every test on the newest stack (.venv), the tests marked `oldest`
# (listed in tests/conftest.py) on the oldest supported stack (.venv-oldest).
#   ./test.sh [pytest args]               the args go to both runs; a -m EXPR of yours
#                                         becomes -m "oldest and (EXPR)" on the oldest
#   ./test.sh -m "not slow"               the fast selection (DEVELOPERS.md "Checks")
#   PVTFPN_STACKS=newest ./test.sh ...    one stack only: newest, oldest, "newest oldest"
#                                         (the checks run with the newest stack)
#   PVTFPN_LINT=0 ./test.sh ...           skip the checks (local use; CI runs them)
#   PVTFPN_TEST_WORKERS=N ./test.sh ...   pytest-xdist processes, whole test files each
#                                         (default 2, the cores of CI's machine; 0: none)
# Exit status: the first failing pytest run's, else 1 if a check failed, else 0.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
# The user's -m (pytest takes the last one): combined with `oldest` on the oldest stack.
user_m=
args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -m) [[ $# -ge 2 ]] || { echo "test.sh: -m needs an expression" >&2; exit 2; }
            user_m=$2; shift 2 ;;
        -m?*) user_m=${1#-m}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
[[ ${#args[@]} -gt 0 ]] || args=(-q)
# A test file runs in one worker (--dist loadfile): its module fixtures are built once.
workers=(-n "${PVTFPN_TEST_WORKERS:-2}" --dist loadfile)
rc=0
lint_rc=0
for stack in ${PVTFPN_STACKS:-newest oldest}; do
    case $stack in
        newest) venv=${PVTFPN_VENV:-$ROOT/.venv}; select=()
                if [[ -n $user_m ]]; then select=(-m "$user_m"); fi ;;
        oldest) venv=${PVTFPN_VENV_OLDEST:-$ROOT/.venv-oldest}; select=(-m oldest)
                if [[ -n $user_m ]]; then select=(-m "oldest and ($user_m)"); fi ;;
        *) echo "PVTFPN_STACKS: unknown stack '$stack' (allowed: newest, oldest)" >&2; exit 2 ;;
    esac
    start=$SECONDS
    bash "$ROOT/tools/setup_env.sh" "$stack"
    echo "[test.sh] $stack stack ready in $((SECONDS - start)) s: $venv" >&2
    if [[ $stack == newest && ${PVTFPN_LINT:-1} != 0 ]]; then
        start=$SECONDS
        PVTFPN_VENV=$venv bash "$ROOT/tools/lint.sh" "$ROOT" || lint_rc=$?
        echo "[test.sh] checks (tools/lint.sh): exit $lint_rc in $((SECONDS - start)) s" >&2
    fi
    start=$SECONDS
    status=0
    "$venv/bin/python" -m pytest "${select[@]}" "${workers[@]}" "${args[@]}" || status=$?
    echo "[test.sh] $stack stack: pytest exit $status in $((SECONDS - start)) s" >&2
    if [[ $status -ne 0 && ( $rc -eq 0 || $rc -eq 5 ) ]]; then
        rc=$status
    fi
done
if [[ $lint_rc -ne 0 ]]; then
    echo "[test.sh] the checks failed (tools/lint.sh, above)" >&2
    if [[ $rc -eq 0 || $rc -eq 5 ]]; then
        rc=1
    fi
fi
exit $rc
