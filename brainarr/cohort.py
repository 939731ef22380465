"""The cohort store: open, inspect and append subjects to a Zarr v3 store, safely.

Layout of a store (any fsspec URL): one Zarr group written by :func:`xarray.Dataset.to_zarr`
with ``bold (subject, x, y, z, time)``, optional ``confounds (subject, time, confound)``,
optional ``mask (x, y, z)``, phenotype coordinates on ``subject``, and derived maps under their
own names. The group attribute ``brainarr`` records the format version, the grid (affine,
shape, TR, number of volumes) and the list of *committed* subjects. A subject is committed
only after all its chunks are written; readers see committed subjects only, and a writer that
finds extra (uncommitted) rows left by a crash trims them before appending. So a crash at
any moment leaves the previous consistent cohort.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from brainarr._core.dims import SPATIAL, SUBJECT, TIME
from brainarr.exceptions import DataValidationError, GridMismatchError, StoreError

__all__ = ["FORMAT_VERSION", "CohortWriter", "check_compatible", "open_cohort", "summary"]

#: Version of the store layout written by this brainarr. Readers refuse newer layouts.
FORMAT_VERSION = 1
_ATTR = "brainarr"


def _open_group(store: str | os.PathLike, mode: str, storage_options: Mapping[str, Any] | None):
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    return zarr.open_group(str(store) if isinstance(store, os.PathLike) else store, **kwargs)


def _store_state(store, storage_options) -> dict[str, Any] | None:
    """The ``brainarr`` group attribute of an existing store, or None if there is no store."""
    try:
        group = _open_group(store, "r", storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None
    except Exception as err:  # a store of another format, a file, a permission problem
        if "not found" in str(err).lower() or isinstance(err, (KeyError,)):
            return None
        raise StoreError(f"cannot open {store} as a Zarr v3 group: {err}") from err
    state = group.attrs.get(_ATTR)
    if state is None:
        raise StoreError(
            f"{store} is a Zarr group but not a brainarr cohort store (no '{_ATTR}' attribute); "
            "use a new path or remove it"
        )
    version = int(state.get("format", 0))
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{store} was written by a newer brainarr (store format {version}, this brainarr "
            f"reads up to {FORMAT_VERSION}); upgrade brainarr to read it"
        )
    if version < 1:
        raise StoreError(f"{store} has an invalid brainarr format version {version}")
    return dict(state)


def open_cohort(
    store: str | os.PathLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Open a cohort store lazily.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL (``memory://``, ``s3://bucket/study.zarr``...).
    storage_options : mapping, optional
        fsspec options for remote stores (credentials, endpoint_url...).
    chunks : mapping, optional
        Dask chunks; default the stored chunks (one subject per chunk, time whole).

    Returns
    -------
    xarray.Dataset
        ``bold (subject, x, y, z, time)`` and the other stored variables, restricted to the
        committed subjects; phenotype coordinates on ``subject``; ``attrs`` ``tr``, ``affine``.

    Raises
    ------
    StoreError
        If the store does not exist, is not a brainarr store, or was written by a newer
        brainarr.

    Examples
    --------
    >>> import brainarr as ba
    >>> cohort = ba.open_cohort("study.zarr")  # doctest: +SKIP
    """
    state = _store_state(store, storage_options)
    if state is None:
        raise StoreError(f"no cohort store at {store}")
    kwargs: dict[str, Any] = {"consolidated": False, "zarr_format": 3}
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    committed = list(state.get("subjects", []))
    ds = _open_committed(store, kwargs, chunks if chunks is not None else {}, len(committed), storage_options)
    if SUBJECT in ds.dims:
        ds = ds.isel({SUBJECT: slice(0, len(committed))})
        found = [str(s) for s in ds[SUBJECT].values]
        if found != committed:
            raise StoreError(f"{store}: subject ids {found} do not match the committed list {committed}")
    ds = _hide_uncommitted_derived(ds, state, committed)
    ds = _strings_as_objects(ds)
    # phenotype coordinates are tiny: load them so selecting by group never builds a graph
    small = {name: c.load() for name, c in ds.coords.items() if c.dims == (SUBJECT,)}
    ds = ds.assign_coords(small)
    ds.attrs.pop(_ATTR, None)
    ds.attrs.update(state.get("attrs", {}))
    ds.attrs.update({"tr": state["tr"], "affine": state["affine"], "store": str(store)})
    for name, var in ds.data_vars.items():
        if set(SPATIAL) <= set(var.dims):
            var.attrs["affine"] = state["affine"]
        if TIME in var.dims and name == "bold":
            var.attrs["tr"] = state["tr"]
    return ds


def _hide_uncommitted_derived(ds: xr.Dataset, state: Mapping[str, Any], committed: list[str]) -> xr.Dataset:
    """Set to NaN the rows of derived maps whose subject is not in their commit record.

    Derived maps (written by :func:`brainarr.pipeline.run`) are listed in
    ``state["derived"][name]["subjects"]``; a row written but not yet committed (a crash
    between the two) must never be read as a result. Variables listed with no stored
    array, or stored without a record, are dropped.
    """
    derived = state.get("derived", {})
    for name in list(ds.data_vars):
        var = ds[name]
        if SUBJECT not in var.dims or name == "bold" or name == "confounds":
            continue
        record = derived.get(name)
        if record is None:
            if var.attrs.get("family") is not None:  # a derived map without a commit record
                ds = ds.drop_vars(name)
            continue
        done = set(record.get("subjects", []))
        if done >= set(committed):
            continue
        keep = xr.DataArray(np.isin(np.asarray(committed, dtype=object), list(done)), dims=(SUBJECT,))
        ds[name] = var.where(keep)
    return ds


def _open_committed(store, kwargs: dict[str, Any], chunks, n_committed: int, storage_options) -> xr.Dataset:
    """Open the store with xarray, cutting arrays left longer than the committed rows.

    A writer killed during an append may leave the ``subject`` arrays with different lengths
    (e.g. ``bold`` resized, the ``subject`` coordinate not yet), which xarray cannot open as
    one Dataset. Then each such array is opened on its own, cut to the committed length, and
    the parts merged.
    """
    group = _open_group(store, "r", storage_options)
    per_subject = {}
    short = []  # derived maps not yet extended to subjects appended after them: hidden
    for name, array in group.arrays():
        names = array.metadata.dimension_names or ()
        if SUBJECT in names:
            if array.shape[names.index(SUBJECT)] < n_committed and "family" in array.attrs:
                short.append(name)
                continue
            per_subject[name] = array.shape[names.index(SUBJECT)]
    if short:
        kwargs = {**kwargs, "drop_variables": short}
    if all(length == n_committed for length in per_subject.values()):
        return xr.open_zarr(store, chunks=chunks, **kwargs)
    parts = []
    coord_names: set[str] = set()
    for name in per_subject:
        others = [o for o in per_subject if o != name] + short
        part = xr.open_zarr(store, chunks=chunks, **{**kwargs, "drop_variables": others})
        part = part.isel({SUBJECT: slice(0, n_committed)})
        coords = str(part[name].encoding.get("coordinates", part[name].attrs.get("coordinates", "")))
        coord_names.update(coords.split())
        parts.append(part)
    ds = xr.merge(parts, compat="override", join="exact", combine_attrs="override")
    promote = [c for c in coord_names if c in ds.data_vars]
    return ds.set_coords(promote) if promote else ds


def _strings_as_objects(ds: xr.Dataset) -> xr.Dataset:
    """Return string coordinates as numpy object arrays (what pandas and users expect)."""
    updates = {}
    for name, coord in ds.coords.items():
        if coord.dtype.kind in ("T", "U", "O"):
            updates[name] = (
                coord.dims,
                np.array([str(v) for v in coord.values.ravel()], dtype=object).reshape(coord.shape),
            )
    return ds.assign_coords(updates) if updates else ds


def check_compatible(reference: xr.DataArray | xr.Dataset, candidate: xr.DataArray, subject: str) -> None:
    """Raise :class:`GridMismatchError` unless ``candidate`` fits the cohort of ``reference``.

    Compares the spatial grid size, the affine, the TR and the number of volumes, and names
    ``subject`` and the difference.
    """
    if isinstance(reference, xr.Dataset):
        reference = reference["bold"]
    ref_shape = tuple(reference.sizes[d] for d in SPATIAL)
    cand_shape = tuple(candidate.sizes[d] for d in SPATIAL)
    source = candidate.attrs.get("source", "")
    where = f"subject {subject!r}" + (f" ({source})" if source else "")
    if ref_shape != cand_shape:
        raise GridMismatchError(f"{where}: grid {cand_shape} differs from the cohort's {ref_shape}")
    ref_aff = np.asarray(reference.attrs["affine"], float)
    cand_aff = np.asarray(candidate.attrs["affine"], float)
    if not np.allclose(ref_aff, cand_aff, atol=1e-4):
        raise GridMismatchError(
            f"{where}: affine differs from the cohort's "
            f"(max difference {np.abs(ref_aff - cand_aff).max():.4g} mm); "
            "resample it onto the cohort grid first"
        )
    ref_tr, cand_tr = float(reference.attrs["tr"]), float(candidate.attrs["tr"])
    if not np.isclose(ref_tr, cand_tr, rtol=1e-4):
        raise GridMismatchError(f"{where}: TR {cand_tr:g} s differs from the cohort's {ref_tr:g} s")
    if reference.sizes[TIME] != candidate.sizes[TIME]:
        raise GridMismatchError(
            f"{where}: {candidate.sizes[TIME]} volumes, the cohort has {reference.sizes[TIME]}; "
            "discard volumes so that every subject has the same number"
        )


def _check_finite_block(block: np.ndarray, subject: str) -> np.ndarray:
    if not np.all(np.isfinite(block)):
        n_bad = int(np.count_nonzero(~np.isfinite(block)))
        raise DataValidationError(f"subject {subject!r}: BOLD contains {n_bad} NaN/Inf values in one chunk")
    return block


class CohortWriter:
    """Append subjects to a cohort store with commit semantics.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL.
    storage_options : mapping, optional
        fsspec options.
    """

    def __init__(self, store: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.store = str(store) if isinstance(store, os.PathLike) else store
        self.storage_options = dict(storage_options) if storage_options else None
        self.state = _store_state(self.store, self.storage_options)

    @property
    def completed(self) -> list[str]:
        """Committed subject ids, in store order."""
        return list(self.state.get("subjects", [])) if self.state else []

    def reference_dataset(self) -> xr.Dataset | None:
        """The cohort as stored so far, or None for a new or empty store."""
        if not self.completed:
            return None
        return open_cohort(self.store, storage_options=self.storage_options)

    def _to_zarr_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"consolidated": False, "zarr_format": 3}
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        return kwargs

    def _trim(self) -> None:
        """Cut every array with a ``subject`` dim back to the committed length."""
        n = len(self.completed)
        group = _open_group(self.store, "r+", self.storage_options)
        for _, array in group.arrays():
            names = array.metadata.dimension_names or ()
            if SUBJECT in names:
                axis = names.index(SUBJECT)
                if array.shape[axis] != n:
                    shape = list(array.shape)
                    shape[axis] = n
                    array.resize(tuple(shape))

    def _commit(self, subject: str) -> None:
        group = _open_group(self.store, "r+", self.storage_options)
        state = dict(group.attrs[_ATTR])
        state["subjects"] = [*state.get("subjects", []), subject]
        group.attrs[_ATTR] = state
        self.state = state

    def _remove_store(self) -> None:
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.store, **(self.storage_options or {}))
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def append(
        self,
        ds: xr.Dataset,
        *,
        static: Mapping[str, xr.DataArray] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one subject (a Dataset with ``subject`` of length 1) and commit it.

        ``static`` variables without a ``subject`` dim (masks) and cohort ``attrs`` are written
        with the first subject only. On any error the subject is rolled back (rows trimmed, or
        a store created by this call removed) and the error re-raised.
        """
        subject = str(ds[SUBJECT].values[0])
        bold = ds["bold"]
        checked = da.map_blocks(_check_finite_block, bold.data, subject, dtype=bold.dtype)
        ds = ds.assign(bold=bold.copy(data=checked))
        ds["bold"].encoding = {}
        fresh = not self.completed
        state = {
            "format": FORMAT_VERSION,
            "subjects": self.completed,
            "tr": float(ds.attrs["tr"]),
            "affine": [list(map(float, row)) for row in ds.attrs["affine"]],
            "n_time": int(bold.sizes[TIME]),
            "shape": [int(bold.sizes[d]) for d in SPATIAL],
            "attrs": dict(self.state.get("attrs", {})) if self.state else _jsonable(dict(attrs or {})),
            # commit records of derived maps (brainarr.pipeline) survive appends
            "derived": dict(self.state.get("derived", {})) if self.state else {},
        }
        from brainarr._core.version import __version__

        state["version"] = __version__
        ds.attrs = {_ATTR: state}
        # text coordinates as variable-length strings, the string type Zarr v3 specifies
        ds = _strings_as_objects(ds)
        try:
            if fresh:
                for name, var in (static or {}).items():
                    check_compatible_mask(var, bold, subject)
                    ds[name] = var.drop_vars([c for c in var.coords if c not in SPATIAL])
                    ds[name].attrs = {k: v for k, v in var.attrs.items() if k in ("long_name", "units")}
                ds.to_zarr(self.store, mode="w", **self._to_zarr_kwargs())
            else:
                self._trim()
                ds.to_zarr(self.store, append_dim=SUBJECT, **self._to_zarr_kwargs())
        except BaseException:
            if fresh:
                self._remove_store()
                self.state = None
            else:
                self._trim()
            raise
        self._commit(subject)


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays nested in dicts and lists to JSON-ready Python objects."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_compatible_mask(mask: xr.DataArray, bold: xr.DataArray, subject: str) -> None:
    """Raise :class:`GridMismatchError` unless ``mask`` is on the grid of ``bold``."""
    shape = tuple(mask.sizes.get(d, -1) for d in SPATIAL)
    expected = tuple(bold.sizes[d] for d in SPATIAL)
    if shape != expected:
        raise GridMismatchError(
            f"{mask.name or 'mask'}: grid {shape} differs from the BOLD grid {expected} (subject {subject!r})"
        )


def summary(cohort: xr.Dataset) -> str:
    """A short human-readable description of a cohort Dataset.

    Parameters
    ----------
    cohort : xarray.Dataset
        As returned by :func:`open_cohort` or ``simulate_cohort``.

    Returns
    -------
    str
        Subjects (by group), grid, voxel size, TR, volumes, variables and size in GB.
    """
    from brainarr._core.grid import voxel_size

    lines = []
    n = cohort.sizes.get(SUBJECT, 0)
    groups = ""
    if "group" in cohort.coords:
        values, counts = np.unique(np.asarray(cohort["group"].values, dtype=str), return_counts=True)
        groups = " (" + ", ".join(f"{c} {v}" for v, c in zip(values, counts, strict=True)) + ")"
    lines.append(f"subjects: {n}{groups}")
    if "bold" in cohort:
        bold = cohort["bold"]
        shape = " x ".join(str(bold.sizes[d]) for d in SPATIAL)
        affine = cohort.attrs.get("affine", bold.attrs.get("affine"))
        if affine is not None:
            vs = voxel_size(np.asarray(affine, float))
            lines.append(f"grid: {shape} voxels of {' x '.join(f'{v:g}' for v in vs)} mm")
        else:
            lines.append(f"grid: {shape} voxels")
        if TIME in bold.dims:
            tr = cohort.attrs.get("tr", bold.attrs.get("tr"))
            lines.append(f"volumes: {bold.sizes[TIME]}" + (f" at TR {float(tr):g} s" if tr is not None else ""))
        lines.append(
            f"bold: {bold.dtype}, {bold.nbytes / 1e9:.2f} GB, "
            f"chunks {bold.data.chunksize if bold.chunks else 'in memory'}"
        )
    phenos = [c for c in cohort.coords if c != SUBJECT and cohort[c].dims == (SUBJECT,)]
    if phenos:
        lines.append(f"phenotypes: {', '.join(phenos)}")
    others = [v for v in cohort.data_vars if v != "bold"]
    if others:
        lines.append(f"other variables: {', '.join(others)}")
    return "\n".join(lines)
