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
        "spatialedm_no_prior",
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


def test_uncertainty_probe_reference_measures():
    import anndata as ad
    from benchmarks import uncertainty_probe

    rng = np.random.default_rng(0)
    n = 200
    reference = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    reference.obs["section"] = np.repeat(["a", "b"], n // 2)
    coords = rng.uniform(size=(n, 2))
    coords[n // 2 :] = coords[n // 2 :] * 1000.0 + 5.0  # another frame and unit: normalised per section
    reference.obsm["spatial"] = coords
    # the embedding of a reference cell is its position: expression that singles every cell out
    embedding = np.vstack([coords[: n // 2], (coords[n // 2 :] - 5.0) / 1000.0])

    class Model:  # what the probe reads of a model loaded with its reference
        adata = reference

        def get_latent_representation(self, adata=None):
            return embedding if adata is None else adata.obsm["z"]

    query = ad.AnnData(np.zeros((2, 1), dtype=np.float32))
    query.obsm["z"] = np.array(
        [embedding[0], [50.0, 50.0]]
    )  # a look-alike of reference cells; a cell unlike any
    out = uncertainty_probe.reference_measures(
        Model(), query, {"spatial_key": "spatial", "batch_key": "section"}
    )
    assert set(out) == {"novelty", "reference_spread"}
    assert out["novelty"][1] > 10 * out["novelty"][0]
    # the 10 reference cells nearest in expression are near each other in their sections (the two
    # sections coincide once each is normalised), so the spread is small for a look-alike
    assert out["reference_spread"][0] < 0.3


def test_uncertainty_probe_error_true_axis():
    from benchmarks import uncertainty_probe

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(300, 2)) * [3.0, 1.0]
    along = truth[:, 1] + 0.01 * rng.normal(size=300)  # an error that grows along the short axis
    assert uncertainty_probe.error_true_axis(along, truth) > 0.95
    assert uncertainty_probe.error_true_axis(rng.normal(size=300), truth) < 0.2
