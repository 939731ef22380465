"""Head-motion quality control: framewise displacement and exclusion flags."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from brainarr._core.attrs import record_history
from brainarr._core.confounds import MOTION_PARAMS
from brainarr._core.dims import CONFOUND, TIME
from brainarr._core.rigid import rigid_matrix
from brainarr.preprocess._confounds import _motion_da

__all__ = ["framewise_displacement", "motion_qc"]

#: The variables :func:`motion_qc` returns (coordinates of a cohort once assigned).
QC_VARIABLES = ("mean_fd", "max_translation", "max_rotation", "excluded")

_TRANS = list(MOTION_PARAMS[:3])
_ROT = list(MOTION_PARAMS[3:])


def _jenkinson_kernel(params: np.ndarray, radius: float) -> np.ndarray:
    """Jenkinson relative RMS displacement along ``time`` (axis -2 of ``(..., time, 6)``)."""
    mats = rigid_matrix(params)
    rel = mats[..., 1:, :, :] @ np.linalg.inv(mats[..., :-1, :, :]) - np.eye(4)
    a = rel[..., :3, :3]
    t = rel[..., :3, 3]
    value = np.sqrt(radius**2 / 5.0 * np.einsum("...ij,...ij->...", a, a) + np.einsum("...i,...i->...", t, t))
    return np.concatenate([np.zeros((*value.shape[:-1], 1)), value], axis=-1)


@record_history
def framewise_displacement(
    motion: xr.DataArray,
    *,
    radius: float | None = None,
    method: Literal["power", "jenkinson"] = "power",
) -> xr.DataArray:
    r"""Framewise displacement (Power et al. 2012, or Jenkinson et al. 2002) from six parameters.

    Parameters
    ----------
    motion : xarray.DataArray (..., time, confound)
        Translations ``trans_x, trans_y, trans_z`` (mm) and rotations ``rot_x, rot_y, rot_z``
        (radians), named along ``confound`` or as 6 columns in that order (SPM ``rp_*.txt``,
        fMRIPrep). A leading ``subject`` dim is allowed.
    radius : float, optional
        Radius in mm of the head sphere: 50 mm for ``"power"`` and 80 mm for
        ``"jenkinson"`` by default (the values of DPABI and FSL).
    method : {"power", "jenkinson"}, default "power"
        Which displacement measure (see Notes).

    Returns
    -------
    xarray.DataArray (..., time)
        ``framewise_displacement`` in mm, float64, 0 at the first volume. Lazy if the input is.

    Notes
    -----
    Power (DPABI's ``FD_Power``):

    .. math::

        FD_t = \sum_{d \in \{x,y,z\}} |\Delta t_{d}(t)| + r \sum_{d} |\Delta \theta_{d}(t)|,
        \qquad \Delta u(t) = u(t) - u(t-1), \quad FD_0 = 0.

    Jenkinson (DPABI's ``FD_Jenkinson``, FSL's relative RMS): with :math:`A_t` the 4 x 4
    rigid-body matrix of volume :math:`t` built from the six parameters as SPM's
    ``spm_matrix`` does (translation times :math:`R_x R_y R_z`), :math:`M = A_t A_{t-1}^{-1}
    - I`, its 3 x 3 block :math:`B` and translation :math:`\mathbf{m}`,

    .. math:: FD_t = \sqrt{\frac{r^2}{5} \operatorname{tr}(B^T B) + \mathbf{m}^T \mathbf{m}},

    the root mean square displacement over a sphere of radius :math:`r` centred at the
    origin of the coordinates (Jenkinson 1999). FSL computes it from MCFLIRT's matrices
    about the volume centre; from six SPM-convention parameters the origin is the centre.

    References
    ----------
    Power J. D., Barnes K. A., Snyder A. Z., Schlaggar B. L., Petersen S. E. (2012).
    Spurious but systematic correlations in functional connectivity MRI networks arise from
    subject motion. NeuroImage 59(3), 2142-2154.

    Jenkinson M. (1999). Measuring transformation error by RMS deviation. FMRIB technical
    report TR99MJ1. Jenkinson M., Bannister P., Brady M., Smith S. (2002). NeuroImage 17(2),
    825-841.
    """
    if method not in ("power", "jenkinson"):
        raise ValueError(f"framewise_displacement: method must be 'power' or 'jenkinson', got {method!r}")
    if radius is None:
        radius = 50.0 if method == "power" else 80.0
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"framewise_displacement: radius must be a positive number of mm, got {radius}")
    motion = _motion_da(motion, "framewise_displacement").astype(np.float64)
    extra = [c for c in motion.coords if c not in motion.dims and CONFOUND in motion[c].dims]
    motion = motion.drop_vars(extra)
    if method == "power":
        step = abs(motion - motion.shift({TIME: 1}))
        first = xr.DataArray(np.arange(motion.sizes[TIME]) == 0, dims=TIME)
        step = step.where(~first, 0.0)
        fd = step.sel({CONFOUND: _TRANS}).sum(CONFOUND) + radius * step.sel({CONFOUND: _ROT}).sum(CONFOUND)
    else:
        if motion.chunks is not None:
            motion = motion.chunk({TIME: -1, CONFOUND: -1})
        fd = xr.apply_ufunc(
            _jenkinson_kernel,
            motion,
            input_core_dims=[[TIME, CONFOUND]],
            output_core_dims=[[TIME]],
            dask="parallelized",
            output_dtypes=[np.float64],
            kwargs={"radius": float(radius)},
        )
        fd = fd.assign_coords({c: motion[c] for c in motion.coords if motion[c].dims == (TIME,)})
    fd.name = "framewise_displacement"
    fd.attrs = {k: motion.attrs[k] for k in ("tr", "source") if k in motion.attrs}
    fd.attrs.update(
        {
            "long_name": f"framewise displacement ({method.capitalize()})",
            "units": "mm",
            "radius_mm": float(radius),
            "method": method,
        }
    )
    return fd


@record_history
def motion_qc(
    motion: xr.DataArray,
    *,
    max_translation: float = 3.0,
    max_rotation: float = 3.0,
    radius: float = 50.0,
) -> xr.Dataset:
    r"""Summarise head motion per subject and flag subjects to exclude.

    Parameters
    ----------
    motion : xarray.DataArray (..., time, confound)
        Six rigid-body parameters (see :func:`framewise_displacement`), usually with a
        ``subject`` dim.
    max_translation : float, default 3.0
        Exclusion threshold in mm (strictly greater excludes).
    max_rotation : float, default 3.0
        Exclusion threshold in degrees (strictly greater excludes).
    radius : float, default 50.0
        Sphere radius in mm for the framewise displacement.

    Returns
    -------
    xarray.Dataset (...)
        ``mean_fd`` (mm, mean of the Power FD over all volumes, the first counted as 0, as
        DPABI's ``FD_Power`` mean), ``max_translation`` (mm, largest absolute translation
        along any axis), ``max_rotation`` (degrees, largest absolute rotation about any axis)
        and ``excluded`` (bool: ``max_translation > 3 mm`` or ``max_rotation > 3``
        degrees, the study's rule). Lazy if the input is.

    Notes
    -----
    The variables are per-subject scalars, meant to become coordinates of a cohort:
    ``cohort = cohort.assign_coords(motion_qc(cohort["confounds"]).variables)`` (or
    ``cohort.assign_coords(excluded=qc["excluded"], mean_fd=qc["mean_fd"])``), after which
    ``cohort.sel(subject=~cohort.excluded)`` keeps the included subjects.
    The maxima are of the parameters relative to the realignment reference volume, as
    RESTplus/DPABI's head-motion check reports them.
    """
    base = _motion_da(motion, "motion_qc").astype(np.float64)
    base = base.drop_vars([c for c in base.coords if c not in base.dims and CONFOUND in base[c].dims])
    # QC values recorded earlier (a raw ingest stores them) are recomputed here, never merged with
    base = base.drop_vars([c for c in QC_VARIABLES if c in base.coords])
    fd = framewise_displacement.__wrapped__(base, radius=radius)
    max_t = abs(base.sel({CONFOUND: _TRANS})).max([TIME, CONFOUND])
    max_r = np.degrees(abs(base.sel({CONFOUND: _ROT})).max([TIME, CONFOUND]))
    drop = [c for c in fd.coords if TIME in fd[c].dims]
    ds = xr.Dataset(
        {
            "mean_fd": fd.mean(TIME).drop_vars(drop, errors="ignore"),
            "max_translation": max_t,
            "max_rotation": max_r,
            "excluded": (max_t > max_translation) | (max_r > max_rotation),
        }
    )
    ds["mean_fd"].attrs = {"long_name": "mean framewise displacement (Power)", "units": "mm"}
    ds["max_translation"].attrs = {"long_name": "maximum absolute head translation", "units": "mm"}
    ds["max_rotation"].attrs = {"long_name": "maximum absolute head rotation", "units": "degree"}
    ds["excluded"].attrs = {
        "long_name": "excluded for head motion",
        "units": "1",
        "description": f"max translation > {max_translation} mm or max rotation > {max_rotation} degrees",
    }
    ds.attrs = {"max_translation_mm": float(max_translation), "max_rotation_deg": float(max_rotation)}
    return ds
