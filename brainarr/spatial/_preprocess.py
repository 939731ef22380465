"""The spatial chain for one subject: native EPI and T1 to the study grid in one resampling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from brainarr._core.attrs import history_entry
from brainarr._core.chunks import spatial_chunks
from brainarr._core.dims import SPATIAL, TIME
from brainarr._core.slices import SliceOrder
from brainarr._core.validation import check_dims, get_affine
from brainarr.exceptions import DataValidationError, DimensionError

__all__ = ["coarsen", "preprocess"]

#: World-to-world and voxel matrices are stored with these two dims.
_ROW, _COL = "row", "col"


def _check_inputs(bold: xr.DataArray, t1: xr.DataArray) -> None:
    """Refuse inputs the chain cannot use, naming them."""
    if not isinstance(bold, xr.DataArray) or bold.ndim != 4:
        raise DimensionError(
            f"preprocess: BOLD {_name(bold)} must be a 4-D DataArray (x, y, z, time), got "
            f"{getattr(bold, 'dims', type(bold).__name__)}"
        )
    check_dims(bold, [*SPATIAL, TIME], func="preprocess")
    if bold.sizes[TIME] < 2:
        raise DimensionError(f"preprocess: BOLD {_name(bold)} has {bold.sizes[TIME]} volume; realignment needs >= 2")
    if not isinstance(t1, xr.DataArray) or t1.dims != SPATIAL:
        raise DimensionError(
            f"preprocess: T1 {_name(t1)} must be a 3-D DataArray (x, y, z), got "
            f"{getattr(t1, 'dims', type(t1).__name__)}"
        )
    get_affine(bold, func="preprocess")
    get_affine(t1, func="preprocess")


def _name(obj: Any) -> str:
    attrs = getattr(obj, "attrs", {}) or {}
    return repr(attrs.get("source") or getattr(obj, "name", None) or "image")


#: Volumes per task of the final resampling.
_VOLUME_BLOCK = 16

#: Least fraction of the EPI's head that the T1 must cover once coregistered.
MIN_T1_COVERAGE = 0.8


def _check_coverage(mean: xr.DataArray, t1: xr.DataArray, coreg_matrix: np.ndarray) -> None:
    """Refuse a T1 that does not cover the head seen by the EPI (another field of view, a slab).

    The head is the mean EPI above an eighth of its mean (SPM's "global" mask); its voxel
    centres are carried into the T1 through the coregistration and must fall inside the T1's
    box for at least :data:`MIN_T1_COVERAGE` of them.
    """
    values = np.asarray(mean.values, np.float64)
    head = values > values[values > 0].mean() / 8 if np.any(values > 0) else values > 0
    ijk = np.argwhere(head)
    if not len(ijk):
        raise DataValidationError(f"preprocess: the mean EPI of {_name(mean)} is empty")
    world = _apply(_affine(mean), ijk.astype(np.float64))
    in_t1 = _apply(np.linalg.inv(_affine(t1)) @ np.linalg.inv(coreg_matrix), world)
    shape = np.array([t1.sizes[d] for d in SPATIAL])
    covered = float(np.mean(np.all((in_t1 >= -0.5) & (in_t1 <= shape - 0.5), axis=1)))
    if covered < MIN_T1_COVERAGE:
        raise DataValidationError(
            f"preprocess: T1 {_name(t1)} covers only {100 * covered:.0f}% of the head seen by the EPI "
            f"{_name(mean)} after coregistration (at least {100 * MIN_T1_COVERAGE:.0f}% needed): is it this "
            "subject's whole-head T1?"
        )


def coarsen(img: xr.DataArray, voxel: float) -> xr.DataArray:
    """An image averaged over blocks of voxels so that its voxels are at most about ``voxel`` mm.

    Each axis is coarsened by the integer factor ``round(voxel / size)`` (1 keeps it); the mean
    of each block is the partial-volume value of the larger voxel, and the affine moves the
    voxel centres to the blocks' centres. Trailing voxels that do not fill a block are dropped.
    """
    affine = _affine(img)
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    factors = [max(1, round(voxel / s)) for s in sizes]
    if factors == [1, 1, 1]:
        return img
    data = np.asarray(img.transpose(*SPATIAL).values, np.float32)
    shape = [n // f for n, f in zip(data.shape, factors, strict=True)]
    data = data[: shape[0] * factors[0], : shape[1] * factors[1], : shape[2] * factors[2]]
    blocks = data.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    scale = np.diag([*factors, 1.0])
    scale[:3, 3] = (np.asarray(factors) - 1) / 2.0
    out = xr.DataArray(blocks.mean(axis=(1, 3, 5)), dims=SPATIAL, name=img.name)
    out.attrs = {**img.attrs, "affine": (affine @ scale).tolist()}
    return out


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 4 x 4 matrix applied to points ``(..., 3)``."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def _slice_timed(bold: xr.DataArray, slice_timing: Any, slice_axis: str, ref: Any) -> xr.DataArray:
    """``bold`` corrected for slice acquisition times (a named order or times in s), or as it is."""
    from brainarr.preprocess import slice_timing as correct

    in_memory = not isinstance(bold.data, da.Array)
    if slice_timing is None:
        return bold.chunk({TIME: _VOLUME_BLOCK, **{d: -1 for d in SPATIAL}}) if in_memory else bold
    # blocks of ~32 MiB: the Fourier shift's complex intermediates stay small
    shape = tuple(int(bold.sizes[d]) for d in SPATIAL)
    bold = bold.chunk({TIME: -1, **spatial_chunks(shape, bytes_per_voxel=4 * bold.sizes[TIME], target_mib=32)})
    if isinstance(slice_timing, str):
        timed = correct(bold, order=slice_timing, slice_axis=slice_axis, ref=ref)
    else:
        timed = correct(bold, np.asarray(slice_timing, float), slice_axis=slice_axis, ref=ref)
    if not in_memory:
        return timed
    # a series already in memory is corrected once, not again by each step that reads it; it
    # goes on as blocks of volumes, so that the resampling stays lazy (one task per block)
    timed = timed.compute()
    return timed.chunk({TIME: _VOLUME_BLOCK, **{d: -1 for d in SPATIAL}})


def _matrix_da(matrix: np.ndarray, name: str, long_name: str) -> xr.DataArray:
    return xr.DataArray(
        np.asarray(matrix, np.float64),
        dims=(_ROW, _COL),
        name=name,
        attrs={"long_name": long_name, "units": "mm"},
    )


def preprocess(
    bold: xr.DataArray,
    t1: xr.DataArray,
    *,
    slice_timing: SliceOrder | Sequence[float] | None = None,
    slice_axis: Literal["x", "y", "z"] = "z",
    slice_ref: float | Literal["first", "middle"] = "middle",
    grid: xr.DataArray | None = None,
    order: int = 4,
    t1_voxel_size: float | None = 2.0,
    realign_options: Mapping[str, Any] | None = None,
    coregister_options: Mapping[str, Any] | None = None,
    normalise_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    r"""Native-space BOLD and T1 of one subject to the study grid: the whole spatial chain.

    The steps are those of the study (DPARSF's order): slice-timing correction, rigid-body
    realignment (:func:`realign`), coregistration of the mean EPI to the T1 (:func:`coregister`,
    normalised mutual information), normalisation of the T1 to MNI152 (:func:`normalise`, affine
    then nonlinear), segmentation of the T1 (:func:`segment`). Each BOLD volume is then resampled
    **once**, through the composed chain, onto ``grid``: for a grid voxel at MNI point
    :math:`m`, volume :math:`t` is sampled at the EPI voxel

    .. math:: v_t = M_t^{-1}\, C\, \phi(m)

    where :math:`\phi` is the normalisation's deformation (MNI mm to T1 mm), :math:`C` the
    coregistration (T1 mm to EPI mm) and :math:`M_t = R(\mathrm{rp}_t)\, M_1` volume
    :math:`t`'s realigned voxel-to-world matrix (SPM's convention, :mod:`brainarr._core.rigid`).

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time)
        Native-space BOLD (:func:`brainarr.io.load_nifti`), any affine (oblique included),
        ``attrs`` ``affine`` and ``tr``.
    t1 : xarray.DataArray (x, y, z)
        The subject's T1-weighted image, any affine.
    slice_timing : str or sequence of float, optional
        Slice acquisition order name (``"interleaved"``...) or times in s from the start of the
        volume, one per slice along ``slice_axis`` (BIDS ``SliceTiming``); None skips the
        correction. See :func:`brainarr.preprocess.slice_timing`.
    slice_axis : {"x", "y", "z"}, default "z"
        Voxel axis along which the slices were acquired.
    slice_ref : float or {"first", "middle"}, default "middle"
        Reference time of the slice-timing correction.
    grid : xarray.DataArray (x, y, z), optional
        Output grid with ``attrs["affine"]`` in MNI mm; default the 3 mm study grid
        (:func:`brainarr.datasets.study_grid`, 61 x 73 x 61).
    order : int, default 4
        B-spline degree of the BOLD resampling (SPM's reslice default, 4th degree).
    t1_voxel_size : float or None, default 2.0
        The anatomical steps (coregistration, normalisation, segmentation) work on the T1
        averaged over blocks of voxels up to this size in mm (:func:`coarsen`: a 1 mm T1 becomes
        2 mm), which keeps one subject under 2 GiB and its outputs are on a coarser grid anyway;
        None uses the T1 as it is.
    realign_options, coregister_options, normalise_options : mapping, optional
        Keyword arguments of :func:`realign`, :func:`coregister` and :func:`normalise`.

    Returns
    -------
    xarray.Dataset
        - ``bold`` (x, y, z, time), float32, lazy (one task per chunk of volumes), on ``grid``;
          zero where the EPI field of view does not reach;
        - ``motion`` (time, confound): the six realignment parameters, SPM ``rp_*.txt``
          convention (mm, rad);
        - ``gm``, ``wm``, ``csf`` (x, y, z), float32: the subject's tissue probabilities on
          ``grid``;
        - ``mean`` (x, y, z): the mean realigned EPI on ``grid``;
        - transforms: ``realign_matrices`` (time, row, col), ``coregistration`` (row, col, T1
          mm to EPI mm), ``normalisation_affine`` (row, col, MNI mm to T1 mm) and
          ``deformation`` (x, y, z, component): the T1 mm of each grid voxel. They re-derive
          every output (:func:`resample`).

    Notes
    -----
    Triggers computation of the estimations (realignment, coregistration, normalisation,
    segmentation); the resampled BOLD stays lazy. Peak memory is about four native BOLD
    series plus one output volume per task.
    """
    from brainarr.datasets import study_grid
    from brainarr.spatial._coregister import coregister
    from brainarr.spatial._normalise import deformation_at, normalise
    from brainarr.spatial._realign import realign
    from brainarr.spatial._resample import grid_points, resample
    from brainarr.spatial._segment import segment

    _check_inputs(bold, t1)
    grid = study_grid(3.0) if grid is None else grid
    grid_affine = get_affine(grid, func="preprocess")
    grid_shape = tuple(int(grid.sizes[d]) for d in SPATIAL)

    if t1_voxel_size is not None:
        t1 = coarsen(t1, float(t1_voxel_size))
    timed = _slice_timed(bold, slice_timing, slice_axis, slice_ref)
    realignment = realign(timed, **dict(realign_options or {}))
    mean = realignment["mean"]
    coreg = coregister(mean, t1, **dict(coregister_options or {}))
    coreg_matrix = np.asarray(coreg["matrix"].values, np.float64)
    _check_coverage(mean.assign_attrs(source=bold.attrs.get("source", "")), t1, coreg_matrix)
    normalisation = normalise(t1, **dict(normalise_options or {}))
    tissues = segment(t1, normalisation=normalisation)

    points_t1 = deformation_at(normalisation, grid_points(grid_affine, grid_shape))
    points_epi = _apply(coreg_matrix, points_t1)
    # volume t's aligned voxel-to-world is R_t M_1: sample its data at M_1^-1 R_t^-1 p
    per_volume = _affine(bold) @ np.linalg.inv(np.asarray(realignment["matrices"].values, np.float64))
    out_bold = resample(
        timed, affine=grid_affine, shape=grid_shape, points=points_epi, transform=per_volume, order=order
    )
    out_bold = out_bold.assign_coords({d: grid[d] for d in SPATIAL}).astype(np.float32)
    out_bold.name = "bold"

    maps = {}
    for tissue in ("gm", "wm", "csf"):
        prob = tissues[tissue].assign_attrs(affine=_affine(t1).tolist())
        m = resample(prob, affine=grid_affine, shape=grid_shape, points=points_t1, order=1)
        maps[tissue] = m.clip(0, 1).astype(np.float32).assign_coords({d: grid[d] for d in SPATIAL}).compute()
    mean_grid = resample(mean, affine=grid_affine, shape=grid_shape, points=points_epi, order=order)
    if not bool((maps["gm"] > 0.5).any()):
        raise DataValidationError(
            f"preprocess: no grey matter of T1 {_name(t1)} reaches the grid; is it a T1 of the whole head?"
        )

    ds = xr.Dataset(
        {
            "bold": out_bold,
            "motion": realignment["motion"],
            **maps,
            "mean": mean_grid.assign_coords({d: grid[d] for d in SPATIAL}).astype(np.float32),
            "realign_matrices": realignment["matrices"],
            "coregistration": _matrix_da(coreg_matrix, "coregistration", "T1 world mm to EPI world mm"),
            "normalisation_affine": _matrix_da(
                np.asarray(normalisation["affine_matrix"].values),
                "normalisation_affine",
                "MNI mm to T1 mm (affine part)",
            ),
            "deformation": xr.DataArray(
                points_t1.astype(np.float32),
                dims=(*SPATIAL, "component"),
                coords={**{d: grid[d] for d in SPATIAL}, "component": ["x", "y", "z"]},
                attrs={"long_name": "T1 world coordinate of each grid voxel", "units": "mm"},
            ),
        }
    )
    ds.attrs.update(
        {
            "affine": np.asarray(grid_affine).tolist(),
            "tr": float(bold.attrs.get("tr", np.nan)),
            "source": bold.attrs.get("source", ""),
            "t1_source": t1.attrs.get("source", ""),
            "history": history_entry(
                "brainarr.spatial.preprocess",
                {
                    "slice_timing": slice_timing,
                    "slice_axis": slice_axis,
                    "slice_ref": slice_ref,
                    "order": order,
                    "t1_voxel_size": t1_voxel_size,
                },
            ),
        }
    )
    ds["bold"].attrs.update({"affine": ds.attrs["affine"], "tr": ds.attrs["tr"], "source": ds.attrs["source"]})
    return ds


def _affine(img: xr.DataArray) -> np.ndarray:
    return np.asarray(get_affine(img, func="preprocess"), np.float64)
