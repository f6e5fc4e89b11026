"""Sphinx configuration for spatialedm."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "spatialedm"
author = "spatialedm developers"
copyright = "2026, spatialedm developers"
try:
    release = _version("spatialedm")
except Exception:  # noqa: BLE001 - docs can build from a source tree
    release = "0.0.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_member_order = "groupwise"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = (
    "sphinx_book_theme" if __import__("importlib.util").util.find_spec("sphinx_book_theme") else "alabaster"
)
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
}
