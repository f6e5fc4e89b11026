from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spatialedm import geometry


def test_kabsch_hand_computed_rotation_and_reflection():
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -2.0]]])
    rot90 = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # x @ rot90 maps (1, 0) -> (0, 1)
    r = geometry.kabsch(x, x @ rot90)
    torch.testing.assert_close(r, rot90)
    mirror = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])
    torch.testing.assert_close(geometry.kabsch(x, x @ mirror), mirror)


def test_align_recovers_translation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    y = 0.3 * x @ q + np.array([5.0, -2.0, 1.0])
    np.testing.assert_allclose(geometry.align_numpy(y, x, scale=True), x, atol=1e-8)


def test_normalize_and_masks():
    x = torch.randn(2, 6, 2) * 3 + 1
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    y = geometry.normalize(x, mask)
    torch.testing.assert_close(geometry.rms(y, mask), torch.ones(2), atol=1e-4, rtol=0)
    assert torch.all(y[1, 4:] == 0)
    torch.testing.assert_close(geometry.masked_mean(y, mask), torch.zeros(2, 1, 2), atol=1e-5, rtol=0)


def test_aligned_mse_zero_for_rigid_copy_and_positive_otherwise():
    x = torch.randn(1, 30, 2)
    r = geometry.random_orthogonal(1, 2)
    assert float(geometry.aligned_mse(x @ r + 2.0, x)) < 1e-10
    assert float(geometry.aligned_mse(torch.randn(1, 30, 2), x)) > 0.1


def test_random_orthogonal_is_orthogonal_with_both_determinants():
    r = geometry.random_orthogonal(200, 3, generator=torch.Generator().manual_seed(0))
    eye = torch.eye(3).expand(200, 3, 3)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-5, rtol=0)
    dets = torch.linalg.det(r)
    assert (dets > 0).any() and (dets < 0).any()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 60), d=st.sampled_from([2, 3]), seed=st.integers(0, 10_000))
def test_align_property_recovers_any_similarity(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    y = rng.uniform(0.1, 10) * x @ q + rng.normal(size=d) * 5
    np.testing.assert_allclose(geometry.align_numpy(y, x, scale=True), x, atol=1e-6)
