"""NIfTI images as an xarray backend: ``xr.open_dataarray("sub-01_bold.nii.gz", engine="brainarr")``.

The backend gives what :func:`brainarr.io.load_nifti` gives (dims ``(x, y, z[, time])``, MNI
coordinates in mm, ``time`` in s, ``attrs`` ``affine``, ``tr``, ``units``, ``source``, float32
data), but through xarray's backend machinery, so that :func:`xarray.open_dataset`,
:func:`xarray.open_dataarray` and :func:`xarray.open_mfdataset` open NIfTI files:

- without ``chunks`` the data is a lazily indexed array: nothing is read until values are
  needed, and indexing reads only the voxels selected (an uncompressed ``.nii`` is
  memory-mapped; a ``.nii.gz`` is decompressed up to the last byte needed);
- with ``chunks={}`` the data is a dask array with :func:`~brainarr.io.load_nifti`'s chunks
  (``time`` whole, space in blocks of about the ``chunk_mib`` option), with ``chunks="auto"``
  or a mapping, dask chunks as xarray chooses them.

The backend is registered as the entry point ``brainarr`` of the ``xarray.backends`` group, so
``engine="brainarr"`` selects it, and xarray also picks it for ``.nii``/``.nii.gz`` names when
no engine is given.

Examples
--------
>>> import xarray as xr
>>> bold = xr.open_dataarray("sub-01_bold.nii.gz", engine="brainarr", chunks={})  # doctest: +SKIP
>>> cohort = xr.open_mfdataset(
...     ["sub-01_bold.nii.gz", "sub-02_bold.nii.gz"], engine="brainarr", combine="nested", concat_dim="subject"
... )  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

# brainarr.io (nibabel, pandas, dask) is imported when a file is opened, not here: xarray
# imports every registered backend whenever it lists its engines

__all__ = ["BrainarrBackendEntrypoint", "NiftiBackendArray"]

_SUFFIXES = (".nii", ".nii.gz")


class NiftiBackendArray(BackendArray):
    """The voxels of one NIfTI file, read on indexing only (xarray wraps it lazily).

    Holds the path, shape and dtype only, so it pickles to remote workers; each read opens
    the file (memory-mapped when uncompressed) through :mod:`brainarr.io`'s chunk reader,
    which applies ``scl_slope``/``scl_inter`` and names the file in its errors.
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        from brainarr import io

        self._reader = io._NiftiChunkReader(path, self.shape, self.dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._raw)

    def _raw(self, key: tuple[Any, ...]) -> np.ndarray:
        return self._reader[tuple(key)]


def _path_of(filename_or_obj: Any) -> Path | None:
    if isinstance(filename_or_obj, (str, os.PathLike)):
        return Path(os.fspath(filename_or_obj))
    return None


class BrainarrBackendEntrypoint(BackendEntrypoint):
    """xarray backend for NIfTI-1/2 images (``.nii``, ``.nii.gz``), as :func:`brainarr.io.load_nifti` reads them.

    ``open_dataset`` returns a Dataset with one variable (``bold`` for a 4-D image, the file
    stem for a 3-D map, or ``name``) whose ``attrs`` hold ``affine`` (4 x 4 list), ``tr``
    (s, 4-D only), ``units`` and ``source``; the Dataset's ``attrs`` repeat ``affine``, ``tr``
    and ``source``. ``encoding["preferred_chunks"]`` is ``load_nifti``'s automatic chunking,
    which ``chunks={}`` uses.

    Parameters of ``open_dataset`` (also accepted by :func:`xarray.open_dataset` and friends):
    ``tr`` (float, s: overrides the header's TR, required when it has none), ``dtype``
    (default float32) and ``name``.
    """

    description = "NIfTI images (.nii, .nii.gz) as labelled arrays with MNI coordinates, affine and TR (brainarr)"
    url = "https://brainarr.readthedocs.io/en/latest/api/backend.html"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "tr", "dtype", "name")

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        tr: float | None = None,
        dtype: Any = np.float32,
        name: str | None = None,
    ) -> xr.Dataset:
        """Open a NIfTI file as a one-variable Dataset (lazily: only the header is read)."""
        path = _path_of(filename_or_obj)
        if path is None:
            raise TypeError(
                "the brainarr backend opens NIfTI files by path (str or os.PathLike), not "
                f"{type(filename_or_obj).__name__}"
            )
        # load_nifti validates the header (affine, TR, truncation) and builds the coordinates;
        # its dask data is discarded: the variable gets a lazily indexed backend array instead
        from brainarr import io

        template = io.load_nifti(path, tr=tr, dtype=dtype, name=name)
        dtype = np.dtype(template.dtype)
        data = indexing.LazilyIndexedArray(NiftiBackendArray(str(path), template.shape, dtype))
        encoding = {
            "source": str(path),
            "preferred_chunks": dict(zip(template.dims, (c[0] for c in template.chunks or ()), strict=True)),
        }
        variable = xr.Variable(template.dims, data, attrs=dict(template.attrs), encoding=encoding)
        var_name = str(template.name)
        coords = {k: v.variable for k, v in template.coords.items()}
        drop = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
        data_vars = {} if var_name in drop else {var_name: variable}
        attrs = {k: template.attrs[k] for k in ("affine", "tr", "source") if k in template.attrs}
        ds = xr.Dataset(data_vars, coords={k: v for k, v in coords.items() if k not in drop}, attrs=attrs)
        ds.encoding["source"] = str(path)
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True for a ``.nii`` or ``.nii.gz`` path (case-insensitive)."""
        path = _path_of(filename_or_obj)
        return path is not None and path.name.lower().endswith(_SUFFIXES)
