"""Figures of a brainarr study: axial t-map montages, seed-FC glass brains and QC plots.

The figures follow the layout of the study's figures: axial slice montages of thresholded t
maps (increases in red/yellow, decreases in blue, with a colour bar and the slice position in
MNI mm), and seed functional-connectivity results as nodes on a glass brain seen from the left,
the top and the right (seed dark blue, decreases light blue, increases orange).

matplotlib is imported only when a figure is drawn, so ``import brainarr`` stays fast; drawing is
done by :mod:`nilearn.plotting` on :class:`matplotlib.figure.Figure` objects that are not
registered with ``pyplot``, so no global figure state is touched and nothing needs closing.
Every function returns the :class:`~matplotlib.figure.Figure`; ``path=`` also saves it
(PNG, SVG or PDF, by suffix). Plotting needs the data, so it triggers computation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr

from brainarr._core.dims import SPATIAL, TIME
from brainarr._core.docs import fill_doc
from brainarr._core.validation import describe, get_affine
from brainarr.exceptions import DimensionError
from brainarr.io import to_nifti_image

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = [
    "DECREASE_COLOR",
    "INCREASE_COLOR",
    "SEED_COLOR",
    "STUDY_CUTS",
    "carpet",
    "connectome",
    "glass_brain",
    "montage",
    "motion",
    "save_figure",
    "study_cmap",
]

#: Axial slice positions (MNI z, mm) of the study's montages: -70 to +95 mm every 5 mm.
STUDY_CUTS: tuple[int, ...] = tuple(range(-70, 96, 5))
#: Node colours of the seed-FC glass brains (seed, decreased and increased clusters).
SEED_COLOR = "#00008b"  # dark blue
DECREASE_COLOR = "#87cefa"  # light (sky) blue
INCREASE_COLOR = "#ff8c00"  # (dark) orange

_GLASS_MODES = {"x", "y", "z", "l", "r", "xz", "yz", "yx", "xy", "lr", "lzr", "lyr", "lzry", "lyrz"}
_INSTALL_HINT = "brainarr plotting needs matplotlib (a dependency of brainarr): pip install matplotlib"


# --------------------------------------------------------------------------- helpers


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(_INSTALL_HINT) from err


def _new_figure(figsize: tuple[float, float], facecolor: str) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, facecolor=facecolor)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float = 150) -> Path:
    """Save a figure atomically (temporary file, then rename); the format follows the suffix.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or path-like
        Output file, e.g. ``"alff_montage.png"`` or ``".svg"``/``".pdf"``; parent folders are
        created.
    dpi : float, default 150
        Resolution of raster formats.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in {"png", "svg", "pdf", "jpg", "jpeg"}:
        raise ValueError(f"save_figure: unsupported figure format {path.suffix!r} for {path} (png, svg, pdf)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi, facecolor=fig.get_facecolor(), bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _as_image(obj: Any, *, name: str, func: str) -> Any:
    """A nibabel image (or a path nilearn reads) from a DataArray, image or file name."""
    if isinstance(obj, xr.DataArray):
        try:
            return to_nifti_image(obj)
        except (DimensionError, TypeError) as err:
            raise DimensionError(f"{func}: {name}: {err}") from err
    if isinstance(obj, (str, os.PathLike, nib.spatialimages.SpatialImage)):
        return obj
    raise TypeError(f"{func}: {name} must be a DataArray, a nibabel image or a file name, got {type(obj)}")


def _map_3d(t_map: Any, *, func: str, name: str = "t_map") -> tuple[xr.DataArray, float | None]:
    """The (x, y, z) map to draw and a threshold suggested by its metadata (GRF output)."""
    suggested = None
    if isinstance(t_map, xr.Dataset):
        if "t" not in t_map:
            raise ValueError(
                f"{func}: a Dataset {name} must have a 't' variable (output of ttest2/glm/grf); "
                f"it has {list(t_map.data_vars)}"
            )
        suggested = t_map.attrs.get("t_threshold")
        da = t_map["t"]
        if "affine" not in da.attrs and "affine" in t_map.attrs:
            da = da.assign_attrs(affine=t_map.attrs["affine"])
    elif isinstance(t_map, xr.DataArray):
        da = t_map
        suggested = da.attrs.get("t_threshold")
    else:
        raise TypeError(f"{func}: {name} must be an xarray DataArray (x, y, z) or a grf Dataset, got {type(t_map)}")
    if set(da.dims) != set(SPATIAL):
        raise DimensionError(
            f"{func}: {name} {describe(da)} has dims {da.dims}; expected a 3-D map (x, y, z). "
            "Select one subject/seed/volume first, e.g. .isel(time=0) or .sel(seed=...)"
        )
    get_affine(da, func=func)
    return da, (float(suggested) if suggested is not None else None)


def study_cmap(threshold: float, vmax: float) -> Colormap:
    """Colour map of the study's t-map figures for a symmetric range ``[-vmax, vmax]``.

    Parameters
    ----------
    threshold : float
        ``|t|`` below this is not shown (transparent).
    vmax : float
        Largest ``|t|`` of the colour scale.

    Returns
    -------
    matplotlib.colors.Colormap
        From ``-vmax`` to ``-threshold`` blue to cyan (decreases), transparent in between,
        from ``threshold`` to ``vmax`` red to yellow (increases): the colours start saturated
        at the threshold, as in DPABI/RESTplus viewers.
    """
    _require_matplotlib()
    from matplotlib.colors import LinearSegmentedColormap

    if not vmax > 0:
        raise ValueError(f"study_cmap: vmax must be positive, got {vmax}")
    f = float(np.clip(threshold / vmax, 0.0, 0.999)) / 2
    lo, hi = 0.5 - f, 0.5 + f
    eps = 1e-6
    stops = [
        (0.0, (0.0, 1.0, 1.0, 1.0)),  # cyan at -vmax
        (max(lo - eps, eps), (0.0, 0.0, 1.0, 1.0)),  # blue at -threshold
        (lo, (0.0, 0.0, 0.0, 0.0)),
        (hi, (0.0, 0.0, 0.0, 0.0)),
        (min(hi + eps, 1 - eps), (1.0, 0.0, 0.0, 1.0)),  # red at +threshold
        (1.0, (1.0, 1.0, 0.0, 1.0)),  # yellow at +vmax
    ]
    return LinearSegmentedColormap.from_list("brainarr_study", stops, N=512)


def _background(bg_img: Any, *, func: str) -> Any:
    if bg_img is None:
        from nilearn.datasets import load_mni152_template

        return load_mni152_template(resolution=2)
    return _as_image(bg_img, name="bg_img", func=func)


def _colorbar(
    fig: Figure, rect: Sequence[float], cmap: Colormap, vmax: float, threshold: float, label: str, color: str
) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(rect)
    mappable = ScalarMappable(norm=Normalize(-vmax, vmax), cmap=cmap)
    cbar = fig.colorbar(mappable, cax=cax)
    ticks = sorted({-vmax, -threshold, 0.0, threshold, vmax}) if threshold > 0 else [-vmax, 0.0, vmax]
    cbar.set_ticks(ticks)
    cbar.set_ticklabels([f"{v:.2f}" if v else "0" for v in ticks])
    cbar.ax.tick_params(colors=color, labelsize=8)
    cbar.outline.set_edgecolor(color)
    if len(label) <= 3:  # a symbol such as "t" or "z" reads best upright
        cbar.set_label(label, color=color, rotation=0, labelpad=10, va="center")
    else:
        cbar.set_label(label, color=color)
    cax.patch.set_facecolor("0.5")


# --------------------------------------------------------------------------- montage


@fill_doc
def montage(
    t_map: xr.DataArray | xr.Dataset,
    *,
    threshold: float | None = None,
    cuts: Sequence[float] = STUDY_CUTS,
    columns: int = 9,
    vmax: float | None = None,
    title: str | None = None,
    bg_img: Any = None,
    cmap: str | Colormap = "study",
    colorbar: bool = True,
    black_bg: bool = True,
    label: str = "t",
    figure: Figure | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 150,
) -> Figure:
    """Axial slice montage of a thresholded t map over the MNI template (study Figures 1-3, 8-11).

    Parameters
    ----------
    t_map : xarray.DataArray (x, y, z) or xarray.Dataset
        A t map with ``attrs["affine"]`` (e.g. ``grf(...)["t"]``, zero outside surviving
        clusters), or the Dataset returned by :func:`brainarr.stats.grf` (its ``t`` is drawn
        and its ``t_threshold`` is the default threshold).
    threshold : float, optional
        ``|t|`` at or below this is not drawn. Default: the ``t_threshold`` attribute of a GRF
        result, else just above zero (every non-zero voxel of a thresholded map is drawn).
    cuts : sequence of float, default ``STUDY_CUTS``
        Axial slice positions, MNI z in mm (the study: -70 to +95 mm every 5 mm).
    columns : int, default 9
        Slices per row.
    vmax : float, optional
        Top of the symmetric colour scale; default the largest ``|t|``.
    %(title)s
    bg_img : DataArray, nibabel image or file name, optional
        Background; default nilearn's MNI152 template at 2 mm.
    cmap : "study", a matplotlib colormap or its name (e.g. ``"cold_hot"``), default "study"
        ``"study"`` is :func:`study_cmap`: red to yellow for increases (t > 0), blue to cyan for
        decreases (t < 0), saturated from the threshold on.
    colorbar : bool, default True
        Draw the colour bar on the right.
    black_bg : bool, default True
        Black figure background (white otherwise).
    label : str, default "t"
        Colour-bar label.
    %(figure)s
    %(path)s
    %(dpi)s

    Returns
    -------
    matplotlib.figure.Figure
        One row of ``columns`` slices per line, each labelled with its z (mm). When no voxel
        exceeds the threshold, the background slices are drawn with the note
        "no surviving cluster".

    Notes
    -----
    Triggers computation. Drawing is :func:`nilearn.plotting.plot_stat_map` with
    ``display_mode="z"``, one call per row, sharing one colour scale.
    """
    _require_matplotlib()
    from nilearn import plotting as nplt

    func = "brainarr.plotting.montage"
    da, suggested = _map_3d(t_map, func=func)
    cuts = [float(c) for c in cuts]
    if not cuts:
        raise ValueError(f"{func}: cuts is empty; give at least one axial position (mm)")
    if columns < 1:
        raise ValueError(f"{func}: columns must be >= 1, got {columns}")
    img = to_nifti_image(da.astype(np.float32))
    data = np.asarray(img.dataobj, dtype=float)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, 0.0)
        img = nib.Nifti1Image(data.astype(np.float32), img.affine, img.header)
    absmax = float(np.abs(data).max()) if data.size else 0.0
    if threshold is None:
        threshold = suggested if suggested is not None else 1e-6 * absmax
    threshold = float(threshold)
    if threshold < 0:
        raise ValueError(f"{func}: threshold must be >= 0, got {threshold}")
    shown = np.abs(data) > threshold
    empty = not shown.any()
    if vmax is None:
        vmax = absmax if not empty else threshold + 1.0  # unused: nothing is drawn
    vmax = float(vmax)
    if not vmax > threshold:
        raise ValueError(f"{func}: vmax ({vmax:g}) must be above the threshold ({threshold:g})")
    colour_map = study_cmap(threshold, vmax) if isinstance(cmap, str) and cmap == "study" else cmap
    fg = "white" if black_bg else "black"
    bg_colour = "black" if black_bg else "white"
    bg = _background(bg_img, func=func)

    rows = [cuts[i : i + columns] for i in range(0, len(cuts), columns)]
    cell_w, cell_h = 1.25, 1.5
    cbar_w = 0.9 if colorbar else 0.0
    title_h = 0.45 if title or empty else 0.1
    width = columns * cell_w + cbar_w
    height = len(rows) * cell_h + title_h
    fig = figure if figure is not None else _new_figure((width, height), bg_colour)
    fig.set_facecolor(bg_colour)
    left_frac = (columns * cell_w) / width
    for r, row in enumerate(rows):
        bottom = 1 - (title_h + (r + 1) * cell_h) / height
        rect = (0.0, bottom, left_frac * len(row) / columns, cell_h / height)
        common = {
            "display_mode": "z",
            "cut_coords": row,
            "figure": fig,
            "axes": rect,
            "annotate": True,
            "draw_cross": False,
            "black_bg": black_bg,
        }
        if empty:
            nplt.plot_anat(bg, dim=0, colorbar=False, **common)
            continue
        with warnings.catch_warnings():
            # nilearn takes min/max of a fully masked overlay on rows without suprathreshold voxels
            warnings.filterwarnings("ignore", message="Warning: converting a masked element", category=UserWarning)
            nplt.plot_stat_map(
                img,
                bg_img=bg,
                threshold=threshold,
                vmax=vmax,
                cmap=colour_map,
                colorbar=False,
                symmetric_cbar=True,
                dim=0,
                **common,
            )
    if title:
        fig.text(0.01, 1 - 0.05 / height, title, color=fg, fontsize=12, ha="left", va="top", weight="bold")
    if empty:
        fig.text(
            0.5,
            1 - 0.05 / height,
            "no surviving cluster" + (f" (|{label}| > {threshold:.3g})" if threshold > 0 else ""),
            color=fg,
            fontsize=12,
            ha="center",
            va="top",
        )
    elif colorbar:
        ctop = 1 - title_h / height
        span = min(len(rows) * cell_h, 3.0) / height
        cmap_obj = colour_map
        if isinstance(cmap_obj, str):
            from matplotlib import colormaps

            cmap_obj = colormaps[cmap_obj]
        _colorbar(
            fig,
            (left_frac + 0.15 * cbar_w / width, ctop - span - 0.02, 0.18 * cbar_w / width, span),
            cmap_obj,
            vmax,
            threshold,
            label,
            fg,
        )
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


# --------------------------------------------------------------------------- glass brain


def _seed_centroid(seed: Any, *, func: str) -> np.ndarray:
    if isinstance(seed, xr.DataArray):
        if "seed" in seed.dims:
            if seed.sizes["seed"] != 1:
                raise DimensionError(
                    f"{func}: seed {describe(seed)} holds {seed.sizes['seed']} seeds; select one with .sel(seed=...)"
                )
            seed = seed.isel(seed=0, drop=True)
        if set(seed.dims) != set(SPATIAL):
            raise DimensionError(f"{func}: seed mask {describe(seed)} has dims {seed.dims}; expected (x, y, z)")
        affine = get_affine(seed, func=func)
        vox = np.argwhere(np.asarray(seed.transpose(*SPATIAL).values) != 0)
        if vox.size == 0:
            raise ValueError(f"{func}: seed mask {describe(seed)} is empty")
        world = nib.affines.apply_affine(affine, vox)
        return world.mean(axis=0)
    coords = np.asarray(seed, dtype=float)
    if coords.shape != (3,):
        raise TypeError(
            f"{func}: seed must be a bool DataArray (x, y, z) or MNI (x, y, z) mm coordinates, got {seed!r}"
        )
    return coords


def _cluster_nodes(result: Any, *, func: str) -> pd.DataFrame:
    if isinstance(result, pd.DataFrame):
        table = result
    elif isinstance(result, (xr.Dataset, xr.DataArray)):
        from brainarr.stats import cluster_table

        da, _ = _map_3d(result, func=func, name="result")
        if isinstance(result, xr.DataArray):
            result = da
        table = cluster_table(result)
    else:
        raise TypeError(
            f"{func}: result must be a cluster table (DataFrame), a thresholded t map or a grf Dataset, "
            f"got {type(result).__name__}"
        )
    missing = [c for c in ("x", "y", "z", "size", "peak_t") if c not in table.columns]
    if missing:
        raise ValueError(f"{func}: the cluster table lacks columns {missing} (use brainarr.stats.cluster_table)")
    if "peak_kind" in table.columns:
        table = table[table["peak_kind"] == "main"]
    return table


@fill_doc
def glass_brain(
    seed: xr.DataArray | Sequence[float],
    result: pd.DataFrame | xr.Dataset | xr.DataArray,
    *,
    views: Sequence[Literal["l", "r", "x", "y", "z"]] = ("l", "z", "r"),
    title: str | None = None,
    seed_size: float = 160.0,
    max_node_size: float = 220.0,
    legend: bool = True,
    figure: Figure | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 150,
) -> Figure:
    """Seed-FC results as nodes on a glass brain (study Figures 4-7).

    Parameters
    ----------
    seed : xarray.DataArray (x, y, z) of bool, or (x, y, z) in MNI mm
        The seed region (its centroid is drawn) or the seed's coordinates. A ``seed`` dim of
        length one (a slice of :func:`brainarr.datasets.regions`) is allowed.
    result : pandas.DataFrame, xarray.Dataset or xarray.DataArray (x, y, z)
        A cluster table from :func:`brainarr.stats.cluster_table` (columns ``x``, ``y``,
        ``z``, ``size``, ``peak_t``), a :func:`brainarr.stats.grf` Dataset or a thresholded t
        map (turned into a table with :func:`~brainarr.stats.cluster_table`).
    views : sequence of {"l", "r", "x", "y", "z"}, default ("l", "z", "r")
        Views from the left, the top and the right, as nilearn's ``display_mode`` letters.
        The ``"l"`` and ``"r"`` views show the nodes of that hemisphere.
    %(title)s
    seed_size : float, default 160
        Marker area of the seed (points²).
    max_node_size : float, default 220
        Marker area of the largest cluster; others scale with their size in voxels (area
        proportional to size, at least a fifth of this).
    legend : bool, default True
        Add a legend of the node colours.
    %(figure)s
    %(path)s
    %(dpi)s

    Returns
    -------
    matplotlib.figure.Figure
        Nodes: the seed in dark blue (:data:`SEED_COLOR`), clusters at their peak, orange for
        increases (t > 0, :data:`INCREASE_COLOR`) and light blue for decreases
        (:data:`DECREASE_COLOR`). Without clusters only the seed is drawn and the title
        says "no surviving cluster".

    Notes
    -----
    Triggers computation for xarray inputs. Drawn with :func:`nilearn.plotting.plot_glass_brain`
    and its display's ``add_markers``.
    """
    _require_matplotlib()
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D
    from nilearn import plotting as nplt

    func = "brainarr.plotting.glass_brain"
    mode = "".join(views)
    if mode not in _GLASS_MODES:
        raise ValueError(
            f"{func}: views {tuple(views)!r} are not a nilearn glass-brain layout; use one of "
            f"{sorted(_GLASS_MODES)} as letters, e.g. ('l', 'z', 'r')"
        )
    centroid = _seed_centroid(seed, func=func)
    table = _cluster_nodes(result, func=func)

    coords = [centroid]
    colours = [to_rgba(SEED_COLOR)]
    sizes = [float(seed_size)]
    max_size = float(table["size"].max()) if len(table) else 1.0
    for row in table.itertuples(index=False):
        coords.append(np.array([row.x, row.y, row.z], dtype=float))
        colours.append(to_rgba(INCREASE_COLOR if row.peak_t > 0 else DECREASE_COLOR))
        sizes.append(max_node_size * max(0.2, float(row.size) / max_size))
    empty = len(table) == 0

    fig = figure if figure is not None else _new_figure((3.2 * len(mode) + (1.6 if legend else 0), 3.8), "white")
    width_frac = 1.0 - (1.6 / fig.get_figwidth() if legend else 0.0)
    text = title or ""
    if empty:
        text = (text + ": " if text else "") + "no surviving cluster"
    display = nplt.plot_glass_brain(
        None,
        display_mode=mode,
        figure=fig,
        axes=(0.0, 0.0, width_frac, 0.9),
        black_bg=False,
        annotate=True,
        plot_abs=False,
    )
    display.add_markers(np.vstack(coords), marker_color=colours, marker_size=sizes, edgecolors="black", linewidths=0.6)
    if text:
        fig.text(0.01, 0.98, text, ha="left", va="top", fontsize=12, weight="bold")
    if legend:
        handles = [
            Line2D([], [], marker="o", ls="", markersize=9, markerfacecolor=c, markeredgecolor="black", label=lab)
            for c, lab in (
                (SEED_COLOR, "seed"),
                (DECREASE_COLOR, "decreased (t < 0)"),
                (INCREASE_COLOR, "increased (t > 0)"),
            )
        ]
        fig.legend(handles=handles, loc="center right", frameon=False, fontsize=9)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


# --------------------------------------------------------------------------- connectome


def _roi_centroids(atlas: xr.DataArray, labels: Sequence[int], *, func: str) -> np.ndarray:
    """Centroids (MNI mm, ``(n, 3)``) of the voxels of each atlas label.

    The mean of the voxel indices of the label, mapped through ``attrs["affine"]``.
    """
    from scipy import ndimage

    if not isinstance(atlas, xr.DataArray) or set(atlas.dims) != set(SPATIAL):
        got = atlas.dims if isinstance(atlas, xr.DataArray) else type(atlas).__name__
        raise DimensionError(f"{func}: atlas must be a label DataArray with dims (x, y, z), got {got}")
    affine = get_affine(atlas, func=func)
    data = np.asarray(atlas.transpose(*SPATIAL).values)
    labels = [int(v) for v in labels]
    present = np.isin(labels, data)
    if not present.all():
        missing = [v for v, ok in zip(labels, present, strict=True) if not ok]
        raise ValueError(f"{func}: labels {missing} have no voxel in atlas {describe(atlas)}; is it the ROIs' atlas?")
    centres = ndimage.center_of_mass(np.ones(data.shape), labels=data, index=labels)
    return nib.affines.apply_affine(affine, np.asarray(centres, dtype=float).reshape(-1, 3))


def _edge_matrix(result_or_matrix: Any, *, func: str) -> tuple[xr.DataArray, str]:
    """The ``(roi_i, roi_j)`` matrix of edges to draw and what it holds."""
    from brainarr.metrics.roi import ROI_I, ROI_J

    if isinstance(result_or_matrix, xr.Dataset):
        missing = [v for v in ("t", "significant") if v not in result_or_matrix]
        if missing:
            raise ValueError(
                f"{func}: the Dataset lacks {missing}; pass a brainarr.stats.roi_ttest2 result or a matrix"
            )
        values = result_or_matrix["t"].where(result_or_matrix["significant"], 0.0)
        what = "t (significant edges)"
    elif isinstance(result_or_matrix, xr.DataArray):
        values = result_or_matrix
        what = str(result_or_matrix.attrs.get("long_name", result_or_matrix.name or "edge value"))
    else:
        raise TypeError(
            f"{func}: result_or_matrix must be a roi_ttest2 Dataset or a (roi_i, roi_j) DataArray, "
            f"got {type(result_or_matrix).__name__}"
        )
    if set(values.dims) != {ROI_I, ROI_J}:
        raise DimensionError(
            f"{func}: the matrix has dims {values.dims}; expected (roi_i, roi_j): select one subject "
            "(.sel(subject=...)) or average them (.mean('subject'))"
        )
    if ROI_I not in values.coords:
        raise DimensionError(f"{func}: the matrix has no roi_i coordinate (the atlas labels of its rows)")
    return values.transpose(ROI_I, ROI_J), what


@fill_doc
def connectome(
    result_or_matrix: xr.Dataset | xr.DataArray,
    atlas: xr.DataArray,
    *,
    threshold: float | str | None = None,
    views: Sequence[Literal["l", "r", "x", "y", "z"]] = ("l", "z", "r"),
    node_size: float = 20.0,
    node_color: Any = "auto",
    colorbar: bool = True,
    title: str | None = None,
    figure: Figure | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 150,
) -> Figure:
    """ROI-to-ROI edges on a glass brain, at the ROI centroids (nilearn ``plot_connectome``).

    Parameters
    ----------
    result_or_matrix : xarray.Dataset or xarray.DataArray (roi_i, roi_j)
        A :func:`brainarr.stats.roi_ttest2` result (its significant edges are drawn, coloured
        by t) or a symmetric matrix, e.g. one subject's or the mean Fisher z from
        :func:`brainarr.metrics.roi_connectivity`. NaN entries and the diagonal are not drawn.
    atlas : xarray.DataArray (x, y, z)
        The label image the ROIs come from (``attrs["affine"]`` maps voxels to MNI mm); each
        ``roi_i`` label must have voxels in it.
    threshold : float or str, optional
        Edges with ``|value|`` at or below it are not drawn; a string such as ``"95%"`` is a
        percentile of ``|value|`` (nilearn's ``edge_threshold``). Default: every non-zero edge
        (for a test result, every significant edge).
    views : sequence of {"l", "r", "x", "y", "z"}, default ("l", "z", "r")
        nilearn ``display_mode`` letters, as :func:`glass_brain`.
    node_size : float, default 20
        Marker area of the nodes (points²).
    node_color : colour or sequence of colours, default "auto"
        Node colours (nilearn's default cycles through a colour map).
    colorbar : bool, default True
        Add the colour bar of the edge values (when there is an edge).
    %(title)s
    %(figure)s
    %(path)s
    %(dpi)s

    Returns
    -------
    matplotlib.figure.Figure
        Nodes at the centroids of the ROIs (mean voxel position, MNI mm); edges coloured by value
        (``RdBu_r``, symmetric about 0). Without an edge the nodes alone are drawn and the
        title says "no edge to draw".

    Notes
    -----
    Triggers computation. The centroid of a ROI is the mean of its voxel positions (it may
    lie outside a curved region; nilearn's ``find_parcellation_cut_coords`` uses the centre
    of the largest component instead).
    """
    _require_matplotlib()
    from nilearn import plotting as nplt

    func = "brainarr.plotting.connectome"
    mode = "".join(views)
    if mode not in _GLASS_MODES:
        raise ValueError(
            f"{func}: views {tuple(views)!r} are not a nilearn glass-brain layout; use one of "
            f"{sorted(_GLASS_MODES)} as letters, e.g. ('l', 'z', 'r')"
        )
    values, _ = _edge_matrix(result_or_matrix, func=func)
    from brainarr.metrics.roi import ROI_I

    coords = _roi_centroids(atlas, values[ROI_I].values, func=func)
    adjacency = np.array(values.values, dtype=float)
    adjacency[~np.isfinite(adjacency)] = 0.0
    np.fill_diagonal(adjacency, 0.0)
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        adjacency[np.abs(adjacency) <= float(threshold)] = 0.0
        edge_threshold = None
    else:
        edge_threshold = threshold
    vmax = float(np.abs(adjacency).max())
    has_edges = vmax > 0
    fig = figure if figure is not None else _new_figure((3.2 * len(mode) + (1.0 if colorbar else 0), 3.8), "white")
    nplt.plot_connectome(
        adjacency,
        coords,
        node_color=node_color,
        node_size=node_size,
        edge_cmap="RdBu_r",
        edge_vmin=-vmax if has_edges else None,
        edge_vmax=vmax if has_edges else None,
        edge_threshold=edge_threshold,
        display_mode=mode,
        figure=fig,
        axes=(0.0, 0.0, 1.0, 0.9),
        colorbar=bool(colorbar and has_edges),
        annotate=True,
        black_bg=False,
    )
    text = title or ""
    if not has_edges:
        text = (text + ": " if text else "") + "no edge to draw"
    if text:
        fig.text(0.01, 0.98, text, ha="left", va="top", fontsize=12, weight="bold")
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


# --------------------------------------------------------------------------- QC


@fill_doc
def carpet(
    bold: xr.DataArray,
    mask: xr.DataArray | None = None,
    *,
    title: str | None = None,
    figure: Figure | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 150,
) -> Figure:
    """Carpet plot (voxels x time, Power 2017) of one subject's BOLD series.

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time)
        One subject's series with ``attrs["affine"]`` and ``attrs["tr"]`` (s).
    mask : xarray.DataArray (x, y, z) of bool, optional
        Voxels to show; default every voxel whose series is not constant.
    %(title)s
    %(figure)s
    %(path)s
    %(dpi)s

    Returns
    -------
    matplotlib.figure.Figure
        Detrended, z-scored voxel time series as rows; time (s) horizontally.

    Notes
    -----
    Triggers computation. Drawn by :func:`nilearn.plotting.plot_carpet`.

    References
    ----------
    Power JD. A simple but useful way to assess fMRI scan qualities. NeuroImage
    2017;154:150-158.
    """
    _require_matplotlib()
    from nilearn import plotting as nplt

    func = "brainarr.plotting.carpet"
    if not isinstance(bold, xr.DataArray) or set(bold.dims) != {*SPATIAL, TIME}:
        got = bold.dims if isinstance(bold, xr.DataArray) else type(bold).__name__
        raise DimensionError(f"{func}: bold must be a DataArray with dims (x, y, z, time), got {got}")
    img = to_nifti_image(bold)
    tr = bold.attrs.get("tr")
    if mask is not None:
        mask_img = _as_image(mask.astype(bool), name="mask", func=func)
    else:
        data = np.asarray(img.dataobj)
        varying = (data.max(axis=-1) > data.min(axis=-1)).astype(np.uint8)
        if not varying.any():
            raise ValueError(f"{func}: every voxel of {describe(bold)} has a constant series; nothing to show")
        mask_img = nib.Nifti1Image(varying, img.affine)
    fig = figure if figure is not None else _new_figure((10, 5), "white")
    nplt.plot_carpet(img, mask_img=mask_img, t_r=tr, figure=fig, title=title)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


@fill_doc
def motion(
    confounds: xr.DataArray,
    *,
    fd_threshold: float | None = 0.5,
    title: str | None = None,
    figure: Figure | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 150,
) -> Figure:
    """Head motion over time: translations, rotations and framewise displacement.

    Parameters
    ----------
    confounds : xarray.DataArray (time, confound)
        One subject's confounds with the six rigid-body parameters (``trans_x, trans_y,
        trans_z`` in mm and ``rot_x, rot_y, rot_z`` in rad, or exactly 6 columns in SPM
        order), as read by :func:`brainarr.io.read_confounds`.
    fd_threshold : float or None, default 0.5
        Draw this framewise-displacement limit (mm) as a dashed line (Power et al. 2012 used
        0.5 mm); None draws none.
    %(title)s
    %(figure)s
    %(path)s
    %(dpi)s

    Returns
    -------
    matplotlib.figure.Figure
        Three stacked panels sharing the time axis (s when the ``time`` coordinate has units
        "s", else volumes): translations (mm), rotations (degrees) and FD (mm).

    Notes
    -----
    Triggers computation. FD is :func:`brainarr.preprocess.framewise_displacement` (Power).
    """
    _require_matplotlib()
    from brainarr.preprocess import MOTION_PARAMS, framewise_displacement

    func = "brainarr.plotting.motion"
    if not isinstance(confounds, xr.DataArray) or set(confounds.dims) != {TIME, "confound"}:
        got = confounds.dims if isinstance(confounds, xr.DataArray) else type(confounds).__name__
        raise DimensionError(f"{func}: confounds must be one subject's DataArray with dims (time, confound), got {got}")
    fd = framewise_displacement(confounds)
    names = [str(n) for n in confounds["confound"].values] if "confound" in confounds.coords else []
    params = (
        confounds.sel(confound=list(MOTION_PARAMS))
        if all(p in names for p in MOTION_PARAMS)
        else confounds.assign_coords(confound=list(MOTION_PARAMS))
    )
    values = np.asarray(params.transpose(TIME, "confound").values, dtype=float)
    fd_values = np.asarray(fd.values, dtype=float)
    time = confounds[TIME]
    in_seconds = time.attrs.get("units") == "s"
    t = np.asarray(time.values, dtype=float) if in_seconds else np.arange(values.shape[0])

    fig = figure if figure is not None else _new_figure((9, 6), "white")
    axes = fig.subplots(3, 1, sharex=True)
    for i, lab in enumerate(MOTION_PARAMS[:3]):
        axes[0].plot(t, values[:, i], lw=1, label=lab)
    for i, lab in enumerate(MOTION_PARAMS[3:]):
        axes[1].plot(t, np.degrees(values[:, 3 + i]), lw=1, label=lab)
    axes[2].plot(t, fd_values, lw=1, color="black", label="FD (Power)")
    if fd_threshold is not None:
        axes[2].axhline(fd_threshold, ls="--", color="tab:red", lw=1, label=f"{fd_threshold:g} mm")
    axes[0].set_ylabel("translation (mm)")
    axes[1].set_ylabel("rotation (deg)")
    axes[2].set_ylabel("FD (mm)")
    axes[2].set_xlabel("time (s)" if in_seconds else "volume")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)
        ax.grid(alpha=0.3)
    mean_fd = float(np.mean(fd_values[1:])) if fd_values.size > 1 else 0.0
    axes[0].set_title((f"{title}: " if title else "") + f"mean FD {mean_fd:.3f} mm", loc="left", fontsize=10)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig
