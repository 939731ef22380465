"""MNI152 2009 templates and tissue priors, and small grid helpers shared by the anatomy steps.

The templates are the ones nilearn ships (:func:`nilearn.datasets.load_mni152_template`,
``load_mni152_gm_template``, ``load_mni152_wm_template``, ``load_mni152_brain_mask``): the
ICBM 2009 nonlinear asymmetric MNI152 T1 average, brain-extracted, and its grey-matter,
white-matter and brain probability maps (Fonov et al. 2011, NeuroImage 54:2033-2044). They are
read once per voxel size and kept in memory.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import xarray as xr
from scipy import ndimage

from brainarr._core.dims import SPATIAL
from brainarr._core.grid import spatial_coords, voxel_size
from brainarr._core.validation import describe, get_affine
from brainarr.exceptions import DataValidationError, DimensionError
from brainarr.spatial._resample import grid_points, sample_volume

__all__ = ["mni_template", "tissue_priors"]

TemplateKind = Literal["t1", "gm", "wm", "mask"]

_LOADERS = {
    "t1": "load_mni152_template",
    "gm": "load_mni152_gm_template",
    "wm": "load_mni152_wm_template",
    "mask": "load_mni152_brain_mask",
}

#: Lower corner of nilearn's MNI152 2009 box (mm); both the 1 mm and the 2 mm grids start here.
_MNI_ORIGIN = np.array([-98.0, -134.0, -72.0])
#: Upper corner of the 1 mm box (mm).
_MNI_END = np.array([98.0, 98.0, 116.0])


@functools.lru_cache(maxsize=16)
def _template_array(kind: str, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Template ``kind`` on an isotropic ``size`` mm grid over nilearn's MNI box (float32, affine)."""
    from nilearn import datasets

    if kind not in _LOADERS:
        raise ValueError(f"unknown template {kind!r}; choose one of {sorted(_LOADERS)}")
    if size <= 0:
        raise ValueError(f"template voxel size must be positive (mm), got {size}")
    native = 1 if size < 2 else 2
    img = getattr(datasets, _LOADERS[kind])(resolution=native)
    data = np.asarray(img.get_fdata(dtype=np.float32))
    affine = np.asarray(img.affine, float)
    if np.isclose(size, native):
        return data, affine
    # coarser grid: Gaussian pre-filter to the new voxel size, then trilinear sampling
    sigma = np.sqrt(max(size**2 - native**2, 0.0)) / (2.0 * np.sqrt(2.0 * np.log(2.0))) / native
    smooth = ndimage.gaussian_filter(data, sigma) if sigma > 0 else data
    shape = tuple(int(np.floor((hi - lo) / size + 1e-9)) + 1 for lo, hi in zip(_MNI_ORIGIN, _MNI_END, strict=True))
    new_affine = np.diag([size, size, size, 1.0])
    new_affine[:3, 3] = _MNI_ORIGIN
    out = sample_volume(smooth, affine, grid_points(new_affine, shape), order=1)
    return out.astype(np.float32), new_affine


def mni_template(kind: TemplateKind = "t1", voxel_size: float = 2.0) -> xr.DataArray:
    """An MNI152 2009 template (T1, GM, WM or brain mask) on an isotropic grid.

    Parameters
    ----------
    kind : {"t1", "gm", "wm", "mask"}
        The brain-extracted T1 average (intensities 0-1), the grey- or white-matter probability
        map, or the brain mask (probability, 0-1).
    voxel_size : float, default 2.0
        Voxel edge in mm. 1 and 2 are nilearn's own grids; other sizes are resampled from the
        nearest finer one after Gaussian smoothing to the new voxel size.

    Returns
    -------
    xarray.DataArray (x, y, z), float32
        With MNI coordinates (mm, RAS) and ``attrs["affine"]``.
    """
    data, affine = _template_array(kind, float(voxel_size))
    da = xr.DataArray(data.copy(), dims=SPATIAL, coords=spatial_coords(affine, data.shape), name=f"mni152_{kind}")
    da.attrs.update({"affine": affine.tolist(), "source": f"MNI152 2009 {kind} (nilearn) at {voxel_size:g} mm"})
    return da


def _prior_arrays(size: float) -> tuple[np.ndarray, np.ndarray]:
    """Stacked priors (4, nx, ny, nz) for GM, WM, CSF, non-brain, summing to 1, and the affine."""
    gm, affine = _template_array("gm", size)
    wm, _ = _template_array("wm", size)
    mask, _ = _template_array("mask", size)
    gm, wm, mask = (np.clip(a, 0.0, 1.0) for a in (gm, wm, mask))
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    rest = np.clip(1.0 - gm - wm - csf, 0.0, 1.0)
    stack = np.stack([gm, wm, csf, rest]).astype(np.float32)
    stack /= np.maximum(stack.sum(axis=0, keepdims=True), 1e-6)
    return stack, affine


def tissue_priors(voxel_size: float = 2.0) -> xr.Dataset:
    """Tissue prior probabilities in MNI152 2009 space: ``gm``, ``wm``, ``csf``, ``background``.

    GM and WM are nilearn's probability maps; CSF is the brain mask minus GM and WM (clipped at
    0), and ``background`` is what is left, so that the four sum to one in every voxel.

    Parameters
    ----------
    voxel_size : float, default 2.0
        Voxel edge in mm (see :func:`mni_template`).

    Returns
    -------
    xarray.Dataset
        Four float32 maps (x, y, z) in [0, 1] with ``attrs["affine"]``.
    """
    stack, affine = _prior_arrays(float(voxel_size))
    coords = spatial_coords(affine, stack.shape[1:])
    names = ("gm", "wm", "csf", "background")
    ds = xr.Dataset({n: xr.DataArray(stack[i], dims=SPATIAL, coords=coords) for i, n in enumerate(names)})
    ds.attrs.update({"affine": affine.tolist(), "source": f"MNI152 2009 tissue priors at {voxel_size:g} mm"})
    return ds


# --------------------------------------------------------------------------------------------
# grid helpers


def volume_of(img: xr.DataArray, *, name: str, func: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a 3-D image and return its data (float32, x-y-z order) and its voxel-to-world affine.

    Triggers computation of ``img``.
    """
    if not isinstance(img, xr.DataArray):
        raise TypeError(f"{func}: {name} must be an xarray.DataArray, got {type(img).__name__}")
    missing = [d for d in SPATIAL if d not in img.dims]
    if missing or img.ndim != 3:
        raise DimensionError(
            f"{func}: {name} must be a 3-D image with dims {SPATIAL}; {describe(img)} has dims {tuple(img.dims)}"
            " (average a 4-D series over time first)"
        )
    affine = get_affine(img, func=func)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataValidationError(f"{func}: the affine of {name} ({describe(img)}) is singular")
    data = np.asarray(img.transpose(*SPATIAL).values, dtype=np.float32)
    if min(data.shape) < 4:
        raise DimensionError(f"{func}: {name} ({describe(img)}) needs at least 4 voxels along each axis")
    if not np.all(np.isfinite(data)):
        raise DataValidationError(f"{func}: {name} ({describe(img)}) contains NaN or infinite values")
    if not np.ptp(data) > 0:
        raise DataValidationError(f"{func}: {name} ({describe(img)}) is constant; nothing to register")
    return data, affine


def smooth_to(data: np.ndarray, affine: np.ndarray, fwhm_mm: float) -> np.ndarray:
    """Gaussian smoothing so that voxels of this size reach about ``fwhm_mm`` (SPM's rule).

    The kernel FWHM along each axis is ``sqrt(max(fwhm_mm**2 - vox**2, 0))`` (mm).
    """
    vox = voxel_size(affine)
    fwhm = np.sqrt(np.maximum(fwhm_mm**2 - vox**2, 0.0))
    sigma = fwhm / vox / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    if not np.any(sigma > 0.05):
        return data
    return ndimage.gaussian_filter(data, sigma, mode="nearest")
