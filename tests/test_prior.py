"""A prior placement that the refiner corrects: ``get_latent_coordinates(prior=...)``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import spatialedm as sem
from spatialedm.metrics import cellwise_spearman


@pytest.fixture
def query(tissue):
    """The tissue's cells without coordinates, and their true layout."""
    q = tissue.copy()
    truth = np.asarray(q.obsm.pop("spatial"), dtype=float)
    return q, truth


def test_weight_zero_is_the_layout_without_a_prior(trained, query):
    q, truth = query
    default = trained.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None, prior=None)
    mixed = trained.get_latent_coordinates(
        q, seed=0, key_added=None, uncertainty=None, prior=truth, prior_weight=0.0
    )
    np.testing.assert_allclose(mixed, default, atol=1e-5)


def test_a_true_prior_is_kept_and_pulls_the_layout_towards_the_truth(trained, query):
    q, truth = query
    scores = {
        w: cellwise_spearman(
            trained.get_latent_coordinates(
                q, seed=0, key_added=None, uncertainty=None, prior=truth * 7.0 + 3.0, prior_weight=w
            ),
            truth,
        )
        for w in (0.0, 0.5, 1.0)
    }
    # any frame and scale: the prior is moved onto each set's generator layout
    assert scores[0.0] < scores[0.5] < scores[1.0]
    assert scores[1.0] > 0.9


def test_prior_is_moved_into_each_set_frame(trained, query):
    q, truth = query
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    a = trained.get_latent_coordinates(q, seed=0, key_added=None, uncertainty=None, prior=truth)
    b = trained.get_latent_coordinates(
        q, seed=0, key_added=None, uncertainty=None, prior=-(truth @ rot) * 0.01 + 5.0
    )
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_knn_prior_places_the_query_and_leaves_it_untouched(trained, query):
    q, truth = query
    obs, X = q.obs.copy(), q.X.copy()
    out = trained.get_latent_coordinates(q, seed=0, prior="knn")
    assert out.shape == (q.n_obs, 2) and np.isfinite(out).all()
    np.testing.assert_allclose(q.obsm["X_spatialedm"], out, atol=1e-6)
    pd.testing.assert_frame_equal(q.obs[obs.columns], obs)
    np.testing.assert_array_equal(q.X, X)
    # weight 1 corrects the kNN regression's placement itself, which is close to it on this easy tissue
    knn = sem.baselines.knn_regression(
        trained.adata, q, spatial_key="spatial", batch_key="section", query_batch_key="section"
    )
    alone = trained.get_latent_coordinates(q, seed=0, key_added=None, prior="knn", prior_weight=1.0)
    assert cellwise_spearman(alone, knn) > 0.8


def test_bad_priors_are_refused_before_anything_is_written(trained, query, tmp_path):
    q, truth = query
    cases = [
        ({"prior": "tangram"}, "prior must be one of"),
        ({"prior": truth[:-1]}, r"shape \(300, 2\); got \(299, 2\)"),
        ({"prior": np.c_[truth, truth[:, :1]]}, r"got \(300, 3\)"),
        ({"prior": np.where(np.arange(300)[:, None] == 5, np.nan, truth)}, "NaN or infinite"),
        ({"prior": truth, "prior_weight": 1.5}, "prior_weight must be in"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            trained.get_latent_coordinates(q, seed=0, **kwargs)
    with pytest.raises(ValueError, match="not the reference itself"):
        trained.get_latent_coordinates(None, seed=0, key_added=None, prior="knn")
    trained.save(tmp_path / "model")
    loaded = sem.SpatialEDM.load(tmp_path / "model")
    with pytest.raises(ValueError, match=r"SpatialEDM.load\(path, adata=reference\)"):
        loaded.get_latent_coordinates(q, seed=0, prior="knn")
    assert "X_spatialedm" not in q.obsm


def test_other_options_are_checked_before_the_knn_prior_is_computed(trained, query, monkeypatch):
    from spatialedm import _prior

    q, _ = query

    def not_called(*args, **kwargs):
        raise AssertionError("the kNN prior was computed before the options were checked")

    monkeypatch.setattr(_prior, "knn_regression", not_called)
    with pytest.raises(ValueError, match="uncertainty must be"):
        trained.get_latent_coordinates(q, seed=0, prior="knn", uncertainty="spread")
    with pytest.raises(ValueError, match="prior_weight must be in"):
        trained.get_latent_coordinates(q, seed=0, prior="knn", prior_weight=-0.1)


def test_auto_prior_is_knn_with_the_reference_and_none_without(trained, query, tmp_path):
    q, _ = query
    kw = {"seed": 0, "key_added": None, "uncertainty": None}
    default = trained.get_latent_coordinates(q, **kw)
    np.testing.assert_allclose(default, trained.get_latent_coordinates(q, prior="knn", **kw), atol=1e-6)
    assert not np.allclose(default, trained.get_latent_coordinates(q, prior=None, **kw), atol=1e-3)
    # the reference itself is placed without a prior (its kNN regression would be its own positions)
    np.testing.assert_allclose(
        trained.get_latent_coordinates(None, **kw), trained.get_latent_coordinates(None, prior=None, **kw)
    )
    trained.save(tmp_path / "model")
    loaded = sem.SpatialEDM.load(tmp_path / "model")
    np.testing.assert_allclose(
        loaded.get_latent_coordinates(q, **kw), trained.get_latent_coordinates(q, prior=None, **kw), atol=1e-5
    )
