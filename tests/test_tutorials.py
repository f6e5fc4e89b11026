"""Execute every tutorial notebook with small settings, so that a broken tutorial fails CI.

Each notebook in ``tutorials/`` reads ``SPATIALEDM_TUTORIAL_FAST``; with ``1`` it trains for a few
epochs on small sets (30-60 s per notebook on 2 CPU cores, most of it imports). The notebook is executed
from a temporary copy, so the outputs stored in ``tutorials/*.ipynb`` (rendered by the docs) are never
overwritten. Needs the ``tutorials`` extra (``pip install -e ".[tutorials]"``); skipped without it.

The executions are marked ``slow`` (together about 2.5 minutes, which would double the default run):
``.ci/run`` runs them as their own step, ``python -m pytest -q -m slow tests/test_tutorials.py``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
# Checked without importing them (squidpy takes many seconds to import): the kernel imports them.
for _name in ("ipykernel", "squidpy"):
    if importlib.util.find_spec(_name) is None:
        pytest.skip(f"{_name} is not installed (pip install -e '.[tutorials]')", allow_module_level=True)

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
KERNEL = "spatialedm-tutorial-test"
CELL_TIMEOUT_S = 600


@pytest.fixture
def kernel_here(tmp_path, monkeypatch):
    """A kernel spec that runs this interpreter, whatever ``python`` is on PATH."""
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
