"""brainarr: lazy, labelled, scalable resting-state fMRI on xarray, Dask and Zarr.

Submodules are imported on first use (``ba.metrics``, ``from brainarr import stats``), so that
``import brainarr`` is quick: xarray imports it whenever it lists its backends (brainarr
registers the ``engine="brainarr"`` NIfTI backend). Importing brainarr registers the
``.brain`` accessor on DataArray and Dataset.
"""

import importlib
from typing import Any

from brainarr import accessor
from brainarr._core.options import set_options
from brainarr._core.version import __version__

__all__ = [
    "__version__",
    "accessor",
    "config",
    "datasets",
    "io",
    "metrics",
    "open_cohort",
    "pipeline",
    "plotting",
    "preprocess",
    "raw",
    "rechunk_for_metrics",
    "report",
    "set_options",
    "spatial",
    "stats",
    "testing",
]

_SUBMODULES = {
    *("config", "datasets", "io", "metrics", "pipeline", "plotting", "preprocess", "raw", "report", "spatial"),
    *("stats", "testing"),
}
_FUNCTIONS = {"open_cohort": "brainarr.cohort", "rechunk_for_metrics": "brainarr._core.chunks"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"brainarr.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'brainarr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
