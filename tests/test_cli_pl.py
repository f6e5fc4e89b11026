from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import spatialedm as sem
from spatialedm import _cli
from spatialedm._proportions import tissue_proportions


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("fit", "predict", "demo"):
        assert sub in out
    assert "examples:" in out and "spatialedm predict model/ query.h5ad" in out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "fit",
            [
                "REFERENCE",
                "--output",
                "--spatial-key",
                "--batch-key",
                "spatialedm fit reference.h5ad -o model/",
            ],
        ),
        (
            "predict",
            ["MODEL", "QUERY", "--n-samples", "spatialedm predict model/ query.h5ad", "spatial_scatter"],
        ),
        ("demo", ["--dataset", "--max-epochs", "spatialedm demo -o demo_out"]),
    ],
)
def test_subcommand_help_has_description_and_examples(capsys, command, expected):
    with pytest.raises(SystemExit) as exc:
        _cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    for text in expected:
        assert text.lower() in out.lower(), text


def test_fit_then_predict(tmp_path, capsys):
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
    fit = ["fit", str(ref_path), "-o", str(model_dir), "--max-epochs", "3", "--accelerator", "cpu"]
    assert _cli.main([*fit, "--no-progress-bar"]) == 0
    assert _cli.main(["predict", str(model_dir), str(query_path), "-o", str(out_path)]) == 0
    result = ad.read_h5ad(out_path)
    assert result.obsm["X_spatialedm"].shape == (40, 2)
    # the refiner correcting the reference's kNN placement needs the reference
    prior = ["predict", str(model_dir), str(query_path), "-o", str(tmp_path / "prior.h5ad"), "--prior", "knn"]
    assert "--prior knn needs --reference" in _error_of(prior, capsys)
    assert _cli.main([*prior, "--reference", str(ref_path), "--prior-weight", "1"]) == 0
    placed = ad.read_h5ad(tmp_path / "prior.h5ad").obsm["X_spatialedm"]
    knn = sem.baselines.knn_regression(adata, query)
    assert placed.shape == (40, 2) and sem.metrics.cellwise_spearman(placed, knn) > 0.5
    # the layout moved to the reference tissue's proportions; a weight outside [0, 1] is one line, exit 2
    shaped = ["predict", str(model_dir), str(query_path), "-o", str(tmp_path / "shaped.h5ad")]
    assert "shape_weight must be in [0, 1]" in _error_of([*shaped, "--shape-weight", "3"], capsys)
    assert _cli.main([*shaped, "--shape-weight", "1", "--no-relax"]) == 0
    xy = ad.read_h5ad(tmp_path / "shaped.h5ad").obsm["X_spatialedm"]
    shares = np.linalg.eigvalsh(np.cov(xy.T))[::-1]
    np.testing.assert_allclose(shares / shares.sum(), tissue_proportions(adata.obsm["spatial"]), atol=1e-4)
    # a second fit into the same folder refuses without --overwrite: exit 2, one line, no traceback
    capsys.readouterr()
    assert _cli.main(fit) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err and err.count("\n") == 1


def _error_of(argv, capsys) -> str:
    capsys.readouterr()
    assert _cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def test_missing_files_exit_2_with_one_line(tmp_path, capsys):
    err = _error_of(["fit", str(tmp_path / "nope.h5ad"), "-o", str(tmp_path / "m")], capsys)
    assert err.startswith("spatialedm fit: error: file not found") and "nope.h5ad" in err
    err = _error_of(["predict", str(tmp_path / "no_model"), "q.h5ad", "-o", "out.h5ad"], capsys)
    assert "model folder not found" in err


def test_unregistered_key_exits_2(tmp_path, capsys):
    adata = sem.datasets.synthetic_tissue(n_cells=60, n_genes=8, seed=0)
    path = tmp_path / "ref.h5ad"
    adata.write_h5ad(path)
    err = _error_of(["fit", str(path), "-o", str(tmp_path / "m"), "--spatial-key", "xy"], capsys)
    assert "'xy'" in err
    err = _error_of(["fit", str(path), "-o", str(tmp_path / "m"), "--batch-key", "donor"], capsys)
    assert "'donor'" in err


def test_reconstruction_plot_renders(tmp_path):
    adata = sem.datasets.synthetic_tissue(n_cells=100, n_genes=8, seed=0)
    adata.obsm["X_spatialedm"] = adata.obsm["spatial"] @ np.array([[0.0, 1.0], [1.0, 0.0]])
    axes = sem.pl.reconstruction(adata, truth="spatial", color="cell_type", save=tmp_path / "rec.png")
    assert axes.shape == (2,)
    assert (tmp_path / "rec.png").stat().st_size > 1000
    # the mirrored reconstruction is aligned back onto the truth
    np.testing.assert_allclose(
        axes[1].collections[0].get_offsets(), axes[0].collections[0].get_offsets(), atol=1e-4
    )
    assert sem.pl.reconstruction(adata).shape == (1,)
    with pytest.raises(KeyError, match="not in adata.obsm"):
        sem.pl.reconstruction(adata, basis="X_missing")
    with pytest.raises(KeyError, match="color 'nope'"):
        sem.pl.reconstruction(adata, color="nope")


def test_reconstruction_3d_projections(tmp_path):
    adata = sem.datasets.synthetic_tissue(n_cells=100, n_genes=8, dim=3, seed=0)
    adata.obsm["X_spatialedm"] = adata.obsm["spatial"][:, ::-1] * 3.0
    axes = sem.pl.reconstruction(adata, truth="spatial", color="gene_0", save=tmp_path / "rec3.png")
    assert axes.shape == (2, 3)
    assert [ax.get_title().split(", ")[-1] for ax in axes[0]] == ["xy", "xz", "yz"]
    assert (tmp_path / "rec3.png").stat().st_size > 1000
    assert sem.pl.reconstruction(adata).shape == (1, 3)


def test_uncertainty_plot_renders(tmp_path):
    adata = sem.datasets.synthetic_tissue(n_cells=80, n_genes=8, seed=0)
    adata.obsm["X_spatialedm"] = adata.obsm["spatial"]
    with pytest.raises(KeyError, match="default uncertainty"):
        sem.pl.uncertainty(adata)
    adata.obs["spatialedm_uncertainty"] = np.linspace(0, 1, adata.n_obs)
    axes = sem.pl.uncertainty(adata, save=tmp_path / "unc.png")
    assert len(axes) == 1
    np.testing.assert_allclose(axes[0].collections[0].get_array(), adata.obs["spatialedm_uncertainty"])
    assert (tmp_path / "unc.png").stat().st_size > 1000
    adata3 = sem.datasets.synthetic_tissue(n_cells=80, n_genes=8, dim=3, seed=0)
    adata3.obsm["X_spatialedm"] = adata3.obsm["spatial"]
    adata3.obs["spatialedm_uncertainty"] = 0.5
    assert len(sem.pl.uncertainty(adata3)) == 3


def test_uncertainty_from_model(trained, tmp_path):
    query = sem.datasets.synthetic_tissue(n_cells=50, n_genes=20, seed=7)
    trained.get_latent_coordinates(query, seed=0)
    axes = sem.pl.uncertainty(query, save=tmp_path / "unc_model.png")
    assert len(axes) == 1


def test_history_plot_renders(trained, tmp_path):
    axes = sem.pl.history(trained, save=tmp_path / "hist.png")
    assert len(axes) == 3
    assert all(len(ax.lines) >= 1 for ax in axes)
    assert (tmp_path / "hist.png").stat().st_size > 1000


def test_sigma_diagnostics_renders(tmp_path):
    sigma = np.array([0.05, 0.2, 1.0, 5.0])
    df = pd.DataFrame(
        {
            "sigma_over_data": sigma,
            "scale_ratio_output": [1.0, 0.98, 0.9, 0.7],
            "scale_ratio_input": np.sqrt(1 + sigma**2),
            "scale_ratio_ideal": 1.0,
            "scale_ratio_output_std": 0.05,
            "patch_jaccard_output": [0.6, 0.5, 0.3, 0.2],
            "patch_jaccard_input": [0.55, 0.3, 0.1, 0.05],
            "fx_ratio_output": [1.0, 0.9, 0.8, 0.5],  # no input/ideal: just the output line
            "unrelated": 1,
        }
    )
    axes = sem.pl.sigma_diagnostics(df, title="refiner", save=tmp_path / "sigma.png")
    assert [ax.get_title() for ax in axes] == ["scale_ratio", "patch_jaccard", "fx_ratio"]
    assert [len(ax.lines) for ax in axes] == [3, 2, 1]
    assert len(axes[0].collections) == 1  # the ±std band
    assert axes[0].get_xscale() == "log"
    assert (tmp_path / "sigma.png").stat().st_size > 1000
    with pytest.raises(KeyError, match="sigma_over_data"):
        sem.pl.sigma_diagnostics(df.drop(columns="sigma_over_data"))
    with pytest.raises(ValueError, match="no column for any"):
        sem.pl.sigma_diagnostics(df[["sigma_over_data", "unrelated"]])


def test_unreadable_inputs_and_outputs_fail_in_one_line_before_work(tmp_path, capsys, monkeypatch):
    import h5py

    not_anndata = tmp_path / "x.h5ad"
    with h5py.File(not_anndata, "w") as fh:
        fh["junk"] = np.arange(3)
    err = _error_of(["fit", str(not_anndata), "-o", str(tmp_path / "m")], capsys)
    assert "cannot read" in err and "as an AnnData" in err
    # predict into a folder that does not exist: refused before the model or the query is read
    (tmp_path / "model").mkdir()
    called = []
    monkeypatch.setattr(sem.SpatialEDM, "load", classmethod(lambda cls, *a, **k: called.append(1)))
    err = _error_of(
        ["predict", str(tmp_path / "model"), str(not_anndata), "-o", str(tmp_path / "no" / "o.h5ad")], capsys
    )
    assert "does not exist" in err and not called
