"""Build the real data sets shipped in ``spatialedm.datasets`` from PyPI source archives.

The files written to ``src/spatialedm/datasets/_data/`` are derived from two sdists that carry the
original data as plain-text members:

- ``novosparc==0.4.4`` (BSD-3): BDTNP Drosophila embryo atlas and the matching Drosophila scRNA-seq.
- ``tissue-sc==1.0.1`` (MIT): an osmFISH mouse somatosensory cortex subset and its scRNA-seq partner.

Usage::

    python scripts/build_datasets.py [--sdist-dir DIR] [--out-dir DIR]

If ``--sdist-dir`` already holds the archives they are used as they are; otherwise they are fetched
with ``pip download`` (the novosparc sdist's ``setup.py`` imports the package, so it must be
downloaded with ``--no-build-isolation`` and needs ``pot`` and ``setuptools`` in the environment).
"""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger("build_datasets")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "spatialedm" / "datasets" / "_data"

NOVOSPARC = ("novosparc", "0.4.4")
TISSUE = ("tissue-sc", "1.0.1")

NOVO_PREFIX = "novosparc-0.4.4/"
NOVO_MEMBERS = {
    "atlas_dge": "novosparc/datasets/bdtnp/dge.txt",
    "atlas_geometry": "novosparc/datasets/bdtnp/geometry.txt",
    "scrna": "novosparc/datasets/drosophila_scRNAseq/dge_normalized.txt",
    "license": "LICENSE",
}
TISSUE_PREFIX = "tissue_sc-1.0.1/"
TISSUE_MEMBERS = {
    "spatial_counts": "tests/data/Spatial_count.txt",
    "locations": "tests/data/Locations.txt",
    "scrna": "tests/data/scRNA_count.txt",
    "license": "LICENSE",
}
N_EMBRYO_CELLS = 3039
COMPRESSION_OPTS = 9


def _download(name: str, version: str, dest: Path) -> Path:
    """Fetch one sdist with pip, falling back to ``--no-build-isolation`` when metadata needs it."""
    pattern = f"{name.replace('-', '_')}-{version}.tar.gz"
    alt = f"{name}-{version}.tar.gz"
    for cand in (dest / pattern, dest / alt):
        if cand.exists():
            return cand
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(dest)]
    spec = f"{name}=={version}"
    # novosparc's setup.py imports novosparc (needs pot), tissue-sc needs flit_core from an isolated build:
    # try isolated first, then the current environment.
    for extra in ([], ["--no-build-isolation"]):
        logger.info("pip download %s %s", spec, " ".join(extra))
        res = subprocess.run([*base, *extra, spec], capture_output=True, text=True)
        if res.returncode == 0:
            break
        logger.warning("pip download failed (%s): %s", " ".join(extra) or "isolated", res.stderr[-500:])
    for cand in (dest / pattern, dest / alt):
        if cand.exists():
            return cand
    raise RuntimeError(f"Could not download {spec}")


def _read_member(tar: tarfile.TarFile, member: str) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:
        raise KeyError(member)
    return fh.read()


def _source(pkg: tuple[str, str], members: dict[str, str], **extra) -> dict:
    return {
        "package": pkg[0],
        "version": pkg[1],
        "url": f"https://pypi.org/project/{pkg[0]}/{pkg[1]}/",
        "members": dict(members),
        **extra,
    }


def _write(adata: ad.AnnData, path: Path) -> None:
    adata.write_h5ad(path, compression="gzip", compression_opts=COMPRESSION_OPTS)
    logger.info("wrote %s %s (%d bytes)", path.name, adata.shape, path.stat().st_size)


def build_drosophila(sdist: Path, out_dir: Path) -> None:
    """Write ``drosophila_embryo.h5ad`` and ``drosophila_scrna.h5ad``."""
    with tarfile.open(sdist) as tar:
        raw = {k: _read_member(tar, NOVO_PREFIX + m) for k, m in NOVO_MEMBERS.items()}

    dge = pd.read_csv(io.BytesIO(raw["atlas_dge"]), sep="\t")
    geo = pd.read_csv(io.BytesIO(raw["atlas_geometry"]), sep=" ")
    if dge.shape != (N_EMBRYO_CELLS, 84):
        raise ValueError(f"unexpected atlas shape {dge.shape}")
    # geometry.txt holds 6078 rows; only the first 3039 correspond to the dge rows (as in novoSpaRc's tutorial).
    coords = geo.iloc[:N_EMBRYO_CELLS][["xcoord", "ycoord", "zcoord"]].to_numpy(np.float32)
    embryo = ad.AnnData(
        X=dge.to_numpy(np.float32),
        obs=pd.DataFrame(index=[f"bdtnp_{i}" for i in range(N_EMBRYO_CELLS)]),
        var=pd.DataFrame(index=dge.columns.astype(str)),
    )
    embryo.obsm["spatial"] = coords
    embryo.uns["source"] = _source(
        NOVOSPARC,
        {k: v for k, v in NOVO_MEMBERS.items() if k.startswith("atlas")},
        license="BSD-3-Clause",
        note=f"first {N_EMBRYO_CELLS} of {len(geo)} rows of geometry.txt; X is the atlas as given (normalised)",
        citation="Fowlkes et al. 2008, Cell 133:364-374 (BDTNP); Karaiskos et al. 2017, Science 358:194-199",
    )
    _write(embryo, out_dir / "drosophila_embryo.h5ad")

    sc_df = pd.read_csv(io.BytesIO(raw["scrna"]), sep="\t")  # genes x cells
    missing = set(dge.columns) - set(sc_df.index)
    if missing:
        raise ValueError(f"atlas genes missing from scRNA-seq: {sorted(missing)}")
    scrna = ad.AnnData(
        X=sparse.csr_matrix(sc_df.to_numpy(np.float32).T),
        obs=pd.DataFrame(index=sc_df.columns.astype(str)),
        var=pd.DataFrame(index=sc_df.index.astype(str)),
    )
    scrna.var["in_atlas"] = scrna.var_names.isin(dge.columns)
    scrna.uns["source"] = _source(
        NOVOSPARC,
        {"scrna": NOVO_MEMBERS["scrna"]},
        license="BSD-3-Clause",
        note="dge_normalized.txt transposed to cells x genes; values as given (log-normalised)",
        citation="Karaiskos et al. 2017, Science 358:194-199",
    )
    _write(scrna, out_dir / "drosophila_scrna.h5ad")


def build_osmfish(sdist: Path, out_dir: Path) -> None:
    """Write ``osmfish_cortex.h5ad`` and ``osmfish_scrna.h5ad``."""

    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        raw = {k: _read_member(tar, TISSUE_PREFIX + m) for k, m in TISSUE_MEMBERS.items()}
    # The brief asks to include annotations if present; the sdist's data folder has only these three files.
    data_files = sorted(n for n in names if "/tests/data/" in n)
    logger.info("tissue-sc data members: %s", data_files)

    counts = pd.read_csv(io.BytesIO(raw["spatial_counts"]), sep="\t")
    loc = pd.read_csv(io.BytesIO(raw["locations"]), sep="\t")
    if len(counts) != len(loc):
        raise ValueError(f"{len(counts)} count rows but {len(loc)} locations")
    both = pd.concat([loc, counts], axis=1)
    # Exact duplicates (same position and same counts) are copies of an earlier row; keep all rows, flag them.
    dup = both.duplicated(keep="first").to_numpy()
    first_idx = both.groupby(list(both.columns), sort=False).ngroup().to_numpy()
    logger.info("osmFISH: %d exact-duplicate rows", dup.sum())
    obs = pd.DataFrame(index=[f"osmfish_{i}" for i in range(len(counts))])
    obs["duplicate"] = dup
    # group id shared by a row and its copies, so users can drop or merge them
    obs["duplicate_group"] = first_idx.astype(np.int32)
    x = counts.to_numpy(np.float32)
    cortex = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=counts.columns.astype(str)))
    cortex.layers["counts"] = x.copy()
    cortex.obsm["spatial"] = loc[["X", "Y"]].to_numpy(np.float32)
    cortex.uns["source"] = _source(
        TISSUE,
        {k: TISSUE_MEMBERS[k] for k in ("spatial_counts", "locations")},
        license="MIT",
        note=f"{int(dup.sum())} rows are exact duplicates (position and counts) of earlier rows; "
        "flagged in obs['duplicate']. No cell-type or region annotation ships in the sdist.",
        citation="Codeluppi et al. 2018, Nature Methods 15:932-935; Sun et al. 2024, Nature Methods (TISSUE)",
    )
    _write(cortex, out_dir / "osmfish_cortex.h5ad")

    sc_df = pd.read_csv(io.BytesIO(raw["scrna"]), sep="\t", index_col=0)  # genes x cells
    xs = sc_df.to_numpy(np.float32).T
    scrna = ad.AnnData(
        X=xs, obs=pd.DataFrame(index=sc_df.columns.astype(str)), var=pd.DataFrame(index=sc_df.index)
    )
    scrna.layers["counts"] = xs.copy()
    scrna.uns["source"] = _source(
        TISSUE,
        {"scrna": TISSUE_MEMBERS["scrna"]},
        license="MIT",
        note="scRNA_count.txt transposed to cells x genes; raw counts; no annotation ships in the sdist",
        citation="Sun et al. 2024, Nature Methods (TISSUE); pairing from Li et al. 2022, Nature Methods 19:662-670",
    )
    _write(scrna, out_dir / "osmfish_scrna.h5ad")


def main(argv: list[str] | None = None) -> None:
    """Download (if needed) and convert both sdists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist-dir", type=Path, default=None, help="folder holding/receiving the sdists")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist_dir = args.sdist_dir or Path(tmp)
        sdist_dir.mkdir(parents=True, exist_ok=True)
        build_drosophila(_download(*NOVOSPARC, sdist_dir), args.out_dir)
        build_osmfish(_download(*TISSUE, sdist_dir), args.out_dir)


if __name__ == "__main__":
    main()
