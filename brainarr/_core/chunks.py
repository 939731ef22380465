"""Chunk layout helpers."""

from __future__ import annotations

import math

import xarray as xr

from brainarr._core.dims import SPATIAL, SUBJECT, TIME
from brainarr._core.options import OPTIONS

__all__ = ["rechunk_for_metrics", "spatial_chunks"]


def spatial_chunks(
    shape: tuple[int, int, int], *, bytes_per_voxel: int, target_mib: float | None = None
) -> dict[str, int]:
    """Choose spatial chunk sizes so that one chunk is at most about ``target_mib``.

    The largest spatial dim is halved (rounding up) until the chunk fits, so chunks stay
    compact blocks (good for neighbourhood operations) and there are few of them.

    Parameters
    ----------
    shape : tuple of int
        Sizes of ``(x, y, z)``.
    bytes_per_voxel : int
        Bytes of one voxel's data (``n_time * itemsize`` for BOLD).
    target_mib : float, optional
        Target chunk size in MiB; defaults to the ``chunk_mib`` option (64).

    Returns
    -------
    dict
        ``{"x": cx, "y": cy, "z": cz}``.
    """
    target = (target_mib if target_mib is not None else OPTIONS["chunk_mib"]) * 2**20
    sizes = list(shape)
    while math.prod(sizes) * bytes_per_voxel > target and max(sizes) > 1:
        i = max(range(3), key=lambda k: sizes[k])
        sizes[i] = math.ceil(sizes[i] / 2)
    return dict(zip(SPATIAL, sizes, strict=True))


def rechunk_for_metrics(obj: xr.DataArray | xr.Dataset, *, target_mib: float | None = None):
    """Rechunk BOLD for metrics: whole time series per chunk, compact spatial blocks, one subject per chunk.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        BOLD with dims ``(..., x, y, z, time)``.
    target_mib : float, optional
        Target chunk size in MiB (default: the ``chunk_mib`` option).

    Returns
    -------
    same type as ``obj``
        Rechunked (lazy).
    """
    n_time = obj.sizes.get(TIME, 1)
    itemsize = obj.dtype.itemsize if isinstance(obj, xr.DataArray) else 4
    shape = tuple(obj.sizes[d] for d in SPATIAL)
    chunks: dict[str, int] = spatial_chunks(shape, bytes_per_voxel=n_time * itemsize, target_mib=target_mib)
    if TIME in obj.dims:
        chunks[TIME] = -1
    if SUBJECT in obj.dims:
        chunks[SUBJECT] = 1
    return obj.chunk(chunks)
