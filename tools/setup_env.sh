#!/usr/bin/env bash
# Sets up (or checks) one of the project's two tested stacks in its own venv, idempotently.
#
#   bash tools/setup_env.sh [--dry-run] [newest|oldest]
#
#   newest (default)  requirements/constraints.txt                          -> .venv
#   oldest            the same, with the pins of requirements/constraints-oldest.txt in
#                     place of those packages' pins (torch 2.1, timm 0.9, numpy 1.26...) -> .venv-oldest
#   --dry-run         print the stack, where torch comes from and the environment mmcv
#                     would be built with (GPU detection included); change nothing
#
# Environment:
#   PVTFPN_VENV, PVTFPN_VENV_OLDEST  the venvs (default <repo>/.venv, <repo>/.venv-oldest)
#   PVTFPN_CACHE            built mmcv wheels and CUDA toolkits (default ~/.cache/pvtfpn_mm)
#   PVTFPN_TORCH_INDEX_URL  install torch/torchvision from this index, e.g. PyTorch's CPU
#                           wheels https://download.pytorch.org/whl/cpu (off by default:
#                           PyPI's Linux torch is a CUDA build with ~3-4 GB of CUDA wheels)
#   PVTFPN_MMCV_OPS         auto (default: CUDA ops when a usable NVIDIA GPU is present),
#                           cpu or cuda
#   TORCH_CUDA_ARCH_LIST    GPU architectures to build for (default: the GPUs present)
#   PVTFPN_TORCH_CUDA       --dry-run only: torch's CUDA version to assume ('none': CPU
#                           torch) instead of the installed torch's / the pinned build's
#   MAX_JOBS                parallel mmcv compile jobs (default 2)
#
# Versions come from the pins files and nowhere else. mmcv 2.1.0 has no wheel for these
# torch versions, so it is built once from the PyPI sdist and cached outside the repo,
# keyed on python / torch / mmcv / CPU or CUDA version + GPU architectures; later set-ups
# reuse the cached wheel. On a GPU host the build gets mmcv's CUDA ops (FORCE_CUDA=1, the
# GPUs' architectures, an nvcc of torch's CUDA version) and is checked by running nms,
# roi_align and sigmoid_focal_loss on the GPU (tools/mmcv_build_env.py).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/tools/setup_env.sh
HELPER=$ROOT/tools/mmcv_build_env.py
log() { printf '[setup_env] %s\n' "$*" >&2; }
usage() { sed -n '2,10p' "$SELF" | sed 's/^# \{0,1\}//' >&2; }

DRY=0
STACK=newest
for arg in "$@"; do
    case $arg in
        --dry-run) DRY=1 ;;
        newest | oldest) STACK=$arg ;;
        -h | --help) usage; exit 0 ;;
        *) log "unknown argument '$arg' (allowed: --dry-run, newest, oldest)"; exit 2 ;;
    esac
done
# The deploy extra differs: the newest stack exports with torch.onnx.export(dynamo=True)
# (tools/export_onnx.py: onnx, onnxruntime, onnxscript); the oldest has mmdeploy 1.3.1,
# whose export needs the TorchScript exporter (not the default from torch 2.9) and
# protobuf <= 3.20.2, with onnx and onnxruntime of its time (docs/deploy.md).
case $STACK in
    newest) VENV=${PVTFPN_VENV:-$ROOT/.venv}; OVERRIDES=
            DEPLOY=$ROOT/requirements/deploy.txt ;;
    oldest) VENV=${PVTFPN_VENV_OLDEST:-$ROOT/.venv-oldest}
            OVERRIDES=$ROOT/requirements/constraints-oldest.txt
            DEPLOY=$ROOT/requirements/deploy-oldest.txt ;;
esac
CACHE=${PVTFPN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvtfpn_mm}

# The stack's pins: constraints.txt, each package pinned in OVERRIDES replaced by that pin.
PINS=$(mktemp)
trap 'rm -f "$PINS"' EXIT
awk -v over="$OVERRIDES" '
    function pkg(line) {  # "torch==2.1.2" / "# python==3.11" -> normalized name, or ""
        if (match(line, /^(# *)?[A-Za-z0-9_.-]+==/) == 0) return ""
        name = substr(line, 1, RLENGTH - 2); sub(/^# */, "", name)
        name = tolower(name); gsub(/[_.]/, "-", name); return name
    }
    BEGIN { if (over != "") while ((getline line < over) > 0) if (pkg(line) != "") {
        pinned[pkg(line)] = 1; extra = extra line "\n" } }
    !(pkg($0) in pinned) { print }
    END { printf "%s", extra }' "$ROOT/requirements/constraints.txt" > "$PINS"
pin() { sed -n "s/^#\? *$1==\([^ ]*\).*/\1/p" "$PINS" | head -n1; }
PY_VER=$(pin python); TORCH_VER=$(pin torch); MMCV_VER=$(pin mmcv)
TORCH_CUDA_PIN=$(pin torch-cuda)
VPY=$VENV/bin/python
find_python() {  # python$PY_VER: $PYTHON, on PATH, or a pyenv installation
    local want=python$PY_VER p
    if [[ -n ${PYTHON:-} ]]; then echo "$PYTHON"; return; fi
    if "$want" -c 'import sys' >/dev/null 2>&1; then echo "$want"; return; fi
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$PY_VER".*/bin/"$want"; do
        if [[ -x $p ]]; then echo "$p"; return; fi
    done
    log "the $STACK stack needs $want: install it (with its headers, e.g. apt install" \
        "$want $want-dev, or pyenv install $PY_VER) or set PYTHON=/path/to/$want"
    exit 1
}
PY=$(find_python)

gpu_signature() {
    nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null || echo none
}
have_gpu() { [[ $(gpu_signature) != none && -n $(gpu_signature) ]]; }
torch_installed() {  # the pinned torch is in the venv
    [[ -x $VPY ]] && "$VPY" - "$TORCH_VER" <<'PY' 2>/dev/null
import sys, torch
sys.exit(0 if torch.__version__.split('+')[0] == sys.argv[1] else 1)
PY
}
torch_source() {  # where torch comes from, in words
    if [[ -n ${PVTFPN_TORCH_INDEX_URL:-} ]]; then
        echo "the index $PVTFPN_TORCH_INDEX_URL (PVTFPN_TORCH_INDEX_URL)"
    elif have_gpu; then
        echo "PyPI (a CUDA $TORCH_CUDA_PIN build, for the GPU)"
    else
        echo "PyPI: no NVIDIA GPU here, but PyPI has only CUDA builds of torch for Linux, so" \
             "this downloads torch with its CUDA $TORCH_CUDA_PIN libraries (nvidia-* and" \
             "triton wheels, ~3-4 GB, unused on CPU). Where PyTorch's CPU index is reachable," \
             "set PVTFPN_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (~200 MB)"
    fi
}
need_cxx20() {  # torch >= 2.10's headers need C++20; mmcv 2.1.0's setup.py asks for C++17
    "$VPY" -c "import sys, torch; v = torch.__version__.split('+')[0].split('.'); \
sys.exit(0 if (int(v[0]), int(v[1])) >= (2, 10) else 1)"
}
site_packages() { "$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

# --- --dry-run: say what would be done --------------------------------------------------
if [[ $DRY == 1 ]]; then
    if [[ -n ${PVTFPN_TORCH_CUDA:-} ]]; then
        decide_py=$PY; torch_cuda=$PVTFPN_TORCH_CUDA; torch_note="PVTFPN_TORCH_CUDA"
    elif torch_installed; then
        decide_py=$VPY; torch_cuda=; torch_note="the installed torch"
    else
        decide_py=$PY; torch_cuda=$TORCH_CUDA_PIN; torch_note="the pinned build (torch-cuda)"
    fi
    torch_full=$TORCH_VER
    [[ -n $torch_cuda && $torch_cuda != none ]] && torch_full=$TORCH_VER+cu${torch_cuda//./}
    decision=$("$decide_py" "$HELPER" decide --mmcv-version "$MMCV_VER" \
        ${torch_cuda:+--torch-cuda "$torch_cuda" --torch-version "$torch_full"}) || exit 1
    eval "$decision"
    echo "stack          $STACK"
    echo "venv           $VENV ($([[ -x $VPY ]] && echo exists || echo 'to be created'))"
    echo "pins           requirements/constraints.txt${OVERRIDES:+ + ${OVERRIDES#$ROOT/}}"
    echo "python         $PY ($PY_VER)"
    echo "pinned        $(for p in torch torchvision mmcv mmengine mmdet mmsegmentation timm numpy; do
        printf ' %s==%s' "$p" "$(pin "$p")"; done)"
    echo "deploy extra   ${DEPLOY#$ROOT/}:$(for p in $(grep -v '^#' "$DEPLOY"); do
        printf ' %s==%s' "$p" "$(pin "$p")"; done)"
    if torch_installed; then
        echo "torch          $TORCH_VER, installed"
    else
        echo "torch          $TORCH_VER from $(torch_source)"
    fi
    echo "GPUs           ${GPUS:-none}${DRIVER_CUDA:+ (driver supports CUDA $DRIVER_CUDA)}"
    echo "torch CUDA     $TORCH_CUDA (from $torch_note)"
    if [[ -n $ERROR ]]; then
        echo "ERROR          $ERROR"
        exit 1
    fi
    echo "mmcv ops       $OPS: $REASON"
    echo "wheel cache    $CACHE/wheels/$CACHE_KEY"
    if [[ $OPS == cuda ]]; then
        echo "CUDA_HOME      $("$PY" "$HELPER" toolkit --plan --cuda "$TORCH_CUDA" \
            --dir "$CACHE/cuda-toolkit/$TORCH_CUDA" --site-packages "$VENV/lib/python$PY_VER/site-packages")"
        echo "build env      FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST='$ARCH_LIST'" \
             "MAX_JOBS=${MAX_JOBS:-2} CFLAGS='-g0 -O2'"
        echo "then           nms, roi_align and sigmoid_focal_loss must run on a CUDA tensor"
    else
        echo "build env      CUDA_VISIBLE_DEVICES= FORCE_CUDA=0 MMCV_WITH_OPS=1" \
             "MAX_JOBS=${MAX_JOBS:-2} CFLAGS='-g0 -O2'"
        echo "then           nms and roi_align must run on a CPU tensor"
    fi
    major_minor=${TORCH_VER%.*}
    if [[ ${major_minor%%.*} -gt 2 || ${major_minor#*.} -ge 10 ]]; then
        echo "C++ standard   mmcv's -std=c++17 patched to -std=c++20 (torch >= 2.10 headers)"
    else
        echo "C++ standard   mmcv's own -std=c++17 (torch < 2.10: built unpatched)"
    fi
    exit 0
fi

# The stamp records what the venv was built from; a matching stamp means nothing to do.
STAMP=$VENV/.pvtfpn_mm_stamp
want_stamp=$({
    cat "$PINS" "$ROOT/requirements/stack.txt" "$DEPLOY" \
        "$ROOT/setup.py" "$SELF" "$HELPER"
    gpu_signature
    echo "${PVTFPN_TORCH_INDEX_URL:-} ${PVTFPN_MMCV_OPS:-auto} ${TORCH_CUDA_ARCH_LIST:-}"
} | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$want_stamp" && -x $VPY ]]; then
    exit 0
fi

start=$(date +%s)
log "stack $STACK -> $VENV"
if [[ ! -x $VPY ]]; then
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
pip_c() { "$VPY" -m pip install --disable-pip-version-check -q -c "$PINS" "$@"; }

log "build tools"
pip_c setuptools wheel ninja
torch_installed || log "torch $TORCH_VER from $(torch_source)"
if [[ -n ${PVTFPN_TORCH_INDEX_URL:-} ]]; then
    pip_c --index-url "$PVTFPN_TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
        torch torchvision
else
    pip_c torch torchvision
fi

# --- mmcv with compiled ops (CPU, or CUDA for the GPUs present) ---------------------------
decision=$("$VPY" "$HELPER" decide --mmcv-version "$MMCV_VER") || exit 1
eval "$decision"
if [[ -n $ERROR ]]; then
    log "$ERROR"
    exit 1
fi
log "mmcv ops: $OPS ($REASON)"
have_mmcv_ops() {  # our mmcv version, its ops compiled, with CUDA ops iff OPS=cuda
    "$VPY" - "$MMCV_VER" "$OPS" <<'PY' 2>/dev/null
import sys, mmcv
from mmcv.ops import get_compiling_cuda_version
cuda = get_compiling_cuda_version() != 'not available'
sys.exit(0 if mmcv.__version__ == sys.argv[1] and cuda == (sys.argv[2] == 'cuda') else 1)
PY
}
if ! have_mmcv_ops; then
    wheel_dir=$CACHE/wheels/$CACHE_KEY
    whl=$(ls "$wheel_dir"/mmcv-"$MMCV_VER"-*.whl 2>/dev/null | head -n1 || true)
    if [[ -z $whl ]]; then
        build=$(mktemp -d)
        build_env=(MMCV_WITH_OPS=1 CFLAGS="-g0 -O2" CXXFLAGS="-g0 -O2" MAX_JOBS=${MAX_JOBS:-2})
        if [[ $OPS == cuda ]]; then
            cuda_home=$("$VPY" "$HELPER" toolkit --cuda "$TORCH_CUDA" \
                --dir "$CACHE/cuda-toolkit/$TORCH_CUDA" --site-packages "$(site_packages)")
            build_env+=(FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH_LIST" CUDA_HOME="$cuda_home")
            log "building mmcv $MMCV_VER with CUDA $TORCH_CUDA ops for sm $ARCH_LIST" \
                "(nvcc in $cuda_home; long: every op is compiled for each architecture)"
        else
            build_env+=(CUDA_VISIBLE_DEVICES= FORCE_CUDA=0)
            log "building mmcv $MMCV_VER with CPU ops from the sdist (7-11 min on 2 cores)"
        fi
        "$VPY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VER" -d "$build"
        tar -xzf "$build"/mmcv-"$MMCV_VER".tar.gz -C "$build"
        src=$build/mmcv-$MMCV_VER
        if need_cxx20; then
            sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src/setup.py"
            grep -q "'-std=c++20'" "$src/setup.py" || { log "could not patch mmcv's setup.py"; exit 1; }
        fi
        (cd "$src" && env "${build_env[@]}" \
            "$VPY" -m pip wheel -q --no-build-isolation --no-deps -w "$build/out" .)
        mkdir -p "$wheel_dir"
        built=$(ls "$build"/out/mmcv-*.whl)
        cp "$built" "$wheel_dir/.tmp.whl" && mv "$wheel_dir/.tmp.whl" "$wheel_dir/$(basename "$built")"
        rm -rf "$build"
        whl=$wheel_dir/$(basename "$built")
    else
        log "reusing cached $whl"
    fi
    pip_c --force-reinstall --no-deps "$whl"  # replaces an mmcv 2.1.0 with other ops
    pip_c "$whl"  # and its dependencies
    have_mmcv_ops || { log "mmcv installed but its compiled $OPS ops do not import"; exit 1; }
fi
"$VPY" "$HELPER" verify --ops "$OPS" || { log "mmcv's $OPS ops FAILED to run (see above)"; exit 1; }

log "mmdet, mmseg, timm and the rest"
pip_c -r "$ROOT/requirements/stack.txt"
# The deploy extra: tools/export_onnx.py + tests/test_deploy.py (newest), mmdeploy +
# tests/test_mmdeploy.py (oldest).
log "$(grep -v '^#' "$DEPLOY" | paste -sd ' ') (deploy extra, ${DEPLOY#$ROOT/})"
pip_c -r "$DEPLOY"
# mim without its openxlab dependency (which pins old setuptools and requests).
pip_c --no-deps openmim
pip_c --no-deps -e "$ROOT"

"$VPY" -m pip check >/dev/null 2>&1 || "$VPY" -m pip check | grep -v -i "openmim\|opendatalab\|openxlab" >&2 || true
echo "$want_stamp" > "$STAMP"
log "environment ready in $(( $(date +%s) - start )) s: $VENV ($STACK stack)"
