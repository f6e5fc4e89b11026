"""Uncertainty probe: how much of each uncertainty's calibration is the cell's position alone.

The per-cell error that :func:`spatialedm.metrics.uncertainty_calibration` ranks (1 minus the Spearman
correlation of a cell's predicted and true distances to the other cells) depends on where the cell sits:
a central cell's distances vary less, so their ranks are harder to get right. This probe loads the models
that ``run_core --models DIR`` trained, places each task's query once (default layout) and scores, on the
same cells as ``uncertainty_calibration``:

- ``calibration``: the Spearman correlation of the uncertainty with the error (``uncertainty="ranks"``,
  the default, and ``uncertainty="neighbors"``), and of the cell's nearness to the layout's centre alone
  (``position``, minus its distance from the centroid: not an uncertainty, the geometry's share);
- ``partial``: the partial rank correlation of the uncertainty with the error, the position held fixed
  (what the uncertainty knows beyond where the cell sits);
- two measures that read the reference instead of the layout, scored as uncertainties: ``novelty``, the
  query cell's mean distance in the model's embedding to its 10 nearest reference cells (cells unlike
  anything in the reference), and ``reference_spread``, how far apart those 10 reference cells sit in
  their own sections (each centred and scaled to unit RMS): expression that the reference places in
  many places;
- ``error_true_axis``: the largest absolute rank correlation between the error and the cell's true
  position along one of the truth's principal axes (not an uncertainty: it uses the truth, and shows how
  much of the error follows a direction in the tissue that no measure on the layout can see).

Inference only: nothing is retrained.

Example::

    python -m benchmarks.uncertainty_probe --models /path/to/models --tasks osmfish_halves --seeds 0 1 2
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr
from sklearn.neighbors import NearestNeighbors

from benchmarks.run_core import RESULTS, saved_models, study_main
from spatialedm import geometry, metrics

KINDS = ("ranks", "neighbors")
#: Reference cells read per query cell by ``novelty`` and ``reference_spread``.
N_REFERENCE_NEIGHBORS = 10


def _rank_residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = rankdata(a), rankdata(b)
    a, b = a - a.mean(), b - b.mean()
    return a - b * (a @ b) / (b @ b)


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Rank correlation of x and y with z's rank regressed out of both."""
    rx, ry = _rank_residual(x, z), _rank_residual(y, z)
    return float(rx @ ry / np.sqrt((rx @ rx) * (ry @ ry)))


def reference_measures(model, query, info) -> dict[str, np.ndarray]:
    """``novelty`` and ``reference_spread`` of each query cell (the model loaded with its reference)."""
    reference = model.adata
    coords = np.asarray(reference.obsm[info["spatial_key"]], dtype=float)
    sections = reference.obs[info["batch_key"]].to_numpy() if info["batch_key"] else np.zeros(len(coords))
    normalised = np.empty_like(coords)
    for section in np.unique(sections):
        rows = sections == section
        normalised[rows] = geometry.unit_rms(coords[rows])
    distance, idx = (
        NearestNeighbors(n_neighbors=N_REFERENCE_NEIGHBORS)
        .fit(model.get_latent_representation())
        .kneighbors(model.get_latent_representation(query))
    )
    near = normalised[idx]
    spread = np.sqrt(((near - near.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))
    return {"novelty": distance.mean(1), "reference_spread": spread}


def error_true_axis(error: np.ndarray, truth: np.ndarray) -> float:
    """Largest |Spearman| between the error and the true position along one of the truth's principal axes."""
    centred = truth - truth.mean(0)
    axes = np.linalg.svd(centred, full_matrices=False)[2]
    return max(abs(spearmanr(centred @ a, error)[0]) for a in axes)


def run(models: Path, tasks: list[str], seeds: list[int], out: Path) -> pd.DataFrame:
    rows = []
    for name, seed, model, query, truth, info in saved_models(models, tasks, seeds, with_reference=True):
        uncertainty = {}
        for kind in KINDS:
            placed = model.get_latent_coordinates(query, seed=seed, uncertainty=kind, copy=True)
            pred = np.asarray(placed.obsm["X_spatialedm"], dtype=float)
            uncertainty[kind] = placed.obs["spatialedm_uncertainty"].to_numpy(dtype=float)
        # the cells and errors that uncertainty_calibration ranks
        error = 1.0 - metrics.cellwise_scores(pred, truth, seed=seed)
        ok = np.isfinite(error)
        position = -np.linalg.norm(pred - pred[ok].mean(0), axis=1)
        row = {"task": name, "seed": seed}
        for kind, u in uncertainty.items():
            row[f"calibration_{kind}"] = metrics.uncertainty_calibration(pred, truth, u, seed=seed)
            row[f"partial_{kind}"] = partial_spearman(u[ok], error[ok], position[ok])
        row["calibration_position"] = metrics.uncertainty_calibration(pred, truth, position, seed=seed)
        for kind, u in reference_measures(model, query, info).items():
            row[f"calibration_{kind}"] = metrics.uncertainty_calibration(pred, truth, u, seed=seed)
        row["error_true_axis"] = error_true_axis(error[ok], truth[ok])
        rows.append(row)
        print(
            f"[{name} seed={seed}] "
            + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("task", "seed")),
            flush=True,
        )
    df = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


COLUMNS = [
    "calibration_ranks",
    "calibration_neighbors",
    "calibration_position",
    "partial_ranks",
    "partial_neighbors",
    "calibration_novelty",
    "calibration_reference_spread",
    "error_true_axis",
]


def table(df: pd.DataFrame) -> str:
    lines = ["| task | n seeds | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for task, g in df.groupby("task", sort=False):
        cells = [f"{g[c].mean():.3f} ± {g[c].std(ddof=1) if len(g) > 1 else 0:.3f}" for c in COLUMNS]
        lines.append(f"| {task} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    study_main(
        argv,
        __doc__,
        RESULTS / "study" / "uncertainty_probe.csv",
        run,
        table,
        "uncertainty-probe",
        "## Uncertainty: distance-rank disagreement",
        "benchmarks.uncertainty_probe",
    )


if __name__ == "__main__":
    main()
