"""Shared documentation: docrep fragments for the functions that place cells, and method forms."""

from __future__ import annotations

import functools

from docrep import DocstringProcessor

_refine = """\
refine
    Run the diffusion refiner after the generator."""
_set_size = """\
set_size
    Cells placed together in one set (default: the largest training set size); larger sets of cells are
    stitched from overlapping subsets. It changes the result, as a different set would."""
_seed = """\
seed
    Seed of the noise and of the subsets, for reproducible layouts."""
_sampler = """\
sigma_start
    Refiner's starting noise, in units of the residual's ``sigma_data`` (default from the model
    config); capped at the largest level trained on.
n_steps
    Heun steps of the refiner (default from the model config)."""

placement_dsp = DocstringProcessor(
    param_refine=_refine, param_set_size=_set_size, param_seed=_seed, param_sampler=_sampler
)


def as_method(func):
    """``func(model, ...)`` as a method of the model, with the function's documentation."""

    @functools.wraps(func)
    def method(self, *args, **kwargs):
        return func(self, *args, **kwargs)

    return method
