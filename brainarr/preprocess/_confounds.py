"""Confound models and readers: Friston-24, tissue signals, fMRIPrep TSV, SPM rp_*.txt."""

from __future__ import annotations

import numpy as np
import xarray as xr

from brainarr._core.attrs import record_history
from brainarr._core.confounds import MOTION_PARAMS, confound_units
from brainarr._core.dims import CONFOUND, SPATIAL, TIME
from brainarr._core.validation import check_dims, check_same_grid, describe
from brainarr.exceptions import DimensionError

__all__ = [
    "MOTION_PARAMS",
    "friston24",
    "tissue_signals",
]


def _motion_da(motion: xr.DataArray, func: str) -> xr.DataArray:
    check_dims(motion, [TIME, CONFOUND], func=func)
    if motion.sizes[CONFOUND] < 6:
        raise DimensionError(
            f"{func}: {describe(motion)} has {motion.sizes[CONFOUND]} confounds; 6 motion parameters needed"
        )
    names = [str(n) for n in motion[CONFOUND].values] if CONFOUND in motion.coords else []
    if all(p in names for p in MOTION_PARAMS):
        motion = motion.sel({CONFOUND: list(MOTION_PARAMS)})
    elif motion.sizes[CONFOUND] == 6:
        motion = motion.assign_coords({CONFOUND: list(MOTION_PARAMS)})
    else:
        raise DimensionError(
            f"{func}: {describe(motion)} has confounds {names}; expected the columns "
            f"{list(MOTION_PARAMS)} or exactly 6 columns in SPM order "
            "(3 translations in mm, 3 rotations in rad)"
        )
    return motion


@record_history
def friston24(motion: xr.DataArray) -> xr.DataArray:
    r"""Friston 24-parameter motion model: parameters, one-back shifts and their squares.

    Parameters
    ----------
    motion : xarray.DataArray (..., time, confound)
        Six rigid-body parameters: either named ``trans_x, trans_y, trans_z, rot_x, rot_y,
        rot_z`` along ``confound`` (other confounds are ignored), or exactly 6 columns in
        that (SPM ``rp_*.txt``) order. A leading ``subject`` dim is allowed.

    Returns
    -------
    xarray.DataArray (..., time, confound)
        24 regressors, float64, named and ordered as DPABI builds them:
        :math:`R_t` (``trans_x`` ... ``rot_z``), :math:`R_{t-1}` (``*_lag1``; first row 0),
        :math:`R_t^2` (``*_power2``), :math:`R_{t-1}^2` (``*_lag1_power2``). A ``units``
        coordinate along ``confound`` gives each regressor's units.

    Notes
    -----
    The model (Friston et al. 1996) is the autoregressive expansion
    :math:`[R_t, R_{t-1}, R_t^2, R_{t-1}^2]` of the six parameters :math:`R_t`. The order
    of the columns does not change regression residuals.

    References
    ----------
    Friston K. J., Williams S., Howard R., Frackowiak R. S., Turner R. (1996).
    Movement-related effects in fMRI time-series. Magnetic Resonance in Medicine 35(3),
    346-355.
    """
    motion = _motion_da(motion, "friston24")
    motion = motion.astype(np.float64)
    lag = motion.shift({TIME: 1}, fill_value=0.0)
    names = list(MOTION_PARAMS)
    blocks = [
        motion.assign_coords({CONFOUND: names}),
        lag.assign_coords({CONFOUND: [f"{n}_lag1" for n in names]}),
        (motion**2).assign_coords({CONFOUND: [f"{n}_power2" for n in names]}),
        (lag**2).assign_coords({CONFOUND: [f"{n}_lag1_power2" for n in names]}),
    ]
    out = xr.concat(blocks, dim=CONFOUND, coords="minimal", compat="override", join="override")
    out = out.assign_coords(units=(CONFOUND, confound_units([str(c) for c in out[CONFOUND].values])))
    out.name = "confounds"
    out.attrs = {k: v for k, v in motion.attrs.items() if k in ("tr", "source", "history")}
    out.attrs.update({"long_name": "Friston-24 motion regressors", "model": "friston24"})
    return out


@record_history
def tissue_signals(
    bold: xr.DataArray,
    wm: xr.DataArray | None = None,
    csf: xr.DataArray | None = None,
    global_signal: bool | xr.DataArray = False,
) -> xr.DataArray:
    r"""Mean BOLD series over tissue masks (white matter, CSF, whole brain).

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        BOLD; a leading ``subject`` dim is allowed.
    wm, csf : xarray.DataArray (x, y, z), optional
        Masks on the BOLD grid (bool; a numeric map counts its non-zero voxels; threshold
        probability maps yourself, e.g. ``wm_prob > 0.99``). With a ``subject`` dim, one
        mask per subject is allowed.
    global_signal : bool or xarray.DataArray (x, y, z), default False
        True: the mean over all voxels of the array (pass a brain mask instead to restrict
        it); a DataArray: the mean over that mask.

    Returns
    -------
    xarray.DataArray (..., time, confound)
        Lazy means, named ``"white_matter"``, ``"csf"``, ``"global_signal"`` (those
        requested, in this order), float64, units of ``bold`` (also as a
        ``units`` coordinate along ``confound``, so the result concatenates with
        :func:`friston24`'s output: ``xr.concat([f24, tissue], "confound", join="override")``).

    Notes
    -----
    Each signal is :math:`s(t) = \frac{1}{|M|} \sum_{v \in M} y_v(t)` (an unweighted mean,
    as RESTplus/DPABI's ``y_ExtractROISignal`` computes it), accumulated in double precision
    as MATLAB does. A float32 sum over thousands of voxels depends on the order of its terms
    (on the chunking and the BLAS) by about 1e-6 relative, and the nuisance regression turns
    that into differences of up to 1e-3 relative in the residuals, since a tissue signal has
    a large mean and a small variance.
    """
    check_dims(bold, [*SPATIAL, TIME], func="tissue_signals")
    masks: list[tuple[str, xr.DataArray]] = []
    for name, m in (("white_matter", wm), ("csf", csf)):
        if m is not None:
            masks.append((name, m))
    if isinstance(global_signal, xr.DataArray):
        masks.append(("global_signal", global_signal))
    elif global_signal:
        shape = tuple(bold.sizes[d] for d in SPATIAL)
        coords = {d: bold[d] for d in SPATIAL if d in bold.coords}
        masks.append(("global_signal", xr.DataArray(np.ones(shape, bool), dims=SPATIAL, coords=coords)))
    if not masks:
        raise ValueError("tissue_signals: give at least one of wm=, csf= or global_signal=")
    series = []
    for name, m in masks:
        check_dims(m, SPATIAL, func="tissue_signals")
        check_same_grid(bold, m, names=("bold", name), func="tissue_signals")
        weight = (m != 0).astype(np.float64)
        weight = weight.drop_vars([c for c in weight.coords if c not in weight.dims or c in SPATIAL])
        count = weight.sum(SPATIAL)
        values = bold.drop_vars([c for c in SPATIAL if c in bold.coords]).astype(np.float64)
        mean = xr.dot(values, weight, dim=SPATIAL) / count
        series.append(mean.expand_dims({CONFOUND: [name]}, axis=-1))
    out = xr.concat(series, dim=CONFOUND)
    out = out.transpose(..., TIME, CONFOUND)
    unit = str(bold.attrs.get("units", "arbitrary"))
    out = out.assign_coords(units=(CONFOUND, [unit] * out.sizes[CONFOUND]))
    out.name = "confounds"
    out.attrs = {k: bold.attrs[k] for k in ("tr", "source", "units") if k in bold.attrs}
    out.attrs["long_name"] = "mean BOLD signal over tissue masks"
    return out
