"""Gaussian spatial smoothing on chunked volumes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
import scipy.ndimage as ndi
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

from brainarr._core.attrs import carry_attrs, record_history
from brainarr._core.dims import SPATIAL
from brainarr._core.grid import voxel_size
from brainarr._core.validation import check_dims, check_same_grid, describe, get_affine
from brainarr.exceptions import MissingMetadataError

__all__ = ["fwhm_to_sigma", "smooth"]

_FWHM_PER_SIGMA = math.sqrt(8.0 * math.log(2.0))


def fwhm_to_sigma(fwhm: float | Sequence[float], voxel_mm: Sequence[float]) -> np.ndarray:
    r"""Convert a Gaussian FWHM in mm to a standard deviation in voxels per axis.

    Parameters
    ----------
    fwhm : float or sequence of 3 floats
        Full width at half maximum in mm, one value or ``(x, y, z)``.
    voxel_mm : sequence of 3 floats
        Voxel edge lengths in mm.

    Returns
    -------
    numpy.ndarray (3,)
        :math:`\sigma_d = \mathrm{FWHM}_d / (\sqrt{8 \ln 2} \, v_d)` in voxels.
    """
    fwhm_arr = np.broadcast_to(np.asarray(fwhm, dtype=float), (3,))
    return fwhm_arr / _FWHM_PER_SIGMA / np.asarray(voxel_mm, dtype=float)


def _voxel_mm(img: xr.DataArray) -> np.ndarray:
    """Voxel size from the affine, or from the coordinate spacing when there is no affine."""
    if "affine" in img.attrs:
        return voxel_size(get_affine(img, func="smooth"))
    sizes = []
    for dim in SPATIAL:
        coord = np.asarray(img[dim].values, float) if dim in img.coords else np.zeros(0)
        if coord.size < 2:
            raise MissingMetadataError(
                f"smooth: {describe(img)} has no 'affine' attribute and no {dim!r} coordinate to "
                "infer the voxel size from; set attrs['affine'] (voxel-to-MNI 4 x 4 matrix)"
            )
        sizes.append(abs(float(coord[1] - coord[0])))
    return np.asarray(sizes)


def _gaussian_block(block: np.ndarray, *, sigma: tuple[float, ...], truncate: float) -> np.ndarray:
    """Smooth one block along the axes with a non-zero ``sigma`` (reflect boundary)."""
    axes = tuple(i for i, s in enumerate(sigma) if s > 0)
    sig = tuple(sigma[i] for i in axes)
    return ndi.gaussian_filter(block, sig, mode="reflect", truncate=truncate, axes=axes)


def _normalised_block(data: np.ndarray, weight: np.ndarray, *, sigma: tuple[float, ...], truncate: float) -> np.ndarray:
    """Normalised convolution: ``G(data * w) / G(w)`` where ``w > 0``, 0 elsewhere."""
    axes = tuple(i for i, s in enumerate(sigma) if s > 0)
    sig = tuple(sigma[i] for i in axes)
    num = ndi.gaussian_filter(data * weight, sig, mode="reflect", truncate=truncate, axes=axes)
    den = ndi.gaussian_filter(weight, sig, mode="reflect", truncate=truncate, axes=axes)
    inside = np.broadcast_to(weight > 0, num.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(inside & (den > 0), num / np.where(den > 0, den, 1), 0)
    return out.astype(data.dtype, copy=False)


def _prepare_overlap(arr, sigma: tuple[float, ...], truncate: float):
    """Depths per axis and an array whose chunks are at least that deep (or one chunk)."""
    depth = {}
    rechunk = {}
    for axis, s in enumerate(sigma):
        if s <= 0:
            depth[axis] = 0
            continue
        d = math.ceil(s * truncate)
        chunks = arr.chunks[axis]
        if len(chunks) == 1:
            depth[axis] = 0
        elif d >= arr.shape[axis]:
            # The kernel spans the whole axis: one chunk along it.
            rechunk[axis] = -1
            depth[axis] = 0
        elif min(chunks) < d:
            # The halo would reach past a neighbouring chunk: merge thin chunks.
            rechunk[axis] = ensure_minimum_chunksize(d, chunks)
            depth[axis] = d if len(rechunk[axis]) > 1 else 0
        else:
            depth[axis] = d
    if rechunk:
        arr = arr.rechunk(rechunk)
    return arr, depth


@record_history
def smooth(
    img: xr.DataArray,
    fwhm: float | Sequence[float],
    *,
    mask: xr.DataArray | None = None,
    truncate: float = 4.0,
) -> xr.DataArray:
    r"""Smooth maps or BOLD volumes with a 3-D Gaussian kernel of given FWHM in mm.

    Parameters
    ----------
    img : xarray.DataArray (..., x, y, z, ...)
        A map ``(x, y, z)``, maps with leading dims (``subject``, ``seed``) or BOLD
        ``(x, y, z, time)`` (each volume smoothed on its own). Needs ``attrs["affine"]``
        (or evenly spaced ``x, y, z`` coordinates) for the voxel size.
    fwhm : float or sequence of 3 floats
        Full width at half maximum in mm, isotropic or per axis ``(x, y, z)``; each > 0.
    mask : xarray.DataArray (x, y, z) of bool, optional
        If given, normalised convolution: only in-mask voxels contribute and the result
        is divided by the smoothed mask; voxels outside the mask are 0.
    truncate : float, default 4.0
        Kernel half-width in standard deviations (as :func:`scipy.ndimage.gaussian_filter`).

    Returns
    -------
    xarray.DataArray
        Same dims, coords, chunks along non-spatial dims and dtype (floating) as ``img``;
        attrs kept with ``fwhm`` (mm) and a ``history`` entry added.

    Raises
    ------
    ValueError
        If ``fwhm <= 0`` or ``truncate <= 0``.

    Notes
    -----
    The standard deviation in voxels along axis :math:`d` is

    .. math:: \sigma_d = \frac{\mathrm{FWHM}_d}{\sqrt{8 \ln 2} \, v_d},

    with :math:`v_d` the voxel edge length from the affine. Without a mask the result equals
    :func:`scipy.ndimage.gaussian_filter` on the whole array with ``mode="reflect"`` (the
    array is mirrored at its faces, ``d c b a | a b c d``) for any chunking: chunks are
    processed with :func:`dask.array.map_overlap` and a halo of
    :math:`\lceil \sigma_d \cdot \mathrm{truncate} \rceil` voxels; chunks thinner than the halo
    are merged with a neighbour first (the output chunks then differ from the input's).

    SPM's ``spm_smooth`` (used by RESTplus/DPABI) treats voxels outside the array as 0
    instead of mirroring, so values within about one kernel width of the array faces differ;
    for brain maps the faces are outside the brain and the maps agree inside the brain
    (apart from the much smaller difference of SPM's discretised kernel).

    With ``mask`` :math:`M`, the result is
    :math:`(G * (f M)) / (G * M)` inside the mask and 0 outside (normalised convolution,
    Knutsson & Westin 1993), so the brain edge is not darkened by outside zeros.

    References
    ----------
    Knutsson H., Westin C.-F. (1993). Normalized and differential convolution. CVPR, 515-523.
    """
    if np.ndim(fwhm) not in (0, 1) or np.size(fwhm) not in (1, 3):
        raise ValueError(f"smooth: fwhm must be one number or three (x, y, z) in mm, got {fwhm!r}")
    fwhm_arr = np.broadcast_to(np.asarray(fwhm, dtype=float), (3,))
    if not np.all(np.isfinite(fwhm_arr)) or np.any(fwhm_arr <= 0):
        raise ValueError(
            f"smooth: fwhm must be > 0 mm along every axis, got {fwhm!r}; to skip smoothing, do not call smooth"
        )
    if not truncate > 0:
        raise ValueError(f"smooth: truncate must be > 0, got {truncate!r}")
    check_dims(img, SPATIAL, func="smooth")
    sig3 = fwhm_to_sigma(fwhm_arr, _voxel_mm(img))
    sigma = tuple(float(sig3[SPATIAL.index(d)]) if d in SPATIAL else 0.0 for d in img.dims)

    dtype = img.dtype if np.issubdtype(img.dtype, np.floating) else np.dtype(np.float64)
    data = img.data.astype(dtype, copy=False)
    lazy = dask.is_dask_collection(data)

    if mask is not None:
        check_dims(mask, SPATIAL, func="smooth", allowed_extra=False)
        check_same_grid(img, mask, names=("img", "mask"), func="smooth")
        m = mask.transpose(*[d for d in img.dims if d in SPATIAL])
        weight = xr.DataArray(m.data, dims=m.dims).astype(dtype)
        # broadcast the mask to img's dim order (size 1 along non-spatial dims)
        expand = [d for d in img.dims if d not in SPATIAL]
        weight = weight.expand_dims(expand).transpose(*img.dims)
        wdata = weight.data
        if lazy or dask.is_dask_collection(wdata):
            data = data if lazy else da.from_array(data, chunks=-1)
            wdata = wdata if dask.is_dask_collection(wdata) else da.from_array(wdata, chunks=-1)
            # one chunk along broadcast dims of the weight; spatial chunks as the data
            wchunks = tuple(data.chunks[i] if d in SPATIAL else (1,) for i, d in enumerate(img.dims))
            wdata = wdata.rechunk(wchunks)
            data, depth = _prepare_overlap(data, sigma, truncate)
            wdata = wdata.rechunk(tuple(data.chunks[i] if d in SPATIAL else (1,) for i, d in enumerate(img.dims)))
            out = da.map_overlap(
                _normalised_block,
                data,
                wdata,
                depth=[depth, {**depth, **{i: 0 for i, d in enumerate(img.dims) if d not in SPATIAL}}],
                boundary="none",
                dtype=dtype,
                meta=np.zeros((0,) * data.ndim, dtype),
                sigma=sigma,
                truncate=truncate,
                align_arrays=False,
            )
        else:
            out = _normalised_block(np.asarray(data), np.asarray(wdata), sigma=sigma, truncate=truncate)
    elif lazy:
        data, depth = _prepare_overlap(data, sigma, truncate)
        out = da.map_overlap(
            _gaussian_block,
            data,
            depth=depth,
            boundary="none",
            dtype=dtype,
            meta=np.zeros((0,) * data.ndim, dtype),
            sigma=sigma,
            truncate=truncate,
        )
    else:
        out = _gaussian_block(np.asarray(data), sigma=sigma, truncate=truncate)

    result = img.copy(data=out)
    result.attrs = dict(img.attrs)
    carry_attrs(img, result)
    result.attrs["fwhm"] = fwhm_arr.tolist() if np.size(fwhm) == 3 else float(fwhm_arr[0])
    result.attrs["fwhm_units"] = "mm"
    return result
