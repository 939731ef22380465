"""Fixtures for the group statistics tests: small labelled cohorts of subject maps."""

from __future__ import annotations

import numpy as np
import pytest

from brainarr.testing import make_maps


def build_maps(values, *, group=None, age=None, sex=None, chunks=None, seed=0):
    """Stack subject maps (n, x, y, z) into a (subject, x, y, z) DataArray with phenotype coords.

    Only the data are chunked (coordinates stay numpy), as in a cohort read from Zarr.
    """
    values = np.asarray(values)
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    group = np.asarray(group if group is not None else ["patient"] * (n // 2) + ["control"] * (n - n // 2))
    age = np.asarray(age if age is not None else rng.uniform(20, 70, n))
    sex = np.asarray(sex if sex is not None else rng.choice(["M", "F"], n))
    return make_maps(values, chunks=chunks, group=group, age=age, sex=sex)


@pytest.fixture
def maps_factory():
    return build_maps
