#!/usr/bin/env bash
# Runs the test suite; sets up the environment first if needed (tools/setup_env.sh).
#   ./test.sh [pytest args]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${PVTFPN_VENV:-$ROOT/.venv}/bin/python" -m pytest "${@:--q}"
