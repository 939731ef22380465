"""Sphinx configuration for the brainarr documentation.

The build is offline (no intersphinx fetching) and is meant to pass with ``-W --keep-going``::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import sphinx_autosummary_accessors

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the source tree, when brainarr is not installed

import brainarr  # noqa: E402

project = "brainarr"
author = "brainarr developers"
copyright = "brainarr developers, BSD-3-Clause"
release = brainarr.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_autosummary_accessors",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]

# API reference: one stub page per public object, generated from the docstrings.
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# Markdown pages (scale.md and friends) use MyST; ``$...$`` and ``$$...$$`` maths are allowed.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# No network during the build: no intersphinx mappings.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = os.environ.get("BRAINARR_DOCS_THEME", "alabaster")
html_title = f"brainarr {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Lazy, labelled, scalable resting-state fMRI"}

nitpicky = False

_SCALE_TOCTREE = ".. toctree::\n   :maxdepth: 2\n\n   scale\n"


def _insert_scale_page(app, docname, source):
    """Put ``scale.md`` (the detailed scaling guide) in the toctree of ``scaling.rst`` if it exists."""
    if docname == "scaling":
        marker = ".. scale-toctree"
        lines = source[0].splitlines(keepends=True)
        has_page = (HERE / "scale.md").exists()
        source[0] = "".join((_SCALE_TOCTREE if has_page else "") if line.startswith(marker) else line for line in lines)


def setup(app):
    """Register the scale.md hook."""
    app.connect("source-read", _insert_scale_page)
    return {"parallel_read_safe": True}
