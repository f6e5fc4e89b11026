"""The core benchmark runs end to end at a tiny size, through spatialedm's public API only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
from benchmarks import run_core

BENCHMARKS = Path(run_core.__file__).resolve().parent


def test_tiny_core_benchmark_writes_scored_rows(tmp_path):
    out = tmp_path / "tiny.csv"
    md = tmp_path / "RESULTS.md"
    run_core.main(
        [
            "--tiny",
            "--methods",
            "spatialedm",
            "knn",
            "knn10",
            "pca",
            "uniform",
            "--out",
            str(out),
            "--summary",
            "--results-md",
            str(md),
        ]
    )
    df = pd.read_csv(out)
    assert set(df["method"]) == {
        "spatialedm_generator",
        "spatialedm_refined",
        "spatialedm_sample",
        "spatialedm_consensus",
        "knn_regression",
        "knn_regression_k10",
        "expression_pca",
        "uniform_fill",
    }
    for col in ("cellwise_spearman", "patch_jaccard", "sliced_wasserstein", "coverage_recall"):
        assert np.isfinite(df[col].astype(float)).all(), col
    k10 = df[df["method"] == "knn_regression_k10"]["config"].map(json.loads)
    assert all(c["n_neighbors"] == 10 for c in k10)  # fixed, not selected
    refined = df[df["method"] == "spatialedm_refined"]
    assert np.isfinite(refined["uncertainty_calibration"].astype(float)).all()
    text = md.read_text()
    assert (
        "| osmfish_halves | knn_regression |" in text and "vs best" in text and "sliced_wasserstein" in text
    )


def test_benchmarks_use_only_the_public_api():
    for path in BENCHMARKS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spatialedm"):
                parts = node.module.split(".") + [a.name for a in node.names]
                assert not any(p.startswith("_") for p in parts), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id in {"sys"} and node.attr == "path"), f"{path.name} edits sys.path"
