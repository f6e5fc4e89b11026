#!/usr/bin/env bash
# One prepared GPU check (issue 3): builds a CUDA environment and runs benchmarks/gpu/run_gpu.py.
# Usage: bash benchmarks/gpu/gpu.sh   (about 5-8 minutes on one H100 including the install)
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"  # the CUDA build from PyPI on Linux x86_64
python -m pip install --quiet -e .
python benchmarks/gpu/run_gpu.py --train-epochs 5 --infer 100000 1000000
