#!/usr/bin/env bash
# The RTX 5080 device profile on a CUDA machine, in <= 5 minutes; installs nothing.
#
#   benchmarks/gpu_check.sh              # CUDA, CUDA + IO binding, TensorRT fp16 rows
#   benchmarks/gpu_check.sh --dry-run    # same code, CPU provider, 2 rounds (CI, no GPU)
#   benchmarks/gpu_check.sh --configs cuda,cuda+iobinding --json-out gpu.json
#
# Needs the gpu extra installed as README "Extras" says (onnxruntime-gpu replacing
# onnxruntime), CUDA 12 + cuDNN 9 (system-wide or `pip install onnxruntime-gpu[cuda,cudnn]`)
# and, for the TensorRT rows, TensorRT 10 libraries (system-wide or the tensorrt-cu12-libs
# wheel, whose folder this script puts on the library path). PYTHON picks the interpreter.
# Options after the script's name go to `python -m benchmarks.gpu_check` (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DRY=0
for a in "$@"; do [[ $a == --dry-run ]] && DRY=1; done

echo "== $(date -u +%Y-%m-%dT%H:%MZ) $(hostname) =="
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "nvidia-smi: not found"
fi
"$PY" - <<'PYEOF'
import importlib.metadata as md
import onnxruntime as ort
wheels = []
for n in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"):
    try:
        wheels.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        pass
print("onnxruntime", ort.__version__, "| wheels:", ", ".join(wheels), "| providers:", ort.get_available_providers())
PYEOF

# TensorRT from the tensorrt-cu12-libs wheel: its libnvinfer must be on the loader path
# before Python starts (onnxruntime dlopens it when the TensorRT provider initialises).
if [[ $DRY == 0 ]]; then
  TRT_LIBS=$("$PY" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null || true)
  if [[ -n $TRT_LIBS ]]; then
    export LD_LIBRARY_PATH="$TRT_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "TensorRT libraries: $TRT_LIBS"
  fi
fi

# 300 s hard stop; the script itself stops starting configurations after --budget-s (270).
exec timeout 300 "$PY" -m benchmarks.gpu_check "$@"
