from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pytest

import spatialedm as sem
from spatialedm import _cli


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("fit", "predict", "demo"):
        assert sub in out


def test_fit_then_predict(tmp_path, tiny):
    adata = sem.datasets.synthetic_tissue(n_cells=150, n_genes=12, n_sections=1, seed=3)
    ref_path, model_dir, query_path, out_path = (
        tmp_path / "ref.h5ad",
        tmp_path / "model",
        tmp_path / "query.h5ad",
        tmp_path / "out.h5ad",
    )
    adata.write_h5ad(ref_path)
    query = adata[:40].copy()
    del query.obsm["spatial"]
    query.write_h5ad(query_path)
    assert (
        _cli.main(["fit", str(ref_path), "-o", str(model_dir), "--max-epochs", "3", "--accelerator", "cpu"])
        == 0
    )
    assert _cli.main(["predict", str(model_dir), str(query_path), "-o", str(out_path)]) == 0
    result = ad.read_h5ad(out_path)
    assert result.obsm["X_spatialedm"].shape == (40, 2)
    # a second fit into the same folder refuses without --overwrite
    with pytest.raises(SystemExit, match="--overwrite"):
        _cli.main(["fit", str(ref_path), "-o", str(model_dir), "--max-epochs", "3"])


def test_predict_missing_file_is_clear(tmp_path):
    with pytest.raises(SystemExit, match="file not found"):
        _cli._read(str(tmp_path / "nope.h5ad"))


def test_reconstruction_plot_renders(tmp_path):
    adata = sem.datasets.synthetic_tissue(n_cells=100, n_genes=8, seed=0)
    adata.obsm["X_spatialedm"] = adata.obsm["spatial"] @ np.array([[0.0, 1.0], [1.0, 0.0]])
    fig = sem.pl.reconstruction(adata, truth="spatial", color="cell_type")
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "rec.png")
    assert (tmp_path / "rec.png").stat().st_size > 1000
    with pytest.raises(KeyError, match="not in adata.obsm"):
        sem.pl.reconstruction(adata, basis="X_missing")


def test_history_plot_renders(trained, tmp_path):
    fig = sem.pl.history(trained)
    assert len(fig.axes) == 3
    assert all(len(ax.lines) >= 1 for ax in fig.axes)
    fig.savefig(tmp_path / "hist.png")
