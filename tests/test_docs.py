"""The documentation: API pages cover the public API, and the Sphinx build passes with -W."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
MODULES = [
    "io", "raw", "spatial", "cohort", "datasets", "preprocess", "metrics", "stats", "plotting",
    "report", "config", "pipeline", "study", "export", "backend", "testing", "exceptions", "cli",
]  # fmt: skip


def _entries(page: Path) -> set[str]:
    text = page.read_text()
    listed = set(re.findall(r"^   ([A-Za-z_][\w.]*)\s*$", text, flags=re.M))
    listed |= set(re.findall(r"^\.\. autodata:: (\w+)", text, flags=re.M))
    return listed


@pytest.mark.parametrize("name", MODULES)
def test_api_page_lists_every_public_name(name):
    module = importlib.import_module(f"brainarr.{name}")
    page = DOCS / "api" / f"{name}.rst"
    assert page.exists(), f"docs/api/{name}.rst is missing"
    missing = sorted(set(module.__all__) - _entries(page))
    assert not missing, f"docs/api/{name}.rst does not list {missing}"
    index = (DOCS / "api" / "index.rst").read_text()
    assert re.search(rf"^   {name}$", index, flags=re.M), f"docs/api/index.rst does not link {name}"


@pytest.mark.parametrize("cls_name", ["BrainDataArrayAccessor", "BrainDatasetAccessor"])
def test_accessor_page_lists_every_method(cls_name):
    import brainarr.accessor as accessor

    cls = getattr(accessor, cls_name)
    prefix = "DataArray.brain." if "DataArray" in cls_name else "Dataset.brain."
    methods = {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}
    listed = {e.removeprefix(prefix) for e in _entries(DOCS / "api" / "accessor.rst") if e.startswith(prefix)}
    assert methods == listed


def test_every_page_is_in_a_toctree():
    pages = {p.stem for p in DOCS.glob("*.rst")} - {"index"}
    index = (DOCS / "index.rst").read_text()
    linked = set(re.findall(r"^   ([\w/]+)$", index, flags=re.M))
    assert pages <= linked, f"pages not linked from index.rst: {sorted(pages - linked)}"


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    cmd = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
        "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    html = tmp_path / "html"
    for page in ["index", "metrics", "from_restplus", "benchmarks", "api/generated/brainarr.metrics.alff"]:
        assert (html / f"{page}.html").exists(), page
    alff = (html / "api/generated/brainarr.metrics.alff.html").read_text()
    assert "fALFF" in alff and "math" in alff  # the docstring's Notes rendered with maths
    accessor = html / "api/generated/xarray.DataArray.brain.alff.html"
    assert accessor.exists()
