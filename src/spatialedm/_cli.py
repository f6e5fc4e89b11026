"""Command line: ``spatialedm fit``, ``spatialedm predict`` and ``spatialedm demo``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_METRIC_COLUMNS = ("cellwise_spearman", "patch_jaccard", "knn_jaccard", "distance_spearman")


_FIT_EPILOG = """\
examples:
  spatialedm fit reference.h5ad -o model/
  spatialedm fit reference.h5ad -o model/ --layer counts --batch-key section --max-epochs 60
  spatialedm fit reference.h5ad -o model/ --accelerator gpu --overwrite

The reference needs coordinates in obsm (2-D or 3-D) and expression in X or --layer (raw counts or
log-normalised). A progress bar follows the training; the model folder is written atomically.
"""

_PREDICT_EPILOG = """\
examples:
  spatialedm predict model/ query.h5ad -o query_placed.h5ad
  spatialedm predict model/ query.h5ad -o out.h5ad --n-samples 8 --seed 1
  spatialedm predict model/ query.h5ad -o out.h5ad --reference reference.h5ad
  spatialedm predict model/ query.h5ad -o out.h5ad --reference reference.h5ad --prior none
  spatialedm predict model/ query.h5ad -o out.h5ad --shape-weight 1

Genes are matched to the model by name; extra genes are ignored. The output is the query with
obsm[KEY] and obs["spatialedm_uncertainty"] added (how differently each cell and its expression
neighbours rank their distances in the layout, 0 to 2; with --n-samples > 1, the spread of that many
stochastic refinements). Draw it with
  sq.pl.spatial_scatter(adata, spatial_key="X_spatialedm", shape=None, color=...)
"""

_DEMO_EPILOG = """\
examples:
  spatialedm demo
  spatialedm demo -o demo_out --dataset embryo --max-epochs 10

Writes metrics.json, reconstruction.png, reconstruction.h5ad (the held-out cells with
obsm["X_spatialedm"] and their true coordinates) and the trained model to the output folder.
"""

_MAIN_EPILOG = """\
examples:
  spatialedm fit reference.h5ad -o model/
  spatialedm predict model/ query.h5ad -o query_placed.h5ad
  spatialedm demo

Run 'spatialedm COMMAND --help' for the options of each command.
"""


class CLIError(Exception):
    """A user error reported as one line, with exit status 2."""


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="spatialedm",
        description="Reconstruct the relative spatial layout of cells from expression, learned from spatial "
        "transcriptomics (an scvi-tools model).",
        epilog=_MAIN_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("--debug", action="store_true", help="Show full tracebacks of errors.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="Train a model on a reference .h5ad with coordinates.",
        description="Train a SpatialEDM model on a reference AnnData with coordinates and save it.",
        epilog=_FIT_EPILOG,
        formatter_class=fmt,
    )
    fit.add_argument("reference", help="Reference AnnData (.h5ad) with coordinates in obsm.")
    fit.add_argument("-o", "--output", required=True, help="Folder to save the trained model in.")
    fit.add_argument("--layer", default=None, help="Layer with expression (default: X).")
    fit.add_argument(
        "--spatial-key", default="spatial", help="obsm key of the coordinates (default: spatial)."
    )
    fit.add_argument("--batch-key", default=None, help="obs column of the sections (default: one section).")
    fit.add_argument(
        "--expression",
        default="auto",
        choices=("auto", "counts", "log"),
        help="Raw counts, log-normalised, or auto-detected (default auto).",
    )
    fit.add_argument("--max-epochs", type=int, default=None, help="Training epochs over all stages.")
    fit.add_argument(
        "--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)."
    )
    fit.add_argument("--devices", default="auto", help="Lightning devices (default auto).")
    fit.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    fit.add_argument("--overwrite", action="store_true", help="Replace an existing model folder.")
    fit.add_argument("--no-progress-bar", action="store_true", help="Hide the training progress bar.")

    pred = sub.add_parser(
        "predict",
        help="Place the cells of a query .h5ad with a trained model.",
        description="Reconstruct the layout of a query AnnData's cells from their expression.",
        epilog=_PREDICT_EPILOG,
        formatter_class=fmt,
    )
    pred.add_argument("model", help="Folder written by 'spatialedm fit'.")
    pred.add_argument("query", help="Query AnnData (.h5ad); genes are matched to the model by name.")
    pred.add_argument("-o", "--output", required=True, help="Output .h5ad with obsm[KEY] added.")
    pred.add_argument("--key-added", default="X_spatialedm", help="obsm key to write (default X_spatialedm).")
    pred.add_argument("--no-refine", action="store_true", help="Generator only, skip the diffusion refiner.")
    pred.add_argument(
        "--no-relax", action="store_true", help="Skip spreading the layout to the reference's cell spacing."
    )
    pred.add_argument(
        "--n-samples", type=int, default=1, help="Samples; >1 measures the uncertainty by them."
    )
    pred.add_argument("--set-size", type=int, default=None, help="Cells per set (default: the model's).")
    pred.add_argument(
        "--prior",
        choices=("auto", "knn", "none"),
        default="auto",
        help="The placement the refiner corrects with the generator's: the reference's kNN regression "
        "('knn', needs --reference), none, or 'auto' (default): knn when --reference is given, else none.",
    )
    pred.add_argument(
        "--prior-weight", type=float, default=0.5, help="Weight of the prior against the generator (0.5)."
    )
    pred.add_argument(
        "--reference",
        default=None,
        help="The reference .h5ad the model was trained on (its kNN regression is the default prior).",
    )
    pred.add_argument(
        "--shape-weight",
        type=float,
        default=0.0,
        help="Move the layout's proportions towards the reference tissue's, 0 to 1 (default 0: as placed).",
    )
    pred.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")

    demo = sub.add_parser(
        "demo",
        help="Train on one half of the bundled osmFISH cortex, reconstruct the other half from expression "
        "alone, print metrics against baselines and save a plot.",
        description="Train on a held-out task's reference, reconstruct its query from expression alone, "
        "compare with baselines and save a plot.",
        epilog=_DEMO_EPILOG,
        formatter_class=fmt,
    )
    demo.add_argument(
        "-o", "--output", default="spatialedm_demo", help="Output folder (default spatialedm_demo)."
    )
    demo.add_argument(
        "--dataset",
        default="osmfish",
        choices=("osmfish", "embryo"),
        help="Bundled data split into halves: the osmFISH cortex (default) or the Drosophila embryo (3-D).",
    )
    demo.add_argument("--max-epochs", type=int, default=None, help="Training epochs (default: the model's).")
    demo.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    return p


def _read(path: str):
    import anndata as ad

    if not Path(path).is_file():
        raise CLIError(f"file not found: {path}")
    try:
        return ad.read_h5ad(path)
    except Exception as err:
        raise CLIError(f"cannot read {path} as an AnnData .h5ad file ({type(err).__name__}: {err})") from err


def _check_output_file(path: str) -> None:
    """Refuse, before any work, an output file whose folder is missing or not writable."""
    import os

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise CLIError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"cannot write {path}: the folder {parent} is not writable")
    if Path(path).is_dir():
        raise CLIError(f"cannot write {path}: it is a folder; give a file name such as out.h5ad")


def _check_model_folder(path: str, overwrite: bool) -> None:
    """Refuse, before training, a model folder that cannot be written or already holds a model."""
    import os

    from ._persistence import METADATA_FILE

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a folder")
    if (out / METADATA_FILE).exists() and not overwrite:
        raise CLIError(f"{out} already holds a saved model; pass --overwrite to replace it (only its files)")
    existing = next((p for p in (out, *out.resolve().parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK):
        raise CLIError(f"cannot write the model to {out}: {existing} is not writable")


def _fit(args) -> None:
    import scvi

    from ._model import SpatialEDM

    out = Path(args.output)
    _check_model_folder(args.output, args.overwrite)
    scvi.settings.seed = args.seed
    adata = _read(args.reference)
    logger.info("Read %s: %d cells x %d genes", args.reference, adata.n_obs, adata.n_vars)
    SpatialEDM.setup_anndata(
        adata,
        layer=args.layer,
        spatial_key=args.spatial_key,
        batch_key=args.batch_key,
        expression=args.expression,
    )
    model = SpatialEDM(adata)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    model.train(
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
        devices=devices,
        enable_progress_bar=not args.no_progress_bar,
    )
    model.save(str(out), overwrite=True)
    logger.info("Saved the model to %s", out)


def _predict(args) -> None:
    from ._model import SpatialEDM

    if not Path(args.model).is_dir():
        raise CLIError(f"model folder not found: {args.model}")
    if args.n_samples < 1:
        raise CLIError(f"--n-samples must be at least 1, got {args.n_samples}.")
    if args.prior == "knn" and args.reference is None:
        raise CLIError(f"--prior {args.prior} needs --reference, the .h5ad the model was trained on.")
    _check_output_file(args.output)
    query = _read(args.query)
    reference = None if args.reference is None else _read(args.reference)
    model = SpatialEDM.load(args.model, adata=reference)
    logger.info("Loaded the model from %s (%d genes)", args.model, len(model.preprocessor_["genes"]))
    logger.info(
        "Placing %d query cells (%s, %d sample(s))...",
        query.n_obs,
        "generator only" if args.no_refine else "generator + refiner",
        args.n_samples,
    )
    start = time.time()
    model.get_latent_coordinates(
        query,
        refine=not args.no_refine,
        relax=not args.no_relax,
        n_samples=args.n_samples,
        uncertainty="samples" if args.n_samples > 1 else "ranks",
        key_added=args.key_added,
        set_size=args.set_size,
        seed=args.seed,
        prior=None if args.prior == "none" else args.prior,
        prior_weight=args.prior_weight,
        shape_weight=args.shape_weight,
    )
    logger.info("Placed the cells in %.1f s", time.time() - start)
    query.write_h5ad(args.output)
    logger.info("Wrote obsm[%r] for %d cells to %s", args.key_added, query.n_obs, args.output)


#: Layer normal of the bundled osmFISH section (duplicates removed), as ``split_halves`` estimated it with
#: spatialedm 0.1.0's preprocessing; fixed so that the demo's halves are the benchmark's ``osmfish_halves``.
_OSMFISH_LAYER_NORMAL = (0.43837114678907746, 0.898794046299167)
_SHAPE_COLUMNS = ("sliced_wasserstein", "nn_distance_ratio", "coverage_recall", "coverage_precision")


def _table(rows: dict[str, dict], columns) -> str:
    width = max(map(len, rows))
    lines = [f"{'method':<{width}}  " + "  ".join(f"{c:>18}" for c in columns)]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{r[c]:>18.3f}" for c in columns))
    return "\n".join(lines)


def _demo(args) -> None:
    import numpy as np
    import scvi

    from . import baselines, datasets, metrics, pl
    from ._model import SpatialEDM

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed
    if args.dataset == "osmfish":
        adata = datasets.osmfish_cortex()
        adata = adata[~adata.obs["duplicate"].to_numpy(bool)].copy()  # exact copies sit at distance 0
        reference, query = datasets.split_halves(adata, axis=_OSMFISH_LAYER_NORMAL)
    else:
        reference, query = datasets.split_halves(datasets.drosophila_embryo())
    truth = np.asarray(query.obsm["spatial"], dtype=float)
    del query.obsm["spatial"]  # the model must not see the query's coordinates
    logger.info(
        "%s: reference %d cells, query %d cells, %d genes", args.dataset, *reference.shape[:1], *query.shape
    )

    start = time.time()
    SpatialEDM.setup_anndata(reference, spatial_key="spatial")
    model = SpatialEDM(reference)
    model.train(max_epochs=args.max_epochs)
    train_s = time.time() - start
    query.obsm["X_spatialedm_generator"] = model.get_latent_coordinates(
        query, refine=False, seed=args.seed, key_added=None, prior=None
    )
    model.get_latent_coordinates(query, seed=args.seed)  # writes obsm["X_spatialedm"]
    query.obsm["X_spatialedm_shape"] = model.get_latent_coordinates(
        query, seed=args.seed, key_added=None, uncertainty=None, shape_weight=1.0
    )
    logger.info("Baselines: kNN regression, 1-NN, optimal transport, expression PCA ...")
    layouts = {
        "spatialedm (generator)": query.obsm["X_spatialedm_generator"],
        "spatialedm (default)": query.obsm["X_spatialedm"],
        "spatialedm (prior=None)": model.get_latent_coordinates(
            query, seed=args.seed, key_added=None, uncertainty=None, prior=None
        ),
        "spatialedm (shape_weight=1)": query.obsm["X_spatialedm_shape"],
        "kNN regression (tuned)": baselines.knn_regression(reference, query),
        "1-NN": baselines.nearest_neighbor(reference, query),
        "optimal transport": baselines.optimal_transport(reference, query, seed=args.seed),
        "expression PCA": baselines.expression_pca(query, dim=truth.shape[1]),
    }
    rows = {name: metrics.evaluate(p, truth, seed=args.seed) for name, p in layouts.items()}
    floor = metrics.evaluate(metrics.uniform_fill(truth, seed=args.seed), truth, seed=args.seed)
    shape_rows = {**rows, "uniform fill (shape floor)": floor}
    print(
        f"\n{args.dataset}: {reference.uns['task']['description']}\nTraining took {train_s:.0f} s.\n\n"
        f"Agreement with the true layout (higher is better):\n{_table(rows, _METRIC_COLUMNS)}\n\n"
        "Shape, after unit-RMS scaling and alignment (ideal: sliced-W 0, 1-NN ratio 1, coverage 1):\n"
        f"{_table(shape_rows, _SHAPE_COLUMNS)}\n"
    )
    (out / "metrics.json").write_text(
        json.dumps(
            {"dataset": args.dataset, "train_seconds": train_s, "metrics": rows, "uniform_fill": floor},
            indent=2,
        )
    )
    query.obsm["spatial_true"] = truth
    color = None
    gradient = reference.uns["task"].get("gradient")
    if gradient is not None:  # colour by depth across the layers, so misplaced cells stand out
        query.obs["layer_depth"] = truth @ np.asarray(gradient, dtype=float)
        color = "layer_depth"
    pl.reconstruction(
        query,
        basis=["X_spatialedm_generator", "X_spatialedm", "X_spatialedm_shape"],
        titles=["generator", "generator + refiner", "tissue proportions (shape_weight=1)"],
        truth="spatial_true",
        color=color,
        save=out / "reconstruction.png",
    )
    query.write_h5ad(out / "reconstruction.h5ad")
    model.save(str(out / "model"), overwrite=True)
    print(
        f"Saved {out / 'reconstruction.png'}, {out / 'reconstruction.h5ad'} (the held-out cells with "
        f"obsm['X_spatialedm'] and their true coordinates in obsm['spatial_true']), {out / 'metrics.json'} "
        f"and the model in {out / 'model'}."
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spatialedm`` command.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    Exit status: 0 on success; 2 for a usage error (argparse) or a user error such as a missing file or
    an unknown key, reported as one line on stderr without a traceback (``--debug`` shows it).

    Examples
    --------
    >>> main(["predict", "no_model_here", "query.h5ad", "-o", "out.h5ad"])
    2
    """
    args = _parser().parse_args(argv)
    # the command's own progress lines; the library's details stay at WARNING unless --debug
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    try:
        {"fit": _fit, "predict": _predict, "demo": _demo}[args.command](args)
    except (CLIError, KeyError, ValueError, FileNotFoundError, FloatingPointError) as err:
        if args.debug:
            raise
        # KeyError's str() quotes its message; print the message itself, on one line
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"spatialedm {args.command}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
