#!/usr/bin/env bash
# Sets up (or checks) the project's virtual environment, idempotently.
#
#   bash tools/setup_env.sh            # .venv next to this repo
#
# Environment:
#   PVTFPN_VENV   where the venv lives           (default: <repo>/.venv)
#   PVTFPN_CACHE  where built wheels are cached  (default: ~/.cache/pvtfpn_mm)
#
# Versions come from requirements/constraints.txt and nowhere else. mmcv 2.1.0 has no
# wheel for this torch, so it is built once from the PyPI sdist (compiled CPU ops,
# C++20 for torch 2.14's headers) and cached outside the repo, keyed on
# python / torch / mmcv; later set-ups reuse the cached wheel.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS=$ROOT/requirements/constraints.txt
VENV=${PVTFPN_VENV:-$ROOT/.venv}
CACHE=${PVTFPN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvtfpn_mm}

pin() { sed -n "s/^#\? *$1==\([^ ]*\).*/\1/p" "$PINS" | head -n1; }
PY_VER=$(pin python); TORCH_VER=$(pin torch); MMCV_VER=$(pin mmcv)
PY=${PYTHON:-python$PY_VER}
log() { printf '[setup_env] %s\n' "$*" >&2; }

# The stamp records what the venv was built from; a matching stamp means nothing to do.
STAMP=$VENV/.pvtfpn_mm_stamp
want_stamp=$(cat "$PINS" "$ROOT/requirements/stack.txt" "$ROOT/setup.py" "$0" | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$want_stamp" && -x $VENV/bin/python ]]; then
    exit 0
fi

start=$(date +%s)
if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
pip_c() { "$VPY" -m pip install --disable-pip-version-check -q -c "$PINS" "$@"; }

log "torch $TORCH_VER and build tools"
pip_c setuptools wheel ninja
pip_c torch torchvision

# --- mmcv with compiled ops --------------------------------------------------------
have_mmcv_ops() {
    "$VPY" - "$MMCV_VER" <<'PY' 2>/dev/null
import sys, mmcv
from mmcv.ops import batched_nms, RoIAlign  # noqa: F401  (needs mmcv._ext)
sys.exit(0 if mmcv.__version__ == sys.argv[1] else 1)
PY
}
if ! have_mmcv_ops; then
    key=cp${PY_VER/./}-torch$TORCH_VER-mmcv$MMCV_VER
    wheel_dir=$CACHE/wheels/$key
    whl=$(ls "$wheel_dir"/mmcv-"$MMCV_VER"-*.whl 2>/dev/null | head -n1 || true)
    if [[ -z $whl ]]; then
        log "building mmcv $MMCV_VER with CPU ops from the sdist (about 11 min on 2 cores)"
        build=$(mktemp -d)
        "$VPY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VER" -d "$build"
        tar -xzf "$build"/mmcv-"$MMCV_VER".tar.gz -C "$build"
        src=$build/mmcv-$MMCV_VER
        # torch >= 2.10 headers use C++20; mmcv's setup.py hardcodes -std=c++17.
        sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src/setup.py"
        grep -q "'-std=c++20'" "$src/setup.py" || { log "could not patch mmcv's setup.py"; exit 1; }
        (cd "$src" && CUDA_VISIBLE_DEVICES= FORCE_CUDA=0 MMCV_WITH_OPS=1 \
            CFLAGS="-g0 -O2" CXXFLAGS="-g0 -O2" MAX_JOBS=${MAX_JOBS:-2} \
            "$VPY" -m pip wheel -q --no-build-isolation --no-deps -w "$build/out" .)
        mkdir -p "$wheel_dir"
        built=$(ls "$build"/out/mmcv-*.whl)
        cp "$built" "$wheel_dir/.tmp.whl" && mv "$wheel_dir/.tmp.whl" "$wheel_dir/$(basename "$built")"
        rm -rf "$build"
        whl=$wheel_dir/$(basename "$built")
    else
        log "reusing cached $whl"
    fi
    pip_c "$whl"
    have_mmcv_ops || { log "mmcv installed but its compiled ops do not import"; exit 1; }
fi

log "mmdet, mmseg, timm and the rest"
pip_c -r "$ROOT/requirements/stack.txt"
# mim without its openxlab dependency (which pins old setuptools and requests).
pip_c --no-deps openmim
pip_c --no-deps -e "$ROOT"

"$VPY" -m pip check >/dev/null 2>&1 || "$VPY" -m pip check | grep -v -i "openmim\|opendatalab\|openxlab" >&2 || true
echo "$want_stamp" > "$STAMP"
log "environment ready in $(( $(date +%s) - start )) s: $VENV"
