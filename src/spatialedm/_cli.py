"""Command line: ``spatialedm fit``, ``spatialedm predict`` and ``spatialedm demo``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("spatialedm")

_METRIC_COLUMNS = ("cellwise_spearman", "patch_jaccard", "knn_jaccard", "distance_spearman")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spatialedm",
        description="Reconstruct the relative spatial layout of cells from expression, learned from spatial "
        "transcriptomics (an scvi-tools model).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="Train a model on a reference .h5ad with coordinates.")
    fit.add_argument("reference", help="Reference AnnData (.h5ad) with coordinates in obsm.")
    fit.add_argument("-o", "--output", required=True, help="Folder to save the trained model in.")
    fit.add_argument("--layer", default=None, help="Layer with expression (default: X).")
    fit.add_argument(
        "--spatial-key", default="spatial", help="obsm key of the coordinates (default: spatial)."
    )
    fit.add_argument("--batch-key", default=None, help="obs column of the sections (default: one section).")
    fit.add_argument("--max-epochs", type=int, default=None, help="Training epochs over all stages.")
    fit.add_argument(
        "--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)."
    )
    fit.add_argument("--devices", default="auto", help="Lightning devices (default auto).")
    fit.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    fit.add_argument("--overwrite", action="store_true", help="Replace an existing model folder.")

    pred = sub.add_parser("predict", help="Place the cells of a query .h5ad with a trained model.")
    pred.add_argument("model", help="Folder written by 'spatialedm fit'.")
    pred.add_argument("query", help="Query AnnData (.h5ad); genes are matched to the model by name.")
    pred.add_argument("-o", "--output", required=True, help="Output .h5ad with obsm[KEY] added.")
    pred.add_argument("--key-added", default="X_spatialedm", help="obsm key to write (default X_spatialedm).")
    pred.add_argument("--no-refine", action="store_true", help="Generator only, skip the diffusion refiner.")
    pred.add_argument("--n-samples", type=int, default=1, help="Samples; >1 also writes obs uncertainty.")
    pred.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")

    demo = sub.add_parser(
        "demo",
        help="Train on one half of the bundled osmFISH cortex, reconstruct the other half from expression "
        "alone, print metrics against baselines and save a plot.",
    )
    demo.add_argument(
        "-o", "--output", default="spatialedm_demo", help="Output folder (default spatialedm_demo)."
    )
    demo.add_argument("--task", default="osmfish_halves", help="Held-out task (see spatialedm.tasks.TASKS).")
    demo.add_argument("--max-epochs", type=int, default=None, help="Training epochs (default: the model's).")
    demo.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    return p


def _read(path: str):
    import anndata as ad

    if not Path(path).is_file():
        raise SystemExit(f"error: file not found: {path}")
    return ad.read_h5ad(path)


def _fit(args) -> None:
    import scvi

    from ._model import SpatialEDM

    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"error: {out} exists and is not empty; pass --overwrite to replace it.")
    scvi.settings.seed = args.seed
    adata = _read(args.reference)
    SpatialEDM.setup_anndata(adata, layer=args.layer, spatial_key=args.spatial_key, batch_key=args.batch_key)
    model = SpatialEDM(adata)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    model.train(max_epochs=args.max_epochs, accelerator=args.accelerator, devices=devices)
    model.save(str(out), overwrite=True)
    logger.info("Saved the model to %s", out)


def _predict(args) -> None:
    from ._model import SpatialEDM

    model = SpatialEDM.load(args.model)
    query = _read(args.query)
    model.get_latent_coordinates(
        query, refine=not args.no_refine, n_samples=args.n_samples, key_added=args.key_added, seed=args.seed
    )
    query.write_h5ad(args.output)
    logger.info("Wrote obsm[%r] for %d cells to %s", args.key_added, query.n_obs, args.output)


def _demo(args) -> None:
    import numpy as np
    import scvi

    from . import baselines, metrics, pl, tasks
    from ._model import SpatialEDM

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed
    reference, query, info = tasks.load_task(args.task, seed=args.seed)
    truth = np.asarray(query.obsm["spatial"], dtype=float)
    del query.obsm["spatial"]  # the model must not see the query's coordinates
    logger.info(
        "%s: reference %d cells, query %d cells, %d genes",
        args.task,
        reference.n_obs,
        query.n_obs,
        query.n_vars,
    )

    start = time.time()
    SpatialEDM.setup_anndata(
        reference, layer=info["layer"], spatial_key="spatial", batch_key=info["batch_key"]
    )
    model = SpatialEDM(reference)
    model.train(max_epochs=args.max_epochs)
    train_s = time.time() - start
    layouts = {
        "spatialedm (generator)": model.get_latent_coordinates(
            query, refine=False, seed=args.seed, key_added=None
        ),
        "spatialedm (generator + refiner)": model.get_latent_coordinates(query, seed=args.seed),
        "kNN regression": baselines.knn_regression(
            reference, query, layer=info["layer"], batch_key=info["batch_key"]
        ),
        "expression PCA": baselines.expression_pca(query, dim=truth.shape[1], layer=info["layer"]),
    }
    rows = {name: metrics.evaluate(p, truth, seed=args.seed) for name, p in layouts.items()}
    width = max(map(len, rows))
    lines = [f"{'method':<{width}}  " + "  ".join(f"{c:>17}" for c in _METRIC_COLUMNS)]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{r[c]:>17.3f}" for c in _METRIC_COLUMNS))
    table = "\n".join(lines)
    print(f"\nTask {args.task}: {info['description']}\nTraining took {train_s:.0f} s.\n\n{table}\n")
    (out / "metrics.json").write_text(
        json.dumps({"task": args.task, "train_seconds": train_s, "metrics": rows}, indent=2)
    )
    query.obsm["spatial_true"] = truth
    color = None
    gradient = query.uns.get("task", {}).get("gradient")
    if gradient is not None:  # colour by depth across the layers, so misplaced cells stand out
        query.obs["layer_depth"] = truth @ np.asarray(gradient, dtype=float)
        color = "layer_depth"
    fig = pl.reconstruction(query, basis="X_spatialedm", truth="spatial_true", color=color, show=False)
    fig.savefig(out / "reconstruction.png", dpi=120, bbox_inches="tight")
    model.save(str(out / "model"), overwrite=True)
    print(f"Saved {out / 'reconstruction.png'}, {out / 'metrics.json'} and the model in {out / 'model'}.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spatialedm`` command.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    Exit status.

    Examples
    --------
    >>> main(["--help"])  # doctest: +SKIP
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        {"fit": _fit, "predict": _predict, "demo": _demo}[args.command](args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
