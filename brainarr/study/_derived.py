"""Derived maps in the cohort store: creating their variables and reading their commit records.

A derived map is a variable ``(subject, [seed,] x, y, z)`` with one subject per chunk, its
parameter hash in the group attribute ``brainarr["derived"][name]["params"]`` and one commit
marker per row (:mod:`brainarr._core.commits`). Workers write rows; the process running the
study commits them after the rows are written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from brainarr._core import commits
from brainarr._core.dims import SEED, SPATIAL, SUBJECT
from brainarr.cohort import open_group
from brainarr.study._families import params_hash

__all__ = ["derived_state", "prepare_variable"]

_ATTR = "brainarr"


def derived_state(store: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The commit records of the derived maps of a store.

    Parameters
    ----------
    store : str or path-like
        Cohort store (local path or fsspec URL).
    storage_options : mapping, optional
        fsspec options of a remote store.

    Returns
    -------
    dict
        ``{name: {"params": <hash>, "subjects": [committed subject ids, in store order]}}``.
    """
    group = open_group(store, "r", storage_options)
    state = dict(group.attrs.get(_ATTR, {}))
    subjects = commits.committed_subjects(group, state, strict=False)
    out = {}
    for name, record in dict(state.get("derived", {})).items():
        done = commits.committed_rows(group, state, name, subjects)
        out[name] = {"params": record["params"], "subjects": [s for s, ok in zip(subjects, done, strict=True) if ok]}
    return out


def _set_derived(group, name: str, record: dict[str, Any] | None) -> None:
    state = dict(group.attrs[_ATTR])
    derived = dict(state.get("derived", {}))
    if record is None:
        derived.pop(name, None)
    else:
        derived[name] = record
    state["derived"] = derived
    group.attrs[_ATTR] = state


def _drop(group, name: str) -> None:
    """Forget a derived map: its record first (its rows are no longer results), then its arrays."""
    _set_derived(group, name, None)
    commits.drop_rows(group, name)
    if name in group:
        del group[name]


def prepare_variable(
    store: str,
    storage_options: Mapping[str, Any] | None,
    name: str,
    *,
    subjects: Sequence[str],
    grid: xr.DataArray,
    seeds: list[str] | None,
    params: dict[str, Any],
    attrs: Mapping[str, Any],
) -> list[str]:
    """Create, extend or reset the derived variable ``name``; return the subjects still to compute.

    Kept as it is when its parameter hash is unchanged (extended along ``subject`` when the
    cohort grew); created empty, with no row committed, when it is new or its parameters
    changed. A change of the seed list resets every map with a ``seed`` dim.
    """
    import dask.array as dsa

    digest = params_hash(params)
    group = open_group(store, "r+", storage_options)
    state = dict(group.attrs[_ATTR])
    record = dict(state.get("derived", {})).get(name)
    n = len(subjects)
    shape = (n, *([len(seeds)] if seeds is not None else []), *(grid.sizes[d] for d in SPATIAL))
    if name in group and record is not None and record.get("params") == digest and group[name].shape[1:] == shape[1:]:
        if tuple(group[name].shape) != shape:  # the cohort grew: keep committed rows
            group[name].resize(shape)
        commits.resize_rows(group, name, n)
        done = commits.committed_rows(group, state, name, subjects)
        return [s for s, ok in zip(subjects, done, strict=True) if not ok]
    _drop(group, name)
    if seeds is not None and SEED in group:
        stored = [str(s) for s in group[SEED][:]]
        if stored != seeds:
            for other in list(dict(group.attrs[_ATTR]).get("derived", {})):
                if other in group and SEED in (group[other].metadata.dimension_names or ()):
                    _drop(group, other)
            del group[SEED]
    dims = (SUBJECT, *([SEED] if seeds is not None else []), *SPATIAL)
    chunks = (1, *shape[1:])
    data = dsa.zeros(shape, chunks=chunks, dtype=np.float32)
    var = xr.Variable(dims, data, attrs={**attrs, "params": json.dumps(params, sort_keys=True)})
    var.encoding = {"chunks": chunks, "_FillValue": np.float32(np.nan)}
    ds = xr.Dataset({name: var})
    if seeds is not None and SEED not in group:
        ds = ds.assign_coords({SEED: np.array(seeds, dtype=object)})
    kwargs: dict[str, Any] = {"mode": "a", "compute": False, "consolidated": False, "zarr_format": 3}
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    ds.to_zarr(store, **kwargs)
    commits.reset_rows(group, name, n)
    _set_derived(group, name, {"params": digest})
    return list(subjects)
