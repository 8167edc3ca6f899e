#!/usr/bin/env bash
# The main job: sets up the environment if needed, then runs tools/quickstart.py.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${PVTFPN_VENV:-$ROOT/.venv}/bin/python" tools/quickstart.py "$@"
