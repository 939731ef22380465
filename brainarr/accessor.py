"""The ``.brain`` accessor on DataArray and Dataset.

Every method forwards to the module-level function of the same name with the object as its
first argument, so ``bold.brain.alff(mask=gm)`` is ``brainarr.metrics.alff(bold, mask=gm)``;
the function's docstring applies. The accessor holds nothing but the object.

Examples
--------
>>> import brainarr as ba
>>> bold = ba.testing.make_bold()
>>> bool(bold.brain.detrend().identical(ba.preprocess.detrend(bold)))  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import xarray as xr

__all__ = ["BrainDataArrayAccessor", "BrainDatasetAccessor"]


class _Forward:
    """A method calling ``<module>.<name>(self._obj, *args, **kwargs)``, documented by that function.

    The function is imported on first use, so that ``import brainarr`` (which registers the
    accessor) stays light: xarray imports brainarr whenever it lists its backends.
    """

    def __init__(self, module: str, name: str | None = None) -> None:
        self.module, self.name = module, name
        self._method: Callable[..., Any] | None = None

    def __set_name__(self, owner: type, attr: str) -> None:
        self.name = self.name or attr

    def _resolve(self) -> Callable[..., Any]:
        if self._method is None:
            func = getattr(importlib.import_module(self.module), str(self.name))

            @functools.wraps(func)
            def method(accessor: Any, *args: Any, **kwargs: Any) -> Any:
                return func(accessor._obj, *args, **kwargs)

            self._method = method
        return self._method

    def __get__(self, instance: Any, owner: type | None = None) -> Callable[..., Any]:
        method = self._resolve()
        return method if instance is None else method.__get__(instance, owner)

    def __call__(self, accessor: Any, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(accessor, *args, **kwargs)


def _forward(module: str, name: str | None = None) -> _Forward:
    return _Forward(f"brainarr.{module}", name)


@xr.register_dataarray_accessor("brain")
class BrainDataArrayAccessor:
    """brainarr operations on a DataArray: ``bold.brain.<function>(...)``."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    # io
    to_nifti = _forward("io")
    # preprocessing
    discard = _forward("preprocess")
    detrend = _forward("preprocess")
    slice_timing = _forward("preprocess")
    regress = _forward("preprocess")
    bandpass = _forward("preprocess")
    clean = _forward("preprocess")
    smooth = _forward("preprocess")
    tissue_signals = _forward("preprocess")
    friston24 = _forward("preprocess")
    framewise_displacement = _forward("preprocess")
    motion_qc = _forward("preprocess")
    rechunk_for_metrics = _forward("_core.chunks")
    # metrics
    alff = _forward("metrics")
    reho = _forward("metrics")
    smreho = _forward("metrics")
    seed_fc = _forward("metrics")
    degree_centrality = _forward("metrics")
    eigenvector_centrality = _forward("metrics")
    normalize = _forward("metrics")
    smooth_normalize = _forward("metrics")
    # group statistics
    glm = _forward("stats")
    ttest2 = _forward("stats")
    permutation = _forward("stats")
    smoothness = _forward("stats")
    cluster_table = _forward("stats")
    # plots
    montage = _forward("plotting")
    carpet = _forward("plotting")
    motion = _forward("plotting")


@xr.register_dataset_accessor("brain")
class BrainDatasetAccessor:
    """brainarr operations on a Dataset (a cohort or a result): ``ds.brain.<function>(...)``."""

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    summary = _forward("cohort")
    rechunk_for_metrics = _forward("_core.chunks")
    alff_variants = _forward("metrics")
    dc_variants = _forward("metrics")
    grf = _forward("stats")
    cluster_table = _forward("stats")
    demographics = _forward("stats")
    montage = _forward("plotting")
