#!/usr/bin/env bash
# The peers' quality runs behind benchmarks/RESULTS.md (one process, one thread, this 2-core machine).
# Needs the peers' environment: see benchmarks/requirements-peers.txt (.venv-bench).
# Peers run with reduced settings to fit this machine (recorded per row in the CSV's config column):
# Tangram 300 epochs, <= 1500 spots per section, top 200 genes; novoSpaRc query chunks of <= 1000 cells
# onto <= 1000 locations; CeLEry 200 epochs, batch 32.
# Usage: bash benchmarks/quality/run_peers.sh [STEP...]  (steps: small0 merfish0 dlpfc0 small12 large12;
# small1 and small2 split small12, merfish12 and dlpfc12 split large12, into processes that can run side
# by side)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PK='{"tangram": {"num_epochs": 300, "max_spots": 1500, "max_genes": 200}, "novosparc": {"max_cells": 1000, "max_locations": 1000}, "celery": {"num_epochs_max": 200, "batch_size": 32}}'
M="tangram novosparc celery knn pca random"
OUT=benchmarks/results/peers.csv
SMALL="osmfish_halves osmfish_random embryo_slab embryo_random starmap_section"
PY=${PY:-.venv-bench/bin/python}
run() { "$PY" -m benchmarks.run_core "$@" --methods $M --out $OUT --peer-kwargs "$PK"; }
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(small0 merfish0 dlpfc0 small12 large12)
for step in "${steps[@]}"; do
  case $step in
    small0) run --tasks $SMALL --seeds 0 ;;
    merfish0) run --tasks merfish_section --seeds 0 ;;
    dlpfc0) run --tasks dlpfc_section --seeds 0 ;;
    small12) run --tasks $SMALL --seeds 1 2 ;;
    small1) run --tasks $SMALL --seeds 1 ;;
    small2) run --tasks $SMALL --seeds 2 ;;
    large12) run --tasks merfish_section dlpfc_section --seeds 1 2 ;;
    merfish12) run --tasks merfish_section --seeds 1 2 ;;
    dlpfc12) run --tasks dlpfc_section --seeds 1 2 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
