"""Count-level augmentation: re-measured copies of a count reference as extra training inputs."""

from __future__ import annotations

import numpy as np
import pytest

import spatialedm as sem
from spatialedm._augmentation import count_views, remeasure
from spatialedm._datasplitter import SetDataSplitter

TINY = {"n_hidden": 32, "n_latent": 16, "dim": 16, "n_inducing": 4, "n_heads": 2, "n_denoiser_blocks": 1}


def test_remeasure_thins_each_cell_to_its_own_depth():
    rng = np.random.default_rng(0)
    counts = np.full((400, 50), 40.0)
    out = remeasure(counts, rng, min_depth=0.1, capture_sd=0.0)
    assert np.array_equal(out, np.round(out)) and (out <= counts).all()
    kept = out.sum(1) / counts.sum(1)
    # depths spread over [0.1, 1], log-uniformly: about half the cells keep less than sqrt(0.1)
    assert kept.min() > 0.07 and kept.max() <= 1.0
    assert 0.35 < np.mean(kept < np.sqrt(0.1)) < 0.65


def test_capture_factors_are_per_gene_and_shared_by_cells():
    counts = np.full((300, 20), 100.0)
    out = remeasure(counts, np.random.default_rng(1), min_depth=1.0, capture_sd=1.0)
    ratio = out / counts
    # depth 1 keeps every count, so each gene's column is scaled by one factor
    np.testing.assert_allclose(ratio, ratio[:1].repeat(300, 0), rtol=1e-5)
    assert np.log(ratio[0]).std() > 0.5


def test_views_are_preprocessed_like_a_query(tissue):
    sem.SpatialEDM.setup_anndata(tissue, batch_key="section")
    model = sem.SpatialEDM(tissue, **TINY)
    view = model.expression_view()
    views = count_views(view, 3, np.random.default_rng(0), min_depth=0.2, capture_sd=0.5)
    assert len(views) == 3
    original = view.all_rows()
    codes = view.batch_codes
    for v in views:
        assert v.shape == original.shape and np.isfinite(v).all()
        assert not np.allclose(v, original)
        # every section is centred on its own mean, as a query's batches are
        for b in np.unique(codes):
            np.testing.assert_allclose(v[codes == b].mean(0), 0.0, atol=1e-4)
        # the copy still carries the cells' identity: each cell is closer to itself than to a random cell
        same = np.einsum("ij,ij->i", v, original)
        other = np.einsum("ij,ij->i", v, original[np.random.default_rng(1).permutation(len(v))])
        assert np.mean(same > other) > 0.7


def test_training_sets_draw_from_the_copies_and_validation_from_the_original(tissue):
    sem.SpatialEDM.setup_anndata(tissue, batch_key="section")
    model = sem.SpatialEDM(tissue, **TINY)
    config = sem.SetConfig(n_sets_per_epoch=40, min_set_size=8, max_set_size=16, count_views=2)
    splitter = SetDataSplitter(model.adata_manager, model.preprocessor, config, seed=0)
    data = splitter.train_dataset
    assert len(data.views) == 3
    seen = set()
    for i in range(40):
        item = data[i]
        x = item["X"]
        # the sampler's indices are not returned, so recognise the view by an exact row match
        for k, v in enumerate(data.views):
            if any(np.array_equal(x[0], row) for row in v):
                seen.add(k)
    assert seen == {0, 1, 2}
    for i in range(len(splitter.val_dataset)):
        x = splitter.val_dataset[i]["X"]
        idx = splitter.val_dataset.fixed_sets[i]
        np.testing.assert_array_equal(x, data.expression[idx])


def test_log_normalised_reference_trains_without_copies(tissue):
    tissue = tissue.copy()
    tissue.X = np.log1p(np.asarray(tissue.X, dtype=np.float32) / 3.0)
    sem.SpatialEDM.setup_anndata(tissue, batch_key="section")
    model = sem.SpatialEDM(tissue, **TINY)
    config = sem.SetConfig(n_sets_per_epoch=8, min_set_size=8, max_set_size=16, count_views=2)
    splitter = SetDataSplitter(model.adata_manager, model.preprocessor, config, seed=0)
    assert len(splitter.train_dataset.views) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count_views": -1}, "count_views"),
        ({"min_depth": 0.0}, "min_depth"),
        ({"capture_sd": -0.1}, "capture_sd"),
    ],
)
def test_bad_augmentation_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sem.SetConfig(**kwargs)
