"""Sphinx configuration for spatialedm.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``pip install -e ".[doc]"``).
The tutorials are rendered from the outputs stored in ``tutorials/*.ipynb`` (never executed here); they
are copied into ``docs/tutorials/`` at the start of each build, because Sphinx reads only files below
``docs/``.
"""

from __future__ import annotations

import filecmp
import inspect
import os
import re
import shutil
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "spatialedm"
author = "spatialedm developers"
copyright = "2026, spatialedm developers"
try:
    release = _version("spatialedm")
except Exception:  # noqa: BLE001 - docs can build from a source tree
    release = "0.0.0"
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]

# -- API reference -------------------------------------------------------------------------------------
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# -- notebooks and MyST --------------------------------------------------------------------------------
nb_execution_mode = "off"  # render the outputs stored in tutorials/*.ipynb; CI executes them in tests
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- HTML ----------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "spatialedm"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": "https://github.com/spatialedm/spatialedm",
    "use_repository_button": True,
    "path_to_docs": "docs",
}

# -- cross-references to other projects ------------------------------------------------------------------
# Off by default: the inventories are fetched over the network, which CI machines may not reach, and a
# failed fetch is a warning (an error under -W). SPATIALEDM_DOCS_INTERSPHINX=1 turns the links on.
intersphinx_mapping = {}
if os.environ.get("SPATIALEDM_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
    }


# -- the tutorials: copy the stored notebooks below docs/ -----------------------------------------------
def _copy_tutorials() -> None:
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    sources = sorted((ROOT / "tutorials").glob("*.ipynb"))
    names = {p.name for p in sources}
    for stale in target.glob("*.ipynb"):
        if stale.name not in names:
            stale.unlink()
    for src in sources:
        dst = target / src.name
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            shutil.copy2(src, dst)  # only changed files, so incremental builds stay incremental


_copy_tutorials()

# -- every public name of the package must be in api.md -------------------------------------------------
MODULES = ("baselines", "datasets", "diagnostics", "edm", "geometry", "metrics", "pl", "transfer")


def public_names() -> set[str]:
    """Fully qualified public names: each module's ``__all__`` and its own public functions and classes,
    the top-level classes, and the public methods that SpatialEDM defines."""
    import spatialedm

    names = {f"spatialedm.{n}" for n in spatialedm.__all__ if n not in MODULES}
    for mod_name in MODULES:
        mod = getattr(spatialedm, mod_name)
        members = set(getattr(mod, "__all__", ()))
        members |= {
            n
            for n, obj in vars(mod).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", "").startswith(mod.__name__)
        }
        names |= {f"spatialedm.{mod_name}.{n}" for n in members}
    for cls in spatialedm.SpatialEDM.__mro__:
        if cls.__module__.startswith("spatialedm"):
            names |= {
                f"spatialedm.SpatialEDM.{n}"
                for n, obj in vars(cls).items()
                if not n.startswith("_") and (callable(obj) or isinstance(obj, (classmethod, staticmethod)))
            }
    return names


def documented_names() -> set[str]:
    """Names listed in the autosummary tables of api.md (relative to ``spatialedm``)."""
    out, in_table = set(), False
    for line in (HERE / "api.md").read_text().splitlines():
        if line.strip().startswith(".. autosummary::"):
            in_table = True
            continue
        if in_table:
            if line.strip() == "" or line.strip().startswith(":"):
                continue
            if not line.startswith(" "):
                in_table = False
                continue
            m = re.fullmatch(r"\s+([A-Za-z_][\w.]*)\s*", line)
            if m:
                out.add(f"spatialedm.{m.group(1)}")
    return out


def _check_api_coverage(app) -> None:
    from sphinx.util import logging as sphinx_logging

    missing = sorted(public_names() - documented_names())
    if missing:
        sphinx_logging.getLogger(__name__).warning(
            "docs/api.md does not list these public names: %s", ", ".join(missing)
        )


def setup(app):
    """Hook the API-coverage check into the build (a warning, so an error under -W)."""
    app.connect("builder-inited", _check_api_coverage)
