#!/usr/bin/env bash
# The GPU check of issue 17, in ONE run on the lent device machine: install what its image lacks
# from carried wheels, check the Triton kernel on CUDA (tests/test_triton.py, the kernel against
# the float64 reference path with the exactness check on), time both targets of
# benchmarks/bench_alti.py (GPT-2 small @1,024 float32; the Llama-3-8B shape @4,096, bf16 model,
# float32 decomposition, peak memory), and write everything under $OUT.
#
#   here (has a package registry):   bash benchmarks/gpu_check.sh --download
#       fills .gpu_wheels/ (git-ignored, a few MB): the pure-Python wheels TransformerLens 4.x and
#       alti_lens import. The device image has torch, triton, transformers and numpy, and no
#       registry; `datasets` and `pandas` (imported by TransformerLens, unused here, too large to
#       carry with pyarrow) are replaced by the stand-ins in benchmarks/gpu_stubs/ if missing.
#   on the device:   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_wheels"], timeout_s=420)
#   on a CPU machine, to try the script itself:   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh
#       (the kernel under Triton's interpreter, small benchmark sizes). Tried so on this 2-core
#       machine in a venv like the device image (torch, transformers 5.17, triton 3.6, numpy; no
#       pandas/datasets): every step ran; triton 3.6's *interpreter* needs numpy < 2.4 (it calls
#       int() on one-element arrays, an error since numpy 2.4), which compiled CUDA runs do not.
#
# Every step runs even if an earlier one failed; the exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu_wheels
# TransformerLens 4.3 and alti_lens's own imports; versions as in the project's tested venv
PURE=(
  transformer-lens==4.3.0 jaxtyping==0.3.11 wadler-lindig beartype==0.23.1 einops==0.8.2
  accelerate==1.16.0 rich
  markdown-it-py mdurl pygments huggingface-hub networkx safetensors pytest pluggy iniconfig
  packaging typing-extensions tqdm protobuf psutil
)

if [ "${1:-}" = "--download" ]; then
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  pip download -q --no-deps --only-binary=:all: -d "$WHEELS" "${PURE[@]}" || exit 1
  du -sh "$WHEELS"
  exit 0
fi

OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
failed=0
step() {  # step NAME COMMAND...: run, time, record
  local name="$1" start=$SECONDS rc
  shift
  echo "=== $name"
  "$@"
  rc=$?
  echo "=== $name: rc $rc in $((SECONDS - start)) s"
  [ "$rc" = 0 ] || failed=$((failed + 1))
}

# Install from the carried wheels only what the image cannot import (its torch, triton and
# transformers stay): pip resolves nothing (--no-deps) and reaches no index (--no-index).
install_missing() {
  python - "$WHEELS" <<'EOF'
import importlib.metadata as md, pathlib, subprocess, sys
folder = pathlib.Path(sys.argv[1])
wheels = sorted(folder.glob("*.whl"))
missing = []
for wheel in wheels:
    name = wheel.name.split("-")[0].replace("_", "-").lower()
    try:
        md.version(name)
    except md.PackageNotFoundError:
        missing.append(name)
missing = sorted(set(missing))
print("installing from the carried wheels:", " ".join(missing) or "nothing")
if missing:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--find-links", str(folder), *missing]
    sys.exit(subprocess.call(cmd))
EOF
}

environment() {
  python -V
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch, triton, transformers, transformer_lens, importlib.metadata as m; \
print('torch', torch.__version__, '| triton', triton.__version__, '| transformers', \
transformers.__version__, '| transformer-lens', m.version('transformer-lens'), '| cuda', \
torch.cuda.is_available())"
}

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step "install" install_missing
for module in datasets pandas; do
  if ! python -c "import $module" 2>/dev/null; then
    echo "$module cannot be imported here: using its stand-in (benchmarks/gpu_stubs)"
    export PYTHONPATH="$PYTHONPATH:$PWD/benchmarks/gpu_stubs"
  fi
done
step "environment" environment
if [ -n "${GPU_CHECK_CPU:-}" ]; then
  DEVICE=cpu
  KERNEL=(--lengths 256 --repeats 1)
  GPT2=(--lengths 128 --repeats 1)
  LLAMA=(--preset llama3-8b --layers 2 --d-model 512 --heads 8 --kv-heads 2 --lengths 256 --repeats 1)
else
  DEVICE=cuda
  KERNEL=(--lengths 1024 4096 --repeats 3)
  GPT2=(--lengths 1024 --repeats 5)
  LLAMA=(--preset llama3-8b --lengths 4096 --repeats 3)
fi
# correctness: the Triton kernel against the chunked reference (float64 and float32 within the
# exactness target), the test models' alti() with the kernel against without (tests/test_triton.py
# runs them on CUDA when there is a device; under the interpreter otherwise)
step "test_triton" python -m pytest -q -p no:cacheprovider tests/test_triton.py \
  --junitxml="$OUT/test_triton.xml"
step "kernel timing" python benchmarks/bench_kernel.py --device "$DEVICE" "${KERNEL[@]}"
step "gpt2-small" python benchmarks/bench_alti.py --device "$DEVICE" "${GPT2[@]}"
step "llama3-8b shape" python benchmarks/bench_alti.py --device "$DEVICE" "${LLAMA[@]}"
echo "=== failed steps: $failed (results in $OUT)"
exit "$failed"
