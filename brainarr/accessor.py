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
from collections.abc import Callable
from typing import Any

import xarray as xr

from brainarr import cohort, io, metrics, plotting, preprocess, stats
from brainarr._core.chunks import rechunk_for_metrics

__all__ = ["BrainDataArrayAccessor", "BrainDatasetAccessor"]


def _forward(func: Callable[..., Any]) -> Callable[..., Any]:
    """A method calling ``func(self._obj, *args, **kwargs)``, documented by ``func``'s docstring."""

    @functools.wraps(func)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return func(self._obj, *args, **kwargs)

    return method


@xr.register_dataarray_accessor("brain")
class BrainDataArrayAccessor:
    """brainarr operations on a DataArray: ``bold.brain.<function>(...)``."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    # io
    to_nifti = _forward(io.to_nifti)
    # preprocessing
    discard = _forward(preprocess.discard)
    detrend = _forward(preprocess.detrend)
    slice_timing = _forward(preprocess.slice_timing)
    regress = _forward(preprocess.regress)
    bandpass = _forward(preprocess.bandpass)
    clean = _forward(preprocess.clean)
    smooth = _forward(preprocess.smooth)
    tissue_signals = _forward(preprocess.tissue_signals)
    friston24 = _forward(preprocess.friston24)
    framewise_displacement = _forward(preprocess.framewise_displacement)
    motion_qc = _forward(preprocess.motion_qc)
    rechunk_for_metrics = _forward(rechunk_for_metrics)
    # metrics
    alff = _forward(metrics.alff)
    reho = _forward(metrics.reho)
    smreho = _forward(metrics.smreho)
    seed_fc = _forward(metrics.seed_fc)
    degree_centrality = _forward(metrics.degree_centrality)
    eigenvector_centrality = _forward(metrics.eigenvector_centrality)
    normalize = _forward(metrics.normalize)
    smooth_normalize = _forward(metrics.smooth_normalize)
    # group statistics
    glm = _forward(stats.glm)
    ttest2 = _forward(stats.ttest2)
    permutation = _forward(stats.permutation)
    smoothness = _forward(stats.smoothness)
    cluster_table = _forward(stats.cluster_table)
    # plots
    montage = _forward(plotting.montage)
    carpet = _forward(plotting.carpet)
    motion = _forward(plotting.motion)


@xr.register_dataset_accessor("brain")
class BrainDatasetAccessor:
    """brainarr operations on a Dataset (a cohort or a result): ``ds.brain.<function>(...)``."""

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    summary = _forward(cohort.summary)
    rechunk_for_metrics = _forward(rechunk_for_metrics)
    alff_variants = _forward(metrics.alff_variants)
    dc_variants = _forward(metrics.dc_variants)
    grf = _forward(stats.grf)
    cluster_table = _forward(stats.cluster_table)
    demographics = _forward(stats.demographics)
    montage = _forward(plotting.montage)
