"""Tests of brainarr.report: a self-contained HTML page, and its rendering in headless Chromium."""

from __future__ import annotations

import base64
import importlib.metadata
import os
import platform
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import brainarr
from brainarr.report import Report, software_versions

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "screenshot_report.py"
CHROMIUM = Path("/usr/bin/chromium")

VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "wbr", "area", "base", "embed"}


class StrictPage(HTMLParser):
    """Collects tags, attributes, ids and text; raises on unbalanced or misnested tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "style":
            self._in_style = True
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            raise AssertionError(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        self.stack.pop()
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        elif data.strip():
            self.text.append(data.strip())


def parse(text: str) -> StrictPage:
    page = StrictPage()
    page.feed(text)
    page.close()
    assert page.stack == [], f"unclosed tags {page.stack}"
    return page


def _table_rows(text: str, after: str) -> list[list[str]]:
    """Cell texts of the first table following the ``<h2>`` heading ``after``."""

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell, self.on, self.done, self.tag = [], None, False, False, None

        def handle_starttag(self, tag, attrs):
            self.tag = tag
            if self.on and not self.done and tag == "tr":
                self.rows.append([])
            if self.on and not self.done and tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None
            if self.on and tag == "table":
                self.done = True

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data
            if data == after and self.tag == "h2":
                self.on = True

    p = Rows()
    p.feed(text)
    return p.rows


def _cluster_table():
    return pd.DataFrame(
        {
            "cluster": [1, -1],
            "region": ["Postcentral_R", "Precentral_L <b>"],
            "hemisphere": ["R", "L"],
            "size": [695, 534],
            "x": [48.0, -57.0],
            "y": [-21.0, -12.0],
            "z": [36.0, 30.0],
            "peak_t": [4.961, -5.6412],
            "p": [0.00012, np.nan],
        }
    )


def _figure():
    fig = Figure(figsize=(8, 1.5))
    ax = fig.add_subplot()
    ax.imshow(np.linspace(-1, 1, 100).reshape(1, 100), cmap="coolwarm", aspect="auto")
    return fig


@pytest.fixture
def report():
    rep = Report("ALFF: patients vs controls", subtitle="31 patients, 32 controls")
    rep.add_text("Two-sample t-test with `age` and `sex`.\n\nGRF corrected.", name="Methods")
    rep.add_parameters({"grf": {"voxel_p": 0.01, "cluster_p": 0.01}, "fwhm": [6.0, 6.0, 6.0], "tr": 2.0})
    rep.add_table(
        "Clusters",
        _cluster_table(),
        caption="Peak MNI coordinates",
        decimals={"x": 0, "y": 0, "z": 0, "p": 4},
        signed=["peak_t"],
    )
    rep.add_figure("Montage", _figure(), caption="Axial slices")
    return rep


class TestReport:
    def test_self_contained_and_well_formed(self, report, tmp_path):
        path = report.write(tmp_path / "out" / "report.html")
        text = path.read_text(encoding="utf-8")
        page = parse(text)
        tags = [t for t, _ in page.tags]
        for banned in ("script", "link", "iframe", "object", "embed", "base"):
            assert banned not in tags
        for tag, attrs in page.tags:
            for key in ("src", "href", "srcset", "action", "data", "poster"):
                value = attrs.get(key)
                if value is None:
                    continue
                assert not value.lower().startswith(("http:", "https:", "//", "file:", "ftp:")), (tag, key)
                if key == "href":
                    assert value.startswith("#") and value[1:] in page.ids, value
        assert "url(" not in page.style and "@import" not in page.style
        assert "http" not in page.style
        imgs = [a for t, a in page.tags if t == "img"]
        assert len(imgs) == 1
        prefix = "data:image/png;base64,"
        assert imgs[0]["src"].startswith(prefix) and imgs[0]["alt"] == "Montage"
        png = base64.b64decode(imgs[0]["src"][len(prefix) :])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 50 and height > 50
        assert len(page.ids) == len(set(page.ids))
        assert not [p for p in path.parent.iterdir() if p.name != "report.html"]

    def test_contents_in_order(self, report):
        page = parse(report.to_html())
        assert report.sections == ["Methods", "Parameters", "Clusters", "Montage"]
        links = [a["href"] for t, a in page.tags if t == "a"]
        assert links == ["#methods", "#parameters", "#clusters", "#montage", "#software-versions"]
        section_ids = [a["id"] for t, a in page.tags if t == "section"]
        assert section_ids == ["methods", "parameters", "clusters", "montage"]
        assert page.text[0] == "ALFF: patients vs controls"
        assert "Axial slices" in page.text and "Peak MNI coordinates" in page.text
        assert "GRF corrected." in page.text
        assert [t for t, _ in page.tags].count("code") == 2  # `age` and `sex`
        assert "<code>age</code>" in report.to_html()

    def test_table_cells(self, report):
        text = report.to_html()
        rows = _table_rows(text, "Clusters")
        assert rows[0] == ["cluster", "region", "hemisphere", "size", "x", "y", "z", "peak_t", "p"]
        assert rows[1] == ["1", "Postcentral_R", "R", "695", "48", "-21", "36", "4.96", "0.0001"]
        assert rows[2] == [
            "-1",
            "Precentral_L <b>",
            "L",
            "534",
            "-57",
            "-12",
            "30",
            "-5.64",
            "",
        ]
        assert "Precentral_L &lt;b&gt;" in text  # escaped, not markup
        assert '<td class="num pos">4.96</td>' in text
        assert '<td class="num neg">-5.64</td>' in text
        assert '<td class="num">48</td>' in text  # coordinates are not sign-coloured
        params = _table_rows(text, "Parameters")
        assert params[1:] == [
            ["grf.voxel_p", "0.01"],
            ["grf.cluster_p", "0.01"],
            ["fwhm", "6, 6, 6"],
            ["tr", "2"],
        ]

    def test_index_shown_when_meaningful(self):
        table = pd.DataFrame({"patient": ["64.52 ± 16.40"], "p": [0.0004]}, index=pd.Index(["age"], name="variable"))
        rep = Report("T1").add_table("Table 1", table).add_table("Plain", pd.DataFrame({"a": [1]}))
        text = rep.to_html()
        assert _table_rows(text, "Table 1")[:2] == [
            ["variable", "patient", "p"],
            ["age", "64.52 ± 16.40", "0.0004"],
        ]
        assert _table_rows(text, "Plain") == [["a"], ["1"]]

    def test_software_versions_footer(self, report):
        import dask
        import nibabel
        import nilearn
        import numpy
        import scipy
        import xarray
        import zarr

        expected = {
            "python": platform.python_version(),
            "brainarr": brainarr.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "xarray": xarray.__version__,
            "dask": dask.__version__,
            "zarr": zarr.__version__,
            "nibabel": nibabel.__version__,
            "nilearn": nilearn.__version__,
        }
        rows = dict(_table_rows(report.to_html(), "Software versions"))
        for name, version in expected.items():
            assert rows[name] == version, name
        assert software_versions()["pandas"] == importlib.metadata.version("pandas")

    def test_duplicate_names_get_unique_anchors(self):
        rep = Report("x").add_text("a", name="Results").add_text("b", name="Results").add_text("c")
        page = parse(rep.to_html())
        ids = [a["id"] for t, a in page.tags if t == "section"]
        assert ids == ["results", "results-2"]
        assert "c" in page.text  # unnamed text joins the last section
        assert Report("y").add_text("alone").sections == ["Notes"]

    def test_figure_from_files(self, tmp_path):
        fig = _figure()
        fig.savefig(tmp_path / "f.png")
        fig.savefig(tmp_path / "f.svg")
        page = parse(Report("f").add_figure("png", tmp_path / "f.png").add_figure("svg", tmp_path / "f.svg").to_html())
        srcs = [a["src"] for t, a in page.tags if t == "img"]
        assert srcs[0].startswith("data:image/png;base64,")
        assert srcs[1].startswith("data:image/svg+xml;base64,")
        assert b"<svg" in base64.b64decode(srcs[1].split(",", 1)[1])

    def test_atomic_write_keeps_previous_file_on_failure(self, report, tmp_path, monkeypatch):
        path = report.write(tmp_path / "r.html")
        before = path.read_bytes()
        monkeypatch.setattr(Report, "to_html", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            report.write(path)
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["r.html"]

    def test_markup_and_style_come_from_the_packaged_template(self, report):
        from importlib.resources import files

        templates = files("brainarr") / "templates"
        css = (templates / "report.css").read_text(encoding="utf-8")
        page = parse(report.to_html())
        assert page.style.strip() == css.strip()
        assert "<!DOCTYPE html>" in (templates / "report.html").read_text(encoding="utf-8")

    def test_every_value_is_escaped(self):
        evil = "<script>alert('x')</script>"
        rep = Report(evil, subtitle=evil).add_text(f"`{evil}` {evil}", name=evil)
        rep.add_parameters({evil: evil}).add_table(evil, pd.DataFrame({evil: [evil]}), caption=evil)
        text = rep.to_html()
        page = parse(text)
        assert "script" not in [t for t, _ in page.tags]
        assert "<script>" not in text
        assert page.text.count(evil) >= 8

    def test_bad_inputs(self, tmp_path):
        with pytest.raises(ValueError, match="title"):
            Report("  ")
        rep = Report("x")
        with pytest.raises(TypeError, match=r"add_table\('T'\).*DataFrame.*list"):
            rep.add_table("T", [1, 2])
        with pytest.raises(TypeError, match=r"add_figure\('F'\).*Figure"):
            rep.add_figure("F", 42)
        with pytest.raises(FileNotFoundError, match=r"add_figure\('F'\).*missing.png"):
            rep.add_figure("F", tmp_path / "missing.png")
        with pytest.raises(ValueError, match=r"\.gif"):
            rep.add_figure("F", tmp_path / "x.gif")
        with pytest.raises(TypeError, match="mapping"):
            rep.add_parameters([("a", 1)])
        with pytest.raises(ValueError, match="section name"):
            rep.add_table("", pd.DataFrame())
        with pytest.raises(ValueError, match=r"r\.txt.*\.html"):
            rep.write(tmp_path / "r.txt")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian package 'chromium')")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from matplotlib.image import imread

    html_path = report.write(tmp_path / "report.html")
    out = tmp_path / "shot.png"
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(html_path), str(out), "--width", "1000", "--height", "1400"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _png_size(out) == (1000, 1400)
    pixels = imread(out)[..., :3]
    # the dark table header (#2f3b4c) and the embedded coolwarm figure (red and blue) are drawn
    header = np.all(np.abs(pixels - np.array([0x2F, 0x3B, 0x4C]) / 255) < 0.03, axis=-1)
    assert header.sum() > 1000
    red = (pixels[..., 0] > 0.65) & (pixels[..., 2] < 0.35)
    blue = (pixels[..., 2] > 0.65) & (pixels[..., 0] < 0.45)
    assert red.sum() > 200 and blue.sum() > 200


def test_screenshot_script_reports_missing_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.html"), str(tmp_path / "o.png")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "none.html" in proc.stderr
