"""A self-contained HTML report of a study: tables, figures, parameters and software versions.

The page is one HTML file with inline CSS and figures embedded as base64 data URIs: no
external links, fonts, scripts or images, so it can be archived, mailed or opened offline and
renders the same everywhere.

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
import html
import io
import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

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

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2430;
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 40px; background: #fff;
  min-height: 100vh; box-shadow: 0 0 0 1px #e3e6ea; }
header h1 { margin: 0 0 4px; font-size: 28px; line-height: 1.25; }
header .subtitle { margin: 0; color: #5b6472; }
header .generated { margin: 6px 0 0; color: #7a8391; font-size: 13px; }
nav.toc { margin: 20px 0 8px; padding: 12px 18px; background: #f7f8fa; border: 1px solid #e3e6ea;
  border-radius: 6px; }
nav.toc h2 { margin: 0 0 6px; font-size: 15px; text-transform: uppercase; letter-spacing: .04em;
  color: #5b6472; border: 0; padding: 0; }
nav.toc ol { margin: 0; padding-left: 22px; columns: 2; column-gap: 40px; }
nav.toc a { color: #1f5fbf; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section { margin-top: 30px; }
h2 { font-size: 20px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
p { margin: 0 0 10px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
  background: #f1f3f5; padding: 1px 4px; border-radius: 3px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 4px 0 6px; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e3e6ea; text-align: left; vertical-align: top; }
thead th { background: #2f3b4c; color: #fff; font-weight: 600; border-bottom: 0; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f7f8fa; }
tbody tr:hover { background: #eef4ff; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.neg { color: #1f4fbf; }
td.pos { color: #c0392b; }
table.params td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 13px; white-space: nowrap; width: 30%; }
figure { margin: 6px 0 0; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto;
  border: 1px solid #e3e6ea; border-radius: 4px; }
.caption, figcaption { color: #5b6472; font-size: 13px; margin-top: 6px; }
footer { margin-top: 40px; padding-top: 12px; border-top: 2px solid #e3e6ea; color: #5b6472;
  font-size: 13px; }
footer h2 { font-size: 16px; border: 0; }
footer table { width: auto; font-size: 13px; }
footer td, footer th { padding: 3px 14px 3px 0; border-bottom: 1px solid #eef0f3; }
@media print { body { background: #fff; } main { box-shadow: none; } nav.toc { display: none; } }
"""


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


def _paragraphs(text: str) -> str:
    """Escaped paragraphs (blank-line separated), with `code` spans."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if not block.strip():
            continue
        escaped = html.escape(" ".join(block.split()))
        escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
        out.append(f"<p>{escaped}</p>")
    return "\n".join(out)


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


def _table_html(
    table: pd.DataFrame,
    *,
    decimals: int | Mapping[str, int],
    index: bool | Literal["auto"],
    signed: bool | Sequence[str],
) -> str:
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
    num_attr = ' class="num"'
    head = "".join(
        f'<th scope="col"{num_attr if num else ""}>{html.escape(c)}</th>'
        for c, num in zip(columns, numeric, strict=True)
    )
    rows = []
    for values in frame.itertuples(index=False, name=None):
        cells = []
        for v, dec, sgn in zip(values, col_decimals, col_signed, strict=True):
            text, cls = _format_cell(v, dec)
            if sgn and cls == "num" and np.isfinite(v) and v != 0:
                cls += " neg" if v < 0 else " pos"
            attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{attr}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "\n".join(rows) if rows else f'<tr><td colspan="{len(columns)}">(no rows)</td></tr>'
    return f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


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
    body: str


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

    def _add(self, name: str, body: str) -> Report:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Report: a section name must be a non-empty string, got {name!r}")
        self._sections.append(_Section(name, _slug(name, self._anchors), body))
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
        body = _paragraphs(str(text))
        if name is None:
            if self._sections:
                self._sections[-1].body += "\n" + body
                return self
            name = "Notes"
        return self._add(name, body)

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
        body = _table_html(table, decimals=decimals, index=index, signed=signed)
        if caption:
            body += f'\n<p class="caption">{html.escape(caption)}</p>'
        return self._add(name, body)

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
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        body = f'<figure><img src="{uri}" alt="{html.escape(name, quote=True)}">{cap}</figure>'
        return self._add(name, body)

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
        rows = "\n".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(_value_text(v))}</td></tr>" for k, v in _flatten(parameters)
        )
        body = (
            '<div class="table-wrap"><table class="params">\n'
            '<thead><tr><th scope="col">parameter</th><th scope="col">value</th></tr></thead>\n'
            f"<tbody>\n{rows}\n</tbody>\n</table></div>"
        )
        if caption:
            body += f'\n<p class="caption">{html.escape(caption)}</p>'
        return self._add(name, body)

    def to_html(self) -> str:
        """The whole page as an HTML5 string (inline CSS, no external resources).

        Returns
        -------
        str
            The document.
        """
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        versions = software_versions()
        toc = "\n".join(f'<li><a href="#{s.anchor}">{html.escape(s.name)}</a></li>' for s in self._sections)
        toc += '\n<li><a href="#software-versions">Software versions</a></li>'
        sections = "\n".join(
            f'<section id="{s.anchor}">\n<h2>{html.escape(s.name)}</h2>\n{s.body}\n</section>' for s in self._sections
        )
        version_rows = "\n".join(
            f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in versions.items()
        )
        subtitle = f'<p class="subtitle">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="brainarr {html.escape(versions["brainarr"])}">
<title>{html.escape(self.title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>{html.escape(self.title)}</h1>
{subtitle}
<p class="generated">Written {stamp} with brainarr {html.escape(versions["brainarr"])}</p>
</header>
<nav class="toc" id="contents">
<h2>Contents</h2>
<ol>
{toc}
</ol>
</nav>
{sections}
<footer id="software-versions">
<h2>Software versions</h2>
<table>
<tbody>
{version_rows}
</tbody>
</table>
</footer>
</main>
</body>
</html>
"""

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
