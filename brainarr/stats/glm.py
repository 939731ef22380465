r"""Voxelwise general linear model for group comparisons (DPABI/RESTplus two-sample t-test).

The model is fitted by ordinary least squares for every voxel at once: the pseudo-inverse of the
small ``(n_subjects, n_regressors)`` design is contracted with the maps over ``subject`` (a
broadcast product summed over ``subject``), so every spatial chunk of the input is one small
matrix product and the outputs keep the input's spatial chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import special, stats

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SPATIAL, SUBJECT
from brainarr.stats._design import Design, check_design, check_maps, check_subject_maps, group_design, valid_voxels

__all__ = ["glm", "t_to_z", "ttest2"]

REGRESSOR = "regressor"
_PERFECT_FIT = 1e-10  # residual norm relative to the data norm below which the fit is exact


def _t_pvalue(t: np.ndarray, dof: float) -> np.ndarray:
    """Two-sided p of Student's t (kernel; elementwise)."""
    return np.minimum(1.0, 2.0 * stats.t.sf(np.abs(t), dof))


def t_to_z(t: np.ndarray, dof: float) -> np.ndarray:
    r"""Convert t to z with the same tail probability, stable for large :math:`|t|`.

    :math:`z = \operatorname{sign}(t)\,\Phi^{-1}(1 - F_t(|t|))` evaluated as
    ``-ndtri_exp(t.logsf(|t|))``, so no tail probability underflows to 0.
    """
    t = np.asarray(t, dtype=float)
    logp = stats.t.logsf(np.abs(t), dof)
    return np.sign(t) * -special.ndtri_exp(logp)


def _design_from_frame(design: Any, maps: xr.DataArray, *, func: str) -> tuple[np.ndarray, list[str]]:
    if hasattr(design, "columns") and hasattr(design, "to_numpy"):
        names = [str(c) for c in design.columns]
        if design.index.size == maps.sizes[SUBJECT] and set(map(str, design.index)) == set(
            map(str, maps[SUBJECT].values)
        ):
            design = design.loc[list(maps[SUBJECT].values)]
        matrix = design.to_numpy(dtype=float)
    else:
        matrix = np.asarray(design, dtype=float)
        names = [f"x{i}" for i in range(matrix.shape[1])] if matrix.ndim == 2 else []
    if matrix.ndim != 2 or matrix.shape[0] != maps.sizes[SUBJECT]:
        raise ValueError(
            f"{func}: design must be (n_subjects, n_regressors) = ({maps.sizes[SUBJECT]}, p), got shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{func}: design contains NaN or infinite values")
    return matrix, names


def _fit(maps: xr.DataArray, design: Design, mask: xr.DataArray | None, *, func: str) -> xr.Dataset:
    """Lazy OLS of ``maps`` on ``design`` (see :func:`glm` for the outputs)."""
    X = design.matrix
    n, p = X.shape
    dof = n - p
    pinv = np.linalg.pinv(X)  # (p, n)
    c = design.contrast
    var_c = float(c @ (pinv @ pinv.T) @ c)  # c (X'X)^-1 c'
    valid = valid_voxels(maps, mask, func=func)
    maps_ok = check_subject_maps(maps, mask, func=func)  # True, or raises (when computed, for dask)
    y = maps.transpose(SUBJECT, *SPATIAL).where(valid, 0.0)
    dtype = np.float64
    y = y.astype(dtype)
    pinv_da = xr.DataArray(pinv.astype(dtype), dims=(REGRESSOR, SUBJECT))
    beta = (pinv_da * y).sum(SUBJECT)
    x_da = xr.DataArray(X.astype(dtype), dims=(SUBJECT, REGRESSOR))
    fitted = (x_da * beta).sum(REGRESSOR).transpose(SUBJECT, *SPATIAL)
    residuals = y - fitted
    sse = (residuals**2).sum(SUBJECT)
    effect = (xr.DataArray(c.astype(dtype), dims=REGRESSOR) * beta).sum(REGRESSOR)
    se = np.sqrt(sse / dof * var_c)
    # a perfect fit (a constant voxel) leaves only round-off in the residuals: t = 0 there
    ok = valid & (sse > _PERFECT_FIT**2 * (y**2).sum(SUBJECT)) & (se > 0) & maps_ok
    t = xr.where(ok, effect / se.where(ok, 1.0), 0.0).astype(dtype)
    pval = xr.apply_ufunc(_t_pvalue, t, kwargs={"dof": dof}, dask="parallelized", output_dtypes=[np.float64]).where(
        ok, 1.0
    )
    beta = beta.transpose(REGRESSOR, *SPATIAL).assign_coords({REGRESSOR: design.regressors})
    contrast_text = design.label
    out = xr.Dataset(
        {
            "t": set_metadata(
                t,
                name="t",
                long_name=f"t statistic ({contrast_text})",
                units="1",
                description="0 outside the analysed voxels (outside the mask or zero for a subject)",
            ),
            "p": set_metadata(
                pval.astype(np.float64),
                name="p",
                long_name="two-sided p value (uncorrected)",
                units="1",
                description="1 outside the analysed voxels",
            ),
            "beta": set_metadata(
                beta, name="beta", long_name="regression coefficients", units=maps.attrs.get("units", "1")
            ),
            "residuals": set_metadata(
                residuals.where(valid, 0.0).astype(dtype),
                name="residuals",
                long_name="OLS residuals",
                units=maps.attrs.get("units", "1"),
            ),
            "analysed": set_metadata(valid, name="analysed", long_name="voxels analysed", units="1"),
        }
    )
    attrs = {
        "dof": int(dof),
        "contrast": contrast_text,
        "contrast_vector": [float(v) for v in c],
        "regressors": list(design.regressors),
        "design": [[float(v) for v in row] for row in X],
    }
    out.attrs.update(attrs)
    carry_attrs(maps, out)
    out["residuals"].attrs["dof"] = int(dof)
    for name in ("t", "p"):
        out[name].attrs.update({"dof": int(dof), "contrast": contrast_text})
    return out


@record_history
def glm(
    maps: xr.DataArray,
    design: Any,
    contrast: Sequence[float],
    *,
    mask: xr.DataArray | None = None,
) -> xr.Dataset:
    r"""Fit a voxelwise OLS model and test one contrast.

    Parameters
    ----------
    maps : xarray.DataArray (subject, x, y, z)
        One map per subject (dask-backed: one subject per chunk, spatial chunks).
    design : pandas.DataFrame or array (n_subjects, n_regressors)
        The design matrix. A DataFrame indexed by the subject ids is reordered to ``maps``;
        its column names become the ``regressor`` coordinate.
    contrast : sequence of float (n_regressors,)
        The contrast vector :math:`c`.
    mask : xarray.DataArray (x, y, z) of bool, optional
        Voxels to analyse (default: all).

    Returns
    -------
    xarray.Dataset
        ``t`` (x, y, z), ``p`` (x, y, z, two-sided, float64), ``beta`` (regressor, x, y, z),
        ``residuals`` (subject, x, y, z), ``analysed`` (x, y, z, bool); all lazy when
        ``maps`` is. attrs ``dof``, ``contrast``, ``contrast_vector``, ``regressors`` and
        ``design`` (nested list), plus ``affine``/``source`` from ``maps``.

    Raises
    ------
    DataValidationError
        The design leaves no residual degrees of freedom or is rank deficient, or a
        subject's map is zero or non-finite at every voxel of the mask, or constant over it
        (named; raised when ``t`` is computed for dask-backed maps).

    Notes
    -----
    With :math:`X^+` the Moore-Penrose pseudo-inverse,

    .. math::

        \hat\beta = X^+ y, \quad e = y - X \hat\beta, \quad
        t = \frac{c \hat\beta}{\sqrt{\frac{e^\top e}{n - p}\, c (X^\top X)^{-1} c^\top}},

    with :math:`n - p` degrees of freedom, as DPABI's ``y_GroupAnalysis_Image``. Voxels are
    analysed when they are in ``mask`` and non-zero (and finite) for every subject; elsewhere
    ``t = 0``, ``p = 1`` and ``beta = residuals = 0``. A voxel with zero residual variance
    (residual norm below :math:`10^{-10}` of the data norm, e.g. a constant voxel) also gets
    ``t = 0``, ``p = 1``. Computation is in float64.
    """
    func = "brainarr.stats.glm"
    check_maps(maps, func=func)
    matrix, names = _design_from_frame(design, maps, func=func)
    c = np.asarray(contrast, dtype=float).ravel()
    if c.size != matrix.shape[1]:
        raise ValueError(f"{func}: contrast has {c.size} entries but the design has {matrix.shape[1]} columns")
    label = " + ".join(f"{v:g}*{n}" for v, n in zip(c, names, strict=True) if v != 0) or "0"
    d = Design(matrix, names, c, label)
    check_design(d, func=func)
    return _fit(maps, d, mask, func=func)


@record_history
def ttest2(
    maps: xr.DataArray,
    *,
    by: str = "group",
    covariates: Sequence[str] = ("age", "sex"),
    groups: Sequence[str] | None = None,
    mask: xr.DataArray | None = None,
    center: bool = False,
) -> xr.Dataset:
    r"""Voxelwise two-sample t-test with covariates (DPABI/RESTplus group analysis).

    Parameters
    ----------
    maps : xarray.DataArray (subject, x, y, z)
        One map per subject; its ``subject`` coordinates carry ``by`` and the covariates.
    by : str, default "group"
        Subject coordinate naming the group of each subject.
    covariates : sequence of str, default ("age", "sex")
        Subject coordinates to adjust for. Text coordinates (``sex``) are dummy coded with the
        first level (sorted) as reference, e.g. a column ``"sex[M]"``; numbers are used as is.
    groups : (str, str), optional
        ``(group1, group2)``; the contrast is group1 minus group2. Default: the two levels of
        ``by`` in sorted order (``("control", "patient")`` gives control - patient; pass
        ``groups=("patient", "control")`` for the study's direction).
    mask : xarray.DataArray (x, y, z) of bool, optional
        Voxels to analyse.
    center : bool, default False
        Subtract the mean from continuous covariates. DPABI does not (the t map is the same
        either way; only the intercept's beta changes).

    Returns
    -------
    xarray.Dataset
        As :func:`glm`: ``t``, ``p``, ``beta`` (regressor, x, y, z), ``residuals``, ``analysed``;
        attrs ``dof`` (n - p), ``contrast`` (``"group1 - group2"``), ``regressors``, ``design``.

    Raises
    ------
    MissingMetadataError
        A coordinate is missing; a requested group has no subject (the message lists the
        labels present, their counts and the closest one) or fewer than 2; a label of ``by``
        or of ``groups`` has surrounding whitespace (labels are compared exactly, never
        stripped); a covariate has missing values (NaN, None, ``"n/a"``, ...), is text that
        is mostly numbers (``"4o"`` among ages), or has levels that differ only in case or
        whitespace. The subjects and values are named.
    DataValidationError
        A covariate is constant or collinear with the group or the covariates before it
        (named, with its levels per group), the design leaves no residual degrees of
        freedom, or a subject's map is zero or non-finite at every voxel of the mask, or
        constant over it (named; raised when ``t`` is computed for dask-backed maps).

    Notes
    -----
    Design columns, in DPABI's order: the group regressor (1 for group1, 0 for group2),
    the intercept, then the covariates. DPABI codes the group as +1/-1, which halves the
    group beta but gives the same t. The contrast is :math:`c = (1, 0, \dots, 0)`, see
    :func:`glm` for the estimator.

    References
    ----------
    Yan C-G, Wang X-D, Zuo X-N, Zang Y-F. DPABI: Data Processing & Analysis for (Resting-State)
    Brain Imaging. Neuroinformatics 2016;14:339-351.
    """
    func = "brainarr.stats.ttest2"
    check_maps(maps, func=func)
    d = group_design(maps, by=by, covariates=tuple(covariates), groups=groups, center=center, func=func)
    out = _fit(maps, d, mask, func=func)
    out.attrs["groups"] = list(d.label.split(" - "))
    return out
