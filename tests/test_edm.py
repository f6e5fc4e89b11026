from __future__ import annotations

import math

import torch

from spatialedm import edm


def test_preconditioning_hand_computed():
    c_skip, c_out, c_in, c_noise = edm.preconditioning(torch.tensor([0.5]), 1.0)
    assert math.isclose(float(c_skip), 1 / 1.25, rel_tol=1e-6)
    assert math.isclose(float(c_out), 0.5 / math.sqrt(1.25), rel_tol=1e-6)
    assert math.isclose(float(c_in), 1 / math.sqrt(1.25), rel_tol=1e-6)
    assert math.isclose(float(c_noise), math.log(0.5) / 4, rel_tol=1e-6)


def test_loss_weight_gives_unit_effective_weight():
    # lambda(sigma) * c_out(sigma)^2 == 1: the network target has unit weight at every level.
    sigma = torch.tensor([0.1, 1.0, 3.0])
    _, c_out, _, _ = edm.preconditioning(sigma, 0.7)
    torch.testing.assert_close(edm.loss_weight(sigma, 0.7) * c_out**2, torch.ones(3))


def test_sample_sigma_range():
    s = edm.sample_sigma(1000, 0.05, 2.0, generator=torch.Generator().manual_seed(0))
    assert float(s.min()) >= 0.05 and float(s.max()) <= 2.0
    # log-uniform: the median is the geometric mean of the bounds
    assert abs(float(s.log().median()) - math.log(math.sqrt(0.05 * 2.0))) < 0.15


def test_karras_schedule_endpoints():
    s = edm.karras_schedule(5, 2.0, 0.02)
    assert math.isclose(float(s[0]), 2.0, rel_tol=1e-5)
    assert math.isclose(float(s[-2]), 0.02, rel_tol=1e-4)
    assert float(s[-1]) == 0.0
    assert torch.all(s[:-1] > s[1:])


def test_heun_with_exact_gaussian_denoiser_preserves_variance():
    # For data N(0, sd^2), D(x; s) = sd^2 / (sd^2 + s^2) x exactly; the probability-flow ODE then
    # maps N(0, sd^2 + s0^2) onto N(0, sd^2).
    sd, s0 = 0.5, 2.0
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * math.sqrt(sd**2 + s0**2)
    out = edm.heun_sample(lambda x, s: sd**2 / (sd**2 + s**2) * x, x, edm.karras_schedule(30, s0, 0.002))
    assert abs(float(out.std()) - sd) < 0.01
