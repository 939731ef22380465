"""A self-contained HTML report of a study: tables, figures, parameters and software versions.

The page is one HTML file with inline CSS and figures embedded as base64 data URIs: no
external links, fonts, scripts or images, so it can be archived, mailed or opened offline and
renders the same everywhere. Its markup and style are the Jinja template
``brainarr/templates/report.html`` and ``report.css`` (package data); this module only
formats the values that fill it, and the template escapes every one of them.

Examples
--------
>>> import pandas as pd
>>> from brainarr.report import Report
>>> rep = Report("ALFF: patients vs controls").add_parameters({"voxel_p": 0.01, "cluster_p": 0.01})
>>> rep = rep.add_table("Clusters", pd.DataFrame({"region": ["Postcentral_L"], "t": [-5.6]}))
>>> rep.sections
['Parameters', 'Clusters']
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import io
import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd

__all__ = ["Report", "software_versions"]

#: Packages whose versions every report lists.
VERSIONED_PACKAGES = (
    "brainarr",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "dask",
    "distributed",
    "zarr",
    "nibabel",
    "nilearn",
    "matplotlib",
)

_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _version_of(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        try:
            module = __import__(name)
        except ImportError:
            return "not installed"
        return str(getattr(module, "__version__", "unknown"))


def software_versions() -> dict[str, str]:
    """Versions of Python and of the packages a brainarr analysis depends on.

    Returns
    -------
    dict of str to str
        ``{"python": "3.11.7", "brainarr": ..., "numpy": ..., ...}`` (:data:`VERSIONED_PACKAGES`);
        ``"not installed"`` for a missing optional package, plus ``"platform"``.
    """
    out = {"python": platform.python_version()}
    out.update({name: _version_of(name) for name in VERSIONED_PACKAGES})
    out["platform"] = platform.platform(terse=True)
    return out


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


@dataclass(frozen=True)
class _Text:
    """Paragraphs, each a list of ``(is_code, text)`` parts."""

    paragraphs: list[list[tuple[bool, str]]]
    kind: str = "text"


@dataclass(frozen=True)
class _Table:
    """A table: column ``(name, numeric)`` pairs and rows of ``(text, css classes)`` cells."""

    columns: list[tuple[str, bool]]
    rows: list[list[tuple[str, str]]]
    caption: str | None = None
    css_class: str = ""
    empty: str = "(no rows)"
    kind: str = "table"


@dataclass(frozen=True)
class _Figure:
    """An image embedded as a data URI."""

    uri: str
    alt: str
    caption: str | None = None
    kind: str = "figure"


def _paragraphs(text: str) -> _Text:
    """Paragraphs (blank-line separated, whitespace collapsed), with `code` spans."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if not block.strip():
            continue
        parts = re.split(r"`([^`]+)`", " ".join(block.split()))
        out.append([(i % 2 == 1, part) for i, part in enumerate(parts) if part])
    return _Text(out)


def _format_cell(value: Any, decimals: int) -> tuple[str, str]:
    """Cell text and CSS classes."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "", ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), ""
    if isinstance(value, (int, np.integer)):
        return f"{int(value)}", "num"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        small = 10.0 ** (-decimals) if decimals > 0 else 0.0
        text = f"{v:.{decimals}f}" if v == 0 or small <= abs(v) < 1e6 else f"{v:.{max(decimals, 1)}g}"
        return text, "num"
    return str(value), ""


def _table(
    table: pd.DataFrame,
    *,
    decimals: int | Mapping[str, int],
    index: bool | Literal["auto"],
    signed: bool | Sequence[str],
    caption: str | None,
) -> _Table:
    if index == "auto":
        index = not isinstance(table.index, pd.RangeIndex) or table.index.name is not None
    frame = table.reset_index() if index else table
    columns = [str(c) for c in frame.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns
    ]
    default = decimals if isinstance(decimals, int) else 2
    per_column = {} if isinstance(decimals, int) else {str(k): int(v) for k, v in decimals.items()}
    col_decimals = [per_column.get(c, default) for c in columns]
    if isinstance(signed, bool):
        col_signed = [signed] * len(columns)
    else:
        col_signed = [c in {str(n) for n in signed} for c in columns]
    rows = []
    for values in frame.itertuples(index=False, name=None):
        cells = []
        for v, dec, sgn in zip(values, col_decimals, col_signed, strict=True):
            text, cls = _format_cell(v, dec)
            if sgn and cls == "num" and np.isfinite(v) and v != 0:
                cls += " neg" if v < 0 else " pos"
            cells.append((text, cls))
        rows.append(cells)
    return _Table(list(zip(columns, numeric, strict=True)), rows, caption=caption or None)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(_flatten(value, prefix=f"{name}."))
        else:
            items.append((name, value))
    return items


def _value_text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value) if value else "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _figure_data_uri(figure: Any, *, dpi: float, name: str) -> str:
    if isinstance(figure, (str, os.PathLike)):
        path = Path(figure)
        mime = _IMAGE_TYPES.get(path.suffix.lower())
        if mime is None:
            raise ValueError(
                f"Report.add_figure({name!r}): {path} is not a PNG, SVG or JPEG file (suffix {path.suffix!r})"
            )
        if not path.is_file():
            raise FileNotFoundError(f"Report.add_figure({name!r}): no such image file {path}")
        data = path.read_bytes()
    elif hasattr(figure, "savefig"):
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor=figure.get_facecolor())
        data, mime = buf.getvalue(), "image/png"
    else:
        raise TypeError(
            f"Report.add_figure({name!r}): expected a matplotlib Figure or an image file path, "
            f"got {type(figure).__name__}"
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass
class _Section:
    name: str
    anchor: str
    blocks: list[_Text | _Table | _Figure] = field(default_factory=list)


@functools.cache
def _environment() -> jinja2.Environment:
    """The Jinja environment of the report templates (package data), escaping every value."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("brainarr", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


class Report:
    """Build one self-contained HTML page of a study's results.

    Sections appear in the order they are added, each with an anchor listed in the table of
    contents; the footer lists the software versions (:func:`software_versions`) and the time
    the page was written.

    Parameters
    ----------
    title : str
        Page title (``<h1>``).
    subtitle : str, optional
        A line under the title (e.g. the cohort and the contrast).

    Examples
    --------
    >>> rep = Report("Seed FC").add_text("Left postcentral seed, GRF corrected.", name="Methods")
    >>> html_text = rep.to_html()
    >>> "Seed FC" in html_text and "Software versions" in html_text
    True
    """

    def __init__(self, title: str, *, subtitle: str | None = None) -> None:
        if not isinstance(title, str) or not title.strip():
            raise ValueError("Report: title must be a non-empty string")
        self.title = title
        self.subtitle = subtitle
        self._sections: list[_Section] = []
        self._anchors: set[str] = {"contents", "software-versions"}

    @property
    def sections(self) -> list[str]:
        """Names of the sections, in page order."""
        return [s.name for s in self._sections]

    def _add(self, name: str, block: _Text | _Table | _Figure) -> Report:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Report: a section name must be a non-empty string, got {name!r}")
        self._sections.append(_Section(name, _slug(name, self._anchors), [block]))
        return self

    def add_text(self, text: str, *, name: str | None = None) -> Report:
        """Add paragraphs of text (blank lines separate paragraphs; ```code``` spans allowed).

        Parameters
        ----------
        text : str
            Plain text; it is HTML-escaped.
        name : str, optional
            Section heading; without one the text joins the previous section (or opens an
            untitled "Notes" section).

        Returns
        -------
        Report
            ``self``, so calls can be chained.
        """
        block = _paragraphs(str(text))
        if name is None:
            if self._sections:
                self._sections[-1].blocks.append(block)
                return self
            name = "Notes"
        return self._add(name, block)

    def add_table(
        self,
        name: str,
        table: pd.DataFrame,
        *,
        caption: str | None = None,
        decimals: int | Mapping[str, int] = 2,
        index: bool | Literal["auto"] = "auto",
        signed: bool | Sequence[str] = False,
    ) -> Report:
        """Add a table (e.g. :func:`brainarr.stats.cluster_table` or :func:`~brainarr.stats.demographics`).

        Parameters
        ----------
        name : str
            Section heading.
        table : pandas.DataFrame
            The table; cells are HTML-escaped, numbers right-aligned.
        caption : str, optional
            Text under the table.
        decimals : int or mapping of str to int, default 2
            Decimals of float cells, for all columns or by column name (others get 2), e.g.
            ``{"x": 0, "y": 0, "z": 0}`` for MNI coordinates. Very small or large values use
            ``decimals`` significant digits instead.
        index : bool or "auto", default "auto"
            Show the index as the first column(s); "auto" shows it unless it is a plain
            unnamed range.
        signed : bool or sequence of str, default False
            Colour numeric cells by sign (positive red, negative blue), as t values in the
            study's tables: all numeric columns (True) or the named ones (``["peak_t"]``).

        Returns
        -------
        Report
            ``self``.
        """
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"Report.add_table({name!r}): expected a pandas DataFrame, got {type(table).__name__}")
        return self._add(name, _table(table, decimals=decimals, index=index, signed=signed, caption=caption))

    def add_figure(self, name: str, figure: Any, *, caption: str | None = None, dpi: float = 110) -> Report:
        """Add a figure, embedded as a base64 data URI (PNG for a matplotlib Figure).

        Parameters
        ----------
        name : str
            Section heading (also the image's ``alt`` text).
        figure : matplotlib.figure.Figure or path-like
            A figure (e.g. from :func:`brainarr.plotting.montage`), or a PNG/SVG/JPEG file.
        caption : str, optional
            Text under the figure.
        dpi : float, default 110
            Resolution of the embedded PNG of a Figure.

        Returns
        -------
        Report
            ``self``.
        """
        uri = _figure_data_uri(figure, dpi=dpi, name=name)
        return self._add(name, _Figure(uri, name, caption or None))

    def add_parameters(
        self, parameters: Mapping[str, Any], *, name: str = "Parameters", caption: str | None = None
    ) -> Report:
        """Add analysis parameters as a two-column table (nested mappings become dotted keys).

        Parameters
        ----------
        parameters : mapping
            E.g. ``{"grf": {"voxel_p": 0.01, "cluster_p": 0.01}, "fwhm_mm": 6}`` or a
            Dataset's ``attrs``.
        name : str, default "Parameters"
            Section heading.
        caption : str, optional
            Text under the table.

        Returns
        -------
        Report
            ``self``.
        """
        if not isinstance(parameters, Mapping):
            raise TypeError(f"Report.add_parameters: expected a mapping, got {type(parameters).__name__}")
        rows = [[(k, ""), (_value_text(v), "")] for k, v in _flatten(parameters)]
        columns = [("parameter", False), ("value", False)]
        return self._add(name, _Table(columns, rows, caption=caption or None, css_class="params", empty=""))

    def to_html(self) -> str:
        """The whole page as an HTML5 string (inline CSS, no external resources).

        Returns
        -------
        str
            The document.
        """
        return (
            _environment()
            .get_template("report.html")
            .render(
                title=self.title,
                subtitle=self.subtitle,
                stamp=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                versions=software_versions(),
                sections=self._sections,
            )
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` atomically (temporary file in the same folder, then rename).

        Parameters
        ----------
        path : str or path-like
            Output ``.html`` file; parent folders are created.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        path = Path(path)
        if path.suffix.lower() not in {".html", ".htm"}:
            raise ValueError(f"Report.write: {path} should end in .html")
        text = self.to_html()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def __repr__(self) -> str:
        return f"<Report {self.title!r}: {len(self._sections)} sections>"
