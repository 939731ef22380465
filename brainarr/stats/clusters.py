"""Cluster tables in the layout of the study's result tables (region, hemisphere, size, MNI, t)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from brainarr._core.dims import SPATIAL
from brainarr._core.grid import voxel_size
from brainarr._core.validation import check_same_grid, get_affine
from brainarr.exceptions import DimensionError
from brainarr.stats._labels import SignedClusters, cluster_structure, signed_clusters

__all__ = ["cluster_table", "table_to_csv", "table_to_markdown"]

_STUDY_COLUMNS = {
    "region": "Region",
    "hemisphere": "Hemisphere",
    "size": "Cluster size",
    "x": "x",
    "y": "y",
    "z": "z",
    "peak_t": "t",
}


def _hemisphere(x: float, half_voxel: float) -> str:
    if abs(x) < half_voxel:
        return "midline"
    return "L" if x < 0 else "R"


def _subpeaks(
    t: np.ndarray,
    flat: np.ndarray,
    coords: np.ndarray,
    peak: int,
    sign: float,
    *,
    min_distance: float = 8.0,
    n_max: int = 2,
) -> list[int]:
    """Local maxima of ``sign * t`` among the cluster's voxels ``flat``, ``min_distance`` mm apart.

    The 3 x 3 x 3 maximum filter runs on the cluster's bounding box grown by one voxel, which
    holds every neighbour of its voxels (other voxels count as minus infinity).
    """
    idx = np.unravel_index(flat, t.shape)
    lo = [max(int(i.min()) - 1, 0) for i in idx]
    hi = [min(int(i.max()) + 2, n) for i, n in zip(idx, t.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    inside = np.zeros([b - a for a, b in zip(lo, hi, strict=True)], bool)
    inside[tuple(i - a for i, a in zip(idx, lo, strict=True))] = True
    vals = sign * t[box]
    local = ndimage.maximum_filter(np.where(inside, vals, -np.inf), size=3) == vals
    cand_box = np.unravel_index(np.flatnonzero(local & inside), inside.shape)
    cand = np.ravel_multi_index(tuple(c + a for c, a in zip(cand_box, lo, strict=True)), t.shape)
    cand = cand[np.argsort(-sign * t.ravel()[cand], kind="stable")]
    chosen = [peak]
    out: list[int] = []
    for c in cand:
        if len(out) >= n_max:
            break
        if all(np.linalg.norm(coords[c] - coords[q]) >= min_distance for q in chosen):
            chosen.append(int(c))
            out.append(int(c))
    return out


def cluster_table(
    thresholded: xr.DataArray | xr.Dataset,
    *,
    atlas: xr.DataArray | None = None,
    cluster_p: dict[int, float] | None = None,
    min_size: int = 1,
    subpeaks: bool = False,
    connectivity: Literal[6, 18, 26] = 26,
) -> pd.DataFrame:
    """One row per cluster: AAL region and hemisphere of the peak, size, MNI peak and peak t.

    Parameters
    ----------
    thresholded : xarray.DataArray (x, y, z) or xarray.Dataset
        A thresholded t map (zero outside clusters; clusters are then found with
        ``connectivity``, positive and negative parts separately), or the Dataset of
        :func:`~brainarr.stats.grf`, whose ``cluster`` labels and ``cluster_p`` are used.
    atlas : xarray.DataArray (x, y, z), optional
        Integer atlas with CF ``flag_values``/``flag_meanings``; default AAL1 on the map's grid
        (:func:`brainarr.datasets.aal`).
    cluster_p : dict of {int: float}, optional
        Cluster p by cluster label (overrides the one of a GRF Dataset).
    min_size : int, default 1
        Drop clusters smaller than this (voxels).
    subpeaks : bool, default False
        Add up to two further local maxima per cluster, at least 8 mm from the peak and from
        each other (SPM style), as rows with ``peak_kind == "sub"``.
    connectivity : {6, 18, 26}, default 26
        Neighbourhood used when labelling a plain thresholded map.

    Returns
    -------
    pandas.DataFrame
        Columns ``cluster`` (label: positive clusters 1, 2, ... and negative clusters -1, -2,
        ..., each numbered by decreasing size, as :func:`~brainarr.stats.grf` does),
        ``region`` (atlas region at the peak, ``None`` if unlabelled), ``hemisphere``
        (``"L"`` for MNI x < 0, ``"R"`` for x > 0, ``"midline"`` for :math:`|x|` below half
        a voxel), ``size`` (voxels), ``x``, ``y``,
        ``z`` (peak, MNI mm), ``peak_t``, ``p`` (cluster p, NaN if unknown), ``regions``
        (atlas regions covered, "name (voxels)" by decreasing count, ``"unlabelled"`` for
        voxels outside the atlas) and ``peak_kind`` (``"main"`` or ``"sub"``). Rows are
        ordered positive clusters first, each sign by decreasing size.

    Notes
    -----
    Triggers computation. The peak is the voxel of largest :math:`|t|` (the first in array
    order on ties). Hemisphere and region are derived from coordinates and the atlas only,
    never from hand entry.
    """
    func = "brainarr.stats.cluster_table"
    from brainarr import datasets

    p_lookup: dict[int, float] = {}
    if isinstance(thresholded, xr.Dataset):
        if "t" not in thresholded or "cluster" not in thresholded:
            raise ValueError(f"{func}: a Dataset input must have 't' and 'cluster' variables (grf output)")
        t_da = thresholded["t"]
        labels = np.asarray(thresholded["cluster"].transpose(*SPATIAL).values, dtype=np.int64)
        if "cluster_p" in thresholded:
            cp = thresholded["cluster_p"]
            p_lookup = {int(k): float(v) for k, v in zip(cp[cp.dims[0]].values, cp.values, strict=True)}
        attrs_src = thresholded
    else:
        if not isinstance(thresholded, xr.DataArray):
            raise TypeError(f"{func}: expected a DataArray or Dataset, got {type(thresholded).__name__}")
        t_da = thresholded
        attrs_src = thresholded
        labels = None
    if set(t_da.dims) != set(SPATIAL):
        raise DimensionError(f"{func}: the t map must have dims {SPATIAL}, got {t_da.dims}")
    t = np.asarray(t_da.transpose(*SPATIAL).values, dtype=float)
    if labels is None:
        clusters = signed_clusters(t, cluster_structure(connectivity))
    else:
        clusters = SignedClusters.from_labels(labels)
    if cluster_p:
        p_lookup.update({int(k): float(v) for k, v in cluster_p.items()})
    if atlas is None:
        atlas = datasets.aal(like=t_da if "affine" in t_da.attrs else attrs_src)
    check_same_grid(t_da, atlas, names=("thresholded", "atlas"), func=func)
    atlas_np = np.asarray(atlas.transpose(*SPATIAL).values)
    names = dict(zip((int(v) for v in atlas.attrs["flag_values"]), atlas.attrs["flag_meanings"].split(), strict=True))
    try:
        half = float(voxel_size(get_affine(attrs_src, func=func))[0]) / 2
    except Exception:  # no affine: use the coordinate spacing
        xs = np.asarray(t_da["x"].values, float)
        half = abs(xs[1] - xs[0]) / 2 if xs.size > 1 else 0.5
    grids = np.meshgrid(*(np.asarray(t_da[d].values, float) for d in SPATIAL), indexing="ij")
    coords = np.stack([g.ravel() for g in grids], axis=1)

    ids, sizes, signs = clusters.ids, clusters.sizes, clusters.signs
    peaks = clusters.peaks(t)
    members = clusters.members()
    t_flat, atlas_flat = t.ravel(), atlas_np.ravel()
    rows = []
    # positive clusters first, each sign by decreasing size (ties by |label|)
    for c in np.lexsort((np.abs(ids), -sizes, ids < 0)):
        i, size = int(ids[c]), int(sizes[c])
        if size == 0 or size < min_size:
            continue
        flat = members[c]
        covered = pd.Series(atlas_flat[flat]).value_counts()
        covered_text = "; ".join(
            f"{names.get(int(k), 'unlabelled') if int(k) != 0 else 'unlabelled'} ({int(v)})" for k, v in covered.items()
        )
        peaks_c = [(int(peaks[c]), "main")]
        if subpeaks:
            peaks_c += [(q, "sub") for q in _subpeaks(t, flat, coords, int(peaks[c]), float(signs[c]))]
        for q, kind in peaks_c:
            x, y, z = coords[q]
            label = int(atlas_flat[q])
            rows.append(
                {
                    "cluster": i,
                    "region": names.get(label) if label != 0 else None,
                    "hemisphere": _hemisphere(x, half),
                    "size": size,
                    "x": float(x),
                    "y": float(y),
                    "z": float(z),
                    "peak_t": float(t_flat[q]),
                    "p": p_lookup.get(i, np.nan),
                    "regions": covered_text,
                    "peak_kind": kind,
                }
            )
    columns = [
        "cluster",
        "region",
        "hemisphere",
        "size",
        "x",
        "y",
        "z",
        "peak_t",
        "p",
        "regions",
        "peak_kind",
    ]
    return pd.DataFrame(rows, columns=columns)


def _study_layout(table: pd.DataFrame, decimals: int) -> pd.DataFrame:
    missing = [c for c in _STUDY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table_to_markdown/csv: table lacks columns {missing} (use cluster_table's output)")
    out = table[list(_STUDY_COLUMNS)].rename(columns=_STUDY_COLUMNS).copy()
    for c in ("x", "y", "z"):
        out[c] = out[c].round().astype(int)
    out["t"] = out["t"].round(decimals)
    out["Region"] = out["Region"].fillna("unlabelled")
    return out


def table_to_markdown(table: pd.DataFrame, *, decimals: int = 2) -> str:
    """Format a cluster table as Markdown with the study's columns.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`cluster_table`.
    decimals : int, default 2
        Decimals of the t values.

    Returns
    -------
    str
        ``| Region | Hemisphere | Cluster size | x | y | z | t |`` and one line per row.
    """
    out = _study_layout(table, decimals)
    lines = ["| " + " | ".join(out.columns) + " |", "|" + "---|" * len(out.columns)]
    for row in out.itertuples(index=False):
        cells = [f"{v:.{decimals}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_to_csv(table: pd.DataFrame, path=None, *, decimals: int = 2) -> str | None:
    """Write a cluster table as CSV with the study's columns (region, hemisphere, size, x, y, z, t).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`cluster_table`.
    path : str or path-like, optional
        Destination; when omitted the CSV text is returned.
    decimals : int, default 2
        Decimals of the t values.

    Returns
    -------
    str or None
        The CSV text when ``path`` is None.
    """
    return _study_layout(table, decimals).to_csv(path, index=False)
