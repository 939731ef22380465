r"""Edge-wise group comparison of ROI-to-ROI connectivity matrices (two-sample t, FDR).

Each edge of the upper triangle of the ``(subject, roi_i, roi_j)`` matrices is one "voxel" of
the voxelwise model of :mod:`brainarr.stats.glm`: the same design (:func:`group_design`, with
its checks and messages) and the same OLS and t algebra, then a Benjamini-Hochberg
correction over the edges tested.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import numpy as np
import xarray as xr
from scipy import stats

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SUBJECT, X, Y, Z
from brainarr._core.validation import check_dims, describe
from brainarr.exceptions import DimensionError
from brainarr.metrics.roi import ROI_I, ROI_J
from brainarr.stats._design import group_design
from brainarr.stats.glm import _fit

__all__ = ["bh_fdr", "roi_ttest2"]


def bh_fdr(p: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p over the ``tested`` entries (last axis); 1 elsewhere (kernel).

    Uses :func:`scipy.stats.false_discovery_control` (``method="bh"``); float64.
    """
    p = np.asarray(p, dtype=np.float64)
    tested = np.broadcast_to(np.asarray(tested, dtype=bool), p.shape)
    out = np.ones(p.shape, np.float64)
    if tested.any():
        out[tested] = stats.false_discovery_control(p[tested], method="bh")
    return out


def _check_matrices(matrices: xr.DataArray, *, func: str) -> None:
    check_dims(matrices, (SUBJECT, ROI_I, ROI_J), func=func, allowed_extra=False)
    n_i, n_j = matrices.sizes[ROI_I], matrices.sizes[ROI_J]
    if n_i != n_j:
        raise DimensionError(
            f"{func}: {describe(matrices)} is not square: {n_i} rows (roi_i) and {n_j} columns (roi_j)"
        )
    if n_i < 2:
        raise DimensionError(f"{func}: {describe(matrices)} has {n_i} ROI; at least 2 are needed for an edge")
    if ROI_I in matrices.coords and ROI_J in matrices.coords:
        a, b = np.asarray(matrices[ROI_I].values), np.asarray(matrices[ROI_J].values)
        if a.shape != b.shape or not np.array_equal(a, b):
            raise DimensionError(
                f"{func}: the rows (roi_i) and columns (roi_j) of {describe(matrices)} are not the same ROIs in the "
                "same order (e.g. from brainarr.metrics.roi_connectivity)"
            )


def _to_matrix(edge_values: xr.DataArray, index: xr.DataArray, fill) -> xr.DataArray:
    """Scatter an ``(x,)`` vector of upper-triangle edges into a symmetric ``(roi_i, roi_j)`` matrix."""
    filler = xr.DataArray(np.array([fill], dtype=edge_values.dtype), dims=X)
    extended = xr.concat([edge_values.drop_vars(list(edge_values.coords)), filler], dim=X)
    if dask.is_dask_collection(extended.data):
        extended = extended.copy(data=extended.data.rechunk(-1))
    out = extended.isel({X: index})
    return out.copy(data=out.data.rechunk(-1)) if dask.is_dask_collection(out.data) else out


@record_history
def roi_ttest2(
    matrices: xr.DataArray,
    *,
    by: str = "group",
    groups: Sequence[str] | None = None,
    covariates: Sequence[str] = ("age", "sex"),
    alpha: float = 0.05,
) -> xr.Dataset:
    r"""Edge-wise two-sample t-test of ROI-to-ROI connectivity with covariates and FDR.

    Parameters
    ----------
    matrices : xarray.DataArray (subject, roi_i, roi_j)
        One connectivity matrix per subject (e.g. Fisher z from
        :func:`brainarr.metrics.roi_connectivity`); its ``subject`` coordinates carry ``by``
        and the covariates. Only the upper triangle (:math:`i < j`) is read.
    by : str, default "group"
        Subject coordinate naming the group of each subject.
    groups : (str, str), optional
        ``(group1, group2)``; the contrast is group1 minus group2. Default: the two levels of
        ``by`` in sorted order.
    covariates : sequence of str, default ("age", "sex")
        Subject coordinates to adjust for (text ones are dummy coded), as
        :func:`brainarr.stats.ttest2`.
    alpha : float, default 0.05
        FDR level of ``significant``.

    Returns
    -------
    xarray.Dataset (roi_i, roi_j), symmetric
        ``t`` (float64), ``p`` (two-sided, uncorrected), ``p_fdr`` (Benjamini-Hochberg),
        ``significant`` (``p_fdr < alpha``, bool) and ``analysed`` (bool: edges tested), with
        the ``roi_i``/``roi_j`` (and ``region_i``/``region_j``) coordinates of ``matrices``.
        attrs ``dof``, ``contrast`` (``"group1 - group2"``), ``groups``, ``regressors``,
        ``design``, ``alpha``, ``n_edges`` (upper-triangle edges). Lazy when ``matrices`` is.

    Raises
    ------
    MissingMetadataError, DataValidationError
        As :func:`brainarr.stats.ttest2` (the same design checks and messages).
    DimensionError
        ``matrices`` is not ``(subject, roi_i, roi_j)`` with the same ROIs on both axes.

    Notes
    -----
    For every edge :math:`(i, j)`, :math:`i < j`, the model of :func:`brainarr.stats.ttest2`
    (design columns: group (1 for group1), intercept, covariates as given; OLS; contrast on the
    group column):

    .. math::

        t = \frac{c \hat\beta}{\sqrt{\frac{e^\top e}{n - p}\, c (X^\top X)^{-1} c^\top}},
        \qquad \nu = n - p.

    An edge is tested when it is finite and non-zero for every subject (the voxel rule of
    DPABI's group analysis; a NaN edge comes from a constant or empty ROI, see
    :func:`~brainarr.metrics.roi_connectivity`); elsewhere, and on the diagonal, ``t = 0``,
    ``p = p_fdr = 1`` and ``analysed`` is False. An edge with no residual variance has
    ``t = 0, p = 1`` (tested). ``p_fdr`` is the Benjamini-Hochberg adjustment
    (:func:`scipy.stats.false_discovery_control`) over the tested edges of the upper
    triangle, each counted once; the lower triangle mirrors it.
    """
    func = "brainarr.stats.roi_ttest2"
    _check_matrices(matrices, func=func)
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{func}: alpha must be in (0, 1), got {alpha}")
    design = group_design(matrices, by=by, covariates=tuple(covariates), groups=groups, center=False, func=func)
    n_roi = matrices.sizes[ROI_I]
    iu, ju = np.triu_indices(n_roi, k=1)
    n_edges = iu.size

    # the edges as a (subject, x, 1, 1) "map", so the voxelwise model applies unchanged
    subject_coords = {k: v for k, v in matrices.coords.items() if v.dims == (SUBJECT,)}
    mats = xr.DataArray(matrices.data, dims=matrices.dims, coords=subject_coords).transpose(SUBJECT, ROI_I, ROI_J)
    edges = mats.isel({ROI_I: xr.DataArray(iu, dims=X), ROI_J: xr.DataArray(ju, dims=X)})
    edges = edges.expand_dims({Y: 1, Z: 1}, axis=(2, 3))
    edges.attrs = {}
    fit = _fit(edges, design, None, func=func).isel({Y: 0, Z: 0}, drop=True)

    index = np.full((n_roi, n_roi), n_edges, dtype=np.intp)
    index[iu, ju] = np.arange(n_edges)
    index[ju, iu] = np.arange(n_edges)
    index = xr.DataArray(index, dims=(ROI_I, ROI_J))

    analysed = fit["analysed"]
    p_edge = fit["p"]
    if dask.is_dask_collection(p_edge.data):
        p_edge = p_edge.copy(data=p_edge.data.rechunk(-1))
        analysed = analysed.copy(data=analysed.data.rechunk(-1))
    p_fdr = xr.apply_ufunc(
        bh_fdr,
        p_edge,
        analysed,
        input_core_dims=[[X], [X]],
        output_core_dims=[[X]],
        dask="parallelized",
        output_dtypes=[np.float64],
        keep_attrs=False,
    )
    contrast = design.label
    t = _to_matrix(fit["t"], index, 0.0)
    p = _to_matrix(p_edge, index, 1.0)
    q = _to_matrix(p_fdr, index, 1.0)
    tested = _to_matrix(analysed, index, False)
    out = xr.Dataset(
        {
            "t": set_metadata(
                t, name="t", long_name=f"t statistic ({contrast})", units="1", description="0 where not analysed"
            ),
            "p": set_metadata(p, name="p", long_name="two-sided p value (uncorrected)", units="1"),
            "p_fdr": set_metadata(
                q,
                name="p_fdr",
                long_name="Benjamini-Hochberg adjusted p value",
                units="1",
                description="over the analysed edges of the upper triangle; 1 where not analysed",
            ),
            "significant": set_metadata(
                tested & (q < alpha), name="significant", long_name=f"p_fdr < {alpha:g}", units="1"
            ),
            "analysed": set_metadata(tested, name="analysed", long_name="edges tested", units="1"),
        }
    )
    coords = {k: v for k, v in matrices.coords.items() if set(v.dims) <= {ROI_I, ROI_J} and v.dims}
    out = out.assign_coords(coords)
    out.attrs.update({k: fit.attrs[k] for k in ("dof", "contrast", "regressors", "design")})
    out.attrs.update({"groups": list(contrast.split(" - ")), "alpha": alpha, "n_edges": int(n_edges)})
    for name in ("t", "p", "p_fdr"):
        out[name].attrs.update({"dof": int(fit.attrs["dof"]), "contrast": contrast})
    return carry_attrs(matrices, out)
