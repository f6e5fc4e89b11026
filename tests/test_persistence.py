"""Saving and loading: no code runs on load, files stay in their folder, damage is caught early."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import spatialedm as sem
from spatialedm import _persistence

MARKER = "spatialedm-test-payload-ran"


class Payload:
    """Unpickling this object writes a marker file: proof that loading ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_keeps_layout_and_held_out_block(trained, tissue, tmp_path):
    trained.save(tmp_path / "m")
    loaded = sem.SpatialEDM.load(tmp_path / "m")
    assert loaded.adata is None
    # prior=None: the trained model holds its reference (whose kNN placement is the default prior), the
    # loaded one does not
    np.testing.assert_array_equal(
        loaded.get_latent_coordinates(tissue, seed=3, key_added=None, prior=None),
        trained.get_latent_coordinates(tissue, seed=3, key_added=None, prior=None),
    )
    np.testing.assert_array_equal(loaded.validation_indices_, trained.validation_indices_)
    assert loaded.preprocessor_ == trained.preprocessor_
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["format"] == "spatialedm-model" and len(meta["weights_sha256"]) == 64


def test_save_anndata_round_trip(trained, tmp_path):
    trained.save(tmp_path / "m", save_anndata=True)
    loaded = sem.SpatialEDM.load(tmp_path / "m")
    assert loaded.adata is not None and loaded.adata.n_obs == trained.adata.n_obs


def test_load_refuses_an_anndata_that_lacks_model_genes(trained, tmp_path):
    trained.save(tmp_path / "m")
    genes = list(trained.adata.var_names)
    # half of the model's genes: enough for a query (25%), not for the reference load attaches
    partial = trained.adata[:, genes[:10]].copy()
    with pytest.raises(ValueError, match=r"shares 10 of the model's 20 genes: it lacks 10 \(\[") as err:
        sem.SpatialEDM.load(tmp_path / "m", adata=partial)
    assert f"({genes[10:15]}, ...)" in str(err.value)  # the first five of them
    assert "get_latent_coordinates" in str(err.value)
    one_short = trained.adata[:, genes[1:]].copy()
    with pytest.raises(ValueError, match=rf"it lacks 1 \(\['{genes[0]}'\]\)"):
        sem.SpatialEDM.load(tmp_path / "m", adata=one_short)
    # the reference itself still loads, and an AnnData holding all the genes in another order is accepted
    assert sem.SpatialEDM.load(tmp_path / "m", adata=trained.adata.copy()).adata is not None
    shuffled = trained.adata[:, genes[::-1]].copy()
    assert (
        sem.SpatialEDM.load(tmp_path / "m", adata=shuffled).adata is None
    )  # not the reference: not attached
    # and the cells lacking genes are still placed when passed to get_latent_coordinates
    loaded = sem.SpatialEDM.load(tmp_path / "m")
    with pytest.warns(UserWarning, match="shares 10 of the model's 20 genes"):
        assert loaded.get_latent_coordinates(partial, seed=0, key_added=None).shape == (partial.n_obs, 2)


def test_weights_with_a_pickle_payload_are_refused(trained, tmp_path):
    folder = tmp_path / "m"
    trained.save(folder)
    marker = tmp_path / MARKER
    state = trained.module.state_dict()
    state["evil"] = Payload(marker)
    torch.save(state, folder / "weights.pt")
    # an attacker can also recompute the checksum: the loader must still refuse the payload
    meta = json.loads((folder / "model.json").read_text())
    meta["weights_sha256"] = _persistence._sha256(folder / "weights.pt")
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(_persistence.ModelFileError, match="other than plain tensors"):
        sem.SpatialEDM.load(folder)
    assert not marker.exists()


def test_legacy_pickle_model_is_refused_not_executed(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    marker = tmp_path / MARKER
    with open(folder / "model.pt", "wb") as fh:
        pickle.dump({"attr_dict": {"x": Payload(marker)}}, fh)
    with pytest.raises(_persistence.ModelFileError, match="convert_legacy_model"):
        sem.SpatialEDM.load(folder)
    assert not marker.exists()
    with pytest.raises(ValueError, match="trust_pickle=True"):
        sem.convert_legacy_model(folder)
    assert not marker.exists()


def test_legacy_model_converts_when_trusted(trained, tissue, tmp_path):
    # a model in the 0.1.0 layout: one pickled dict with the state dict and the attributes
    attrs = {k: v for k, v in trained._get_user_attributes() if k.endswith("_")}
    prep = attrs.pop("preprocessor_")
    attrs["var_names_"] = prep["genes"]
    attrs["scaler_state_"] = {"is_counts": prep["is_counts"], "scale": prep["scale"], "per_gene": True}
    attrs["model_config_"] = {**attrs["model_config_"], "refiner_target": "residual", "refiner_loss": "plain"}
    old = tmp_path / "old"
    old.mkdir()
    torch.save(
        {"model_state_dict": trained.module.state_dict(), "var_names": prep["genes"], "attr_dict": attrs},
        old / "model.pt",
    )
    out = sem.convert_legacy_model(old, tmp_path / "new", trust_pickle=True)
    loaded = sem.SpatialEDM.load(out)
    assert loaded.preprocessor_["target_sum"] == 1e4  # the fixed target of 0.1.0 is kept
    np.testing.assert_array_equal(
        loaded.module.state_dict()["sigma_data"], trained.module.state_dict()["sigma_data"]
    )
    assert np.isfinite(loaded.get_latent_coordinates(tissue, seed=0, key_added=None)).all()


@pytest.mark.parametrize("prefix", ["../x_", "a/b", "..", "/abs", "a\\b"])
def test_prefix_cannot_leave_the_folder(trained, tmp_path, prefix):
    folder = tmp_path / "deep" / "m"
    with pytest.raises(ValueError, match="plain file-name prefix"):
        trained.save(folder, prefix=prefix)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_overwrite_replaces_only_own_files(trained, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "results.csv").write_text("a,b")
    trained.save(folder)
    trained.save(folder, overwrite=True)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["model.json", "notes.txt", "results.csv", "weights.pt"]
    assert (folder / "notes.txt").read_text() == "mine"
    # two models side by side under different prefixes
    trained.save(folder, prefix="b_")
    assert sem.SpatialEDM.load(folder, prefix="b_").is_trained


def test_checksum_mismatch_is_refused(trained, tmp_path):
    folder = tmp_path / "m"
    trained.save(folder)
    data = bytearray((folder / "weights.pt").read_bytes())
    data[-200] ^= 0xFF
    (folder / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(_persistence.ModelFileError, match="does not match the one recorded"):
        sem.SpatialEDM.load(folder)


def test_non_finite_weights_are_refused(trained, tmp_path):
    folder = tmp_path / "m"
    trained.save(folder)
    state = trained.module.state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    state[name] = state[name].clone()
    state[name].view(-1)[:3] = float("inf")
    torch.save(state, folder / "weights.pt")
    meta = json.loads((folder / "model.json").read_text())
    meta["weights_sha256"] = _persistence._sha256(folder / "weights.pt")
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(_persistence.ModelFileError, match="non-finite weights"):
        sem.SpatialEDM.load(folder)


def test_huge_weights_fail_with_a_stage_named(trained, tissue):
    import copy

    model = copy.deepcopy(trained)
    with torch.no_grad():
        for p in model.module.generator.parameters():
            p.mul_(1e37)
    with pytest.raises(FloatingPointError, match="generator produced non-finite"):
        model.get_latent_coordinates(tissue, seed=0, key_added=None)


def test_model_without_reference_works_or_says_what_to_pass(trained, tissue, tmp_path):
    trained.save(tmp_path / "m")
    model = sem.SpatialEDM.load(tmp_path / "m")
    assert model.get_latent_coordinates(tissue, seed=0, key_added=None).shape == (tissue.n_obs, 2)
    assert model.get_latent_representation(tissue).shape[0] == tissue.n_obs
    assert len(model.diagnose(tissue, sigmas=[1.0], n_sets=1, seed=0)) == 1
    assert len(model.sampling_probe(tissue, sigma_starts=(1.0,), n_steps=1, n_sets=1, seed=0)) == 3
    assert model.transfer_labels(tissue[:20].copy(), "section", reference=tissue).shape[0] == 20
    for call, hint in [
        (lambda: model.get_latent_coordinates(), "pass the cells to place"),
        (lambda: model.get_latent_representation(), "pass the cells to place"),
        (lambda: model.diagnose(), "pass an AnnData with coordinates"),
        (lambda: model.sampling_probe(), "pass an AnnData with coordinates"),
        (lambda: model.project_genes(tissue), "pass reference="),
        (lambda: model.transfer_labels(tissue, "section"), "pass reference="),
        (lambda: model.train(max_epochs=1), "adata=reference"),
        (lambda: model.save(tmp_path / "n", save_anndata=True), "no reference AnnData"),
    ]:
        with pytest.raises(ValueError, match=hint):
            call()


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved model folder"):
        sem.SpatialEDM.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(_persistence.ModelFileError, match="holds no saved model"):
        sem.SpatialEDM.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text("{not json")
    with pytest.raises(_persistence.ModelFileError, match="not valid JSON"):
        sem.SpatialEDM.load(bad)


def test_model_saved_before_n_pcs_existed_reads_genes(tiny, tiny_sets, tmp_path):
    # a 60-gene model whose file has no n_pcs (as written before the option existed) read its genes
    adata = sem.datasets.synthetic_tissue(n_cells=120, n_genes=60, n_sections=1, dim=2, seed=4)
    sem.SpatialEDM.setup_anndata(adata, spatial_key="spatial")
    model = sem.SpatialEDM(adata, n_pcs=None, **tiny)
    model.train(max_epochs=3, accelerator="cpu", datasplitter_kwargs=tiny_sets, enable_progress_bar=False)
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    meta["attributes"]["model_config_"].pop("n_pcs")
    meta["attributes"]["model_config_"].pop("stretch_generator")
    path.write_text(json.dumps(meta))
    loaded = sem.SpatialEDM.load(tmp_path / "m")
    assert loaded.module.encoder.net[0].in_features == 60
    assert loaded.module.config.stretch_generator is False
    np.testing.assert_array_equal(
        loaded.get_latent_coordinates(adata, seed=0, key_added=None, prior=None),
        model.get_latent_coordinates(adata, seed=0, key_added=None, prior=None),
    )


def _save_without(model, path, buffer: str) -> None:
    """Save ``model`` with a weights file lacking ``buffer`` (as written before it existed), checksum updated."""
    model.save(path)
    weights = path / _persistence.WEIGHTS_FILE
    state = torch.load(weights, weights_only=True)
    state.pop(buffer)
    torch.save(state, weights)
    meta_path = path / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = _persistence._sha256(weights)
    meta_path.write_text(json.dumps(meta))


def test_model_saved_before_spacing_existed(trained, tissue, tmp_path):
    _save_without(trained, tmp_path / "m", "spacing")

    alone = sem.SpatialEDM.load(tmp_path / "m")  # nothing to measure on: layouts are not relaxed
    assert float(alone.module.spacing) == 0.0
    np.testing.assert_array_equal(
        alone.get_latent_coordinates(tissue, seed=1, key_added=None),
        trained.get_latent_coordinates(tissue, seed=1, key_added=None, relax=False, prior=None),
    )
    with_reference = sem.SpatialEDM.load(tmp_path / "m", adata=trained.adata.copy())
    assert float(with_reference.module.spacing) == pytest.approx(float(trained.module.spacing), rel=1e-6)


def test_model_saved_before_proportions_existed(trained, tissue, tmp_path):
    _save_without(trained, tmp_path / "m", "proportions")
    alone = sem.SpatialEDM.load(tmp_path / "m")  # nothing to measure on: the layout is not stretched
    assert not alone.module.proportions.any()
    layout = alone.get_latent_coordinates(tissue, seed=1, key_added=None)
    assert layout.shape == (tissue.n_obs, 2) and np.isfinite(layout).all()
    with pytest.raises(ValueError, match="adata=reference"):
        alone.get_latent_coordinates(tissue, seed=1, key_added=None, shape_weight=0.5)
    with_reference = sem.SpatialEDM.load(tmp_path / "m", adata=trained.adata.copy())
    np.testing.assert_allclose(with_reference.module.proportions, trained.module.proportions, rtol=1e-6)
    np.testing.assert_array_equal(
        with_reference.get_latent_coordinates(tissue, seed=1, key_added=None),
        trained.get_latent_coordinates(tissue, seed=1, key_added=None),
    )
