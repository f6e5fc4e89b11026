"""Execute every tutorial notebook with small settings, so that a broken tutorial fails CI.

Each notebook in ``tutorials/`` reads ``SPATIALEDM_TUTORIAL_FAST``; with ``1`` it trains for a few
epochs on small sets (30-60 s per notebook on 2 CPU cores, most of it imports). The notebook is executed
from a temporary copy, so the outputs stored in ``tutorials/*.ipynb`` (rendered by the docs) are never
overwritten. Needs the ``tutorials`` extra (``pip install -e ".[tutorials]"``); skipped without it.

The executions are marked ``slow`` (together about 2.5 minutes, which would double the default run):
``.ci/run`` runs them as their own step, ``python -m pytest -q -m slow tests/test_tutorials.py``.

The stored notebooks themselves are checked in the default run, without executing anything: a code cell
that draws (``sem.pl.``, ``sq.pl.``, ``sc.pl.``, ``plt.``, ``.plot(``) must store its figure, or the
rendered page shows nothing (a notebook executed with ``MPLBACKEND=Agg`` stores no images).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
KERNEL = "spatialedm-tutorial-test"
CELL_TIMEOUT_S = 600
#: Calls that draw a figure in a notebook cell.
PLOTTING = re.compile(r"\b(?:sem|sq|sc)\.pl\.|\bplt\.|\.plot\(")


def _require_execution_packages():
    # Checked without importing them (squidpy takes many seconds to import): the kernel imports them.
    for name in ("nbformat", "nbclient", "ipykernel", "squidpy"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install -e '.[tutorials]')")


def _code(cell) -> str:
    """A code cell's source without its comment lines (a comment may name a plotting call)."""
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))


def plotting_cells_without_figures(notebook: Path) -> list[str]:
    """The code cells of a stored notebook that call a plotting function but store no PNG image."""
    cells = json.loads(notebook.read_text())["cells"]
    return [
        f"cell {i}: {_code(cell).strip().splitlines()[0]!r}"
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        and PLOTTING.search(_code(cell))
        and not any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_tutorial_keeps_its_figures(notebook):
    assert plotting_cells_without_figures(notebook) == [], (
        f"{notebook.name} was stored without the figures of these cells; re-execute it with the inline "
        "backend (MPLBACKEND unset), e.g. OMP_NUM_THREADS=1 jupyter execute --inplace"
    )


def test_the_figure_check_sees_a_missing_figure(tmp_path):
    image = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}}
    cells = [
        {"cell_type": "code", "source": ["import matplotlib.pyplot as plt\n"], "outputs": []},
        {"cell_type": "code", "source": "axes = sem.pl.history(model)", "outputs": []},
        {
            "cell_type": "code",
            "source": ["fig, ax = plt.subplots()\n", "ax.plot([0, 1])"],
            "outputs": [image],
        },
        {"cell_type": "code", "source": ["# sq.pl.spatial_scatter(adata)\n", "x = 1"], "outputs": []},
        {"cell_type": "markdown", "source": "sc.pl.umap(adata)"},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert plotting_cells_without_figures(path) == ["cell 1: 'axes = sem.pl.history(model)'"]


@pytest.fixture
def kernel_here(tmp_path, monkeypatch):
    """A kernel spec that runs this interpreter, whatever ``python`` is on PATH."""
    _require_execution_packages()
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def test_every_tutorial_is_collected():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "cells_onto_spots", "embryo_3d", "diagnostics"}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_executes(notebook, tmp_path, monkeypatch, kernel_here):
    import nbclient
    import nbformat

    monkeypatch.setenv("SPATIALEDM_TUTORIAL_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    work = tmp_path / "run"
    work.mkdir()
    copy = work / notebook.name
    shutil.copy2(notebook, copy)
    stored = notebook.read_bytes()

    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_here, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    nbformat.write(nb, copy)

    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
    assert notebook.read_bytes() == stored, "the stored notebook must not be modified by its test"
