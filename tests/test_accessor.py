"""The .brain accessor forwards every call to the module-level function."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

import brainarr as ba
from brainarr.testing import make_bold, raise_if_dask_computes

SHAPE = (7, 8, 9, 64)


def _strip_time(obj):
    """Drop the timestamps of history lines so two calls a second apart compare equal."""
    obj = obj.copy()
    objs = [obj, *obj.data_vars.values()] if isinstance(obj, xr.Dataset) else [obj]
    for o in objs:
        if "history" in o.attrs:
            o.attrs["history"] = re.sub(r"^\S+ ", "", o.attrs["history"], flags=re.M)
    return obj


@pytest.fixture(scope="module")
def inputs():
    bold = make_bold(shape=SHAPE, chunks={"x": 4, "y": 5}, seed=3)
    mask = xr.zeros_like(bold.isel(time=0, drop=True), dtype=bool).compute()
    mask[1:6, 1:7, 1:8] = True
    mask.attrs = {"affine": bold.attrs["affine"]}
    rng = np.random.default_rng(0)
    motion = xr.DataArray(
        rng.standard_normal((SHAPE[3], 6)) * 0.1,
        dims=("time", "confound"),
        coords={"confound": list(ba.preprocess.MOTION_PARAMS)},
    )
    seeds = mask.copy()
    seeds[:] = False
    seeds[2:4, 2:4, 2:4] = True
    return {"bold": bold, "mask": mask, "motion": motion, "seeds": seeds.expand_dims(seed=["s"])}


CASES = [
    ("discard", "bold", ba.preprocess.discard, lambda i: {"n": 3}),
    ("detrend", "bold", ba.preprocess.detrend, lambda i: {}),
    ("regress", "bold", ba.preprocess.regress, lambda i: {"confounds": i["motion"]}),
    ("bandpass", "bold", ba.preprocess.bandpass, lambda i: {"low": 0.01, "high": 0.08}),
    ("clean", "bold", ba.preprocess.clean, lambda i: {"confounds": i["motion"]}),
    ("smooth", "bold", ba.preprocess.smooth, lambda i: {"fwhm": 6.0}),
    ("tissue_signals", "bold", ba.preprocess.tissue_signals, lambda i: {"wm": i["mask"]}),
    ("friston24", "motion", ba.preprocess.friston24, lambda i: {}),
    ("framewise_displacement", "motion", ba.preprocess.framewise_displacement, lambda i: {}),
    ("motion_qc", "motion", ba.preprocess.motion_qc, lambda i: {}),
    ("alff", "bold", ba.metrics.alff, lambda i: {"mask": i["mask"]}),
    ("reho", "bold", ba.metrics.reho, lambda i: {"mask": i["mask"]}),
    ("smreho", "bold", ba.metrics.smreho, lambda i: {"mask": i["mask"]}),
    ("seed_fc", "bold", ba.metrics.seed_fc, lambda i: {"seeds": i["seeds"]}),
    ("degree_centrality", "bold", ba.metrics.degree_centrality, lambda i: {"mask": i["mask"]}),
    ("normalize", "map", ba.metrics.normalize, lambda i: {"mask": i["mask"]}),
    ("smooth_normalize", "map", ba.metrics.smooth_normalize, lambda i: {"mask": i["mask"]}),
]


@pytest.mark.parametrize(("method", "which", "func", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_dataarray_accessor_forwards(inputs, method, which, func, kwargs):
    obj = inputs["bold"].isel(time=0, drop=True).rename("alff") if which == "map" else inputs[which]
    kw = kwargs(inputs)
    with raise_if_dask_computes():
        via_accessor = getattr(obj.brain, method)(**kw)
        direct = func(obj, **kw)
    xr.testing.assert_identical(_strip_time(via_accessor), _strip_time(direct))
    assert getattr(type(obj.brain), method).__doc__ == func.__doc__


def test_dataset_accessor_summary_and_stats(inputs):
    bold = inputs["bold"]
    maps = xr.concat([bold.isel(time=t, drop=True) for t in range(8)], "subject").rename("alff")
    maps = maps.assign_coords(
        subject=[f"s{i}" for i in range(8)],
        group=("subject", ["patient", "control"] * 4),
        age=("subject", np.arange(8.0) + 40),
    )
    with raise_if_dask_computes():
        via = maps.brain.ttest2(covariates=["age"], groups=["patient", "control"], mask=inputs["mask"])
        direct = ba.stats.ttest2(maps, covariates=["age"], groups=["patient", "control"], mask=inputs["mask"])
    xr.testing.assert_identical(_strip_time(via), _strip_time(direct))
    cohort = maps.to_dataset(name="bold")
    assert cohort.brain.summary() == ba.cohort.summary(cohort)


def test_accessor_holds_only_the_object(inputs):
    accessor = inputs["bold"].brain
    assert vars(accessor) == {"_obj": inputs["bold"]}
