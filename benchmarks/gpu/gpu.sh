#!/usr/bin/env bash
# One prepared GPU check (issue 3): training sets/s, inference cells/s, peak GPU memory, fp32 and bf16.
#
# The lent GPU machines have no network: their image has CUDA PyTorch, Lightning, NumPy, SciPy, ... but not
# anndata, scanpy or scvi-tools. Prepare the missing wheels here first (about 13 MB, see fetch_wheels.py):
#     .venv/bin/python benchmarks/gpu/fetch_wheels.py          # writes .whl/ (git-ignored)
# then run this script there with .whl carried, e.g. with the device tool:
#     run(command="bash benchmarks/gpu/gpu.sh", carry=[".whl"], timeout_s=540)
# Rows go to $OUT/results_gpu.csv when $OUT is set (the device tool), else benchmarks/gpu/results_gpu.csv.
# Without .whl/ (a GPU machine with network) it builds .venv-gpu with pip instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [ -d .whl ]; then
  PY=python3
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  python3 -m venv .venv-gpu
  PY=.venv-gpu/bin/python
  $PY -m pip install --quiet --upgrade pip
  $PY -m pip install --quiet "torch==2.13.0"  # the CUDA build from PyPI on Linux x86_64
  $PY -m pip install --quiet -e .
fi
# Fails in seconds if the image's packages do not fit the carried ones.
$PY -c "import torch, lightning, scvi, spatialedm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', lightning.__version__, 'scvi', scvi.__version__, 'spatialedm', spatialedm.__version__)"
# Rows are written as they are measured, into $OUT when set, so a run stopped at its limit keeps them.
$PY benchmarks/gpu/run_gpu.py --train-epochs 5 --infer 100000 1000000 --csv "${OUT:-benchmarks/gpu}/results_gpu.csv"
