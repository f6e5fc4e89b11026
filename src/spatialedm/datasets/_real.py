"""Loaders for the small real data sets shipped with the package.

The ``.h5ad`` files in ``_data/`` are built by ``scripts/build_datasets.py`` from members of two PyPI
source archives (``novosparc==0.4.4``, BSD-3-Clause; ``tissue-sc==1.0.1``, MIT), so they can be
rebuilt offline from a pip cache and need no download at run time.
"""

from __future__ import annotations

import logging
from importlib import resources

import anndata as ad

logger = logging.getLogger(__name__)

__all__ = ["drosophila_embryo", "drosophila_scrna", "osmfish_cortex", "osmfish_scrna"]


def _load(name: str) -> ad.AnnData:
    """Read one shipped file; a fresh object each call so callers may modify it freely."""
    ref = resources.files("spatialedm.datasets").joinpath("_data", f"{name}.h5ad")
    with resources.as_file(ref) as path:
        if not path.exists():
            raise FileNotFoundError(
                f"Shipped data file {path} is missing; rebuild it with `python scripts/build_datasets.py`."
            )
        logger.debug("reading %s", path)
        return ad.read_h5ad(path)


def drosophila_embryo() -> ad.AnnData:
    """BDTNP Drosophila embryo atlas: 3039 cells × 84 genes with 3-D positions.

    Quantitative in-situ expression of 84 genes (mostly transcription factors) for the cells of one
    half of a blastoderm-stage *Drosophila melanogaster* embryo (Berkeley Drosophila Transcription
    Network Project virtual embryo), in the form distributed with novoSpaRc.

    Returns
    -------
    anndata.AnnData
        ``X``: normalised expression as given (float32, dense, values in [0, ~2.4]);
        ``obsm["spatial"]``: (3039, 3) float32 coordinates as given (x is the long, anterior–posterior
        axis); ``uns["source"]``: package, version, member paths, licence and citation.

    Notes
    -----
    Provenance: PyPI sdist ``novosparc==0.4.4``, members ``novosparc/datasets/bdtnp/dge.txt`` (rows =
    cells) and ``novosparc/datasets/bdtnp/geometry.txt``; ``geometry.txt`` has 6078 rows of which the
    first 3039 correspond to the rows of ``dge.txt`` (as in novoSpaRc's own tutorial). The remaining rows
    are roughly a mirror image (in y) of the first half and are not used.

    Licence: novosparc is distributed under the BSD 3-Clause licence.

    Citation: Fowlkes, C. C. et al. (2008) A quantitative spatiotemporal atlas of gene expression in
    the Drosophila blastoderm. *Cell* 133, 364–374; Karaiskos, N. et al. (2017) The Drosophila embryo
    at single-cell transcriptome resolution. *Science* 358, 194–199; Nitzan, M. et al. (2019) Gene
    expression cartography. *Nature* 576, 132–137 (novoSpaRc).

    Examples
    --------
    >>> import spatialedm as sem
    >>> adata = sem.datasets.drosophila_embryo()
    >>> adata.shape
    (3039, 84)
    >>> adata.obsm["spatial"].shape
    (3039, 3)
    """
    return _load("drosophila_embryo")


def drosophila_scrna() -> ad.AnnData:
    """Drosophila embryo scRNA-seq (Drop-seq, early gastrulation): 1297 cells × 8924 genes.

    The dissociated-cell counterpart of :func:`drosophila_embryo`: all 84 atlas genes are among its
    genes (flagged in ``var["in_atlas"]``), so it serves as the query for reconstruction.

    Returns
    -------
    anndata.AnnData
        ``X``: log-normalised expression as given (float32 CSR, cells as rows, values in [0, ~11.3]);
        ``var["in_atlas"]``: whether the gene is one of the 84 atlas genes; ``uns["source"]``.
        No coordinates.

    Notes
    -----
    Provenance: PyPI sdist ``novosparc==0.4.4``, member
    ``novosparc/datasets/drosophila_scRNAseq/dge_normalized.txt`` (genes × cells, transposed here).

    Licence: novosparc is distributed under the BSD 3-Clause licence.

    Citation: Karaiskos, N. et al. (2017) The Drosophila embryo at single-cell transcriptome
    resolution. *Science* 358, 194–199.

    Examples
    --------
    >>> import spatialedm as sem
    >>> sc_adata = sem.datasets.drosophila_scrna()
    >>> sc_adata.shape
    (1297, 8924)
    >>> int(sc_adata.var["in_atlas"].sum())
    84
    """
    return _load("drosophila_scrna")


def osmfish_cortex() -> ad.AnnData:
    """Mouse somatosensory cortex by osmFISH: 3405 cells × 33 genes, integer counts, 2-D positions.

    A subset of the osmFISH data of Codeluppi et al. (2018), as paired with scRNA-seq in the Li et al.
    (2022) integration benchmark and shipped as test data with TISSUE.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``layers["counts"]``: raw counts (integer-valued float32, dense);
        ``obsm["spatial"]``: (3405, 2) float32 coordinates in the source file's units;
        ``obs["duplicate"]``: ``True`` for the 316 rows that repeat an earlier row exactly (same
        position and counts); ``obs["duplicate_group"]``: id shared by a row and its copies;
        ``uns["source"]``.

    Notes
    -----
    Nothing is dropped: remove the flagged copies with ``adata[~adata.obs["duplicate"]]`` (3089 cells
    remain) before computing neighbourhood metrics, since a copy sits at distance zero from its original.
    No cell-type or region annotation is included in the source archive.

    Provenance: PyPI sdist ``tissue-sc==1.0.1``, members ``tests/data/Spatial_count.txt`` (rows =
    cells) and ``tests/data/Locations.txt``.

    Licence: tissue-sc is distributed under the MIT licence.

    Citation: Codeluppi, S. et al. (2018) Spatial organization of the somatosensory cortex revealed by
    osmFISH. *Nature Methods* 15, 932–935; Sun, E. D. et al. (2024) TISSUE: uncertainty-calibrated
    prediction of single-cell spatial transcriptomics improves downstream analyses. *Nature Methods*;
    Li, B. et al. (2022) Benchmarking spatial and single-cell transcriptomics integration methods.
    *Nature Methods* 19, 662–670.

    Examples
    --------
    >>> import spatialedm as sem
    >>> adata = sem.datasets.osmfish_cortex()
    >>> adata.shape
    (3405, 33)
    >>> int(adata.obs["duplicate"].sum())
    316
    """
    return _load("osmfish_cortex")


def osmfish_scrna() -> ad.AnnData:
    """scRNA-seq partner of :func:`osmfish_cortex`: 1000 cells × the same 33 genes, raw counts.

    Returns
    -------
    anndata.AnnData
        ``X`` and ``layers["counts"]``: raw counts (integer-valued float32, dense, cells as rows);
        ``uns["source"]``. No coordinates and no cell-type labels (none ship in the source archive).

    Notes
    -----
    The cell names (``SM-…``, ``LS-…``) follow the Allen Institute SMART-seq naming, consistent with
    the Li et al. (2022) benchmark pairing osmFISH with Allen mouse cortex scRNA-seq; the archive itself
    does not document the origin further.

    Provenance: PyPI sdist ``tissue-sc==1.0.1``, member ``tests/data/scRNA_count.txt`` (genes × cells,
    transposed here).

    Licence: tissue-sc is distributed under the MIT licence.

    Citation: Sun, E. D. et al. (2024) TISSUE. *Nature Methods*; Li, B. et al. (2022) Benchmarking
    spatial and single-cell transcriptomics integration methods. *Nature Methods* 19, 662–670.

    Examples
    --------
    >>> import spatialedm as sem
    >>> sc_adata = sem.datasets.osmfish_scrna()
    >>> sc_adata.shape
    (1000, 33)
    """
    return _load("osmfish_scrna")
