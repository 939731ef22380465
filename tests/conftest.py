"""Shared fixtures."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from brainarr.testing import make_affine, make_bold

matplotlib.use("Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture
def affine_mni():
    return make_affine(3.0)


@pytest.fixture
def bold_factory():
    """Build small BOLD arrays: ``bold_factory(values=None, shape=(7, 8, 9, 40), chunks=None, tr=2.0)``."""
    return make_bold


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
