#!/usr/bin/env bash
# The checks ./test.sh runs before the tests, configured in pyproject.toml:
#   ruff check          lint (pycodestyle, pyflakes, isort order, bugbear, pyupgrade)
#   ruff format --check formatting (line length 79, quotes as written)
#   mypy                types of pvtfpn_mm/ ([tool.mypy])
#
#   bash tools/lint.sh [DIR]   DIR: the project to check (default: this checkout)
#
# All three run; the exit status is 1 if any failed. The tools come from the newest
# stack's venv ($PVTFPN_VENV, default <repo>/.venv; versions: requirements/constraints.txt).
# To fix what ruff can: .venv/bin/ruff check --fix . && .venv/bin/ruff format .
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PVTFPN_VENV:-$ROOT/.venv}
cd "${1:-$ROOT}" || exit 2
failed=()
check() {  # check NAME COMMAND...
    local name=$1
    shift
    echo "[lint] $name" >&2
    "$@" || failed+=("$name")
}
check 'ruff check' "$VENV/bin/ruff" check .
check 'ruff format --check' "$VENV/bin/ruff" format --check .
check 'mypy' "$VENV/bin/python" -m mypy
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "[lint] FAILED: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')" \
        "(fix what ruff can: $VENV/bin/ruff check --fix . && $VENV/bin/ruff format .)" >&2
    exit 1
fi
echo "[lint] passed: ruff check, ruff format --check, mypy" >&2
