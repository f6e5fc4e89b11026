"""Layout metrics that compare predicted and true cell coordinates.

Every metric takes ``pred`` and ``true`` as arrays of shape (n_cells, d), d usually 2 or 3. ``pred``
may have a different number of columns than ``true`` (e.g. a 2-D prediction of a 3-D tissue): the
narrower array is zero-padded to the wider one first. All metrics except :func:`scale_ratio` are
invariant to rotation, reflection, translation and global scale of ``pred``, since absolute position,
orientation and size of a reconstructed layout carry no meaning. Metrics whose exact form is
quadratic in the number of cells subsample (``max_pairs``, ``max_cells``, ``n_patches``) with a
``seed`` so memory stays far below O(n²) for n up to ~1e5 and results are reproducible.

Shape (realism) metrics — :func:`sliced_wasserstein`, :func:`nn_distance_ratio`, :func:`nn_cv_excess`,
:func:`coverage` and :func:`nhood_enrichment_agreement` — judge the predicted point cloud as a tissue
rather than as a ranking. Rank metrics cannot tell a shrunk blob from tissue: a layout squeezed towards
its centre keeps most neighbour and distance ranks yet looks nothing like the section. The geometric ones
compare both layouts after a common normalisation (centred, unit RMS radius, ``pred`` rotated/reflected
onto ``true``). Judge them against the floor :func:`uniform_fill` ``(true)``, cells spread uniformly over
the bounding box of the truth, which a useful layout must beat. On spot grids (Visium, legacy ST) the
spacing is set by the technology, not the tissue, so judge sliced-W, coverage and neighbourhood agreement
there rather than the 1-NN spacing scores.
"""

from ._agreement import (
    cellwise_scores,
    cellwise_spearman,
    distance_spearman,
    knn_jaccard,
    patch_jaccard,
    procrustes_disparity,
    scale_ratio,
    trustworthiness,
)
from ._calibration import uncertainty_calibration
from ._evaluate import evaluate
from ._shape import (
    coverage,
    nhood_enrichment_agreement,
    nn_cv_excess,
    nn_distance_ratio,
    sliced_wasserstein,
    uniform_fill,
)

__all__ = [
    "cellwise_scores",
    "cellwise_spearman",
    "coverage",
    "distance_spearman",
    "evaluate",
    "knn_jaccard",
    "nhood_enrichment_agreement",
    "nn_cv_excess",
    "nn_distance_ratio",
    "patch_jaccard",
    "procrustes_disparity",
    "scale_ratio",
    "sliced_wasserstein",
    "trustworthiness",
    "uncertainty_calibration",
    "uniform_fill",
]
