"""Fixtures for the metric tests: small volumes with the hard cases in them."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from brainarr.testing import make_bold

SHAPE = (7, 8, 9, 40)

#: Chunkings that split neighbourhoods, including size-1 and uneven chunks.
CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 7, "y": 8, "z": 9},
    {"x": 2, "y": 3, "z": 1},
]


def hard_values(rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    """Random series with a shared component, integer-valued (tied) voxels and constant voxels."""
    nt = shape[-1]
    common = rng.standard_normal(nt)
    values = rng.standard_normal(shape) + 0.6 * common + 0.02 * np.arange(nt)
    values[1:4, 2:5, 3:6] = np.round(values[1:4, 2:5, 3:6] * 1.5)  # ties across time
    values[3, 3, 3] = 5.0  # constant voxel inside the mask
    values[0, 0, 0] = -2.0  # constant voxel at the array corner
    return values.astype(np.float32)


def hard_mask(rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    """An irregular mask that touches the array border and has holes."""
    mask = rng.random(shape[:3]) > 0.25
    mask[:, :, 0] = True  # a full outer face
    mask[4:6, 4:6, 4:6] = False  # a hole
    mask[3, 3, 3] = True
    mask[0, 0, 0] = True
    return mask


@pytest.fixture
def values(rng):
    return hard_values(rng)


@pytest.fixture
def mask_np(rng):
    return hard_mask(rng)


@pytest.fixture
def bold(values):
    return make_bold(values)


@pytest.fixture
def mask(bold, mask_np):
    m = xr.DataArray(mask_np, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")}, name="mask")
    m.attrs["affine"] = bold.attrs["affine"]
    return m


@pytest.fixture
def cohort(bold, rng):
    """Three subjects along ``subject`` (the first is ``bold`` itself)."""
    other = [bold.copy(data=hard_values(np.random.default_rng(s))) for s in (1, 2)]
    out = xr.concat([bold, *other], dim="subject").assign_coords(subject=["s1", "s2", "s3"])
    out.attrs = dict(bold.attrs)
    return out
